"""Exact enumeration of the regions of a piecewise-linear net on a segment: :func:`line_regions` (1D).

In float64, code site by code site: on each current interval of the segment the input of the
next site is affine in the segment's parameter ``t`` (the segment is an affine family with
``k = 1`` of :mod:`partax.geometry.linearize`, pushed through the layers with each piece's code
frozen), so the points where the site's code can change split the intervals exactly. Codes
and keys follow the convention of :mod:`partax.geometry.slices`.

* **MLPs** (NumPy, layer by layer): the zero crossing of every pre-activation.
* **General nets** (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
  blocks; ``"prefix"`` scope, as the rest of their geometry, see :mod:`partax.geometry.local`):
  one :func:`partax.layers.traverse` of the float64 layers
  (:func:`~partax.geometry.linearize.float64_layers`, under ``jax.enable_x64``) carries the
  pieces, ``(offset[P, *shape], direction[P, *shape])`` of the current tensor on each piece.
  At a code site the candidate breakpoints inside each piece are ReLU / leaky-ReLU ``z = 0``,
  hard-tanh ``z = lo`` and ``z = hi``, and every pairwise crossing ``z_i = z_j`` of two slots of
  one max-pool window (padded slots never win). Each sub-piece gets the site's own code at its
  midpoint (the layer's own ``code`` rule, in float64: max-pool ties to the lowest slot), adjacent
  sub-pieces of one piece with equal codes merge (a convex region meets a line in one
  interval), and the site is frozen on each piece. A residual block's shortcut is re-indexed
  onto the finer pieces of its body before the sum.

Example:
    >>> import jax, partax
    >>> from partax.geometry.lines import line_regions
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
    >>> lr = line_regions(net, [-2., -2.], [2., 2.])
    >>> len(lr.keys) == len(lr.breakpoints) + 1
    True
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import numpy as np

from partax.coding import keys_from_bits
from partax.layers import HardTanh, LeakyReLU, MaxPool, traverse, window_indices
from partax.records import record_repr
from partax.validation import check_net, check_scope_layer, check_vector
from partax.geometry.linearize import AffineFamily, apply_layer, float64_arrays, float64_layers, freeze
from partax.geometry.local import check_general_scope

__all__ = ["LineRegions", "line_regions"]


class LineRegions(NamedTuple):
    """The exact partition of a segment ``x(t) = a + t (b - a)``, ``t in [0, 1]``.

    Attributes:
      breakpoints: ``float64[P-1]``, sorted, in ``(0, 1)``: where the scope's key changes.
      keys: ``uint64[P]``, the key of each piece: :func:`partax.coding.keys_from_bits` of the
        piece's float64 code (layers ``first..last``), i.e. what ``partax.region_ids(net, x,
        scope)[:, layer-1]`` gives at every point ``x`` of the piece that is not near a
        boundary (``partax.partition``'s ``near_boundary`` tolerance).
      midpoints: ``float64[P]``, the parameter ``t`` of each piece's midpoint.
      bits: tuple over the scope's layers ``first..last`` of ``bool[P, n_l]`` (float64 codes).
      scope: the scope name.
      layer: the 1-based layer.
    """

    breakpoints: np.ndarray
    keys: np.ndarray
    midpoints: np.ndarray
    bits: tuple
    scope: str
    layer: int

    @property
    def num_pieces(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return record_repr("LineRegions", pieces=self.num_pieces, regions=int(np.unique(self.keys).shape[0]),
                           scope=self.scope, layer=self.layer)


def line_regions(net, a, b, *, scope: str = "prefix", layer: Optional[int] = None, tol: float = 1e-12) -> LineRegions:
    """Exact breakpoints of the (scope, layer) partition along the segment from ``a`` to ``b``.

    Layer by layer (code site by code site on a general net), in float64: on each current
    interval every pre-activation of the layer is affine in ``t`` (the segment pushed through
    the frozen layers as a ``k = 1`` family of :mod:`partax.geometry.linearize`); its zero
    crossing (a hard-tanh unit's two thresholds, the crossings of two slots of a max-pool
    window), if strictly inside the interval, splits it. At the end only the breakpoints
    where the scope's code changes are kept.

    Args:
      net: an unstacked :class:`partax.Net` (an MLP or a general net).
      a: start point ``[d_in]`` (a general net also takes its ``input_shape``; flattened
        row-major).
      b: end point, as ``a`` (``!= a``).
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"`` (see ``partax.region_ids``); general
        nets take ``"prefix"`` only (see :mod:`partax.geometry.local`).
      layer: 1-based hidden layer (default: the last).
      tol: crossings within ``tol`` (in ``t``) of an existing breakpoint or of each other are
        merged.

    Returns:
      A :class:`LineRegions`.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(1), [1, 4, 1], bias_std=1.0)
      >>> lr = line_regions(net, [-100.0], [100.0])
      >>> lr.num_pieces <= 5
      True
      >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
      >>> conv = partax.nets.sequential([Conv(np.ones((2, 1, 2), np.float32), np.array([0.0, -1.0], np.float32)),
      ...                                ReLU(), MaxPool((2,)), Flatten(), Dense(np.ones((4, 1), np.float32),
      ...                                np.zeros(1, np.float32))], (5, 1))
      >>> lr = line_regions(conv, -np.ones((5, 1)), np.ones((5, 1)))   # x(t) = (2t - 1) (1, ..., 1)
      >>> lr.breakpoints.tolist()                                      # z = 2 x + (0, -1) = 0: t = 1/2, 3/4
      [0.5, 0.75]
    """
    check_net(net, stacked=False, caller="geometry")
    layer, first, last = check_scope_layer(scope, layer, net.num_hidden)
    if net.is_mlp:
        d = net.input_dim
        a = check_vector(a, "a", d)
        b = check_vector(b, "b", d)
        if np.array_equal(a, b):
            raise ValueError("b: expected an end point different from a")
        return _mlp_line(net, a, b, scope, layer, first, last, tol)
    a = _general_point(net, a, "a")
    b = _general_point(net, b, "b")
    if np.array_equal(a, b):
        raise ValueError("b: expected an end point different from a")
    check_general_scope(net, scope)
    return _general_line(net, a, b, layer, tol)


def _mlp_line(net, a, b, scope, layer, first, last, tol) -> LineRegions:
    """:func:`line_regions` of an MLP: NumPy, layer by layer."""
    params = float64_arrays(net)
    # breakpoints (interior), and per piece the affine family t -> h^{l-1}(a + t (b - a))
    bps = np.zeros((0,), np.float64)
    H = AffineFamily(a[None], (b - a)[None, None])  # offset [1, d], directions [1, 1, d]
    bits_all = []
    for l in range(1, last + 1):
        Z = apply_layer(H, params.layers[l - 1])  # the pre-activations of layer l on each piece
        edges = np.concatenate([[0.0], bps, [1.0]])
        lo, hi = edges[:-1, None], edges[1:, None]
        slope, const = Z.directions[:, 0, :], Z.offset
        with np.errstate(divide="ignore", invalid="ignore"):
            tz = -const / slope
        inside = (slope != 0) & (tz > lo + tol) & (tz < hi - tol)
        new = np.sort(np.concatenate([bps, tz[inside]]))
        if new.size:
            keep = np.concatenate([[True], np.diff(new) > tol])
            new = new[keep]
        # new pieces: parent = the old piece holding the midpoint
        edges_new = np.concatenate([[0.0], new, [1.0]])
        mids = 0.5 * (edges_new[:-1] + edges_new[1:])
        parent = np.searchsorted(bps, mids)
        Zp = Z.take(parent)
        zmid = Zp.directions[:, 0, :] * mids[:, None] + Zp.offset
        bit = zmid > 0
        # earlier layers' bits for the new pieces
        bits_all = [bb[parent] for bb in bits_all] + [bit]
        H = freeze(Zp, bit, params.alpha)
        bps = new
    edges = np.concatenate([[0.0], bps, [1.0]])
    mids = 0.5 * (edges[:-1] + edges[1:])
    scope_bits = bits_all[first - 1 : last]
    code = np.concatenate(scope_bits, axis=1) if scope_bits else np.zeros((len(mids), 0), bool)
    change = np.any(code[1:] != code[:-1], axis=1)
    keep_piece = np.concatenate([[True], change])  # first piece of each run
    breakpoints = bps[change]
    # merged pieces: midpoint of the merged interval
    run_edges = np.concatenate([[0.0], breakpoints, [1.0]])
    run_mids = 0.5 * (run_edges[:-1] + run_edges[1:])
    # bits of a merged run: those of its first piece (equal over the run for the scope)
    run_bits = tuple(bb[keep_piece] for bb in scope_bits)
    keys = keys_from_bits([bb[keep_piece] for bb in bits_all], first, last, start=1)
    return LineRegions(breakpoints, keys, run_mids, run_bits, scope, layer)


# --- general nets ------------------------------------------------------------------------------
def _general_point(net, v, name: str) -> np.ndarray:
    """A point of a general net's input space, flat ``float64[input_dim]`` (row-major)."""
    shape = tuple(net.input_shape)
    arr = np.asarray(v, np.float64)
    if arr.shape == shape:
        arr = arr.reshape(-1)
    elif arr.shape != (net.input_dim,):
        raise ValueError(f"{name}: expected a point of shape ({net.input_dim},) or the net's input shape {shape}, "
                         f"got shape {arr.shape}")
    return check_vector(arr, name, net.input_dim)


