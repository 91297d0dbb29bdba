"""Lossless compression (partax.compress, partax.compression.verify_equivalent).

Oracles: nets built with known stable units (the expected widths follow from the construction),
the test's own dense sampling of the box with float32 JAX and float64 NumPy forward passes, and
two independent exact certificates that must agree (the algebraic one and exact enumeration of
the joint net's regions); perturbed nets must fail every check."""

import json

import jax
import numpy as np
import optax
import pytest

import partax
from partax import stability
from partax.compression import CompressionError, compress, verify_equivalent
from partax.train import fit

f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731


def _dense_diff(f, g, box, n=100_000, seed=1):
    """max |f - g| by the test's own sampling (float64 NumPy forward passes)."""
    lo, hi = box.bounds(f.input_dim)
    x = lo + np.random.default_rng(seed).random((n, f.input_dim)) * (hi - lo)

    def fwd(net):
        h = x
        a = net.alpha if net.activation == "leaky_relu" else 0.0
        for W, b in zip(net.weights[:-1], net.biases[:-1]):
            z = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
            h = np.where(z > 0, z, a * z)
        return h @ np.asarray(net.weights[-1], np.float64) + np.asarray(net.biases[-1], np.float64)

    yf, yg = fwd(f), fwd(g)
    assert np.array_equal(np.argmax(np.asarray(f(f32(x))), 1), np.argmax(np.asarray(g(f32(x))), 1)) or \
        np.max(np.abs(yf - yg)) < 1e-4
    return float(np.max(np.abs(yf - yg))), float(np.max(np.abs(yf)))


def _constructed(rng):
    """Layer 1 over [0,1]^2: units 0, 1 unstable (lines through the box), 2, 3, 4 stably active
    with unit 4 = unit 2 + 2 * unit 3 - 1 in its weights (rank 2 among them, plus 0, 1), units 5, 6
    stably inactive, unit 7 with zero incoming weights and bias 0.3. Layer 2: 3 unstable units."""
    W1 = np.zeros((2, 8)); b1 = np.zeros(8)
    W1[:, 0], b1[0] = [1.0, -1.0], 0.1
    W1[:, 1], b1[1] = [1.0, 1.0], -1.0
    W1[:, 2], b1[2] = [0.5, 0.2], 1.0
    W1[:, 3], b1[3] = [-0.3, 0.4], 1.0
    W1[:, 4], b1[4] = W1[:, 2] + 2 * W1[:, 3], 2.0
    W1[:, 5], b1[5] = [1.0, 1.0], -3.0
    W1[:, 6], b1[6] = [-1.0, 0.5], -1.0
    W1[:, 7], b1[7] = [0.0, 0.0], 0.3
    W2 = rng.normal(size=(8, 3)); b2 = np.array([0.05, -0.1, 0.0])
    W2[:, 2] = rng.normal(size=8) * 0.1
    W3 = rng.normal(size=(3, 2)); b3 = np.array([0.1, -0.2])
    return partax.Net.from_arrays([f32(W1), f32(b1), f32(W2), f32(b2), f32(W3), f32(b3)])


def test_constructed_net_known_stable_units():
    net = _constructed(np.random.default_rng(0))
    box = partax.Box(0.0, 1.0)
    assert stable_units_known(net, box)
    small, rep = compress(net, box, method="interval")
    r1 = rep.layers[0]
    assert (r1.stably_active, r1.stably_inactive, r1.unstable) == (4, 2, 2)  # unit 7 (b=0.3) is active
    assert r1.removed_inactive == 2 and r1.removed_zero_incoming == 1
    # rank of the active units {2, 3, 4} is 2: one is merged
    assert r1.merged_active == 1 and r1.kept_affine == 2
    assert small.widths[0] == 4
    assert rep.units_before == 11 and rep.units_after == sum(small.widths)
    assert rep.connections_before == 2 * 8 + 8 * 3 + 3 * 2
    assert rep.connections_after == sum(int(np.prod(np.shape(W))) for W in small.weights)
    assert rep.verification.equivalent
    diff, _ = _dense_diff(net, small, box)
    assert diff < 1e-5
    enum = verify_equivalent(net, small, box, certificate="enumerate")
    assert enum.certified and enum.certified_bound < 1e-5
    assert json.loads(rep.to_json())["units_removed_pct"] == pytest.approx(100 * (11 - rep.units_after) / 11)
    assert "layer 1" in rep.summary()


