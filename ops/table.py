"""Declarations of every op: the 45 functions of the Lion search space plus ``interp``/``clip``.

Semantics are total on the reals and finite wherever the math allows, so a mutated program
rarely produces NaN by accident (it still may, e.g. ``inf - inf``; the evaluator scores that
as worst):

* a denominator smaller than ``EPS`` in magnitude is replaced by ``EPS`` with its sign, so
  division never divides by zero and is exact everywhere else;
* ``log*`` and ``sqrt`` act on ``|x|`` (``log`` floors ``|x|`` at ``TINY``);
* inverse trig and hyperbolic functions clip their argument into the domain;
* exponentials clip their argument so the result stays below float32's maximum;
* reductions and ``cosine_sim`` guard their denominators with ``EPS``.

``global_norm`` is per tensor here (a program sees one variable at a time): it is the RMS
norm ``sqrt(mean(x^2))``, the size-independent sibling of ``norm``; ``clip_by_global_norm``
clips by that same RMS norm.

Each op's TensorFlow form is written once, as source (``src``, ``src_helpers``, the
``FastPath`` and ``InPlace`` templates): ``ops.source`` builds the callables from that text and
``pipeline.export`` writes the same text into exported modules. The NumPy forms, the
reference the tests hold the TF side to, are Python callables.
"""

from __future__ import annotations

import math

import numpy as np

from ops.registry import FastPath, InPlace, Op, OpRegistry, PerVariable, Shape

EPS = 1e-8
TINY = 1e-30
EXP_MAX = 88.0  # exp(88) ~ 1.65e38 < float32 max
EXP2_MAX = 127.0
EXP10_MAX = 38.0
ATANH_MAX = 1.0 - 1e-6

E, P, R = Shape.ELEMENTWISE, Shape.REDUCE, Shape.CONST
F32 = np.float32


# ---- helpers shared by the NumPy and TF sides --------------------------------------------

def _np_div(a, b):
    b = np.asarray(b, F32)
    guard = np.where(b >= 0, F32(EPS), F32(-EPS))
    return np.asarray(a, F32) / np.where(np.abs(b) < EPS, guard, b)


# The guarded division of the TF side (``div``, ``reciprocal``). The TF executor passes a
# literal as a Python float.
_SRC_DIV = f'''\
def _div(a, b):
    """a / b, with |b| < {EPS!r} replaced by {EPS!r} carrying b's sign (+ for 0)."""
    if isinstance(b, float):  # a literal denominator
        return a / (b if abs(b) >= {EPS!r} else ({EPS!r} if b >= 0 else {-EPS!r}))
    guard = tf.where(b >= 0, tf.constant({EPS!r}, b.dtype), tf.constant({-EPS!r}, b.dtype))
    return a / tf.where(tf.abs(b) < {EPS!r}, guard, b)
'''


def _np_sum(x, axis):
    if axis is None:
        return np.sum(x, dtype=F32)
    return np.sum(x, axis=axis, keepdims=True, dtype=F32)


def _np_mean(x, axis):
    if axis is None:
        return np.mean(x, dtype=F32)
    return np.mean(x, axis=axis, keepdims=True, dtype=F32)


def _np_norm(x, axis=None):
    return np.sqrt(_np_sum(np.square(x), axis))


def _np_rms(x, axis=None):
    return np.sqrt(_np_mean(np.square(x), axis))


def _np_dot(x, y, axis=None):
    return _np_sum(np.asarray(x, F32) * np.asarray(y, F32), axis)


def _np_cosine(x, y, axis=None):
    return _np_dot(x, y, axis) / (_np_norm(x, axis) * _np_norm(y, axis) + F32(EPS))


_SRC_COSINE = f'''\
def _cosine_sim(x, y):
    """sum(x * y) / (norm(x) * norm(y) + {EPS!r})."""
    dot = tf.reduce_sum(x * y)
    return dot / (tf.sqrt(tf.reduce_sum(tf.square(x))) * tf.sqrt(tf.reduce_sum(tf.square(y)))
                  + {EPS!r})
'''


def _np_clip_gn(x, c, axis=None):
    scale = np.minimum(F32(1.0), np.abs(F32(c)) / (_np_rms(x, axis) + F32(EPS)))
    return np.asarray(x, F32) * scale


_SRC_CLIP_GN = f'''\
def _clip_by_global_norm(x, c):
    """x * min(1, |c| / (rms(x) + {EPS!r})), rms(x) = sqrt(mean(x^2))."""
    scale = tf.minimum(1.0, tf.abs(c) / (tf.sqrt(tf.reduce_mean(tf.square(x))) + {EPS!r}))
    return x * scale
'''


