"""Exact enumeration of the regions of general nets (conv / pool / hard-tanh / residual / batch norm)
in a small box and in R^d, against the independent float64 NumPy oracle (tests/layers_oracle.py,
explicit loops; no partax code): dense uniform samples of the box (every sampled code is enumerated,
each region's share of the samples matches its exact volume), the oracle's code at every Chebyshev
centre, the oracle's code just across facets (crossing codes), and the engine's partition of a grid
(a lower bound on the count)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import layers_oracle as oracle
import partax
from partax.coding import keys_from_bits
from partax.geometry import Box
from partax.geometry.code_regions import CodeSites, hidden_layers, num_rows, region_unit_rows
from partax.geometry.crossing import changed_units, site_crossing_codes
from partax.geometry.enumerate import enumerate_regions
from partax.geometry.polar import polyhedra_geometry
from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential


def _f32(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


# --- the nets (input dimension 2-6) -------------------------------------------------------------
def conv1d_relu_pool():
    """Conv1D -> ReLU -> overlapping max pool: a pool after a ReLU ties its inactive (zero) slots,
    so crossings change a window's argmax together with a unit."""
    r = np.random.default_rng(10)
    return sequential([Conv(_f32(r, 2, 1, 3, scale=0.8), _f32(r, 3, scale=0.3)), ReLU(), MaxPool((2,), (1,)),
                       Flatten(), Dense(_f32(r, 6, 1), _f32(r, 1))], (4, 1))


def padded_pool_first():
    """Conv1D -> padded max pool (first site: rows are differences) -> leaky ReLU."""
    r = np.random.default_rng(11)
    return sequential([Conv(_f32(r, 2, 1, 2), _f32(r, 2)), MaxPool((3,), (2,), ((1, 1),)), LeakyReLU(0.1),
                       Flatten(), Dense(_f32(r, 4, 1), _f32(r, 1))], (5, 1))


def conv2d_hardtanh():
    """Conv2D (padded) -> hard-tanh (three states) -> average pool -> 2x2 max pool -> ReLU. Clamped
    units under the pools make rows that are exact positive combinations of others (flat faces
    that qhull may list as facets) and pooled values that are identically 0 (lo + hi = 0)."""
    r = np.random.default_rng(22)
    return sequential([Conv(_f32(r, 2, 2, 1, 1, scale=0.9), _f32(r, 1, scale=0.3), padding=1), HardTanh(-0.4, 0.4),
                       AvgPool((1, 2), (1, 1)), MaxPool((2, 2), (1, 1)), ReLU(), Flatten(),
                       Dense(_f32(r, 2, 1), _f32(r, 1))], (2, 2, 1))


def residual_batchnorm():
    """Dense -> hard-tanh -> residual block (dense, ReLU, dense) -> batch norm -> leaky ReLU."""
    r = np.random.default_rng(13)
    body = (Dense(_f32(r, 4, 4, scale=0.6), _f32(r, 4, scale=0.2)), ReLU(), Dense(_f32(r, 4, 4, scale=0.6), _f32(r, 4)))
    return sequential([Dense(_f32(r, 3, 4), _f32(r, 4, scale=0.3)), HardTanh(-0.5, 0.5), Residual(body),
                       BatchNorm(_f32(r, 4), np.abs(_f32(r, 4)) + 0.5, _f32(r, 4), _f32(r, 4)), LeakyReLU(0.2),
                       Dense(_f32(r, 4, 1), _f32(r, 1))], (3,))


def conv1d_2d_input():
    """Input dimension 2: a width-2 signal, four channels, leaky ReLU, a max pool over the width
    with a linear shortcut block after it."""
    r = np.random.default_rng(14)
    block = Residual((Dense(_f32(r, 4, 4, scale=0.5), _f32(r, 4, scale=0.3)), ReLU()),
                     shortcut=Dense(_f32(r, 4, 4), _f32(r, 4)))
    return sequential([Conv(_f32(r, 1, 1, 4), _f32(r, 4, scale=0.4)), LeakyReLU(0.3), MaxPool((2,), (1,)), Flatten(),
                       block, Dense(_f32(r, 4, 1), _f32(r, 1))], (2, 1))


