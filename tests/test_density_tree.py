"""partax.density_tree: the density estimation tree, against brute force, closed forms and mlpack.

Oracles: brute-force split search (a Python loop over every midpoint), a dynamic program for the
cost-complexity optimal subtree, brute-force leaf-box membership counts, independent NumPy Monte
Carlo of the integral, closed-form entropies, and mlpack's own ``det`` (identical fully grown
trees on the same root box; held-out NLL of the cross-validated trees).
"""

import math
import sys

import numpy as np
import pytest

from partax.density_tree import DensityTree, tree
from partax.geometry.domains import check_outside, check_points, inside_box
from partax.geometry import Box

try:
    import mlpack  # noqa: F401

    HAVE_MLPACK = True
except ImportError:  # mlpack is not a partax dependency
    HAVE_MLPACK = False


def two_piece(n, seed, d=2):
    """Half uniform on [0, 0.3] x [0, 1]^(d-1), half uniform on [0, 1]^d: a 2-leaf density."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    x[: n // 2, 0] *= 0.3
    return x


def two_piece_entropy():
    p1 = 0.5 / 0.3 + 0.5
    return -(0.3 * p1 * math.log(p1) + 0.7 * 0.5 * math.log(0.5))


def bump(n, seed, d=2):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, d))
    k = rng.uniform(size=n) < 0.6
    x[k] = 0.5 + 0.12 * rng.normal(size=(int(k.sum()), d))
    return x.clip(0, 1)


def brute_force_log_prob(t: DensityTree, x, data):
    """log(n / (N V)) of the leaf box holding each point, counting the data in that box by brute force."""
    inside = np.all((x[:, None, :] >= t.lower[None]) & (x[:, None, :] < t.upper[None])
                    | ((x[:, None, :] == t.upper[None]) & (t.upper[None] == np.asarray(t.domain.hi))), axis=2)
    assert np.all(inside.sum(1) == 1)  # the leaves tile the box
    leaf = np.argmax(inside, 1)
    lo, hi = t.lower[leaf], t.upper[leaf]
    n = np.array([np.sum(np.all((data >= a) & ((data < b) | (b == np.asarray(t.domain.hi))), axis=1)) for a, b in zip(lo, hi)])
    return np.log(n / len(data) / np.prod(hi - lo, axis=1))


@pytest.mark.parametrize("n,d,seed", [(60, 2, 0), (80, 3, 1), (200, 2, 2)])
def test_first_split_is_the_brute_force_best(n, d, seed):
    x = bump(n, seed, d)
    t = tree(x, Box(0, 1), min_leaf_size=3, max_leaf_size=n - 1, folds=None)  # the root splits, its children not
    assert t.num_leaves == 2
    best, arg = -np.inf, None
    for j in range(d):
        v = np.sort(x[:, j])
        for i in range(3, n - 3 + 1):
            if v[i - 1] == v[i]:
                continue
            s = 0.5 * (v[i - 1] + v[i])
            risk = -(i**2) / s - (n - i) ** 2 / (1 - s)  # R(L) + R(R) times N^2 (unit box)
            if -risk > best:
                best, arg = -risk, (j, s)
    assert (int(t.dim[0]), float(t.split[0])) == (arg[0], pytest.approx(arg[1], abs=1e-15))


@pytest.mark.parametrize("n,d", [(300, 2), (400, 3)])
def test_log_prob_is_the_leaf_histogram(n, d):
    x = bump(n, 3, d)
    t = tree(x, Box(0, 1), folds=None)
    assert abs(t.volumes.sum() - 1.0) < 1e-12 and t.counts.sum() == n and t.counts.min() >= t.min_leaf_size
    z = np.random.default_rng(4).uniform(size=(500, d))
    np.testing.assert_allclose(t.log_prob(z), brute_force_log_prob(t, z, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.log_prob(x), brute_force_log_prob(t, x, x), rtol=0, atol=1e-12)


def _dp_optimum(t: DensityTree, x, alpha):
    """min over prunings of R(T) + alpha |T| of the fully grown tree ``t`` (dynamic programming on
    node boxes rebuilt from the splits; counts by brute force)."""
    N = len(x)
    lo0, hi0 = np.asarray(t.domain.lo, float) * np.ones(x.shape[1]), np.asarray(t.domain.hi, float) * np.ones(x.shape[1])

    def rec(node, lo, hi, pts):
        R = -(len(pts) ** 2) / (N**2 * np.prod(hi - lo)) + alpha
        if t.dim[node] < 0:
            return R
        j, s = t.dim[node], t.split[node]
        lhi, rlo = hi.copy(), lo.copy()
        lhi[j], rlo[j] = s, s
        m = pts[:, j] < s
        return min(R, rec(t.left[node], lo, lhi, pts[m]) + rec(t.right[node], rlo, hi, pts[~m]))

    return rec(0, lo0, hi0, x)


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 5e-3, 2e-2, 0.1])
def test_pruning_at_alpha_is_the_cost_complexity_optimum(alpha):
    x = bump(250, 5)
    full = tree(x, Box(0, 1), folds=None)
    t = tree(x, Box(0, 1), alpha=alpha)
    risk = -float(np.sum(t.counts.astype(float) ** 2 / (len(x) ** 2 * t.volumes))) + alpha * t.num_leaves
    assert risk == pytest.approx(_dp_optimum(full, x, alpha), abs=1e-12)
    assert t.num_leaves <= full.num_leaves


def test_cross_validation_finds_the_two_piece_density():
    x, z = two_piece(4000, 0), two_piece(20000, 1)
    t = tree(x, Box(0, 1), folds=5)
    assert t.num_leaves == 2 and int(t.dim[0]) == 0 and abs(t.split[0] - 0.3) < 0.01
    lp = t.log_prob(z)
    H = two_piece_entropy()
    nll, se = -lp.mean(), lp.std(ddof=1) / math.sqrt(len(lp))
    assert nll > H - 3 * se and nll - H < 0.01
    assert abs(t.entropy() - H) < 0.02
    full = tree(x, Box(0, 1), folds=None)
    assert -full.log_prob(z).mean() > nll + 0.05  # pruning pays on held-out data
    best = min(t.cv, key=lambda r: r[2])
    assert best[0] == t.alpha and best[1] == 2


@pytest.mark.parametrize("d,n", [(2, 3000), (4, 3000)])
def test_density_integrates_to_one_and_nll_not_below_entropy(d, n):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(n, d)).clip(-5, 5)
    box = Box(-5, 5)
    t = tree(x, box, folds=5)
    u = np.random.default_rng(7).uniform(-5, 5, size=(200_000, d))  # independent MC: E_U[p] * V = 1
    assert abs(np.mean(np.exp(t.log_prob(u))) * 10.0**d - 1) < 0.05
    assert abs(np.sum(t.probabilities) - 1) < 1e-12 and abs(t.volumes.sum() - 10.0**d) < 1e-6 * 10.0**d
    z = np.random.default_rng(8).normal(size=(20000, d)).clip(-5, 5)
    lp = t.log_prob(z)
    H = 0.5 * d * math.log(2 * math.pi * math.e)
    assert -lp.mean() > H - 3 * lp.std(ddof=1) / math.sqrt(len(lp))


def test_entropy_and_samples_are_the_trees_own():
    x = bump(1500, 9)
    t = tree(x, Box(0, 1), folds=5)
    s = t.sample(40_000, 0)
    assert s.shape == (40_000, 2) and np.all((s >= 0) & (s <= 1))
    freq = np.bincount(t.index(s), minlength=t.num_leaves) / len(s)
    z = (freq - t.probabilities) / np.sqrt(t.probabilities * (1 - t.probabilities) / len(s))
    assert np.max(np.abs(z)) < 5
    lp = t.log_prob(s)
    assert abs(-lp.mean() - t.entropy()) < 4 * lp.std() / math.sqrt(len(s)) + 1e-9


def test_outside_points_error_or_minus_inf():
    x = bump(300, 0)
    t = tree(x, Box(0, 1), folds=None)
    with pytest.raises(ValueError, match="x: 1 point"):
        t.log_prob(np.array([[0.5, 0.5], [1.5, 0.5]]))
    lp = t.log_prob(np.array([[0.5, 0.5], [1.5, 0.5]]), outside="-inf")
    assert np.isfinite(lp[0]) and lp[1] == -np.inf


@pytest.mark.parametrize("kwargs,match", [
    (dict(domain=None), "domain: a density needs a bounded"),
    (dict(domain=(0, 1)), "domain: expected a partax.Box"),
    (dict(domain=Box([0, 0, 0], [1, 1, 1])), "domain: a Box of dimension 3"),
    (dict(x=np.zeros((0, 2))), "x: expected at least one point"),
    (dict(x=np.full((5, 2), 2.0)), "x: 5 point"),
    (dict(x=np.array([[np.nan, 0.5]])), "x: expected finite"),
    (dict(folds=1), "folds: expected an int >= 2"),
    (dict(folds=10_000), "folds: expected at most N"),
    (dict(min_leaf_size=0), "min_leaf_size"),
    (dict(max_leaf_size=2), "max_leaf_size: expected an int >= 5"),
    (dict(alpha=-1.0), "alpha: expected a finite number"),
    (dict(backend="sklearn"), "backend: expected one of"),
])
def test_bad_arguments(kwargs, match):
    args = dict(x=bump(100, 0), domain=Box(0, 1))
    args.update(kwargs)
    x, dom = args.pop("x"), args.pop("domain")
    with pytest.raises((ValueError, TypeError), match=match):
        tree(x, dom, **args)


def test_mlpack_backend_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlpack", None)  # import mlpack now raises ImportError
    with pytest.raises(ImportError, match="backend: 'mlpack' needs the mlpack Python package"):
        tree(bump(100, 0), Box(0, 1), backend="mlpack")


@pytest.mark.skipif(not HAVE_MLPACK, reason="mlpack is not installed (not a partax dependency)")
@pytest.mark.parametrize("n,d", [(500, 2), (800, 3)])
def test_grown_tree_is_mlpacks(n, d):
    x = bump(n, n + d, d)
    box = Box(x.min(0), x.max(0))  # mlpack's root is the data's bounding box
    ours = tree(x, box, folds=None)
    theirs = tree(x, box, folds=None, backend="mlpack")
    z = bump(3000, 1, d)
    z = z[np.all((z >= x.min(0)) & (z <= x.max(0)), axis=1)]
    np.testing.assert_allclose(ours.log_prob(z), theirs.log_prob(z), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.log_prob(x), theirs.train_log_prob, rtol=0, atol=1e-9)
    assert ours.entropy() == pytest.approx(theirs.entropy(), abs=1e-9)


@pytest.mark.skipif(not HAVE_MLPACK, reason="mlpack is not installed (not a partax dependency)")
def test_cross_validated_tree_is_no_worse_than_mlpacks():
    x = bump(2000, 11)
    box = Box(0, 1)
    ours = tree(x, box, folds=10)
    theirs = tree(x, box, folds=10, backend="mlpack")
    z = bump(20000, 12)
    z = z[np.all((z >= x.min(0)) & (z <= x.max(0)), axis=1)]  # mlpack: density 0 outside its root
    diff = ours.log_prob(z) - theirs.log_prob(z)
    assert np.all(np.isfinite(diff))
    # paired: our held-out log-likelihood is not below mlpack's by more than 3 standard errors
    assert diff.mean() > -3 * diff.std(ddof=1) / math.sqrt(len(diff))


# --- the densities' shared point checks (partax.geometry.domains.check_points / inside_box) -------
@pytest.mark.parametrize("x, match", [
    (np.zeros((0, 2)), "x: expected at least one point"),
    (np.zeros((3, 3)), r"x: expected shape \(N, 2\)"),
    (np.array([[0.5, np.inf]]), "x: expected finite points"),
    (np.array([["a", "b"]]), "x: expected a numeric array"),
    (np.array([[0.5, 0.5], [0.5, 1.0 + 1e-12], [-1e-9, 0.2]]), r"x: 2 point\(s\) outside the domain box \(first: row 1"),
])
def test_point_checks_are_shared(x, match):
    """The tree, the grid and the checks themselves refuse the same points with the same words."""
    from partax import density

    t = tree(bump(100, 0), Box(0, 1), folds=None)
    g = density.grid(bump(100, 0), Box(0, 1), 4)
    fits = [lambda z: inside_box(check_points(z, 2), np.zeros(2), np.ones(2))]
    if x.shape[1:] == (2,):  # (fitting takes the dimension from the data)
        fits += [lambda z: tree(z, Box(0, 1), folds=None), lambda z: density.grid(z, Box(0, 1), 4)]
    for fn in fits:
        with pytest.raises((ValueError, TypeError), match=match):
            fn(x)
    if x.shape[0]:  # (an empty batch of points to score is fine)
        for fn in (t.log_prob, g.log_prob):
            with pytest.raises((ValueError, TypeError), match=match):
                fn(x)


def test_inside_box_is_the_closed_box():
    rng = np.random.default_rng(0)
    lo, hi = np.array([0.0, -1.0, 2.0]), np.array([1.0, 0.5, 2.25])
    x = rng.uniform(lo - 0.2, hi + 0.2, (500, 3))
    x[:20] = np.where(rng.uniform(size=(20, 3)) < 0.5, lo, hi)  # corners: in the closed box
    expect = np.array([all(lo[j] <= v[j] <= hi[j] for j in range(3)) for v in x])
    np.testing.assert_array_equal(inside_box(x, lo, hi, "-inf"), expect)
    assert expect[:20].all() and not expect.all()
    np.testing.assert_array_equal(inside_box(x, lo, hi, "-inf", inside=~expect), ~expect)  # a given answer is kept
    with pytest.raises(ValueError, match="outside: expected one of"):
        inside_box(x, lo, hi, "ignore")
    assert check_points(np.ones((2, 3), np.float32), 3).dtype == np.float32
    assert check_points(np.ones((2, 3), np.int32), None).dtype == np.float64
    assert check_outside("error") == "error"


def test_baselines_compare_checks_its_points():
    """``density_baselines.compare`` takes its points through the shared checks (names, NaN)."""
    from partax.density_baselines import compare
    from partax.geometry import Box

    good = np.random.default_rng(0).random((20, 2))
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x_train: expected finite points"):
        compare(bad, good, Box(0.0, 1.0))
    with pytest.raises(ValueError, match="x_test"):
        compare(good, good[:, :1], Box(0.0, 1.0))
