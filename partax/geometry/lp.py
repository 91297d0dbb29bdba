"""Batched linear programs ``min c·x  s.t.  A x <= b`` behind one interface.

Two backends:

* ``"highs"``: HiGHS (``highspy``), one LP per call, run over a thread pool
  (``Highs.run`` releases the GIL). The CPU reference.
* ``"ipm"``: a batched primal-dual interior-point method (Mehrotra predictor-corrector
  on the inequality form with slacks ``s = b - A x >= 0`` and multipliers ``y >= 0``),
  in JAX float64 under ``jit`` + ``vmap``. Each lane has its own ``done`` flag; the
  batch iterates until all but an eighth of its lanes are done (a converged lane is
  frozen: its state is no longer updated), and the slow tail then finishes in a smaller
  batch of its own. The normal equations ``A^T diag(y/s) A`` are solved by Cholesky (for
  ``n <= 32`` through an explicit inverse factor), so the cost per iteration is
  ``O(B (m n^2 + n^3))``: it suits many small LPs (``n`` up to a few hundred) and runs
  on accelerators.

Rows are scaled to unit norm before solving (an all-zero row ``0 <= b_i`` with
``b_i >= 0`` is dropped). Neither backend is meant for infeasible or unbounded LPs: the
geometry routines formulate every LP so that it is feasible and bounded (see
:func:`chebyshev_lp`).

Failures are never hidden: an LP that does not reach optimality (iteration limit,
numerical trouble, or an infeasible or unbounded LP) has ``status != 0`` **and** NaN in
its ``x`` and ``value`` (and, in :func:`chebyshev`, in its centre and radius), so no
plausible-looking number survives a failed solve.

HiGHS is kept quiet: its banner and log reach the terminal only with ``verbose=True``
(see :func:`solve`). The banner that ``highspy.Highs()`` writes from its constructor
(highspy >= 1.7 registers its callbacks there, which prints the banner before any option
can be set) is avoided by constructing highspy's compiled base class, whose options are
set before anything is logged.

Example:
    >>> import numpy as np
    >>> from partax.geometry import lp
    >>> A = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])  # x <= 1, y <= 1, x + y >= 0
    >>> res = lp.solve(np.array([[-1.0, -2.0]]), A, np.array([[1.0, 1.0, 0.0]]))
    >>> np.round(res.value, 6).tolist(), res.status.tolist()
    ([-3.0], [0])
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LPResult",
    "ChebyshevResult",
    "OPTIMAL",
    "MAX_ITER",
    "FAILED",
    "SOLVERS",
    "solve",
    "chebyshev_lp",
    "chebyshev",
    "default_solver",
    "bench_chebyshev",
]

OPTIMAL, MAX_ITER, FAILED = 0, 1, 2
SOLVERS = ("ipm", "highs")


class LPResult(NamedTuple):
    """Solutions of a batch of LPs.

    Attributes:
      x: ``float64[B, n]`` primal solutions; NaN rows where ``status != 0``.
      value: ``float64[B]`` objective values ``c·x``; NaN where ``status != 0``.
      status: ``int32[B]``: 0 optimal, 1 iteration limit, 2 failure (numerical trouble,
        infeasible or unbounded).
      iterations: ``int32[B]`` iterations used (simplex iterations for HiGHS).
    """

    x: np.ndarray
    value: np.ndarray
    status: np.ndarray
    iterations: np.ndarray


class ChebyshevResult(NamedTuple):
    """Chebyshev centres and radii of a batch of polytopes (unpacks as ``centers, radii, status``).

    Attributes:
      centers: ``float64[B, k]``; NaN rows where ``status != 0``.
      radii: ``float64[B]``; NaN where ``status != 0``.
      status: ``int32[B]``: the LP status (:data:`OPTIMAL`, :data:`MAX_ITER`, :data:`FAILED`).
    """

    centers: np.ndarray
    radii: np.ndarray
    status: np.ndarray


def default_solver() -> str:
    """``"highs"`` on CPU, ``"ipm"`` when JAX's default backend is an accelerator."""
    return "highs" if jax.default_backend() == "cpu" else "ipm"


