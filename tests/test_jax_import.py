"""from_jax on real modules (Flax linen / nnx, Equinox, Haiku, plain JAX), against their own forward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from partax import layers as L
from partax.jax_import import from_jax, input_axes

# the max abs differences, printed with -s (the report quotes them)
DIFFS = {}


def _compare(name, fn, x_shape, *, batched=True, n=32, seed=0, tol=2e-5, axes=None):
    """Imports ``fn`` and compares the net with ``fn`` on random normal inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *x_shape)).astype(np.float32)
    ex = x[:3] if batched else x[0]
    net = from_jax(fn, ex, batched=batched)
    ref = np.asarray(jax.jit(fn if batched else jax.vmap(fn))(x), np.float64).reshape(n, -1)
    axes = tuple(range(x.ndim)) if axes is None else axes
    got = np.asarray(jax.jit(lambda v: net(v))(np.transpose(x, axes).reshape(n, *net.input_shape)), np.float64)
    got = got.reshape(n, -1)
    err = float(np.max(np.abs(ref - got)))
    DIFFS[name] = err
    print(f"{name}: max abs diff {err:.3g} (outputs up to {np.max(np.abs(ref)):.3g})")
    assert ref.shape == got.shape
    assert err <= tol * (1 + np.max(np.abs(ref))), (name, err)
    return net


def _kinds(layers):
    out = []
    for layer in layers:
        out.append(type(layer).__name__)
        if isinstance(layer, L.Residual):
            out += ["[", *_kinds(layer.body), "]"]
    return out


