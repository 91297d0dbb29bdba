"""Facets, vertices and exact volumes of polyhedra around an interior point (enumeration).

For each region of :func:`partax.geometry.enumerate_regions`, given its unit rows and its
Chebyshev centre: the **polar (dual) convex hull** around the centre
(``scipy.spatial.ConvexHull``, one per region) gives the non-redundant rows (the facets) and
the vertices, and the **flag triangulation** gives the exact volume of every region of a
chunk at once (``d <= 4``; the convex hull of the vertices for ``d = 5, 6``). See the
enumeration's module docstring (steps 4 and 5) for the method.

Example:
    >>> import numpy as np
    >>> from partax.geometry.polar import polyhedra_geometry
    >>> eye = np.eye(2)
    >>> Au = np.concatenate([eye, -eye])[None]          # the square |z|_inf <= 1
    >>> stats = dict(hull_failures=0, facet_lp_failures=0)
    >>> g = polyhedra_geometry(Au, np.ones((1, 4)), np.ones((1, 4), bool), np.zeros((1, 2)), np.ones(1),
    ...                        1e-9, True, stats)
    >>> g.rows.tolist(), float(g.volumes[0])
    ([0, 1, 2, 3], 4.0)
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import NamedTuple

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial import QhullError

from partax.geometry import lp

__all__ = ["PolyhedraGeometry", "polyhedra_geometry", "FLAG_MAX_DIM"]

FLAG_MAX_DIM = 4  # volumes by flag triangulation up to this dimension, qhull beyond
_POLAR_BALL = 1e-9  # polar hull containing this ball around the origin: the region is bounded
_FLAT_RTOL = 1e-12  # a face whose scatter's second eigenvalue is below this of its largest is flat


def _polar(Au, bu, live, center, radius, d, origin):
    """Facets and vertices of one polyhedron ``Au z <= bu`` around an interior point.

    The rows map to the polar points ``a_i / s_i`` (``s_i`` the slack at ``center``, in
    coordinates centred on ``center`` and scaled by ``1/radius``, so every slack is >= 1
    and the polar points lie in the unit ball). The vertices of their convex hull are the
    non-redundant rows; each (triangulated) hull facet ``n·y + o = 0`` is a vertex
    ``-n / o`` of the polyhedron, tight at the ``d`` rows of the hull facet. With ``origin``
    (R^d: the polyhedron may be unbounded) the origin joins the polar points; hull facets
    through it (or within ``1e-12`` of it) are recession directions, not vertices.

    Returns:
      ``(facets: int64[F] row indices, verts: float64[V, d] scaled centred vertices,
      tight: int64[V, d] row indices of each vertex, unsorted, marginal: bool (the hull does
      not contain the ball of radius _POLAR_BALL around the origin: possibly unbounded),
      excluded: bool (some hull facet was dropped as a direction), dirs: float64[D, d] those
      directions (unit recession directions), dir_tight: int64[D, d] the rows of each (the
      origin's slot is -1))``.
    """
    rows = np.flatnonzero(live)
    A = Au[rows]
    slack = (bu[rows] - A @ center) / radius
    pts = A / slack[:, None]
    if origin:
        pts = np.concatenate([pts, np.zeros((1, d))])
    hull = ConvexHull(pts)
    eq = hull.equations
    simp = hull.simplices
    marginal = bool(np.max(eq[:, d]) > -_POLAR_BALL)
    excluded = False
    dirs, dir_tight = np.zeros((0, d)), np.zeros((0, d), np.int64)
    if origin:
        at_inf = np.any(simp == len(rows), axis=1) | (eq[:, d] > -1e-12)
        excluded = bool(at_inf.any())
        dirs = eq[at_inf, :d]
        dir_tight = np.where(simp[at_inf] < len(rows), rows[np.minimum(simp[at_inf], len(rows) - 1)], -1)
        eq, simp = eq[~at_inf], simp[~at_inf]
        facet_pts = np.unique(hull.simplices.ravel())
        facet_pts = facet_pts[facet_pts < len(rows)]
    else:
        facet_pts = np.unique(simp.ravel())
    verts = eq[:, :d] / (-eq[:, d:])
    return rows[facet_pts], verts, rows[simp], marginal, excluded, dirs, dir_tight


def _flat_facets(target, reg, verts, tight, dreg, dirs, dir_tight, m, d) -> np.ndarray:
    """``bool[F]``: the facets ``target = region * m + row`` whose face is not ``(d-1)``-dimensional.

    The face of a row is spanned by its vertices (differences) and recession directions; a row
    that is only weakly redundant (an exact positive combination of other rows with the same
    bound: a max pool of clamped hard-tanh units repeats them so) touches the polyhedron in a
    lower-dimensional face, yet its polar point lies on the polar hull's boundary, where qhull
    may list it as a vertex. The face's scatter matrix is the sum of its vertices' (centred)
    and its directions' (unit vectors), each scaled to trace 1 (an unbounded face's vertices
    may lie thousands of radii apart). Its second smallest eigenvalue (the
    smallest, its normal's, is the vertices' rounding) decides: a face is flat when it is below
    ``1e3`` times the smallest or :data:`_FLAT_RTOL` times the largest (a face thinner than
    ``1e-6`` of its extent; the scatter's own rounding is ``~1e-16`` of the largest). A true
    facet that thin would be dropped, and its edge then seen from one side only (the
    enumeration is then not complete).
    """
    F = len(target)
    members = []
    for r, pts, tt in ((reg, verts, tight), (dreg, dirs, dir_tight)):
        key = (r[:, None] * m + tt).ravel()
        pos = np.minimum(np.searchsorted(target, key), F - 1)
        hit = (target[pos] == key) & (tt.ravel() >= 0)
        members.append((pos[hit], np.repeat(pts, d, axis=0)[hit]))
    (vo, vp), (do, dp) = members
    cnt = np.bincount(vo, minlength=F).astype(np.float64)
    mean = np.stack([np.bincount(vo, weights=vp[:, k], minlength=F) for k in range(d)], axis=1)
    mean /= np.maximum(cnt, 1.0)[:, None]
    size = np.bincount(vo, weights=np.sum(vp**2, axis=1), minlength=F)  # sum |v|^2 (uncentred)
    vp = vp - mean[vo]  # centred first: no cancellation
    scatter = np.zeros((F, d, d))
    for owner, p, floor in ((vo, vp, 1e-20 * size), (do, dp, np.zeros(F))):  # each part of trace 1
        part = np.zeros((F, d, d))
        np.add.at(part, owner, p[:, :, None] * p[:, None, :])
        tr = np.trace(part, axis1=1, axis2=2)
        # one vertex (repeated): its spread is rounding, the part is 0
        scatter += np.where((tr > floor)[:, None, None], part / np.where(tr > 0, tr, 1.0)[:, None, None], 0.0)
    ev = np.linalg.eigvalsh(scatter)  # ascending
    # ev[0] (out of the row's hyperplane) is the rounding of the vertices; the sums carry a
    # rounding of ~1e-16 of the largest: a second eigenvalue of either order is flat
    return ev[:, 1] <= np.maximum(_FLAT_RTOL * ev[:, -1], 1e3 * np.abs(ev[:, 0])) if d > 1 else np.zeros(F, bool)


def _face_ids(reg, tight, cols, m):
    """Integer code of the face ``(region, tight[:, cols])`` of every vertex: ``int64[V]``."""
    code = reg.astype(np.int64)
    for c in cols:
        code = code * m + tight[:, c]
    return code


def _face_centroids(reg, verts, tight, k, m):
    """Centroids of the faces with ``k`` tight rows.

    Returns ``(codes: int64[U] sorted face codes, centroids: float64[U, d],
    index: int64[V, C] face of each (vertex, k-subset of its tight rows), combos)``.
    """
    d = verts.shape[1]
    combos = list(itertools.combinations(range(d), k))
    codes = np.stack([_face_ids(reg, tight, c, m) for c in combos], axis=1)  # [V, C]
    uniq, inv = np.unique(codes.ravel(), return_inverse=True)
    inv = inv.reshape(codes.shape)
    cnt = np.bincount(inv.ravel(), minlength=len(uniq)).astype(np.float64)
    cen = np.empty((len(uniq), d))
    rep = np.repeat(verts, len(combos), axis=0)
    for j in range(d):
        cen[:, j] = np.bincount(inv.ravel(), weights=rep[:, j], minlength=len(uniq)) / cnt
    return uniq, cen, inv, combos


def _flag_volumes(reg, verts, tight, R, m):
    """Volumes of ``R`` polytopes from their vertices and tight sets (centred coordinates).

    Every complete flag ``facet ⊃ ridge ⊃ ... ⊃ vertex`` gives the simplex spanned by the
    interior point (the origin) and one relative-interior point per face (the centroid of
    its vertices); these simplices triangulate the polytope. At a vertex with tight rows
    ``S`` the flags are the orderings of ``S``, and the face of the first ``k`` rows of an
    ordering is the one whose tight set is those ``k`` rows.
    """
    V, d = verts.shape
    if V == 0:
        return np.zeros(R)
    # points of every face of every vertex, coordinate-major: pts[k][combo] -> [d][V]
    pts = {}
    for k in range(1, d):
        _, cen, inv, combos = _face_centroids(reg, verts, tight, k, m)
        for c, combo in enumerate(combos):
            pts[combo] = tuple(np.ascontiguousarray(cen[inv[:, c], j]) for j in range(d))
    pts[tuple(range(d))] = tuple(np.ascontiguousarray(verts[:, j]) for j in range(d))
    vol = np.zeros(V)
    if d == 2:
        for a in range(2):
            p, v = pts[(a,)], pts[(0, 1)]
            vol += np.abs(p[0] * v[1] - p[1] * v[0])
    elif d == 3:
        for perm in itertools.permutations(range(3)):
            p = pts[perm[:1]]
            q = pts[tuple(sorted(perm[:2]))]
            v = pts[(0, 1, 2)]
            cx = q[1] * v[2] - q[2] * v[1]
            cy = q[2] * v[0] - q[0] * v[2]
            cz = q[0] * v[1] - q[1] * v[0]
            vol += np.abs(p[0] * cx + p[1] * cy + p[2] * cz)
    else:  # d == 4: Laplace expansion along the first two rows, 2x2 minors shared by the flags
        pairs = list(itertools.combinations(range(4), 2))

        def minors(r, s):
            return {(i, j): r[i] * s[j] - r[j] * s[i] for i, j in pairs}

        v = pts[(0, 1, 2, 3)]
        low = {e: minors(pts[e], v) for e in itertools.combinations(range(4), 3)}
        for a, b in itertools.permutations(range(4), 2):
            hi = minors(pts[(a,)], pts[tuple(sorted((a, b)))])
            for c in range(4):
                if c in (a, b):
                    continue
                lo = low[tuple(sorted((a, b, c)))]
                vol += np.abs(hi[0, 1] * lo[2, 3] - hi[0, 2] * lo[1, 3] + hi[0, 3] * lo[1, 2]
                              + hi[1, 2] * lo[0, 3] - hi[1, 3] * lo[0, 2] + hi[2, 3] * lo[0, 1])
    return np.bincount(reg, weights=vol, minlength=R) / math.factorial(d)


class PolyhedraGeometry(NamedTuple):
    """Facets, facet points, volumes and vertex extents of a batch of ``B`` polyhedra."""

    own: np.ndarray  # int64[F] region of each facet
    rows: np.ndarray  # int64[F] its row
    points: np.ndarray  # float64[F, d] a point of the facet (centroid of its vertices)
    volumes: np.ndarray  # float64[B] (NaN where not computable)
    marginal: np.ndarray  # bool[B] polar hull not certainly around the origin (R^d)
    excluded: np.ndarray  # bool[B] some hull facet dropped as a direction (R^d)
    vmin: np.ndarray  # float64[B, d] smallest vertex coordinates (NaN if no vertex known)
    vmax: np.ndarray  # float64[B, d]


def polyhedra_geometry(Au, bu, live, centers, radii, tol, want_volume, stats, origin=False, spanning=False):
    """Facets, facet points, volumes and vertex extents of a batch of polyhedra (see :func:`_polar`).

    Facet ``f`` of region ``owner[f]`` lies on row ``rows[f]``; ``points[f]`` is the centroid
    of its vertices (a point of the facet; in its relative interior when the facet is bounded).
    Where qhull fails (``stats["hull_failures"]``) the facets come from one redundancy LP per
    row (HiGHS); a failed one of those is counted in ``stats["facet_lp_failures"]`` (the
    facet is then undecided, and an enumeration relying on it is not complete).

    Args:
      Au, bu, live: unit rows ``[B, m, d]``, ``[B, m]`` and their live mask.
      centers, radii: ``[B, d]``, ``[B]`` interior points and inradii.
      tol: LP tolerance (slow path).
      want_volume: compute volumes (else NaN).
      stats: the enumeration's counters (updated).
      origin: R^d: the polyhedra may be unbounded (see :func:`_polar`).
      spanning: drop the hull's rows whose face is not ``(d-1)``-dimensional (weakly redundant
        rows, see :func:`_flat_facets`; counted in ``stats["flat_facets"]``). General nets need
        it (clamped hard-tanh units under a max pool give such rows); an MLP's rows are only
        weakly redundant in degenerate cases, and its enumeration skips the check.

    Returns:
      :class:`PolyhedraGeometry`.
    """
    B, m, d = Au.shape
    vols = np.full(B, np.nan)
    marginal = np.zeros(B, bool)
    excluded = np.zeros(B, bool)
    vmin = np.full((B, d), np.nan)
    vmax = np.full((B, d), np.nan)
    regs, verts, tights, good, facs, dregs, dirs, dtights = [], [], [], [], [], [], [], []
    slow_own, slow_rows, slow_pts = [], [], []
    for j in range(B):
        try:
            f, v, t, marginal[j], excluded[j], dr, dt = _polar(Au[j], bu[j], live[j], centers[j], radii[j], d, origin)
            if not len(v):
                raise ValueError("no vertex")
        except (QhullError, ValueError):
            stats["hull_failures"] += 1
            f, pts, vols[j], failed = _facets_lp(Au[j], bu[j], live[j], centers[j], radii[j], d, tol,
                                                 want_volume and not origin)
            stats["facet_lp_failures"] += failed
            marginal[j] = True
            slow_own.append(np.full(len(f), j))
            slow_rows.append(f)
            slow_pts.append(pts)
            continue
        g = len(good)
        regs.append(np.full(len(v), g))
        dregs.append(np.full(len(dr), g))
        dirs.append(dr)
        dtights.append(dt)
        facs.append(f)
        verts.append(v)
        tights.append(t)
        good.append(j)
    own = [np.zeros(0, np.int64)] + slow_own
    rows = [np.zeros(0, np.int64)] + slow_rows
    pts = [np.zeros((0, d))] + slow_pts
    if good:
        good = np.array(good)
        reg = np.concatenate(regs)
        verts = np.concatenate(verts)
        tight = np.sort(np.concatenate(tights), axis=1)
        scale = radii[good]
        nf = np.array([len(f) for f in facs])
        g_own = np.repeat(np.arange(len(good)), nf)
        g_rows = np.concatenate(facs)
        if spanning:
            flat = _flat_facets(g_own * m + g_rows, reg, verts, tight, np.concatenate(dregs).astype(np.int64),
                                np.concatenate(dirs), np.concatenate(dtights), m, d)
            stats["flat_facets"] = stats.get("flat_facets", 0) + int(flat.sum())
            g_own, g_rows = g_own[~flat], g_rows[~flat]
        # facet centroids (faces with one tight row), back in input coordinates
        codes, cen, _, _ = _face_centroids(reg, verts, tight, 1, m)
        target = g_own * m + g_rows
        pos = np.minimum(np.searchsorted(codes, target), len(codes) - 1)
        fp = centers[good[g_own]] + scale[g_own, None] * cen[pos]
        missing = codes[pos] != target  # a facet without a finite vertex (not for pointed regions)
        if missing.any():
            a = Au[good[g_own[missing]], g_rows[missing]]
            cc = centers[good[g_own[missing]]]
            fp[missing] = cc + (bu[good[g_own[missing]], g_rows[missing]] - np.einsum("fk,fk->f", a, cc))[:, None] * a
        own.append(good[g_own])
        rows.append(g_rows)
        pts.append(fp)
        world = centers[good[reg]] + scale[reg, None] * verts
        for k in range(d):
            lo_k = np.full(len(good), np.inf)
            hi_k = np.full(len(good), -np.inf)
            np.minimum.at(lo_k, reg, world[:, k])
            np.maximum.at(hi_k, reg, world[:, k])
            vmin[good, k] = lo_k
            vmax[good, k] = hi_k
        if want_volume:
            if d <= FLAG_MAX_DIM:
                vols[good] = _flag_volumes(reg, verts, tight, len(good), m) * scale**d
            else:
                cuts = np.cumsum([len(r) for r in regs])[:-1]
                for g, v in enumerate(np.split(verts, cuts)):
                    vols[good[g]] = _hull_volume(v, stats) * scale[g] ** d
    own = np.concatenate(own).astype(np.int64)
    order = np.argsort(own, kind="stable")
    return PolyhedraGeometry(own[order], np.concatenate(rows).astype(np.int64)[order], np.concatenate(pts)[order], vols,
                     marginal, excluded, vmin, vmax)


def _hull_volume(v, stats) -> float:
    """Volume of the convex hull of the vertices ``v[V, d]``; NaN if qhull cannot build it.

    Qhull's default options refuse some exact vertex sets of 5-D and 6-D regions with a topology
    error (a "wide merge" of duplicated ridges between nearly coplanar facets); the volume is
    then retried with option ``Q12``, which allows that merge (the hull's point set, hence its
    volume, is unchanged: on such a set it agrees with a Delaunay triangulation's volume to
    1e-13), counted in ``stats["hull_retries"]``. An unbounded region's partial vertex set
    (no hull) stays NaN.
    """
    try:
        return float(ConvexHull(v).volume)
    except (QhullError, ValueError):
        pass
    try:
        vol = float(ConvexHull(v, qhull_options="Q12").volume)
    except (QhullError, ValueError):
        return float("nan")
    stats["hull_retries"] = stats.get("hull_retries", 0) + 1
    return vol


def _facets_lp(Au, bu, live, center, radius, d, tol, want_volume):
    """Slow path when qhull fails: facets by one redundancy LP per row (HiGHS).

    Returns ``(facets, points, volume, failed)``: ``failed`` counts the rows whose LP did not
    reach optimality (they are left out, undecided: the caller must not read them as "not a
    facet").
    """
    rows = np.flatnonzero(live)
    A, b = Au[rows], bu[rows]
    m = len(rows)
    bb = np.repeat(b[None], m, axis=0)
    bb[np.arange(m), np.arange(m)] += 1.0
    res = lp.solve(-A, np.repeat(A[None], m, axis=0), bb, solver="highs", tol=tol)
    ok = res.status == lp.OPTIMAL
    is_f = ok & ((-np.where(ok, res.value, 0.0)) > b + 1e-9)
    fac = rows[is_f]
    # facet points: the LP optimum projected back onto its hyperplane
    x = res.x[is_f]
    a = A[is_f]
    pts = x - (np.einsum("fk,fk->f", a, x) - b[is_f])[:, None] * a
    vol = np.nan
    if want_volume:
        try:
            from scipy.spatial import HalfspaceIntersection

            hs = HalfspaceIntersection(np.concatenate([A, -b[:, None]], axis=1), center, qhull_options="QJ")
            vol = ConvexHull(hs.intersections).volume
        except (QhullError, ValueError):
            warnings.warn("enumerate_regions: volume of a degenerate region could not be computed", RuntimeWarning)
    return fac, pts, vol, int(np.sum(~ok))
