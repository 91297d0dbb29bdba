"""Sound pre-activation bounds and stable units (partax.stability) against independent oracles:
dense sampling (bounds contain every sampled pre-activation), box corners (the exact range of a
first-layer unit), scipy's HiGHS on an independently written triangle-relaxation LP, brute force
(every region of an exact enumeration gives the exact stability), and the nesting
interval ⊆ linear ⊆ lp (⊆ milp when partax.milp is there) of what the methods certify."""

import itertools

import jax
import numpy as np
import pytest
import scipy.optimize

import partax
from partax.geometry import enumerate_regions
from partax.stability import METHODS, classify, preactivation_bounds, refute, stable_units

FAST = ("interval", "linear", "lp")


def _net(seed, widths, bias_std=0.5, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=activation, bias_std=bias_std)


def _samples(box, d, n, seed=0):
    lo, hi = box.bounds(d)
    rng = np.random.default_rng(seed)
    x = lo + rng.random((n, d)) * (hi - lo)
    if d <= 10:
        corners = np.array(list(itertools.product([0, 1], repeat=d)), bool)
        x = np.concatenate([x, np.where(corners, hi, lo)])
    return x


def _pre64(net, x):
    """NumPy float64 pre-activations (the oracle's own forward pass)."""
    h = np.asarray(x, np.float64)
    out = []
    alpha = net.alpha if net.activation == "leaky_relu" else 0.0
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        out.append(z)
        h = np.where(z > 0, z, alpha * z)
    return out