# --- Flax linen -------------------------------------------------------------------------------
def _linen_models():
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        act: object = nn.relu

        @nn.compact
        def __call__(self, x):
            x = self.act(nn.Dense(16)(x))
            x = self.act(nn.Dense(8)(x))
            return nn.Dense(3)(x)

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), padding="SAME")(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.relu(nn.Conv(6, (3, 3), strides=(2, 2), padding=((1, 0), (0, 1)), kernel_dilation=1)(x))
            x = nn.avg_pool(x, (2, 2), (1, 1), padding="SAME")
            x = x.reshape(x.shape[0], -1)
            return nn.Dense(5)(x)

    class ResBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Conv(4, (3, 3))(x)
            h = nn.relu(nn.BatchNorm(use_running_average=True)(h))
            r = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(h)))
            r = nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3))(r))
            h = nn.relu(h + r)
            s = nn.Conv(6, (1, 1), strides=(2, 2))(h)  # a projection shortcut
            r = nn.Conv(6, (3, 3), strides=(2, 2))(nn.relu(nn.Conv(4, (3, 3))(h)))
            h = nn.leaky_relu(s + r, 0.1)
            h = jnp.mean(h, axis=(1, 2))  # global average pooling
            return nn.Dense(3)(h)

    class Conv1D(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.hard_tanh(nn.Conv(3, (3,), kernel_dilation=(2,), feature_group_count=1)(x))
            x = jax.nn.relu6(nn.Conv(6, (2,), feature_group_count=3, padding="VALID")(x))
            return nn.Dense(2)(x.reshape(x.shape[0], -1))

    return MLP, CNN, ResBN, Conv1D


def _fill(shapes, seed=0):
    """Random parameters for a tree of shapes (no JAX compilation): kernels ~ N(0, 1/fan_in), biases
    small, batch-norm statistics non-trivial (variances in [0.5, 2])."""
    rng = np.random.default_rng(seed)

    def leaf(path, s):
        name = jax.tree_util.keystr(path).lower()
        if "var" in name:
            a = rng.uniform(0.5, 2.0, s.shape)
        elif "mean" in name or "average" in name:
            a = rng.normal(size=s.shape) * 0.3
        elif "scale" in name:
            a = rng.uniform(0.5, 1.5, s.shape)
        elif "bias" in name or "offset" in name or len(s.shape) <= 1 or "counter" in name:
            a = rng.normal(size=s.shape) * 0.1
        else:
            a = rng.normal(size=s.shape) / np.sqrt(max(1, int(np.prod(s.shape[:-1]))))
        return jnp.asarray(a, s.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def _init_linen(model, shape, key=0):
    x = jnp.ones((2, *shape))
    variables = _fill(jax.eval_shape(model.init, jax.random.key(key), x), key)
    return lambda x: model.apply(variables, x)


@pytest.mark.parametrize("which,shape,kinds", [
    ("MLP", (5,), ["Dense", "ReLU", "Dense", "ReLU", "Dense"]),
    ("CNN", (8, 8, 2), ["Conv", "ReLU", "MaxPool", "Conv", "ReLU", "AvgPool", "Flatten", "Dense"]),
    pytest.param("ResBN", (8, 8, 3), None, marks=pytest.mark.slow),
    pytest.param("Conv1D", (12, 2), ["Conv", "HardTanh", "Conv", "HardTanh", "Flatten", "Dense"],
                 marks=pytest.mark.slow),
])
def test_flax_linen(which, shape, kinds):
    models = dict(zip(("MLP", "CNN", "ResBN", "Conv1D"), _linen_models()))
    fn = _init_linen(models[which](), shape)
    net = _compare(f"linen {which}", fn, shape)
    if kinds is not None:
        assert _kinds(net.layers) == kinds
    if which == "ResBN":
        k = _kinds(net.layers)
        assert k.count("Residual") == 2 and "BatchNorm" not in k  # batch norms folded into the convolutions
        assert [type(l).__name__ for l in net.layers] == ["Conv", "ReLU", "Residual", "ReLU", "Residual", "LeakyReLU",
                                                          "AvgPool", "Flatten", "Dense"]
        assert isinstance(net.layers[2], L.Residual) and net.layers[2].shortcut is None
        assert isinstance(net.layers[4], L.Residual) and isinstance(net.layers[4].shortcut, L.Conv)


@pytest.mark.parametrize("act,kind", [
    (jax.nn.leaky_relu, "LeakyReLU"), (jax.nn.hard_tanh, "HardTanh"), (jax.nn.relu6, "HardTanh"),
    (lambda z: jnp.maximum(z, 0.2 * z), "LeakyReLU"), (lambda z: jnp.where(z > 0, z, 0.0), "ReLU"),
    (lambda z: jnp.clip(z, -0.5, 2.0), "HardTanh"), (jnp.abs, "LeakyReLU"), (lambda z: jnp.maximum(z, 1.0), "ReLU"),
    (lambda z: -jnp.minimum(z, 0.5), "ReLU"),
])
def test_linen_activations(act, kind):
    MLP = _linen_models()[0]
    fn = _init_linen(MLP(act=act), (4,))
    net = _compare(f"linen MLP {kind}", fn, (4,))
    assert [type(l).__name__ for l in net.layers if L.is_site(l)] == [kind, kind]


# --- Flax nnx ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_flax_nnx_cnn_batchnorm():
    nnx = pytest.importorskip("flax.nnx")

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(4, use_running_average=True, rngs=rngs)
            self.lin = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn(self.conv(x)))
            x = nnx.max_pool(x, (2, 2), (2, 2)) if hasattr(nnx, "max_pool") else jax.lax.reduce_window(
                x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            return self.lin(x.reshape(x.shape[0], -1))

    m = Model(nnx.Rngs(0))
    m.bn.mean.value = jnp.linspace(-0.5, 0.5, 4)
    m.bn.var.value = jnp.linspace(0.5, 2.0, 4)
    m.bn.scale.value = jnp.linspace(0.8, 1.3, 4)
    m.bn.bias.value = jnp.linspace(-0.2, 0.3, 4)
    net = _compare("nnx CNN+BN", lambda x: m(x), (8, 8, 1))
    assert _kinds(net.layers) == ["Conv", "ReLU", "MaxPool", "Flatten", "Dense"]


def test_flax_nnx_mlp():
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1, self.l2 = nnx.Linear(6, 10, rngs=rngs), nnx.Linear(10, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.leaky_relu(self.l1(x), 0.05))

    graph, state = nnx.split(nnx.eval_shape(lambda: MLP(nnx.Rngs(1))))
    m = nnx.merge(graph, _fill(state))
    net = _compare("nnx MLP", lambda x: m(x), (6,))
    assert _kinds(net.layers) == ["Dense", "LeakyReLU", "Dense"] and net.layers[1].alpha == pytest.approx(0.05)


# --- Equinox (channels first, per example) ----------------------------------------------------
@pytest.mark.slow
def test_equinox_mlp_per_example():
    eqx = pytest.importorskip("equinox")

    mlp = eqx.nn.MLP(5, 3, 12, 2, activation=jax.nn.relu, key=jax.random.key(0))
    net = _compare("equinox MLP", mlp, (5,), batched=False)
    assert _kinds(net.layers) == ["Dense", "ReLU", "Dense", "ReLU", "Dense"]


def test_equinox_cnn_nchw():
    eqx = pytest.importorskip("equinox")

    k = jax.random.split(jax.random.key(0), 4)  # only traced: the arrays come from _fill

    class CNN(eqx.Module):
        c1: eqx.nn.Conv2d
        c2: eqx.nn.Conv2d
        c3: eqx.nn.Conv2d
        lin: eqx.nn.Linear

        def __call__(self, x):  # (C, H, W)
            h = jax.nn.relu(self.c1(x))
            h = eqx.nn.MaxPool2d(2, 2)(h)
            h = h + self.c3(jax.nn.relu(self.c2(h)))  # residual block
            return self.lin(jax.nn.relu(h).reshape(-1))  # flattened in (C, H, W) order

    m = _fill(eqx.filter_eval_shape(lambda: CNN(
        eqx.nn.Conv2d(2, 4, 3, padding=1, key=k[0]), eqx.nn.Conv2d(4, 4, 3, padding=1, key=k[1]),
        eqx.nn.Conv2d(4, 4, 3, padding=1, key=k[2]), eqx.nn.Linear(4 * 4 * 4, 3, key=k[3]))))
    fn = jax.vmap(m)
    net = _compare("equinox CNN (NCHW)", fn, (2, 8, 8), axes=(0, 2, 3, 1))
    assert net.input_shape == (8, 8, 2)
    assert input_axes(fn, np.zeros((2, 2, 8, 8), np.float32)) == (0, 2, 3, 1)
    assert _kinds(net.layers) == ["Conv", "ReLU", "MaxPool", "Residual", "[", "Conv", "ReLU", "Conv", "]", "ReLU",
                                  "Flatten", "Dense"]


# --- Haiku ------------------------------------------------------------------------------------
def test_haiku_cnn_batchnorm():
    hk = pytest.importorskip("haiku")

    def forward(x, is_training):
        x = hk.Conv2D(4, 3)(x)
        x = hk.BatchNorm(True, True, 0.9)(x, is_training=is_training)
        x = jax.nn.relu(x)
        x = hk.MaxPool(2, 2, "VALID")(x)
        x = hk.AvgPool((1, 2, 2, 1), 1, "VALID")(x)
        x = hk.Flatten()(x)
        return hk.Linear(3)(jax.nn.relu(hk.Linear(7)(x)))

    f = hk.transform_with_state(forward)
    x = jnp.ones((2, 8, 8, 1))
    params, state = _fill(jax.eval_shape(lambda x: f.init(jax.random.key(0), x, True), x))
    fn = lambda x: f.apply(params, state, None, x, False)[0]  # noqa: E731
    net = _compare("haiku CNN+BN", fn, (8, 8, 1))
    assert _kinds(net.layers) == ["Conv", "ReLU", "MaxPool", "AvgPool", "Flatten", "Dense", "ReLU", "Dense"]


@pytest.mark.slow
def test_haiku_mlp():
    hk = pytest.importorskip("haiku")

    f = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([9, 9, 2])(x)))
    params = _fill(jax.eval_shape(f.init, jax.random.key(0), jnp.ones((1, 4))))
    _compare("haiku MLP", lambda x: f.apply(params, x), (4,))


