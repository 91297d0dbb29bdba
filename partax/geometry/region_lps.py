"""Per-region LP computations from H-representations: rows in, numbers and statuses out.

The batched work behind :func:`partax.geometry.chebyshev`, :func:`~partax.geometry.facets`,
:func:`~partax.geometry.neighbors`, :func:`~partax.geometry.volumes` and
:func:`~partax.geometry.region_report`, on regions given as rows ``A[N, m, k] z <= b[N, m]``
(see :mod:`partax.geometry.polytope` for the conventions: reach box, radius cap, statuses).
Rows are normalised by the one rule of :func:`partax.geometry.hrep.unit_rows`; every LP goes
through :func:`partax.geometry.lp.solve` / :func:`partax.geometry.lp.chebyshev`. Nothing
here warns or raises for a failed LP: statuses are returned and the public functions decide.

Example:
    >>> import numpy as np
    >>> from partax.geometry.region_lps import chebyshev_rows
    >>> A = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])  # |z|_inf <= 1
    >>> centers, radii, status = chebyshev_rows(A, np.ones((1, 4)), np.zeros((1, 2)), None, "highs",
    ...                                         None, 1e3, 1e-8)
    >>> np.round(radii, 6).tolist(), status.tolist()
    ([1.0], [0])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial import ConvexHull, HalfspaceIntersection

from partax.geometry import lp
from partax.geometry.hrep import unit_rows
from partax.records import record_repr

__all__ = ["NO_HITS", "RADIUS_CAP", "VolumeResult", "chebyshev_rows", "facets_rows", "facet_points", "volumes_rows"]

RADIUS_CAP = 1e3
_EXACT_MAX_DIM = 6
NO_HITS = 3  # volume status: a Monte Carlo volume with no sample inside the region
_UPPER_LEVEL = 0.95  # confidence of VolumeResult.upper
_DUPLICATE_RTOL = 1e-9  # a facet centre's LP: a row parallel to the facet within this of it is its duplicate


def _unit(A, b):
    """Unit rows and the live mask (:func:`partax.geometry.hrep.unit_rows`)."""
    rows = unit_rows(A, b)
    return rows.A, rows.b, rows.live


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

    def __repr__(self) -> str:
        ok = self.status == 0
        return record_repr("VolumeResult", regions=int(self.status.shape[0]), failed=int(np.sum(~ok)),
                           no_hits=int(np.sum(self.status == 3)), total=float(np.sum(self.volume[ok])))


def chebyshev_rows(A, b, p, domain, solver, reach, radius_cap, tol):
    """Chebyshev centres and radii of the regions ``A z <= b``.

    Args:
      A: ``[N, m, k]``; b: ``[N, m]``.
      p: ``[N, k]`` the exemplars' points (the reach box's centres and the IPM's start).
      domain: the domain (None: the centre is kept within ``reach`` of ``p``).
      solver, reach, radius_cap, tol: see :func:`partax.geometry.lp.chebyshev`.

    Returns:
      ``(centers, radii, status)``; NaN centre and radius where the LP failed (no warning).
    """
    reach_box = reach if domain is None else None
    centers, radii, status = lp.chebyshev(
        A, b, center=p, reach=reach_box, radius_cap=radius_cap, solver=solver, tol=tol, x0=p
    )
    status = np.asarray(status, np.int32)
    bad = status != lp.OPTIMAL
    centers = np.where(bad[:, None], np.nan, centers)
    radii = np.where(bad, np.nan, radii)
    return centers, radii, status


def facets_rows(A, b, p, domain, solver, reach, radius_cap, tol, facet_tol, num_rays, seed, chunk):
    """Facet rows of each region; also the unit rows, the Chebyshev data and the statuses.

    Args:
      A, b, p, domain, solver, reach, radius_cap, tol: as :func:`chebyshev_rows`.
      facet_tol, num_rays, seed, chunk: see :func:`partax.geometry.facets`.

    Returns:
      ``(facets, Au, bu, centers, radii, cheb_status, status)``: ``cheb_status`` is the
      Chebyshev LP's, ``status`` the worst over the region's LPs (``int32[N]``); a region
      with ``status != 0`` has an empty facet array (undecided).
    """
    N, m, k = A.shape
    Au, bu, live = _unit(A, b)
    centers, radii, cheb_status = chebyshev_rows(A, b, p, domain, solver, reach, radius_cap, tol)
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
        res = lp.solve(c, AA, bb, solver=solver, tol=tol, x0=centers[n_idx])
        ok = res.status == lp.OPTIMAL
        np.maximum.at(status, n_idx, np.asarray(res.status, np.int32))  # the worst status per region
        is_facet[n_idx[ok], r_idx[ok]] = (-res.value[ok]) > bu[n_idx[ok], r_idx[ok]] + facet_tol
    is_facet[status != lp.OPTIMAL] = False  # undecided: no facet from a failed LP
    return [np.flatnonzero(row) for row in is_facet], Au, bu, centers, radii, cheb_status, status


def facet_points(Au, bu, rows, centers, domain, solver, reach, radius_cap, tol):
    """Chebyshev centre (inside its hyperplane), in-plane radius and LP status of each facet.

    Args:
      Au, bu: unit rows ``[F, m, k]``, ``[F, m]`` of the facet's region; rows: ``int[F]``.
      centers: ``[F, k]`` the regions' centres (the IPM's start).
      domain, solver, reach, radius_cap, tol: as :func:`chebyshev_rows`.

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
    # Rows parallel to the facet's hyperplane read 0 <= bb in it; a duplicate of the facet's row
    # (two units, or two sites, with one hyperplane) has bb = 0 up to rounding, which a tiny
    # negative value would turn into an infeasible LP: within _DUPLICATE_RTOL it is 0.
    flat = np.linalg.norm(AA, axis=2) <= 1e-12
    dup = flat & (bb < 0) & (bb >= -_DUPLICATE_RTOL * (1.0 + np.abs(bu)))
    AA[flat] = 0.0
    bb[dup] = 0.0
    w0 = np.einsum("fkj,fk->fj", Nb, centers - base)
    c, AL, bL = lp.chebyshev_lp(AA, bb, center=w0, reach=reach if domain is None else None,
                                 radius_cap=radius_cap)
    start = np.concatenate([w0, np.zeros((F, 1))], axis=1) if solver in ("ipm", "numpy") else None
    res = lp.solve(c, AL, bL, solver=solver, tol=tol, x0=start)
    w, rho = res.x[:, :-1], res.x[:, -1]  # NaN rows where the LP failed
    return base + np.einsum("fkj,fj->fk", Nb, w), rho, res.status


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


