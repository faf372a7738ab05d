"""Export: a program as a standalone Keras optimizer module that trains exactly like
ProgramOptimizer, for every seed and every op; each op's exported text computes what its TF
callable (built from the same ``Op.src``) computes."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from ops import OPS
from pipeline import Program, ProgramOptimizer, seeds
from pipeline.execute import inplace_plan
from pipeline.export import export_module, write_module
from pipeline.ranges import fast_statements

EDGE = np.array(
    [0.0, -0.0, 1e-9, -1e-9, 1e-8, -1e-8, 1e-30, 0.5, -0.5, 0.9999, -0.9999, 1.0, -1.0, 2.0,
     -3.0, 50.0, -100.0, 1e4, 0.25, -0.25],
    dtype=np.float32,
)  # fmt: skip


def _load(source_or_program, tmp_path, class_name: str, **kwargs):
    """Write the exported module to tmp_path and import it from that file."""
    path = write_module(source_or_program, tmp_path / f"{class_name.lower()}.py",
                        class_name=class_name, **kwargs)
    spec = importlib.util.spec_from_file_location(f"exported_{class_name.lower()}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


# ---- every seed trains a Keras model exactly like ProgramOptimizer ---------------------------

STEPS = 30


def _train(optimizer) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(2)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(STEPS * 8, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 2))).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return [v.numpy() for v in model.weights]


@pytest.mark.parametrize("seed", sorted(seeds.SEEDS))
def test_exported_seed_trains_like_program_optimizer(seed, tmp_path):
    program = seeds.SEEDS[seed]()
    cls = _load(program, tmp_path, f"Exported_{seed}")
    ours = _train(cls(learning_rate=1e-2))
    theirs = _train(ProgramOptimizer(program, learning_rate=1e-2))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(b))))
    start = _train(keras.optimizers.SGD(learning_rate=0.0))
    assert any(not np.allclose(a, s) for a, s in zip(ours, start, strict=True))  # it trained


# ---- every op: the exported code computes what tf_fn computes --------------------------------

LITERAL = -0.75


def _op_cases():
    """(id, program text) per op: tensor arguments, and a literal at each const_ok position."""
    cases = []
    for name, op in sorted(OPS.items()):
        tensors = ["m", "g", "w"][: op.arity]
        variants = [("tensors", tensors)]
        variants += [
            (f"literal{i}", [repr(LITERAL) if j == i else a for j, a in enumerate(tensors)])
            for i, ok in enumerate(op.const_ok)
            if ok
        ]
        for label, args in variants:
            call = f"{name}({', '.join(args)})"
            text = f"m = interp(g, m, 0.5)\nx = {call}\n"
            text += "y = x * m\n" if op.arity == 0 else "y = x + 0.0\n"
            text += "update = y * lr\n"
            cases.append(pytest.param(text, id=f"{name}-{label}"))
    return cases


def _fast_cases():
    """Programs where each op's FastPath provably applies (its argument is >= the bound)."""
    cases = []
    for name, op in sorted(OPS.items()):
        if op.fast is None:
            continue
        bounded = f"b = a + {op.fast.at_least + 1.0!r}\n"
        args = ["g"] * op.arity
        args[op.fast.arg] = "b"
        text = f"m = interp(g, m, 0.5)\na = abs(m)\n{bounded}x = {name}({', '.join(args)})\n"
        text += "update = x * lr\n"
        program = Program.parse(text)
        assert 3 in fast_statements(program)  # the fast path is really taken
        cases.append(pytest.param(text, id=f"{name}-fast"))
    return cases


def _run_eagerly(optimizer, steps: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    var = tf.Variable(np.concatenate([EDGE, rng.normal(size=12).astype("float32")]))
    out = []
    for step in range(steps):
        g = rng.normal(size=var.shape[0]).astype("float32") * (10.0 ** (step - 1))
        g[: len(EDGE)] = np.roll(EDGE, step + 1)
        optimizer.apply_gradients([(tf.constant(g), var)])
        out.append(var.numpy().copy())
    return out


def _assert_exported_equals_program_optimizer(text, tmp_path, class_name):
    program = Program.parse(text)
    cls = _load(program, tmp_path, class_name)
    ours = _run_eagerly(cls(learning_rate=0.1))
    theirs = _run_eagerly(ProgramOptimizer(program, learning_rate=0.1))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)  # the same TF ops: bit for bit


