"""Tests of partax.geometry.region_report and the `partax regions` entry point."""

import jax
import numpy as np
import pytest

import partax
from partax.geometry import Box, RegionReport, chebyshev, facets, margins, region_report


@pytest.fixture(scope="module")
def setup():
    net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.3)
    x = np.random.default_rng(0).uniform(-1, 1, (4000, 2)).astype(np.float32)
    p = partax.partition(net, x, progress=False)
    return net, x, p


def test_report_columns(setup):
    net, x, p = setup
    box = Box(-1, 1)
    rep = region_report(net, p, x, domain=box, max_regions=6, solver="highs", progress=False,
                        sample_box=box)
    t = p.table("prefix", 2)
    M = len(t)
    assert len(rep) == M
    np.testing.assert_array_equal(rep.keys, t.keys)
    np.testing.assert_array_equal(rep.counts, t.counts)
    # exemplars are the inputs at the table's exemplar indices, and lie in their regions
    np.testing.assert_array_equal(rep.exemplars, x[t.exemplars])
    np.testing.assert_array_equal(partax.region_ids(net, rep.exemplars, "prefix")[:, 1], t.keys)
    assert rep.key_ok.dtype == bool and rep.key_ok.all()
    # cheap columns everywhere, LP columns for the 6 most populated
    assert np.all(np.isfinite(rep.margin)) and np.all(np.isfinite(rep.out_norm))
    assert rep.has_lp.sum() == 6
    assert t.counts[rep.has_lp].min() >= t.counts[~rep.has_lp].max()
    lp_rows = np.flatnonzero(rep.has_lp)
    assert np.all(rep.num_facets[~rep.has_lp] == -1) and np.all(np.isnan(rep.radius[~rep.has_lp]))
    # values agree with the per-region functions
    ex = rep.exemplars[lp_rows]
    np.testing.assert_allclose(rep.radius[lp_rows], chebyshev(net, ex, domain=box, solver="highs")[1], atol=1e-7)
    np.testing.assert_array_equal(rep.num_facets[lp_rows], [len(f) for f in facets(net, ex, domain=box, solver="highs")])
    np.testing.assert_allclose(rep.margin, margins(net, rep.exemplars, domain=box))
    # output-map norm against a NumPy float64 chain
    for n in lp_rows[:3]:
        h = rep.exemplars[n].astype(np.float64)
        J = np.eye(2)
        for W, b in zip(net.weights[:-1], net.biases[:-1]):
            W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
            z = h @ W + b
            J = (W.T @ J) * (z > 0)[:, None]
            h = np.maximum(z, 0)
        J = np.asarray(net.weights[-1], np.float64).T @ J
        assert rep.out_norm[n] == pytest.approx(np.linalg.norm(J), rel=1e-9)
    # exact volumes of the top regions agree with the count-based Monte Carlo column
    v, mc, se = rep.volume[lp_rows], rep.mc_volume[lp_rows], rep.mc_volume_err[lp_rows]
    assert np.all(np.abs(v - mc) <= 5 * se + 1e-12)
    assert np.all(rep.radius[lp_rows] >= rep.margin[lp_rows] - 1e-9)


def test_report_volumes_reuse_chebyshev(setup, monkeypatch):
    # one Chebyshev LP batch per LP batch of regions (facets' centres are passed on to volumes),
    # and the volumes still equal those of partax.geometry.volumes
    from partax.geometry import lp, volumes

    net, x, p = setup
    box = Box(-1, 1)
    calls = []
    real = lp.chebyshev

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(lp, "chebyshev", counting)
    rep = region_report(net, p, x, domain=box, max_regions=6, solver="highs", progress=False)
    assert len(calls) == 1
    monkeypatch.setattr(lp, "chebyshev", real)
    rows = np.flatnonzero(rep.has_lp)
    v, _ = volumes(net, rep.exemplars[rows], domain=box, solver="highs")
    np.testing.assert_allclose(rep.volume[rows], v, rtol=1e-9, atol=1e-12)


def test_report_rejects_wrong_source(setup):
    net, x, p = setup
    other = np.random.default_rng(99).uniform(-1, 1, x.shape).astype(np.float32)  # same shape, other inputs
    with pytest.raises(ValueError, match="source"):
        region_report(net, p, other, max_regions=0, progress=False)
    other_net = partax.mlp(jax.random.key(7), [2, 8, 8, 1], bias_std=0.3)
    with pytest.raises(ValueError, match="net differs"):
        region_report(other_net, p, x, max_regions=0, progress=False)


def test_report_key_ok_marks_a_few_moved_exemplars(setup):
    net, x, p = setup
    t = p.table("prefix", 2)
    moved = x.copy()
    # move the exemplars of 3 regions onto the exemplar input of another region
    own = partax.region_ids(net, x[t.exemplars], "prefix")[:, 1]
    rows = [0, 1, 2]
    for r in rows:
        moved[t.exemplars[r]] = x[t.exemplars[r + 3]]
    # a mismatch is an error naming the rows, unless the caller keeps them (flagged)
    with pytest.raises(ValueError, match=r"3 of .*row 0: key .*keep_mismatched"):
        region_report(net, p, moved, max_regions=0, progress=False)
    with pytest.warns(RuntimeWarning, match="3 of"):
        rep = region_report(net, p, moved, max_regions=0, progress=False, keep_mismatched=True)
    # independent: keys of the regenerated exemplars on the full net
    ref = partax.region_ids(net, moved[t.exemplars], "prefix")[:, 1] == t.keys
    np.testing.assert_array_equal(rep.key_ok, ref)
    assert not ref[rows].any() and ref.sum() == len(t) - 3 and np.all(own == t.keys)


def test_report_save_load(setup, tmp_path):
    net, x, p = setup
    rep = region_report(net, p, x, max_regions=3, solver="highs", progress=False)
    path = tmp_path / "r.npz"
    rep.save(path)
    back = RegionReport.load(path)
    assert back.meta == rep.meta
    for name, col in rep.columns().items():
        np.testing.assert_array_equal(getattr(back, name), col)
    assert np.all(np.isnan(rep.volume))  # no domain: no volumes
    with pytest.raises(ValueError, match="not a partax region report"):
        np.save(tmp_path / "bad.npy", np.zeros(3))
        RegionReport.load(tmp_path / "bad.npy")


def test_report_suffix_scope(setup):
    net, x, p = setup
    rep = region_report(net, p, x, scope="suffix", layer=2, max_regions=4, solver="highs", progress=False)
    assert rep.center.shape == (len(rep), 8)
    assert rep.meta["dim"] == 8
    assert np.all(rep.radius[rep.has_lp] > 0)
    # the exemplars lie in their suffix regions: keys as partax.region_ids on the full net
    assert rep.key_ok.all()
    np.testing.assert_array_equal(partax.region_ids(net, rep.exemplars, "suffix")[:, 1], rep.keys)


def test_report_validation(setup):
    net, x, p = setup
    with pytest.raises(ValueError, match="volume_method"):
        region_report(net, p, x, volume_method="best", progress=False)
    with pytest.raises(ValueError, match="max_regions"):
        region_report(net, p, x, max_regions=-1, progress=False)
    with pytest.raises(ValueError, match="solver"):
        region_report(net, p, x, solver="cplex", progress=False)
