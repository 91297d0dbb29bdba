# Length: over 500 lines because the docstring below is the method's specification and the
# certificate's proof (~120 lines); the traversal itself is one pipelined loop. The
# per-region work lives in code_regions (rows, Chebyshev LPs), polar (facets, vertices, volumes),
# crossing (crossing codes) and unbounded (all of R^d).
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
   a CPU (``solver="auto"``) the batched NumPy interior point (``lp.solve(solver="numpy")``:
   no compilation, so the first call is as fast as the next ones); on an accelerator the JAX
   interior point of :mod:`partax.geometry.lp` on padded shapes (batch and rows padded to a few bucket sizes, so
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

Keys are :func:`partax.coding.keys_from_bits` of the float64 codes (computed once at the end;
the traversal deduplicates by the packed codes themselves): the same 64-bit keys as
``partax.region_ids(net, x, "prefix")[:, layer-1]`` at an interior point ``x`` (the net's own
float32 evaluation agrees except within float32 rounding of a boundary). Prefix regions are
convex, so a code names exactly one polyhedron.

**General nets** (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
blocks; ReLU / leaky ReLU, hard-tanh and max-pool code sites). The same traversal, with the
sites' own codes and rows (:mod:`partax.geometry.code_regions`): the float64 code of a point
is each site's rule (``z > 0``; ``(z > lo, z > hi)``; the argmax slot of each window, ties to
the lowest); the rows of a code are :func:`partax.geometry.hrep.site_rows` of the frozen
maps (one per ReLU unit, two per hard-tanh unit, ``k`` per max-pool window ``z_j - z_a <= 0``),
so ``edge_units`` and the facet rows index those rows, not the bits. Step 5 holds for every
site (:func:`partax.geometry.crossing.site_crossing_codes`): the functions of the rows that
vanish on the crossed facet take the sign of their derivative with the new codes of the
earlier sites; a window's argmax moves to the tied slot with the largest derivative (ties to
the lowest). A crossing then changes many bits in general (``stats["empty_flips"]`` counts the
crossings that change more than one unit or window). Clamped hard-tanh units under a pool
make rows that are exact positive combinations of others (weakly redundant: their face is
lower-dimensional) which qhull may still list as facets; they are recognised by the rank of
their vertices and dropped (``stats["flat_facets"]``, see
:func:`partax.geometry.polar.polyhedra_geometry`). Sets of measure zero with a code of their
own (two max-pool slots of equal weights tie on a hyperplane, and the tie goes to the lowest
slot there) are not regions and are not listed. In R^d the first code site's input map must
have rank ``d`` (the row-space reduction below is for MLPs only: a ``ValueError`` naming
``domain`` otherwise), and every region found must be pointed (checked:
``stats["unpointed_regions"]``, see :mod:`partax.geometry.unbounded`).

**What ``complete=True`` certifies.**

*In a box* (``d <= 6``): the frontier emptied below ``max_regions``, no candidate region was
dropped for a tiny inradius, no LP failed (Chebyshev or facet LP), no crossing needed a step fallback, every edge was
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

    A conv net with a max pool (``partax.nets.sequential``), input ``(3, 1)``:

    >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
    >>> r = np.random.default_rng(0)
    >>> f32 = lambda *s: r.normal(size=s).astype(np.float32)
    >>> cnn = partax.nets.sequential([Conv(f32(2, 1, 2), f32(2)), ReLU(), MaxPool((2,)), Flatten(),
    ...                               Dense(f32(2, 1), f32(1))], (3, 1))
    >>> res = enumerate_regions(cnn, Box(-1, 1), progress=False)
    >>> res.complete, res.volume_error < 1e-9, [b.shape[1] for b in res.bits] == list(cnn.widths)
    (True, True, True)
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import NamedTuple, Optional

import numpy as np

from partax.coding import HashCollisionError, keys_from_bits
from partax.validation import check_net, check_scope_layer
from partax.geometry.code_regions import (CHUNK, SOLVERS, CodeSites, HiddenLayers, chebyshev_centres, codes64,
                                          hidden_layers, num_rows, region_unit_rows, split_bits)
from partax.geometry.crossing import changed_units, crossing_codes, site_crossing_codes, step_across
from partax.geometry.domains import Box
from partax.geometry.polar import polyhedra_geometry
from partax.geometry.unbounded import certify_rd, hyperplane_scale, local_box, reduce_rank
from partax.nets import Net
from partax.records import record_repr

__all__ = ["Enumeration", "enumerate_regions", "SOLVERS"]