# --- validation and scaling ------------------------------------------------------------------
def _check(c, A, b):
    c = np.asarray(c, np.float64)
    A = np.asarray(A, np.float64)
    b = np.asarray(b, np.float64)
    single = A.ndim == 2
    if single:
        c, A, b = c[None], A[None], b[None]
    if A.ndim != 3:
        raise ValueError(f"A: expected shape (B, m, n) or (m, n), got {A.shape}")
    B, m, n = A.shape
    if c.shape != (B, n):
        raise ValueError(f"c: expected shape {(B, n) if not single else (n,)}, got {c.shape if not single else c.shape[1:]}")
    if b.shape != (B, m):
        raise ValueError(f"b: expected shape {(B, m) if not single else (m,)}, got {b.shape if not single else b.shape[1:]}")
    for name, v in (("c", c), ("A", A), ("b", b)):
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: expected finite values (found NaN or inf)")
    return c, A, b, single


def _scale_rows(A, b):
    """Unit-norm rows; all-zero rows become ``0 <= 1`` (or stay ``0 <= b < 0``: infeasible)."""
    nrm = np.linalg.norm(A, axis=-1)
    zero = nrm <= 1e-300
    safe = np.where(zero, 1.0, nrm)
    A = A / safe[..., None]
    b = np.where(zero & (b >= 0), 1.0, b / safe)
    return A, b


# --- interior point ---------------------------------------------------------------------------
def _max_step(v, dv):
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio))


_SMALL_N = 32  # normal matrices up to this size are solved through an explicit L^-1


def _ipm_lane(c, A, b, tol, max_iter):
    """The IPM of one LP as ``(init(x0) -> state, body(state) -> state, finish(state))``."""
    m, n = A.shape
    bn = 1.0 + jnp.linalg.norm(b)
    cn = 1.0 + jnp.linalg.norm(c)
    eye = jnp.eye(n, dtype=A.dtype)
    hi = jax.lax.Precision.HIGHEST

    def residuals(x, s, y):
        """Primal and dual residuals and the merit: the largest of the relative primal
        residual, dual residual and duality gap."""
        rp = jnp.dot(A, x, precision=hi) + s - b
        rd = jnp.dot(y, A, precision=hi) + c
        gap = s @ y / (1.0 + jnp.abs(c @ x))
        return rp, rd, jnp.maximum(jnp.maximum(jnp.linalg.norm(rp) / bn, jnp.linalg.norm(rd) / cn), gap)

    def factor(M):
        """Cholesky factor of the (slightly regularised) normal matrix. For small ``n`` its
        inverse ``L^-1`` instead: one factorisation and one triangular inversion per
        iteration (two LAPACK calls per lane instead of one per triangular solve), after
        which every solve is two fused matrix-vector products."""
        L = jnp.linalg.cholesky(M + (1e-13 * jnp.max(jnp.diag(M)) + 1e-300) * eye)
        if n <= _SMALL_N:
            return jax.scipy.linalg.solve_triangular(L, eye, lower=True)
        return L

    def solve(L, r):
        if n <= _SMALL_N:
            return jnp.dot(jnp.dot(L, r, precision=hi), L, precision=hi)
        return jax.scipy.linalg.cho_solve((L, True), r)

    def newton(chol, M, s, y, rp, rd, rc, refine):
        rhs = -rd - jnp.dot((-rc + y * rp) / s, A, precision=hi)
        dx = solve(chol, rhs)
        if refine:  # one step of iterative refinement against the unregularised normal matrix
            dx = dx + solve(chol, rhs - jnp.dot(M, dx, precision=hi))
        ds = -rp - jnp.dot(A, dx, precision=hi)
        dy = (-rc - y * ds) / s
        return dx, ds, dy

    def body(state):
        x, s, y, rp, rd, k, done, best, best_x, best_k = state
        mu = s @ y / m
        M = jnp.dot(A.T * (y / s), A, precision=hi)
        chol = factor(M)
        # predictor (affine-scaling) direction: only its step lengths and second-order term are used
        dx, ds, dy = newton(chol, M, s, y, rp, rd, s * y, False)
        ap = _max_step(s, ds)
        ad = _max_step(y, dy)
        mu_aff = (s + ap * ds) @ (y + ad * dy) / m
        sigma = jnp.clip((mu_aff / mu) ** 3, 0.0, 1.0)
        dx, ds, dy = newton(chol, M, s, y, rp, rd, s * y + ds * dy - sigma * mu, True)
        ap = jnp.minimum(1.0, 0.99 * _max_step(s, ds))
        ad = jnp.minimum(1.0, 0.99 * _max_step(y, dy))
        xn, sn, yn = x + ap * dx, s + ap * ds, y + ad * dy
        bad = ~(jnp.all(jnp.isfinite(xn)) & jnp.all(jnp.isfinite(yn)) & jnp.all(jnp.isfinite(sn)))
        bad = bad | jnp.any(sn <= 0) | jnp.any(yn <= 0)
        x = jnp.where(bad, x, xn)
        s = jnp.where(bad, s, sn)
        y = jnp.where(bad, y, yn)
        k = k + 1
        rpn, rdn, phi = residuals(x, s, y)
        rp = jnp.where(bad, rp, rpn)
        rd = jnp.where(bad, rd, rdn)
        better = (phi < 0.5 * best) & ~bad
        best_x = jnp.where(better | (phi < best) & ~bad, x, best_x)
        best = jnp.where(~bad, jnp.minimum(best, phi), best)
        best_k = jnp.where(better, k, best_k)
        stalled = (k - best_k >= 15) | ((k - best_k >= 3) & (best <= 100 * tol))
        done = bad | (best <= tol) | (k >= max_iter) | stalled
        return x, s, y, rp, rd, k, done, best, best_x, best_k

    def init(x):
        s = jnp.maximum(b - jnp.dot(A, x, precision=hi), 1.0)
        y = jnp.ones_like(b)
        rp, rd, phi = residuals(x, s, y)
        return (x, s, y, rp, rd, jnp.int32(0), phi <= tol, phi, x, jnp.int32(0))

    def finish(state):
        k, best, x = state[5], state[7], state[8]
        # Stagnation near the optimum (ill-conditioned normal equations) is accepted within 100 tol.
        status = jnp.where(best <= 100 * tol, OPTIMAL, jnp.where(k >= max_iter, MAX_ITER, FAILED))
        return x, status.astype(jnp.int32), k

    return init, body, finish


