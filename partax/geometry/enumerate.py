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
   interior point of :mod:`partax.geometry.lp` for large batches, HiGHS for small ones or
   for the lanes where the interior point fails). The centre is the region's interior
   point; the float64 forward pass at the centre must give the region's code (counted in
   ``stats["code_mismatches"]``, 0 in practice).
4. **Vertices and facets** by the polar (dual) convex hull around the centre: the rows
   ``a_i·z <= b_i`` map to the points ``a_i / (b_i - a_i·c)``; the vertices of their convex
   hull are the non-redundant rows (the facets) and each hull facet is a vertex of the
   region. The exact volume is the volume of the convex hull of the vertices (``d <= 6``).
5. **Neighbours.** Across a facet of unit ``u`` (domain facets skipped) the neighbour's
   code is the region's code with bit ``u`` flipped: at a point of the facet's relative
   interior every other pre-activation is non-zero, and the pre-activation of ``u`` has the
   same gradient on both sides, so only ``u`` changes sign (the generic case). The
   neighbour's interior point is then its own Chebyshev centre (step 3). If that flipped
   code turns out empty (a non-generic crossing: e.g. two units sharing a hyperplane), the
   crossing falls back to stepping across the facet's centroid and reading the code there.
   Unseen keys join the frontier.

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

import itertools
import math
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial import QhullError

from partax.codes import keys_from_bits, scope_range
from partax.geometry import lp as _lp
from partax.geometry.domains import Box
from partax.nets import Net

__all__ = ["Enumeration", "enumerate_regions", "bench_enumerate"]

_SCOPES = ("prefix", "layer", "suffix")
_MAX_EXACT_DIM = 6
_IPM_MIN_BATCH = 256  # below this "auto" uses HiGHS (no compilation for small frontiers)
_CHUNK = 2048  # frontier regions per batched LP call
_KEY_PAD = 1024
_FLAG_MAX_DIM = 4  # volumes by flag triangulation up to this dimension, qhull beyond  # pad key batches to a power of two >= this (few compilations)


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
        over layers ``1..layer`` (layer order).
      box_volume: volume of the box.
      volume_error: ``|sum(volumes) - box_volume| / box_volume`` (NaN if not computable).
      complete: frontier emptied below ``max_regions`` and ``volume_error <= 1e-9``.
      frontier_left: regions found but not processed (``max_regions`` reached).
      scope, layer: the scope and its 1-based layer.
      stats: counters and timings (``seconds``, ``lp_seconds``, ``hull_seconds``, ...,
        ``lp_fallbacks``, ``empty_flips``, ``code_mismatches``, ``one_sided_edges``,
        ``hull_failures``).
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
        keys = np.asarray(keys, np.uint64)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(len(self.keys) - 1, 0))
        ok = (len(self.keys) > 0) & (self.keys[pos] == keys) if len(self.keys) else np.zeros(keys.shape, bool)
        return np.where(ok, pos, -1).astype(np.int64)


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