@jax.jit
def _push_affine(layers, off, dirs):
    """Consecutive affine layers applied to the pieces' offsets and directions."""
    for layer in layers:
        off, dirs = layer.apply(off), layer.linear(dirs)
    return off, dirs


@jax.jit
def _code_and_freeze(layer, off, dirs, t):
    """A site on pieces ``off + t dirs``: its code at ``t`` (per piece), and the site frozen to
    that code on each piece (offsets and directions of its output)."""
    tt = t.reshape((-1,) + (1,) * (off.ndim - 1))
    bits = layer.code(off + tt * dirs)
    return bits, layer.frozen(off, bits), layer.frozen_linear(dirs, bits)


_MIN_PIECES = 64  # the smallest padded number of pieces (most segments: one compilation per site)


def _bucketed(fn, first, *arrays):
    """``fn(first, *arrays)`` on arrays padded along the pieces axis to a power of two, at least
    ``_MIN_PIECES`` (so that segments with different numbers of pieces share compilations), cut
    back to ``P`` (as NumPy arrays)."""
    P = arrays[0].shape[0]
    cap = max(_MIN_PIECES, 1 << max(0, (P - 1).bit_length()))
    if cap != P:
        arrays = [np.concatenate([x, np.repeat(x[-1:], cap - P, axis=0)]) for x in arrays]
    return tuple(np.asarray(o)[:P] for o in fn(first, *arrays))


