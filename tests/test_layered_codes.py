"""Codes of general nets (every code site: ReLU / leaky bits, hard-tanh pairs, max-pool argmax
slots) against the independent float64 NumPy oracle (tests/layers_oracle.py), on random inputs
away from ties and on max-pool ties; region keys, partitions (host and device reduce, exact mode,
stacked nets) and the near-boundary test of each site."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import layers_oracle as oracle
import partax
from partax.coding import keys_from_bits, site_codes
from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential

RNG = np.random.default_rng(1)


def f32(*shape, scale=1.0):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def conv_pool_net():
    return sequential([Conv(f32(3, 3, 1, 3, scale=0.6), f32(3, scale=0.2)), ReLU(), MaxPool((2, 2)),
                       Flatten(), Dense(f32(27, 2), f32(2))], (8, 8, 1))


def residual_net():
    return sequential([Conv(f32(3, 3, 2, 3, scale=0.5), f32(3, scale=0.1), strides=2, padding=1), LeakyReLU(0.1),
                       Residual((Conv(f32(3, 3, 3, 3, scale=0.4), f32(3, scale=0.1), padding=1), HardTanh(-0.5, 0.5),
                                 Conv(f32(1, 1, 3, 3), f32(3)))),
                       BatchNorm(f32(3), np.abs(f32(3)) + 0.5, f32(3), f32(3)), MaxPool((3, 3), (2, 2), ((1, 1), (1, 1))),
                       Flatten(), Dense(f32(12, 2), f32(2))], (7, 7, 2))


def conv1d_net():
    return sequential([Conv(f32(3, 2, 4, scale=0.6), f32(4, scale=0.2), dilation=(2,)), HardTanh(0.0, 1.0),
                       AvgPool((2,)), MaxPool((3,), (1,)), Flatten(), Dense(f32(8, 2), f32(2))], (13, 2))


def dense_mixed_net():
    return sequential([Dense(f32(4, 6), f32(6)), ReLU(), Residual((Dense(f32(6, 6), f32(6)), LeakyReLU(0.3),
                                                                   Dense(f32(6, 6), f32(6))), Dense(f32(6, 6), f32(6))),
                       HardTanh(-1, 2), Dense(f32(6, 2), f32(2))], (4,))


NETS = {"conv_pool": conv_pool_net, "residual": residual_net, "conv1d": conv1d_net, "dense_mixed": dense_mixed_net}


# residual and dense_mixed codes are checked by default in the geometry tests and the stacked test
@pytest.fixture(scope="module", params=["conv1d", "conv_pool", pytest.param("dense_mixed", marks=pytest.mark.slow),
                                        pytest.param("residual", marks=pytest.mark.slow)])
def net_and_inputs(request):
    net = NETS[request.param]()
    x = RNG.normal(size=(400, *net.input_shape)).astype(np.float32)
    bits, margin = oracle.codes(net.layers, x)
    keep = margin > 1e-4  # float32 rounding of these O(1) values is about 1e-6 (exact max-pool ties stay)
    assert keep.sum() > 100  # enough inputs away from ties to compare on
    return net, x[keep], [b[keep] for b in bits]


def test_codes_match_oracle(net_and_inputs):
    net, x, bits = net_and_inputs
    c = partax.codes(net, x)
    assert c.widths == net.widths == tuple(b.shape[1] for b in bits)
    for l, b in enumerate(bits, start=1):
        np.testing.assert_array_equal(c.bits(l), b)
    flat = partax.codes(net, x.reshape(len(x), -1))  # the flattened input space gives the same codes
    for w, v in zip(c.words, flat.words):
        np.testing.assert_array_equal(w, v)


def test_region_ids_and_partition_match_oracle(net_and_inputs):
    net, x, bits = net_and_inputs
    L = len(bits)
    part = partax.partition(net, x.reshape(len(x), -1), progress=False, reduce="host")
    id_scope = {1: "layer", 2: "prefix", 3: "suffix"}[L % 3 + 1]  # one compilation of region_ids per net
    for scope in ("layer", "prefix", "suffix"):
        ranges = {"layer": lambda l: (l, l), "prefix": lambda l: (1, l), "suffix": lambda l: (l, L)}[scope]
        ids = np.stack([keys_from_bits(bits, *ranges(l)) for l in range(1, L + 1)], axis=1)
        if scope == id_scope:
            np.testing.assert_array_equal(partax.region_ids(net, x, scope, exact=True), ids)
        for l in range(1, L + 1):
            f, t = ranges(l)
            uniq, counts = np.unique(np.concatenate(bits[f - 1:t], axis=1), axis=0, return_counts=True)
            table = part.table(scope, l)
            assert len(table) == len(uniq)
            assert sorted(table.counts.tolist()) == sorted(counts.tolist())
            assert set(table.keys.tolist()) == set(ids[:, l - 1].tolist())


def test_partition_paths_agree_and_exact():
    net = conv1d_net()
    x = RNG.normal(size=(300, net.input_dim)).astype(np.float32)
    host = partax.partition(net, x, progress=False, reduce="host")
    exact = partax.partition(net, x, progress=False, reduce="host", exact=True)
    device = partax.partition(net, x, progress=False, reduce="device")
    for p in (exact, device):
        for scope in ("layer", "prefix", "suffix"):
            np.testing.assert_array_equal(p.num_regions(scope), host.num_regions(scope))
            for l in range(1, net.num_hidden + 1):
                np.testing.assert_array_equal(p.table(scope, l).keys, host.table(scope, l).keys)


def test_stacked_general_nets():
    net = dense_mixed_net()
    x = RNG.normal(size=(300, net.input_dim)).astype(np.float32)
    other = jax.tree_util.tree_map(lambda a: -a, net)
    both = partax.partition(partax.stack_nets([net, other]), x, progress=False, scopes=("prefix",))
    for k, n in enumerate((net, other)):
        bits, margin = oracle.codes(n.layers, x)
        assert margin.min() > 1e-5
        for l in range(1, net.num_hidden + 1):
            np.testing.assert_array_equal(both[k].table("prefix", l).keys, np.unique(keys_from_bits(bits, 1, l)))


@pytest.mark.parametrize("window,strides,padding", [((2, 2), (2, 2), ((0, 0), (0, 0))),
                                                    ((3, 2), (1, 2), ((1, 1), (0, 1))),
                                                    ((2, 3), (2, 1), ((0, 1), (1, 1)))])
def test_maxpool_ties_go_to_the_lowest_slot(window, strides, padding):
    pool = MaxPool(window, strides, padding)
    net = sequential([pool, Flatten(), Dense(f32(int(np.prod(pool.output_shape((6, 5, 2)))), 1), f32(1))], (6, 5, 2))
    x = RNG.integers(-2, 3, size=(64, 6, 5, 2)).astype(np.float32)  # small integers: ties everywhere
    bits, _ = oracle.codes(net.layers, x)
    assert oracle.exact_ties(net.layers, x).mean() > 0.5
    np.testing.assert_array_equal(partax.codes(net, x).bits(1), bits[0])
    k = int(np.prod(window))
    slots = (bits[0].reshape(64, -1, oracle.nbits(k)) << np.arange(oracle.nbits(k))).sum(-1)
    w = oracle.windows(x.astype(np.float64), window, strides, padding, -np.inf).reshape(64, -1, k)
    first = np.array([[next(j for j in range(k) if row[j] == row.max()) for row in win] for win in w])
    np.testing.assert_array_equal(slots, first)


def tie_cases():
    """(net, inputs away from every threshold, inputs exactly on one site's threshold)."""
    eye = np.eye(4, dtype=np.float32)
    zero = np.zeros(4, np.float32)
    head = lambda n: Dense(np.ones((n, 1), np.float32), np.zeros(1, np.float32))
    away = np.array([[0.31, -0.62, 1.17, -2.3], [1.9, 0.45, -0.27, 0.83]], np.float32)
    cases = {
        "relu": (sequential([Dense(eye, zero), ReLU(), head(4)], (4,)), away, [[0.0, 0.3, -1.2, 2.0]]),
        "leaky": (sequential([Dense(eye, zero), LeakyReLU(0.2), Dense(eye, zero), ReLU(), head(4)], (4,)),
                  away, [[0.5, 0.0, 1.0, -1.0]]),
        "hardtanh_lo": (sequential([Dense(eye, zero), HardTanh(-0.5, 0.75), head(4)], (4,)), away,
                        [[-0.5, 0.1, 0.2, 0.3]]),
        "hardtanh_hi": (sequential([Dense(eye, zero), HardTanh(-0.5, 0.75), head(4)], (4,)), away,
                        [[0.1, 0.75, 0.2, 0.3]]),
        "maxpool": (sequential([MaxPool((2,)), Flatten(), head(2)], (4, 1)), away.reshape(2, 4, 1),
                    [[[0.5], [0.5], [1.0], [-1.0]]]),
        "conv_relu": (sequential([Conv(np.ones((2, 1, 1), np.float32), zero[:1]), ReLU(), Flatten(), head(3)], (4, 1)),
                      away.reshape(2, 4, 1), [[[1.0], [-1.0], [2.0], [1.5]]]),
    }
    return cases


@pytest.mark.parametrize("case", sorted(tie_cases()))
def test_near_boundary_per_site(case):
    net, away, tied = tie_cases()[case]
    tied = np.asarray(tied, np.float32)
    x = np.concatenate([away, tied])
    _, margin = oracle.codes(net.layers, x)
    ties = oracle.exact_ties(net.layers, x)
    assert (margin[: len(away)] > 1e-2).all() and not ties[: len(away)].any()
    assert ((margin[len(away):] == 0) | ties[len(away):]).all()
    p = partax.partition(net, x.reshape(len(x), -1), progress=False, reduce="host")  # boundary_tol 1e-5
    assert p.near_boundary == len(tied)
    _, near = site_codes(net, x, 0.0)  # tol 0: exact ties only
    np.testing.assert_array_equal(np.asarray(near), np.arange(len(x)) >= len(away))


def test_near_boundary_is_relative_to_the_scale():
    """A pre-activation of 1e-3 is near at scale 1e3 (tol 1e-5 -> 1e-2) and not at scale 1."""
    W = np.array([[1.0, 0.0], [-1.0, 1.0]], np.float32)
    net = sequential([Dense(W, np.zeros(2, np.float32)), ReLU(), Dense(np.ones((2, 1), np.float32),
                                                                       np.zeros(1, np.float32))], (2,))
    big = np.array([[1000.0, 1000.001]], np.float32)  # z_2 = x_2 - x_1 ~ 1e-3, terms ~ 1e3
    small = np.array([[0.5, 0.501]], np.float32)
    conv = sequential([Conv(np.array([[[-1.0]], [[1.0]]], np.float32), np.zeros(1, np.float32)), ReLU(),
                       Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))], (2, 1))
    for n in (net, conv):
        assert bool(site_codes(n, big, 1e-5)[1][0]) and not bool(site_codes(n, small, 1e-5)[1][0])


