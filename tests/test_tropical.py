"""partax.tropical against independent oracles.

Oracles: a NumPy float64 forward pass (codes, logits), ``jax.jacfwd`` of a float64 copy of the
net (written here, not partax's linearisation), ``jax.jacfwd(jax.jacrev(...))`` for tangent
sensitivity, brute-force NumPy loops for the tropical classifier and ``set``s of code tuples
for the shared-region fractions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import partax
from partax import tropical
from partax.tropical import TropicalClassifier, linear_terms, tangent_sensitivity, tangent_sensitivity_table


# --- oracles -------------------------------------------------------------------------------------
def np_params(net):
    return [np.asarray(W, np.float64) for W in net.weights], [np.asarray(b, np.float64) for b in net.biases]


def np_forward(net, x):
    """``(logits, [bool codes per hidden layer])`` in NumPy float64."""
    Ws, bs = np_params(net)
    h = np.asarray(x, np.float64)
    bits = []
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = h @ W + b
        bits.append(z > 0)
        h = np.where(z > 0, z, net.alpha * z)
    return h @ Ws[-1] + bs[-1], bits


def f64(theta, x, alpha):
    """The float64 net as a function of its parameters (a list of (W, b)) and one input."""
    h = x
    for W, b in theta[:-1]:
        z = h @ W + b
        h = jnp.where(z > 0, z, alpha * z)
    W, b = theta[-1]
    return h @ W + b


def theta64(net):
    Ws, bs = np_params(net)
    return [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(Ws, bs)]


def jac_oracle(net, x):
    """``jax.jacfwd`` of the float64 net at each point: ``[N, d_out, d]`` and the logits."""
    with jax.enable_x64(True):
        th = theta64(net)
        xs = jnp.asarray(x, jnp.float64)
        J = jax.jit(jax.vmap(jax.jacfwd(lambda p: f64(th, p, net.alpha))))(xs)
        y = jax.jit(jax.vmap(lambda p: f64(th, p, net.alpha)))(xs)
        return np.asarray(J), np.asarray(y)


def tangent_oracle(net, x, output=None):
    """Per point: Frobenius norms of ``jacfwd(jacrev(f, θ), x)``: total, per weight, max |bias block|."""
    with jax.enable_x64(True):
        th = theta64(net)

        def g(p):
            f = lambda t: f64(t, p, net.alpha) if output is None else f64(t, p, net.alpha)[output]
            return jax.jacrev(f)(th)

        T = jax.jit(jax.vmap(jax.jacfwd(g)))(jnp.asarray(x, jnp.float64))
        wn = np.stack([np.sqrt(np.sum(np.asarray(W) ** 2, axis=tuple(range(1, W.ndim)))) for W, _ in T], axis=1)
        bmax = max(float(np.max(np.abs(np.asarray(b)))) for _, b in T)
        return np.sqrt(np.sum(wn ** 2, axis=1)), wn, bmax


def code_tuples(bits, upto=None):
    upto = len(bits) if upto is None else upto
    cat = np.concatenate(bits[:upto], axis=1)
    return [tuple(r) for r in cat.tolist()]


def same_code_as_partax(net, x):
    """Points whose float64 code equals partax's (net dtype) code: where float64 oracles apply."""
    _, bits = np_forward(net, x)
    c = partax.codes(net, np.asarray(x, np.float32))
    ok = np.ones(len(x), bool)
    for l, b in enumerate(bits, start=1):
        ok &= (c.bits(l) == b).all(axis=1)
    return ok


def clustered(rng, d, centers, per, radius):
    """Points around a few centres: many share a region."""
    c = rng.normal(size=(centers, d))
    return (np.repeat(c, per, axis=0) + radius * rng.normal(size=(centers * per, d))).astype(np.float32)


@pytest.fixture(scope="module")
def net():
    return partax.mlp(jax.random.key(3), [5, 12, 10, 8, 4], bias_std=0.2)