def conv2d_3x3():
    """Conv2D on (3, 3, 1) (input dimension 9: slow), ReLU, 2x2 max pool."""
    r = np.random.default_rng(15)
    return sequential([Conv(_f32(r, 2, 2, 1, 1, scale=0.8), _f32(r, 1, scale=0.3)), ReLU(), MaxPool((2, 2), (1, 1)),
                       Flatten(), Dense(_f32(r, 1, 1), _f32(r, 1))], (3, 3, 1))


NETS = {"conv1d_relu_pool": conv1d_relu_pool, "padded_pool_first": padded_pool_first,
        "conv2d_hardtanh": conv2d_hardtanh, "residual_batchnorm": residual_batchnorm,
        "conv1d_2d_input": conv1d_2d_input}
# the boxes: (lo, hi) per net, sized for ~50-300 regions
BOXES = {"conv1d_relu_pool": (-0.6, 0.6), "padded_pool_first": (-1.0, 1.0), "conv2d_hardtanh": (-0.35, 0.35),
         "residual_batchnorm": (-1.5, 1.5), "conv1d_2d_input": (-3.0, 3.0)}


@functools.lru_cache(maxsize=None)
def _enumerated(name):
    net = NETS[name]()
    assert not net.is_mlp
    box = Box(*BOXES[name])
    return name, net, box, enumerate_regions(net, box, progress=False)


@pytest.fixture(scope="module", params=sorted(NETS))
def case(request):
    return _enumerated(request.param)


def _oracle_keys(net, x, layer):
    bits, margin = oracle.codes(net.layers, np.asarray(x, np.float64).reshape(-1, *net.input_shape))
    return keys_from_bits(bits[:layer], 1, layer), bits[:layer], margin


def _uniform(box, d, n, seed):
    lo, hi = box.bounds(d)
    return lo + np.random.default_rng(seed).random((n, d)) * (hi - lo)


# --- in a box -------------------------------------------------------------------------------------
def test_complete_and_volumes_sum_to_the_box(case):
    name, net, box, res = case
    assert res.complete, (name, res, res.stats)
    assert res.certificate == "volume" and res.dropped == 0 and res.frontier_left == 0
    assert 20 <= res.num_regions <= 2000, res.num_regions  # a non-trivial partition
    assert res.volume_error < 1e-9
    assert np.all(res.volumes > 0)
    assert res.volumes.sum() == pytest.approx(box.volume(net.input_dim), rel=1e-9)
    assert res.points.shape == (res.num_regions, net.input_dim)
    assert [b.shape[1] for b in res.bits] == list(net.widths)
    assert res.stats["one_sided_edges"] == 0 and res.stats["step_fallbacks"] == 0
    if name == "conv2d_hardtanh":  # a weakly redundant row was listed by qhull and dropped
        assert res.stats["flat_facets"] >= 1


def test_every_sampled_code_is_enumerated_with_its_volume_share(case):
    """Dense uniform samples of the box: every oracle code is one of the enumerated regions, and
    each region's share of the samples agrees with its exact volume (binomial bounds)."""
    name, net, box, res = case
    d, L = net.input_dim, net.num_hidden
    n = 40_000
    keys, _, _ = _oracle_keys(net, _uniform(box, d, n, seed=5), L)
    idx = res.index_of(keys)
    assert np.all(idx >= 0), f"{name}: {int(np.sum(idx < 0))} samples in regions not enumerated"
    share = np.bincount(idx, minlength=res.num_regions) / n
    p = res.volumes / box.volume(d)
    sigma = np.sqrt(p * (1 - p) / n)
    np.testing.assert_array_less(np.abs(share - p), 6 * sigma + 3 / n)
    assert np.all(share[p > 50 / n] > 0)  # every region of some size was hit
    assert np.sum(share > 0) >= 0.3 * res.num_regions


