"""Sharded (4 CPU devices, conftest) and multi-process (2 x 2 devices, gloo) partitions.

Oracles: a NumPy float64 forward pass with ``np.unique`` over code rows (independent of
partax), and the single-device ``partax.partition`` on the concatenated data (the contract
of ``partax.distributed.partition``: the same Partition).
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import partax
from partition_checks import assert_same_partition
from partax import distributed as dist
from partax import sharded_step  # the step's bucket capacity lives there
from oracle import away_from_boundaries, check_partition

SCOPES = ("layer", "prefix", "suffix")
HERE = os.path.dirname(os.path.abspath(__file__))


def _net(widths, seed=0, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation=activation, bias_std=0.3)


def test_four_devices_are_used():
    assert jax.device_count() == 4
    assert dist.data_mesh().devices.size == 4


@pytest.mark.parametrize(
    "widths, n, batch_size",
    [
        ([2, 5, 1], 1003, 64),  # n not divisible by 4 nor by the batch
        ([3, 33, 7, 2], 777, None),
        ([12, 10, 7, 5, 4, 3, 2], 2050, 128),
    ],
)
def test_matches_float64_oracle_and_single_device(widths, n, batch_size):
    net = _net(widths, activation=("leaky_relu", 0.1) if widths[0] == 3 else "relu")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, widths[0])).astype(np.float32)
    keep, pre = away_from_boundaries(net, x)
    x, pre = x[keep], [z[keep] for z in pre]
    C = 3
    y = rng.integers(0, C, len(x))
    p = dist.partition(net, x, y, batch_size=batch_size, progress=False)
    L = len(pre)
    check_partition(p, pre, y, C, {s: partax.region_ids(net, x, s) for s in SCOPES})
    # keys: the key of each region is the key of its exemplar input
    t = p.table("prefix", L)
    np.testing.assert_array_equal(partax.region_ids(net, x[t.exemplars], "prefix")[:, L - 1], t.keys)
    assert_same_partition(p, partax.partition(net, x, y, progress=False))


def test_sub_meshes_and_scopes_subset():
    net = _net([4, 20, 10, 3], seed=3)
    x = np.random.default_rng(2).uniform(-1, 1, (517, 4)).astype(np.float32)
    q = partax.partition(net, x, scopes=("suffix",), progress=False)
    for k in (1, 3):  # 3: the owner hash over a device count that is not a power of two
        m = dist.data_mesh(jax.devices()[:k])
        assert_same_partition(dist.partition(net, x, mesh=m, scopes=("suffix",), batch_size=64, progress=False), q)


def test_bucket_overflow_reruns_the_step(monkeypatch):
    """Force one-row buckets: every step overflows and is re-run with a larger capacity."""
    monkeypatch.setattr(sharded_step, "initial_cap", lambda B, D: 1)
    net = _net([3, 16, 8, 2], seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(601, 3)).astype(np.float32)
    y = rng.integers(0, 2, 601)
    tim = {}
    p = dist.partition(net, x, y, batch_size=64, progress=False, _timings=tim)
    assert tim["cap"] > 1
    assert_same_partition(p, partax.partition(net, x, y, progress=False))


@pytest.mark.slow  # samplers, iterables and exact mode: also in test_two_processes_all_sources (slow)
def test_sampler_iterable_and_exact():
    net = _net([3, 16, 8, 2], seed=1)
    s = partax.sources.uniform_box(-1.0, 1.0, 5000, jax.random.key(4), block=512)
    p = dist.partition(net, s, batch_size=512, progress=False)
    assert_same_partition(p, partax.partition(net, s, progress=False))
    # exemplars are stream indices of the sampler: they regenerate inputs of their region
    t = p.table("prefix", 2)
    ex = s.bind(3).inputs_at(t.exemplars[:20])
    np.testing.assert_array_equal(partax.region_ids(net, ex, "prefix")[:, 1], t.keys[:20])

    rng = np.random.default_rng(5)
    x = rng.normal(size=(900, 3)).astype(np.float32)
    y = rng.integers(0, 5, 900)
    sizes = [100, 7, 300, 1, 492]
    bounds = np.cumsum([0] + sizes)
    it = ((x[a:b], y[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    q = partax.partition(net, x, y, progress=False)
    assert_same_partition(dist.partition(net, it, batch_size=64, progress=False), q)
    pe = dist.partition(net, x, y, batch_size=64, exact=True, progress=False)
    qe = partax.partition(net, x, y, exact=True, progress=False)
    assert_same_partition(pe, qe)
    np.testing.assert_array_equal(pe.table("layer", 1).exemplar_codes, qe.table("layer", 1).exemplar_codes)


def test_stacked_nets():
    nets = [_net([3, 12, 6, 2], seed=s) for s in range(3)]
    stacked = partax.stack_nets(nets)
    x = np.random.default_rng(6).normal(size=(333, 3)).astype(np.float32)
    out = dist.partition(stacked, x, batch_size=64, progress=False)
    assert isinstance(out, tuple) and len(out) == 3
    for p, n in zip(out, nets):
        assert_same_partition(p, partax.partition(n, x, progress=False))
    with pytest.raises(ValueError, match="source"):
        dist.partition(stacked, iter([x]), progress=False)


def test_bad_input_is_named():
    net = _net([3, 8, 2])
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="source"):
        dist.partition(net, np.zeros((10, 4), np.float32), progress=False)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dist.partition(net, bad, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        dist.partition(net, x, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="scopes"):
        dist.partition(net, x, scopes=("nope",), progress=False)
    with pytest.raises(TypeError, match="mesh"):
        dist.partition(net, x, mesh="data", progress=False)
    with pytest.raises(TypeError, match="net"):
        dist.partition("net", x, progress=False)
    with pytest.raises(ValueError, match="block"):
        dist.partition(net, partax.sources.uniform_box(0.0, 1.0, 100, 0, block=256), batch_size=100)


def test_bad_input_names_the_row_and_the_limit():
    """NaN: the row that holds it (4 devices x 8 rows per step: row 27 is device 3's 4th row
    of step 0, row 45 device 1's 6th row of step 1); labels and step sizes beyond 32 bits."""
    net = _net([3, 8, 2])
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    for row in (27, 45):
        bad = x.copy()
        bad[row, 2] = np.inf
        with pytest.raises(ValueError, match=rf"source: input {row} has a NaN or inf coordinate"):
            dist.partition(net, bad, batch_size=8, progress=False)
    y = np.zeros(64, np.int64)
    y[3] = 2**31
    with pytest.raises(ValueError, match=r"labels: expected labels below 2\^31"):
        dist.partition(net, x, y, progress=False)
    it = iter([(x[:40], np.zeros(40, np.int64)), (x[40:], np.full(24, 2**32, np.int64))])
    with pytest.raises(ValueError, match=r"labels: expected labels below 2\^31"):
        dist.partition(net, it, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"batch_size: .* exceed 2\^31 rows per step"):
        dist.partition(net, x, batch_size=2**29, progress=False)  # 4 devices x 2^29 rows
    # a batch iterator that raises mid-stream: its own exception, unchanged
    def batches():
        yield x[:40]
        raise OSError("reader died")
    with pytest.raises(OSError, match="reader died"):
        dist.partition(net, batches(), batch_size=8, progress=False)
    # and the engine still runs afterwards
    assert_same_partition(dist.partition(net, x, batch_size=8, progress=False), partax.partition(net, x, progress=False))


@pytest.mark.parametrize("where", ["in a step", pytest.param("across steps", marks=pytest.mark.slow)])
def test_check_key_catches_collisions_of_the_key_alone(weak_keys, where):
    """The sharded engine checks keys like the single-device one: a collision of the key alone
    raises, inside a step (the devices' reductions) and across steps (the host merges); with
    ``collision_check=False`` the regions merge silently, into the single-device engine's tables.
    One hidden layer, wider than a word (its check lanes): every scope's table is the base
    table, so only the devices' and the hosts' merges can see the collision."""
    net = _net([2, 40, 1])
    rng = np.random.default_rng(0)
    if where == "in a step":  # 3000 inputs, one step of 1024 rows per device
        x, batch_size = rng.normal(size=(3000, 2)).astype(np.float32), 1024
    else:  # 4 devices x 16 rows per step: each step holds 64 copies of one point, one code
        x, batch_size = np.repeat(rng.normal(scale=3.0, size=(20, 2)).astype(np.float32), 64, axis=0), 16
    assert len(np.unique(partax.region_ids(net, x, "prefix")[:, -1])) <= 4  # the weak keys are in force
    with pytest.raises(partax.HashCollisionError):
        dist.partition(net, x, batch_size=batch_size, scopes=("prefix",), progress=False)
    with pytest.raises(partax.HashCollisionError):
        dist.partition(net, x, batch_size=batch_size, scopes=("prefix",), exact=True, progress=False)
    p = dist.partition(net, x, batch_size=batch_size, collision_check=False, progress=False)
    assert p.num_regions("prefix")[-1] <= 4  # silently merged without the check
    assert_same_partition(p, partax.partition(net, x, collision_check=False, progress=False))
    # the float64 oracle: the inputs do hold more regions than the weak keys can tell apart
    keep, pre = away_from_boundaries(net, x)
    codes = np.concatenate([z[keep] > 0 for z in pre], axis=1)
    assert len(np.unique(codes, axis=0)) > 4


def test_range_key_collisions_are_caught_in_the_final_tables(monkeypatch):
    """Full-code keys stay strong, range keys are weakened (4 keys): the range tables, derived
    on every process from the global base table, catch two codes of a range under one key."""
    from partax import coarsening

    real = coarsening.range_keys
    monkeypatch.setattr(coarsening, "range_keys", lambda h, r: real(h, r) & np.uint64(3))
    net = _net([2, 8, 8, 1])
    x = np.random.default_rng(3).normal(scale=3.0, size=(1000, 2)).astype(np.float32)
    with pytest.raises(partax.HashCollisionError):
        dist.partition(net, x, batch_size=64, progress=False)
    p = dist.partition(net, x, batch_size=64, collision_check=False, progress=False)
    assert p.num_regions("layer").max() <= 4
    assert_same_partition(p, partax.partition(net, x, collision_check=False, progress=False))


# --- two processes on localhost ----------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(tmp_path, cases):
    port = _free_port()
    env = dict(os.environ, PARTAX_WORKER_CASES=",".join(cases), JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_distributed_worker.py"), str(port), str(i), "2", str(tmp_path)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    logs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=150)
            logs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]


def _references(cases):
    sys.path.insert(0, HERE)
    import _distributed_worker as w

    net = w.make_net()
    xs, ys = zip(*(w.shard_data(p) for p in range(2)))
    x, y = np.concatenate(xs), np.concatenate(ys)
    s = partax.sources.uniform_box(-2.0, 2.0, 9000, jax.random.key(7), block=1024).bind(5)
    refs = {}
    if "array" in cases or "iterable" in cases:
        refs["array"] = refs["iterable"] = partax.partition(net, x, y, progress=False)
    if "array_exact" in cases:
        refs["array_exact"] = partax.partition(net, x, exact=True, scopes=("prefix",), progress=False)
    if "sampler_split" in cases:
        refs["sampler_split"] = partax.partition(net, s, progress=False)
    if "sampler_per_process" in cases:  # per_process folds the process index into the key
        import dataclasses

        streams = [dataclasses.replace(s, key=jax.random.fold_in(s.key, p)).inputs_at(np.arange(9000)) for p in (0, 1)]
        refs["sampler_per_process"] = partax.partition(net, np.concatenate(streams), progress=False)
    return {c: refs[c] for c in cases}


def _check_two_processes(tmp_path, cases):
    _run_workers(tmp_path, cases)
    for name, q in _references(cases).items():
        for p in range(2):
            assert_same_partition(partax.load_partition(tmp_path / f"{name}.p{p}.npz"), q)


def test_two_processes_receive_the_global_partition(tmp_path):
    _check_two_processes(tmp_path, ["array"])  # labels, uneven shards


@pytest.mark.slow
def test_two_processes_all_sources(tmp_path):
    _check_two_processes(tmp_path, ["array", "array_exact", "iterable", "sampler_split", "sampler_per_process"])
