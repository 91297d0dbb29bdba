"""partax.density in latent spaces: the density of h^{l-1} over its own bins (suffix / layer scopes).

Oracles: the latent box's volume; ``numpy.histogram2d`` of latent codes computed here in NumPy
float64 (a net whose layer-2 units cut its latent space into a grid); the partition engine's own
suffix / layer region ids (``partax.region_ids``) for the counts; independent NumPy Monte Carlo
of the integral of the density over the latent box.
"""

import math

import jax
import numpy as np
import pytest

import partax
from partax import density
from partax.geometry import Box


def _np_forward(net, x, upto):
    """h^upto in NumPy float64 (independent of the module)."""
    h = np.asarray(x, np.float64)
    for W, b in list(zip(net.weights, net.biases))[:upto]:
        h = np.maximum(h @ np.asarray(W, np.float64) + np.asarray(b, np.float64), 0)
    return h


def latent_grid_net(cx, cy):
    """2-2-K-1: h^1 = relu(x + 5) = x + 5 on [-4, 4]^2 (the identity, shifted); layer 2 has one unit
    per grid line of h^1 (h_0 - c, h_1 - c), so the suffix partition of latent space h^1 at layer 2 is
    the grid of those lines."""
    W1, b1 = np.eye(2, dtype=np.float32), np.full(2, 5.0, np.float32)
    W2 = np.zeros((2, len(cx) + len(cy)), np.float32)
    W2[0, : len(cx)] = 1
    W2[1, len(cx):] = 1
    b2 = -np.concatenate([cx, cy]).astype(np.float32)
    return partax.Net.from_arrays([W1, b1, W2, b2, np.ones((W2.shape[1], 1), np.float32), np.zeros(1, np.float32)])


@pytest.fixture(scope="module")
def net():
    """Latent spaces h^1 (3-D: exact volumes) and h^2 (5-D: exact)."""
    return partax.mlp(jax.random.key(7), [2, 3, 5, 4, 1], bias_std=0.5)


@pytest.fixture(scope="module")
def wide_net():
    """Latent space h^1 is 8-D: Monte Carlo volumes."""
    return partax.mlp(jax.random.key(8), [2, 8, 4, 1], bias_std=0.5)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (2000, 2)), rng.uniform(-1, 1, (2000, 2))


@pytest.mark.parametrize("which,scope,layer,space,dim", [("net", "suffix", 2, 1, 3), ("net", "suffix", 3, 2, 5),
                                                          ("net", "layer", 2, 1, 3), ("wide", "suffix", 2, 1, 8)])
def test_latent_volumes_sum_to_the_box_and_density_integrates(net, wide_net, data, which, scope, layer, space, dim):
    x, _ = data
    n = net if which == "net" else wide_net
    dens = density.estimate(n, x, Box(-1, 1), scope=scope, layer=layer, num_reference=1 << 14)
    assert dens.space == space and dens.net.input_dim == dim and dens.source == (scope, layer)
    assert dens.volume_method == ("exact" if dim <= 6 else "mc")
    V = dens.domain.volume(dim)
    assert abs(dens.volumes.sum() - V) < 1e-9 * V
    assert np.all(dens.volumes > 0)
    assert dens.counts.sum() == 2000
    assert abs(np.exp(dens.log_densities) @ dens.volumes - 1) < 1e-12
    # the latent box holds every training code (NumPy's own forward pass), and is no wider than
    # the codes' bounding box plus the 5 % margin
    h = _np_forward(n, x, space)
    lo, hi = dens.domain.bounds(dim)
    assert np.all(h >= lo - 1e-6) and np.all(h <= hi + 1e-6)
    r = h.max(0) - h.min(0)
    assert np.all(hi <= h.max(0) + 0.05 * r + 1e-6 + (r == 0))


@pytest.mark.parametrize("scope,layer", [("suffix", 2), ("suffix", 3), ("layer", 2), ("layer", 3)])
def test_latent_counts_match_the_engines_region_ids(net, data, scope, layer):
    """The bins of h^{l-1} are the engine's scope regions: the same multiset of counts."""
    x, _ = data
    dens = density.estimate(net, x, Box(-1, 1), scope=scope, layer=layer)
    assert dens.volume_method == "exact"
    ids = np.asarray(partax.region_ids(net, x.astype(np.float32), scope))[:, layer - 1]
    _, engine_counts = np.unique(ids, return_counts=True)
    occupied = dens.counts[dens.counts > 0]
    np.testing.assert_array_equal(np.sort(occupied), np.sort(engine_counts))


