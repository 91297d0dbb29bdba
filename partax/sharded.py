"""The sharded partition engine: many devices, many processes, one set of tables.

:func:`partition_one` (behind :func:`partax.distributed.partition`) gives the same
:class:`~partax.engine.Partition` as :func:`partax.partition` on the concatenation of
every process's inputs (identical keys, counts, label counts, exemplars, totals), while the
inputs are split over every device of a mesh and over every process of a
``jax.distributed`` job.

How a run goes
--------------
1. *Agreement* (one small all-gather of a few integers per process): input dimension,
   labels or not, the size of each process's shard (``-1`` for an iterable of unknown
   length), a fingerprint of a sampler. Every process then knows the offset of its inputs
   in the global stream: process ``p``'s inputs come after those of processes ``0..p-1``.
2. *Steps*. In each step every device of the mesh takes ``batch_size`` inputs (the
   process's next chunk, split over its devices; a process that ran out feeds an empty,
   masked chunk) and runs one jitted step (:mod:`partax.sharded_step`): codes, the key of
   every input's full code and its per-layer hashes, a local reduction by ``(key, label)``,
   an all-to-all that sends every distinct row to its *owner* device, and the owner's
   reduction. The host of each owner device turns the owner's rows into a table keyed by
   full code (:mod:`partax.sharded_tables`) and folds it into a running table with the
   single-device engine's accumulator (:mod:`partax.accumulate`). Owners hold disjoint key
   sets, so a process only ever holds the keys its devices own: about
   ``M_global * D_local / D`` rows, not the ``D`` overlapping per-device tables.
3. *Final gather*: the per-process owned tables are all-gathered to every process once, at
   the end (the contract: every process receives the global tables); the host then derives
   every scope's table from the full-code table with :mod:`partax.coarsening`, the code
   :func:`partax.partition` uses (every range key is a function of the per-layer hashes,
   carried as the rows' payload).

The collision check. With ``collision_check`` (the default) or ``exact``, every reduction
compares the payloads of the rows it joins (per-layer hashes, check lanes of wide layers:
fingerprints of the code; in exact mode the code words too): on the devices (a flag in the
step's replicated statistics: :class:`~partax.coding.HashCollisionError` on every process),
in the host merges, and in the range tables at the end (every process derives them from
the same global table: raised on every process). A collision found by one host's merge is
reported like any host failure (below): that process raises the
:class:`~partax.coding.HashCollisionError`, the others a :class:`RemoteInputError` naming it.

Why this merge, and what it costs
---------------------------------
* An all-gather of per-device tables costs every host ``sum_d M_d`` rows (up to ``D`` times
  the ``M`` distinct regions when devices see the same regions) and leaves all the reducing
  to every host. Owner buckets cost each device ``O(batch_size)`` rows per step whatever the
  number of regions, keep the per-step network traffic at about the number of *locally
  distinct* rows (``<= batch_size`` per device), and spread the reduction over devices and
  hosts; tens of millions of distinct regions per device only grow the host-side owned
  table (``M_global / D`` rows per device), never the device buffers.
* Device memory per step, with ``W = 5 + 2L (+ 2 L_w with the check) (+ code words in exact
  mode)`` ``uint32`` lanes per row (``L`` hidden layers, ``L_w`` of them wider than 32
  units): the local sort of ``B`` rows, the send and receive buffers of ``D * cap`` rows
  each and the owner sort of ``D * cap`` rows: about ``4 * (2 B + 3 D cap) * W`` bytes.
  ``cap`` starts at ``~2 B / D`` (power of two, at most ``B``): hashing spreads rows evenly,
  so buckets overflow only when a device has far more distinct rows for one owner than
  average; every device learns the largest bucket from the step's statistics, and an
  overflowing step is re-run with a larger ``cap`` (all processes agree, since they read
  the same replicated value). ``cap = B`` never overflows.
* Cost of the merge per step: two three-key sorts (``B`` and ``D * cap`` rows), one
  all-to-all of ``D * cap * W * 4`` bytes per device. It grows with the number of *distinct
  rows per step*, not with inputs.
* Host cost: the owned rows per step (at most ``2 B`` per device) cross to the host and
  are merged into the owned table; the final all-gather ships ``M_global`` rows to each
  process.

Failing together
----------------
A bad input on one process must never leave the others waiting in a collective. Every
process therefore reaches the same exchanges in the same order (:mod:`partax.multihost`),
and carries its own status into each:

* *Before the first step*, local checks (net, scopes, mesh, source, dimension, an empty
  shard, labels negative / non-integer / ``>= 2^31``, ``batch_size``) are caught, not
  raised: the first exchange (the agreement above) carries a status word with the
  agreement words. It also compares fingerprints of the net, the scopes / tolerance /
  mesh and ``batch_size``: processes that disagree would run different steps.
* *In each step*, every device's meta row carries its host's status (1 once the host
  caught an exception: a batch iterator that raised, a bad batch, a failed host merge);
  a failing process keeps dispatching (empty, masked) steps, so it still takes part. The
  step all-gathers a small row of ``int32`` statistics per device, so every process reads
  the same statuses and NaN counts, per process, after the step.
* *After the last step*, a last exchange carries the status (e.g. a failed final merge)
  with each shard's size and class count.

When any status is set (or any process saw NaN / inf inputs), every process takes part in
one more all-gather of ``1 KiB`` per process (each failing process's exception type and
message) and raises: the failing process its own exception (the iterator's own
exception too), every other process a :class:`RemoteInputError`, e.g.
``process 1 failed in step 3: RuntimeError: reader died``. Host-side failures noticed while
a step is in flight are reported with the next step dispatched. A failed call leaves the
processes in step: the next call runs normally. With a mesh of this process's devices only
there are no exchanges and errors are raised directly. The exchanges cost one all-gather of
``12`` words per process before and after the run, and ``9`` words per device per step.

Counters, exemplars, labels
---------------------------
Per-step device counters are ``int32`` / ``uint32`` (x64 off): a step holds fewer than
``2^31`` rows over the whole mesh (``D * batch_size < 2^31``, checked), so no count, rank or
segment index of a step can wrap. Everything summed across steps is ``int64`` on the host.
Global indices can exceed ``2^31``, so they never travel: a row carries its *step rank*
(rows of a step ranked in global stream order, by process then local index; device ``j`` of
the ranking holds ranks ``j B .. j B + B - 1``), and the host maps it back
(:mod:`partax.sharded_tables`). Labels travel as part of the reduction key (a row is one
``(region, label)`` pair), so no class count has to be agreed before the run and device
buffers do not grow with the number of classes.

Samplers
--------
If every process passes the *same* sampler (checked by a fingerprint of its key and
parameters), the stream is split: process ``p`` takes a contiguous range of the sampler's
blocks, and the result, exemplars included, is exactly ``partax.partition(net, sampler)``.
If the samplers differ (e.g. :func:`partax.distributed.per_process`), each process
contributes its own whole stream and the global stream is their concatenation in process
order.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.sharded import partition_one
    >>> net = partax.mlp(jax.random.key(0), [3, 16, 8, 2], bias_std=0.3)
    >>> x = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    >>> p = partition_one(net, x, None, progress=False)
    >>> p.table("prefix", 2) == partax.partition(net, x, progress=False).table("prefix", 2)
    True
"""