def _np_log(x, fn):
    return fn(np.maximum(np.abs(x), F32(TINY)))


_SRC_LOG = f"tf.math.log(tf.maximum(tf.abs({{0}}), {TINY!r}))"


_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


def _const(name: str, value: float, doc: str) -> Op:
    return Op(name, 0, R, lambda: F32(value), (),
              doc=doc, interval=_iv_const(value, value),
              src=f"tf.constant({value!r}, tf.float32)")


def _unary(name, np_fn, src, doc, interval=None, fast=None, helpers=()):
    return Op(name, 1, E, np_fn, (False,), doc=doc, interval=interval, fast=fast,
              src=src, src_helpers=helpers)


def _binary(name, np_fn, src, doc, infix=None, const_ok=(True, True), interval=None,
            fast=None, helpers=(), inplace=()):
    return Op(name, 2, E, np_fn, const_ok, infix=infix, doc=doc, interval=interval,
              fast=fast, src=src, src_helpers=helpers, inplace=inplace)


# ---- interval rules: (lo, hi) per argument -> (lo, hi) of the result ----------------------
# Sound for real arithmetic; used only to pick FastPaths whose guard provably never fires.

INF = math.inf
ANY = (-INF, INF)


def _safe(lo: float, hi: float) -> tuple[float, float]:
    return ANY if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def _iv_add(a, b):
    return _safe(a[0] + b[0], a[1] + b[1])


def _iv_sub(a, b):
    return _safe(a[0] - b[1], a[1] - b[0])


def _iv_mul(a, b):
    prods = [x * y for x in a for y in b]
    return ANY if any(math.isnan(p) for p in prods) else (min(prods), max(prods))


def _iv_div(a, b):
    return (0.0, INF) if a[0] >= 0 and b[0] >= EPS else ANY


def _iv_monotone(fn, lo_clip=-INF, hi_clip=INF):
    def rule(a):
        lo, hi = max(a[0], lo_clip), min(a[1], hi_clip)
        return _safe(fn(lo) if lo > -INF else fn(lo_clip), fn(hi) if hi < INF else INF)

    return rule


def _iv_nonneg(a):
    return (0.0, INF)


def _iv_abs(a):
    if a[0] >= 0:
        return a
    return (0.0, max(abs(a[0]), abs(a[1])))


def _iv_sqrt(a):
    return (math.sqrt(a[0]), math.sqrt(a[1]) if a[1] < INF else INF) if a[0] >= 0 else (0.0, INF)


def _iv_square(a):
    if a[0] >= 0:
        return (a[0] * a[0], a[1] * a[1])
    return (0.0, INF)


def _iv_const(lo, hi):
    return lambda *_: (lo, hi)


def _iv_interp(x, y, a):
    if 0.0 <= a[0] and a[1] <= 1.0:
        return (min(x[0], y[0]), max(x[1], y[1]))
    return ANY


def _iv_clip(x, c):
    bound = max(abs(c[0]), abs(c[1]))
    return (max(x[0], -bound), min(x[1], bound))


def _fast_div():
    return FastPath(1, EPS, lambda a, b: np.asarray(a, F32) / np.asarray(b, F32),
                    "tf.divide({0}, {1})")


# ---- the table ---------------------------------------------------------------------------