@pytest.fixture(scope="module")
def leaky():
    base = partax.mlp(jax.random.key(4), [4, 9, 7, 3], bias_std=0.2)
    return partax.Net.from_arrays(base.arrays(), activation=("leaky_relu", 0.1))


# --- linear terms --------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["net", pytest.param("leaky", marks=pytest.mark.slow)])
def test_terms_equal_jacfwd_and_logits(which, request):
    net = request.getfixturevalue(which)
    rng = np.random.default_rng(0)
    x = np.concatenate([clustered(rng, net.input_dim, 20, 10, 1e-3), rng.normal(size=(100, net.input_dim)).astype(np.float32)])
    t = linear_terms(net, x)
    ok = same_code_as_partax(net, x)
    assert ok.mean() > 0.95
    J, y = jac_oracle(net, x)
    x64 = x.astype(np.float64)
    coef, bias = t.coef, t.bias
    err = np.max(np.abs(coef[ok] - J[ok]))
    assert err <= 1e-12, err
    out = np.einsum("nkd,nd->nk", coef, x64) + bias
    assert np.max(np.abs(out[ok] - y[ok])) <= 1e-12
    # reported in float32 too: the float32 net's own jacfwd, to float32 rounding
    J32 = np.asarray(jax.jit(jax.vmap(jax.jacfwd(lambda p: net(p[None])[0])))(jnp.asarray(x)))
    assert np.max(np.abs(coef[ok] - J32[ok])) <= 1e-4
    assert np.max(np.abs(out - np.asarray(net(x), np.float64))) <= 1e-4
    # per region, not per input: repeated inputs share a region; regions = distinct NumPy codes
    assert ok.all()  # (the clustered points are far enough from boundaries for float32)
    assert t.num_regions == len(set(code_tuples(np_forward(net, x)[1])))
    first = {}
    for n, c in enumerate(code_tuples(np_forward(net, x)[1])):  # same code <=> same region
        assert t.index[n] == t.index[first.setdefault(c, n)]
    assert t.num_regions < len(x) and t.counts.sum() == len(x)
    assert (t.keys[t.index] == partax.region_ids(net, x, "prefix")[:, -1]).all()


@pytest.mark.parametrize("which", ["net", "leaky"])
def test_tropical_split(which, request):
    net = request.getfixturevalue(which)
    rng = np.random.default_rng(1)
    x = np.concatenate([clustered(rng, net.input_dim, 10, 5, 1e-3), rng.normal(size=(60, net.input_dim)).astype(np.float32)])
    t = linear_terms(net, x)
    ok = same_code_as_partax(net, x)
    y, _ = np_forward(net, x)
    x64 = x.astype(np.float64)
    num = np.einsum("nkd,nd->nk", t.num_coef, x64) + t.num_bias
    den = np.einsum("nd,nd->n", t.den_coef, x64) + t.den_bias
    scale = 1 + np.abs(num).max()
    assert np.max(np.abs((num - den[:, None])[ok] - y[ok])) <= 1e-12 * scale
    # num_coef - den_coef is the logit's coefficient; coefficients are non-negative
    assert np.max(np.abs(t.num_coef - t.den_coef[:, None, :] - t.coef)) <= 1e-12 * scale
    assert (t.region_num_coef >= 0).all() and (t.region_den_coef >= 0).all()
    # convexity: every region's numerator term is a minorant of the numerator at every point
    for r in range(t.num_regions):
        other = np.einsum("kd,nd->nk", t.region_num_coef[r], x64) + t.region_num_bias[r]
        assert (other[ok] <= num[ok] + 1e-12 * scale).all()
    # the denominator is shared: argmax of the logits = argmax of the numerators
    assert (np.argmax(num, 1) == np.argmax(num - den[:, None], 1)).all()


