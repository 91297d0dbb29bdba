"""Grouping on the device: a table of known full-code keys that absorbs each chunk's inputs.

The partition engine's device path (``partax.partition(..., reduce="device")``) groups a
chunk's inputs where they are computed, so that what leaves the device is one row per region
and per chunk, not one per input. Regions repeat (a net's inputs fall into far fewer regions
than there are inputs), so most inputs of a chunk fall into regions met by earlier chunks. A
:class:`KeyTable` holds those regions' keys on the device, in a bucketed hash table built on the
host (:func:`build_key_table`): bucket ``lo & (buckets - 1)`` of a key's low lane, ``ways``
slots per bucket. Per chunk, :func:`absorb_chunk` (traceable, inside the engine's jitted step)

1. looks every input's full-code key up in its bucket (one gather of ``ways`` slots);
2. counts the hits per slot (and per slot and label) with segment sums;
3. compares each hit's *value* (the check key of its full code with the collision check, its
   packed code in exact mode) with the slot's: one key with two values is a hash collision,
   flagged and raised by the engine as :class:`~partax.grouping.HashCollisionError`;
4. compacts the misses (inputs whose key the table does not hold: new regions) into a static
   capacity, with their count, so that the host groups only them (the host path's
   :func:`~partax.engine.chunk_base_table` on those rows).

A chunk whose misses exceed the capacity, or whose labels exceed the static number of classes,
is flagged (``overflow``) and re-run by the engine with a larger capacity: no row is ever
dropped. A region's first input is always a miss (the table only holds keys of earlier
chunks), so the hits carry no exemplar: the host's miss rows do.

Why a hash table and not a sort: on the CPU backend XLA sorts a chunk of 65,536 keys in about
20 ms, NumPy's radix sort in under 1 ms; a lookup costs a few gathers per input on every
backend. Keys the table cannot place (a full bucket) stay misses: slower, never wrong.

Example:
    >>> import numpy as np
    >>> from partax.device_grouping import absorb_chunk, build_key_table
    >>> keys = np.array([5, 2**40 + 7, 9], np.uint64)
    >>> table = build_key_table(keys, np.zeros((3, 0), np.uint32), np.array([3, 2, 1]), buckets=4, ways=2)
    >>> sorted(table.slot_keys[table.slot_rows >= 0].tolist()) == sorted(keys.tolist())
    True
    >>> lanes = np.stack([keys & 0xFFFFFFFF, keys >> 32], -1).astype(np.uint32)
    >>> x = np.concatenate([lanes, lanes[:1], np.array([[8, 0]], np.uint32)])  # 5 again, then a new key 8
    >>> out = absorb_chunk(table.lanes, table.values, x, np.zeros((5, 0), np.uint32), None, 5, 1, 4)
    >>> int(out.counts.sum()), int(out.num_misses), out.misses[: int(out.num_misses)].tolist()
    (4, 1, [4])
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KeyTable", "Absorbed", "build_key_table", "absorb_chunk", "slot_first_ranks", "table_buckets"]


class KeyTable(NamedTuple):
    """A bucketed hash table of full-code keys, built on the host (NumPy arrays).

    Attributes:
      lanes: ``uint32[buckets, ways, 2]``, each slot's key as ``(lo, hi)`` lanes. An empty
        slot of bucket ``b`` holds ``lo = b ^ 1``, which no key of bucket ``b`` can equal.
      values: ``uint32[buckets * ways, W]``, what a hit must carry (``W`` may be 0).
      slot_keys: ``uint64[buckets * ways]``, each slot's key (meaningless where empty).
      slot_rows: ``int64[buckets * ways]``, the input row each slot holds, ``-1`` if empty.
      dropped: keys left out because their bucket was full (they stay misses).
    """

    lanes: np.ndarray
    values: np.ndarray
    slot_keys: np.ndarray
    slot_rows: np.ndarray
    dropped: int


def table_buckets(num_keys: int, ways: int, minimum: int = 1024) -> int:
    """Buckets for ``num_keys`` keys: a power of four times ``minimum``, at most half the
    slots filled (few sizes: each one is a compilation of the engine's step)."""
    b = minimum
    while b * ways < 2 * num_keys:
        b *= 4
    return b


def build_key_table(keys, values, weights, *, buckets: int, ways: int = 4) -> KeyTable:
    """A :class:`KeyTable` of distinct keys; where a bucket overflows, the heaviest keys stay.

    Args:
      keys: ``uint64[K]``, distinct.
      values: ``uint32[K, W]``, each key's value (compared with every hit's).
      weights: ``int[K]``, e.g. inputs seen per key: a full bucket keeps its heaviest keys.
      buckets: number of buckets, a power of two ``>= 2``.
      ways: slots per bucket.

    Returns:
      The :class:`KeyTable`.
    """
    keys = np.asarray(keys, np.uint64)
    values = np.asarray(values, np.uint32)
    weights = np.asarray(weights, np.int64)
    if buckets < 2 or buckets & (buckets - 1):
        raise ValueError(f"buckets: expected a power of two >= 2, got {buckets}")
    if ways < 1:
        raise ValueError(f"ways: expected >= 1, got {ways}")
    if values.ndim != 2 or values.shape[0] != keys.shape[0] or weights.shape != keys.shape:
        raise ValueError(f"values, weights: expected [{keys.shape[0]}, W] and [{keys.shape[0]}], "
                         f"got {values.shape} and {weights.shape}")
    S = buckets * ways
    bucket = (keys & np.uint64(buckets - 1)).astype(np.int64)
    order = np.lexsort((-weights, bucket))  # by bucket, heaviest first
    b_sorted = bucket[order]
    first = np.searchsorted(b_sorted, b_sorted, side="left")
    rank = np.arange(order.size) - first
    keep = rank < ways
    rows = order[keep]
    slots = b_sorted[keep] * ways + rank[keep]
    slot_rows = np.full(S, -1, np.int64)
    slot_rows[slots] = rows
    slot_keys = np.zeros(S, np.uint64)
    slot_keys[slots] = keys[rows]
    lanes = np.empty((S, 2), np.uint32)
    lanes[:, 0] = (np.arange(S) // ways) ^ 1  # empty: a low lane outside the bucket
    lanes[:, 1] = 0
    lanes[slots, 0] = (keys[rows] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    lanes[slots, 1] = (keys[rows] >> np.uint64(32)).astype(np.uint32)
    vals = np.zeros((S, values.shape[1]), np.uint32)
    vals[slots] = values[rows]
    return KeyTable(lanes.reshape(buckets, ways, 2), vals, slot_keys, slot_rows, int((~keep).sum()))


class Absorbed(NamedTuple):
    """What :func:`absorb_chunk` returns (device arrays).

    Attributes:
      counts: ``int32[S]``, hits per slot.
      label_counts: ``int32[S, C]`` hits per slot and label, or None.
      collided: ``bool[]``, some hit's value differs from its slot's.
      collided_slot: ``int32[]``, the slot of the first such hit.
      num_misses: ``int32[]``, valid inputs whose key the table lacks.
      misses: ``int32[capacity]``, their rows in increasing order (padding repeats row 0).
      overflow: ``bool[]``, the misses exceed the capacity or a label is ``>= C``: re-run.
    """

    counts: object
    label_counts: object
    collided: object
    collided_slot: object
    num_misses: object
    misses: object
    overflow: object


def absorb_chunk(lanes, values, full_keys, row_values, labels, num_valid, num_classes: int, capacity: int) -> Absorbed:
    """Absorbs one chunk's inputs into the slots of a key table (traceable; see the module).

    Args:
      lanes: ``uint32[buckets, ways, 2]`` (:attr:`KeyTable.lanes`).
      values: ``uint32[S, W]`` (:attr:`KeyTable.values`).
      full_keys: ``uint32[N, 2]``, each input's full-code key lanes ``(lo, hi)``.
      row_values: ``uint32[N, W]``, each input's value (its check key, or its code words).
      labels: ``int32[N]`` or None.
      num_valid: the valid rows (the first ``num_valid``; the rest is padding).
      num_classes: the static number of label columns (ignored without labels).
      capacity: the static number of miss rows returned.

    Returns:
      :class:`Absorbed`.
    """
    buckets, ways = lanes.shape[0], lanes.shape[1]
    S = buckets * ways
    N = full_keys.shape[0]
    lo, hi = full_keys[:, 0], full_keys[:, 1]
    b = (lo & jnp.uint32(buckets - 1)).astype(jnp.int32)
    cand = lanes[b]  # [N, ways, 2]
    match = (cand[..., 0] == lo[:, None]) & (cand[..., 1] == hi[:, None])
    valid = jnp.arange(N) < num_valid
    hit = match.any(axis=-1) & valid
    slot = b * ways + jnp.argmax(match, axis=-1).astype(jnp.int32)
    seg = jnp.where(hit, slot, S)  # bin S: misses and padding
    counts = jax.ops.segment_sum(jnp.ones(N, jnp.int32), seg, num_segments=S + 1)[:S]
    overflow = jnp.zeros((), bool)
    label_counts = None
    if labels is not None:
        labels = labels.astype(jnp.int32)
        overflow = (valid & ((labels >= num_classes) | (labels < 0))).any()
        lseg = jnp.where(hit, slot * num_classes + jnp.clip(labels, 0, num_classes - 1), S * num_classes)
        label_counts = jax.ops.segment_sum(jnp.ones(N, jnp.int32), lseg, num_segments=S * num_classes + 1)
        label_counts = label_counts[: S * num_classes].reshape(S, num_classes)
    if values.shape[-1]:
        bad = hit & (values[slot] != row_values).any(axis=-1)
        collided, collided_slot = bad.any(), slot[jnp.argmax(bad)]
    else:
        collided, collided_slot = jnp.zeros((), bool), jnp.zeros((), jnp.int32)
    miss = valid & ~hit
    num_misses = miss.sum(dtype=jnp.int32)
    # compaction: each miss's rank by a parallel prefix sum (three times faster than
    # jnp.nonzero's cumsum on the CPU backend), then one scatter into the static capacity
    rank = jax.lax.associative_scan(jnp.add, miss.astype(jnp.int32)) - 1
    target = jnp.where(miss & (rank < capacity), rank, capacity)
    misses = jnp.zeros(capacity, jnp.int32).at[target].set(jnp.arange(N, dtype=jnp.int32), mode="drop")
    overflow = overflow | (num_misses > capacity)
    return Absorbed(counts, label_counts, collided, collided_slot, num_misses, misses, overflow)


def slot_first_ranks(lanes, full_keys, ranks, num_valid):
    """Per slot of a key table, the smallest rank of the valid inputs that hit it (traceable).

    What :func:`absorb_chunk` leaves out: a hit can be a region's first input when the
    table's keys come from inputs that are earlier in a step but later in the stream (the
    sharded engine's processes: process 0's later steps precede process 1's earlier ones in
    the global stream), so there the hits carry their exemplar too.

    Args:
      lanes: ``uint32[buckets, ways, 2]`` (:attr:`KeyTable.lanes`).
      full_keys: ``uint32[N, 2]``, each input's full-code key lanes ``(lo, hi)``.
      ranks: ``uint32[N]``, each input's rank (e.g. its position in the stream of a step).
      num_valid: the valid rows (the first ``num_valid``).

    Returns:
      ``uint32[S]``: the smallest rank per slot, ``2^32 - 1`` where no valid input hit it.

    Example:
      >>> import numpy as np
      >>> from partax.device_grouping import build_key_table, slot_first_ranks
      >>> t = build_key_table(np.array([5], np.uint64), np.zeros((1, 0), np.uint32), np.ones(1), buckets=2, ways=1)
      >>> x = np.array([[9, 0], [5, 0], [5, 0]], np.uint32)
      >>> slot_first_ranks(t.lanes, x, np.array([7, 3, 1], np.uint32), 2).tolist()
      [4294967295, 3]
    """
    buckets, ways = lanes.shape[0], lanes.shape[1]
    S = buckets * ways
    N = full_keys.shape[0]
    lo, hi = full_keys[:, 0], full_keys[:, 1]
    b = (lo & jnp.uint32(buckets - 1)).astype(jnp.int32)
    cand = lanes[b]
    match = (cand[..., 0] == lo[:, None]) & (cand[..., 1] == hi[:, None])
    hit = match.any(axis=-1) & (jnp.arange(N) < num_valid)
    slot = b * ways + jnp.argmax(match, axis=-1).astype(jnp.int32)
    seg = jnp.where(hit, slot, S)
    first = jax.ops.segment_min(jnp.asarray(ranks, jnp.uint32), seg, num_segments=S + 1)[:S]
    return jnp.where(jax.ops.segment_sum(hit.astype(jnp.int32), seg, num_segments=S + 1)[:S] > 0, first,
                     jnp.uint32(0xFFFFFFFF))
