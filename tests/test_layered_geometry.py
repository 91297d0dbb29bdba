"""Geometry of general nets (conv / pool / residual / hard-tanh): local affine maps against the
independent float64 NumPy oracle (tests/layers_oracle.py: frozen codes, f(e_i) - f(0)) and
against jax.jacfwd of the net; half-spaces, margins and Chebyshev balls against dense sampling
with the oracle's codes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import layers_oracle as oracle
from partax.geometry import chebyshev, halfspaces_batch, local_maps, margins
from partax.geometry.hrep import unit_rows
from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential

RNG = np.random.default_rng(2)


def f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def conv_pool():
    return sequential([Conv(f32(3, 3, 1, 2, scale=0.6), f32(2, scale=0.2)), ReLU(), MaxPool((2, 2)),
                       Flatten(), Dense(f32(8, 2), f32(2))], (6, 6, 1))


def residual():
    return sequential([Conv(f32(2, 2, 2, 2, scale=0.6), f32(2, scale=0.1), strides=2), LeakyReLU(0.1),
                       Residual((Conv(f32(3, 3, 2, 2, scale=0.5), f32(2, scale=0.1), padding=1), HardTanh(-0.5, 0.5),
                                 Conv(f32(1, 1, 2, 2), f32(2)))),
                       BatchNorm(f32(2), np.abs(f32(2)) + 0.5, f32(2), f32(2)),
                       MaxPool((2, 2), (1, 1), ((1, 0), (0, 1))), Flatten(), Dense(f32(8, 2), f32(2))], (5, 5, 2))


def conv1d():
    return sequential([Conv(f32(3, 1, 3, scale=0.7), f32(3, scale=0.2), dilation=(2,)), HardTanh(0.0, 1.0),
                       AvgPool((2,)), MaxPool((2,), (1,)), Flatten(), Dense(f32(6, 2), f32(2))], (11, 1))


def padded_pool():
    """Max-pool windows with padded (-inf) slots on both sides, then a leaky unit: pooled values
    far below zero make a wrong padded-slot row bind."""
    return sequential([Conv(f32(2, 1, 2, scale=1.5), f32(2)), MaxPool((3,), (2,), ((1, 1),)), LeakyReLU(0.1),
                       Flatten(), Dense(f32(6, 1), f32(1))], (6, 1))


NETS = {"conv_pool": conv_pool, "residual": residual, "conv1d": conv1d, "padded_pool": padded_pool}


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request):
    return NETS[request.param]()


def exemplars(net, n):
    """Inputs away from every threshold (so float32 and float64 codes agree)."""
    x = RNG.normal(size=(8 * n, *net.input_shape)).astype(np.float32)
    _, margin = oracle.codes(net.layers, x)
    x = x[margin > 1e-3][:n]
    assert len(x) == n
    return x


def same_code(net, pts, ref_bits):
    """Per point: whether its float64 (oracle) code equals ``ref_bits`` (one code), and its margin."""
    bits, margin = oracle.codes(net.layers, pts)
    eq = np.all([np.all(b == r[None], axis=1) for b, r in zip(bits, ref_bits)], axis=0)
    return eq, margin


def test_local_maps_match_oracle_and_jacobian(net):
    x = exemplars(net, 4)
    maps = local_maps(net, x)
    bits, _ = oracle.codes(net.layers, x)
    for m, b in zip(maps.masks, bits):
        np.testing.assert_array_equal(m, b)
    A, c, sites = oracle.local_map(net.layers, net.input_shape, bits)
    np.testing.assert_allclose(maps.out.A, A, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(maps.out.c, c, rtol=1e-9, atol=1e-9)
    assert len(maps.pre) == len(sites) == net.num_hidden
    for lm, (As, cs) in zip(maps.pre, sites):
        np.testing.assert_allclose(lm.A, As, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(lm.beta, cs, rtol=1e-9, atol=1e-9)
    flat = x.reshape(len(x), -1)
    y = np.einsum("noi,ni->no", maps.out.A, flat) + maps.out.c
    np.testing.assert_allclose(y, np.asarray(net(x)), rtol=1e-4, atol=1e-4)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda p: net(p.reshape(1, *net.input_shape))[0])))(flat)
    np.testing.assert_allclose(maps.out.A, np.asarray(jac), rtol=1e-4, atol=1e-4)


def test_halfspaces_match_sampled_codes(net):
    x = exemplars(net, 2)
    A, b = halfspaces_batch(net, x)
    rows = unit_rows(A, b)
    ref_bits, _ = oracle.codes(net.layers, x)
    d = net.input_dim
    # every input satisfies its own region's rows
    own = np.einsum("nmk,nk->nm", A, x.reshape(len(x), -1).astype(np.float64)) - b
    assert own.max() <= 1e-9, own.max()
    for n in range(len(x)):
        u = RNG.normal(size=(3000, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        r = np.exp(RNG.uniform(np.log(1e-3), np.log(2.0), size=(3000, 1)))
        pts = x[n].reshape(1, -1).astype(np.float64) + r * u
        slack = rows.b[n][None] - pts @ rows.A[n].T
        live = rows.live[n]
        clear = np.abs(slack[:, live]).min(axis=1) > 1e-7
        inside = (slack[:, live] >= 0).all(axis=1)
        eq, margin = same_code(net, pts.reshape(-1, *net.input_shape), [bb[n] for bb in ref_bits])
        ok = clear & (margin > 1e-9)
        assert ok.mean() > 0.9
        np.testing.assert_array_equal(inside[ok], eq[ok])
        assert 0.05 < inside[ok].mean() < 0.95  # both sides were sampled
        assert not rows.empty[n]


def test_margins_and_chebyshev_against_sampling(net):
    x = exemplars(net, 3)
    m = margins(net, x)
    ref_bits, _ = oracle.codes(net.layers, x)
    A, b = halfspaces_batch(net, x)
    rows = unit_rows(A, b)
    centers, radii = chebyshev(net, x, solver="highs")
    d = net.input_dim
    for n in range(len(x)):
        assert m[n] > 0
        u = RNG.normal(size=(500, d))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        code = [bb[n] for bb in ref_bits]
        eq, _ = same_code(net, (x[n].reshape(1, -1) + 0.98 * m[n] * u).reshape(-1, *net.input_shape), code)
        assert eq.all()  # the ball of radius margin lies in the region
        slack = rows.b[n] - rows.A[n] @ x[n].reshape(-1)
        i = int(np.argmin(np.where(rows.live[n], slack, np.inf)))
        assert slack[i] == pytest.approx(m[n], rel=1e-9)
        across = x[n].reshape(-1) + (m[n] * 1.02 + 1e-6) * rows.A[n, i]
        eq, _ = same_code(net, across.reshape(1, *net.input_shape), code)
        assert not eq[0]  # just past the nearest row, the code changes
        assert radii[n] >= m[n] * (1 - 1e-6)
        eq, _ = same_code(net, (centers[n][None] + 0.98 * radii[n] * u).reshape(-1, *net.input_shape), code)
        assert eq.all()


def test_geometry_errors_and_shapes(net):
    x = exemplars(net, 1)
    with pytest.raises(ValueError, match="scope='prefix'"):
        halfspaces_batch(net, x, scope="suffix")
    maps = local_maps(net, x.reshape(1, -1))  # flat inputs are the same points
    assert maps.out.A.shape == (1, net.output_dim, net.input_dim)
    assert "LocalMaps(inputs=1" in repr(maps)
    empty = local_maps(net, np.zeros((0, net.input_dim), np.float32))
    assert [p.A.shape[0] for p in empty.pre] == [0] * net.num_hidden


def test_neighbors_match_the_codes_across_facets(net):
    """Each facet's neighbour key is the oracle's key of a point just across it (where the ray
    from the exemplar along the facet's normal leaves the region through that facet)."""
    from partax.coding import keys_from_bits
    from partax.geometry import neighbors

    x = exemplars(net, 3).reshape(3, -1)
    res = neighbors(net, x, return_facets=False, return_status=True)
    assert np.all(res.status == 0)  # conv1d has duplicate rows (two sites, one hyperplane): see facet_points
    rows = unit_rows(*halfspaces_batch(net, x))
    own = keys_from_bits(oracle.codes(net.layers, x.reshape(-1, *net.input_shape))[0], 1, net.num_hidden)
    checked = 0
    for n in np.flatnonzero(res.status == 0):
        assert len(res.facets[n]) >= 1
        # a step across a facet too small for the float32 code can give back the own key
        # (partax.geometry.neighbors' step); those facets are left out of the check below
        assert (res.keys[n] == own[n]).mean() < 0.5
        for r, key in zip(res.facets[n], res.keys[n]):
            if key == own[n]:
                continue
            a = rows.A[n, r]
            along = rows.A[n] @ a
            slack = rows.b[n] - rows.A[n] @ x[n]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where((along > 1e-12) & rows.live[n], slack / along, np.inf)
            first = np.argsort(t)[:2]
            if first[0] != r or t[first[1]] < t[r] * (1 + 1e-3):
                continue  # the ray leaves through another row (or too close to a corner)
            p = x[n] + t[r] * (1 + 1e-4) * a
            bits, margin = oracle.codes(net.layers, p.reshape(1, *net.input_shape))
            if margin[0] < 1e-9:
                continue
            assert keys_from_bits(bits, 1, net.num_hidden)[0] == key
            checked += 1
    assert checked >= 1


def test_maxpool_padding_is_never_a_near_tie():
    """A window whose only other slot is padding (-inf) has no second value to tie with."""
    from partax.coding import site_codes

    for padding in (((0, 1),), ((1, 0),)):
        net = sequential([MaxPool((2,), (2,), padding), Flatten(), Dense(np.ones((3, 1), np.float32),
                                                                          np.zeros(1, np.float32))], (5, 1))
        x = RNG.normal(size=(500, 5, 1)).astype(np.float32)
        _, near = site_codes(net, x, 1e-5)
        assert not np.asarray(near).any(), padding
