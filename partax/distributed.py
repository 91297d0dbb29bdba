"""Sharded and multi-host partitions: many devices, many processes, one set of tables.

:func:`partition` gives the same :class:`~partax.partition.Partition` as
:func:`partax.partition` on the concatenation of every process's inputs (identical keys,
counts, label counts, exemplars, totals), while the inputs are split over every device of
a mesh and over every process of a ``jax.distributed`` job.

How a run goes
--------------
1. *Agreement* (one small all-gather of a few integers per process): input dimension,
   labels or not, the size of each process's shard (``-1`` for an iterable of unknown
   length), a fingerprint of a sampler. Every process then knows the offset of its inputs
   in the global stream: process ``p``'s inputs come after those of processes ``0..p-1``.
2. *Steps*. In each step every device of the mesh takes ``batch_size`` inputs (the
   process's next chunk, split over its devices; a process that ran out feeds an empty,
   masked chunk) and, inside one jitted :func:`jax.shard_map`:

   a. computes codes and the 64-bit keys of every needed layer range
      (:func:`partax.codes.codes_and_keys`; keys are two ``uint32`` lanes, no x64);
   b. reduces its rows locally: one ``lax.sort`` on ``(key_hi, key_lo, label)`` (three
      ``uint32`` sort keys; padding rows carry an all-ones sentinel and sort last), a
      segment sum of counts and a segment min of *step ranks* (below), so each distinct
      ``(full-code key, label)`` appears once with its count and its exemplar;
   c. sends every distinct row to its *owner* device, ``owner = (key_hi >> 16) * D >> 16``
      (a multiply-shift of the hash's top bits, uniform over the ``D`` devices), with
      :func:`jax.lax.all_to_all` over fixed-capacity padded buckets of ``cap`` rows per
      (sender, owner) pair;
   d. the owner sorts and reduces what it received the same way.

   The host of each owner device folds the owner's rows into a running table (NumPy,
   merged geometrically as in the single-device engine). Owners hold disjoint key sets,
   so a process only ever holds the keys its devices own: about ``M_global * D_local / D``
   rows, not the ``D`` overlapping per-device tables.
3. *Final gather*: the per-process owned tables are all-gathered to every process once, at
   the end (the contract: every process receives the global tables); the host then derives
   every scope's table from the full-code table exactly as :func:`partax.partition` does
   (every range key is a function of the full code, carried as a payload).

Why this merge, and what it costs
---------------------------------
* An all-gather of per-device tables costs every host ``sum_d M_d`` rows (up to ``D`` times
  the ``M`` distinct regions when devices see the same regions) and leaves all the reducing
  to every host. Owner buckets cost each device ``O(batch_size)`` rows per step whatever the
  number of regions, keep the per-step network traffic at about the number of *locally
  distinct* rows (``<= batch_size`` per device), and spread the reduction over devices and
  hosts; tens of millions of distinct regions per device only grow the host-side owned
  table (``M_global / D`` rows per device), never the device buffers.
* Device memory per step, with ``W = 5 + 2R (+ code words in exact mode)`` ``uint32`` lanes
  per row (``R`` the number of distinct layer ranges): the local sort of ``B`` rows, the
  send and receive buffers of ``D * cap`` rows each and the owner sort of ``D * cap``
  rows: about ``4 * (2 B + 3 D cap) * W`` bytes. ``cap`` starts at ``~2 B / D`` (power of
  two, at most ``B``): hashing spreads rows evenly, so buckets overflow only when a device
  has far more distinct rows for one owner than average; every device learns the largest
  bucket by a ``pmax``, and an overflowing step is re-run with a larger ``cap`` (all
  processes agree, since they read the same replicated value). ``cap = B`` never overflows.
* Cost of the merge per step: two three-key sorts (``B`` and ``D * cap`` rows), one all-to-all of
  ``D * cap * W * 4`` bytes per device. It grows with the number of *distinct rows per
  step*, not with inputs: a net with few regions ships only a few real rows in
  fixed-size buffers; the buffer (``~2 B`` rows) does not grow with ``D``.
* Host cost: the owned rows per step (at most ``2 B`` per device) cross to the host and
  are merged into the owned table; the final all-gather ships ``M_global`` rows to each
  process.

Failing together
----------------
A bad input on one process must never leave the others waiting in a collective. Every
process therefore reaches the same exchanges in the same order, and carries its own status
into each:

* *Before the first step*, local checks (net, scopes, mesh, source, dimension, an empty
  shard, labels negative / non-integer / ``>= 2^31``, ``batch_size``) are caught, not
  raised: the first exchange (the agreement above) carries a status word with the
  agreement words. It also compares fingerprints of the net, the scopes / tolerance /
  mesh and ``batch_size``: processes that disagree would run different steps.
* *In each step*, every device's meta row carries its host's status (1 once the host
  caught an exception: a batch iterator that raised, a bad batch, a failed host merge);
  a failing process keeps dispatching (empty, masked) steps, so it still takes part. The
  step all-gathers a small row of ``int32`` statistics per device (status, valid rows,
  near-boundary rows, NaN/inf rows and the first one, largest bucket, collision flag), so
  every process reads the same statuses and NaN counts, per process, after the step.
* *After the last step*, a last exchange carries the status (e.g. a failed final merge)
  with each shard's size.

When any status is set (or any process saw NaN / inf inputs), every process takes part in
one more all-gather of ``1 KiB`` per process (each failing process's exception type and
message) and raises: the failing process its own exception (the iterator's own
exception too), every other process a :class:`RemoteInputError`, e.g.
``process 1 failed in step 3: RuntimeError: reader died``. Host-side failures noticed while
a step is in flight are reported with the next step dispatched. A failed call leaves the
processes in step: the next call runs normally. With a mesh of this process's devices only
there are no exchanges and errors are raised directly. The exchanges cost one all-gather of
``12`` words per process before and after the run, and ``9`` words per device per step.

Counters
--------
Per-step device counters are ``int32`` / ``uint32`` (x64 off): a step holds fewer than
``2^31`` rows over the whole mesh (``D * batch_size < 2^31``, checked), so no count, rank or
segment index of a step can wrap. Everything summed across steps (counts, label counts,
near-boundary inputs, shard sizes, exemplar indices) is ``int64`` on the host, and 64-bit
values cross processes as pairs of ``uint32`` words (JAX with x64 off would narrow an
``int64`` array to ``int32``).

Exemplars and global indices
----------------------------
Global indices can exceed ``2^31`` (and ``2^32``), so they never travel. On the device a
row carries its *step rank*, one ``uint32``: the rows of one step, ranked in global stream
order (by process, then by local index: device ``j`` of the ranking holds ranks
``j B .. j B + B - 1``; ``D B < 2^31``). Within a step the smallest rank is the smallest
global index, so exemplars reduce with a segment min. Every process runs the same steps,
and chunk ``s`` of process ``p`` starts at local index ``s B_p``, so the host maps a rank of
step ``s`` back to ``(process, local index)``, encodes it as ``process << 48 | local``
(``int64``; local indices below ``2^48``, order-preserving, merged by min across steps), and
turns it into the global index ``offset[process] + local`` once every shard's size is
known (all-gathered at the end, so iterables of unknown length work).

Labels
------
Labels travel as part of the reduction key: a row is one ``(region, label)`` pair. No class
count has to be agreed before the run (iterables can bring labels of any size), device
buffers do not grow with the number of classes, and the host builds ``label_counts
[M, C]`` at the end with ``C = max label + 1`` over all processes (as the single-device
engine does).

Samplers
--------
A sampler is a description of a stream. If every process passes the *same* sampler
(checked by a fingerprint of its key and parameters), the stream is split: process ``p``
takes a contiguous range of the sampler's blocks, and the result, exemplars included, is
exactly ``partax.partition(net, sampler)`` (``sampler.inputs_at(exemplars)`` recovers the
inputs). If the samplers differ (e.g. :func:`per_process` folds the process index into the
key: ``jax.random.fold_in(key, jax.process_index())``), each process contributes its own
whole stream and the global stream is their concatenation in process order.

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
import hashlib
import time
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from partax.codes import SCOPES, HashCollisionError, codes_and_keys, tables_for
from partax.nets import Net
from partax.partition import Partition, _validate_scopes, check_net, default_batch_size
from partax.sources import Chunk, Sampler, as_source
from partax.tables import reduce_by_key

__all__ = [
    "RemoteInputError", "bench_sharded", "data_mesh", "initialize", "partition", "per_process", "process_slice",
]

_IDX_BITS = 48  # local indices below 2^48 per process
# column layout of a row on the wire (uint32 lanes), then the payload (range keys, codes)
_KHI, _KLO, _LAB, _RANK, _CNT = range(5)
_HEAD = 5
# per-device statistics of a step (int32), all-gathered to every device
_S_PROC, _S_DEV, _S_STATUS, _S_VALID, _S_NEAR, _S_BAD, _S_FIRST_BAD, _S_BUCKET, _S_COLLIDE = range(9)
_NSTATS = 9
_META = 5  # per-device step metadata: rank0, valid, process, k, status


# --- meshes and process helpers ----------------------------------------------------------
def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: every device of every process).

    Example:
      >>> import partax.distributed as d
      >>> d.data_mesh().axis_names
      ('data',)
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Explicit,), devices=devices
    )


def per_process(sampler: Sampler) -> Sampler:
    """The sampler with the process index folded into its key: an independent stream per process.

    Passing ``per_process(s)`` on every process makes each contribute its own ``s.num_inputs``
    inputs; the global stream is their concatenation in process order.
    """
    if not isinstance(sampler, Sampler) or not hasattr(sampler, "key"):
        raise TypeError(f"sampler: expected a partax sampler with a key, got {type(sampler).__name__}")
    import dataclasses

    return dataclasses.replace(sampler, key=jax.random.fold_in(sampler.key, jax.process_index()))


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               **kwargs) -> None:
    """Starts ``jax.distributed`` from arguments, the environment, or the cluster.

    Arguments left ``None`` come from the environment: ``JAX_COORDINATOR_ADDRESS``
    (``host:port``), ``PARTAX_NUM_PROCESSES``, ``PARTAX_PROCESS_ID`` (what
    ``scripts/launch_local.sh`` sets). When those are absent too, ``jax.distributed``
    detects the cluster itself (SLURM, Open MPI, Kubernetes, Cloud TPU). A no-op when
    already initialised. Extra keyword arguments go to :func:`jax.distributed.initialize`.
    """
    import os

    from jax._src import distributed as _jd

    if _jd.global_state.client is not None:
        return
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("PARTAX_NUM_PROCESSES"):
        num_processes = int(env["PARTAX_NUM_PROCESSES"])
    if process_id is None and env.get("PARTAX_PROCESS_ID"):
        process_id = int(env["PARTAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, **kwargs)


def process_slice(n: int, process_id: int | None = None, num_processes: int | None = None) -> slice:
    """This process's contiguous share of ``n`` rows (process ``p`` gets rows
    ``[p n // P, (p + 1) n // P)``), e.g. to read one's shard of a memory-mapped ``.npy``.

    Example:
      >>> from partax.distributed import process_slice
      >>> [process_slice(10, p, 3) for p in range(3)]
      [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    P_ = jax.process_count() if num_processes is None else int(num_processes)
    p = jax.process_index() if process_id is None else int(process_id)
    return slice(p * n // P_, (p + 1) * n // P_)


def _allgather(a: np.ndarray, local: bool = False) -> np.ndarray:
    """``a`` from every process, stacked on a leading process axis (host NumPy).

    64-bit values travel as pairs of ``uint32`` words: with x64 off, JAX would otherwise
    turn an ``int64`` array into ``int32`` on the way (sizes and counts above ``2^31``
    would wrap).
    """
    a = np.asarray(a)
    if local or jax.process_count() == 1:
        return a[None]
    from jax.experimental import multihost_utils

    if a.dtype.itemsize == 8:
        words = np.ascontiguousarray(a).reshape(-1).view(np.uint32)
        got = np.ascontiguousarray(multihost_utils.process_allgather(words, tiled=False))
        return got.view(a.dtype).reshape((got.shape[0],) + a.shape)
    return np.asarray(multihost_utils.process_allgather(a, tiled=False))


def _allgather_rows(a: np.ndarray) -> list:
    """Variable-length row arrays from every process (lengths exchanged first)."""
    if jax.process_count() == 1:
        return [a]
    n = _allgather(np.array([a.shape[0]], np.int64))[:, 0]
    pad = int(n.max())
    buf = np.zeros((max(pad, 1),) + a.shape[1:], a.dtype)
    buf[: a.shape[0]] = a
    got = _allgather(buf)
    return [got[p, : n[p]] for p in range(len(n))]


def _fingerprint(sampler: Sampler) -> int:
    """A sampler's key, parameters and structure (the same on every process: one split stream)."""
    leaves, treedef = jax.tree_util.tree_flatten(sampler)
    is_key = lambda a: isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key)  # noqa: E731
    leaves = [jax.random.key_data(leaf) if is_key(leaf) else leaf for leaf in leaves]
    return _digest(str(treedef), *leaves)


def _digest(*parts) -> int:
    """A 63-bit fingerprint of strings and arrays (to check that processes agree)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, (np.ndarray, jax.Array)):
            a = np.asarray(part)
            h.update(str((a.dtype, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return int(np.frombuffer(h.digest(), np.int64)[0] & np.int64(2**63 - 1))


def _net_fingerprint(net) -> int:
    """Structure and values of a net: processes of one job must pass the same net."""
    leaves, treedef = jax.tree_util.tree_flatten(net)
    return _digest(str(treedef), *leaves)


# --- failing together ------------------------------------------------------------------
class RemoteInputError(ValueError):
    """Raised on every process of a job whose own input was fine when another process failed.

    The process whose input (or batch iterator) failed raises its own exception; every other
    process raises this one, at the same point of the run, with the failing process's
    exception type and message::

        process 1 failed before the first step: ValueError: source: expected inputs of dimension 5 (the net's), got 4

    With several failing processes the message lists each (``; ``-separated), in process order.

    Attributes:
      process: the first failing process (lowest index).
      error_type: the name of its exception's class (e.g. ``"TypeError"``).
      cause: its exception's message (at most about 1 KiB of it).
      failures: ``{process: (error_type, cause)}`` for every failing process.
      where: the point of the run: ``"before the first step"``, ``"in step s"`` (0-based)
        or ``"after the last step"``.
    """

    def __init__(self, failures: dict, where: str):
        self.failures = dict(sorted(failures.items()))
        self.process = min(self.failures)
        self.error_type, self.cause = self.failures[self.process]
        self.where = where
        super().__init__("; ".join(f"process {p} failed {where}: {t}: {m}" for p, (t, m) in self.failures.items()))


_STATUS_WORDS = 12  # every host exchange: one status word and 11 payload words per process
_MSG_BYTES = 1024  # an error's type and message, as UTF-8, per process


def _encode_error(error) -> np.ndarray:
    buf = np.zeros(_MSG_BYTES, np.uint8)
    if error is not None:
        text = f"{type(error).__name__}\x00{error}".encode("utf-8", "replace")
        if len(text) > _MSG_BYTES:
            text = text[: _MSG_BYTES - 3] + b"..."
        buf[: len(text)] = np.frombuffer(text, np.uint8)
    return buf.view(np.uint32)


def _decode_error(words: np.ndarray) -> tuple:
    raw = np.ascontiguousarray(words, np.uint32).tobytes().rstrip(b"\x00").decode("utf-8", "replace")
    name, _, message = raw.partition("\x00")
    return name or "Exception", message


def _raise_together(error, failed, collective: bool, where: str):
    """Every process raises: the failing ones their own ``error``, the others a RemoteInputError.

    Called by every process at the same point (each knows ``failed``, the failing process
    indices, from a replicated exchange); one all-gather of ``_MSG_BYTES`` per process
    carries the failing processes' messages.
    """
    if not collective:
        if error is None:  # a step flagged this process (NaN) but no exception was built
            raise RuntimeError("partax.distributed: a failure was flagged without an error")  # pragma: no cover
        raise error
    got = _allgather(_encode_error(error))
    if error is not None:
        raise error
    raise RemoteInputError({int(p): _decode_error(got[p]) for p in failed}, where)


def _host_exchange(error, payload, collective: bool, where: str) -> np.ndarray:
    """The status exchange between steps: every process sends ``[status, *payload]``.

    ``status`` is 1 when this process caught ``error`` (then ``payload`` is ignored), else 0.
    Every host exchange has the same shape (``_STATUS_WORDS`` int64 per process), so the
    exchanges of processes at different points of a failed run still pair up. Raises on
    every process when any process failed; returns ``payload`` of every process
    (``int64[P, _STATUS_WORDS - 1]``).
    """
    vec = np.zeros(_STATUS_WORDS, np.int64)
    if error is not None:
        vec[0] = 1
    else:
        vec[1 : 1 + len(payload)] = payload
    if not collective:
        if error is not None:
            raise error
        return vec[None, 1:]
    every = _allgather(vec)
    failed = np.flatnonzero(every[:, 0])
    if failed.size:
        _raise_together(error, failed, collective, where)
    return every[:, 1:]


def _is_collective(mesh) -> bool:
    """Whether a call on ``mesh`` exchanges with other processes (a mesh that is not a
    Mesh counts as the default one, so the process still joins the first exchange)."""
    if jax.process_count() == 1:
        return False
    if not isinstance(mesh, jax.sharding.Mesh):
        return True
    return {d.process_index for d in mesh.devices.flat} != {jax.process_index()}


def _initial_cap(B: int, D: int) -> int:
    """Rows per (sender, owner) bucket: ~2 B / D as a power of two, at most B."""
    return B if D == 1 else min(B, max(64, int(2 ** np.ceil(np.log2(2 * B / D)))))


# --- the per-step kernel -----------------------------------------------------------------
_MAX = np.uint32(0xFFFFFFFF)


def _segments(cols):
    """Heads of runs of equal rows in sorted columns, and each row's segment id."""
    n = cols[0].shape[0]
    diff = jnp.zeros(n - 1, bool)
    for c in cols:
        diff = diff | (c[1:] != c[:-1])
    head = jnp.concatenate([jnp.ones(1, bool), diff])
    return head, jnp.cumsum(head.astype(jnp.int32)) - 1


def _reduce_rows_device(khi, klo, lab, rank, cnt, payload, exact):
    """Sorts rows by ``(khi, klo, lab)`` and reduces equal ones.

    Padding rows carry ``lab == _MAX`` (and ``khi == klo == _MAX``): they sort last, and
    labels are below ``2^31`` so no real row has that label. Returns, segment heads first:
    ``(khi, klo, lab)``, summed counts, the smallest ``rank`` (the exemplar), the head
    payloads, the number of real segments, and (exact mode) whether two rows of one
    segment carry different payloads (codes).
    """
    n = khi.shape[0]
    iota = jnp.arange(n, dtype=jnp.int32)
    skhi, sklo, slab, perm = jax.lax.sort((khi, klo, lab, iota), num_keys=3)
    head, seg = _segments((skhi, sklo, slab))
    heads = jnp.zeros(n, jnp.int32).at[jnp.where(head, seg, n)].set(iota, mode="drop")
    counts = jax.ops.segment_sum(cnt[perm], seg, num_segments=n)  # dtype of cnt (uint32)
    ex = jax.ops.segment_min(rank[perm], seg, num_segments=n)
    spay = payload[perm]
    collide = jnp.zeros((), bool)
    if exact:
        collide = ((spay != spay[heads[seg]]).any(axis=1) & (slab != _MAX)).any()
    hk = jnp.stack([skhi, sklo, slab], axis=1)[heads]
    nreal = jnp.sum(head & (slab != _MAX))
    return hk[:, 0], hk[:, 1], hk[:, 2], counts, ex, spay[heads], nreal, collide


def _step_body(net, sampler, xin, labels, meta, *, ranges, base, tol, exact, cap, axes, num_devices):
    """One step on one device: codes, local reduction, all-to-all to owners, owner reduction.

    ``meta[0] = (rank0, valid, process, k, status)``: this device's first row has *step
    rank* ``rank0`` (rows of a step are ranked in global stream order: by process, then
    local index), its first ``valid`` rows are real inputs, it is device ``k`` of process
    ``process``, whose host reports ``status`` (0: fine, 1: it caught an error).

    Every counter on the device is a ``uint32`` / ``int32`` of one step (at most
    ``D B < 2^31`` rows, checked on the host), so none can wrap; the host sums them across
    steps in ``int64``. The last output is every device's ``_STATS`` row, all-gathered
    (replicated): the host reads per-process statuses, NaN counts and bucket sizes from it.
    """
    D = num_devices
    if sampler is not None:
        x = sampler.generate(xin).astype(net.dtype)
        if sampler.has_labels:
            labels = sampler.generate_labels(xin)
    else:
        x = xin
    B = x.shape[0]
    words, keys, near, finite = codes_and_keys(net, x, ranges, tol)
    iota = jnp.arange(B, dtype=jnp.uint32)
    valid = iota < meta[0, 1]
    rank = meta[0, 0] + iota
    bad = ~finite & valid
    khi = jnp.where(valid, keys[:, base, 1], _MAX)
    klo = jnp.where(valid, keys[:, base, 0], _MAX)
    lab = jnp.zeros(B, jnp.uint32) if labels is None else labels.astype(jnp.uint32)
    lab = jnp.where(valid, lab, _MAX)
    payload = [keys.reshape(B, -1)]
    if exact:
        payload += list(words)
    payload = jnp.concatenate(payload, axis=1) if len(payload) > 1 else payload[0]
    # (b) local reduction; rows come out sorted by key, hence grouped by owner (monotone in khi)
    hkhi, hklo, hlab, counts, ex, pay, nseg, coll1 = _reduce_rows_device(
        khi, klo, lab, rank, valid.astype(jnp.uint32), payload, exact
    )
    owner = (((hkhi >> 16) * np.uint32(D)) >> 16).astype(jnp.int32)
    seg_ok = jnp.arange(B) < nseg
    sizes = jax.ops.segment_sum(seg_ok.astype(jnp.int32), jnp.where(seg_ok, owner, 0), D)
    start = jnp.cumsum(sizes) - sizes
    pos = jnp.arange(B, dtype=jnp.int32) - start[owner]
    ok = seg_ok & (pos < cap)
    dest = jnp.where(ok, owner * cap + pos, D * cap)
    row = jnp.concatenate([jnp.stack([hkhi, hklo, hlab, ex, counts.astype(jnp.uint32)], axis=1), pay], axis=1)
    pad = jnp.zeros((1, row.shape[1]), jnp.uint32).at[0, :_HEAD].set(jnp.array([_MAX, _MAX, _MAX, _MAX, 0], jnp.uint32))
    send = jnp.broadcast_to(pad, (D * cap, row.shape[1])).at[dest].set(row, mode="drop")
    # (c) to the owners
    recv = jax.lax.all_to_all(send, axes, 0, 0, tiled=True) if D > 1 else send
    # (d) owner reduction
    k2hi, k2lo, l2, c2, ex2, pay2, nown, coll2 = _reduce_rows_device(
        recv[:, _KHI], recv[:, _KLO], recv[:, _LAB], recv[:, _RANK], recv[:, _CNT],
        recv[:, _HEAD:], exact,
    )  # counts stay uint32: a key's count in a step is at most D B < 2^31
    out = jnp.concatenate([jnp.stack([k2hi, k2lo, l2, ex2, c2.astype(jnp.uint32)], axis=1), pay2], axis=1)
    stats = jnp.stack(
        [meta[0, 2].astype(jnp.int32), meta[0, 3].astype(jnp.int32), meta[0, 4].astype(jnp.int32),
         jnp.sum(valid, dtype=jnp.int32), jnp.sum(near & valid, dtype=jnp.int32), jnp.sum(bad, dtype=jnp.int32),
         jnp.min(jnp.where(bad, iota.astype(jnp.int32), B)), jnp.max(sizes).astype(jnp.int32),
         (coll1 | coll2).astype(jnp.int32)]
    )
    every = jax.lax.all_gather(stats, axes) if D > 1 else stats[None]
    return out, nown[None].astype(jnp.int32), every.reshape(D, _NSTATS)


@functools.lru_cache(maxsize=64)
def _step_fn(mesh, axes, ranges, base, tol, exact, cap, with_sampler, with_labels):
    D = int(np.prod([mesh.shape[a] for a in axes]))
    spec = P(axes)

    def body(net, sampler, xin, labels, meta):
        return _step_body(
            net, sampler, xin, labels, meta, ranges=ranges, base=base, tol=tol, exact=exact, cap=cap,
            axes=axes, num_devices=D,
        )

    in_specs = (P(), P() if with_sampler else None, spec, spec if with_labels else None, spec)
    f = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=(spec, spec, P()), check_vma=False)
    return jax.jit(f)


# --- host side ---------------------------------------------------------------------------
class _Rows(NamedTuple):
    key: np.ndarray  # uint64[n]: full-code key
    label: np.ndarray  # int64[n]
    count: np.ndarray  # int64[n]
    ex: np.ndarray  # int64[n]: process << 48 | local index (order = global order)
    payload: np.ndarray  # uint32[n, P]


def _rows_from_wire(a: np.ndarray, B: int, rank_pid: np.ndarray, rank_base: np.ndarray) -> _Rows:
    """Owner rows of one step -> host rows; step ranks -> encoded exemplars.

    ``rank_pid[j]`` / ``rank_base[j]``: process code and local index of the first row of the
    device of step rank ``j`` (rows ``j B .. j B + B - 1``).
    """
    key = (a[:, _KHI].astype(np.uint64) << np.uint64(32)) | a[:, _KLO].astype(np.uint64)
    r = a[:, _RANK].astype(np.int64)
    j, i = r // B, r % B
    ex = (rank_pid[j] << _IDX_BITS) | (rank_base[j] + i)
    return _Rows(key, a[:, _LAB].astype(np.int64), a[:, _CNT].astype(np.int64), ex, np.ascontiguousarray(a[:, _HEAD:]))


def _concat(rows: Sequence[_Rows]) -> _Rows:
    return _Rows(*(np.concatenate(cols) for cols in zip(*rows)))


def _collision(key):
    return HashCollisionError(
        f"two different codes share the key {int(key):#018x}; the merge would join two regions"
    )


def _reduce_rows(rows: _Rows, exact: bool) -> _Rows:
    """Groups rows of equal ``(key, label)``: counts add, exemplar min, head payload."""
    n = rows.key.shape[0]
    if n == 0:
        return rows
    order = np.lexsort((rows.ex, rows.label, rows.key))
    k, lab = rows.key[order], rows.label[order]
    head = np.empty(n, bool)
    head[0] = True
    head[1:] = (k[1:] != k[:-1]) | (lab[1:] != lab[:-1])
    starts = np.flatnonzero(head)
    pay = rows.payload[order]
    if exact:
        bad = (pay != np.repeat(pay[starts], np.diff(np.append(starts, n)), axis=0)).any(axis=1)
        if bad.any():
            raise _collision(k[np.flatnonzero(bad)[0]])
    return _Rows(k[starts], lab[starts], np.add.reduceat(rows.count[order], starts), rows.ex[order][starts], pay[starts])


class _RowAccumulator:
    def __init__(self, exact: bool, width: int):
        self.exact = exact
        self.table = _Rows(
            np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros((0, width), np.uint32),
        )
        self.pending, self.size = [], 0

    def add(self, rows: _Rows):
        if rows.key.shape[0]:
            self.pending.append(rows)
            self.size += rows.key.shape[0]
        if self.size > max(2**16, self.table.key.shape[0]):
            self._flush()

    def _flush(self):
        if self.pending:
            self.table = _reduce_rows(_concat([self.table] + self.pending), self.exact)
        self.pending, self.size = [], 0

    def result(self) -> _Rows:
        self._flush()
        return self.table


def _finish(rows: _Rows, offsets, total, near, net, scopes, ranges, index, kernel_ranges, has_labels, exact, tol):
    """Global (key, label) rows -> the Partition, as :func:`partax.partition` builds it."""
    pid = rows.ex >> _IDX_BITS
    ex = np.asarray(offsets, np.int64)[pid] + (rows.ex & ((1 << _IDX_BITS) - 1))
    order = np.lexsort((rows.label, rows.key))
    key, lab, cnt, ex, pay = rows.key[order], rows.label[order], rows.count[order], ex[order], rows.payload[order]
    n = key.shape[0]
    head = np.empty(n, bool)
    head[:1] = True
    np.not_equal(key[1:], key[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    counts = np.add.reduceat(cnt, starts) if n else cnt
    exemplars = np.minimum.reduceat(ex, starts) if n else ex
    if exact and n:
        bad = (pay != np.repeat(pay[starts], np.diff(np.append(starts, n)), axis=0)).any(axis=1)
        if bad.any():
            raise _collision(key[np.flatnonzero(bad)[0]])
    payload = pay[starts]
    lc = None
    if has_labels:
        C = int(lab.max()) + 1 if n else 1
        group = np.cumsum(head) - 1
        lc = np.zeros((starts.size, C), np.int64)
        np.add.at(lc, (group, lab), cnt)
    R = len(kernel_ranges)
    range_keys = np.ascontiguousarray(payload[:, : 2 * R]).view(np.uint64)
    word_ends = np.cumsum([0] + [-(-w // 32) for w in net.widths])
    built = []
    for r, (f, t) in enumerate(ranges):
        code = np.ascontiguousarray(payload[:, 2 * R + word_ends[f - 1] : 2 * R + word_ends[t]]) if exact else None
        built.append(reduce_by_key(range_keys[:, r].copy(), counts, exemplars, lc, code, total, check_codes=exact))
    tables = {k: built[r] for k, r in index.items()}
    return Partition(tables, net.widths, net.input_dim, int(total), int(near), tol)


def _device_order(sharding, global_rows: int, per_device: int):
    """Addressable devices of ``sharding`` in the order of their rows in the global array."""
    idx = sharding.addressable_devices_indices_map((global_rows,))
    return sorted(idx, key=lambda d: (idx[d][0].start or 0))


def _put(sharding, devices, parts, global_shape):
    arrs = [jax.device_put(p, d) for p, d in zip(parts, devices)]
    return jax.make_array_from_single_device_arrays(global_shape, sharding, arrs)


_LABEL_LIMIT = 2**31  # labels travel as uint32 words (all ones marks padding rows)
_MAX_ROWS_PER_STEP = 2**31  # keeps every per-step device counter (int32 / uint32) exact


def _check_label_range(y, name: str = "labels") -> None:
    if y is not None and len(y) and int(np.max(y)) >= _LABEL_LIMIT:
        raise ValueError(f"{name}: expected labels below 2^31 (they travel as 32-bit words), got {int(np.max(y))}")


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
      batch_size: inputs per *device* per step (default: :func:`default_batch_size`, shrunk
        for small sources; a multiple of the sampler block for samplers); a step holds
        fewer than ``2^31`` rows over the whole mesh.
      exact: carry the full codes and raise :class:`~partax.codes.HashCollisionError` on
        a key shared by two codes (on device and in the host merges).
      progress: a tqdm bar on process 0.
      boundary_tol: as in :func:`partax.partition`.

    Returns:
      The global :class:`~partax.partition.Partition` on every process (a tuple for a
      stacked net). Exemplars are global stream indices (process ``p``'s inputs after those
      of processes ``0..p-1``).

    Raises:
      ValueError / TypeError: as :func:`partax.partition` (wrong input dimension, an empty
        shard, labels negative, non-integer or above ``2^31 - 1``, NaN or inf inputs, ...),
        and when processes pass different nets, scopes, ``batch_size``, ``exact`` or kinds
        of source. Raised on every process at the same point of the run: the process
        whose input failed raises its own exception (an exception of its batch iterator
        too), every other process a :class:`RemoteInputError` naming that process and its
        message. No process is left waiting in a collective.
      RemoteInputError: on the processes whose input was fine, when another one failed.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 2])
      >>> x = np.random.default_rng(1).uniform(-1, 1, (101, 2)).astype(np.float32)
      >>> partax.distributed.partition(net, x, progress=False).total
      101
    """
    kw = dict(mesh=mesh, scopes=scopes, batch_size=batch_size, exact=exact, progress=progress,
              boundary_tol=boundary_tol, _timings=_timings)
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
        return _partition_one(net, source, labels, error=error, **kw)
    if isinstance(src, Sampler):
        return tuple(_partition_one(net[i], source, None, **kw) for i in range(net.stack_shape[0]))
    return tuple(_partition_one(net[i], source, labels, **kw) for i in range(net.stack_shape[0]))


def _partition_one(net, source, labels, *, mesh, scopes, batch_size, exact, progress, boundary_tol, _timings,
                   error=None):
    """:func:`partition` of one net. ``error``: an exception already caught on this process,
    reported at the first exchange."""
    collective = _is_collective(mesh)
    nproc, me = (jax.process_count(), jax.process_index()) if collective else (1, 0)

    # -- 0. local checks: an error here is reported at the first exchange ------------------
    info = None
    if error is None:
        try:
            scopes = _validate_scopes(scopes)
            if not (isinstance(boundary_tol, (int, float, np.floating)) and np.isfinite(boundary_tol)
                    and boundary_tol >= 0):
                raise ValueError(f"boundary_tol: expected a finite number >= 0, got {boundary_tol!r}")
            mesh = data_mesh() if mesh is None else mesh
            if not isinstance(mesh, jax.sharding.Mesh):
                raise TypeError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
            mesh_procs = {d.process_index for d in mesh.devices.flat}
            if collective and len(mesh_procs) != jax.process_count():
                raise ValueError(
                    "mesh: expected either devices of this process only or devices of every process "
                    f"(this mesh spans processes {sorted(mesh_procs)} of {jax.process_count()})"
                )
            src = as_source(source, labels)
            is_sampler = isinstance(src, Sampler)
            if is_sampler:
                src = src.bind(net.input_dim)
            if src.dim != net.input_dim:
                raise ValueError(f"source: expected inputs of dimension {net.input_dim} (the net's), got {src.dim}")
            block = src.block if is_sampler else 1
            if is_sampler and -(-src.num_inputs // block) > 2**31:
                raise ValueError(f"source: expected a sampler of at most 2^31 blocks, got {src.num_inputs} inputs "
                                 f"in blocks of {block}")
            if batch_size is not None:
                if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
                    raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
                if batch_size % block:
                    raise ValueError(
                        f"batch_size: expected a multiple of the sampler's block ({block}), got {batch_size}"
                    )
            if getattr(src, "labels", None) is not None:
                _check_label_range(src.labels)
            # what the processes must agree on (fingerprints only matter across processes)
            info = [
                src.dim, int(src.has_labels), int(is_sampler), -1 if src.num_inputs is None else int(src.num_inputs),
                sum(d.process_index == jax.process_index() for d in mesh.devices.flat),
                _fingerprint(src) if is_sampler and collective else 0, int(bool(exact)),
                _net_fingerprint(net) if collective else 0,
                _digest(scopes, float(boundary_tol), tuple(mesh.axis_names), mesh.devices.shape,
                        [d.id for d in mesh.devices.flat]) if collective else 0,
                -1 if batch_size is None else int(batch_size),
            ]
        except Exception as e:
            error = e

    # -- 1. agreement (the first exchange: raises on every process if any failed) ---------
    every = _host_exchange(error, info, collective, "before the first step")
    _agree(every, nproc)
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
    if D * B >= _MAX_ROWS_PER_STEP:
        raise ValueError(f"batch_size: {B} inputs per device on {D} devices exceed 2^31 rows per step")

    L = net.num_hidden
    ranges, index = tables_for(scopes, L)
    kernel_ranges = ranges if (1, L) in ranges else ranges + ((1, L),)
    base = kernel_ranges.index((1, L))
    width = 2 * len(kernel_ranges) + (sum(-(-w // 32) for w in net.widths) if exact else 0)
    cap = _initial_cap(B, D)
    tol = float(boundary_tol)
    devices = _device_order(sharding, D * B, B)
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
        gx = (D * per_dev,) + tuple(xs.shape[1:])
        x = _put(sharding, devices, parts_x, gx)
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
        meta = _put(sharding, devices, metas, (D, _META))
        return x, y, meta

    timings = _timings if _timings is not None else {}
    timings.setdefault("device_s", 0.0)
    timings.setdefault("host_s", 0.0)
    acc = _RowAccumulator(exact, width)
    near_total = [0]  # Python ints: exact at any size; int64 in the Partition
    n_mine = [0]
    caps = [cap]
    failure = [None]  # this process's exception, reported with the next step (or exchange)
    sampler_arg = src if is_sampler else None

    def dispatch(chunk, step):
        """Dispatches one step; an exception of this process turns it into an empty step
        that carries status 1 (every process still takes part in the step)."""
        try:
            if failure[0] is None and has_labels and not is_sampler and chunk.labels is not None:
                _check_label_range(chunk.labels[: chunk.num_valid])
            args = step_inputs(chunk, 0 if failure[0] is None else 1)
        except Exception as e:
            failure[0] = e
            chunk = empty_chunk(chunk.start)
            args = step_inputs(chunk, 1)
        fn = _step_fn(mesh, axes, kernel_ranges, base, tol, exact, caps[0], is_sampler, has_labels and not is_sampler)
        return fn(net, sampler_arg, *args), chunk, args, caps[0], step

    def check_step(stats, chunk, step):
        """Raises on every process if any process flagged this step (status or NaN)."""
        procs = stats[:, _S_PROC]
        flagged = (stats[:, _S_STATUS] != 0) | (stats[:, _S_BAD] > 0)
        if not flagged.any():
            return
        failed = np.unique(procs[flagged])
        err = failure[0]
        if err is None and me in failed:  # NaN or inf in this process's inputs
            rows = stats[(procs == me) & (stats[:, _S_BAD] > 0)]
            first = rows[np.argmin(rows[:, _S_DEV])]
            idx = chunk.start + int(first[_S_DEV]) * B + int(first[_S_FIRST_BAD])
            whose = "" if nproc == 1 else f" of process {me}'s inputs"
            nbad = int(stats[procs == me, _S_BAD].sum())
            err = ValueError(f"source: input {idx}{whose} has a NaN or inf coordinate ({nbad} in step {step}); "
                             "expected finite inputs")
        _raise_together(err, failed, collective, f"in step {step}")

    def reduce(item):
        (out, nown, stats), chunk, args, cap_used, step = item
        t0 = time.perf_counter()
        stats = np.asarray(stats).astype(np.int64)  # [D, _NSTATS], the same on every process
        timings["device_s"] += time.perf_counter() - t0
        check_step(stats, chunk, step)
        if stats[:, _S_COLLIDE].any():
            raise HashCollisionError("two different codes share one 64-bit key; the merge would join two regions")
        bucket = int(stats[:, _S_BUCKET].max())
        if bucket > cap_used:  # a bucket overflowed: every process re-runs the step
            caps[0] = max(caps[0], min(B, int(2 ** np.ceil(np.log2(bucket)))))
            fn = _step_fn(mesh, axes, kernel_ranges, base, tol, exact, caps[0], is_sampler,
                          has_labels and not is_sampler)
            return reduce((fn(net, sampler_arg, *args), chunk, args, caps[0], step))
        t0 = time.perf_counter()
        if failure[0] is None:
            try:
                counts = {s.device: int(np.asarray(s.data)[0]) for s in nown.addressable_shards}
                rank_base = proc_base[rank_proc] + step * B * D_loc[rank_proc] + rank_k * B
                for s in out.addressable_shards:
                    m = counts[s.device]
                    if m:
                        acc.add(_rows_from_wire(np.asarray(s.data[:m]), B, rank_pid, rank_base))
            except Exception as e:  # e.g. a collision in this host's merge: reported with the next step
                failure[0] = e
        near_total[0] += int(stats[:, _S_NEAR].sum())
        n_mine[0] += chunk.num_valid
        timings["host_s"] += time.perf_counter() - t0
        return int(stats[:, _S_VALID].sum())

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
        while True:
            if known and step >= num_steps:
                break
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
            mine = acc.result()
        except Exception as e:
            failure[0] = e
    # the last exchange: failures after the last step, and every shard's size
    tail = _host_exchange(failure[0], [n_mine[0]], collective, "after the last step")
    if nproc > 1:
        counts_all = sizes if split else tail[:, 0]
        wire = np.concatenate(
            [
                mine.key[:, None].view(np.uint32).reshape(-1, 2),
                mine.label[:, None].astype(np.uint32),
                mine.count[:, None].view(np.uint32).reshape(-1, 2),
                mine.ex[:, None].view(np.uint32).reshape(-1, 2),
                mine.payload,
            ],
            axis=1,
        )
        got = np.concatenate(_allgather_rows(wire))
        key = np.ascontiguousarray(got[:, 0:2]).view(np.uint64)[:, 0]
        cnt = np.ascontiguousarray(got[:, 3:5]).view(np.int64)[:, 0]
        ex = np.ascontiguousarray(got[:, 5:7]).view(np.int64)[:, 0]
        mine = _Rows(key, got[:, 2].astype(np.int64), cnt, ex, got[:, 7:])
    else:
        counts_all = np.array([n_mine[0]], np.int64)
    offsets = np.zeros(nproc, np.int64) if split else np.concatenate([[0], np.cumsum(counts_all)[:-1]])
    total = int(counts_all.sum())
    if total == 0:
        raise ValueError("source: holds no inputs")
    result = _finish(mine, offsets, total, near_total[0], net, scopes, ranges, index, kernel_ranges, has_labels,
                     exact, tol)
    timings["finish_s"] = time.perf_counter() - t0
    return result


def _agree(every: np.ndarray, nproc: int) -> None:
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
        raise ValueError("source: every process must pass the same kind of source and the same exact flag")
    if (every[:, 4] == 0).any():
        raise ValueError("mesh: every process must own at least one device of the mesh")


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