def test_terms_without_split_and_bad_input(net):
    x = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32)
    t = linear_terms(net, x, split=False, batch_size=3)
    assert t.region_num_coef is None and np.allclose(t.coef, linear_terms(net, x).coef, atol=0, rtol=0)
    with pytest.raises(ValueError, match="split=False"):
        t.num_coef
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 5\)"):
        linear_terms(net, np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="x: expected finite"):
        linear_terms(net, np.full((2, 5), np.nan, np.float32))
    with pytest.raises(TypeError, match="net: expected a partax.Net"):
        linear_terms("net", x)
    with pytest.raises(ValueError, match="unstacked"):
        linear_terms(partax.stack_nets([net, net]), x)
    with pytest.raises(ValueError, match="batch_size"):
        linear_terms(net, x, batch_size=0)
    bad = partax.Net.from_arrays(net.arrays(), activation=("leaky_relu", 1.5))
    with pytest.raises(ValueError, match=r"alpha in \[0, 1\)"):
        linear_terms(bad, x)
    assert linear_terms(bad, x, split=False).num_regions >= 1
    assert len(linear_terms(net, np.zeros((0, 5), np.float32))) == 0


# --- the tropical classifier -------------------------------------------------------------------
def brute_force_predict(clf, x):
    x = np.asarray(x, np.float64)
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


def test_classifier_against_brute_force(net):
    rng = np.random.default_rng(5)
    xtr = np.concatenate([clustered(rng, 5, 15, 8, 1e-3), rng.normal(size=(80, 5)).astype(np.float32)])
    xte = rng.normal(size=(60, 5)).astype(np.float32)
    clf = TropicalClassifier.fit(net, xtr, allow_missing_classes=True)
    assert (clf.predict(xte) == brute_force_predict(clf, xte)).all()
    assert (clf.predict(xtr) == brute_force_predict(clf, xtr)).all()
    # terms: one per (region, predicted class) pair of the training inputs
    logits, bits = np_forward(net, xtr)
    pred = np.argmax(np.asarray(net(xtr)), 1)
    assert clf.num_terms == len(set(zip(code_tuples(bits), pred.tolist())))
    # at a training input the classifier agrees with the net (away from near ties)
    srt = np.sort(logits, 1)
    clear = srt[:, -1] - srt[:, -2] > 1e-4
    assert clear.mean() > 0.9
    assert (clf.predict(xtr)[clear] == pred[clear]).all()
    assert clf.agreement(net, xtr[clear]) == 1.0 == clf.agreement_with_net(xtr[clear])
    y = rng.integers(0, 4, size=len(xte))
    assert clf.accuracy(xte, y) == np.mean(brute_force_predict(clf, xte) == y)
    # the chosen term attains the winning score
    scores, labels, term = clf.decide(xte)
    assert (clf.classes[term] == labels).all()
    assert np.allclose(np.einsum("nd,nd->n", clf.coef[term], xte.astype(np.float64)) + clf.bias[term],
                       scores[np.arange(len(xte)), labels], rtol=0, atol=1e-12)


def test_classifier_with_labels_and_missing_classes(net):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.zeros(40, np.int64)
    y[:20] = 2
    with pytest.raises(ValueError, match=r"class \[1, 3\]"):
        TropicalClassifier.fit(net, x, y)
    clf = TropicalClassifier.fit(net, x, y, allow_missing_classes=True)
    assert clf.missing_classes == (1, 3)
    scores, labels, _ = clf.decide(x)
    assert np.isinf(scores[:, [1, 3]]).all() and set(labels.tolist()) <= {0, 2}
    assert (labels == brute_force_predict(clf, x)).all()
    with pytest.raises(ValueError, match="x_train: expected at least one"):
        TropicalClassifier.fit(net, np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="labels"):
        TropicalClassifier.fit(net, x, np.full(40, 7))
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 5\)"):
        clf.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="y"):
        clf.accuracy(x, y[:3])