_DONE = 6  # index of the per-lane ``done`` flag in the state


@jax.jit
def _ipm_init(c, A, b, x0, tol):
    return jax.vmap(lambda c, A, b, x0: _ipm_lane(c, A, b, tol, 1)[0](x0))(c, A, b, x0)


@functools.partial(jax.jit, static_argnames=("max_iter", "min_active"))
def _ipm_run(c, A, b, state, tol, max_iter, min_active):
    """Iterates every lane that is not done until at most ``min_active`` lanes are left.

    A lane that is done is frozen (its state is no longer updated), so a lane's result does
    not depend on the batch it runs in."""
    step = jax.vmap(lambda c, A, b, st: _ipm_lane(c, A, b, tol, max_iter)[1](st))

    def body(st):
        new = step(c, A, b, st)
        done = st[_DONE]
        return jax.tree.map(lambda o, v: jnp.where(done.reshape(done.shape + (1,) * (o.ndim - 1)), o, v), st, new)

    return jax.lax.while_loop(lambda st: jnp.sum(~st[_DONE]) > min_active, body, state)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _ipm_finish(c, A, b, state, tol, max_iter):
    return jax.vmap(lambda c, A, b, st: _ipm_lane(c, A, b, tol, max_iter)[2](st))(c, A, b, state)


def _pow2(k):
    return max(8, 1 << (k - 1).bit_length())


