"""Region tables: the histogram of inputs over regions, a commutative monoid under merge.

A :class:`RegionTable` lists the regions (by 64-bit key) that a stream of inputs met,
with how many inputs fell in each, per-label counts, and the global stream index of the
first input seen in each region (its *exemplar*). Chunks, devices and hosts are all
combined with the same :meth:`RegionTable.merge`, which is associative and commutative:
merging the tables of any split of the data gives the table of the whole.

Example:
    >>> import numpy as np
    >>> from partax.tables import RegionTable
    >>> a = RegionTable.from_keys(np.array([5, 3, 5], np.uint64), labels=np.array([0, 1, 1]))
    >>> b = RegionTable.from_keys(np.array([3, 7], np.uint64), labels=np.array([0, 0]), offset=3)
    >>> t = a.merge(b)
    >>> t.keys.tolist(), t.counts.tolist(), t.exemplars.tolist(), t.total
    ([3, 5, 7], [2, 2, 1], [1, 0, 4], 5)
    >>> t.label_counts.tolist()
    [[1, 1], [1, 1], [1, 0]]
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from partax.files import load_npz, save_npz
from partax.grouping import group_keys
from partax.validation import check_keys, check_labels, check_num_classes

__all__ = ["RegionTable", "merge_tables", "reduce_by_key"]  # check_labels: from partax.validation

_FORMAT = "partax.table"


@dataclasses.dataclass(frozen=True, eq=False)
class RegionTable:
    """Regions met by a stream of inputs.

    Attributes:
      keys: ``uint64[M]``, sorted and unique.
      counts: ``int64[M]``, inputs per region.
      label_counts: ``int64[M, C]`` inputs per region and label, or None (no labels).
      exemplars: ``int64[M]``, global stream index of the first input of each region.
      total: number of inputs (``counts.sum()``).
      exemplar_codes: ``uint32[M, W]``, a code of each region's exemplar kept so that merges
        can detect hash collisions (:func:`partax.grouping.group_keys`): its packed code in
        exact mode, or, inside the partition engines, a fingerprint of it (dropped from the
        tables they return); None otherwise.
    """

    keys: np.ndarray
    counts: np.ndarray
    label_counts: np.ndarray | None
    exemplars: np.ndarray
    total: int
    exemplar_codes: np.ndarray | None = None

    def __post_init__(self):
        keys = np.asarray(self.keys, np.uint64)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "counts", np.asarray(self.counts, np.int64))
        object.__setattr__(self, "exemplars", np.asarray(self.exemplars, np.int64))
        object.__setattr__(self, "total", int(self.total))
        if self.label_counts is not None:
            lc = np.asarray(self.label_counts, np.int64)
            if lc.ndim != 2 or lc.shape[0] != keys.shape[0]:
                raise ValueError(f"label_counts: expected shape ({keys.shape[0]}, C), got {lc.shape}")
            object.__setattr__(self, "label_counts", lc)
        if self.exemplar_codes is not None:
            object.__setattr__(self, "exemplar_codes", np.asarray(self.exemplar_codes, np.uint32))
        if self.counts.shape != keys.shape or self.exemplars.shape != keys.shape or keys.ndim != 1:
            raise ValueError(
                f"keys, counts, exemplars: expected three 1-D arrays of one length, got "
                f"{keys.shape}, {self.counts.shape}, {self.exemplars.shape}"
            )

    # -- facts -----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_regions(self) -> int:
        return len(self)

    @property
    def num_classes(self) -> int | None:
        return None if self.label_counts is None else int(self.label_counts.shape[1])

    def __repr__(self) -> str:
        c = "" if self.label_counts is None else f", classes={self.num_classes}"
        return f"RegionTable(regions={len(self)}, total={self.total}{c})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, RegionTable):
            return NotImplemented
        if (self.label_counts is None) != (other.label_counts is None):
            return False
        if (self.exemplar_codes is None) != (other.exemplar_codes is None):
            return False
        return (
            self.total == other.total
            and np.array_equal(self.keys, other.keys)
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.exemplars, other.exemplars)
            and (self.label_counts is None or np.array_equal(self.label_counts, other.label_counts))
            and (self.exemplar_codes is None or np.array_equal(self.exemplar_codes, other.exemplar_codes))
        )

    def lookup(self, keys) -> np.ndarray:
        """Row of each key in this table (``-1`` where absent)."""
        keys = np.asarray(keys, np.uint64)
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(len(self) - 1, 0))
        hit = (len(self) > 0) & (self.keys[pos] == keys) if len(self) else np.zeros(keys.shape, bool)
        return np.where(hit, pos, -1)

    # -- construction ----------------------------------------------------------------
    @classmethod
    def empty(cls, num_classes: int | None = None, code_words: int | None = None) -> "RegionTable":
        return cls(
            keys=np.zeros(0, np.uint64),
            counts=np.zeros(0, np.int64),
            label_counts=None if num_classes is None else np.zeros((0, num_classes), np.int64),
            exemplars=np.zeros(0, np.int64),
            total=0,
            exemplar_codes=None if code_words is None else np.zeros((0, code_words), np.uint32),
        )

    @classmethod
    def from_keys(
        cls,
        keys,
        *,
        labels=None,
        num_classes: int | None = None,
        offset: int = 0,
        codes=None,
        check_codes: bool = True,
    ) -> "RegionTable":
        """The table of one batch of per-input keys.

        Args:
          keys: ``uint64[N]`` key of each input, in stream order.
          labels: optional ``int[N]`` labels in ``0..C-1``.
          num_classes: ``C`` (default: ``labels.max() + 1``).
          offset: global stream index of the batch's first input.
          codes: optional ``uint32[N, W]`` packed codes; if given, the exemplars' codes are
            kept, and (with ``check_codes``) inputs with one key but different codes raise
            :class:`HashCollisionError`.
          check_codes: compare every input's code with its exemplar's.

        Returns:
          A :class:`RegionTable`.
        """
        keys = check_keys(keys)
        n = keys.shape[0]
        num_classes = check_num_classes(num_classes)
        codes = None if codes is None else np.asarray(codes, np.uint32)
        # ties in any order: exemplars are the minimum index
        groups = group_keys(keys, codes if check_codes else None)
        order, starts = groups.order, groups.starts
        counts = groups.sizes
        exemplar_rows = np.minimum.reduceat(order, starts) if n else order
        label_counts = None
        if labels is not None:
            labels = check_labels(labels, n, num_classes)
            if num_classes is None:
                num_classes = int(labels.max()) + 1 if n else 1
            label_counts = np.bincount(
                groups.ids() * num_classes + labels[order], minlength=starts.size * num_classes
            ).reshape(starts.size, num_classes)
        exemplar_codes = None if codes is None else np.take(codes, exemplar_rows, axis=0)
        return cls(groups.unique_keys, counts, label_counts, exemplar_rows.astype(np.int64) + offset, n,
                   exemplar_codes)

    # -- the monoid ------------------------------------------------------------------
    def merge(self, other: "RegionTable") -> "RegionTable":
        """The table of the union of both streams (associative, commutative)."""
        return merge_tables([self, other])

    # -- files -----------------------------------------------------------------------
    def to_arrays(self, prefix: str = "") -> dict:
        out = {f"{prefix}keys": self.keys, f"{prefix}counts": self.counts, f"{prefix}exemplars": self.exemplars}
        out[f"{prefix}total"] = np.asarray(self.total, np.int64)
        if self.label_counts is not None:
            out[f"{prefix}label_counts"] = self.label_counts
        if self.exemplar_codes is not None:
            out[f"{prefix}exemplar_codes"] = self.exemplar_codes
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> "RegionTable":
        get = lambda name: arrays[f"{prefix}{name}"] if f"{prefix}{name}" in arrays else None
        return cls(
            keys=get("keys"),
            counts=get("counts"),
            label_counts=get("label_counts"),
            exemplars=get("exemplars"),
            total=int(get("total")),
            exemplar_codes=get("exemplar_codes"),
        )

    def save(self, path) -> None:
        """Writes the table as one ``.npz`` (no pickle); the write is atomic."""
        save_npz(path, self.to_arrays(), _FORMAT)

    @classmethod
    def load(cls, path) -> "RegionTable":
        """Reads a table written by :meth:`save`."""
        arrays, _ = load_npz(path, _FORMAT, "region table")
        return cls.from_arrays(arrays)


def merge_tables(tables: Sequence[RegionTable], *, check_codes: bool = True) -> RegionTable:
    """Merges any number of tables at once (one sort over their concatenation).

    With ``check_codes`` (and exemplar codes kept on every table) rows of one key must
    carry one code.

    Raises:
      ValueError: if some tables carry labels and others do not.
      HashCollisionError: if exemplar codes are kept and differ under one key.
    """
    tables = [t for t in tables]
    if not tables:
        raise ValueError("tables: expected at least one RegionTable")
    labelled = {t.label_counts is not None for t in tables}
    if len(labelled) > 1:
        raise ValueError("tables: cannot merge tables with labels and tables without")
    if len(tables) == 1:
        return tables[0]
    total = sum(t.total for t in tables)
    label_counts = None
    if labelled.pop():
        C = max(t.num_classes for t in tables)
        label_counts = np.concatenate([np.pad(t.label_counts, ((0, 0), (0, C - t.num_classes))) for t in tables])
    coded = {t.exemplar_codes is not None for t in tables if len(t)}
    if len(coded) > 1:
        raise ValueError(
            "tables: cannot merge tables kept with exemplar codes (exact mode) and tables without: "
            "hash collisions could no longer be detected; build all of them with or without codes"
        )
    widths = {t.exemplar_codes.shape[1] for t in tables if t.exemplar_codes is not None}
    if len(widths) > 1:
        raise ValueError(f"tables: exemplar codes of different widths {sorted(widths)} cannot be merged")
    codes = None
    if coded == {True}:
        codes = np.concatenate([t.exemplar_codes for t in tables if t.exemplar_codes is not None])
    return reduce_by_key(
        np.concatenate([t.keys for t in tables]),
        np.concatenate([t.counts for t in tables]),
        np.concatenate([t.exemplars for t in tables]),
        label_counts,
        codes,
        total,
        check_codes=check_codes,
        sorted_runs=True,
    )


def reduce_by_key(
    keys, counts, exemplars, label_counts=None, codes=None, total=None, *, labels=None, check_codes: bool = True,
    sorted_runs: bool = False,
) -> RegionTable:
    """Groups rows with equal keys into a table: counts and label counts add, exemplars min.

    Args:
      keys: ``uint64[n]`` (any order, repeats allowed).
      counts: ``int64[n]``.
      exemplars: ``int64[n]``.
      label_counts: optional ``int64[n, C]``, each row's counts per label.
      codes: optional ``uint32[n, W]`` kept per key (the first row's in key order); with
        ``check_codes`` rows with one key must agree, else :class:`HashCollisionError`.
      total: the table's total (default ``counts.sum()``).
      labels: instead of ``label_counts``, one label per row (``int[n]``, ``>= 0``): all of
        the row's ``counts`` are of that label (``C`` is the largest label plus one).
      check_codes: compare the codes of rows with one key.
      sorted_runs: ``keys`` is a concatenation of a few sorted runs (tables being merged):
        a stable (run-merging) sort is then about ten times faster than a general one.

    Returns:
      A :class:`RegionTable`.
    """
    n = keys.shape[0]
    total = int(counts.sum()) if total is None else total
    if labels is not None:
        if label_counts is not None:
            raise ValueError("labels: pass labels or label_counts, not both")
        labels = np.asarray(labels, np.int64)
    if n == 0:
        C = None if label_counts is None and labels is None else (1 if labels is not None else label_counts.shape[1])
        empty = RegionTable.empty(C, None if codes is None else codes.shape[1])
        return dataclasses.replace(empty, total=total)
    groups = group_keys(keys, codes if check_codes else None, sorted_runs=sorted_runs)
    if labels is not None:
        label_counts = np.zeros((groups.num_groups, int(labels.max()) + 1), np.int64)
        np.add.at(label_counts, (groups.ids(), labels[groups.order]), counts[groups.order])
    elif label_counts is not None:
        label_counts = groups.sum(label_counts)
    return RegionTable(
        groups.unique_keys, groups.sum(counts), label_counts, groups.min(exemplars), total,
        None if codes is None else groups.first(codes),
    )
