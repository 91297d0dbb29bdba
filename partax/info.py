"""Information measures: regions as bins, saturation diagnostics, and baseline estimators.

Everything is in **bits**. For a deterministic network and the empirical input distribution
(each of the ``N`` inputs weighted ``1/N``), the representation ``T`` at a layer is a function of
``X``, so ``I(X;T) = H(T)``; with labels, ``I(T;Y) = H(T) + H(Y) - H(T,Y)``. The region tables of a
:class:`~partax.engine.Partition` hold exactly the histograms needed (counts per region and
label counts per region), so :func:`measures` and :func:`information_plane` never revisit inputs.

Estimators of an entropy from a histogram with ``N`` samples and ``K`` non-empty bins:

* ``"plugin"``: ``H = -sum_k p_k log2 p_k`` with ``p_k = n_k / N``;
* ``"miller_madow"``: ``H_plugin + (K - 1) / (2 N ln 2)``.

Under ``"miller_madow"`` every entropy (``H(T)``, ``H(Y)``, ``H(T,Y)``) gets its own correction.

Saturation: when nearly every input sits in its own region the estimate reads ``log2 N`` whatever
the network does. :func:`measures` flags ``saturated=True`` when the plug-in ``H(T)`` is within
``0.05`` bits of ``log2 N``, or when singletons dominate: more than half of the inputs are alone in
their region (Good–Turing coverage ``1 - f1/N < 0.5``).

Baselines on raw activations ``t[N, width]`` (for side-by-side comparison) live in
:mod:`partax.baselines` and are re-exported here: :func:`binned_mi` (fixed-range bins of
Shwartz-Ziv & Tishby, ``bins`` edges, or the unbounded ``floor(t/binsize)`` of Saxe et al.),
:func:`adaptive_binned_mi` (per-unit quantile edges) and :func:`kde_mi` (the Kolchinsky–Tracey
pairwise-distance bounds used by Saxe et al. 2018, computed in blocks). The entropy estimators
and the saturation rule are :mod:`partax.entropy`'s.

Example:
    >>> import numpy as np
    >>> from partax import info
    >>> round(info.entropy(np.array([1, 1, 2])), 4)
    1.5
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from partax.baselines import BinnedMI, KdeMI, adaptive_binned_mi, binned_mi, kde_mi
from partax.entropy import ESTIMATORS, SATURATION_MARGIN_BITS, SATURATION_MIN_COVERAGE, check_estimator, entropy
from partax.entropy import is_saturated

__all__ = [
    "ESTIMATORS",
    "SATURATION_MARGIN_BITS",
    "SATURATION_MIN_COVERAGE",
    "entropy",
    "Measures",
    "measures",
    "information_plane",
    "BinnedMI",
    "binned_mi",
    "adaptive_binned_mi",
    "KdeMI",
    "kde_mi",
]


class Measures(NamedTuple):
    """Information measures of one region table (bits), with saturation diagnostics.

    Attributes:
      H_T: entropy of the region variable ``T``.
      I_XT: ``I(X;T)``; equals ``H_T`` (deterministic net, empirical inputs).
      I_TY: ``I(T;Y) = H(T) + H(Y) - H(T,Y)``; ``nan`` without labels.
      H_Y: entropy of the labels; ``nan`` without labels.
      regions: number of non-empty regions ``M``.
      N: number of inputs.
      regions_per_input: ``M / N``.
      singleton_fraction: fraction of the regions that hold exactly one input.
      coverage: Good–Turing sample coverage ``1 - f1 / N`` (``f1``: number of singletons).
      saturated: ``H_T`` is pinned near ``log2 N`` (see the module docstring for the rule).
    """

    H_T: float
    I_XT: float
    I_TY: float
    H_Y: float
    regions: int
    N: int
    regions_per_input: float
    singleton_fraction: float
    coverage: float
    saturated: bool


def _measures_from_counts(counts, label_counts, estimator: str) -> Measures:
    counts = np.asarray(counts, dtype=np.int64).ravel()
    counts = counts[counts > 0] if label_counts is None else counts
    n = int(counts.sum())
    if n <= 0:
        raise ValueError("table: holds no inputs (total 0)")
    h_t = entropy(counts, estimator)
    if label_counts is not None:
        lc = np.asarray(label_counts, dtype=np.int64)
        h_y = entropy(lc.sum(axis=0), estimator)
        h_ty = entropy(lc, estimator)
        i_ty = h_t + h_y - h_ty
    else:
        h_y = i_ty = float("nan")
    nz = counts[counts > 0]
    m = int(nz.size)
    f1 = int((nz == 1).sum())
    coverage = 1.0 - f1 / n
    h_plugin = h_t if estimator == "plugin" else entropy(nz, "plugin")
    saturated = is_saturated(h_plugin, n, coverage)
    return Measures(
        H_T=h_t,
        I_XT=h_t,
        I_TY=float(i_ty),
        H_Y=float(h_y),
        regions=m,
        N=n,
        regions_per_input=m / n,
        singleton_fraction=f1 / m,
        coverage=coverage,
        saturated=saturated,
    )


def measures(table, estimator: str = "plugin") -> Measures:
    """Information measures of a region table (regions as bins).

    Args:
      table: a :class:`~partax.tables.RegionTable` (``counts`` int64[M], ``label_counts``
        int64[M, C] or None).
      estimator: ``"plugin"`` or ``"miller_madow"``.

    Returns:
      A :class:`Measures` record.

    Example:
      >>> import numpy as np
      >>> from types import SimpleNamespace as T
      >>> t = T(counts=np.array([2, 1, 1]), label_counts=np.array([[2, 0], [0, 1], [1, 0]]))
      >>> m = measures(t); (m.H_T, m.regions, round(m.I_TY, 4))
      (1.5, 3, 0.8113)
    """
    check_estimator(estimator)
    counts = getattr(table, "counts", None)
    if counts is None:
        raise TypeError(f"table: expected a RegionTable with .counts, got {type(table).__name__}")
    label_counts = getattr(table, "label_counts", None)
    if label_counts is not None:
        label_counts = np.asarray(label_counts)
        if label_counts.ndim != 2 or label_counts.shape[0] != np.asarray(counts).shape[0]:
            raise ValueError(
                f"table.label_counts: expected shape ({np.asarray(counts).shape[0]}, C), got {label_counts.shape}"
            )
    return _measures_from_counts(counts, label_counts, estimator)


def information_plane(partition, scope: str = "layer", estimator: str = "plugin") -> dict:
    """Per-layer information measures of a partition.

    Args:
      partition: one :class:`~partax.engine.Partition` (uses ``partition.widths`` and
        ``partition.table(scope, l)`` for ``l = 1..L``); for a stacked net, pass one member's
        (``partax.partition`` returns a tuple, one per member).
      scope: ``"layer"``, ``"prefix"`` or ``"suffix"``.
      estimator: ``"plugin"`` or ``"miller_madow"``.

    Returns:
      A dict of NumPy arrays of length ``L``: ``layer`` (1-based), and every field of
      :class:`Measures` (``regions``, ``H_T``, ``I_XT``, ``I_TY``, ``H_Y``, ``N``,
      ``regions_per_input``, ``singleton_fraction``, ``coverage``, ``saturated``).

    Example:
      >>> ip = information_plane(partax.partition(net, x, labels=y))  # doctest: +SKIP
      >>> ip["I_XT"], ip["I_TY"]  # doctest: +SKIP
    """
    check_estimator(estimator)
    if isinstance(partition, (tuple, list)):
        raise TypeError(
            f"partition: expected one Partition, got a {type(partition).__name__} of {len(partition)} "
            "(partax.partition of a stacked net returns one per member): pass one element, e.g. partition[0]"
        )
    if not hasattr(partition, "widths") or not hasattr(partition, "table"):
        raise TypeError(f"partition: expected a partax Partition, got {type(partition).__name__}")
    L = len(partition.widths)
    rows = [measures(partition.table(scope, l), estimator) for l in range(1, L + 1)]
    out = {"layer": np.arange(1, L + 1, dtype=np.int64)}
    for f in Measures._fields:
        vals = [getattr(r, f) for r in rows]
        if f in ("regions", "N"):
            out[f] = np.asarray(vals, dtype=np.int64)
        elif f == "saturated":
            out[f] = np.asarray(vals, dtype=bool)
        else:
            out[f] = np.asarray(vals, dtype=np.float64)
    return out
