"""Smoke and oracle tests of the digits FCN-vs-CNN study and the Hanin–Rolnick protocol (experiments/).

The oracles are independent of the code under test: the explicit-loop float64 forward pass and
codes of ``tests/layers_oracle.py`` (shared / alone fractions from Python sets of codes, test
accuracy), the closed-form circumcentre (barycentric weights from the side lengths) and dense
sampling of the slice's codes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import jax
import numpy as np
import pytest

import partax
from partax.datasets import digits
from partax.layers import Dense, ReLU

sys.path.insert(0, os.path.dirname(__file__))
import layers_oracle as oracle  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name):
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", os.path.join(ROOT, "experiments", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


dfc = _load("digits_fcn_cnn")
hr = _load("hanin_rolnick")


@pytest.fixture(scope="module")
def data():
    x, y = digits()
    return dfc.split(x, y, 1200)


def _oracle_fractions(net, xtr, xte, scope):
    """Per code group: test fraction sharing a region with training, training fraction alone (sets of codes)."""
    shape = net.input_shape
    bits_tr, _ = oracle.codes(net.layers, xtr.reshape(len(xtr), *shape))
    bits_te, _ = oracle.codes(net.layers, xte.reshape(len(xte), *shape))
    shared, alone = [], []
    for l in range(len(bits_tr)):
        sites = range(l + 1) if scope == "prefix" else [l]
        code = lambda bits, i: tuple(np.concatenate([bits[s][i] for s in sites]).tolist())  # noqa: E731
        tr = [code(bits_tr, i) for i in range(len(xtr))]
        seen = {}
        for c in tr:
            seen[c] = seen.get(c, 0) + 1
        shared.append(np.mean([code(bits_te, i) in seen for i in range(len(xte))]))
        alone.append(sum(seen[c] == 1 for c in tr) / len(tr))
    return np.array(shared), np.array(alone)


def _mlp(widths, bias_std=0.0, seed=0):
    """A ReLU MLP from NumPy draws (``partax.mlp`` compiles its random draws once per shape: slow here)."""
    rng = np.random.default_rng(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [Dense((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32),
                         (bias_std * rng.standard_normal(b)).astype(np.float32)), ReLU()]
    net = partax.nets.sequential(layers[:-1], (widths[0],))
    assert net.is_mlp
    return net


def _nets():
    key = jax.random.key(3)
    return {
        "fcn": _mlp([64, 6, 5, 4, 10]),
        "cnn": dfc.cnn(key, (8, 8, 1), (1, 1)),
        "cnn_biased": partax.nets.sequential(  # nonzero biases: no exact zeros at the sites
            [jax.tree_util.tree_map(lambda a: a + 0.05 * np.sign(np.asarray(a) + 1e-3), layer)
             if not partax.layers.is_site(layer) else layer for layer in dfc.cnn(key, (8, 8, 1), (1, 2)).layers],
            (8, 8, 1)),
    }


@pytest.mark.parametrize("scope", ["prefix", "layer"])
@pytest.mark.parametrize("name", ["fcn", "cnn", "cnn_biased"])
def test_shared_regions_against_oracle_codes(data, name, scope):
    xtr, _, xte, _ = data
    xtr, xte = xtr[:80], np.concatenate([xte[:40], xtr[:5]])  # 5 test inputs are training inputs
    net = _nets()[name]
    got = dfc.shared_regions(net, xtr, xte, scope)
    want_shared, want_alone = _oracle_fractions(net, xtr, xte, scope)
    assert got["test_shared"].shape == (net.num_hidden,)
    np.testing.assert_array_equal(got["test_shared"], want_shared)
    np.testing.assert_array_equal(got["train_alone"], want_alone)
    assert (got["test_shared"] >= 5 / 45).all()  # the copies always share


def test_cnn_structure_and_accuracy_against_oracle(data):
    xtr, ytr, xte, yte = data
    net = dfc.cnn(jax.random.key(0))
    assert not net.is_mlp and net.input_shape == (8, 8, 1)
    assert net.widths == (8 * 8 * 8, 4 * 4 * 8 * 2, 4 * 4 * 16)  # ReLU bits, max-pool 2 bits/window, ReLU bits
    out = oracle.forward(net.layers, xte[:12].reshape(-1, 8, 8, 1))
    ours = np.asarray(net(xte[:12].reshape(-1, 8, 8, 1)))
    assert np.max(np.abs(out - ours)) < 1e-4
    assert dfc.accuracy(net, xte[:12], yte[:12]) == np.mean(out.argmax(1) == yte[:12])


def test_shared_regions_bad_input(data):
    xtr, _, xte, _ = data
    net = _nets()["fcn"]
    with pytest.raises(ValueError, match="scope"):
        dfc.shared_regions(net, xtr[:5], xte[:5], "suffix")
    with pytest.raises(ValueError, match="x_train, x_test"):
        dfc.shared_regions(net, xtr[:0], xte[:5])


def _circumcentre(p):
    """Barycentric closed form: weights a^2 (b^2 + c^2 - a^2), ... (a, b, c: sides opposite p0, p1, p2)."""
    a2 = np.sum((p[1] - p[2]) ** 2)
    b2 = np.sum((p[0] - p[2]) ** 2)
    c2 = np.sum((p[0] - p[1]) ** 2)
    w = np.array([a2 * (b2 + c2 - a2), b2 * (a2 + c2 - b2), c2 * (a2 + b2 - c2)])
    return (w[:, None] * p).sum(0) / w.sum()


@pytest.mark.parametrize("rows", [(0, 1, 2), (5, 17, 300), (10, 11, 1000)])
def test_slice_plane_is_the_square_around_the_circumcentre(data, rows):
    xtr = data[0].astype(np.float64)
    p = xtr[list(rows)]
    plane = hr.slice_plane(*p)
    c = _circumcentre(p)
    R = np.linalg.norm(p - c, axis=1)
    np.testing.assert_allclose(R, R[0], rtol=1e-9)
    np.testing.assert_allclose(plane.origin, c, atol=1e-9)
    np.testing.assert_allclose(plane.extent, ((-1.25 * R[0], 1.25 * R[0]),) * 2, rtol=1e-9)
    np.testing.assert_allclose(plane.area, (2.5 * R[0]) ** 2, rtol=1e-9)
    np.testing.assert_allclose(plane.points(plane.coords(p)), p, atol=1e-9)  # the three inputs lie in the plane


@pytest.mark.parametrize("widths", [[64, 6, 10], [64, 4, 4, 10], [64, 3, 3, 3, 10]])
def test_slice_density_against_dense_sampling(data, widths):
    xtr = data[0]
    net = _mlp(widths, bias_std=0.2, seed=len(widths))
    plane = hr.slice_plane(*xtr[[3, 40, 77]])
    d = hr.slice_density(net, plane)
    n = sum(widths[1:-1])
    assert d["area"] == pytest.approx(plane.area) and d["ratio"] == pytest.approx(d["regions"] / plane.area / (n * n / 2))
    assert d["count_ratio"] == pytest.approx(d["regions"] / (n * n / 2))
    r = 120  # a convex region of >= 2% of the square is wider than the grid spacing: it holds a grid point
    pts = plane.points(plane.grid(r))
    bits, _ = oracle.codes(net.layers, pts)
    seen = len({tuple(np.concatenate([b[i] for b in bits]).tolist()) for i in range(len(pts))})
    res = partax.geometry.slice_regions(net, plane)
    small = int((res.region_areas < 0.02 * plane.area).sum())
    assert seen <= d["regions"] <= seen + small


def test_hidden_widths_and_triples():
    assert hr.hidden_widths(48, 3) == [16, 16, 16]
    with pytest.raises(ValueError, match="units, depth"):
        hr.hidden_widths(48, 5)
    t = hr.triples(100, 20, seed=1)
    assert t.shape == (20, 3) and all(len(set(row)) == 3 for row in t.tolist()) and t.max() < 100
    np.testing.assert_array_equal(t, hr.triples(100, 20, seed=1))


def test_hanin_rolnick_smallest_run(tmp_path):
    res = hr.main(["--depths", "1", "--units", "8", "--seeds", "1", "--triples", "2", "--epochs", "1",
                   "--checkpoints", "1", "--out", str(tmp_path), "--figure", ""])
    s = res["summary"]
    assert [(r["depth"], r["epoch"], r["samples"]) for r in s] == [(1, 0, 2), (1, 1, 2)]
    rows = json.load(open(tmp_path / "results.json"))["rows"]
    assert len(rows) == 2 * 2 and all(1 <= r["regions"] for r in rows)
    net = partax.mlp(jax.random.key(100 * 1 + 0), [64, 8, 10])  # depth 1, seed 0 at initialisation
    xtr = digits()
    xtr = dfc.split(*xtr, 1200)[0]
    tri = np.array(res["meta"]["triple_indices"])
    want = [hr.slice_regions(net, hr.slice_plane(*xtr[i])).num_regions for i in tri]
    got = [r["regions"] for r in rows if r["depth"] == 1 and r["epoch"] == 0]
    assert got == want


@pytest.mark.slow
def test_hanin_rolnick_quick_with_figure(tmp_path):
    fig = tmp_path / "hr.png"
    res = hr.main(["--quick", "--out", str(tmp_path), "--figure", str(fig)])
    assert fig.stat().st_size > 10_000 and len(res["summary"]) == 2 * 4


@pytest.mark.slow
def test_digits_fcn_cnn_smallest_run(tmp_path):
    fig = tmp_path / "dfc.png"
    res = dfc.main(["--seeds", "1", "--epochs", "2", "--checkpoints", "2", "--hidden", "16", "16", "--channels", "2", "4",
                    "--out", str(tmp_path), "--figure", str(fig)])
    assert fig.stat().st_size > 10_000
    for kind in ("fcn", "cnn"):
        rows = res["runs"][kind]["rows"]
        assert [r["epoch"] for r in rows] == [0, 1, 2]
        for r in rows:
            assert len(r["test_shared"]) == len(r["prefix_regions"]) == len(res["runs"][kind]["widths"])
            assert all(0 <= v <= 1 for v in r["test_shared"] + r["train_alone"])
            assert all(1 <= v <= 1200 for v in r["prefix_regions"])
    on_disk = json.load(open(tmp_path / "results.json"))
    assert on_disk["summary"]["cnn"]["widths"] == [8 * 8 * 2, 4 * 4 * 2 * 2, 4 * 4 * 4]


def _write_idx(path, array, code):
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(bytes([0, 0, code, array.ndim]) + dims + array.astype(">u1").tobytes())


@pytest.mark.parametrize("n", [12, 30])
def test_mnist_path_reads_idx_and_builds_the_cnn(tmp_path, n):
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 28, 28))
    labels = np.arange(n) % 10
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, 0x08)
    x, y, shape, name, n_train = dfc.load_data(str(tmp_path))
    assert shape == (28, 28, 1) and x.shape == (n, 784) and n_train == n * 5 // 6 and "MNIST" in name
    np.testing.assert_array_equal(x, images.reshape(n, -1).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    x2, y2, _, _, n_train2 = hr.load_data(str(tmp_path))
    np.testing.assert_array_equal(x2, x)
    assert n_train2 == n_train
    net = dfc.cnn(jax.random.key(0), shape, (2, 3))
    assert net.widths == (28 * 28 * 2, 14 * 14 * 2 * 2, 14 * 14 * 3)
    out = oracle.forward(net.layers, x[:2].reshape(2, 28, 28, 1))
    assert np.max(np.abs(out - np.asarray(net(x[:2].reshape(2, 28, 28, 1))))) < 1e-4
    with pytest.raises(SystemExit, match="train-labels"):
        (tmp_path / "train-labels-idx1-ubyte").unlink()
        dfc.load_data(str(tmp_path))
