"""Forced failures of the geometry: every failed LP, empty Monte Carlo estimate and mismatched
exemplar must come out as NaN + status or as an error, never as a plausible number; HiGHS
writes nothing to the terminal unless asked.

Oracles: scipy.optimize.linprog (its own HiGHS) for infeasible / unbounded LPs, closed forms
for the thin-strip region and the zero-hit bound, the unpatched run for the rows that did not
fail, and a NumPy float64 forward pass + the key function of tests/oracle.py for the codes.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest
from scipy.optimize import linprog

import partax
from partax.bench.lp import random_polytopes
from partax.geometry import Box, chebyshev, facets, halfspaces_batch, lp, neighbors, region_report, volumes
from partax.geometry.polytope import NO_HITS, FacetsResult, NeighborsResult, VolumeResult
from partax.geometry.report import RegionReport
from oracle import forward_preacts, range_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _net(widths, seed=0):
    return partax.mlp(jax.random.key(seed), widths, bias_std=0.3)


def _x(d, n, seed):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, size=(n, d)).astype(np.float32)


# --- lp.solve: NaN + status for LPs that do not reach optimality ----------------------------------
INFEASIBLE = (np.array([[1.0]]), np.array([[[1.0], [-1.0]]]), np.array([[-1.0, -1.0]]))  # x <= -1, x >= 1
UNBOUNDED = (np.array([[-1.0]]), np.array([[[-1.0], [-1.0]]]), np.array([[0.0, 5.0]]))  # min -x, x >= 0


@pytest.mark.parametrize("solver", ["ipm", "highs"])
@pytest.mark.parametrize("case,ref_status", [(INFEASIBLE, 2), (UNBOUNDED, 3)])
def test_infeasible_and_unbounded_lps_give_nan_and_status(solver, case, ref_status):
    c, A, b = case
    # independent: scipy's linprog agrees the LP has no optimum (2 infeasible, 3 unbounded)
    assert linprog(c[0], A_ub=A[0], b_ub=b[0], bounds=[(None, None)], method="highs").status == ref_status
    # in a batch with a good LP (-1 <= x <= 2, min x: -1), which must stay exact
    cg, Ag, bg = np.array([[1.0]]), np.array([[[1.0], [-1.0]]]), np.array([[2.0, 1.0]])
    res = lp.solve(np.r_[c, cg], np.r_[A, Ag], np.r_[b, bg], solver=solver)
    assert res.status[0] != lp.OPTIMAL and res.status[1] == lp.OPTIMAL
    assert np.isnan(res.value[0]) and np.all(np.isnan(res.x[0]))
    assert res.value[1] == pytest.approx(-1.0, abs=1e-7)


def test_ipm_iteration_limit_gives_nan_and_max_iter():
    A, b = random_polytopes(6, 3, 10, seed=2)
    c = np.random.default_rng(0).normal(size=(6, 3))
    res = lp.solve(c, A, b, solver="ipm", max_iter=1)
    assert np.all(res.status == lp.MAX_ITER)
    assert np.all(np.isnan(res.x)) and np.all(np.isnan(res.value))
    full = lp.solve(c, A, b, solver="ipm")  # the same LPs converge with the default limit
    assert np.all(full.status == lp.OPTIMAL) and np.all(np.isfinite(full.value))
    cheb = lp.chebyshev(A, b, solver="ipm", max_iter=1)
    assert np.all(cheb.status == lp.MAX_ITER)
    assert np.all(np.isnan(cheb.radii)) and np.all(np.isnan(cheb.centers))
    with pytest.raises(ValueError, match="max_iter"):
        lp.solve(c, A, b, solver="ipm", max_iter=0)


def test_highs_failure_status_overrides_a_plausible_solution(monkeypatch):
    # a backend that returns a plausible-looking x with a failure status: solve must not pass it on
    A, b = random_polytopes(4, 2, 6, seed=1)
    c = np.random.default_rng(1).normal(size=(4, 2))
    real = lp._solve_highs

    def flaky(*args, **kw):
        x, st, its = real(*args, **kw)
        st = st.copy()
        st[1], st[2] = lp.FAILED, lp.MAX_ITER
        return x, st, its

    monkeypatch.setattr(lp, "_solve_highs", flaky)
    res = lp.solve(c, A, b, solver="highs")
    monkeypatch.undo()
    ref = lp.solve(c, A, b, solver="highs")
    np.testing.assert_array_equal(res.status, [0, 2, 1, 0])
    assert np.all(np.isnan(res.x[1:3])) and np.all(np.isnan(res.value[1:3]))
    np.testing.assert_array_equal(res.x[[0, 3]], ref.x[[0, 3]])


# --- HiGHS stays quiet at the file-descriptor level ------------------------------------------------
def _run_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
               JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=240)


def test_highs_writes_nothing_to_stdout_or_stderr_unless_verbose():
    # control: highspy's own constructor writes the banner to the process's stdout (fd level),
    # so the capture below would see it (skipped only on a highspy that does not print it)
    ctrl = _run_python("import highspy; h = highspy.Highs()")
    banner_exists = "HiGHS" in ctrl.stdout + ctrl.stderr
    quiet = _run_python("""
        import numpy as np, jax, partax
        from partax.geometry import Box, lp, chebyshev, facets, volumes
        from partax.bench.lp import random_polytopes
        A, b = random_polytopes(8, 3, 10)
        r = lp.solve(np.ones((8, 3)), A, b, solver="highs")            # a thread pool of HiGHS
        bad = lp.solve(np.array([1.0]), np.array([[1.0], [-1.0]]), np.array([-1.0, -1.0]), solver="highs")
        net = partax.mlp(jax.random.key(0), [2, 6, 6, 1], bias_std=0.3)
        x = np.random.default_rng(0).uniform(-0.9, 0.9, (4, 2)).astype(np.float32)
        chebyshev(net, x, domain=Box(-1, 1), solver="highs"); facets(net, x, domain=Box(-1, 1), solver="highs")
        volumes(net, x, domain=Box(-1, 1), method="mc", num_samples=100, solver="highs")
        assert r.status.tolist() == [0] * 8 and bad.status.tolist() == [2]
        print("DONE")
    """)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == "DONE", quiet.stdout
    assert "HiGHS" not in quiet.stderr and "Running" not in quiet.stderr, quiet.stderr
    loud = _run_python("""
        import numpy as np
        from partax.geometry import lp
        lp.solve(np.array([1.0]), np.array([[1.0], [-1.0]]), np.array([2.0, 1.0]), solver="highs", verbose=True)
    """)
    assert loud.returncode == 0, loud.stderr
    assert "Model status" in loud.stdout  # the log is there when asked for
    if banner_exists:
        assert "Running HiGHS" in loud.stdout


def test_highs_verbose_log_in_process(capfd):
    A = np.array([[1.0], [-1.0]])
    lp.solve(np.array([1.0]), A, np.array([2.0, 1.0]), solver="highs")
    out, err = capfd.readouterr()
    assert "HiGHS" not in out + err and "Model status" not in out + err
    lp.solve(np.array([1.0]), A, np.array([2.0, 1.0]), solver="highs", verbose=True)
    out, _ = capfd.readouterr()
    assert "Model status" in out and "Optimal" in out
    with pytest.raises(TypeError, match="verbose"):
        lp.solve(np.array([1.0]), A, np.array([2.0, 1.0]), solver="highs", verbose="yes")


# --- polytope functions: failed rows are NaN + status, facets undecided ----------------------------
def _failing_solve(monkeypatch, should_fail):
    """Patches lp.solve: LPs for which ``should_fail(c_i, A_i, b_i)`` holds get status FAILED but
    keep their (plausible) solution, so only the status says they failed."""
    real = lp.solve
    hits = []

    def patched(c, A, b, **kw):
        res = real(c, A, b, **kw)
        bad = np.array([should_fail(c[i], A[i], b[i]) for i in range(len(c))], bool)
        hits.append(int(bad.sum()))
        st = np.where(bad, lp.FAILED, res.status).astype(np.int32)
        return lp.LPResult(res.x, res.value, st, res.iterations)

    monkeypatch.setattr(lp, "solve", patched)
    return hits


def _is_cheb(c):  # the Chebyshev LPs maximise the last variable, r
    return bool(np.all(c[:-1] == 0) and c[-1] == -1)


def _of_region(AA, A_n):
    """Whether an LP's first rows are the H-representation ``A_n`` of one region (as given, or
    scaled to unit rows), in its first ``k`` columns."""
    m, k = A_n.shape
    if AA.shape[0] < m or AA.shape[1] < k:
        return False
    unit = A_n / np.linalg.norm(A_n, axis=1, keepdims=True)
    return bool(np.allclose(AA[:m, :k], A_n) or np.allclose(AA[:m, :k], unit))


def _distinct_regions(net, d, n, seed):
    """``n`` inputs in ``n`` different regions (so an LP's rows name its region)."""
    z = _x(d, 50 * n, seed)
    _, first = np.unique(partax.region_ids(net, z, "prefix")[:, -1], return_index=True)
    assert len(first) >= n
    return z[np.sort(first)[:n]]


def test_chebyshev_failure_is_nan_with_status(monkeypatch):
    net = _net([3, 10, 10, 2], 1)
    x = _distinct_regions(net, 3, 5, 11)
    box = Box(-1, 1)
    ref_c, ref_r = chebyshev(net, x, domain=box, solver="highs")
    A, _ = halfspaces_batch(net, x, domain=box)
    hits = _failing_solve(monkeypatch, lambda c, AA, b: _is_cheb(c) and _of_region(AA, A[2]))
    with pytest.warns(RuntimeWarning, match="1 region"):
        c, r = chebyshev(net, x, domain=box, solver="highs")
    res = chebyshev(net, x, domain=box, solver="highs", return_status=True)
    assert sum(hits) == 2
    for out_c, out_r in ((c, r), (res.centers, res.radii)):
        assert np.isnan(out_r[2]) and np.all(np.isnan(out_c[2]))
        ok = np.arange(5) != 2
        np.testing.assert_array_equal(out_r[ok], ref_r[ok])
        np.testing.assert_array_equal(out_c[ok], ref_c[ok])
    np.testing.assert_array_equal(res.status, [0, 0, 2, 0, 0])
    c3, r3, s3 = res  # the record unpacks like lp.chebyshev's
    assert s3 is res.status


def test_facets_failure_raises_or_flags(monkeypatch):
    net = _net([2, 8, 8, 1], 0)
    x = _distinct_regions(net, 2, 4, 20)
    box = Box(-1, 1)
    ref = facets(net, x, domain=box, solver="highs")
    A, _ = halfspaces_batch(net, x, domain=box)
    # fail the redundancy LPs (not the Chebyshev LP) of region 1
    hits = _failing_solve(monkeypatch, lambda c, AA, b: not _is_cheb(c) and _of_region(AA, A[1]))
    with pytest.raises(RuntimeError, match=r"facets: .*1 region.*rows \[1\].*return_status"):
        facets(net, x, domain=box, solver="highs")
    res = facets(net, x, domain=box, solver="highs", return_status=True)
    assert isinstance(res, FacetsResult) and sum(hits) > 0
    np.testing.assert_array_equal(res.status, [0, 2, 0, 0])
    assert res.facets[1].size == 0  # undecided, flagged by the status
    for n in (0, 2, 3):
        np.testing.assert_array_equal(res.facets[n], ref[n])


def test_facets_failed_chebyshev_is_not_read_as_lower_dimensional(monkeypatch):
    # before: a failed Chebyshev LP made the radius NaN, the region "not full-dimensional", and its
    # facet list silently empty
    net = _net([2, 8, 8, 1], 0)
    x = _x(2, 3, 21)
    box = Box(-1, 1)
    _failing_solve(monkeypatch, lambda c, AA, b: _is_cheb(c))
    res = facets(net, x, domain=box, solver="highs", return_status=True)
    np.testing.assert_array_equal(res.status, [2, 2, 2])
    with pytest.raises(RuntimeError, match="3 region"):
        facets(net, x, domain=box, solver="highs")


def test_neighbors_failed_facet_centre_lp(monkeypatch):
    net = _net([2, 8, 8, 1], 5)
    x = _distinct_regions(net, 2, 3, 30)
    box = Box(-1, 1)
    fac_ref, keys_ref = neighbors(net, x, domain=box, solver="highs", return_facets=True)
    # the facet-centre LPs are Chebyshev LPs in the facet's hyperplane: k variables (not k + 1);
    # fail the first one of region 0 (they come in region order)
    state = {"done": False}

    def first_facet_centre(c, AA, b):
        if _is_cheb(c) and len(c) == 2 and not state["done"]:
            state["done"] = True
            return True
        return False

    _failing_solve(monkeypatch, first_facet_centre)
    res = neighbors(net, x, domain=box, solver="highs", return_status=True)
    assert isinstance(res, NeighborsResult) and state["done"]
    np.testing.assert_array_equal(res.status, [2, 0, 0])
    assert res.facets[0].size == 0 and res.keys[0].size == 0
    for n in (1, 2):
        np.testing.assert_array_equal(res.facets[n], fac_ref[n])
        np.testing.assert_array_equal(res.keys[n], keys_ref[n])
    state["done"] = False
    with pytest.raises(RuntimeError, match=r"neighbors: .*rows \[0\]"):
        neighbors(net, x, domain=box, solver="highs")


# --- volumes ----------------------------------------------------------------------------------------
def test_volume_with_failed_chebyshev_is_nan_not_zero(monkeypatch):
    net = _net([2, 8, 8, 1], 0)
    x = _distinct_regions(net, 2, 3, 40)
    box = Box(-1, 1)
    ref = volumes(net, x, domain=box, solver="highs", return_status=True)
    assert np.all(ref.status == 0) and np.all(ref.volume > 0)
    A, _ = halfspaces_batch(net, x, domain=box)
    _failing_solve(monkeypatch, lambda c, AA, b: _is_cheb(c) and _of_region(AA, A[0]))
    for method in ("exact", "mc"):
        with pytest.warns(RuntimeWarning, match="1 region"):
            v, e = volumes(net, x, domain=box, method=method, num_samples=2000, solver="highs")
        assert np.isnan(v[0]) and np.isnan(e[0])  # never 0 +- 0
        res = volumes(net, x, domain=box, method=method, num_samples=2000, solver="highs", return_status=True)
        assert res.status[0] == lp.FAILED and np.isnan(res.upper[0]) and res.hits[0] == -1
        assert np.all(res.status[1:] == 0) and np.all(np.isfinite(res.volume[1:]))
    np.testing.assert_allclose(volumes(net, x[1:], domain=box, method="exact", solver="highs")[0], ref.volume[1:],
                               rtol=1e-12)


def test_mc_volume_with_failed_bounding_box_lp(monkeypatch):
    net = _net([3, 10, 10, 2], 1)
    x = _distinct_regions(net, 3, 3, 41)
    box = Box(-1, 1)
    ref = volumes(net, x, domain=box, method="mc", num_samples=3000, key=3, solver="highs", return_status=True)
    assert np.all(ref.status == 0)
    A, _ = halfspaces_batch(net, x, domain=box)
    # one of region 1's 2k bounding-box LPs (objective +-e_j, k variables) fails
    state = {"done": False}

    def one_box_lp(c, AA, b):
        if len(c) == 3 and np.count_nonzero(c) == 1 and _of_region(AA, A[1]) and not state["done"]:
            state["done"] = True
            return True
        return False

    _failing_solve(monkeypatch, one_box_lp)
    with pytest.warns(RuntimeWarning, match=r"volumes: 1 region.*rows \[1\]"):
        v, e = volumes(net, x, domain=box, method="mc", num_samples=3000, key=3, solver="highs")
    assert state["done"] and np.isnan(v[1]) and np.isnan(e[1]) and v[0] == ref.volume[0]
    state["done"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the status returned, the status is the flag: no warning
        res = volumes(net, x, domain=box, method="mc", num_samples=3000, key=3, solver="highs", return_status=True)
    assert state["done"]
    assert res.status[1] == lp.FAILED and np.isnan(res.volume[1]) and np.isnan(res.stderr[1])
    assert np.isnan(res.upper[1]) and res.hits[1] == -1
    assert res.status[0] == 0 and res.volume[0] == ref.volume[0] and res.hits[0] == ref.hits[0]


def _strip_net(eps):
    """Two ReLUs ``x1 - x2 - eps`` and ``x2 - x1 - eps``: the region where both are off is the
    strip ``|x1 - x2| <= eps``; in the box [-1, 1]^2 its area is ``4 eps - eps^2`` and its
    bounding box the whole square."""
    W1 = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    b1 = np.array([-eps, -eps], np.float32)
    return partax.Net((W1, np.ones((2, 1), np.float32)), (b1, np.zeros(1, np.float32)), "relu", 0.0)


def test_mc_volume_without_hits_is_nan_with_an_upper_bound():
    eps = 1e-6
    net = _strip_net(eps)
    x = np.array([[0.0, 0.0], [0.5, -0.5]], np.float32)  # the strip, and the half plane x1 - x2 > eps
    box = Box(-1, 1)
    n = 2000
    with pytest.warns(RuntimeWarning, match="no Monte Carlo hit"):
        v, e = volumes(net, x, domain=box, method="mc", num_samples=n, key=0, solver="highs")
    assert np.isnan(v[0]) and np.isnan(e[0])  # not "0 +- 0", not "0 +- box / n"
    res = volumes(net, x, domain=box, method="mc", num_samples=n, key=0, solver="highs", return_status=True)
    assert isinstance(res, VolumeResult)
    assert res.status[0] == NO_HITS and res.hits[0] == 0
    # closed forms: bounding box [-1, 1]^2 (volume 4); the 95 % bound with no hit, 4 (1 - 0.05^(1/n))
    assert res.upper[0] == pytest.approx(4 * (1 - 0.05 ** (1 / n)), rel=1e-7)
    true_area = 4 * eps - eps**2
    assert true_area <= res.upper[0]
    ex = volumes(net, x[:1], domain=box, method="exact", solver="highs", return_status=True)
    assert ex.status[0] == 0 and ex.volume[0] == pytest.approx(true_area, rel=1e-3)
    assert ex.upper[0] == ex.volume[0]
    # the other region is estimated normally, its bound above its estimate
    half = (4 - (2 - eps) ** 2) / 2 + (2 - eps) ** 2 / 2 - true_area / 2  # = 2 - true_area / 2
    assert res.status[1] == 0 and abs(res.volume[1] - half) <= 5 * res.stderr[1]
    assert res.upper[1] > res.volume[1] and 0 < res.hits[1] < n


# --- region report ----------------------------------------------------------------------------------
def _rounding_net():
    """Unit 1 is ``x1 + x2 - 1e8``: at x = (1e8, 1e-3) float32 rounds it to 0 (off) while float64
    gives 1e-3 (on). Unit 2 is ``x2 + 10``."""
    W1 = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
    b1 = np.array([-1e8, 10.0], np.float32)
    return partax.Net((W1, np.ones((2, 1), np.float32)), (b1, np.zeros(1, np.float32)), "relu", 0.0)


def test_report_code_reproduces_tampered_exemplar():
    net = _rounding_net()
    x = np.array([[1e8, -5], [1e8, 20], [1e8, -20], [1e8 + 64, -30], [1e8, -6]], np.float32)
    p = partax.partition(net, x, progress=False)
    t = p.table("prefix", 1)
    tampered = x.copy()
    tampered[0] = [1e8, 1e-3]  # the exemplar of the region (off, on): same float32 code, not float64
    assert t.exemplars.tolist().count(0) == 1
    row = t.exemplars.tolist().index(0)
    # oracle: float64 codes (tests/oracle.py forward pass and key function) vs the table's keys
    ex = tampered[t.exemplars]
    pre = forward_preacts([np.asarray(a) for a in net.arrays()], ex)
    keys64 = np.array([range_key([pre[0][i] > 0], 1, 1) for i in range(len(ex))], np.uint64)
    expected = keys64 == t.keys
    assert expected.tolist() == [i != row for i in range(len(t))]
    f32_ok = partax.region_ids(net, ex, "prefix")[:, 0] == t.keys
    assert f32_ok.all()
    with pytest.raises(ValueError, match=rf"1 of 4 .*code_reproduces False; row {row}: key {int(t.keys[row]):#018x}"):
        region_report(net, p, tampered, solver="highs", progress=False)
    with pytest.warns(RuntimeWarning, match="kept and flagged"):
        rep = region_report(net, p, tampered, solver="highs", progress=False, keep_mismatched=True)
    np.testing.assert_array_equal(rep.code_reproduces, expected)
    np.testing.assert_array_equal(rep.key_ok, f32_ok)
    # the row's polytope is still the table's region (rows from the float32 code): LP columns kept;
    # its exemplar sits on the boundary in float64 (margin about 0 or below)
    assert rep.has_lp[row] and rep.radius_status[row] == 0 and rep.margin[row] <= 1e-2
    # untampered source: every row reproduces, no error
    clean = region_report(net, p, x, solver="highs", progress=False)
    assert clean.code_reproduces.all() and clean.key_ok.all()


def test_report_moved_exemplar_gets_no_lp_columns():
    net = _net([2, 8, 8, 1], 0)
    x = np.random.default_rng(0).uniform(-1, 1, (3000, 2)).astype(np.float32)
    p = partax.partition(net, x, progress=False)
    t = p.table("prefix", 2)
    top = np.lexsort((t.keys, -t.counts))
    moved = x.copy()
    moved[t.exemplars[top[0]]] = x[t.exemplars[top[1]]]  # the biggest region's exemplar now lies in the 2nd
    with pytest.raises(ValueError, match=rf"key_ok False; row {top[0]}: key {int(t.keys[top[0]]):#018x}"):
        region_report(net, p, moved, max_regions=3, solver="highs", progress=False)
    with pytest.warns(RuntimeWarning, match="1 of"):
        rep = region_report(net, p, moved, max_regions=3, solver="highs", progress=False, keep_mismatched=True)
    assert not rep.key_ok[top[0]] and rep.key_ok.sum() == len(t) - 1
    assert not rep.has_lp[top[0]] and np.isnan(rep.radius[top[0]]) and np.isnan(rep.margin[top[0]])
    assert rep.radius_status[top[0]] == -1
    np.testing.assert_array_equal(np.flatnonzero(rep.has_lp), np.sort(top[1:4]))  # the next 3 get them


def test_report_failed_lps_are_flagged(monkeypatch, tmp_path):
    net = _net([2, 8, 8, 1], 0)
    x = np.random.default_rng(0).uniform(-1, 1, (3000, 2)).astype(np.float32)
    p = partax.partition(net, x, progress=False)
    box = Box(-1, 1)
    ref = region_report(net, p, x, domain=box, max_regions=4, solver="highs", progress=False)
    rows = np.flatnonzero(ref.has_lp)
    assert np.all(ref.radius_status[rows] == 0) and np.all(ref.facets_status[rows] == 0)
    assert np.all(ref.volume_status[rows] == 0) and np.all(ref.volume_upper[rows] == ref.volume[rows])
    assert np.all(ref.radius_status[~ref.has_lp] == -1) and np.all(ref.volume_status[~ref.has_lp] == -1)
    A, _ = halfspaces_batch(net, ref.exemplars[rows[:1]], domain=box)
    _failing_solve(monkeypatch, lambda c, AA, b: _is_cheb(c) and _of_region(AA, A[0]))
    with pytest.warns(RuntimeWarning, match="1 region"):
        rep = region_report(net, p, x, domain=box, max_regions=4, solver="highs", progress=False)
    r0 = rows[0]
    assert rep.has_lp[r0] and rep.radius_status[r0] == 2 and rep.facets_status[r0] == 2
    assert rep.volume_status[r0] == 2 and rep.num_facets[r0] == -1
    assert np.isnan(rep.radius[r0]) and np.all(np.isnan(rep.center[r0])) and np.isnan(rep.volume[r0])
    assert np.isnan(rep.volume_err[r0]) and np.isnan(rep.volume_upper[r0])
    for name in ("radius", "num_facets", "volume"):
        np.testing.assert_array_equal(getattr(rep, name)[rows[1:]], getattr(ref, name)[rows[1:]])
    # the new columns survive a save / load round trip
    rep.save(tmp_path / "r.npz")
    back = RegionReport.load(tmp_path / "r.npz")
    for name in ("code_reproduces", "radius_status", "facets_status", "volume_status", "volume_upper"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rep, name))
    # a file without them (an older report) is refused by name, not filled in
    cols = {k: v for k, v in rep.columns().items() if k != "volume_status"}
    partax.files.save_npz(tmp_path / "old.npz", cols, "partax.regions", **rep.meta)
    with pytest.raises(ValueError, match="volume_status"):
        RegionReport.load(tmp_path / "old.npz")


def test_report_mc_volume_without_hits():
    eps = 1e-6
    net = _strip_net(eps)
    x = np.concatenate([np.zeros((1, 2)), np.random.default_rng(0).uniform(-1, 1, (500, 2))]).astype(np.float32)
    p = partax.partition(net, x, progress=False)
    box = Box(-1, 1)
    with pytest.warns(RuntimeWarning, match="no Monte Carlo hit"):
        rep = region_report(net, p, x, domain=box, volume_method="mc", num_samples=1000, solver="highs",
                            progress=False)
    strip = int(np.flatnonzero(rep.exemplar_index == 0)[0])
    assert rep.volume_status[strip] == NO_HITS and np.isnan(rep.volume[strip]) and np.isnan(rep.volume_err[strip])
    assert rep.volume_upper[strip] == pytest.approx(4 * (1 - 0.05 ** (1 / 1000)), rel=1e-7)
    others = np.arange(len(rep)) != strip
    assert np.all(rep.volume_status[others] == 0) and np.all(np.isfinite(rep.volume[others]))


def test_enumeration_in_high_dimension_is_refused_up_front_with_the_override():
    import time

    import jax
    import partax
    from partax.geometry import Box, enumerate_regions

    net = partax.mlp(jax.random.key(0), [64, 8, 4], bias_std=0.1)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"64 dimensions is refused \(max_dim=12\).*max_dim=None"):
        enumerate_regions(net, Box(0.0, 1.0), progress=False)
    assert time.perf_counter() - t < 1.0  # refused before any work
    with pytest.raises(ValueError, match="max_dim: expected an int >= 2 or None"):
        enumerate_regions(net, Box(0.0, 1.0), max_dim=1.5)
    small = partax.mlp(jax.random.key(0), [3, 4, 2], bias_std=0.1)
    with pytest.raises(ValueError, match=r"3 dimensions is refused \(max_dim=2\)"):
        enumerate_regions(small, Box(0.0, 1.0), max_dim=2, progress=False)
    assert enumerate_regions(small, Box(0.0, 1.0), max_dim=3, progress=False).complete  # the override works