def test_input_shape_errors():
    net = conv_pool_net()
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 1\).*\(N, 64\)"):
        partax.codes(net, np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="channels first"):
        partax.region_ids(net, np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="64"):
        partax.partition(net, np.zeros((3, 63), np.float32), progress=False)


def test_fit_tracer_and_info_on_a_cnn(tmp_path):
    """train.fit, Tracer (partition + information plane per checkpoint) and info on a conv net."""
    import optax

    net = conv_pool_net()
    x = RNG.normal(size=(128, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].sum(axis=(1, 2, 3)) > 0).astype(np.int32)
    tracer = partax.Tracer(x, y, every=1, scopes=("layer", "prefix"), out=tmp_path / "trace")
    trained, hist = partax.train.fit(net, x, y, optax.adam(1e-2), epochs=2, batch_size=32,
                                     key=jax.random.key(0), callbacks=[tracer])
    assert trained.widths == net.widths and not trained.is_mlp
    loss = np.asarray(hist["loss"])
    assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
    acc = np.mean(np.argmax(np.asarray(trained(x)), axis=1) == y)
    assert abs(acc - float(np.asarray(hist["accuracy"])[-1])) < 0.2
    trace = partax.load_trace(tmp_path / "trace")
    assert set(np.unique(trace["scope"]).tolist()) == {"layer", "prefix"}
    # regions per layer from the trace equal a partition of the final net, checked against the oracle
    bits, _ = oracle.codes(trained.layers, x)
    last = trace["step"] == trace["step"].max()
    for l in (1, 2):
        rows = last & (trace["scope"] == "prefix") & (trace["layer"] == l)
        want = len(np.unique(np.concatenate(bits[:l], axis=1), axis=0))
        assert int(trace["regions"][rows][0]) == want
    plane = partax.info.information_plane(partax.partition(trained, x.reshape(128, -1), y, progress=False))
    assert len(plane["H_T"]) == trained.num_hidden


