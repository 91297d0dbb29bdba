"""Tests of partax.geometry.enumerate against independent oracles: Zaslavsky's count for one
layer, dense sampling of the box (keys and frequencies), the exact 2D slice enumeration,
vertex enumeration by scipy, and LP (scipy linprog) checks of the adjacency."""

import itertools

import jax
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

import partax
from partax import bounds
from partax.geometry import Box
from partax.geometry.enumerate import Enumeration, enumerate_regions
from partax.geometry.slices import Plane, slice_regions
from oracle import prefix_rows


# ----------------------------------------------------------------------------------------
# oracles (NumPy float64, no partax.geometry code)
# ----------------------------------------------------------------------------------------
def _net(widths, seed=0, bias_std=0.5, act="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=act, bias_std=bias_std)


_np_rows = prefix_rows  # the explicit float64 chain of tests/oracle.py


def _np_codes(net, x, layer=None):
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    alpha = net.alpha if net.activation == "leaky_relu" else 0.0
    L = net.num_hidden if layer is None else layer
    h = np.asarray(x, np.float64)
    out = []
    for W, b in zip(Ws[:L], bs[:L]):
        z = h @ W + b
        out.append(z > 0)
        h = np.where(z > 0, z, alpha * z)
    return np.concatenate(out, axis=1)


def _sample_keys(net, box, n, layer=None, seed=1):
    d = net.input_dim
    lo, hi = box.bounds(d)
    x = lo + np.random.default_rng(seed).random((n, d)) * (hi - lo)
    L = net.num_hidden if layer is None else layer
    return partax.region_ids(net, x.astype(np.float32), "prefix")[:, L - 1]


def _vertex_box(net):
    """A box holding every intersection point of ``d`` hyperplanes of a single layer."""
    W = np.asarray(net.weights[0], np.float64)
    b = np.asarray(net.biases[0], np.float64)
    d, k = W.shape
    pts = []
    for S in itertools.combinations(range(k), d):
        S = list(S)
        pts.append(np.linalg.solve(W[:, S].T, -b[S]))
    pts = np.array(pts)
    r = float(np.abs(pts).max()) * 1.5 + 1.0
    return Box(-r, r)


def _check_basic(res, net, box):
    """Sorted unique keys, finite positive radii, points inside their regions and the box."""
    assert isinstance(res, Enumeration)
    assert res.keys.dtype == np.uint64
    assert np.all(res.keys[1:] > res.keys[:-1])
    assert np.all(res.radii > 0)
    assert np.all(box.contains(res.points))
    # interior point: the float64 code there is the region's code, away from every row
    code = _np_codes(net, res.points, res.layer)
    assert np.array_equal(code, np.concatenate(res.bits, axis=1))
    # keys are partax.region_ids at the interior point (float32 net) when not razor-thin
    thick = res.radii > 1e-5
    ids = partax.region_ids(net, res.points[thick].astype(np.float32), "prefix")[:, res.layer - 1]
    assert np.array_equal(ids, res.keys[thick])


# ----------------------------------------------------------------------------------------
# Zaslavsky: one layer in general position
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("d,k,seed", [(2, 5, 0), (2, 9, 1), (3, 6, 2), (3, 8, 3), (4, 6, 4)])
def test_single_layer_count_is_zaslavsky(d, k, seed):
    net = _net([d, k, 1], seed=seed, bias_std=1.0)
    box = _vertex_box(net)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert res.num_regions == bounds.zaslavsky(k, d)
    assert res.complete
    assert res.volume_error < 1e-9
    _check_basic(res, net, box)


def test_five_dims_uses_qhull_volumes():
    net = _net([5, 7, 1], seed=5, bias_std=1.0)
    box = _vertex_box(net)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert res.num_regions == bounds.zaslavsky(7, 5)
    assert res.complete and res.volume_error < 1e-9


# ----------------------------------------------------------------------------------------
# deeper nets: volumes, sampling, keys
# ----------------------------------------------------------------------------------------
DEEP = [
    ([2, 8, 8, 1], 2.0, "relu", 0),
    ([3, 6, 6, 1], 1.5, "relu", 1),
    ([4, 5, 5, 1], 1.5, "relu", 2),
    ([3, 5, 5, 5, 1], 1.5, ("leaky_relu", 0.1), 3),
]


@pytest.fixture(scope="module", params=DEEP, ids=lambda p: "-".join(map(str, p[0])))
def deep(request):
    widths, h, act, seed = request.param
    net = _net(widths, seed=seed, act=act)
    box = Box(-h, h)
    return net, box, enumerate_regions(net, box, progress=False, solver="highs")


def test_deep_volumes_sum_to_box(deep):
    net, box, res = deep
    d = net.input_dim
    assert res.complete and res.frontier_left == 0
    assert abs(res.volumes.sum() - box.volume(d)) <= 1e-9 * box.volume(d)
    assert np.all(res.volumes > 0)
    _check_basic(res, net, box)


def test_deep_sampling_keys_and_frequencies(deep):
    net, box, res = deep
    N = 200_000
    keys = _sample_keys(net, box, N)
    u, counts = np.unique(keys, return_counts=True)
    idx = res.index_of(u)
    assert np.all(idx >= 0), "a key met by sampling is missing from the enumeration"
    full = np.zeros(res.num_regions)
    full[idx] = counts
    p = res.volumes / box.volume(net.input_dim)
    se = np.sqrt(N * p * (1 - p))
    assert np.all(np.abs(full - N * p) <= 5 * se + 1.0)


def test_deep_volumes_match_vertex_enumeration(deep):
    """A few regions: volume by scipy HalfspaceIntersection of independently built rows."""
    net, box, res = deep
    d = net.input_dim
    rng = np.random.default_rng(0)
    for i in rng.choice(res.num_regions, size=min(15, res.num_regions), replace=False):
        A, b = _np_rows(net, res.points[i])
        Ab, bb = box.rows(d)
        A, b = np.concatenate([A, Ab]), np.concatenate([b, bb])
        hs = HalfspaceIntersection(np.concatenate([A, -b[:, None]], axis=1), res.points[i])
        vol = ConvexHull(hs.intersections).volume
        assert abs(vol - res.volumes[i]) <= 1e-9 * max(1.0, vol)


def test_deep_edges(deep):
    net, box, res = deep
    codes = np.concatenate(res.bits, axis=1)
    i, j = res.edges[:, 0], res.edges[:, 1]
    assert np.all(i < j)
    assert len(np.unique(res.edges, axis=0)) == len(res.edges)
    assert res.stats["one_sided_edges"] == 0  # every edge found from both of its regions
    diff = codes[i] != codes[j]
    assert np.all(diff.sum(axis=1) == 1)
    assert np.array_equal(np.argmax(diff, axis=1), res.edge_units)
    # the adjacency graph is connected (the box is)
    parent = np.arange(res.num_regions)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in res.edges:
        parent[find(a)] = find(b)
    assert len({find(a) for a in range(res.num_regions)}) == 1


def _shared_facet_radius(net, box, p, q, unit):
    """Largest ball radius inside the hyperplane of ``unit`` and both closures (scipy LP)."""
    d = net.input_dim
    A1, b1 = _np_rows(net, p)
    A2, b2 = _np_rows(net, q)
    h, hb = A1[unit], b1[unit]
    keep = np.arange(len(b1)) != unit
    Ab, bb = box.rows(d)
    A = np.concatenate([A1[keep], A2[keep], Ab])
    b = np.concatenate([b1[keep], b2[keep], bb])
    nrm = np.linalg.norm(A, axis=1)
    live = nrm > 1e-12
    A, b, nrm = A[live], b[live], nrm[live]
    # in-plane radius: project each row's normal onto the hyperplane
    hn = h / np.linalg.norm(h)
    proj = np.linalg.norm(A - np.outer(A @ hn, hn), axis=1)
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[A, proj], b_ub=b,
                  A_eq=np.r_[h, 0.0][None], b_eq=[hb], bounds=[(None, None)] * d + [(None, 10.0)])
    return -res.fun if res.status == 0 else -np.inf


