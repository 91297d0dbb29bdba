"""The frozen-code linearisation (partax.geometry.linearize) against an independent oracle.

The oracle is a plain NumPy float64 forward pass written here: the net evaluated at points
with each unit's slope frozen to a given code. A pushed family must agree with it at every
parameter ``t`` (it is affine in ``t``, so a few random parameters check it), for ``k = 0, 1,
2, d``, with NumPy and with JAX under x64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import partax
from partax.geometry.linearize import AffineFamily, float64_arrays, forward_codes, push


def _frozen_forward(net, x, masks):
    """Pre-activations of every hidden layer, then the logits, with the codes ``masks`` frozen."""
    alpha = 0.0 if net.activation == "relu" else net.alpha
    h = np.asarray(x, np.float64)
    out = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        out.append(z)
        if l < len(masks):
            h = z * np.where(masks[l], 1.0, alpha)
    return out


@pytest.mark.parametrize("k", [0, 1, 2, 5])
@pytest.mark.parametrize("act", ["relu", ("leaky_relu", 0.2)])
def test_push_matches_the_frozen_forward_pass(k, act):
    rng = np.random.default_rng(k)
    net = partax.mlp(jax.random.key(k), [5, 9, 7, 3], act, bias_std=0.4)
    R = 6
    offset = rng.normal(size=(R, 5))
    dirs = rng.normal(size=(R, k, 5))
    # a code per member: the float64 code of a random point of the family (any code works)
    p = float64_arrays(net)
    masks = forward_codes(p, offset + 0.3 * dirs.sum(axis=1))
    fams = push(p, AffineFamily(offset, dirs), masks, output=True)
    assert len(fams) == 3
    for _ in range(3):
        t = rng.normal(size=(R, k))
        pts = offset + np.einsum("rk,rkn->rn", t, dirs)
        ref = _frozen_forward(net, pts, masks)
        for fam, z in zip(fams, ref):
            got = fam.offset + np.einsum("rk,rkn->rn", t, fam.directions)
            np.testing.assert_allclose(got, z, rtol=1e-12, atol=1e-12)


def test_unbatched_identity_broadcasts_and_jax_agrees():
    net = partax.mlp(jax.random.key(3), [4, 8, 8, 2], ("leaky_relu", 0.1), bias_std=0.3)
    x = np.random.default_rng(3).normal(size=(10, 4))
    p = float64_arrays(net)
    masks = forward_codes(p, x)
    fams = push(p, AffineFamily(np.zeros(4), np.eye(4)), masks, output=True)
    assert fams[0].offset.shape == (8,) and fams[1].offset.shape == (10, 8) and fams[2].directions.shape == (10, 4, 2)
    ref = _frozen_forward(net, x, masks)
    np.testing.assert_allclose(fams[2].offset + np.einsum("nk,nko->no", x, fams[2].directions), ref[2], rtol=1e-12,
                               atol=1e-12)
    # the local map at x reproduces the net itself (its own code), in the net's precision
    np.testing.assert_allclose(ref[2], np.asarray(net(x.astype(np.float32))), atol=1e-5)
    with jax.enable_x64(True):
        pj = jax.tree.map(jnp.asarray, p)
        fj = push(pj, AffineFamily(jnp.zeros(4), jnp.eye(4)), [jnp.asarray(m) for m in masks], output=True, xp=jnp)
        for a, b in zip(fams, fj):
            np.testing.assert_allclose(np.asarray(b.offset), np.broadcast_to(a.offset, b.offset.shape), rtol=1e-13,
                                       atol=1e-13)
            np.testing.assert_allclose(np.asarray(b.directions), np.broadcast_to(a.directions, b.directions.shape),
                                       rtol=1e-13, atol=1e-13)


def test_forward_codes_are_the_float64_codes():
    net = partax.mlp(jax.random.key(5), [3, 12, 6, 1], bias_std=0.3)
    x = np.random.default_rng(5).normal(size=(200, 3))
    bits = forward_codes(float64_arrays(net), x)
    z1 = x @ np.asarray(net.weights[0], np.float64) + np.asarray(net.biases[0], np.float64)
    z2 = np.maximum(z1, 0) @ np.asarray(net.weights[1], np.float64) + np.asarray(net.biases[1], np.float64)
    np.testing.assert_array_equal(bits[0], z1 > 0)
    np.testing.assert_array_equal(bits[1], z2 > 0)
    assert 0 < bits[0].mean() < 1 and 0 < bits[1].mean() < 1


def test_float64_arrays_one_read_only_copy_per_net():
    net = partax.mlp(jax.random.key(0), [2, 4, 1])
    p = float64_arrays(net)
    assert float64_arrays(net) is p  # cached on the net object
    assert p.layers[0].W.dtype == np.float64 and not p.layers[0].W.flags.writeable
    with pytest.raises(ValueError):
        p.layers[0].b[0] = 1.0
    np.testing.assert_array_equal(p.layers[1].W, np.asarray(net.weights[1], np.float64))
    # a net on NumPy arrays (mutable) is converted anew each call, never served stale
    arrays = [np.array(a) for a in net.arrays()]
    raw = partax.Net(tuple(arrays[0::2]), tuple(arrays[1::2]))
    q = float64_arrays(raw)
    arrays[0][0, 0] += 1.0
    assert float64_arrays(raw).layers[0].W[0, 0] == q.layers[0].W[0, 0] + 1.0


def test_sub_nets_share_the_float64_copy():
    from partax.geometry.local import scope_space

    net = partax.mlp(jax.random.key(1), [3, 6, 5, 4, 1], bias_std=0.2)
    space = scope_space(net, np.zeros((2, 3), np.float32), "suffix", 2)
    assert space.net is scope_space(net, np.ones((1, 3), np.float32), "suffix", 2).net
    assert float64_arrays(space.net).layers[0].W is float64_arrays(net).layers[1].W
