import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import partax
from partax import coarsening  # the range keys of both engines are finished there
from oracle import away_from_boundaries, check_partition, relative_margins

SHAPES = [[2, 5, 1], [3, 33, 7, 2], [6, 64, 70, 3], [12, 10, 7, 5, 4, 3, 2]]
SCOPES = ("layer", "prefix", "suffix")


def _net(widths, seed=0, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=activation, bias_std=0.3)


_safe = away_from_boundaries


def _word_spans(widths, first, last):
    """Column spans of each layer's words in the packed code of layers ``first..last``."""
    ends = np.cumsum([0] + [-(-w // 32) for w in widths[first - 1 : last]])
    return list(zip(ends[:-1], ends[1:]))


@pytest.fixture(params=[None, 300, 0], ids=["deferred", "switch-mid-stream", "per-chunk"])
def defer_rows(request, monkeypatch):
    """The engine reduces range tables from the running base table while it holds at most
    ``_DEFER_ROWS`` rows, then chunk by chunk: every path must give the same tables."""

    if request.param is not None:
        monkeypatch.setattr(partax.engine, "_DEFER_ROWS", request.param)
    return request.param


# every shape once in one chunk or in many; the other half of the grid in the slow run
ORACLE_CASES = [
    ([2, 5, 1], None), ([2, 5, 1], 97), ([3, 33, 7, 2], 97), ([6, 64, 70, 3], None),
    pytest.param([12, 10, 7, 5, 4, 3, 2], 97, marks=pytest.mark.slow),  # narrow nets stay: [3, 33, 7, 2]
    pytest.param([3, 33, 7, 2], None, marks=pytest.mark.slow),
    pytest.param([6, 64, 70, 3], 97, marks=pytest.mark.slow),
    pytest.param([12, 10, 7, 5, 4, 3, 2], None, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("widths,batch_size", ORACLE_CASES)
def test_partition_matches_float64_oracle(widths, batch_size, defer_rows):
    net = _net(widths, activation=("leaky_relu", 0.1) if widths[0] == 3 else "relu")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1500, widths[0])).astype(np.float32)
    keep, pre = _safe(net, x)
    x, pre = x[keep], [z[keep] for z in pre]
    C = 3
    y = rng.integers(0, C, len(x))
    p = partax.partition(net, x, y, batch_size=batch_size, progress=False)
    ids = {s: partax.region_ids(net, x, s) for s in SCOPES}
    check_partition(p, pre, y, C, ids)
    assert p.total == len(x)
    # exact mode: the same tables, and each region's code is its exemplar's (float64 signs)
    pe = partax.partition(net, x, y, batch_size=batch_size, exact=True, progress=False)
    L = len(pre)
    for scope in SCOPES:
        for l in range(1, L + 1):
            t = pe.table(scope, l)
            assert t.exemplar_codes is not None and p.table(scope, l).exemplar_codes is None
            assert dataclasses.replace(t, exemplar_codes=None) == p.table(scope, l)
            f, last = {"layer": (l, l), "prefix": (1, l), "suffix": (l, L)}[scope]
            bits = [z[t.exemplars] > 0 for z in pre[f - 1 : last]]
            expect = np.concatenate([np.packbits(b, axis=1, bitorder="little") for b in bits], axis=1)
            got = np.concatenate(
                [t.exemplar_codes[:, a:b].view(np.uint8)[:, : -(-w // 8)] for (a, b), w in
                 zip(_word_spans(net.widths, f, last), net.widths[f - 1 : last])], axis=1
            )
            np.testing.assert_array_equal(got, expect)


def test_near_boundary_counts_inputs_within_tolerance():
    """The tolerance is relative to the dot product's scale: pixel-scale inputs (x 255, a net
    whose first layer is divided by 255: the same function) give the unit-scale count."""
    base = _net([2, 8, 8, 1])
    tol = 0.02
    counts = []
    for scale in (1.0, 255.0):
        arrays = [np.asarray(a) for a in base.arrays()]
        arrays[0] = arrays[0] / np.float32(scale)
        net = partax.Net.from_arrays(arrays)
        x = (np.random.default_rng(2).normal(size=(4000, 2)) * scale).astype(np.float32)
        p = partax.partition(net, x, boundary_tol=tol, progress=False)
        m = relative_margins([np.asarray(a) for a in net.arrays()], x)
        clear = (m > tol * 1.001) | (m < tol * 0.999)  # leave out float32 rounding at the threshold
        expected = int((m <= tol).sum())
        assert abs(p.near_boundary - expected) <= int((~clear).sum())
        assert 0 < p.near_boundary < len(x)
        counts.append(p.near_boundary)
    assert abs(counts[0] - counts[1]) <= 5


def test_sources_agree():
    net = _net([4, 20, 10, 2])
    sampler = partax.sources.uniform_box(-1.0, 1.0, 10_000, jax.random.key(3))
    x = sampler.bind(4).inputs_at(np.arange(10_000))
    a = partax.partition(net, sampler, progress=False)
    b = partax.partition(net, x, progress=False)
    c = partax.partition(net, (x[i : i + 777] for i in range(0, 10_000, 777)), progress=False)
    d = partax.partition(net, jnp.asarray(x), batch_size=4096, progress=False)
    for scope in SCOPES:
        for l in (1, 2):
            assert a.table(scope, l) == b.table(scope, l) == c.table(scope, l) == d.table(scope, l)


def test_sampler_stream_does_not_depend_on_batch_size():
    net = _net([3, 16, 16, 1])
    s = partax.sources.gaussian(0.0, 1.0, 20_000, jax.random.key(0))
    a = partax.partition(net, s, batch_size=4096, progress=False)
    b = partax.partition(net, s, batch_size=4096 * 3, progress=False)
    assert a.table("prefix", 2) == b.table("prefix", 2)


def test_labelled_batches_and_ball_labels():
    net = _net([2, 12, 12, 1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = rng.integers(0, 4, 3000)
    a = partax.partition(net, x, y, progress=False)
    b = partax.partition(net, ((x[i : i + 500], y[i : i + 500]) for i in range(0, 3000, 500)), progress=False)
    assert a.table("suffix", 1) == b.table("suffix", 1)
    centers = np.array([[0.0, 0.0], [3.0, -2.0], [10.0, 10.0]], np.float32)
    ball = partax.sources.ball(centers, 0.5, 1000, jax.random.key(1))
    p = partax.partition(net, ball, progress=False)
    t = p.table("prefix", 2)
    assert t.label_counts.shape[1] == 3 and (t.label_counts.sum(0) == 1000).all()
    xb = ball.inputs_at(np.arange(3000))
    assert (np.linalg.norm(xb - np.repeat(centers, 1000, axis=0), axis=1) <= 0.5 + 1e-6).all()


def test_stacked_nets_equal_one_by_one(defer_rows):
    # different bias scales: the nets' base tables grow at different rates (and so switch
    # from deferred to per-chunk reductions at different chunks)
    nets = [partax.mlp(jax.random.key(s), [3, 9, 40, 2], bias_std=b) for s, b in enumerate((0.01, 0.3, 3.0))]
    stacked = partax.stack_nets(nets)
    x = np.random.default_rng(5).normal(size=(2000, 3)).astype(np.float32)
    keep = np.logical_and.reduce([_safe(net, x)[0] for net in nets])
    x = x[keep]
    y = np.random.default_rng(6).integers(0, 2, len(x))
    many = partax.partition(stacked, x, y, batch_size=97, progress=False)
    assert isinstance(many, tuple) and len(many) == 3
    for net, p in zip(nets, many):
        one = partax.partition(net, x, y, batch_size=97, progress=False)
        for scope in SCOPES:
            for l in (1, 2):
                assert p.table(scope, l) == one.table(scope, l)
        assert p.near_boundary == one.near_boundary
        ids = {s: partax.region_ids(net, x, s) for s in SCOPES}
        check_partition(p, _safe(net, x)[1], y, 2, ids)


@pytest.mark.parametrize(
    "widths, defer, expect",
    [
        ([2, 5, 1], None, "once"),  # few regions: deferred to the end
        ([2, 5, 1], 40, "once"),  # pending rows pass 40, the merged table (16 regions) does not
        ([6, 64, 70, 3], 300, "switch"),  # regions barely repeat: switches after a few chunks
        ([6, 64, 70, 3], 0, "every chunk"),
    ],
)
def test_deferral_paths_are_taken(monkeypatch, widths, defer, expect):
    """Counts the host's range-key computations: one at the end while deferred, one per
    chunk once switched; every path gives the tables of the default one."""

    import partax.engine as engine
    net = _net(widths)
    x = np.random.default_rng(8).normal(size=(1500, widths[0])).astype(np.float32)
    y = np.random.default_rng(9).integers(0, 3, 1500)
    reference = partax.partition(net, x, y, batch_size=97, progress=False)
    calls = []  # rows per range-key computation
    real = coarsening.range_keys

    def counting(hashes, ranges):
        calls.append(hashes.shape[-1])
        return real(hashes, ranges)

    monkeypatch.setattr(coarsening, "range_keys", counting)
    if defer is not None:
        monkeypatch.setattr(engine, "_DEFER_ROWS", defer)
    p = partax.partition(net, x, y, batch_size=97, progress=False)
    chunks = -(-1500 // 97)
    if expect == "once":
        assert len(calls) == 1
    elif expect == "switch":
        assert 1 < len(calls) < chunks
        assert calls[0] > defer // 2  # the switch reduces the running base table at once
    else:
        assert len(calls) == chunks
    for scope in SCOPES:
        for l in range(1, len(widths) - 1):
            assert p.table(scope, l) == reference.table(scope, l)


def test_plane_grid_covers_the_plane():
    net = _net([3, 10, 10, 1])
    g = partax.sources.plane_grid([0, 0, 0], [1, 0, 0], [0, 0, 1], ((-1, 1), (-2, 2)), (30, 40))
    p = partax.partition(net, g, progress=False)
    assert p.total == 1200
    x = g.inputs_at(np.arange(1200))
    assert np.allclose(x[:, 1], 0) and np.isclose(x[:, 0].min(), -1) and np.isclose(x[:, 2].max(), 2)
    assert p.table("prefix", 2) == partax.partition(net, x, progress=False).table("prefix", 2)


def test_save_load_partition(tmp_path):
    net = _net([4, 10, 10, 3])
    x = np.random.default_rng(0).normal(size=(3000, 4)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 3000)
    p = partax.partition(net, x, y, progress=False)
    p.save(tmp_path / "p.npz")
    q = partax.load_partition(tmp_path / "p.npz")
    assert q.widths == p.widths and q.total == p.total and q.near_boundary == p.near_boundary
    for scope in SCOPES:
        for l in (1, 2):
            assert q.table(scope, l) == p.table(scope, l)
    np.testing.assert_array_equal(q.num_regions("prefix"), p.num_regions("prefix"))
    with pytest.raises(ValueError, match="not a partax partition"):
        partax.load_partition(_junk(tmp_path))


def _junk(tmp_path):
    f = tmp_path / "junk.npz"
    np.savez(f, a=np.zeros(2))
    return f


def test_scopes_subset_and_table_errors():
    net = _net([2, 6, 6, 1])
    x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    p = partax.partition(net, x, scopes=("prefix",), progress=False)
    assert p.scopes == ("prefix",)
    with pytest.raises(ValueError, match="not computed"):
        p.table("layer", 1)
    with pytest.raises(ValueError, match="1-based"):
        p.table("prefix", 0)
    with pytest.raises(ValueError, match="1-based"):
        p.table("prefix", 3)


def _bad_calls():
    net = _net([3, 4, 1])
    good = np.zeros((10, 3), np.float32)
    nan = good.copy()
    nan[4, 1] = np.nan
    inf = good.copy()
    inf[9, 0] = np.inf
    return [
        ("wrong dim", lambda: partax.partition(net, np.zeros((10, 4), np.float32)), ValueError, "dimension 3"),
        ("1-d", lambda: partax.partition(net, np.zeros(10, np.float32)), ValueError, r"source: expected a 2-D array"),
        ("nan", lambda: partax.partition(net, nan, progress=False), ValueError, "input 4 has a NaN or inf"),
        ("inf", lambda: partax.partition(net, inf, progress=False), ValueError, "input 9 has a NaN or inf"),
        ("labels length", lambda: partax.partition(net, good, np.zeros(9, int)), ValueError, r"labels: expected shape \(10,\)"),
        ("labels negative", lambda: partax.partition(net, good, -np.ones(10, int)), ValueError, "labels: expected labels >= 0"),
        ("labels float", lambda: partax.partition(net, good, np.full(10, 0.5)), TypeError, "labels: expected integer"),
        ("empty array", lambda: partax.partition(net, np.zeros((0, 3), np.float32)), ValueError, "no inputs"),
        ("empty iterable", lambda: partax.partition(net, iter([])), ValueError, "empty"),
        ("scope", lambda: partax.partition(net, good, scopes=("layer", "middle")), ValueError, "scopes: unknown scope 'middle'"),
        ("net", lambda: partax.partition("net", good), TypeError, "net: expected a partax.Net"),
        ("batch_size", lambda: partax.partition(net, good, batch_size=0), ValueError, "batch_size"),
        ("source type", lambda: partax.partition(net, 3.0), TypeError, "source"),
        ("sampler dim", lambda: partax.partition(net, partax.sources.uniform_box([0, 0], [1, 1], 10, 0)), ValueError, "2-d inputs"),
        ("sampler nan", lambda: partax.sources.uniform_box(np.nan, 1.0, 10, 0), ValueError, "lo: expected finite"),
        ("sampler inf", lambda: partax.sources.gaussian(0.0, np.inf, 10, 0), ValueError, "std: expected finite"),
        ("boundary_tol", lambda: partax.partition(net, good, boundary_tol=None), ValueError, "boundary_tol"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_is_named(case):
    name, call, exc, match = _bad_calls()[case]
    with pytest.raises(exc, match=match):
        call()


def test_memory_does_not_grow_with_the_stream():
    """2^23 uniform samples of [0,1]^12 (400 MB if materialised) cost no more memory than 2^19."""
    import resource

    net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1)
    small = partax.sources.uniform_box(0.0, 1.0, 2**19, jax.random.key(1))
    big = partax.sources.uniform_box(0.0, 1.0, 2**23, jax.random.key(1))
    partax.partition(net, small, progress=False)
    partax.partition(net, small, progress=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    p = partax.partition(net, big, progress=False)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    table_mb = sum(len(p.table(s, l)) for s in SCOPES for l in range(1, 6)) * 48 / 2**20
    assert p.total == 2**23
    assert grown < 150 + 4 * table_mb, f"peak RSS grew by {grown:.0f} MiB"


def test_collision_across_chunks_is_caught(defer_rows):
    """A weakened hash with one key per 4 codes: exact mode catches it across chunks of 64."""

    import partax.coding as codes_module
    strong = codes_module._fmix32
    try:
        codes_module._fmix32 = lambda h: strong(h) & np.uint32(1)
        jax.clear_caches()
        net = _net([2, 30, 30, 1])
        x = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
        with pytest.raises(partax.HashCollisionError):
            partax.partition(net, x, exact=True, batch_size=64, progress=False)
    finally:
        codes_module._fmix32 = strong
        jax.clear_caches()


@pytest.mark.parametrize("across_chunks", [False, True])
def test_range_key_collisions_are_caught(monkeypatch, defer_rows, across_chunks):
    """Full-code keys stay strong, range keys are weakened: exact mode must catch two codes
    of one range under one key, inside a chunk and between chunks, on every path."""
    real = coarsening.range_keys
    net = _net([2, 8, 8, 1])
    rng = np.random.default_rng(3)
    if across_chunks:  # 20 chunks of 64 copies of one point: one code per range per chunk
        monkeypatch.setattr(coarsening, "range_keys", lambda h, r: real(h, r) & np.uint64(0))
        x = np.repeat(rng.normal(scale=3.0, size=(20, 2)).astype(np.float32), 64, axis=0)
    else:
        monkeypatch.setattr(coarsening, "range_keys", lambda h, r: real(h, r) & np.uint64(3))
        x = rng.normal(scale=3.0, size=(1000, 2)).astype(np.float32)
    partax.partition(net, x, batch_size=64, collision_check=False, progress=False)  # unchecked: no error
    with pytest.raises(partax.HashCollisionError):  # the default check key catches it
        partax.partition(net, x, batch_size=64, progress=False)
    with pytest.raises(partax.HashCollisionError):
        partax.partition(net, x, exact=True, batch_size=64, progress=False)


def test_bool_labels_and_big_or_empty_batches():
    net = _net([3, 8, 8, 1])
    x = np.random.default_rng(0).normal(size=(5000, 3)).astype(np.float32)
    y = x[:, 0] > 0
    a = partax.partition(net, x, y, batch_size=512, progress=False)
    batches = [(x[:4900], y[:4900]), (x[4900:4900], y[4900:4900]), (x[4900:], y[4900:])]
    b = partax.partition(net, iter(batches), batch_size=512, progress=False)
    for scope in SCOPES:
        assert a.table(scope, 2) == b.table(scope, 2)
    assert a.table("layer", 1).label_counts.sum(0).tolist() == [int((~y).sum()), int(y.sum())]
