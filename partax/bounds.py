"""Upper bounds on the number of linear regions of a ReLU network.

Every function returns an exact Python ``int``. Widths follow the convention of
the rest of partax: ``n0`` is the input dimension, ``widths = (n_1, ..., n_L)`` the
hidden widths (the affine output layer does not add regions).

Example:
    >>> from partax import bounds
    >>> bounds.serra(4, [6, 4]), bounds.montufar(4, [6, 4])
    (817, 912)
    >>> bounds.zaslavsky(3, 2)
    7
"""

from __future__ import annotations

import math
import operator
from typing import Sequence

__all__ = ["trivial", "zaslavsky", "raghu", "montufar", "serra", "table", "format_table"]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, float)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def _check_widths(widths: Sequence[int]) -> list:
    if isinstance(widths, (int, str, bytes)) or not hasattr(widths, "__iter__"):
        raise TypeError(f"widths: expected a sequence of hidden widths (n_1, ..., n_L), got {widths!r}")
    widths = [_check_int(f"widths[{i}]", w, 1) for i, w in enumerate(widths)]
    if not widths:
        raise ValueError("widths: expected at least one hidden width")
    return widths


def _binom_prefix(n: int, d: int) -> int:
    """``sum_{j=0..d} C(n, j)`` (``2^n`` once ``d >= n``)."""
    if d >= n:
        return 1 << n
    return sum(math.comb(n, j) for j in range(d + 1))


def trivial(widths: Sequence[int]) -> int:
    """The trivial bound ``2^(n_1 + ... + n_L)``: one region per activation pattern.

    Source: each of the ``sum n_l`` units is on or off, so no more patterns exist.

    Args:
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      An ``int``.

    Example:
      >>> trivial([3, 2])
      32
    """
    return 1 << sum(_check_widths(widths))


def zaslavsky(k: int, d: int) -> int:
    """``sum_{j=0..d} C(k, j)``: regions of ``k`` hyperplanes in general position in ``R^d``.

    Source: T. Zaslavsky, *Facing up to arrangements: face-count formulas for partitions
    of space by hyperplanes*, Mem. AMS 154 (1975); the maximum is reached in general position.

    Args:
      k: number of hyperplanes (``>= 0``).
      d: dimension of the space (``>= 0``).

    Returns:
      An ``int``.

    Example:
      >>> zaslavsky(4, 2)  # four lines in the plane
      11
    """
    k = _check_int("k", k, 0)
    d = _check_int("d", d, 0)
    return _binom_prefix(k, d)


def raghu(n0: int, widths: Sequence[int]) -> int:
    """``prod_l sum_{j=0..n_{l-1}} C(n_l, j)``.

    Source: M. Raghu, B. Poole, J. Kleinberg, S. Ganguli, J. Sohl-Dickstein, *On the
    expressive power of deep neural networks*, ICML 2017 (each layer's arrangement in its
    ``n_{l-1}``-dimensional input space, multiplied over layers).

    Args:
      n0: input dimension.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      An ``int``.

    Example:
      >>> raghu(2, [3, 3])  # 7 * 8
      56
    """
    n0 = _check_int("n0", n0, 1)
    ws = _check_widths(widths)
    dims = [n0] + ws[:-1]
    out = 1
    for d, n in zip(dims, ws):
        out *= _binom_prefix(n, d)
    return out


def montufar(n0: int, widths: Sequence[int]) -> int:
    """``prod_l sum_{j=0..d_l} C(n_l, j)`` with ``d_l = min(n_0, n_1, ..., n_l)``.

    Source: G. Montúfar, *Notes on the number of linear regions of deep neural networks*,
    SampTA 2017 (also Serra, Tjandraatmadja & Ramalingam 2018, Prop. 3 / Thm 1 remark):
    the image of a region under layers ``1..l`` has dimension at most ``d_l``.

    Args:
      n0: input dimension.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      An ``int``.

    Example:
      >>> montufar(4, [6, 4])
      912
    """
    n0 = _check_int("n0", n0, 1)
    ws = _check_widths(widths)
    out, d = 1, n0
    for n in ws:
        d = min(d, n)
        out *= _binom_prefix(n, d)
    return out


def serra(n0: int, widths: Sequence[int]) -> int:
    """``sum_{(j_1..j_L) in J} prod_l C(n_l, j_l)``, the bound of Serra et al. (2018, Thm 1).

    ``J = {(j_1, ..., j_L) : 0 <= j_l <= min(n_0, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l)}``.

    Source: T. Serra, C. Tjandraatmadja, S. Ramalingam, *Bounding and counting linear
    regions of deep neural networks*, ICML 2018, Theorem 1 (ReLU networks).

    Computed by dynamic programming over the running minimum
    ``m_l = min(n_0, n_1 - j_1, ..., n_l - j_l)`` (at most ``n_0 + 1`` states per layer),
    so the cost is ``O(L * n_0 * max n_l)`` big-integer operations, not ``|J|``.

    Args:
      n0: input dimension.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      An ``int``.

    Example:
      >>> serra(4, [6, 4]), serra(784, [11, 11])
      (817, 2449868)
    """
    n0 = _check_int("n0", n0, 1)
    ws = _check_widths(widths)
    # states: running minimum m (capped at n0 and at max width) -> summed product.
    states = {n0: 1}
    for n in ws:
        new: dict = {}
        for m, acc in states.items():
            for j in range(min(m, n) + 1):
                m2 = min(m, n - j)
                new[m2] = new.get(m2, 0) + acc * math.comb(n, j)
        states = new
    return sum(states.values())


def table(n0: int, widths: Sequence[int]) -> dict:
    """All bounds for one architecture, as ``{name: int}``.

    Args:
      n0: input dimension.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      ``{"serra", "montufar", "raghu", "trivial"}`` -> ``int``, tightest first, plus
      ``"zaslavsky_first_layer"`` (the first layer's arrangement, ``zaslavsky(n_1, n_0)``).

    Example:
      >>> table(4, [6, 4])["serra"]
      817
    """
    n0 = _check_int("n0", n0, 1)
    ws = _check_widths(widths)
    return {
        "serra": serra(n0, ws),
        "montufar": montufar(n0, ws),
        "raghu": raghu(n0, ws),
        "trivial": trivial(ws),
        "zaslavsky_first_layer": zaslavsky(ws[0], n0),
    }


def _log10(v: int) -> float:
    if v <= 0:
        return float("-inf")
    # exact enough for huge ints: use the bit length to avoid float overflow
    shift = max(v.bit_length() - 60, 0)
    return math.log10(v >> shift) + shift * math.log10(2)


def format_table(n0: int, widths: Sequence[int]) -> str:
    """The bounds of :func:`table` as aligned text lines (value and log10), for ``partax bounds``.

    Values longer than 24 digits are shortened to their first digits and their length.

    Args:
      n0: input dimension.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      The lines, joined by newlines (no final newline).

    Example:
      >>> print(format_table(4, [6, 4]).splitlines()[1])
        serra                                           817  log10 =     2.912
    """
    t = table(n0, widths)
    arch = "-".join(str(w) for w in [n0, *widths])
    lines = [f"region bounds for n0={n0}, hidden widths {list(widths)} ({arch})"]
    name_w = max(len(k) for k in t)
    for k, v in t.items():
        s = str(v)
        if len(s) > 24:
            s = f"{s[:6]}...({len(s)} digits)"
        lines.append(f"  {k:<{name_w}}  {s:>28}  log10 = {_log10(v):9.3f}")
    return "\n".join(lines)