def test_centres_have_their_regions_oracle_codes(case):
    """Each region's Chebyshev centre has the region's code under the oracle (codes compared bit
    for bit), hence its key; its inradius ball stays in the region (oracle codes on its sphere)."""
    name, net, box, res = case
    keys, bits, _ = _oracle_keys(net, res.points, net.num_hidden)
    for b_enum, b_oracle in zip(res.bits, bits):
        np.testing.assert_array_equal(b_enum, b_oracle)
    np.testing.assert_array_equal(keys, res.keys)
    assert len(np.unique(res.keys)) == res.num_regions
    assert np.all(box.contains(res.points))
    d = net.input_dim
    u = np.random.default_rng(3).normal(size=(res.num_regions, 16, d))
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    sphere = res.points[:, None] + 0.98 * res.radii[:, None, None] * u
    keys, _, _ = _oracle_keys(net, sphere.reshape(-1, d), net.num_hidden)
    np.testing.assert_array_equal(keys.reshape(res.num_regions, 16), np.repeat(res.keys[:, None], 16, axis=1))


@pytest.mark.parametrize("name", [n if n == "conv1d_2d_input" else
                                  pytest.param(n, marks=pytest.mark.slow) for n in sorted(NETS)])
def test_counts_bound_the_engine_partition_of_a_grid(name):
    """partax.partition of a fine grid of the box finds a subset of the enumerated regions.

    The grid is jittered (one uniform point per cell): a plain grid puts points exactly on the
    sets of measure zero where two max-pool slots with equal weights tie (the diagonal of
    conv1d_2d_input), whose codes are not those of any region."""
    name, net, box, res = _enumerated(name)
    d = net.input_dim
    lo, hi = box.bounds(d)
    per_axis = {2: 200, 3: 34, 4: 14, 5: 8, 6: 6}[d]
    cells = np.stack(np.meshgrid(*[np.arange(per_axis)] * d, indexing="ij"), -1).reshape(-1, d)
    jitter = np.random.default_rng(4).random(cells.shape)
    grid = (lo + (cells + jitter) * (hi - lo) / per_axis).astype(np.float32)
    part = partax.partition(net, grid, progress=False, scopes=("prefix",))
    L = net.num_hidden
    found = part.table("prefix", L).keys
    assert part.num_regions("prefix")[L - 1] <= res.num_regions
    assert np.all(res.index_of(found) >= 0)
    assert len(found) >= 0.3 * res.num_regions


def test_crossing_codes_match_the_oracle_across_facets(case):
    """The exact crossing code of every facet of the first regions is the oracle's code of a point
    just beyond the facet's centroid (and the point just before it has the region's own code)."""
    name, net, box, res = case
    cs = hidden_layers(net, net.num_hidden)
    assert isinstance(cs, CodeSites)
    d = net.input_dim
    R = min(res.num_regions, 40)
    bits = np.concatenate(res.bits, axis=1)[:R]
    Au, bu, live, maps = region_unit_rows(cs, bits, *box.rows(d))
    stats = dict(hull_failures=0, facet_lp_failures=0)
    geo = polyhedra_geometry(Au, bu, live, res.points[:R], res.radii[:R], 1e-9, False, stats)
    unit = geo.rows < num_rows(cs)
    own, frow, fpt = geo.own[unit], geo.rows[unit], geo.points[unit]
    assert len(own) >= R
    new = site_crossing_codes(cs, bits, Au, bu, maps, own, frow)
    normal = Au[own, frow]
    eps = 1e-6 * res.radii[:R][own, None]
    _, after, _ = _oracle_keys(net, fpt + eps * normal, net.num_hidden)
    _, before, _ = _oracle_keys(net, fpt - eps * normal, net.num_hidden)
    np.testing.assert_array_equal(np.concatenate(before, axis=1), bits[own])
    np.testing.assert_array_equal(np.concatenate(after, axis=1), new)
    if name == "conv1d_relu_pool":  # a unit and a window's argmax change together
        assert np.any(changed_units(cs, bits[own], new) > 1)