@pytest.mark.parametrize("widths,h,seed", [([2, 6, 6, 1], 2.0, 0), ([3, 5, 5, 1], 1.5, 1)])
def test_adjacency_equals_lp_oracle(widths, h, seed):
    """Every pair of regions whose codes differ in one unit: an edge iff they share a facet."""
    net = _net(widths, seed=seed)
    box = Box(-h, h)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    codes = np.concatenate(res.bits, axis=1)
    index = {c.tobytes(): n for n, c in enumerate(codes)}
    edges = {tuple(e) for e in res.edges.tolist()}
    checked = 0
    for n, c in enumerate(codes):
        for u in range(codes.shape[1]):
            c2 = c.copy()
            c2[u] ^= True
            m = index.get(c2.tobytes())
            if m is None or m < n:
                continue
            r = _shared_facet_radius(net, box, res.points[n], res.points[m], u)
            assert ((n, m) in edges) == (r > 1e-9), (n, m, u, r)
            checked += 1
    assert checked >= len(edges)


# ----------------------------------------------------------------------------------------
# 2D: equal to the exact slice enumeration
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths,h,seed,layer", [([2, 8, 8, 1], 2.0, 0, None), ([2, 6, 6, 6, 1], 1.5, 3, None),
                                                 ([2, 6, 6, 6, 1], 1.5, 3, 2)])
