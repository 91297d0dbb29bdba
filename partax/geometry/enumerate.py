"""Exact enumeration of every linear region of a ReLU net in a box or in all of R^d.

:func:`enumerate_regions` lists every region of the ``prefix`` partition (layers
``1..layer``) of a low-dimensional input space — inside a :class:`~partax.geometry.Box`, or
in all of R^d (``domain=None``: bounded and unbounded regions, flagged) — by a breadth-first
traversal of the region adjacency graph, batched over the frontier:

1. **Seeds.** Uniform samples of the box (Gaussian samples at the scale of the first layer's
   hyperplanes in R^d, or the user's ``seeds``); their float64 codes (NumPy forward pass,
   bit = pre-activation ``> 0``) name the first regions.
2. **H-representation** of every frontier region from its code (the code frozen: one
   sign-oriented row per unit of layers ``1..layer``, then the ``2d`` box rows in a box), in
   float64, batched.
3. **Chebyshev centre and inradius** of every frontier region: one batched LP per chunk. On
   a CPU (``solver="auto"``) a batched NumPy interior point (no compilation, so the first call
   is as fast as the next ones); on an accelerator the JAX interior point of
   :mod:`partax.geometry.lp` on padded shapes (batch and rows padded to a few bucket sizes, so
   few shapes ever compile); HiGHS for small batches and for every lane where the interior
   point fails or the radius is thin. In R^d each LP also gets a box of half-width ``reach``
   around a point of the region's closure (the crossed facet's centroid), which keeps it
   bounded. The centre is the region's interior point; the float64 forward pass there must
   give the region's code. A candidate with a negative (or inconsistent) radius is empty; one
   with ``0 < radius <= min_radius`` is **dropped** (a possibly real but razor-thin region:
   counted in ``dropped``, and the result is then not ``complete``).
4. **Facets and vertices** from the polar (dual) convex hull around the centre
   (``scipy.spatial.ConvexHull``, one per region): the rows ``a_i·z <= b_i`` map to the
   points ``a_i / (b_i - a_i·c)`` (in R^d the origin is added: the polar of an unbounded
   region has the origin on its boundary, and its hull facets through the origin are
   directions, not vertices). The hull's vertices are the non-redundant rows (the facets);
   each (triangulated) hull facet off the origin is a vertex of the region, tight at its
   ``d`` rows. **Volumes** (exact): for ``d <= 4`` by the flag triangulation of every region of
   the chunk at once — one simplex per flag ``facet ⊃ ridge ⊃ … ⊃ vertex`` spanned by the
   centre and the centroids of the flag's faces (NumPy, batched); for ``d = 5, 6`` by the
   convex hull of the vertices; ``d > 6``: NaN. Unbounded regions of R^d have volume ``inf``.
5. **Neighbours, exactly.** Across the relative interior of a facet ``F`` (row of unit
   ``u``) of a prefix region ``P`` there is exactly one region, and its code is computed from
   ``P`` alone (the *crossing code*). Let ``Z`` be the units whose affine function on ``P``
   vanishes on all of ``F``: ``u``, the units whose row is the same hyperplane as ``u``'s, and
   the units that are identically 0 on ``P``. Every other unit is non-zero on the relative
   interior of ``F`` (its zero set cannot touch it without cutting ``P``), so it keeps its
   bit. The units of ``Z`` are 0 on ``F``; just beyond ``F`` (along the outward normal ``n``)
   their sign is that of their derivative along ``n``, computed layer by layer with the
   crossing code's slopes (forward-mode, exact in float64 up to rounding). None of this
   depends on the point of ``F``: the crossing code is the same for all of it. In the generic
   case ``Z = {u}`` and the crossing code is ``P``'s code with bit ``u`` flipped. If a crossing
   code is nevertheless found empty (rounding), the point a little beyond the facet's
   centroid is read instead (``stats["step_fallbacks"]``; the result is then not
   ``complete``). Unseen codes join the frontier.

Keys are :func:`partax.codes.keys_from_bits` of the float64 codes (computed once at the end;
the traversal deduplicates by the packed codes themselves): the same 64-bit keys as
``partax.region_ids(net, x, "prefix")[:, layer-1]`` at an interior point ``x`` (the net's own
float32 evaluation agrees except within float32 rounding of a boundary). Prefix regions are
convex, so a code names exactly one polyhedron.

**What ``complete=True`` certifies.**

*In a box* (``d <= 6``): the frontier emptied below ``max_regions``, no candidate region was
dropped for a tiny inradius, no LP failed, no crossing needed a step fallback, every edge was
found from both of its regions, and the exact volumes of the regions found sum to the box
volume up to an **absolute** tolerance: ``|sum(volumes) - box_volume| <= volume_tol``
(``volume_gap`` is the signed difference; by default ``volume_tol = 1e-9 * box_volume``, i.e.
``1e-9`` of the box, far above the float64 rounding of a sum of exact simplex volumes, which
is about ``1e-15`` relative per region). Since the regions found are disjoint and lie in the
box, the regions not listed — if any — have total volume at most ``volume_tol`` (plus that
rounding): no region of the box larger than ``volume_tol`` is missing.

*In R^d* (``domain=None``, ``d <= 6``): the same traversal conditions, and a **certified big
box** ``B`` (the result's ``box``): ``B`` is the bounding box of every vertex of every region
found, widened by a margin, so every such vertex lies in the interior of ``B``; the regions
found, clipped to ``B``, have exact volumes that sum to ``vol(B)`` within ``volume_tol``
(``1e-9 vol(B)`` by default). This certifies every region of R^d: (i) the regions found
cover ``B`` (volume); (ii) suppose a region ``Q`` were missing; the union of the closures of
the regions found is then not all of R^d, so its boundary contains a generic point ``y`` of
the relative interior of a facet ``F`` of a region found, with a missing region across ``y``.
The region across ``F`` is the same for all of ``F`` (step 5), and ``F`` has a vertex (every
region is pointed: the first layer's weights have rank ``d``, see below), which is a vertex of
the region found, hence in the interior of ``B``; points of ``F`` near it are in the interior
of ``B``, so the region across ``F`` meets the interior of ``B`` and was found by (i) — a
contradiction. Unboundedness is decided per region by an LP on its recession cone
``{r : A r <= 0}`` (HiGHS): ``max sum(-A r)`` subject to ``A r <= 0``, ``-A r <= 1``, which is
positive iff the cone is not ``{0}`` (the rows have full rank); it is solved for every region
whose polar hull does not contain a ball of radius ``1e-9`` around the origin (the others are
bounded by the hull itself: their vertices are all finite). If the first layer's weights have
rank ``r < d``, every region is a cylinder over a region of the row space of ``W_1``: the
enumeration runs there (``stats["rank"] = r``; every region is then unbounded, ``box`` is
None and the certificate box lives in the row space); ``r < 2`` raises a ``ValueError``.

*For d > 6* no volume is computable: ``complete`` then rests on the traversal alone (the
frontier closed under exact crossings, nothing dropped, no fallbacks, every edge seen from
both sides); ``certificate`` says which of ``"volume"`` / ``"closure"`` applies.

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
    >>> full = enumerate_regions(net, None, progress=False)     # all of R^2
    >>> full.complete, full.num_regions == partax.bounds.zaslavsky(6, 2)
    (True, True)
    >>> bool(np.all(np.isinf(full.volumes[~full.bounded])))
    True
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import threading
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np
from scipy.spatial import ConvexHull
from scipy.spatial import QhullError

from partax.codes import HashCollisionError, keys_from_bits, scope_range
from partax.codes import SCOPES as _SCOPES
from partax.geometry import lp as _lp
from partax.geometry.domains import Box
from partax.nets import Net

__all__ = ["Enumeration", "enumerate_regions", "bench_enumerate", "relucent_regions", "BENCH_WORKLOADS", "SOLVERS"]

SOLVERS = ("auto", "numpy", "ipm", "highs")  # Chebyshev LP backends of enumerate_regions
_MAX_EXACT_DIM = 6
_IPM_MIN_BATCH = 256  # below this "auto" uses HiGHS on an accelerator (no compilation for small frontiers)
_NUMPY_MIN_BATCH = 16  # below this "auto" uses HiGHS on a CPU
_CHUNK = 2048  # frontier regions per batched LP call
_BATCH_BUCKETS = (256, 2048)  # accelerator IPM: batches padded to one of these sizes
_THIN = 1e-7  # interior-point radii below this are re-solved by HiGHS
_KEY_BLOCK = 4096  # region keys are hashed in blocks of this many rows (one compiled shape per net)
_PIPELINE = True  # overlap the next chunk's LPs with this chunk's hulls (a worker thread)
_FLAG_MAX_DIM = 4  # volumes by flag triangulation up to this dimension, qhull beyond
_SAME_ROW = 1e-9  # two unit-norm rows within this are the same hyperplane (crossing codes)
_POLAR_BALL = 1e-9  # polar hull containing this ball around the origin: the region is bounded


class Enumeration(NamedTuple):
    """Every region of a net's prefix partition inside a box, or in all of R^d.

    Regions are sorted by key. ``R`` regions, ``E`` edges, input dimension ``d``.

    Attributes:
      keys: ``uint64[R]`` sorted region keys (``partax.region_ids(net, points, "prefix")
        [:, layer-1]``).
      points: ``float64[R, d]`` interior point of each region (the Chebyshev centre of
        region ∩ ``box``).
      radii: ``float64[R]`` inradius of region ∩ ``box`` (radius of the largest ball in it).
      volumes: ``float64[R]`` exact volume of region ∩ box (in R^d: of the region, ``inf``
        for unbounded regions; NaN for ``d > 6``).
      num_facets: ``int64[R]`` number of facets of region ∩ box (box facets included; in
        R^d the facets of the region itself).
      bits: tuple of ``bool[R, n_l]``, the float64 codes of layers ``1..layer``.
      edges: ``int64[E, 2]`` pairs ``i < j`` of regions sharing a facet (a unit's hyperplane).
      edge_units: ``int64[E]`` the unit whose hyperplane the facet lies on, as a flat index
        over layers ``1..layer`` (layer order). In the generic case the two codes differ in
        exactly this unit; across a non-generic facet (repeated hyperplanes) in more.
      box_volume: volume of ``box``.
      volume_error: ``|sum(volumes ∩ box) - box_volume| / box_volume`` (NaN if not computable).
      complete: the certificate holds (see the module docstring for what it certifies).
      frontier_left: regions found but not processed (``max_regions`` reached).
      scope, layer: the scope and its 1-based layer.
      stats: counters and timings: ``seconds`` (total), ``lp_seconds`` (rows + Chebyshev
        LPs, on the worker thread), ``hull_seconds``, ``keys_seconds``, ``batches``,
        ``numpy_lps`` / ``ipm_lps`` / ``highs_lps`` (Chebyshev LPs per backend),
        ``lp_fallbacks`` (interior-point lanes re-solved by HiGHS), ``lp_failures`` (lanes no
        backend solved), ``empty_flips`` (non-generic crossings: facets whose one-bit flip is
        not the region across, so the exact crossing code differs from it),
        ``empty_crossings`` (crossing codes found empty: rounding; each is stepped across),
        ``code_mismatches`` (candidates whose centre had another code), ``step_fallbacks``
        (points stepped across facets), ``hull_failures`` (qhull errors: facets by LPs
        instead), ``one_sided_edges`` (edges seen from one side only: 0 when every facet was
        found from both regions), ``num_seeds``; in R^d also ``rank``, ``recession_lps``,
        ``bounded_disagreements`` (hull and recession LP disagree), ``cert_box`` (the
        certificate box ``(lo, hi)``), ``cert_box_all_vertices_inside``.
      bounded: ``bool[R]`` in R^d, whether each region is bounded; None in a box.
      dropped: candidate regions left out: an inradius in ``(0, min_radius]``, or a centre
        whose float64 code is not the candidate's (possibly real, razor-thin regions; 0 when
        complete).
      volume_gap: ``sum(volumes ∩ box) - box_volume`` (absolute; NaN if not computable).
      volume_tol: the absolute tolerance of the volume certificate.
      certificate: ``"volume"`` (volumes checked, ``d <= 6``) or ``"closure"`` (``d > 6``).
      box: the box the volume certificate refers to: the domain, or in R^d the certified big
        box that holds every vertex of every region (None if the first layer has rank < d).
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
    bounded: Optional[np.ndarray] = None
    dropped: int = 0
    volume_gap: float = float("nan")
    volume_tol: float = float("nan")
    certificate: str = "volume"
    box: Optional[Box] = None

    @property
    def num_regions(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_unbounded(self) -> int:
        """Number of unbounded regions (R^d only; 0 in a box)."""
        return 0 if self.bounded is None else int(np.sum(~self.bounded))

    def index_of(self, keys) -> np.ndarray:
        """``int64`` index of each key in ``self.keys``, -1 where absent."""
        return _index_of(self.keys, keys)


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
def _check_args(net, domain, scope, layer, max_regions, solver, seeds, volume_tol, reach):
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
    if domain is not None and not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box or None (all of R^d), got {type(domain).__name__}")
    if domain is not None:
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
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {SOLVERS}, got {solver!r}")
    for name, v in (("volume_tol", volume_tol), ("reach", reach)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < np.inf)):
            raise ValueError(f"{name}: expected a positive finite number or None, got {v!r}")
    if seeds is not None:
        seeds = np.asarray(seeds, np.float64)
        if seeds.ndim != 2 or seeds.shape[1] != d or seeds.shape[0] == 0:
            raise ValueError(f"seeds: expected shape (S, {d}) with S >= 1, got {seeds.shape}")
        if not np.all(np.isfinite(seeds)):
            raise ValueError("seeds: expected finite points (found NaN or inf)")
        if domain is not None:
            lo, hi = domain.bounds(d)
            if not np.all((seeds >= lo) & (seeds <= hi)):
                raise ValueError("seeds: expected points inside the domain box")
    return layer, first, last, seeds


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


