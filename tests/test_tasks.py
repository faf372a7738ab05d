"""Tasks: deterministic data and init, held-out validation, the local-cache loaders."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from pipeline.tasks import (
    TASKS,
    CharLM,
    Cifar10Conv,
    DatasetNotFound,
    DigitsMLP,
    Metric,
    MnistMLP,
    TeacherRegression,
    load_cifar10,
    load_mnist,
    make_task,
)
from pipeline.tasks.charlm import VOCAB
from pipeline.tasks.models import split_train_val

LOCAL = ["teacher", "digits_mlp", "digits_conv", "char_lm"]


@pytest.mark.parametrize("name", LOCAL)
def test_task_is_deterministic_given_seed(name):
    a, b = make_task(name, seed=3), make_task(name, seed=3)
    for x, y in zip(vars(a.data()).values(), vars(b.data()).values(), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.init_params(), b.init_params(), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.batch_indices(), b.batch_indices())
    c = make_task(name, seed=4)
    assert not np.array_equal(a.batch_indices(), c.batch_indices())
    assert not np.array_equal(a.init_params()[0], c.init_params()[0])


@pytest.mark.parametrize("name", LOCAL)
def test_forward_pass_is_per_member_and_shapes_match(name):
    task = make_task(name)
    d = task.data()
    init = task.init_params()
    assert [a.shape for a in init] == [tuple(s) for s in task.param_shapes()]
    assert task.batch_indices().max() < len(d.x_train)  # trains only on the train split
    # Member 1 gets perturbed parameters: member 0's output must not change.
    p0 = [tf.constant(np.stack([a, a])) for a in init]
    p1 = [tf.constant(np.stack([a, a + 0.5])) for a in init]
    x = tf.constant(d.x_val[:4])
    o0, o1 = task.apply(p0, x), task.apply(p1, x)
    np.testing.assert_allclose(o0[0], o1[0], rtol=1e-6)
    assert not np.allclose(o0[1], o1[1])
    loss = task.loss(o1, tf.constant(d.y_val[:4]))
    assert loss.shape == (2,) and np.all(np.isfinite(loss))


def test_validation_split_is_disjoint_from_training():
    x = np.arange(100)[:, None]
    d = split_train_val(x, np.arange(100), 20, data_seed=0)
    assert len(d.x_val) == 20 and len(d.x_train) == 80
    assert not set(d.x_train[:, 0]) & set(d.x_val[:, 0])
    t = TeacherRegression()
    td = t.data()
    train_rows = {r.tobytes() for r in td.x_train}
    assert not any(r.tobytes() in train_rows for r in td.x_val)


def test_char_lm_targets_are_next_characters_and_val_is_held_out():
    task = CharLM()
    d = task.data()
    assert d.x_train.shape[1] == task.context
    np.testing.assert_array_equal(d.x_train[:, 1:], d.y_train[:, :-1])
    assert d.x_train.max() < len(VOCAB)
    tr, va, cut = task.window_starts()
    assert np.all(tr + task.context + 1 <= cut) and np.all(va >= cut)  # disjoint text spans


def test_scale_grows_width_and_steps():
    small, big = make_task("teacher", scale=1), make_task("teacher", scale=100)
    assert big.hidden == 10 * small.hidden and big.steps == 10 * small.steps
    with pytest.raises(ValueError, match="scale"):
        _ = make_task("teacher", scale=0).steps
    with pytest.raises(ValueError, match="teacher"):
        make_task("nope")


def test_digits_keras_twin_computes_the_same_function():
    task = DigitsMLP()
    x = task.data().x_val[:8]
    ours = task.apply([tf.constant(a[None]) for a in task.init_params()], tf.constant(x))[0]
    np.testing.assert_allclose(task.keras_model()(x), ours, atol=1e-5)


def _fake_mnist(path, n=60):
    rng = np.random.default_rng(0)
    np.savez(
        path / "mnist.npz",
        x_train=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n).astype(np.uint8),
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 10).astype(np.uint8),
    )


def test_mnist_loads_from_a_fake_cache(tmp_path):
    _fake_mnist(tmp_path)
    raw = load_mnist(tmp_path)
    assert raw["x_train"].shape == (60, 28, 28)
    task = MnistMLP(cache_dir=str(tmp_path), base_train=40, n_val=12)
    d = task.data()
    assert d.x_train.shape == (40, 28, 28, 1) and d.x_val.shape == (12, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    # Every example comes from the cache's training split, scaled by 1/255.
    cached = {r.tobytes() for r in raw["x_train"]}
    back = np.rint(np.concatenate([d.x_train, d.x_val])[..., 0] * 255).astype(np.uint8)
    assert all(r.tobytes() in cached for r in back)
    ours = task.apply([tf.constant(a[None]) for a in task.init_params()], tf.constant(d.x_val))
    assert ours.shape == (1, 12, 10)


def _cifar_record(label, image):
    """One record of the official binary format: label byte, then R, G, B planes."""
    return np.concatenate([[label], image.transpose(2, 0, 1).reshape(-1)]).astype(np.uint8)


def test_cifar10_reads_the_binary_cache_with_channels_last(tmp_path):
    rng = np.random.default_rng(1)
    bindir = tmp_path / "cifar-10-batches-bin"
    bindir.mkdir()
    images = rng.integers(0, 256, (6, 4, 32, 32, 3), dtype=np.uint8)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        recs = [_cifar_record(k, images[k, r]) for r in range(4)]
        np.concatenate(recs).tofile(bindir / name)
    raw = load_cifar10(tmp_path)
    assert raw["x_train"].shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(raw["x_train"][5], images[1, 1])
    np.testing.assert_array_equal(raw["y_train"], np.repeat(np.arange(5), 4))
    np.testing.assert_array_equal(raw["x_test"], images[5])
    d = Cifar10Conv(cache_dir=str(tmp_path), n_val=5).data()
    assert d.x_train.shape == (15, 32, 32, 3) and d.x_val.shape == (5, 32, 32, 3)


def test_missing_cache_fails_fast_with_a_clear_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    t0 = time.monotonic()
    with pytest.raises(DatasetNotFound, match="mnist.npz"):
        load_mnist(tmp_path)
    with pytest.raises(DatasetNotFound, match="pickled"):
        load_cifar10(tmp_path)
    with pytest.raises(DatasetNotFound):
        MnistMLP(cache_dir=str(tmp_path / "absent")).data()
    assert time.monotonic() - t0 < 5.0  # no download, no retry loop


def test_registry_lists_every_task():
    assert set(TASKS) == {"teacher", "digits_mlp", "digits_conv", "char_lm", "mnist_mlp",
                          "cifar10_conv", "synth_mlp", "teacher_deep"}


@pytest.mark.parametrize("name", ["synth_mlp", "teacher_deep"])
def test_held_out_tasks_are_generated_deterministically_and_differ_from_the_proxies(name):
    a, b = make_task(name).data(), make_task(name).data()
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    other = make_task(name, data_seed=1).data()
    assert not np.array_equal(a.x_train, other.x_train)
    task = make_task(name)
    assert task.metric is Metric.NEG_VAL_LOSS
    out = task.apply([tf.constant(p[None]) for p in task.init_params()], tf.constant(a.x_val))
    assert np.isfinite(task.loss(out, tf.constant(a.y_val)).numpy()).all()
    if name == "synth_mlp":
        assert set(np.unique(a.y_train)) == set(range(task.n_classes))
    else:
        assert a.x_train.shape[1] != make_task("teacher").data().x_train.shape[1]


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_the_one_pass_target_shows_every_training_example_exactly_once(scale):
    # One pass is what makes its validation loss measure optimisation rather than how well
    # an optimizer regularises a small training set; a change to the steps, the batch or the
    # data size that breaks it would silently bring the regularisation ranking back.
    task = make_task("synth_mlp", scale=scale)
    order = task.batch_indices().ravel()
    assert len(np.unique(order)) == len(order) == len(task.data().x_train)

