import jax
import numpy as np
import pytest

import partax

import partax.coding as codes_module
from oracle import away_from_boundaries, groups

SHAPES = [[2, 5, 1], [3, 33, 7, 2], [6, 64, 70, 3], [12, 10, 7, 5, 4, 3, 2]]


def _net(widths, seed=0, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=activation, bias_std=0.3)


def _safe_inputs(net, n, seed=0, margin=1e-3):
    """Inputs whose float64 pre-activations are all farther than ``margin`` from 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, net.input_dim)).astype(np.float32)
    keep, pre = away_from_boundaries(net, x, margin)
    return x[keep], [z[keep] for z in pre]


@pytest.mark.parametrize("widths", SHAPES)
def test_bits_and_packing_match_oracle(widths):
    net = _net(widths)
    x, pre = _safe_inputs(net, 300)
    c = partax.codes(net, x)
    assert c.widths == tuple(widths[1:-1])
    for l, z in enumerate(pre, start=1):
        bits = z > 0
        np.testing.assert_array_equal(c.bits(l), bits)
        words = c.words[l - 1]
        assert words.dtype == np.uint32 and words.shape == (len(x), -(-bits.shape[1] // 32))
        for i in range(bits.shape[1]):  # bit i % 32 of word i // 32 is unit i
            np.testing.assert_array_equal((words[:, i // 32] >> np.uint32(i % 32)) & 1, bits[:, i])


def test_boundary_point_is_inactive():
    W1 = np.array([[1.0, -1.0]], np.float32)
    net = partax.Net.from_arrays([W1, np.zeros(2, np.float32), np.ones((2, 1), np.float32), np.zeros(1, np.float32)])
    c = partax.codes(net, np.array([[0.0], [1.0]], np.float32))
    np.testing.assert_array_equal(c.bits(1), [[False, False], [True, False]])


def test_bits_layer_is_one_based():
    c = partax.codes(_net([2, 3, 1]), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="1-based"):
        c.bits(0)


@pytest.mark.parametrize("widths", SHAPES)
@pytest.mark.parametrize("scope", ["layer", "prefix", "suffix"])
def test_region_ids_group_like_codes(widths, scope):
    net = _net(widths, activation=("leaky_relu", 0.05) if len(widths) == 4 else "relu")
    x, pre = _safe_inputs(net, 400, seed=1)
    ids = partax.region_ids(net, x, scope)
    assert ids.dtype == np.uint64 and ids.shape == (len(x), len(widths) - 2)
    for l in range(1, len(widths) - 1):
        code = groups(pre, scope, l)
        _, code_group = np.unique(code, axis=0, return_inverse=True)
        _, key_group = np.unique(ids[:, l - 1], return_inverse=True)
        # same partition of the inputs: a bijection between code groups and key groups
        pairs = np.unique(np.stack([code_group.ravel(), key_group.ravel()], 1), axis=0)
        assert len(pairs) == code_group.max() + 1 == key_group.max() + 1


def test_keys_depend_only_on_the_range():
    net = _net([4, 9, 8, 7])
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    lay, pre, suf = (partax.region_ids(net, x, s) for s in ("layer", "prefix", "suffix"))
    np.testing.assert_array_equal(lay[:, 0], pre[:, 0])
    np.testing.assert_array_equal(suf[:, -1], lay[:, -1])
    np.testing.assert_array_equal(suf[:, 0], pre[:, -1])
    assert not np.array_equal(pre[:, 1], lay[:, 1])


def test_lanes_are_independent():
    # the two 32-bit lanes of distinct codes differ independently (no lane is a function of the other)
    net = _net([3, 40, 1])
    x = np.random.default_rng(0).normal(size=(2000, 3)).astype(np.float32)
    k = partax.region_ids(net, x, "layer")[:, 0]
    lo, hi = (k & np.uint64(0xFFFFFFFF)), (k >> np.uint64(32))
    assert len(np.unique(lo)) == len(np.unique(hi)) == len(np.unique(k))
    assert abs(np.corrcoef(lo.astype(float), hi.astype(float))[0, 1]) < 0.2


@pytest.fixture
def weak_hash(monkeypatch):
    """A deliberately weakened hash: every 32-bit lane keeps only 2 bits (16 keys in all)."""
    strong = codes_module._fmix32
    monkeypatch.setattr(codes_module, "_fmix32", lambda h: strong(h) & np.uint32(3))
    jax.clear_caches()
    yield
    monkeypatch.undo()
    jax.clear_caches()


def test_exact_mode_detects_forced_collisions(weak_hash):
    net = _net([2, 30, 30, 1])
    x = np.random.default_rng(0).normal(size=(3000, 2)).astype(np.float32)
    ids = partax.region_ids(net, x, "prefix")
    assert len(np.unique(ids[:, 1])) <= 16  # the weak hash is in force
    with pytest.raises(partax.HashCollisionError):
        partax.region_ids(net, x, "prefix", exact=True)
    with pytest.raises(partax.HashCollisionError):
        partax.partition(net, x, exact=True, progress=False)
    # the default check key catches it too; only with the check off do regions merge silently
    with pytest.raises(partax.HashCollisionError):
        partax.partition(net, x, progress=False)
    p = partax.partition(net, x, collision_check=False, progress=False)
    assert p.num_regions("prefix")[-1] <= 16


def test_exact_mode_passes_with_the_real_hash():
    net = _net([2, 30, 30, 1])
    x = np.random.default_rng(0).normal(size=(3000, 2)).astype(np.float32)
    partax.region_ids(net, x, "prefix", exact=True)
    p = partax.partition(net, x, exact=True, progress=False)
    assert p.num_regions("prefix")[-1] > 16


def test_bad_inputs():
    net = _net([3, 4, 1])
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 3\)"):
        partax.codes(net, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="scope"):
        partax.region_ids(net, np.zeros((2, 3), np.float32), "middle")
    with pytest.raises(TypeError, match="net"):
        partax.codes("net", np.zeros((2, 3)))


@pytest.mark.parametrize("widths", [[3, 5, 40, 7, 1], [2, 33, 64, 1]])
def test_keys_equal_the_written_out_key_function(widths):
    """Pins the key function (keys are saved): a pure-Python version of its specification."""
    from oracle import range_key

    net = _net(widths)
    x, pre = _safe_inputs(net, 20, seed=4)
    L = len(widths) - 2
    for scope in ("layer", "prefix", "suffix"):
        ids = partax.region_ids(net, x, scope)
        for n in range(len(x)):
            rows = [list(z[n] > 0) for z in pre]
            for l in range(1, L + 1):
                f, t = {"layer": (l, l), "prefix": (1, l), "suffix": (l, L)}[scope]
                assert int(ids[n, l - 1]) == range_key(rows, f, t)


@pytest.mark.parametrize("widths", [[3, 5, 40, 7, 1], [2, 33, 64, 1], [12, 10, 7, 5, 4, 3, 2]])
def test_engine_kernel_keys_equal_the_key_function(widths):
    """The streaming engine's kernel ships the full-code key and per-layer hashes; the host
    finishes every other range's key (``range_keys``): both must be the specified key."""
    from oracle import range_key

    net = _net(widths)
    x, pre = _safe_inputs(net, 20, seed=5)
    L = len(widths) - 2
    words, full_keys, layer_hashes, near, finite = jax.jit(codes_module.codes_and_layer_hashes)(net, x)
    assert np.asarray(layer_hashes).shape == (2, L, len(x)) and np.asarray(finite).all()
    ranges = tuple((f, t) for f in range(1, L + 1) for t in range(f, L + 1))
    keys = codes_module.range_keys(np.asarray(layer_hashes), ranges)
    assert keys.dtype == np.uint64 and keys.shape == (len(x), len(ranges))
    full = np.ascontiguousarray(np.asarray(full_keys)).view(np.uint64)[:, 0]
    for n in range(len(x)):
        rows = [list(z[n] > 0) for z in pre]
        assert int(full[n]) == range_key(rows, 1, L)
        for r, (f, t) in enumerate(ranges):
            assert int(keys[n, r]) == range_key(rows, f, t)


