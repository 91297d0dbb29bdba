"""Enumeration of all of R^d and the completeness certificate, against independent oracles:
the layer-by-layer LP enumerator of tests/enumeration_oracle.py (scipy linprog), Zaslavsky's
count and the closed form of the unbounded regions of one layer in general position, scipy's
halfspace intersection for volumes, and dense Gaussian sampling."""

from math import comb

import jax
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

import enumeration_oracle as orc
import partax
from partax import bounds
from partax.geometry import Box
from partax.bench.enumerate import bench_enumerate
from partax.geometry.enumerate import enumerate_regions


def _net(widths, seed=0, bias_std=0.5, act="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=act, bias_std=bias_std)


def _codes(res):
    return np.concatenate(res.bits, axis=1)


def _by_code(res):
    return {c.tobytes(): i for i, c in enumerate(_codes(res))}


def _unbounded_closed_form(k, d):
    """Unbounded regions of k affine hyperplanes in general position in R^d."""
    return 2 * sum(comb(k - 1, j) for j in range(d))


def _vertices(A, b, point):
    hs = HalfspaceIntersection(np.concatenate([A, -b[:, None]], axis=1), point)
    return hs.intersections


# ----------------------------------------------------------------------------------------
# the closed forms, checked on the oracle first
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("d,k,seed", [(2, 4, 0), (2, 6, 1), (3, 5, 2), (3, 2, 3), (4, 5, 4)])
def test_closed_forms_hold_for_the_oracle(d, k, seed):
    """Zaslavsky's count and 2 sum_{j<d} C(k-1, j) unbounded regions, on the oracle alone."""
    net = _net([d, k, 1], seed=seed, bias_std=1.0)
    regs = orc.regions(net)
    assert len(regs) == bounds.zaslavsky(k, d)
    assert sum(orc.is_unbounded(r["A"]) for r in regs) == _unbounded_closed_form(k, d)


@pytest.mark.parametrize("d,k,seed", [(2, 5, 0), (2, 12, 1), (3, 6, 2), (3, 10, 3), (4, 7, 4), (4, 3, 5), (3, 2, 6)])
def test_single_layer_rd_is_zaslavsky(d, k, seed):
    net = _net([d, k, 1], seed=seed, bias_std=1.0)
    res = enumerate_regions(net, None, progress=False)
    assert res.complete and res.dropped == 0
    assert res.num_regions == bounds.zaslavsky(k, d)
    assert res.num_unbounded == _unbounded_closed_form(k, d)
    assert np.all(np.isinf(res.volumes[~res.bounded]))
    assert np.all(np.isfinite(res.volumes[res.bounded]) & (res.volumes[res.bounded] > 0))
    if k < d:  # rank-deficient first layer: cylinders, every one unbounded
        assert res.stats["rank"] == k and res.box is None and not res.bounded.any()


# ----------------------------------------------------------------------------------------
# deep nets: equal to the independent enumerator
# ----------------------------------------------------------------------------------------
RD = [
    ([2, 8, 8, 1], 0, "relu"),
    pytest.param(([2, 10, 10, 10, 1], 1, "relu"), marks=pytest.mark.slow),  # 2D: also 2-8-8-1
    ([3, 6, 6, 1], 1, "relu"),
    ([4, 5, 5, 1], 2, "relu"),
    ([3, 5, 5, 5, 1], 4, ("leaky_relu", 0.1)),
]


def _rd_id(p):
    return "-".join(map(str, (p.values[0] if hasattr(p, "values") else p)[0]))


@pytest.fixture(scope="module", params=RD, ids=[_rd_id(p) for p in RD])
def rd(request):
    widths, seed, act = request.param
    net = _net(widths, seed=seed, act=act)
    return net, enumerate_regions(net, None, progress=False), orc.regions(net)


def test_rd_equals_oracle(rd):
    net, res, regs = rd
    assert res.complete and res.frontier_left == 0 and res.dropped == 0
    assert res.certificate == "volume"
    assert res.num_regions == len(regs)
    index = _by_code(res)
    assert {r["code"].tobytes() for r in regs} == set(index)
    # boundedness per region equals the oracle's recession LP
    for r in regs:
        assert bool(res.bounded[index[r["code"].tobytes()]]) == (not orc.is_unbounded(r["A"]))
    # interior points: their float64 code is the region's code; keys are partax.region_ids there
    assert np.array_equal(orc.codes(net, res.points), _codes(res))
    thick = res.radii > 1e-5
    ids = partax.region_ids(net, res.points[thick].astype(np.float32), "prefix")[:, -1]
    assert np.array_equal(ids, res.keys[thick])
    assert np.all(res.keys[1:] > res.keys[:-1])


def test_rd_certificate_box(rd):
    """The big box holds every region (an LP per region), the clipped volumes fill it, and
    the regions reaching its boundary are exactly the unbounded ones."""
    net, res, regs = rd
    box = res.box
    d = net.input_dim
    lo, hi = box.bounds(d)
    assert abs(res.volume_gap) <= res.volume_tol == pytest.approx(1e-9 * box.volume(d))
    assert res.box_volume == pytest.approx(box.volume(d))
    assert np.all(box.contains(res.points))
    index = _by_code(res)
    Ab, bb = box.rows(d)
    sample = set(np.random.default_rng(1).choice(len(regs), size=min(40, len(regs)), replace=False).tolist())
    for n, r in enumerate(regs):
        A, b = np.concatenate([r["A"], Ab]), np.concatenate([r["b"], bb])
        t, x = orc.chebyshev(A, b, 1e-9)
        assert t > 1e-9  # the region meets the box
        if n not in sample:
            continue
        # does region ∩ box reach the box's boundary? max / min of every coordinate by linprog
        reach = False
        for j in range(d):
            for sgn in (1.0, -1.0):
                c = np.zeros(d)
                c[j] = -sgn
                out = linprog(c, A_ub=A, b_ub=b, bounds=[(None, None)] * d, method="highs")
                assert out.status == 0
                edge = hi[j] if sgn > 0 else -lo[j]
                reach |= sgn * out.x[j] >= edge - 1e-9 * (1 + abs(edge))
        assert reach == (not res.bounded[index[r["code"].tobytes()]])


def test_rd_bounded_volumes_match_vertex_enumeration(rd):
    net, res, regs = rd
    index = _by_code(res)
    rng = np.random.default_rng(0)
    bounded = [r for r in regs if not orc.is_unbounded(r["A"])]
    for n in rng.choice(len(bounded), size=min(12, len(bounded)), replace=False):
        r = bounded[n]
        vol = ConvexHull(_vertices(r["A"], r["b"], r["point"])).volume
        assert abs(vol - res.volumes[index[r["code"].tobytes()]]) <= 1e-9 * max(1.0, vol)


def test_rd_covers_gaussian_samples(rd):
    net, res, _ = rd
    d = net.input_dim
    x = np.random.default_rng(3).normal(size=(100_000, d)) * np.r_[1.0, 10.0, 100.0, 1000.0].repeat(25_000)[:, None]
    keys = partax.region_ids(net, x.astype(np.float32), "prefix")[:, -1]
    assert np.all(res.index_of(np.unique(keys)) >= 0), "a sampled key is missing from the R^d enumeration"


def test_rd_edges_symmetric_and_connected(rd):
    net, res, _ = rd
    assert res.stats["one_sided_edges"] == 0
    parent = np.arange(res.num_regions)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in res.edges:
        parent[find(a)] = find(b)
    assert len({find(a) for a in range(res.num_regions)}) == 1


def test_rd_contains_every_box_enumeration(rd):
    net, res, _ = rd
    box = enumerate_regions(net, Box(-1.0, 1.0), progress=False)
    assert box.complete
    assert np.all(res.index_of(box.keys) >= 0)


# ----------------------------------------------------------------------------------------
# non-generic nets: zero biases (a central arrangement), repeated hyperplanes, dead units
# ----------------------------------------------------------------------------------------
def _degenerate_2d():
    W1 = np.array([[1, 0, 1, 1, 0.5], [0, 1, 1, 1, -0.3]], np.float32)  # units 2, 3 share a line
    b1 = np.array([0, 0, 0, 0, 0.1], np.float32)
    W2 = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    b2 = np.zeros(4, np.float32)  # all layer-1 units off -> layer 2 identically zero there
    return partax.Net.from_arrays([W1, b1, W2, b2, np.ones((4, 1), np.float32), np.zeros(1, np.float32)])


@pytest.mark.parametrize("which", ["zero-bias-2d", "zero-bias-3d", "degenerate-2d"])
def test_rd_non_generic_equals_oracle(which):
    if which == "degenerate-2d":
        net = _degenerate_2d()
    else:
        widths = [2, 6, 6, 1] if which == "zero-bias-2d" else [3, 5, 5, 1]
        net = _net(widths, seed=7, bias_std=0.0)
    res = enumerate_regions(net, None, progress=False)
    regs = orc.regions(net)
    assert res.complete and res.dropped == 0
    assert {r["code"].tobytes() for r in regs} == set(_by_code(res))
    index = _by_code(res)
    for r in regs:
        assert bool(res.bounded[index[r["code"].tobytes()]]) == (not orc.is_unbounded(r["A"]))
    if which != "degenerate-2d":
        assert not res.bounded.any()  # positively homogeneous: every region is a cone
    else:
        assert res.stats["empty_flips"] > 0  # non-generic crossings, resolved by the exact crossing code
    assert res.stats["step_fallbacks"] == 0


# ----------------------------------------------------------------------------------------
# the certificate says what it certifies
# ----------------------------------------------------------------------------------------
def test_box_certificate_fields():
    net = _net([3, 8, 8, 1], seed=8)
    box = Box(-2.0, 2.0)
    res = enumerate_regions(net, box, progress=False)
    assert res.complete and res.certificate == "volume" and res.box == box and res.bounded is None
    assert res.volume_tol == pytest.approx(1e-9 * 64.0)
    assert abs(res.volume_gap) <= res.volume_tol
    assert res.volume_gap == pytest.approx(res.volumes.sum() - 64.0, abs=1e-12)
    # a tolerance below the rounding of the sum: the certificate must fail, not pass silently
    strict = enumerate_regions(net, box, progress=False, volume_tol=1e-300)
    assert strict.volume_tol == 1e-300
    assert strict.complete == (abs(strict.volume_gap) <= 1e-300)


@pytest.mark.parametrize("domain", [Box(-2.0, 2.0), None], ids=["box", "R^d"])
def test_dropped_regions_make_it_incomplete(domain):
    net = _net([3, 8, 8, 1], seed=8)
    full = enumerate_regions(net, domain, progress=False)
    # a huge min_radius drops real regions: they are counted and the result is not complete
    thin = enumerate_regions(net, domain, progress=False, min_radius=0.05)
    assert thin.dropped > 0 and not thin.complete
    assert thin.num_regions < full.num_regions
    assert np.all(full.index_of(thin.keys) >= 0)


@pytest.mark.parametrize("domain", [Box(-2.0, 2.0), None], ids=["box", "R^d"])
def test_cap_makes_it_incomplete(domain):
    net = _net([3, 8, 8, 1], seed=8)
    cap = enumerate_regions(net, domain, progress=False, max_regions=20)
    assert not cap.complete and cap.frontier_left > 0 and cap.num_regions == 20


def test_solvers_agree_in_rd():
    net = _net([3, 8, 8, 1], seed=3)
    a = enumerate_regions(net, None, progress=False, solver="highs")
    b = enumerate_regions(net, None, progress=False, solver="numpy")
    assert a.complete and b.complete and b.stats["numpy_lps"] > 0
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.bounded, b.bounded)
    fin = a.bounded
    assert np.allclose(a.volumes[fin], b.volumes[fin], rtol=1e-9, atol=0)
    assert np.array_equal(a.edges, b.edges)


