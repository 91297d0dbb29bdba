"""All of R^d in the enumeration: rank reduction, bounded LPs, boundedness and the certificate box.

The parts of :func:`partax.geometry.enumerate_regions` with ``domain=None`` (see its module
docstring, "What complete=True certifies", *In R^d*): the first layer's rank
(:func:`reduce_rank`: a rank-deficient net is enumerated in the row space of ``W_1``), the
distance scale of its hyperplanes (:func:`hyperplane_scale`: seeds and the LPs' local box),
the local box that keeps each Chebyshev LP bounded (:func:`local_box`), the recession-cone LP
that decides boundedness (:func:`recession_unbounded`) and the certified big box with the
regions clipped to it (:func:`certify_rd`).

**General nets** (:class:`~partax.geometry.code_regions.CodeSites`): the "first layer" is the
map ``z = A_1 x + beta_1`` of the first code site's input (the same for every code). If ``A_1``
has rank ``< d`` every region is a cylinder; the reduction to the row space is done for MLPs
only, so a general net is then refused (``ValueError`` naming ``domain``). Otherwise a region
may still contain a line when the first site is a max pool (its rows are differences
``z_j - z_a``); the certificate needs every region found to be pointed, so :func:`certify_rd`
checks the rank of each region's rows (``stats["unpointed_regions"]``; any such region and the
result is not complete).

Example:
    >>> import numpy as np
    >>> from partax.geometry.unbounded import recession_unbounded
    >>> r2 = np.sqrt(0.5)
    >>> quadrant = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]             # x <= 0, y <= 0 (a row twice)
    >>> triangle = [[1.0, 0.0], [0.0, 1.0], [-r2, -r2]]              # and x + y >= -1
    >>> stats = dict(recession_lps=0)
    >>> recession_unbounded(np.array([quadrant, triangle]), np.ones((2, 3), bool), stats).tolist()
    [True, False]
"""

from __future__ import annotations

import numpy as np

from partax.geometry import lp
from partax.geometry.code_regions import CHUNK, CodeSites, chebyshev_centres, region_unit_rows
from partax.geometry.code_regions import site_maps
from partax.geometry.domains import Box
from partax.geometry.linearize import Dense
from partax.geometry.polar import polyhedra_geometry
from partax.layers import HardTanh, MaxPool, window_indices

__all__ = ["reduce_rank", "hyperplane_scale", "local_box", "recession_unbounded", "certify_rd"]


def _first_functions(cs: CodeSites):
    """The first site's row functions of a general net, the same for every code: ``(W[m, d], c[m])``.

    ReLU / leaky ReLU: ``z``; hard-tanh: ``z - lo`` and ``z - hi``; max pool: ``z_j - z_i``
    for the pairs of slots of each window.
    """
    maps = site_maps(cs._replace(depth=1), np.zeros((1, cs.all_widths[0]), bool))
    A, beta = maps.A[0][0], maps.beta[0][0]  # [n, d], [n]
    layer, shape = cs.sites[0]
    if isinstance(layer, HardTanh):
        return np.concatenate([A, A]), np.concatenate([beta - layer.lo, beta - layer.hi])
    if isinstance(layer, MaxPool):
        idx = window_indices(shape, layer.window, layer.strides, layer.padding)
        i, j = np.triu_indices(idx.shape[1], 1)
        pi, pj = idx[:, i].ravel(), idx[:, j].ravel()
        real = (pi >= 0) & (pj >= 0)
        return A[pj[real]] - A[pi[real]], beta[pj[real]] - beta[pi[real]]
    return A, beta


