"""Randomized volumes of polytopes: multiphase Monte Carlo with hit-and-run, per region.

In high dimension a uniform sample of the box almost never falls in one given region of a
ReLU net (64-D digits regions: no hit in 20,000 samples), so Monte Carlo in the box cannot
give a region its volume. :func:`polytope_volumes` estimates the volume of each bounded
polytope ``P = {x : A x <= b}`` of a batch on its own, in the manner of Lovász–Vempala's
multiphase Monte Carlo (Lovász & Vempala 2006; the practical form of Emiris & Fisikopoulos,
*VolEsti*, with a sequence of concentric balls):

1. **Start.** An interior point: the Chebyshev centre (:func:`partax.geometry.lp.chebyshev`)
   unless ``center`` is given.
2. **Rounding.** ``rounding_rounds`` times, ``chains`` hit-and-run chains walk ``P`` (in the
   current coordinates) for ``rounding_steps`` steps; the mean ``mu`` and covariance
   ``Sigma = L L^T`` of the visited points give new coordinates ``x = mu + L y`` (``|det L|``
   goes into the volume). A thin region becomes close to isotropic, so the walk mixes and few
   phases are needed. ``anisotropy`` is ``sqrt(cond(Sigma))`` of the last round (about 1
   when the rounding has converged and the chains mix); above ``max_anisotropy`` the region is
   flagged :data:`NOT_ROUND`: an estimate from chains that have not mixed is biased low.
3. **Phases.** Around the rounded centre ``0`` the inscribed ball ``B(r_0)`` (``r_0`` the
   distance to the nearest facet) lies in ``P``. Bodies ``K_0 = B(r_0) ⊂ K_1 ⊂ ... ⊂ K_q = P``
   with ``K_i = P ∩ B(r_i)`` are walked from the outside in: the chains, uniform on ``K_i``,
   choose ``r_{i-1}`` as the ``ratio`` quantile of their distances to the centre (at least
   ``r_0``), walk ``K_i`` for ``steps`` steps (the first ``burn_in`` not counted) and count the
   fraction ``p_i`` of positions inside ``B(r_{i-1})``; the chains then restart from positions
   inside ``K_{i-1}`` (uniform there). Then ``vol P = vol B(r_0) |det L| / prod_i p_i``.
4. **Errors.** The chains are independent, so the spread of their own fractions gives each
   ``p_i`` an honest variance (the walk's autocorrelation included); the phases' relative
   variances add up in ``log_stderr`` (the standard error of ``log_volume``), and
   ``stderr = volume * log_stderr``.

Every step is a hit-and-run step: a uniform random direction ``u``; the chord of the line
``y + t u`` through ``K_i`` from the slacks ``s = b' - A' y`` (``t <= s_j / (a_j·u)``) and the
ball (a quadratic in ``t``); a uniform point of the chord. All regions of a batch walk at once
(``vmap`` over regions; padded rows ``0·x <= 1`` are inert), in float64, with a key per region
folded from ``key`` and the region's index (a result does not depend on the batching).

**High dimension** (the closed-form checks behind the defaults; 64 chains, 2 or 4 repeats; ``log
error`` is ``log(estimate / truth)``, ``z`` in standard errors). The bias of 48–64-D estimates is
the rounding's: its covariance comes from ``chains x rounding_steps`` correlated positions, and
with too few of them its sampling noise *distorts* even a round body (a cube, already isotropic,
reads ``anisotropy`` 3.6 after three rounds of ``30 d`` steps in 64-D); in the distorted body
the phases' walk does not mix and the chains' fractions inside the next ball come out high, so
the volume comes out low. Longer phases help less than better rounding:

=======================  ==================  ==================  ==========  =============
body                     rounding_steps      log error           z           anisotropy
=======================  ==================  ==================  ==========  =============
cube [-1, 1]^48          ``30 d`` = 1440     -0.62, -0.77        -2.6, -3.2  2.9 (passes!)
cube [-1, 1]^48          ``2 d^2`` = 4608    -0.40, -0.23        -1.7, -1.0  1.8
cube [-1, 1]^64          ``30 d`` = 1920     -1.78, -0.99        -6.6, -3.8  3.6
same, ``steps`` = 1024   1920                -0.87, -0.22        -5.3, -1.1  3.6
cube [-1, 1]^64          ``2 d^2`` = 8192    -0.61 .. -0.26 (4)  -2.5 .. -1  2.0
simplex, 64-D            1920                -4.6, -5.0          -14, -15    5.0
simplex, 64-D            8192                -1.5, -1.5          -4.3, -4.6  3.5 (flagged)
=======================  ==================  ==================  ==========  =============

So the default ``rounding_steps`` grows as ``2 d^2`` above 15 dimensions (2.2 times the time of
``30 d`` in 64-D), which keeps cubes round up to 64-D; what remains is a bias of about one to two
standard errors there, and bodies far from round (the simplex, ``sqrt(cond) = sqrt(d + 1)``) still
need more (``rounding_rounds``, ``rounding_steps``) and are flagged :data:`NOT_ROUND` until
they get it.

Nothing is silently given a number: ``status`` is :data:`OK` (0), :data:`NOT_CONVERGED` (1:
``max_phases`` reached before ``B(r_0)``), :data:`FAILED` (2: the Chebyshev LP failed, the
rounding broke down, or a phase counted no position inside the next ball), :data:`EMPTY` (3:
the polytope has no interior: Chebyshev radius ``<= radius_tol``, volume 0 with stderr 0) or
:data:`NOT_ROUND` (4: see above); ``volume``, ``stderr`` and ``log_volume`` are NaN where
``status`` is 1, 2 or 4.

Example:
    >>> import jax, numpy as np
    >>> from partax.geometry.hit_and_run import polytope_volumes
    >>> d = 3
    >>> A = np.concatenate([-np.eye(d), np.ones((1, d))])[None]  # the simplex x >= 0, sum(x) <= 1
    >>> b = np.concatenate([np.zeros(d), [1.0]])[None]
    >>> res = polytope_volumes(A, b, jax.random.key(0), chains=32, steps=40)
    >>> res.status.tolist(), bool(abs(res.volume[0] - 1 / 6) < 4 * res.stderr[0])
    ([0], True)
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from partax.geometry import lp
from partax.geometry.domains import Box, check_bounded_box
from partax.geometry.hrep import unit_rows
from partax.geometry.local import halfspaces_batch, scope_space
from partax.records import record_repr
from partax.validation import check_net, check_positive_int

__all__ = ["OK", "NOT_CONVERGED", "FAILED", "EMPTY", "NOT_ROUND", "PolytopeVolumes", "polytope_volumes",
           "region_volumes", "default_rounding_steps"]

OK = 0
NOT_CONVERGED = 1
FAILED = 2
EMPTY = 3
NOT_ROUND = 4


class PolytopeVolumes(NamedTuple):
    """Randomized volumes of a batch of polytopes (:func:`polytope_volumes`).

    Attributes:
      volume: ``float64[N]`` the estimates (NaN where ``status`` is 1, 2 or 4; 0 where 3).
      stderr: ``float64[N]`` their standard errors, ``volume * log_stderr``.
      log_volume: ``float64[N]`` natural log of the volume (``-inf`` where empty).
      log_stderr: ``float64[N]`` the standard error of ``log_volume`` (the relative error).
      phases: ``int32[N]`` the number of phases walked.
      anisotropy: ``float64[N]`` ``sqrt(cond(Sigma))`` of the last rounding round (1: round).
      inner_radius: ``float64[N]`` ``r_0`` in the rounded coordinates.
      status: ``int32[N]``: :data:`OK`, :data:`NOT_CONVERGED`, :data:`FAILED`, :data:`EMPTY`,
        :data:`NOT_ROUND` (see the module docstring).
    """

    volume: np.ndarray
    stderr: np.ndarray
    log_volume: np.ndarray
    log_stderr: np.ndarray
    phases: np.ndarray
    anisotropy: np.ndarray
    inner_radius: np.ndarray
    status: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        """``bool[N]``: ``status == OK``."""
        return self.status == OK

    def __repr__(self) -> str:
        ok = self.status == OK
        med = float(np.median(self.log_stderr[ok])) if ok.any() else float("nan")
        return record_repr("PolytopeVolumes", polytopes=int(self.status.shape[0]), ok=int(ok.sum()),
                           not_ok=int((~ok).sum()), median_rel_stderr=med)


# --- the walk ---------------------------------------------------------------------------------
def _hr_step(key, y, s, A, rad2):
    """One hit-and-run step of every chain in ``{A' y <= b'} ∩ B(sqrt(rad2))``.

    ``y [C, d]`` positions, ``s [C, m]`` slacks ``b' - A' y``, ``A [m, d]``; returns both moved
    and a spare uniform ``[C]`` (one random draw per step: the direction and two uniforms).
    """
    d = y.shape[1]
    g = jax.random.normal(key, (y.shape[0], d + 2), y.dtype)
    u = g[:, :d] / jnp.linalg.norm(g[:, :d], axis=1, keepdims=True)
    unif = jax.scipy.special.ndtr(g[:, d:])
    au = u @ A.T  # [C, m]
    s = jnp.maximum(s, 0.0)
    ratio = s / jnp.where(au == 0, 1.0, au)
    tmax = jnp.min(jnp.where(au > 0, ratio, jnp.inf), axis=1)
    tmin = jnp.max(jnp.where(au < 0, ratio, -jnp.inf), axis=1)
    yu = jnp.sum(y * u, axis=1)
    sq = jnp.sqrt(jnp.maximum(yu * yu - jnp.sum(y * y, axis=1) + rad2, 0.0))
    tmax = jnp.minimum(tmax, -yu + sq)
    tmin = jnp.maximum(tmin, -yu - sq)
    tmax = jnp.maximum(tmax, tmin)  # a degenerate chord (rounding) leaves the chain in place
    t = tmin + unif[:, 0] * (tmax - tmin)
    return y + t[:, None] * u, s - t[:, None] * au, unif[:, 1]


def _round_once(key, A, b, y, steps):
    """A rounding round: walk ``steps`` steps, then map to the visited points' isotropic coordinates."""
    d = y.shape[1]

    def body(i, carry):
        y, s, m1, m2 = carry
        y, s, _ = _hr_step(jax.random.fold_in(key, i), y, s, A, jnp.inf)
        return y, s, m1 + jnp.sum(y, axis=0), m2 + y.T @ y

    s = b - y @ A.T
    z = jnp.zeros(d, y.dtype)
    y, s, m1, m2 = jax.lax.fori_loop(0, steps, body, (y, s, z, jnp.zeros((d, d), y.dtype)))
    n = steps * y.shape[0]
    mu = m1 / n
    cov = m2 / n - jnp.outer(mu, mu)
    cov = 0.5 * (cov + cov.T)
    # The LAPACK calls run one after another: the Cholesky factor's regularisation reads the
    # trace as the eigenvalues' sum, and the triangular solve reads the factor. XLA:CPU runs
    # independent custom calls at once, and each batched one waits, inside a thread of the same
    # pool, for its batch's slices: two at once can take every thread of a 2-core pool and wait
    # forever (they did, at 8 regions per batch in 64-D, when the trace was cov's own).
    evals = jnp.linalg.eigvalsh(cov)
    aniso = jnp.sqrt(evals[-1] / evals[0])
    L = jnp.linalg.cholesky(cov + 1e-12 * jnp.sum(evals) / d * jnp.eye(d, dtype=y.dtype))
    logdet = jnp.sum(jnp.log(jnp.diag(L)))
    A2 = A @ L
    b2 = b - A @ mu
    y2 = jax.scipy.linalg.solve_triangular(L, (y - mu).T, lower=True).T
    return A2, b2, y2, logdet, aniso


