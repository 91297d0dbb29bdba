"""Per-region polytope quantities, batched over exemplars.

Every function takes exemplars ``x[N, d_in]`` (inputs of the net), each naming the region
that :func:`partax.codes` assigns it, and the keywords ``scope``, ``layer`` (see
:mod:`partax.geometry.local`: ``"prefix"`` regions live in the input space, ``"layer"``
and ``"suffix"`` regions in the latent space ``h^{layer-1}``), ``domain`` (a
:class:`~partax.geometry.Box` in that space, or None for all of it) and ``solver``
(``"ipm"``, ``"highs"`` or ``"auto"``: HiGHS on CPU, the JAX interior point on
accelerators).

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
from scipy.spatial import ConvexHull, HalfspaceIntersection

from partax.codes import keys_from_bits
from partax.geometry import lp as _lp
from partax.geometry.local import _scope_rows

__all__ = ["margins", "chebyshev", "facets", "neighbors", "volumes", "region_keys", "FacetsResult",
           "NeighborsResult", "VolumeResult", "NO_HITS"]

REACH = 100.0
RADIUS_CAP = 1e3
_EXACT_MAX_DIM = 6
NO_HITS = 3  # volume status: a Monte Carlo volume with no sample inside the region
_UPPER_LEVEL = 0.95  # confidence of VolumeResult.upper


class FacetsResult(NamedTuple):
    """:func:`facets` with ``return_status=True``.

    Attributes:
      facets: list of ``N`` sorted ``int64`` arrays (empty where ``status != 0``: undecided).
      status: ``int32[N]``, the worst LP status of the region (its Chebyshev LP and its
        redundancy LPs): 0 optimal, 1 iteration limit, 2 failure.
    """

    facets: list
    status: np.ndarray


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


class VolumeResult(NamedTuple):
    """:func:`volumes` with ``return_status=True``.

    Attributes:
      volume: ``float64[N]``; NaN where ``status != 0``.
      stderr: ``float64[N]``; NaN where ``status != 0``.
      status: ``int32[N]``: 0 fine; 1 / 2 an LP (Chebyshev or bounding box) hit its iteration
        limit / failed, or (2) the exact vertex enumeration failed; 3 (:data:`NO_HITS`) no
        Monte Carlo sample fell in the region (its volume is below ``upper``, no estimate).
      hits: ``int64[N]`` Monte Carlo samples inside the region (-1 where none were drawn:
        exact method, a region that is not full-dimensional, or a failed LP).
      upper: ``float64[N]``: a 95 % upper confidence bound on the volume: the volume itself
        (exact method, or a region that is not full-dimensional: 0); for Monte Carlo the
        one-sided Clopper–Pearson bound × the bounding box volume (with no hit
        ``(1 - 0.05^(1/num_samples))`` × the box volume, about ``3 / num_samples`` of it); NaN
        where an LP failed.
    """

    volume: np.ndarray
    stderr: np.ndarray
    status: np.ndarray
    hits: np.ndarray
    upper: np.ndarray


def _solver(solver: str) -> str:
    if solver == "auto":
        return _lp.default_solver()
    if solver not in _lp.SOLVERS:
        raise ValueError(f"solver: expected 'auto', 'ipm' or 'highs', got {solver!r}")
    return solver


def _unit_rows(A, b):
    """Unit-norm rows, and a mask of rows that are not all-zero."""
    nrm = np.linalg.norm(A, axis=-1)
    live = nrm > 1e-12
    safe = np.where(live, nrm, 1.0)
    A = np.where(live[..., None], A / safe[..., None], 0.0)
    b = np.where(live, b / safe, np.where(b >= 0, 1.0, b))
    return A, b, live


def _check_positive(name: str, value) -> float:
    """``value`` as a float, or a ValueError naming the argument unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return v


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _rows_text(rows, limit: int = 10) -> str:
    rows = [int(r) for r in rows]
    head = ", ".join(map(str, rows[:limit]))
    return f"[{head}{', ...' if len(rows) > limit else ''}]"


def _warn_failed(what: str, status, stacklevel: int = 3) -> None:
    bad = np.flatnonzero(np.asarray(status) != _lp.OPTIMAL)
    if bad.size:
        warnings.warn(f"{what}: the LPs of {bad.size} region(s) did not reach optimality (rows "
                      f"{_rows_text(bad)}); their values are NaN (return_status=True gives the status)",
                      RuntimeWarning, stacklevel=stacklevel)