def _solve_ipm(c, A, b, x0, tol, max_iter):
    cn = np.linalg.norm(c, axis=-1, keepdims=True)
    cs = c / np.where(cn > 0, cn, 1.0)
    B = c.shape[0]
    P = _pow2(B)  # pad the batch to a power of two: fewer compilations
    if P != B:
        pad = lambda v: np.concatenate([v, np.repeat(v[:1], P - B, axis=0)])
        cs, A, b, x0 = pad(cs), pad(A), pad(b), pad(x0)
    m = A.shape[1]
    mp = -(-m // 8) * 8  # and the rows to a multiple of 8 with inert rows 0·x <= 1
    if mp != m:
        A = np.concatenate([A, np.zeros((P, mp - m, A.shape[2]))], axis=1)
        b = np.concatenate([b, np.ones((P, mp - m))], axis=1)
    with jax.enable_x64(True):
        cs, A, b, tol = jnp.asarray(cs), jnp.asarray(A), jnp.asarray(b), jnp.float64(tol)
        state = _ipm_init(cs, A, b, jnp.asarray(x0), tol)
        # The whole batch iterates until all but an eighth of the lanes are done; the slow
        # tail then continues in a batch of its own (a power of two) instead of dragging
        # the finished lanes along (under vmap every lane pays for every iteration).
        tail = P // 8 if P >= 64 else 0
        state = _ipm_run(cs, A, b, state, tol, max_iter, tail)
        if tail:
            active = np.flatnonzero(~np.asarray(state[_DONE]))
            if active.size:
                idx = np.concatenate([active, np.repeat(active[:1], _pow2(active.size) - active.size)])
                sub = jax.tree.map(lambda v: v[idx], state)
                sub = _ipm_run(cs[idx], A[idx], b[idx], sub, tol, max_iter, 0)
                keep = jnp.asarray(active)
                state = jax.tree.map(lambda v, w: v.at[keep].set(w[: active.size]), state, sub)
        x, status, k = _ipm_finish(cs, A, b, state, tol, max_iter)
        # owned NumPy arrays (not read-only views of JAX buffers)
        x = np.array(x[:B], np.float64)
        status = np.array(status[:B], np.int32)
        k = np.array(k[:B], np.int32)
    return x, status, k


# --- HiGHS ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _highs_class():
    """The class to instantiate for a quiet HiGHS.

    From highspy 1.7 on, ``highspy.Highs`` is a Python subclass of the compiled solver whose
    constructor registers callbacks, and that registration prints HiGHS's banner to the
    process's stdout (once per process, at C level) before any option can be set. Its
    compiled base class takes the same calls this module makes (``setOptionValue``,
    ``passModel``, ``run``, ``getSolution``, ...) and logs nothing until ``run``, by which
    time ``output_flag`` is set. Older highspy versions expose the compiled class directly.
    """
    import highspy

    for cls in highspy.Highs.__mro__:
        if cls.__module__.startswith("highspy") and cls.__name__ == "_Highs":
            return cls
    return highspy.Highs


def _new_highs(verbose: bool):
    """A HiGHS instance whose banner and log are on only if ``verbose``."""
    h = _highs_class()()
    h.setOptionValue("output_flag", bool(verbose))
    h.setOptionValue("log_to_console", bool(verbose))
    return h


def _highs_one(c, A, b, tol, verbose=False):
    import highspy

    m, n = A.shape
    h = _new_highs(verbose)
    h.setOptionValue("threads", 1)
    if tol is not None:
        h.setOptionValue("primal_feasibility_tolerance", max(float(tol), 1e-10))
        h.setOptionValue("dual_feasibility_tolerance", max(float(tol), 1e-10))
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = m
    lp.col_cost_ = np.ascontiguousarray(c)
    lp.col_lower_ = np.full(n, -highspy.kHighsInf)
    lp.col_upper_ = np.full(n, highspy.kHighsInf)
    lp.row_lower_ = np.full(m, -highspy.kHighsInf)
    lp.row_upper_ = np.ascontiguousarray(b)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, m * n + 1, m, dtype=np.int32)
    lp.a_matrix_.index_ = np.tile(np.arange(m, dtype=np.int32), n)
    lp.a_matrix_.value_ = np.ascontiguousarray(A.T).ravel()
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = m
    passed = h.passModel(lp)
    ran = h.run()
    ms = h.getModelStatus()
    x = np.asarray(h.getSolution().col_value, np.float64)
    info = h.getInfo()
    if passed == highspy.HighsStatus.kError or ran == highspy.HighsStatus.kError:
        status = FAILED
    elif ms == highspy.HighsModelStatus.kOptimal:
        status = OPTIMAL
    elif ms == highspy.HighsModelStatus.kIterationLimit:
        status = MAX_ITER
    else:
        status = FAILED
    if x.shape != (n,) or not np.all(np.isfinite(x)):
        x = np.full(n, np.nan)
        status = FAILED
    return x, status, int(info.simplex_iteration_count)


