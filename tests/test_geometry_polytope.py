"""Tests of the per-region polytope quantities against independent oracles
(scipy linprog, vertex enumeration, dense sampling, NumPy float64 codes)."""

import jax
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

import partax
from partax.geometry import Box, chebyshev, facets, halfspaces_batch, margins, neighbors, volumes


def _net(widths, seed=0, act="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=act, bias_std=0.3)


def _np_rows(net, x, layer=None):
    """Region rows by an explicit NumPy float64 chain (independent of partax.geometry)."""
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    L = net.num_hidden if layer is None else layer
    d = Ws[0].shape[0]
    M, v = np.eye(d), np.zeros(d)
    h = np.asarray(x, np.float64).reshape(-1)
    As, cs = [], []
    for W, b in zip(Ws[:L], bs[:L]):
        A, beta = W.T @ M, W.T @ v + b
        z = h @ W + b
        s = np.where(z > 0, -1.0, 1.0)
        As.append(s[:, None] * A)
        cs.append(-s * beta)
        m = (z > 0).astype(float)
        M, v, h = m[:, None] * A, m * beta, np.maximum(z, 0)
    return np.concatenate(As), np.concatenate(cs)


def _keys(net, pts, layer=None):
    L = net.num_hidden if layer is None else layer
    return partax.region_ids(net, np.asarray(pts, np.float32), "prefix")[:, L - 1]


def _x(d, n, seed):
    return np.random.default_rng(seed).uniform(-0.9, 0.9, size=(n, d)).astype(np.float32)


CASES = [([2, 8, 8, 1], 0), ([3, 10, 10, 2], 1), ([4, 6, 6, 2], 2)]


@pytest.mark.parametrize("widths,seed", CASES)
def test_margins_match_numpy_rows_and_sampling(widths, seed):
    net = _net(widths, seed)
    x = _x(widths[0], 8, seed)
    box = Box(-1, 1)
    m = margins(net, x, domain=box)
    rng = np.random.default_rng(0)
    Ad, bd = box.rows(widths[0])
    for n in range(len(x)):
        A, b = _np_rows(net, x[n : n + 1] * 1.0)
        A, b = np.r_[A, Ad], np.r_[b, bd]
        ref = np.min((b - A @ x[n].astype(np.float64)) / np.linalg.norm(A, axis=1))
        assert m[n] == pytest.approx(ref, abs=1e-9)
        # points strictly inside the margin ball share the code
        u = rng.normal(size=(50, widths[0]))
        u *= 0.95 * m[n] * rng.uniform(size=(50, 1)) / np.linalg.norm(u, axis=1, keepdims=True)
        k = _keys(net, x[n] + u)
        assert np.all(k == _keys(net, x[n : n + 1])[0])


@pytest.mark.parametrize("widths,seed", CASES)
@pytest.mark.parametrize("solver", ["ipm", "highs"])
def test_chebyshev_against_linprog_and_ball_membership(widths, seed, solver):
    net = _net(widths, seed)
    x = _x(widths[0], 6, seed + 10)
    box = Box(-1, 1)
    centers, radii = chebyshev(net, x, domain=box, solver=solver)
    rng = np.random.default_rng(1)
    own = _keys(net, x)
    for n in range(len(x)):
        A, b = _np_rows(net, x[n : n + 1] * 1.0)
        k = widths[0]
        nrm = np.linalg.norm(A, axis=1)
        c = np.zeros(k + 1)
        c[-1] = -1
        res = linprog(c, A_ub=np.c_[A, nrm], b_ub=b, bounds=[(-1, 1)] * k + [(0, None)], method="highs")
        # the box as bounds on the centre, plus the ball inside the box:
        Ab = np.c_[np.r_[np.eye(k), -np.eye(k)], np.ones(2 * k)]
        res = linprog(c, A_ub=np.r_[np.c_[A, nrm], Ab], b_ub=np.r_[b, np.ones(2 * k)],
                      bounds=[(None, None)] * k + [(0, None)], method="highs")
        assert res.status == 0
        assert radii[n] == pytest.approx(res.x[-1], abs=1e-6)
        assert radii[n] > 0
        # points inside the Chebyshev ball share the exemplar's code
        u = rng.normal(size=(100, k))
        u *= 0.95 * radii[n] * rng.uniform(size=(100, 1)) ** (1 / k) / np.linalg.norm(u, axis=1, keepdims=True)
        assert np.all(_keys(net, centers[n] + u) == own[n])


def test_chebyshev_ipm_equals_highs_no_domain():
    net = _net([3, 10, 10, 2], 3)
    x = _x(3, 10, 4)
    _, r1 = chebyshev(net, x, solver="ipm")
    _, r2 = chebyshev(net, x, solver="highs")
    np.testing.assert_allclose(r1, r2, atol=1e-6)


def _facets_oracle(A, b, box_k):
    """Row i is a facet iff max a_i z over the other rows (and the box) exceeds b_i."""
    out = []
    for i in range(len(A)):
        keep = np.arange(len(A)) != i
        res = linprog(-A[i], A_ub=A[keep], b_ub=b[keep], bounds=[(-3, 3)] * box_k, method="highs")
        assert res.status == 0
        if -res.fun > b[i] + 1e-7 * np.linalg.norm(A[i]):
            out.append(i)
    return np.array(out)


@pytest.mark.parametrize("widths,seed", CASES)
@pytest.mark.parametrize("solver", ["ipm", "highs"])
def test_facets_against_linprog_redundancy(widths, seed, solver):
    net = _net(widths, seed)
    x = _x(widths[0], 5, seed + 20)
    box = Box(-1, 1)
    fac = facets(net, x, domain=box, solver=solver)
    A, b = halfspaces_batch(net, x, domain=box)
    for n in range(len(x)):
        ref = _facets_oracle(A[n], b[n], widths[0])
        np.testing.assert_array_equal(fac[n], ref)


def test_neighbors_by_vertex_enumeration_2d():
    net = _net([2, 8, 8, 1], 5)
    x = _x(2, 6, 30)
    box = Box(-1, 1)
    fac, keys = neighbors(net, x, domain=box, solver="highs", return_facets=True)
    A, b = halfspaces_batch(net, x, domain=box)
    _, r = chebyshev(net, x, domain=box, solver="highs")
    own = _keys(net, x)
    checked = 0
    for n in range(len(x)):
        assert len(keys[n]) == len(fac[n])
        # independent: polygon vertices; each facet is an edge; step out from its midpoint
        c = np.asarray(chebyshev(net, x[n : n + 1], domain=box, solver="highs")[0][0])
        hs = HalfspaceIntersection(np.c_[A[n], -b[n]], c)
        V = hs.intersections
        for i, key in zip(fac[n], keys[n]):
            a = A[n][i] / np.linalg.norm(A[n][i])
            on = np.abs(V @ a - b[n][i] / np.linalg.norm(A[n][i])) < 1e-8
            assert on.sum() == 2, "a facet of a polygon is an edge with two vertices"
            mid = V[on].mean(axis=0)
            length = np.linalg.norm(V[on][0] - V[on][1])
            across = mid + 1e-3 * min(length, 1.0) * a
            inside = mid - 1e-3 * min(length, 1.0) * a
            assert _keys(net, inside[None])[0] == own[n]
            if i < 16:
                assert key != own[n]  # a net facet (not the box): the neighbour key is that of the point across
                assert _keys(net, across[None])[0] == key
                checked += 1
    assert checked > 5


@pytest.mark.parametrize("widths,seed", [([2, 8, 8, 1], 0), ([3, 10, 10, 2], 1), ([4, 6, 6, 2], 2)])
def test_volumes_exact_vs_dense_sampling(widths, seed):
    net = _net(widths, seed)
    d = widths[0]
    box = Box(-1, 1)
    S = 200_000
    z = np.random.default_rng(seed).uniform(-1, 1, size=(S, d)).astype(np.float32)
    kz = _keys(net, z)
    uniq, first, counts = np.unique(kz, return_index=True, return_counts=True)
    top = np.argsort(-counts)[:5]
    x = z[first[top]]
    vol, err = volumes(net, x, domain=box, method="exact", solver="highs")
    assert np.all(err == 0)
    p = counts[top] / S
    freq = p * box.volume(d)
    se = box.volume(d) * np.sqrt(p * (1 - p) / S)
    assert np.all(np.abs(vol - freq) <= 5 * se + 1e-12), (vol, freq, se)
    # Monte Carlo method agrees too (within the combined error)
    vmc, emc = volumes(net, x, domain=box, method="mc", num_samples=20000, key=1, solver="highs")
    assert np.all(np.abs(vmc - vol) <= 5 * emc + 1e-12)
    assert np.all(emc > 0)


def test_volumes_sum_to_box_in_1d():
    net = _net([1, 6, 6, 1], 3)
    box = Box(-2, 2)
    z = np.linspace(-2, 2, 20001, dtype=np.float32)[:, None]
    kz = _keys(net, z)
    _, first = np.unique(kz, return_index=True)
    vol, _ = volumes(net, z[first], domain=box, solver="highs")
    assert vol.sum() == pytest.approx(4.0, abs=1e-6)


def test_suffix_scope_chebyshev_and_keys():
    net = _net([3, 10, 8, 2], 6)
    x = _x(3, 4, 40)
    c, r = chebyshev(net, x, scope="suffix", layer=2, solver="highs")
    assert c.shape == (4, 10) and np.all(r > 0)
    keys = partax.region_ids(net, x, "suffix")[:, 1]
    sub = partax.Net(net.weights[1:], net.biases[1:], net.activation, net.alpha)
    rng = np.random.default_rng(0)
    for n in range(4):
        u = rng.normal(size=(50, 10))
        u *= 0.9 * r[n] * rng.uniform(size=(50, 1)) / np.linalg.norm(u, axis=1, keepdims=True)
        k = partax.region_ids(sub, (c[n] + u).astype(np.float32), "suffix")[:, 0]
        assert np.all(k == keys[n])


def test_validation():
    net = _net([2, 8, 8, 1], 0)
    x = _x(2, 2, 0)
    with pytest.raises(ValueError, match="domain"):
        volumes(net, x)
    with pytest.raises(ValueError, match="method"):
        volumes(net, x, domain=Box(-1, 1), method="qmc")
    with pytest.raises(ValueError, match="solver"):
        chebyshev(net, x, solver="glpk")
    with pytest.raises(ValueError, match="dimension"):
        volumes(partax.mlp(jax.random.key(0), [7, 4, 1]), np.zeros((1, 7), np.float32), domain=Box(-1, 1), method="exact")