@pytest.mark.parametrize("text", _op_cases() + _fast_cases())
def test_every_op_exports_to_code_that_steps_like_program_optimizer(text, tmp_path):
    class_name = "Op_" + Program.parse(text).structural_hash()[:12]
    _assert_exported_equals_program_optimizer(text, tmp_path, class_name)


def _forms():
    """(id, Source, const_ok) for every TF form of every op: the op, its fast path, its
    in-place deltas."""
    out = []
    for name, op in sorted(OPS.items()):
        out.append(pytest.param(op.tf_fn, op.const_ok, None, id=name))
        if op.fast is not None:
            out.append(pytest.param(op.fast.tf_fn, op.const_ok, op.fast, id=f"{name}-fast"))
        out += [pytest.param(form.tf_delta, op.const_ok, None, id=f"{name}-inplace{k}")
                for k, form in enumerate(op.inplace)]
    return out


@pytest.mark.parametrize("source, const_ok, fast", _forms())
def test_every_ops_exported_source_computes_what_its_callable_computes(source, const_ok, fast,
                                                                        tmp_path):
    """The text export writes (rendered as export renders it, helpers included), imported
    from a file, gives bit for bit what the op's TF callable gives: tensors and literals."""
    rng = np.random.default_rng(0)
    tensors = [np.concatenate([EDGE, rng.normal(size=20).astype("float32") * 10.0 ** k])
               for k in range(len(source.params))]
    if fast is not None:  # a fast path holds where its argument is >= its bound
        tensors[fast.arg] = np.abs(tensors[fast.arg]) + np.float32(fast.at_least + 1.0)
    variants = [[tf.constant(t) for t in tensors]]
    variants += [[LITERAL if j == i else tf.constant(t) for j, t in enumerate(tensors)]
                 for i, ok in enumerate(const_ok) if ok and not fast]
    lines = ["import tensorflow as tf", "", *(h.text for h in source.helpers), ""]
    for v, args in enumerate(variants):
        params = [f"x{i}" for i, a in enumerate(args) if not isinstance(a, float)]
        texts = [repr(a) if isinstance(a, float) else f"x{i}" for i, a in enumerate(args)]
        lines += [f"def f{v}({', '.join(params)}):", f"    return {source.render(*texts)}", ""]
    path = tmp_path / "forms.py"
    path.write_text("\n".join(lines), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("exported_forms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for v, args in enumerate(variants):
        want = np.asarray(source(*args))
        got = np.asarray(getattr(module, f"f{v}")(*(a for a in args if not isinstance(a, float))))
        np.testing.assert_array_equal(got, want)


def test_every_op_has_a_source_template_using_its_arguments():
    for name, op in OPS.items():
        assert op.src, name
        for i in range(op.arity):
            assert f"{{{i}}}" in op.src, (name, i)
        for helper in op.src_helpers:
            assert helper.startswith("def _") and helper.split("(")[0][4:] in op.src, name
        if op.fast is not None:
            assert op.fast.src, name


def test_sparse_gradients_are_made_dense_in_the_exported_module_too(tmp_path):
    def train(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse")
        x = np.random.default_rng(0).integers(0, 50, size=(64, 5)).astype("int32")
        model.fit(x, (x[:, :1] % 7).astype("float32"), batch_size=16, shuffle=False, verbose=0)
        return [v.numpy() for v in model.weights]

    cls = _load(seeds.adamw(), tmp_path, "SparseAdamW")
    for a, b in zip(train(cls(learning_rate=1e-2)),
                    train(ProgramOptimizer(seeds.adamw(), learning_rate=1e-2)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_every_in_place_form_exports_to_code_that_steps_like_program_optimizer(tmp_path):
    for name, op in sorted(OPS.items()):
        for form in op.inplace:
            args = ["g", "w", "0.5"][: op.arity]
            args[form.arg] = "m"
            text = f"m = {name}({', '.join(args)})\nupdate = m * lr\n"
            assert inplace_plan(Program.parse(text)), text  # the in-place path is taken
            _assert_exported_equals_program_optimizer(text, tmp_path, f"InPlace_{name}_{form.arg}")


# ---- what the generated module looks like ------------------------------------------------

def test_names_that_clash_with_python_or_the_module_are_renamed(tmp_path):
    text = """\
dtype = g * 2.0
index = sign(dtype)
tf = index / v
lambda = tf * lr
_div = lambda / m
v = norm(g)
update = _div + 0.0
m = interp(g, m, 0.9)
"""
    source = export_module(Program.parse(text))
    assert "lambda_ = tf_ * lr" in source and "_div_ = _div(lambda_, m)" in source
    # v (a slot read at step start) gets a scalar: it is broadcast to the variable's shape.
    assert "tf.broadcast_to(tf.cast(v, dtype), tf.shape(variable))" in source
    _assert_exported_equals_program_optimizer(text, tmp_path, "Renamed")


def test_only_live_statements_are_written():
    program = Program.parse("dead = exp(g)\ns = sign(g)\nupdate = s * lr\nstate3 = tanh(w)\n")
    source = export_module(program)
    assert "exp(" not in source and "tanh(" not in source and "state3" not in source
    assert "tf.sign(g)" in source
    assert "build(" not in source  # no live state slots: no slot variables
    assert "2 statement(s) that never reach update left out" in source


def test_exported_module_imports_only_keras_and_tensorflow():
    tree = ast.parse(export_module(seeds.adamw()))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported == {"keras", "tensorflow"}


def test_docstring_states_the_rule_and_the_output_is_deterministic():
    program = seeds.lion(weight_decay=0.1)
    source = export_module(program, "MyLion", learning_rate=3e-4)
    doc = ast.get_docstring(next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)))
    for line in program.to_text().splitlines():
        assert line in doc
    assert "def __init__(self, learning_rate=0.0003, name=\"my_lion\", **kwargs)" in source
    assert source == export_module(Program.parse(program.to_text()), "MyLion", learning_rate=3e-4)
    assert source != export_module(seeds.lion(weight_decay=0.2), "MyLion", learning_rate=3e-4)


def test_exported_modules_pass_ruff_with_the_project_config(tmp_path):
    programs = {f"seed_{k}": f() for k, f in seeds.SEEDS.items()}
    every_op = [f"x{i} = {name}({', '.join(['g'] * op.arity)})" for i, (name, op) in
                enumerate(sorted(OPS.items()))]
    sums = "\n".join(f"s{i} = s{i - 1} + x{i}" for i in range(1, len(every_op)))
    programs["every_op"] = Program.parse(
        "\n".join(every_op) + f"\ns0 = x0 + m\n{sums}\nupdate = s{len(every_op) - 1} * lr\n"
        "m = interp(g, m, -0.5)\nv = m - -1e-30\n"
    )
    programs["fixed_step"] = FIXED_STEP  # its module also imports warnings
    for key, program in programs.items():
        write_module(program, tmp_path / f"{key}.py", class_name=key.title().replace("_", ""))
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--config", "pyproject.toml",
         str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


FIXED_STEP = Program.parse("m = interp(g, m, 0.9)\nu = sign(m)\nupdate = u * 0.001\n")


def test_a_rule_that_never_reads_lr_warns_when_constructed_and_says_so_in_its_docstring(
        tmp_path):
    cls = _load(FIXED_STEP, tmp_path, "FixedStep")
    assert "the rule never reads it" in cls.__doc__
    with pytest.warns(UserWarning, match="never reads lr"):
        cls(learning_rate=0.1)
    reads = _load(seeds.lion(), tmp_path, "ReadsLr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reads(learning_rate=0.1)  # no warning for a rule that reads lr
    assert "import warnings" not in export_module(seeds.lion())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="class_name"):
        export_module(seeds.lion(), "not a name")
    with pytest.raises(ValueError, match="class_name"):
        export_module(seeds.lion(), "tf")
    with pytest.raises(ValueError, match="learning_rate"):
        export_module(seeds.lion(), learning_rate=-1.0)
    with pytest.raises(TypeError, match="program"):
        export_module(3)


# ---- saving and loading ----------------------------------------------------------------

def test_exported_optimizer_saves_and_loads_in_a_keras_model(tmp_path):
    cls = _load(seeds.adamw(), tmp_path, "SavedAdamW", learning_rate=5e-3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=cls(), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    model.fit(x, x[:, :2], batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is cls
    assert float(loaded.optimizer.learning_rate) == pytest.approx(5e-3)
    assert int(loaded.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # m and v came back
