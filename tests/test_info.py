"""Tests for partax.info: estimators against independent NumPy / Counter oracles."""

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from partax import info
from partax.datasets import tishby_ib
from partax.tables import RegionTable


# -- independent oracles -------------------------------------------------------------------

def _h_counter(items, mm=False):
    c = Counter(items)
    n = sum(c.values())
    h = -sum(v / n * math.log2(v / n) for v in c.values())
    if mm:
        h += (len(c) - 1) / (2 * n * math.log(2))
    return h


def _mi_counter(t_items, y, mm=False):
    return _h_counter(t_items, mm) + _h_counter(list(y), mm) - _h_counter(list(zip(t_items, y)), mm)


def _kde_dense(t, y, var):
    """Saxe et al. 2018 pairwise KL / Bhattacharyya bounds, dense float64, in bits."""
    t = np.asarray(t, np.float64)
    n, d = t.shape
    d2 = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)

    def h_kl(idx, v):
        dd = d2[np.ix_(idx, idx)] / (2 * v)
        m = len(idx)
        mx = (-dd).max(1)
        lse = mx + np.log(np.exp(-dd - mx[:, None]).sum(1))
        lprobs = lse - np.log(m) - d / 2 * np.log(2 * np.pi * v)
        return d / 2 - lprobs.mean()

    def h_bd(idx):
        return h_kl(idx, 4 * var) + d / 2 * np.log(0.25)

    allidx = np.arange(n)
    hc = d / 2 * np.log(2 * np.pi * np.e * var)
    up, lo = h_kl(allidx, var), h_bd(allidx)
    cu = cl = 0.0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        p = len(idx) / n
        cu += p * h_kl(idx, var)
        cl += p * h_bd(idx)
    ln2 = np.log(2)
    return dict(I_XT_upper=(up - hc) / ln2, I_XT_lower=(lo - hc) / ln2,
                I_TY_upper=(up - cu) / ln2, I_TY_lower=(lo - cl) / ln2)


# -- entropy / measures -------------------------------------------------------------------

@pytest.mark.parametrize("n,k,seed", [(10, 3, 0), (500, 40, 1), (1000, 1000, 2), (1, 1, 3)])
@pytest.mark.parametrize("est", ["plugin", "miller_madow"])
def test_entropy_vs_counter(n, k, seed, est):
    items = np.random.default_rng(seed).integers(0, k, n).tolist()
    counts = np.bincount(items)
    assert info.entropy(counts, est) == pytest.approx(_h_counter(items, est == "miller_madow"), abs=1e-12)


def test_entropy_errors():
    with pytest.raises(ValueError, match="estimator"):
        info.entropy([1, 2], "nsb_unknown")
    with pytest.raises(ValueError, match="counts"):
        info.entropy([1, -2])
    assert math.isnan(info.entropy([0, 0]))


@pytest.mark.parametrize("n,k,c,seed", [(50, 5, 2, 0), (400, 100, 3, 1), (300, 1000, 10, 2)])
@pytest.mark.parametrize("est", ["plugin", "miller_madow"])
def test_measures_vs_counter(n, k, c, seed, est):
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, k, n).astype(np.uint64)
    y = rng.integers(0, c, n)
    table = RegionTable.from_keys(keys, labels=y, num_classes=c)
    m = info.measures(table, est)
    mm = est == "miller_madow"
    kl = keys.tolist()
    assert m.H_T == pytest.approx(_h_counter(kl, mm), abs=1e-10)
    assert m.I_XT == m.H_T
    assert m.H_Y == pytest.approx(_h_counter(y.tolist(), mm), abs=1e-10)
    assert m.I_TY == pytest.approx(_mi_counter(kl, y.tolist(), mm), abs=1e-10)
    cnt = Counter(kl)
    f1 = sum(1 for v in cnt.values() if v == 1)
    assert m.regions == len(cnt) and m.N == n
    assert m.regions_per_input == pytest.approx(len(cnt) / n)
    assert m.singleton_fraction == pytest.approx(f1 / len(cnt))
    assert m.coverage == pytest.approx(1 - f1 / n)
    h_plug = _h_counter(kl)
    assert m.saturated == (h_plug >= math.log2(n) - 0.05 or 1 - f1 / n < 0.5)


