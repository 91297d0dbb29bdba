"""The sharded engine's key tables on the devices (4 CPU devices, conftest).

Every test compares the sharded partition with the single-device ``partax.partition`` on
the same inputs (both of its reduction paths): the tables (keys, counts, label counts,
exemplars) must be identical on every scope, while most inputs are absorbed by the
devices' tables of known keys and only the misses travel through the all-to-all.
The brute-force oracle of :func:`partax.device_grouping.slot_first_ranks` is NumPy.
"""

import jax
import numpy as np
import pytest

import partax
from partition_checks import assert_same_partition
from partax import distributed as dist
from partax import sharded
from partax.device_grouping import build_key_table, slot_first_ranks

SCOPES = ("layer", "prefix", "suffix")


def _net(widths, seed=0):
    return partax.mlp(jax.random.key(seed), widths, bias_std=0.3)


@pytest.mark.parametrize("kw", [{}, pytest.param({"exact": True}, marks=pytest.mark.slow),
                                pytest.param({"collision_check": False}, marks=pytest.mark.slow)])
def test_hits_are_absorbed_and_tables_match_both_single_device_paths(kw):
    """Many steps of repeating regions: most inputs are hits, yet the tables are the single
    device engine's (host and device reductions), labels with more classes than the hits'
    first label columns (a re-run with more columns)."""
    net = _net([3, 16, 8, 2], seed=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 3)).astype(np.float32)
    y = rng.integers(0, 11, len(x))  # 11 classes > FIRST_CLASSES: the hits' label columns grow
    tim = {}
    p = dist.partition(net, x, y, batch_size=512, progress=False, _timings=tim, **kw)
    assert tim["hits"] > len(x) // 2 and tim["hits"] + tim["misses"] == len(x)
    assert tim["reruns"] >= 1  # the labels overflowed the first label columns
    for reduce in ("host", "device"):
        assert_same_partition(p, partax.partition(net, x, y, reduce=reduce, progress=False, **kw))
    assert p.device_to_host_bytes is not None and p.device_to_host_bytes > 0


def test_tiny_miss_capacity_overflows_and_reruns(monkeypatch):
    """A miss capacity of one row: every step with new regions overflows and is re-run with
    room for all of its inputs; no row is dropped."""
    monkeypatch.setattr(sharded, "ADAPT", False)
    monkeypatch.setattr(sharded, "MIN_MISSES", 1)
    monkeypatch.setattr(sharded, "MISS_FRACTION", 2**30)
    net = _net([4, 12, 8, 2], seed=2)
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (2000, 4)).astype(np.float32)
    y = rng.integers(0, 3, len(x))
    tim = {}
    p = dist.partition(net, x, y, batch_size=128, progress=False, _timings=tim)
    assert tim["capacity"] == 1 and tim["reruns"] >= 2
    assert_same_partition(p, partax.partition(net, x, y, progress=False))


def test_stacked_nets():
    nets = [_net([3, 10, 6, 2], seed=s) for s in range(2)]
    x = np.random.default_rng(2).normal(size=(3000, 3)).astype(np.float32)
    out = dist.partition(partax.stack_nets(nets), x, batch_size=256, progress=False)
    for p, n in zip(out, nets):
        assert_same_partition(p, partax.partition(n, x, reduce="device", progress=False))


@pytest.mark.slow
def test_sampler_one_device_mesh_and_scope_subset():
    net = _net([3, 10, 6, 2], seed=0)
    s = partax.sources.uniform_box(-1.0, 1.0, 20000, jax.random.key(4), block=512)
    tim = {}
    p = dist.partition(net, s, batch_size=512, progress=False, _timings=tim)
    assert tim["hits"] > 10000
    assert_same_partition(p, partax.partition(net, s, progress=False))
    net = _net([5, 20, 9, 3], seed=5)
    x = np.random.default_rng(3).normal(size=(4000, 5)).astype(np.float32)
    m = dist.data_mesh(jax.devices()[:1])
    for scopes in (SCOPES, ("suffix",)):
        assert_same_partition(dist.partition(net, x, mesh=m, scopes=scopes, batch_size=256, progress=False),
              partax.partition(net, x, scopes=scopes, progress=False))


def test_slot_first_ranks_against_brute_force():
    rng = np.random.default_rng(4)
    keys = np.unique(rng.integers(0, 2**63, 40, dtype=np.uint64))
    table = build_key_table(keys, np.zeros((len(keys), 0), np.uint32), np.ones(len(keys)), buckets=8, ways=4)
    x = np.concatenate([keys[rng.integers(0, len(keys), 300)], rng.integers(0, 2**63, 50, dtype=np.uint64)])
    lanes = np.stack([x & np.uint64(0xFFFFFFFF), x >> np.uint64(32)], -1).astype(np.uint32)
    ranks = rng.permutation(len(x)).astype(np.uint32)
    n = 280
    got = np.asarray(slot_first_ranks(table.lanes, lanes, ranks, n))
    for slot in range(len(got)):
        if table.slot_rows[slot] < 0:
            assert got[slot] == 2**32 - 1
            continue
        r = ranks[:n][x[:n] == table.slot_keys[slot]]
        assert got[slot] == (r.min() if r.size else 2**32 - 1)