def _raise_failed(what: str, status) -> None:
    bad = np.flatnonzero(np.asarray(status) != _lp.OPTIMAL)
    if bad.size:
        codes = sorted(set(np.asarray(status)[bad].tolist()))
        raise RuntimeError(f"{what}: the LPs of {bad.size} region(s) did not reach optimality (rows "
                           f"{_rows_text(bad)}, status {codes}: 1 iteration limit, 2 failure); their facets "
                           "are undecided. Pass return_status=True to get the other rows with these flagged")


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def _setup(net, x, scope, layer, domain):
    """Rows ``A z <= b`` of the regions of ``x``, their space, and the exemplars there (float64)."""
    A, b, space, _ = _scope_rows(net, x, scope, layer, domain)
    return A, b, space, np.asarray(space.points, np.float64)


def _space_keys(space, pts) -> np.ndarray:
    """Keys (as ``partax.region_ids(net, x, scope)[:, layer-1]``) of points of a scope's space.

    The codes are those of the space's sub-network (the net's dtype); the keys are salted
    with the scope's *absolute* layer range, so they equal the full net's keys.
    """
    from partax.geometry.local import _masks

    pts = np.asarray(pts, space.net.dtype)
    if pts.shape[0] == 0:
        return np.zeros(0, np.uint64)
    bits = _masks(space.net, pts)[: space.depth]
    return _keys_of_bits(space, bits)


def _keys_of_bits(space, bits) -> np.ndarray:
    first = space.first
    return keys_from_bits(bits, first, first + space.depth - 1, start=first)


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
    from partax.geometry.local import _check_net, _check_x, scope_space

    _check_net(net)
    x = _check_x(x, net.input_dim)
    if points is None:
        space = scope_space(net, x, scope, layer)
        return _space_keys(space, space.points)
    space = scope_space(net, np.zeros((1, net.input_dim), net.dtype), scope, layer)
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != space.dim:
        raise ValueError(f"points: expected shape (P, {space.dim}) in the scope's space, got {tuple(pts.shape)}")
    return _space_keys(space, pts)


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
    A, b, live = _unit_rows(A, b)
    slack = b - np.einsum("nmk,nk->nm", A, p)
    return np.where(live, slack, np.inf).min(axis=1) if A.shape[1] else np.full(len(p), np.inf)


# --- Chebyshev ------------------------------------------------------------------------------------
def _cheb(A, b, p, domain, solver, reach, radius_cap, tol):
    """``(centers, radii, status)``; NaN centre and radius where the LP failed (no warning)."""
    reach_box = reach if domain is None else None
    centers, radii, status = _lp.chebyshev(
        A, b, center=p, reach=reach_box, radius_cap=radius_cap, solver=solver, tol=tol, x0=p
    )
    status = np.asarray(status, np.int32)
    bad = status != _lp.OPTIMAL
    centers = np.where(bad[:, None], np.nan, centers)
    radii = np.where(bad, np.nan, radii)
    return centers, radii, status


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
    reach, radius_cap = _check_positive("reach", reach), _check_positive("radius_cap", radius_cap)
    return_status = _check_flag("return_status", return_status)
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        out = _lp.ChebyshevResult(np.zeros((0, space.dim)), np.zeros(0), np.zeros(0, np.int32))
    else:
        out = _lp.ChebyshevResult(*_cheb(A, b, p, domain, solver, reach, radius_cap, tol))
        if not return_status:
            _warn_failed("chebyshev", out.status)
    return out if return_status else (out.centers, out.radii)


