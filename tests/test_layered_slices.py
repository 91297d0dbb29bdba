"""Exact 2D slices of general nets (conv / pool / residual / hard-tanh): the cells of
``slice_regions`` against the independent float64 NumPy oracle (tests/layers_oracle.py) on a dense
grid of plane points (point in polygon), against ``partax.region_ids`` at cell interior points,
and their bookkeeping (areas, convexity, one cell per prefix region); closed forms for max-pool
ties; the general path against the MLP path on the same MLP."""

from __future__ import annotations

import numpy as np
import pytest

import layers_oracle as oracle
import partax
from partax.geometry.slices import Plane, slice_regions
from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential

RNG = np.random.default_rng(14)


def f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


# the architectures of tests/layered_nets.py with weights from this file's generator (the tie test below
# needs this conv_pool's positive biases)
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
    return sequential([Conv(f32(2, 1, 2, scale=1.5), f32(2)), MaxPool((3,), (2,), ((1, 1),)), LeakyReLU(0.1),
                       Flatten(), Dense(f32(6, 1), f32(1))], (6, 1))


def hardtanh_dense():
    """Hard-tanh units on a flat input: each unit splits by two parallel lines."""
    return sequential([Dense(f32(6, 5), f32(5, scale=0.3)), HardTanh(-0.4, 0.6), Dense(f32(5, 3), f32(3)), ReLU(),
                       Dense(f32(3, 2), f32(2))], (6,))


def residual_pool():
    """A residual block with a 1x1-conv shortcut, then a max pool of 3 slots over its sum."""
    return sequential([Conv(f32(2, 1, 2, scale=0.8), f32(2, scale=0.2), padding=((0, 1),)), ReLU(),
                       Residual((Conv(f32(3, 2, 2, scale=0.6), f32(2, scale=0.1), padding=1), ReLU()),
                                shortcut=Conv(f32(1, 2, 2), f32(2, scale=0.1))),
                       MaxPool((3,), (3,)), Flatten(), Dense(f32(4, 1), f32(1))], (6, 1))


def relu_pool():
    """``max(relu(x_0), relu(x_1))``: five cells, the tie of two clamped zeros goes to slot 0."""
    return sequential([ReLU(), MaxPool((2,)), Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))],
                      (2, 1))


NETS = {f.__name__: f for f in (conv_pool, residual, conv1d, padded_pool, hardtanh_dense, residual_pool)}
_BUILT = {}


def built(name):
    """The net ``name``, its weights drawn from a generator of its own (whatever the test order)."""
    global RNG
    if name not in _BUILT:
        RNG = np.random.default_rng(sorted(NETS).index(name))
        _BUILT[name] = NETS[name]()
    return _BUILT[name]


def plane_through(net, seed):
    """The plane through three random inputs (given in the net's input shape)."""
    x = np.random.default_rng(seed).normal(size=(3, *net.input_shape))
    return Plane.through(*x, margin=1.5)


def cell_of(res, st, chunk=256):
    """Per point the one cell holding it (-1: none or several), its distance to that cell's
    nearest edge and the number of cells holding it (the point-in-polygon oracle: signed
    distances to the counter-clockwise edges)."""
    P, cnt = res.polygons, res.counts
    V = P.shape[1]
    last = np.arange(V)[None, :] == (cnt[:, None] - 1)
    Pn = np.where(last[:, :, None], P[:, :1], np.roll(P, -1, axis=1))  # the closing edge
    e = Pn - P
    length = np.linalg.norm(e, axis=-1)
    real = (np.arange(V)[None, :] < cnt[:, None]) & (length > 0)
    unit = np.where(real[..., None], e / np.where(length > 0, length, 1.0)[..., None], 0.0)
    off = unit[..., 0] * P[..., 1] - unit[..., 1] * P[..., 0]  # d(p) = u0 p1 - u1 p0 - off
    idx, dist, n_in = [], [], []
    for c in range(0, len(st), chunk):
        q = st[c:c + chunk]
        d = np.einsum("rv,n->nrv", unit[..., 0], q[:, 1]) - np.einsum("rv,n->nrv", unit[..., 1], q[:, 0]) - off
        dmin = np.where(real[None], d, np.inf).min(-1)  # [n, R]
        inside = dmin > 0
        k = inside.sum(1)
        i = np.where(k == 1, np.argmax(inside, axis=1), -1)
        idx.append(i)
        dist.append(np.where(i >= 0, dmin[np.arange(len(q)), np.maximum(i, 0)], 0.0))
        n_in.append(k)
    return np.concatenate(idx), np.concatenate(dist), np.concatenate(n_in)


