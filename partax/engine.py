# Length: over 500 lines because both reduction paths (host: every input's keys to a NumPy
# sort; device: a table of known keys on the device, partax.device_grouping) share one
# pipelined loop in partition() (dispatch, reduce, fold, collect) and its argument checks.
# The sharded engine (partax.sharded) uses the same device_grouping table inside its own
# shard_map step, so the per-path closures here stay with this loop.
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

Two reduction paths (``reduce=``), one engine, the same tables bit for bit. The *host* path
above fetches every input's key, check key and per-layer hashes. The *device* path keeps a
table of the regions met so far on the device (:mod:`partax.device_grouping`, rebuilt by the
fold thread as new regions come): the jitted step counts each chunk's inputs into its slots
and compacts the inputs of new regions (misses) into a static capacity, so only per-slot
counts and the misses leave the device; the host groups the misses as above and adds the
counts, per table version, as base tables whose exemplars come from the misses (a region's
first input is always one). A chunk whose misses or labels overflow their static capacity is
re-run with room for all of them; the capacity then follows the misses of recent chunks (a
few power-of-four sizes: each is a compilation). ``reduce="auto"`` picks the host path on the
CPU backend and the device path on accelerators (see :func:`partition`).

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
import itertools
import threading
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from partax.accumulate import AccumulatorState, TableAccumulator, table_accumulator
from partax.coarsening import PayloadLayout, finish_tables, range_tables
from partax.coding import codes_and_layer_hashes, codes_hashes_and_checks, finite_rows, full_check_keys, screens_near
from partax.device_grouping import absorb_chunk, build_key_table, table_buckets
from partax.grouping import collision_error
from partax.files import load_npz, save_npz
from partax.nets import Net
from partax.scopes import SCOPES, tables_for
from partax.sources import Sampler, as_source
from partax.tables import RegionTable
from partax.validation import (check_batch_size, check_finite, check_flag, check_layer, check_net, check_scope,
                               check_scopes, check_tolerance, nonfinite_error)

__all__ = ["Partition", "partition", "load_partition", "default_batch_size", "check_reduce", "REDUCE_PATHS"]