def test_prefix_layers_and_seed_shapes():
    _, net, box, full = _enumerated("conv1d_relu_pool")
    first = enumerate_regions(net, box, layer=1, progress=False)
    assert first.complete and first.layer == 1 and len(first.bits) == 1
    keys, _, _ = _oracle_keys(net, _uniform(box, 4, 5000, seed=6), 1)
    assert np.all(first.index_of(keys) >= 0)
    ids = partax.region_ids(net, first.points.astype(np.float32).reshape(-1, 4, 1), "prefix")[:, 0]
    np.testing.assert_array_equal(ids[first.radii > 1e-4], first.keys[first.radii > 1e-4])
    assert full.num_regions >= first.num_regions
    # seeds as [S, *input_shape] are the same points as flat ones
    seeds = _uniform(box, 4, 3, seed=7)
    shaped = enumerate_regions(net, box, layer=1, seeds=seeds.reshape(3, 4, 1), progress=False)
    np.testing.assert_array_equal(shaped.keys, first.keys)
    with pytest.raises(ValueError, match="seeds"):
        enumerate_regions(net, box, seeds=np.zeros((3, 2, 2)), progress=False)
    with pytest.raises(ValueError, match="scope"):
        enumerate_regions(net, box, scope="suffix", layer=2, progress=False)


# --- all of R^d -----------------------------------------------------------------------------------
RD_NETS = [pytest.param("residual_batchnorm"),
           pytest.param("padded_pool_first", marks=pytest.mark.slow),
           pytest.param("conv1d_relu_pool", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", RD_NETS)
def test_rd_certified_against_the_oracle(name):
    net = NETS[name]()
    res = enumerate_regions(net, None, progress=False)
    assert res.complete, (res, res.stats)
    assert res.stats["unpointed_regions"] == 0 and res.num_unbounded > 0
    assert np.all(np.isinf(res.volumes[~res.bounded])) and np.all(np.isfinite(res.volumes[res.bounded]))
    d = net.input_dim
    keys, bits, _ = _oracle_keys(net, res.points, net.num_hidden)
    np.testing.assert_array_equal(keys, res.keys)
    # every code sampled in the certificate box (and far beyond it) is enumerated
    big = Box(*(np.asarray(b) * 3 for b in res.box.bounds(d)))
    for b in (res.box, big):
        keys, _, _ = _oracle_keys(net, _uniform(b, d, 20_000, seed=8), net.num_hidden)
        assert np.all(res.index_of(keys) >= 0)
    # the regions of a box are regions of R^d
    inner = enumerate_regions(net, Box(*BOXES[name]), progress=False)
    assert np.all(res.index_of(inner.keys) >= 0)


def test_rd_refuses_a_first_site_of_low_rank():
    r = np.random.default_rng(16)
    net = sequential([Conv(_f32(r, 3, 1, 1), _f32(r, 1)), ReLU(), Flatten(), Dense(_f32(r, 2, 1), _f32(r, 1))], (4, 1))
    with pytest.raises(ValueError, match="domain"):
        enumerate_regions(net, None, progress=False)
    res = enumerate_regions(net, Box(-1.0, 1.0), progress=False)  # in a box: fine (every region is a cylinder)
    assert res.complete and res.volume_error < 1e-9


@pytest.mark.slow
def test_conv2d_on_3x3_input():
    """Conv2D on (3, 3, 1): input dimension 9 (no volumes: the closure certificate)."""
    net = conv2d_3x3()
    box = Box(-1.0, 1.0)
    res = enumerate_regions(net, box, progress=False)
    assert res.complete and res.certificate == "closure"
    keys, bits, _ = _oracle_keys(net, res.points, net.num_hidden)
    np.testing.assert_array_equal(keys, res.keys)
    keys, _, _ = _oracle_keys(net, _uniform(box, 9, 20_000, seed=9), net.num_hidden)
    assert np.all(res.index_of(keys) >= 0)


def test_rd_regions_containing_a_line_are_not_complete():
    """Max pools straight on the input: adding a constant to every input keeps every argmax, so
    every region of R^d contains the line along (1, 1, 1): the enumeration must not claim R^d."""
    net = sequential([MaxPool((3,), (1,), ((1, 1),)), Flatten(), Dense(np.ones((3, 1), np.float32),
                                                                      np.zeros(1, np.float32))], (3, 1))
    res = enumerate_regions(net, None, progress=False)
    assert not res.complete
    assert res.stats["unpointed_regions"] == res.num_regions > 0