def test_rd_seeds_anywhere():
    net = _net([2, 8, 8, 1], seed=0)
    full = enumerate_regions(net, None, progress=False)
    one = enumerate_regions(net, None, progress=False, seeds=np.full((1, 2), 500.0))
    assert one.complete and np.array_equal(one.keys, full.keys)


def test_rd_validation():
    net = _net([2, 4, 1])
    with pytest.raises(ValueError, match="volume_tol"):
        enumerate_regions(net, None, volume_tol=-1.0)
    with pytest.raises(ValueError, match="reach"):
        enumerate_regions(net, None, reach=0.0)
    with pytest.raises(ValueError, match="solver"):
        enumerate_regions(net, None, solver="simplex")
    W1 = np.array([[1.0, 2.0, -1.0], [2.0, 4.0, -2.0]], np.float32)  # rank 1
    flat = partax.Net.from_arrays([W1, np.array([0.1, 0.2, 0.3], np.float32), np.ones((3, 1), np.float32),
                                   np.zeros(1, np.float32)])
    with pytest.raises(ValueError, match="net: .*rank 1"):
        enumerate_regions(flat, None)


# ----------------------------------------------------------------------------------------
# benchmark entry: R^d rows, and the relucent baseline named explicitly
# ----------------------------------------------------------------------------------------
def test_bench_has_rd_rows_and_names_the_baseline():
    r = bench_enumerate(workloads=["R^3 3-10-10-1"], relucent=False)
    (w,) = r["workloads"]
    assert w["box"] == "R^d" and w["complete"] and w["regions"] > 1000 and w["unbounded"] > 0
    assert w["first_over_warm"] > 0
    if r["relucent_version"] is None:
        assert w["relucent"] == "not installed"
    else:
        assert w["relucent"] == "not run (relucent=False)"


@pytest.mark.slow  # relucent forks worker processes: kept out of the default (JAX-threaded) run
def test_relucent_counts_agree():
    pytest.importorskip("relucent")
    from partax.bench.enumerate import relucent_regions

    net = _net([2, 6, 6, 1], seed=2)
    res = enumerate_regions(net, None, progress=False)
    try:
        count, _ = relucent_regions(net)
    except Exception as e:  # e.g. no Gurobi licence on this machine: a baseline, not a dependency
        pytest.skip(f"relucent could not run: {e}")
    assert count == res.num_regions


# ----------------------------------------------------------------------------------------
# slow: a large net against the oracle
# ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("widths,seed", [([2, 40, 40, 1], 0), ([4, 8, 8, 1], 0), ([3, 16, 16, 16, 1], 0)])
def test_rd_large_equals_oracle(widths, seed):
    net = _net(widths, seed=seed)
    res = enumerate_regions(net, None, progress=False, max_regions=10**6)
    regs = orc.regions(net)
    assert res.complete
    assert res.num_regions == len(regs)
    assert {r["code"].tobytes() for r in regs} == set(_by_code(res))
