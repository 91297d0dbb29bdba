"""Batched linear programs ``min c·x  s.t.  A x <= b`` behind one interface: :func:`solve`.

Three backends, one semantics:

* ``"highs"``: HiGHS (``highspy``), one LP per call, run over a thread pool
  (``Highs.run`` releases the GIL). The CPU reference.
* ``"ipm"``: a batched primal-dual interior-point method (Mehrotra predictor-corrector
  on the inequality form with slacks ``s = b - A x >= 0`` and multipliers ``y >= 0``),
  in JAX float64 under ``jit`` + ``vmap``. Each lane has its own ``done`` flag; the
  batch iterates until all but an eighth of its lanes are done (a converged lane is
  frozen: its state is no longer updated), and the slow tail then finishes in a smaller
  batch of its own (padded to one of two fixed sizes, so few shapes compile). The normal
  equations ``A^T diag(y/s) A`` are solved by Cholesky (for ``n <= 32`` through an explicit
  inverse factor), so the cost per iteration is ``O(B (m n^2 + n^3))``: it suits many small
  LPs (``n`` up to a few hundred) and runs on accelerators.
* ``"numpy"``: the same interior point in batched NumPy float64 (:mod:`partax.geometry.ipm`):
  CPU only, **no compilation** (the first call costs what the next ones cost); converged
  lanes leave the batch. For many small LPs it is as fast per LP as ``"ipm"`` on a CPU.

Rows are normalised by :func:`partax.geometry.hrep.unit_rows` before solving, the one rule
of the package: a row with a numerically zero normal (below ``1e-12`` of its LP's largest) is
*dead*; ``0·x <= b`` with ``b >= 0`` is dropped (made the inert ``0·x <= 1``), with ``b < 0``
the LP is infeasible (status :data:`FAILED`, whatever the backend). No backend is meant for
infeasible or unbounded LPs: the geometry routines formulate every LP so that it is feasible
and bounded (see :func:`chebyshev_lp`).

Failures are never hidden: an LP that does not reach optimality (iteration limit,
numerical trouble, or an infeasible or unbounded LP) has ``status != 0`` **and** NaN in
its ``x`` and ``value`` (and, in :func:`chebyshev`, in its centre and radius), so no
plausible-looking number survives a failed solve; this holds for every backend.

HiGHS is kept quiet: its banner and log reach the terminal only with ``verbose=True``
(see :func:`solve`); instances come from :func:`partax.highs.quiet_highs`, which also keeps
them on HiGHS's one process-wide thread scheduler (an LP that asked for another thread count
than an earlier solve would fail).

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
import os
from typing import NamedTuple

import jax
import numpy as np

from partax.geometry.hrep import unit_rows
from partax.geometry.ipm import FAILED, MAX_ITER, OPTIMAL, solve_jax, solve_numpy
from partax.highs import quiet_highs
from partax.records import record_repr

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
]

SOLVERS = ("ipm", "highs", "numpy")


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

    def __repr__(self) -> str:
        return record_repr("LPResult", lps=int(self.status.shape[0]), vars=int(self.x.shape[-1]),
                           optimal=int(np.sum(self.status == 0)), failed=int(np.sum(self.status != 0)),
                           max_iterations=int(self.iterations.max(initial=0)))


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

    def __repr__(self) -> str:
        ok = self.status == 0
        return record_repr("ChebyshevResult", polytopes=int(self.status.shape[0]), dim=int(self.centers.shape[-1]),
                           failed=int(np.sum(~ok)), min_radius=float(self.radii[ok].min(initial=np.inf)),
                           max_radius=float(self.radii[ok].max(initial=-np.inf)))


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



def _highs_one(c, A, b, tol, verbose=False):
    import highspy

    m, n = A.shape
    h = quiet_highs(verbose=verbose)  # no threads option: see partax.highs
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
      solver: ``"ipm"`` (JAX interior point), ``"numpy"`` (NumPy interior point: CPU, no
        compilation), ``"highs"`` (HiGHS thread pool) or ``"auto"`` (:func:`default_solver`).
      tol: relative tolerance: the interior points stop when the relative primal and dual residuals
        and the relative duality gap all fall below it (status 0), or when that measure
        stalls (no halving in 3 iterations once within ``100 tol``: status 0; in 15
        iterations otherwise: status 2);
        HiGHS uses it for its feasibility tolerances.
      max_iter: interior-point iteration limit.
      x0: optional ``[B, n]`` interior-point starting point (a point near the feasible set helps).
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
    rows = unit_rows(A, b)
    # an LP with a dead row that never holds is infeasible: it is reported FAILED below, and
    # solved with that row made inert so that it costs an interior point no extra iterations
    As, bs = rows.A, np.where(rows.empty[:, None] & ~rows.live, 1.0, rows.b)
    if solver in ("ipm", "numpy"):
        if x0 is None:
            x0 = np.zeros((B, n))
        x0 = np.asarray(x0, np.float64)
        if x0.shape != (B, n):
            raise ValueError(f"x0: expected shape {(B, n)}, got {x0.shape}")
        cn = np.linalg.norm(c, axis=-1, keepdims=True)
        cs = c / np.where(cn > 0, cn, 1.0)
        ipm = solve_jax if solver == "ipm" else solve_numpy
        x, status, its = ipm(cs, As, bs, x0, float(tol), int(max_iter))
    else:
        x, status, its = _solve_highs(c, As, bs, tol, threads, bool(verbose))
    status = np.where(rows.empty, FAILED, status)
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
      x0: optional ``[B, k]`` starting centres for an interior point (e.g. the exemplars).

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
    if x0 is not None and (solver in ("ipm", "numpy") or (solver == "auto" and default_solver() == "ipm")):
        start = np.concatenate([np.asarray(x0, np.float64), np.zeros((c.shape[0], 1))], axis=1)
    res = solve(c, AA, bb, solver=solver, tol=tol, x0=start, max_iter=max_iter, verbose=verbose)
    return ChebyshevResult(res.x[:, :-1], res.x[:, -1], res.status)


# --- benchmark --------------------------------------------------------------------------------------