def stable_units_known(net, box):
    s = stability.stable_units(net, box, "interval")[0].tolist()
    return s == [0, 0, 1, 1, 1, -1, -1, 1]


def test_fold_constant_and_affine():
    rng = np.random.default_rng(1)
    box = partax.Box(0.0, 1.0)
    W1 = rng.normal(size=(3, 5)); b1 = np.abs(W1).sum(0) + 1  # every unit stably active
    W2 = rng.normal(size=(5, 4)); b2 = rng.normal(size=4) * 0.1
    W3 = rng.normal(size=(4, 2)); b3 = np.array([0.3, -0.2])
    folded = partax.Net.from_arrays([f32(a) for a in (W1, b1, W2, b2, W3, b3)])
    g, rep = compress(folded, box, method="linear")
    assert rep.layers[0].folded and rep.layers_after == 1 and g.num_hidden == 1
    assert verify_equivalent(folded, g, box, certificate="enumerate").equivalent
    assert _dense_diff(folded, g, box)[0] < 1e-5
    # layer 2 entirely stably inactive: the net is constant on the box
    dead = partax.Net.from_arrays([f32(a) for a in (W1, b1, W2, -np.abs(W2).sum(0) * 20 - 1, W3, b3)])
    g, rep = compress(dead, box, method="interval")
    assert rep.constant and rep.layers[1].stably_inactive == 4
    x = np.random.default_rng(0).random((1000, 3))
    np.testing.assert_allclose(np.asarray(g(f32(x))), np.broadcast_to(b3, (1000, 2)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(dead(f32(x))), np.broadcast_to(b3, (1000, 2)), atol=1e-6)
    # every unit stably active: the net is affine on the box
    lin = partax.Net.from_arrays([f32(a) for a in (W1, b1, W2, np.abs(W2).sum(0) * 20 + 1, W3, b3)])
    g, rep = compress(lin, box, method="interval")
    assert rep.affine and not rep.constant and g.widths == (2,)
    assert verify_equivalent(lin, g, box, certificate="enumerate").equivalent


def _circle_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2)).astype(np.float32)
    y = (np.sum((x - 0.5) ** 2, axis=1) < 0.1).astype(np.int32)
    return x, y


@pytest.mark.parametrize("l1", [pytest.param(0.0, marks=pytest.mark.slow), 3e-3])
def test_trained_2d_net_both_certificates(l1):
    x, y = _circle_data()
    net = partax.mlp(jax.random.key(0), [2, 16, 16, 2], bias_std=0.1)
    net, _ = fit(net, x, y, optax.adam(1e-2), epochs=40, batch_size=200, key=1, l1=l1)
    box = partax.Box(0.0, 1.0)
    small, rep = compress(net, box, method="lp")
    v = rep.verification
    assert v.equivalent and v.certificate == "algebraic"
    enum = verify_equivalent(net, small, box, certificate="enumerate")
    assert enum.certified, enum.reason
    diff, maxf = _dense_diff(net, small, box)
    assert diff <= v.tol and diff <= enum.certified_bound + 1e-12 and diff <= v.certified_bound + 1e-12
    assert rep.units_after <= rep.units_before


