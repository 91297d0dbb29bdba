"""Checkpoint schedules for :class:`partax.Tracer`: every ``k`` steps, or ``n`` log-spaced steps.

Example:
    >>> from partax.schedules import every_k, log_spaced
    >>> every_k(3, 10).tolist()
    [0, 3, 6, 9, 10]
    >>> len(log_spaced(8000, 274))
    274
"""

from __future__ import annotations

import numpy as np

__all__ = ["every_k", "log_spaced"]


def every_k(k: int, total: int) -> np.ndarray:
    """Steps ``0, k, 2k, ...`` up to ``total``, and ``total`` itself.

    Args:
      k: spacing (>= 1).
      total: last step (>= 0), e.g. the number of epochs.

    Returns:
      ``int64[M]`` sorted distinct steps in ``[0, total]``.

    Example:
      >>> every_k(3, 10).tolist()
      [0, 3, 6, 9, 10]
    """
    k, total = int(k), int(total)
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    if total < 0:
        raise ValueError(f"total: expected >= 0, got {total}")
    return np.unique(np.append(np.arange(0, total + 1, k), total)).astype(np.int64)


def _log_grid(total: int, m: int) -> np.ndarray:
    g = np.unique(np.logspace(0.0, np.log2(total), m, base=2, dtype=int)).astype(np.int64)
    # the last point is mathematically ``total``; dtype=int truncation can leave ``total - 1``
    g[-1] = total
    return g


def log_spaced(total: int, n: int) -> np.ndarray:
    """``n`` distinct log-spaced steps in ``[1, total]``, as in the information-bottleneck papers.

    The IB literature (Shwartz-Ziv & Tishby 2017) traces at
    ``np.unique(np.logspace(np.log2(1), np.log2(total), M, base=2, dtype=int))`` (then ``- 1`` for
    0-based epoch indices), with the last value set to ``total`` where float truncation left
    ``total - 1``. The number of distinct values grows with ``M``; this function takes the
    **largest** ``M`` that still yields exactly ``n`` values (``log_spaced(8000, 274)`` is the
    published grid, ``M = 400``). If the count jumps past ``n`` (possible for other totals), the
    grid of the last ``M`` below ``n`` is completed with the smallest new values of the next grid.

    Steps here count *completed* epochs (``partax.train.fit`` calls back with ``e`` after the
    ``e``-th epoch), so they run from 1 to ``total`` and equal the literature's indices plus 1.
    Prepend 0 to also trace the initial net.

    Args:
      total: last step (>= 1).
      n: number of steps, ``1 <= n <= total``.

    Returns:
      ``int64[n]`` sorted distinct steps, starting at 1 and ending at ``total`` when ``n >= 2``.

    Example:
      >>> s = log_spaced(8000, 274)
      >>> len(s), int(s[0]), int(s[-1])
      (274, 1, 8000)
    """
    total, n = int(total), int(n)
    if total < 1:
        raise ValueError(f"total: expected >= 1, got {total}")
    if not 1 <= n <= total:
        raise ValueError(f"n: expected 1 <= n <= total = {total}, got {n}")
    if n == 1:
        return np.array([total], np.int64)
    # the distinct count is non-decreasing in M; find the first M with count > n by doubling + bisection
    lo, hi = n, n
    while len(_log_grid(total, hi)) <= n:
        lo, hi = hi, hi * 2
        if hi > 64 * total + 64:  # count == total reached: every step
            return np.arange(1, total + 1, dtype=np.int64)[-n:] if n == total else _log_grid(total, lo)
    while hi - lo > 1:  # invariant: count(lo) <= n < count(hi)
        mid = (lo + hi) // 2
        if len(_log_grid(total, mid)) <= n:
            lo = mid
        else:
            hi = mid
    g = _log_grid(total, lo)
    if len(g) == n:
        return g
    new = np.setdiff1d(_log_grid(total, hi), g)
    return np.union1d(g, new[: n - len(g)]).astype(np.int64)