@pytest.mark.parametrize("activation", ["relu", ("leaky_relu", 0.2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_bounds_contain_every_sample(seed, activation):
    net = _net(seed, [5, 20, 16, 12, 3], activation=activation)
    box = partax.Box(-1.0, 1.0)
    z = _pre64(net, _samples(box, 5, 100_000, seed))
    for method in FAST:
        bounds = preactivation_bounds(net, box, method)
        assert len(bounds) == 3
        for l, (zl, (lo, hi)) in enumerate(zip(z, bounds)):
            assert lo.dtype == np.float64 and hi.dtype == np.float64
            assert np.all(zl.min(0) >= lo), (method, l)
            assert np.all(zl.max(0) <= hi), (method, l)


def test_first_layer_interval_is_the_exact_range_at_the_corners():
    """A first-layer unit is linear: its exact range over a box is attained at corners."""
    net = _net(3, [6, 10, 2])
    box = partax.Box(np.linspace(-1, 0, 6), np.linspace(0.5, 2, 6))
    z = _pre64(net, _samples(box, 6, 0))[0]  # the 64 corners only
    for method in FAST:
        lo, hi = preactivation_bounds(net, box, method)[0]
        np.testing.assert_allclose(lo, z.min(0), rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(hi, z.max(0), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_methods_are_nested(seed):
    net = _net(seed, [4, 16, 16, 16, 2], bias_std=0.8)
    box = partax.Box(-1.0, 1.0)
    b = {m: preactivation_bounds(net, box, m) for m in FAST}
    s = {m: classify(b[m]) for m in FAST}
    for weak, strong in [("interval", "linear"), ("linear", "lp")]:
        for (lw, hw), (ls, hs), cw, cs in zip(b[weak], b[strong], s[weak], s[strong]):
            assert np.all(ls >= lw) and np.all(hs <= hw)
            assert np.all(cs[cw != 0] == cw[cw != 0])  # what the weak one certifies, the strong one does too
    # the relaxations really are stronger on such a net (not only equal)
    width = {m: sum(float(np.sum(hi - lo)) for lo, hi in b[m][1:]) for m in FAST}
    assert width["linear"] < width["interval"] and width["lp"] < width["linear"]


def _triangle_lp_bounds(net, box, first_bounds):
    """Layer-2 bounds by scipy.optimize.linprog over the triangle relaxation of layer 1 (the
    test's own formulation: variables (x, h1), h1 >= 0, h1 >= W1^T x + b1, h1 <= chord)."""
    W1, b1 = np.asarray(net.weights[0], np.float64), np.asarray(net.biases[0], np.float64)
    W2, b2 = np.asarray(net.weights[1], np.float64), np.asarray(net.biases[1], np.float64)
    d, n = W1.shape
    lo, hi = box.bounds(d)
    l, u = first_bounds
    A, rhs, eq_A, eq_b = [], [], [], []
    bnds = [(lo[j], hi[j]) for j in range(d)]
    for i in range(n):
        e = np.zeros(n); e[i] = 1
        if l[i] >= 0:  # active: h = z
            eq_A.append(np.concatenate([-W1[:, i], e])); eq_b.append(b1[i]); bnds.append((None, None))
        elif u[i] <= 0:  # inactive: h = 0
            bnds.append((0, 0))
        else:
            bnds.append((0, None))
            A.append(np.concatenate([W1[:, i], -e])); rhs.append(-b1[i])  # z - h <= 0
            s = u[i] / (u[i] - l[i])  # h <= s (z - l)
            A.append(np.concatenate([-s * W1[:, i], e])); rhs.append(s * b1[i] - s * l[i])
    lo2, hi2 = [], []
    for k in range(W2.shape[1]):
        c = np.concatenate([np.zeros(d), W2[:, k]])
        kw = dict(A_ub=np.array(A) if A else None, b_ub=np.array(rhs) if rhs else None,
                  A_eq=np.array(eq_A) if eq_A else None, b_eq=np.array(eq_b) if eq_b else None,
                  bounds=bnds, method="highs")
        r1 = scipy.optimize.linprog(c, **kw)
        r2 = scipy.optimize.linprog(-c, **kw)
        assert r1.status == 0 and r2.status == 0
        lo2.append(r1.fun + b2[k]); hi2.append(-r2.fun + b2[k])
    return np.array(lo2), np.array(hi2)


def test_lp_bounds_match_scipy_on_the_triangle_relaxation():
    net = _net(5, [3, 12, 8, 2], bias_std=0.7)
    box = partax.Box(-1.0, 1.0)
    b = preactivation_bounds(net, box, "lp")
    lo2, hi2 = _triangle_lp_bounds(net, box, b[0])
    np.testing.assert_allclose(b[1][0], lo2, atol=1e-6)
    np.testing.assert_allclose(b[1][1], hi2, atol=1e-6)
    # and the safe dual bound is never inside the LP optimum (sound): it may only be lower/higher
    assert np.all(b[1][0] <= lo2 + 1e-9) and np.all(b[1][1] >= hi2 - 1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_certified_classes_agree_with_brute_force(seed):
    """Every region of an exact enumeration of the box gives the exact stability; a certified
    class is never contradicted by it, and 'lp' certifies at least as many units as 'interval'."""
    net = _net(seed, [2, 10, 10, 2], bias_std=1.0)
    box = partax.Box(-0.5, 0.5)
    res = enumerate_regions(net, box, progress=False)
    assert res.complete
    exact = []
    for bits in res.bits:
        e = np.zeros(bits.shape[1], np.int8)
        e[bits.all(0)] = 1
        e[(~bits).all(0)] = -1
        exact.append(e)
    counts = {}
    for method in FAST:
        s = stable_units(net, box, method)
        for sl, el in zip(s, exact):
            assert sl.dtype == np.int8
            assert np.all(sl[sl != 0] == el[sl != 0]), method
        counts[method] = sum(int(np.sum(sl != 0)) for sl in s)
    assert counts["interval"] <= counts["linear"] <= counts["lp"] <= sum(int(np.sum(e != 0)) for e in exact)


def test_milp_equals_brute_force_when_available():
    milp = pytest.importorskip("partax.milp")
    if not hasattr(milp, "milp_preactivation_bounds"):
        pytest.skip("partax.milp has no milp_preactivation_bounds yet")
    for seed in range(3):
        net = _net(seed, [2, 8, 8, 2], bias_std=1.0)
        box = partax.Box(-0.5, 0.5)
        res = enumerate_regions(net, box, progress=False)
        s = stable_units(net, box, "milp")
        lp = stable_units(net, box, "lp")
        for sl, ll, bits in zip(s, lp, res.bits):
            e = np.zeros(bits.shape[1], np.int8)
            e[bits.all(0)] = 1
            e[(~bits).all(0)] = -1
            np.testing.assert_array_equal(sl, e)
            assert np.all(sl[ll != 0] == ll[ll != 0])


def test_known_classes_and_refute():
    W1 = np.array([[1.0, -1.0, 1.0, 0.0]], np.float32)
    b1 = np.array([2.0, -2.0, 0.0, 0.0], np.float32)  # active, inactive, unstable, constant 0 (inactive)
    net = partax.Net.from_arrays([W1, b1, np.ones((4, 1), np.float32), np.zeros(1, np.float32)])
    box = partax.Box(-1.0, 1.0)
    for method in FAST:
        assert stable_units(net, box, method)[0].tolist() == [1, -1, 0, -1]
    x = np.linspace(-1, 1, 101)[:, None]
    assert [r.tolist() for r in refute(net, stable_units(net, box), x)] == [[]]
    wrong = [np.array([-1, 1, 0, 1], np.int8)]
    assert refute(net, wrong, x)[0].tolist() == [0, 1, 3]


def test_time_limit_stays_sound():
    net = _net(7, [6, 30, 30, 2])
    box = partax.Box(-1.0, 1.0)
    lin = preactivation_bounds(net, box, "linear")
    cut, info = preactivation_bounds(net, box, "lp", time_limit=1e-6, return_info=True)  # stops before any LP
    z = _pre64(net, _samples(box, 6, 20_000))
    for (ll, lh), (cl, ch), zl in zip(lin, cut, z):
        assert np.all(cl >= ll) and np.all(ch <= lh)
        assert np.all(zl.min(0) >= cl) and np.all(zl.max(0) <= ch)
    # the flag: every unit of layer 2 kept its linear bounds (layer 1 is exact over a box)
    assert info["unfinished"] == [0, 30] and info["method"] == "lp"
    for (ll, lh), (cl, ch) in zip(lin[1:], cut[1:]):
        np.testing.assert_array_equal(cl, ll)
        np.testing.assert_array_equal(ch, lh)
    with pytest.warns(RuntimeWarning, match="30 unit"):
        preactivation_bounds(net, box, "lp", time_limit=1e-6)
    _, full = preactivation_bounds(net, box, "lp", return_info=True)
    assert full["unfinished"] == [0, 0]
    assert preactivation_bounds(net, box, "linear", return_info=True)[1]["unfinished"] == [0, 0]


def test_refute_uses_exact_float64_preactivations():
    """w * x + b = 2^-24 - 2^-47 > 0 at the box's lower corner (certified active), while a float32
    forward pass rounds w * x to 1 and gives z = 0: refute must not report a contradiction."""
    w = np.float32(1 + 2.0 ** -23)
    x0 = np.float32(1 - 2.0 ** -24)
    net = partax.Net.from_arrays([np.array([[w]], np.float32), np.array([-1.0], np.float32),
                                  np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    box = partax.Box(float(x0), 2.0)
    s = stable_units(net, box)
    assert s[0].tolist() == [1]
    assert float(np.float32(w * x0) + np.float32(-1.0)) == 0.0  # the float32 rounding that faked it
    assert float(w) * float(x0) - 1.0 > 0  # exact (48-bit product)
    assert refute(net, s, np.array([[x0], [2.0]], np.float32))[0].tolist() == []
    assert refute(net, [np.array([-1], np.int8)], np.array([[x0]], np.float32))[0].tolist() == [0]


def test_bad_input():
    net = _net(0, [3, 4, 2])
    box = partax.Box(0.0, 1.0)
    with pytest.raises(ValueError, match="bounded"):
        preactivation_bounds(net, None)
    with pytest.raises(ValueError, match="dimension"):
        preactivation_bounds(net, partax.Box([0, 0], [1, 1]))
    with pytest.raises(TypeError, match="domain"):
        preactivation_bounds(net, (0, 1))
    with pytest.raises(ValueError, match="method"):
        preactivation_bounds(net, box, "exact")
    with pytest.raises(TypeError, match="net"):
        stable_units([np.eye(3)], box)
    with pytest.raises(ValueError, match="stack"):
        stable_units(partax.stack_nets([net, net]), box)
    with pytest.raises(ValueError, match="slack"):
        preactivation_bounds(net, box, slack=-1)
    with pytest.raises(ValueError, match="time_limit"):
        preactivation_bounds(net, box, "lp", time_limit=0)
    with pytest.raises(ValueError, match="time_limit"):
        preactivation_bounds(net, box, "lp", time_limit="soon")
    with pytest.raises(ValueError, match="slack"):
        preactivation_bounds(net, box, slack="tiny")
    with pytest.raises(ValueError, match="threads"):
        preactivation_bounds(net, box, "lp", threads=0)
    with pytest.raises(ValueError, match="threads"):
        preactivation_bounds(net, box, "lp", threads=1.5)
    with pytest.raises(TypeError, match="return_info"):
        preactivation_bounds(net, box, return_info="yes")
    s = stable_units(net, box)
    x = np.zeros((5, 3))
    with pytest.raises(ValueError, match="x"):
        refute(net, s, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="x"):
        refute(net, s, np.zeros(3))
    with pytest.raises(ValueError, match="x"):
        refute(net, s, np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="stability"):
        refute(net, [], x)
    with pytest.raises(ValueError, match="stability"):
        refute(net, [np.zeros(3, np.int8)], x)
    with pytest.raises(ValueError, match="stability"):
        refute(net, [np.full(4, 2, np.int8)], x)
    with pytest.raises(ValueError, match="lo <= hi"):
        classify([(np.array([1.0, 0.0]), np.array([0.5, 1.0]))])
    with pytest.raises(ValueError, match="shape"):
        classify([(np.zeros(2), np.zeros(3))])
    with pytest.raises(ValueError, match="NaN"):
        classify([(np.array([np.nan]), np.array([1.0]))])
    with pytest.raises(TypeError, match="bounds"):
        classify(np.zeros((2, 3)))
    bad = partax.Net.from_arrays([np.full((3, 4), np.nan, np.float32), np.zeros(4, np.float32),
                                  np.ones((4, 2), np.float32), np.zeros(2, np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        preactivation_bounds(bad, box)
    assert set(METHODS) == {"interval", "linear", "lp", "milp"}


def test_milp_method_plumbing_with_a_stand_in(monkeypatch):
    """The 'milp' method passes the LP bounds as big-M constants to partax.milp and intersects;
    NaN (a unit the MILP did not bound) keeps the LP bound. A stand-in module plays partax.milp
    (the real one is tested by test_milp_equals_brute_force_when_available)."""
    import sys
    import types

    net = _net(4, [3, 10, 10, 2], bias_std=0.8)
    box = partax.Box(-1.0, 1.0)
    lp = preactivation_bounds(net, box, "lp")
    z = _pre64(net, _samples(box, 3, 50_000))
    seen = {}

    def fake(net_, domain, bounds, *, backend="highs", time_limit=None):
        seen.update(backend=backend, time_limit=time_limit, bounds=bounds)
        out = [(zl.min(0) - 1e-6, zl.max(0) + 1e-6) for zl in z]  # a (sampled) stand-in for exact bounds
        out[1][0][0] = np.nan
        return out

    monkeypatch.setitem(sys.modules, "partax.milp", types.SimpleNamespace(milp_preactivation_bounds=fake))
    with pytest.warns(RuntimeWarning, match="1 unit"):
        got = preactivation_bounds(net, box, "milp", time_limit=5.0, backend="scip")
    assert seen["backend"] == "scip" and seen["time_limit"] == 5.0
    for (a, b), (c, d) in zip(seen["bounds"], lp):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for l, ((gl, gh), (ll, lh), zl) in enumerate(zip(got, lp, z)):
        assert np.all(gl >= ll) and np.all(gh <= lh)
        np.testing.assert_allclose(gl[1:] if l else gl, np.maximum(ll, zl.min(0) - 1e-6)[1:] if l
                                   else np.maximum(ll, zl.min(0) - 1e-6), atol=1e-8)
    assert got[1][0][0] == lp[1][0][0]  # NaN from the MILP: the LP bound stays
    _, info = preactivation_bounds(net, box, "milp", time_limit=5.0, return_info=True)
    assert info["unfinished"] == [0, 1]  # the NaN unit is flagged
