"""The partition engine's two reduction paths (issue 19): ``reduce="device"`` (a table of known
keys on the device, partax.device_grouping) gives the host path's tables bit for bit, and both
match the float64 NumPy oracle, on every scope, with stacked nets, labels and exact mode, with
the device path's capacities forced tiny (overflow re-runs, full buckets, a rebuild per chunk)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import partax
import partax.coding as codes_module
import partax.engine as engine
from partax.device_grouping import absorb_chunk, build_key_table, table_buckets
from oracle import _fmix32, _mix, away_from_boundaries, check_partition, layer_words

SCOPES = ("layer", "prefix", "suffix")


def _net(widths, seed=0, activation="relu", bias_std=0.3):
    return partax.mlp(jax.random.key(seed), widths, activation=activation, bias_std=bias_std)


@pytest.fixture(params=["default", "tiny"])
def knobs(request, monkeypatch):
    """``tiny``: a miss capacity of 2 rows (nearly every chunk overflows and is re-run), two
    buckets of four slots (keys are left out of the table), a rebuild after every chunk."""
    if request.param == "tiny":
        monkeypatch.setattr(engine, "_MIN_MISSES", 2)
        monkeypatch.setattr(engine, "_MISS_FRACTION", 10**9)
        monkeypatch.setattr(engine, "_ADAPT", False)
        monkeypatch.setattr(engine, "_MAX_BUCKETS_CPU", 2)
        monkeypatch.setattr(engine, "_MAX_BUCKETS", 2)
        monkeypatch.setattr(engine, "_REBUILD_MIN", 1)
    return request.param


def _same(a, b):
    assert a.total == b.total and a.near_boundary == b.near_boundary and a.scopes == b.scopes
    for key in a.tables:
        assert a.tables[key] == b.tables[key], key  # keys, counts, label counts, exemplars, codes


@pytest.mark.parametrize("widths,knobs", [
    ([2, 5, 1], "default"),
    ([2, 5, 1], "tiny"),
    ([3, 33, 7, 2], "default"),
    pytest.param([3, 33, 7, 2], "tiny", marks=pytest.mark.slow),
    pytest.param([12, 10, 7, 5, 4, 3, 2], "default", marks=pytest.mark.slow),  # also in the memory test
], indirect=["knobs"])
def test_device_path_matches_host_and_float64_oracle(widths, knobs):
    net = _net(widths, activation=("leaky_relu", 0.1) if widths[0] == 3 else "relu")
    rng = np.random.default_rng(1)
    # repeats: most inputs of later chunks fall in regions of earlier ones (the table's hits)
    x = rng.normal(size=(700, widths[0])).astype(np.float32)
    x = np.concatenate([x, x[rng.integers(0, 700, 800)]])
    keep, pre = away_from_boundaries(net, x)
    x, pre = x[keep], [z[keep] for z in pre]
    y = rng.integers(0, 3, len(x))
    ids = {s: partax.region_ids(net, x, s) for s in SCOPES}
    for exact in (False, True):
        host = partax.partition(net, x, y, batch_size=97, exact=exact, reduce="host", progress=False)
        dev = partax.partition(net, x, y, batch_size=97, exact=exact, reduce="device", progress=False)
        _same(dev, host)
        check_partition(dev, pre, y, 3, ids)
    unchecked = partax.partition(net, x, batch_size=128, collision_check=False, reduce="device", progress=False)
    _same(unchecked, partax.partition(net, x, batch_size=128, collision_check=False, reduce="host", progress=False))


# slow: the default run has stacked nets on the device path in tests/test_sharded_device.py
@pytest.mark.parametrize("knobs", [pytest.param("tiny", marks=pytest.mark.slow),
                                   pytest.param("default", marks=pytest.mark.slow)], indirect=True)
def test_stacked_nets_device_path(knobs):
    nets = [partax.mlp(jax.random.key(s), [3, 9, 40, 2], bias_std=b) for s, b in enumerate((0.01, 0.3, 3.0))]
    x = np.random.default_rng(5).normal(size=(1500, 3)).astype(np.float32)
    x = np.concatenate([x, x[::3]])
    keep = np.logical_and.reduce([away_from_boundaries(net, x)[0] for net in nets])
    x = x[keep]
    y = np.random.default_rng(6).integers(0, 2, len(x))
    stacked = partax.stack_nets(nets)
    dev = partax.partition(stacked, x, y, batch_size=97, reduce="device", progress=False)
    host = partax.partition(stacked, x, y, batch_size=97, reduce="host", progress=False)
    for net, d, h in zip(nets, dev, host):
        _same(d, h)
        ids = {s: partax.region_ids(net, x, s) for s in SCOPES}
        check_partition(d, away_from_boundaries(net, x)[1], y, 2, ids)
    exact = partax.partition(stacked, x, y, batch_size=256, exact=True, reduce="device", progress=False)
    for d, h in zip(exact, partax.partition(stacked, x, y, batch_size=256, exact=True, reduce="host", progress=False)):
        _same(d, h)


@pytest.mark.slow
def test_sources_and_labels_on_the_device_path():
    """A sampler (inputs and labels drawn on the device) and labelled batches (classes appear
    late: the static label columns overflow and the chunk is re-run)."""
    net = _net([2, 12, 12, 1])
    centers = np.array([[0.0, 0.0], [3.0, -2.0], [10.0, 10.0]], np.float32)
    ball = partax.sources.ball(centers, 0.5, 3000, jax.random.key(1))
    kw = dict(batch_size=4096, progress=False)
    _same(partax.partition(net, ball, reduce="device", **kw), partax.partition(net, ball, reduce="host", **kw))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2)).astype(np.float32)
    y = np.arange(3000) // 300  # labels 0..9, class k first met in chunk k: 8 label columns overflow
    batches = lambda: ((x[i : i + 500], y[i : i + 500]) for i in range(0, 3000, 500))
    dev = partax.partition(net, batches(), batch_size=256, reduce="device", progress=False)
    _same(dev, partax.partition(net, batches(), batch_size=256, reduce="host", progress=False))
    assert dev.table("prefix", 2).label_counts.shape[1] == 10


def test_reduce_is_validated_and_auto_picks_by_backend():
    net = _net([2, 4, 1])
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match=r"reduce: expected one of \('auto', 'host', 'device'\), got 'gpu'"):
        partax.partition(net, x, reduce="gpu")
    with pytest.raises(TypeError, match="reduce: expected one of"):
        partax.partition(net, x, reduce=1)
    expect = "host" if jax.default_backend() == "cpu" else "device"
    assert engine.check_reduce("auto") == expect
    assert engine.check_reduce("device") == "device"


def test_nan_input_is_named_on_the_device_path():
    net = _net([3, 4, 1])
    x = np.zeros((300, 3), np.float32)
    x[217, 1] = np.nan
    with pytest.raises(ValueError, match="input 217 has a NaN or inf"):
        partax.partition(net, x, batch_size=64, reduce="device", progress=False)


def test_collisions_are_caught_on_the_device_path(weak_keys):
    """Keys weakened to 4 values, check keys strong: a hit on the device whose check key differs
    from its slot's raises, as do the host's groupings of the misses; exact mode compares the
    codes; without the check the regions merge like on the host path."""
    net = _net([2, 40, 1])
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(scale=3.0, size=(20, 2)).astype(np.float32), 64, axis=0)  # one code per chunk of 64
    assert len(np.unique(partax.region_ids(net, x, "prefix")[:, -1])) <= 4
    for exact in (False, True):
        with pytest.raises(partax.HashCollisionError):
            partax.partition(net, x, batch_size=64, exact=exact, reduce="device", progress=False)
    merged = partax.partition(net, x, batch_size=64, collision_check=False, reduce="device", progress=False)
    assert merged.num_regions("prefix")[-1] <= 4
    _same(merged, partax.partition(net, x, batch_size=64, collision_check=False, reduce="host", progress=False))


def test_device_hits_compare_values():
    """absorb_chunk against NumPy: counts per slot and label, misses in order, the overflow
    flag, and a hit whose value differs from its slot's (a collision)."""
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 2**63, 50, dtype=np.int64).astype(np.uint64) * np.uint64(3))
    values = rng.integers(0, 2**32, (len(keys), 2), dtype=np.uint32)
    table = build_key_table(keys, values, rng.integers(1, 100, len(keys)), buckets=32, ways=2)
    held = table.slot_rows[table.slot_rows >= 0]
    rows = rng.integers(0, len(keys), 400)
    new = np.array([5, 7], np.uint64)  # keys the table lacks
    q = np.concatenate([keys[rows], new])
    qv = np.concatenate([values[rows], np.zeros((2, 2), np.uint32)])
    labels = rng.integers(0, 3, len(q)).astype(np.int32)
    lanes = np.stack([q & np.uint64(0xFFFFFFFF), q >> np.uint64(32)], -1).astype(np.uint32)
    n = len(q) - 10  # the last 10 rows are padding
    out = absorb_chunk(table.lanes, table.values, lanes, qv, labels, n, 3, 512)
    in_table = np.isin(q, keys[held]) & (np.arange(len(q)) < n)
    slot_of = {int(k): s for s, k in enumerate(table.slot_keys) if table.slot_rows[s] >= 0}
    expect = np.zeros(len(table.slot_keys), np.int64)
    expect_lc = np.zeros((len(table.slot_keys), 3), np.int64)
    for i in np.flatnonzero(in_table):
        expect[slot_of[int(q[i])]] += 1
        expect_lc[slot_of[int(q[i])], labels[i]] += 1
    np.testing.assert_array_equal(np.asarray(out.counts), expect)
    np.testing.assert_array_equal(np.asarray(out.label_counts), expect_lc)
    misses = np.flatnonzero(~in_table & (np.arange(len(q)) < n))
    assert int(out.num_misses) == len(misses) and not bool(out.overflow) and not bool(out.collided)
    np.testing.assert_array_equal(np.asarray(out.misses)[: len(misses)], misses)
    assert bool(absorb_chunk(table.lanes, table.values, lanes, qv, labels, n, 3, len(misses) - 1).overflow)
    assert bool(absorb_chunk(table.lanes, table.values, lanes, qv, labels, n, 2, 512).overflow)  # label 2 >= 2 classes
    hit = int(np.flatnonzero(in_table)[3])
    bad = qv.copy()
    bad[hit, 1] ^= 1
    out = absorb_chunk(table.lanes, table.values, lanes, bad, labels, n, 3, 512)
    assert bool(out.collided) and table.slot_keys[int(out.collided_slot)] == q[hit]


