"""Short ``repr`` of result records: sizes and a few key numbers, never a dump of every array.

A record (``Enumeration``, ``SliceRegions``, ``ChebyshevResult``, ...) holds arrays with a
row per region; printing one in a notebook should say what it is in one line. Each record's
``__repr__`` calls :func:`record_repr` with the numbers that matter for it; arrays appear
as their dtype and shape.

Example:
    >>> import numpy as np
    >>> from partax.records import record_repr
    >>> record_repr("Result", regions=3, radii=np.zeros((3,)), complete=True, error=1.2345e-9)
    'Result(regions=3, radii=float64[3], complete=True, error=1.23e-09)'
"""

from __future__ import annotations

import numpy as np

__all__ = ["describe", "record_repr"]


def describe(value) -> str:
    """A short text for one field: an array as ``dtype[shape]``, a float to 3 significant digits.

    Args:
      value: an array (NumPy or JAX), a tuple of arrays, a number, a string, None, ...

    Returns:
      The text.
    """
    if hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0:
        return f"{np.dtype(value.dtype).name}[{', '.join(str(s) for s in value.shape)}]"
    if isinstance(value, tuple) and value and all(hasattr(v, "shape") for v in value):
        return "(" + ", ".join(describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a 0-d array: its value
        value = value.item()
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return repr(value)


def record_repr(name: str, **fields) -> str:
    """``name(field=..., ...)`` with each value through :func:`describe`.

    Args:
      name: the record's class name.
      **fields: the fields to show, in order.

    Returns:
      The one-line text.
    """
    return f"{name}(" + ", ".join(f"{k}={describe(v)}" for k, v in fields.items()) + ")"