@functools.lru_cache(maxsize=64)
def _window_pairs(shape, window, strides, padding) -> np.ndarray:
    """``int64[m, 2]``: the distinct pairs of input units that share a max-pool window (padded
    slots left out: they never hold a window's maximum)."""
    idx = window_indices(shape, window, strides, padding)
    k = idx.shape[1]
    pairs = [np.stack([idx[:, i], idx[:, j]], axis=1) for i in range(k) for j in range(i + 1, k)]
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    pairs = pairs[(pairs >= 0).all(axis=1)]
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _crossings(layer, shape, c, s):
    """Candidate breakpoints ``t = num / den`` (``[P, m]`` each) of a site whose input is
    ``c + t s`` (``c, s: [P, n]``) on each piece."""
    if isinstance(layer, HardTanh):
        return np.concatenate([layer.lo - c, layer.hi - c], axis=1), np.concatenate([s, s], axis=1)
    if isinstance(layer, MaxPool):
        pairs = _window_pairs(tuple(shape), layer.window, layer.strides, layer.padding)
        i, j = pairs[:, 0], pairs[:, 1]
        return c[:, j] - c[:, i], s[:, i] - s[:, j]
    if isinstance(layer, LeakyReLU):  # ReLU included
        return -c, s
    raise TypeError(f"line_regions: no breakpoint rule for the code site {layer!r}")