def test_key_table_keeps_the_heaviest_keys_of_a_full_bucket():
    keys = np.array([1, 3, 5, 7, 9, 2], np.uint64)  # odd keys: bucket 1 of 2; 2: bucket 0
    weights = np.array([1, 50, 2, 40, 3, 1])
    t = build_key_table(keys, np.zeros((6, 0), np.uint32), weights, buckets=2, ways=2)
    held = set(t.slot_keys[t.slot_rows >= 0].tolist())
    assert held == {3, 7, 2} and t.dropped == 3
    assert table_buckets(10**4, 4) * 4 >= 2 * 10**4 and table_buckets(10, 4) == 1024
    with pytest.raises(ValueError, match="buckets: expected a power of two"):
        build_key_table(keys, np.zeros((6, 0), np.uint32), weights, buckets=3)


def _check_key_oracle(bits_rows, widths):
    """The check key of the full code, written out from partax.coding's docstring: per layer the
    key lanes' seeds for one-word layers, the check seeds for wider ones, the check salt."""
    key_seeds, check_seeds, salt = (0x9E3779B1, 0x85EBCA77), (0x27D4EB2F, 0x165667B1), 0x61C88647
    lanes = []
    for lane in range(2):
        total = 0
        for l, row in enumerate(bits_rows, start=1):
            words = layer_words(row)
            h = (check_seeds if len(words) > 1 else key_seeds)[lane]
            for w in words:
                h = _mix(h, w)
            h = _fmix32(h ^ len(words))
            total = (total + _fmix32(h ^ ((l * salt) & 0xFFFFFFFF))) & 0xFFFFFFFF
        lanes.append(_fmix32(total ^ len(bits_rows)))
    return lanes


