"""Tests for partax.geometry.slices: exact 1D/2D enumeration against NumPy float64 oracles."""

import itertools

import jax
import numpy as np
import pytest

import partax
from partax import bounds
from partax.geometry.slices import LineRegions, Plane, SliceRegions, line_regions, slice_regions


# ----------------------------------------------------------------------------------------
# oracles
# ----------------------------------------------------------------------------------------
def _np_preacts(net, x):
    """Float64 NumPy forward pass: list of pre-activations per hidden layer."""
    h = np.asarray(x, np.float64)
    out = []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        out.append(z)
        h = np.where(z > 0, z, net.alpha * z) if net.activation == "leaky_relu" else np.maximum(z, 0)
    return out


def _scope_range(scope, layer, L):
    return {"layer": (layer, layer), "prefix": (1, layer), "suffix": (layer, L)}[scope]


def _np_codes(net, x, scope, layer):
    """bool[N, sum n] code of the scope's layer range, and the min |z| over those layers."""
    zs = _np_preacts(net, x)
    f, t = _scope_range(scope, layer, net.num_hidden)
    sel = zs[f - 1 : t]
    margin = np.min(np.abs(np.concatenate(zs[: max(t, layer)], axis=1)), axis=1)
    return np.concatenate([z > 0 for z in sel], axis=1), margin


def _cell_codes(res, net):
    f, t = _scope_range(res.scope, res.layer, net.num_hidden)
    return np.concatenate(res.bits[f - 1 : t], axis=1)


def _point_in_cells(res, st):
    """Index of the cell holding each point (geometric test), -1 if none, and edge distance."""
    P = res.polygons
    Pn = np.roll(P, -1, axis=1)
    e = Pn - P  # [R, V, 2]
    length = np.linalg.norm(e, axis=-1)
    idx = np.full(len(st), -1)
    dist = np.zeros(len(st))
    for k, p in enumerate(st):
        cr = e[..., 0] * (p[1] - P[..., 1]) - e[..., 1] * (p[0] - P[..., 0])  # >= 0 inside (CCW)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(length > 0, cr / length, np.inf)
        inside = np.all(d >= -1e-12, axis=1)
        hits = np.flatnonzero(inside)
        if len(hits):
            idx[k] = hits[0]
            dist[k] = d[hits[0]].min()
    return idx, dist


def _net(widths, seed=0, bias_std=0.5, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation, bias_std=bias_std)


def _identity_plane(half=2.0):
    return Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-half, half), (-half, half)))


def _plane_3d(seed=0):
    x = np.random.default_rng(seed).normal(size=(3, 3))
    return Plane.through(*x, margin=2.0)


CASES = [
    ("2-8-8-1", [2, 8, 8, 1], "relu", None),
    ("2-16-16-2", [2, 16, 16, 2], "relu", None),
    ("3-8-8-1 through", [3, 8, 8, 1], "relu", "through"),
    ("2-8-8-1 leaky", [2, 8, 8, 1], ("leaky_relu", 0.1), None),
]


def _case(case):
    _, widths, act, plane = case
    net = _net(widths, activation=act)
    return net, (_plane_3d() if plane == "through" else _identity_plane())


# ----------------------------------------------------------------------------------------
# Plane
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3, 10, 784])
def test_plane_through(d):
    x = np.random.default_rng(d).normal(size=(3, d))
    p = Plane.through(*x)
    r = np.linalg.norm(x - p.origin, axis=1)
    np.testing.assert_allclose(r, r[0], rtol=1e-9)  # circumcentre
    np.testing.assert_allclose([p.u @ p.u, p.v @ p.v, p.u @ p.v], [1, 1, 0], atol=1e-12)
    st = p.coords(x)
    np.testing.assert_allclose(p.points(st), x, atol=1e-9)  # the three points lie on the plane
    (s0, s1), (t0, t1) = p.extent
    assert np.all((st[:, 0] > s0) & (st[:, 0] < s1) & (st[:, 1] > t0) & (st[:, 1] < t1))


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        (dict(origin=[0, 0], u=[1, 0], v=[2, 0]), ValueError),
        (dict(origin=[0, 0], u=[1, 0, 0], v=[0, 1]), ValueError),
        (dict(origin=[0, np.nan], u=[1, 0], v=[0, 1]), ValueError),
        (dict(origin=[0, 0], u=[1, 0], v=[0, 1], extent=((1, 0), (0, 1))), ValueError),
        (dict(origin=[0, 0], u=[1, 0], v=[0, 1], extent=(0, 1)), ValueError),
    ],
)
def test_plane_validation(kwargs, exc):
    with pytest.raises(exc):
        Plane(**kwargs)