@pytest.fixture(scope="module", params=sorted(NETS))
def case(request):
    net = built(request.param)
    plane = plane_through(net, 3)
    return request.param, net, plane, slice_regions(net, plane, with_maps=True)


def test_areas_convexity_one_cell_per_region(case):
    name, net, plane, res = case
    assert res.scope == "prefix" and res.layer == res.depth == net.num_hidden
    assert res.num_cells > 5, name  # a slice that is not trivial
    np.testing.assert_allclose(res.areas.sum(), plane.area, rtol=1e-9)
    assert np.all(res.areas > 0)
    # convex and counter-clockwise: every turn is a left turn (or straight)
    for P, c in zip(res.polygons, res.counts):
        Q = P[:c]
        e = np.roll(Q, -1, axis=0) - Q
        turn = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
        assert np.all(turn >= -1e-9 * plane.area), name
    # prefix regions are convex, so each one meets the plane in one convex cell: no two cells share
    # a code (which would be an edge inside a region), and the keys name the codes one to one
    code = np.concatenate(res.bits, axis=1)
    assert len(np.unique(code, axis=0)) == res.num_cells
    assert res.num_cells == res.num_regions
    assert [b.shape[1] for b in res.bits] == list(net.widths)


def test_grid_codes_match_the_oracle(case):
    """Each grid point's oracle code (float64 NumPy, partax-free) is the code of its cell."""
    name, net, plane, res = case
    st = plane.grid(48)
    idx, dist, n_in = cell_of(res, st)
    side = np.sqrt(plane.area)
    clean = (idx >= 0) & (dist > 1e-7 * side)
    assert np.all(n_in <= 1) or np.all(dist[n_in > 1] <= 1e-7 * side)  # cells do not overlap
    assert clean.mean() > 0.97, name  # the grid is covered (few points near an edge)
    bits, _ = oracle.codes(net.layers, plane.points(st[clean]).reshape(-1, *net.input_shape))
    for g, (ob, cb) in enumerate(zip(bits, res.bits)):
        np.testing.assert_array_equal(ob, cb[idx[clean]], err_msg=f"{name}: code group {g + 1}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", sorted(NETS))
def test_grid_codes_more_planes(name, seed):
    net = built(name)
    plane = plane_through(net, 100 + seed)
    res = slice_regions(net, plane)
    np.testing.assert_allclose(res.areas.sum(), plane.area, rtol=1e-9)
    assert res.num_cells == res.num_regions
    st = plane.grid(64)
    idx, dist, _ = cell_of(res, st)
    clean = (idx >= 0) & (dist > 1e-7 * np.sqrt(plane.area))
    assert clean.mean() > 0.97
    bits, _ = oracle.codes(net.layers, plane.points(st[clean]).reshape(-1, *net.input_shape))
    for ob, cb in zip(bits, res.bits):
        np.testing.assert_array_equal(ob, cb[idx[clean]])


