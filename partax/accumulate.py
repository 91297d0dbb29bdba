"""The table accumulator: a stream of region tables folded into one, as pure functions.

Both partition engines fold tables as they come (a chunk's tables, a sharded step's owner
rows) into running ones. Merging every table into the running one at once would sort the
whole running table per chunk (quadratic in the number of chunks for a growing table);
keeping every table until the end would hold the stream's rows many times over. The
accumulator keeps the incoming tables *pending* and merges them into the running table
(one sort of their concatenation, :func:`partax.tables.merge_tables`) whenever the pending
rows outgrow both the running table and a floor of ``min_rows``: each row is merged
``O(log)`` times, and the accumulator never holds more than about twice the final table
(plus the floor).

Written in the manner of optax: :func:`table_accumulator` returns a
:class:`TableAccumulator`, a ``NamedTuple`` of pure functions ``init`` / ``update`` /
``finalize`` over an immutable :class:`AccumulatorState`; the engines' threads and progress
bars only carry the state from one call to the next.

Example:
    >>> import numpy as np
    >>> from partax.accumulate import table_accumulator
    >>> from partax.tables import RegionTable
    >>> acc = table_accumulator()
    >>> state = acc.init()
    >>> for i, keys in enumerate([[5, 3], [3], [9, 5]]):
    ...     state = acc.update(state, RegionTable.from_keys(np.array(keys, np.uint64), offset=2 * i))
    >>> t = acc.finalize(state)
    >>> t.keys.tolist(), t.counts.tolist(), t.exemplars.tolist(), t.total
    ([3, 5, 9], [2, 2, 1], [1, 0, 4], 5)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from partax.tables import RegionTable, merge_tables

__all__ = ["AccumulatorState", "TableAccumulator", "table_accumulator"]

MIN_ROWS = 2**16  # pending rows below this are never merged early: small merges cost more than they save


class AccumulatorState(NamedTuple):
    """The state of a :class:`TableAccumulator` (immutable).

    Attributes:
      table: the running table (None until the first merge, or the table ``init`` got).
      pending: tables not merged into ``table`` yet, in stream order.
      pending_rows: their number of rows.
    """

    table: RegionTable | None
    pending: tuple
    pending_rows: int

    @property
    def num_rows(self) -> int:
        """Rows held (an upper bound on the distinct keys)."""
        return (0 if self.table is None else len(self.table)) + self.pending_rows


class TableAccumulator(NamedTuple):
    """Pure functions folding tables into one (see :func:`table_accumulator`).

    Attributes:
      init: ``init(table=None) -> AccumulatorState``: the state holding ``table`` (e.g. an
        empty table that fixes labels and code width), or nothing.
      update: ``update(state, table) -> AccumulatorState``: ``table`` added; merges the
        pending tables when they outgrow the running one.
      finalize: ``finalize(state) -> RegionTable``: the merge of every table added (and of
        ``init``'s).
    """

    init: Callable[..., AccumulatorState]
    update: Callable[[AccumulatorState, RegionTable], AccumulatorState]
    finalize: Callable[[AccumulatorState], RegionTable]


def table_accumulator(*, check_codes: bool = True, min_rows: int = MIN_ROWS) -> TableAccumulator:
    """The accumulator of region tables with partax's flush policy.

    Args:
      check_codes: merges compare the exemplar codes of rows with one key and raise
        :class:`~partax.grouping.HashCollisionError` when they differ (tables without codes
        have nothing to compare).
      min_rows: pending rows are merged into the running table once they exceed both this
        and the running table's rows.

    Returns:
      A :class:`TableAccumulator`.
    """

    def merge(state: AccumulatorState) -> RegionTable:
        parts = ([] if state.table is None else [state.table]) + list(state.pending)
        if not parts:
            raise ValueError("tables: nothing was accumulated (no table was added)")
        return merge_tables(parts, check_codes=check_codes)

    def init(table: RegionTable | None = None) -> AccumulatorState:
        return AccumulatorState(table, (), 0)

    def update(state: AccumulatorState, table: RegionTable) -> AccumulatorState:
        if len(table) == 0 and table.total == 0:  # nothing to add (e.g. a step whose rows went elsewhere)
            return state
        state = AccumulatorState(state.table, state.pending + (table,), state.pending_rows + len(table))
        if state.pending_rows > max(min_rows, 0 if state.table is None else len(state.table)):
            return AccumulatorState(merge(state), (), 0)
        return state

    def finalize(state: AccumulatorState) -> RegionTable:
        return merge(state)

    return TableAccumulator(init, update, finalize)