def _one_region(key, A, b, *, chains, steps, burn_in, ratio, rounds, rounding_steps, max_phases):
    """The multiphase estimate of one polytope (rows ``A [m, d] y <= b``, interior point 0)."""
    m, d = A.shape

    def rounding(r, carry):
        A, b, y, logdet, _ = carry
        A, b, y, ld, aniso = _round_once(jax.random.fold_in(key, 1_000_000 + r), A, b, y, rounding_steps)
        return A, b, y, logdet + ld, aniso

    z = jnp.zeros((), A.dtype)
    A, b, y, logdet, aniso = jax.lax.fori_loop(0, rounds, rounding, (A, b, jnp.zeros((chains, d), A.dtype), z, z))
    nrm = jnp.linalg.norm(A, axis=1)
    r0 = jnp.min(jnp.where(nrm > 0, b / jnp.where(nrm > 0, nrm, 1.0), jnp.inf))
    r02 = r0 * r0
    bad0 = ~jnp.isfinite(logdet) | ~(r0 > 0) | ~jnp.all(jnp.isfinite(A))

    # state: y, rcur2, logsum, varsum, phase, done, failed
    def cond(st):
        _, _, _, _, phase, done, failed = st
        return ~done & ~failed & (phase < max_phases)

    def body(st):
        y, rcur2, logsum, varsum, phase, done, failed = st
        kp = jax.random.fold_in(key, phase)
        n2 = jnp.sum(y * y, axis=1)
        q = jnp.quantile(n2, ratio)
        last = q <= r02
        rnext2 = jnp.where(last, r02, q)
        s = b - y @ A.T

        def walk(i, carry):
            y, s, cnt, yin = carry
            y, s, v = _hr_step(jax.random.fold_in(kp, i), y, s, A, rcur2)
            hit = (jnp.sum(y * y, axis=1) <= rnext2) & (i >= burn_in)
            cnt = cnt + jnp.where(hit, 1.0, 0.0)
            # reservoir: a uniformly chosen one of the chain's counted positions inside the next ball
            yin = jnp.where((hit & (v * cnt <= 1.0))[:, None], y, yin)
            return y, s, cnt, yin

        zc = jnp.zeros(chains, A.dtype)
        y, s, cnt, yin = jax.lax.fori_loop(0, steps, walk, (y, s, zc, y))
        has = cnt > 0
        frac = cnt / (steps - burn_in)
        p = jnp.mean(frac)
        var = jnp.var(frac, ddof=1) / chains
        failed = p <= 0
        psafe = jnp.where(failed, 1.0, p)
        logsum = logsum + jnp.log(psafe)
        varsum = varsum + var / (psafe * psafe)
        # restart from positions inside the next ball: uniform on K_{i-1} (a chain's reservoir
        # stands for its cnt counted positions inside, so it is drawn with weight cnt)
        w = jnp.where(has, jnp.log(jnp.where(has, cnt, 1.0)), -jnp.inf)
        pick = jax.random.categorical(jax.random.fold_in(kp, steps + 1), w, shape=(chains,))
        y = yin[pick]
        return y, rnext2, logsum, varsum, phase + 1, last, failed

    z = jnp.zeros((), A.dtype)
    st = (y, jnp.asarray(jnp.inf, A.dtype), z, z, jnp.zeros((), jnp.int32), jnp.zeros((), bool), bad0)
    _, _, logsum, varsum, phase, done, failed = jax.lax.while_loop(cond, body, st)
    logball = 0.5 * d * math.log(math.pi) + d * jnp.log(r0) - jax.scipy.special.gammaln(0.5 * d + 1.0)
    logvol = logdet + logball - logsum
    return logvol, jnp.sqrt(varsum), phase, done, failed, aniso, r0