def test_equals_slice_enumeration(widths, h, seed, layer):
    net = _net(widths, seed=seed)
    box = Box(-h, h)
    res = enumerate_regions(net, box, layer=layer, progress=False, solver="highs")
    sl = slice_regions(net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-h, h), (-h, h))), layer=layer)
    assert np.array_equal(res.keys, sl.unique_keys)
    assert np.allclose(res.volumes, sl.region_areas, rtol=0, atol=1e-9 * box.volume(2))
    assert res.layer == (layer or net.num_hidden)


# ----------------------------------------------------------------------------------------
# scopes, layers, solvers, caps, seeds
# ----------------------------------------------------------------------------------------
def test_layer_one_is_first_layer_arrangement():
    net = _net([3, 7, 5, 1], seed=4, bias_std=1.0)
    one = partax.Net.from_arrays([net.weights[0], net.biases[0], np.ones((7, 1), np.float32), np.zeros(1, np.float32)])
    box = _vertex_box(one)
    a = enumerate_regions(net, box, layer=1, progress=False, solver="highs")
    b = enumerate_regions(net, box, scope="layer", layer=1, progress=False, solver="highs")
    c = enumerate_regions(one, box, progress=False, solver="highs")
    assert a.num_regions == bounds.zaslavsky(7, 3)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.keys, c.keys)
    assert np.allclose(a.volumes, c.volumes, rtol=1e-12, atol=0)


def test_suffix_at_layer_one_is_full_prefix():
    net = _net([2, 5, 5, 1], seed=6)
    box = Box(-1.5, 1.5)
    a = enumerate_regions(net, box, progress=False, solver="highs")
    b = enumerate_regions(net, box, scope="suffix", layer=1, progress=False, solver="highs")
    assert np.array_equal(a.keys, b.keys)


def test_ipm_matches_highs():
    net = _net([3, 8, 8, 1], seed=7)
    box = Box(-2.0, 2.0)
    a = enumerate_regions(net, box, progress=False, solver="highs")
    b = enumerate_regions(net, box, progress=False, solver="ipm")
    assert b.complete and b.stats["ipm_lps"] > 0
    assert np.array_equal(a.keys, b.keys)
    assert np.allclose(a.volumes, b.volumes, rtol=1e-9, atol=1e-12)
    assert np.array_equal(a.edges, b.edges)
    # both Chebyshev radii are optimal: equal up to the LP tolerance
    assert np.allclose(a.radii, b.radii, rtol=1e-5, atol=1e-7)


def test_max_regions_cap_and_seeds():
    net = _net([3, 8, 8, 1], seed=8)
    box = Box(-2.0, 2.0)
    full = enumerate_regions(net, box, progress=False, solver="highs")
    cap = enumerate_regions(net, box, max_regions=10, progress=False, solver="highs")
    assert not cap.complete and cap.num_regions == 10 and cap.frontier_left > 0
    assert np.all(full.index_of(cap.keys) >= 0)
    one = enumerate_regions(net, box, seeds=np.zeros((1, 3)), progress=False, solver="highs")
    assert one.stats["num_seeds"] == 1
    assert np.array_equal(one.keys, full.keys)