def test_plane_through_collinear():
    with pytest.raises(ValueError, match="collinear"):
        Plane.through([0.0, 0, 0], [1.0, 1, 1], [2.0, 2, 2])


def test_slice_validation():
    net = _net([2, 4, 1])
    with pytest.raises(ValueError, match="plane"):
        slice_regions(net, _plane_3d())
    with pytest.raises(ValueError, match="scope"):
        slice_regions(net, _identity_plane(), scope="all")
    with pytest.raises(ValueError, match="layer"):
        slice_regions(net, _identity_plane(), layer=2)
    with pytest.raises(TypeError, match="plane"):
        slice_regions(net, "plane")
    with pytest.raises(ValueError, match="stack"):
        slice_regions(partax.stack_nets([net, net]), _identity_plane())
    with pytest.raises(ValueError, match="b"):
        line_regions(net, [0.0, 0.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="a"):
        line_regions(net, [0.0, 0.0, 0.0], [1.0, 0.0])


# ----------------------------------------------------------------------------------------
# 2D slices
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("scope", ["prefix", "layer", "suffix"])
def test_slice_partition_exact(case, scope):
    net, plane = _case(case)
    L = net.num_hidden
    for layer in range(1, L + 1):
        res = slice_regions(net, plane, scope=scope, layer=layer)
        assert isinstance(res, SliceRegions)
        # areas: a partition of the rectangle, every cell convex, CCW, non-degenerate
        np.testing.assert_allclose(res.areas.sum(), plane.area, rtol=1e-9)
        assert np.all(res.areas > 0)
        np.testing.assert_allclose(res.region_areas.sum(), plane.area, rtol=1e-9)
        P, Pn = res.polygons, np.roll(res.polygons, -1, axis=1)
        Pnn = np.roll(P, -2, axis=1)
        turn = (Pn[..., 0] - P[..., 0]) * (Pnn[..., 1] - Pn[..., 1]) - (Pn[..., 1] - P[..., 1]) * (
            Pnn[..., 0] - Pn[..., 0]
        )
        assert np.all(turn >= -1e-9 * plane.area)
        # prefix cells are exactly the regions; other scopes merge cells with equal codes
        codes = _cell_codes(res, net)
        n_codes = len(np.unique(codes, axis=0))
        assert res.num_regions == n_codes
        if scope == "prefix":
            assert res.num_cells == res.num_regions
        # keys agree with partax.region_ids at the interior points
        x = plane.points(res.points).astype(np.float32)
        ids = partax.region_ids(net, x, scope)[:, layer - 1]
        _, margin = _np_codes(net, plane.points(res.points), scope, layer)
        safe = margin > 1e-4
        assert safe.mean() > 0.9
        np.testing.assert_array_equal(ids[safe], res.keys[safe])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("scope", ["prefix", "layer", "suffix"])
def test_slice_against_sampling(case, scope):
    net, plane = _case(case)
    layer = 1 if scope == "suffix" else net.num_hidden
    res = slice_regions(net, plane, scope=scope, layer=layer)
    rng = np.random.default_rng(1)
    (s0, s1), (t0, t1) = plane.extent
    N = 20_000
    st = np.stack([rng.uniform(s0, s1, N), rng.uniform(t0, t1, N)], axis=1)
    x = plane.points(st)
    code, margin = _np_codes(net, x, scope, layer)
    # every key met by sampling is enumerated (points within rounding of a boundary skipped)
    ids = partax.region_ids(net, x.astype(np.float32), scope)[:, layer - 1]
    safe = margin > 1e-4
    assert np.isin(ids[safe], res.unique_keys).all()
    # every sampled code is the code of a cell
    cell_codes = _cell_codes(res, net)
    lookup = {c.tobytes(): i for i, c in enumerate(cell_codes)}
    region_of_code = {c.tobytes(): res.region_index[i] for i, c in enumerate(cell_codes)}
    assert all(c.tobytes() in lookup for c in code)
    # area fractions agree with sampling frequencies (5 standard errors, +1 count of slack)
    counts = np.bincount([region_of_code[c.tobytes()] for c in code], minlength=res.num_regions)
    p = res.region_areas / plane.area
    assert np.all(np.abs(counts - N * p) <= 5 * np.sqrt(N * p * (1 - p)) + 1)


@pytest.mark.parametrize("case", CASES[:3], ids=[c[0] for c in CASES[:3]])
def test_slice_points_lie_in_their_cell(case):
    """Geometric oracle: the cell that contains a random point has that point's code."""
    net, plane = _case(case)
    res = slice_regions(net, plane, with_maps=True)
    rng = np.random.default_rng(2)
    (s0, s1), (t0, t1) = plane.extent
    st = np.stack([rng.uniform(s0, s1, 1500), rng.uniform(t0, t1, 1500)], axis=1)
    idx, dist = _point_in_cells(res, st)
    assert np.all(idx >= 0)
    code, _ = _np_codes(net, plane.points(st), "prefix", net.num_hidden)
    clear = dist > 1e-9
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(code[clear], _cell_codes(res, net)[idx[clear]])
    # local maps: logits and last pre-activations are affine on each cell
    x = plane.points(st)
    sth = np.concatenate([st, np.ones((len(st), 1))], axis=1)
    logits = np.einsum("nk,nkc->nc", sth, res.logits[idx])
    ref = _np_preacts(net, x)[-1]
    h = np.where(ref > 0, ref, net.alpha * ref) if net.activation == "leaky_relu" else np.maximum(ref, 0)
    ref_logits = h @ np.asarray(net.weights[-1], np.float64) + np.asarray(net.biases[-1], np.float64)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-9, atol=1e-9)
    pre = np.einsum("nk,nkc->nc", sth, res.maps[idx])
    np.testing.assert_allclose(pre, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 13])