from __future__ import annotations

import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import partax.accumulate as accumulate  # looked up per run (the failure tests inject merges)
from partax.coarsening import PayloadLayout, finish_tables, range_tables
from partax.grouping import collision_error
from partax.multihost import (allgather_rows, data_mesh, digest, host_exchange, is_collective, net_fingerprint,
                              raise_together, sampler_fingerprint)
from partax.engine import Partition, default_batch_size
from partax.scopes import SCOPES, tables_for
from partax import sharded_step  # looked up per run (the tests force tiny buckets)
from partax.sharded_step import (META, S_BAD, S_BUCKET, S_COLLIDE, S_DEV, S_FIRST_BAD, S_NEAR, S_PROC, S_STATUS,
                                 S_VALID)
from partax.sharded_tables import decode_exemplars, from_words, step_table, to_words
from partax.sources import Chunk, Sampler, as_source
from partax.tables import RegionTable, merge_tables
from partax.validation import (check_batch_size, check_flag, check_labels_below, check_scopes, check_tolerance,
                               nonfinite_error)

__all__ = ["LABEL_BITS", "MAX_ROWS_PER_STEP", "partition_one"]

LABEL_BITS = 31  # labels travel as uint32 words (all ones marks padding rows)
MAX_ROWS_PER_STEP = 2**31  # keeps every per-step device counter (int32 / uint32) exact