def _solve_highs(c, A, b, tol, threads, verbose=False):
    B, m, n = A.shape
    threads = threads or os.cpu_count() or 1
    xs = np.empty((B, n))
    status = np.empty(B, np.int32)
    its = np.empty(B, np.int32)
    if threads == 1 or B == 1:
        results = [_highs_one(c[i], A[i], b[i], tol, verbose) for i in range(B)]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(lambda i: _highs_one(c[i], A[i], b[i], tol, verbose), range(B)))
    for i, (x, st, it) in enumerate(results):
        xs[i], status[i], its[i] = x, st, it
    return xs, status, its


# --- the interface ------------------------------------------------------------------------------
def solve(c, A, b, *, solver: str = "ipm", tol: float = 1e-8, max_iter: int = 100, x0=None,
          threads: int | None = None, verbose: bool = False) -> LPResult:
    """Solves ``min c·x  s.t.  A x <= b`` (``x`` free) for a batch of LPs.

    Args:
      c: ``[B, n]`` objectives (or ``[n]`` for one LP).
      A: ``[B, m, n]`` constraint matrices (or ``[m, n]``).
      b: ``[B, m]`` right-hand sides (or ``[m]``).
      solver: ``"ipm"`` (JAX interior point), ``"highs"`` (HiGHS thread pool) or
        ``"auto"`` (:func:`default_solver`).
      tol: relative tolerance: the IPM stops when the relative primal and dual residuals
        and the relative duality gap all fall below it (status 0), or when that measure
        stalls (no halving in 3 iterations once within ``100 tol``: status 0; in 15
        iterations otherwise: status 2);
        HiGHS uses it for its feasibility tolerances.
      max_iter: IPM iteration limit.
      x0: optional ``[B, n]`` IPM starting point (a point near the feasible set helps).
      threads: HiGHS worker threads (default: all cores).
      verbose: HiGHS backend only: let HiGHS write its banner and solver log to the
        process's stdout (one log per LP; off by default, when HiGHS writes nothing).

    Returns:
      :class:`LPResult` (batched even for one LP: ``x[1, n]`` ...). An LP that did not reach
      optimality has ``status != 0`` and NaN in its row of ``x`` and in ``value``.

    Example:
      >>> import numpy as np
      >>> A = np.array([[1.0], [-1.0]]); b = np.array([2.0, 1.0])   # -1 <= x <= 2
      >>> solve(np.array([1.0]), A, b, solver="highs").x.round(6).tolist()
      [[-1.0]]
      >>> bad = solve(np.array([1.0]), A, np.array([-3.0, 1.0]), solver="highs")  # x <= -3, x >= -1
      >>> bad.status.tolist(), bad.value.tolist()
      ([2], [nan])
    """
    if solver == "auto":
        solver = default_solver()
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {SOLVERS + ('auto',)}, got {solver!r}")
    if isinstance(tol, bool) or not (isinstance(tol, (float, int)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol: expected a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter: expected an int >= 1, got {max_iter!r}")
    if not isinstance(verbose, (bool, np.bool_)):
        raise TypeError(f"verbose: expected a bool, got {type(verbose).__name__}")
    c, A, b, _ = _check(c, A, b)
    B, m, n = A.shape
    if B == 0:
        e = np.zeros(0, np.int32)
        return LPResult(np.zeros((0, n)), np.zeros(0), e, e)
    As, bs = _scale_rows(A, b)
    if solver == "ipm":
        if x0 is None:
            x0 = np.zeros((B, n))
        x0 = np.asarray(x0, np.float64)
        if x0.shape != (B, n):
            raise ValueError(f"x0: expected shape {(B, n)}, got {x0.shape}")
        x, status, its = _solve_ipm(c, As, bs, x0, float(tol), int(max_iter))
    else:
        x, status, its = _solve_highs(c, As, bs, tol, threads, bool(verbose))
    return _result(c, x, status, its)


def _result(c, x, status, its) -> LPResult:
    """The :class:`LPResult`, with NaN rows for every LP that did not reach optimality."""
    x = np.array(x, np.float64)
    status = np.array(status, np.int32)
    status[(status == OPTIMAL) & ~np.all(np.isfinite(x), axis=1)] = FAILED
    x[status != OPTIMAL] = np.nan
    return LPResult(x, np.einsum("bn,bn->b", c, x), status, np.asarray(its, np.int32))


# --- Chebyshev centres ------------------------------------------------------------------------------
def chebyshev_lp(A, b, *, center=None, reach=None, radius_cap: float = 1e3):
    """The Chebyshev-centre LP of polytopes ``{z : A z <= b}``, made feasible and bounded.

    Variables ``(z, r)``; maximise ``r`` (i.e. minimise ``-r``) subject to
    ``a_i·z + ||a_i|| r <= b_i`` for every row, ``r <= radius_cap`` (so an unbounded region
    reports ``radius_cap``), ``-r <= radius_cap`` (a lower bound that keeps the LP
    feasible even for an empty or slightly violated polytope: the optimum then has
    ``r < 0``), and, when ``reach`` is given, ``|z_j - center_j| <= reach`` (a box on
    the *centre* only, used when the region may be unbounded, ``domain=None``).

    Args:
      A: ``[B, m, k]``; b: ``[B, m]``.
      center: ``[B, k]`` the box centre for ``reach`` (e.g. the exemplars).
      reach: half-width of the box on the centre, or None for no box.
      radius_cap: the cap on ``r``.

    Returns:
      ``(c, A', b')`` for :func:`solve`, in ``k + 1`` variables (the last one is ``r``).
    """
    A = np.asarray(A, np.float64)
    b = np.asarray(b, np.float64)
    B, m, k = A.shape
    nrm = np.linalg.norm(A, axis=-1)
    rows = [np.concatenate([A, nrm[..., None]], axis=-1)]
    rhs = [b]
    cap = np.zeros((B, 2, k + 1))
    cap[:, 0, k] = 1.0
    cap[:, 1, k] = -1.0
    rows.append(cap)
    rhs.append(np.full((B, 2), float(radius_cap)))
    if reach is not None:
        center = np.asarray(center, np.float64)
        eye = np.eye(k)
        box = np.concatenate([eye, -eye])
        box = np.concatenate([box, np.zeros((2 * k, 1))], axis=1)
        rows.append(np.broadcast_to(box, (B, 2 * k, k + 1)))
        rhs.append(np.concatenate([center + reach, -(center - reach)], axis=1))
    c = np.zeros((B, k + 1))
    c[:, k] = -1.0
    return c, np.concatenate(rows, axis=1), np.concatenate(rhs, axis=1)


def chebyshev(A, b, *, center=None, reach=None, radius_cap: float = 1e3, solver: str = "ipm",
              tol: float = 1e-8, x0=None, max_iter: int = 100, verbose: bool = False) -> ChebyshevResult:
    """Chebyshev centres and radii of polytopes ``{z : A z <= b}`` (see :func:`chebyshev_lp`).

    Args:
      A: ``[B, m, k]``; b: ``[B, m]``; center, reach, radius_cap: see :func:`chebyshev_lp`.
      solver, tol, max_iter, verbose: see :func:`solve`.
      x0: optional ``[B, k]`` starting centres for the IPM (e.g. the exemplars).

    Returns:
      :class:`ChebyshevResult` ``(centers: float64[B, k], radii: float64[B], status: int32[B])``:
      a polytope whose LP did not reach optimality has ``status != 0`` and a NaN centre and
      radius (never a radius from a failed solve).

    Example:
      >>> import numpy as np
      >>> A = np.array([[[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]])  # the box |z|_inf <= 1
      >>> res = chebyshev(A, np.ones((1, 4)), solver="highs")
      >>> np.round(res.radii, 6).tolist(), res.status.tolist()
      ([1.0], [0])
      >>> chebyshev(A, np.ones((1, 4)), solver="ipm", max_iter=1).radii.tolist()  # stopped early
      [nan]
    """
    c, AA, bb = chebyshev_lp(A, b, center=center, reach=reach, radius_cap=radius_cap)
    start = None
    if x0 is not None and (solver == "ipm" or (solver == "auto" and default_solver() == "ipm")):
        start = np.concatenate([np.asarray(x0, np.float64), np.zeros((c.shape[0], 1))], axis=1)
    res = solve(c, AA, bb, solver=solver, tol=tol, x0=start, max_iter=max_iter, verbose=verbose)
    return ChebyshevResult(res.x[:, :-1], res.x[:, -1], res.status)


# --- benchmark --------------------------------------------------------------------------------------
def random_polytopes(num: int, d: int, m: int, seed: int = 0):
    """``num`` random bounded polytopes in R^d: ``m`` halfspaces tangent to spheres of radius
    in ``[0.5, 1.5]`` around the origin (random unit normals), plus the box ``[-2, 2]^d``.

    Returns:
      ``(A: float64[num, m + 2d, d], b: float64[num, m + 2d])``; the origin is interior.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(num, m, d))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    r = rng.uniform(0.5, 1.5, size=(num, m))
    eye = np.eye(d)
    A = np.concatenate([a, np.broadcast_to(np.concatenate([eye, -eye]), (num, 2 * d, d))], axis=1)
    b = np.concatenate([r, np.full((num, 2 * d), 2.0)], axis=1)
    return A, b


def bench_chebyshev(num: int = 1000, d: int = 10, m: int = 60, seed: int = 0, reps: int = 3,
                    threads: int | None = None) -> dict:
    """Times the Chebyshev LPs of ``num`` random polytopes with both backends.

    The polytopes are :func:`random_polytopes` (``m`` random halfspaces plus a box, so
    ``m + 2d + 2`` rows and ``d + 1`` variables per LP). Each backend is warmed up once
    (JIT compilation excluded), then timed ``reps`` times; the best time counts.

    Returns:
      ``dict(ipm_ms_per_lp, highs_ms_per_lp, speedup, max_radius_diff, num, d, m,
      ipm_failures, highs_failures, backend)``.

    Example:
      >>> r = bench_chebyshev(num=20, d=3, m=10, reps=1)
      >>> r["max_radius_diff"] < 1e-6
      True
    """
    A, b = random_polytopes(num, d, m, seed)
    out = {}
    radii = {}
    fails = {}
    for solver in ("ipm", "highs"):
        chebyshev(A[:2], b[:2], solver=solver)  # warm-up (compilation for the IPM)
        if solver == "ipm":  # compile for the full batch shape too
            chebyshev(A, b, solver=solver)
        best = np.inf
        for _ in range(max(1, reps)):
            t0 = time.perf_counter()
            _, r, st = chebyshev(A, b, solver=solver) if solver == "ipm" else _cheb_highs(A, b, threads)
            best = min(best, time.perf_counter() - t0)
        out[f"{solver}_ms_per_lp"] = 1e3 * best / num
        radii[solver] = r
        fails[solver] = int(np.sum(st != OPTIMAL))
    out["speedup"] = out["highs_ms_per_lp"] / out["ipm_ms_per_lp"]
    out["max_radius_diff"] = float(np.max(np.abs(radii["ipm"] - radii["highs"])))
    out.update(num=num, d=d, m=m, ipm_failures=fails["ipm"], highs_failures=fails["highs"],
               backend=jax.default_backend())
    return out


def _cheb_highs(A, b, threads):
    c, AA, bb = chebyshev_lp(A, b)
    AA, bb = _scale_rows(AA, bb)
    x, st, its = _solve_highs(c, AA, bb, 1e-8, threads)
    res = _result(c, x, st, its)
    return res.x[:, :-1], res.x[:, -1], res.status
