"""Tests of the per-region polytope quantities against independent oracles
(scipy linprog, vertex enumeration, dense sampling, NumPy float64 codes)."""

import jax
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import HalfspaceIntersection

import partax
from partax.geometry import (Box, chebyshev, facets, halfspaces_batch, margins, neighbors, region_keys,
                             volumes)
from oracle import prefix_rows


def _net(widths, seed=0, act="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=act, bias_std=0.3)


_np_rows = prefix_rows  # the explicit float64 chain of tests/oracle.py


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


def _identity_first_net(seed=6, d=6, widths=(8, 7), shift=5.0):
    """A net whose first layer is ``h^1 = x + shift`` (all units active for |x| < shift), so a
    latent point ``z`` of h^1 is the image of the input ``z - shift`` (the second layer undoes
    the shift, so its hyperplanes cross the image of the input box)."""
    rest = partax.mlp(jax.random.key(seed), [d, *widths, 2], bias_std=0.3)
    W1 = np.eye(d, dtype=np.float32)
    b1 = np.full(d, shift, np.float32)
    W2 = np.asarray(rest.weights[0])
    b2 = (np.asarray(rest.biases[0]) - shift * W2.sum(axis=0)).astype(np.float32)  # undo the shift
    return partax.Net((W1, *rest.weights), (b1, b2, *rest.biases[1:]), rest.activation, rest.alpha)


@pytest.mark.parametrize("scope", ["suffix", "layer"])
def test_latent_scope_chebyshev_and_keys(scope):
    # Oracle: partax.region_ids on the FULL net, at inputs mapped back from latent points.
    net = _identity_first_net()
    shift = 5.0
    x = _x(6, 4, 40)
    dom = Box(shift - 1.5, shift + 1.5)  # latent box: every point maps back to |input| < 1.5 < shift
    c, r = chebyshev(net, x, scope=scope, layer=2, domain=dom, solver="highs")
    assert c.shape == (4, 6) and np.all(r > 0)
    own = partax.region_ids(net, x, scope)[:, 1]
    np.testing.assert_array_equal(region_keys(net, x, scope=scope, layer=2), own)
    rng = np.random.default_rng(0)
    for n in range(4):
        u = rng.normal(size=(50, 6))
        u *= 0.9 * r[n] * rng.uniform(size=(50, 1)) / np.linalg.norm(u, axis=1, keepdims=True)
        z = c[n] + u
        back = (z - shift).astype(np.float32)
        assert partax.codes(net, back).bits(1).all()  # the first layer is the identity there
        np.testing.assert_array_equal(partax.region_ids(net, back, scope)[:, 1], own[n])
        # region_keys of latent points agrees with the full net's keys at the mapped-back inputs
        np.testing.assert_array_equal(region_keys(net, x, scope=scope, layer=2, points=z),
                                      partax.region_ids(net, back, scope)[:, 1])


def test_suffix_scope_chebyshev_codes_random_net():
    # A random net (latent points cannot be mapped back): compare float64 NumPy codes of the
    # rest of the net at points of the Chebyshev ball with the full net's codes of the exemplar.
    net = _net([3, 10, 8, 2], 6)
    x = _x(3, 4, 40)
    c, r = chebyshev(net, x, scope="suffix", layer=2, solver="highs")
    assert c.shape == (4, 10) and np.all(r > 0)
    W2, b2 = np.asarray(net.weights[1], np.float64), np.asarray(net.biases[1], np.float64)
    own = partax.codes(net, x).bits(2)
    rng = np.random.default_rng(0)
    for n in range(4):
        u = rng.normal(size=(50, 10))
        u *= 0.9 * r[n] * rng.uniform(size=(50, 1)) / np.linalg.norm(u, axis=1, keepdims=True)
        bits = (c[n] + u) @ W2 + b2 > 0
        assert np.all(bits == own[n])


@pytest.mark.parametrize("scope", ["prefix", "layer", "suffix"])
@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_region_keys_match_region_ids_every_layer(scope, act):
    net = _net([3, 9, 8, 7, 2], 11, act)
    x = np.random.default_rng(5).normal(size=(64, 3)).astype(np.float32)
    ref = partax.region_ids(net, x, scope)
    for layer in (1, 2, 3):
        np.testing.assert_array_equal(region_keys(net, x, scope=scope, layer=layer), ref[:, layer - 1])
    np.testing.assert_array_equal(region_keys(net, x, scope=scope), ref[:, -1])


def test_neighbors_suffix_keys_are_sampled_regions():
    # The regions across the net facets of a suffix region at layer 2 are regions met by dense
    # sampling: their keys appear in partax.partition's table. The first layer is x + shift,
    # so sampling the input box samples the whole latent domain box.
    shift = 5.0
    net = _identity_first_net(seed=7, d=2, widths=(8, 6), shift=shift)
    S = 400_000
    z = np.random.default_rng(3).uniform(-1, 1, size=(S, 2)).astype(np.float32)
    table = partax.partition(net, z, scopes=("suffix",), progress=False).table("suffix", 2)
    t_keys = np.asarray(table.keys)
    order = np.argsort(-np.asarray(table.counts))[:6]
    ex = z[np.asarray(table.exemplars)[order]]
    dom = Box(shift - 1, shift + 1)
    fac, keys = neighbors(net, ex, scope="suffix", layer=2, domain=dom, solver="highs", return_facets=True)
    units = 8 + 6  # rows of the scope's units, then the domain's
    own = partax.region_ids(net, ex, "suffix")[:, 1]
    net_keys = []
    for n in range(len(ex)):
        k = keys[n][fac[n] < units]
        assert not np.any(k == own[n])  # across a net facet lies another region
        net_keys.append(k)
    net_keys = np.concatenate(net_keys)
    assert net_keys.size >= 10
    found = np.isin(net_keys, t_keys)
    assert found.mean() >= 0.9, found.mean()


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


def test_empty_inputs_give_empty_results():
    net = _net([3, 6, 5, 2], 0)
    x0 = np.zeros((0, 3), np.float32)
    box = Box(-1, 1)
    assert margins(net, x0, domain=box).shape == (0,)
    c, r = chebyshev(net, x0, solver="highs")
    assert c.shape == (0, 3) and r.shape == (0,)
    c, r = chebyshev(net, x0, scope="suffix", layer=2, solver="highs")
    assert c.shape == (0, 6) and r.shape == (0,)
    assert facets(net, x0, domain=box, solver="highs") == []
    assert neighbors(net, x0, solver="highs") == []
    assert neighbors(net, x0, solver="highs", return_facets=True) == ([], [])
    for method in ("exact", "mc"):
        v, e = volumes(net, x0, domain=box, method=method, solver="highs")
        assert v.shape == (0,) and e.shape == (0,)
    assert region_keys(net, x0).shape == (0,)
    A, b = halfspaces_batch(net, x0, domain=box)
    assert A.shape == (0, 6 + 5 + 6, 3) and b.shape == (0, 17)


def test_bad_reach_and_samples_are_named():
    net = _net([2, 8, 8, 1], 0)
    x = _x(2, 2, 0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reach"):
            chebyshev(net, x, reach=bad, solver="highs")
        with pytest.raises(ValueError, match="reach"):
            facets(net, x, reach=bad, solver="highs")
        with pytest.raises(ValueError, match="reach"):
            neighbors(net, x, reach=bad, solver="highs")
    with pytest.raises(ValueError, match="radius_cap"):
        chebyshev(net, x, radius_cap=0, solver="highs")
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match="num_samples"):
            volumes(net, x, domain=Box(-1, 1), method="mc", num_samples=bad)
    with pytest.raises(ValueError, match="num_rays"):
        facets(net, x, num_rays=0, solver="highs")