def test_small_box_is_complete():
    net = _net([3, 8, 8, 1], seed=9)
    box = Box([0.1, 0.2, -0.3], [0.15, 0.3, -0.25])
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert res.complete
    keys = _sample_keys(net, box, 20_000)
    assert np.all(res.index_of(np.unique(keys)) >= 0)


def test_index_of():
    net = _net([2, 4, 1], seed=1)
    res = enumerate_regions(net, Box(-1, 1), progress=False, solver="highs")
    assert np.array_equal(res.index_of(res.keys), np.arange(res.num_regions))
    missing = np.array([0], np.uint64) if 0 not in set(res.keys.tolist()) else np.array([1], np.uint64)
    assert res.index_of(missing).tolist() == [-1]


# ----------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------
def test_validation_names_the_argument():
    net = _net([2, 4, 1])
    box = Box(-1, 1)
    with pytest.raises(TypeError, match="net"):
        enumerate_regions("net", box)
    with pytest.raises(TypeError, match="domain"):  # None is all of R^d (tests/test_enumerate_rd.py)
        enumerate_regions(net, "box")
    with pytest.raises(ValueError, match="domain"):
        enumerate_regions(net, Box([0, 0, 0], [1, 1, 1]))
    with pytest.raises(ValueError, match="scope"):
        enumerate_regions(net, box, scope="region")
    deep = _net([2, 4, 4, 1])
    with pytest.raises(ValueError, match="scope"):
        enumerate_regions(deep, box, scope="layer", layer=2)
    with pytest.raises(ValueError, match="layer"):
        enumerate_regions(deep, box, layer=3)
    with pytest.raises(ValueError, match="max_regions"):
        enumerate_regions(net, box, max_regions=0)
    with pytest.raises(ValueError, match="solver"):
        enumerate_regions(net, box, solver="simplex")
    with pytest.raises(ValueError, match="seeds"):
        enumerate_regions(net, box, seeds=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="seeds"):
        enumerate_regions(net, box, seeds=np.full((1, 2), 5.0))
    with pytest.raises(ValueError, match="net"):
        enumerate_regions(_net([1, 4, 1]), box)


# ----------------------------------------------------------------------------------------
# non-generic nets: repeated hyperplanes, concurrent lines, units with constant pre-activation
# ----------------------------------------------------------------------------------------
def _degenerate_2d():
    W1 = np.array([[1, 0, 1, 1, 0.5], [0, 1, 1, 1, -0.3]], np.float32)  # units 2, 3 share a line;
    b1 = np.array([0, 0, 0, 0, 0.1], np.float32)  # lines 0, 1, 2 meet at the origin
    W2 = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    b2 = np.zeros(4, np.float32)  # all layer-1 units off -> layer 2 is identically zero there
    return partax.Net.from_arrays([W1, b1, W2, b2, np.ones((4, 1), np.float32), np.zeros(1, np.float32)])


def test_degenerate_2d_equals_slice_enumeration():
    net = _degenerate_2d()
    box = Box(-1, 1)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    sl = slice_regions(net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-1, 1), (-1, 1))))
    assert res.complete
    assert np.array_equal(res.keys, sl.unique_keys)
    assert np.allclose(res.volumes, sl.region_areas, rtol=0, atol=1e-9)
    assert res.stats["empty_flips"] > 0  # the flipped codes across the repeated line are empty
    assert res.stats["one_sided_edges"] == 0


