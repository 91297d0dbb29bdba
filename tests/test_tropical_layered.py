"""partax.tropical on general nets (convolutions, max / average pooling, batch norm, residual
blocks, leaky ReLU, hard tanh) against independent oracles.

Oracles: ``tests/layers_oracle.py`` (an explicit-loop float64 NumPy forward pass: codes, logits and
the frozen-code local maps ``f(e_i) - f(0)``; no partax code), ``jax.jacfwd`` of a float64 copy of
the net's own forward pass, brute-force NumPy loops over the stored terms for the tropical
classifier, and ``set``s of oracle code tuples for the shared-region fractions.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import layers_oracle as oracle
import partax
from partax import tropical
from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential
from partax.tropical import TropicalClassifier, linear_terms


# --- nets (tiny, every layer kind; same seeds in every process) ------------------------------------
def _f32(rng, *shape, scale=1.0):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def conv_pool(rng):
    """Conv, ReLU, 2x2 max pool, dense: the TropEx CNN in small."""
    return sequential([Conv(_f32(rng, 3, 3, 1, 2, scale=0.6), _f32(rng, 2, scale=0.2)), ReLU(), MaxPool((2, 2)),
                       Flatten(), Dense(_f32(rng, 8, 3), _f32(rng, 3))], (6, 6, 1))


def residual(rng):
    """Strided conv, leaky ReLU, a residual block with a hard tanh, batch norm (signed scales),
    a padded overlapping max pool."""
    return sequential([Conv(_f32(rng, 2, 2, 2, 2, scale=0.6), _f32(rng, 2, scale=0.1), strides=2), LeakyReLU(0.1),
                       Residual((Conv(_f32(rng, 3, 3, 2, 2, scale=0.5), _f32(rng, 2, scale=0.1), padding=1),
                                 HardTanh(-0.5, 0.5), Conv(_f32(rng, 1, 1, 2, 2), _f32(rng, 2)))),
                       BatchNorm(_f32(rng, 2), np.abs(_f32(rng, 2)) + 0.5, np.array([1.3, -0.7], np.float32),
                                 _f32(rng, 2)),
                       MaxPool((2, 2), (1, 1), ((1, 0), (0, 1))), Flatten(), Dense(_f32(rng, 8, 3), _f32(rng, 3))],
                      (5, 5, 2))


def cnn(rng):
    """SAME convs, max pool, a residual block with a conv shortcut and leaky units, average pool."""
    return sequential([Conv(_f32(rng, 3, 3, 1, 3, scale=0.6), _f32(rng, 3, scale=0.2), padding=1), ReLU(),
                       MaxPool((2, 2)),
                       Residual((Conv(_f32(rng, 3, 3, 3, 3, scale=0.5), _f32(rng, 3, scale=0.1), padding=1),
                                 LeakyReLU(0.3), Conv(_f32(rng, 1, 1, 3, 3), _f32(rng, 3))),
                                shortcut=Conv(_f32(rng, 1, 1, 3, 3), _f32(rng, 3, scale=0.1))),
                       ReLU(), AvgPool((2, 2), (1, 1)), Flatten(), Dense(_f32(rng, 12, 4), _f32(rng, 4))], (6, 6, 1))


def every(rng):
    """Every layer kind in one net: SAME conv, ReLU, max pool, a residual block with a conv shortcut
    and a hard tanh, batch norm (signed scales), leaky ReLU, a padded overlapping max pool, an
    identity residual block, average pooling, dense."""
    return sequential([Conv(_f32(rng, 3, 3, 1, 3, scale=0.6), _f32(rng, 3, scale=0.2), padding=1), ReLU(),
                       MaxPool((2, 2)),
                       Residual((Conv(_f32(rng, 3, 3, 3, 3, scale=0.5), _f32(rng, 3, scale=0.1), padding=1),
                                 HardTanh(-0.5, 0.5), Conv(_f32(rng, 1, 1, 3, 3), _f32(rng, 3))),
                                shortcut=Conv(_f32(rng, 1, 1, 3, 3), _f32(rng, 3, scale=0.1))),
                       BatchNorm(_f32(rng, 3), np.abs(_f32(rng, 3)) + 0.5, np.array([1.3, -0.7, 0.9], np.float32),
                                 _f32(rng, 3)),
                       LeakyReLU(0.3), MaxPool((2, 2), (1, 1), ((1, 0), (0, 1))),
                       Residual((Conv(_f32(rng, 1, 1, 3, 3), _f32(rng, 3, scale=0.1)), ReLU(),
                                 Conv(_f32(rng, 1, 1, 3, 3, scale=0.5), _f32(rng, 3)))),
                       AvgPool((2, 2), (1, 1)), Flatten(), Dense(_f32(rng, 12, 4), _f32(rng, 4))], (6, 6, 1))


def conv1d(rng):
    return sequential([Conv(_f32(rng, 3, 1, 3, scale=0.7), _f32(rng, 3, scale=0.2), dilation=(2,)), HardTanh(0.0, 1.0),
                       AvgPool((2,)), MaxPool((2,), (1,)), Flatten(), Dense(_f32(rng, 6, 2), _f32(rng, 2))], (11, 1))


def padded_pool(rng):
    """Max-pool windows with padded slots on both sides, then a leaky unit; one logit."""
    return sequential([Conv(_f32(rng, 2, 1, 2, scale=1.5), _f32(rng, 2)), MaxPool((3,), (2,), ((1, 1),)),
                       LeakyReLU(0.1), Flatten(), Dense(_f32(rng, 6, 1), _f32(rng, 1))], (6, 1))


def bare(rng):
    """A residual block (identity shortcut, a site in its body) first, a max pool of the raw
    values, and a site last (no affine layer after it: the outputs are its values)."""
    return sequential([Residual((Conv(_f32(rng, 1, 1, 1), _f32(rng, 1, scale=0.3)), ReLU(), Conv(_f32(rng, 1, 1, 1), _f32(rng, 1)))),
                       MaxPool((2,)), Conv(_f32(rng, 3, 1, 2), _f32(rng, 2, scale=0.3)), LeakyReLU(0.2)], (8, 1))


NETS = {"every": every, "bare": bare, "conv_pool": conv_pool, "residual": residual, "cnn": cnn, "conv1d": conv1d,
        "padded_pool": padded_pool}
DEFAULT = ("every",)  # every layer kind in one net (fast); the others are slow


def net_params():
    return [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in NETS]


class Case:
    """A net, inputs away from every threshold (float32 and float64 codes agree), with twins
    (many share a region), and what the oracle says about them."""

    def __init__(self, name):
        rng = np.random.default_rng(sum(map(ord, name)))
        self.name = name
        self.net = net = NETS[name](rng)
        x = rng.normal(size=(400, *net.input_shape)).astype(np.float32)
        _, margin = oracle.codes(net.layers, x)
        x = x[margin > 1e-2][:24]
        assert len(x) == 24
        twins = np.repeat(x[:8], 3, axis=0) + np.float32(1e-6) * rng.normal(size=(24, *net.input_shape)).astype(np.float32)
        self.x = np.concatenate([x, twins])
        self.flat = self.x.reshape(len(self.x), -1)
        self.x64 = self.flat.astype(np.float64)
        self.bits, margin = oracle.codes(net.layers, self.x)
        assert margin.min() > 1e-4
        self.logits = oracle.forward(net.layers, self.x.astype(np.float64)).reshape(len(self.x), -1)
        self.terms = linear_terms(net, self.x)


@functools.lru_cache(maxsize=None)
def get_case(name):
    return Case(name)


@pytest.fixture(scope="module", params=net_params())
def case(request):
    return get_case(request.param)


def code_tuples(bits, upto=None):
    upto = len(bits) if upto is None else upto
    return [tuple(r) for r in np.concatenate(bits[:upto], axis=1).tolist()]


def jacfwd64(net, x):
    """``jax.jacfwd`` of the float64 copy of the net's own forward pass, and its outputs."""
    with jax.enable_x64(True):
        net64 = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), net)
        f = lambda p: net64(p.reshape(1, *net.input_shape)).reshape(-1)
        xs = jnp.asarray(np.asarray(x, np.float64).reshape(len(x), -1))
        return np.asarray(jax.jit(jax.vmap(jax.jacfwd(f)))(xs)), np.asarray(jax.jit(jax.vmap(f))(xs))