_MAX_EXACT_DIM = 6
_KEY_BLOCK = 4096  # region keys are hashed in blocks of this many rows (one compiled shape per net)
_PIPELINE = True  # overlap the next chunk's LPs with this chunk's hulls (a worker thread)


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
        exactly this unit; across a non-generic facet (repeated hyperplanes) in more. For a
        general net: the row of :func:`partax.geometry.hrep.site_rows` (sites in order; two
        rows per hard-tanh unit, ``k`` per max-pool window).
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
        not the region across, so the exact crossing code differs from it; for a general net
        the crossings that change more than one unit or max-pool window),
        ``empty_crossings`` (crossing codes found empty: rounding; each is stepped across),
        ``code_mismatches`` (candidates whose centre had another code), ``step_fallbacks``
        (points stepped across facets), ``hull_failures`` (qhull errors: facets by LPs
        instead), ``hull_retries`` (5-D/6-D volumes whose hull qhull built only with option
        ``Q12``), ``facet_lp_failures`` (those facet LPs that failed: their rows are
        undecided, and the result is then not ``complete``), ``one_sided_edges`` (edges seen from one side only: 0 when every facet was
        found from both regions), ``num_seeds``; in R^d also ``rank``, ``recession_lps``,
        ``bounded_disagreements`` (hull and recession LP disagree), ``cert_box`` (the
        certificate box ``(lo, hi)``), ``cert_box_all_vertices_inside``. General nets also:
        ``flat_facets`` (weakly redundant rows qhull listed, dropped) and, in R^d,
        ``unpointed_regions`` (regions containing a line: the result is then not complete).
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

    def __repr__(self) -> str:
        extra = {} if self.bounded is None else {"unbounded": self.num_unbounded}
        return record_repr("Enumeration", regions=self.num_regions, edges=int(self.edges.shape[0]), **extra,
                           dim=int(self.points.shape[1]), scope=self.scope, layer=self.layer,
                           complete=bool(self.complete), certificate=self.certificate,
                           volume_error=self.volume_error, frontier_left=self.frontier_left,
                           dropped=self.dropped, seconds=self.stats.get("seconds", float("nan")))


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------
MAX_DIM = 12  # enumerate_regions refuses higher input dimensions unless told otherwise


def _check_args(net, domain, scope, layer, max_regions, solver, seeds, volume_tol, reach):
    check_net(net, stacked=False, caller="geometry")
    d = net.input_dim
    if d < 2:
        raise ValueError(f"net: enumerate_regions needs input dimension >= 2 (got {d}); "
                         "use partax.geometry.slices.line_regions in 1D")
    if domain is not None and not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box or None (all of R^d), got {type(domain).__name__}")
    if domain is not None:
        domain.bounds(d)
    layer, first, last = check_scope_layer(scope, layer, net.num_hidden)
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
        shape = tuple(net.input_shape)
        if len(shape) > 1 and seeds.ndim == len(shape) + 1 and tuple(seeds.shape[1:]) == shape:
            seeds = seeds.reshape(len(seeds), d)  # [S, *input_shape] -> flat, row-major
        if seeds.ndim != 2 or seeds.shape[1] != d or seeds.shape[0] == 0:
            also = f" or (S, {', '.join(map(str, shape))})" if len(shape) > 1 else ""
            raise ValueError(f"seeds: expected shape (S, {d}){also} with S >= 1, got {seeds.shape}")
        if not np.all(np.isfinite(seeds)):
            raise ValueError("seeds: expected finite points (found NaN or inf)")
        if domain is not None:
            lo, hi = domain.bounds(d)
            if not np.all((seeds >= lo) & (seeds <= hi)):
                raise ValueError("seeds: expected points inside the domain box")
    return layer, first, last, seeds


