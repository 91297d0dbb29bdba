"""Exact enumeration of the regions of a ReLU net on a segment: :func:`line_regions` (1D).

In NumPy float64, layer by layer: on each current interval of the segment the
pre-activations of the next layer are affine in the segment's parameter ``t`` (the segment is
an affine family with ``k = 1`` of :mod:`partax.geometry.linearize`, pushed through the layers
with each piece's code frozen), so their zero crossings split the intervals exactly. Codes
and keys follow the convention of :mod:`partax.geometry.slices`.

Example:
    >>> import jax, partax
    >>> from partax.geometry.lines import line_regions
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
    >>> lr = line_regions(net, [-2., -2.], [2., 2.])
    >>> len(lr.keys) == len(lr.breakpoints) + 1
    True
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from partax.coding import keys_from_bits
from partax.records import record_repr
from partax.validation import check_net, check_scope_layer, check_vector
from partax.geometry.linearize import AffineFamily, apply_layer, float64_arrays, freeze

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

    Layer by layer, in float64: on each current interval every pre-activation of the layer is
    affine in ``t`` (the segment pushed through the frozen layers as a ``k = 1`` family of
    :mod:`partax.geometry.linearize`); its zero crossing (if strictly inside the interval)
    splits it. At the end only the breakpoints where the scope's code changes are kept.

    Args:
      net: an unstacked :class:`partax.Net`.
      a: start point ``[d_in]``.
      b: end point ``[d_in]`` (``!= a``).
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"`` (see ``partax.region_ids``).
      layer: 1-based hidden layer (default: the last).
      tol: crossings within ``tol`` (in ``t``) of an existing breakpoint or of each other are
        merged.

    Returns:
      A :class:`LineRegions`.

    Example:
      >>> import jax, partax
      >>> net = partax.mlp(jax.random.key(1), [1, 4, 1], bias_std=1.0)
      >>> lr = line_regions(net, [-100.0], [100.0])
      >>> lr.num_pieces <= 5
      True
    """
    check_net(net, stacked=False, caller="geometry")
    params = float64_arrays(net)
    layer, first, last = check_scope_layer(scope, layer, net.num_hidden)
    d = net.input_dim
    a = check_vector(a, "a", d)
    b = check_vector(b, "b", d)
    if np.array_equal(a, b):
        raise ValueError("b: expected an end point different from a")
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