class _Pieces(NamedTuple):
    """The current tensor on each piece: ``off + t dirs`` (``[P, *shape]`` each) followed by
    the affine layers ``pending`` (applied at the next site, in one call); ``edges`` the
    pieces' interior boundaries (``float64[P-1]``, sorted)."""

    edges: np.ndarray
    off: np.ndarray
    dirs: np.ndarray
    pending: tuple = ()

    def applied(self) -> "_Pieces":
        """The same pieces with the pending layers applied."""
        if not self.pending:
            return self
        off, dirs = _bucketed(_push_affine, self.pending, self.off, self.dirs)
        return _Pieces(self.edges, off, dirs)


def _pieces_of(edges, t) -> np.ndarray:
    """The piece (between ``edges``) that holds each parameter ``t`` (strictly inside one)."""
    return np.searchsorted(edges, t)


def _split_site(layer, state: _Pieces, tol: float):
    """A site on the pieces (``state`` with nothing pending): split at its candidate
    breakpoints, code at each sub-piece's midpoint, adjacent sub-pieces of one piece with equal
    codes merged. Returns ``(edges, bits, pieces)``: the merged pieces' boundaries, the site's
    code on each, and the site's output on them."""
    edges, off, dirs, _ = state
    P = off.shape[0]
    shape = off.shape[1:]
    c, s = off.reshape(P, -1), dirs.reshape(P, -1)
    num, den = _crossings(layer, shape, c, s)
    bounds = np.concatenate([[0.0], edges, [1.0]])
    lo, hi = bounds[:-1, None], bounds[1:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / den
    inside = (den != 0) & (t > lo + tol) & (t < hi - tol)
    new = np.sort(np.concatenate([edges, t[inside]]))
    if new.size:
        new = new[np.concatenate([[True], np.diff(new) > tol])]
    sub = np.concatenate([[0.0], new, [1.0]])
    mids = 0.5 * (sub[:-1] + sub[1:])
    parent = _pieces_of(edges, mids)
    bits, o, v = _bucketed(_code_and_freeze, layer, off[parent], dirs[parent], mids)
    bits = bits.astype(bool)
    # a boundary stays where the piece (the earlier codes) or this site's code changes
    keep = (parent[1:] != parent[:-1]) | np.any(bits[1:] != bits[:-1], axis=1)
    first = np.concatenate([[True], keep])
    return new[keep], bits[first], _Pieces(new[keep], o[first], v[first])


def _general_line(net, a, b, layer: int, tol: float) -> LineRegions:
    """:func:`line_regions` of a general net, prefix scope (see the module docstring)."""
    shape = tuple(net.input_shape)
    records = []  # per site: (edges, bits) of the pieces after it

    def affine(lyr, state):
        if len(records) >= layer:
            return state  # past the scope's last site: nothing more to split
        return state._replace(pending=state.pending + (lyr,))

    def site(lyr, state):
        if len(records) >= layer:
            return state
        edges, bits, out = _split_site(lyr, state.applied(), tol)
        records.append((edges, bits))
        return out

    def add(short, body):
        if len(records) >= layer:
            return body
        short, body = short.applied(), body.applied()
        # the body refined the shortcut's pieces: re-index the shortcut onto them
        edges = body.edges
        mids = 0.5 * (np.concatenate([[0.0], edges]) + np.concatenate([edges, [1.0]]))
        parent = _pieces_of(short.edges, mids)
        return _Pieces(edges, short.off[parent] + body.off, short.dirs[parent] + body.dirs)

    start = _Pieces(np.zeros(0), a.reshape(1, *shape), (b - a).reshape(1, *shape))
    with jax.enable_x64(True):
        traverse(float64_layers(net), start, affine=affine, site=site, add=add)
    edges = records[-1][0]  # every site refines the pieces of the sites before it
    bounds = np.concatenate([[0.0], edges, [1.0]])
    mids = 0.5 * (bounds[:-1] + bounds[1:])
    bits = tuple(bb[_pieces_of(e, mids)] for e, bb in records)
    keys = keys_from_bits(bits, 1, layer, start=1)
    return LineRegions(edges, keys, mids, bits, "prefix", layer)
