import jax
import jax.numpy as jnp
import numpy as np
import pytest

import partax
from oracle import forward_preacts


def _arrays(rng, widths):
    out = []
    for a, b in zip(widths[:-1], widths[1:]):
        out += [rng.normal(size=(a, b)).astype(np.float32), rng.normal(size=b).astype(np.float32)]
    return out


@pytest.mark.parametrize("widths", [[2, 3, 1], [5, 33, 7, 2], [12, 10, 7, 5, 4, 3, 2]])
@pytest.mark.parametrize("activation,alpha", [("relu", 0.0), (("leaky_relu", 0.1), 0.1)])
def test_forward_matches_float64_chain(widths, activation, alpha):
    rng = np.random.default_rng(0)
    arrays = _arrays(rng, widths)
    net = partax.Net.from_arrays(arrays, activation=activation)
    x = rng.normal(size=(50, widths[0])).astype(np.float32)
    ref = forward_preacts(arrays, x, alpha)
    for z, r in zip(net.preactivations(x), ref):
        np.testing.assert_allclose(np.asarray(z), r, rtol=1e-4, atol=1e-4)
    h = np.where(ref[-1] > 0, ref[-1], alpha * ref[-1])
    out = h @ arrays[-2].astype(np.float64) + arrays[-1]
    np.testing.assert_allclose(np.asarray(net(x)), out, rtol=1e-4, atol=1e-4)
    assert net.input_dim == widths[0]
    assert net.widths == tuple(widths[1:-1])
    assert net.output_dim == widths[-1]


def test_net_is_a_pytree_and_jits():
    net = partax.mlp(jax.random.key(0), [4, 6, 2])
    leaves = jax.tree_util.tree_leaves(net)
    assert len(leaves) == 4
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, net)
    x = jnp.ones((3, 4))
    np.testing.assert_allclose(jax.jit(lambda n, x: n(x))(net, x), net(x), rtol=1e-6)
    assert doubled.activation == net.activation
    np.testing.assert_allclose(np.asarray(doubled.weights[0]), 2 * np.asarray(net.weights[0]))
    assert bool(net) and net != doubled and net == net  # identity equality, no array truth values
    with pytest.raises(dataclasses_error()):
        net.activation = "x"


def dataclasses_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_mlp_is_he_normal_with_zero_bias():
    net = partax.mlp(jax.random.key(1), [400, 300, 10])
    W = np.asarray(net.weights[0])
    assert abs(W.std() - np.sqrt(2 / 400)) < 0.05 * np.sqrt(2 / 400)
    assert abs(W.mean()) < 0.01
    assert not np.asarray(net.biases[0]).any()


def test_save_load_roundtrip(tmp_path):
    net = partax.mlp(jax.random.key(2), [3, 5, 4, 2], activation=("leaky_relu", 0.2), bias_std=0.3)
    p = tmp_path / "net.npz"
    partax.save_net(net, p)
    back = partax.load_net(p)
    assert back.activation == "leaky_relu" and back.alpha == 0.2
    for a, b in zip(net.arrays(), back.arrays()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with np.load(p, allow_pickle=False) as f:  # no pickle inside
        assert "header" in f.files


def test_load_rejects_non_net_files(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a partax net"):
        partax.load_net(p)
    q = tmp_path / "junk.npz"
    q.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a partax net"):
        partax.load_net(q)


@pytest.mark.parametrize(
    "arrays,match",
    [
        ([np.zeros((2, 3))], "even number"),
        ([np.zeros((2, 3)), np.zeros(4)], "layer 1"),
        ([np.zeros((2, 3)), np.zeros(3), np.zeros((4, 1)), np.zeros(1)], "takes 4 inputs"),
    ],
)
def test_from_arrays_errors(arrays, match):
    with pytest.raises(ValueError, match=match):
        partax.Net.from_arrays(arrays)


def test_bad_activation():
    with pytest.raises(ValueError, match="activation"):
        partax.mlp(jax.random.key(0), [2, 2, 1], activation="tanh")


def test_stack_and_index():
    nets = [partax.mlp(jax.random.key(i), [3, 4, 2]) for i in range(3)]
    s = partax.stack_nets(nets)
    assert s.stack_shape == (3,) and len(s) == 3
    np.testing.assert_array_equal(np.asarray(s[1].weights[0]), np.asarray(nets[1].weights[0]))
    with pytest.raises(ValueError, match="architecture"):
        partax.stack_nets([nets[0], partax.mlp(jax.random.key(0), [3, 5, 2])])


def test_float64_arrays_under_x64_off_warn_with_the_fix():
    import jax
    import numpy as np
    import pytest
    import partax

    arrays = [np.eye(2), np.zeros(2), np.ones((2, 1)), np.zeros(1)]  # float64
    if jax.config.jax_enable_x64:
        pytest.fail("the test suite runs with x64 off; this test checks the float32 path")
    with pytest.warns(UserWarning, match="jax_enable_x64"):
        net = partax.Net.from_arrays(arrays)
    assert net.dtype == np.float32
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        partax.Net.from_arrays([a.astype(np.float32) for a in arrays])  # float32: silent


def test_pytorch_layout_weights_are_named():
    import numpy as np
    import pytest
    import partax

    W1 = np.ones((5, 3), np.float32)  # PyTorch's (out, in) for a 3 -> 5 layer
    with pytest.raises(ValueError, match=r"PyTorch's \(d_out, d_in\) layout.*W\.T"):
        partax.Net.from_arrays([W1, np.zeros(5, np.float32), np.ones((5, 2), np.float32), np.zeros(2, np.float32)])