def test_non_finite_inputs_are_named():
    net = _net([3, 4, 1])
    x = np.zeros((5, 3), np.float32)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="x: input 3 has a NaN or inf"):
        partax.region_ids(net, x)
    x[3, 2] = np.inf
    with pytest.raises(ValueError, match="x: input 3 has a NaN or inf"):
        partax.codes(net, x)


def test_keys_from_bits_with_start():
    from partax.coding import keys_from_bits

    net = _net([3, 6, 5, 4, 1])
    x, _ = _safe_inputs(net, 50, seed=2)
    c = partax.codes(net, x)
    bits = [c.bits(l) for l in (1, 2, 3)]
    np.testing.assert_array_equal(keys_from_bits(bits[1:], 2, 3, start=2), partax.region_ids(net, x, "suffix")[:, 1])
    np.testing.assert_array_equal(keys_from_bits(bits, 2, 2), partax.region_ids(net, x, "layer")[:, 1])
    with pytest.raises(ValueError, match="first, last"):
        keys_from_bits(bits[1:], 1, 2, start=2)


@pytest.mark.parametrize("batch_size", [4096, 64])
def test_check_key_catches_collisions_of_the_key_alone(weak_keys, batch_size):
    """Only the 64-bit key is weakened (1 bit per lane, the ``weak_keys`` fixture), the check key
    stays strong: the default engine raises on a collision inside a chunk and across chunks."""
    net = _net([2, 40, 30, 1])  # one layer wider than a word (its check lanes), one narrow
    x = np.random.default_rng(0).normal(size=(3000, 2)).astype(np.float32)
    with pytest.raises(partax.HashCollisionError):
        partax.partition(net, x, batch_size=batch_size, scopes=("prefix",), progress=False)
    p = partax.partition(net, x, batch_size=batch_size, collision_check=False, progress=False)
    assert p.num_regions("prefix")[-1] <= 4  # silently merged without the check