# --------------------------------------------------------------------------------------
# the traversal
# --------------------------------------------------------------------------------------
def _pack(bits: np.ndarray) -> list:
    """Hashable exact names of codes ``bool[R, n]``: the packed bytes of each row."""
    if len(bits) == 0:
        return []
    return np.packbits(bits, axis=1).view(np.dtype((np.void, -(-bits.shape[1] // 8)))).ravel().tolist()


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


def enumerate_regions(net: Net, domain: Optional[Box], *, scope: str = "prefix", layer: Optional[int] = None,
                      max_regions: int = 100_000, seeds=None, solver: str = "auto",
                      progress: bool = True, num_seeds: int = 1024, tol: float = 1e-9,
                      min_radius: float = 1e-12, volume_tol: Optional[float] = None,
                      reach: Optional[float] = None, max_dim: Optional[int] = MAX_DIM) -> Enumeration:
    """Every region of a net's ``prefix`` partition in a box or in R^d, by adjacency-graph traversal.

    See the module docstring for the method and for what ``complete`` certifies. The
    traversal starts from the regions of the seed points and stops when no region is left to
    visit (or after ``max_regions``).

    Args:
      net: an unstacked :class:`partax.Net` with input dimension ``d >= 2`` (volumes are exact
        for ``d <= 6``; beyond, they are NaN and ``complete`` rests on the traversal alone):
        an MLP or a general net (:func:`partax.nets.sequential`; its flattened input space).
      domain: a :class:`partax.geometry.Box` in the input space, or None for all of R^d
        (every region, bounded and unbounded; ``Enumeration.bounded`` flags them, unbounded
        regions have volume ``inf``).
      scope: ``"prefix"``. ``"layer"`` and ``"suffix"`` are accepted at ``layer=1`` only (where
        ``"layer"`` is the prefix of layer 1 and ``"suffix"`` the prefix of the last layer);
        elsewhere their regions live in a latent space and a ``ValueError`` is raised.
      layer: 1-based hidden layer (default: the last).
      max_regions: stop after processing this many regions (``complete`` is then False).
      seeds: optional points ``[S, d]`` (or ``[S, *input_shape]``; inside the box, if any) whose regions start the
        traversal; default ``num_seeds`` uniform samples of the box (in R^d: Gaussian samples
        at the distance scale of the first layer's hyperplanes), fixed seed.
      solver: Chebyshev LP backend: ``"numpy"`` (the batched NumPy interior point of
        :mod:`partax.geometry.lp`, no compilation), ``"ipm"`` (the batched JAX interior point of
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
      max_dim: refuse input dimensions above this (None: no limit). Each region's facets come
        from a convex hull in the input dimension, whose cost grows exponentially with it:
        measured on 2 CPU cores, a net with 8 + 8 hidden units takes ~3 ms per region in 8-D,
        ~40 ms in 10-D and over 60 ms in 12-D; the 64-D digits net did not finish its first
        region in 14 minutes. Raise it knowingly; in high dimension use
        :func:`partax.partition` (sampling) or :func:`partax.geometry.slice_regions` (exact 2D
        slices) instead.

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
    if max_dim is not None and (isinstance(max_dim, bool) or not isinstance(max_dim, (int, np.integer)) or max_dim < 2):
        raise ValueError(f"max_dim: expected an int >= 2 or None, got {max_dim!r}")
    check_net(net, stacked=False, caller="geometry")
    if max_dim is not None and net.input_dim > max_dim:
        raise ValueError(
            f"net: exact enumeration in {net.input_dim} dimensions is refused (max_dim={max_dim}): each region's "
            "facets come from a convex hull whose cost grows exponentially with the dimension (a 64-D digits net "
            "did not finish one region in 14 minutes). Pass max_dim=None (or a larger value) to try anyway, or "
            "use partax.partition (sampled regions) or partax.geometry.slice_regions (exact 2D slices)")
    layer, first, depth, seeds = _check_args(net, domain, scope, layer, max_regions, solver, seeds, volume_tol, reach)
    t_start = time.perf_counter()
    hl = hidden_layers(net, depth)
    rd = domain is None
    general = isinstance(hl, CodeSites)
    Q = None
    stats = dict(numpy_lps=0, ipm_lps=0, highs_lps=0, lp_fallbacks=0, lp_failures=0, empty_flips=0,
                 empty_crossings=0, code_mismatches=0, hull_failures=0, facet_lp_failures=0, step_fallbacks=0,
                 lp_seconds=0.0,
                 hull_seconds=0.0, keys_seconds=0.0, batches=0)
    if rd:
        hl, Q = reduce_rank(hl)
        stats.update(rank=hl.d, recession_lps=0, bounded_disagreements=0)
    d = hl.d
    n_tot = int(sum(hl.widths))  # bits of a code
    n_rows = num_rows(hl)  # rows of a code (= n_tot for an MLP)
    want_volume = d <= _MAX_EXACT_DIM
    if rd:
        scale = hyperplane_scale(hl)
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
    warm_keys = threading.Thread(target=_keys, args=(hl, np.zeros((1, n_tot), bool), first), daemon=True)
    warm_keys.start()
    seed_bits = codes64(hl, seeds)
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
        Au, bu, live, cross = region_unit_rows(hl, bits, box_A, box_b)
        boxed = np.zeros(len(bits), bool)
        if rd:  # a box around a point of the region's closure keeps the LP bounded
            LA, Lb = local_box(hint, reach)
            centers, radii = chebyshev_centres(np.concatenate([Au, LA], axis=1), np.concatenate([bu, Lb], axis=1),
                                        hint, solver, tol, stats)
            lslack = Lb - np.einsum("bmk,bk->bm", LA, centers)
            boxed = lslack.min(axis=1) <= radii * (1 + 1e-6) + 1e-12
        else:
            centers, radii = chebyshev_centres(Au, bu, hint, solver, tol, stats)
        stats["lp_seconds"] += time.perf_counter() - t0
        return chunk, Au, bu, live, cross, centers, radii, boxed

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
        src, rows, codes, qs = step_across(hl, parent, row, fpt, pts_all, rad_all, lo, hi)
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

    def process(chunk, Au, bu, live, cross, centers, radii, boxed):
        bits, _, parent, prow, fpt = chunk
        stats["batches"] += 1
        failed = np.isnan(radii)
        stats["lp_failures"] += int(failed.sum())
        ok = ~failed & (radii > min_radius)
        thin = ~failed & (radii > 0) & (radii <= min_radius)
        # The float64 code at the interior point must be the candidate's code.
        mismatch = ok.copy()
        mismatch[ok] = np.any(codes64(hl, centers[ok]) != bits[ok], axis=1)
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
        Au, bu, live = Au[idx], bu[idx], live[idx]
        cross = cross.take(idx) if general else cross[idx]
        t2 = time.perf_counter()
        geo = polyhedra_geometry(Au, bu, live, centers, radii, tol, want_volume, stats, origin=rd, spanning=general)
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
        # Crossings through the units' facets (the domain's rows are >= n_rows): the exact crossing code.
        t3 = time.perf_counter()
        unit = geo.rows < n_rows
        own, frow, fpts = geo.own[unit], geo.rows[unit], geo.points[unit]
        if general:
            nbits = site_crossing_codes(hl, bits, Au, bu, cross, own, frow)
            stats["empty_flips"] += int(np.sum(changed_units(hl, bits[own], nbits) != 1))
        else:
            nbits = crossing_codes(hl, bits, Au, bu, cross, own, frow)
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
                    take = min(len(frontier), CHUNK, max_regions - count[0])
                    pending = pool.submit(prepare, frontier.pop(take))
                result = pending.result()
                pending = None
                # Pipelining: the next chunk's LPs run while this chunk's hulls are computed.
                budget = max_regions - count[0] - len(result[0][0])
                if _PIPELINE and len(frontier) and budget > 0:
                    pending = pool.submit(prepare, frontier.pop(min(len(frontier), CHUNK, budget)))
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
    keys = _keys(hl, bits, first)
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
              and stats["facet_lp_failures"] == 0 and stats["empty_crossings"] == 0 and stats["one_sided_edges"] == 0)

    bounded = None
    box = domain
    if rd:
        bounded, vol, pts, rad, box, box_volume, cert_ok = certify_rd(
            hl, bits, pts, rad, vol, out, cat, solver, tol, min_radius, want_volume, stats)
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
                       num_facets=nf[order], bits=tuple(split_bits(hl, bits[order])), edges=edges.astype(np.int64),
                       edge_units=edge_units, box_volume=box_volume, volume_error=float(verr),
                       complete=bool(complete), frontier_left=frontier_left, scope=scope, layer=layer, stats=stats,
                       bounded=None if bounded is None else bounded[order], dropped=int(dropped[0]),
                       volume_gap=float(gap), volume_tol=vtol, certificate="volume" if want_volume else "closure",
                       box=box if Q is None else None)


def _keys(hl: HiddenLayers, bits: np.ndarray, first: int) -> np.ndarray:
    """64-bit keys of the codes ``bits[R, n_tot]``, in blocks of ``_KEY_BLOCK`` rows.

    Every block is padded to the same size, so the key kernel compiles once per net
    (and :func:`enumerate_regions` compiles it on a side thread while its LPs run).
    """
    out = [np.zeros(0, np.uint64)]
    for s in range(0, len(bits), _KEY_BLOCK):
        block = bits[s:s + _KEY_BLOCK]
        padded = np.zeros((_KEY_BLOCK, bits.shape[1]), bool)
        padded[: len(block)] = block
        out.append(keys_from_bits(split_bits(hl, padded), first, len(hl.widths))[: len(block)])
    return np.concatenate(out)


def _index_of(sorted_keys, keys) -> np.ndarray:
    keys = np.asarray(keys, np.uint64)
    if len(sorted_keys) == 0:
        return np.full(keys.shape, -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, pos, -1).astype(np.int64)
