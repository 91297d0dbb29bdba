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
   every input's full code and its per-layer hashes; then the device's *table of known
   keys* (:mod:`partax.device_grouping`, the single-device engine's device reduction)
   counts the inputs whose region it holds per slot (and per slot and label); only the
   others, the *misses* (at most a static capacity of them), go through a local reduction
   by ``(key, label)``, an all-to-all that sends every distinct row to its *owner* device,
   and the owner's reduction. The host of each owner device turns the owner's rows into a
   table keyed by full code (:mod:`partax.sharded_tables`), the per-slot counts of its
   devices into another (:func:`hits_table`), and folds both into a running table with the
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
fingerprints of the code; in exact mode the code words too), and the key tables compare
every hit's check key (code words) with its slot's: on the devices (a flag in the
step's replicated statistics: :class:`~partax.coding.HashCollisionError` on every process),
in the host merges, and in the range tables at the end (every process derives them from
the same global table: raised on every process). A collision found by one host's merge is
reported like any host failure (below): that process raises the
:class:`~partax.coding.HashCollisionError`, the others a :class:`RemoteInputError` naming it.

The table of known keys
-----------------------
Each process keeps one table of the keys *it owns* (built from its owned table by
:func:`known_keys`; the same on each of its devices), so an input is absorbed on its own
device when its region is one the process owns and has seen in an earlier step; its hits
are counted by the host that owns the key, and no count ever needs a cross-device sum.
With one process (every mesh of one host) that is every region met so far. Why not one
table replicated over all processes: each process would need every other process's new
keys, i.e. an extra host exchange per rebuild; per-owner tables need none, at the price
that with ``P`` processes an input whose key another process owns stays a miss (it is
still counted exactly, by its owner, through the all-to-all).

* The table's size fixes the step's shapes, so it is agreed: every process derives it from
  the steps' replicated statistics (the rows each owner device added), like the miss
  capacity (a few powers of four, :func:`miss_capacities`, following the last step's
  largest miss count) and the label columns of the hits' counts. A step whose misses
  exceed the capacity, or whose labels exceed the columns, is flagged in those statistics
  and re-run by every process with room for all (capacity ``B``): no row is dropped. The
  *contents* are each process's own: it rebuilds its table when enough new rows came in.
* The first step runs on an empty table (every input a miss) and is reduced before the
  second is dispatched, so that its regions seed the table.
* Exemplars: with one process a hit is never a region's first input (the table holds keys
  of earlier steps only); with several it can be (process 0's later steps precede process
  1's earlier ones in the global stream), so the hits then also carry the smallest step
  rank per slot (:func:`partax.device_grouping.slot_first_ranks`).
* Collisions: a hit whose value (the check key of its full code; its code words in exact
  mode) differs from its slot's is a hash collision, flagged in the statistics.

What travels
------------
* Through the all-to-all and to the host, per distinct miss row of a step:
  ``W = 5 + 2L (+ 2 L_w with the check) (+ code words in exact mode)`` ``uint32`` lanes:
  ``(key_hi, key_lo, label, rank, count)``, the per-layer hash lanes, the check lanes of
  the ``L_w`` layers wider than 32 units, the code words; the host finishes every range
  key from the hashes, as the single-device engine does.
* To the host, per device and step: the counts of the table's ``S`` slots (``int32``),
  their label counts (``S x C``) with labels, their smallest step ranks with several
  processes, and ``14`` ``int32`` statistics per device (replicated).
* Device memory per step: the chunk, the table (``S (2 + values)`` lanes and its counts),
  the local sort of ``capacity`` rows, the send and receive buffers of ``D * cap`` rows each
  and the owner sort of ``D * cap`` rows: about ``4 * (2 capacity + 3 D cap) * W`` bytes
  besides the chunk and the table. ``cap`` starts at ``~2 capacity / D`` (power of two, at
  most the capacity): hashing spreads rows evenly, so buckets overflow only when a device
  has far more distinct rows for one owner than average; every device learns the largest
  bucket from the step's statistics, and an overflowing step is re-run with a larger
  ``cap`` (all processes agree, since they read the same replicated value).
* Why owner buckets and not an all-gather of per-device tables: that would cost every host
  ``sum_d M_d`` rows (up to ``D`` times the ``M`` distinct regions) and leave all the
  reducing to every host; owner buckets keep the traffic at about the number of locally
  distinct misses per step and spread the reduction over devices and hosts.
* Host cost: the owned miss rows and the slot counts per step, merged into the owned
  table; the final all-gather ships ``M_global`` rows to each process.

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
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import partax.accumulate as accumulate  # looked up per run (the failure tests inject merges)
from partax.coarsening import PayloadLayout, finish_tables, range_tables
from partax.coding import full_check_keys
from partax.device_grouping import build_key_table, table_buckets
from partax.grouping import collision_error
from partax.multihost import (allgather_rows, data_mesh, digest, host_exchange, is_collective, net_fingerprint,
                              raise_together, sampler_fingerprint)
from partax.engine import Partition, default_batch_size
from partax.scopes import SCOPES, tables_for
from partax import sharded_step  # looked up per run (the tests force tiny buckets)
from partax.sharded_step import (META, S_BAD, S_BUCKET, S_COLLIDE, S_DEV, S_DISTINCT, S_FIRST_BAD, S_MAX_LABEL,
                                 S_MISSES, S_NEAR, S_OVERFLOW, S_OWNED, S_PROC, S_STATUS, S_VALID)
from partax.sharded_tables import IDX_BITS, decode_exemplars, from_words, step_table, to_words
from partax.sources import Chunk, Sampler, as_source
from partax.tables import RegionTable, merge_tables
from partax.validation import (check_batch_size, check_flag, check_labels_below, check_scopes, check_tolerance,
                               nonfinite_error)

__all__ = ["LABEL_BITS", "MAX_ROWS_PER_STEP", "KnownKeys", "hits_table", "known_keys", "miss_capacities",
           "partition_one"]

LABEL_BITS = 31  # labels travel as uint32 words (all ones marks padding rows)
MAX_ROWS_PER_STEP = 2**31  # keeps every per-step device counter (int32 / uint32) exact
# the table of known keys on the devices (as in partax.engine's device path)
WAYS = 4  # slots per bucket
MAX_BUCKETS_CPU, MAX_BUCKETS = 2**14, 2**18  # the table stops growing past this many buckets
REBUILD_MIN = 64  # new owned rows seen before a process rebuilds its table
MISS_FRACTION, MIN_MISSES = 64, 256  # the smallest miss capacity: B / MISS_FRACTION, at least MIN_MISSES
ADAPT = True  # the miss capacity follows the last step's misses (False: always the smallest, as in the tests)
FIRST_CLASSES = 8  # label columns of the hits' counts until a larger label comes (a re-run)
NO_EXEMPLAR = np.iinfo(np.int64).max  # a hit that is never a region's first input: min() drops it
_NO_RANK = np.uint32(0xFFFFFFFF)


class KnownKeys(NamedTuple):
    """One version of a process's table of known keys, on each of its devices (immutable).

    Attributes:
      version: increases with every rebuild.
      buckets: the table's buckets (the same on every process: it fixes the step's shapes).
      lanes: ``uint32[D, buckets, ways, 2]``, a global array: this process's table on each
        of its devices (other processes' devices hold theirs).
      values: ``uint32[D, S, W]``, likewise (``W``: code words in exact mode, 2 check-key
        lanes with the collision check, else 0).
      slot_keys: ``uint64[S]``, each slot's key.
      slot_payload: ``uint32[S, width]``, each occupied slot's base payload.
      occupied: ``bool[S]``.
      rows: keys the table holds.
    """

    version: int
    buckets: int
    lanes: object
    values: object
    slot_keys: np.ndarray
    slot_payload: np.ndarray
    occupied: np.ndarray
    rows: int


def known_keys(table: RegionTable, layout: PayloadLayout, buckets: int, sharding, devices, version: int = 0
               ) -> KnownKeys:
    """A process's :class:`KnownKeys` from its owned base table (the same table on each of its devices).

    Args:
      table: a base table keyed by full code, its payload (``exemplar_codes``) in
        ``layout``'s columns.
      layout: the payload's columns.
      buckets: the table's buckets (a power of two).
      sharding: the step's input sharding (one leading axis over the mesh's devices).
      devices: this process's devices of the mesh, in the order of their rows.
      version: the version number.

    Returns:
      The :class:`KnownKeys`.
    """
    payload = table.exemplar_codes
    if layout.exact:
        values = payload[:, : layout.num_words]
    elif layout.check:
        values = full_check_keys(payload[:, : layout.num_hash_rows].T, layout.widths)
    else:
        values = np.zeros((len(table), 0), np.uint32)
    kt = build_key_table(table.keys, values, table.counts, buckets=buckets, ways=WAYS)
    S = buckets * WAYS
    occ = kt.slot_rows >= 0
    slot_payload = np.zeros((S, layout.width), np.uint32)
    slot_payload[occ] = payload[kt.slot_rows[occ]]
    D = sharding.mesh.devices.size
    lanes = _put(sharding, devices, [kt.lanes[None]] * len(devices), (D,) + kt.lanes.shape)
    vals = _put(sharding, devices, [kt.values[None]] * len(devices), (D,) + kt.values.shape)
    return KnownKeys(version, buckets, lanes, vals, kt.slot_keys, slot_payload, occ, int(occ.sum()))


def hits_table(known: KnownKeys, counts, label_counts, exemplars) -> RegionTable:
    """The base table of the inputs a version of the key table counted (this process's devices).

    Args:
      known: the table the step ran with.
      counts: ``int64[S]``, hits per slot (summed over this process's devices).
      label_counts: ``int64[S, C]`` or None.
      exemplars: ``int64[S]``, each slot's smallest encoded exemplar, or None: the hits are
        never first inputs (one process: the table holds keys of earlier steps only), so
        their exemplar is :data:`NO_EXEMPLAR`, which the miss row of the region's first
        input replaces in the merge.

    Returns:
      A table keyed by full code, sorted, with the slots' payloads.
    """
    sel = np.flatnonzero(known.occupied & (counts > 0))
    sel = sel[np.argsort(known.slot_keys[sel])]
    c = counts[sel]
    lc = None
    if label_counts is not None:
        lc = label_counts[sel]
        used = np.flatnonzero(lc.any(axis=0))
        lc = lc[:, : (int(used[-1]) + 1 if used.size else 1)]  # the classes met (hits pad to the static columns)
    ex = np.full(sel.size, NO_EXEMPLAR, np.int64) if exemplars is None else exemplars[sel]
    return RegionTable(known.slot_keys[sel], c, lc, ex, int(c.sum()), known.slot_payload[sel])


def miss_capacities(B: int) -> list:
    """The miss capacities a step can run with (each one compiles): a few powers of four
    from ``B / MISS_FRACTION`` (at least ``MIN_MISSES``) up, and ``B`` (never overflows)."""
    small = min(B, max(MIN_MISSES, B // MISS_FRACTION))
    return sorted({min(B, small * 4**i) for i in range(4)} | {B})


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
    for name in ("hits", "misses", "reruns", "rebuilds", "device_to_host_bytes"):
        timings[name] = 0
    acc = accumulate.table_accumulator(check_codes=layout.checked)  # merges compare the payload
    empty_table = RegionTable.empty(1 if has_labels else None, layout.width)
    held = [acc.init(empty_table)]  # the owned table's state
    near_total = [0]  # Python ints: exact at any size; int64 in the Partition
    n_mine = [0]
    failure = [None]  # this process's exception, reported with the next step (or exchange)
    sampler_arg = src if is_sampler else None
    # the table of known keys and the step's static sizes: every process derives them from the
    # steps' replicated statistics, so every process runs the same program
    max_buckets = MAX_BUCKETS_CPU if jax.default_backend() == "cpu" else MAX_BUCKETS
    levels = miss_capacities(B)
    first_ranks = nproc > 1  # hits can be first inputs: process order is not step order
    owned_rows = np.zeros(nproc, np.int64)  # per process, an upper bound on the rows it owns
    run = {"capacity": B, "classes": FIRST_CLASSES if has_labels else 1, "cap": 0, "cap_used": 0, "new": 0,
           "tracking": True}
    run["known"] = known_keys(empty_table, layout, table_buckets(0, WAYS), sharding, devices)

    def settings(capacity, classes):
        """The step's static sizes: miss capacity, label columns, rows per owner bucket."""
        cap = min(capacity, max(sharded_step.initial_cap(capacity, D), run["cap"]))
        return capacity, classes, cap

    def step_fn(setting):
        capacity, classes, cap = setting
        return sharded_step.step_function(mesh, axes, tol, bool(exact), check, cap, capacity, classes, first_ranks,
                                          is_sampler, has_labels and not is_sampler)

    def launch(args, setting, known):
        return step_fn(setting)(net, sampler_arg, *args, known.lanes, known.values)

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
        setting = settings(run["capacity"], run["classes"])
        known = run["known"]
        return launch(args, setting, known), chunk, args, setting, known, step

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

    def local(a):
        """This process's shards of a per-device output, in device order."""
        return [np.asarray(sh.data) for sh in a.addressable_shards]

    def encode_ranks(ranks, step):
        """Step ranks (``uint32``, all ones: none) -> encoded exemplars (``process << 48 | local``)."""
        r = ranks.astype(np.int64)
        none = ranks == _NO_RANK
        r[none] = 0
        j, i = r // B, r % B
        ex = (rank_pid[j].astype(np.int64) << IDX_BITS) | (proc_base[rank_proc[j]] + step * B * D_loc[rank_proc[j]]
                                                           + rank_k[j] * B + i)
        return np.where(none, NO_EXEMPLAR, ex)

    def rebuild(buckets):
        """A new version of this process's table of known keys (from its owned table)."""
        table = empty_table
        st = held[0]
        if failure[0] is None and st.num_rows:
            try:  # the running table's merge (not acc.finalize: that is the run's last merge)
                table = merge_tables(([] if st.table is None else [st.table]) + list(st.pending),
                                     check_codes=layout.checked)
                held[0] = acc.init(table)
            except Exception as e:  # e.g. a collision: reported with the next step
                failure[0] = e
                table = empty_table
        run["known"] = known_keys(table, layout, buckets, sharding, devices, run["known"].version + 1)
        run["new"] = 0
        timings["rebuilds"] += 1
        if len(table) >= 2 * max_buckets * WAYS:  # the table is full: keep it
            run["tracking"] = False

    def reduce(item):
        (out, nown, stats, hits), chunk, args, setting, known, step = item
        t0 = time.perf_counter()
        stats = np.asarray(stats).astype(np.int64)  # [D, NSTATS], the same on every process
        timings["device_s"] += time.perf_counter() - t0
        timings["device_to_host_bytes"] += stats.size * 4
        check_step(stats, chunk, step)
        if stats[:, S_COLLIDE].any():  # replicated: every process raises here
            raise collision_error()
        capacity, classes, cap_used = setting
        bucket = int(stats[:, S_BUCKET].max())
        overflow = bool(stats[:, S_OVERFLOW].any())
        if overflow or bucket > cap_used:  # misses, labels or a bucket overflowed: every process re-runs the step
            if overflow:
                capacity = B
                if has_labels:
                    run["classes"] = max(run["classes"], _pow2(int(stats[:, S_MAX_LABEL].max()) + 1))
            elif bucket > cap_used:
                run["cap"] = max(run["cap"], min(B, _pow2(bucket)))
            timings["reruns"] += 1
            rerun = settings(capacity, run["classes"])
            return reduce((launch(args, rerun, known), chunk, args, rerun, known, step))
        run["cap_used"] = max(run["cap_used"], cap_used)
        t0 = time.perf_counter()
        procs = stats[:, S_PROC]
        np.add.at(owned_rows, procs, stats[:, S_OWNED])
        if failure[0] is None:
            try:
                counts = {s.device: int(np.asarray(s.data)[0]) for s in nown.addressable_shards}
                rank_base = proc_base[rank_proc] + step * B * D_loc[rank_proc] + rank_k * B
                shards = [np.asarray(s.data[: counts[s.device]]) for s in out.addressable_shards if counts[s.device]]
                timings["device_to_host_bytes"] += sum(a.nbytes for a in shards) + 4 * len(counts)
                table = step_table(shards, B, rank_pid, rank_base, layout, has_labels)
                if table is not None:
                    held[0] = acc.update(held[0], table)
                    run["new"] += len(table)
                if known.rows:
                    hit_counts, hit_labels, hit_first = hits
                    c = local(hit_counts)
                    timings["device_to_host_bytes"] += sum(a.nbytes for a in c)
                    c = np.sum([a[0].astype(np.int64) for a in c], axis=0)
                    lc = ex = None
                    if hit_labels is not None:
                        lcs = local(hit_labels)
                        timings["device_to_host_bytes"] += sum(a.nbytes for a in lcs)
                        lc = np.sum([a[0].astype(np.int64) for a in lcs], axis=0)
                    if hit_first is not None:
                        fs = local(hit_first)
                        timings["device_to_host_bytes"] += sum(a.nbytes for a in fs)
                        ex = np.min([encode_ranks(a[0], step) for a in fs], axis=0)
                    t = hits_table(known, c, lc, ex)
                    if len(t):
                        held[0] = acc.update(held[0], t)
                        timings["hits"] += t.total
            except Exception as e:  # e.g. a collision in this host's merge: reported with the next step
                failure[0] = e
        # the next steps' sizes, from replicated values only (every process decides alike)
        timings["misses"] += int(stats[procs == me, S_MISSES].sum())
        if known.version == 0:  # an empty table: its misses say nothing; a quarter of its regions may be new
            need = int(stats[:, S_DISTINCT].max()) // 4
        else:
            need = int(stats[:, S_MISSES].max())
        run["capacity"] = next((c for c in levels if c >= 2 * need), B) if ADAPT else levels[0]
        buckets = min(max_buckets, table_buckets(int(owned_rows.max()), WAYS))
        # a new size: every process rebuilds (the same owned_rows); new contents: this process alone
        if buckets != run["known"].buckets or known.version == 0 or (
            run["tracking"] and run["new"] >= max(REBUILD_MIN, run["known"].rows // 8)
        ):
            rebuild(buckets)
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
            if pending is not None and pending[-1] == 0:  # the first step's regions seed the table first
                g = reduce(pending)
                pending = None
                if bar is not None:
                    bar.update(g)
                if g == 0 and not known:
                    break
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
    timings["cap"] = run["cap_used"]
    timings["capacity"] = run["capacity"]
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
    if len(mine) and mine.exemplars.max() == NO_EXEMPLAR:  # every region's first input is a miss or ranked
        raise RuntimeError("partax.sharded: a region counted on the device has no first input (a bug)")
    base = decode_exemplars(mine, offsets)
    if base.total != total:  # every valid input is counted once, by its owner: a bug otherwise
        raise RuntimeError(f"partax.sharded: the tables hold {base.total} inputs, the shards {total}")
    tables = finish_tables(range_tables(base, ranges, layout), index, C, keep_codes=bool(exact))
    timings["finish_s"] = time.perf_counter() - t0
    return Partition(tables, net.widths, net.input_dim, total, int(near_total[0]), tol,
                     int(timings["device_to_host_bytes"]))


def _pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


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