def test_keys_maps_and_logits_at_interior_points(case):
    """Keys are ``region_ids(net, x, 'prefix')[:, layer-1]`` (float32) at the cells' centroids away
    from every threshold; the maps and logits are the oracle's local maps there."""
    name, net, plane, res = case
    x = plane.points(res.points)
    bits, margin = oracle.codes(net.layers, x.reshape(-1, *net.input_shape))
    far = margin > 1e-4
    assert far.mean() > 0.8, name
    ids = np.asarray(partax.region_ids(net, x[far].astype(np.float32).reshape(-1, *net.input_shape), "prefix"))
    np.testing.assert_array_equal(ids[:, res.layer - 1], res.keys[far])
    for ob, cb in zip(bits, res.bits):  # the centroids lie in their cells: same codes
        np.testing.assert_array_equal(ob, cb)
    A, c, sites = oracle.local_map(net.layers, net.input_shape, bits)
    B = np.stack([plane.u, plane.v], axis=1)  # d x 2
    As, cs = sites[res.layer - 1]
    np.testing.assert_allclose(res.maps[:, :2], np.einsum("rnd,dk->rkn", As, B), atol=1e-9)
    np.testing.assert_allclose(res.maps[:, 2], np.einsum("rnd,d->rn", As, plane.origin) + cs, atol=1e-9)
    np.testing.assert_allclose(res.logits[:, :2], np.einsum("rod,dk->rko", A, B), atol=1e-9)
    out = oracle.forward(net.layers, x.reshape(-1, *net.input_shape)).reshape(len(x), -1)
    st1 = np.concatenate([res.points, np.ones((len(x), 1))], axis=1)
    np.testing.assert_allclose(np.einsum("rk,rko->ro", st1, res.logits), out, atol=1e-9)


@pytest.mark.parametrize("layer", [1, 2])
def test_shallow_layers_nest(layer):
    """Prefix cells at a shallower code group are unions of the deeper ones (by key and area)."""
    net = built("residual")  # three code groups: leaky ReLU, hard tanh (in the block), max pool
    plane = plane_through(net, 5)
    deep = slice_regions(net, plane)
    res = slice_regions(net, plane, layer=layer)
    assert res.depth == layer and len(res.bits) == layer and res.logits is None
    np.testing.assert_allclose(res.areas.sum(), plane.area, rtol=1e-9)
    code_deep = np.concatenate(deep.bits[:layer], axis=1)
    code = np.concatenate(res.bits, axis=1)
    for k, cd in enumerate(code):
        sel = np.all(code_deep == cd, axis=1)
        np.testing.assert_allclose(deep.areas[sel].sum(), res.areas[k], rtol=1e-8, atol=1e-12)


def test_max_pool_ties_closed_form():
    """``max(relu(x0), relu(x1))`` on the square [-1, 1]^2: the ReLU quadrants, then the quadrant
    x0, x1 > 0 split by x0 = x1; where both are clamped to 0 the tie is slot 0 (no extra cell)."""
    net = relu_pool()
    res = slice_regions(net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-1, 1), (-1, 1))))
    relu, pool = res.bits
    got = sorted(zip(relu[:, 0], relu[:, 1], pool[:, 0], np.round(res.areas, 12)))
    want = sorted([(False, False, False, 1.0), (True, False, False, 1.0), (False, True, True, 1.0),
                   (True, True, False, 0.5), (True, True, True, 0.5)])
    assert [tuple(map(float, g)) for g in got] == [tuple(map(float, w)) for w in want]
    # a window of three slots on a plane where slots 0 and 2 are equal throughout: slot 2 never wins
    net3 = sequential([MaxPool((3,)), Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))], (3, 1))
    plane = Plane([0.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0], ((-1, 1), (-1, 1)))  # x0 == x2 == s, x1 == t
    res3 = slice_regions(net3, plane)
    slot = res3.bits[0][:, 0] + 2 * res3.bits[0][:, 1]
    assert sorted(slot.tolist()) == [0, 1]
    np.testing.assert_allclose(res3.region_areas, [2.0, 2.0], rtol=1e-12)  # split by s = t