@pytest.mark.slow  # a study: trains on digits
def test_l1_training_compresses_more_on_digits():
    x, y = partax.datasets.digits()
    box = partax.Box(0.0, 1.0)
    removed = {}
    for l1 in (0.0, 1e-3):
        net = partax.mlp(jax.random.key(0), [64, 25, 25, 10], bias_std=0.0)
        net, hist = fit(net, x, y, optax.adam(3e-3), epochs=30, batch_size=128, key=0, l1=l1)
        assert hist["accuracy"][-1] > 0.8
        small, rep = compress(net, box, method="linear")
        assert rep.verification.equivalent
        diff, _ = _dense_diff(net, small, box, n=20_000)
        assert diff <= rep.verification.tol
        np.testing.assert_array_equal(np.argmax(np.asarray(net(x)), 1) == y, np.argmax(np.asarray(small(x)), 1) == y)
        removed[l1] = rep.units_removed_pct
    assert removed[1e-3] > removed[0.0]


def test_leaky_relu_compression():
    rng = np.random.default_rng(2)
    W1 = rng.normal(size=(2, 6)); b1 = rng.normal(size=6) * 2
    W2 = rng.normal(size=(6, 4)); b2 = rng.normal(size=4)
    W3 = rng.normal(size=(4, 2)); b3 = np.zeros(2)
    net = partax.Net.from_arrays([f32(a) for a in (W1, b1, W2, b2, W3, b3)], activation=("leaky_relu", 0.1))
    box = partax.Box(-1.0, 1.0)
    small, rep = compress(net, box, method="lp")
    assert rep.layers[0].removed_inactive == 0  # a leaky unit is never dead: it is affine
    assert verify_equivalent(net, small, box, certificate="enumerate").equivalent
    assert _dense_diff(net, small, box)[0] <= rep.verification.tol


def test_perturbed_net_fails_every_check():
    net = _constructed(np.random.default_rng(3))
    box = partax.Box(0.0, 1.0)
    small, _ = compress(net, box, method="lp")
    W = [np.array(a) for a in small.arrays()]
    W[0][0, 0] += 1e-3  # move one hyperplane of an unstable unit
    bad = partax.Net.from_arrays(W)
    for cert in ("algebraic", "enumerate"):
        v = verify_equivalent(net, bad, box, certificate=cert)
        assert not v.certified and not v.equivalent, cert
        assert v.certified_bound >= v.max_abs_diff - 1e-12
    assert not verify_equivalent(net, bad, box).sampled_ok
    assert verify_equivalent(net, net, box).equivalent
    none = verify_equivalent(net, net, box, certificate="none")
    assert none.sampled_ok and not none.certified and not none.equivalent


def test_compress_never_returns_a_failed_net(monkeypatch):
    """Unsound classes (a unstable unit claimed stably active) make a wrong net: compress raises."""
    net = _constructed(np.random.default_rng(4))
    box = partax.Box(0.0, 1.0)
    real = stability.classify

    def wrong(bounds):
        s = real(bounds)
        s[0][0] = 1
        return s

    monkeypatch.setattr(stability, "classify", wrong)
    with pytest.raises(CompressionError, match="verification"):
        compress(net, box, method="interval")


def test_bad_input():
    net = partax.mlp(jax.random.key(0), [3, 4, 2])
    with pytest.raises(ValueError, match="bounded"):
        compress(net, None)
    with pytest.raises(ValueError, match="dimension"):
        compress(net, partax.Box([0, 0], [1, 1]))
    with pytest.raises(ValueError, match="certificate"):
        compress(net, partax.Box(0.0, 1.0), certificate="magic")
    other = partax.mlp(jax.random.key(0), [3, 4, 3])
    with pytest.raises(ValueError, match="other"):
        verify_equivalent(net, other, partax.Box(0.0, 1.0))
    with pytest.raises(TypeError, match="other"):
        verify_equivalent(net, "net.npz", partax.Box(0.0, 1.0))