_FORMAT = "partax.partition"
_REDUCE_THREADS = 2  # chunks reduced at once on the host (and so in flight on the device)
_DEFER_ROWS = 2**17  # range tables are reduced from the running base table while it is this small
REDUCE_PATHS = ("auto", "host", "device")
# the device path (see partax.device_grouping): its table of known keys and its miss capacity
_WAYS = 4  # slots per bucket
_MAX_BUCKETS_CPU, _MAX_BUCKETS = 2**14, 2**18  # the table stops growing past this many buckets
_REBUILD_MIN = 64  # new regions (miss groups) seen before the table of known keys is rebuilt
_MISS_FRACTION = 64  # the small miss capacity is a chunk's size over this (at least _MIN_MISSES)
_MIN_MISSES = 256
_ADAPT = True  # the miss capacity follows the last chunk's misses (False: always the small one)
_NO_EXEMPLAR = np.iinfo(np.int64).max  # a device hit is never a region's first input: min() drops it


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
      device_to_host_bytes: bytes the run fetched from the device (per-input rows on the host
        path, per-region rows and per-slot counts on the device path); None when unknown
        (a loaded partition).
    """

    tables: dict
    widths: tuple
    input_dim: int
    total: int
    near_boundary: int
    boundary_tol: float
    device_to_host_bytes: int | None = None

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
    screen = screens_near(net, boundary_tol)  # narrow nets: the near-boundary test through a screen
    finite = finite_rows(jnp.asarray(x, net.dtype))  # once for a stacked net: the inputs are shared

    def one(n):  # the kernel's own finite flags (the same) are left unused
        if check:
            words, full_keys, checks, layer_hashes, near, _ = codes_hashes_and_checks(n, x, boundary_tol,
                                                                                      screen=screen)
        else:
            words, full_keys, layer_hashes, near, _ = codes_and_layer_hashes(n, x, boundary_tol, screen=screen)
            checks, layer_hashes = None, layer_hashes.reshape(-1, layer_hashes.shape[-1])
        return (words if with_words else ()), full_keys, checks, layer_hashes, near

    out = jax.vmap(one)(net) if net.stack_shape else one(net)
    return out + (finite,)


@functools.partial(jax.jit, static_argnames=("boundary_tol", "with_words", "check"))
def _array_kernel(net, x, boundary_tol, with_words, check):
    return _kernel(net, x, boundary_tol, with_words, check)


@functools.partial(jax.jit, static_argnames=("boundary_tol", "with_words", "check"))
def _sampler_kernel(net, sampler, blocks, boundary_tol, with_words, check):
    x = sampler.generate(blocks).astype(net.dtype)
    labels = sampler.generate_labels(blocks) if sampler.has_labels else None
    return _kernel(net, x, boundary_tol, with_words, check), labels


def _absorb(net, x, labels, lanes, values, num_valid, boundary_tol, with_words, check, num_classes, capacity):
    """The device path's step: the kernel, then every net's chunk absorbed into its table of
    known keys (:func:`partax.device_grouping.absorb_chunk`); only per-slot counts and the
    misses' rows leave the device."""
    words, full_keys, checks, layer_hashes, near, finite = _kernel(net, x, boundary_tol, with_words, check)
    N = x.shape[0]
    valid = jnp.arange(N) < num_valid
    bad = valid & ~finite
    first_bad = jnp.where(bad.any(), jnp.argmax(bad), -1).astype(jnp.int32)
    max_label = jnp.int32(-1) if labels is None else jnp.max(jnp.where(valid, labels, -1)).astype(jnp.int32)

    def one(fk, ck, ws, lh, nr, ln, vs):
        if with_words:
            row_values = jnp.concatenate(ws, axis=1)
        elif check:
            row_values = ck
        else:
            row_values = jnp.zeros((N, 0), jnp.uint32)
        a = absorb_chunk(ln, vs, fk, row_values, labels, num_valid, num_classes, capacity)
        m = a.misses
        misses = (fk[m], row_values[m], lh[:, m], None if labels is None else labels[m])
        return a, misses, (nr & valid).sum(dtype=jnp.int32)

    if net.stack_shape:
        ck = checks if check else jnp.zeros(full_keys.shape, jnp.uint32)
        ws = words if with_words else ()
        out = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, 0))(full_keys, ck, ws, layer_hashes, near, lanes, values)
    else:
        out = jax.tree.map(lambda v: v[None], one(full_keys, checks, words if with_words else (), layer_hashes, near,
                                                  lanes[0], values[0]))
    return out, first_bad, max_label


_DEVICE_STATICS = ("boundary_tol", "with_words", "check", "num_classes", "capacity")


@functools.partial(jax.jit, static_argnames=_DEVICE_STATICS)
def _array_absorb(net, x, labels, lanes, values, num_valid, boundary_tol, with_words, check, num_classes, capacity):
    return _absorb(net, x, labels, lanes, values, num_valid, boundary_tol, with_words, check, num_classes, capacity)


@functools.partial(jax.jit, static_argnames=_DEVICE_STATICS)
def _sampler_absorb(net, sampler, blocks, lanes, values, num_valid, boundary_tol, with_words, check, num_classes,
                    capacity):
    x = sampler.generate(blocks).astype(net.dtype)
    labels = sampler.generate_labels(blocks).astype(jnp.int32) if sampler.has_labels else None
    return _absorb(net, x, labels, lanes, values, num_valid, boundary_tol, with_words, check, num_classes, capacity)


class KnownKeys(NamedTuple):
    """One version of the device path's tables of known keys, one per net (immutable).

    Attributes:
      version: increases with every rebuild (chunks' hits are counted per version).
      lanes: device ``uint32[K, buckets, ways, 2]`` (``K`` nets).
      values: device ``uint32[K, S, W]``.
      slot_keys: per net, ``uint64[S]``.
      slot_payload: per net, ``uint32[S, P]``: each occupied slot's base payload.
      occupied: per net, ``bool[S]``.
    """

    version: int
    lanes: object
    values: object
    slot_keys: tuple
    slot_payload: tuple
    occupied: tuple


