"""Baseline MI estimators on raw activations, for side by side comparison with regions as bins.

:func:`binned_mi` (fixed-range bins of Shwartz-Ziv & Tishby, ``bins`` edges, or the unbounded
``floor(t/binsize)`` of Saxe et al.), :func:`adaptive_binned_mi` (per-unit quantile edges) and
:func:`kde_mi` (the Kolchinsky–Tracey pairwise-distance bounds used by Saxe et al. 2018, computed
in blocks). All in bits; :mod:`partax.info` re-exports them.

Example:
    >>> import numpy as np
    >>> from partax.baselines import binned_mi
    >>> t = np.array([[0.1], [0.12], [0.9], [0.95]])
    >>> binned_mi(t, np.array([0, 0, 1, 1]), bins=3, range=(0.0, 1.0)).I_TY
    1.0
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.entropy import LN2, check_estimator, entropy, is_saturated

__all__ = ["BinnedMI", "binned_mi", "adaptive_binned_mi", "KdeMI", "kde_mi"]


class BinnedMI(NamedTuple):
    """Result of a binning estimator on activations (bits).

    Attributes:
      I_XT: ``H(T_binned)`` (deterministic map of the empirical inputs).
      I_TY: ``I(T_binned; Y)``; ``nan`` without labels.
      H_T: same as ``I_XT``.
      H_Y: label entropy; ``nan`` without labels.
      bins: number of occupied joint bins (distinct binned rows).
      N: number of rows.
      coverage: Good–Turing coverage ``1 - f1 / N`` of the occupied bins.
      saturated: the same rule as :class:`Measures` (plug-in ``H_T >= log2 N - 0.05`` or
        coverage < 0.5): nearly every input has its own bin.
    """

    I_XT: float
    I_TY: float
    H_T: float
    H_Y: float
    bins: int
    N: int
    coverage: float
    saturated: bool


def _check_t(t, name="t") -> np.ndarray:
    t = np.asarray(t)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name}: expected activations of shape (N, width) with N >= 1, got {t.shape}")
    if not np.issubdtype(t.dtype, np.floating) and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"{name}: expected a numeric array, got {t.dtype}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name}: contains NaN or inf")
    return t


def _check_y(y, n: int):
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y: expected integer labels of shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise TypeError(f"y: expected integer labels, got {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError("y: labels must be >= 0")
    return y.astype(np.int64)


def _row_ids(b: np.ndarray) -> np.ndarray:
    """Dense ids (0..K-1) of the distinct rows of an integer matrix ``b[N, w]``."""
    b = np.ascontiguousarray(b.astype(np.int64))
    rows = b.view(np.dtype((np.void, b.dtype.itemsize * b.shape[1]))).ravel()
    _, inv = np.unique(rows, return_inverse=True)
    return inv.ravel()


def _mi_from_ids(ids: np.ndarray, y, estimator: str) -> BinnedMI:
    n = ids.shape[0]
    counts = np.bincount(ids)
    h_t = entropy(counts, estimator)
    if y is None:
        h_y = i_ty = float("nan")
    else:
        c = int(y.max()) + 1
        joint = np.bincount(ids * c + y, minlength=(int(ids.max()) + 1) * c)
        h_y = entropy(np.bincount(y), estimator)
        i_ty = h_t + h_y - entropy(joint, estimator)
    coverage = 1.0 - int((counts == 1).sum()) / n
    h_plugin = h_t if estimator == "plugin" else entropy(counts, "plugin")
    saturated = is_saturated(h_plugin, n, coverage)
    return BinnedMI(I_XT=h_t, I_TY=float(i_ty), H_T=h_t, H_Y=float(h_y), bins=int((counts > 0).sum()), N=n,
                    coverage=coverage, saturated=saturated)


def binned_mi(t, y=None, *, bins: int | None = 30, range=(-1.0, 1.0), binsize: float | None = None,
              estimator: str = "plugin") -> BinnedMI:
    """``I(X;T)`` and ``I(T;Y)`` of binned activations (the binning baselines of the IB literature).

    Two modes:

    * ``binsize=None`` (Shwartz-Ziv & Tishby 2017): ``bins`` is the number of bin **edges**,
      exactly as ``num_of_bins`` in their code: ``edges = np.linspace(lo, hi, bins)`` (so
      ``bins - 1`` equal intervals, 29 for the default 30), and each value ``v`` is mapped to the
      left edge of its bin, ``edges[np.digitize(v, edges) - 1]``. Inside ``[lo, hi]`` this is
      their binning exactly: intervals ``[e_i, e_{i+1})`` closed on the left, plus one more bin
      for the value ``hi`` itself (``np.digitize`` puts it past the last edge). Values above ``hi``
      join that last bin (as in the reference); values below ``lo`` are **clipped** into the first
      bin (the reference's ``edges[-1]`` would wrap them round to ``hi``, an artefact not
      reproduced). ``range=None`` uses the data's own ``(t.min(), t.max())``.
    * ``binsize=s`` (Saxe et al. 2018): bin ``floor(v / s)``, unbounded (``bins`` and ``range``
      are ignored).

    A row of ``t`` (one input's binned activation vector) is one outcome of ``T``.

    Args:
      t: activations ``[N, width]`` (or ``[N]``), floating.
      y: integer labels ``[N]`` or None.
      bins: number of bin edges per unit (fixed-range mode, ``>= 2``): ``bins - 1`` equal
        intervals over ``range`` plus the bin of ``hi``, as in Shwartz-Ziv & Tishby's code.
      range: ``(lo, hi)`` with ``lo < hi``, or None for the data range.
      binsize: bin width for the unbounded mode.
      estimator: ``"plugin"`` or ``"miller_madow"``.

    Returns:
      A :class:`BinnedMI`.

    Example:
      >>> import numpy as np
      >>> binned_mi(np.array([[-0.9], [0.0], [0.95]]), np.array([0, 1, 1]), bins=3).bins
      2
      >>> binned_mi(np.array([[-0.9], [0.0], [1.0]]), bins=3).bins  # hi has its own bin
      3
    """
    check_estimator(estimator)
    t = _check_t(t)
    y = _check_y(y, t.shape[0])
    if binsize is not None:
        binsize = float(binsize)
        if not (binsize > 0 and np.isfinite(binsize)):
            raise ValueError(f"binsize: expected a positive finite number, got {binsize}")
        b = np.floor(t.astype(np.float64) / binsize).astype(np.int64)
    else:
        if bins is None or isinstance(bins, bool) or int(bins) != bins or int(bins) < 2:
            raise ValueError(f"bins: expected an int >= 2 (the number of bin edges), got {bins!r}")
        bins = int(bins)
        if range is None:
            lo, hi = float(t.min()), float(t.max())
            if hi <= lo:
                hi = lo + 1.0
        else:
            try:
                lo, hi = (float(r) for r in range)
            except (TypeError, ValueError):
                raise ValueError(f"range: expected (lo, hi) or None, got {range!r}") from None
            if not (lo < hi and np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(f"range: expected finite lo < hi, got {range!r}")
        edges = np.linspace(lo, hi, bins)
        # index of the left edge, as edges[np.digitize(t, edges) - 1]; below lo: clipped to 0
        b = np.maximum(np.digitize(t.astype(np.float64), edges) - 1, 0)
    return _mi_from_ids(_row_ids(b), y, estimator)


def adaptive_binned_mi(t, y=None, *, bins: int = 30, estimator: str = "plugin") -> BinnedMI:
    """Binning estimator with per-unit quantile (equal-mass) edges.

    Unit ``j`` gets edges ``e = np.quantile(t[:, j], np.linspace(0, 1, bins + 1))``; a value ``v``
    goes to bin ``clip(#{k : e_k <= v} - 1, 0, bins - 1)`` (ties between repeated edges, e.g. the
    zeros of a ReLU, all land in one bin).

    Args:
      t: activations ``[N, width]``.
      y: integer labels ``[N]`` or None.
      bins: number of bins per unit.
      estimator: ``"plugin"`` or ``"miller_madow"``.

    Returns:
      A :class:`BinnedMI`.
    """
    check_estimator(estimator)
    t = _check_t(t).astype(np.float64)
    y = _check_y(y, t.shape[0])
    if int(bins) < 1:
        raise ValueError(f"bins: expected a positive int, got {bins}")
    bins = int(bins)
    q = np.linspace(0.0, 1.0, bins + 1)
    b = np.empty(t.shape, dtype=np.int64)
    for j in np.arange(t.shape[1]):
        e = np.quantile(t[:, j], q)
        b[:, j] = np.clip(np.searchsorted(e, t[:, j], side="right") - 1, 0, bins - 1)
    return _mi_from_ids(_row_ids(b), y, estimator)


class KdeMI(NamedTuple):
    """Kolchinsky–Tracey pairwise-distance bounds (bits), as used by Saxe et al. 2018.

    Attributes:
      I_XT_upper: ``H_KL(T) - H(T|X)`` (the "KDE" estimate).
      I_XT_lower: ``H_BD(T) - H(T|X)``.
      I_TY_upper: ``H_KL(T) - sum_c p_c H_KL(T|Y=c)``; ``nan`` without labels.
      I_TY_lower: the same with Bhattacharyya bounds; ``nan`` without labels.
      H_T_upper: ``H_KL(T)``.
      H_T_lower: ``H_BD(T)``.
      H_T_given_X: ``d/2 log2(2 pi e var)``.
    """

    I_XT_upper: float
    I_XT_lower: float
    I_TY_upper: float
    I_TY_lower: float
    H_T_upper: float
    H_T_lower: float
    H_T_given_X: float


@functools.partial(jax.jit, static_argnames=("row_block", "col_block", "num_classes"))
def _kde_sums(t, y, valid, inv2var, *, row_block: int, col_block: int, num_classes: int):
    """Per row ``i`` and scale ``s`` in ``inv2var`` (shape (S,)): ``sum_j exp(-|t_i - t_j|^2 s)``
    over the valid ``j`` of each class. Returns ``[Np, S, C]``.

    Every real row meets itself (distance exactly 0, term 1), so each row's largest exponent is
    0 and the plain sums lie in ``[1, N]``: this is the logsumexp with its maximum known ahead,
    accumulated over column blocks without overflow or a running maximum.
    ``t`` is padded to ``[Np, d]`` with ``Np`` a multiple of both blocks; ``valid`` marks real rows.
    """
    n_pad, d = t.shape
    n_rb = n_pad // row_block
    n_cb = n_pad // col_block
    onehot = jax.nn.one_hot(y, num_classes, dtype=t.dtype) * valid[:, None].astype(t.dtype)
    tc = t.reshape(n_cb, col_block, d)
    oc = onehot.reshape(n_cb, col_block, num_classes)
    S = inv2var.shape[0]

    def row_fn(tr):  # [rb, d]
        def col_step(acc, cargs):
            tcb, ocb = cargs
            diff = tr[:, None, :] - tcb[None, :, :]
            d2 = jnp.sum(diff * diff, axis=-1)  # [rb, cb]
            e = jnp.exp(-d2[None, :, :] * inv2var[:, None, None])  # [S, rb, cb]
            part = jnp.einsum("src,ck->rsk", e, ocb, precision=jax.lax.Precision.HIGHEST)
            return acc + part, None

        init = jnp.zeros((row_block, S, num_classes), t.dtype)
        acc, _ = jax.lax.scan(col_step, init, (tc, oc))
        return acc

    sums = jax.lax.map(row_fn, t.reshape(n_rb, row_block, d))
    return sums.reshape(n_pad, S, num_classes)


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def kde_mi(t, y=None, *, noise_var: float = 1e-3, block_size: int | None = None) -> KdeMI:
    """Kolchinsky–Tracey pairwise-distance bounds on ``I(X;T)`` and ``I(T;Y)`` (bits).

    ``T = t(X) + Z`` with Gaussian noise ``Z ~ N(0, noise_var I_d)``; ``T`` is then a mixture of
    ``N`` Gaussians centred on the rows of ``t``, and (natural log, converted to bits at the end)

    * ``H_KL(T) = d/2 - (1/N) sum_i log[(1/N) sum_j N(t_i; t_j, var I)]`` (upper bound; pairwise
      KL divergence ``|t_i - t_j|^2 / (2 var)``),
    * ``H_BD(T) = H_KL(T)`` evaluated with ``4 var`` plus ``(d/2) log(1/4)`` (lower bound; pairwise
      Bhattacharyya distance ``|t_i - t_j|^2 / (8 var)``),
    * ``H(T|X) = d/2 log(2 pi e var)``, ``I(T;X) = H(T) - H(T|X)``,
    * ``I(T;Y) = H(T) - sum_c p_c H(T | Y=c)``, the class-conditional entropies being the same
      bound over the rows of class ``c`` (lower bound uses lower bounds throughout, as Saxe et al.).

    The ``N x N`` distance matrix is never formed: a jitted ``lax.map`` over row blocks scans
    column blocks accumulating the (max-known) logsumexp sums, so memory is ``O(block^2 d)``.

    Args:
      t: activations ``[N, d]`` (float; computed in float32).
      y: integer labels ``[N]`` or None.
      noise_var: variance of the added Gaussian noise (> 0).
      block_size: rows and columns per block (default: 256, or fewer for small ``N``).

    Returns:
      A :class:`KdeMI`.

    Example:
      >>> import numpy as np
      >>> r = kde_mi(np.zeros((8, 3)), np.array([0, 1] * 4))
      >>> abs(r.I_XT_upper) < 1e-5 and abs(r.I_TY_upper) < 1e-5
      True
    """
    t = _check_t(t).astype(np.float32)
    n, d = t.shape
    y = _check_y(y, n)
    noise_var = float(noise_var)
    if not (noise_var > 0 and np.isfinite(noise_var)):
        raise ValueError(f"noise_var: expected a positive finite number, got {noise_var}")
    if block_size is None:
        block_size = min(256, _round_up(n, 8))
    block_size = int(block_size)
    if block_size < 1:
        raise ValueError(f"block_size: expected a positive int, got {block_size}")
    n_pad = _round_up(n, block_size)
    tp = np.zeros((n_pad, d), np.float32)
    tp[:n] = t
    yp = np.zeros((n_pad,), np.int32)
    if y is not None:
        yp[:n] = y
    valid = np.zeros((n_pad,), bool)
    valid[:n] = True
    variances = np.array([noise_var, 4.0 * noise_var])
    inv2var = (1.0 / (2.0 * variances)).astype(np.float32)
    num_classes = 1 if y is None else int(y.max()) + 1
    sums = _kde_sums(
        jnp.asarray(tp), jnp.asarray(yp), jnp.asarray(valid), jnp.asarray(inv2var),
        row_block=block_size, col_block=block_size, num_classes=num_classes,
    )
    sums = np.asarray(sums, np.float64)[:n]  # [n, S, C]
    lse_all = np.log(sums.sum(axis=2))  # [n, S]
    lse_same = np.log(sums[np.arange(n), :, yp[:n]])  # [n, S]

    def h_mix(lse, counts):
        # per-row: -[lse_i - log n_group - d/2 log(2 pi var)] + d/2, averaged
        out = []
        for k, v in enumerate(variances):
            norm = 0.5 * d * math.log(2 * math.pi * v)
            out.append(0.5 * d - (lse[:, k] - np.log(counts) - norm))
        return out  # per-row contributions for var and 4 var

    hk_all, h4_all = h_mix(lse_all, np.full(n, float(n)))
    h_up = hk_all.mean()
    h_lo = h4_all.mean() + 0.5 * d * math.log(0.25)
    h_tx = 0.5 * d * math.log(2 * math.pi * math.e * noise_var)
    if y is None:
        ity_up = ity_lo = float("nan")
    else:
        class_counts = np.bincount(y)
        hk_s, h4_s = h_mix(lse_same, class_counts[y].astype(np.float64))
        # sum_c p_c H(T|Y=c) = (1/N) sum_i [per-row term of i's class]
        hc_up = hk_s.mean()
        hc_lo = h4_s.mean() + 0.5 * d * math.log(0.25)
        ity_up = (h_up - hc_up) / LN2
        ity_lo = (h_lo - hc_lo) / LN2
    return KdeMI(
        I_XT_upper=(h_up - h_tx) / LN2,
        I_XT_lower=(h_lo - h_tx) / LN2,
        I_TY_upper=float(ity_up),
        I_TY_lower=float(ity_lo),
        H_T_upper=h_up / LN2,
        H_T_lower=h_lo / LN2,
        H_T_given_X=h_tx / LN2,
    )