@partial(jax.jit, static_argnames=("chains", "steps", "rounds", "rounding_steps"))
def _kernel(keys, A, b, burn_in, ratio, max_phases, *, chains, steps, rounds, rounding_steps):
    f = partial(_one_region, chains=chains, steps=steps, burn_in=burn_in, ratio=ratio, rounds=rounds,
                rounding_steps=rounding_steps, max_phases=max_phases)
    return jax.vmap(f)(keys, A, b)


# --- the public edge --------------------------------------------------------------------------
def default_rounding_steps(d: int) -> int:
    """Steps per rounding round by default: ``max(100, 30 d, 2 d^2)`` (see "High dimension" in the module doc).

    Args:
      d: the dimension.

    Returns:
      an int.

    Example:
      >>> default_rounding_steps(8), default_rounding_steps(64)
      (240, 8192)
    """
    return max(100, 30 * int(d), 2 * int(d) ** 2)


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def polytope_volumes(A, b, key, *, center=None, chains: int = 64, steps: Optional[int] = None,
                     burn_in: Optional[int] = None, ratio: float = 0.5, rounding_rounds: int = 3,
                     rounding_steps: Optional[int] = None, max_phases: Optional[int] = None,
                     max_anisotropy: float = 3.0, radius_tol: float = 1e-9, solver: str = "auto",
                     batch_size: int = 64) -> PolytopeVolumes:
    """Volumes of bounded polytopes ``{x : A[n] x <= b[n]}`` by multiphase hit-and-run.

    See the module docstring for the method, the errors and the statuses.

    Args:
      A: ``[N, m, d]`` rows (``d >= 1``); pad with inert rows ``0·x <= 1``. Every polytope must
        be bounded (include the domain box's rows): an unbounded one fails its Chebyshev LP
        (status :data:`FAILED`) or walks off to infinity (``FAILED``).
      b: ``[N, m]`` bounds.
      key: ``jax.random`` key (or int seed); polytope ``n`` uses ``fold_in(key, n)``.
      center: optional ``[N, d]`` interior points (default: Chebyshev centres by ``solver``).
      chains: independent hit-and-run chains per polytope (``>= 2``; they also give the errors).
      steps: hit-and-run steps per chain and phase (default ``max(40, 4 d)``).
      burn_in: steps of each phase not counted (default ``steps // 5``).
      ratio: the target fraction ``p_i`` of each phase, in ``(0, 1)``.
      rounding_rounds: rounding rounds (``>= 1``).
      rounding_steps: steps per rounding round (default :func:`default_rounding_steps`:
        ``max(100, 30 d, 2 d^2)``).
      max_phases: phase limit (default ``50 + 8 d``); reached: :data:`NOT_CONVERGED`.
      max_anisotropy: above this ``sqrt(cond(Sigma))`` after rounding: :data:`NOT_ROUND`. The
        default 3 reflects the closed-form checks (see "High dimension" in the module doc): round
        bodies (d <= 16 at the default sizes) read 1.1–2; a 32-D cube and simplex 2.1–2.8 (at ``30 d``
        rounding steps) with the estimate about one standard error low; 48-D and 64-D cubes about 2 with the estimate 1–2.5
        standard errors low; a 64-D simplex 3.5 (``NOT_ROUND``), its estimate 4 standard errors low.
      radius_tol: a Chebyshev radius at or below it is a polytope without interior (:data:`EMPTY`).
      solver: the Chebyshev LP's solver (:func:`partax.geometry.lp.solve`; ``"auto"`` is
        :func:`partax.geometry.lp.default_solver`).
      batch_size: polytopes walked at once (padded to a power of two).

    Returns:
      :class:`PolytopeVolumes`.

    Raises:
      ValueError: naming the bad argument (shapes, non-finite rows, bad sizes, a centre outside).
    """
    A = np.asarray(A, np.float64)
    b = np.asarray(b, np.float64)
    if A.ndim != 3 or A.shape[2] < 1:
        raise ValueError(f"A: expected [N, m, d] rows with d >= 1, got shape {A.shape}")
    N, m, d = A.shape
    if b.shape != (N, m):
        raise ValueError(f"b: expected shape {(N, m)} to match A {A.shape}, got {b.shape}")
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        raise ValueError("A, b: expected finite rows")
    chains = check_positive_int(chains, "chains")
    if chains < 2:
        raise ValueError(f"chains: expected at least 2 (their spread gives the errors), got {chains}")
    steps = check_positive_int(max(40, 4 * d) if steps is None else steps, "steps")
    burn_in = steps // 5 if burn_in is None else burn_in
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in < steps:
        raise ValueError(f"burn_in: expected an int in [0, steps={steps}), got {burn_in!r}")
    if not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) < 1.0:
        raise ValueError(f"ratio: expected a number in (0, 1), got {ratio!r}")
    rounding_rounds = check_positive_int(rounding_rounds, "rounding_rounds")
    rounding_steps = check_positive_int(default_rounding_steps(d) if rounding_steps is None else rounding_steps,
                                        "rounding_steps")
    max_phases = check_positive_int(50 + 8 * d if max_phases is None else max_phases, "max_phases")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not max_anisotropy > 1.0:
        raise ValueError(f"max_anisotropy: expected a number > 1, got {max_anisotropy!r}")
    if not isinstance(key, (int, np.integer)) and not isinstance(key, jax.Array):
        raise TypeError(f"key: expected a jax.random key or an int seed, got {type(key).__name__}")
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    rows = unit_rows(A, b)
    Au, bu = rows.A, rows.b
    status = np.full(N, OK, np.int32)
    status[rows.empty] = EMPTY
    if center is None:
        solver = lp.default_solver() if solver == "auto" else solver
        cheb = lp.chebyshev(Au, bu, solver=solver) if N else lp.ChebyshevResult(np.zeros((0, d)), np.zeros(0),
                                                                                 np.zeros(0, np.int32))
        centers, radii = np.asarray(cheb.centers), np.asarray(cheb.radii)
        failed = (np.asarray(cheb.status) != lp.OPTIMAL) & (status == OK)
        status[failed] = FAILED
        status[(status == OK) & ~(radii > radius_tol)] = EMPTY
    else:
        centers = np.asarray(center, np.float64)
        if centers.shape != (N, d) or not np.all(np.isfinite(centers)):
            raise ValueError(f"center: expected finite points of shape {(N, d)}, got {centers.shape}")
        depth = np.min(bu - np.einsum("nmk,nk->nm", Au, centers), axis=1, initial=np.inf)
        outside = (depth <= radius_tol) & (status == OK)
        if outside.any():
            raise ValueError(f"center: {int(outside.sum())} point(s) (first: polytope {int(np.flatnonzero(outside)[0])}) "
                             f"are not interior (distance to a facet <= radius_tol={radius_tol})")
    out = dict(logvol=np.full(N, np.nan), logse=np.full(N, np.nan), phases=np.zeros(N, np.int32),
               aniso=np.full(N, np.nan), r0=np.full(N, np.nan))
    todo = np.flatnonzero(status == OK)
    mp = -(-m // 16) * 16  # rows padded to a multiple of 16 (inert rows): fewer shapes compile
    cfg = dict(chains=chains, steps=steps, rounds=rounding_rounds, rounding_steps=rounding_steps)
    dyn = (int(burn_in), float(ratio), max_phases)  # traced: no recompilation when they change
    with jax.enable_x64(True):
        for start in range(0, todo.size, batch_size):
            idx = todo[start : start + batch_size]
            P = min(_pow2(idx.size), _pow2(batch_size))
            pad = np.concatenate([idx, np.repeat(idx[:1], P - idx.size)])
            Ab = np.zeros((P, mp, d))
            bb = np.ones((P, mp))
            Ab[:, :m] = Au[pad]
            bb[:, :m] = bu[pad] - np.einsum("nmk,nk->nm", Au[pad], centers[pad])  # centre at 0
            keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(pad, jnp.uint32))
            logvol, logse, phase, done, fail, aniso, r0 = jax.device_get(
                _kernel(keys, jnp.asarray(Ab), jnp.asarray(bb), jnp.int32(dyn[0]), jnp.float64(dyn[1]),
                        jnp.int32(dyn[2]), **cfg))
            k = idx.size
            out["logvol"][idx] = logvol[:k]
            out["logse"][idx] = logse[:k]
            out["phases"][idx] = phase[:k]
            out["aniso"][idx] = aniso[:k]
            out["r0"][idx] = r0[:k]
            st = np.where(fail[:k] | ~np.isfinite(logvol[:k]), FAILED,
                          np.where(~done[:k], NOT_CONVERGED,
                                   np.where(~(aniso[:k] <= max_anisotropy), NOT_ROUND, OK)))
            status[idx] = st
    ok = status == OK
    empty = status == EMPTY
    logvol = np.where(ok, out["logvol"], np.where(empty, -np.inf, np.nan))
    logse = np.where(ok, out["logse"], np.where(empty, 0.0, np.nan))
    vol = np.exp(logvol)
    return PolytopeVolumes(vol, vol * np.where(empty, 0.0, logse), logvol, logse, out["phases"], out["aniso"],
                           out["r0"], status)


