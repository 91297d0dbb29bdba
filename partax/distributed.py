"""Sharded and multi-host partitions: many devices, many processes, one set of tables.

:func:`partition` gives the same :class:`~partax.partition.Partition` as
:func:`partax.partition` on the concatenation of every process's inputs (identical keys,
counts, label counts, exemplars, totals), while the inputs are split over every device of
a mesh and over every process of a ``jax.distributed`` job. This module is the public
face; the concepts behind it have a module each:

* :mod:`partax.multihost`: meshes (:func:`data_mesh`), processes (:func:`initialize`,
  :func:`process_slice`, :func:`per_process`), host all-gathers, and the status exchanges
  through which a multi-process job fails together (:class:`RemoteInputError`);
* :mod:`partax.sharded_step`: one jitted step on the devices (codes, keys, the local and
  the owner reductions, the all-to-all between them);
* :mod:`partax.sharded_tables`: the owner rows of a step into region tables, tables
  across processes;
* :mod:`partax.sharded`: the engine that runs the steps (how a run goes, what it costs,
  how it fails together, exemplars and labels across processes).

The tables are folded with the single-device engine's accumulator (:mod:`partax.accumulate`)
and finished with its code (:mod:`partax.coarsening`), and both engines check every key
against fingerprints of its code (``collision_check``).

Example:
    >>> import jax, numpy as np, partax
    >>> from partax import distributed
    >>> net = partax.mlp(jax.random.key(0), [3, 16, 8, 2], bias_std=0.3)
    >>> x = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    >>> p = distributed.partition(net, x, progress=False)
    >>> q = partax.partition(net, x, progress=False)
    >>> all(p.table(s, l) == q.table(s, l) for s in p.scopes for l in (1, 2))
    True
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

from partax.codes import codes_and_keys
from partax.multihost import RemoteInputError, allgather, data_mesh, initialize, per_process, process_slice
from partax.nets import Net
from partax.scopes import SCOPES, tables_for
from partax.sharded import partition_one
from partax.sharded_step import META as _META
from partax.sharded_step import step_function
from partax.sources import Sampler, as_source
from partax.validation import check_net
from partax.validation import check_scopes as _validate_scopes

__all__ = [
    "RemoteInputError", "bench_sharded", "data_mesh", "initialize", "partition", "per_process", "process_slice",
]

_allgather = allgather  # the name the multi-process tests use


def partition(
    net: Net,
    source,
    labels=None,
    *,
    mesh: jax.sharding.Mesh | None = None,
    scopes: Sequence[str] = SCOPES,
    batch_size: int | None = None,
    exact: bool = False,
    progress: bool = True,
    boundary_tol: float = 1e-5,
    collision_check: bool = True,
    _timings: dict | None = None,
):
    """Partitions inputs spread over the devices of a mesh and the processes of a job.

    Call it on every process of a ``jax.distributed`` job (or in one process: it then
    shards over the local devices); each process passes its own shard of the data.

    Args:
      net: a :class:`~partax.nets.Net`; a stacked net gives a tuple of Partitions (each
        net is one pass over the source, so the source must be an array or a sampler).
        Every process must pass the same net (checked by a fingerprint of its arrays).
      source: this process's inputs: an array ``[N_p, d_in]``, an iterable of batches
        (``x`` or ``(x, y)``; lengths may differ between processes and need not be known),
        or a sampler (the same sampler on every process is one global stream split between
        processes; different samplers are concatenated in process order, see
        :func:`per_process`). An empty shard is an error, as in :func:`partax.partition`.
      labels: optional ``int[N_p]`` labels for an array source, in ``0 .. 2^31 - 1``.
      mesh: devices to shard over (every axis of the mesh is a data axis); default
        :func:`data_mesh` (every device of every process). A mesh of this process's devices
        only (``data_mesh(jax.local_devices())``) runs without any cross-process
        collective: in a multi-process job each process then partitions its own source
        alone (e.g. different checkpoints per process); any other mesh must span every
        process.
      scopes: as in :func:`partax.partition`.
      batch_size: inputs per *device* per step (default: :func:`~partax.partition.default_batch_size`,
        shrunk for small sources; a multiple of the sampler block for samplers); a step
        holds fewer than ``2^31`` rows over the whole mesh.
      exact: carry the full codes and raise :class:`~partax.codes.HashCollisionError` on
        a key shared by two codes (on device and in the host merges).
      progress: a tqdm bar on process 0.
      boundary_tol: as in :func:`partax.partition`.
      collision_check: as in :func:`partax.partition`: every key is checked against
        fingerprints of its code (per-layer hashes, and check lanes of the layers wider than
        one word) in every reduction, on the devices and on the hosts, and a collision
        raises :class:`~partax.codes.HashCollisionError`; ``False`` trusts the 64-bit keys
        alone.
      _timings: a dict that receives the run's timings (for :func:`bench_sharded`).

    Returns:
      The global :class:`~partax.partition.Partition` on every process (a tuple for a
      stacked net). Exemplars are global stream indices (process ``p``'s inputs after those
      of processes ``0..p-1``).

    Raises:
      ValueError / TypeError: as :func:`partax.partition` (wrong input dimension, an empty
        shard, labels negative, non-integer or above ``2^31 - 1``, NaN or inf inputs, ...),
        and when processes pass different nets, scopes, ``batch_size``, ``exact`` /
        ``collision_check`` or kinds of source. Raised on every process at the same point of
        the run: the process whose input failed raises its own exception (an exception of
        its batch iterator too), every other process a :class:`RemoteInputError` naming that
        process and its message. No process is left waiting in a collective.
      HashCollisionError: two codes under one key, found on the devices or in the final
        tables (on every process), or in one host's merge (on that process; the others
        raise a :class:`RemoteInputError` naming it).
      RemoteInputError: on the processes whose input was fine, when another one failed.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 2])
      >>> x = np.random.default_rng(1).uniform(-1, 1, (101, 2)).astype(np.float32)
      >>> partax.distributed.partition(net, x, progress=False).total
      101
    """
    kw = dict(mesh=mesh, scopes=scopes, batch_size=batch_size, exact=exact, collision_check=collision_check,
              progress=progress, boundary_tol=boundary_tol, _timings=_timings)
    stacked, error = False, None
    try:
        check_net(net)
        stacked = bool(net.stack_shape)
        if stacked:
            src = as_source(source, labels)
            if not (isinstance(src, Sampler) or hasattr(src, "x")):
                raise ValueError(
                    "source: a stacked net is partitioned one net at a time, so the source must be "
                    "an array or a sampler (an iterable of batches can be read only once)"
                )
    except Exception as e:  # reported at the first exchange, where every process raises
        error = e
    if error is not None or not stacked:
        return partition_one(net, source, labels, error=error, **kw)
    if isinstance(src, Sampler):
        return tuple(partition_one(net[i], source, None, **kw) for i in range(net.stack_shape[0]))
    return tuple(partition_one(net[i], source, labels, **kw) for i in range(net.stack_shape[0]))


def _step_fn(mesh, axes, ranges, base, tol, exact, cap, with_sampler, with_labels):
    """The sharded step as :func:`bench_sharded` times it (with the default collision check).

    ``ranges`` and ``base`` are no longer needed: the step ships per-layer hashes, from
    which the host finishes every range key.
    """
    del ranges, base
    return step_function(mesh, axes, tol, exact, not exact, cap, with_sampler, with_labels)


# --- benchmark ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _codes_only_fn(mesh, axes, ranges, with_sampler):
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
    the same batch (best of 5): ``merge_share_of_step`` is the part of a device step spent
    in the local reduction, the all-to-all and the owner reduction. Checks that all
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
      >>> from partax.distributed import bench_sharded
      >>> r = bench_sharded((4, 8, 2), 4096, num_devices=2)  # doctest: +SKIP
      >>> r["agree"]  # doctest: +SKIP
      True
    """
    from partax.nets import mlp
    from partax.partition import partition as single
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
        t, p = best(lambda: partition(net, src, mesh=m, scopes=scopes, batch_size=batch_size, progress=False,
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
        ranges, _ = tables_for(_validate_scopes(scopes), L)
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
        meta = np.zeros((D, _META), np.uint32)
        meta[:, 0], meta[:, 1], meta[:, 3] = np.arange(D) * B, B, np.arange(D)
        meta = jax.device_put(meta, shard)
        full = _step_fn(m, axes, kr, kr.index((1, L)), 1e-5, False, cap, is_s, False)
        codes_only = _codes_only_fn(m, axes, kr, is_s)
        sarg = src if is_s else None

        def step_time(call, k=5):
            jax.block_until_ready(call())
            ts = []
            for _ in range(k):
                t0 = time.perf_counter()
                jax.block_until_ready(call())
                ts.append(time.perf_counter() - t0)
            return min(ts)

        t_full = step_time(lambda: full(net, sarg, xin, None, meta))
        t_codes = step_time(lambda: codes_only(net, sarg, xin))
        res[f"{name}_step_s"] = t_full
        res[f"{name}_step_codes_only_s"] = t_codes
        res[f"{name}_merge_share_of_step"] = max(0.0, 1.0 - t_codes / t_full)
        res[f"{name}_steps"] = -(-n // (B * D))
    res["single_partition_s"] = t_single
    res["single_inputs_per_s"] = n / t_single
    res["speedup_sharded_vs_one_device"] = res["one_device_s"] / res["sharded_s"]
    res["regions"] = {s: p_single.num_regions(s).tolist() for s in p_single.scopes}
    res["agree"] = bool(agree)
    return res
