"""ProgramOptimizer: a program as a Keras optimizer, equal to Keras' own AdamW and Lion; the
step plan it shares with pipeline.export."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline import Program, ProgramError, ProgramOptimizer, numpy_step, seeds, tf_step
from pipeline.step_plan import StepPlan

STEPS = 100


def _data(seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(STEPS * 16, 12)).astype("float32")
    y = (x @ rng.normal(size=(12, 3)) + 0.1 * rng.normal(size=(STEPS * 16, 3))).astype("float32")
    return x, y


def _model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(3)]
    )


def _train(optimizer, steps: int = STEPS) -> list[np.ndarray]:
    model = _model()
    model.compile(optimizer=optimizer, loss="mse")
    x, y = _data()
    model.fit(x[: steps * 16], y[: steps * 16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.weights]


def _assert_same_weights(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        # 1e-5 relative to each tensor's scale (float32 rounding accumulates over 100 steps).
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(b))))


def test_adamw_program_trains_exactly_like_keras_adamw():
    ours = _train(ProgramOptimizer(seeds.adamw(), learning_rate=1e-3))
    theirs = _train(keras.optimizers.AdamW(learning_rate=1e-3))
    _assert_same_weights(ours, theirs)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_lion_program_trains_exactly_like_keras_lion(weight_decay):
    ours = _train(ProgramOptimizer(seeds.lion(weight_decay=weight_decay), learning_rate=1e-3))
    theirs = _train(keras.optimizers.Lion(learning_rate=1e-3, weight_decay=weight_decay or None))
    _assert_same_weights(ours, theirs)


def test_a_different_program_trains_differently():
    """The equivalence above is not vacuous: another rule ends elsewhere."""
    lion = _train(ProgramOptimizer(seeds.lion(), learning_rate=1e-3))
    signsgd = _train(ProgramOptimizer(seeds.signsgd(), learning_rate=1e-3))
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(lion, signsgd, strict=True)) > 1e-3


def test_learning_rate_schedules_drive_lr():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=10, decay_rate=0.5)
    ours = _train(ProgramOptimizer(seeds.lion(), learning_rate=schedule), steps=30)
    theirs = _train(keras.optimizers.Lion(learning_rate=schedule), steps=30)
    _assert_same_weights(ours, theirs)


def test_embedding_layers_with_sparse_gradients_train():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,), dtype="int32"),
            keras.layers.Embedding(50, 8),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=ProgramOptimizer(seeds.adamw(), learning_rate=1e-2), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(256, 5)).astype("int32")
    y = (x[:, :1] % 7).astype("float32")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < 0.5 * before


def test_save_load_continues_training_exactly(tmp_path):
    x, y = _data()
    model = _model()
    model.compile(optimizer=ProgramOptimizer(seeds.adamw(), learning_rate=1e-3), loss="mse")
    model.fit(x[:320], y[:320], batch_size=16, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)  # safe mode, no custom_objects
    assert isinstance(loaded.optimizer, ProgramOptimizer)
    assert loaded.optimizer.program == seeds.adamw()
    assert int(loaded.optimizer.iterations.numpy()) == 20

    model.fit(x[320:640], y[320:640], batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x[320:640], y[320:640], batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def _with_program_text(src, dst, text: str) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["compile_config"]["optimizer"]["config"]["program"] = text
                data = json.dumps(config).encode()
            zout.writestr(item, data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("update = __import__(g)", "names may not start with '__'"),
        ("import os\nupdate = g", "expected '='"),
        ("update = system(g)", "unknown function 'system'"),
        ("update = (lambda: 0)()", "expected a function call"),
    ],
)
def test_hostile_program_text_in_a_keras_file_fails_to_load(tmp_path, text, message):
    model = _model()
    model.compile(optimizer=ProgramOptimizer(seeds.lion()), loss="mse")
    model.fit(*[a[:32] for a in _data()], verbose=0)
    good, bad = tmp_path / "good.keras", tmp_path / "bad.keras"
    model.save(good)
    _with_program_text(good, bad, text)
    with pytest.raises(Exception) as err:
        keras.saving.load_model(bad)
    chain = [err.value, err.value.__cause__, err.value.__context__]
    assert any(isinstance(e, ProgramError) or message in str(e) for e in chain if e), err.value
    assert message in str(err.value) or any(message in str(e) for e in chain if e)


def test_constructor_rejects_what_is_not_a_program():
    with pytest.raises(TypeError, match="Argument `program` must be a lionforge Program"):
        ProgramOptimizer(42)
    with pytest.raises(ProgramError):
        ProgramOptimizer("update = nope(g)")


def test_optimizer_state_is_only_the_live_slots():
    model = _model()
    text = seeds.lion().to_text() + "v = interp(g, v, 0.5)\n"  # v is dead state
    opt = ProgramOptimizer(Program.parse(text))
    model.compile(optimizer=opt, loss="mse")
    model.fit(*[a[:32] for a in _data()], verbose=0)
    assert opt.get_config()["program"] == text  # the user's text is kept as written
    slot_vars = [v for v in opt.variables if "_m" in v.path or "_v" in v.path]
    assert len(slot_vars) == len(model.trainable_weights)  # one slot (m) per weight


@pytest.mark.parametrize("name", sorted(seeds.SEEDS))
def test_numpy_and_tf_executors_agree_over_steps(name):
    program = seeds.SEEDS[name]()
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    tw = tf.constant(w)
    state: dict = {}
    tstate: dict = {}
    for t in range(1, 6):
        g = rng.normal(size=(4, 3)).astype(np.float32)
        up, state = numpy_step(program, w, g, state, 0.01, t)
        tup, tstate = tf_step(program, tw, tf.constant(g), tstate, tf.constant(0.01), float(t))
        np.testing.assert_allclose(tup.numpy(), up, rtol=1e-5, atol=1e-8)
        w, tw = w - up, tw - tup
    for s in state:
        np.testing.assert_allclose(tstate[s].numpy(), state[s], rtol=1e-5, atol=1e-8)


def test_ema_slots_are_updated_in_place_only_when_written_once_from_their_old_value():
    from pipeline.execute import inplace_plan

    def plan(program):
        return {program.statements[i].target: slot for i, (slot, _) in
                inplace_plan(program).items()}

    assert plan(seeds.adamw()) == {"m": "m", "v": "v"}
    assert plan(seeds.lion()) == {"m": "m"}
    assert plan(seeds.sgd_momentum()) == {}  # m is written twice
    assert plan(Program.parse("m = interp(g, w, 0.5)\nupdate = m * lr")) == {}  # not from m


@pytest.mark.parametrize("name", sorted(seeds.SEEDS))
def test_program_optimizer_steps_like_the_numpy_reference(name):
    """In-place slot updates and reachable-state fast paths change nothing but rounding."""
    program = seeds.SEEDS[name]()
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(6, 5)).astype(np.float32)
    grads = [rng.normal(size=(6, 5)).astype(np.float32) for _ in range(10)]
    var = keras.Variable(w0)
    opt = ProgramOptimizer(program, learning_rate=0.01)
    opt.build([var])
    w, state = w0.copy(), {}
    for t, g in enumerate(grads, start=1):
        opt.apply([tf.constant(g)], [var])
        update, state = numpy_step(program, w, g, state, 0.01, t)
        w = w - update
    np.testing.assert_allclose(var.numpy(), w, rtol=1e-5, atol=1e-6)


# ---- the step plan, shared with pipeline.export -----------------------------------------

def test_the_step_plan_names_inputs_slots_and_in_place_updates():
    lion = StepPlan.of(seeds.lion())
    assert (lion.inputs, lion.slots, lion.reads, lion.assigns) == (("g", "lr"), ("m",), ("m",), ())
    assert [slot for slot, _ in lion.inplace.values()] == ["m"] and lion.dense_gradient
    momentum = StepPlan.of(seeds.sgd_momentum())  # m is written twice: assigned at the end
    assert (momentum.inplace, momentum.assigns) == ({}, ("m",))
    adamw = StepPlan.of(seeds.adamw())
    assert adamw.inputs == ("w", "g", "lr", "t")  # t = iterations + 1, bias correction
    assert not StepPlan.of(Program.parse("s = sign(w)\nupdate = s * lr")).dense_gradient


def test_a_slot_written_before_it_is_read_gets_a_variable_only_in_program_optimizer():
    program = Program.parse("m = g * 2.0\nupdate = m * lr\nv = v + 1.0\nupdate = update + v")
    plan = StepPlan.of(program)  # export: m carries nothing to the next step
    assert (plan.slots, plan.reads, plan.assigns) == (("v",), ("v",), ())
    kept = StepPlan.of(program, keep_unread_slots=True)  # ProgramOptimizer, as saved files have
    assert (kept.slots, kept.reads, kept.assigns) == (("m", "v"), ("v",), ("m",))
    var = keras.Variable(np.ones((2, 2), np.float32))
    opt = ProgramOptimizer(program, learning_rate=0.5)
    opt.build([var])
    opt.apply([tf.constant(np.full((2, 2), 3.0, np.float32))], [var])
    # update = 6 * 0.5 + (0 + 1): the in-place v reads 1 after its add
    np.testing.assert_array_equal(var.numpy(), np.full((2, 2), -3.0, np.float32))
    np.testing.assert_array_equal(opt._slots["m"][0].numpy(), np.full((2, 2), 6.0, np.float32))
