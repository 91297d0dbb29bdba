"""One step of the sharded engine on the devices: codes, key table, misses' reduction, all-to-all.

Inside one jitted :func:`jax.shard_map` every device of the mesh, on its ``B`` inputs:

a. computes codes, the key of every input's full code and the per-layer hashes
   (:func:`partax.coding.codes_and_layer_hashes`; with the collision check,
   :func:`partax.coding.codes_hashes_and_checks`, whose check lanes fingerprint the wide
   layers);
a'. looks every key up in its table of known keys (:func:`partax.device_grouping.absorb_chunk`):
   hits are counted per slot (and per slot and label; with ``first_ranks`` their smallest
   step rank per slot too), a hit whose value (check key, or code words in exact mode)
   differs from its slot's is flagged, and the misses are compacted into ``capacity`` rows
   (more are flagged: the host re-runs the step);
b. reduces its misses locally: one ``lax.sort`` on ``(key_hi, key_lo, label)`` (three
   ``uint32`` sort keys; padding rows carry an all-ones sentinel and sort last), a segment
   sum of counts and a segment min of *step ranks*, so each distinct ``(full-code key,
   label)`` appears once with its count and its exemplar;
c. sends every distinct row to its *owner* device, ``owner = (key_hi >> 16) * D >> 16``,
   with :func:`jax.lax.all_to_all` over fixed-capacity padded buckets of ``cap`` rows per
   (sender, owner) pair;
d. the owner sorts and reduces what it received the same way.

A row on the wire is ``HEAD`` ``uint32`` columns ``(key_hi, key_lo, label, rank, count)``
and then its payload, the columns of :class:`partax.coarsening.PayloadLayout` (code words
in exact mode, then the per-layer hashes, then the check lanes): the host finishes every
range key from it, as the single-device engine does. In exact mode or with the collision
check, each reduction compares the payloads of the rows it joins (they are functions of
the code: two payloads under one ``(key, label)`` are a hash collision) and flags it.

Every device also reports a row of ``int32`` statistics (its process's status, valid rows,
near-boundary rows, NaN/inf rows and the first one, its largest bucket, the collision
flag, its misses, their distinct rows, the overflow flag, its largest label, the rows it
owns after the step), all-gathered, so every process reads the same values after the step
and derives the same sizes for the next ones.

Example:
    >>> from partax.sharded_step import initial_cap
    >>> initial_cap(4096, 4), initial_cap(4096, 1)
    (2048, 4096)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from partax.coding import codes_and_layer_hashes, codes_hashes_and_checks
from partax.device_grouping import absorb_chunk, slot_first_ranks

__all__ = [
    "CNT", "HEAD", "KHI", "KLO", "LAB", "META", "NSTATS", "RANK", "S_BAD", "S_BUCKET", "S_COLLIDE", "S_DEV",
    "S_DISTINCT", "S_FIRST_BAD", "S_MAX_LABEL", "S_MISSES", "S_NEAR", "S_OVERFLOW", "S_OWNED", "S_PROC", "S_STATUS",
    "S_VALID", "initial_cap", "step_body", "step_function",
]

# column layout of a row on the wire (uint32 lanes), then the payload
KHI, KLO, LAB, RANK, CNT = range(5)
HEAD = 5
# per-device statistics of a step (int32), all-gathered to every device
(S_PROC, S_DEV, S_STATUS, S_VALID, S_NEAR, S_BAD, S_FIRST_BAD, S_BUCKET, S_COLLIDE, S_MISSES, S_DISTINCT,
 S_OVERFLOW, S_MAX_LABEL, S_OWNED) = range(14)
NSTATS = 14
META = 5  # per-device step metadata: rank0, valid, process, k, status
_MAX = np.uint32(0xFFFFFFFF)


def initial_cap(B: int, D: int) -> int:
    """Rows per (sender, owner) bucket: ~2 B / D as a power of two, at most B.

    Args:
      B: inputs per device per step.
      D: devices of the mesh.

    Returns:
      The bucket capacity.
    """
    return B if D == 1 else min(B, max(64, int(2 ** np.ceil(np.log2(2 * B / D)))))


def _segments(cols):
    """Heads of runs of equal rows in sorted columns, and each row's segment id."""
    n = cols[0].shape[0]
    diff = jnp.zeros(n - 1, bool)
    for c in cols:
        diff = diff | (c[1:] != c[:-1])
    head = jnp.concatenate([jnp.ones(1, bool), diff])
    return head, jnp.cumsum(head.astype(jnp.int32)) - 1