# --- region statistics ---------------------------------------------------------------------------
def test_region_statistics_against_sets(net):
    rng = np.random.default_rng(7)
    xtr = np.concatenate([clustered(rng, 5, 20, 5, 1e-3), rng.normal(size=(50, 5)).astype(np.float32)])
    xte = np.concatenate([xtr[::3] + np.float32(1e-5) * rng.normal(size=(50, 5)).astype(np.float32),
                          rng.normal(size=(50, 5)).astype(np.float32)])
    assert same_code_as_partax(net, xtr).all() and same_code_as_partax(net, xte).all()
    _, btr = np_forward(net, xtr)
    _, bte = np_forward(net, xte)
    want = []
    for l in range(1, net.num_hidden + 1):
        seen = set(code_tuples(btr, l))
        want.append(np.mean([c in seen for c in code_tuples(bte, l)]))
    shared = tropical.shared_code_fractions(net, xtr, xte)
    assert np.array_equal(shared, np.array(want))
    assert 0 < shared[-1] < 1 and (np.diff(shared) <= 0).all()
    ytr, yte = rng.integers(0, 4, len(xtr)), rng.integers(0, 4, len(xte))
    st = tropical.region_statistics(net, xtr, xte, ytr, yte)
    clf = TropicalClassifier.fit(net, xtr, allow_missing_classes=True)
    pred = brute_force_predict(clf, xte)
    assert st.accuracy_test == np.mean(pred == yte)
    assert st.agreement_test == np.mean(pred == np.argmax(np.asarray(net(xte)), 1))
    assert st.shared_full == shared[-1] and st.terms == clf.num_terms
    assert st.train_regions == len(set(code_tuples(btr))) and st.test_regions == len(set(code_tuples(bte)))
    # unit agreement with the chosen term's training region, by brute force
    x64 = xte.astype(np.float64)
    chosen = []
    for n in range(len(xte)):
        sc = clf.coef @ x64[n] + clf.bias
        cand = np.flatnonzero(clf.classes == pred[n])
        chosen.append(cand[np.argmax(sc[cand])])
    _, bex = np_forward(net, xtr[clf.exemplars[chosen]])
    for l in range(net.num_hidden):
        assert st.unit_agreement[l] == pytest.approx(np.mean(bte[l] == bex[l]), abs=1e-15)
    with pytest.raises(ValueError, match="x_train, x_test"):
        tropical.shared_code_fractions(net, xtr, xte[:0])


# --- tangent sensitivity -------------------------------------------------------------------------
def neighbours(net, a, b, iters=60):
    """Two points just either side of the first region boundary on the segment a -> b."""
    ca = code_tuples(np_forward(net, a[None])[1])[0]
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if code_tuples(np_forward(net, (a + mid * (b - a))[None])[1])[0] == ca:
            lo = mid
        else:
            hi = mid
    return a + (lo - 1e-6) * (b - a), a + (hi + 1e-6) * (b - a)


@pytest.mark.parametrize("which,output", [("net", None), ("net", 2), ("leaky", None)])
def test_tangent_against_jacfwd_jacrev(which, output, request):
    net = request.getfixturevalue(which)
    rng = np.random.default_rng(8)
    d = net.input_dim
    x = np.concatenate([clustered(rng, d, 6, 5, 1e-3), rng.normal(size=(20, d)).astype(np.float32)])
    ts = tangent_sensitivity(net, x, output=output)
    ok = same_code_as_partax(net, x)
    norm, wn, bmax = tangent_oracle(net, x, output)
    assert bmax == 0.0  # bias blocks vanish: the Jacobian does not depend on biases
    assert np.max(np.abs(ts.norm[ok] - norm[ok]) / norm[ok]) <= 1e-12
    assert np.max(np.abs(ts.layers[ok] - wn[ok]) / norm[ok, None]) <= 1e-12
    assert ts.mean == pytest.approx(np.mean(ts.norm), rel=1e-14)
    assert ts.region_norm.shape[0] < len(x)
    # two points of one region: equal; neighbouring regions: different
    a, b = x[0].astype(np.float64), x[-1].astype(np.float64)
    p, q = neighbours(net, a, b)
    pair = np.stack([a, a + 1e-7 * rng.normal(size=d), p, q])  # float64 for the oracle
    _, bits = np_forward(net, pair)
    codes = code_tuples(bits)
    assert codes[0] == codes[1] and codes[2] != codes[3]
    assert sum(u != v for u, v in zip(codes[2], codes[3])) == 1
    n_or, _, _ = tangent_oracle(net, pair, output)
    assert n_or[0] == pytest.approx(n_or[1], rel=1e-12) and abs(n_or[2] - n_or[3]) > 1e-6 * n_or[2]
    pair32 = pair.astype(np.float32)
    assert same_code_as_partax(net, pair32).all()
    n32, _, _ = tangent_oracle(net, pair32, output)
    got = tangent_sensitivity(net, pair32, output=output)
    assert np.allclose(got.norm, n32, rtol=1e-12, atol=0) and got.region_norm.shape == (2,)  # a, its twin and p share a region


