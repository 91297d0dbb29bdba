"""Entropy of a histogram in bits, and the saturation rule shared by every estimator.

Estimators of an entropy from a histogram with ``N`` samples and ``K`` non-empty bins:

* ``"plugin"``: ``H = -sum_k p_k log2 p_k`` with ``p_k = n_k / N``;
* ``"miller_madow"``: ``H_plugin + (K - 1) / (2 N ln 2)``.

Saturation: when nearly every input sits in its own bin the estimate reads ``log2 N`` whatever
the network does: an estimate is *saturated* when the plug-in ``H`` is within
:data:`SATURATION_MARGIN_BITS` of ``log2 N`` or the Good–Turing coverage ``1 - f1/N`` falls
below :data:`SATURATION_MIN_COVERAGE` (:func:`is_saturated`). :mod:`partax.info` (regions as
bins) and :mod:`partax.baselines` (binning and KDE on raw activations) both use it.

Example:
    >>> from partax.entropy import entropy
    >>> round(entropy([1, 1, 2]), 4)
    1.5
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ESTIMATORS", "SATURATION_MARGIN_BITS", "SATURATION_MIN_COVERAGE", "LN2", "check_estimator", "entropy",
           "is_saturated"]

ESTIMATORS = ("plugin", "miller_madow")
#: ``saturated`` is set when the plug-in ``H(T) >= log2(N) - SATURATION_MARGIN_BITS``.
SATURATION_MARGIN_BITS = 0.05
#: ... or when the Good–Turing coverage ``1 - f1/N`` falls below this.
SATURATION_MIN_COVERAGE = 0.5

LN2 = math.log(2.0)


def check_estimator(estimator: str) -> None:
    """Raises ``ValueError`` naming ``estimator`` unless it is one of :data:`ESTIMATORS`."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")


def entropy(counts, estimator: str = "plugin") -> float:
    """Entropy in bits of a histogram.

    Args:
      counts: non-negative counts of any shape (flattened; zeros are ignored).
      estimator: ``"plugin"`` or ``"miller_madow"``.

    Returns:
      A Python float; ``nan`` for an empty histogram.

    Example:
      >>> entropy([2, 2]), round(entropy([2, 2], "miller_madow"), 4)
      (1.0, 1.1803)
    """
    check_estimator(estimator)
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.size and (not np.all(np.isfinite(c)) or c.min() < 0):
        raise ValueError("counts: expected finite non-negative counts")
    c = c[c > 0]
    n = c.sum()
    if n <= 0:
        return float("nan")
    p = c / n
    h = float(-(p * np.log2(p)).sum())
    h = max(h, 0.0)
    if estimator == "miller_madow":
        h += (c.size - 1) / (2.0 * n * LN2)
    return float(h)


def is_saturated(h_plugin: float, n: int, coverage: float) -> bool:
    """The saturation rule: ``n > 1`` and (``h_plugin >= log2 n - SATURATION_MARGIN_BITS`` or
    ``coverage < SATURATION_MIN_COVERAGE``).

    Example:
      >>> is_saturated(11.99, 4096, 0.9), is_saturated(5.0, 4096, 0.9)
      (True, False)
    """
    return bool(n > 1 and (h_plugin >= math.log2(n) - SATURATION_MARGIN_BITS or coverage < SATURATION_MIN_COVERAGE))
