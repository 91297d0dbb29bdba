"""The streaming partition engine: inputs in, one region table per scope and layer out.

:func:`partition` reads a source in fixed-size chunks. For each chunk one jitted kernel
computes the hidden pre-activations (``precision=HIGHEST``), packs the sign bits, hashes
each layer's words, and returns per input the 64-bit key of the full code ``S^1..S^L``, the
per-layer hashes, and a near-boundary flag. The host groups the chunk by full-code key (one
sort) into a *base* :class:`~partax.tables.RegionTable`; every range table the scopes need
is a coarsening of it, so range keys are finished on the host for one input per base row
(:func:`partax.codes.range_keys`) and each range table is reduced from the base rows. While
the running base table stays small (regions repeat) only it is accumulated and the range
tables are reduced from it once at the end; past ``_DEFER_ROWS`` rows, range tables are
reduced chunk by chunk and merged into running ones.
JAX dispatch is asynchronous and the host reductions run in two worker threads, and the
merges into the running tables in a third (NumPy's sorts release the GIL), so the device
computes chunk ``i + 2`` while chunks ``i`` and ``i + 1`` are reduced.
Memory is one chunk plus the tables: pending chunk tables are merged into the running table
whenever they outgrow it, so the run never holds more than about twice the final tables.

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
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from partax.codes import SCOPES, codes_and_layer_hashes, codes_hashes_and_checks, fingerprint_columns, range_keys
from partax.codes import tables_for
from partax.files import load_npz, save_npz
from partax.nets import Net
from partax.sources import Sampler, Source, as_source
from partax.tables import RegionTable, merge_tables, reduce_by_key

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
        if scope not in SCOPES:
            raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
        if scope not in self.scopes:
            raise ValueError(f"scope: {scope!r} was not computed; this partition has {self.scopes}")
        L = self.num_layers
        if not isinstance(layer, (int, np.integer)) or not 1 <= layer <= L:
            raise ValueError(f"layer: expected a hidden layer in 1..{L} (1-based), got {layer!r}")
        return self.tables[(scope, int(layer))]

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


class _Accumulator:
    """Folds chunk tables into one running table, merging pending ones geometrically."""

    def __init__(self, check_codes: bool):
        self.check_codes = check_codes
        self.table = None
        self.pending = []
        self.pending_size = 0

    def add(self, t: RegionTable):
        self.pending.append(t)
        self.pending_size += len(t)
        if self.pending_size > max(2**16, len(self.table) if self.table is not None else 0):
            self._flush()

    @property
    def size(self) -> int:
        """Rows held (an upper bound on the distinct keys)."""
        return (len(self.table) if self.table is not None else 0) + self.pending_size

    def _flush(self):
        parts = ([self.table] if self.table is not None else []) + self.pending
        self.table = merge_tables(parts, check_codes=self.check_codes)
        self.pending, self.pending_size = [], 0

    def result(self) -> RegionTable:
        self._flush()
        return self.table


def check_net(net) -> None:
    """Validates a net for partitioning: a :class:`Net`, hidden layers, at most one stack axis."""
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.num_hidden < 1:
        raise ValueError("net: expected at least one hidden layer")
    if len(net.stack_shape) > 1:
        raise ValueError(f"net: expected at most one stack axis, got stack shape {net.stack_shape}")


def _validate_scopes(scopes) -> tuple:
    if isinstance(scopes, str):
        scopes = (scopes,)
    scopes = tuple(scopes)
    if not scopes:
        raise ValueError(f"scopes: expected a non-empty subset of {SCOPES}")
    for s in scopes:
        if s not in SCOPES:
            raise ValueError(f"scopes: unknown scope {s!r}; expected a subset of {SCOPES}")
    return tuple(s for s in SCOPES if s in scopes)


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
      scopes: any of ``"layer"``, ``"prefix"``, ``"suffix"`` (see :mod:`partax.codes`).
      batch_size: inputs per chunk (default: :func:`default_batch_size`).
      exact: keep each region's exemplar code and raise
        :class:`~partax.codes.HashCollisionError` if two different codes ever share a key.
      progress: show a tqdm progress bar (it appears only on runs longer than a second).
      boundary_tol: relative tolerance behind ``near_boundary``: an input is near a
        boundary if some hidden unit has ``|z_i| <= boundary_tol * (||h|| ||W[:, i]|| + |b_i|)``
        (see :mod:`partax.codes`).
      collision_check: check every key against an independent 64-bit check key of the same
        code (and merges against per-layer fingerprints) and raise
        :class:`~partax.codes.HashCollisionError` on a collision, so two regions are never
        merged silently (see "Collisions" in :mod:`partax.codes`; ``partax bench`` measures
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
    scopes = _validate_scopes(scopes)
    if not (isinstance(boundary_tol, (int, float, np.floating)) and np.isfinite(boundary_tol) and boundary_tol >= 0):
        raise ValueError(f"boundary_tol: expected a finite number >= 0, got {boundary_tol!r}")
    if not isinstance(collision_check, (bool, np.bool_)):
        raise TypeError(f"collision_check: expected a bool, got {collision_check!r}")
    check = bool(collision_check) and not exact  # exact mode compares the codes themselves
    src = as_source(source, labels)
    if isinstance(src, Sampler):
        src = src.bind(net.input_dim)
    if src.dim != net.input_dim:
        raise ValueError(f"source: expected inputs of dimension {net.input_dim} (the net's), got {src.dim}")
    if src.num_inputs == 0:
        raise ValueError("source: holds no inputs")
    block = src.block if isinstance(src, Sampler) else 1
    if batch_size is None:
        batch_size = default_batch_size(net, block)
        if src.num_inputs is not None:  # no point in padding a small source to a huge chunk
            small = max(block, -(-src.num_inputs // block) * block)
            batch_size = min(batch_size, int(2 ** np.ceil(np.log2(small))) if block == 1 else small)
    elif not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    elif batch_size % block:
        raise ValueError(f"batch_size: expected a multiple of the sampler's block ({block}), got {batch_size}")
    batch_size = int(batch_size)

    L = net.num_hidden
    ranges, index = tables_for(scopes, L)
    # Every range table is a coarsening of the table of full codes (S^1..S^L). Per chunk, one
    # sort groups the inputs by the key of their full code: the chunk's *base* table, whose
    # rows carry their per-layer hashes (and, in exact mode, their words). Range keys are
    # finished on the host from those rows only. While the running base table stays small
    # (regions repeat: small nets, trained nets) only it is accumulated, and the range tables
    # are reduced from it once at the end; once it grows past `_DEFER_ROWS` every chunk's
    # range tables are reduced and accumulated as they come.
    word_ends = np.cumsum([0] + [-(-w // 32) for w in net.widths])
    num_words = int(word_ends[-1]) if exact else 0
    num_nets = net.stack_shape[0] if net.stack_shape else 1
    checked = exact or check  # merges compare the rows' codes (exact) or fingerprints (check)
    accs = [[_Accumulator(checked) for _ in ranges] for _ in range(num_nets)]
    bases = [_Accumulator(checked) for _ in range(num_nets)]  # running base tables; None once switched
    fingerprints = fingerprint_columns(net.widths, ranges) if check else None
    near_count = np.zeros(num_nets, np.int64)
    num_classes = [0]
    total = [0]
    tol = float(boundary_tol)

    def range_tables(base: RegionTable) -> list:
        """The range tables of a base table (rows: full codes, payload ``[words | hashes]``).

        Each range table carries, as its rows' codes, what its merges compare: the range's
        words (exact mode) or its per-layer fingerprints (collision check).
        """
        payload = base.exemplar_codes
        hashes = payload[:, num_words : num_words + 2 * L].T.reshape(2, L, -1)
        keys = range_keys(hashes, ranges)  # [G, R]

        def codes_of(r, f, t):
            if exact:
                return payload[:, word_ends[f - 1] : word_ends[t]]
            return payload[:, fingerprints[r]] if check else None

        return [
            reduce_by_key(
                keys[:, r], base.counts, base.exemplars, base.label_counts, codes_of(r, f, t), base.total,
                check_codes=checked,
            )
            for r, (f, t) in enumerate(ranges)
        ]

    def dispatch(chunk):
        if isinstance(src, Sampler):
            out, y = _sampler_kernel(net, src, jnp.asarray(chunk.x), tol, exact, check)
        else:
            out, y = _array_kernel(net, jnp.asarray(chunk.x), tol, exact, check), None
        return out, y, chunk

    def reduce(item):
        """Chunk -> (base table and, once not deferred, range tables per net; near-boundary
        counts; valid rows; classes seen).

        Runs in worker threads: NumPy's sorts release the GIL, so two chunks are reduced at
        once while the device computes the next.
        """
        (words, full_keys, full_checks, layer_hashes, near, finite), y_dev, chunk = item
        n = chunk.num_valid
        finite = np.asarray(finite)[:n]
        if not finite.all():
            row = chunk.start + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"source: input {row} has a NaN or inf coordinate; expected finite inputs")
        full_keys = np.asarray(full_keys)
        full_checks = None if full_checks is None else np.asarray(full_checks)
        layer_hashes = np.asarray(layer_hashes)
        near = np.asarray(near)
        y = chunk.labels if y_dev is None else np.asarray(y_dev)[:n]
        classes = int(y.max()) + 1 if (y is not None and n) else 0
        if not net.stack_shape:
            full_keys, layer_hashes, near = full_keys[None], layer_hashes[None], near[None]
            full_checks = None if full_checks is None else full_checks[None]
            words = tuple(w[None] for w in words)
        results, nears = [], []
        for k in range(num_nets):
            nears.append(int(near[k, :n].sum()))
            code = None
            if exact:  # the full code of every input: checks the base keys, rides with the exemplars
                code = np.concatenate([np.asarray(w)[k, :n] for w in words], axis=1)
            elif check:  # the check key of every input's full code
                code = full_checks[k, :n]
            base_keys = np.ascontiguousarray(full_keys[k, :n]).view(np.uint64)[:, 0]
            base = RegionTable.from_keys(
                base_keys, labels=y, num_classes=classes or None, offset=chunk.start,
                codes=code, check_codes=checked,
            )
            rows = base.exemplars - chunk.start
            hashes = layer_hashes[k][:, rows].T
            payload = np.concatenate([base.exemplar_codes, hashes], axis=1) if exact else np.ascontiguousarray(hashes)
            # the payload (hashes) is a function of the code: base merges compare it
            base = dataclasses.replace(base, exemplar_codes=payload)
            results.append((base, None if bases[k] is not None else range_tables(base)))
        return results, nears, n, classes

    def fold(results):
        """Adds one chunk's tables to the running ones (in stream order, one thread)."""
        for k, (base, per_range) in enumerate(results):
            if bases[k] is not None:  # deferred
                bases[k].add(base)
                if bases[k].size <= _DEFER_ROWS:
                    continue
                merged = bases[k].result()
                if len(merged) <= _DEFER_ROWS // 2:  # regions repeat: keep deferring
                    continue
                per_range, bases[k] = range_tables(merged), None
            for acc, table in zip(accs[k], per_range if per_range is not None else range_tables(base)):
                acc.add(table)

    def collect(future):
        results, nears, n, classes = future.result()
        merges.append(merger.submit(fold, results))  # merges run in order, off the main thread
        for k in range(num_nets):
            near_count[k] += nears[k]
        num_classes[0] = max(num_classes[0], classes)
        total[0] += n
        if bar is not None:
            bar.update(n)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=src.num_inputs, unit="in", unit_scale=True, delay=1.0, desc="partition", leave=False)
    in_flight = collections.deque()
    merges = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=_REDUCE_THREADS) as pool, \
                concurrent.futures.ThreadPoolExecutor(max_workers=1) as merger:
            for chunk in src.chunks(batch_size):
                in_flight.append(pool.submit(reduce, dispatch(chunk)))  # dispatch is asynchronous
                while len(in_flight) > _REDUCE_THREADS:
                    collect(in_flight.popleft())
                while merges and (merges[0].done() or len(merges) > _REDUCE_THREADS):
                    merges.pop(0).result()  # bounded queue; surfaces errors (collisions) as they come
            while in_flight:
                collect(in_flight.popleft())
            for m in merges:
                m.result()
            # the deferred reductions, or the last merges of the pending chunk tables (at once)
            built_all = [
                range_tables(bases[k].result()) if bases[k] is not None else list(pool.map(_Accumulator.result, accs[k]))
                for k in range(num_nets)
            ]
    finally:
        if bar is not None:
            bar.close()
    if total[0] == 0:
        raise ValueError("source: holds no inputs")

    results = []
    C = num_classes[0]
    for k in range(num_nets):
        built = built_all[k]
        if src.has_labels:  # pad every table to the final class count
            built = [
                t if t.label_counts.shape[1] == C
                else dataclasses.replace(t, label_counts=np.pad(t.label_counts, ((0, 0), (0, C - t.label_counts.shape[1]))))
                for t in built
            ]
        if not exact:  # the fingerprints served the merges' collision checks
            built = [dataclasses.replace(t, exemplar_codes=None) for t in built]
        tables = {key: built[r] for key, r in index.items()}
        results.append(Partition(tables, net.widths, net.input_dim, total[0], int(near_count[k]), tol))
    return tuple(results) if net.stack_shape else results[0]