# --- facets ------------------------------------------------------------------------------------------
def _facets(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol, num_rays, seed, chunk):
    """Facet rows of each region; also the unit rows, the Chebyshev data and the statuses.

    Returns:
      ``(facets, Au, bu, centers, radii, cheb_status, status)``: ``cheb_status`` is the
      Chebyshev LP's, ``status`` the worst over the region's LPs (``int32[N]``); a region
      with ``status != 0`` has an empty facet array (undecided).
    """
    N, m, k = A.shape
    Au, bu, live = _unit_rows(A, b)
    centers, radii, cheb_status = _cheb(A, b, p, domain, solver, reach, radius_cap, tol)
    status = cheb_status.copy()
    full = np.isfinite(radii) & (radii > facet_tol)
    certain = np.zeros((N, m), bool)
    # Ray shooting from the Chebyshev centre: the first row a ray meets is a facet.
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(num_rays, k))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    safe_c = np.where(full[:, None], centers, 0.0)  # failed rows (NaN centre) are masked out below
    slack = bu - np.einsum("nmk,nk->nm", Au, safe_c)  # [N, m]
    speed = np.einsum("nmk,rk->nrm", Au, U)  # [N, rays, m]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where((speed > 1e-12) & live[:, None, :], slack[:, None, :] / speed, np.inf)
    hit = np.argmin(t, axis=2)  # [N, rays]
    finite = np.isfinite(np.take_along_axis(t, hit[..., None], axis=2)[..., 0])
    rows_n = np.broadcast_to(np.arange(N)[:, None], hit.shape)
    certain[rows_n[finite], hit[finite]] = True
    certain &= full[:, None]
    # LP test for the rest: max a_i·z s.t. the other rows, row i relaxed by 1.
    cand = np.argwhere(full[:, None] & live & ~certain)
    is_facet = certain.copy()
    for start in range(0, len(cand), chunk):
        cn = cand[start : start + chunk]
        n_idx, r_idx = cn[:, 0], cn[:, 1]
        AA = Au[n_idx].copy()
        bb = bu[n_idx].copy()
        bb[np.arange(len(cn)), r_idx] += 1.0
        c = -AA[np.arange(len(cn)), r_idx]
        if domain is None:
            eye = np.eye(k)
            ctr = centers[n_idx]
            AA = np.concatenate([AA, np.broadcast_to(np.concatenate([eye, -eye]), (len(cn), 2 * k, k))], axis=1)
            bb = np.concatenate([bb, ctr + reach, -(ctr - reach)], axis=1)
        res = _lp.solve(c, AA, bb, solver=solver, tol=tol, x0=centers[n_idx])
        ok = res.status == _lp.OPTIMAL
        np.maximum.at(status, n_idx, np.asarray(res.status, np.int32))  # the worst status per region
        is_facet[n_idx[ok], r_idx[ok]] = (-res.value[ok]) > bu[n_idx[ok], r_idx[ok]] + facet_tol
    is_facet[status != _lp.OPTIMAL] = False  # undecided: no facet from a failed LP
    return [np.flatnonzero(row) for row in is_facet], Au, bu, centers, radii, cheb_status, status


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
    reach, radius_cap = _check_positive("reach", reach), _check_positive("radius_cap", radius_cap)
    _check_count("num_rays", num_rays), _check_count("chunk", chunk)
    return_status = _check_flag("return_status", return_status)
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        return FacetsResult([], np.zeros(0, np.int32)) if return_status else []
    out = _facets(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol, num_rays, seed, chunk)
    if return_status:
        return FacetsResult(out[0], out[6])
    _raise_failed("facets", out[6])
    return out[0]


# --- neighbours -------------------------------------------------------------------------------------
def _facet_points(Au, bu, rows, centers, domain, solver, reach, radius_cap, tol):
    """Chebyshev centre (inside its hyperplane), in-plane radius and LP status of each facet.

    Args:
      Au, bu: unit rows ``[F, m, k]``, ``[F, m]`` of the facet's region; rows: ``int[F]``.

    Returns:
      ``(points: float64[F, k], radii: float64[F], status: int32[F])``; NaN where the LP failed.
    """
    F, m, k = Au.shape
    a = Au[np.arange(F), rows]  # [F, k]
    base = a * bu[np.arange(F), rows][:, None]  # a point of each hyperplane
    if k == 1:
        return base, np.full(F, np.inf), np.zeros(F, np.int32)
    # Orthonormal basis of a^perp: the last k-1 right singular vectors of a.
    _, _, Vt = np.linalg.svd(a[:, None, :])
    Nb = Vt[:, 1:, :].transpose(0, 2, 1)  # [F, k, k-1]
    AA = np.einsum("fmk,fkj->fmj", Au, Nb)
    bb = bu - np.einsum("fmk,fk->fm", Au, base)
    AA[np.arange(F), rows] = 0.0
    bb[np.arange(F), rows] = 1.0
    w0 = np.einsum("fkj,fk->fj", Nb, centers - base)
    c, AL, bL = _lp.chebyshev_lp(AA, bb, center=w0, reach=reach if domain is None else None,
                                 radius_cap=radius_cap)
    start = np.concatenate([w0, np.zeros((F, 1))], axis=1) if solver == "ipm" else None
    res = _lp.solve(c, AL, bL, solver=solver, tol=tol, x0=start)
    w, rho = res.x[:, :-1], res.x[:, -1]  # NaN rows where the LP failed
    return base + np.einsum("fkj,fj->fk", Nb, w), rho, res.status