def test_full_check_keys_from_the_payload():
    widths = [3, 40, 7, 70, 2]
    net = _net(widths)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    _, _, checks, hashes, _, _ = jax.jit(codes_module.codes_hashes_and_checks)(net, jnp.asarray(x))
    got = codes_module.full_check_keys(np.asarray(hashes), net.widths)
    np.testing.assert_array_equal(got, np.asarray(checks))
    c = partax.codes(net, x)
    for i in range(4):
        assert got[i].tolist() == _check_key_oracle([c.bits(l)[i] for l in (1, 2, 3)], net.widths)
    with pytest.raises(ValueError, match="hash_rows: expected 10 rows"):
        codes_module.full_check_keys(np.asarray(hashes)[:3], net.widths)


@pytest.mark.slow
def test_device_path_moves_less():
    """The IB net on 2^17 uniform inputs: a few bytes per input leave the device on the device
    path (the host path fetches every input's keys and hashes); the tables are the same."""
    net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1)
    src = partax.sources.uniform_box(0.0, 1.0, 2**17, jax.random.key(1))
    host = partax.partition(net, src, reduce="host", progress=False)
    dev = partax.partition(net, src, reduce="device", progress=False)
    _same(dev, host)
    # the first chunks are all new regions (misses); later ones are mostly hits on the table
    assert dev.device_to_host_bytes < host.device_to_host_bytes / 1.5