def test_measures_without_labels_and_saturation():
    t = SimpleNamespace(counts=np.ones(64, np.int64), label_counts=None)
    m = info.measures(t)
    assert m.H_T == pytest.approx(6.0) and math.isnan(m.I_TY) and math.isnan(m.H_Y)
    assert m.saturated and m.singleton_fraction == 1.0 and m.coverage == 0.0
    t2 = SimpleNamespace(counts=np.full(4, 16, np.int64), label_counts=None)
    m2 = info.measures(t2)
    assert m2.H_T == pytest.approx(2.0) and not m2.saturated and m2.coverage == 1.0
    with pytest.raises(TypeError, match="table"):
        info.measures(np.ones(3))
    with pytest.raises(ValueError, match="estimator"):
        info.measures(t, "bogus")


def test_tishby_every_input_own_bin():
    x, y = tishby_ib()
    keys = (x.astype(np.int64) * (1 << np.arange(12))).sum(1).astype(np.uint64)
    m = info.measures(RegionTable.from_keys(keys, labels=y))
    h_y = _h_counter(y.tolist())
    assert abs(m.I_XT - 12.0) < 1e-5 and abs(m.I_TY - 0.99916) < 1e-5 and abs(m.I_TY - h_y) < 1e-12
    assert m.saturated
    b = info.binned_mi(x, y, bins=2, range=(0, 1))
    assert abs(b.I_XT - 12.0) < 1e-5 and abs(b.I_TY - 0.99916) < 1e-5
    b2 = info.binned_mi(x, y, binsize=0.5)
    assert abs(b2.I_XT - 12.0) < 1e-5 and abs(b2.I_TY - h_y) < 1e-12
    # a constant representation carries nothing
    b3 = info.binned_mi(np.zeros((4096, 3)), y)
    assert b3.I_XT == 0.0 and abs(b3.I_TY) < 1e-12


def test_information_plane_per_layer():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    keys = [rng.integers(0, k, 200).astype(np.uint64) for k in (3, 30, 300)]
    tables = {("layer", l + 1): RegionTable.from_keys(k, labels=y) for l, k in enumerate(keys)}
    part = SimpleNamespace(widths=(4, 5, 6), table=lambda s, l: tables[(s, l)])
    ip = info.information_plane(part, "layer")
    np.testing.assert_array_equal(ip["layer"], [1, 2, 3])
    for l, k in enumerate(keys):
        assert ip["H_T"][l] == pytest.approx(_h_counter(k.tolist()))
        assert ip["I_TY"][l] == pytest.approx(_mi_counter(k.tolist(), y.tolist()))
        assert ip["regions"][l] == len(set(k.tolist()))
    assert ip["saturated"].dtype == bool and ip["regions"].dtype == np.int64


def test_information_plane_rejects_stacked_tuple():
    import jax

    import partax

    nets = partax.stack_nets([partax.mlp(jax.random.key(s), [3, 4, 2]) for s in range(2)])
    x = np.random.default_rng(0).uniform(-1, 1, (50, 3)).astype(np.float32)
    parts = partax.partition(nets, x, progress=False)
    assert isinstance(parts, tuple)
    with pytest.raises(TypeError, match="partition.*one element"):
        info.information_plane(parts)
    with pytest.raises(TypeError, match="partition"):
        info.information_plane(np.zeros(3))
    ip = info.information_plane(parts[1])  # one element works
    assert ip["regions"].shape == (1,) and ip["regions"][0] >= 1


# -- binning baselines ------------------------------------------------------------------