def reduce_rank(hl):
    """Rank reduction of the first layer: ``(hl in the row space of W_1, Q: float64[d, r])``.

    If ``W_1`` has rank ``r < d`` the net depends on ``x`` only through ``Q^T x`` (``Q`` an
    orthonormal basis of the span of ``W_1``'s columns); the reduced net has first weights
    ``Q^T W_1``. Returns ``(hl, None)`` when the rank is full.

    Args:
      hl: the hidden layers (:class:`HiddenLayers`; a :class:`CodeSites` of full rank is
        returned as it is, one of deficient rank is refused).

    Returns:
      ``(hl, Q)``.
    """
    if isinstance(hl, CodeSites):
        maps = site_maps(hl._replace(depth=1), np.zeros((1, hl.all_widths[0]), bool))
        A1 = maps.A[0][0]
        S = np.linalg.svd(A1, compute_uv=False)
        top = float(S.max()) if S.size else 0.0
        r = int(np.sum(S > top * 1e-12 * max(A1.shape))) if top > 0 else 0
        if r < hl.d:
            raise ValueError(f"domain: domain=None (all of R^d) needs the input map of the first code site to have "
                             f"rank {hl.d} for a general net; it has rank {r}, so every region is a cylinder "
                             "(reduced to the row space for MLPs only): pass a partax.Box")
        return hl, None
    W1 = hl.layers[0].W
    U, S, _ = np.linalg.svd(W1, full_matrices=False)
    top = float(S.max()) if S.size else 0.0
    r = int(np.sum(S > top * 1e-12 * max(W1.shape))) if top > 0 else 0
    if r == hl.d:
        return hl, None
    if r < 2:
        raise ValueError(f"net: the first layer's weights have rank {r} < 2, so the partition of R^d is that of a "
                         "line (or trivial); use partax.geometry.slices.line_regions along the weights' direction")
    Q = U[:, :r]
    first = Dense(Q.T @ W1, hl.layers[0].b)
    return hl._replace(layers=(first,) + tuple(hl.layers[1:])), Q


def hyperplane_scale(hl) -> float:
    """Typical distance of the first layer's hyperplanes from the origin (at least 1).

    Args:
      hl: the hidden layers (a general net's: the first code site's row functions).

    Returns:
      ``max(1, max_i |b_i| / ||w_i||)`` over the first layer's live units.
    """
    if isinstance(hl, CodeSites):
        W, c = _first_functions(hl)
        W1, b1 = W.T, c
    else:
        W1, b1 = hl.layers[0].W, hl.layers[0].b
    nrm = np.linalg.norm(W1, axis=0)
    live = nrm > 0
    return float(max(1.0, np.max(np.abs(b1[live]) / nrm[live], initial=0.0)))


def local_box(hint, reach):
    """Unit rows of the boxes ``|z - hint|_inf <= reach``.

    Args:
      hint: ``[B, d]`` the boxes' centres.
      reach: their half-width.

    Returns:
      ``(A: [B, 2d, d], b: [B, 2d])``.
    """
    B, d = hint.shape
    eye = np.eye(d)
    A = np.broadcast_to(np.concatenate([eye, -eye]), (B, 2 * d, d))
    return A, np.concatenate([hint + reach, -(hint - reach)], axis=1)


def recession_unbounded(Au, live, stats) -> np.ndarray:
    """``bool[B]``: whether ``{r : Au r <= 0}`` is not ``{0}`` (HiGHS; rows of full rank).

    The LP ``max sum(-Au r)`` s.t. ``Au r <= 0``, ``-Au r <= 1`` is feasible (``r = 0``) and
    bounded; its optimum is 0 iff the cone is ``{0}``, and at least 1 otherwise (scale a
    non-zero direction until its largest slack is 1).

    Args:
      Au: ``[B, m, d]`` unit rows; live: ``bool[B, m]`` their live mask.
      stats: the enumeration's counters (``recession_lps`` is updated).

    Returns:
      ``bool[B]``, True for an unbounded region.
    """
    B, m, d = Au.shape
    if B == 0:
        return np.zeros(0, bool)
    A = np.where(live[..., None], Au, 0.0)
    c = A.sum(axis=1)  # minimise sum(A r) = maximise sum(-A r)
    AA = np.concatenate([A, -A], axis=1)
    bb = np.concatenate([np.zeros((B, m)), np.where(live, 1.0, 0.0)], axis=1)
    res = lp.solve(c, AA, bb, solver="highs", tol=1e-9)
    stats["recession_lps"] += B
    if np.any(res.status != lp.OPTIMAL):
        raise RuntimeError("enumerate_regions: a recession-cone LP failed (HiGHS); please report")
    return -res.value > 0.5


def _unpointed(Au, live, d) -> np.ndarray:
    """``bool[B]``: regions whose live rows have rank ``< d`` (they contain a line)."""
    A = np.where(live[..., None], Au, 0.0)
    S = np.linalg.svd(A, compute_uv=False)  # [B, min(m, d)]
    if S.shape[-1] < d:
        return np.ones(len(A), bool)
    return S[:, d - 1] <= 1e-9 * np.maximum(S[:, 0], 1e-300)


