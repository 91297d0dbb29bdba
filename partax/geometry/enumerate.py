"""Exact enumeration of every linear region of a ReLU net inside a small box.

:func:`enumerate_regions` lists every region of the ``prefix`` partition (layers
``1..layer``) that meets a :class:`~partax.geometry.Box` of a low-dimensional input
space, by a breadth-first traversal of the region adjacency graph, batched over the
frontier:

1. **Seeds.** Uniform samples of the box (or the user's ``seeds``); their float64 codes
   (NumPy forward pass, bit = pre-activation ``> 0``) name the first regions.
2. **H-representation** of every frontier region from its code (the code frozen: one
   sign-oriented row per unit of layers ``1..layer``, then the ``2d`` box rows), in float64,
   batched.
3. **Chebyshev centre and inradius** of every frontier region: one batched LP call (the JAX
   interior point of :mod:`partax.geometry.lp` for batches of 256 or more, HiGHS for smaller
   ones and for the lanes where the interior point fails). The centre is the region's
   interior point; the float64 forward pass there must give the region's code (a candidate
   whose code is not met there, or whose inradius is ``<= min_radius``, is empty). The
   next chunk's LPs run on a worker thread while this chunk's hulls are computed.
4. **Facets and vertices** from the polar (dual) convex hull around the centre
   (``scipy.spatial.ConvexHull``, one per region): the rows ``a_i·z <= b_i`` map to the
   points ``a_i / (b_i - a_i·c)``; the hull's vertices are the non-redundant rows (the
   facets) and each (triangulated) hull facet is a vertex of the region, tight at its
   ``d`` rows. **Volumes** (exact): for ``d <= 4`` by the flag triangulation of every
   region of the chunk at once — one simplex per flag ``facet ⊃ ridge ⊃ … ⊃ vertex``
   spanned by the centre and the centroids of the flag's faces (NumPy, batched); for
   ``d = 5, 6`` by the convex hull of the vertices; ``d > 6``: NaN.
5. **Neighbours.** Across a facet of unit ``u`` (domain facets skipped) the neighbour's
   code is the region's code with bit ``u`` flipped: at a point of the facet's relative
   interior every other pre-activation is non-zero, and the pre-activation of ``u`` has the
   same gradient on both sides, so only ``u`` changes sign (the generic case); the
   neighbour's interior point is its own Chebyshev centre (step 3), where its code is
   checked. If the flipped code is empty (a non-generic crossing: two units sharing a
   hyperplane, a unit that is constant on the region, ...), every crossing into it steps
   instead a little beyond the facet's centroid (seen from the region's centre) and reads
   the float64 code there (``stats["step_fallbacks"]``). Unseen keys join the frontier.

Keys are :func:`partax.codes.keys_from_bits` of the float64 codes: the same 64-bit keys as
``partax.region_ids(net, x, "prefix")[:, layer-1]`` at an interior point ``x`` (the net's own
float32 evaluation agrees except within float32 rounding of a boundary). Prefix regions are
convex, so a key names exactly one polytope.

Completeness: ``complete`` is True when the frontier emptied without hitting
``max_regions`` and the volumes sum to the box volume (relative ``1e-9``). Both together
certify that every region was found: a missing region would leave a volume gap.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry import Box
    >>> from partax.geometry.enumerate import enumerate_regions
    >>> net = partax.mlp(jax.random.key(0), [2, 6, 1], bias_std=0.5)
    >>> res = enumerate_regions(net, Box(-3, 3), progress=False)
    >>> res.complete, bool(abs(res.volumes.sum() - 36.0) < 1e-9)
    (True, True)
    >>> res.num_regions <= partax.bounds.zaslavsky(6, 2)
    True
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial import QhullError

from partax.codes import keys_from_bits, scope_range
from partax.codes import SCOPES as _SCOPES
from partax.geometry import lp as _lp
from partax.geometry.domains import Box
from partax.nets import Net

__all__ = ["Enumeration", "enumerate_regions", "bench_enumerate", "BENCH_WORKLOADS"]

_MAX_EXACT_DIM = 6
_IPM_MIN_BATCH = 256  # below this "auto" uses HiGHS (no compilation for small frontiers)
_CHUNK = 2048  # frontier regions per batched LP call
_THIN = 1e-7  # interior-point radii below this are re-solved by HiGHS
_KEY_PAD = 1024  # pad key batches to a power of two >= this (few compilations)
_PIPELINE = True  # overlap the next chunk's LPs with this chunk's hulls (a worker thread)
_FLAG_MAX_DIM = 4  # volumes by flag triangulation up to this dimension, qhull beyond


class Enumeration(NamedTuple):
    """Every region of a net's prefix partition inside a box.

    Regions are sorted by key. ``R`` regions, ``E`` edges, input dimension ``d``.

    Attributes:
      keys: ``uint64[R]`` sorted region keys (``partax.region_ids(net, points, "prefix")
        [:, layer-1]``).
      points: ``float64[R, d]`` interior point of each region (its Chebyshev centre).
      radii: ``float64[R]`` inradius (radius of the largest ball in the region ∩ box).
      volumes: ``float64[R]`` exact volume of region ∩ box (NaN for ``d > 6``).
      num_facets: ``int64[R]`` number of facets of region ∩ box (box facets included).
      bits: tuple of ``bool[R, n_l]``, the float64 codes of layers ``1..layer``.
      edges: ``int64[E, 2]`` pairs ``i < j`` of regions sharing a facet (a unit's hyperplane).
      edge_units: ``int64[E]`` the unit whose hyperplane the facet lies on, as a flat index
        over layers ``1..layer`` (layer order). In the generic case the two codes differ in
        exactly this unit; across a non-generic facet (repeated hyperplanes) in more.
      box_volume: volume of the box.
      volume_error: ``|sum(volumes) - box_volume| / box_volume`` (NaN if not computable).
      complete: frontier emptied below ``max_regions`` and ``volume_error <= 1e-9``.
      frontier_left: regions found but not processed (``max_regions`` reached).
      scope, layer: the scope and its 1-based layer.
      stats: counters and timings: ``seconds`` (total), ``lp_seconds`` (rows + Chebyshev
        LPs, on the worker thread), ``hull_seconds``, ``keys_seconds``, ``batches``,
        ``ipm_lps``, ``highs_lps``, ``lp_fallbacks`` (interior-point lanes re-solved by
        HiGHS), ``empty_flips`` (candidate codes found empty), ``code_mismatches`` (of them,
        those whose centre had another code), ``step_fallbacks`` (points stepped across
        facets), ``hull_failures`` (qhull errors: facets by LPs instead),
        ``one_sided_edges`` (edges seen from one side only: 0 when every facet was found
        from both regions), ``num_seeds``.
    """

    keys: np.ndarray
    points: np.ndarray
    radii: np.ndarray
    volumes: np.ndarray
    num_facets: np.ndarray
    bits: tuple
    edges: np.ndarray
    edge_units: np.ndarray
    box_volume: float
    volume_error: float
    complete: bool
    frontier_left: int
    scope: str
    layer: int
    stats: dict

    @property
    def num_regions(self) -> int:
        return int(self.keys.shape[0])

    def index_of(self, keys) -> np.ndarray:
        """``int64`` index of each key in ``self.keys``, -1 where absent."""
        return _index_of(self.keys, keys)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _check_args(net, domain, scope, layer, max_regions, solver, seeds):
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.stack_shape:
        raise ValueError(f"net: expected an unstacked Net, got stack shape {net.stack_shape}; use net[i]")
    L = net.num_hidden
    if L < 1:
        raise ValueError("net: expected at least one hidden layer")
    d = net.input_dim
    if d < 2:
        raise ValueError(f"net: enumerate_regions needs input dimension >= 2 (got {d}); "
                         "use partax.geometry.slices.line_regions in 1D")
    if not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box (a bounded domain), got {type(domain).__name__}")
    domain.bounds(d)
    if scope not in _SCOPES:
        raise ValueError(f"scope: expected one of {_SCOPES}, got {scope!r}")
    if layer is None:
        layer = L
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= int(layer) <= L:
        raise ValueError(f"layer: expected an int in 1..{L} (1-based hidden layer) or None, got {layer!r}")
    layer = int(layer)
    first, last = scope_range(scope, layer, L)
    if first != 1:
        raise ValueError(
            f"scope: {scope!r} regions at layer {layer} live in the latent space of layer {layer - 1}, "
            "not in the input space; enumerate_regions supports the input-space partitions: "
            "scope='prefix' (any layer), or 'layer'/'suffix' at layer=1")
    if isinstance(max_regions, bool) or not isinstance(max_regions, (int, np.integer)) or max_regions < 1:
        raise ValueError(f"max_regions: expected a positive int, got {max_regions!r}")
    if solver not in ("auto",) + _lp.SOLVERS:
        raise ValueError(f"solver: expected 'auto', 'ipm' or 'highs', got {solver!r}")
    lo, hi = domain.bounds(d)
    if seeds is not None:
        seeds = np.asarray(seeds, np.float64)
        if seeds.ndim != 2 or seeds.shape[1] != d or seeds.shape[0] == 0:
            raise ValueError(f"seeds: expected shape (S, {d}) with S >= 1, got {seeds.shape}")
        if not np.all(np.isfinite(seeds)):
            raise ValueError("seeds: expected finite points (found NaN or inf)")
        if not np.all((seeds >= lo) & (seeds <= hi)):
            raise ValueError("seeds: expected points inside the domain box")
    return layer, first, last, seeds, lo, hi


# --------------------------------------------------------------------------------------
# float64 kernels (NumPy)
# --------------------------------------------------------------------------------------
class _Net64(NamedTuple):
    Ws: tuple  # float64[n_{l-1}, n_l], l = 1..depth
    bs: tuple
    alpha: float
    widths: tuple
    d: int


def _net64(net: Net, depth: int) -> _Net64:
    Ws = tuple(np.asarray(W, np.float64) for W in net.weights[:depth])
    bs = tuple(np.asarray(b, np.float64) for b in net.biases[:depth])
    alpha = float(net.alpha) if net.activation == "leaky_relu" else 0.0
    return _Net64(Ws, bs, alpha, tuple(int(W.shape[1]) for W in Ws), int(net.input_dim))


def _codes64(n64: _Net64, x) -> np.ndarray:
    """``bool[N, n_tot]`` float64 codes of layers ``1..depth`` (bit = pre-activation > 0)."""
    h = np.asarray(x, np.float64)
    out = []
    for W, b in zip(n64.Ws, n64.bs):
        z = h @ W + b
        on = z > 0
        out.append(on)
        h = np.where(on, z, n64.alpha * z)
    return np.concatenate(out, axis=1)


def _split(n64: _Net64, bits: np.ndarray) -> list:
    cuts = np.cumsum(n64.widths)[:-1]
    return np.split(bits, cuts, axis=1)


def _rows(n64: _Net64, bits: np.ndarray):
    """Sign-oriented rows ``A z <= b`` of the regions with codes ``bits[R, n_tot]``.

    Returns ``(A: float64[R, n_tot, d], b: float64[R, n_tot])`` (no domain rows, not scaled).
    """
    R = bits.shape[0]
    d = n64.d
    As, bs = [], []
    G = None  # h^{l-1} = G z + g
    g = None
    for W, bias, on in zip(n64.Ws, n64.bs, _split(n64, bits)):
        if G is None:
            Z = np.broadcast_to(W.T, (R,) + W.T.shape)
            zc = np.broadcast_to(bias, (R, bias.shape[0]))
        else:
            Z = np.einsum("rik,ij->rjk", G, W)
            zc = g @ W + bias
        sign = np.where(on, -1.0, 1.0)
        As.append(sign[..., None] * Z)
        bs.append(-sign * zc)
        slope = np.where(on, 1.0, n64.alpha)
        G = slope[..., None] * Z
        g = slope * zc
    return np.concatenate(As, axis=1), np.concatenate(bs, axis=1)


def _unit(A, b, strict):
    """Unit-norm rows, and which rows are live (not all-zero).

    A dead row is a unit whose pre-activation is a constant ``c`` on the region: the row
    reads ``0 <= b`` with ``b = c`` for an active unit (``strict``: the code needs
    ``c > 0``) and ``b = -c`` for an inactive one (``c <= 0``). It becomes ``0 <= 1`` when
    the code is consistent and ``0 <= -1`` (an empty region) when it is not.
    """
    nrm = np.linalg.norm(A, axis=-1)
    live = nrm > 1e-12 * max(1.0, float(np.max(nrm, initial=0.0)))
    safe = np.where(live, nrm, 1.0)
    A = np.where(live[..., None], A / safe[..., None], 0.0)
    consistent = (b > 0) | ((b == 0) & ~strict)
    b = np.where(live, b / safe, np.where(consistent, 1.0, -1.0))
    return A, b, live


def _keys(n64: _Net64, bits: np.ndarray, first: int) -> np.ndarray:
    R = bits.shape[0]
    if R == 0:
        return np.zeros(0, np.uint64)
    size = max(_KEY_PAD, 1 << (R - 1).bit_length())
    padded = np.zeros((size, bits.shape[1]), bool)
    padded[:R] = bits
    return keys_from_bits(_split(n64, padded), first, len(n64.widths))[:R]


# --------------------------------------------------------------------------------------
# Chebyshev LPs
# --------------------------------------------------------------------------------------
def _pick_solver(solver: str, B: int) -> str:
    if solver != "auto":
        return solver
    if _lp.default_solver() == "ipm":
        return "ipm"
    return "ipm" if B >= _IPM_MIN_BATCH else "highs"


def _chebyshev(Au, bu, x0, solver, tol, stats):
    """Chebyshev centres/radii of the unit-row polytopes ``Au z <= bu`` (bounded by the box rows).

    Returns ``(centers: float64[B, d], radii: float64[B])``; radius NaN where no backend converged.
    """
    B, m, d = Au.shape
    use = _pick_solver(solver, B)
    c, AL, bL = _lp.chebyshev_lp(Au, bu, radius_cap=1e6)
    if use == "ipm":
        # Pad the batch to a power of two and the rows to a multiple of 16 (inert 0 <= 1 rows):
        # few distinct shapes, so few compilations.
        P = max(_IPM_MIN_BATCH, 1 << (B - 1).bit_length())
        mp = -(-AL.shape[1] // 16) * 16
        AP = np.zeros((P, mp, d + 1))
        bP = np.ones((P, mp))
        AP[:B, : AL.shape[1]] = AL
        bP[:B, : AL.shape[1]] = bL
        AP[B:] = AP[0]
        bP[B:] = bP[0]
        cP = np.concatenate([c, np.repeat(c[:1], P - B, axis=0)])
        x0P = np.zeros((P, d + 1))
        x0P[:B, :d] = x0
        res = _lp.solve(cP, AP, bP, solver="ipm", tol=tol, x0=x0P)
        x, status = res.x[:B], res.status[:B]
        stats["ipm_lps"] += B
    else:
        res = _lp.solve(c, AL, bL, solver="highs", tol=tol)
        x, status = res.x, res.status
        stats["highs_lps"] += B
    centers, radii = x[:, :d].copy(), x[:, d].copy()
    # Lanes that failed, whose centre is not strictly inside by the claimed radius, or whose
    # radius is tiny (empty or razor-thin: decided by the simplex method), get HiGHS.
    slack = bu - np.einsum("bmk,bk->bm", Au, centers)
    bad = (status != _lp.OPTIMAL) | ~np.isfinite(radii) | (slack.min(axis=1) < 0.5 * radii)
    bad |= radii < _THIN
    if use == "ipm" and bad.any():
        idx = np.flatnonzero(bad)
        res = _lp.solve(c[idx], AL[idx], bL[idx], solver="highs", tol=tol)
        stats["lp_fallbacks"] += len(idx)
        stats["highs_lps"] += len(idx)
        centers[idx] = res.x[:, :d]
        radii[idx] = np.where(res.status == _lp.OPTIMAL, res.x[:, d], np.nan)
        status = status.copy()
        status[idx] = res.status
    radii = np.where(status == _lp.OPTIMAL, radii, np.nan)
    # The true inradius is the smallest slack (LP rounding): never report more.
    slack = bu - np.einsum("bmk,bk->bm", Au, centers)
    radii = np.minimum(radii, slack.min(axis=1))
    return centers, radii


# --------------------------------------------------------------------------------------
# polar hull: facets and vertices; volumes by a flag triangulation
# --------------------------------------------------------------------------------------
def _polar(Au, bu, live, center, radius, d):
    """Facets and vertices of one polytope ``Au z <= bu`` around an interior point.

    The rows map to the polar points ``a_i / s_i`` (``s_i`` the slack at ``center``, in
    coordinates centred on ``center`` and scaled by ``1/radius``, so every slack is >= 1
    and the polar points lie in the unit ball). The vertices of their convex hull are the
    non-redundant rows; each (triangulated) hull facet ``n·y + o = 0`` is a vertex
    ``-n / o`` of the polytope, tight at the ``d`` rows of the hull facet.

    Returns:
      ``(facets: int64[F] row indices, verts: float64[V, d] scaled centred vertices,
      tight: int64[V, d] row indices of each vertex, unsorted)``.
    """
    rows = np.flatnonzero(live)
    A = Au[rows]
    slack = (bu[rows] - A @ center) / radius
    hull = ConvexHull(A / slack[:, None])
    eq = hull.equations
    verts = eq[:, :d] / (-eq[:, d:])
    simp = hull.simplices
    on = np.zeros(len(rows), bool)
    on[simp.ravel()] = True
    return rows[on], verts, rows[simp]


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


# --------------------------------------------------------------------------------------
def _geometry(Au, bu, live, centers, radii, tol, want_volume, stats):
    """Facets, facet centroids and volumes of a batch of polytopes (see :func:`_polar`).

    Returns:
      ``(owner: int64[F], rows: int64[F], points: float64[F, d], volumes: float64[B])``:
      facet ``f`` of region ``owner[f]`` lies on row ``rows[f]``, ``points[f]`` is the
      centroid of its vertices (in its relative interior).
    """
    B, m, d = Au.shape
    vols = np.full(B, np.nan)
    regs, verts, tights, good, facs = [], [], [], [], []
    slow_own, slow_rows, slow_pts = [], [], []
    for j in range(B):
        try:
            f, v, t = _polar(Au[j], bu[j], live[j], centers[j], radii[j], d)
        except (QhullError, ValueError):
            stats["hull_failures"] += 1
            f, pts, vols[j] = _facets_lp(Au[j], bu[j], live[j], centers[j], radii[j], d, tol, want_volume)
            slow_own.append(np.full(len(f), j))
            slow_rows.append(f)
            slow_pts.append(pts)
            continue
        g = len(good)
        regs.append(np.full(len(v), g))
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
        # facet centroids (faces with one tight row), back in input coordinates
        codes, cen, _, _ = _face_centroids(reg, verts, tight, 1, m)
        pos = np.searchsorted(codes, g_own * m + g_rows)
        own.append(good[g_own])
        rows.append(g_rows)
        pts.append(centers[good[g_own]] + scale[g_own, None] * cen[pos])
        if want_volume:
            if d <= _FLAG_MAX_DIM:
                vols[good] = _flag_volumes(reg, verts, tight, len(good), m) * scale**d
            else:
                cuts = np.cumsum([len(r) for r in regs])[:-1]
                for g, v in enumerate(np.split(verts, cuts)):
                    vols[good[g]] = ConvexHull(v).volume * scale[g] ** d
    own = np.concatenate(own).astype(np.int64)
    order = np.argsort(own, kind="stable")
    return own[order], np.concatenate(rows).astype(np.int64)[order], np.concatenate(pts)[order], vols


class _Frontier:
    """Regions to visit: codes, IPM starting points, and the crossing that found them."""

    _FIELDS = ("bits", "hint", "parent", "row", "fpt")

    def __init__(self, n_tot: int, d: int):
        self.bits = np.zeros((0, n_tot), bool)
        self.hint = np.zeros((0, d))
        self.parent = np.zeros(0, np.int64)  # region crossed from (processing order; -1: none)
        self.row = np.zeros(0, np.int64)  # the crossed facet's row
        self.fpt = np.zeros((0, d))  # a point of the crossed facet (fallback stepping)

    def __len__(self):
        return len(self.bits)

    def push(self, *arrays):
        for name, arr in zip(self._FIELDS, arrays):
            setattr(self, name, np.concatenate([getattr(self, name), arr]))

    def pop(self, n: int):
        out = tuple(getattr(self, name)[:n] for name in self._FIELDS)
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name)[n:])
        return out


def _new_keys(keys, known: set) -> np.ndarray:
    """Indices of the first occurrence of each key not in ``known`` (which is updated)."""
    out = []
    for i, k in enumerate(keys.tolist()):
        if k not in known:
            known.add(k)
            out.append(i)
    return np.array(out, np.int64)


# --------------------------------------------------------------------------------------
# the traversal
# --------------------------------------------------------------------------------------
def enumerate_regions(net: Net, domain: Box, *, scope: str = "prefix", layer: Optional[int] = None,
                      max_regions: int = 100_000, seeds=None, solver: str = "auto",
                      progress: bool = True, num_seeds: int = 1024, tol: float = 1e-9,
                      min_radius: float = 1e-12) -> Enumeration:
    """Every region of a net's ``prefix`` partition inside a box, by adjacency-graph traversal.

    See the module docstring for the method. The traversal starts from the regions of the
    seed points and stops when no region is left to visit (or after ``max_regions``).

    Args:
      net: an unstacked :class:`partax.Net` with input dimension ``d >= 2`` (volumes are exact
        for ``d <= 6``; beyond, they are NaN and ``complete`` only means the frontier emptied).
      domain: a :class:`partax.geometry.Box` in the input space.
      scope: ``"prefix"``. ``"layer"`` and ``"suffix"`` are accepted at ``layer=1`` only (where
        ``"layer"`` is the prefix of layer 1 and ``"suffix"`` the prefix of the last layer);
        elsewhere their regions live in a latent space and a ``ValueError`` is raised.
      layer: 1-based hidden layer (default: the last).
      max_regions: stop after processing this many regions (``complete`` is then False).
      seeds: optional points ``[S, d]`` inside the box whose regions start the traversal;
        default ``num_seeds`` uniform samples of the box (fixed seed).
      solver: Chebyshev LP backend: ``"ipm"`` (batched JAX interior point), ``"highs"`` or
        ``"auto"`` (the interior point for batches of at least 256 regions or on an
        accelerator, HiGHS otherwise; failed interior-point lanes are re-solved by HiGHS).
      progress: show a ``tqdm`` progress bar.
      num_seeds: number of uniform seed samples when ``seeds`` is None.
      tol: LP tolerance.
      min_radius: a candidate region with a smaller inradius counts as empty.

    Returns:
      An :class:`Enumeration`.

    Raises:
      TypeError / ValueError: naming the offending argument.

    Example:
      >>> import jax, partax
      >>> from partax.geometry import Box
      >>> net = partax.mlp(jax.random.key(1), [3, 8, 8, 1], bias_std=0.3)
      >>> res = enumerate_regions(net, Box(-1, 1), progress=False)
      >>> res.complete, res.volume_error < 1e-9
      (True, True)
    """
    layer, first, depth, seeds, lo, hi = _check_args(net, domain, scope, layer, max_regions, solver, seeds)
    t_start = time.perf_counter()
    n64 = _net64(net, depth)
    d = n64.d
    n_tot = int(sum(n64.widths))
    want_volume = d <= _MAX_EXACT_DIM
    box_A, box_b = domain.rows(d)
    box_volume = float(np.prod(hi - lo))
    stats = dict(ipm_lps=0, highs_lps=0, lp_fallbacks=0, empty_flips=0, code_mismatches=0,
                 hull_failures=0, step_fallbacks=0, lp_seconds=0.0, hull_seconds=0.0,
                 keys_seconds=0.0, batches=0)

    if seeds is None:
        rng = np.random.default_rng(0)
        seeds = lo + rng.random((int(num_seeds), d)) * (hi - lo)
    seed_bits = _codes64(n64, seeds)
    seed_bits, first_idx = np.unique(seed_bits, axis=0, return_index=True)
    known: set = set()
    new = _new_keys(_keys(n64, seed_bits, first), known)
    frontier = _Frontier(n_tot, d)
    none = np.full(len(new), -1, np.int64)
    frontier.push(seed_bits[new], seeds[first_idx[new]], none, none, seeds[first_idx[new]])

    def prepare(chunk):
        """H-representations and Chebyshev LPs of a chunk (runs on the worker thread)."""
        bits, hint = chunk[0], chunk[1]
        t0 = time.perf_counter()
        B = len(bits)
        A, b = _rows(n64, bits)
        A = np.concatenate([A, np.broadcast_to(box_A, (B,) + box_A.shape)], axis=1)
        b = np.concatenate([b, np.broadcast_to(box_b, (B, box_b.shape[0]))], axis=1)
        strict = np.concatenate([bits, np.zeros((B, box_b.shape[0]), bool)], axis=1)
        Au, bu, live = _unit(A, b, strict)
        centers, radii = _chebyshev(Au, bu, hint, solver, tol, stats)
        stats["lp_seconds"] += time.perf_counter() - t0
        return chunk, Au, bu, live, centers, radii

    out = dict(bits=[], keys=[], pts=[], rad=[], vol=[], nf=[])
    arcs = dict(src=[], key=[], unit=[], fpt=[])
    all_pts, all_rad = [], []  # interior points and radii by processing order (for stepping)
    empty_keys: set = set()  # candidate codes found empty (non-generic crossings)
    count = [0]  # regions processed

    def step(parent, row, fpt):
        """Fallback for crossings into an empty flipped code: step across the facet."""
        pts_all = np.concatenate(all_pts) if all_pts else np.zeros((0, d))
        rad_all = np.concatenate(all_rad) if all_rad else np.zeros(0)
        src, rows, codes = _step_across(n64, parent, row, fpt, pts_all, rad_all, lo, hi)
        stats["step_fallbacks"] += len(codes)
        if not len(codes):
            return
        keys = _keys(n64, codes, first)
        arcs["src"].append(src)
        arcs["key"].append(keys)
        arcs["unit"].append(rows)
        arcs["fpt"].append(np.full((len(src), d), np.nan))
        nw = _new_keys(keys, known)
        if len(nw):
            frontier.push(codes[nw], pts_all[src[nw]], np.full(len(nw), -1, np.int64),
                          np.full(len(nw), -1, np.int64), pts_all[src[nw]])

    def process(chunk, Au, bu, live, centers, radii):
        bits, _, parent, prow, fpt = chunk
        stats["batches"] += 1
        ok = np.isfinite(radii) & (radii > min_radius)
        # The float64 code at the interior point must be the candidate's code.
        mismatch = ok.copy()
        mismatch[ok] = np.any(_codes64(n64, centers[ok]) != bits[ok], axis=1)
        stats["code_mismatches"] += int(mismatch.sum())
        ok &= ~mismatch
        empty = np.flatnonzero(~ok)
        if len(empty):
            stats["empty_flips"] += len(empty)
            empty_keys.update(_keys(n64, bits[empty], first).tolist())
            crossed = empty[parent[empty] >= 0]
            stepped.update(zip(parent[crossed].tolist(), prow[crossed].tolist()))
            step(parent[crossed], prow[crossed], fpt[crossed])
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return 0
        bits, centers, radii = bits[idx], centers[idx], radii[idx]
        Au, bu, live = Au[idx], bu[idx], live[idx]
        t2 = time.perf_counter()
        own, frow, fpts, vols = _geometry(Au, bu, live, centers, radii, tol, want_volume, stats)
        stats["hull_seconds"] += time.perf_counter() - t2
        base = count[0]
        count[0] += len(idx)
        out["bits"].append(bits)
        out["pts"].append(centers)
        out["rad"].append(radii)
        out["vol"].append(vols)
        out["nf"].append(np.bincount(own, minlength=len(idx)))
        all_pts.append(centers)
        all_rad.append(radii)
        # Crossings through the units' facets (the domain's rows are >= n_tot): flip the unit.
        t3 = time.perf_counter()
        unit = frow < n_tot
        own, frow, fpts = own[unit], frow[unit], fpts[unit]
        nbits = bits[own]
        nbits[np.arange(len(own)), frow] ^= True
        both = _keys(n64, np.concatenate([bits, nbits]), first)
        out["keys"].append(both[: len(bits)])
        nkeys = both[len(bits):]
        arcs["src"].append(base + own)
        arcs["key"].append(nkeys)
        arcs["unit"].append(frow)
        arcs["fpt"].append(fpts)
        nw = _new_keys(nkeys, known)
        if len(nw):
            frontier.push(nbits[nw], centers[own[nw]], base + own[nw], frow[nw], fpts[nw])
        stats["keys_seconds"] += time.perf_counter() - t3
        return len(idx)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="regions", unit="region")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pending = None
    stepped: set = set()  # (region, row) crossings already stepped across
    try:
        while True:
            while True:
                if pending is None:
                    if not len(frontier) or count[0] >= max_regions:
                        break
                    take = min(len(frontier), _CHUNK, max_regions - count[0])
                    pending = pool.submit(prepare, frontier.pop(take))
                result = pending.result()
                pending = None
                # Pipelining: the next chunk's LPs run while this chunk's hulls are computed.
                budget = max_regions - count[0] - len(result[0][0])
                if _PIPELINE and len(frontier) and budget > 0:
                    pending = pool.submit(prepare, frontier.pop(min(len(frontier), _CHUNK, budget)))
                done = process(*result)
                if bar is not None:
                    bar.update(done)
                    bar.set_postfix(frontier=len(frontier))
            if not empty_keys or not arcs["key"] or count[0] >= max_regions:
                break
            # Every crossing into a code found empty steps across its facet (once).
            keys = np.concatenate(arcs["key"])
            src = np.concatenate(arcs["src"])
            rows = np.concatenate(arcs["unit"])
            fpt = np.concatenate(arcs["fpt"])
            hit = np.array([k in empty_keys for k in keys.tolist()], bool) & np.isfinite(fpt[:, 0])
            hit &= np.array([(a, b) not in stepped for a, b in zip(src.tolist(), rows.tolist())], bool)
            if not hit.any():
                break
            stepped.update(zip(src[hit].tolist(), rows[hit].tolist()))
            step(src[hit], rows[hit], fpt[hit])
            if not len(frontier):
                break
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
    processed = count[0]

    cat = lambda xs, shape, dt: np.concatenate(xs) if xs else np.zeros(shape, dt)
    bits = cat(out["bits"], (0, n_tot), bool)
    keys = cat(out["keys"], (0,), np.uint64)
    pts = cat(out["pts"], (0, d), np.float64)
    rad = cat(out["rad"], (0,), np.float64)
    vol = cat(out["vol"], (0,), np.float64)
    nf = cat(out["nf"], (0,), np.int64)
    order = np.argsort(keys, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keys, bits, pts, rad, vol, nf = keys[order], bits[order], pts[order], rad[order], vol[order], nf[order]
    if len(keys) > 1 and np.any(keys[1:] == keys[:-1]):
        raise RuntimeError("enumerate_regions: a region was visited twice (please report)")

    # edges: arcs whose target was enumerated, made undirected
    src = rank[cat(arcs["src"], (0,), np.int64)]
    unit = cat(arcs["unit"], (0,), np.int64)
    dst = _index_of(keys, cat(arcs["key"], (0,), np.uint64))
    keep = (dst >= 0) & (dst != src)
    src, dst, unit = src[keep], dst[keep], unit[keep]
    if len(src):
        _, once = np.unique(np.stack([src, dst], axis=1), axis=0, return_index=True)  # directed arcs
        src, dst, unit = src[once], dst[once], unit[once]
        pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1)
        edges, inv, cnt = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        edge_units = np.zeros(len(edges), np.int64)
        edge_units[inv.ravel()] = unit
    else:
        edges, cnt, edge_units = np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    stats["one_sided_edges"] = int(np.sum(cnt == 1))
    stats["num_seeds"] = int(len(seeds))
    stats["seconds"] = time.perf_counter() - t_start

    frontier_left = int(len(frontier))
    verr = abs(float(vol.sum()) - box_volume) / box_volume if want_volume else float("nan")
    complete = frontier_left == 0 and (not want_volume or verr <= 1e-9)
    return Enumeration(keys=keys, points=pts, radii=rad, volumes=vol, num_facets=nf,
                       bits=tuple(_split(n64, bits)), edges=edges.astype(np.int64), edge_units=edge_units,
                       box_volume=box_volume, volume_error=float(verr), complete=bool(complete),
                       frontier_left=frontier_left, scope=scope, layer=layer, stats=stats)


def _index_of(sorted_keys, keys) -> np.ndarray:
    keys = np.asarray(keys, np.uint64)
    if len(sorted_keys) == 0:
        return np.full(keys.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, pos, -1).astype(np.int64)


def _step_across(n64, parent, row, fpt, pts_all, rad_all, lo, hi):
    """Codes met just across facets, for crossings whose flipped code is empty.

    From the parent region's interior point through the facet's centroid, points slightly
    beyond the facet (at three distances); the float64 code there names a real region.

    Returns:
      ``(src: int64[K], rows: int64[K], codes: bool[K, n_tot])``, unique per (src, code).
    """
    n_tot = int(sum(n64.widths))
    src, rows, pts = [], [], []
    for p, r, f in zip(parent.tolist(), row.tolist(), fpt):
        if p < 0:
            continue
        direction = f - pts_all[p]
        length = np.linalg.norm(direction)
        if not length > 0:
            continue
        for frac in (1e-3, 1e-5, 1e-7):
            q = f + frac * max(rad_all[p], 1e-9) * direction / length
            if np.all((q >= lo) & (q <= hi)):
                src.append(p)
                rows.append(r)
                pts.append(q)
    if not pts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_tot), bool)
    src = np.array(src, np.int64)
    rows = np.array(rows, np.int64)
    codes = _codes64(n64, np.array(pts))
    # one arc per (parent, code); an arc back to the parent itself is dropped with the edges
    key = np.concatenate([src[:, None], codes.astype(np.int64)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return src[first], rows[first], codes[first]


def _facets_lp(Au, bu, live, center, radius, d, tol, want_volume):
    """Slow path when qhull fails: facets by one redundancy LP per row (HiGHS)."""
    rows = np.flatnonzero(live)
    A, b = Au[rows], bu[rows]
    m = len(rows)
    bb = np.repeat(b[None], m, axis=0)
    bb[np.arange(m), np.arange(m)] += 1.0
    res = _lp.solve(-A, np.repeat(A[None], m, axis=0), bb, solver="highs", tol=tol)
    is_f = (-res.value) > b + 1e-9
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
    return fac, pts, vol


# --------------------------------------------------------------------------------------
# benchmark
# --------------------------------------------------------------------------------------
# name -> (widths, half-width of the box [-h, h]^d, quick)
BENCH_WORKLOADS = {
    "3-8-8-1": ([3, 8, 8, 1], 2.0, True),
    "3-16-16-1": ([3, 16, 16, 1], 2.0, False),
    "4-8-8-8-1": ([4, 8, 8, 8, 1], 2.0, True),
    "4-12-12-12-1": ([4, 12, 12, 12, 1], 2.0, False),
}


def bench_enumerate(quick: bool = False, *, seed: int = 0, solver: str = "auto", bias_std: float = 0.5,
                    workloads=None) -> dict:
    """Regions per second of :func:`enumerate_regions` on small 3- and 4-input nets.

    Each workload is ``partax.mlp(jax.random.key(seed), widths, bias_std=bias_std)`` over the
    box ``[-h, h]^d`` of :data:`BENCH_WORKLOADS`. It is run once to warm up (JIT compilation
    of the interior point excluded from the timing), then timed once. The 1-minute load
    average before and after each timed run is reported next to the rate (the rate is that
    of a shared machine).

    Args:
      quick: only the workloads marked quick (``3-8-8-1``, ``4-8-8-8-1``).
      seed, bias_std: the nets' initialisation.
      solver: the Chebyshev LP backend (see :func:`enumerate_regions`).
      workloads: optional names from :data:`BENCH_WORKLOADS` (overrides ``quick``).

    Returns:
      ``dict(workloads=[dict(name, widths, box, regions, complete, volume_error, seconds,
      regions_per_s, warmup_seconds, loadavg, stats)], cpus, backend)``.

    Example:
      >>> r = bench_enumerate(workloads=["3-8-8-1"])
      >>> w = r["workloads"][0]
      >>> w["complete"], w["regions_per_s"] > 0
      (True, True)
    """
    import os

    import jax

    from partax.nets import mlp

    if workloads is None:
        names = [k for k, v in BENCH_WORKLOADS.items() if v[2] or not quick]
    else:
        names = list(workloads)
        for n in names:
            if n not in BENCH_WORKLOADS:
                raise ValueError(f"workloads: unknown workload {n!r}; expected names from {list(BENCH_WORKLOADS)}")
    out = []
    for name in names:
        widths, h, _ = BENCH_WORKLOADS[name]
        net = mlp(jax.random.key(seed), widths, bias_std=bias_std)
        box = Box(-h, h)
        kw = dict(progress=False, solver=solver, max_regions=10_000_000)
        t0 = time.perf_counter()
        enumerate_regions(net, box, **kw)  # warm-up: compilations
        warm = time.perf_counter() - t0
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = enumerate_regions(net, box, **kw)
        dt = time.perf_counter() - t0
        out.append(dict(name=name, widths=list(widths), box=[-h, h], regions=res.num_regions,
                        complete=res.complete, volume_error=res.volume_error, seconds=round(dt, 3),
                        regions_per_s=round(res.num_regions / dt, 1), warmup_seconds=round(warm, 3),
                        loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)],
                        stats={k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.stats.items()}))
    return dict(workloads=out, cpus=os.cpu_count(), backend=jax.default_backend())
