"""Per-region polytope quantities, batched over exemplars.

Every function takes exemplars ``x[N, d_in]`` (inputs of the net), each naming the region
that :func:`partax.codes` assigns it, and the keywords ``scope``, ``layer`` (see
:mod:`partax.geometry.local`: ``"prefix"`` regions live in the input space, ``"layer"``
and ``"suffix"`` regions in the latent space ``h^{layer-1}``), ``domain`` (a
:class:`~partax.geometry.Box` in that space, or None for all of it) and ``solver``
(``"ipm"``, ``"numpy"``, ``"highs"`` or ``"auto"``: HiGHS on CPU, the JAX interior point on
accelerators; see :mod:`partax.geometry.lp`).

Unbounded regions (``domain=None``): the LPs stay bounded because the Chebyshev
*centre* is restricted to the box ``|z - p|_inf <= reach`` around the exemplar's point
``p`` and the radius is capped at ``radius_cap`` (defaults ``reach=100``,
``radius_cap=1e3``); a radius equal to the cap, or a centre on the reach box, means the
region is large or unbounded. For facets, the same box bounds the LPs, so a facet that
lies entirely farther than ``reach`` from the exemplar is not reported.

An empty batch (``x`` with ``N = 0`` rows) gives empty results of the documented shapes.

Failures are loud (DESIGN: exact where it claims, loud where it fails). Every LP's status
(:data:`partax.geometry.lp.OPTIMAL` = 0, ``MAX_ITER`` = 1, ``FAILED`` = 2; :data:`NO_HITS`
= 3 for a Monte Carlo volume without a single hit) flows to the caller:

* :func:`chebyshev` and :func:`volumes` give NaN for the rows whose LPs failed, with a
  ``RuntimeWarning`` that counts them; ``return_status=True`` returns instead a record with
  a per-row ``status`` (:class:`~partax.geometry.lp.ChebyshevResult`,
  :class:`VolumeResult`; no warning then: the status is the flag).
* :func:`facets` and :func:`neighbors` have no NaN to give, so a failed LP is a
  ``RuntimeError`` naming the rows, unless ``return_status=True``: then a record
  (:class:`FacetsResult`, :class:`NeighborsResult`) with a per-row ``status``, where a row
  with ``status != 0`` holds empty arrays meaning *undecided* (not "no facets").

Keys (:func:`region_keys`, :func:`neighbors`) are always those of
``partax.region_ids(net, x, scope)[:, layer-1]`` on the full net, also for the latent spaces
of ``"layer"``/``"suffix"`` at ``layer >= 2``.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry import Box, margins, chebyshev
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.1)
    >>> x = np.array([[0.3, -0.2], [0.5, 0.5]], np.float32)
    >>> m = margins(net, x, domain=Box(-1, 1))
    >>> centers, radii = chebyshev(net, x, domain=Box(-1, 1), solver="highs")
    >>> bool(np.all(radii >= m - 1e-9))
    True
    >>> chebyshev(net, x, domain=Box(-1, 1), solver="highs", return_status=True).status.tolist()
    [0, 0]
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from partax.geometry import lp
from partax.validation import check_finite_inputs, check_flag, check_net, check_positive, check_positive_int
from partax.geometry.hrep import unit_rows
from partax.geometry.local import activation_masks, frozen_maps, keys_of_bits, region_rows, scope_rows, scope_space
from partax.geometry.local import space_keys
from partax.geometry.region_lps import NO_HITS, RADIUS_CAP, VolumeResult, chebyshev_rows, facet_points, facets_rows
from partax.geometry.region_lps import volumes_rows
from partax.records import record_repr

__all__ = ["margins", "chebyshev", "facets", "neighbors", "volumes", "region_keys", "FacetsResult",
           "NeighborsResult", "VolumeResult", "NO_HITS"]

REACH = 100.0


class FacetsResult(NamedTuple):
    """:func:`facets` with ``return_status=True``.

    Attributes:
      facets: list of ``N`` sorted ``int64`` arrays (empty where ``status != 0``: undecided).
      status: ``int32[N]``, the worst LP status of the region (its Chebyshev LP and its
        redundancy LPs): 0 optimal, 1 iteration limit, 2 failure.
    """

    facets: list
    status: np.ndarray

    def __repr__(self) -> str:
        return record_repr("FacetsResult", regions=len(self.facets), facets=sum(len(f) for f in self.facets),
                           failed=int(np.sum(np.asarray(self.status) != 0)))


class NeighborsResult(NamedTuple):
    """:func:`neighbors` with ``return_status=True``.

    Attributes:
      facets: list of ``N`` ``int64`` arrays (as :class:`FacetsResult`).
      keys: list of ``N`` ``uint64`` arrays aligned with ``facets`` (empty where ``status != 0``).
      status: ``int32[N]``, the worst status of the region's LPs, the facet-centre LPs included.
    """

    facets: list
    keys: list
    status: np.ndarray

    def __repr__(self) -> str:
        return record_repr("NeighborsResult", regions=len(self.facets), neighbors=sum(len(k) for k in self.keys),
                           failed=int(np.sum(np.asarray(self.status) != 0)))


def _solver(solver: str) -> str:
    if solver == "auto":
        return lp.default_solver()
    if solver not in lp.SOLVERS:
        raise ValueError(f"solver: expected 'auto' or one of {lp.SOLVERS}, got {solver!r}")
    return solver


def _rows_text(rows, limit: int = 10) -> str:
    rows = [int(r) for r in rows]
    head = ", ".join(map(str, rows[:limit]))
    return f"[{head}{', ...' if len(rows) > limit else ''}]"


def _warn_failed(what: str, status, stacklevel: int = 3) -> None:
    bad = np.flatnonzero(np.asarray(status) != lp.OPTIMAL)
    if bad.size:
        warnings.warn(f"{what}: the LPs of {bad.size} region(s) did not reach optimality (rows "
                      f"{_rows_text(bad)}); their values are NaN (return_status=True gives the status)",
                      RuntimeWarning, stacklevel=stacklevel)


def _raise_failed(what: str, status) -> None:
    bad = np.flatnonzero(np.asarray(status) != lp.OPTIMAL)
    if bad.size:
        codes = sorted(set(np.asarray(status)[bad].tolist()))
        raise RuntimeError(f"{what}: the LPs of {bad.size} region(s) did not reach optimality (rows "
                           f"{_rows_text(bad)}, status {codes}: 1 iteration limit, 2 failure); their facets "
                           "are undecided. Pass return_status=True to get the other rows with these flagged")


def _setup(net, x, scope, layer, domain):
    """Rows ``A z <= b`` of the regions of ``x``, their space, and the exemplars there (float64)."""
    A, b, space, _ = scope_rows(net, x, scope, layer, domain)
    return A, b, space, np.asarray(space.points, np.float64)


def region_keys(net, x, *, scope: str = "prefix", layer=None, points=None):
    """Keys of the regions of ``x`` (as ``partax.region_ids(net, x, scope)[:, layer-1]``).

    Args:
      net, x, scope, layer: as elsewhere in this module.
      points: optional points ``[P, k]`` *in the scope's space* whose keys are wanted
        instead (e.g. points across a facet); ``x`` is then only used to find the space
        (it may have no rows).

    Returns:
      ``numpy.uint64[N]`` (or ``[P]``): the hash of the codes of the scope's layer range,
      the same keys as :func:`partax.region_ids` on the full net (a latent point ``z`` of a
      ``"layer"``/``"suffix"`` space gets the key any input mapped to ``z`` would get).

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.geometry import region_keys
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 8, 1], bias_std=0.1)
      >>> x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
      >>> k = region_keys(net, x, scope="suffix", layer=2)
      >>> bool((k == partax.region_ids(net, x, "suffix")[:, 1]).all())
      True
    """
    check_net(net, stacked=False, caller="geometry")
    x = check_finite_inputs(x, net.input_dim)
    if points is None:
        space = scope_space(net, x, scope, layer)
        return space_keys(space, space.points)
    space = scope_space(net, np.zeros((1, net.input_dim), net.dtype), scope, layer)
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != space.dim:
        raise ValueError(f"points: expected shape (P, {space.dim}) in the scope's space, got {tuple(pts.shape)}")
    return space_keys(space, pts)


# --- margins ------------------------------------------------------------------------------------
def margins(net, x, *, scope: str = "prefix", layer=None, domain=None) -> np.ndarray:
    """Exact distance from each exemplar to the boundary of its region (no LP).

    The minimum over the scope's rows (and the domain's) of ``slack / ||row||``. A value
    ``<= 0`` (within the net's float precision) means the exemplar lies on a boundary.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: exemplars ``[N, d_in]``.
      scope, layer, domain: see the module doc.

    Returns:
      ``float64[N]`` (``inf`` for a region with no boundary at all).
    """
    A, b, space, p = _setup(net, x, scope, layer, domain)
    A, b, live, _ = unit_rows(A, b)
    slack = b - np.einsum("nmk,nk->nm", A, p)
    return np.where(live, slack, np.inf).min(axis=1) if A.shape[1] else np.full(len(p), np.inf)


# --- Chebyshev ------------------------------------------------------------------------------------
def chebyshev(net, x, *, scope: str = "prefix", layer=None, domain=None, solver: str = "auto",
              reach: float = REACH, radius_cap: float = RADIUS_CAP, tol: float = 1e-8,
              return_status: bool = False):
    """Chebyshev centres and inradii of the regions of the exemplars.

    Solves ``max r  s.t.  a_i·z + ||a_i|| r <= b_i`` per region (see
    :func:`partax.geometry.lp.chebyshev_lp`). The radius is ``> 0`` iff the region is
    full-dimensional (every region met by sampling is, almost surely).

    Args:
      net: an unstacked :class:`partax.Net`.
      x: exemplars ``[N, d_in]``.
      scope, layer, domain, solver: see the module doc.
      reach, radius_cap: bounds that keep the LP bounded when ``domain`` is None.
      tol: LP tolerance.
      return_status: also return each row's LP status.

    Returns:
      ``(centers: float64[N, k], radii: float64[N])`` in the scope's space; a row whose LP
      did not reach optimality has a NaN centre and radius (and a ``RuntimeWarning`` counts
      them). With ``return_status``: a :class:`~partax.geometry.lp.ChebyshevResult`
      ``(centers, radii, status: int32[N])`` (and no warning).
    """
    solver = _solver(solver)
    reach, radius_cap = check_positive(reach, "reach"), check_positive(radius_cap, "radius_cap")
    return_status = check_flag(return_status, "return_status")
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        out = lp.ChebyshevResult(np.zeros((0, space.dim)), np.zeros(0), np.zeros(0, np.int32))
    else:
        out = lp.ChebyshevResult(*chebyshev_rows(A, b, p, domain, solver, reach, radius_cap, tol))
        if not return_status:
            _warn_failed("chebyshev", out.status)
    return out if return_status else (out.centers, out.radii)


# --- facets ------------------------------------------------------------------------------------------
def facets(net, x, *, scope: str = "prefix", layer=None, domain=None, solver: str = "auto",
           reach: float = REACH, radius_cap: float = RADIUS_CAP, tol: float = 1e-8,
           facet_tol: float = 1e-7, num_rays: int = 64, seed: int = 0, chunk: int = 4096,
           return_status: bool = False):
    """Indices of the non-redundant rows (facets) of each region's H-representation.

    Row indices refer to :func:`partax.geometry.halfspaces` (the scope's units in layer
    order, then the domain's rows). Rows certainly on a facet are first found by shooting
    ``num_rays`` random rays from the Chebyshev centre (the first row a ray meets); each
    remaining row ``i`` gets an LP ``max a_i·z`` subject to the other rows with row ``i``
    relaxed by one unit (rows scaled to unit norm): row ``i`` is a facet iff the maximum
    exceeds ``b_i + facet_tol``. A region that is not full-dimensional (radius
    ``<= facet_tol``) gets no facets.

    Args:
      return_status: return a :class:`FacetsResult` with a per-row status instead of
        raising when LPs fail.

    Returns:
      A list of ``N`` sorted ``int64`` arrays; with ``return_status`` a
      :class:`FacetsResult` ``(facets, status: int32[N])`` whose rows with ``status != 0``
      are empty (undecided).

    Raises:
      RuntimeError: an LP of some region did not reach optimality (without ``return_status``).
    """
    solver = _solver(solver)
    reach, radius_cap = check_positive(reach, "reach"), check_positive(radius_cap, "radius_cap")
    check_positive_int(num_rays, "num_rays"), check_positive_int(chunk, "chunk")
    return_status = check_flag(return_status, "return_status")
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        return FacetsResult([], np.zeros(0, np.int32)) if return_status else []
    out = facets_rows(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol, num_rays, seed, chunk)
    if return_status:
        return FacetsResult(out[0], out[6])
    _raise_failed("facets", out[6])
    return out[0]


# --- neighbours -------------------------------------------------------------------------------------
def _step_keys(space, z, a, eps, floor, tries: int = 4):
    """Keys of the points ``z + eps a``, shrinking ``eps`` (by 10, ``tries`` times) until the
    region found there has ``z`` in its closure (so no other boundary was jumped over)."""
    sub, depth = space.net, space.depth
    keys = np.zeros(len(z), np.uint64)
    todo = np.arange(len(z))
    for t in range(tries):
        q = (z[todo] + eps[todo, None] * a[todo]).astype(sub.dtype)
        masks = activation_masks(sub, q)
        keys[todo] = keys_of_bits(space, masks[:depth])
        if t == tries - 1:
            break
        A, b = region_rows(frozen_maps(sub, q, masks), depth, None, z.shape[1])
        A, b, live, _ = unit_rows(A, b)
        viol = np.where(live, np.einsum("fmk,fk->fm", A, z[todo]) - b, -np.inf).max(axis=1)
        ok = viol <= 1e-6 * (1.0 + np.abs(z[todo]).max(axis=1))
        todo = todo[~ok]
        if todo.size == 0:
            break
        eps[todo] = np.maximum(eps[todo] / 10.0, floor[todo])
    return keys


def neighbors(net, x, *, scope: str = "prefix", layer=None, domain=None, solver: str = "auto",
              reach: float = REACH, radius_cap: float = RADIUS_CAP, tol: float = 1e-8,
              facet_tol: float = 1e-7, num_rays: int = 64, seed: int = 0, chunk: int = 4096,
              return_facets: bool = False, return_status: bool = False):
    """Keys of the regions across each facet of each exemplar's region.

    For every facet (see :func:`facets`) the Chebyshev centre of the facet inside its
    hyperplane is found by an LP; the point is then moved a small step ``eps`` across the
    facet (``eps`` = a tenth of the smaller of the facet's in-plane radius and the
    distance to the other rows along the facet normal, at least a few float32 ulps; it
    is divided by 10, up to 3 times, until the region reached has the facet centre in
    its closure, i.e. the step did not jump over another boundary) and its key is computed with :func:`partax.region_ids` (the same keys as
    ``partax.region_ids(net, x, scope)[:, layer-1]``). Across a domain facet the key is
    that of the net's region outside the domain.

    Args:
      return_facets: also return the facets.
      return_status: return a :class:`NeighborsResult` ``(facets, keys, status)`` with a
        per-row status instead of raising when LPs fail.

    Returns:
      A list of ``N`` ``uint64`` arrays aligned with ``facets(...)`` (``(facets, keys)`` if
      ``return_facets``); with ``return_status`` a :class:`NeighborsResult` whose rows with
      ``status != 0`` hold empty arrays (undecided).

    Raises:
      RuntimeError: an LP of some region (its facets' or a facet centre's) did not reach
        optimality (without ``return_status``).
    """
    solver = _solver(solver)
    reach, radius_cap = check_positive(reach, "reach"), check_positive(radius_cap, "radius_cap")
    check_positive_int(num_rays, "num_rays"), check_positive_int(chunk, "chunk")
    return_facets = check_flag(return_facets, "return_facets")
    return_status = check_flag(return_status, "return_status")
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        if return_status:
            return NeighborsResult([], [], np.zeros(0, np.int32))
        return ([], []) if return_facets else []
    fac, Au, bu, centers, _, _, status = facets_rows(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol,
                                                 num_rays, seed, chunk)
    owner = np.concatenate([np.full(len(f), n) for n, f in enumerate(fac)]).astype(np.int64)
    rows = np.concatenate(fac).astype(np.int64) if fac else np.zeros(0, np.int64)
    keys = np.zeros(len(rows), np.uint64)
    for start in range(0, len(rows), chunk):
        o, r = owner[start : start + chunk], rows[start : start + chunk]
        z, rho, st = facet_points(Au[o], bu[o], r, centers[o], domain, solver, reach, radius_cap, tol)
        np.maximum.at(status, o, np.asarray(st, np.int32))
        good = np.flatnonzero(st == lp.OPTIMAL)  # a failed facet centre gives no key
        o, r, z, rho = o[good], r[good], z[good], rho[good]
        F = len(o)
        if F == 0:
            continue
        a = Au[o, r]
        # distance along +a to the other rows of the region (they bound the step too)
        along = np.einsum("fmk,fk->fm", Au[o], a)
        slack = bu[o] - np.einsum("fmk,fk->fm", Au[o], z)
        along[np.arange(F), r] = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            lim = np.where(np.abs(along) > 1e-12, np.abs(slack / along), np.inf).min(axis=1)
        eps = 0.1 * np.minimum(rho, lim)
        floor = 64 * np.finfo(np.float32).eps * (1.0 + np.abs(z).max(axis=1))
        eps = np.minimum(np.maximum(eps, floor), 1.0)
        keys[start + good] = _step_keys(space, z, a, eps, floor)
    split = np.cumsum([len(f) for f in fac])[:-1]
    out = np.split(keys, split) if len(fac) else []
    failed = status != lp.OPTIMAL
    if return_status:
        fac = [np.zeros(0, np.int64) if failed[n] else f for n, f in enumerate(fac)]
        out = [np.zeros(0, np.uint64) if failed[n] else k for n, k in enumerate(out)]
        return NeighborsResult(fac, out, status)
    _raise_failed("neighbors", status)
    return (fac, out) if return_facets else out


# --- volumes --------------------------------------------------------------------------------------
def volumes(net, x, *, scope: str = "prefix", layer=None, domain=None, method: str = "auto",
            num_samples: int = 20000, key=0, solver: str = "auto", tol: float = 1e-8,
            facet_tol: float = 1e-9, return_status: bool = False):
    """Volumes of the regions of the exemplars inside a bounded domain.

    Methods:
      * ``"exact"`` (dimension ``k <= 6``): vertex enumeration with
        ``scipy.spatial.HalfspaceIntersection`` from the Chebyshev centre, then the
        ``ConvexHull`` volume; the error is 0.
      * ``"mc"``: the region's bounding box (``2k`` LPs), ``num_samples`` uniform points in
        it (rejection sampling), volume = hit fraction × box volume and its binomial
        standard error. In high dimension the region may fill a tiny part of its bounding
        box; with **no hit** there is no estimate: volume and error are NaN, the status is
        :data:`NO_HITS` and :class:`VolumeResult` ``.upper`` bounds the volume (95 %).
      * ``"auto"``: exact up to dimension 6, Monte Carlo beyond.

    No failure reads as a number: a region whose Chebyshev or bounding-box LP did not reach
    optimality, whose vertex enumeration failed, or that got no Monte Carlo hit has a NaN
    volume and error (a ``RuntimeWarning`` counts them); ``return_status`` says which (in
    the record's ``status``, without the warning).

    Args:
      net, x, scope, layer: see the module doc.
      domain: a :class:`~partax.geometry.Box` (required: volumes need a bounded domain).
      method: ``"auto"``, ``"exact"`` or ``"mc"``.
      num_samples: Monte Carlo samples per region.
      key: an int seed (or a ``jax.random`` key) for Monte Carlo.
      solver, tol: the LPs' backend and tolerance (see the module doc).
      facet_tol: a region with Chebyshev radius ``<= facet_tol`` is not full-dimensional.
      return_status: return a :class:`VolumeResult` (with ``status``, ``hits``, ``upper``).

    Returns:
      ``(volume: float64[N], stderr: float64[N])``; a region that is not
      full-dimensional has volume 0. With ``return_status``: a :class:`VolumeResult`.
    """
    if domain is None:
        raise ValueError("domain: volumes need a bounded domain, pass a partax.Box")
    if method not in ("auto", "exact", "mc"):
        raise ValueError(f"method: expected 'auto', 'exact' or 'mc', got {method!r}")
    num_samples = check_positive_int(num_samples, "num_samples")
    return_status = check_flag(return_status, "return_status")
    solver = _solver(solver)
    A, b, space, p = _setup(net, x, scope, layer, domain)
    res = volumes_rows(A, b, p, None, None, None, method=method, num_samples=num_samples, key=key, solver=solver,
                   tol=tol, facet_tol=facet_tol)
    if return_status:
        return res
    _warn_volumes(res.status)
    return res.volume, res.stderr


def _warn_volumes(status, stacklevel: int = 3) -> None:
    status = np.asarray(status)
    lp_bad = np.flatnonzero((status != lp.OPTIMAL) & (status != NO_HITS))
    no_hit = np.flatnonzero(status == NO_HITS)
    if lp_bad.size:
        warnings.warn(f"volumes: {lp_bad.size} region(s) failed (an LP did not reach optimality or the vertex "
                      f"enumeration failed; rows {_rows_text(lp_bad)}): volume NaN", RuntimeWarning,
                      stacklevel=stacklevel)
    if no_hit.size:
        warnings.warn(f"volumes: {no_hit.size} region(s) got no Monte Carlo hit (rows {_rows_text(no_hit)}): "
                      "volume NaN; return_status=True gives an upper bound (VolumeResult.upper), or raise "
                      "num_samples", RuntimeWarning, stacklevel=stacklevel)