def _step_keys(space, z, a, eps, floor, tries: int = 4):
    """Keys of the points ``z + eps a``, shrinking ``eps`` (by 10, ``tries`` times) until the
    region found there has ``z`` in its closure (so no other boundary was jumped over)."""
    from partax.geometry.local import _maps, _masks, _rows

    sub, depth = space.net, space.depth
    keys = np.zeros(len(z), np.uint64)
    todo = np.arange(len(z))
    for t in range(tries):
        q = (z[todo] + eps[todo, None] * a[todo]).astype(sub.dtype)
        masks = _masks(sub, q)
        keys[todo] = _keys_of_bits(space, masks[:depth])
        if t == tries - 1:
            break
        A, b = _rows(_maps(sub, q, masks), depth, None, z.shape[1])
        A, b, live = _unit_rows(A, b)
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
    reach, radius_cap = _check_positive("reach", reach), _check_positive("radius_cap", radius_cap)
    _check_count("num_rays", num_rays), _check_count("chunk", chunk)
    return_facets = _check_flag("return_facets", return_facets)
    return_status = _check_flag("return_status", return_status)
    A, b, space, p = _setup(net, x, scope, layer, domain)
    if p.shape[0] == 0:
        if return_status:
            return NeighborsResult([], [], np.zeros(0, np.int32))
        return ([], []) if return_facets else []
    fac, Au, bu, centers, _, _, status = _facets(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol,
                                                 num_rays, seed, chunk)
    owner = np.concatenate([np.full(len(f), n) for n, f in enumerate(fac)]).astype(np.int64)
    rows = np.concatenate(fac).astype(np.int64) if fac else np.zeros(0, np.int64)
    keys = np.zeros(len(rows), np.uint64)
    for start in range(0, len(rows), chunk):
        o, r = owner[start : start + chunk], rows[start : start + chunk]
        z, rho, st = _facet_points(Au[o], bu[o], r, centers[o], domain, solver, reach, radius_cap, tol)
        np.maximum.at(status, o, np.asarray(st, np.int32))
        good = np.flatnonzero(st == _lp.OPTIMAL)  # a failed facet centre gives no key
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
    failed = status != _lp.OPTIMAL
    if return_status:
        fac = [np.zeros(0, np.int64) if failed[n] else f for n, f in enumerate(fac)]
        out = [np.zeros(0, np.uint64) if failed[n] else k for n, k in enumerate(out)]
        return NeighborsResult(fac, out, status)
    _raise_failed("neighbors", status)
    return (fac, out) if return_facets else out


# --- volumes --------------------------------------------------------------------------------------
def _exact_volume(A, b, center, k):
    if k == 1:
        a = A[:, 0]
        with np.errstate(divide="ignore"):
            hi = np.min(np.where(a > 0, b / np.where(a > 0, a, 1), np.inf))
            lo = np.max(np.where(a < 0, b / np.where(a < 0, a, 1), -np.inf))
        return max(hi - lo, 0.0)
    hs = HalfspaceIntersection(np.concatenate([A, -b[:, None]], axis=1), center)
    return float(ConvexHull(hs.intersections).volume)


def _upper_fraction(hits: int, n: int) -> float:
    """One-sided Clopper–Pearson upper bound (level :data:`_UPPER_LEVEL`) on a binomial proportion."""
    if hits >= n:
        return 1.0
    if hits == 0:  # the closed form of the beta quantile below
        return 1.0 - (1.0 - _UPPER_LEVEL) ** (1.0 / n)
    from scipy.special import betaincinv

    return float(betaincinv(hits + 1, n - hits, _UPPER_LEVEL))


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
    num_samples = _check_count("num_samples", num_samples)
    return_status = _check_flag("return_status", return_status)
    solver = _solver(solver)
    A, b, space, p = _setup(net, x, scope, layer, domain)
    res = _volumes(A, b, p, None, None, None, method=method, num_samples=num_samples, key=key, solver=solver,
                   tol=tol, facet_tol=facet_tol)
    if return_status:
        return res
    _warn_volumes(res.status)
    return res.volume, res.stderr


