"""Regions named by float64 codes: their rows and their Chebyshev centres (enumeration).

The per-region work of :func:`partax.geometry.enumerate_regions` before any hull: a
region of the ``prefix`` partition of layers ``1..depth`` is named by its float64 code
(:func:`codes64`); its H-representation comes from the frozen-code linearisation
(:func:`partax.geometry.linearize.push` of the identity, sign-oriented by
:func:`partax.geometry.hrep.code_rows`, normalised by :func:`partax.geometry.hrep.unit_rows`
with the active units' rows strict), and its interior point and inradius from a batched
Chebyshev LP (:func:`chebyshev_centres`: the backend policy of the enumeration, every LP
through :func:`partax.geometry.lp.solve`).

**General nets** (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
blocks, hard-tanh and max-pool sites). :func:`hidden_layers` gives a :class:`CodeSites` (the
net's float64 layers and code sites ``1..depth``) instead of a :class:`HiddenLayers`, and the
functions of this module take either: :func:`codes64` is the float64 forward pass with each
site's own code rule (ReLU ``z > 0``; hard-tanh ``(z > lo, z > hi)``; max pool the argmax slot,
ties to the lowest), :func:`site_maps` the frozen-code maps of the sites' inputs
(:func:`partax.geometry.linearize.push_sites` of the identity), and the rows of a code are
:func:`partax.geometry.hrep.site_rows` (one per ReLU unit, two per hard-tanh unit, ``k`` per
max-pool window: :func:`num_rows` of them, which is not the number of bits). The JAX kernels
run on batches padded to :data:`BLOCK` rows, so each compiles once per net.

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

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.geometry import lp
from partax.geometry.hrep import code_rows, site_rows, unit_rows
from partax.geometry.linearize import (AffineFamily, float64_arrays, float64_layers, forward_codes, forward_site_codes,
                                      net_sites, push, push_sites)
from partax.layers import HardTanh, MaxPool, window_indices

__all__ = ["HiddenLayers", "CodeSites", "SiteMaps", "hidden_layers", "codes64", "split_bits", "num_rows",
           "site_maps", "region_rows", "region_unit_rows", "pick_solver", "bucket", "chebyshev_centres", "SOLVERS",
           "CHUNK", "BLOCK"]

SOLVERS = ("auto", "numpy", "ipm", "highs")  # Chebyshev LP backends of enumerate_regions
_IPM_MIN_BATCH = 256  # below this "auto" uses HiGHS on an accelerator (no compilation for small frontiers)
_NUMPY_MIN_BATCH = 16  # below this "auto" uses HiGHS on a CPU
_NUMPY_MAX_ITER = 80  # iteration limit of the NumPy interior point (lanes beyond go to HiGHS)
_BATCH_BUCKETS = (256, 2048)  # accelerator IPM: batches padded to one of these sizes
_THIN = 1e-7  # interior-point radii below this are re-solved by HiGHS
CHUNK = 2048  # regions per batched LP call
BLOCK = 1024  # general nets: the JAX kernels (codes, maps, crossings) run on blocks of this many rows


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


class CodeSites(NamedTuple):
    """Code sites ``1..depth`` of a general net in float64 (the counterpart of :class:`HiddenLayers`).

    Attributes:
      layers: the net's layers with float64 JAX arrays (all of them: the maps of a site need
        only the layers before it, the kernels push through the rest with arbitrary codes).
      input_shape: the per-example input shape.
      sites: ``(layer, input_shape)`` of every code site of the net
        (:func:`partax.geometry.linearize.net_sites`).
      all_widths: bits of every code group of the net (``net.widths``).
      depth: the number of code groups ``1..depth`` that bound the regions.
    """

    layers: tuple
    input_shape: tuple
    sites: tuple
    all_widths: tuple
    depth: int

    @property
    def widths(self) -> tuple:
        """Bits of the code groups ``1..depth``."""
        return tuple(self.all_widths[: self.depth])

    @property
    def d(self) -> int:
        """The (flattened) input dimension."""
        return int(np.prod(self.input_shape))

    @property
    def prefix_sites(self) -> tuple:
        """``(layer, input_shape)`` of the sites ``1..depth``."""
        return tuple(self.sites[: self.depth])


def hidden_layers(net, depth: int):
    """The hidden layers ``1..depth`` of ``net`` from its float64 parameters.

    Args:
      net: an unstacked :class:`partax.Net`.
      depth: the number of hidden layers (code groups of a general net).

    Returns:
      :class:`HiddenLayers` for an MLP (``net.is_mlp``), :class:`CodeSites` for a general net.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
      >>> from partax.nets import sequential
      >>> one = lambda *s: np.ones(s, np.float32)
      >>> net = sequential([Conv(one(2, 1, 2), one(2)), ReLU(), MaxPool((2,)), Flatten(), Dense(one(4, 1), one(1))],
      ...                  (5, 1))
      >>> cs = hidden_layers(net, 2)
      >>> cs.widths, cs.d, num_rows(cs)           # 8 ReLU units; 2 windows x 2 channels of 2 slots
      ((8, 4), 5, 16)
    """
    if not net.is_mlp:
        with jax.enable_x64(True):
            layers = jax.tree.map(jnp.asarray, float64_layers(net))
        return CodeSites(layers, tuple(net.input_shape), net_sites(net), tuple(net.widths), int(depth))
    params = float64_arrays(net)
    return HiddenLayers(tuple(params.layers[:depth]), params.alpha)


_codes_kernel = jax.jit(forward_site_codes, static_argnames="input_shape")


def _blocks(n: int):
    """``(start, stop)`` of the blocks of :data:`BLOCK` rows covering ``n`` rows."""
    return [(s, min(n, s + BLOCK)) for s in range(0, n, BLOCK)]


def _pad(a, size: int):
    """``a`` padded with zeros along its first axis to ``size`` rows."""
    out = np.zeros((size,) + a.shape[1:], a.dtype)
    out[: len(a)] = a
    return out


def codes64(hl, x) -> np.ndarray:
    """Float64 codes of layers ``1..depth`` (bit = pre-activation > 0; a general net's sites by their own rule).

    Args:
      hl: the hidden layers (:class:`HiddenLayers` or :class:`CodeSites`).
      x: points ``[N, d]``.

    Returns:
      ``bool[N, n_tot]``, the layers side by side.
    """
    if isinstance(hl, CodeSites):
        x = np.asarray(x, np.float64).reshape(-1, hl.d)
        out = [np.zeros((0, int(sum(hl.widths))), bool)]
        with jax.enable_x64(True):
            for s, e in _blocks(len(x)):
                bits = _codes_kernel(hl.layers, jnp.asarray(_pad(x[s:e], BLOCK)), hl.input_shape)
                out.append(np.concatenate([np.asarray(b)[: e - s] for b in bits[: hl.depth]], axis=1))
        return np.concatenate(out)
    return np.concatenate(forward_codes(hl, x, len(hl.layers)), axis=1)


def split_bits(hl, bits: np.ndarray) -> list:
    """The codes split into one array per layer (code group).

    Args:
      hl: the hidden layers (:class:`HiddenLayers` or :class:`CodeSites`).
      bits: ``bool[R, n_tot]``.

    Returns:
      A list of ``bool[R, n_l]``.
    """
    cuts = np.cumsum(hl.widths)[:-1]
    return np.split(bits, cuts, axis=1)


def num_rows(hl) -> int:
    """Number of rows of a code of layers ``1..depth`` (the facet rows of the units, before a domain's).

    Args:
      hl: :class:`HiddenLayers` (one row per unit: ``sum(widths)``) or :class:`CodeSites`
        (one row per ReLU unit, two per hard-tanh unit, ``k`` per max-pool window).

    Returns:
      An int.
    """
    if not isinstance(hl, CodeSites):
        return int(sum(hl.widths))
    n = 0
    for layer, shape in hl.prefix_sites:
        units = int(np.prod(shape))
        if isinstance(layer, HardTanh):
            n += 2 * units
        elif isinstance(layer, MaxPool):
            n += int(np.prod(layer.output_shape(shape))) * layer.size
        else:
            n += units
    return n


class SiteMaps(NamedTuple):
    """The frozen-code maps of the inputs of a general net's sites ``1..depth``, for ``B`` regions.

    Attributes:
      A: tuple per site of ``float64[B, n_s, d]`` (``n_s`` the site's input size).
      beta: tuple per site of ``float64[B, n_s]``: the site's input is ``A @ x + beta``.
    """

    A: tuple
    beta: tuple

    def take(self, idx) -> "SiteMaps":
        """The maps of the regions ``idx``."""
        return SiteMaps(tuple(a[idx] for a in self.A), tuple(b[idx] for b in self.beta))


@functools.partial(jax.jit, static_argnames="input_shape")
def _maps_kernel(layers, bits, input_shape):
    d = int(np.prod(input_shape))
    pres, _ = push_sites(layers, input_shape, AffineFamily(jnp.zeros(d), jnp.eye(d)), bits)
    return tuple((f.rows, f.offset) for f in pres)


def site_maps(cs: CodeSites, bits: np.ndarray) -> SiteMaps:
    """The maps of the sites' inputs on the regions with codes ``bits[R, sum(widths)]``.

    Args:
      cs: the code sites.
      bits: ``bool[R, n_tot]`` codes of the sites ``1..depth``.

    Returns:
      :class:`SiteMaps` (the later sites' codes do not matter and are not needed).
    """
    R = len(bits)
    groups = split_bits(cs, bits)
    later = [np.zeros((BLOCK, w), bool) for w in cs.all_widths[cs.depth:]]
    As = [[np.zeros((0, int(np.prod(s)), cs.d))] for _, s in cs.prefix_sites]
    bs = [[np.zeros((0, int(np.prod(s))))] for _, s in cs.prefix_sites]
    with jax.enable_x64(True):
        for s, e in _blocks(R):
            masks = tuple(jnp.asarray(_pad(g[s:e], BLOCK)) for g in groups) + tuple(jnp.asarray(m) for m in later)
            out = _maps_kernel(cs.layers, masks, cs.input_shape)
            for i in range(cs.depth):
                As[i].append(np.asarray(out[i][0])[: e - s])
                bs[i].append(np.asarray(out[i][1])[: e - s])
    return SiteMaps(tuple(np.concatenate(a) for a in As), tuple(np.concatenate(b) for b in bs))


def _strict(cs: CodeSites, bits: np.ndarray) -> np.ndarray:
    """``bool[R, num_rows]``: the rows of a code that stand for strict inequalities.

    ReLU and hard-tanh bits that are set (``z > 0``, ``z > lo``, ``z > hi``); a max-pool
    window's rows ``z_j - z_a <= 0`` of the slots ``j < a`` (ties go to the lowest slot).
    """
    out = []
    for (layer, shape), g in zip(cs.prefix_sites, split_bits(cs, bits)):
        if isinstance(layer, MaxPool):
            W, k = window_indices(shape, layer.window, layer.strides, layer.padding).shape
            a = layer.slots(g)  # [R, W]
            out.append((np.arange(k)[None, None, :] < a[..., None]).reshape(len(g), W * k))
        else:
            out.append(g)
    return np.concatenate(out, axis=1) if out else np.zeros((len(bits), 0), bool)


def region_rows(hl, bits: np.ndarray, maps=None):
    """Sign-oriented rows ``A z <= b`` of the regions with codes ``bits[R, n_tot]``.

    Args:
      hl: the hidden layers (:class:`HiddenLayers` or :class:`CodeSites`).
      bits: ``bool[R, n_tot]`` codes.
      maps: general nets: the regions' :class:`SiteMaps` if already computed.

    Returns ``(A: float64[R, m, d], b: float64[R, m])`` with ``m = num_rows(hl)`` (``n_tot``
    for an MLP; no domain rows, not scaled).
    """
    masks = split_bits(hl, bits)
    if isinstance(hl, CodeSites):
        maps = site_maps(hl, bits) if maps is None else maps
        if len(bits) == 0:
            return np.zeros((0, num_rows(hl), hl.d)), np.zeros((0, num_rows(hl)))
        return site_rows(list(zip(maps.A, maps.beta)), masks, hl.prefix_sites)
    fams = push(hl, AffineFamily(np.zeros(hl.d), np.eye(hl.d)), masks)
    return code_rows([(f.rows, f.offset) for f in fams], masks)


def region_unit_rows(hl, bits, box_A, box_b):
    """Rows of the codes, the box rows appended, made unit: ``(Au, bu, live, cross)``.

    The rows of active units are strict (the code needs a pre-activation ``> 0``), so a unit
    whose pre-activation is a constant ``c`` on the region gives a dead row that holds iff
    the code is consistent (``c > 0`` for an active unit, ``c <= 0`` for an inactive one; see
    :func:`partax.geometry.hrep.unit_rows`); likewise a hard-tanh unit's set bits and a max-pool
    window's rows of the slots below its argmax (ties go to the lowest slot).

    ``cross`` is what the crossing codes need besides the rows: for an MLP ``zero``,
    ``bool[R, n_tot]`` the units identically 0 on the region (dead row and zero constant)
    (:func:`partax.geometry.crossing.crossing_codes`); for a general net the regions'
    :class:`SiteMaps` (:func:`partax.geometry.crossing.site_crossing_codes`).

    Args:
      hl: the hidden layers (:class:`HiddenLayers` or :class:`CodeSites`).
      bits: ``bool[R, n_tot]`` codes.
      box_A, box_b: ``[e, d]``, ``[e]`` rows shared by every region (a box; ``e = 0`` in R^d).

    Returns:
      ``(Au[R, m + e, d], bu[R, m + e], live, cross)`` with ``m = num_rows(hl)``.
    """
    B = len(bits)
    general = isinstance(hl, CodeSites)
    maps = site_maps(hl, bits) if general else None
    A, b = region_rows(hl, bits, maps)
    n_tot = b.shape[1]
    A = np.concatenate([A, np.broadcast_to(box_A, (B,) + box_A.shape)], axis=1)
    b_all = np.concatenate([b, np.broadcast_to(box_b, (B, box_b.shape[0]))], axis=1)
    strict = np.concatenate([_strict(hl, bits) if general else bits, np.zeros((B, box_b.shape[0]), bool)], axis=1)
    rows = unit_rows(A, b_all, strict=strict)
    if general:
        return rows.A, rows.b, rows.live, maps
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