# --- plain JAX --------------------------------------------------------------------------------
def test_plain_jax_batchnorm_first_and_jit():
    rng = np.random.default_rng(3)
    W1, W2 = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    mean, var = rng.normal(size=6).astype(np.float32), rng.uniform(0.5, 2, size=6).astype(np.float32)

    @jax.jit
    def f(x):
        x = (x - mean) / jnp.sqrt(var + 1e-5)  # input normalisation: a BatchNorm layer
        return jax.nn.relu(x @ W1 + 1.0) @ W2

    net = _compare("plain JAX jit + BN first", f, (6,))
    assert _kinds(net.layers) == ["BatchNorm", "Dense", "ReLU", "Dense"]


def test_plain_jax_nchw_conv_weight_times_x():
    rng = np.random.default_rng(4)
    k = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    W = rng.normal(size=(4, 3 * 3 * 3)).astype(np.float32)

    def f(x):  # NCHW convolution, then W @ x (PyTorch linear on the C,H,W flatten)
        h = jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h)
        return (W @ h.reshape(h.shape[0], -1).T).T

    net = _compare("plain JAX NCHW conv + W@x", f, (2, 6, 6), axes=(0, 2, 3, 1))
    assert net.input_shape == (6, 6, 2)


_K = np.random.default_rng(7).normal(size=(3, 3, 2, 3)).astype(np.float32)
_EYE = np.eye(3, dtype=np.float32)