@pytest.mark.slow
def test_device_path_memory_stays_bounded():
    """The IB net on 2^20 uniform inputs on the device path costs no more memory than 2^18."""
    import resource

    net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1)
    small = partax.sources.uniform_box(0.0, 1.0, 2**18, jax.random.key(1))
    big = partax.sources.uniform_box(0.0, 1.0, 2**20, jax.random.key(1))
    host = partax.partition(net, small, reduce="host", progress=False)
    dev = partax.partition(net, small, reduce="device", progress=False)
    _same(dev, host)
    assert dev.device_to_host_bytes < host.device_to_host_bytes / 3
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    p = partax.partition(net, big, reduce="device", progress=False)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    table_mb = sum(len(p.table(s, l)) for s in SCOPES for l in range(1, 6)) * 48 / 2**20
    assert p.total == 2**20
    assert grown < 150 + 4 * table_mb, f"peak RSS grew by {grown:.0f} MiB"


@pytest.mark.parametrize("tol", [1e-5, 3e-3])  # 3e-3: more rows flagged than the compacted batch holds
def test_screened_near_boundary_flags_are_the_exact_ones(tol):
    """Narrow nets screen the near-boundary test (a per-net bound on ||h||, the exact test on the
    flagged rows only): the flags equal the exact test's and the float64 relative margins'."""
    from oracle import relative_margins

    net = _net([12, 10, 7, 5, 4, 3, 2], bias_std=0.1, activation=("leaky_relu", 0.2))
    assert codes_module.screens_near(net, tol) and not codes_module.screens_near(_net([100, 8, 1]), tol)
    x = np.random.default_rng(0).random((8192, 12), dtype=np.float32)
    run = jax.jit(codes_module.codes_hashes_and_checks, static_argnames=("boundary_tol", "screen"))
    screened = np.asarray(run(net, x, boundary_tol=tol, screen=True)[4])
    exact = np.asarray(run(net, x, boundary_tol=tol, screen=False)[4])
    np.testing.assert_array_equal(screened, exact)
    m = relative_margins([np.asarray(a) for a in net.arrays()], x, 0.2)
    clear = (m > tol * 1.001) | (m < tol * 0.999)
    np.testing.assert_array_equal(screened[clear], (m <= tol)[clear])
    assert 0 < screened.sum() < len(x)


@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize("width", [3, 40, 784])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_non_finite_coordinate_is_named(path, width, bad):
    """The engine's finite flags (a float sum of ``x * 0``, partax.engine) against NumPy's
    ``isfinite(x).all(1)``: each of NaN, +inf, -inf at any column is found, the first bad row
    named; huge finite values (whose sum overflows) and -0.0 are not flagged."""
    net = _net([width, 4, 1])
    x = np.random.default_rng(width).uniform(-1, 1, (300, width)).astype(np.float32)
    x[5] = np.finfo(np.float32).max  # a row whose sum would overflow: still finite
    x[6, -1] = -0.0
    partax.partition(net, x, batch_size=64, reduce=path, progress=False)  # no error
    for row, col in [(217, width - 1), (64, 0), (299, width // 2)]:
        y = x.copy()
        y[row, col] = bad
        y[row + 1 if row < 299 else 0, 0] = bad  # a later (or earlier) bad row too
        first = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
        with pytest.raises(ValueError, match=f"input {first} has a NaN or inf"):
            partax.partition(net, y, batch_size=64, reduce=path, progress=False)
