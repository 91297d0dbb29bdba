"""Tests for partax.train.fit: toy convergence and one step against hand-computed updates."""

import jax
import numpy as np
import optax
import pytest

import partax
from partax.nets import Net
from partax.train import fit


def _np_grads(arrays, x, y):
    """Hand backprop (float64 NumPy) of mean softmax cross-entropy for a 1-hidden-layer ReLU net."""
    W1, b1, W2, b2 = [np.asarray(a, np.float64) for a in arrays]
    z = x @ W1 + b1
    h = np.maximum(z, 0)
    logits = h @ W2 + b2
    logits = logits - logits.max(1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    n = x.shape[0]
    loss = -np.log(p[np.arange(n), y]).mean()
    g = p.copy()
    g[np.arange(n), y] -= 1
    g /= n
    gW2 = h.T @ g
    gb2 = g.sum(0)
    gh = g @ W2.T
    gz = gh * (z > 0)
    return loss, [x.T @ gz, gz.sum(0), gW2, gb2]


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
    return x, y


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_one_step_matches_hand_computation(opt_name):
    x, y = _toy()
    net = partax.mlp(jax.random.key(3), [3, 5, 2], bias_std=0.1)
    lr = 0.1
    opt = optax.sgd(lr) if opt_name == "sgd" else optax.adam(lr)
    # one full-batch epoch = exactly one step; the mean gradient does not depend on the shuffle
    new, hist = fit(net, x, y, opt, epochs=1, batch_size=len(x), key=jax.random.key(0))
    arrays = [np.asarray(a, np.float64) for a in net.arrays()]
    loss, grads = _np_grads(arrays, x.astype(np.float64), y)
    if opt_name == "sgd":
        expect = [a - lr * g for a, g in zip(arrays, grads)]
    else:  # Adam step 1: m = (1-b1) g, v = (1-b2) g^2, bias-corrected -> g / (|g| + eps)
        b1, b2, eps = 0.9, 0.999, 1e-8
        expect = []
        for a, g in zip(arrays, grads):
            m_hat = (1 - b1) * g / (1 - b1)
            v_hat = (1 - b2) * g * g / (1 - b2)
            expect.append(a - lr * m_hat / (np.sqrt(v_hat) + eps))
    for got, exp in zip(new.arrays(), expect):
        np.testing.assert_allclose(np.asarray(got, np.float64), exp, rtol=1e-4, atol=1e-5)
    assert hist["loss"][0] == pytest.approx(loss, rel=1e-5)


def test_loss_decreases_on_separable_toy():
    x, y = _toy(200, 1)
    net = partax.mlp(jax.random.key(0), [3, 8, 2])
    seen = []
    net2, hist = fit(net, x, y, optax.adam(1e-2), epochs=60, batch_size=32, key=jax.random.key(1),
                     callbacks=[lambda e, n: seen.append((e, isinstance(n, Net)))])
    assert seen == [(e, True) for e in range(61)]
    assert hist["loss"].shape == (60,) and hist["accuracy"].shape == (60,)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["accuracy"][-1] > 0.95
    logits = np.asarray(net2(x))
    assert (logits.argmax(1) == y).mean() > 0.95


def test_partial_last_batch_and_stacked():
    x, y = _toy(50, 2)
    nets = partax.stack_nets([partax.mlp(jax.random.key(s), [3, 4, 2]) for s in range(3)])
    out, hist = fit(nets, x, y, optax.adam(1e-2), epochs=5, batch_size=16, key=jax.random.key(0))
    assert out.stack_shape == (3,) and hist["loss"].shape == (5, 3)
    # each member equals training it alone?  members use different shuffles, so compare loss drop
    assert np.all(hist["loss"][-1] < hist["loss"][0])
    # one full batch on a stack = one full-batch step per member, independent of shuffles
    out1, _ = fit(nets, x, y, optax.sgd(0.1), epochs=1, batch_size=50, key=jax.random.key(0))
    for s in range(3):
        single, _ = fit(nets[s], x, y, optax.sgd(0.1), epochs=1, batch_size=50, key=jax.random.key(9))
        for a, b in zip(out1[s].arrays(), single.arrays()):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_fit_validation():
    x, y = _toy(10)
    net = partax.mlp(jax.random.key(0), [3, 4, 2])
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="x"):
        fit(net, x[:, :2], y, optax.sgd(0.1), epochs=1, batch_size=4, key=k)
    with pytest.raises(ValueError, match="y"):
        fit(net, x, y + 5, optax.sgd(0.1), epochs=1, batch_size=4, key=k)
    with pytest.raises(ValueError, match="batch_size"):
        fit(net, x, y, optax.sgd(0.1), epochs=1, batch_size=0, key=k)
    with pytest.raises(ValueError, match="epochs"):
        fit(net, x, y, optax.sgd(0.1), epochs=-1, batch_size=4, key=k)
    net0, h = fit(net, x, y, optax.sgd(0.1), epochs=0, batch_size=4, key=k)
    assert h["loss"].shape == (0,)


def test_fit_key_optional():
    # key=None is documented as jax.random.key(0): same run as passing it, and an int seed works
    x, y = _toy(40)
    net = partax.mlp(jax.random.key(0), [3, 6, 2])
    a, ha = fit(net, x, y, optax.sgd(0.1), epochs=3, batch_size=8)
    b, hb = fit(net, x, y, optax.sgd(0.1), epochs=3, batch_size=8, key=jax.random.key(0))
    c, hc = fit(net, x, y, optax.sgd(0.1), epochs=3, batch_size=8, key=0)
    d, hd = fit(net, x, y, optax.sgd(0.1), epochs=3, batch_size=8, key=jax.random.key(5))
    assert ha["loss"].shape == (3,) and np.all(np.isfinite(ha["loss"]))
    np.testing.assert_array_equal(ha["loss"], hb["loss"])
    np.testing.assert_array_equal(ha["loss"], hc["loss"])
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb))
    assert not np.array_equal(ha["loss"], hd["loss"])  # the key does drive the shuffling
    with pytest.raises(TypeError, match="key"):
        fit(net, x, y, optax.sgd(0.1), epochs=1, batch_size=8, key="seed")
