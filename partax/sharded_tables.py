"""The sharded engine's host side: owner rows into region tables, tables across processes.

After each step, the host of every owner device turns the rows its devices own
(:mod:`partax.sharded_step`'s wire rows, one per ``(full-code key, label)``) into one
:class:`~partax.tables.RegionTable` keyed by full code (:func:`step_table`), which the
engine folds into its running table with the same accumulator as the single-device engine
(:mod:`partax.accumulate`). The payload rides as the table's ``exemplar_codes``, so every
merge compares it (the collision check) and the range tables are derived from it at the
end exactly as :func:`partax.partition` derives them (:mod:`partax.coarsening`).

Exemplars. On the device a row carries its *step rank*; the host maps a rank of step ``s``
back to ``(process, local index)`` and encodes it as ``process << 48 | local`` (``int64``;
local indices below ``2^48``; order-preserving, so exemplars merge by min across steps),
and :func:`decode_exemplars` turns it into the global stream index once every shard's size
is known.

Across processes, tables travel as ``uint32`` words (:func:`to_words` / :func:`from_words`):
JAX with x64 off would narrow ``int64`` arrays.

Example:
    >>> import numpy as np
    >>> from partax.sharded_tables import from_words, to_words
    >>> from partax.tables import RegionTable
    >>> t = RegionTable.from_keys(np.array([2**63, 5], np.uint64), labels=np.array([1, 0]),
    ...                           codes=np.array([[7], [8]], np.uint32), offset=2**40)
    >>> from_words(to_words(t, 3), 3, 1) == RegionTable(t.keys, t.counts, np.pad(t.label_counts, ((0, 0), (0, 1))),
    ...                                                 t.exemplars, t.total, t.exemplar_codes)
    True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from partax.coarsening import PayloadLayout
from partax.sharded_step import CNT, HEAD, KHI, KLO, LAB, RANK
from partax.tables import RegionTable, reduce_by_key

__all__ = ["IDX_BITS", "decode_exemplars", "from_words", "step_table", "to_words"]

IDX_BITS = 48  # local indices below 2^48 per process


def step_table(shards, B: int, rank_pid: np.ndarray, rank_base: np.ndarray, layout: PayloadLayout,
               has_labels: bool) -> RegionTable | None:
    """The table of the rows this host's devices own after one step.

    Args:
      shards: per local device, its owner rows ``uint32[m, HEAD + W]`` (real rows only;
        each sorted by key, keys of different devices disjoint).
      B: inputs per device per step.
      rank_pid: per step-rank block ``j`` (rows ``j B .. j B + B - 1``), the process code of
        its device (0 when exemplars are indices of one global stream).
      rank_base: per step-rank block, the local index of its first row.
      layout: the payload's columns.
      has_labels: build label counts from the rows' labels.

    Returns:
      A table keyed by full code (exemplars encoded, payload as ``exemplar_codes``), or
      None when the devices own no row.

    Raises:
      HashCollisionError: two rows of one key (different labels) carry different payloads.
    """
    shards = [a for a in shards if a.shape[0]]
    if not shards:
        return None
    a = np.concatenate(shards) if len(shards) > 1 else shards[0]
    key = (a[:, KHI].astype(np.uint64) << np.uint64(32)) | a[:, KLO].astype(np.uint64)
    r = a[:, RANK].astype(np.int64)
    j, i = r // B, r % B
    ex = (rank_pid[j].astype(np.int64) << IDX_BITS) | (rank_base[j] + i)
    return reduce_by_key(
        key, a[:, CNT].astype(np.int64), ex, codes=np.ascontiguousarray(a[:, HEAD:]),
        labels=a[:, LAB].astype(np.int64) if has_labels else None, check_codes=layout.checked, sorted_runs=True,
    )


def decode_exemplars(table: RegionTable, offsets) -> RegionTable:
    """Encoded exemplars (``process << 48 | local``) -> global stream indices.

    Args:
      table: a table with encoded exemplars.
      offsets: ``int64[P]``, the global index of each process's first input.

    Returns:
      The table with global exemplars (the encoding preserves order: minima are kept).
    """
    pid = table.exemplars >> IDX_BITS
    ex = np.asarray(offsets, np.int64)[pid] + (table.exemplars & ((1 << IDX_BITS) - 1))
    return dataclasses.replace(table, exemplars=ex)


def _words(a: np.ndarray) -> np.ndarray:
    """``[M, k]`` 64-bit values -> ``uint32[M, 2 k]`` words."""
    return np.ascontiguousarray(a).view(np.uint32).reshape(a.shape[0], -1)


def to_words(table: RegionTable, num_classes: int | None) -> np.ndarray:
    """A table as ``uint32[M, 6 + 2 C + W]`` rows (keys, counts, exemplars, label counts
    padded to ``num_classes``, payload), to cross processes.

    Args:
      table: the table (with ``exemplar_codes``).
      num_classes: the job's class count, or None without labels.

    Returns:
      The rows.
    """
    cols = [_words(table.keys[:, None]), _words(table.counts[:, None]), _words(table.exemplars[:, None])]
    if num_classes is not None:
        lc = table.label_counts
        cols.append(_words(np.pad(lc, ((0, 0), (0, num_classes - lc.shape[1])))))
    cols.append(np.asarray(table.exemplar_codes, np.uint32))
    return np.concatenate(cols, axis=1)


def from_words(a: np.ndarray, num_classes: int | None, width: int) -> RegionTable:
    """The table of :func:`to_words`'s rows (its total is the sum of its counts).

    Args:
      a: the rows.
      num_classes: as given to :func:`to_words`.
      width: the payload's columns.

    Returns:
      A :class:`~partax.tables.RegionTable`.
    """
    a = np.ascontiguousarray(a, np.uint32)
    as64 = lambda lo, hi, dtype: np.ascontiguousarray(a[:, lo:hi]).view(dtype)  # noqa: E731
    counts = as64(2, 4, np.int64)[:, 0]
    lc = None if num_classes is None else as64(6, 6 + 2 * num_classes, np.int64)
    end = 6 + (0 if num_classes is None else 2 * num_classes)
    codes = a[:, end : end + width]
    return RegionTable(as64(0, 2, np.uint64)[:, 0], counts, lc, as64(4, 6, np.int64)[:, 0], int(counts.sum()), codes)
