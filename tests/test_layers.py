"""partax.layers and general nets (partax.nets.sequential): forward passes against an independent
float64 NumPy implementation (tests/layers_oracle.py, explicit loops) and JAX's own lax primitives,
shape inference and its errors, pytrees, reprs, stacking, save / load, and the MLP special case."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import layers_oracle as oracle
import partax
from partax.layers import (AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual,
                           window_indices)
from partax.nets import flat_inputs, sequential

RNG = np.random.default_rng(0)
FWD = jax.jit(lambda net, x: net(x))  # one compilation per architecture (eager calls dispatch every op)


def f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


# (layer, per-example input shape)
LAYER_CASES = [
    ("dense", lambda: Dense(f32(5, 3), f32(3)), (5,)),
    ("conv2d", lambda: Conv(f32(3, 3, 2, 4), f32(4)), (7, 6, 2)),
    ("conv2d_stride_pad", lambda: Conv(f32(3, 2, 2, 3), f32(3), strides=(2, 1), padding=((1, 2), (0, 1))), (7, 6, 2)),
    ("conv2d_dilated_grouped", lambda: Conv(f32(2, 3, 2, 6), f32(6), dilation=(2, 1), groups=2, padding=1), (6, 7, 4)),
    ("conv1d", lambda: Conv(f32(3, 2, 4), f32(4), strides=(2,), padding=((1, 1),), dilation=(2,)), (9, 2)),
    ("avgpool", lambda: AvgPool((2, 2)), (6, 5, 3)),
    ("avgpool_pad_stride", lambda: AvgPool((3, 2), (1, 2), ((1, 1), (0, 1))), (5, 5, 2)),
    ("avgpool1d", lambda: AvgPool((3,), (2,)), (9, 2)),
    ("maxpool", lambda: MaxPool((2, 2)), (6, 5, 3)),
    ("maxpool_pad_stride", lambda: MaxPool((3, 2), (1, 2), ((1, 1), (0, 1))), (5, 5, 2)),
    ("maxpool1d", lambda: MaxPool((3,), (2,)), (9, 2)),
    ("maxpool_one_slot", lambda: MaxPool((1, 1), (2, 2)), (5, 4, 2)),
    ("batchnorm", lambda: BatchNorm(f32(3), np.abs(f32(3)) + 0.1, f32(3), f32(3), eps=1e-3), (4, 4, 3)),
    ("flatten", lambda: Flatten(), (3, 4, 2)),
    ("relu", lambda: ReLU(), (4, 3)),
    ("leaky", lambda: LeakyReLU(0.1), (4, 3)),
    ("hardtanh", lambda: HardTanh(-0.5, 0.7), (4, 3)),
    ("clipped_relu", lambda: HardTanh(0.0, 1.0), (6,)),
    ("residual_identity", lambda: Residual((Conv(f32(3, 3, 2, 2), f32(2), padding=1), ReLU(),
                                             Conv(f32(1, 1, 2, 2), f32(2)))), (5, 5, 2)),
    ("residual_shortcut", lambda: Residual((Conv(f32(3, 3, 2, 3), f32(3), strides=2, padding=1), HardTanh(0, 2)),
                                           Conv(f32(1, 1, 2, 3), f32(3), strides=2, padding=((0, 0), (0, 0)))),
     (7, 7, 2)),
    ("residual_dense", lambda: Residual((Dense(f32(4, 6), f32(6)), LeakyReLU(0.2), Dense(f32(6, 4), f32(4)))), (4,)),
]


@pytest.mark.parametrize("name,make,shape", LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_layer_forward_matches_numpy_oracle(name, make, shape):
    layer = make()
    x = f32(3, *shape)
    y = np.asarray(jax.jit(lambda l, v: l.apply(v))(layer, jnp.asarray(x)))
    ref = oracle.forward([layer], x)
    assert y.shape == ref.shape == (3, *layer.output_shape(shape))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_conv_and_pools_match_lax():
    """The spec's equivalences, against JAX's own primitives."""
    x = jnp.asarray(f32(2, 7, 6, 4))
    c = Conv(f32(3, 2, 2, 6), f32(6), strides=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)
    ref = jax.lax.conv_general_dilated(x, c.kernel, (2, 1), ((1, 2), (0, 1)), rhs_dilation=(1, 2),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2,
                                       precision=jax.lax.Precision.HIGHEST) + c.bias
    np.testing.assert_allclose(c.apply(x), ref, rtol=1e-5, atol=1e-5)
    m = MaxPool((2, 3), (1, 2), ((1, 0), (0, 1)))
    ref = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 3, 1), (1, 1, 2, 1), ((0, 0), (1, 0), (0, 1), (0, 0)))
    np.testing.assert_array_equal(m.apply(x), ref)
    a = AvgPool((2, 2), padding=((1, 1), (0, 0)))
    ref = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (0, 0), (0, 0))) / 4
    np.testing.assert_allclose(a.apply(x), ref, rtol=1e-6, atol=1e-6)


def test_window_indices_cover_every_slot():
    idx = window_indices((5, 4, 2), (2, 3), (2, 1), ((1, 0), (0, 1)))
    x = np.arange(40, dtype=np.float64).reshape(1, 5, 4, 2)
    w = oracle.windows(x, (2, 3), (2, 1), ((1, 0), (0, 1)), -1.0).reshape(-1, 6)
    np.testing.assert_array_equal(idx, w.astype(np.int64))


@pytest.mark.parametrize("make,shape,match", [
    (lambda: Dense(f32(5, 3), f32(3)), (4,), "expected inputs"),
    (lambda: Conv(f32(3, 3, 2, 4), f32(4)), (7, 6, 3), "2 input channels"),
    (lambda: Conv(f32(3, 3, 2, 4), f32(4)), (7, 2), r"\(H, W, C\)"),
    (lambda: Conv(f32(5, 5, 2, 4), f32(4)), (3, 3, 2), "does not fit"),
    (lambda: MaxPool((2, 2), padding=((2, 0), (0, 0))), (6, 6, 1), "smaller than the window"),
    (lambda: AvgPool((4, 4)), (3, 6, 1), "does not fit"),
    (lambda: BatchNorm(*[np.ones(3, np.float32)] * 4), (4, 2), "3 channels"),
    (lambda: Residual((Conv(f32(3, 3, 2, 2), f32(2)),)), (5, 5, 2), "shortcut gives"),
])
def test_shape_errors(make, shape, match):
    with pytest.raises(ValueError, match=match):
        make().output_shape(shape)


@pytest.mark.parametrize("make,match", [
    (lambda: Dense(f32(5, 3), f32(4)), "Dense"),
    (lambda: Conv(f32(3, 3, 4), f32(3)), "bias"),
    (lambda: Conv(f32(3, 3, 3, 4), f32(4), groups=3), "groups"),
    (lambda: Conv(f32(3, 3, 3, 4), f32(4), padding=((1, 1),)), "2 non-negative"),
    (lambda: Conv(f32(3, 3, 3, 4), f32(4), padding="SAME"), "explicit"),
    (lambda: LeakyReLU(1.0), "alpha"),
    (lambda: ReLU(0.5), "LeakyReLU"),
    (lambda: HardTanh(1.0, 1.0), "lo < hi"),
    (lambda: Residual(()), "at least one"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def cnn():
    return sequential([Conv(f32(3, 3, 1, 4, scale=0.5), f32(4, scale=0.1)), ReLU(), MaxPool((2, 2)),
                       Residual((Conv(f32(3, 3, 4, 4, scale=0.3), f32(4, scale=0.1), padding=1), HardTanh(0.0, 1.0),
                                 Conv(f32(1, 1, 4, 4), f32(4)))),
                       BatchNorm(f32(4), np.abs(f32(4)) + 0.5, f32(4), f32(4)), LeakyReLU(0.1),
                       AvgPool((3, 3)), Flatten(), Dense(f32(4, 3), f32(3))], (8, 8, 1))


def test_net_forward_facts_and_errors():
    net = cnn()
    x = f32(6, 8, 8, 1)
    np.testing.assert_allclose(np.asarray(FWD(net, x)), oracle.forward(net.layers, x), rtol=1e-4, atol=1e-4)
    assert net.input_dim == 64 and net.input_shape == (8, 8, 1) and net.output_dim == 3
    # ReLU of 6x6x4 units, 2-bit argmax of 3x3x4 windows, 2 bits of 3x3x4 hard-tanh units, 36 leaky bits
    assert net.widths == (144, 72, 72, 36) and net.num_hidden == 4 and not net.is_mlp
    pre = net.preactivations(x)
    assert [p.shape for p in pre] == [(6, 144), (6, 144), (6, 36), (6, 36)]
    np.testing.assert_allclose(np.asarray(net.preactivations(x.reshape(6, 64))[2]), np.asarray(pre[2]))
    assert repr(net).startswith("Net(8x8x1: Conv(3x3, 1->4), ReLU(), MaxPool(2x2), Residual(")
    with pytest.raises(ValueError, match=r"expected shape \(N, 8, 8, 1\)"):
        net(x.reshape(6, 64))
    with pytest.raises(ValueError, match="channels first"):
        flat_inputs(net, x.reshape(6, 1, 8, 8))
    with pytest.raises(TypeError, match="MLPs only"):
        net.weights
    with pytest.raises(TypeError, match="MLPs only"):
        net.activation


def test_sequential_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"layers\[2\] \(Dense\)"):
        sequential([Conv(f32(3, 3, 1, 2), f32(2)), Flatten(), Dense(f32(10, 2), f32(2))], (6, 6, 1))
    with pytest.raises(ValueError, match=r"layers\[0\] \(Conv\).*channels"):
        sequential([Conv(f32(3, 3, 1, 2), f32(2))], (1, 6, 6))
    with pytest.raises(TypeError, match=r"layers\[1\]: expected a partax.layers layer"):
        sequential([Dense(f32(2, 2), f32(2)), jnp.tanh], (2,))
    with pytest.raises(ValueError, match="input_shape"):
        sequential([Flatten()], (0, 3))
    with pytest.raises(ValueError, match="finite"):
        sequential([Dense(np.full((2, 2), np.nan, np.float32), f32(2))], (2,))


def test_pytree_jit_and_stack():
    net = cnn()
    leaves = jax.tree_util.tree_leaves(net)
    assert len(leaves) == 2 + 2 * 2 + 4 + 2
    x = f32(4, 8, 8, 1)
    other = jax.tree_util.tree_map(lambda a: a * 0.5, net)
    st = partax.stack_nets([net, other])
    assert st.stack_shape == (2,) and st.widths == net.widths
    np.testing.assert_allclose(FWD(st[1], x), FWD(other, x), rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(lambda n: n(x)))(st)[0], FWD(net, x), rtol=1e-6)
    small = sequential([Flatten(), Dense(f32(64, 2), f32(2))], (8, 8, 1))
    with pytest.raises(ValueError, match="different architecture"):
        partax.stack_nets([net, small])


def test_mlp_is_the_special_case():
    mlp = partax.Net.from_arrays([f32(5, 7), f32(7), f32(7, 4), f32(4), f32(4, 2), f32(2)])
    assert mlp.is_mlp and len(mlp.layers) == 5 and isinstance(mlp.layers[1], ReLU)
    same = sequential(list(mlp.layers), (5,))
    assert same.is_mlp and same.widths == (7, 4) and repr(same) == repr(mlp)
    leaky = partax.Net.from_arrays([f32(3, 4), f32(4), f32(4, 2), f32(2)], ("leaky_relu", 0.2))
    assert leaky.activation == "leaky_relu" and leaky.alpha == 0.2
    x = f32(5, 5)
    np.testing.assert_allclose(FWD(same, x), oracle.forward(mlp.layers, x), rtol=1e-5, atol=1e-5)
    mixed = sequential([Dense(f32(3, 4), f32(4)), ReLU(), Dense(f32(4, 4), f32(4)), LeakyReLU(0.1),
                        Dense(f32(4, 1), f32(1))], (3,))
    assert not mixed.is_mlp and mixed.widths == (4, 4)
    raw = partax.Net(mlp.weights, mlp.biases, "relu", 0.0)
    np.testing.assert_allclose(FWD(raw, x), FWD(mlp, x))


def test_save_load_general_and_mlp(tmp_path):
    net = cnn()
    p = tmp_path / "cnn.npz"
    partax.save_net(net, p)
    back = partax.load_net(p)
    assert repr(back) == repr(net)
    x = f32(3, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(FWD(back, x)), np.asarray(FWD(net, x)))
    st = partax.stack_nets([net, jax.tree_util.tree_map(lambda a: 0.5 * a, net)])
    partax.save_net(st, tmp_path / "stack.npz")
    back = partax.load_net(tmp_path / "stack.npz")
    assert back.stack_shape == (2,)
    np.testing.assert_array_equal(np.asarray(FWD(back[1], x)), np.asarray(FWD(st[1], x)))
    mlp = partax.Net.from_arrays([f32(3, 4), f32(4), f32(4, 2), f32(2)])
    partax.save_net(mlp, tmp_path / "mlp.npz")
    with np.load(tmp_path / "mlp.npz") as f:  # MLPs keep the version-1 layout
        assert {"W1", "b1", "W2", "b2", "header"} == set(f.files)
    assert partax.load_net(tmp_path / "mlp.npz").widths == (4,)


def test_old_mlp_file_still_loads():
    """A file of format version 1 written by an earlier partax (committed fixture if present,
    else one written here byte-for-byte in that layout)."""
    import json

    path = os.path.join(os.path.dirname(__file__), "data", "old_mlp_v1.npz")
    if not os.path.exists(path):
        import tempfile

        path = os.path.join(tempfile.mkdtemp(), "old.npz")
        head = {"format": "partax.net", "version": 1, "activation": "leaky_relu", "alpha": 0.25, "num_layers": 2,
                "stack_shape": []}
        np.savez(path, W1=np.eye(2, dtype=np.float32), b1=np.ones(2, np.float32), W2=np.ones((2, 1), np.float32),
                 b2=np.zeros(1, np.float32), header=np.frombuffer(json.dumps(head).encode(), np.uint8))
    net = partax.load_net(path)
    assert net.is_mlp and net.activation == "leaky_relu" and net.alpha == 0.25
    np.testing.assert_allclose(np.asarray(net(np.array([[1.0, -3.0]], np.float32))), [[2.0 - 0.5]])


@pytest.mark.parametrize("n,k,s,d", [(5, 3, 1, 1), (5, 2, 2, 1), (8, 3, 2, 1), (7, 3, 3, 2), (4, 5, 1, 1), (1, 3, 2, 1)])
def test_same_padding_matches_jax(n, k, s, d):
    from jax.lax import padtype_to_pads

    from partax.layers import same_padding

    want = tuple(tuple(int(v) for v in p) for p in padtype_to_pads((n,), ((k - 1) * d + 1,), (s,), "SAME"))
    assert same_padding((k,), (s,), (d,), (n,)) == want
    (lo, hi), = same_padding((k,), (s,), (d,), (n,), lower=True)
    assert (hi, lo) == want[0]  # SAME_LOWER: the odd element first
    if s == 1:
        assert same_padding((k,), dilation=(d,)) == want  # size-free at stride 1
    else:
        with pytest.raises(ValueError, match="in_spatial"):
            same_padding((k,), (s,))
