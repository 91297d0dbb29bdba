"""Tests of partax.geometry.lp against scipy.optimize.linprog (independent HiGHS formulation)."""

import numpy as np
import pytest
from scipy.optimize import linprog

from partax.bench.lp import bench_chebyshev, random_polytopes
from partax.geometry import lp


def _linprog_value(c, A, b):
    res = linprog(c, A_ub=A, b_ub=b, bounds=[(None, None)] * len(c), method="highs")
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("solver", ["ipm", "highs"])
@pytest.mark.parametrize("n,m", [(1, 2), (2, 5), (5, 20), pytest.param(10, 40, marks=pytest.mark.slow)])
def test_solve_matches_linprog(solver, n, m):
    rng = np.random.default_rng(n * 100 + m)
    A, b = random_polytopes(12, n, m, seed=n + m)
    shift = rng.normal(size=(12, n)) * 0.3
    b = b + np.einsum("bmn,bn->bm", A, shift)
    scale = rng.uniform(0.2, 5.0, size=(12, A.shape[1]))
    A, b = A * scale[..., None], b * scale
    c = rng.normal(size=(12, n))
    res = lp.solve(c, A, b, solver=solver)
    assert res.x.shape == (12, n) and res.value.shape == (12,)
    assert np.all(res.status == lp.OPTIMAL)
    ref = np.array([_linprog_value(c[i], A[i], b[i]) for i in range(12)])
    np.testing.assert_allclose(res.value, ref, atol=1e-6 * (1 + np.abs(ref)).max())
    # primal feasibility
    assert np.all(np.einsum("bmn,bn->bm", A, res.x) <= b + 1e-6 * np.abs(b).max())


def _linprog_chebyshev(A, b):
    """Independent Chebyshev formulation: variables (x, r), r >= 0, bounds via linprog."""
    k = A.shape[1]
    nrm = np.linalg.norm(A, axis=1)
    c = np.zeros(k + 1)
    c[-1] = -1
    res = linprog(c, A_ub=np.c_[A, nrm], b_ub=b, bounds=[(None, None)] * k + [(0, None)], method="highs")
    assert res.status == 0
    return res.x[-1]


@pytest.mark.parametrize("d,m", [(2, 4), (3, 10), (6, 20), (10, 60)])
def test_chebyshev_ipm_vs_highs_vs_linprog(d, m):
    A, b = random_polytopes(16, d, m, seed=d)
    _, r_ipm, s_ipm = lp.chebyshev(A, b, solver="ipm")
    _, r_hi, s_hi = lp.chebyshev(A, b, solver="highs")
    assert np.all(s_ipm == 0) and np.all(s_hi == 0)
    ref = np.array([_linprog_chebyshev(A[i], b[i]) for i in range(16)])
    np.testing.assert_allclose(r_ipm, r_hi, atol=1e-6)
    np.testing.assert_allclose(r_ipm, ref, atol=1e-6)


def test_chebyshev_centre_ball_inside():
    A, b = random_polytopes(8, 3, 12, seed=5)
    c, r, _ = lp.chebyshev(A, b, solver="ipm")
    nrm = np.linalg.norm(A, axis=-1)
    slack = b - np.einsum("bmn,bn->bm", A, c)
    assert np.all(slack / nrm >= r[:, None] - 1e-7)
    # the ball touches at least one row (it is maximal)
    assert np.all(np.min(slack / nrm, axis=1) <= r + 1e-7)


def test_chebyshev_reach_and_cap_keep_unbounded_lp_bounded():
    # a half-plane x <= 0 in R^2: unbounded inradius, capped
    A = np.array([[[1.0, 0.0]]])
    b = np.array([[0.0]])
    for solver in ("ipm", "highs"):
        _, r, st = lp.chebyshev(A, b, center=np.zeros((1, 2)), reach=10.0, radius_cap=50.0, solver=solver)
        assert st[0] == 0
        assert r[0] == pytest.approx(10.0, abs=1e-6)  # centre at x=-10 on the reach box
        _, r, st = lp.chebyshev(A, b, center=np.zeros((1, 2)), reach=1e3, radius_cap=50.0, solver=solver)
        assert r[0] == pytest.approx(50.0, abs=1e-5)


def test_empty_polytope_gives_negative_radius():
    # x <= -1 and x >= 1: empty; the lower bound on r keeps the LP feasible
    A = np.array([[[1.0], [-1.0]]])
    b = np.array([[-1.0, -1.0]])
    for solver in ("ipm", "highs"):
        _, r, st = lp.chebyshev(A, b, solver=solver)
        assert st[0] == 0 and r[0] == pytest.approx(-1.0, abs=1e-6)