def test_latent_grid_reproduces_histogram2d():
    cx = np.array([2.0, 4.0, 5.0, 7.5])
    cy = np.array([1.5, 3.0, 6.0, 8.0])
    net = latent_grid_net(cx, cy)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1.2, (4000, 2)).clip(-4, 4).astype(np.float32).astype(np.float64)
    box = Box(1.0, 9.0)  # the latent box, around x + 5 in [1, 9]^2
    dens = density.estimate(net, x, Box(-4, 4), scope="suffix", layer=2, smoothing=0.0, latent_box=box)
    assert dens.space == 1 and dens.volume_method == "exact"
    h = x + 5.0
    ex, ey = np.concatenate([[1.0], cx, [9.0]]), np.concatenate([[1.0], cy, [9.0]])
    hist, _, _ = np.histogram2d(h[:, 0], h[:, 1], bins=[ex, ey], density=True)
    ix = np.clip(np.searchsorted(ex, h[:, 0], side="right") - 1, 0, len(cx))
    iy = np.clip(np.searchsorted(ey, h[:, 1], side="right") - 1, 0, len(cy))
    expect = hist[ix, iy]
    got = np.exp(dens.log_prob(h))
    np.testing.assert_allclose(got, expect, rtol=1e-6)
    assert dens.num_regions == 25 and abs(dens.volumes.sum() - 64.0) < 1e-9


@pytest.mark.parametrize("volumes", ["exact", pytest.param("mc", marks=pytest.mark.slow)])
def test_latent_density_integrates_by_independent_monte_carlo(net, data, volumes):
    x, _ = data
    dens = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=2, volumes=volumes, num_reference=1 << 15)
    lo, hi = dens.domain.bounds(3)
    u = lo + np.random.default_rng(5).uniform(size=(100_000, 3)) * (hi - lo)
    p = np.exp(dens.log_prob(u))
    V = float(np.prod(hi - lo))
    est, se = V * p.mean(), V * p.std() / math.sqrt(len(p))
    assert abs(est - 1) < 4 * se + 1e-3


def test_latent_mc_volumes_agree_with_exact(net, data):
    x, _ = data
    ex = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=2, volumes="exact")
    mc = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=2, volumes="mc", num_reference=1 << 16, key=3,
                          latent_box=ex.domain)
    assert ex.num_regions >= 8
    pos = np.searchsorted(ex.keys, mc.keys[mc.resolved])
    assert np.all(ex.keys[pos] == mc.keys[mc.resolved])
    z = (mc.volumes[mc.resolved] / (1 - mc.volumes[-1] / mc.volumes.sum()) - ex.volumes[pos]) / np.maximum(
        mc.volume_stderr[mc.resolved], 1e-12)
    big = (mc.reference_hits[mc.resolved] >= 30) & (mc.reference_hits[mc.resolved] <= (1 << 16) - 30)
    assert big.sum() >= 5 and np.mean(np.abs(z[big]) < 3) > 0.9


def test_density_probe_records_per_layer(net, data):
    x, xt = data
    probe = density.density_probe(xt, Box(-1, 1))
    recs = probe(net, x, None)
    assert [r["layer"] for r in recs] == [1, 2, 3]
    assert [r["space"] for r in recs] == [0, 1, 2] and [r["dim"] for r in recs] == [2, 3, 5]
    for r in recs:
        assert np.isfinite(r["heldout_nll"]) and np.isfinite(r["entropy"]) and r["regions"] >= r["occupied"] >= 1
        assert r["entropy_mm"] >= r["entropy"]
        assert r["heldout_gain"] == pytest.approx(r["box_log_volume"] - r["heldout_nll"])
    # layer 1 is the input-space prefix density of the last layer: the same number as estimate's
    d1 = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=1)
    assert recs[0]["heldout_nll"] == pytest.approx(-density.heldout_loglik(d1, xt).mean, abs=1e-12)


def test_density_probe_runs_inside_a_tracer(tmp_path):
    from partax.datasets import tishby_ib
    from partax.trace import Tracer, load_trace

    x, y = tishby_ib()
    net = partax.mlp(jax.random.key(0), [12, 4, 3, 2])
    probe = density.density_probe(x[::7], Box(0, 1), layers=[2])
    tracer = Tracer(x[::3], y[::3], every=[0], out=str(tmp_path), scopes=(), probes={"density": probe})
    tracer(0, net)
    tr = load_trace(str(tmp_path))
    rows = [i for i in range(len(tr["step"])) if tr["scope"][i] == "density"]
    assert len(rows) == 1 and tr["dim"][rows[0]] == 4


def test_latent_bad_input(net, data):
    x, _ = data
    with pytest.raises(ValueError, match="latent_box"):
        density.estimate(net, x, Box(-1, 1), scope="prefix", layer=2, latent_box=Box(0, 1))
    with pytest.raises(ValueError, match="latent_box: a Box of dimension 3"):
        density.estimate(net, x, Box(-1, 1), scope="suffix", layer=3, latent_box=Box([0, 0, 0], [1, 1, 1]))
    with pytest.raises(ValueError, match="latent_box"):
        density.estimate(net, x, Box(-1, 1), scope="suffix", layer=3, latent_box=Box(0, 1e-3))
    with pytest.raises(TypeError, match="latent_box"):
        density.estimate(net, x, Box(-1, 1), scope="suffix", layer=3, latent_box=(0, 1))
    with pytest.raises(ValueError, match="space"):
        density.latent_codes(net, x, 4)
    with pytest.raises(ValueError, match="first, last"):
        density.sub_net(net, 3, 2)
    with pytest.raises(ValueError, match="latent_margin"):
        density.latent_box(np.ones((3, 2)), margin=-1)
    dens = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=3)
    with pytest.raises(ValueError, match="outside"):
        dens.log_prob(np.full((1, 5), 1e6))
