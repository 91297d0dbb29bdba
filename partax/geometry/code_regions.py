"""Regions named by float64 codes: their rows and their Chebyshev centres (enumeration).

The per-region work of :func:`partax.geometry.enumerate_regions` before any hull: a
region of the ``prefix`` partition of layers ``1..depth`` is named by its float64 code
(:func:`codes64`); its H-representation comes from the frozen-code linearisation
(:func:`partax.geometry.linearize.push` of the identity, sign-oriented by
:func:`partax.geometry.hrep.code_rows`, normalised by :func:`partax.geometry.hrep.unit_rows`
with the active units' rows strict), and its interior point and inradius from a batched
Chebyshev LP (:func:`chebyshev_centres`: the backend policy of the enumeration, every LP
through :func:`partax.geometry.lp.solve`).

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry.code_regions import codes64, hidden_layers, region_unit_rows
    >>> net = partax.mlp(jax.random.key(0), [2, 6, 1], bias_std=0.5)
    >>> hl = hidden_layers(net, 1)
    >>> bits = codes64(hl, np.array([[0.1, 0.2]]))
    >>> Au, bu, live, zero = region_unit_rows(hl, bits, np.zeros((0, 2)), np.zeros(0))
    >>> Au.shape, bool(np.all(Au[0] @ [0.1, 0.2] <= bu[0]))
    ((1, 6, 2), True)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from partax.geometry import lp
from partax.geometry.hrep import code_rows, unit_rows
from partax.geometry.linearize import AffineFamily, float64_arrays, forward_codes, push

__all__ = ["HiddenLayers", "hidden_layers", "codes64", "split_bits", "region_rows", "region_unit_rows",
           "pick_solver", "bucket", "chebyshev_centres", "SOLVERS", "CHUNK"]

SOLVERS = ("auto", "numpy", "ipm", "highs")  # Chebyshev LP backends of enumerate_regions
_IPM_MIN_BATCH = 256  # below this "auto" uses HiGHS on an accelerator (no compilation for small frontiers)
_NUMPY_MIN_BATCH = 16  # below this "auto" uses HiGHS on a CPU
_NUMPY_MAX_ITER = 80  # iteration limit of the NumPy interior point (lanes beyond go to HiGHS)
_BATCH_BUCKETS = (256, 2048)  # accelerator IPM: batches padded to one of these sizes
_THIN = 1e-7  # interior-point radii below this are re-solved by HiGHS
CHUNK = 2048  # regions per batched LP call


class HiddenLayers(NamedTuple):
    """Hidden layers ``1..depth`` of a net in float64 (a :class:`~partax.geometry.linearize.Params64` prefix).

    Attributes:
      layers: tuple of :class:`~partax.geometry.linearize.Dense`, the hidden layers ``1..depth``.
      alpha: the slope of an inactive unit.
    """

    layers: tuple
    alpha: float

    @property
    def widths(self) -> tuple:
        return tuple(layer.width for layer in self.layers)

    @property
    def d(self) -> int:
        """The input dimension."""
        return int(self.layers[0].W.shape[0])


def hidden_layers(net, depth: int) -> HiddenLayers:
    """The hidden layers ``1..depth`` of ``net`` from its float64 parameters.

    Args:
      net: an unstacked :class:`partax.Net`.
      depth: the number of hidden layers.

    Returns:
      :class:`HiddenLayers`.
    """
    params = float64_arrays(net)
    return HiddenLayers(tuple(params.layers[:depth]), params.alpha)


def codes64(hl: HiddenLayers, x) -> np.ndarray:
    """Float64 codes of layers ``1..depth`` (bit = pre-activation > 0).

    Args:
      hl: the hidden layers.
      x: points ``[N, d]``.

    Returns:
      ``bool[N, n_tot]``, the layers side by side.
    """
    return np.concatenate(forward_codes(hl, x, len(hl.layers)), axis=1)


def split_bits(hl: HiddenLayers, bits: np.ndarray) -> list:
    """The codes split into one array per layer.

    Args:
      hl: the hidden layers.
      bits: ``bool[R, n_tot]``.

    Returns:
      A list of ``bool[R, n_l]``.
    """
    cuts = np.cumsum(hl.widths)[:-1]
    return np.split(bits, cuts, axis=1)


def region_rows(hl: HiddenLayers, bits: np.ndarray):
    """Sign-oriented rows ``A z <= b`` of the regions with codes ``bits[R, n_tot]``.

    Args:
      hl: the hidden layers.
      bits: ``bool[R, n_tot]`` codes.

    Returns ``(A: float64[R, n_tot, d], b: float64[R, n_tot])`` (no domain rows, not scaled).
    """
    masks = split_bits(hl, bits)
    fams = push(hl, AffineFamily(np.zeros(hl.d), np.eye(hl.d)), masks)
    return code_rows([(f.rows, f.offset) for f in fams], masks)


def region_unit_rows(hl: HiddenLayers, bits, box_A, box_b):
    """Rows of the codes, the box rows appended, made unit: ``(Au, bu, live, zero)``.

    The rows of active units are strict (the code needs a pre-activation ``> 0``), so a unit
    whose pre-activation is a constant ``c`` on the region gives a dead row that holds iff
    the code is consistent (``c > 0`` for an active unit, ``c <= 0`` for an inactive one; see
    :func:`partax.geometry.hrep.unit_rows`). ``zero``: ``bool[R, n_tot]`` units identically 0
    on the region (dead row and zero constant).

    Args:
      hl: the hidden layers.
      bits: ``bool[R, n_tot]`` codes.
      box_A, box_b: ``[e, d]``, ``[e]`` rows shared by every region (a box; ``e = 0`` in R^d).

    Returns:
      ``(Au[R, n_tot + e, d], bu[R, n_tot + e], live, zero)``.
    """
    B = len(bits)
    A, b = region_rows(hl, bits)
    n_tot = b.shape[1]
    A = np.concatenate([A, np.broadcast_to(box_A, (B,) + box_A.shape)], axis=1)
    b_all = np.concatenate([b, np.broadcast_to(box_b, (B, box_b.shape[0]))], axis=1)
    strict = np.concatenate([bits, np.zeros((B, box_b.shape[0]), bool)], axis=1)
    rows = unit_rows(A, b_all, strict=strict)
    zero = ~rows.live[:, :n_tot] & (np.abs(b) <= 1e-12 * max(1.0, float(np.max(np.abs(b), initial=0.0))))
    return rows.A, rows.b, rows.live, zero


def pick_solver(solver: str, B: int) -> str:
    """The Chebyshev LP backend of :func:`chebyshev_centres` for a batch of ``B`` regions.

    Args:
      solver: one of :data:`SOLVERS`.
      B: the batch size.

    Returns:
      ``"numpy"``, ``"ipm"`` or ``"highs"``.
    """
    if solver != "auto":
        return solver
    if lp.default_solver() == "ipm":  # an accelerator: the compiled interior point
        return "ipm" if B >= _IPM_MIN_BATCH else "highs"
    return "numpy" if B >= _NUMPY_MIN_BATCH else "highs"


def bucket(B: int) -> int:
    """The padded batch size of an accelerator interior-point batch.

    Args:
      B: the number of LPs.

    Returns:
      The first of ``_BATCH_BUCKETS`` that holds ``B``, else the next power of two.
    """
    for size in _BATCH_BUCKETS:
        if B <= size:
            return size
    return 1 << (B - 1).bit_length()


def chebyshev_centres(Au, bu, x0, solver, tol, stats):
    """Chebyshev centres/radii of the unit-row polytopes ``Au z <= bu`` (bounded by box rows).

    Every LP goes through :func:`partax.geometry.lp.solve` (backend by :func:`pick_solver`);
    lanes that failed, are not strictly inside by the claimed radius, or are thin are
    re-solved by HiGHS.

    Args:
      Au, bu: ``[B, m, d]``, ``[B, m]`` unit rows (:func:`region_unit_rows`).
      x0: ``[B, d]`` starting centres (interior points).
      solver: one of :data:`SOLVERS`.
      tol: LP tolerance.
      stats: the enumeration's counters (updated).

    Returns ``(centers: float64[B, d], radii: float64[B])``; radius ``-inf`` for a polytope
    with an inconsistent constant row (``0 <= -1``: empty without an LP), NaN where no
    backend converged.
    """
    B, m, d = Au.shape
    dead = ~np.any(Au != 0, axis=2)
    inconsistent = np.any(dead & (bu < 0), axis=1)
    bu = np.where(dead, 1.0, bu)
    use = pick_solver(solver, B)
    c, AL, bL = lp.chebyshev_lp(Au, bu, radius_cap=1e6)
    if use == "ipm":
        # Bounded shape buckets: the batch padded to one of _BATCH_BUCKETS, the rows to a
        # power of two >= 16 (inert 0 <= 1 rows), so that only a few shapes ever compile.
        P = bucket(B)
        mp = max(16, 1 << (AL.shape[1] - 1).bit_length())
        AP = np.zeros((P, mp, d + 1))
        bP = np.ones((P, mp))
        AP[:B, : AL.shape[1]] = AL
        bP[:B, : AL.shape[1]] = bL
        AP[B:] = AP[0]
        bP[B:] = bP[0]
        cP = np.concatenate([c, np.repeat(c[:1], P - B, axis=0)])
        x0P = np.zeros((P, d + 1))
        x0P[:B, :d] = x0
        res = lp.solve(cP, AP, bP, solver="ipm", tol=tol, x0=x0P)
        x, status = res.x[:B], res.status[:B]
        stats["ipm_lps"] += B
    elif use == "numpy":
        start = np.zeros((B, d + 1))
        start[:, :d] = x0
        res = lp.solve(c, AL, bL, solver="numpy", tol=tol, x0=start, max_iter=_NUMPY_MAX_ITER)
        x, status = res.x, res.status
        stats["numpy_lps"] += B
    else:
        res = lp.solve(c, AL, bL, solver="highs", tol=tol)
        x, status = res.x, res.status
        stats["highs_lps"] += B
    centers, radii = x[:, :d].copy(), x[:, d].copy()
    # Lanes that failed, whose centre is not strictly inside by the claimed radius, or whose
    # radius is tiny (empty or razor-thin: decided by the simplex method), get HiGHS.
    slack = bu - np.einsum("bmk,bk->bm", Au, centers)
    bad = (status != lp.OPTIMAL) | ~np.isfinite(radii) | (slack.min(axis=1) < 0.5 * radii)
    bad |= radii < _THIN
    bad &= ~inconsistent
    if use != "highs" and bad.any():
        idx = np.flatnonzero(bad)
        res = lp.solve(c[idx], AL[idx], bL[idx], solver="highs", tol=tol)
        stats["lp_fallbacks"] += len(idx)
        stats["highs_lps"] += len(idx)
        centers[idx] = res.x[:, :d]
        radii[idx] = np.where(res.status == lp.OPTIMAL, res.x[:, d], np.nan)
        status = status.copy()
        status[idx] = res.status
    radii = np.where(status == lp.OPTIMAL, radii, np.nan)
    # The true inradius is the smallest slack (LP rounding): never report more.
    slack = bu - np.einsum("bmk,bk->bm", Au, centers)
    radii = np.minimum(radii, slack.min(axis=1))
    radii[inconsistent] = -np.inf
    return centers, radii