def test_frozen_lanes_do_not_change_results():
    A, b = random_polytopes(32, 5, 20, seed=3)
    c, AA, bb = lp.chebyshev_lp(A, b)
    # make a few lanes much harder (thin polytopes) so the batch runs longer than the easy lanes
    bb[:4, :20] *= 1e-3
    full = lp.solve(c, AA, bb, solver="ipm")
    single = [lp.solve(c[i : i + 1], AA[i : i + 1], bb[i : i + 1], solver="ipm") for i in (0, 10, 31)]
    for i, s in zip((0, 10, 31), single):
        np.testing.assert_allclose(full.x[i], s.x[0], atol=1e-9)
    assert full.iterations.min() < full.iterations.max()


def test_unbatched_input_and_validation():
    A = np.array([[1.0], [-1.0]])
    b = np.array([2.0, 1.0])
    res = lp.solve(np.array([1.0]), A, b, solver="ipm")
    assert res.x.shape == (1, 1) and res.x[0, 0] == pytest.approx(-1.0, abs=1e-7)
    with pytest.raises(ValueError, match="solver"):
        lp.solve(np.array([1.0]), A, b, solver="simplex")
    with pytest.raises(ValueError, match="c:"):
        lp.solve(np.array([1.0, 2.0]), A, b)
    with pytest.raises(ValueError, match="b:"):
        lp.solve(np.array([1.0]), A, np.array([1.0]))
    with pytest.raises(ValueError, match="A:"):
        lp.solve(np.ones((1, 1)), np.ones((1, 1, 1, 1)), np.ones((1, 1)))
    with pytest.raises(ValueError, match="finite"):
        lp.solve(np.array([np.nan]), A, b)
    empty = lp.solve(np.zeros((0, 2)), np.zeros((0, 3, 2)), np.zeros((0, 3)))
    assert empty.x.shape == (0, 2)


def test_bench_chebyshev_small():
    r = bench_chebyshev(num=40, d=4, m=12, reps=1)
    assert set(r) >= {"ipm_ms_per_lp", "highs_ms_per_lp", "speedup", "max_radius_diff"}
    assert r["max_radius_diff"] < 1e-6
    assert r["ipm_failures"] == 0 and r["highs_failures"] == 0


def test_slow_tail_lanes_match_single_solves_and_highs():
    # >= 64 lanes: the slow tail is finished in a batch of its own; results must not depend on it
    A, b = random_polytopes(100, 4, 12, seed=7)
    c, AA, bb = lp.chebyshev_lp(A, b)
    bb[:5, :12] *= 1e-4  # a few thin polytopes that need many more iterations
    full = lp.solve(c, AA, bb, solver="ipm")
    assert np.all(full.status == lp.OPTIMAL)
    assert full.iterations[:5].min() > np.median(full.iterations)
    ref = lp.solve(c, AA, bb, solver="highs")
    np.testing.assert_allclose(full.x[:, -1], ref.x[:, -1], atol=1e-6)
    for i in (0, 4, 50):
        one = lp.solve(c[i : i + 1], AA[i : i + 1], bb[i : i + 1], solver="ipm")
        np.testing.assert_allclose(full.x[i], one.x[0], atol=1e-9)



