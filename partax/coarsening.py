"""Every scope's table as a coarsening of the table of full codes (both engines' host side).

Two inputs with the same full code ``S^1..S^L`` have the same code on every range of layers,
so every range table (every ``(scope, layer)`` pair) is a coarsening of the *base* table,
the table keyed by the full code. The partition engines group inputs by full-code key
only (one sort per chunk, one key per row on the sharded engine's wire) and derive the
range tables here, on the host, from one row per base region.

A base table's rows carry a *payload* (its ``exemplar_codes``, ``uint32[G, W]``), the
columns of :class:`PayloadLayout`, in this order:

1. the packed code words of every layer (exact mode only: the codes themselves);
2. the per-layer key lanes ``a_1..a_L, b_1..b_L`` (:func:`partax.coding.codes_and_layer_hashes`),
   from which :func:`partax.coding.range_keys` finishes the key of every range;
3. with the collision check, the check lanes ``c, d`` of each layer wider than one word
   (:func:`partax.coding.codes_hashes_and_checks`).

The payload is a function of the full code, so merges of base tables compare it
(:func:`partax.grouping.group_keys`: one key, two payloads is a collision); each range
table carries, as its rows' codes, its range's part of it (its words in exact mode, its
fingerprint columns with the collision check, :func:`partax.coding.fingerprint_columns`),
which its merges compare in turn.

Example:
    >>> from partax.coarsening import PayloadLayout
    >>> PayloadLayout((40, 8), exact=False, check=True).width  # 2 L key lanes + 2 check lanes
    6
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from partax.coding import fingerprint_columns, range_keys
from partax.tables import RegionTable, reduce_by_key

__all__ = ["PayloadLayout", "finish_tables", "range_tables"]


class PayloadLayout(NamedTuple):
    """The columns of a base table's payload (see the module docstring).

    Attributes:
      widths: hidden widths ``(n_1, ..., n_L)``.
      exact: the payload starts with the packed code words.
      check: the payload ends with the check lanes of the wide layers.
    """

    widths: tuple
    exact: bool
    check: bool

    @property
    def num_layers(self) -> int:
        return len(self.widths)

    @property
    def word_ends(self) -> np.ndarray:
        """Column ends of each layer's words (``word_ends[l]`` ends layer ``l``; ``[0] = 0``)."""
        return np.cumsum([0] + [-(-w // 32) for w in self.widths])

    @property
    def num_words(self) -> int:
        """Code words at the front (0 unless exact)."""
        return int(self.word_ends[-1]) if self.exact else 0

    @property
    def num_hash_rows(self) -> int:
        """Key lanes, and check lanes with the check: the rows of the kernel's ``layer_hashes``."""
        wide = sum(w > 32 for w in self.widths)
        return 2 * self.num_layers + (2 * wide if self.check else 0)

    @property
    def width(self) -> int:
        """``uint32`` columns in all."""
        return self.num_words + self.num_hash_rows

    @property
    def checked(self) -> bool:
        """Whether merges compare the payload (exact codes or fingerprints)."""
        return self.exact or self.check

    def assemble(self, words, hashes) -> np.ndarray:
        """The payload of rows from their words (``uint32[G, num_words]``, or None unless
        exact) and their hash rows (``uint32[G, num_hash_rows]``)."""
        hashes = np.ascontiguousarray(hashes, np.uint32)
        return np.concatenate([words, hashes], axis=1) if self.exact else hashes

    def layer_hashes(self, payload: np.ndarray) -> np.ndarray:
        """``uint32[2, L, G]``: the key lanes of the rows, as :func:`partax.coding.range_keys` takes them."""
        L, w = self.num_layers, self.num_words
        return payload[:, w : w + 2 * L].T.reshape(2, L, -1)

    def range_codes(self, payload: np.ndarray, ranges) -> list:
        """Per range, the columns its table's merges compare (None without a check)."""
        if self.exact:
            ends = self.word_ends
            return [payload[:, ends[f - 1] : ends[t]] for f, t in ranges]
        if self.check:
            return [payload[:, cols + self.num_words] for cols in fingerprint_columns(self.widths, ranges)]
        return [None] * len(ranges)


def range_tables(base: RegionTable, ranges, layout: PayloadLayout) -> list:
    """The table of every range of layers, from a base table whose payload follows ``layout``.

    Args:
      base: a table keyed by full code, ``exemplar_codes`` its payload.
      ranges: 1-based inclusive ``(first, last)`` layer ranges.
      layout: the payload's columns.

    Returns:
      A list of :class:`~partax.tables.RegionTable`, one per range, counts, label counts,
      exemplars and total coarsened from ``base``; each keeps, as ``exemplar_codes``, what
      its merges compare (:meth:`PayloadLayout.range_codes`).

    Raises:
      HashCollisionError: two base rows with different codes of a range share its key.
    """
    payload = base.exemplar_codes
    keys = range_keys(layout.layer_hashes(payload), ranges)  # [G, R]
    codes = layout.range_codes(payload, ranges)
    return [
        reduce_by_key(keys[:, r], base.counts, base.exemplars, base.label_counts, codes[r], base.total,
                      check_codes=layout.checked)
        for r in range(len(ranges))
    ]


def finish_tables(built, index: dict, num_classes: int | None, keep_codes: bool) -> dict:
    """The tables a :class:`~partax.engine.Partition` holds, from one table per range.

    Args:
      built: one table per range.
      index: ``(scope, layer) -> position in built`` (:func:`partax.coding.tables_for`).
      num_classes: pad every table's label counts to this many classes (None: no labels).
      keep_codes: keep ``exemplar_codes`` (exact mode); otherwise the fingerprints, which
        served the merges' collision checks, are dropped.

    Returns:
      The dict ``(scope, layer) -> RegionTable``.
    """
    out = []
    for t in built:
        lc, codes = t.label_counts, t.exemplar_codes
        if num_classes is not None and lc.shape[1] < num_classes:
            lc = np.pad(lc, ((0, 0), (0, num_classes - lc.shape[1])))
        out.append(RegionTable(t.keys, t.counts, lc, t.exemplars, t.total, codes if keep_codes else None))
    return {key: out[r] for key, r in index.items()}
