"""``tf``: TensorFlow for the op table, imported only when an op's TF form is first used.

The op table names each op's TensorFlow function (``tf.add``, ``tf.math.log``, ...) when it
is built, but parsing, printing or checking a program needs none of them, and importing
TensorFlow costs seconds (``lionforge show`` is a read of a text file). An attribute read
while TensorFlow is not yet imported gives a stand-in that imports it when called; once
TensorFlow is imported (anything that builds tensors has done so), reads give TensorFlow's
own objects, so the op functions' bodies see the real module (dtypes included).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["tf"]


class _LazyTF:
    """``tensorflow`` or an attribute path below it, resolved on use (see the module doc)."""

    def __init__(self, path: tuple[str, ...] = ()):
        self._path = path

    def _resolve(self):
        obj = importlib.import_module("tensorflow")
        for name in self._path:
            obj = getattr(obj, name)
        return obj

    def __getattr__(self, name: str):
        if name.startswith("__"):  # copy, pickle and friends probe dunders: not TensorFlow's
            raise AttributeError(name)
        if "tensorflow" in sys.modules:
            return getattr(self._resolve(), name)
        return _LazyTF((*self._path, name))

    def __call__(self, *args, **kwargs):
        return self._resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<lazy {'.'.join(('tf', *self._path))}>"


tf = _LazyTF()