@pytest.mark.parametrize("n,w,bins,rng_,seed", [(300, 3, 30, (-1, 1), 0), (1000, 5, 4, (0, 2), 1),
                                               (200, 1, 10, None, 2)])
def test_binned_fixed_range_vs_digitize(n, w, bins, rng_, seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 0.8, (n, w)).astype(np.float32)
    y = rng.integers(0, 3, n)
    r = info.binned_mi(t, y, bins=bins, range=rng_)
    lo, hi = (t.min(), t.max()) if rng_ is None else rng_
    # oracle: Shwartz-Ziv & Tishby's formula (``bins`` edges, left edge of the bin) on the
    # values clipped into [lo, hi] (the documented handling of values outside the range)
    edges = np.linspace(lo, hi, bins)
    tc = np.clip(t.astype(np.float64), lo, hi)
    left = edges[np.digitize(tc, edges) - 1]
    rows = [tuple(r_) for r_ in left.tolist()]
    assert r.I_XT == pytest.approx(_h_counter(rows), abs=1e-10)
    assert r.I_TY == pytest.approx(_mi_counter(rows, y.tolist()), abs=1e-10)
    assert r.bins == len(set(rows)) and r.N == n


def _sz_tishby_reference(data, labels, num_of_bins):
    """Shwartz-Ziv & Tishby's binning, formula for formula: ``num_of_bins`` edges on [-1, 1],
    each value replaced by the left edge of its bin, one outcome per distinct row."""
    bins = np.linspace(-1, 1, num_of_bins)
    digitized = bins[np.digitize(np.squeeze(data.reshape(1, -1)), bins) - 1].reshape(len(data), -1)
    b2 = np.ascontiguousarray(digitized).view(np.dtype((np.void, digitized.dtype.itemsize * digitized.shape[1])))
    _, unique_inverse_t, unique_counts = np.unique(b2, return_index=False, return_inverse=True, return_counts=True)
    p_ts = unique_counts / float(sum(unique_counts))
    H_T = -np.sum(p_ts * np.log2(p_ts))
    # I(T;Y) = H(T) - sum_y p(y) H(T | Y = y)
    H_T_given_Y = 0.0
    for c in np.unique(labels):
        sel = unique_inverse_t.ravel()[labels == c]
        _, cnt = np.unique(sel, return_counts=True)
        p = cnt / cnt.sum()
        H_T_given_Y += (cnt.sum() / len(labels)) * -np.sum(p * np.log2(p))
    return H_T, H_T - H_T_given_Y, len(unique_counts)


@pytest.mark.parametrize("n,w,num_of_bins,seed", [(500, 4, 30, 0), (2000, 2, 30, 1), (800, 3, 7, 2),
                                                  (300, 10, 2, 3)])
def test_binned_matches_shwartz_ziv_tishby_reference(n, w, num_of_bins, seed):
    rng = np.random.default_rng(seed)
    t = np.tanh(rng.normal(0, 2.0, (n, w)).astype(np.float32))
    t[:5] = np.tanh(np.float32(20.0))  # float32 tanh saturates to exactly 1: the edge hi
    t[5:8] = -1.0
    assert np.any(t == 1.0) and np.any(t == -1.0)
    y = rng.integers(0, 2, n)
    h_ref, i_ref, k_ref = _sz_tishby_reference(t, y, num_of_bins)
    r = info.binned_mi(t, y, bins=num_of_bins, range=(-1, 1))
    assert abs(r.H_T - h_ref) < 1e-12 and abs(r.I_XT - h_ref) < 1e-12
    assert abs(r.I_TY - i_ref) < 1e-12
    assert r.bins == k_ref


@pytest.mark.parametrize("binsize,seed", [(0.07, 0), (0.5, 1)])
def test_binned_binsize_vs_floor(binsize, seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 1.0, (500, 4))
    y = rng.integers(0, 2, 500)
    r = info.binned_mi(t, y, binsize=binsize)
    rows = [tuple(int(math.floor(v / binsize)) for v in row) for row in t.tolist()]
    assert r.I_XT == pytest.approx(_h_counter(rows), abs=1e-10)
    assert r.I_TY == pytest.approx(_mi_counter(rows, y.tolist()), abs=1e-10)
    mm = info.binned_mi(t, y, binsize=binsize, estimator="miller_madow")
    assert mm.I_XT == pytest.approx(_h_counter(rows, True), abs=1e-10)


