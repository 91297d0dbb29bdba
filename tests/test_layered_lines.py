"""line_regions on general nets (conv / pool / residual / hard-tanh) against the independent float64
NumPy oracle (tests/layers_oracle.py) on dense samples of the segment, against partax.region_ids at
the pieces' midpoints, and against the MLP path on an MLP written as a general net."""

from __future__ import annotations

import numpy as np
import pytest

import layers_oracle as oracle
import partax
from layered_nets import conv1d, conv_pool, f32_of, padded_pool, residual
from partax.geometry.lines import LineRegions, line_regions
from partax.layers import Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential


def hardtanh_dense():
    """Flat input, dense layers, a hard-tanh then a ReLU site (not an MLP: two activations)."""
    f = f32_of(np.random.default_rng(14))
    return sequential([Dense(f(3, 6), f(6, scale=0.3)), HardTanh(-0.5, 0.5), Dense(f(6, 5), f(5, scale=0.3)),
                       ReLU(), Dense(f(5, 1), f(1))], (3,))


def residual_pool():
    """A residual block with a linear (1x1 conv) shortcut and a ReLU inside, then a max pool."""
    f = f32_of(np.random.default_rng(15))
    return sequential([Conv(f(3, 1, 2, scale=0.8), f(2, scale=0.2)), ReLU(),
                       Residual((Conv(f(3, 2, 2, scale=0.6), f(2, scale=0.2), padding=1), ReLU(),
                                 Conv(f(1, 2, 2), f(2, scale=0.2))), shortcut=Conv(f(1, 2, 2), f(2, scale=0.1))),
                       MaxPool((2,)), Flatten(), Dense(f(6, 1), f(1))], (8, 1))


NETS = {"conv_pool": conv_pool, "residual": residual, "conv1d": conv1d, "padded_pool": padded_pool,
        "hardtanh_dense": hardtanh_dense, "residual_pool": residual_pool}


@pytest.fixture(scope="module", params=sorted(NETS))
def case(request):
    name = request.param
    net = NETS[name]()
    a, b = np.random.default_rng(11).normal(size=(2, *net.input_shape)) * 2  # every site changes along it
    return name, net, a, b


def _oracle_codes(net, a, b, t):
    x = a.reshape(1, -1) + t[:, None] * (b - a).reshape(1, -1)
    bits, margin = oracle.codes(net.layers, x.reshape(-1, *net.input_shape))
    return bits, margin


def test_breakpoints_against_dense_oracle_sampling(case):
    name, net, a, b = case
    t = np.linspace(0.0, 1.0, 4001)
    ref, _ = _oracle_codes(net, a, b, t)
    for layer in range(1, net.num_hidden + 1):
        lr = line_regions(net, a, b, layer=layer)
        assert isinstance(lr, LineRegions) and lr.scope == "prefix" and lr.layer == layer
        bp = lr.breakpoints
        assert np.all(np.diff(bp) > 0) and (bp.size == 0 or (bp[0] > 0 and bp[-1] < 1))
        assert len(lr.keys) == len(lr.midpoints) == len(bp) + 1 == len(lr.bits[0])
        assert [bb.shape[1] for bb in lr.bits] == list(net.widths[:layer])
        # every sample's oracle code is its piece's code (away from the breakpoints)
        piece = np.searchsorted(bp, t)
        dist = np.min(np.abs(t[:, None] - np.concatenate([bp, [-1.0]])[None]), axis=1)
        away = dist > 1e-9
        for s in range(layer):
            np.testing.assert_array_equal(ref[s][away], lr.bits[s][piece[away]], err_msg=f"{name} site {s + 1}")
        # every change of the oracle's code between two samples has a breakpoint between them
        change = np.zeros(len(t) - 1, bool)
        for s in range(layer):
            change |= np.any(ref[s][1:] != ref[s][:-1], axis=1)
        i = np.flatnonzero(change)
        lo = np.searchsorted(bp, t[i], side="left")
        assert np.all((lo < len(bp)) & (bp[np.minimum(lo, len(bp) - 1)] <= t[i + 1])), name
        # adjacent pieces have different codes, and each piece's midpoint has the piece's code
        codes = np.concatenate(lr.bits, axis=1)
        assert np.all(np.any(codes[1:] != codes[:-1], axis=1))
        mid, _ = _oracle_codes(net, a, b, lr.midpoints)
        for s in range(layer):
            np.testing.assert_array_equal(mid[s], lr.bits[s])
    # the segment crosses several regions of every net, and each site splits it somewhere
    assert lr.num_pieces >= 4, (name, lr.num_pieces)
    for s in range(net.num_hidden):
        assert np.any(lr.bits[s][1:] != lr.bits[s][:-1]), (name, s)


