"""Tests of partax.geometry local maps and H-representations against a NumPy float64 chain."""

import jax
import numpy as np
import pytest

import partax
from partax.geometry import Box, halfspaces, halfspaces_batch, local_maps
from partax.geometry.local import scope_space

ARCHS = [[2, 8, 8, 1], [3, 10, 10, 2], [4, 6, 6, 2]]
ACTS = ["relu", ("leaky_relu", 0.1)]


def _net(widths, act, seed=0):
    return partax.mlp(jax.random.key(seed), widths, activation=act, bias_std=0.3)


def _np_params(net):
    return [np.asarray(W, np.float64) for W in net.weights], [np.asarray(b, np.float64) for b in net.biases]


def _np_codes(net, x):
    """Codes by a NumPy float64 forward pass (the oracle for membership)."""
    Ws, bs = _np_params(net)
    alpha = 0.0 if net.activation == "relu" else net.alpha
    h = np.asarray(x, np.float64)
    out, zs = [], []
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = h @ W + b
        zs.append(z)
        out.append(z > 0)
        h = np.where(z > 0, z, alpha * z)
    return out, zs


def _np_chain(net, mask):
    """Explicit float64 matrix chain for one frozen code: [(A_l, beta_l)], (A_out, c)."""
    Ws, bs = _np_params(net)
    alpha = 0.0 if net.activation == "relu" else net.alpha
    d = Ws[0].shape[0]
    M, v = np.eye(d), np.zeros(d)  # h = M x + v
    pre = []
    for W, b, m in zip(Ws[:-1], bs[:-1], mask):
        A, beta = W.T @ M, W.T @ v + b
        pre.append((A, beta))
        s = np.where(m, 1.0, alpha)
        M, v = s[:, None] * A, s * beta
    return pre, (Ws[-1].T @ M, Ws[-1].T @ v + bs[-1])