def _conv(x):
    return jax.lax.conv_general_dilated(x, _K, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("name,fn,kinds", [
    ("global average pool", lambda x: jax.nn.relu(_conv(x)).mean(axis=(1, 2)),
     ["Conv", "ReLU", "AvgPool", "Flatten"]),
    ("channel mean", lambda x: jax.nn.relu(_conv(x)).mean(-1).reshape(x.shape[0], -1),
     ["Conv", "ReLU", "Dense", "Flatten"]),
    ("sum of everything", lambda x: jax.nn.relu(_conv(x)).sum((1, 2, 3))[:, None],
     ["Conv", "ReLU", "Flatten", "Dense"]),
    ("h + relu(h) is one leaky unit", lambda x: (lambda h: h + jax.nn.relu(h))(_conv(x)).reshape(x.shape[0], -1),
     ["Conv", "LeakyReLU", "Flatten"]),
    ("relu(1 - 2h)", lambda x: jax.nn.relu(1 - 2 * _conv(x)).reshape(x.shape[0], -1),
     ["Conv", "ReLU", "Flatten"]),
    ("identity residual", lambda x: (lambda h: h + jnp.einsum("nhwc,cd->nhwd", jax.nn.relu(h), _EYE))(
        _conv(x)).reshape(x.shape[0], -1), ["Conv", "Residual", "Flatten"]),
    ("jnp.pad before a VALID conv", lambda x: jax.nn.relu(jax.lax.conv_general_dilated(
        jnp.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0))), _K, (2, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))).reshape(x.shape[0], -1), ["Conv", "ReLU", "Flatten"]),
    ("-inf pad before a max pool", lambda x: jax.lax.reduce_window(
        jnp.pad(jax.nn.relu(_conv(x)), ((0, 0), (1, 0), (1, 0), (0, 0)), constant_values=-jnp.inf), -jnp.inf,
        jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID").reshape(x.shape[0], -1),
     ["Conv", "ReLU", "MaxPool", "Flatten"]),
    ("output permuted", lambda x: jax.nn.relu(_conv(x)).transpose(0, 3, 1, 2).reshape(x.shape[0], -1),
     ["Conv", "ReLU", "Flatten", "Dense"]),
])
def test_plain_functions(name, fn, kinds):
    net = _compare(f"plain JAX {name}", fn, (5, 5, 2))
    assert [type(l).__name__ for l in net.layers] == kinds


# --- refusals ---------------------------------------------------------------------------------
W = np.ones((4, 4), np.float32) / 4