def _cli(argv):
    """Parses ``argv`` with a parser holding only ``partax compress`` (registration is the lead's)."""
    import argparse

    from partax.cli import compress as cli_compress

    parser = argparse.ArgumentParser(prog="partax")
    sub = parser.add_subparsers(dest="command")
    cli_compress.add_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_writes_the_smaller_net_report_and_verification(tmp_path, capsys):
    net = _constructed(np.random.default_rng(5))
    partax.save_net(net, tmp_path / "net.npz")
    out = tmp_path / "out"
    assert _cli(["compress", "--net", str(tmp_path / "net.npz"), "--lo", "0", "--hi", "1", "--out", str(out),
                 "--method", "linear", "--samples", "2000"]) == 0
    text = capsys.readouterr().out
    assert "units 11 ->" in text and "equivalent" in text
    small = partax.load_net(out / "net.npz")
    rep = json.loads((out / "report.json").read_text())
    ver = json.loads((out / "verification.json").read_text())
    assert rep["units_after"] == sum(small.widths) and rep["method"] == "linear"
    assert ver["equivalent"] and ver["num_samples"] >= 2000
    assert _dense_diff(net, small, partax.Box(0.0, 1.0))[0] <= ver["tol"]


def test_cli_failed_verification_writes_no_net(tmp_path, monkeypatch, capsys):
    net = _constructed(np.random.default_rng(6))
    partax.save_net(net, tmp_path / "net.npz")
    real = stability.classify

    def wrong(bounds):
        s = real(bounds)
        s[0][0] = 1
        return s

    monkeypatch.setattr(stability, "classify", wrong)
    out = tmp_path / "out"
    assert _cli(["compress", "--net", str(tmp_path / "net.npz"), "--lo", "0", "--hi", "1", "--out", str(out),
                 "--method", "interval"]) == 1
    assert not (out / "net.npz").exists()
    assert not json.loads((out / "verification.json").read_text())["equivalent"]
    assert "failed verification" in capsys.readouterr().out
    with pytest.raises(ValueError, match="lo < hi"):
        _cli(["compress", "--net", str(tmp_path / "net.npz"), "--lo", "1", "--hi", "0", "--out", str(out)])
    with pytest.raises(ValueError, match="finite"):
        _cli(["compress", "--net", str(tmp_path / "net.npz"), "--lo", "0", "--hi", "inf", "--out", str(out)])


def test_fit_l1_penalty():
    from partax.train import l1_norm

    x, y = _circle_data(500)
    net0 = partax.mlp(jax.random.key(3), [2, 8, 8, 2], bias_std=0.1)
    assert float(l1_norm(net0)) == pytest.approx(sum(float(np.abs(np.asarray(W, np.float64)).sum())
                                                     for W in net0.weights), rel=1e-5)
    plain, h0 = fit(net0, x, y, optax.sgd(0.1), epochs=20, batch_size=100, key=0)
    sparse, h1 = fit(net0, x, y, optax.sgd(0.1), epochs=20, batch_size=100, key=0, l1=1e-2)
    assert float(l1_norm(sparse)) < float(l1_norm(plain))
    # the first epoch's loss is measured before the first steps: it carries l1 * |W|_1 on top
    assert h1["loss"][0] > h0["loss"][0]
    same, _ = fit(net0, x, y, optax.sgd(0.1), epochs=20, batch_size=100, key=0, l1=0.0)
    np.testing.assert_array_equal(np.asarray(same.weights[0]), np.asarray(plain.weights[0]))
    with pytest.raises(ValueError, match="l1"):
        fit(net0, x, y, optax.sgd(0.1), epochs=1, batch_size=100, l1=-1.0)
    with pytest.raises(TypeError, match="l1"):
        fit(net0, x, y, optax.sgd(0.1), epochs=1, batch_size=100, l1="big")


