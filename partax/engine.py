"""The streaming partition engine: inputs in, one region table per scope and layer out.

:func:`partition` reads a source in fixed-size chunks. For each chunk one jitted kernel
computes the hidden pre-activations (``precision=HIGHEST``), packs the sign bits, hashes
each layer's words, and returns per input the 64-bit key of the full code ``S^1..S^L``, the
per-layer hashes, and a near-boundary flag. The host groups the chunk by full-code key (one
sort) into a *base* :class:`~partax.tables.RegionTable`; every range table the scopes need
is a coarsening of it, so range keys are finished on the host for one input per base row
and each range table is reduced from the base rows (:mod:`partax.coarsening`, shared with
the sharded engine). While the running base table stays small (regions repeat) only it is
accumulated and the range tables are reduced from it once at the end; past ``_DEFER_ROWS``
rows, range tables are reduced chunk by chunk and merged into running ones
(:func:`fold_chunk`, a pure function of the running tables).
The engine is pure functions of arrays and tables (:func:`chunk_base_table`,
:func:`fold_chunk`, the accumulator of :mod:`partax.accumulate`) and a thin runner around
them: JAX dispatch is asynchronous, the host reductions run in two worker threads and the
folds into the running tables in a third (NumPy's sorts release the GIL), so the device
computes chunk ``i + 2`` while chunks ``i`` and ``i + 1`` are reduced; a tqdm bar counts the
inputs. Memory is one chunk plus the tables: pending chunk tables are merged into the
running table whenever they outgrow it, so the run never holds more than about twice the
final tables.

Samplers from :mod:`partax.sources` are fused into the kernel: inputs are drawn on the
device and never leave it. A stacked :class:`~partax.nets.Net` (a leading axis on every
array) is partitioned in one vmapped pass over the same inputs.

Example:
    >>> import jax, partax
    >>> net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 2])
    >>> src = partax.sources.uniform_box(0.0, 1.0, 20_000, jax.random.key(1))
    >>> p = partax.partition(net, src, progress=False)
    >>> p.total, p.num_regions("prefix").shape
    (20000, (3,))
    >>> p.table("suffix", 1) == p.table("prefix", 3)
    True
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from partax.accumulate import AccumulatorState, TableAccumulator, table_accumulator
from partax.coarsening import PayloadLayout, finish_tables, range_tables
from partax.coding import codes_and_layer_hashes, codes_hashes_and_checks
from partax.files import load_npz, save_npz
from partax.nets import Net
from partax.scopes import SCOPES, tables_for
from partax.sources import Sampler, as_source
from partax.tables import RegionTable
from partax.validation import (check_batch_size, check_finite, check_flag, check_layer, check_net, check_scope,
                               check_scopes, check_tolerance)

__all__ = ["Partition", "partition", "load_partition", "default_batch_size"]

_FORMAT = "partax.partition"
_REDUCE_THREADS = 2  # chunks reduced at once on the host (and so in flight on the device)
_DEFER_ROWS = 2**17  # range tables are reduced from the running base table while it is this small


@dataclasses.dataclass(frozen=True, eq=False)
class Partition:
    """The regions a stream of inputs met, per scope and hidden layer.

    Attributes:
      tables: dict ``(scope, layer) -> RegionTable`` (``layer`` 1-based). Scope/layer pairs
        that name the same range of layers share one table (e.g. ``("suffix", 1)`` and
        ``("prefix", L)``).
      widths: hidden widths ``(n_1, ..., n_L)``.
      input_dim: input dimension.
      total: number of inputs.
      near_boundary: number of inputs with some hidden pre-activation ``|z| <= boundary_tol``.
      boundary_tol: the tolerance behind ``near_boundary``.
    """

    tables: dict
    widths: tuple
    input_dim: int
    total: int
    near_boundary: int
    boundary_tol: float

    @property
    def num_layers(self) -> int:
        return len(self.widths)

    @property
    def scopes(self) -> tuple:
        return tuple(s for s in SCOPES if (s, 1) in self.tables)

    def table(self, scope: str, layer: int) -> RegionTable:
        """The region table of ``scope`` at hidden layer ``layer`` (1-based)."""
        if check_scope(scope) not in self.scopes:
            raise ValueError(f"scope: {scope!r} was not computed; this partition has {self.scopes}")
        return self.tables[(scope, check_layer(layer, self.num_layers))]

    def num_regions(self, scope: str) -> np.ndarray:
        """Number of regions at each hidden layer, ``int64[L]``."""
        return np.array([len(self.table(scope, l)) for l in range(1, self.num_layers + 1)], np.int64)

    def summary(self) -> dict:
        """A JSON-ready summary: regions per scope and layer, totals."""
        return {
            "total": self.total,
            "input_dim": self.input_dim,
            "widths": list(self.widths),
            "near_boundary": self.near_boundary,
            "boundary_tol": self.boundary_tol,
            "regions": {s: self.num_regions(s).tolist() for s in self.scopes},
        }

    def __repr__(self) -> str:
        regions = ", ".join(f"{s}={self.num_regions(s).tolist()}" for s in self.scopes)
        return f"Partition(total={self.total}, widths={self.widths}, {regions})"

    def save(self, path) -> None:
        """Writes every table into one ``.npz`` (no pickle) with a JSON header; atomic."""
        ranges, index = tables_for(self.scopes, self.num_layers)
        arrays = {}
        for r, (f, t) in enumerate(ranges):
            key = next(k for k, v in index.items() if v == r)
            arrays.update(self.tables[key].to_arrays(prefix=f"range{f}_{t}/"))
        save_npz(
            path, arrays, _FORMAT, widths=list(self.widths), input_dim=self.input_dim, scopes=list(self.scopes),
            total=self.total, near_boundary=self.near_boundary, boundary_tol=self.boundary_tol,
        )


def load_partition(path) -> Partition:
    """Reads a :class:`Partition` written by :meth:`Partition.save`."""
    arrays, header = load_npz(
        path, _FORMAT, "partition file", required=("widths", "input_dim", "scopes", "total", "near_boundary")
    )
    L = len(header["widths"])
    ranges, index = tables_for(header["scopes"], L)
    loaded = [RegionTable.from_arrays(arrays, prefix=f"range{f}_{t}/") for f, t in ranges]
    tables = {k: loaded[v] for k, v in index.items()}
    return Partition(
        tables, tuple(header["widths"]), header["input_dim"], header["total"], header["near_boundary"],
        header["boundary_tol"],
    )


# --- the engine ---------------------------------------------------------------------------
def default_batch_size(net: Net, block: int = 1) -> int:
    """Chunk size: about 32 MiB of activations on CPU (256 MiB on accelerators).

    On a CPU the kernel's passes over each layer's pre-activations should stay in cache:
    on a 2-core EPYC, 784-256-256-256-10 partitions ran 10-25% faster in chunks of 4096
    than of 8192, and 784-1024-1024-1024-10 13% faster in chunks of 2048 than of 4096.

    Args:
      net: the net (its widths and stack size set the activations per input).
      block: the chunk size is a multiple of this (a sampler's block).

    Returns:
      Inputs per chunk.
    """
    cpu = jax.default_backend() == "cpu"
    budget = (32 if cpu else 256) * 2**20
    per_input = 4 * (net.input_dim + sum(net.widths)) * max(1, int(np.prod(net.stack_shape)))
    b = budget // per_input
    b = int(2 ** np.floor(np.log2(max(b, 1))))
    b = min(max(b, 1024), 2**16 if cpu else 2**20)
    return max(block, (b // block) * block)


def _kernel(net, x, boundary_tol, with_words, check):
    """Per input: words (exact mode), full-code key, its check key (or None), the rows of
    per-layer hashes ``uint32[2L (+ 2L_w), N]``, near-boundary and finite flags."""
    def one(n):
        if check:
            words, full_keys, checks, layer_hashes, near, finite = codes_hashes_and_checks(n, x, boundary_tol)
        else:
            words, full_keys, layer_hashes, near, finite = codes_and_layer_hashes(n, x, boundary_tol)
            checks, layer_hashes = None, layer_hashes.reshape(-1, layer_hashes.shape[-1])
        return (words if with_words else ()), full_keys, checks, layer_hashes, near, finite

    if net.stack_shape:
        words, full_keys, checks, layer_hashes, near, finite = jax.vmap(one)(net)
        return words, full_keys, checks, layer_hashes, near, finite[0]
    return one(net)


@functools.partial(jax.jit, static_argnames=("boundary_tol", "with_words", "check"))
def _array_kernel(net, x, boundary_tol, with_words, check):
    return _kernel(net, x, boundary_tol, with_words, check)


@functools.partial(jax.jit, static_argnames=("boundary_tol", "with_words", "check"))
def _sampler_kernel(net, sampler, blocks, boundary_tol, with_words, check):
    x = sampler.generate(blocks).astype(net.dtype)
    labels = sampler.generate_labels(blocks) if sampler.has_labels else None
    return _kernel(net, x, boundary_tol, with_words, check), labels


def chunk_base_table(full_keys, codes, layer_hashes, labels, num_classes, start, layout: PayloadLayout) -> RegionTable:
    """The base table of one chunk of one net: its inputs grouped by full-code key.

    Args:
      full_keys: ``uint32[n, 2]`` key lanes of every input's full code.
      codes: what the grouping compares per input: its code words (exact mode), the check
        key of its full code (``uint32[n, 2]``, the collision check), or None.
      layer_hashes: ``uint32[R, n]``, the kernel's per-layer hash rows.
      labels: ``int[n]`` or None.
      num_classes: classes seen so far (None without labels).
      start: the stream index of the chunk's first input.
      layout: the payload's columns.

    Returns:
      The chunk's base table, its payload (``exemplar_codes``) the exemplars' ``layout``
      columns (:mod:`partax.coarsening`).
    """
    keys = np.ascontiguousarray(full_keys).view(np.uint64)[:, 0]
    base = RegionTable.from_keys(keys, labels=labels, num_classes=num_classes, offset=start, codes=codes,
                                 check_codes=layout.checked)
    hashes = layer_hashes[:, base.exemplars - start].T
    # the payload (hashes) is a function of the code: base merges compare it
    return dataclasses.replace(base, exemplar_codes=layout.assemble(base.exemplar_codes, hashes))


class NetTables(NamedTuple):
    """The running tables of one net (immutable): while regions repeat, only the running base
    table (range tables are reduced from it at the end); then one running table per range.

    Attributes:
      base: the accumulator state of the base table, or None once the range tables run.
      ranges: one accumulator state per range (None while deferred).
    """

    base: AccumulatorState | None
    ranges: tuple | None


def fold_chunk(acc: TableAccumulator, state: NetTables, base: RegionTable, per_range, ranges,
               layout: PayloadLayout) -> NetTables:
    """Adds one chunk's tables of one net to its running tables (a pure function).

    Args:
      acc: the accumulator.
      state: the net's running tables.
      base: the chunk's base table.
      per_range: the chunk's range tables, or None (computed here if needed).
      ranges: the layer ranges.
      layout: the payload's columns.

    Returns:
      The new :class:`NetTables`. The base table stops being deferred once it holds more
      than ``_DEFER_ROWS`` rows after a merge (regions do not repeat enough): the range
      tables are then reduced from it at once, and from every chunk afterwards.
    """
    if state.base is not None:
        base_state = acc.update(state.base, base)
        if base_state.num_rows <= _DEFER_ROWS:
            return NetTables(base_state, None)
        merged = acc.finalize(base_state)
        if len(merged) <= _DEFER_ROWS // 2:  # regions repeat: keep deferring
            return NetTables(acc.init(merged), None)
        tables = range_tables(merged, ranges, layout)
        return NetTables(None, tuple(acc.update(acc.init(), t) for t in tables))
    tables = per_range if per_range is not None else range_tables(base, ranges, layout)
    return NetTables(None, tuple(acc.update(s, t) for s, t in zip(state.ranges, tables)))


def run_chunks(chunks, dispatch, reduce, fold, collect, *, threads: int = _REDUCE_THREADS) -> None:
    """The engine's runner: chunks through the device, the host reductions and the folds.

    ``dispatch`` runs on the calling thread (JAX dispatch is asynchronous: it returns while
    the device computes), ``reduce`` in ``threads`` worker threads (NumPy's sorts release
    the GIL), ``fold`` in one more thread in stream order, and ``collect`` on the calling
    thread in stream order. At most ``threads`` chunks are in flight and at most ``threads``
    folds queued; an exception of any stage (a collision, a NaN input) is raised here as
    soon as it is met.

    Args:
      chunks: an iterable of chunks.
      dispatch: ``chunk -> item``.
      reduce: ``item -> out``.
      fold: ``out -> None`` (adds ``out`` to the running tables).
      collect: ``out -> None`` (counters, progress).
      threads: the reducing threads.
    """
    in_flight, folds = collections.deque(), collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as merger:
        def take(future):
            out = future.result()
            folds.append(merger.submit(fold, out))  # folds run in order, off the calling thread
            collect(out)

        for chunk in chunks:
            in_flight.append(pool.submit(reduce, dispatch(chunk)))
            while len(in_flight) > threads:
                take(in_flight.popleft())
            while folds and (folds[0].done() or len(folds) > threads):
                folds.popleft().result()  # a bounded queue; surfaces errors (collisions) as they come
        while in_flight:
            take(in_flight.popleft())
        while folds:
            folds.popleft().result()


def partition(
    net: Net,
    source,
    labels=None,
    *,
    scopes: Sequence[str] = SCOPES,
    batch_size: int | None = None,
    exact: bool = False,
    progress: bool = True,
    boundary_tol: float = 1e-5,
    collision_check: bool = True,
):
    """Partitions a stream of inputs by the regions of a network.

    Args:
      net: a :class:`~partax.nets.Net`, or a stacked one (leading axis on every array).
      source: inputs ``x[N, d_in]`` (NumPy or JAX), an iterable of batches (``x`` or
        ``(x, y)``), or a sampler from :mod:`partax.sources`.
      labels: optional ``int[N]`` labels in ``0..C-1`` for an array source.
      scopes: any of ``"layer"``, ``"prefix"``, ``"suffix"`` (see :mod:`partax.coding`).
      batch_size: inputs per chunk (default: :func:`default_batch_size`).
      exact: keep each region's exemplar code and raise
        :class:`~partax.coding.HashCollisionError` if two different codes ever share a key.
      progress: show a tqdm progress bar (it appears only on runs longer than a second).
      boundary_tol: relative tolerance behind ``near_boundary``: an input is near a
        boundary if some hidden unit has ``|z_i| <= boundary_tol * (||h|| ||W[:, i]|| + |b_i|)``
        (see :mod:`partax.coding`).
      collision_check: check every key against an independent 64-bit check key of the same
        code (and merges against per-layer fingerprints) and raise
        :class:`~partax.coding.HashCollisionError` on a collision, so two regions are never
        merged silently (see "Collisions" in :mod:`partax.coding`; ``partax bench`` measures
        its cost). ``False`` trusts the 64-bit keys alone (a collision among ``M`` regions
        then merges two of them with probability about ``M^2 / 2^65``).

    Returns:
      A :class:`Partition`; for a stacked net, a tuple of them (one per net).

    Raises:
      ValueError / TypeError: wrong input dimension, NaN or inf inputs, labels of the wrong
        length, negative or non-integer, an empty source, an unknown scope.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 16, 16, 2], bias_std=0.5)
      >>> x = np.random.default_rng(0).uniform(-1, 1, (1000, 2)).astype(np.float32)
      >>> y = (x[:, 0] > 0).astype(int)
      >>> p = partax.partition(net, x, y, progress=False)
      >>> int(p.table("prefix", 2).counts.sum()), p.table("layer", 1).label_counts.shape[1]
      (1000, 2)
    """
    check_net(net)
    scopes = check_scopes(scopes)
    tol = check_tolerance(boundary_tol)
    check = check_flag(collision_check, "collision_check") and not exact  # exact compares the codes themselves
    src = as_source(source, labels, dim=net.input_dim)
    if src.num_inputs == 0:
        raise ValueError("source: holds no inputs")
    block = src.block if isinstance(src, Sampler) else 1
    if batch_size is None:
        batch_size = default_batch_size(net, block)
        if src.num_inputs is not None:  # no point in padding a small source to a huge chunk
            small = max(block, -(-src.num_inputs // block) * block)
            batch_size = min(batch_size, int(2 ** np.ceil(np.log2(small))) if block == 1 else small)
    batch_size = check_batch_size(batch_size, block)

    L = net.num_hidden
    ranges, index = tables_for(scopes, L)
    # Every range table is a coarsening of the table of full codes (S^1..S^L): per chunk, one
    # sort groups the inputs by the key of their full code (the chunk's base table, whose rows
    # carry the payload of partax.coarsening), and range keys are finished on the host from
    # those rows only (see fold_chunk for when).
    layout = PayloadLayout(net.widths, bool(exact), check)
    num_nets = net.stack_shape[0] if net.stack_shape else 1
    acc = table_accumulator(check_codes=layout.checked)  # merges compare the payload (codes or fingerprints)
    states = [NetTables(acc.init(), None) for _ in range(num_nets)]

    def dispatch(chunk):
        if isinstance(src, Sampler):
            out, y = _sampler_kernel(net, src, jnp.asarray(chunk.x), tol, bool(exact), check)
        else:
            out, y = _array_kernel(net, jnp.asarray(chunk.x), tol, bool(exact), check), None
        return out, y, chunk

    def reduce(item):
        """Chunk -> (per net: base table and, once not deferred, range tables; near-boundary
        counts; valid rows; classes seen). Runs in worker threads: NumPy's sorts release
        the GIL, so two chunks are reduced at once while the device computes the next."""
        (words, full_keys, full_checks, layer_hashes, near, finite), y_dev, chunk = item
        n = chunk.num_valid
        check_finite(np.asarray(finite)[:n], "source", chunk.start)
        y = chunk.labels if y_dev is None else np.asarray(y_dev)[:n]
        classes = int(y.max()) + 1 if (y is not None and n) else 0
        full_keys, layer_hashes, near = np.asarray(full_keys), np.asarray(layer_hashes), np.asarray(near)
        full_checks = None if full_checks is None else np.asarray(full_checks)
        if not net.stack_shape:
            full_keys, layer_hashes, near = full_keys[None], layer_hashes[None], near[None]
            full_checks = None if full_checks is None else full_checks[None]
            words = tuple(w[None] for w in words)
        results, nears = [], []
        for k in range(num_nets):
            nears.append(int(near[k, :n].sum()))
            if exact:  # the full code of every input: checks the base keys, rides with the exemplars
                code = np.concatenate([np.asarray(w)[k, :n] for w in words], axis=1)
            else:  # the check key of every input's full code, or nothing
                code = None if full_checks is None else full_checks[k, :n]
            base = chunk_base_table(full_keys[k, :n], code, layer_hashes[k], y, classes or None, chunk.start, layout)
            deferred = states[k].base is not None  # a stale read only moves the work to fold_chunk
            results.append((base, None if deferred else range_tables(base, ranges, layout)))
        return results, nears, n, classes

    near_count = np.zeros(num_nets, np.int64)
    num_classes, total = 0, 0

    def collect(out):
        """Counters and progress of one reduced chunk (main thread, in stream order)."""
        nonlocal num_classes, total
        _, nears, n, classes = out
        near_count[:] += nears
        num_classes, total = max(num_classes, classes), total + n
        if bar is not None:
            bar.update(n)

    def fold(out):
        """One chunk's tables into the running ones (one thread, in stream order)."""
        for k, (base, per_range) in enumerate(out[0]):
            states[k] = fold_chunk(acc, states[k], base, per_range, ranges, layout)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=src.num_inputs, unit="in", unit_scale=True, delay=1.0, desc="partition", leave=False)
    try:
        run_chunks(src.chunks(batch_size), dispatch, reduce, fold, collect)
    finally:
        if bar is not None:
            bar.close()
    if total == 0:
        raise ValueError("source: holds no inputs")
    with concurrent.futures.ThreadPoolExecutor(max_workers=_REDUCE_THREADS) as pool:
        built_all = []
        for state in states:
            if state.base is not None:  # still deferred: the range tables of the whole base table
                built_all.append(range_tables(acc.finalize(state.base), ranges, layout))
            else:  # the last merges of the pending tables, at once
                built_all.append(list(pool.map(acc.finalize, state.ranges)))

    C = num_classes if src.has_labels else None
    results = [
        Partition(finish_tables(built_all[k], index, C, keep_codes=bool(exact)), net.widths, net.input_dim, total,
                  int(near_count[k]), tol)
        for k in range(num_nets)
    ]
    return tuple(results) if net.stack_shape else results[0]