def test_single_layer_reaches_zaslavsky(k):
    net = _net([2, k, 1], seed=k, bias_std=1.0)
    W = np.asarray(net.weights[0], np.float64)
    b = np.asarray(net.biases[0], np.float64)
    pts = [np.zeros(2)]
    for i, j in itertools.combinations(range(k), 2):  # pairwise intersections of the k lines
        pts.append(np.linalg.solve(np.stack([W[:, i], W[:, j]]), -np.array([b[i], b[j]])))
    pts = np.array(pts)
    lo, hi = pts.min(0) - 1.0, pts.max(0) + 1.0
    plane = Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((lo[0], hi[0]), (lo[1], hi[1])))
    res = slice_regions(net, plane)
    assert res.num_regions == bounds.zaslavsky(k, 2)


def test_slice_count_below_bounds():
    net = _net([2, 6, 6, 1], seed=3)
    res = slice_regions(net, _identity_plane(50.0))
    assert res.num_regions <= bounds.serra(2, net.widths)


# ----------------------------------------------------------------------------------------
# 1D segments
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("scope", ["prefix", "layer", "suffix"])
def test_line_against_dense_sampling(case, scope):
    net, plane = _case(case)
    rng = np.random.default_rng(3)
    a, b = plane.points(rng.uniform(-2, 2, size=(2, 2)))
    for layer in range(1, net.num_hidden + 1):
        lr = line_regions(net, a, b, scope=scope, layer=layer)
        assert isinstance(lr, LineRegions)
        bp = lr.breakpoints
        assert np.all(np.diff(bp) > 0) and (len(bp) == 0 or (bp[0] > 0 and bp[-1] < 1))
        assert lr.num_pieces == len(bp) + 1
        T = 50_001
        t = np.linspace(0, 1, T)
        code, _ = _np_codes(net, a[None] + t[:, None] * (b - a)[None], scope, layer)
        change = np.flatnonzero(np.any(code[1:] != code[:-1], axis=1))  # between t[i], t[i+1]
        # every change of the sampled code is bracketed by a breakpoint ...
        pos = np.searchsorted(bp, t[change])  # first breakpoint >= t[i]
        assert np.all(pos < len(bp)) and np.all(bp[np.minimum(pos, len(bp) - 1)] <= t[change + 1] + 1e-12)
        # ... and every breakpoint sits in an interval where the sampled code changes
        cell = np.searchsorted(t, bp) - 1
        assert np.isin(cell, change).all()
        # piece codes and keys match the oracle at the midpoints
        mid_code, margin = _np_codes(net, a[None] + lr.midpoints[:, None] * (b - a)[None], scope, layer)
        np.testing.assert_array_equal(mid_code, np.concatenate(lr.bits, axis=1))
        safe = margin > 1e-4
        ids = partax.region_ids(net, (a[None] + lr.midpoints[:, None] * (b - a)[None]).astype(np.float32), scope)
        np.testing.assert_array_equal(ids[safe, layer - 1], lr.keys[safe])