def _pack(bits: np.ndarray) -> list:
    """Hashable exact names of codes ``bool[R, n]``: the packed bytes of each row."""
    if len(bits) == 0:
        return []
    return np.packbits(bits, axis=1).view(np.dtype((np.void, -(-bits.shape[1] // 8)))).ravel().tolist()


def _reduce(n64: _Net64):
    """Rank reduction of the first layer: ``(n64 in the row space of W_1, Q: float64[d, r])``.

    If ``W_1`` has rank ``r < d`` the net depends on ``x`` only through ``Q^T x`` (``Q`` an
    orthonormal basis of the span of ``W_1``'s columns); the reduced net has first weights
    ``Q^T W_1``. Returns ``(n64, None)`` when the rank is full.
    """
    W1 = n64.Ws[0]
    U, S, _ = np.linalg.svd(W1, full_matrices=False)
    top = float(S.max()) if S.size else 0.0
    r = int(np.sum(S > top * 1e-12 * max(W1.shape))) if top > 0 else 0
    if r == n64.d:
        return n64, None
    if r < 2:
        raise ValueError(f"net: the first layer's weights have rank {r} < 2, so the partition of R^d is that of a "
                         "line (or trivial); use partax.geometry.slices.line_regions along the weights' direction")
    Q = U[:, :r]
    return n64._replace(Ws=(Q.T @ W1,) + n64.Ws[1:], d=r), Q


def _scale(n64: _Net64) -> float:
    """Typical distance of the first layer's hyperplanes from the origin (at least 1)."""
    W1, b1 = n64.Ws[0], n64.bs[0]
    nrm = np.linalg.norm(W1, axis=0)
    live = nrm > 0
    return float(max(1.0, np.max(np.abs(b1[live]) / nrm[live], initial=0.0)))


# --------------------------------------------------------------------------------------
# Chebyshev LPs
# --------------------------------------------------------------------------------------
def _pick_solver(solver: str, B: int) -> str:
    if solver != "auto":
        return solver
    if _lp.default_solver() == "ipm":  # an accelerator: the compiled interior point
        return "ipm" if B >= _IPM_MIN_BATCH else "highs"
    return "numpy" if B >= _NUMPY_MIN_BATCH else "highs"


def _bucket(B: int) -> int:
    for size in _BATCH_BUCKETS:
        if B <= size:
            return size
    return 1 << (B - 1).bit_length()


def _np_ipm(c, A, b, x0, tol, max_iter=80):
    """Batched primal-dual interior point (Mehrotra predictor-corrector) in NumPy float64.

    Solves ``min c·x  s.t.  A x <= b`` for every lane of a batch: the same inequality-form
    method as the ``"ipm"`` backend of :mod:`partax.geometry.lp` (slacks ``s = b - A x``,
    multipliers ``y``; normal equations ``A^T diag(y/s) A`` solved per lane), written with
    batched NumPy so that it needs no compilation. Lanes leave the batch as they converge.
    For the small LPs of the enumeration (``n = d + 1 <= 7`` variables) on a CPU this is as
    fast per LP as the compiled interior point, and the first call costs nothing extra.

    Args:
      c: ``[B, n]``; A: ``[B, m, n]`` (unit-norm rows); b: ``[B, m]``; x0: ``[B, n]`` start.
      tol: stop when the relative primal and dual residuals and the relative gap are below it.
      max_iter: iteration limit.

    Returns:
      ``(x: float64[B, n], status: int32[B])``; status 0 converged, 1 not converged / failed.
    """
    B, m, n = A.shape
    x = np.array(x0, np.float64)
    s = np.maximum(b - np.einsum("bmn,bn->bm", A, x), 1.0)
    y = np.ones((B, m))
    status = np.ones(B, np.int32)
    bn = 1.0 + np.linalg.norm(b, axis=1)
    cn = 1.0 + np.linalg.norm(c, axis=1)
    act = np.arange(B)
    eye = np.eye(n)

    def max_step(v, dv):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(dv < 0, -v / dv, np.inf)
        return np.minimum(1.0, ratio.min(axis=1))

    Aa, ba, ca, xa, sa, ya = A, b, c, x, s, y
    for _ in range(max_iter):
        rp = np.einsum("bmn,bn->bm", Aa, xa) + sa - ba
        rd = np.einsum("bm,bmn->bn", ya, Aa) + ca
        gap = np.einsum("bm,bm->b", sa, ya)
        merit = np.maximum(np.maximum(np.linalg.norm(rp, axis=1) / bn[act], np.linalg.norm(rd, axis=1) / cn[act]),
                           gap / (1.0 + np.abs(np.einsum("bn,bn->b", ca, xa))))
        done = merit <= tol
        bad = ~np.isfinite(merit)
        if done.any() or bad.any():
            fin = done | bad
            x[act[fin]] = xa[fin]
            status[act[done]] = 0
            keep = ~fin
            act = act[keep]
            if not len(act):
                break
            Aa, ba, ca, xa, sa, ya = Aa[keep], ba[keep], ca[keep], xa[keep], sa[keep], ya[keep]
            rp, rd, gap = rp[keep], rd[keep], gap[keep]
        mu = gap / m
        w = ya / sa
        M = np.matmul(Aa.transpose(0, 2, 1) * w[:, None, :], Aa)
        M += (1e-13 * np.trace(M, axis1=1, axis2=2) / n + 1e-300)[:, None, None] * eye
        try:
            L = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            L = None

        def newton(rc):
            rhs = -rd - np.einsum("bm,bmn->bn", (-rc + ya * rp) / sa, Aa)
            if L is not None:
                t = np.linalg.solve(L, rhs[..., None])
                dx = np.linalg.solve(L.transpose(0, 2, 1), t)[..., 0]
            else:
                dx = np.linalg.solve(M, rhs[..., None])[..., 0]
            ds = -rp - np.einsum("bmn,bn->bm", Aa, dx)
            dy = (-rc - ya * ds) / sa
            return dx, ds, dy

        dx, ds, dy = newton(sa * ya)
        ap = max_step(sa, ds)
        ad = max_step(ya, dy)
        mu_aff = np.einsum("bm,bm->b", sa + ap[:, None] * ds, ya + ad[:, None] * dy) / m
        sigma = np.clip((mu_aff / mu) ** 3, 0.0, 1.0)
        dx, ds, dy = newton(sa * ya + ds * dy - (sigma * mu)[:, None])
        ap = np.minimum(1.0, 0.99 * max_step(sa, ds))[:, None]
        ad = np.minimum(1.0, 0.99 * max_step(ya, dy))[:, None]
        xa = xa + ap * dx
        sa = sa + ap * ds
        ya = ya + ad * dy
    else:
        # iteration limit: lanes that stagnated near the optimum are accepted within 100 tol
        rp = np.einsum("bmn,bn->bm", Aa, xa) + sa - ba
        rd = np.einsum("bm,bmn->bn", ya, Aa) + ca
        merit = np.maximum(np.maximum(np.linalg.norm(rp, axis=1) / bn[act], np.linalg.norm(rd, axis=1) / cn[act]),
                           np.einsum("bm,bm->b", sa, ya) / (1.0 + np.abs(np.einsum("bn,bn->b", ca, xa))))
        x[act] = xa
        status[act[merit <= 100 * tol]] = 0
    return x, status


def _chebyshev(Au, bu, x0, solver, tol, stats):
    """Chebyshev centres/radii of the unit-row polytopes ``Au z <= bu`` (bounded by box rows).

    Returns ``(centers: float64[B, d], radii: float64[B])``; radius ``-inf`` for a polytope
    with an inconsistent constant row (``0 <= -1``: empty without an LP), NaN where no
    backend converged.
    """
    B, m, d = Au.shape
    dead = ~np.any(Au != 0, axis=2)
    inconsistent = np.any(dead & (bu < 0), axis=1)
    bu = np.where(dead, 1.0, bu)
    use = _pick_solver(solver, B)
    c, AL, bL = _lp.chebyshev_lp(Au, bu, radius_cap=1e6)
    if use == "ipm":
        # Bounded shape buckets: the batch padded to one of _BATCH_BUCKETS, the rows to a
        # power of two >= 16 (inert 0 <= 1 rows), so that only a few shapes ever compile.
        P = _bucket(B)
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
        res = _lp.solve(cP, AP, bP, solver="ipm", tol=tol, x0=x0P)
        x, status = res.x[:B], res.status[:B]
        stats["ipm_lps"] += B
    elif use == "numpy":
        start = np.zeros((B, d + 1))
        start[:, :d] = x0
        x, status = _np_ipm(c, AL, bL, start, tol)
        stats["numpy_lps"] += B
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
    bad &= ~inconsistent
    if use != "highs" and bad.any():
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
    radii[inconsistent] = -np.inf
    return centers, radii


def _recession_unbounded(Au, live, stats) -> np.ndarray:
    """``bool[B]``: whether ``{r : Au r <= 0}`` is not ``{0}`` (HiGHS; rows of full rank).

    The LP ``max sum(-Au r)`` s.t. ``Au r <= 0``, ``-Au r <= 1`` is feasible (``r = 0``) and
    bounded; its optimum is 0 iff the cone is ``{0}``, and at least 1 otherwise (scale a
    non-zero direction until its largest slack is 1).
    """
    B, m, d = Au.shape
    if B == 0:
        return np.zeros(0, bool)
    A = np.where(live[..., None], Au, 0.0)
    c = A.sum(axis=1)  # minimise sum(A r) = maximise sum(-A r)
    AA = np.concatenate([A, -A], axis=1)
    bb = np.concatenate([np.zeros((B, m)), np.where(live, 1.0, 0.0)], axis=1)
    res = _lp.solve(c, AA, bb, solver="highs", tol=1e-9)
    stats["recession_lps"] += B
    if np.any(res.status != _lp.OPTIMAL):
        raise RuntimeError("enumerate_regions: a recession-cone LP failed (HiGHS); please report")
    return -res.value > 0.5


# --------------------------------------------------------------------------------------
# polar hull: facets and vertices; volumes by a flag triangulation
# --------------------------------------------------------------------------------------
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
      excluded: bool (some hull facet was dropped as a direction))``.
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
    if origin:
        at_inf = np.any(simp == len(rows), axis=1) | (eq[:, d] > -1e-12)
        excluded = bool(at_inf.any())
        eq, simp = eq[~at_inf], simp[~at_inf]
        facet_pts = np.unique(hull.simplices.ravel())
        facet_pts = facet_pts[facet_pts < len(rows)]
    else:
        facet_pts = np.unique(simp.ravel())
    verts = eq[:, :d] / (-eq[:, d:])
    return rows[facet_pts], verts, rows[simp], marginal, excluded


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
class _Geometry(NamedTuple):
    own: np.ndarray  # int64[F] region of each facet
    rows: np.ndarray  # int64[F] its row
    points: np.ndarray  # float64[F, d] a point of the facet (centroid of its vertices)
    volumes: np.ndarray  # float64[B] (NaN where not computable)
    marginal: np.ndarray  # bool[B] polar hull not certainly around the origin (R^d)
    excluded: np.ndarray  # bool[B] some hull facet dropped as a direction (R^d)
    vmin: np.ndarray  # float64[B, d] smallest vertex coordinates (NaN if no vertex known)
    vmax: np.ndarray  # float64[B, d]


def _geometry(Au, bu, live, centers, radii, tol, want_volume, stats, origin=False):
    """Facets, facet points, volumes and vertex extents of a batch of polyhedra (see :func:`_polar`).

    Facet ``f`` of region ``owner[f]`` lies on row ``rows[f]``; ``points[f]`` is the centroid
    of its vertices (a point of the facet; in its relative interior when the facet is bounded).
    """
    B, m, d = Au.shape
    vols = np.full(B, np.nan)
    marginal = np.zeros(B, bool)
    excluded = np.zeros(B, bool)
    vmin = np.full((B, d), np.nan)
    vmax = np.full((B, d), np.nan)
    regs, verts, tights, good, facs = [], [], [], [], []
    slow_own, slow_rows, slow_pts = [], [], []
    for j in range(B):
        try:
            f, v, t, marginal[j], excluded[j] = _polar(Au[j], bu[j], live[j], centers[j], radii[j], d, origin)
            if not len(v):
                raise ValueError("no vertex")
        except (QhullError, ValueError):
            stats["hull_failures"] += 1
            f, pts, vols[j] = _facets_lp(Au[j], bu[j], live[j], centers[j], radii[j], d, tol,
                                         want_volume and not origin)
            marginal[j] = True
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
            if d <= _FLAG_MAX_DIM:
                vols[good] = _flag_volumes(reg, verts, tight, len(good), m) * scale**d
            else:
                cuts = np.cumsum([len(r) for r in regs])[:-1]
                for g, v in enumerate(np.split(verts, cuts)):
                    try:
                        vols[good[g]] = ConvexHull(v).volume * scale[g] ** d
                    except (QhullError, ValueError):
                        vols[good[g]] = np.nan  # an unbounded region's partial vertex set
    own = np.concatenate(own).astype(np.int64)
    order = np.argsort(own, kind="stable")
    return _Geometry(own[order], np.concatenate(rows).astype(np.int64)[order], np.concatenate(pts)[order], vols,
                     marginal, excluded, vmin, vmax)


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


def _new_codes(codes: list, known: set) -> np.ndarray:
    """Indices of the first occurrence of each packed code not in ``known`` (which is updated)."""
    out = []
    for i, k in enumerate(codes):
        if k not in known:
            known.add(k)
            out.append(i)
    return np.array(out, np.int64)


def _crossing_codes(n64: _Net64, bits, Au, bu, zero, own, frow) -> np.ndarray:
    """The code of the region across each facet (see step 5 of the module docstring).

    Args:
      bits: ``bool[B, n_tot]`` codes of the regions; ``Au, bu``: their unit-norm rows (the
        first ``n_tot`` are the units'); ``zero``: ``bool[B, n_tot]`` units identically 0 on
        the region; ``own, frow``: ``int64[F]`` region and unit row of each facet.

    Returns:
      ``bool[F, n_tot]``: ``Z`` (the units vanishing on the facet: its own unit, the units
      with the same hyperplane, the units identically 0) take the sign of their derivative
      along the facet's outward normal, computed layer by layer with the new code's slopes;
      every other unit keeps its bit.
    """
    n_tot = bits.shape[1]
    F = len(own)
    out = np.empty((F, n_tot), bool)
    step = max(1, (1 << 22) // max(1, n_tot * Au.shape[2]))  # bounded temporaries
    for s in range(0, F, step):
        o, u = own[s:s + step], frow[s:s + step]
        normal = Au[o, u]  # outward unit normal of each facet
        rows = Au[o, :n_tot]
        same = np.max(np.abs(rows - normal[:, None]), axis=2) <= _SAME_ROW
        off = bu[o, u]
        same &= np.abs(bu[o, :n_tot] - off[:, None]) <= _SAME_ROW * (1.0 + np.abs(off))[:, None]
        Z = same | zero[o]
        Z[np.arange(len(o)), u] = True
        old = bits[o]
        new = old.copy()
        dh = normal
        start = 0
        for W, width in zip(n64.Ws, n64.widths):
            g = dh @ W
            eps = 1e-12 * (np.abs(dh) @ np.abs(W))
            sl = slice(start, start + width)
            new[:, sl] = np.where(Z[:, sl], g > eps, old[:, sl])
            dh = np.where(new[:, sl], 1.0, n64.alpha) * g
            start += width
        out[s:s + step] = new
    return out


def _unit_rows(n64: _Net64, bits, box_A, box_b):
    """Raw rows of the codes, the box rows appended, made unit: ``(Au, bu, live, zero)``."""
    B = len(bits)
    A, b = _rows(n64, bits)
    nrm = np.linalg.norm(A, axis=-1)
    zero = (nrm <= 1e-12 * max(1.0, float(np.max(nrm, initial=0.0)))) & (
        np.abs(b) <= 1e-12 * max(1.0, float(np.max(np.abs(b), initial=0.0))))
    A = np.concatenate([A, np.broadcast_to(box_A, (B,) + box_A.shape)], axis=1)
    b = np.concatenate([b, np.broadcast_to(box_b, (B, box_b.shape[0]))], axis=1)
    strict = np.concatenate([bits, np.zeros((B, box_b.shape[0]), bool)], axis=1)
    Au, bu, live = _unit(A, b, strict)
    return Au, bu, live, zero


def _local_box(hint, reach):
    """Unit rows of the box ``|z - hint|_inf <= reach``: ``(A: [B, 2d, d], b: [B, 2d])``."""
    B, d = hint.shape
    eye = np.eye(d)
    A = np.broadcast_to(np.concatenate([eye, -eye]), (B, 2 * d, d))
    return A, np.concatenate([hint + reach, -(hint - reach)], axis=1)


# --------------------------------------------------------------------------------------
# the traversal
# --------------------------------------------------------------------------------------
def enumerate_regions(net: Net, domain: Optional[Box], *, scope: str = "prefix", layer: Optional[int] = None,
                      max_regions: int = 100_000, seeds=None, solver: str = "auto",
                      progress: bool = True, num_seeds: int = 1024, tol: float = 1e-9,
                      min_radius: float = 1e-12, volume_tol: Optional[float] = None,
                      reach: Optional[float] = None) -> Enumeration:
    """Every region of a net's ``prefix`` partition in a box or in R^d, by adjacency-graph traversal.

    See the module docstring for the method and for what ``complete`` certifies. The
    traversal starts from the regions of the seed points and stops when no region is left to
    visit (or after ``max_regions``).

    Args:
      net: an unstacked :class:`partax.Net` with input dimension ``d >= 2`` (volumes are exact
        for ``d <= 6``; beyond, they are NaN and ``complete`` rests on the traversal alone).
      domain: a :class:`partax.geometry.Box` in the input space, or None for all of R^d
        (every region, bounded and unbounded; ``Enumeration.bounded`` flags them, unbounded
        regions have volume ``inf``).
      scope: ``"prefix"``. ``"layer"`` and ``"suffix"`` are accepted at ``layer=1`` only (where
        ``"layer"`` is the prefix of layer 1 and ``"suffix"`` the prefix of the last layer);
        elsewhere their regions live in a latent space and a ``ValueError`` is raised.
      layer: 1-based hidden layer (default: the last).
      max_regions: stop after processing this many regions (``complete`` is then False).
      seeds: optional points ``[S, d]`` (inside the box, if any) whose regions start the
        traversal; default ``num_seeds`` uniform samples of the box (in R^d: Gaussian samples
        at the distance scale of the first layer's hyperplanes), fixed seed.
      solver: Chebyshev LP backend: ``"numpy"`` (batched NumPy interior point, no
        compilation), ``"ipm"`` (the batched JAX interior point of
        :mod:`partax.geometry.lp`, on padded shape buckets), ``"highs"``, or ``"auto"``
        (``"numpy"`` on a CPU, ``"ipm"`` on an accelerator, HiGHS for small batches); lanes
        where an interior point fails are re-solved by HiGHS.
      progress: show a ``tqdm`` progress bar.
      num_seeds: number of seed samples when ``seeds`` is None.
      tol: LP tolerance.
      min_radius: a candidate region with an inradius in ``(0, min_radius]`` is dropped
        (counted in ``dropped``; the result is then not complete).
      volume_tol: absolute tolerance of the volume certificate (default ``1e-9`` times the
        volume of the certificate's box).
      reach: R^d only: half-width of the box around a point of each region's closure that
        bounds its Chebyshev LP (default: the distance scale of the first layer's
        hyperplanes, at least 1).

    Returns:
      An :class:`Enumeration`.

    Raises:
      TypeError / ValueError: naming the offending argument.
      HashCollisionError: two distinct codes with the same 64-bit key.

    Example:
      >>> import jax, partax
      >>> from partax.geometry import Box
      >>> net = partax.mlp(jax.random.key(1), [3, 8, 8, 1], bias_std=0.3)
      >>> res = enumerate_regions(net, Box(-1, 1), progress=False)
      >>> res.complete, res.volume_error < 1e-9, res.dropped
      (True, True, 0)
      >>> full = enumerate_regions(net, None, progress=False)
      >>> full.complete, full.num_regions >= res.num_regions, bool(full.box.contains(full.points).all())
      (True, True, True)
    """
    layer, first, depth, seeds = _check_args(net, domain, scope, layer, max_regions, solver, seeds, volume_tol, reach)
    t_start = time.perf_counter()
    n64 = _net64(net, depth)
    rd = domain is None
    Q = None
    stats = dict(numpy_lps=0, ipm_lps=0, highs_lps=0, lp_fallbacks=0, lp_failures=0, empty_flips=0,
                 empty_crossings=0, code_mismatches=0, hull_failures=0, step_fallbacks=0, lp_seconds=0.0,
                 hull_seconds=0.0, keys_seconds=0.0, batches=0)
    if rd:
        n64, Q = _reduce(n64)
        stats.update(rank=n64.d, recession_lps=0, bounded_disagreements=0)
    d = n64.d
    n_tot = int(sum(n64.widths))
    want_volume = d <= _MAX_EXACT_DIM
    if rd:
        scale = _scale(n64)
        reach = float(reach) if reach is not None else scale
        box_A, box_b = np.zeros((0, d)), np.zeros(0)
        lo, hi = np.full(d, -np.inf), np.full(d, np.inf)
        if seeds is None:
            seeds = np.random.default_rng(0).normal(size=(int(num_seeds), d)) * scale
        elif Q is not None:
            seeds = seeds @ Q
    else:
        box_A, box_b = domain.rows(d)
        lo, hi = domain.bounds(d)
        if seeds is None:
            seeds = lo + np.random.default_rng(0).random((int(num_seeds), d)) * (hi - lo)

    # the key kernel compiles on a side thread while the traversal runs (one shape per net)
    warm_keys = threading.Thread(target=_keys, args=(n64, np.zeros((1, n_tot), bool), first), daemon=True)
    warm_keys.start()
    seed_bits = _codes64(n64, seeds)
    seed_bits, first_idx = np.unique(seed_bits, axis=0, return_index=True)
    known: set = set()
    new = _new_codes(_pack(seed_bits), known)
    frontier = _Frontier(n_tot, d)
    none = np.full(len(new), -1, np.int64)
    frontier.push(seed_bits[new], seeds[first_idx[new]], none, none, seeds[first_idx[new]])

    def prepare(chunk):
        """H-representations and Chebyshev LPs of a chunk (runs on the worker thread)."""
        bits, hint = chunk[0], chunk[1]
        t0 = time.perf_counter()
        Au, bu, live, zero = _unit_rows(n64, bits, box_A, box_b)
        boxed = np.zeros(len(bits), bool)
        if rd:  # a box around a point of the region's closure keeps the LP bounded
            LA, Lb = _local_box(hint, reach)
            centers, radii = _chebyshev(np.concatenate([Au, LA], axis=1), np.concatenate([bu, Lb], axis=1),
                                        hint, solver, tol, stats)
            lslack = Lb - np.einsum("bmk,bk->bm", LA, centers)
            boxed = lslack.min(axis=1) <= radii * (1 + 1e-6) + 1e-12
        else:
            centers, radii = _chebyshev(Au, bu, hint, solver, tol, stats)
        stats["lp_seconds"] += time.perf_counter() - t0
        return chunk, Au, bu, live, zero, centers, radii, boxed

    out = dict(bits=[], pts=[], rad=[], vol=[], nf=[], marginal=[], excluded=[], vmin=[], vmax=[], boxed=[])
    arcs = dict(src=[], code=[], unit=[], fpt=[])
    all_pts, all_rad = [], []  # interior points and radii by processing order (for stepping)
    empty_codes: set = set()  # crossing codes found empty (rounding)
    count = [0]  # regions processed
    dropped = [0]

    def step(parent, row, fpt):
        """Rescue for crossings into a code found empty: read the code just across the facet."""
        pts_all = np.concatenate(all_pts) if all_pts else np.zeros((0, d))
        rad_all = np.concatenate(all_rad) if all_rad else np.zeros(0)
        src, rows, codes, qs = _step_across(n64, parent, row, fpt, pts_all, rad_all, lo, hi)
        stats["step_fallbacks"] += len(codes)
        if not len(codes):
            return
        packed = _pack(codes)
        arcs["src"].append(src)
        arcs["code"].extend(packed)
        arcs["unit"].append(rows)
        arcs["fpt"].append(np.full((len(src), d), np.nan))
        nw = _new_codes(packed, known)
        if len(nw):
            frontier.push(codes[nw], qs[nw], np.full(len(nw), -1, np.int64), np.full(len(nw), -1, np.int64), qs[nw])

    def process(chunk, Au, bu, live, zero, centers, radii, boxed):
        bits, _, parent, prow, fpt = chunk
        stats["batches"] += 1
        failed = np.isnan(radii)
        stats["lp_failures"] += int(failed.sum())
        ok = ~failed & (radii > min_radius)
        thin = ~failed & (radii > 0) & (radii <= min_radius)
        # The float64 code at the interior point must be the candidate's code.
        mismatch = ok.copy()
        mismatch[ok] = np.any(_codes64(n64, centers[ok]) != bits[ok], axis=1)
        stats["code_mismatches"] += int(mismatch.sum())
        ok &= ~mismatch
        dropped[0] += int(thin.sum() + mismatch.sum())
        empty = np.flatnonzero(~ok & ~failed & ~thin & ~mismatch)
        crossed = empty[parent[empty] >= 0]
        if len(crossed):
            stats["empty_crossings"] += len(crossed)
            empty_codes.update(_pack(bits[crossed]))
            stepped.update(zip(parent[crossed].tolist(), prow[crossed].tolist()))
            step(parent[crossed], prow[crossed], fpt[crossed])
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return 0
        bits, centers, radii = bits[idx], centers[idx], radii[idx]
        Au, bu, live, zero = Au[idx], bu[idx], live[idx], zero[idx]
        t2 = time.perf_counter()
        geo = _geometry(Au, bu, live, centers, radii, tol, want_volume, stats, origin=rd)
        stats["hull_seconds"] += time.perf_counter() - t2
        base = count[0]
        count[0] += len(idx)
        out["bits"].append(bits)
        out["pts"].append(centers)
        out["rad"].append(radii)
        out["vol"].append(geo.volumes)
        out["nf"].append(np.bincount(geo.own, minlength=len(idx)))
        out["marginal"].append(geo.marginal)
        out["excluded"].append(geo.excluded)
        out["vmin"].append(geo.vmin)
        out["vmax"].append(geo.vmax)
        out["boxed"].append(boxed[idx])
        all_pts.append(centers)
        all_rad.append(radii)
        # Crossings through the units' facets (the domain's rows are >= n_tot): the exact crossing code.
        t3 = time.perf_counter()
        unit = geo.rows < n_tot
        own, frow, fpts = geo.own[unit], geo.rows[unit], geo.points[unit]
        nbits = _crossing_codes(n64, bits, Au, bu, zero, own, frow)
        stats["empty_flips"] += int(np.sum(np.sum(nbits != bits[own], axis=1) != 1))
        packed = _pack(nbits)
        arcs["src"].append(base + own)
        arcs["code"].extend(packed)
        arcs["unit"].append(frow)
        arcs["fpt"].append(fpts)
        nw = _new_codes(packed, known)
        if len(nw):
            frontier.push(nbits[nw], fpts[nw], base + own[nw], frow[nw], fpts[nw])
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
            if not empty_codes or not arcs["code"] or count[0] >= max_regions:
                break
            # Every crossing into a code found empty steps across its facet (once).
            src = np.concatenate(arcs["src"])
            rows = np.concatenate(arcs["unit"])
            fpt = np.concatenate(arcs["fpt"])
            hit = np.array([k in empty_codes for k in arcs["code"]], bool) & np.isfinite(fpt[:, 0])
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

    cat = lambda xs, shape, dt: np.concatenate(xs) if xs else np.zeros(shape, dt)
    bits = cat(out["bits"], (0, n_tot), bool)
    pts = cat(out["pts"], (0, d), np.float64)
    rad = cat(out["rad"], (0,), np.float64)
    vol = cat(out["vol"], (0,), np.float64)
    nf = cat(out["nf"], (0,), np.int64)
    R = len(bits)

    # edges: arcs whose target was enumerated (by processing order), made undirected
    t3 = time.perf_counter()
    index = {k: i for i, k in enumerate(_pack(bits))}
    src = cat(arcs["src"], (0,), np.int64)
    unit = cat(arcs["unit"], (0,), np.int64)
    dst = np.array([index.get(k, -1) for k in arcs["code"]], np.int64)
    warm_keys.join()
    keys = _keys(n64, bits, first)
    stats["keys_seconds"] += time.perf_counter() - t3
    order = np.argsort(keys, kind="stable")
    if R > 1 and np.any(keys[order][1:] == keys[order][:-1]):
        raise HashCollisionError("enumerate_regions: two distinct region codes share a 64-bit key")
    rank = np.empty_like(order)
    rank[order] = np.arange(R)
    keep = (dst >= 0) & (dst != src)
    src, dst, unit = rank[src[keep]], rank[dst[keep]], unit[keep]
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
    frontier_left = int(len(frontier))
    closed = (frontier_left == 0 and dropped[0] == 0 and stats["lp_failures"] == 0 and stats["step_fallbacks"] == 0
              and stats["empty_crossings"] == 0 and stats["one_sided_edges"] == 0)

    bounded = None
    box = domain
    if rd:
        bounded, vol, pts, rad, box, box_volume, cert_ok = _certify_rd(
            n64, bits, pts, rad, vol, out, cat, solver, tol, min_radius, want_volume, stats)
        if Q is not None:  # back from the row space of W_1: every region is a cylinder
            pts = pts @ Q.T
            bounded = np.zeros(R, bool)
            vol = np.full(R, np.inf)
    else:
        box_volume = float(np.prod(hi - lo))
        cert_ok = True
    total = float(np.sum(out["_clipped"])) if rd else float(vol.sum())
    gap = total - box_volume if (want_volume and np.isfinite(box_volume)) else float("nan")
    vtol = float(volume_tol) if volume_tol is not None else 1e-9 * box_volume
    verr = abs(gap) / box_volume if want_volume else float("nan")
    complete = closed and cert_ok and (not want_volume or abs(gap) <= vtol)
    stats["seconds"] = time.perf_counter() - t_start
    return Enumeration(keys=keys[order], points=pts[order], radii=rad[order], volumes=vol[order],
                       num_facets=nf[order], bits=tuple(_split(n64, bits[order])), edges=edges.astype(np.int64),
                       edge_units=edge_units, box_volume=box_volume, volume_error=float(verr),
                       complete=bool(complete), frontier_left=frontier_left, scope=scope, layer=layer, stats=stats,
                       bounded=None if bounded is None else bounded[order], dropped=int(dropped[0]),
                       volume_gap=float(gap), volume_tol=vtol, certificate="volume" if want_volume else "closure",
                       box=box if Q is None else None)


def _keys(n64: _Net64, bits: np.ndarray, first: int) -> np.ndarray:
    """64-bit keys of the codes ``bits[R, n_tot]``, in blocks of ``_KEY_BLOCK`` rows.

    Every block is padded to the same size, so the key kernel compiles once per net
    (and :func:`enumerate_regions` compiles it on a side thread while its LPs run).
    """
    out = [np.zeros(0, np.uint64)]
    for s in range(0, len(bits), _KEY_BLOCK):
        block = bits[s:s + _KEY_BLOCK]
        padded = np.zeros((_KEY_BLOCK, bits.shape[1]), bool)
        padded[: len(block)] = block
        out.append(keys_from_bits(_split(n64, padded), first, len(n64.widths))[: len(block)])
    return np.concatenate(out)


def _certify_rd(n64, bits, pts, rad, vol, out, cat, solver, tol, min_radius, want_volume, stats):
    """R^d: boundedness per region, the certified big box and the clipped volumes in it.

    Returns ``(bounded, volumes, points, radii, box, box_volume, ok)``; ``out["_clipped"]``
    receives the volumes of the regions clipped to the box (their sum is checked against the
    box's volume by the caller). ``ok`` is False when the box could not be certified to hold
    every vertex, or when the hull and the recession LP disagree.
    """
    R, d = pts.shape
    n_tot = bits.shape[1]
    marginal = cat(out["marginal"], (0,), bool)
    excluded = cat(out["excluded"], (0,), bool)
    vmin = cat(out["vmin"], (0, d), np.float64)
    vmax = cat(out["vmax"], (0, d), np.float64)
    boxed = cat(out["boxed"], (0,), bool)
    none = np.zeros((0, d)), np.zeros(0)
    # 1. boundedness: the recession-cone LP wherever the polar hull is not conclusive
    bounded = np.ones(R, bool)
    cand = np.flatnonzero(marginal | excluded)
    for s in range(0, len(cand), _CHUNK):
        c = cand[s:s + _CHUNK]
        Au, _, live, _ = _unit_rows(n64, bits[c], *none)
        bounded[c] = ~_recession_unbounded(Au, live, stats)
    disagree = bounded & excluded
    stats["bounded_disagreements"] = int(disagree.sum())
    vol = np.where(bounded, np.where(disagree, np.nan, vol), np.inf)
    # 2. the big box: every vertex of every region found in its interior
    known = np.all(np.isfinite(vmin), axis=1)
    ok = bool(known.all()) and R > 0 and stats["bounded_disagreements"] == 0
    stats["cert_box_all_vertices_inside"] = ok
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
        for s in range(0, len(redo), _CHUNK):
            c = redo[s:s + _CHUNK]
            Au, bu, live, _ = _unit_rows(n64, bits[c], bA, bb)
            hint = np.clip(pts[c], blo, bhi)
            cen, r = _chebyshev(Au, bu, hint, solver, tol, stats)
            good = np.isfinite(r) & (r > min_radius)
            if not good.all():
                ok = False
            g = np.flatnonzero(good)
            if len(g):
                geo = _geometry(Au[g], bu[g], live[g], cen[g], r[g], tol, want_volume, stats)
                clipped[c[g]] = geo.volumes
                pts[c[g]], rad[c[g]] = cen[g], r[g]
    out["_clipped"] = clipped if want_volume else np.full(1, np.nan)
    return bounded, vol, pts, rad, box, box_volume, ok


def _index_of(sorted_keys, keys) -> np.ndarray:
    keys = np.asarray(keys, np.uint64)
    if len(sorted_keys) == 0:
        return np.full(keys.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, pos, -1).astype(np.int64)


def _step_across(n64, parent, row, fpt, pts_all, rad_all, lo, hi):
    """Codes met just across facets, for crossings whose crossing code was found empty.

    From the parent region's interior point through the facet's centroid, points slightly
    beyond the facet (at three distances); the float64 code there names a real region.

    Returns:
      ``(src: int64[K], rows: int64[K], codes: bool[K, n_tot], points: float64[K, d])``,
      unique per (src, code).
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
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_tot), bool), np.zeros((0, n64.d))
    src = np.array(src, np.int64)
    rows = np.array(rows, np.int64)
    pts = np.array(pts)
    codes = _codes64(n64, pts)
    # one arc per (parent, code); an arc back to the parent itself is dropped with the edges
    key = np.concatenate([src[:, None], codes.astype(np.int64)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return src[first], rows[first], codes[first], pts[first]


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
# name -> (widths, half-width h of the box [-h, h]^d or None for all of R^d, quick)
BENCH_WORKLOADS = {
    "3-8-8-1": ([3, 8, 8, 1], 2.0, True),
    "3-16-16-1": ([3, 16, 16, 1], 2.0, False),
    "4-8-8-8-1": ([4, 8, 8, 8, 1], 2.0, True),
    "4-12-12-12-1": ([4, 12, 12, 12, 1], 2.0, False),
    "R^2 2-32-32-1": ([2, 32, 32, 1], None, True),
    "R^3 3-10-10-1": ([3, 10, 10, 1], None, True),
    "R^3 3-12-12-1": ([3, 12, 12, 1], None, False),
    "R^4 4-8-8-1": ([4, 8, 8, 1], None, False),
}


def relucent_regions(net, timeout_regions: int = 200_000, nworkers: int = 1):
    """Regions of R^d by relucent's breadth-first search on the same weights (a baseline).

    relucent (``pip install relucent``; it uses Gurobi) is a baseline of the benchmark only,
    never a dependency of partax. Its ``Complex.bfs`` (default settings otherwise:
    certification on) explores the polyhedral complex of the net's hidden layers in all of
    R^d from the origin.

    Args:
      net: an unstacked ReLU :class:`partax.Net` (its output layer does not matter).
      timeout_regions: relucent's ``max_polys`` cap.
      nworkers: relucent's worker processes (1 by default: its pool forks, which is unsafe
        in a process where JAX already runs threads).

    Returns:
      ``(number of regions, seconds)``.

    Raises:
      ImportError: relucent is not installed.
    """
    if not isinstance(net, Net) or net.stack_shape:
        raise TypeError(f"net: expected an unstacked partax.Net, got {type(net).__name__}")
    if net.activation != "relu":
        raise ValueError(f"net: relucent handles ReLU nets only, got activation {net.activation!r}")
    from relucent import Complex
    from relucent.model.model import LinearLayer, ReLULayer, ReLUNetwork

    layers = []
    for W, b in zip(net.weights, net.biases):
        layers += [LinearLayer(np.asarray(W, np.float64).T.copy(), np.asarray(b, np.float64).copy()), ReLULayer()]
    rnet = ReLUNetwork(layers[:-1])
    cx = Complex(rnet)
    t0 = time.perf_counter()
    cx.bfs(start=np.zeros(net.input_dim), verbose=0, max_polys=timeout_regions, nworkers=nworkers)
    return len(cx), time.perf_counter() - t0


def bench_enumerate(quick: bool = False, *, seed: int = 0, solver: str = "auto", bias_std: float = 0.5,
                    workloads=None, relucent: bool = True) -> dict:
    """Regions per second of :func:`enumerate_regions` on small nets, in boxes and in all of R^d.

    Each workload is ``partax.mlp(jax.random.key(seed), widths, bias_std=bias_std)`` over the
    box ``[-h, h]^d`` of :data:`BENCH_WORKLOADS`, or over all of R^d. It is run once cold
    (the first call in this process for that net: ``first_seconds``, with whatever
    compilation it needs) and then timed warm; ``first_over_warm`` is their ratio. The
    1-minute load average before and after each timed run is reported next to the rate (the
    rate is that of a shared machine). For the R^d workloads, when the ``relucent`` package
    is importable, its breadth-first search runs on the same weights in the same process
    (``relucent`` entry: its seconds, its count, whether the counts are equal, and partax's
    speed-up); otherwise the entry says ``"not installed"``.

    Args:
      quick: only the workloads marked quick.
      seed, bias_std: the nets' initialisation.
      solver: the Chebyshev LP backend (see :func:`enumerate_regions`).
      workloads: optional names from :data:`BENCH_WORKLOADS` (overrides ``quick``).
      relucent: run the relucent baseline on the R^d workloads when it is installed.

    Returns:
      ``dict(workloads=[dict(name, widths, box, regions, unbounded, complete, volume_error,
      seconds, regions_per_s, first_seconds, warmup_seconds, first_over_warm, loadavg, stats,
      relucent)], cpus, backend, relucent_version)``.

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
    try:
        import relucent as _relucent_pkg

        relucent_version = getattr(_relucent_pkg, "__version__", "unknown")
    except ImportError:
        relucent_version = None
    out = []
    for name in names:
        widths, h, _ = BENCH_WORKLOADS[name]
        net = mlp(jax.random.key(seed), widths, bias_std=bias_std)
        box = None if h is None else Box(-h, h)
        kw = dict(progress=False, solver=solver, max_regions=10_000_000)
        t0 = time.perf_counter()
        enumerate_regions(net, box, **kw)  # first call: compilations, if any
        first = time.perf_counter() - t0
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = enumerate_regions(net, box, **kw)
        dt = time.perf_counter() - t0
        entry = dict(name=name, widths=list(widths), box="R^d" if h is None else [-h, h], regions=res.num_regions,
                     unbounded=res.num_unbounded, complete=res.complete, volume_error=res.volume_error,
                     seconds=round(dt, 3), regions_per_s=round(res.num_regions / dt, 1),
                     first_seconds=round(first, 3), warmup_seconds=round(first, 3),
                     first_over_warm=round(first / dt, 2),
                     loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)],
                     stats={k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.stats.items()
                            if k != "cert_box"})
        if h is None:
            if relucent_version is None:
                entry["relucent"] = "not installed"
            elif not relucent:
                entry["relucent"] = "not run (relucent=False)"
            else:
                try:
                    count, secs = relucent_regions(net)
                    entry["relucent"] = dict(seconds=round(secs, 3), regions=count, equal_counts=count == res.num_regions,
                                             speedup=round(secs / dt, 1))
                except Exception as e:  # a baseline failing is reported, not raised
                    entry["relucent"] = f"failed: {type(e).__name__}: {e}"
        out.append(entry)
    return dict(workloads=out, cpus=os.cpu_count(), backend=jax.default_backend(), relucent_version=relucent_version)