def test_adaptive_binned_vs_oracle():
    rng = np.random.default_rng(3)
    t = np.maximum(rng.normal(0, 1, (400, 3)), 0)  # ReLU-like: many ties at 0
    y = rng.integers(0, 2, 400)
    r = info.adaptive_binned_mi(t, y, bins=8)
    cols = []
    for j in range(3):
        e = np.quantile(t[:, j], np.linspace(0, 1, 9))
        cols.append([min(max(sum(1 for ek in e if ek <= v) - 1, 0), 7) for v in t[:, j]])
    rows = list(zip(*cols))
    assert r.I_XT == pytest.approx(_h_counter(rows), abs=1e-10)
    assert r.I_TY == pytest.approx(_mi_counter(rows, y.tolist()), abs=1e-10)


def test_binned_errors():
    t = np.zeros((5, 2))
    with pytest.raises(ValueError, match="range"):
        info.binned_mi(t, range=(1, -1))
    with pytest.raises(ValueError, match="binsize"):
        info.binned_mi(t, binsize=0)
    with pytest.raises(ValueError, match="bins"):
        info.binned_mi(t, bins=1)  # one edge is not a binning
    with pytest.raises(ValueError, match="y"):
        info.binned_mi(t, np.zeros(4, int))
    with pytest.raises(ValueError, match="t"):
        info.binned_mi(np.array([[np.nan, 0.0]]))


# -- KDE bounds -------------------------------------------------------------------------

@pytest.mark.parametrize("n,d,var,block,seed", [(37, 3, 1e-1, 8, 0), (200, 10, 1e-3, 64, 1),
                                                (150, 2, 1e-2, None, 2), (64, 5, 1.0, 64, 3)])
def test_kde_vs_dense(n, d, var, block, seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(0, 0.3, (n, d)).astype(np.float32)
    y = rng.integers(0, 3, n)
    r = info.kde_mi(t, y, noise_var=var, block_size=block)
    ref = _kde_dense(t, y, var)
    for k, v in ref.items():
        assert getattr(r, k) == pytest.approx(v, rel=2e-4, abs=2e-4), k
    assert r.I_XT_lower <= r.I_XT_upper + 1e-6


def test_kde_limits():
    # identical points: nothing; far-apart points: log2 N bits and H(Y) for I(T;Y)
    n = 16
    y = np.arange(n) % 2
    r0 = info.kde_mi(np.ones((n, 4)), y)
    assert abs(r0.I_XT_upper) < 1e-5 and abs(r0.I_TY_upper) < 1e-5 and abs(r0.I_XT_lower) < 1e-5
    far = np.eye(n, dtype=np.float32) * 100
    r1 = info.kde_mi(far, y, noise_var=1e-3)
    assert r1.I_XT_upper == pytest.approx(4.0, abs=1e-4) and r1.I_XT_lower == pytest.approx(4.0, abs=1e-4)
    assert r1.I_TY_upper == pytest.approx(1.0, abs=1e-4)
    r2 = info.kde_mi(far, None)
    assert math.isnan(r2.I_TY_upper)
    with pytest.raises(ValueError, match="noise_var"):
        info.kde_mi(far, noise_var=-1)


def test_binned_saturation_flags():
    x, y = tishby_ib()
    every = info.binned_mi(x, y, bins=2, range=(0, 1))
    assert every.saturated and every.coverage == 0.0
    few = info.binned_mi(x[:, :2], y, bins=2, range=(0, 1))  # 4 bins of 1024 inputs
    assert not few.saturated and few.coverage == 1.0 and few.bins == 4
