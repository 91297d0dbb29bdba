"""Sources of inputs: arrays, iterables of batches, and reproducible on-device samplers.

Every source is turned into a :class:`Source` by :func:`as_source`. The partition engine
reads a source in fixed-size chunks (static shapes: the last chunk is padded and masked).

Samplers (:func:`uniform_box`, :func:`gaussian`, :func:`ball`, :func:`plane_grid`) are pytrees
that generate their inputs *on the device*, block by block, inside the jitted kernel: input
``i`` is row ``i % block`` of block ``i // block``, and block ``b`` is drawn with
``jax.random.fold_in(key, b)``. So the stream is the same whatever the chunk size, all ``n``
inputs are never materialised, and any input can be regenerated from its index
(:meth:`Source.inputs_at`, used to recover the exemplar of a region).

Example:
    >>> import jax, partax
    >>> s = partax.sources.uniform_box(0.0, 1.0, 10_000, jax.random.key(0), dim=3)
    >>> s.num_inputs, s.dim, s.inputs_at([0, 9_999]).shape
    (10000, 3, (2, 3))
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.validation import (check_batch_size, check_finite_vector, check_indices, check_inputs, check_labels,
                               check_positive_int)

__all__ = ["Source", "ArraySource", "BatchSource", "Sampler", "as_source", "uniform_box", "gaussian", "ball",
           "plane_grid"]

DEFAULT_BLOCK = 4096


class Chunk(NamedTuple):
    """One fixed-size chunk of a stream: ``x[B, d]`` (or block ids), labels, valid rows."""

    x: object
    labels: np.ndarray | None
    start: int
    num_valid: int


class Source:
    """Base class of input sources.

    Attributes:
      dim: input dimension (None if unknown until the first batch).
      num_inputs: number of inputs (None if unknown, e.g. a generator).
      has_labels: whether the source yields labels.
    """

    dim: int | None = None
    num_inputs: int | None = None
    has_labels: bool = False

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        raise NotImplementedError

    def inputs_at(self, indices) -> np.ndarray:
        """The inputs at global stream indices (e.g. a table's exemplars)."""
        raise ValueError(
            f"source: a {type(self).__name__} cannot be revisited; pass an array or a sampler "
            "to recover inputs by index"
        )


class ArraySource(Source):
    """An in-memory array ``x[N, d]`` (NumPy or JAX), with optional labels ``y[N]``."""

    def __init__(self, x, labels=None):
        self.x = check_inputs(x, name="source")
        self.dim = int(self.x.shape[1])
        self.num_inputs = int(self.x.shape[0])
        self.labels = None if labels is None else check_labels(labels, self.num_inputs)
        self.has_labels = self.labels is not None

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        n = self.num_inputs
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = self.x[start:stop]
            y = None if self.labels is None else self.labels[start:stop]
            if stop - start < batch_size:
                pad = batch_size - (stop - start)
                x = jnp.pad(jnp.asarray(x), ((0, pad), (0, 0))) if isinstance(x, jax.Array) else np.pad(
                    np.asarray(x), ((0, pad), (0, 0))
                )
            yield Chunk(x, y, start, stop - start)

    def inputs_at(self, indices) -> np.ndarray:
        idx = check_indices(indices, self.num_inputs)
        return np.asarray(self.x[idx] if not isinstance(self.x, jax.Array) else self.x[jnp.asarray(idx)])


class BatchSource(Source):
    """An iterable of batches, each ``x[B, d]`` or a pair ``(x[B, d], y[B])``; read once.

    Batches of any size are re-cut into chunks of the engine's size.
    """

    def __init__(self, batches: Iterable):
        self._it = iter(batches)
        self._first = None
        try:
            self._first = next(self._it)
        except StopIteration:
            raise ValueError("source: the iterable of batches is empty") from None
        x, y = self._split(self._first, 0)
        self.dim = int(x.shape[1])
        self.has_labels = y is not None
        self._used = False

    @staticmethod
    def _split(batch, i):
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            x, y = batch
            x = check_inputs(x, name=f"source (batch {i})")
            return x, check_labels(y, x.shape[0], name=f"labels (batch {i})")
        return check_inputs(batch, name=f"source (batch {i})"), None

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        if self._used:
            raise ValueError("source: this iterable of batches was already consumed")
        self._used = True
        pending_x, pending_y, have, start = [], [], 0, 0  # rows not yet cut into chunks

        def batches():
            yield self._first
            yield from self._it

        def cut(size):
            """Takes ``size`` rows off the front of the pending batches (copies ``size`` rows)."""
            nonlocal have
            xs, ys, need = [], [], size
            while need:
                x, y = pending_x[0], (pending_y[0] if pending_y else None)
                take = min(need, x.shape[0])
                xs.append(x[:take])
                if y is not None:
                    ys.append(y[:take])
                if take == x.shape[0]:
                    pending_x.pop(0)
                    if pending_y:
                        pending_y.pop(0)
                else:
                    pending_x[0] = x[take:]
                    if pending_y:
                        pending_y[0] = y[take:]
                need -= take
            have -= size
            return np.concatenate(xs), (np.concatenate(ys) if ys else None)

        for i, batch in enumerate(batches()):
            x, y = self._split(batch, i)
            if x.shape[1] != self.dim:
                raise ValueError(f"source: batch {i} has {x.shape[1]} columns, expected {self.dim}")
            if (y is not None) != self.has_labels:
                raise ValueError(f"source: batch {i} {'lacks' if y is None else 'has'} labels unlike batch 0")
            if x.shape[0] == 0:
                continue
            pending_x.append(np.asarray(x))
            if y is not None:
                pending_y.append(y)
            have += x.shape[0]
            while have >= batch_size:
                xs, ys = cut(batch_size)
                yield Chunk(xs, ys, start, batch_size)
                start += batch_size
        if have:
            n = have
            xs, ys = cut(n)
            yield Chunk(np.pad(xs, ((0, batch_size - n), (0, 0))), ys, start, n)
            start += n
        if start == 0:
            raise ValueError("source: the iterable of batches holds no inputs")


# --- samplers ------------------------------------------------------------------------
def _as_key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise TypeError(f"key: expected a jax.random key or an int seed, got {type(key).__name__}")


class Sampler(Source):
    """Base class of on-device samplers (pytrees; subclasses define ``_block``).

    ``generate(blocks)`` is traceable: ``int32[nb]`` block ids -> ``x[nb * block, dim]``.
    """

    block: int = DEFAULT_BLOCK

    def _block(self, b):
        raise NotImplementedError

    def _block_labels(self, b):
        return None

    def bind(self, dim: int) -> "Sampler":
        """This sampler with its input dimension fixed (a no-op when already known)."""
        if self.dim is None:
            return dataclasses.replace(self, dim=int(dim))
        if self.dim != dim:
            raise ValueError(f"source: the sampler draws {self.dim}-d inputs but the net takes {dim}")
        return self

    def generate(self, blocks):
        x = jax.vmap(self._block)(blocks)
        return x.reshape(-1, x.shape[-1])

    def generate_labels(self, blocks):
        y = jax.vmap(self._block_labels)(blocks)
        return y.reshape(-1)

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        batch_size = check_batch_size(batch_size, self.block)
        per = batch_size // self.block
        for start in range(0, self.num_inputs, batch_size):
            blocks = np.arange(start // self.block, start // self.block + per, dtype=np.int32)
            yield Chunk(blocks, None, start, min(batch_size, self.num_inputs - start))

    def inputs_at(self, indices) -> np.ndarray:
        if self.dim is None:
            raise ValueError("source: bind the sampler to an input dimension first (sampler.bind(d))")
        idx = check_indices(indices, self.num_inputs)
        blocks, inverse = np.unique(idx // self.block, return_inverse=True)
        x = np.asarray(_generate_jit(self, jnp.asarray(blocks, jnp.int32)))
        x = x.reshape(len(blocks), self.block, -1)
        return x[inverse.reshape(-1), idx % self.block]

    def labels_at(self, indices) -> np.ndarray | None:
        if not self.has_labels:
            return None
        idx = np.asarray(indices, np.int64)
        blocks, inverse = np.unique(idx // self.block, return_inverse=True)
        y = np.asarray(_generate_labels_jit(self, jnp.asarray(blocks, jnp.int32)))
        return y.reshape(len(blocks), self.block)[inverse.reshape(-1), idx % self.block]


@jax.jit
def _generate_jit(sampler, blocks):
    return sampler.generate(blocks)


@jax.jit
def _generate_labels_jit(sampler, blocks):
    return sampler.generate_labels(blocks)


def _register(cls, data_fields, meta_fields):
    cls = dataclasses.dataclass(frozen=True)(cls)
    jax.tree_util.register_dataclass(cls, data_fields=data_fields, meta_fields=meta_fields)
    return cls


class _UniformBox(Sampler):
    key: jax.Array
    lo: jax.Array
    hi: jax.Array
    num_inputs: int
    dim: int | None
    block: int = DEFAULT_BLOCK

    def _block(self, b):
        u = jax.random.uniform(jax.random.fold_in(self.key, b), (self.block, self.dim), self.lo.dtype)
        return self.lo + u * (self.hi - self.lo)


class _Gaussian(Sampler):
    key: jax.Array
    mean: jax.Array
    std: jax.Array
    num_inputs: int
    dim: int | None
    block: int = DEFAULT_BLOCK

    def _block(self, b):
        z = jax.random.normal(jax.random.fold_in(self.key, b), (self.block, self.dim), self.mean.dtype)
        return self.mean + z * self.std


class _Ball(Sampler):
    key: jax.Array
    centers: jax.Array
    radius: jax.Array
    n_per_center: int
    num_inputs: int
    dim: int | None
    block: int = DEFAULT_BLOCK
    has_labels: bool = True

    def _index(self, b):
        i = b * self.block + jnp.arange(self.block)
        return jnp.minimum(i // self.n_per_center, self.centers.shape[0] - 1)

    def _block(self, b):
        kd, kr = jax.random.split(jax.random.fold_in(self.key, b))
        d = self.centers.shape[1]
        g = jax.random.normal(kd, (self.block, d), self.centers.dtype)
        g = g / jnp.linalg.norm(g, axis=1, keepdims=True)
        r = self.radius * jax.random.uniform(kr, (self.block, 1), self.centers.dtype) ** (1.0 / d)
        return self.centers[self._index(b)] + r * g

    def _block_labels(self, b):
        return self._index(b).astype(jnp.int32)


class _PlaneGrid(Sampler):
    origin: jax.Array
    u: jax.Array
    v: jax.Array
    extent: jax.Array  # [[s0, s1], [t0, t1]]
    resolution: tuple
    num_inputs: int
    dim: int | None
    block: int = DEFAULT_BLOCK

    def _block(self, b):
        i = b * self.block + jnp.arange(self.block)
        rs, rt = self.resolution
        i = jnp.minimum(i, rs * rt - 1)
        si, ti = i // rt, i % rt
        frac = lambda k, r: k.astype(self.origin.dtype) / max(r - 1, 1)
        s = self.extent[0, 0] + (self.extent[0, 1] - self.extent[0, 0]) * frac(si, rs)
        t = self.extent[1, 0] + (self.extent[1, 1] - self.extent[1, 0]) * frac(ti, rt)
        return self.origin + s[:, None] * self.u + t[:, None] * self.v


_UniformBox = _register(_UniformBox, ["key", "lo", "hi"], ["num_inputs", "dim", "block"])
_Gaussian = _register(_Gaussian, ["key", "mean", "std"], ["num_inputs", "dim", "block"])
_Ball = _register(_Ball, ["key", "centers", "radius"], ["n_per_center", "num_inputs", "dim", "block", "has_labels"])
_PlaneGrid = _register(_PlaneGrid, ["origin", "u", "v", "extent"], ["resolution", "num_inputs", "dim", "block"])


def uniform_box(lo, hi, n: int, key, *, dim: int | None = None, dtype=jnp.float32, block: int = DEFAULT_BLOCK):
    """``n`` inputs uniform in the box ``[lo, hi]`` (scalars or per-coordinate vectors).

    Args:
      lo, hi: bounds, scalars or ``[d]``; with scalars the dimension comes from ``dim`` or,
        when partitioning, from the net.
      n: number of inputs.
      key: a ``jax.random`` key (or an int seed).

    Returns:
      A :class:`Sampler`.

    Example:
      >>> import jax, partax
      >>> partax.sources.uniform_box([0, 0], [1, 2], 5, jax.random.key(0)).inputs_at(range(5)).shape
      (5, 2)
    """
    n = check_positive_int(n)
    lo, dim = check_finite_vector(lo, "lo", dim, dtype)
    hi, dim = check_finite_vector(hi, "hi", dim, dtype)
    if np.any(np.asarray(hi) < np.asarray(lo)):
        raise ValueError("hi: expected hi >= lo in every coordinate")
    return _UniformBox(_as_key(key), jnp.asarray(lo), jnp.asarray(hi), n, dim, block)


def gaussian(mean, std, n: int, key, *, dim: int | None = None, dtype=jnp.float32, block: int = DEFAULT_BLOCK):
    """``n`` inputs from ``N(mean, diag(std^2))`` (scalars or per-coordinate vectors).

    Example:
      >>> import jax, partax
      >>> partax.sources.gaussian(0.0, 1.0, 5, jax.random.key(0), dim=4).inputs_at([4]).shape
      (1, 4)
    """
    n = check_positive_int(n)
    mean, dim = check_finite_vector(mean, "mean", dim, dtype)
    std, dim = check_finite_vector(std, "std", dim, dtype)
    if np.any(np.asarray(std) < 0):
        raise ValueError("std: expected std >= 0")
    return _Gaussian(_as_key(key), jnp.asarray(mean), jnp.asarray(std), n, dim, block)


def ball(centers, radius: float, n_per_center: int, key, *, dtype=jnp.float32, block: int = DEFAULT_BLOCK):
    """``n_per_center`` inputs uniform in the ball of ``radius`` around each centre.

    The stream is centre-major (all inputs of centre 0 first). The sampler also yields
    labels: the index of each input's centre, so a partition's ``label_counts`` tell how
    many regions each ball meets (``(table.label_counts > 0).sum(0)``) — the "regions in a
    ball" statistic.

    Args:
      centers: ``[K, d]``.
      radius: ball radius > 0.
      n_per_center: inputs per centre.
      key: a ``jax.random`` key (or an int seed).

    Example:
      >>> import jax, partax
      >>> s = partax.sources.ball([[0.0, 0.0], [5.0, 5.0]], 0.5, 3, jax.random.key(0))
      >>> s.num_inputs, s.labels_at(range(6)).tolist()
      (6, [0, 0, 0, 1, 1, 1])
    """
    centers = np.asarray(centers, dtype)
    if centers.ndim != 2 or not np.isfinite(centers).all():
        raise ValueError(f"centers: expected a finite array (K, d), got shape {centers.shape}")
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"radius: expected a positive number, got {radius!r}")
    n_per_center = check_positive_int(n_per_center, "n_per_center")
    n = n_per_center * centers.shape[0]
    return _Ball(_as_key(key), jnp.asarray(centers), jnp.asarray(radius, dtype), n_per_center, n, centers.shape[1], block)


def plane_grid(origin, u, v, extent, resolution, *, dtype=jnp.float32, block: int = DEFAULT_BLOCK):
    """A regular grid on the 2-D plane ``origin + s u + t v``, ``s, t`` over ``extent``.

    Args:
      origin, u, v: ``[d]`` vectors.
      extent: ``((s0, s1), (t0, t1))``.
      resolution: grid points per axis, an int or ``(n_s, n_t)``; inputs are ordered with
        ``t`` fastest.

    Example:
      >>> import partax
      >>> g = partax.sources.plane_grid([0, 0, 0], [1, 0, 0], [0, 1, 0], ((0, 1), (0, 1)), 3)
      >>> g.inputs_at([0, 1, 8]).tolist()
      [[0.0, 0.0, 0.0], [0.0, 0.5, 0.0], [1.0, 1.0, 0.0]]
    """
    origin = np.asarray(origin, dtype)
    if origin.ndim != 1:
        raise ValueError(f"origin: expected a vector [d], got shape {origin.shape}")
    d = origin.shape[0]
    u, _ = check_finite_vector(u, "u", d, dtype)
    v, _ = check_finite_vector(v, "v", d, dtype)
    if u.ndim == 0 or v.ndim == 0:
        raise ValueError("u, v: expected vectors of the origin's length")
    extent = np.asarray(extent, dtype)
    if extent.shape != (2, 2):
        raise ValueError(f"extent: expected ((s0, s1), (t0, t1)), got shape {extent.shape}")
    res = (resolution, resolution) if np.isscalar(resolution) else tuple(resolution)
    if len(res) != 2 or min(res) < 1:
        raise ValueError(f"resolution: expected a positive int or a pair, got {resolution!r}")
    res = (int(res[0]), int(res[1]))
    return _PlaneGrid(
        jnp.asarray(origin), jnp.asarray(u), jnp.asarray(v), jnp.asarray(extent), res, res[0] * res[1], d, block
    )


def as_source(source, labels=None, *, dim: int | None = None, input_shape=None) -> Source:
    """Turns an array, an iterable of batches or a sampler into a :class:`Source`.

    Args:
      source: ``x[N, d]`` (NumPy/JAX), a :class:`Source`, or an iterable of batches (each
        ``x`` or ``(x, y)``).
      labels: optional ``int[N]`` labels for an array source.
      dim: the input dimension the caller needs (a net's): a sampler is bound to it
        (:meth:`Sampler.bind`) and any other source must have it.
      input_shape: the per-example shape of a net's inputs (``net.input_shape``): arrays and
        batches of shape ``[N, *input_shape]`` are flattened row-major to ``[N, prod(input_shape)]``
        (the net's flat input space), lazily for an iterable.

    Returns:
      A :class:`Source`.

    Example:
      >>> import numpy as np
      >>> from partax.sources import as_source
      >>> src = as_source(np.zeros((5, 3)), [0, 1, 0, 1, 1])
      >>> src.num_inputs, src.dim, src.has_labels
      (5, 3, True)
      >>> images = (np.zeros((4, 2, 2, 1)) for _ in range(3))  # batches of a conv net's inputs
      >>> as_source(images, input_shape=(2, 2, 1)).dim
      4
    """
    if input_shape is not None and len(input_shape) > 1 and not isinstance(source, Source):
        shape = tuple(int(v) for v in input_shape)
        if isinstance(source, (list, tuple)) and source:
            try:
                arr = np.asarray(source)
            except ValueError:  # ragged: a list of batches
                arr = None
            if arr is not None and arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == shape:
                source = arr  # a nested list of inputs
            elif arr is None or arr.ndim != 2:
                source = list(_flat_batches(source, shape))  # a list of batches
        if hasattr(source, "shape") and hasattr(source, "dtype"):
            source = _flat_array(source, shape, "source")
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes, list, tuple)):
            source = _flat_batches(source, shape)
    src = _as_source(source, labels)
    if dim is not None:
        if isinstance(src, Sampler):
            src = src.bind(dim)
        if src.dim != dim:
            raise ValueError(f"source: expected inputs of dimension {dim} (the net's), got {src.dim}")
    return src


def _flat_array(x, shape: tuple, name: str):
    """``x[N, *shape]`` as ``[N, prod(shape)]`` (row-major); other shapes pass unchanged."""
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x.reshape(x.shape[0], -1)
    if x.ndim > 2:
        raise ValueError(f"{name}: expected inputs (N, {', '.join(map(str, shape))}) or (N, {math.prod(shape)}) "
                         f"(flattened row-major), got shape {tuple(x.shape)}")
    return x


def _flat_batches(batches, shape: tuple):
    for i, batch in enumerate(batches):
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            yield _flat_array(np.asarray(batch[0]), shape, f"source (batch {i})"), batch[1]
        else:
            yield _flat_array(np.asarray(batch), shape, f"source (batch {i})")


def _as_source(source, labels) -> Source:
    if isinstance(source, Source):
        if labels is not None:
            raise ValueError("labels: pass labels with an array source; this source brings its own")
        return source
    if hasattr(source, "shape") and hasattr(source, "dtype"):
        if source.ndim == 2 and source.shape[0] == 0:
            raise ValueError("source: the array holds no inputs (N = 0)")
        return ArraySource(source, labels)
    if isinstance(source, (list, tuple)) and source:
        try:
            arr = np.asarray(source)
        except ValueError:  # ragged: a list of batches
            arr = None
        if arr is not None and arr.ndim == 2 and (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            return ArraySource(arr, labels)
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        if labels is not None:
            raise ValueError("labels: an iterable source brings its labels as (x, y) batches")
        return BatchSource(source)
    raise TypeError(
        f"source: expected an array (N, d), an iterable of batches or a partax sampler, got {type(source).__name__}"
    )