def test_keys_match_region_ids_at_midpoints(case):
    name, net, a, b = case
    lr = line_regions(net, a, b)
    bounds = np.concatenate([[0.0], lr.breakpoints, [1.0]])
    long = np.diff(bounds) > 1e-4
    assert long.sum() >= 3
    x = (a.reshape(1, -1) + lr.midpoints[long, None] * (b - a).reshape(1, -1)).astype(np.float32)
    ids = partax.region_ids(net, x.reshape(-1, *net.input_shape), "prefix")
    np.testing.assert_array_equal(ids[:, net.num_hidden - 1], lr.keys[long])
    for layer in range(1, net.num_hidden):
        sub = line_regions(net, a, b, layer=layer)
        # the earlier layers' breakpoints are among the later ones' (prefix scopes nest)
        assert np.isin(sub.breakpoints, lr.breakpoints).all()
        np.testing.assert_array_equal(ids[:, layer - 1], sub.keys[np.searchsorted(sub.breakpoints, lr.midpoints[long])])


def test_flat_and_shaped_points_agree(case):
    _, net, a, b = case
    flat = line_regions(net, a.reshape(-1), b.reshape(-1))
    shaped = line_regions(net, a, b)
    np.testing.assert_array_equal(flat.breakpoints, shaped.breakpoints)
    np.testing.assert_array_equal(flat.keys, shaped.keys)


def test_errors(case):
    _, net, a, b = case
    d = net.input_dim
    with pytest.raises(ValueError, match=r"a: expected a point of shape"):
        line_regions(net, np.zeros(d + 1), b)
    with pytest.raises(ValueError, match=r"b: expected a point of shape"):
        line_regions(net, a, np.zeros((2, d)))
    with pytest.raises(ValueError, match="b: expected an end point different from a"):
        line_regions(net, a, a.copy())
    with pytest.raises(ValueError, match="b: expected finite"):
        line_regions(net, a, np.full(d, np.nan))
    for scope in ("suffix", "layer"):
        with pytest.raises(ValueError, match="scope='prefix'"):
            line_regions(net, a, b, scope=scope)
    with pytest.raises(ValueError, match="scope"):
        line_regions(net, a, b, scope="nope")
    with pytest.raises(ValueError, match="layer"):
        line_regions(net, a, b, layer=net.num_hidden + 1)


def test_general_path_agrees_with_the_mlp_path():
    """An MLP written as a general net (a leading Flatten makes it one) takes the general path;
    its pieces are those of the MLP path (an independent walk over the same layers)."""
    f = f32_of(np.random.default_rng(3))
    layers = [Dense(f(3, 12), f(12, scale=0.5)), LeakyReLU(0.1), Dense(f(12, 12, scale=0.4), f(12, scale=0.5)),
              LeakyReLU(0.1), Dense(f(12, 1), f(1))]
    mlp = sequential(layers, (3,))
    net = sequential([Flatten()] + layers, (3,))
    assert mlp.is_mlp and not net.is_mlp
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 3)) * 3
    for layer in range(1, mlp.num_hidden + 1):
        ref = line_regions(mlp, a, b, layer=layer)
        got = line_regions(net, a, b, layer=layer)
        assert ref.num_pieces >= 10
        np.testing.assert_allclose(got.breakpoints, ref.breakpoints, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got.keys, ref.keys)
        for g, r in zip(got.bits, ref.bits):
            np.testing.assert_array_equal(g, r)