# --- the NumPy interior point, the one dead-row rule, and bounded compilations ----------------------
def _polytopes(num, d, m, seed):
    """Random bounded polytopes around the origin (test-local: tangent halfspaces plus a box)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(num, m, d))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    eye = np.eye(d)
    A = np.concatenate([a, np.broadcast_to(np.concatenate([eye, -eye]), (num, 2 * d, d))], axis=1)
    b = np.concatenate([rng.uniform(0.5, 1.5, size=(num, m)), np.full((num, 2 * d), 2.0)], axis=1)
    return A, b


@pytest.mark.parametrize("n,m", [(1, 2), (3, 10), (6, 30)])
def test_numpy_backend_matches_linprog(n, m):
    rng = np.random.default_rng(n + 7 * m)
    A, b = _polytopes(10, n, m, seed=n)
    scale = rng.uniform(0.2, 5.0, size=(10, A.shape[1]))
    A, b = A * scale[..., None], b * scale
    c = rng.normal(size=(10, n))
    res = lp.solve(c, A, b, solver="numpy", tol=1e-9)
    assert np.all(res.status == lp.OPTIMAL)
    ref = np.array([_linprog_value(c[i], A[i], b[i]) for i in range(10)])
    np.testing.assert_allclose(res.value, ref, atol=1e-7 * (1 + np.abs(ref)).max())
    cheb = lp.chebyshev(A, b, solver="numpy")
    ref_r = np.array([_linprog_chebyshev(A[i], b[i]) for i in range(10)])
    assert np.all(cheb.status == lp.OPTIMAL)
    np.testing.assert_allclose(cheb.radii, ref_r, atol=1e-6)


def test_numpy_backend_failure_semantics():
    A, b = _polytopes(6, 3, 8, seed=2)
    c = np.random.default_rng(2).normal(size=(6, 3))
    res = lp.solve(c, A, b, solver="numpy", max_iter=1)  # stopped early: status 1 and NaN, never a number
    assert np.all(res.status == lp.MAX_ITER)
    assert np.all(np.isnan(res.x)) and np.all(np.isnan(res.value))
    cheb = lp.chebyshev(A, b, solver="numpy", max_iter=1)
    assert np.all(cheb.status == lp.MAX_ITER) and np.all(np.isnan(cheb.radii)) and np.all(np.isnan(cheb.centers))


@pytest.mark.parametrize("solver", ["ipm", "numpy", "highs"])
def test_dead_rows_one_rule_for_every_backend(solver):
    # x <= 1, -x <= 1 in R^1 plus a dead row 0·x <= beta: beta >= 0 changes nothing, beta < 0 is infeasible
    A = np.array([[[1.0], [-1.0], [0.0]]] * 3)
    b = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 5.0], [1.0, 1.0, -1e-3]])
    res = lp.solve(np.ones((3, 1)), A, b, solver=solver)
    np.testing.assert_array_equal(res.status, [lp.OPTIMAL, lp.OPTIMAL, lp.FAILED])
    np.testing.assert_allclose(res.value[:2], [-1.0, -1.0], atol=1e-7)
    assert np.isnan(res.value[2]) and np.all(np.isnan(res.x[2]))


def test_unit_rows_rule():
    from partax.geometry.hrep import unit_rows

    A = np.array([[[3.0, 4.0], [0.0, 0.0], [1e-14, 0.0], [0.0, 0.0]]])
    b = np.array([[10.0, 0.0, 2.0, -1.0]])
    r = unit_rows(A, b)
    np.testing.assert_allclose(r.A[0, 0], [0.6, 0.8])
    assert r.b[0, 0] == 2.0 and r.live.tolist() == [[True, False, False, False]]
    assert r.b[0, 1:].tolist() == [1.0, 1.0, -1.0] and r.empty.tolist() == [True]
    assert np.all(r.A[0, 1:] == 0)
    # strict rows: a dead 0 < b needs b > 0; scale invariance of the dead threshold
    s = unit_rows(A[:, :2] * 1e-9, b[:, :2], strict=np.array([[False, True]]))
    assert s.live.tolist() == [[True, False]] and s.empty.tolist() == [True]
    np.testing.assert_allclose(s.A[0, 0], [0.6, 0.8])


@pytest.mark.slow  # kept out of the default run (its ten minutes)
def test_ipm_kernels_compile_a_bounded_number_of_shapes(monkeypatch):
    import chex
    import jax

    from partax.geometry import ipm

    chex.clear_trace_counter()
    guard = lambda f, n, **kw: jax.jit(chex.assert_max_traces(f.__wrapped__, n=n), **kw)
    monkeypatch.setattr(ipm, "_ipm_init", guard(ipm._ipm_init, 1))
    # one main shape and at most the two tail sizes of a padded batch of 512
    monkeypatch.setattr(ipm, "_ipm_run", guard(ipm._ipm_run, 3, static_argnames=("max_iter", "min_active")))
    monkeypatch.setattr(ipm, "_ipm_finish", guard(ipm._ipm_finish, 1, static_argnames=("max_iter",)))
    assert ipm.tail_sizes(512) == (8, 64)
    A, b = _polytopes(512, 3, 9, seed=4)
    c, AA, bb = lp.chebyshev_lp(A, b)
    try:
        for B, hard in [(512, 0), (300, 5), (400, 30), (257, 60), (500, 12)]:  # every B pads to 512
            bh = bb[:B].copy()
            bh[:hard, :9] *= 1e-4  # thin polytopes: a slow tail of varying size
            res = lp.solve(c[:B], AA[:B], bh, solver="ipm")
            assert np.all(res.status == lp.OPTIMAL)
            if hard:
                ref = lp.solve(c[:hard], AA[:hard], bh[:hard], solver="highs")
                np.testing.assert_allclose(res.x[:hard, -1], ref.x[:, -1], atol=1e-6)
        with pytest.raises(AssertionError, match="traced > 1"):  # the guard is live: a new batch bucket
            lp.solve(c[:100], AA[:100], bb[:100], solver="ipm")
    finally:
        chex.clear_trace_counter()