def test_line_scope_breakpoints_nest():
    net = _net([2, 16, 16, 2])
    a, b = np.array([-3.0, -1.0]), np.array([3.0, 2.0])
    full = line_regions(net, a, b, scope="prefix").breakpoints
    for scope in ("layer", "suffix"):
        for layer in (1, 2):
            sub = line_regions(net, a, b, scope=scope, layer=layer).breakpoints
            assert np.isin(sub, full).all()


@pytest.mark.parametrize("widths", [[1, 4, 1], [1, 8, 8, 1], [1, 5, 5, 5, 1], [1, 16, 3, 1]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_line_pieces_below_serra_n0_one(widths, seed):
    net = _net(widths, seed=seed, bias_std=1.0)
    lr = line_regions(net, [-1e4], [1e4])
    assert lr.num_pieces <= bounds.serra(1, widths[1:-1])
    # a single layer of k units on the line: exactly k + 1 pieces (general position)
    if len(widths) == 3:
        assert lr.num_pieces == widths[1] + 1


def test_slice_and_line_agree():
    """A line through a slice crosses the cells the 2D enumeration found, in order."""
    net = _net([2, 8, 8, 1])
    plane = _identity_plane()
    res = slice_regions(net, plane)
    a, b = np.array([-1.9, -1.3]), np.array([1.7, 1.9])
    lr = line_regions(net, a, b)
    assert np.isin(lr.keys, res.keys).all()


# ----------------------------------------------------------------------------------------
# decision boundary, figure, command line
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("widths, seed", [([2, 8, 8, 1], 4), ([2, 16, 16, 3], 5)])
def test_decision_segments(widths, seed):
    from partax.geometry.clipping import decision_segments

    net = _net(widths, seed=seed, bias_std=1.0)
    plane = _identity_plane(4.0)
    res = slice_regions(net, plane)
    grid = plane.grid(120)
    out = np.asarray(net(grid.astype(np.float32)), np.float64)
    cls = (out[:, 0] > 0) if out.shape[1] == 1 else out.argmax(1)
    assert len(np.unique(cls)) > 1, "test net should show a decision boundary"
    segs = decision_segments(res.polygons, res.counts, res.logits)
    assert len(segs) > 0
    # the boundary points are ties of the top logits (float64 oracle)
    for w in (0.0, 0.5, 1.0):
        x = plane.points(segs[:, 0] * (1 - w) + segs[:, 1] * w)
        z = _np_preacts(net, x)[-1]
        h = np.maximum(z, 0) @ np.asarray(net.weights[-1], np.float64) + np.asarray(net.biases[-1], np.float64)
        if h.shape[1] == 1:
            np.testing.assert_allclose(h[:, 0], 0, atol=1e-7)
        else:
            top = np.sort(h, axis=1)
            np.testing.assert_allclose(top[:, -1], top[:, -2], atol=1e-7)
    # every grid cell where the class changes has a boundary segment nearby
    r = 120
    C = cls.reshape(r, r)
    chg = np.argwhere(C[:, 1:] != C[:, :-1])
    pts = grid.reshape(r, r, 2)[chg[:, 0], chg[:, 1]]
    seg_mid = segs.mean(1)
    seg_len = np.linalg.norm(segs[:, 1] - segs[:, 0], axis=1)
    d = np.linalg.norm(pts[:, None, :] - seg_mid[None], axis=-1) - seg_len[None] / 2
    assert np.all(d.min(1) <= 2 * 8.0 / r)


def test_plot_slice(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from partax.geometry.slices import plot_slice

    net = _net([2, 8, 8, 2], seed=6)
    res = slice_regions(net, _identity_plane(), scope="layer", layer=1)
    ax = plot_slice(res, net=net, plane=_identity_plane())
    assert len(ax.collections) >= 1