def test_tangent_table(net):
    rng = np.random.default_rng(9)
    x = np.concatenate([clustered(rng, 5, 10, 6, 1e-3), rng.normal(size=(30, 5)).astype(np.float32)])
    part = partax.partition(net, x, scopes=("prefix",), progress=False)
    table = part.table("prefix", net.num_hidden)
    s = tangent_sensitivity_table(net, table, x)
    ts = tangent_sensitivity(net, x)
    norm, wn, _ = tangent_oracle(net, x)
    assert s.mean == pytest.approx(np.mean(norm), rel=1e-12) and s.mean == pytest.approx(ts.mean, rel=1e-13)
    assert np.allclose(s.mean_layers, wn.mean(0), rtol=1e-12, atol=0)
    assert s.rms == pytest.approx(np.sqrt(np.mean(norm ** 2)), rel=1e-12)
    assert s.regions == len(table) < len(x)
    with pytest.raises(ValueError, match="full-code keys"):
        tangent_sensitivity_table(net, part.table("prefix", 1), x)
    with pytest.raises(ValueError, match="exemplars"):
        tangent_sensitivity_table(net, table, x[:2])
    with pytest.raises(TypeError, match="RegionTable"):
        tangent_sensitivity_table(net, "t", x)
    with pytest.raises(ValueError, match="output"):
        tangent_sensitivity(net, x, output=4)
    with pytest.raises(ValueError, match="x: expected at least one"):
        tangent_sensitivity(net, x[:0])


def test_tracer_records_tangent_sensitivity(tmp_path, net):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 4, 40)
    tracer = partax.Tracer(x, y, every=[0, 3], scopes=("prefix",), out=tmp_path,
                           probes={"tangent": tropical.tangent_probe()})
    tracer(0, net)
    tracer(1, net)  # not in the schedule
    tr = partax.load_trace(tmp_path)
    sel = tr["scope"] == "tangent"
    assert sorted(tr["layer"][sel].tolist()) == list(range(net.num_hidden + 2))
    norm, wn, _ = tangent_oracle(net, x)
    got = dict(zip(tr["layer"][sel].tolist(), tr["mean"][sel].tolist()))
    assert got[0] == pytest.approx(norm.mean(), rel=1e-12)
    assert [got[l] for l in range(1, net.num_hidden + 2)] == pytest.approx(wn.mean(0).tolist(), rel=1e-12)
    assert set(tr["step"].tolist()) == {0} and (tr["scope"] == "prefix").sum() == net.num_hidden
    only = partax.Tracer(x, scopes=(), probes={"tangent": tropical.tangent_probe(output=1)})
    only(0, net)
    assert {r["scope"] for r in only.records} == {"tangent"}
    with pytest.raises(TypeError, match="probes"):
        partax.Tracer(x, probes=[tropical.tangent_probe()])
    with pytest.raises(ValueError, match="probes: names"):
        partax.Tracer(x, probes={"prefix": tropical.tangent_probe()})


def test_regions_by_exact_key_detect_collisions(net, weak_keys):
    """Terms are deduplicated by the exact partax key: with 4 possible keys, distinct codes
    sharing one raise instead of merging two regions' terms."""
    x = np.random.default_rng(11).normal(size=(64, 5)).astype(np.float32)
    with pytest.raises(partax.HashCollisionError):
        linear_terms(net, x)
    with pytest.raises(partax.HashCollisionError):
        TropicalClassifier.fit(net, x, allow_missing_classes=True)