def volumes_rows(A, b, p, centers, radii, cheb_status, *, method, num_samples, key, solver, tol, facet_tol):
    """:func:`partax.geometry.volumes` from the rows of a bounded domain's regions (no warnings).

    Args:
      A: ``[N, m, k]``; b: ``[N, m]`` (the domain's rows included).
      p: ``[N, k]`` the exemplars' points (the IPM's start).
      centers, radii, cheb_status: the regions' Chebyshev data if already known (else None:
        solved here).
      method, num_samples, key, solver, tol, facet_tol: see :func:`partax.geometry.volumes`.

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
    Au, bu, live = _unit(A, b)
    if centers is None:
        centers, radii, cheb_status = chebyshev_rows(A, b, p, None, solver, None, RADIUS_CAP, tol)  # no reach box
    status = np.array(cheb_status, np.int32)
    radii = np.where(status == lp.OPTIMAL, radii, np.nan)
    full = np.isfinite(radii) & (radii > facet_tol)
    if method == "exact":
        for n in np.flatnonzero(full):
            try:
                vol[n] = _exact_volume(Au[n][live[n]], bu[n][live[n]], centers[n], k)
            except QhullError:
                status[n] = lp.FAILED
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
            res = lp.solve(c, AA, bb, solver=solver, tol=tol, x0=np.repeat(centers[idx], 2 * k, axis=0))
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
                if status[n] != lp.OPTIMAL or not (np.all(np.isfinite(lo[j])) and np.all(np.isfinite(hi[j]))):
                    status[n] = max(int(status[n]), lp.FAILED)
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
    bad = status != lp.OPTIMAL
    vol[bad] = np.nan
    err[bad] = np.nan
    upper[bad & (status != NO_HITS)] = np.nan
    return VolumeResult(vol, err, status, hits, upper)