def test_middle_layer_folds_and_dependent_units_merge():
    """A 3-hidden-layer net whose middle layer is entirely stably active (folded into layer 3),
    and whose first layer has more stably active units than inputs (rank 2: all but 2 merge)."""
    rng = np.random.default_rng(7)
    box = partax.Box(-1.0, 1.0)
    W1 = rng.normal(size=(2, 9)); b1 = rng.normal(size=9) * 0.2
    b1[3:] = np.abs(W1[:, 3:]).sum(0) + 0.5  # units 3..8 stably active, in R^2: rank 2
    W2 = rng.normal(size=(9, 5)) * 0.3; b2 = np.full(5, 50.0)  # every unit of layer 2 stably active
    W3 = rng.normal(size=(5, 6)); b3 = rng.normal(size=6)
    b3 -= 50.0 * W3.sum(0)  # re-centre layer 3 (its inputs are about 50) so it stays unstable
    W4 = rng.normal(size=(6, 2)); b4 = np.zeros(2)
    net = partax.Net.from_arrays([f32(a) for a in (W1, b1, W2, b2, W3, b3, W4, b4)])
    s = stability.stable_units(net, box, "interval")
    assert (s[0][3:] == 1).all() and (s[1] == 1).all() and (s[2] == 0).any()
    small, rep = compress(net, box, method="lp")
    assert rep.layers[1].folded and rep.layers[0].merged_active == 4 and rep.layers[0].kept_affine == 2
    assert small.num_hidden == 2 and small.widths[0] == int(np.sum(s[0] == 0)) + 2
    enum = verify_equivalent(net, small, box, certificate="enumerate")
    assert enum.certified, enum.reason
    assert _dense_diff(net, small, box)[0] <= rep.verification.tol


def _leaky_pair(alpha):
    """``f`` with 2 hidden layers (the second stably active: h1 + 8 > 0 on [-1, 1]^2) and ``g``
    with 1, computing the same function (dyadic weights: exact in float32 and float64)."""
    W1 = np.array([[1, -1, 0.5, 1], [0.5, 1, -1, -0.25]]); b1 = np.array([0.25, -0.5, 0.125, 0])
    W3 = np.array([[1, -0.5], [0.25, 2], [-1, 1], [0.5, 0.75]]); b3 = np.array([0.5, -0.25])
    act = ("leaky_relu", alpha)
    f = partax.Net.from_arrays([f32(a) for a in (W1, b1, np.eye(4), np.full(4, 8.0), W3, b3 - 8 * W3.sum(0))],
                               activation=act)
    g = partax.Net.from_arrays([f32(a) for a in (W1, b1, W3, b3)], activation=act)
    return f, g, (W1, b1, W3, b3)


def test_enumerate_certificate_pads_leaky_nets_of_different_depths():
    """The padding identity of a leaky ReLU is (act(y) - act(-y)) / (1 + alpha): with the old
    relu(y) - relu(-y) padding the correct g failed (bound 1.375) and g / 1.5 was certified."""
    box = partax.Box(-1.0, 1.0)
    f, g, (W1, b1, W3, b3) = _leaky_pair(0.5)
    wrong = partax.Net.from_arrays([f32(a) for a in (W1, b1, W3 / 1.5, b3 / 1.5)], activation=("leaky_relu", 0.5))
    # the test's own oracle: dense float64 sampling
    assert _dense_diff(f, g, box, n=20_000)[0] < 1e-12
    assert _dense_diff(f, wrong, box, n=20_000)[0] > 0.5
    for a, b in ((f, g), (g, f)):  # either net may be the padded one
        v = verify_equivalent(a, b, box, certificate="enumerate", samples=2000)
        assert v.certified and v.equivalent and v.certified_bound < 1e-9, v.reason
    for a, b in ((f, wrong), (wrong, f)):
        for cert in ("enumerate", "algebraic"):
            v = verify_equivalent(a, b, box, certificate=cert, samples=2000)
            assert not v.certified and not v.equivalent, cert
            assert v.certified_bound >= v.max_abs_diff - 1e-12
    # compress folds f's second layer; the enumerate certificate now accepts the (correct) result
    small, rep = compress(f, box, certificate="enumerate", samples=2000)
    assert small.num_hidden == 1 and rep.layers[1].folded and rep.verification.certified
    # alpha = -1 has no padding identity (act(y) - act(-y) = 0): an infinite bound, with a reason
    f1, g1, _ = _leaky_pair(-1.0)
    v = verify_equivalent(f1, g1, box, certificate="enumerate", samples=2000)
    assert v.certified_bound == np.inf and not v.certified and "alpha = -1" in v.reason
    assert v.sampled_ok