# --- linear terms ---------------------------------------------------------------------------------
def test_terms_equal_oracle_maps_and_jacfwd(case):
    net, t = case.net, case.terms
    for l, b in enumerate(case.bits):  # the regions are the oracle's codes
        np.testing.assert_array_equal(t.masks[l][t.index], b)
    A, c, _ = oracle.local_map(net.layers, net.input_shape, case.bits)
    assert t.coef.shape == A.shape == (len(case.x), net.output_dim, net.input_dim)
    assert np.max(np.abs(t.coef - A)) <= 1e-12 * (1 + np.abs(A).max())
    assert np.max(np.abs(t.bias - c)) <= 1e-12 * (1 + np.abs(c).max())
    J, y = jacfwd64(net, case.x)
    assert np.max(np.abs(t.coef - J)) <= 1e-12 * (1 + np.abs(J).max())
    out = np.einsum("nkd,nd->nk", t.coef, case.x64) + t.bias
    assert np.max(np.abs(out - y)) <= 1e-12 * (1 + np.abs(y).max())
    assert np.max(np.abs(out - case.logits)) <= 1e-12 * (1 + np.abs(y).max())
    # reported in float32 too: the float32 net's own jacfwd and outputs, to float32 rounding
    f32 = lambda p: net(p.reshape(1, *net.input_shape)).reshape(-1)
    J32 = np.asarray(jax.jit(jax.vmap(jax.jacfwd(f32)))(jnp.asarray(case.flat)))
    assert np.max(np.abs(t.coef - J32)) <= 1e-4 * (1 + np.abs(J).max())
    assert np.max(np.abs(out - np.asarray(net(case.x)).reshape(len(case.x), -1))) <= 1e-4 * (1 + np.abs(y).max())
    # once per region: the twins share their originals' regions; regions = distinct oracle codes
    tuples = code_tuples(case.bits)
    assert t.num_regions == len(set(tuples)) < len(case.x) and t.counts.sum() == len(case.x)
    assert t.region_coef.shape[0] == t.num_regions
    first = {}
    for n, code in enumerate(tuples):
        assert t.index[n] == t.index[first.setdefault(code, n)]
    assert (t.keys[t.index] == partax.region_ids(net, case.flat, "prefix")[:, -1]).all()