@pytest.mark.parametrize("name, patch", [("conv_pool", np.s_[:, 1:3, 1:3]), ("padded_pool", np.s_[:, 0:2])])
def test_exact_ties_of_constant_windows(name, patch):
    """A plane through inputs that are zero outside a small patch (digit-like borders): many conv
    outputs are the same constant on the whole plane, so max-pool windows tie exactly there (the
    lowest slot wins, no cell is split by a tie) and ReLU units are constant."""
    net = built(name)
    rng = np.random.default_rng(11)
    x = np.zeros((3, *net.input_shape))
    x[patch] = rng.normal(size=x[patch].shape)
    plane = Plane.through(*x)
    res = slice_regions(net, plane)
    np.testing.assert_allclose(res.areas.sum(), plane.area, rtol=1e-9)
    assert res.num_cells == res.num_regions > 3
    st = plane.grid(40)
    idx, dist, _ = cell_of(res, st)
    clean = (idx >= 0) & (dist > 1e-7 * np.sqrt(plane.area))
    assert clean.mean() > 0.97
    pts = plane.points(st[clean]).reshape(-1, *net.input_shape)
    assert oracle.exact_ties(net.layers, pts).all()  # the case this test is about
    bits, _ = oracle.codes(net.layers, pts)
    for ob, cb in zip(bits, res.bits):
        np.testing.assert_array_equal(ob, cb[idx[clean]])
    x32 = plane.points(res.points).astype(np.float32).reshape(-1, *net.input_shape)
    _, margin = oracle.codes(net.layers, x32)
    far = margin > 1e-4
    assert far.mean() > 0.8
    ids = np.asarray(partax.region_ids(net, x32[far], "prefix"))[:, res.layer - 1]
    np.testing.assert_array_equal(ids, res.keys[far])


def test_general_path_matches_the_mlp_path():
    """An MLP given as a general net (a leading Flatten) has the MLP path's partition."""
    rng = np.random.default_rng(7)
    w = [rng.normal(size=s).astype(np.float32) for s in ((3, 6), (6, 5), (5, 1))]
    b = [(0.5 * rng.normal(size=n)).astype(np.float32) for n in (6, 5, 1)]
    mlp = partax.Net(w, b)
    gen = sequential([Flatten(), *mlp.layers], (3,))
    assert mlp.is_mlp and not gen.is_mlp
    plane = Plane.through(*rng.normal(size=(3, 3)))
    a, b = slice_regions(mlp, plane), slice_regions(gen, plane)
    assert a.num_cells == b.num_cells
    np.testing.assert_array_equal(a.unique_keys, b.unique_keys)
    np.testing.assert_allclose(a.region_areas, b.region_areas, rtol=1e-9, atol=1e-12)


def test_shaped_planes_and_errors():
    net = built("conv_pool")
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, *net.input_shape))
    shaped = Plane.through(*x)
    flat = Plane.through(*x.reshape(3, -1))
    assert shaped.shape == (6, 6, 1) and flat.shape == (36,)
    np.testing.assert_array_equal(shaped.origin, flat.origin)
    np.testing.assert_allclose(shaped.coords(x), flat.coords(x.reshape(3, -1)))
    a, b = slice_regions(net, shaped), slice_regions(net, flat)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.polygons, b.polygons)
    with pytest.raises(ValueError, match=r"x2: expected a vector of shape \(36,\) or \(6, 6, 1\)"):
        Plane.through(x[0], x[1].reshape(6, 6), x[2])
    with pytest.raises(ValueError, match="shape"):  # 36 values in another shape than the net's
        slice_regions(net, Plane.through(*x.reshape(3, 1, 6, 6)))
    with pytest.raises(ValueError, match="R\\^36"):
        slice_regions(net, Plane.through(*rng.normal(size=(3, 5, 5, 1))))
    for scope in ("layer", "suffix"):
        with pytest.raises(ValueError, match="prefix"):
            slice_regions(net, shaped, scope=scope)