def certify_rd(hl, bits, pts, rad, vol, out, cat, solver, tol, min_radius, want_volume, stats):
    """R^d: boundedness per region, the certified big box and the clipped volumes in it.

    Returns ``(bounded, volumes, points, radii, box, box_volume, ok)``; ``out["_clipped"]``
    receives the volumes of the regions clipped to the box (their sum is checked against the
    box's volume by the caller). ``ok`` is False when the box could not be certified to hold
    every vertex, or when the hull and the recession LP disagree.

    Args:
      hl: the hidden layers (in the row space of ``W_1`` if its rank is deficient).
      bits, pts, rad, vol: codes, interior points, radii and volumes of the ``R`` regions found.
      out: the traversal's per-chunk lists (``marginal``, ``excluded``, ``vmin``, ``vmax``,
        ``boxed``), concatenated by ``cat(list, empty_shape, dtype)``.
      solver, tol, min_radius, want_volume: as :func:`partax.geometry.enumerate_regions`.
      stats: the enumeration's counters (updated).
    """
    R, d = pts.shape
    marginal = cat(out["marginal"], (0,), bool)
    excluded = cat(out["excluded"], (0,), bool)
    vmin = cat(out["vmin"], (0, d), np.float64)
    vmax = cat(out["vmax"], (0, d), np.float64)
    boxed = cat(out["boxed"], (0,), bool)
    none = np.zeros((0, d)), np.zeros(0)
    # 1. boundedness: the recession-cone LP wherever the polar hull is not conclusive
    bounded = np.ones(R, bool)
    cand = np.flatnonzero(marginal | excluded)
    general = isinstance(hl, CodeSites)
    if general:  # every region found must be pointed (a vertex on every facet; module docstring)
        stats["unpointed_regions"] = 0
        cand = np.arange(R)
    for s in range(0, len(cand), CHUNK):
        c = cand[s:s + CHUNK]
        Au, _, live, _ = region_unit_rows(hl, bits[c], *none)
        if general:
            flat = _unpointed(Au, live, d)
            stats["unpointed_regions"] += int(flat.sum())
            keep = (marginal | excluded)[c]
            c, Au, live = c[keep], Au[keep], live[keep]
        bounded[c] = ~recession_unbounded(Au, live, stats)
    disagree = bounded & excluded
    stats["bounded_disagreements"] = int(disagree.sum())
    vol = np.where(bounded, np.where(disagree, np.nan, vol), np.inf)
    # 2. the big box: every vertex of every region found in its interior
    known = np.all(np.isfinite(vmin), axis=1)
    ok = bool(known.all()) and R > 0 and stats["bounded_disagreements"] == 0
    stats["cert_box_all_vertices_inside"] = ok
    ok = ok and not stats.get("unpointed_regions")
    if R == 0 or not known.any():
        out["_clipped"] = np.full(1, np.nan)
        return bounded, vol, pts, rad, None, float("nan"), False
    blo, bhi = vmin[known].min(axis=0), vmax[known].max(axis=0)
    margin = 0.1 * (1.0 + float(np.max(bhi - blo)))
    blo, bhi = blo - margin, bhi + margin
    box = Box(blo, bhi)
    box_volume = box.volume(d)
    stats["cert_box"] = (blo.tolist(), bhi.tolist())
    # 3. the regions that reach out of the box (or whose LP was limited by its local box),
    #    clipped to it: interior point, inradius and exact volume of region ∩ box
    clipped = np.where(bounded, vol, np.nan)
    redo = np.flatnonzero(~bounded | boxed)
    pts, rad = pts.copy(), rad.copy()
    if want_volume or len(redo):
        bA, bb = box.rows(d)
        for s in range(0, len(redo), CHUNK):
            c = redo[s:s + CHUNK]
            Au, bu, live, _ = region_unit_rows(hl, bits[c], bA, bb)
            hint = np.clip(pts[c], blo, bhi)
            cen, r = chebyshev_centres(Au, bu, hint, solver, tol, stats)
            good = np.isfinite(r) & (r > min_radius)
            if not good.all():
                ok = False
            g = np.flatnonzero(good)
            if len(g):
                geo = polyhedra_geometry(Au[g], bu[g], live[g], cen[g], r[g], tol, want_volume, stats)
                clipped[c[g]] = geo.volumes
                pts[c[g]], rad[c[g]] = cen[g], r[g]
    out["_clipped"] = clipped if want_volume else np.full(1, np.nan)
    return bounded, vol, pts, rad, box, box_volume, ok