def test_flat_and_structured_inputs_agree(case):
    t = linear_terms(case.net, case.flat)
    for name in ("region_coef", "region_bias", "region_num_coef", "region_num_bias", "region_den_coef",
                 "region_den_bias", "keys", "index", "counts"):
        np.testing.assert_array_equal(getattr(t, name), getattr(case.terms, name))


def test_tropical_split(case):
    t = case.terms
    num = np.einsum("nkd,nd->nk", t.num_coef, case.x64) + t.num_bias
    den = np.einsum("nd,nd->n", t.den_coef, case.x64) + t.den_bias
    scale = 1 + np.abs(num).max()
    assert np.max(np.abs(num - den[:, None] - case.logits)) <= 1e-12 * scale
    assert np.max(np.abs(t.num_coef - t.den_coef[:, None, :] - t.coef)) <= 1e-12 * scale
    assert (t.region_num_coef >= 0).all() and (t.region_den_coef >= 0).all()
    # num and den are convex (max-affine): every region's term is a minorant of them everywhere
    for r in range(t.num_regions):
        other = np.einsum("kd,nd->nk", t.region_num_coef[r], case.x64) + t.region_num_bias[r]
        assert (other <= num + 1e-12 * scale).all()
        assert (case.x64 @ t.region_den_coef[r] + t.region_den_bias[r] <= den + 1e-12 * scale).all()
    # the shared denominator: argmax of the numerators = argmax of the logits
    assert (np.argmax(num, 1) == np.argmax(case.logits, 1)).all()


# --- the tropical classifier -------------------------------------------------------------------------
def brute_force_predict(clf, x):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    out = np.empty(len(x), np.int64)
    for n in range(len(x)):
        best, label = -np.inf, -1
        for k in range(clf.num_classes):
            mine = clf.classes == k
            if mine.any():
                top = np.max(clf.coef[mine] @ x[n] + clf.bias[mine])
                if top > best:
                    best, label = top, k
        out[n] = label
    return out