def _points(d, n, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("widths", ARCHS)
@pytest.mark.parametrize("act", ACTS)
def test_local_maps_match_numpy_chain(widths, act):
    net = _net(widths, act)
    x = _points(widths[0], 16, 1)
    maps = local_maps(net, x)
    masks, _ = _np_codes(net, x)
    assert len(maps.pre) == net.num_hidden
    for n in range(len(x)):
        pre, (Ao, co) = _np_chain(net, [m[n] for m in masks])
        for l, (A, beta) in enumerate(pre):
            assert maps.pre[l].A.dtype == np.float64
            np.testing.assert_allclose(maps.pre[l].A[n], A, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(maps.pre[l].beta[n], beta, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(maps.out.A[n], Ao, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(maps.out.c[n], co, rtol=1e-12, atol=1e-12)
    assert maps.out.A.shape == (16, widths[-1], widths[0])
    assert maps.out.c.shape == (16, widths[-1])


@pytest.mark.parametrize("widths", ARCHS)
@pytest.mark.parametrize("act", ACTS)
def test_local_map_equals_net_inside_region(widths, act):
    net = _net(widths, act, seed=2)
    x = _points(widths[0], 8, 3)
    maps = local_maps(net, x)
    rng = np.random.default_rng(0)
    for n in range(len(x)):
        A, b = halfspaces(net, x[n])
        slack = b - A @ x[n].astype(np.float64)
        margin = np.min(slack / np.linalg.norm(A, axis=1))
        if margin < 1e-4:
            continue
        u = rng.normal(size=(20, widths[0]))
        u *= (0.9 * margin * rng.uniform(size=(20, 1))) / np.linalg.norm(u, axis=1, keepdims=True)
        pts = (x[n] + u).astype(np.float32)
        y_affine = pts.astype(np.float64) @ maps.out.A[n].T + maps.out.c[n]
        np.testing.assert_allclose(np.asarray(net(pts)), y_affine, atol=2e-5, rtol=1e-5)
        for l, z in enumerate(_np_codes(net, pts)[1]):
            np.testing.assert_allclose(z, pts.astype(np.float64) @ maps.pre[l].A[n].T + maps.pre[l].beta[n], atol=1e-9)


@pytest.mark.parametrize("widths", ARCHS)
@pytest.mark.parametrize("layer", [1, 2])
def test_prefix_halfspaces_membership_equals_code(widths, layer):
    net = _net(widths, "relu", seed=4)
    x = _points(widths[0], 4, 5)
    z = _points(widths[0], 4000, 6).astype(np.float64) * 1.5
    codes_z, pre_z = _np_codes(net, z)
    codes_x, _ = _np_codes(net, x)
    A, b = halfspaces_batch(net, x, scope="prefix", layer=layer)
    assert A.shape == (4, sum(widths[1 : layer + 1]), widths[0])
    # keep test points away from boundaries (float rounding)
    far = np.all([np.abs(p).min(axis=1) > 1e-6 for p in pre_z[:layer]], axis=0)
    for n in range(4):
        same = np.all([np.all(codes_z[l] == codes_x[l][n], axis=1) for l in range(layer)], axis=0)
        inside = np.all(z @ A[n].T <= b[n], axis=1)
        np.testing.assert_array_equal(inside[far], same[far])


@pytest.mark.parametrize("scope", ["layer", "suffix"])
def test_latent_halfspaces_membership_equals_code(scope):
    widths = [3, 10, 10, 6, 2]
    net = _net(widths, "relu", seed=7)
    x = _points(3, 3, 8)
    layer = 2
    space = scope_space(net, x, scope, layer)
    assert space.dim == 10
    # the exemplar's latent point: h^1(x)
    h1 = np.maximum(x.astype(np.float64) @ np.asarray(net.weights[0], np.float64) + np.asarray(net.biases[0], np.float64), 0)
    np.testing.assert_allclose(space.points, h1, atol=1e-5)
    A, b = halfspaces_batch(net, x, scope=scope, layer=layer)
    sub = partax.Net(net.weights[1:], net.biases[1:], net.activation, net.alpha)
    rng = np.random.default_rng(1)
    depth = 1 if scope == "layer" else 2
    assert A.shape == (3, sum(widths[2 : 2 + depth]), 10)
    for n in range(3):
        pts = space.points[n] + rng.normal(size=(3000, 10)) * 0.3
        cz, pz = _np_codes(sub, pts)
        cx, _ = _np_codes(sub, space.points[n][None])
        far = np.all([np.abs(p).min(axis=1) > 1e-6 for p in pz[:depth]], axis=0)
        same = np.all([np.all(cz[l] == cx[l][0], axis=1) for l in range(depth)], axis=0)
        inside = np.all(pts @ A[n].T <= b[n], axis=1)
        np.testing.assert_array_equal(inside[far], same[far])
        assert same[far].any() and (~same[far]).any()


def test_sign_orientation_and_domain_rows():
    net = _net([2, 8, 8, 1], "relu", seed=9)
    x = _points(2, 1, 10)[0]
    A, b = halfspaces(net, x, domain=Box([-1, -2], [1, 2]))
    maps = local_maps(net, x[None])
    _, zs = _np_codes(net, x[None])
    z = np.concatenate([zz[0] for zz in zs])
    Au = np.concatenate([p.A[0] for p in maps.pre])
    bu = np.concatenate([p.beta[0] for p in maps.pre])
    sign = np.where(z > 0, -1.0, 1.0)
    np.testing.assert_allclose(A[:16], sign[:, None] * Au)
    np.testing.assert_allclose(b[:16], -sign * bu)
    np.testing.assert_allclose(A[16:], np.r_[np.eye(2), -np.eye(2)])
    np.testing.assert_allclose(b[16:], [1, 2, 1, 2])
    assert np.all(A @ x.astype(np.float64) <= b)


def test_box():
    box = Box([0, -1], [1, 1])
    assert box.volume(2) == 2.0
    A, b = box.rows(2)
    assert A.shape == (4, 2)
    s = box.sample(jax.random.key(0), 100)
    assert s.shape == (100, 2) and box.contains(s).all()
    assert Box(0, 2).volume(3) == 8.0
    with pytest.raises(ValueError, match="hi > lo"):
        Box(1, 0)
    with pytest.raises(ValueError, match="lo, hi"):
        Box([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="dimension"):
        box.rows(3)
    with pytest.raises(ValueError, match="finite"):
        Box(0, np.inf)
    with pytest.raises(dataclasses_error()):
        box.lo = 3


def dataclasses_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_validation():
    net = _net([2, 8, 8, 1], "relu")
    with pytest.raises(ValueError, match="x: expected shape"):
        local_maps(net, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="finite"):
        local_maps(net, np.full((1, 2), np.nan, np.float32))
    with pytest.raises(ValueError, match="scope"):
        halfspaces(net, np.zeros(2, np.float32), scope="all")
    with pytest.raises(ValueError, match="layer"):
        halfspaces(net, np.zeros(2, np.float32), layer=3)
    with pytest.raises(TypeError, match="domain"):
        halfspaces(net, np.zeros(2, np.float32), domain=(0, 1))
    with pytest.raises(TypeError, match="net"):
        local_maps("net", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="unstacked"):
        local_maps(partax.stack_nets([net, net]), np.zeros((1, 2), np.float32))