# ``src`` (after each NumPy implementation) is the TensorFlow form: ``Op.tf_fn`` is built from
# it and exported modules are written with it (``ops.source``). ``tf.add`` and the like are
# written as operators in exported code; on two Python floats they still give a tensor.
_OPS: list[Op] = [
    # constants
    _const("pi", math.pi, "3.14159..."),
    _const("e", math.e, "2.71828..."),
    _const("eps", EPS, "1e-8, the division guard"),
    # arithmetic (infix)
    _binary("add", np.add, "tf.add({0}, {1})", "a + b", infix="+", interval=_iv_add,
            inplace=(InPlace(0, "{1}"), InPlace(1, "{0}"))),
    _binary("sub", np.subtract, "tf.subtract({0}, {1})", "a - b", infix="-", interval=_iv_sub),
    _binary("mul", np.multiply, "tf.multiply({0}, {1})", "a * b", infix="*", interval=_iv_mul),
    _binary("div", _np_div, "_div({0}, {1})",
            "a / b, with |b| < eps replaced by eps*sign(b)", infix="/",
            interval=_iv_div, fast=_fast_div(), helpers=(_SRC_DIV,)),
    _binary("max", np.maximum, "tf.maximum({0}, {1})", "elementwise maximum",
            interval=lambda a, b: (max(a[0], b[0]), max(a[1], b[1]))),
    _binary("min", np.minimum, "tf.minimum({0}, {1})", "elementwise minimum",
            interval=lambda a, b: (min(a[0], b[0]), min(a[1], b[1]))),
    _binary(
        "power",
        lambda x, y: np.power(np.maximum(np.abs(F32(x)), F32(TINY)), F32(y)),
        f"tf.pow(tf.maximum(tf.abs({{0}}), {TINY!r}), {{1}})",
        "max(|x|, 1e-30) ** y",
        interval=lambda x, y: (0.0, INF),
    ),
    # unary
    _unary("abs", np.abs, "tf.abs({0})", "|x|", _iv_abs),
    _unary("negative", np.negative, "tf.negative({0})", "-x", lambda a: (-a[1], -a[0])),
    _unary("invert", lambda x: F32(1.0) - x, "1.0 - {0}", "1 - x",
           lambda a: _safe(1.0 - a[1], 1.0 - a[0])),
    _unary("reciprocal", lambda x: _np_div(F32(1.0), x), "_div(1.0, {0})",
           "1 / x, guarded", helpers=(_SRC_DIV,)),
    _unary("square", np.square, "tf.square({0})", "x^2", _iv_square),
    _unary("cube", lambda x: x * x * x, "{0} * {0} * {0}", "x^3"),
    _unary("sqrt", lambda x: np.sqrt(np.abs(x)), "tf.sqrt(tf.abs({0}))", "sqrt(|x|)",
           _iv_sqrt, FastPath(0, 0.0, np.sqrt, "tf.sqrt({0})")),
    _unary(
        "cbrt",
        np.cbrt,
        "tf.sign({0}) * tf.pow(tf.abs({0}), 1.0 / 3.0)",
        "real cube root",
    ),
    _unary("sign", np.sign, "tf.sign({0})", "-1, 0 or 1", _iv_const(-1.0, 1.0)),
    _unary(
        "exp",
        lambda x: np.exp(np.minimum(x, F32(EXP_MAX))),
        f"tf.exp(tf.minimum({{0}}, {EXP_MAX!r}))",
        "exp(min(x, 88))",
        _iv_nonneg,
    ),
    _unary(
        "exp2",
        lambda x: np.exp2(np.minimum(x, F32(EXP2_MAX))),
        f"tf.pow(2.0, tf.minimum({{0}}, {EXP2_MAX!r}))",
        "2^min(x, 127)",
    ),
    _unary(
        "exp10",
        lambda x: np.power(F32(10.0), np.minimum(x, F32(EXP10_MAX))),
        f"tf.pow(10.0, tf.minimum({{0}}, {EXP10_MAX!r}))",
        "10^min(x, 38)",
    ),
    _unary(
        "expm1",
        lambda x: np.expm1(np.minimum(x, F32(EXP_MAX))),
        f"tf.math.expm1(tf.minimum({{0}}, {EXP_MAX!r}))",
        "exp(min(x, 88)) - 1",
    ),
    _unary("log", lambda x: _np_log(x, np.log), _SRC_LOG, "ln(max(|x|, 1e-30))",
           fast=FastPath(0, TINY, np.log, "tf.math.log({0})")),
    _unary("log10", lambda x: _np_log(x, np.log10), f"{_SRC_LOG} / {_LN10!r}",
           "log10(max(|x|, 1e-30))"),
    _unary("log2", lambda x: _np_log(x, np.log2), f"{_SRC_LOG} / {_LN2!r}",
           "log2(max(|x|, 1e-30))"),
    _unary("log1p", lambda x: np.log1p(np.abs(x)), "tf.math.log1p(tf.abs({0}))",
           "ln(1 + |x|)", _iv_nonneg,
           FastPath(0, 0.0, np.log1p, "tf.math.log1p({0})")),
    _unary("sin", np.sin, "tf.sin({0})", "sin(x)", _iv_const(-1.0, 1.0)),
    _unary("cos", np.cos, "tf.cos({0})", "cos(x)", _iv_const(-1.0, 1.0)),
    _unary("tan", np.tan, "tf.tan({0})", "tan(x)"),
    _unary("arcsin", lambda x: np.arcsin(np.clip(x, -1, 1)),
           "tf.asin(tf.clip_by_value({0}, -1.0, 1.0))", "asin(clip(x, -1, 1))"),
    _unary("arccos", lambda x: np.arccos(np.clip(x, -1, 1)),
           "tf.acos(tf.clip_by_value({0}, -1.0, 1.0))", "acos(clip(x, -1, 1))"),
    _unary("arctan", np.arctan, "tf.atan({0})", "atan(x)"),
    _unary("sinh", lambda x: np.sinh(np.clip(x, -EXP_MAX, EXP_MAX)),
           f"tf.sinh(tf.clip_by_value({{0}}, {-EXP_MAX!r}, {EXP_MAX!r}))",
           "sinh(clip(x, -88, 88))"),
    _unary("cosh", lambda x: np.cosh(np.clip(x, -EXP_MAX, EXP_MAX)),
           f"tf.cosh(tf.clip_by_value({{0}}, {-EXP_MAX!r}, {EXP_MAX!r}))",
           "cosh(clip(x, -88, 88))", _iv_const(1.0, INF)),
    _unary("tanh", np.tanh, "tf.tanh({0})", "tanh(x)", _iv_const(-1.0, 1.0)),
    _unary("arcsinh", np.arcsinh, "tf.asinh({0})", "asinh(x)"),
    _unary("arccosh", lambda x: np.arccosh(np.maximum(np.abs(x), F32(1.0))),
           "tf.acosh(tf.maximum(tf.abs({0}), 1.0))", "acosh(max(|x|, 1))"),
    _unary("arctanh", lambda x: np.arctanh(np.clip(x, -ATANH_MAX, ATANH_MAX)),
           f"tf.atanh(tf.clip_by_value({{0}}, {-ATANH_MAX!r}, {ATANH_MAX!r}))",
           "atanh(clip(x, -(1-1e-6), 1-1e-6))"),
    # reductions to a scalar
    Op("norm", 1, P, _np_norm, (False,), doc="L2 norm sqrt(sum(x^2))", axis_arg=True,
       per_variable=PerVariable.NORM,
       interval=_iv_nonneg, src="tf.sqrt(tf.reduce_sum(tf.square({0})))"),
    Op("global_norm", 1, P, _np_rms, (False,), doc="RMS norm sqrt(mean(x^2))",
       per_variable=PerVariable.RMS,
       axis_arg=True, interval=_iv_nonneg, src="tf.sqrt(tf.reduce_mean(tf.square({0})))"),
    Op("dot", 2, P, _np_dot, (False, False), doc="sum(x * y)", axis_arg=True,
       per_variable=PerVariable.DOT,
       src="tf.reduce_sum({0} * {1})"),
    Op("cosine_sim", 2, P, _np_cosine, (False, False),
       doc="dot(x, y) / (norm(x) * norm(y) + eps)", axis_arg=True,
       per_variable=PerVariable.COSINE_SIM,
       src="_cosine_sim({0}, {1})", src_helpers=(_SRC_COSINE,)),
    # elementwise with a parameter
    # y*a + x*(1-a): with a literal ``a`` the TF side forms 1-a in double precision, which
    # makes seeds.lion() bit-identical to keras.optimizers.Lion (a sign can flip otherwise).
    Op("interp", 3, E,
       lambda x, y, a: y * a + x * (1.0 - a),
       (False, False, True), doc="(1 - a) * x + a * y", aliases=("interpolate",),
       interval=_iv_interp, src="{1} * {2} + {0} * (1.0 - {2})",
       # x + (y - x) * a, or y + (x - y) * (1 - a): an EMA slot updated in place.
       inplace=(InPlace(0, "({1} - {0}) * {2}"),
                InPlace(1, "({0} - {1}) * (1.0 - {2})"))),
    Op("clip", 2, E,
       lambda x, c: np.clip(x, -np.abs(F32(c)), np.abs(F32(c))),
       (False, True), doc="clip x to [-|c|, |c|]", interval=_iv_clip,
       src="tf.clip_by_value({0}, -tf.abs({1}), tf.abs({1}))"),
    Op("clip_by_global_norm", 2, E, _np_clip_gn, (False, True),
       doc="x * min(1, |c| / (global_norm(x) + eps))", axis_arg=True,
       per_variable=PerVariable.CLIP_BY_RMS,
       src="_clip_by_global_norm({0}, {1})", src_helpers=(_SRC_CLIP_GN,)),
]

OPS = OpRegistry(_OPS)