def test_classifier_against_brute_force(case):
    net = case.net
    clf = TropicalClassifier.fit(net, case.x, allow_missing_classes=True)
    pred = np.argmax(case.logits, 1)
    assert clf.num_terms == len(set(zip(code_tuples(case.bits), pred.tolist())))
    assert (clf.coef >= 0).all()
    xte = np.random.default_rng(1).normal(size=(40, *net.input_shape)).astype(np.float32)
    assert (clf.predict(xte) == brute_force_predict(clf, xte)).all()
    assert (clf.predict(xte.reshape(40, -1)) == clf.predict(xte)).all()
    # at a training input the classifier agrees with the net (clear logit gaps here)
    srt = np.sort(case.logits, 1)
    clear = srt[:, -1] - srt[:, -2] > 1e-6 if net.output_dim > 1 else np.ones(len(case.x), bool)
    assert clear.mean() > 0.9
    assert (clf.predict(case.x)[clear] == pred[clear]).all()
    assert clf.agreement(net, case.x[clear]) == 1.0 == clf.agreement_with_net(case.flat[clear])
    y = np.random.default_rng(2).integers(0, net.output_dim, size=40)
    assert clf.accuracy(xte, y) == np.mean(brute_force_predict(clf, xte) == y)
    agree = np.mean(brute_force_predict(clf, xte) == np.argmax(oracle.forward(net.layers, xte.astype(np.float64))
                                                              .reshape(40, -1), 1))
    assert clf.agreement_with_net(xte) == agree


# --- region statistics ----------------------------------------------------------------------------
def bits_per_unit(layer):
    """One unit's bits, from the layer's settings (the code convention of partax.layers)."""
    if isinstance(layer, MaxPool):
        return int(math.ceil(math.log2(math.prod(layer.window))))
    return 2 if isinstance(layer, HardTanh) else 1


def site_layers(layers):
    out = []
    for layer in layers:
        if isinstance(layer, Residual):
            out += site_layers(layer.body)
        elif isinstance(layer, (LeakyReLU, HardTanh)) or (isinstance(layer, MaxPool) and math.prod(layer.window) > 1):
            out.append(layer)
    return out


def test_shared_codes_and_region_statistics(case):
    net = case.net
    rng = np.random.default_rng(3)
    xtr = case.x
    fresh = rng.normal(size=(300, *net.input_shape)).astype(np.float32)
    _, margin = oracle.codes(net.layers, fresh)
    xte = np.concatenate([xtr[::4] + np.float32(1e-6) * rng.normal(size=xtr[::4].shape).astype(np.float32),
                          fresh[margin > 1e-4][:30]])
    btr, _ = oracle.codes(net.layers, xtr)
    bte, mte = oracle.codes(net.layers, xte)
    assert mte.min() > 1e-5
    want = []
    for l in range(1, net.num_hidden + 1):
        seen = set(code_tuples(btr, l))
        want.append(np.mean([c in seen for c in code_tuples(bte, l)]))
    shared = tropical.shared_code_fractions(net, xtr, xte)
    np.testing.assert_array_equal(shared, np.array(want))
    assert 0 < shared[-1] < 1
    ytr, yte = rng.integers(0, net.output_dim, len(xtr)), rng.integers(0, net.output_dim, len(xte))
    st = tropical.region_statistics(net, xtr, xte, ytr, yte)
    clf = TropicalClassifier.fit(net, xtr, allow_missing_classes=True)
    pred = brute_force_predict(clf, xte)
    net_pred = np.argmax(oracle.forward(net.layers, xte.astype(np.float64)).reshape(len(xte), -1), 1)
    assert st.accuracy_test == np.mean(pred == yte) and st.agreement_test == np.mean(pred == net_pred)
    assert st.net_accuracy_test == np.mean(net_pred == yte)
    assert st.shared_full == shared[-1] and st.terms == clf.num_terms
    assert st.train_regions == len(set(code_tuples(btr))) and st.test_regions == len(set(code_tuples(bte)))
    # unit agreement with the chosen term's training region: units of the oracle's codes
    # (the classifier's choice must attain the brute-force maximum; two regions' terms can tie to
    # rounding, so a choice within 1e-12 of it is one of the maximisers)
    x64 = xte.reshape(len(xte), -1).astype(np.float64)
    _, _, chosen = clf.decide(xte)
    for n in range(len(xte)):
        sc = clf.coef @ x64[n] + clf.bias
        cand = np.flatnonzero(clf.classes == pred[n])
        assert chosen[n] in cand and sc[chosen[n]] >= sc[cand].max() - 1e-12 * (1 + abs(sc[cand].max()))
    bex, _ = oracle.codes(net.layers, xtr[clf.exemplars[chosen]])
    sites = site_layers(net.layers)
    assert len(sites) == net.num_hidden
    for l, layer in enumerate(sites):
        per = bits_per_unit(layer)
        same = (bte[l] == bex[l]).reshape(len(xte), -1, per).all(-1)
        assert st.unit_agreement[l] == pytest.approx(same.mean(), abs=1e-15)