def _unit(A, b):
    """Unit-norm rows; dead (all-zero) rows become ``0 <= 1`` (or ``0 <= -1`` if violated)."""
    nrm = np.linalg.norm(A, axis=-1)
    live = nrm > 1e-12 * max(1.0, float(np.max(nrm, initial=0.0)))
    safe = np.where(live, nrm, 1.0)
    A = np.where(live[..., None], A / safe[..., None], 0.0)
    b = np.where(live, b / safe, np.where(b >= 0, 1.0, -1.0))
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
    # Lanes that failed, or whose centre is not strictly inside by the claimed radius, get HiGHS.
    slack = bu - np.einsum("bmk,bk->bm", Au, centers)
    bad = (status != _lp.OPTIMAL) | ~np.isfinite(radii) | (slack.min(axis=1) < 0.5 * radii)
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
      tight: int64[V, d] sorted row indices of each vertex)``.
    """
    rows = np.flatnonzero(live)
    slack = (bu[rows] - Au[rows] @ center) / radius
    hull = ConvexHull(Au[rows] / slack[:, None])
    eq = hull.equations
    verts = eq[:, :d] / (-eq[:, d:])
    tight = np.sort(rows[hull.simplices], axis=1)
    return rows[np.sort(hull.vertices)], verts, tight


def _face_ids(reg, tight, cols, m):
    """Integer ids of the faces ``(region, tight[:, cols])``: ``int64[V]``, and the codes."""
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
    levels = [_face_centroids(reg, verts, tight, k, m) for k in range(1, d)]
    lookup = [{c: i for i, c in enumerate(lv[3])} for lv in levels]
    vol = np.zeros(V)
    M = np.empty((V, d, d))
    M[:, d - 1] = verts
    for perm in itertools.permutations(range(d)):
        for k in range(1, d):
            _, cen, inv, _ = levels[k - 1]
            col = lookup[k - 1][tuple(sorted(perm[:k]))]
            M[:, k - 1] = cen[inv[:, col]]
        vol += np.abs(np.linalg.det(M))
    return np.bincount(reg, weights=vol, minlength=R) / math.factorial(d)


# --------------------------------------------------------------------------------------
def _geometry(Au, bu, live, centers, radii, tol, want_volume, stats):
    """Facets, facet centroids and volumes of a batch of polytopes (see :func:`_polar`).

    Returns ``(facets: list of int64[F_j], points: list of float64[F_j, d], volumes: float64[B])``.
    """
    B, m, d = Au.shape
    facets = [None] * B
    fpts = [None] * B
    vols = np.full(B, np.nan)
    regs, verts, tights, good = [], [], [], []
    for j in range(B):
        try:
            f, v, t = _polar(Au[j], bu[j], live[j], centers[j], radii[j], d)
        except (QhullError, ValueError):
            stats["hull_failures"] += 1
            facets[j], fpts[j], vols[j] = _facets_lp(Au[j], bu[j], live[j], centers[j], radii[j], d, tol,
                                                     want_volume)
            continue
        facets[j] = f
        regs.append(np.full(len(v), len(good)))
        verts.append(v)
        tights.append(t)
        good.append(j)
    if not good:
        return facets, fpts, vols
    good = np.array(good)
    reg = np.concatenate(regs)
    verts = np.concatenate(verts)
    tight = np.concatenate(tights)
    scale = radii[good]
    # facet centroids (faces with one tight row), back in input coordinates
    codes, cen, _, _ = _face_centroids(reg, verts, tight, 1, m)
    for g, j in enumerate(good):
        pos = np.searchsorted(codes, g * m + facets[j])
        fpts[j] = centers[j] + scale[g] * cen[pos]
    if want_volume:
        if d <= _FLAG_MAX_DIM:
            vols[good] = _flag_volumes(reg, verts, tight, len(good), m) * scale**d
        else:
            cuts = np.cumsum([len(r) for r in regs])[:-1]
            for g, v in enumerate(np.split(verts, cuts)):
                vols[good[g]] = ConvexHull(v).volume * scale[g] ** d
    return facets, fpts, vols


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
                 rows_seconds=0.0, keys_seconds=0.0, batches=0)

    if seeds is None:
        rng = np.random.default_rng(0)
        seeds = lo + rng.random((int(num_seeds), d)) * (hi - lo)
    seed_bits = _codes64(n64, seeds)
    seed_bits, first_idx = np.unique(seed_bits, axis=0, return_index=True)
    seed_pts = seeds[first_idx]

    # frontier: codes (bool) + hint points (IPM starting points)
    known = set()
    seed_keys = _keys(n64, seed_bits, first)
    fr_bits, fr_hint = [], []
    for kk, bb, pp in zip(seed_keys.tolist(), seed_bits, seed_pts):
        if kk not in known:
            known.add(kk)
            fr_bits.append(bb)
            fr_hint.append(pp)
    fr_bits = np.array(fr_bits, bool).reshape(-1, n_tot)
    fr_hint = np.array(fr_hint, np.float64).reshape(-1, d)
    fr_from = np.full(len(fr_bits), -1, np.int64)  # (parent, row, facet point) for fallbacks
    fr_row = np.full(len(fr_bits), -1, np.int64)
    fr_fpt = fr_hint.copy()

    out_bits, out_keys, out_pts, out_rad, out_vol, out_nf = [], [], [], [], [], []
    arc_src, arc_key, arc_unit = [], [], []
    processed = 0

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(desc="regions", unit="region")
        except Exception:  # pragma: no cover - tqdm missing
            bar = None

    while len(fr_bits) and processed < max_regions:
        take = min(len(fr_bits), _CHUNK, max_regions - processed)
        bits, hint = fr_bits[:take], fr_hint[:take]
        b_from, b_row, b_fpt = fr_from[:take], fr_row[:take], fr_fpt[:take]
        fr_bits, fr_hint = fr_bits[take:], fr_hint[take:]
        fr_from, fr_row, fr_fpt = fr_from[take:], fr_row[take:], fr_fpt[take:]
        stats["batches"] += 1

        t0 = time.perf_counter()
        A, b = _rows(n64, bits)
        A = np.concatenate([A, np.broadcast_to(box_A, (take,) + box_A.shape)], axis=1)
        b = np.concatenate([b, np.broadcast_to(box_b, (take, box_b.shape[0]))], axis=1)
        Au, bu, live = _unit(A, b)
        t1 = time.perf_counter()
        stats["rows_seconds"] += t1 - t0
        centers, radii = _chebyshev(Au, bu, hint, solver, tol, stats)
        stats["lp_seconds"] += time.perf_counter() - t1

        ok = np.isfinite(radii) & (radii > min_radius)
        # Empty candidates (non-generic crossings): step across the parent's facet instead.
        empty = np.flatnonzero(~ok)
        if len(empty):
            stats["empty_flips"] += int(np.sum(b_from[empty] >= 0))
            retry = _step_across(n64, empty, b_from, b_row, b_fpt, out_pts, out_rad, lo, hi)
            stats["step_fallbacks"] += len(retry)
            if len(retry):
                rk = _keys(n64, retry, first)
                nb, nh = [], []
                for kk, bb in zip(rk.tolist(), retry):
                    if kk not in known:
                        known.add(kk)
                        nb.append(bb)
                        nh.append(np.zeros(d))
                if nb:
                    nb = np.array(nb, bool)
                    fr_bits = np.concatenate([fr_bits, nb])
                    fr_hint = np.concatenate([fr_hint, (lo + hi)[None] / 2 + 0 * np.array(nh)])
                    fr_from = np.concatenate([fr_from, np.full(len(nb), -1)])
                    fr_row = np.concatenate([fr_row, np.full(len(nb), -1)])
                    fr_fpt = np.concatenate([fr_fpt, np.zeros((len(nb), d))])
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            continue
        bits, centers, radii = bits[idx], centers[idx], radii[idx]
        Au, bu, live = Au[idx], bu[idx], live[idx]
        chk = _codes64(n64, centers)
        stats["code_mismatches"] += int(np.sum(np.any(chk != bits, axis=1)))
        base = processed
        t2 = time.perf_counter()
        facets, fpts, vols = _geometry(Au, bu, live, centers, radii, tol, want_volume, stats)
        stats["hull_seconds"] += time.perf_counter() - t2
        nfac = np.array([len(f) for f in facets], np.int64)
        out_bits.append(bits)
        out_pts.append(centers)
        out_rad.append(radii)
        out_vol.append(vols)
        out_nf.append(nfac)
        processed += len(idx)

        # crossings through the units' facets (domain rows are >= n_tot)
        own = np.repeat(np.arange(len(idx)), nfac)
        rowsf = np.concatenate(facets) if facets else np.zeros(0, np.int64)
        fptsf = np.concatenate(fpts) if fpts else np.zeros((0, d))
        unit = rowsf < n_tot
        own, rowsf, fptsf = own[unit], rowsf[unit], fptsf[unit]
        t3 = time.perf_counter()
        nbits = bits[own].copy()
        nbits[np.arange(len(own)), rowsf] ^= True
        nkeys = _keys(n64, nbits, first)
        stats["keys_seconds"] += time.perf_counter() - t3
        keys_here = _keys(n64, bits, first)
        out_keys.append(keys_here)
        arc_src.append(base + own)
        arc_key.append(nkeys)
        arc_unit.append(rowsf)
        new = [i for i, kk in enumerate(nkeys.tolist()) if kk not in known and not known.add(kk)]
        if new:
            new = np.array(new, np.int64)
            fr_bits = np.concatenate([fr_bits, nbits[new]])
            fr_hint = np.concatenate([fr_hint, centers[own[new]]])
            fr_from = np.concatenate([fr_from, base + own[new]])
            fr_row = np.concatenate([fr_row, rowsf[new]])
            fr_fpt = np.concatenate([fr_fpt, fptsf[new]])
        if bar is not None:
            bar.update(len(idx))
            bar.set_postfix(frontier=len(fr_bits))
    if bar is not None:
        bar.close()

    cat = lambda xs, shape, dt: np.concatenate(xs) if xs else np.zeros(shape, dt)
    bits = cat(out_bits, (0, n_tot), bool)
    keys = cat(out_keys, (0,), np.uint64)
    pts = cat(out_pts, (0, d), np.float64)
    rad = cat(out_rad, (0,), np.float64)
    vol = cat(out_vol, (0,), np.float64)
    nf = cat(out_nf, (0,), np.int64)
    order = np.argsort(keys, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    keys, bits, pts, rad, vol, nf = keys[order], bits[order], pts[order], rad[order], vol[order], nf[order]
    if len(keys) > 1 and np.any(keys[1:] == keys[:-1]):
        raise RuntimeError("enumerate_regions: a region was visited twice (please report)")

    # edges: arcs whose target was enumerated, made undirected
    src = rank[cat(arc_src, (0,), np.int64)]
    unit = cat(arc_unit, (0,), np.int64)
    res_tmp = Enumeration(keys, pts, rad, vol, nf, (), np.zeros((0, 2), np.int64), np.zeros(0, np.int64),
                          box_volume, np.nan, False, 0, scope, layer, {})
    dst = res_tmp.index_of(cat(arc_key, (0,), np.uint64))
    keep = dst >= 0
    src, dst, unit = src[keep], dst[keep], unit[keep]
    pairs = np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1)
    if len(pairs):
        uniq, inv, cnt = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        eu = np.zeros(len(uniq), np.int64)
        eu[inv.ravel()] = unit
    else:
        uniq, cnt, eu = np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    stats["one_sided_edges"] = int(np.sum(cnt == 1))
    stats["seconds"] = time.perf_counter() - t_start
    stats["num_seeds"] = int(len(seeds))

    frontier_left = int(len(fr_bits))
    if want_volume and len(vol):
        verr = abs(float(vol.sum()) - box_volume) / box_volume
    else:
        verr = np.nan
    complete = frontier_left == 0 and processed < max_regions + 1 and (not want_volume or verr <= 1e-9)
    if frontier_left:
        complete = False
    split_bits = tuple(_split(n64, bits))
    return Enumeration(keys=keys, points=pts, radii=rad, volumes=vol, num_facets=nf, bits=split_bits,
                       edges=uniq.astype(np.int64), edge_units=eu, box_volume=box_volume,
                       volume_error=float(verr), complete=bool(complete), frontier_left=frontier_left,
                       scope=scope, layer=layer, stats=stats)


def _step_across(n64, empty, b_from, b_row, b_fpt, out_pts, out_rad, lo, hi):
    """Codes met just across the parent's facet for candidates whose flipped code is empty."""
    pts_all = np.concatenate(out_pts) if out_pts else np.zeros((0, n64.d))
    rad_all = np.concatenate(out_rad) if out_rad else np.zeros(0)
    found = []
    for e in empty:
        p = int(b_from[e])
        if p < 0:
            continue
        fpt = b_fpt[e]
        c = pts_all[p]
        # step from the parent's centre through the facet centroid, a little beyond it
        direction = fpt - c
        length = np.linalg.norm(direction)
        if not length > 0:
            continue
        for frac in (1e-3, 1e-5, 1e-7):
            q = fpt + frac * max(rad_all[p], 1e-9) * direction / length
            if np.all((q >= lo) & (q <= hi)):
                found.append(_codes64(n64, q[None])[0])
    if not found:
        return np.zeros((0, int(sum(n64.widths))), bool)
    return np.unique(np.array(found, bool), axis=0)


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
def bench_enumerate(quick: bool = False, *, seed: int = 0, solver: str = "auto") -> dict:
    """Regions per second of :func:`enumerate_regions` on small 3- and 4-input nets.

    Workloads (``partax.mlp(jax.random.key(seed), widths, bias_std=0.5)`` over ``[-1, 1]^d``):
    ``3-8-8-1``, ``3-16-16-1``, ``4-8-8-8-1`` (``quick``: only ``3-8-8-1`` and ``4-8-8-8-1``
    capped at 4000 regions). Each is run once to warm up (compilation excluded) and then
    timed once. The machine load (``os.getloadavg``) is reported next to the rates.

    Returns:
      ``dict(workloads=[dict(widths, box, regions, complete, volume_error, seconds,
      regions_per_s, stats)], loadavg, cpus, backend)``.

    Example:
      >>> r = bench_enumerate(quick=True)   # doctest: +SKIP
      >>> r["workloads"][0]["regions_per_s"] > 0   # doctest: +SKIP
      True
    """
    import os

    import jax

    from partax.nets import mlp

    if quick:
        specs = [([3, 8, 8, 1], None), ([4, 8, 8, 8, 1], 4000)]
    else:
        specs = [([3, 8, 8, 1], None), ([3, 16, 16, 1], None), ([4, 8, 8, 8, 1], None)]
    out = []
    for widths, cap in specs:
        net = mlp(jax.random.key(seed), widths, bias_std=0.5)
        box = Box(-1.0, 1.0)
        kw = dict(progress=False, solver=solver, max_regions=cap or 1_000_000)
        enumerate_regions(net, box, **kw)  # warm-up: compilations
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = enumerate_regions(net, box, **kw)
        dt = time.perf_counter() - t0
        out.append(dict(widths=widths, box=[-1.0, 1.0], regions=res.num_regions, complete=res.complete,
                        volume_error=res.volume_error, seconds=dt, regions_per_s=res.num_regions / dt,
                        loadavg=[load0, os.getloadavg()[0]],
                        stats={k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.stats.items()}))
    return dict(workloads=out, loadavg=list(os.getloadavg()), cpus=os.cpu_count(), backend=jax.default_backend())
