"""Seed programs: well-known optimizers written in the program language.

Each function takes the optimizer's hyperparameters as keyword arguments (the learning
rate is the ``lr`` input, set by whoever runs the program) and returns a :class:`Program`
with them baked in as literals. ``adamw()`` and ``lion()`` reproduce Keras' optimizers
step for step (see ``tests/test_keras_optimizer.py``).
"""

from __future__ import annotations

from pipeline.program import Program
from pipeline.statement import format_number

__all__ = ["adamw", "lion", "paper_adamw", "rmsprop", "sgd_momentum", "signsgd", "SEEDS"]


def _n(x: float) -> str:
    return format_number(x)


def adamw(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, weight_decay: float = 0.004
) -> Program:
    r"""AdamW (Loshchilov & Hutter, 2019) with bias correction, as ``keras.optimizers.AdamW``.

    .. math::
        m_t = \beta_1 m + (1-\beta_1) g,\quad v_t = \beta_2 v + (1-\beta_2) g^2,\\
        \alpha_t = lr\,\sqrt{1-\beta_2^t}/(1-\beta_1^t),\quad
        update = \alpha_t\, m_t / (\sqrt{v_t} + \epsilon) + lr\,\lambda\, w

    Defaults are Keras' (``weight_decay=0.004``, ``epsilon=1e-7``).
    """
    return Program.parse(
        f"""\
m = interp(m, g, {_n(round(1.0 - beta_1, 12))})
g2 = square(g)
v = interp(v, g2, {_n(round(1.0 - beta_2, 12))})
b1 = power({_n(beta_1)}, t)
b2 = power({_n(beta_2)}, t)
c1 = 1.0 - b1
c2 = 1.0 - b2
s2 = sqrt(c2)
alpha = s2 / c1
alpha = alpha * lr
sv = sqrt(v)
den = sv + {_n(epsilon)}
u = m / den
u = u * alpha
decay = lr * {_n(weight_decay)}
wd = w * decay
update = u + wd
"""
    )


def paper_adamw(lr_scale: float = 1.0) -> Program:
    """The Lion paper's AdamW seed: no bias correction, weight decay 0.01 on ``w``.

    The paper's 9-statement text multiplies ``lr`` by 1e-3 (``paper_adamw(lr_scale=1e-3)``):
    its ``lr`` input is 1000x ours. By default that statement is left out, so the seed trains
    at the rate it is given; a search warm-started at a step 1000x too small mostly learns to
    make the step bigger.
    """
    scale = f"lr = lr * {_n(lr_scale)}\n" if lr_scale != 1.0 else ""
    return Program.parse(
        f"""\
g2 = square(g)
m = interp(g, m, 0.9)
v = interp(g2, v, 0.999)
sqrt_v = sqrt(v)
update = m / sqrt_v
wd = w * 0.01
update = update + wd
{scale}update = update * lr
"""
    )


def lion(beta_1: float = 0.9, beta_2: float = 0.99, weight_decay: float = 0.0) -> Program:
    r"""Lion, "EvoLved Sign Momentum" (Chen et al., 2023), as ``keras.optimizers.Lion``.

    .. math::
        c = \beta_1 m + (1-\beta_1) g,\quad update = lr\,(\mathrm{sign}(c) + \lambda w),\quad
        m_t = \beta_2 m + (1-\beta_2) g

    Tuning: a learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's.
    ``interp(g, m, b)`` is ``(1-b) g + b m``.
    """
    decay = f"wd = w * {_n(weight_decay)}\nu = u + wd\n" if weight_decay else ""
    return Program.parse(
        f"""\
c = interp(g, m, {_n(beta_1)})
u = sign(c)
{decay}update = u * lr
m = interp(g, m, {_n(beta_2)})
"""
    )


def sgd_momentum(momentum: float = 0.9) -> Program:
    r"""SGD with heavy-ball momentum: :math:`m_t = \mu m + g,\ update = lr\, m_t`."""
    return Program.parse(
        f"""\
m = m * {_n(momentum)}
m = m + g
update = m * lr
"""
    )


def rmsprop(rho: float = 0.9, epsilon: float = 1e-7) -> Program:
    r"""RMSprop: :math:`v_t = \rho v + (1-\rho) g^2,\ update = lr\, g / \sqrt{v_t + \epsilon}`."""
    return Program.parse(
        f"""\
g2 = square(g)
v = interp(g2, v, {_n(rho)})
d = v + {_n(epsilon)}
s = sqrt(d)
u = g / s
update = u * lr
"""
    )


def signsgd() -> Program:
    r"""signSGD (Bernstein et al., 2018): :math:`update = lr\,\mathrm{sign}(g)`."""
    return Program.parse("s = sign(g)\nupdate = s * lr\n")


SEEDS = {
    "adamw": adamw,
    "paper_adamw": paper_adamw,
    "lion": lion,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "signsgd": signsgd,
}