@pytest.mark.parametrize("fn,words", [
    (lambda x: jax.nn.softmax(jax.nn.relu(x @ W)) @ W, ["reduce_max", "exp", "not piecewise linear"]),
    (lambda x: jax.nn.gelu(x @ W) @ W, ["not piecewise linear"]),
    (lambda x: jax.nn.gelu(x @ W, approximate=False) @ W, ["erf", "not piecewise linear"]),
    (lambda x: jax.nn.sigmoid(x) @ W, ["logistic", "not piecewise linear"]),
    (lambda x: (x * x) @ W, ["mul", "not piecewise linear"]),
    (lambda x: (x @ W) / (1 + x @ W), ["div", "not piecewise linear"]),
    (lambda x: jnp.floor(x) @ W, ["floor", "not piecewise linear"]),
    (lambda x: jnp.sort(x, axis=1) @ W, ["sort", "not supported"]),
    (lambda x: jnp.where(x > 0, 1.0, 0.0) @ W, ["not continuous"]),
    (lambda x: jnp.maximum(x, 0.5 * x) + jnp.maximum(x - 1, 0.0), ["3 pieces", "not supported"]),
])
def test_refusals_name_the_primitive(fn, words):
    with pytest.raises(ValueError) as e:
        from_jax(fn, np.zeros((2, 4), np.float32))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_refuses_layernorm_and_attention_plain():
    g, b = np.ones(4, np.float32), np.zeros(4, np.float32)

    def layernorm(x):
        h = x @ W
        mu = h.mean(-1, keepdims=True)
        v = ((h - mu) ** 2).mean(-1, keepdims=True)
        return ((h - mu) / jnp.sqrt(v + 1e-5) * g + b) @ W

    with pytest.raises(ValueError, match="not piecewise linear"):
        from_jax(layernorm, np.zeros((2, 4), np.float32))

    def attention(x):  # (N, T, D)
        q, k = x @ W, x @ W
        a = jnp.einsum("ntd,nsd->nts", q, k)
        return jnp.einsum("nts,nsd->ntd", a, x).reshape(x.shape[0], -1)

    with pytest.raises(ValueError, match="not piecewise linear"):
        from_jax(attention, np.zeros((2, 3, 4), np.float32))


@pytest.mark.slow
def test_refuses_layernorm_and_attention():
    nn = pytest.importorskip("flax.linen")

    class LN(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.LayerNorm()(nn.Dense(4)(x)))

    class Attn(nn.Module):
        @nn.compact
        def __call__(self, x):  # (N, T, D)
            h = nn.SelfAttention(num_heads=1, qkv_features=4)(x)
            return nn.Dense(2)(h.reshape(h.shape[0], -1))

    fn = _init_linen(LN(), (3,))
    with pytest.raises(ValueError, match="not piecewise linear"):
        from_jax(fn, np.zeros((2, 3), np.float32))
    fn = _init_linen(Attn(), (3, 4))
    with pytest.raises(ValueError, match="dot_general|not piecewise linear"):
        from_jax(fn, np.zeros((2, 3, 4), np.float32))


def test_bad_arguments():
    with pytest.raises(TypeError, match="apply_fn"):
        from_jax(3, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="example_input"):
        from_jax(lambda x: x @ W, np.zeros(4))
    with pytest.raises(ValueError, match="does not depend"):
        from_jax(lambda x: jnp.ones((x.shape[0], 2)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="outputs of shape"):
        from_jax(lambda x: (x @ W).reshape(x.shape[0], 2, 2), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="'pad' is only supported"):
        from_jax(lambda x: jnp.pad(x, ((0, 0), (1, 1), (0, 0))).reshape(x.shape[0], -1), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="varies over spatial"):
        from_jax(lambda x: (x + jnp.arange(4.0)[:, None]).reshape(x.shape[0], -1), np.zeros((2, 3, 4, 1)))


# --- higher-order primitives: calls inlined by name, the rest refused by name -----------------
_WS = np.random.default_rng(11).normal(size=(3, 4, 4)).astype(np.float32) * 0.7


def _scan_net(x):
    return jax.lax.scan(lambda h, w: (jax.nn.relu(h @ w), None), x, _WS)[0]


def _while_net(x):
    return jax.lax.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, jax.nn.relu(c[1] @ W)), (0, x))[1]