def hits_table(known: KnownKeys, k: int, counts, label_counts, num_classes) -> RegionTable:
    """The base table of the hits a version's table of known keys counted for net ``k``.

    Its exemplars are ``_NO_EXEMPLAR``: a region's first input is always a miss (the table
    holds keys of earlier chunks only), whose row, merged with this one, gives the minimum.
    """
    sel = np.flatnonzero(known.occupied[k] & (counts > 0))
    keys = known.slot_keys[k][sel]
    order = np.argsort(keys)
    sel = sel[order]
    lc = None
    if label_counts is not None:
        lc = label_counts[sel][:, : max(1, num_classes)]
    c = counts[sel]
    return RegionTable(keys[order], c, lc, np.full(sel.size, _NO_EXEMPLAR, np.int64), int(c.sum()),
                       np.take(known.slot_payload[k], sel, axis=0))


def _pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def check_reduce(reduce) -> str:
    """``reduce`` of :func:`partition`: ``"auto"`` resolved by backend (``"host"`` on CPU)."""
    if not isinstance(reduce, str):
        raise TypeError(f"reduce: expected one of {REDUCE_PATHS}, got {type(reduce).__name__}")
    if reduce not in REDUCE_PATHS:
        raise ValueError(f"reduce: expected one of {REDUCE_PATHS}, got {reduce!r}")
    if reduce == "auto":
        return "host" if jax.default_backend() == "cpu" else "device"
    return reduce


