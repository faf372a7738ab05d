"""The op table: NumPy and TensorFlow agree on every op, on random and edge inputs; each
op's TF callable is built from its source text (``ops.source``), which refuses anything
outside its fixed name table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ops import OPS, Shape
from ops.source import Source

ROOT = Path(__file__).resolve().parent.parent

EDGE = np.array(
    [0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 1e-30, -1e-30, 1e-8, -1e-8, 5e-9, -5e-9,
     0.5, -0.5, 3.0, 100.0, -100.0, 1e5, -1e5, 0.999999, -0.999999],
    dtype=np.float32,
)  # fmt: skip


def _inputs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=16) * s for s in (1.0, 10.0, 1e3)] + [rng.uniform(-1, 1, 16), EDGE]
    return np.concatenate(parts).astype(np.float32)


def _args(op, seed: int) -> list[np.ndarray]:
    x = _inputs(seed)
    return [np.roll(x, 7 * i) for i in range(op.arity)]


def test_the_search_space_has_the_papers_functions():
    names = set(OPS)
    paper = {
        "pi", "e", "eps", "abs", "cos", "sin", "tan", "arcsin", "arccos", "arctan", "sinh",
        "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "exp", "exp2", "exp10", "expm1",
        "log", "log10", "log2", "log1p", "square", "sqrt", "cube", "cbrt", "sign",
        "reciprocal", "norm", "invert", "negative", "global_norm", "dot", "cosine_sim",
        "clip_by_global_norm", "power", "add", "sub", "mul", "div", "max", "min",
        "interp", "clip",
    }  # fmt: skip
    assert paper <= names
    assert OPS.resolve("interpolate") is OPS["interp"]
    assert [OPS.by_infix(s).name for s in "+-*/"] == ["add", "sub", "mul", "div"]


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_tensorflow_agree(name, seed):
    op = OPS[name]
    if op.arity == 0:
        np.testing.assert_allclose(op.np_fn(), op.tf_fn().numpy(), rtol=1e-6)
        return
    args = _args(op, seed)
    with np.errstate(all="ignore"):
        want = np.asarray(op.np_fn(*args), np.float32)
    got = op.tf_fn(*[tf.constant(a) for a in args]).numpy()
    assert got.shape == want.shape
    # 1e-5 relative; an absolute floor of 1e-6 for results that are ~0 (sin(pi) and the like).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=False)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_are_finite_where_the_math_allows(name):
    """Guards hold: an op of finite moderate inputs gives a finite result."""
    op = OPS[name]
    if op.arity == 0:
        assert np.isfinite(op.np_fn())
        return
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-30, 30, 64), [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0]])
    args = [np.roll(x, 5 * i).astype(np.float32) for i in range(op.arity)]
    if name == "power":
        args[1] = np.clip(args[1], -1.0, 3.0)  # |x|^y with big y overflows, as math says
    with np.errstate(all="ignore"):
        out = np.asarray(op.np_fn(*args))
    assert np.all(np.isfinite(out)), f"{name} gave non-finite output on finite input"


def test_division_is_guarded_and_exact_elsewhere():
    div = OPS["div"]
    out = div.np_fn(np.float32([1, 1, 1, 6]), np.float32([0.0, -0.0, -1e-9, 3.0]))
    np.testing.assert_array_equal(out, np.float32([1e8, 1e8, -1e8, 2.0]))


def test_log_and_sqrt_act_on_magnitudes():
    np.testing.assert_allclose(OPS["sqrt"].np_fn(np.float32([-4.0])), [2.0])
    np.testing.assert_allclose(OPS["log"].np_fn(np.float32([-np.e])), [1.0], rtol=1e-6)
    assert np.isfinite(OPS["log"].np_fn(np.float32([0.0])))


@pytest.mark.parametrize("name", [n for n in sorted(OPS) if OPS[n].axis_arg])
def test_reductions_act_per_population_member_with_axis(name):
    op = OPS[name]
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 4, 5)).astype(np.float32)
    args = [np.roll(batch, i, axis=2) for i in range(op.arity)]
    if name == "clip_by_global_norm":
        args[1] = np.float32(0.5)
    got = op.np_fn(*args, axis=(1, 2))
    tf_got = op.tf_fn(*[tf.constant(a) for a in args], axis=(1, 2)).numpy()
    for p in range(3):
        alone = op.np_fn(*[a[p] if np.ndim(a) else a for a in args])
        np.testing.assert_allclose(np.squeeze(got[p]) if op.shape is Shape.REDUCE else got[p],
                                   alone, rtol=1e-5)
    np.testing.assert_allclose(tf_got, got, rtol=1e-5, atol=1e-7)


def test_the_op_table_imports_tensorflow_only_when_an_ops_tf_form_is_used():
    code = (
        "import sys\n"
        "from ops import OPS\n"
        "from pipeline import Program, seeds\n"
        "assert seeds.lion().reads_lr and Program.parse('update = g * lr')\n"
        "assert 'tensorflow' not in sys.modules, 'parsing imported TensorFlow'\n"
        "x = OPS['add'].tf_fn(1.0, 2.0)\n"  # a stand-in: imports TensorFlow, then calls it
        "assert 'tensorflow' in sys.modules and float(x) == 3.0\n"
        "c = OPS['sqrt'].tf_fn  # read before: still a stand-in, and it works\n"
        "assert abs(float(c(4.0)) - 2.0) < 1e-6\n"
        "from ops.lazy_tf import tf\n"
        "import tensorflow\n"
        "assert tf.float32 is tensorflow.float32  # once imported, TensorFlow's own objects\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ---- one definition: the TF callable is built from the op's source ---------------------------

def test_every_tf_callable_is_built_from_the_ops_source_text():
    for name, op in OPS.items():
        assert op.tf_fn.text == op.src, name
        if op.fast is not None:
            assert op.fast.tf_fn.text == op.fast.src, name
        for form in op.inplace:
            assert form.tf_delta.text == form.src, name


@pytest.mark.parametrize(
    "text, arity",
    [
        ("os.system({0})", 1),  # a name outside the table
        ("__import__('os')", 0),
        ("{0}.__class__", 1),  # an attribute of a value outside the allow-list
        ("[{0} for _ in {0}]", 1),
        ("tf.abs({0}, name='x')", 1),  # keywords are not part of the language
        ("{0} ** 2", 1),
        ("{2}", 1),  # an argument the op does not have
    ],
)
def test_source_outside_the_fixed_name_table_is_refused_when_parsed(text, arity):
    with pytest.raises(ValueError):
        Source(text, arity)


def test_source_renders_tf_arithmetic_as_operators_and_runs_it_as_tf():
    add = Source("tf.add({0}, tf.negative({1}))", 2)
    assert add.render("a", "b") == "a + -b"
    out = add(1.0, 2.0)  # two Python floats: TensorFlow's float32 tensor, as tf.add gives
    assert isinstance(out, tf.Tensor) and out.dtype == tf.float32 and float(out) == -1.0


def test_helpers_see_the_callers_axis():
    helper = "def _total(x):\n    return tf.reduce_sum(x)\n"
    source = Source("_total({0}) + 1.0", 1, helpers=(helper,))
    x = tf.ones((2, 3))
    assert float(source(x)) == 7.0
    np.testing.assert_array_equal(source(x, axis=(1,)).numpy(), [[4.0], [4.0]])
    assert [h.text for h in source.helpers] == [helper]