def region_volumes(net, x, domain: Box, key, *, scope: str = "prefix", layer=None, **kwargs) -> PolytopeVolumes:
    """:func:`polytope_volumes` of the regions of exemplars ``x`` within a bounded box.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: exemplars ``[N, d_in]``, one per region (in the net's input space).
      domain: a bounded :class:`partax.Box` in the scope's space
        (:func:`partax.geometry.domains.check_bounded_box`: None is a ``ValueError``).
      key: ``jax.random`` key or int seed.
      scope, layer: the regions (see :func:`partax.geometry.halfspaces_batch`).
      **kwargs: passed to :func:`polytope_volumes`.

    Returns:
      :class:`PolytopeVolumes`, one row per exemplar.

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.geometry import Box
      >>> from partax.geometry.hit_and_run import region_volumes
      >>> net = partax.mlp(jax.random.key(0), [3, 6, 1], bias_std=0.3)
      >>> res = region_volumes(net, np.zeros((1, 3), np.float32), Box(-1, 1), 0, chains=32, steps=40)
      >>> res.status.tolist(), bool(0 < res.volume[0] <= 8.0)
      ([0], True)
    """
    net = check_net(net, stacked=False, caller="region_volumes()")
    check_bounded_box(domain, scope_space(net, x, scope, layer).dim)  # the volumes need a bounded box
    A, b = halfspaces_batch(net, x, scope=scope, layer=layer, domain=domain)
    return polytope_volumes(A, b, key, **kwargs)