# --- bad input and refusals ---------------------------------------------------------------------
def test_bad_input_and_refusals():
    case = get_case("every")
    net, x = case.net, case.x[:5]
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 6, 6, 1\) \(channels last\) or the flattened \(N, 36\)"):
        linear_terms(net, x[:, :5])
    with pytest.raises(ValueError, match="channels first"):
        linear_terms(net, np.zeros((2, 1, 6, 6), np.float32))
    with pytest.raises(ValueError, match="x: expected finite"):
        linear_terms(net, np.full((2, 36), np.nan, np.float32))
    with pytest.raises(ValueError, match="x_train: expected at least one"):
        TropicalClassifier.fit(net, x[:0])
    assert len(linear_terms(net, x[:0])) == 0 and linear_terms(net, x[:0]).region_num_coef.shape == (0, 4, 36)
    clf = TropicalClassifier.fit(net, case.x, allow_missing_classes=True)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 6, 6, 1\)"):
        clf.predict(np.zeros((2, 35), np.float32))
    with pytest.raises(ValueError, match=r"class \[\d"):
        TropicalClassifier.fit(net, x[:1])  # one input: one class, the others absent
    # a leaky slope outside [0, 1) (here 1.5, inside a residual block): no split, the maps still work
    rng = np.random.default_rng(4)
    steep = sequential([Conv(_f32(rng, 3, 1, 2), _f32(rng, 2)),
                        Residual((Conv(_f32(rng, 1, 2, 2), _f32(rng, 2)), LeakyReLU(1.5))),
                        Flatten(), Dense(_f32(rng, 8, 2), _f32(rng, 2))], (6, 1))
    xs = rng.normal(size=(12, 6, 1)).astype(np.float32)
    with pytest.raises(ValueError, match=r"alpha in \[0, 1\).*LeakyReLU\(1\.5\).*split=False"):
        linear_terms(steep, xs)
    with pytest.raises(ValueError, match="split=False"):
        TropicalClassifier.fit(steep, xs, allow_missing_classes=True)
    bits, margin = oracle.codes(steep.layers, xs)
    A, c, _ = oracle.local_map(steep.layers, steep.input_shape, bits)
    ok = margin > 1e-3
    assert ok.sum() >= 6
    u = linear_terms(steep, xs, split=False, batch_size=3)  # three regions per kernel call
    assert u.region_num_coef is None and u.num_regions > 3
    np.testing.assert_allclose(u.coef[ok], A[ok], rtol=0, atol=1e-12)
    np.testing.assert_allclose(u.bias[ok], c[ok], rtol=0, atol=1e-12)
    # tangent sensitivity has no conv formula: refused with the reason
    with pytest.raises(TypeError, match=r"tangent_sensitivity\(\) is defined for MLPs only.*Conv"):
        tropical.tangent_sensitivity(net, x)
    with pytest.raises(TypeError, match=r"tangent_sensitivity_table\(\) is defined for MLPs only"):
        tropical.tangent_sensitivity_table(net, None, x)


def test_regions_by_exact_key_detect_collisions(weak_keys):
    """General nets' terms are deduplicated by the exact key too: colliding keys raise."""
    rng = np.random.default_rng(5)
    net = conv_pool(rng)
    x = rng.normal(size=(64, 6, 6, 1)).astype(np.float32)
    with pytest.raises(partax.HashCollisionError):
        linear_terms(net, x)
