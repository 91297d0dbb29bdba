"""region_report on general nets (conv / pool / residual / hard-tanh), prefix scope, against the
independent float64 NumPy oracle (tests/layers_oracle.py): the oracle's codes on dense samples of
the Chebyshev balls and margin balls, Monte Carlo volumes with the oracle's codes, and facet counts
from HiGHS LPs (scipy.optimize.linprog) on rows built from the oracle's local maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog

import layers_oracle as oracle
import partax
from layered_nets import conv_pool, f32_of, residual
from partax.geometry import Box, region_report
from partax.layers import Conv, Dense, Flatten, HardTanh, MaxPool
from partax.nets import sequential


def small_pool():
    """Input (4, 1): dimension 4, so volumes are exact and facets are cheap to check."""
    f = f32_of(np.random.default_rng(16))
    return sequential([Conv(f(2, 1, 2), f(2, scale=0.3)), HardTanh(-0.5, 0.5), MaxPool((2,), (1,)), Flatten(),
                       Dense(f(4, 1), f(1))], (4, 1))


NETS = {"conv_pool": conv_pool, "residual": residual}
RNG = np.random.default_rng(4)


def _oracle_code(net, pts):
    bits, margin = oracle.codes(net.layers, np.asarray(pts, np.float64).reshape(-1, *net.input_shape))
    return np.concatenate(bits, axis=1), margin


def _ball(center, radius, n):
    u = RNG.normal(size=(n, center.shape[0]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = radius * RNG.uniform(0, 1, size=(n, 1)) ** (1.0 / center.shape[0])
    return center[None] + r * u


@pytest.fixture(scope="module", params=sorted(NETS))
def setup(request):
    net = NETS[request.param]()
    x = RNG.uniform(-1, 1, (60, *net.input_shape)).astype(np.float32)  # [N, *input_shape]
    p = partax.partition(net, x, progress=False)
    rep = region_report(net, p, x, domain=Box(-1, 1), max_regions=3, volume_method="none", solver="highs",
                        progress=False)
    return request.param, net, x, p, rep


def test_report_keys_and_exemplars(setup):
    _, net, x, p, rep = setup
    t = p.table("prefix", net.num_hidden)
    assert len(rep) == t.num_regions and rep.meta["dim"] == net.input_dim
    np.testing.assert_array_equal(rep.keys, t.keys)
    np.testing.assert_array_equal(rep.counts, t.counts)
    np.testing.assert_array_equal(rep.exemplars, x.reshape(len(x), -1)[t.exemplars])  # flat, row-major
    assert rep.key_ok.all() and rep.code_reproduces.all()
    # independent: the exemplars' keys from the oracle's float64 codes
    bits, _ = oracle.codes(net.layers, rep.exemplars.reshape(-1, *net.input_shape).astype(np.float64))
    np.testing.assert_array_equal(partax.coding.keys_from_bits(bits, 1, net.num_hidden), rep.keys)
    # a flat source gives the same report
    flat = region_report(net, p, x.reshape(len(x), -1), domain=Box(-1, 1), max_regions=0, progress=False)
    np.testing.assert_array_equal(flat.margin, rep.margin)


def test_report_balls_against_oracle_codes(setup):
    name, net, _, _, rep = setup
    lp = np.flatnonzero(rep.has_lp)
    assert len(lp) == 3
    assert np.all(rep.facets_status[lp] == 0) and np.all(rep.radius_status[lp] == 0)
    assert np.all(rep.num_facets[lp] >= 2)
    for i in lp:
        own, _ = _oracle_code(net, rep.exemplars[i][None])
        # the Chebyshev ball lies in the region (and in the domain): every sample has its code
        assert 0 < rep.radius[i] <= 1
        pts = _ball(rep.center[i], 0.98 * rep.radius[i], 400)
        assert np.all(np.abs(pts) <= 1)
        codes, _ = _oracle_code(net, pts)
        assert np.all(codes == own, axis=1).mean() == 1.0, name
    # the margin ball around every exemplar lies in its region
    for i in RNG.choice(len(rep), 5, replace=False):
        own, _ = _oracle_code(net, rep.exemplars[i][None])
        assert rep.margin[i] > 0
        codes, _ = _oracle_code(net, _ball(rep.exemplars[i].astype(np.float64), 0.98 * rep.margin[i], 200))
        assert np.all(codes == own)


def test_report_refuses_other_scopes(setup):
    _, net, x, p, _ = setup
    with pytest.raises(ValueError, match="scope='prefix'"):
        region_report(net, p, x, scope="suffix", max_regions=0, progress=False)
    with pytest.raises(ValueError, match="source"):
        region_report(net, p, x.reshape(len(x), 1, -1), max_regions=0, progress=False)


SITES = ("ReLU", "LeakyReLU", "HardTanh", "MaxPool")


def _oracle_rows(net, x):
    """The H-representation of the oracle's region of ``x`` (flat; a net without residual
    blocks), written from the oracle's local maps: sign rows of ReLU / leaky units, two per
    hard-tanh unit, ``z_j - z_a <= 0`` per max-pool window (``a`` the selected slot)."""
    bits, _ = oracle.codes(net.layers, x.reshape(1, *net.input_shape))
    _, _, maps = oracle.local_map(net.layers, net.input_shape, bits)
    sites, shape = [], tuple(net.input_shape)
    for layer in net.layers:
        if type(layer).__name__ in SITES:
            sites.append((layer, shape))
        shape = tuple(layer.output_shape(shape))
    rows, bounds = [], []
    for (layer, shape), code, (A, c) in zip(sites, bits, maps):
        A, c, code = A[0], c[0], code[0]
        kind = type(layer).__name__
        if kind == "HardTanh":
            for u in range(len(c)):
                for thr, on in ((layer.lo, code[2 * u]), (layer.hi, code[2 * u + 1])):
                    s = -1.0 if on else 1.0  # on: z_u - thr >= 0
                    rows.append(s * A[u])
                    bounds.append(-s * (c[u] - thr))
        elif kind == "MaxPool":
            ids = np.arange(len(c), dtype=np.float64).reshape(1, *shape)
            win = oracle.windows(ids, layer.window, layer.strides, layer.padding, -1.0)[0]
            win = win.reshape(-1, win.shape[-1]).astype(int)  # [windows, slots], -1 padded
            nb = oracle.nbits(win.shape[1])
            slots = (code.reshape(-1, nb).astype(int) << np.arange(nb)).sum(1)
            for w, a in zip(win, slots):
                for j in w[w >= 0]:
                    if j != w[a]:
                        rows.append(A[j] - A[w[a]])
                        bounds.append(c[w[a]] - c[j])
        else:
            for u in range(len(c)):
                s = -1.0 if code[u] else 1.0
                rows.append(s * A[u])
                bounds.append(-s * c[u])
    return np.array(rows), np.array(bounds), np.concatenate(bits, axis=1)[0]


def _facet_count(A, b, d):
    """Facets of ``{A x <= b} ∩ [-1, 1]^d``: the rows (normalised, repeats merged) whose
    removal enlarges the polytope (one HiGHS LP each)."""
    A = np.concatenate([A, np.eye(d), -np.eye(d)])
    b = np.concatenate([b, np.ones(2 * d)])
    n = np.linalg.norm(A, axis=1)
    keep = n > 1e-12
    assert np.all(b[~keep] >= 0)  # a constant row holds everywhere
    A, b = A[keep] / n[keep, None], b[keep] / n[keep]
    _, first = np.unique(np.round(np.concatenate([A, b[:, None]], 1), 9), axis=0, return_index=True)
    A, b = A[np.sort(first)], b[np.sort(first)]
    count = 0
    for i in range(len(A)):
        others = np.arange(len(A)) != i
        res = linprog(-A[i], A_ub=A[others], b_ub=b[others], bounds=[(-2, 2)] * d, method="highs")
        assert res.status == 0
        count += int(-res.fun > b[i] + 1e-7)
    return count


def test_small_pool_volumes_and_facets_against_the_oracle():
    net = small_pool()
    box = Box(-1, 1)
    x = RNG.uniform(-1, 1, (400, *net.input_shape)).astype(np.float32)
    p = partax.partition(net, x, progress=False)
    rep = region_report(net, p, x, domain=box, max_regions=4, volume_method="exact", solver="highs",
                        sample_box=box, progress=False)
    lp = np.flatnonzero(rep.has_lp)
    assert len(lp) == 4 and np.all(rep.volume_status[lp] == 0)
    d = net.input_dim
    u = RNG.uniform(-1, 1, (20000, d))
    codes, _ = _oracle_code(net, u)
    for i in lp:
        A, b, own = _oracle_rows(net, rep.exemplars[i].astype(np.float64))
        # the oracle's rows hold at the exemplar, and its code is the region's
        assert np.all(A @ rep.exemplars[i] <= b + 1e-9)
        # volume: the fraction of uniform samples of the box with the region's oracle code
        frac = np.all(codes == own, axis=1).mean()
        err = math.sqrt(max(frac * (1 - frac), 1e-4) / len(u))
        assert abs(rep.volume[i] / 2.0 ** d - frac) < 5 * err, (i, rep.volume[i] / 2.0 ** d, frac)
        # facets: HiGHS LPs on the oracle's rows and the box's
        assert rep.num_facets[i] == _facet_count(A, b, d), i
    # the count-based volume column is the partition's sampling fraction
    t = p.table("prefix", net.num_hidden)
    np.testing.assert_allclose(rep.mc_volume, t.counts / t.total * 2.0 ** d)