_PRED = np.ones((), bool)


def _cond_net(x):
    return jax.lax.cond(_PRED, lambda h: jax.nn.relu(h @ W), lambda h: h @ W, x)  # a constant predicate


def _window_net(x):  # init 0 is not max's identity, so this is the generic reduce_window
    h = jax.nn.relu(x @ W).reshape(x.shape[0], 2, 2, 1)
    return jax.lax.reduce_window(h, jnp.float32(0.0), jax.lax.max, (1, 2, 2, 1), (1, 1, 1, 1), "VALID").reshape(
        x.shape[0], -1)


@pytest.mark.parametrize("fn,words", [
    (_scan_net, ["'scan'", "loop"]),
    (jax.jit(_scan_net), ["'scan'", "loop", "inside"]),
    (_while_net, ["'while'", "loop"]),
    (_cond_net, ["'cond'", "branches"]),
    (_window_net, ["'reduce_window'", "custom reduction"]),
])
@pytest.mark.parametrize("check", [True, False])
def test_refuses_higher_order_by_name(fn, words, check):
    assert any(e.primitive.name == words[0].strip("'") for e in jax.make_jaxpr(fn)(jnp.zeros((2, 4))).eqns
               ) or "inside" in words
    with pytest.raises(ValueError) as e:
        from_jax(fn, np.zeros((2, 4), np.float32), check=check)
    for w in words:
        assert w in str(e.value), str(e.value)


@jax.custom_vjp
def _relu_vjp(x):
    return jnp.maximum(x, 0.0)


_relu_vjp.defvjp(lambda x: (_relu_vjp(x), x), lambda x, g: (g * (x > 0),))


def test_call_primitives_are_inlined():
    rng = np.random.default_rng(12)
    W1, W2 = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)
    w_const = jax.lax.scan(lambda c, w: (c @ w, None), jnp.eye(4), _WS)[0]  # a loop over constants only

    def f(x):
        h = jax.jit(lambda v: v @ w_const)(x)
        h = jax.checkpoint(lambda v: _relu_vjp(v @ W1))(h)
        return jax.jit(lambda v: jax.nn.relu(v) @ W2)(h)

    names = {e.primitive.name for e in jax.make_jaxpr(f)(jnp.zeros((2, 4))).eqns}
    assert {"jit", "remat2"} <= names or {"pjit", "checkpoint"} <= names, names
    net = _compare("plain JAX jit / checkpoint / custom_vjp", f, (4,))
    assert _kinds(net.layers) == ["Dense", "ReLU", "Dense"]  # the first two products are one Dense


def test_check_is_relative_to_the_outputs_scale(monkeypatch):
    """Outputs of size 1e-8: a correct import passes, and a wrong bias of 1e-10 is caught (an
    absolute tolerance would let any net with tiny outputs through)."""
    from partax import jax_import
    from partax.layers import Dense

    rng = np.random.default_rng(5)
    W1, W2 = (rng.normal(size=(4, 8)) * 1e-4).astype(np.float32), (rng.normal(size=(8, 3)) * 1e-4).astype(np.float32)

    def f(x):
        return jnp.maximum(x @ W1, 0.0) @ W2

    x = jnp.zeros((2, 4), jnp.float32)
    net = from_jax(f, x)
    assert float(np.max(np.abs(np.asarray(net(jnp.ones((1, 4))))))) < 1e-6
    convert = jax_import._to_layers

    def wrong(*args):
        layers = convert(*args)
        last = layers[-1]
        assert isinstance(last, Dense)
        return [*layers[:-1], Dense(last.W, last.b + np.float32(1e-10))]

    monkeypatch.setattr(jax_import, "_to_layers", wrong)
    with pytest.raises(ValueError, match="differs from apply_fn"):
        from_jax(f, x)