def test_degenerate_3d_complete_and_covers_samples():
    W1 = np.array([[1, 1, 0, 0, 1, 0], [0, 1, 1, 0, 1, 0], [0, 0, 1, 0, 1, 0]], np.float32)
    W1[:, 3] = W1[:, 0]  # a repeated plane; unit 4's plane passes through the corner (1, 1, 1)
    b1 = np.array([0, 0.2, 0, 0, -3, 0], np.float32)  # unit 5: zero weights, zero bias
    rng = np.random.default_rng(1)
    W2 = rng.normal(size=(6, 5)).astype(np.float32)
    b2 = (0.3 * rng.normal(size=5)).astype(np.float32)
    net = partax.Net.from_arrays([W1, b1, W2, b2, np.ones((5, 1), np.float32), np.zeros(1, np.float32)])
    box = Box(-1, 1)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert res.complete and res.volume_error < 1e-9
    keys = _sample_keys(net, box, 100_000)
    assert np.all(res.index_of(np.unique(keys)) >= 0)
    _check_basic(res, net, box)


# ----------------------------------------------------------------------------------------
# benchmark entry point and docstring examples
# ----------------------------------------------------------------------------------------
def test_bench_enumerate_small():
    from partax.bench.enumerate import bench_enumerate

    r = bench_enumerate(workloads=["3-8-8-1"])
    (w,) = r["workloads"]
    assert w["complete"] and w["regions"] > 0 and w["regions_per_s"] > 0
    with pytest.raises(ValueError, match="workloads"):
        bench_enumerate(workloads=["nope"])


def test_docstring_examples():
    import doctest

    import partax.geometry.enumerate as mod

    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


# ----------------------------------------------------------------------------------------
# the qhull slow path: facets by LPs, and a failed facet LP is reported, not read as "no facet"
# ----------------------------------------------------------------------------------------
def _no_hulls(monkeypatch):
    from scipy.spatial import QhullError

    from partax.geometry import polar

    def fail(*args, **kw):
        raise QhullError("forced")

    monkeypatch.setattr(polar, "_polar", fail)


def test_facets_by_lps_when_qhull_fails(monkeypatch):
    net = _net([2, 6, 1], seed=3)
    box = Box(-2.0, 2.0)
    ref = enumerate_regions(net, box, progress=False, solver="highs")
    _no_hulls(monkeypatch)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert res.stats["hull_failures"] == res.num_regions and res.stats["facet_lp_failures"] == 0
    assert res.complete and np.array_equal(res.keys, ref.keys) and np.array_equal(res.edges, ref.edges)
    np.testing.assert_allclose(res.volumes, ref.volumes, rtol=1e-9, atol=1e-12)


def test_failed_facet_lp_makes_the_enumeration_incomplete(monkeypatch):
    from partax.geometry import lp

    net = _net([2, 6, 1], seed=3)
    box = Box(-2.0, 2.0)
    _no_hulls(monkeypatch)
    real = lp.solve
    failed = []

    def flaky(c, A, b, **kw):
        res = real(c, A, b, **kw)
        if np.shape(c)[-1] == 2:  # the redundancy LPs (Chebyshev LPs have d + 1 variables)
            st = res.status.copy()
            st[0] = lp.FAILED
            failed.append(1)
            return lp.LPResult(res.x, np.where(st == lp.OPTIMAL, res.value, np.nan), st, res.iterations)
        return res

    monkeypatch.setattr(lp, "solve", flaky)
    res = enumerate_regions(net, box, progress=False, solver="highs")
    assert failed and res.stats["facet_lp_failures"] == len(failed)
    assert not res.complete


def test_a_6d_vertex_set_that_qhull_refuses_by_default_still_gets_its_volume():
    """Exact vertices of a 6-D region (random 6-8-8-2 net) on which qhull's defaults raise a
    topology error: the volume comes from the retry, equal to a Delaunay triangulation's."""
    import math
    import pathlib

    from scipy.spatial import ConvexHull, Delaunay
    from scipy.spatial import QhullError

    from partax.geometry.polar import _hull_volume

    v = np.load(pathlib.Path(__file__).parent / "data" / "qhull_wide_merge_vertices.npy")
    with pytest.raises(QhullError):
        ConvexHull(v)  # the case this guards
    stats = {}
    vol = _hull_volume(v, stats)
    tri = Delaunay(v - v.mean(0), qhull_options="QJ")
    ref = sum(abs(np.linalg.det(v[s[1:]] - v[s[0]])) for s in tri.simplices) / math.factorial(v.shape[1])
    assert stats == {"hull_retries": 1}
    assert abs(vol - ref) <= 1e-9 * ref