def _device_order(sharding, global_rows: int):
    """Addressable devices of ``sharding`` in the order of their rows in the global array."""
    idx = sharding.addressable_devices_indices_map((global_rows,))
    return sorted(idx, key=lambda d: (idx[d][0].start or 0))


def _put(sharding, devices, parts, global_shape):
    arrs = [jax.device_put(p, d) for p, d in zip(parts, devices)]
    return jax.make_array_from_single_device_arrays(global_shape, sharding, arrs)


def _check_labels_travel(labels, name: str = "labels") -> None:
    check_labels_below(labels, LABEL_BITS, "they travel as 32-bit words", name)


def _local_checks(net, source, labels, mesh, scopes, batch_size, exact, collision_check, boundary_tol, collective):
    """This process's checks before the first exchange: ``(settings, info words)``."""
    scopes = check_scopes(scopes)
    tol = check_tolerance(boundary_tol)
    check = check_flag(collision_check, "collision_check") and not exact  # exact compares the codes themselves
    mesh = data_mesh() if mesh is None else mesh
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    mesh_procs = {d.process_index for d in mesh.devices.flat}
    if collective and len(mesh_procs) != jax.process_count():
        raise ValueError(
            "mesh: expected either devices of this process only or devices of every process "
            f"(this mesh spans processes {sorted(mesh_procs)} of {jax.process_count()})"
        )
    src = as_source(source, labels, dim=net.input_dim, input_shape=net.input_shape)
    is_sampler = isinstance(src, Sampler)
    block = src.block if is_sampler else 1
    if is_sampler and -(-src.num_inputs // block) > 2**31:
        raise ValueError(f"source: expected a sampler of at most 2^31 blocks, got {src.num_inputs} inputs "
                         f"in blocks of {block}")
    if batch_size is not None:
        batch_size = check_batch_size(batch_size, block)
    if getattr(src, "labels", None) is not None:
        _check_labels_travel(src.labels)
    # what the processes must agree on (fingerprints only matter across processes)
    info = [
        src.dim, int(src.has_labels), int(is_sampler), -1 if src.num_inputs is None else int(src.num_inputs),
        sum(d.process_index == jax.process_index() for d in mesh.devices.flat),
        sampler_fingerprint(src) if is_sampler and collective else 0, int(bool(exact)) + 2 * int(check),
        net_fingerprint(net) if collective else 0,
        digest(scopes, tol, tuple(mesh.axis_names), mesh.devices.shape,
               [d.id for d in mesh.devices.flat]) if collective else 0,
        -1 if batch_size is None else int(batch_size),
    ]
    return (scopes, tol, check, mesh, src, is_sampler, block, batch_size), info


def partition_one(net, source, labels, *, mesh=None, scopes=SCOPES, batch_size=None, exact=False,
                  collision_check=True, progress=True, boundary_tol=1e-5, _timings=None, error=None) -> Partition:
    """The sharded partition of one (unstacked) net; see :func:`partax.distributed.partition`.

    Args:
      net: an unstacked :class:`~partax.nets.Net` (checked by the caller).
      source, labels, mesh, scopes, batch_size, exact, collision_check, progress,
        boundary_tol: as in :func:`partax.distributed.partition`.
      _timings: a dict that receives the run's timings (device, host, steps, finish) and
        its ``batch_size`` and bucket ``cap`` (for the benchmark).
      error: an exception this process already caught, reported at the first exchange.

    Returns:
      The global :class:`~partax.engine.Partition`.
    """
    collective = is_collective(mesh)
    nproc, me = (jax.process_count(), jax.process_index()) if collective else (1, 0)

    # -- 0. local checks: an error here is reported at the first exchange ------------------
    info = None
    if error is None:
        try:
            settings, info = _local_checks(net, source, labels, mesh, scopes, batch_size, exact, collision_check,
                                           boundary_tol, collective)
            scopes, tol, check, mesh, src, is_sampler, block, batch_size = settings
        except Exception as e:
            error = e

    # -- 1. agreement (the first exchange: raises on every process if any failed) ---------
    every = host_exchange(error, info, collective, "before the first step")
    _agree(every)
    axes = tuple(mesh.axis_names)
    D = int(mesh.devices.size)
    sharding = NamedSharding(mesh, P(axes))
    split = is_sampler and len(set(every[:, 5])) == 1 and nproc > 1
    has_labels = bool(every[0, 1])
    D_loc = every[:, 4]
    if split:  # one global stream: contiguous block ranges per process
        nb = -(-src.num_inputs // block)
        bounds = [(p * nb) // nproc for p in range(nproc + 1)]
        sizes = np.array(
            [max(0, min(bounds[p + 1] * block, src.num_inputs) - bounds[p] * block) for p in range(nproc)], np.int64
        )
    else:
        sizes = every[:, 3]
    if (sizes == 0).all():
        raise ValueError("source: holds no inputs")
    if batch_size is None:
        batch_size = default_batch_size(net, block)
        if (sizes >= 0).all():
            need = int(max(-(-sizes[p] // D_loc[p]) for p in range(nproc)))
            need = max(block, -(-need // block) * block)
            small = int(2 ** np.ceil(np.log2(need))) if block == 1 else need
            batch_size = min(batch_size, small)
    B = int(batch_size)
    B_p = B * int(D_loc[me])
    known = bool((sizes >= 0).all())
    num_steps = int(max(-(-sizes[p] // (B * D_loc[p])) for p in range(nproc))) if known else None
    if D * B >= MAX_ROWS_PER_STEP:
        raise ValueError(f"batch_size: {B} inputs per device on {D} devices exceed 2^31 rows per step")

    ranges, index = tables_for(scopes, net.num_hidden)
    layout = PayloadLayout(net.widths, bool(exact), check)
    cap = sharded_step.initial_cap(B, D)
    devices = _device_order(sharding, D * B)
    # step ranks: the rows of a step in global stream order (process, then local index)
    rank_off = np.concatenate([[0], np.cumsum(D_loc)]).astype(np.int64)
    rank_proc = np.repeat(np.arange(nproc), D_loc)
    rank_k = np.arange(int(D_loc.sum())) - rank_off[rank_proc]
    rank_pid = np.zeros_like(rank_proc) if (split or nproc == 1) else rank_proc.astype(np.int64)
    proc_base = np.array([bounds[p] * block for p in range(nproc)], np.int64) if split else np.zeros(nproc, np.int64)

    # -- 2. the local chunk stream --------------------------------------------------------
    if split:
        b0, b1 = bounds[me], bounds[me + 1]
        per = B_p // block

        def local_chunks():
            for s in range(b0, b1, per):
                blocks = np.arange(s, s + per, dtype=np.int32)
                start = s * block
                yield Chunk(blocks, None, start, int(max(0, min(b1 * block, src.num_inputs, start + B_p) - start)))

        empty_x = np.zeros(B_p // block, np.int32)
    else:
        def local_chunks():
            yield from src.chunks(B_p)

        empty_x = np.zeros(B_p // block, np.int32) if is_sampler else np.zeros((B_p, src.dim), np.float32)

    def empty_chunk(start):
        return Chunk(np.zeros_like(empty_x), None, start, 0)

    def step_inputs(chunk, status):
        """Per-device arrays of one step: x (or block ids), labels, meta."""
        xs = chunk.x if isinstance(chunk.x, jax.Array) else np.asarray(chunk.x)
        if not is_sampler:  # one dtype on every process (the net's), whatever each one passed
            xs = xs.astype(net.dtype)
        per_dev = B // block
        parts_x = [xs[k * per_dev : (k + 1) * per_dev] for k in range(len(devices))]
        x = _put(sharding, devices, parts_x, (D * per_dev,) + tuple(xs.shape[1:]))
        y = None
        if has_labels and not is_sampler:
            yl = np.zeros(B_p, np.int32)
            if chunk.labels is not None:
                yl[: chunk.num_valid] = np.asarray(chunk.labels[: chunk.num_valid])
            y = _put(sharding, devices, [yl[k * B : (k + 1) * B] for k in range(len(devices))], (D * B,))
        metas = []
        for k in range(len(devices)):
            nv = int(np.clip(chunk.num_valid - k * B, 0, B))
            metas.append(np.array([[(rank_off[me] + k) * B, nv, me, k, status]], np.uint32))
        return x, y, _put(sharding, devices, metas, (D, META))

    timings = _timings if _timings is not None else {}
    timings.setdefault("device_s", 0.0)
    timings.setdefault("host_s", 0.0)
    acc = accumulate.table_accumulator(check_codes=layout.checked)  # merges compare the payload
    held = [acc.init(RegionTable.empty(1 if has_labels else None, layout.width))]  # the owned table's state
    near_total = [0]  # Python ints: exact at any size; int64 in the Partition
    n_mine = [0]
    caps = [cap]
    failure = [None]  # this process's exception, reported with the next step (or exchange)
    sampler_arg = src if is_sampler else None

    def step_fn():
        return sharded_step.step_function(mesh, axes, tol, bool(exact), check, caps[0], is_sampler,
                                         has_labels and not is_sampler)

    def dispatch(chunk, step):
        """Dispatches one step; an exception of this process turns it into an empty step
        that carries status 1 (every process still takes part in the step)."""
        try:
            if failure[0] is None and has_labels and not is_sampler and chunk.labels is not None:
                _check_labels_travel(chunk.labels[: chunk.num_valid])
            args = step_inputs(chunk, 0 if failure[0] is None else 1)
        except Exception as e:
            failure[0] = e
            chunk = empty_chunk(chunk.start)
            args = step_inputs(chunk, 1)
        return step_fn()(net, sampler_arg, *args), chunk, args, caps[0], step

    def check_step(stats, chunk, step):
        """Raises on every process if any process flagged this step (status or NaN)."""
        procs = stats[:, S_PROC]
        flagged = (stats[:, S_STATUS] != 0) | (stats[:, S_BAD] > 0)
        if not flagged.any():
            return
        failed = np.unique(procs[flagged])
        err = failure[0]
        if err is None and me in failed:  # NaN or inf in this process's inputs
            rows = stats[(procs == me) & (stats[:, S_BAD] > 0)]
            first = rows[np.argmin(rows[:, S_DEV])]
            idx = chunk.start + int(first[S_DEV]) * B + int(first[S_FIRST_BAD])
            whose = "" if nproc == 1 else f" of process {me}'s inputs"
            nbad = int(stats[procs == me, S_BAD].sum())
            err = nonfinite_error("source", f"{idx}{whose}", f" ({nbad} in step {step})")
        raise_together(err, failed, collective, f"in step {step}")

    def reduce(item):
        (out, nown, stats), chunk, args, cap_used, step = item
        t0 = time.perf_counter()
        stats = np.asarray(stats).astype(np.int64)  # [D, NSTATS], the same on every process
        timings["device_s"] += time.perf_counter() - t0
        check_step(stats, chunk, step)
        if stats[:, S_COLLIDE].any():  # replicated: every process raises here
            raise collision_error()
        bucket = int(stats[:, S_BUCKET].max())
        if bucket > cap_used:  # a bucket overflowed: every process re-runs the step
            caps[0] = max(caps[0], min(B, int(2 ** np.ceil(np.log2(bucket)))))
            return reduce((step_fn()(net, sampler_arg, *args), chunk, args, caps[0], step))
        t0 = time.perf_counter()
        if failure[0] is None:
            try:
                counts = {s.device: int(np.asarray(s.data)[0]) for s in nown.addressable_shards}
                rank_base = proc_base[rank_proc] + step * B * D_loc[rank_proc] + rank_k * B
                shards = [np.asarray(s.data[: counts[s.device]]) for s in out.addressable_shards if counts[s.device]]
                table = step_table(shards, B, rank_pid, rank_base, layout, has_labels)
                if table is not None:
                    held[0] = acc.update(held[0], table)
            except Exception as e:  # e.g. a collision in this host's merge: reported with the next step
                failure[0] = e
        near_total[0] += int(stats[:, S_NEAR].sum())
        n_mine[0] += chunk.num_valid
        timings["host_s"] += time.perf_counter() - t0
        return int(stats[:, S_VALID].sum())

    bar = None
    if progress and me == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(sizes.sum()) if known else None, unit="in", unit_scale=True, delay=1.0,
                   desc="partition", leave=False)
    t_start = time.perf_counter()
    try:
        it = local_chunks()
        pending, step, done_local = None, 0, False
        next_start = 0
        while not (known and step >= num_steps):
            chunk = None
            if not done_local and failure[0] is None:
                try:
                    chunk = next(it, None)
                except Exception as e:  # the batch iterator failed: this step reports it
                    failure[0] = e
            if chunk is None:
                done_local = True
                chunk = empty_chunk(b1 * block if split else next_start)
            else:
                next_start = chunk.start + chunk.num_valid
            item = dispatch(chunk, step)
            step += 1
            if pending is not None:
                g = reduce(pending)
                if bar is not None:
                    bar.update(g)
                if g == 0 and not known:
                    pending = None
                    break
            pending = item
        if pending is not None:
            g = reduce(pending)
            if bar is not None:
                bar.update(g)
    finally:
        if bar is not None:
            bar.close()
    timings["steps_s"] = time.perf_counter() - t_start
    timings["cap"] = caps[0]
    timings["batch_size"] = B

    # -- 3. gather and finish -------------------------------------------------------------
    t0 = time.perf_counter()
    mine = None
    if failure[0] is None:
        try:
            mine = acc.finalize(held[0])
        except Exception as e:
            failure[0] = e
    # the last exchange: failures after the last step, every shard's size and class count
    tail = host_exchange(failure[0], None if mine is None else [n_mine[0], mine.num_classes or 0], collective,
                         "after the last step")
    C = int(tail[:, 1].max()) if has_labels else None
    counts_all = sizes if split else tail[:, 0]
    if nproc > 1:
        got = allgather_rows(to_words(mine, C))
        mine = merge_tables([from_words(a, C, layout.width) for a in got], check_codes=layout.checked)
    offsets = np.zeros(nproc, np.int64) if split else np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    total = int(counts_all.sum())
    if total == 0:
        raise ValueError("source: holds no inputs")
    base = decode_exemplars(mine, offsets)
    if base.total != total:  # every valid input is counted once, by its owner: a bug otherwise
        raise RuntimeError(f"partax.sharded: the tables hold {base.total} inputs, the shards {total}")
    tables = finish_tables(range_tables(base, ranges, layout), index, C, keep_codes=bool(exact))
    timings["finish_s"] = time.perf_counter() - t0
    return Partition(tables, net.widths, net.input_dim, total, int(near_total[0]), tol)


def _agree(every: np.ndarray) -> None:
    """Checks what every process sent at the first exchange; raises the same error on all."""

    def differs(col):
        bad = np.flatnonzero(every[:, col] != every[0, col])
        return int(bad[0]) if bad.size else None

    if (p := differs(7)) is not None:
        raise ValueError(f"net: process {p} passed a different net than process 0 (its arrays or structure "
                         "differ); expected the same net on every process")
    if (p := differs(8)) is not None:
        raise ValueError(f"scopes / boundary_tol / mesh: process {p} passed different values than process 0; "
                         "expected the same on every process")
    if (p := differs(9)) is not None:
        raise ValueError(f"batch_size: process {p} passed {int(every[p, 9])} and process 0 passed "
                         f"{int(every[0, 9])} (-1: the default); expected the same on every process")
    if len(set(every[:, 1])) > 1:
        raise ValueError("labels: some processes have labels and others do not")
    if len(set(every[:, 2])) > 1 or len(set(every[:, 6])) > 1:
        raise ValueError("source: every process must pass the same kind of source and the same exact and "
                         "collision_check flags")
    if (every[:, 4] == 0).any():
        raise ValueError("mesh: every process must own at least one device of the mesh")