def test_net_bounds_are_not_trusted():
    net = _constructed(np.random.default_rng(8))
    box = partax.Box(0.0, 1.0)
    bounds = stability.preactivation_bounds(net, box, "interval")
    small, _ = compress(net, box, method="interval")
    assert verify_equivalent(net, small, box, net_bounds=bounds, samples=2000).equivalent
    # unit 0 of layer 1 is unstable: bounds claiming it stably active are refuted by the samples
    lie = [(lo.copy(), hi.copy()) for lo, hi in bounds]
    lie[0][0][0] = 0.01
    with pytest.raises(ValueError, match="net_bounds: not sound.*layer 1 units \\[0\\]"):
        verify_equivalent(net, small, box, net_bounds=lie, samples=2000)
    # the same class but a range too tight (the algebraic certificate uses the ranges)
    uns = stability.classify(bounds)[1] == 0  # lo < 0 < hi: shrinking towards 0 keeps the class
    assert uns.any()
    tight = [bounds[0], (np.where(uns, bounds[1][0] * 1e-3, bounds[1][0]),
                         np.where(uns, bounds[1][1] * 1e-3, bounds[1][1]))]
    with pytest.raises(ValueError, match="net_bounds: not sound.*outside"):
        verify_equivalent(net, small, box, net_bounds=tight, samples=2000)
    with pytest.raises(ValueError, match="net_bounds: expected 2"):
        verify_equivalent(net, small, box, net_bounds=bounds[:1])
    with pytest.raises(ValueError, match="net_bounds: layer 2: expected lo and hi of shape \\(3,\\)"):
        verify_equivalent(net, small, box, net_bounds=[bounds[0], (bounds[1][0][:2], bounds[1][1][:2])])
    with pytest.raises(ValueError, match="net_bounds: .*lo <= hi"):
        verify_equivalent(net, small, box, net_bounds=[bounds[0], (bounds[1][1] + 1, bounds[1][1])])


def test_bad_tolerances_and_counts():
    net = partax.mlp(jax.random.key(0), [3, 4, 2])
    box = partax.Box(0.0, 1.0)
    for kwargs, name in (({"samples": 0}, "samples"), ({"samples": 2.5}, "samples"), ({"atol": -1e-5}, "atol"),
                         ({"rtol": float("nan")}, "rtol"), ({"max_regions": 0}, "max_regions")):
        with pytest.raises(ValueError, match=name):
            verify_equivalent(net, net, box, **kwargs)
    with pytest.raises(TypeError, match="seed"):
        verify_equivalent(net, net, box, seed=0.5)
    with pytest.raises(ValueError, match="method"):
        verify_equivalent(net, net, box, method="exact")
    for kwargs, name in (({"samples": -1}, "samples"), ({"atol": -1.0}, "atol"), ({"rtol": "x"}, "rtol")):
        with pytest.raises(ValueError, match=name):
            compress(net, box, **kwargs)


def test_records_are_frozen():
    import dataclasses

    net = _constructed(np.random.default_rng(9))
    small, rep = compress(net, partax.Box(0.0, 1.0), method="interval", samples=2000)
    for obj, field in ((rep, "units_after"), (rep.layers[0], "units_after"), (rep.verification, "equivalent")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, 0)
    assert repr(rep).startswith("CompressionReport(method='interval', units=11->")
    assert repr(rep.layers[0]).startswith("LayerReport(layer=1, units_before=8, stably_active=4")
    assert json.loads(rep.to_json())["layers"][0]["removed_inactive"] == 2