def _warn_volumes(status, stacklevel: int = 3) -> None:
    status = np.asarray(status)
    lp_bad = np.flatnonzero((status != _lp.OPTIMAL) & (status != NO_HITS))
    no_hit = np.flatnonzero(status == NO_HITS)
    if lp_bad.size:
        warnings.warn(f"volumes: {lp_bad.size} region(s) failed (an LP did not reach optimality or the vertex "
                      f"enumeration failed; rows {_rows_text(lp_bad)}): volume NaN", RuntimeWarning,
                      stacklevel=stacklevel)
    if no_hit.size:
        warnings.warn(f"volumes: {no_hit.size} region(s) got no Monte Carlo hit (rows {_rows_text(no_hit)}): "
                      "volume NaN; return_status=True gives an upper bound (VolumeResult.upper), or raise "
                      "num_samples", RuntimeWarning, stacklevel=stacklevel)


def _volumes(A, b, p, centers, radii, cheb_status, *, method, num_samples, key, solver, tol, facet_tol):
    """:func:`volumes` from the rows ``A[N, m, k], b[N, m]`` of a bounded domain's regions.

    ``p``: the exemplars' points (IPM start); ``centers``/``radii``/``cheb_status``: the
    regions' Chebyshev data if already known (else None: solved here). No warnings.

    Returns:
      :class:`VolumeResult`.
    """
    from scipy.spatial import QhullError

    N, m, k = A.shape
    if method == "auto":
        method = "exact" if k <= _EXACT_MAX_DIM else "mc"
    if method == "exact" and k > _EXACT_MAX_DIM:
        raise ValueError(f"method: 'exact' supports dimension <= {_EXACT_MAX_DIM}, the scope's space has {k}")
    vol = np.zeros(N)
    err = np.zeros(N)
    hits = np.full(N, -1, np.int64)
    upper = np.zeros(N)
    if N == 0:
        return VolumeResult(vol, err, np.zeros(0, np.int32), hits, upper)
    Au, bu, live = _unit_rows(A, b)
    if centers is None:
        centers, radii, cheb_status = _cheb(A, b, p, None, solver, None, RADIUS_CAP, tol)  # no reach box
    status = np.array(cheb_status, np.int32)
    radii = np.where(status == _lp.OPTIMAL, radii, np.nan)
    full = np.isfinite(radii) & (radii > facet_tol)
    if method == "exact":
        for n in np.flatnonzero(full):
            try:
                vol[n] = _exact_volume(Au[n][live[n]], bu[n][live[n]], centers[n], k)
            except QhullError:
                status[n] = _lp.FAILED
        upper[:] = vol
    else:  # Monte Carlo in the bounding box
        idx = np.flatnonzero(full)
        if idx.size:
            R = idx.size
            eye = np.eye(k)
            C = np.concatenate([eye, -eye])  # min z_j, then max z_j
            c = np.repeat(C[None], R, axis=0).reshape(R * 2 * k, k)
            AA = np.repeat(Au[idx], 2 * k, axis=0)
            bb = np.repeat(bu[idx], 2 * k, axis=0)
            res = _lp.solve(c, AA, bb, solver=solver, tol=tol, x0=np.repeat(centers[idx], 2 * k, axis=0))
            # a region's box is only as good as its worst LP: no volume from a garbage box
            box_status = np.asarray(res.status, np.int32).reshape(R, 2 * k).max(axis=1)
            status[idx] = np.maximum(status[idx], box_status)
            val = res.value.reshape(R, 2 * k)
            lo, hi = val[:, :k], -val[:, k:]
            if not isinstance(key, (int, np.integer)):
                import jax

                key = int(np.asarray(jax.random.key_data(key)).ravel()[-1])
            rng = np.random.default_rng(key)
            for j, n in enumerate(idx):
                if status[n] != _lp.OPTIMAL or not (np.all(np.isfinite(lo[j])) and np.all(np.isfinite(hi[j]))):
                    status[n] = max(int(status[n]), _lp.FAILED)
                    continue
                span = np.maximum(hi[j] - lo[j], 0.0)
                bvol = float(np.prod(span))
                z = lo[j] + rng.random((num_samples, k)) * span
                inside = np.all(z @ Au[n].T <= bu[n], axis=1)
                h = int(inside.sum())
                q = h / num_samples
                hits[n] = h
                upper[n] = bvol * _upper_fraction(h, num_samples)
                if h == 0:
                    status[n] = NO_HITS
                    continue
                vol[n] = q * bvol
                err[n] = bvol * np.sqrt(q * (1 - q) / num_samples) if q < 1 else 0.0
    bad = status != _lp.OPTIMAL
    vol[bad] = np.nan
    err[bad] = np.nan
    upper[bad & (status != NO_HITS)] = np.nan
    return VolumeResult(vol, err, status, hits, upper)