def chunk_base_table(full_keys, codes, layer_hashes, labels, num_classes, start, layout: PayloadLayout,
                     rows=None) -> RegionTable:
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
      rows: ``int[n]``, increasing: the inputs' rows in the chunk when they are some of its
        rows (the device path's misses); None: all of them, in order.

    Returns:
      The chunk's base table, its payload (``exemplar_codes``) the exemplars' ``layout``
      columns (:mod:`partax.coarsening`).
    """
    keys = np.ascontiguousarray(full_keys).view(np.uint64)[:, 0]
    base = RegionTable.from_keys(keys, labels=labels, num_classes=num_classes, offset=0, codes=codes,
                                 check_codes=layout.checked)
    first = base.exemplars  # positions among the given inputs (the minimum: rows increase)
    hashes = np.take(layer_hashes, first, axis=1).T
    exemplars = start + (first if rows is None else np.asarray(rows, np.int64)[first])
    # the payload (hashes) is a function of the code: base merges compare it
    return dataclasses.replace(base, exemplars=exemplars, exemplar_codes=layout.assemble(base.exemplar_codes, hashes))


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
    reduce: str = "auto",
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
      reduce: where each chunk is grouped by key. ``"host"``: every input's key and hashes
        leave the device and one NumPy sort per chunk groups them. ``"device"``: a table of
        the regions met so far lives on the device (:mod:`partax.device_grouping`); each
        chunk's inputs are counted into it there, and only the per-slot counts and the
        inputs of new regions leave the device (the host groups those). Both give the same
        tables, bit for bit. ``"auto"`` (default): ``"host"`` on the CPU backend, where the
        "device" is the host's own cores and NumPy's radix sort is cheap, ``"device"`` on
        GPUs and TPUs.

    Returns:
      A :class:`Partition`; for a stacked net, a tuple of them (one per net).

    Raises:
      ValueError / TypeError: wrong input dimension, NaN or inf inputs, labels of the wrong
        length, negative or non-integer, an empty source, an unknown scope or ``reduce``.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 16, 16, 2], bias_std=0.5)
      >>> x = np.random.default_rng(0).uniform(-1, 1, (1000, 2)).astype(np.float32)
      >>> y = (x[:, 0] > 0).astype(int)
      >>> p = partax.partition(net, x, y, progress=False)
      >>> int(p.table("prefix", 2).counts.sum()), p.table("layer", 1).label_counts.shape[1]
      (1000, 2)
      >>> partax.partition(net, x, y, reduce="device", progress=False).table("prefix", 2) == p.table("prefix", 2)
      True
    """
    check_net(net)
    scopes = check_scopes(scopes)
    tol = check_tolerance(boundary_tol)
    check = check_flag(collision_check, "collision_check") and not exact  # exact compares the codes themselves
    path = check_reduce(reduce)
    src = as_source(source, labels, dim=net.input_dim, input_shape=net.input_shape)
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
    moved = [0]  # bytes fetched from the device (main thread, in collect)

    def fetch(a):
        return None if a is None else np.asarray(a)

    def nbytes(*arrays):
        return sum(int(a.nbytes) for a in jax.tree.leaves(arrays))

    def host_dispatch(chunk):
        if isinstance(src, Sampler):
            out, y = _sampler_kernel(net, src, jnp.asarray(chunk.x), tol, bool(exact), check)
        else:
            out, y = _array_kernel(net, jnp.asarray(chunk.x), tol, bool(exact), check), None
        return out, y, chunk

    def host_reduce(item):
        """Chunk -> (per net: base table and, once not deferred, range tables; near-boundary
        counts; valid rows; classes seen; bytes fetched). Runs in worker threads: NumPy's
        sorts release the GIL, so two chunks are reduced at once while the device computes
        the next."""
        out, y_dev, chunk = item
        out, y_dev = jax.tree.map(fetch, out), fetch(y_dev)
        words, full_keys, full_checks, layer_hashes, near, finite = out
        n = chunk.num_valid
        check_finite(finite[:n], "source", chunk.start)
        y = chunk.labels if y_dev is None else y_dev[:n]
        classes = int(y.max()) + 1 if (y is not None and n) else 0
        if not net.stack_shape:
            full_keys, layer_hashes, near = full_keys[None], layer_hashes[None], near[None]
            full_checks = None if full_checks is None else full_checks[None]
            words = tuple(w[None] for w in words)
        results, nears = [], []
        for k in range(num_nets):
            nears.append(int(near[k, :n].sum()))
            if exact:  # the full code of every input: checks the base keys, rides with the exemplars
                code = np.concatenate([w[k, :n] for w in words], axis=1)
            else:  # the check key of every input's full code, or nothing
                code = None if full_checks is None else full_checks[k, :n]
            base = chunk_base_table(full_keys[k, :n], code, layer_hashes[k], y, classes or None, chunk.start, layout)
            deferred = states[k].base is not None  # a stale read only moves the work to fold_chunk
            results.append((base, None if deferred else range_tables(base, ranges, layout), None))
        return results, nears, n, classes, nbytes(out, y_dev)

    # --- the device path: a table of known keys per net (rebuilt by the fold thread) --------
    max_buckets = _MAX_BUCKETS_CPU if jax.default_backend() == "cpu" else _MAX_BUCKETS
    small_capacity = min(batch_size, max(_MIN_MISSES, batch_size // _MISS_FRACTION))
    value_width = layout.num_words if exact else (2 if check else 0)
    # mutable settings read by dispatch (main thread), raised by the reducing threads
    # the first chunk meets an empty table: room for all; label columns for 8 classes until more come
    device = {"capacity": batch_size, "classes": 8}
    levels = sorted({min(batch_size, small_capacity * 4**i) for i in range(4)} | {batch_size})  # each compiles

    def level_for(misses: int) -> int:
        """The capacity for chunks after one with ``misses`` misses: room for twice as many."""
        if not _ADAPT:
            return small_capacity
        return next((c for c in levels if c >= 2 * misses), batch_size)
    if src.has_labels and not isinstance(src, Sampler) and getattr(src, "labels", None) is not None:
        device["classes"] = _pow2(int(src.labels.max()) + 1) if len(src.labels) else 1

    def build_known(version, tables):
        """A :class:`KnownKeys` from per-net base tables of the regions met so far."""
        buckets = min(max_buckets, max(table_buckets(len(t), _WAYS) for t in tables))
        built = []
        for t in tables:
            payload = t.exemplar_codes
            if exact:
                values = payload[:, : layout.num_words]
            elif check:
                values = full_check_keys(payload[:, : layout.num_hash_rows].T, net.widths)
            else:
                values = np.zeros((len(t), 0), np.uint32)
            built.append(build_key_table(t.keys, values, t.counts, buckets=buckets, ways=_WAYS))
        S = buckets * _WAYS
        payloads = []
        for t, kt in zip(tables, built):
            p = np.zeros((S, layout.width), np.uint32)
            occ = kt.slot_rows >= 0
            p[occ] = t.exemplar_codes[kt.slot_rows[occ]]
            payloads.append(p)
        return KnownKeys(
            version, jnp.asarray(np.stack([kt.lanes for kt in built])),
            jnp.asarray(np.stack([kt.values for kt in built])).reshape(len(built), S, value_width),
            tuple(kt.slot_keys for kt in built), tuple(payloads), tuple(kt.slot_rows >= 0 for kt in built),
        )

    empty = RegionTable.empty(None, layout.width)
    device["known"] = build_known(0, [empty] * num_nets)
    versions = itertools.count(1)  # next() is atomic: the fold thread and the first reduce both build
    first_table = threading.Event()  # set once the first chunk's regions are on the device (or it failed)

    def device_dispatch(chunk, known=None, capacity=None, classes=None):
        if known is None and chunk.start > 0:
            first_table.wait()  # once: the first chunk's regions seed the table (else all rows miss)
        known = device["known"] if known is None else known
        capacity = device["capacity"] if capacity is None else capacity
        classes = device["classes"] if classes is None else classes
        C = classes if src.has_labels else 1
        n = jnp.int32(chunk.num_valid)
        if isinstance(src, Sampler):
            out = _sampler_absorb(net, src, jnp.asarray(chunk.x), known.lanes, known.values, n, tol, bool(exact),
                                  check, C, capacity)
        else:
            y = None
            if src.has_labels:
                y = np.zeros(batch_size, np.int32)
                y[: chunk.num_valid] = chunk.labels
                y = jnp.asarray(y)
            out = _array_absorb(net, jnp.asarray(chunk.x), y, known.lanes, known.values, n, tol, bool(exact), check,
                                C, capacity)
        return out, known, chunk, capacity, C

    def device_reduce(item):
        """Like host_reduce, from what the device path fetches: per-slot counts and misses."""
        try:
            out = absorbed_tables(item)
            if item[2].start == 0 and not first_table.is_set():  # seed the table with the first chunk's regions
                tables = [base for base, _, _ in out[0]]
                device["known"] = build_known(next(versions), tables)
            return out
        finally:
            if item[2].start == 0:
                first_table.set()

    def absorbed_tables(item):
        out, known, chunk, capacity, C = item
        out = jax.tree.map(fetch, out)
        (absorbed, misses, near_counts), first_bad, max_label = out
        size = nbytes(out)
        n = chunk.num_valid
        if first_bad >= 0:
            raise nonfinite_error("source", chunk.start + int(first_bad))
        if absorbed.overflow.any():  # re-run with room for every miss and label: no row is dropped
            if src.has_labels:
                device["classes"] = max(device["classes"], _pow2(int(max_label) + 1))
            rerun = absorbed_tables(device_dispatch(chunk, known, batch_size, device["classes"]))
            return rerun[:4] + (rerun[4] + size,)

        if src.has_labels:
            y_host = chunk.labels
            classes = int(max_label) + 1 if isinstance(src, Sampler) else (int(y_host.max()) + 1 if n else 0)
        else:
            classes = 0
        results = []
        for k in range(num_nets):
            if absorbed.collided[k]:
                raise collision_error(known.slot_keys[k][int(absorbed.collided_slot[k])])
            m = int(absorbed.num_misses[k])
            keys_k, values_k, hashes_k, labels_k = (None if a is None else a[k] for a in misses)
            rows = absorbed.misses[k, :m]
            code = values_k[:m] if layout.checked else None
            y = None if labels_k is None else labels_k[:m].astype(np.int64)
            base = chunk_base_table(keys_k[:m], code, hashes_k[:, :m], y, classes or None, chunk.start, layout,
                                    rows=rows)
            deferred = states[k].base is not None
            lc = None if absorbed.label_counts is None else absorbed.label_counts[k]
            hits = (known, absorbed.counts[k], lc)
            results.append((base, None if deferred else range_tables(base, ranges, layout), hits))
        if known.version == 0:  # an empty table: its misses say nothing; a quarter of its regions may be new
            device["capacity"] = level_for(max(len(base) for base, _, _ in results) // 4)
        else:
            device["capacity"] = level_for(int(absorbed.num_misses.max()))
        return results, [int(v) for v in near_counts], n, classes, size

    dispatch, reduce_chunk = (device_dispatch, device_reduce) if path == "device" else (host_dispatch, host_reduce)

    near_count = np.zeros(num_nets, np.int64)
    num_classes, total = 0, 0

    def collect(out):
        """Counters and progress of one reduced chunk (main thread, in stream order)."""
        nonlocal num_classes, total
        _, nears, n, classes, size = out
        near_count[:] += nears
        num_classes, total = max(num_classes, classes), total + n
        moved[0] += size
        if bar is not None:
            bar.update(n)

    # the fold thread's own state on the device path: hits per version, known keys, classes
    hits_by_version = [dict() for _ in range(num_nets)]
    known_acc = table_accumulator(check_codes=layout.checked)
    known_states = [known_acc.init() for _ in range(num_nets)]
    fold_state = {"new": 0, "classes": 0, "tracking": True}

    def flush_hits(k, before=None):
        """Folds net ``k``'s counted hits of every version older than ``before`` (all: None)."""
        pending = hits_by_version[k]
        for v in sorted(pending):
            if before is not None and v >= before:
                continue
            known_v, counts, lc = pending.pop(v)
            t = hits_table(known_v, k, counts, lc, fold_state["classes"])
            if len(t):
                states[k] = fold_chunk(acc, states[k], t, None, ranges, layout)

    def fold(out):
        """One chunk's tables into the running ones (one thread, in stream order)."""
        fold_state["classes"] = max(fold_state["classes"], out[3])
        for k, (base, per_range, hits) in enumerate(out[0]):
            states[k] = fold_chunk(acc, states[k], base, per_range, ranges, layout)
            if hits is None:
                continue
            known_v, counts, lc = hits
            v = known_v.version
            flush_hits(k, before=v)  # stream order: no chunk of an older version comes any more
            if v in hits_by_version[k]:
                _, c0, l0 = hits_by_version[k][v]
                if lc is not None:  # the static label columns may have grown since (padded with zeros)
                    w = max(l0.shape[1], lc.shape[1])
                    lc = np.pad(lc, ((0, 0), (0, w - lc.shape[1]))) + np.pad(l0, ((0, 0), (0, w - l0.shape[1])))
                hits_by_version[k][v] = (known_v, c0 + counts, lc)
            else:
                hits_by_version[k][v] = (known_v, counts.astype(np.int64), None if lc is None else lc.astype(np.int64))
            if fold_state["tracking"]:
                known_states[k] = known_acc.update(known_states[k], base)
        if path == "device" and fold_state["tracking"]:
            fold_state["new"] += max(len(base) for base, _, _ in out[0])
            used = int(device["known"].occupied[0].sum())
            if fold_state["new"] >= max(_REBUILD_MIN, used // 8):
                tables = [known_acc.finalize(s) if s.num_rows else empty for s in known_states]
                known_states[:] = [known_acc.init(t) for t in tables]
                device["known"] = build_known(next(versions), tables)
                fold_state["new"] = 0
                if max(len(t) for t in tables) >= 2 * max_buckets * _WAYS:  # the table is full: keep it
                    fold_state["tracking"] = False
                    known_states[:] = [known_acc.init() for _ in range(num_nets)]

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=src.num_inputs, unit="in", unit_scale=True, delay=1.0, desc="partition", leave=False)
    try:
        run_chunks(src.chunks(batch_size), dispatch, reduce_chunk, fold, collect)
    finally:
        if bar is not None:
            bar.close()
    if total == 0:
        raise ValueError("source: holds no inputs")
    for k in range(num_nets):
        flush_hits(k)
    with concurrent.futures.ThreadPoolExecutor(max_workers=_REDUCE_THREADS) as pool:
        built_all = []
        for state in states:
            if state.base is not None:  # still deferred: the range tables of the whole base table
                built_all.append(range_tables(acc.finalize(state.base), ranges, layout))
            else:  # the last merges of the pending tables, at once
                built_all.append(list(pool.map(acc.finalize, state.ranges)))
    for built in built_all:
        for t in built:
            if len(t) and t.exemplars.max() == _NO_EXEMPLAR:  # every region's first input is a miss
                raise RuntimeError("partition: a region counted on the device has no first input (a bug)")

    C = num_classes if src.has_labels else None
    results = [
        Partition(finish_tables(built_all[k], index, C, keep_codes=bool(exact)), net.widths, net.input_dim, total,
                  int(near_count[k]), tol, moved[0])
        for k in range(num_nets)
    ]
    return tuple(results) if net.stack_shape else results[0]
