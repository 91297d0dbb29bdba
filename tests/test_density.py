"""partax.density: regions-as-bins densities, checked against closed forms and NumPy oracles.

Oracles: ``numpy.histogram2d`` / ``histogramdd`` (a net whose partition is a grid), the box
volume, closed-form entropies (checkerboard ``ln 32``, Gaussian ``(d/2) ln(2 pi e)``), and
independent NumPy Monte Carlo (uniform samples of the box, drawn here, not by the module).
"""

import math

import jax
import numpy as np
import pytest

import partax
from partax import density
from partax.geometry import Box, enumerate_regions

H_CHECKER = math.log(32.0)


def checkerboard(n, seed):
    """FFJORD's checkerboard on [-4, 4]^2: uniform on 8 of the 16 unit-2 squares (entropy ln 32)."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return (np.stack([x1, x2], 1) * 2).astype(np.float32).astype(np.float64)


def grid_net(edges_x, edges_y):
    """A 2-K-1 ReLU net whose layer-1 units are x_0 - c (interior x edges) and x_1 - c (y edges):
    its layer-1 prefix partition is exactly the grid of those edges."""
    cx, cy = np.asarray(edges_x[1:-1]), np.asarray(edges_y[1:-1])
    W = np.zeros((2, len(cx) + len(cy)), np.float32)
    W[0, : len(cx)] = 1
    W[1, len(cx):] = 1
    b = -np.concatenate([cx, cy]).astype(np.float32)
    return partax.Net.from_arrays([W, b, np.ones((W.shape[1], 1), np.float32), np.zeros(1, np.float32)])


@pytest.fixture(scope="module")
def random_net():
    return partax.mlp(jax.random.key(3), [2, 12, 12, 1], bias_std=1.0)


@pytest.fixture(scope="module")
def checker_data():
    return checkerboard(4000, 0), checkerboard(4000, 1)


# --- item 2: exactness ---------------------------------------------------------------------
def test_exact_volumes_sum_to_box_and_density_integrates(random_net, checker_data):
    box = Box(-4, 4)
    dens = density.estimate(random_net, checker_data[0], box)
    assert dens.volume_method == "exact" and dens.resolved.all()
    assert abs(dens.volumes.sum() - 64.0) < 1e-9
    assert np.all(dens.volumes > 0) and np.all(dens.volume_stderr == 0)
    assert dens.counts.sum() == 4000
    # the density integrates to 1, exactly from the volumes ...
    assert abs(np.exp(dens.log_densities) @ dens.volumes - 1.0) < 1e-12
    # ... and by independent Monte Carlo of log_prob: E_U[p(U)] * vol(box) = 1
    u = np.random.default_rng(7).uniform(-4, 4, (40000, 2))
    w = np.exp(dens.log_prob(u)) * 64.0
    assert abs(w.mean() - 1.0) < 4 * w.std() / math.sqrt(len(w))


@pytest.fixture(scope="module")
def mc_checker(random_net, checker_data):
    return density.estimate(random_net, checker_data[0], Box(-4, 4), volumes="mc", num_reference=1 << 16)


def test_mc_volumes_sum_to_box_and_integrate(mc_checker):
    dens = mc_checker
    assert dens.volume_method == "mc" and not dens.resolved[-1] and dens.resolved[:-1].all()
    assert np.all(dens.volumes > 0), "no region, the residual included, may get volume 0"
    assert abs(dens.volumes.sum() - 64.0) < 1e-9
    assert dens.reference_hits.sum() == 1 << 16 and dens.counts.sum() == 4000
    assert abs(np.exp(dens.log_densities) @ dens.volumes - 1.0) < 1e-12
    u = np.random.default_rng(8).uniform(-4, 4, (40000, 2))
    w = np.exp(dens.log_prob(u)) * 64.0
    assert abs(w.mean() - 1.0) < 4 * w.std() / math.sqrt(len(w))


def test_mc_volumes_agree_with_exact_within_stderr(random_net):
    x = checkerboard(500, 2)
    exact = density.estimate(random_net, x, Box(-4, 4), volumes="exact")
    mc = density.estimate(random_net, x, Box(-4, 4), volumes="mc", num_reference=1 << 17, key=5)
    rk = mc.keys[mc.resolved]
    pos = np.searchsorted(exact.keys, rk)
    assert np.all(exact.keys[np.minimum(pos, len(exact.keys) - 1)] == rk), "MC found a region the enumeration lacks"
    hits = mc.reference_hits[mc.resolved]
    ok = hits >= 20
    assert ok.sum() >= 20
    z = (mc.volumes[mc.resolved][ok] - exact.volumes[pos[ok]]) / mc.volume_stderr[mc.resolved][ok]
    assert np.max(np.abs(z)) < 5.0
    assert 0.5 < np.mean(z**2) < 1.6  # the standard errors are the right size, not just large
    # the regions the reference stream missed are small: their exact total is of the order of the residual
    missed = np.setdiff1d(np.arange(len(exact.keys)), pos)
    assert exact.volumes[missed].sum() < 10 * mc.volumes[-1] + 1e-3


@pytest.mark.parametrize("edges_x, edges_y", [
    (np.linspace(-4, 4, 9), np.linspace(-4, 4, 9)),
    (np.array([-4, -2.5, -1, 0, 0.5, 2, 4.0]), np.array([-4, -3, -1.5, 1, 3.25, 4.0])),
])
def test_grid_net_reproduces_histogram2d(edges_x, edges_y, checker_data):
    x, xt = checker_data
    net = grid_net(edges_x, edges_y)
    dens = density.estimate(net, x, Box(-4, 4), layer=1, smoothing=0.0)
    assert dens.num_regions == (len(edges_x) - 1) * (len(edges_y) - 1)
    h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges_x, edges_y], density=True)
    # at every training and test point (no point of float32 data lies on an edge here)
    for pts in (x, xt):
        assert not np.isin(pts, np.concatenate([edges_x, edges_y])).any()
        ix = np.searchsorted(edges_x, pts[:, 0], side="right") - 1
        iy = np.searchsorted(edges_y, pts[:, 1], side="right") - 1
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(dens.log_prob(pts), np.log(h[ix, iy]), rtol=1e-12, atol=0)
    # and over the whole table: every cell's density at its centre
    cx, cy = (edges_x[:-1] + edges_x[1:]) / 2, (edges_y[:-1] + edges_y[1:]) / 2
    centres = np.stack(np.meshgrid(cx, cy, indexing="ij"), -1).reshape(-1, 2)
    np.testing.assert_allclose(np.exp(dens.log_prob(centres)), h.ravel(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.sort(dens.volumes), np.sort(np.outer(np.diff(edges_x), np.diff(edges_y)).ravel()),
                               rtol=1e-12)


def test_grid_baseline_matches_histogramdd():
    rng = np.random.default_rng(4)
    x = rng.beta(2, 5, (3000, 3))
    g = density.grid(x, Box(0, 1), [4, 5, 3], smoothing=0)
    h, edges = np.histogramdd(x, bins=[4, 5, 3], range=[(0, 1)] * 3, density=True)
    idx = tuple(np.clip(np.searchsorted(e, x[:, j], side="right") - 1, 0, len(e) - 2) for j, e in enumerate(edges))
    np.testing.assert_allclose(np.exp(g.log_prob(x)), h[idx], rtol=1e-12)
    # smoothing: p = (n + a) / (N + aK) / V_cell, mass 1 in total, empty cells included
    gs = density.grid(x, Box(0, 1), [4, 5, 3], smoothing=0.5)
    centres = np.stack(np.meshgrid(*[(e[:-1] + e[1:]) / 2 for e in edges], indexing="ij"), -1).reshape(-1, 3)
    counts, _ = np.histogramdd(x, bins=edges)
    np.testing.assert_allclose(np.exp(gs.log_prob(centres)), (counts.ravel() + 0.5) / (3000 + 0.5 * 60) * 60, rtol=1e-12)
    p = (counts.ravel() + 0.5) / (3000 + 30)
    assert abs(gs.entropy() - float(-np.sum(p * np.log(p * 60)))) < 1e-12


def test_entropy_is_the_fitted_densitys_own(random_net, checker_data):
    """entropy() = -E_p[log p] of the fitted density, checked by Monte Carlo of its own samples
    (which also checks sample(): a wrong sampler biases this average)."""
    dens = density.estimate(random_net, checker_data[0], Box(-4, 4))
    s = dens.sample(20000, jax.random.key(1))
    assert s.shape == (20000, 2) and np.all(np.abs(s) <= 4)
    lp = dens.log_prob(s)
    assert abs(-lp.mean() - dens.entropy()) < 4 * lp.std() / math.sqrt(len(lp))
    mm = dens.entropy("miller_madow")
    assert mm == pytest.approx(dens.entropy() + (int((dens.counts > 0).sum()) - 1) / 8000, abs=1e-12)


@pytest.mark.parametrize("volumes", ["exact", "mc"])
def test_sample_region_frequencies_match_probabilities(volumes):
    net = grid_net(np.array([-4, -1, 0, 2.5, 4.0]), np.linspace(-4, 4, 5))
    dens = density.estimate(net, checkerboard(2000, 3), Box(-4, 4), layer=1, volumes=volumes,
                            num_reference=1 << 14)
    s = dens.sample(16000, 3)
    assert s.shape == (16000, 2) and np.all(np.abs(s) <= 4)
    freq = np.bincount(dens.index(s), minlength=dens.num_regions)
    exp = dens.probabilities * 16000
    keep = exp > 0.5  # (the MC residual bin of a 16-cell grid is never hit)
    chi2 = float(np.sum((freq[keep] - exp[keep]) ** 2 / exp[keep]))
    assert chi2 < 15 + 6 * math.sqrt(2 * 15)  # 16 cells: 15 degrees of freedom
    # within a region the samples are uniform: per cell, the mean is the cell's centre
    i = dens.index(s)
    big = np.flatnonzero(freq > 500)
    for r in big:
        pts = s[i == r]
        lo, hi = pts.min(0), pts.max(0)
        assert np.all(np.abs(pts.mean(0) - (lo + hi) / 2) < 4 * (hi - lo) / math.sqrt(12 * len(pts)))


def test_test_nll_not_below_true_entropy(random_net, checker_data):
    """E[-log q(X)] = H(p) + KL(p||q) >= H(p): no estimator's test NLL may be below the true
    entropy by more than 3 standard errors (checkerboard, H = ln 32)."""
    x, xt = checker_data
    box = Box(-4, 4)
    ests = {
        "partition_exact": density.estimate(random_net, x, box),
        "partition_mc": density.estimate(random_net, x, box, volumes="mc", num_reference=1 << 16),
        "grid": density.grid(x, box, 16),
        "kde": density.kde(x),
    }
    for name, est in ests.items():
        r = density.heldout_loglik(est, xt)
        assert r.n == 4000 and r.num_zero == 0
        assert -r.mean > H_CHECKER - 3 * r.stderr, name
    # the grid aligned with the board is nearly the true density
    r = density.heldout_loglik(density.grid(x, box, 4), xt)
    assert abs(-r.mean - H_CHECKER) < 0.02


def test_knn_entropy_closed_forms():
    g = np.random.default_rng(0).normal(size=(5000, 3))
    assert abs(density.knn_entropy(g, 3) - 1.5 * math.log(2 * math.pi * math.e)) < 0.06
    assert abs(density.knn_entropy(checkerboard(5000, 5), 4) - H_CHECKER) < 0.1
    with pytest.raises(ValueError, match="duplicate"):
        density.knn_entropy(np.zeros((10, 2)), 3)


def test_kde_cv_picks_an_interior_bandwidth():
    x = np.random.default_rng(1).normal(size=(2000, 2))
    k = density.kde(x)
    fs = [f for f, _ in k.cv_loglik]
    assert fs[0] < k.factor < fs[-1]
    xt = np.random.default_rng(2).normal(size=(2000, 2))
    r = density.heldout_loglik(k, xt)
    assert math.log(2 * math.pi * math.e) - 3 * r.stderr < -r.mean < math.log(2 * math.pi * math.e) + 0.1


def test_backoff_to_the_nearest_occupied_ancestor(random_net, checker_data):
    """Oracle: the layer-1 regions enumerated on their own (their own exact volumes), the
    children mapped to parents by their interior points, the back-off rule written out."""
    x = checker_data[0][:300]
    box = Box(-4, 4)
    dens = density.estimate(random_net, x, box, backoff=True)
    assert dens.backoff and dens.smoothing == 0
    assert abs(dens.probabilities.sum() - 1) < 1e-12 and np.all(dens.probabilities > 0)
    child = enumerate_regions(random_net, box, layer=2, progress=False)
    parent = enumerate_regions(random_net, box, layer=1, progress=False)
    assert np.array_equal(child.keys, dens.keys)
    ids = partax.region_ids(random_net, child.points.astype(np.float32))
    tr = partax.region_ids(random_net, x.astype(np.float32))
    q = np.empty(len(child.keys))
    levels = {"own": 0, "parent": 0, "box": 0}
    for r in range(len(child.keys)):
        n_r = int(np.sum(tr[:, 1] == child.keys[r]))
        n_p = int(np.sum(tr[:, 0] == ids[r, 0]))
        if n_r:
            q[r] = n_r / child.volumes[r] / len(x); levels["own"] += 1
        elif n_p:
            q[r] = n_p / parent.volumes[np.searchsorted(parent.keys, ids[r, 0])] / len(x); levels["parent"] += 1
        else:
            q[r] = 1 / 64.0; levels["box"] += 1
    assert min(levels.values()) > 0, levels  # all three cases occur
    mass = q * child.volumes
    np.testing.assert_allclose(dens.probabilities, mass / mass.sum(), rtol=1e-10)
    np.testing.assert_allclose(dens.log_prob(child.points), np.log(q / mass.sum()), rtol=1e-10)
    # the same rule with Monte Carlo volumes: close to the exact one
    mc = density.estimate(random_net, x, box, backoff=True, volumes="mc", num_reference=1 << 17)
    assert abs(mc.probabilities.sum() - 1) < 1e-12
    u = np.random.default_rng(3).uniform(-4, 4, (20000, 2))
    assert np.mean(np.abs(mc.log_prob(u) - dens.log_prob(u))) < 0.1
    with pytest.raises(ValueError, match="smoothing"):
        density.estimate(random_net, x, box, backoff=True, smoothing=0.5)


# --- bad input -----------------------------------------------------------------------------
def test_outside_points_error_or_minus_inf(random_net, checker_data):
    dens = density.estimate(random_net, checker_data[0], Box(-4, 4))
    bad = np.array([[0.0, 0.0], [4.5, 0.0]])
    with pytest.raises(ValueError, match="outside"):
        dens.log_prob(bad)
    lp = dens.log_prob(bad, outside="-inf")
    assert np.isfinite(lp[0]) and lp[1] == -np.inf
    assert density.heldout_loglik(dens, bad, outside="-inf").num_zero == 1
    with pytest.raises(ValueError, match="outside"):
        density.grid(checker_data[0], Box(-1, 1), 4)
    with pytest.raises(ValueError, match="outside"):
        density.estimate(random_net, bad, Box(-4, 4))


def test_bad_arguments(random_net):
    x = checkerboard(100, 0)
    with pytest.raises(ValueError, match="domain"):
        density.estimate(random_net, x, None)
    with pytest.raises(ValueError, match="domain"):
        density.estimate(random_net, x, Box([-4, -4, -4], [4, 4, 4]))
    with pytest.raises(TypeError, match="domain"):
        density.estimate(random_net, x, (-4, 4))
    with pytest.raises(ValueError, match="x"):
        density.estimate(random_net, np.zeros((0, 2)), Box(-4, 4))
    with pytest.raises(ValueError, match="x"):
        density.estimate(random_net, np.zeros((5, 3)), Box(-4, 4))
    with pytest.raises(ValueError, match="finite"):
        density.estimate(random_net, np.full((5, 2), np.nan), Box(-4, 4))
    with pytest.raises(ValueError, match="smoothing"):
        density.estimate(random_net, x, Box(-4, 4), smoothing=-1)
    with pytest.raises(ValueError, match="volumes"):
        density.estimate(random_net, x, Box(-4, 4), volumes="vertex")
    with pytest.raises(ValueError, match="scope"):
        density.estimate(random_net, x, Box(-4, 4), scope="regions")
    with pytest.raises(ValueError, match="layer"):
        density.estimate(random_net, x, Box(-4, 4), layer=3)
    with pytest.raises(TypeError, match="net"):
        density.estimate("net", x, Box(-4, 4))
    with pytest.raises(ValueError, match="bins"):
        density.grid(x, Box(-4, 4), 0)
    with pytest.raises(ValueError, match="k"):
        density.knn_entropy(x, 0)
    # two reference samples in two regions: every sample a region of its own, no volume known
    with pytest.raises(RuntimeError, match="num_reference: each of the 2 reference samples"):
        density.estimate(random_net, x, Box(-4, 4), volumes="mc", num_reference=2)


def test_layer_and_suffix_scopes_at_layer_1_are_input_partitions(random_net):
    x = checkerboard(300, 0)
    box = Box(-4, 4)
    lay = density.estimate(random_net, x, box, scope="layer", layer=1)
    suf = density.estimate(random_net, x, box, scope="suffix", layer=1)
    assert lay.layer == 1 and suf.layer == 2
    ids = partax.region_ids(random_net, x.astype(np.float32), "layer")[:, 0]
    np.testing.assert_array_equal(np.unique(ids), lay.keys[lay.counts > 0])
    ids = partax.region_ids(random_net, x.astype(np.float32), "suffix")[:, 0]
    np.testing.assert_array_equal(np.unique(ids), suf.keys[suf.counts > 0])


def test_exact_refuses_an_incomplete_enumeration(random_net):
    with pytest.raises(RuntimeError, match="complete"):
        density.estimate(random_net, checkerboard(100, 0), Box(-4, 4), max_regions=3)


def test_mc_in_higher_dimension_and_residual_bin():
    """8-D: 'auto' chooses Monte Carlo; training points in regions no reference sample hit are
    counted in the explicit residual bin, whose volume is positive."""
    net = partax.mlp(jax.random.key(0), [8, 16, 16, 1], bias_std=0.5)
    x = np.random.default_rng(0).uniform(-1, 1, (500, 8))
    dens = density.estimate(net, x, Box(-1, 1), num_reference=4096)
    assert dens.volume_method == "mc" and dens.volumes[-1] > 0
    assert abs(dens.volumes.sum() - 2.0**8) < 1e-9
    assert dens.counts.sum() == 500
    # the residual gets exactly the training points whose region no reference sample hit
    ref = partax.sources.uniform_box(-np.ones(8), np.ones(8), 4096, jax.random.key(0))
    ref_keys = np.unique(partax.region_ids(net, np.asarray(ref.inputs_at(range(4096))))[:, -1])
    train_keys = partax.region_ids(net, x.astype(np.float32))[:, -1]
    assert dens.counts[-1] == int(np.sum(~np.isin(train_keys, ref_keys)))
    assert np.isfinite(dens.entropy())


def test_smoothing_default_is_the_documented_jeffreys_half():
    """DESIGN 3.11: ``smoothing=0.5`` is the default; with backoff the default becomes 0."""
    import inspect

    assert repr(inspect.signature(density.estimate).parameters["smoothing"].default) == "0.5"
    x = checkerboard(500, 0)
    net = grid_net(np.linspace(-4, 4, 5), np.linspace(-4, 4, 5))
    dens = density.estimate(net, x, Box(-4, 4), layer=1)
    assert dens.smoothing == 0.5
    # the oracle: (n + 1/2) / (N + K/2) / V_cell from numpy.histogram2d counts
    h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=4, range=[[-4, 4], [-4, 4]])
    expect = np.sort(((h + 0.5) / (500 + 16 * 0.5) / 4.0).ravel())
    np.testing.assert_allclose(np.sort(np.exp(dens.log_densities)), expect, rtol=1e-12)
    assert density.estimate(net, x, Box(-4, 4), layer=1, backoff=True).smoothing == 0
    assert density.estimate(net, x, Box(-4, 4), layer=1, smoothing=0.5).smoothing == 0.5


# --- log_prob's lookup (one jitted kernel: box, code, key, row) against NumPy oracles ---------
def _oracle_log_prob(dens, x):
    """The row of each point from a Python dict of the density's keys, looked up by the net's own
    region keys (``partax.region_ids`` on the points cast to the net's dtype), the box tested in
    float64 NumPy, unknown keys in the residual row (Monte Carlo)."""
    x = np.asarray(x)
    lo, hi = dens.domain.bounds(dens.net.input_dim)
    x64 = x.astype(np.float64)
    inside = np.all((x64 >= lo) & (x64 <= hi), axis=1)
    keys = partax.region_ids(dens.net, x.astype(np.float32), "prefix")[:, dens.layer - 1]
    row = {int(k): i for i, k in enumerate(dens.keys) if dens.resolved[i]}
    idx = np.array([row.get(int(k), len(dens.keys) - 1) for k in keys], np.int64)
    return np.where(inside, dens.log_densities[idx], -np.inf), np.where(inside, idx, -1)


@pytest.fixture(scope="module")
def mc8():
    net = partax.mlp(jax.random.key(1), [8, 16, 16, 1], bias_std=0.3)
    x = np.random.default_rng(0).uniform(-1, 1, (3000, 8))
    return density.estimate(net, x, Box(-1, 1), num_reference=4096, key=3)  # (the sizes of the 8-D test above)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("n", [1, 7, 1000, (1 << 16) + 3])
def test_log_prob_matches_the_oracle_exactly(mc8, dtype, n):
    """Bit-identical to the NumPy oracle for every input dtype and batch sizes across the kernel's
    chunks (``2^16`` inputs each, the last one padded), with points outside the box and on its
    faces; Monte Carlo volumes, so keys the reference missed land in the residual row."""
    rng = np.random.default_rng(n)
    x = rng.uniform(-1.2, 1.2, (n, 8))
    x[: n // 3] = np.clip(x[: n // 3], -1, 1)  # a third on or inside the faces
    x = np.round(x * 1.5) if dtype is np.int64 else x  # integers -2..2: some outside
    x = x.astype(dtype)
    lp, idx = _oracle_log_prob(mc8, x)
    np.testing.assert_array_equal(mc8.log_prob(x, outside="-inf"), lp)
    got = mc8.index(x, outside="-inf")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, idx)
    if n > 100 and dtype is not np.int64:
        assert np.isneginf(lp).any() and np.isfinite(lp).any() and np.any(idx == len(mc8.keys) - 1)


def test_log_prob_exact_volumes_matches_the_oracle(random_net, checker_data):
    dens = density.estimate(random_net, checker_data[0], Box(-4, 4))
    x = np.random.default_rng(3).uniform(-4.5, 4.5, (5000, 2))
    for xs in (x, x.astype(np.float32)):
        lp, _ = _oracle_log_prob(dens, xs)
        np.testing.assert_array_equal(dens.log_prob(xs, outside="-inf"), lp)


@pytest.mark.parametrize("lo, hi", [(-0.7, 0.7), (0.1, 1.3), ([-0.3, -2.2], [np.pi / 10, 1e-3])])
def test_box_test_is_the_float64_one_at_the_faces(mc_checker, lo, hi):
    """The kernel tests the box on float32 inputs with its bounds rounded inwards: a float32
    point is inside iff it is in float64 (0.7 is not a float32: float32(0.7) < 0.7 is inside,
    the next float32 up is outside); float64 inputs are tested in float64 before any rounding.
    (One Monte Carlo density with its box replaced: every point of the new box has a row, its
    region's or the residual, so ``log_prob`` is finite exactly inside.)"""
    box = Box(lo, hi)
    blo, bhi = box.bounds(2)
    dens = mc_checker._replace(domain=box)
    f = np.float32
    faces = []
    for j in range(2):
        for v in (blo[j], bhi[j]):
            for w in (np.nextafter(f(v), f(-np.inf)), f(v), np.nextafter(f(v), f(np.inf))):
                p = ((blo + bhi) / 2).astype(f)
                p[j] = w
                faces.append(p)
    x32 = np.array(faces, f)
    inside = np.all((x32.astype(np.float64) >= blo) & (x32.astype(np.float64) <= bhi), axis=1)
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_array_equal(np.isfinite(dens.log_prob(x32, outside="-inf")), inside)
    x64 = np.concatenate([blo[None] - 1e-12, bhi[None] + 1e-12, blo[None], bhi[None]])
    np.testing.assert_array_equal(np.isfinite(dens.log_prob(x64, outside="-inf")), [False, False, True, True])
    with pytest.raises(ValueError, match=r"x: 2 point\(s\) outside the domain box \(first: row 0"):
        dens.log_prob(x64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_prob_non_finite_and_outside_errors(mc8, dtype):
    x = np.zeros((10, 8), dtype)
    x[4, 2] = 3.0
    with pytest.raises(ValueError, match=r"x: 1 point\(s\) outside the domain box \(first: row 4"):
        mc8.log_prob(x)
    x[7, 0] = np.nan  # finiteness is checked first, whatever outside= says
    for outside in ("error", "-inf"):
        with pytest.raises(ValueError, match="x: expected finite points"):
            mc8.log_prob(x, outside=outside)
    with pytest.raises(ValueError, match="outside: expected one of"):
        mc8.log_prob(x[:3], outside="nan")
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 8\)"):
        mc8.log_prob(np.zeros((3, 7), dtype))
    assert mc8.log_prob(np.zeros((0, 8), dtype)).shape == (0,)


def test_lookup_in_crowded_buckets_and_unsorted_rows(mc8):
    """The table is bucketed by the keys' top bits; keys crowding one bucket (decoys that share a
    real key's top 32 bits) and rows in any order (not sorted by key) give the same rows."""
    x = np.random.default_rng(5).uniform(-1, 1, (4000, 8)).astype(np.float32)
    base = mc8.log_prob(x)
    res = mc8.resolved
    k = mc8.keys[res]
    decoys = np.unique(np.concatenate([k[:50] ^ np.uint64(v) for v in range(1, 40)]))
    decoys = np.setdiff1d(decoys, k)
    keys = np.concatenate([k, decoys])
    order = np.argsort(keys)
    n_dec = len(decoys)

    def grown(a, fill):
        return np.concatenate([a[res], np.full(n_dec, fill, a.dtype)])[order].tolist() + a[~res].tolist()

    crowded = mc8._replace(keys=np.array(grown(mc8.keys, 0), np.uint64),
                           counts=np.array(grown(mc8.counts, 0), np.int64),
                           volumes=np.array(grown(mc8.volumes, 1.0), np.float64),
                           volume_stderr=np.array(grown(mc8.volume_stderr, 0.0), np.float64),
                           resolved=np.array(grown(mc8.resolved, True), bool), mass=None, reference_hits=None)
    lp = crowded.log_prob(x)
    real = np.isin(crowded.keys, k) | ~crowded.resolved
    np.testing.assert_array_equal(np.isin(crowded.index(x), np.flatnonzero(real)), True)
    # the same mass and volume per real row, renormalised by the decoys' pseudo-counts only
    shift = np.log(mc8.total + mc8.smoothing * mc8.num_regions) - np.log(crowded.total + crowded.smoothing
                                                                          * crowded.num_regions)
    np.testing.assert_allclose(lp, base + shift, rtol=0, atol=1e-12)
    perm = np.random.default_rng(0).permutation(int(res.sum()))
    shuffled = mc8._replace(**{f: np.concatenate([getattr(mc8, f)[res][perm], getattr(mc8, f)[~res]])
                               for f in ("keys", "counts", "volumes", "volume_stderr", "resolved")},
                            reference_hits=None)
    np.testing.assert_array_equal(shuffled.log_prob(x), base)


def test_float64_code_fallback_near_a_boundary():
    """Exact volumes: a float32 point whose float32 code names a region that has no volume in the
    box (here: a corner where the float32 pre-activation rounds to 0 but the float64 one is
    positive) is looked up again by its float64 code, and counted in ``float64_lookups``."""
    f = np.float32
    rng = np.random.default_rng(0)
    for _ in range(1000):
        a, c = rng.uniform(0.3, 3, 2).astype(f)
        x = rng.uniform(0.2, 0.9, (1, 2)).astype(f)
        t = f(f(a * x[0, 0]) + f(c * x[0, 1]))
        W = np.array([[a, 1, 0], [c, 0, 1]], f)
        b = np.array([-t, -x[0, 0] - 0.5, -x[0, 1] - 0.5], f)
        net = partax.Net.from_arrays([W, b, np.ones((3, 1), f), np.zeros(1, f)])
        z32 = float(np.asarray(net.preactivations(x)[0])[0, 0])
        z64 = float(x[0].astype(np.float64) @ W[:, 0].astype(np.float64) + float(b[0]))
        if z32 <= 0 < z64:
            break
    else:
        pytest.skip("no float32/float64 disagreement found on this platform")
    box = Box(x[0].astype(np.float64), x[0].astype(np.float64) + 1)  # the unit is active on the whole box
    train = x[0].astype(np.float64) + rng.uniform(0, 1, (50, 2))
    dens = density.estimate(net, np.concatenate([train, x.astype(np.float64)]), box)
    assert dens.float64_lookups == 1 and dens.counts.sum() == 51
    assert partax.region_ids(net, x)[0, 0] not in dens.keys  # the float32 code's region is not in the box
    inner = (x + f(1e-3)).astype(f)  # the same region by both codes
    assert dens.index(x)[0] == dens.index(inner)[0] >= 0
    assert dens.log_prob(x)[0] == dens.log_prob(inner)[0]
