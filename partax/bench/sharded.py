"""The sharded-engine workload of ``partax bench``: the IB net on a mesh of devices.

On a CPU host the workload's own process gets 4 virtual devices (:data:`ENVIRONMENT`).
:func:`bench_sharded` times the sharded engine on a one-device and a ``k``-device mesh next to
the single-device engine, and the merge's share of a device step (the step against a
codes-only step).

Example:
    >>> from partax.bench.sharded import ENVIRONMENT
    >>> ENVIRONMENT["XLA_FLAGS"]
    '--xla_force_host_platform_device_count=4'
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from partax import distributed
from partax.coding import codes_and_keys
from partax.multihost import data_mesh
from partax.scopes import SCOPES, tables_for
from partax.coarsening import PayloadLayout
from partax.device_grouping import table_buckets
from partax.sharded import MAX_BUCKETS, MAX_BUCKETS_CPU, WAYS, known_keys, miss_capacities
from partax.sharded_step import META, S_DISTINCT, initial_cap, step_function
from partax.sharded_tables import step_table
from partax.tables import RegionTable
from partax.sources import Sampler
from partax.validation import check_scopes

__all__ = ["NAME", "ENVIRONMENT", "bench_sharded", "entry", "markdown", "readme_text"]

NAME = "sharded"
# environment variables of the workload's own process (``partax.bench.run`` with ``isolate``)
ENVIRONMENT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def step_fn(mesh, axes, tol, exact, cap, capacity, with_sampler, with_labels):
    """The sharded step as :func:`bench_sharded` times it (with the default collision check,
    one process, no labels)."""
    return step_function(mesh, axes, tol, exact, not exact, cap, capacity, 1, False, with_sampler, with_labels)


def seeded_table(m, net, sarg, xin, meta, B: int, exact: bool, with_sampler: bool):
    """The key table a step runs with once the first step's regions seed it (as the engine does).

    Runs the step on an empty table (every input a miss), builds the owned table from its
    owner rows and returns ``(known, capacity)``: the seeded :class:`~partax.sharded.KnownKeys`
    and the miss capacity the engine picks after that step.
    """
    axes = tuple(m.axis_names)
    D = int(m.devices.size)
    shard = NamedSharding(m, P(axes))
    devs = sorted(shard.addressable_devices_indices_map((D * B,)).items(), key=lambda kv: kv[1][0].start or 0)
    devs = [d for d, _ in devs]
    layout = PayloadLayout(net.widths, exact, not exact)
    empty = known_keys(RegionTable.empty(None, layout.width), layout, table_buckets(0, WAYS), shard, devs)
    f = step_fn(m, axes, 1e-5, exact, B, B, with_sampler, False)
    out, nown, stats, _ = f(net, sarg, xin, None, meta, empty.lanes, empty.values)
    counts = {s.device: int(np.asarray(s.data)[0]) for s in nown.addressable_shards}
    shards = [np.asarray(s.data[: counts[s.device]]) for s in out.addressable_shards if counts[s.device]]
    table = step_table(shards, B, np.zeros(D, np.int64), np.arange(D) * B, layout, False)
    buckets = min(MAX_BUCKETS_CPU if jax.default_backend() == "cpu" else MAX_BUCKETS,
                  table_buckets(len(table), WAYS))
    known = known_keys(table, layout, buckets, shard, devs, 1)
    need = int(np.asarray(stats)[:, S_DISTINCT].max()) // 4
    return known, next((c for c in miss_capacities(B) if c >= 2 * need), B)


@functools.lru_cache(maxsize=16)
def codes_only_fn(mesh, axes, ranges, with_sampler):
    spec = P(axes)

    def body(net, sampler, xin):
        x = sampler.generate(xin).astype(net.dtype) if sampler is not None else xin
        _, keys, near, _ = codes_and_keys(net, x, ranges, 0.0)
        return keys, jax.lax.psum(jnp.sum(near), axes)

    f = jax.shard_map(body, mesh=mesh, in_specs=(P(), P() if with_sampler else None, spec),
                      out_specs=(spec, P()), check_vma=False)
    return jax.jit(f)


def bench_sharded(
    widths: Sequence[int] = (12, 10, 7, 5, 4, 3, 2),
    n: int = 2**20,
    *,
    num_devices: int | None = None,
    source: str = "uniform",
    batch_size: int | None = None,
    scopes: Sequence[str] = SCOPES,
    seed: int = 0,
    repeats: int = 1,
) -> dict:
    """Times the sharded partition on ``num_devices`` devices against one device.

    Runs, on the same inputs (uniform in ``[0, 1]^d``, drawn on the device by a sampler):
    the single-device :func:`partax.partition`, and :func:`partition` on a one-device mesh
    and on a ``num_devices`` mesh (end to end, best of ``repeats``). For each mesh it also
    times one step of the sharded kernel against the bare sharded codes-and-keys kernel on
    the same batch (best of 5), in the steady state (the key table seeded by a first step of
    the same inputs, the engine's miss capacity): ``merge_share_of_step`` is the part of a
    device step spent in the key table's lookup and counts and in the misses' local
    reduction, all-to-all and owner reduction. Also reports the share of inputs the key
    tables absorbed (``hit_fraction``) and the bytes fetched per input. Checks that all
    partitions agree.

    Args:
      widths: ``[d_in, n_1, ..., n_L, d_out]``.
      n: number of inputs.
      num_devices: devices of the sharded mesh (default: every local device).
      source: ``"uniform"`` (a sampler) or ``"array"`` (host array, shipped per step).
      batch_size: per-device inputs per step (default: the engine's).
      repeats: best of ``repeats`` timed runs after one warm-up.

    Returns:
      A JSON-ready dict: seconds per run, inputs/s, per-step times and the merge's share
      of a step, regions per scope, and ``agree``.

    Example:
      >>> from partax.bench.sharded import bench_sharded
      >>> r = bench_sharded((4, 8, 2), 4096, num_devices=2)  # doctest: +SKIP
      >>> r["agree"]  # doctest: +SKIP
      True
    """
    from partax.nets import mlp
    from partax.engine import partition as single
    from partax.sources import uniform_box

    net = mlp(jax.random.key(seed), list(widths), bias_std=0.1)
    devs = jax.local_devices()
    k = len(devs) if num_devices is None else int(num_devices)
    if not 1 <= k <= len(devs):
        raise ValueError(f"num_devices: expected 1..{len(devs)}, got {num_devices!r}")
    src = uniform_box(0.0, 1.0, n, jax.random.key(seed + 1), dim=widths[0])
    if source == "array":
        src = np.asarray(src.inputs_at(np.arange(n)))
    elif source != "uniform":
        raise ValueError(f"source: expected 'uniform' or 'array', got {source!r}")

    def best(f):
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = f()
            ts.append(time.perf_counter() - t0)
        return min(ts), out

    t_single, p_single = best(lambda: single(net, src, scopes=scopes, batch_size=None if batch_size is None else batch_size, progress=False))
    res = {"widths": list(widths), "n": n, "source": source, "devices": k, "backend": jax.default_backend()}
    agree = True
    for name, m in (("one_device", data_mesh(devs[:1])), ("sharded", data_mesh(devs[:k]))):
        tim = {}
        t, p = best(lambda: distributed.partition(net, src, mesh=m, scopes=scopes, batch_size=batch_size, progress=False,
                                      _timings=tim.clear() or tim))
        agree &= all(p.table(s, l) == p_single.table(s, l) for s in p.scopes for l in range(1, net.num_hidden + 1))
        res[f"{name}_s"] = t
        res[f"{name}_inputs_per_s"] = n / t
        res[f"{name}_finish_s"] = tim.get("finish_s")
        res[f"{name}_batch_size"] = tim.get("batch_size")
        res[f"{name}_cap"] = tim.get("cap")
        # one step of the same shapes, timed on device: full step vs codes-and-keys only
        B, cap = tim["batch_size"], tim["cap"]
        L = net.num_hidden
        ranges, _ = tables_for(check_scopes(scopes), L)
        kr = ranges if (1, L) in ranges else ranges + ((1, L),)
        D = int(m.devices.size)
        axes = tuple(m.axis_names)
        shard = NamedSharding(m, P(axes))
        is_s = isinstance(src, Sampler)
        if is_s:
            per = B // src.block
            xin = jax.device_put(np.arange(per * D, dtype=np.int32), shard)
        else:
            xin = jax.device_put(np.asarray(src[: B * D]), shard)
        meta = np.zeros((D, META), np.uint32)
        meta[:, 0], meta[:, 1], meta[:, 3] = np.arange(D) * B, B, np.arange(D)
        meta = jax.device_put(meta, shard)
        codes_only = codes_only_fn(m, axes, kr, is_s)
        sarg = src if is_s else None
        # the steady state: the table seeded by a step of the same inputs, the engine's miss capacity
        known, capacity = seeded_table(m, net, sarg, xin, meta, B, False, is_s)
        full = step_fn(m, axes, 1e-5, False, min(capacity, max(cap, initial_cap(capacity, D))), capacity, is_s, False)

        def step_time(call, k=5):
            jax.block_until_ready(call())
            ts = []
            for _ in range(k):
                t0 = time.perf_counter()
                jax.block_until_ready(call())
                ts.append(time.perf_counter() - t0)
            return min(ts)

        t_full = step_time(lambda: full(net, sarg, xin, None, meta, known.lanes, known.values))
        t_codes = step_time(lambda: codes_only(net, sarg, xin))
        res[f"{name}_step_s"] = t_full
        res[f"{name}_step_codes_only_s"] = t_codes
        res[f"{name}_merge_share_of_step"] = max(0.0, 1.0 - t_codes / t_full)
        res[f"{name}_steps"] = -(-n // (B * D))
        res[f"{name}_capacity"] = capacity
        res[f"{name}_hit_fraction"] = tim["hits"] / n
        res[f"{name}_device_to_host_bytes_per_input"] = tim["device_to_host_bytes"] / n
    res["single_partition_s"] = t_single
    res["single_inputs_per_s"] = n / t_single
    res["speedup_sharded_vs_one_device"] = res["one_device_s"] / res["sharded_s"]
    res["regions"] = {s: p_single.num_regions(s).tolist() for s in p_single.scopes}
    res["agree"] = bool(agree)
    return res


def entry(quick: bool) -> dict:
    """The ``sharded`` entry: the IB net on 2^18 (quick) or 2^20 uniform inputs.

    Args:
      quick: the quick size (and one repeat instead of two).

    Returns:
      ``{"name": "sharded", **bench_sharded(...)}``.
    """
    n = 2**18 if quick else 2**20
    return {"name": NAME, **bench_sharded((12, 10, 7, 5, 4, 3, 2), n, repeats=1 if quick else 2)}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    return [
        f"IB net on {w['n']:,} uniform inputs: single-device engine {w['single_partition_s']:.2f} s; "
        f"sharded engine on 1 device {w['one_device_s']:.2f} s (merge {w['one_device_merge_share_of_step']:.0%} "
        f"of a step), on {w['devices']} devices {w['sharded_s']:.2f} s (merge "
        f"{w['sharded_merge_share_of_step']:.0%}); results agree: {w['agree']}."
    ]


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause.
    """
    return (
        f"the sharded engine on {w['n']:,} IB inputs: {w['one_device_s']:.2f} s on a one-device mesh, "
        f"{w['sharded_s']:.2f} s on {w['devices']} virtual devices of the same cores (merge "
        f"{w['one_device_merge_share_of_step']:.0%} and {w['sharded_merge_share_of_step']:.0%} of a step), "
        f"{w['single_partition_s']:.2f} s for `partax.partition`; tables agree: {w['agree']}"
    )
