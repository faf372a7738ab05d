"""lionforge's building blocks: every op of the search space, declared once.

>>> from ops import OPS
>>> OPS["interp"].arity
3
"""

from ops.registry import Op, OpRegistry, PerVariable, Shape
from ops.table import EPS, OPS

__all__ = ["EPS", "OPS", "Op", "OpRegistry", "PerVariable", "Shape"]