def test_partition_takes_structured_and_flat_inputs_alike():
    """``(N, H, W, C)`` arrays are the same inputs as their row-major flattening; NCHW is refused."""
    net = conv_pool_net()
    x = RNG.normal(size=(200, 8, 8, 1)).astype(np.float32)
    a = partax.partition(net, x, progress=False)
    b = partax.partition(net, x.reshape(200, -1), progress=False)
    for l in range(1, net.num_hidden + 1):
        np.testing.assert_array_equal(a.table("prefix", l).keys, b.table("prefix", l).keys)
        np.testing.assert_array_equal(a.table("prefix", l).counts, b.table("prefix", l).counts)
    batches = ((x[i : i + 64], np.arange(i, i + 64)[: len(x) - i] % 3) for i in range(0, 200, 64))  # a data loader
    c = partax.partition(net, batches, progress=False)
    d = partax.partition(net, x.reshape(200, -1), np.arange(200) % 3, progress=False)
    for l in range(1, net.num_hidden + 1):
        np.testing.assert_array_equal(a.table("prefix", l).keys, c.table("prefix", l).keys)
        np.testing.assert_array_equal(d.table("prefix", l).label_counts, c.table("prefix", l).label_counts)
    for listed in ([x[:100], x[100:]], x.tolist()):  # a list of batches, a nested list of images
        e = partax.partition(net, listed, progress=False)
        np.testing.assert_array_equal(a.table("prefix", 1).keys, e.table("prefix", 1).keys)
    with pytest.raises(ValueError, match="source"):
        partax.partition(net, x.reshape(200, 1, 8, 8), progress=False)
    with pytest.raises(ValueError, match=r"source \(batch 0\): expected inputs \(N, 8, 8, 1\)"):
        partax.partition(net, iter([x.reshape(200, 1, 8, 8)]), progress=False)


def test_tracer_refuses_inputs_of_another_layout(tmp_path):
    """NCHW images flatten to the NHWC size: the tracer must refuse them, not trace other codes."""
    net = conv_pool_net()
    x = RNG.normal(size=(40, 1, 8, 8)).astype(np.float32)
    tracer = partax.Tracer(x, np.zeros(40, int), every=[0], out=str(tmp_path / "t"))
    with pytest.raises(ValueError, match="x"):
        tracer(0, net)