def _reduce_rows(khi, klo, lab, rank, cnt, payload, compare):
    """Sorts rows by ``(khi, klo, lab)`` and reduces equal ones.

    Padding rows carry ``lab == _MAX`` (and ``khi == klo == _MAX``): they sort last, and
    labels are below ``2^31`` so no real row has that label. Returns, segment heads first:
    ``(khi, klo, lab)``, summed counts, the smallest ``rank`` (the exemplar), the head
    payloads, the number of real segments, and (with ``compare``) whether two rows of one
    segment carry different payloads (a collision).
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
    if compare:
        collide = ((spay != spay[heads[seg]]).any(axis=1) & (slab != _MAX)).any()
    hk = jnp.stack([skhi, sklo, slab], axis=1)[heads]
    nreal = jnp.sum(head & (slab != _MAX))
    return hk[:, 0], hk[:, 1], hk[:, 2], counts, ex, spay[heads], nreal, collide


def step_body(net, sampler, xin, labels, meta, lanes, values, *, tol, exact, check, cap, capacity, num_classes,
              first_ranks, axes, num_devices):
    """One step on one device: codes, the table of known keys, then the misses' reduction.

    ``meta[0] = (rank0, valid, process, k, status)``: this device's first row has *step
    rank* ``rank0`` (rows of a step are ranked in global stream order: by process, then
    local index), its first ``valid`` rows are real inputs, it is device ``k`` of process
    ``process``, whose host reports ``status`` (0: fine, 1: it caught an error).

    ``lanes[0]``, ``values[0]``: this device's table of known keys
    (:func:`partax.device_grouping.absorb_chunk`): the inputs it holds are counted per slot;
    only the others (at most ``capacity``, else the step is flagged) go through the local
    reduction, the all-to-all and the owner reduction.

    Every counter on the device is a ``uint32`` / ``int32`` of one step (at most
    ``D B < 2^31`` rows, checked on the host), so none can wrap; the host sums them across
    steps in ``int64``.

    Returns:
      ``(rows, num_rows, stats, hits)``: the owner's reduced rows ``uint32[D cap, HEAD + W]``
      (the first ``num_rows`` real), every device's statistics ``int32[D, NSTATS]``
      (replicated), and the hits ``(counts int32[1, S], label_counts int32[1, S, C] or
      None, first ranks uint32[1, S] or None)``.
    """
    D = num_devices
    if sampler is not None:
        x = sampler.generate(xin).astype(net.dtype)
        if sampler.has_labels:
            labels = sampler.generate_labels(xin)
    else:
        x = xin
    B = x.shape[0]
    if check:
        words, full, full_checks, hashes, near, finite = codes_hashes_and_checks(net, x, tol)
    else:
        words, full, hashes, near, finite = codes_and_layer_hashes(net, x, tol)
        hashes = hashes.reshape(-1, B)
    iota = jnp.arange(B, dtype=jnp.uint32)
    num_valid = meta[0, 1].astype(jnp.int32)
    valid = iota < meta[0, 1]
    rank = meta[0, 0] + iota
    bad = ~finite & valid
    lab32 = None if labels is None else labels.astype(jnp.int32)
    if exact:
        row_values = jnp.concatenate(list(words), axis=1)
    elif check:
        row_values = full_checks
    else:
        row_values = jnp.zeros((B, 0), jnp.uint32)
    # (a') the table of known keys: hits counted per slot, misses compacted
    a = absorb_chunk(lanes[0], values[0], full, row_values, lab32, num_valid, num_classes, capacity)
    first = slot_first_ranks(lanes[0], full, rank, num_valid)[None] if first_ranks else None
    m = a.misses
    mvalid = jnp.arange(capacity) < a.num_misses
    khi = jnp.where(mvalid, full[m, 1], _MAX)
    klo = jnp.where(mvalid, full[m, 0], _MAX)
    lab = jnp.zeros(capacity, jnp.uint32) if labels is None else labels[m].astype(jnp.uint32)
    lab = jnp.where(mvalid, lab, _MAX)
    payload = jnp.concatenate(list(words) + [hashes.T], axis=1) if exact else hashes.T  # PayloadLayout's order
    compare = exact or check
    # (b) local reduction of the misses; rows come out sorted by key, hence grouped by owner (monotone in khi)
    hkhi, hklo, hlab, counts, ex, pay, nseg, coll1 = _reduce_rows(
        khi, klo, lab, rank[m], mvalid.astype(jnp.uint32), payload[m], compare
    )
    owner = (((hkhi >> 16) * np.uint32(D)) >> 16).astype(jnp.int32)
    seg_ok = jnp.arange(capacity) < nseg
    sizes = jax.ops.segment_sum(seg_ok.astype(jnp.int32), jnp.where(seg_ok, owner, 0), D)
    start = jnp.cumsum(sizes) - sizes
    pos = jnp.arange(capacity, dtype=jnp.int32) - start[owner]
    ok = seg_ok & (pos < cap)
    dest = jnp.where(ok, owner * cap + pos, D * cap)
    row = jnp.concatenate([jnp.stack([hkhi, hklo, hlab, ex, counts.astype(jnp.uint32)], axis=1), pay], axis=1)
    pad = jnp.zeros((1, row.shape[1]), jnp.uint32).at[0, :HEAD].set(jnp.array([_MAX, _MAX, _MAX, _MAX, 0], jnp.uint32))
    send = jnp.broadcast_to(pad, (D * cap, row.shape[1])).at[dest].set(row, mode="drop")
    # (c) to the owners
    recv = jax.lax.all_to_all(send, axes, 0, 0, tiled=True) if D > 1 else send
    # (d) owner reduction
    k2hi, k2lo, l2, c2, ex2, pay2, nown, coll2 = _reduce_rows(
        recv[:, KHI], recv[:, KLO], recv[:, LAB], recv[:, RANK], recv[:, CNT], recv[:, HEAD:], compare,
    )  # counts stay uint32: a key's count in a step is at most D B < 2^31
    out = jnp.concatenate([jnp.stack([k2hi, k2lo, l2, ex2, c2.astype(jnp.uint32)], axis=1), pay2], axis=1)
    max_label = jnp.int32(-1) if lab32 is None else jnp.max(jnp.where(valid, lab32, -1))
    stats = jnp.stack(
        [meta[0, 2].astype(jnp.int32), meta[0, 3].astype(jnp.int32), meta[0, 4].astype(jnp.int32),
         jnp.sum(valid, dtype=jnp.int32), jnp.sum(near & valid, dtype=jnp.int32), jnp.sum(bad, dtype=jnp.int32),
         jnp.min(jnp.where(bad, iota.astype(jnp.int32), B)), jnp.max(sizes).astype(jnp.int32),
         (coll1 | coll2 | a.collided).astype(jnp.int32), a.num_misses.astype(jnp.int32), nseg.astype(jnp.int32),
         a.overflow.astype(jnp.int32), max_label.astype(jnp.int32), nown.astype(jnp.int32)]
    )
    every = jax.lax.all_gather(stats, axes) if D > 1 else stats[None]
    lc = None if a.label_counts is None else a.label_counts[None]
    return out, nown[None].astype(jnp.int32), every.reshape(D, NSTATS), (a.counts[None], lc, first)


@functools.lru_cache(maxsize=64)
def step_function(mesh, axes, tol, exact, check, cap, capacity, num_classes, first_ranks, with_sampler, with_labels):
    """The jitted step over ``mesh`` (cached per configuration).

    Args:
      mesh: the mesh; ``axes`` its data axes.
      axes: the mesh axes the inputs are split over.
      tol: ``boundary_tol``.
      exact: ship (and compare) the code words; the key table's values are the code words.
      check: the collision check (ship the check lanes, compare payloads; the key table's
        values are check keys).
      cap: rows per (sender, owner) bucket.
      capacity: miss rows per device (inputs the key table does not hold).
      num_classes: label columns of the hits' label counts (1 without labels).
      first_ranks: the hits carry their smallest step rank per slot (several processes).
      with_sampler: the inputs are a sampler's block ids.
      with_labels: labels come as an array.

    Returns:
      ``f(net, sampler, xin, labels, meta, lanes, values) -> (rows, num_rows, stats, hits)``
      (see :func:`step_body`); ``lanes`` ``uint32[D, buckets, ways, 2]`` and ``values``
      ``uint32[D, S, W]`` hold every device's key table.
    """
    D = int(np.prod([mesh.shape[a] for a in axes]))
    spec = P(axes)

    def body(net, sampler, xin, labels, meta, lanes, values):
        return step_body(
            net, sampler, xin, labels, meta, lanes, values, tol=tol, exact=exact, check=check, cap=cap,
            capacity=capacity, num_classes=num_classes, first_ranks=first_ranks, axes=axes, num_devices=D,
        )

    in_specs = (P(), P() if with_sampler else None, spec, spec if with_labels else None, spec, spec, spec)
    hits_spec = (spec, spec, spec)  # a spec of an output that is None (no labels, no ranks) covers nothing
    f = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=(spec, spec, P(), hits_spec), check_vma=False)
    return jax.jit(f)
