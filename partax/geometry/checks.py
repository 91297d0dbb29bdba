"""Argument checks of the geometry modules: the shared ones of :mod:`partax.validation`, in the
forms geometry works with (unstacked nets, float64-ready finite NumPy inputs, a default layer).

Each check raises a ``TypeError`` / ``ValueError`` that names the argument and what was
expected, and returns the value in the form the caller works with.

Example:
    >>> from partax.geometry.checks import check_count, check_positive
    >>> check_count("num_rays", 64), check_positive("reach", 2)
    (64, 2.0)
"""

from __future__ import annotations

import numpy as np

from partax.coding import SCOPES, scope_range
from partax import validation
from partax.nets import Net

__all__ = ["check_net", "check_inputs", "check_layer", "check_scope_layer", "check_positive", "check_flag",
           "check_count", "finite_vector"]


def check_net(net) -> Net:
    """``net`` if it is an unstacked :class:`partax.Net` with a hidden layer; else an error
    (:func:`partax.validation.check_net`, unstacked).

    Args:
      net: the object to check.

    Returns:
      ``net``.
    """
    return validation.check_net(net, stacked=False, caller="geometry")


def check_inputs(x, d: int, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array of shape ``(N, d)`` with finite numeric entries (the shape and
    dtype checks of :func:`partax.validation.check_inputs`, then finiteness).

    Args:
      x: the inputs.
      d: the expected number of columns.
      name: the argument's name in the messages.

    Returns:
      ``np.asarray(x)`` (its dtype unchanged).
    """
    x = np.asarray(validation.check_inputs(np.asarray(x), d, name))
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite inputs (found NaN or inf)")
    return x


def check_layer(net: Net, layer) -> int:
    """The 1-based hidden layer ``layer`` (default: the last one) as an int
    (:func:`partax.validation.check_layer`).

    Args:
      net: the net (its ``num_hidden`` bounds the layer).
      layer: an int in ``1..L`` or None.

    Returns:
      The layer.
    """
    return net.num_hidden if layer is None else validation.check_layer(layer, net.num_hidden)


def check_scope_layer(net: Net, scope: str, layer) -> tuple:
    """``(layer, first, last)``: the checked layer and the scope's inclusive layer range.

    Args:
      net: the net.
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"``.
      layer: 1-based hidden layer or None (the last one).

    Returns:
      ``(layer, first, last)`` as ints (see :func:`partax.coding.scope_range`).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    if net.num_hidden < 1:
        raise ValueError("net: expected at least one hidden layer")
    layer = check_layer(net, layer)
    first, last = scope_range(scope, layer, net.num_hidden)
    return layer, int(first), int(last)


def check_positive(name: str, value) -> float:
    """``value`` as a float, or a ValueError naming the argument unless it is finite and > 0.

    Args:
      name: the argument's name in the message.
      value: the value to check.

    Returns:
      ``float(value)``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def check_flag(name: str, value) -> bool:
    """``value`` as a bool; a TypeError naming the argument unless it is one
    (:func:`partax.validation.check_flag`, with the geometry modules' argument order).

    Args:
      name: the argument's name in the message.
      value: the value to check.

    Returns:
      ``bool(value)``.
    """
    return validation.check_flag(value, name)


def check_count(name: str, value) -> int:
    """``value`` as an int; a ValueError naming the argument unless it is an int >= 1.

    Args:
      name: the argument's name in the message.
      value: the value to check.

    Returns:
      ``int(value)``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def finite_vector(name: str, v, d=None) -> np.ndarray:
    """``v`` as ``float64[d]`` (any length if ``d`` is None) with finite entries.

    Args:
      name: the argument's name in the message.
      v: the vector.
      d: its expected length, or None.

    Returns:
      ``float64[d]``.
    """
    v = np.asarray(v, np.float64)
    if v.ndim != 1 or (d is not None and v.shape[0] != d):
        want = f"({d},)" if d is not None else "(d,)"
        raise ValueError(f"{name}: expected a vector of shape {want}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return v
