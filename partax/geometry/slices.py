"""Exact enumeration of the regions of a ReLU net on a segment (1D) and on a plane (2D).

Both work in NumPy float64 by walking the network layer by layer: on each current piece
(an interval of a segment, a convex polygon of a plane) the pre-activations of the next
layer are affine in the piece's coordinates (the segment or plane is an affine family of
:mod:`partax.geometry.linearize`, pushed through the layers with each piece's code frozen),
so their zero sets (points, lines) split the piece exactly. Polygons are clipped for all
cells at once (batched Sutherland–Hodgman on a padded vertex array,
:mod:`partax.geometry.clipping`), one unit at a time, and only the cells whose layer-start
ancestor is actually crossed by the unit are touched.

General nets (:func:`partax.nets.sequential`: convolutions, pooling, residual blocks, hard-tanh
and max-pool sites) are sliced over their code sites in execution order
(:func:`partax.geometry.clipping.clip_sites`): a ReLU unit splits a cell by ``z = 0``, a
hard-tanh unit by ``z = lo`` and ``z = hi``, a max-pool window of ``k`` slots into at most ``k``
convex pieces (one per winning slot, ties to the lowest). Their regions are those of the
``"prefix"`` scope (the other scopes are refused, as in :mod:`partax.geometry.local`), the plane
lives in the flattened input space, and its points may be given in the input shape.

This module holds the plane's result (:class:`SliceRegions`, :func:`slice_regions`);
:class:`Plane` lives in :mod:`partax.geometry.plane`, :func:`line_regions` in
:mod:`partax.geometry.lines` and the figure :func:`partax.plots.plot_slice` in :mod:`partax.plots`
(all importable from here).

Code convention (the one of :mod:`partax.coding`): a piece's code is decided in float64,
bit = pre-activation ``> 0`` (a piece on which a unit is zero up to the snapping tolerance
gets the inactive bit), with the masks of the earlier layers frozen from the piece's own code,
and its key is :func:`partax.coding.keys_from_bits` of that code, the same key function and bit
layout as :func:`partax.region_ids`. So a key names the same region as the partition tables
(float32 codes, ``precision=HIGHEST``) at every input of the piece that is not near a boundary
in the sense of ``partax.partition``'s ``near_boundary``, and pieces join partition tables by key.

Example:
    >>> import jax, partax
    >>> from partax.geometry.slices import Plane, slice_regions, line_regions
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
    >>> res = slice_regions(net, Plane([0., 0.], [1., 0.], [0., 1.], ((-2, 2), (-2, 2))))
    >>> bool(abs(res.areas.sum() - 16.0) < 1e-9)
    True
    >>> lr = line_regions(net, [-2., -2.], [2., 2.])
    >>> len(lr.keys) == len(lr.breakpoints) + 1
    True
"""


from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from partax.coding import keys_from_bits
from partax.validation import check_net, check_scope_layer
from partax.geometry.clipping import area_centroid, clip_plane, clip_sites, next_maps
from partax.geometry.lines import LineRegions, line_regions
from partax.geometry.local import check_general_scope
from partax.geometry.linearize import AffineFamily, float64_arrays, push
from partax.geometry.plane import Plane
from partax.plots import plot_slice  # re-export: the figure lives in partax.plots (matplotlib imported lazily)
from partax.records import record_repr

__all__ = [
    "Plane",
    "SliceRegions",
    "LineRegions",
    "slice_regions",
    "line_regions",
    "plot_slice",
]


class SliceRegions(NamedTuple):
    """The exact partition of a plane's extent rectangle.

    The enumeration is made of convex *cells* (the ``prefix`` regions at the clipping depth);
    for ``scope="prefix"`` each cell is one region. For ``"layer"`` and ``"suffix"`` the
    regions are unions of cells with equal keys — possibly non-convex or disconnected in the
    slice — and the result lists the cells with their keys; ``region_index`` maps each cell to
    its region (``unique_keys``) and ``region_areas`` sums them.

    Attributes:
      keys: ``uint64[R]``, :func:`partax.coding.keys_from_bits` of the cell's float64 code
        (layers ``first..last`` of the scope): what ``partax.region_ids(net, x, scope)[:,
        layer-1]`` (the net's dtype, usually float32) gives at every point ``x`` of the cell
        that is not near a boundary (``partax.partition``'s ``near_boundary`` tolerance).
      polygons: ``float64[R, V, 2]`` counter-clockwise vertices in ``(s, t)``, padded by
        repeating vertex 0.
      counts: ``int64[R]`` number of vertices of each cell.
      areas: ``float64[R]`` cell areas in ``(s, t)`` units.
      points: ``float64[R, 2]`` interior point (centroid) of each cell in ``(s, t)``.
      bits: tuple, one ``bool[R, n_l]`` per hidden layer ``1..depth`` (float64 codes; for a
        general net per code group, ``n_l = net.widths[l - 1]`` bits).
      maps: ``float64[R, 3, n_layer]`` or ``None`` (unless ``with_maps``): pre-activations of
        ``layer`` on each cell, ``z = s * maps[:, 0] + t * maps[:, 1] + maps[:, 2]`` (for a
        general net the flattened input of code site ``layer``).
      logits: ``float64[R, 3, d_out]``, the affine logits on each cell (same layout), or
        ``None`` when the cells are not full linear regions (``depth < L``).
      region_index: ``int64[R]`` index into ``unique_keys``.
      unique_keys: ``uint64[M]`` sorted keys of the regions met.
      region_areas: ``float64[M]``.
      scope, layer, depth: the scope, its 1-based layer, and how many layers were clipped.
      extent: the plane's extent.
    """

    keys: np.ndarray
    polygons: np.ndarray
    counts: np.ndarray
    areas: np.ndarray
    points: np.ndarray
    bits: tuple
    maps: np.ndarray
    logits: Optional[np.ndarray]
    region_index: np.ndarray
    unique_keys: np.ndarray
    region_areas: np.ndarray
    scope: str
    layer: int
    depth: int
    extent: tuple

    @property
    def num_cells(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_regions(self) -> int:
        return int(self.unique_keys.shape[0])

    def __repr__(self) -> str:
        return record_repr("SliceRegions", cells=self.num_cells, regions=self.num_regions, scope=self.scope,
                           layer=self.layer, depth=self.depth, extent=tuple(tuple(float(v) for v in e) for e in self.extent),
                           area=float(self.areas.sum()), max_vertices=int(self.counts.max(initial=0)))


def slice_regions(
    net,
    plane: Plane,
    *,
    scope: str = "prefix",
    layer: Optional[int] = None,
    rtol: float = 1e-11,
    area_tol: float = 1e-13,
    with_maps: bool = False,
) -> SliceRegions:
    """The exact partition of a 2D slice of the input space.

    Starting from the extent rectangle, for each hidden layer the pre-activations are affine
    in ``(s, t)`` on each current cell (carried as ``[R, 3, n]`` maps), and every cell crossed
    by a unit's zero line is split in two (batched over all cells, one unit at a time). On a
    general net the layers are its code sites (see the module docstring).

    Args:
      net: an unstacked :class:`partax.Net` (an MLP or a general net).
      plane: a :class:`Plane` in the net's (flattened) input space; for a general net its
        points are flat or in ``net.input_shape`` (``plane.shape``).
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"`` (general nets: ``"prefix"`` only).
      layer: 1-based hidden layer / code group (default: the last). ``prefix``/``layer`` clip
        layers ``1..layer``; ``suffix`` clips all layers.
      rtol: relative tolerance under which a vertex counts as lying on a line (relative to the
        size of the terms summed): a unit, or a max-pool gap, within it of its threshold over a
        whole cell is taken as on it (an exact tie: the inactive bit, the lowest slot), so a
        gap of ~1e-11 of its terms' size reads as a tie here though float64 codes may not.
      area_tol: splits leaving a part of area below ``area_tol * plane.area`` are not made (a
        max-pool window splitting a cell into several pieces above it drops the pieces below
        it: at most ``(k - 2) * area_tol * plane.area`` of area per split).
      with_maps: also return ``maps``, the affine pre-activations of ``layer`` on each cell
        (``R * 3 * n_layer`` floats: large for wide nets); on a general net the input of code
        site ``layer`` (flattened, as ``local_maps(net, x).pre[layer - 1]``).

    Returns:
      A :class:`SliceRegions`.

    Example:
      >>> import jax, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 5, 1], bias_std=0.3)
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-50, 50), (-50, 50)))
      >>> slice_regions(net, p).num_regions <= 16  # zaslavsky(5, 2)
      True
      >>> import numpy as np
      >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
      >>> cnn = partax.nets.sequential([Conv(np.ones((2, 2, 1, 1), np.float32), np.zeros(1, np.float32)), ReLU(),
      ...                               MaxPool((2, 2)), Flatten(), Dense(np.ones((1, 1), np.float32),
      ...                               np.zeros(1, np.float32))], (3, 3, 1))
      >>> x = np.random.default_rng(0).normal(size=(3, 3, 3, 1))  # three inputs in the net's input shape
      >>> res = slice_regions(cnn, Plane.through(*x))
      >>> res.num_cells == res.num_regions, [b.shape[1] for b in res.bits]  # prefix cells: one per region
      (True, [4, 2])
    """
    check_net(net, stacked=False, caller="geometry")
    layer, first, last = check_scope_layer(scope, layer, net.num_hidden)
    if not isinstance(plane, Plane):
        raise TypeError(f"plane: expected a Plane, got {type(plane).__name__}")
    if plane.dim != net.input_dim:
        raise ValueError(f"plane: expected a plane in R^{net.input_dim} (net.input_dim), got R^{plane.dim}")
    if not net.is_mlp:
        return _general_slice(net, plane, scope, layer, first, last, rtol, area_tol, with_maps)
    params = float64_arrays(net)
    depth = last
    P, cnt, bits, M, anc = clip_plane(params, plane, depth, rtol, area_tol)
    areas, cen = area_centroid(P)
    maps = None
    if with_maps:
        if layer == depth:
            Z = M.take(anc)
        else:  # the plane pushed through layers 1..layer with each cell's code frozen
            x = AffineFamily(plane.origin, np.stack([plane.u, plane.v]))
            Z = push(params, x, bits[:layer])[-1]  # unbatched for layer 1: broadcast below
        R, n = len(P), Z.offset.shape[-1]
        maps = np.concatenate([np.broadcast_to(Z.directions, (R, 2, n)), np.broadcast_to(Z.offset, (R, n))[:, None]],
                              axis=1)
    logits = None
    if depth == net.num_hidden:
        logits = next_maps(M, anc, bits[-1], params.alpha, params.layers[-1])
    return _result(P, cnt, areas, cen, bits, maps, logits, scope, layer, first, last, depth, plane)


def _result(P, cnt, areas, cen, bits, maps, logits, scope, layer, first, last, depth, plane) -> SliceRegions:
    """Keys, regions and their areas of the cells; the :class:`SliceRegions`."""
    keys = keys_from_bits(bits, first, last, start=1)  # bits: layers 1..depth
    unique_keys, region_index = np.unique(keys, return_inverse=True)
    region_areas = np.bincount(region_index, weights=areas, minlength=len(unique_keys))
    return SliceRegions(
        keys=keys,
        polygons=P,
        counts=cnt.astype(np.int64),
        areas=areas,
        points=cen,
        bits=tuple(bits),
        maps=maps,
        logits=logits,
        region_index=region_index.astype(np.int64).ravel(),
        unique_keys=unique_keys,
        region_areas=region_areas,
        scope=scope,
        layer=layer,
        depth=depth,
        extent=plane.extent,
    )


def _general_slice(net, plane, scope, layer, first, last, rtol, area_tol, with_maps) -> SliceRegions:
    """:func:`slice_regions` on a general net (code sites walked in order, ``"prefix"`` scope)."""
    check_general_scope(net, scope)
    if plane.shape != (plane.dim,) and plane.shape != tuple(net.input_shape):
        raise ValueError(f"plane: its points have shape {plane.shape} but the net's inputs have shape "
                         f"{tuple(net.input_shape)} (give the points flat or in the input shape)")
    depth = last
    cells = clip_sites(net, plane, depth, rtol, area_tol)
    P, cnt = cells.polygons, cells.counts
    areas, cen = area_centroid(P)
    maps = None
    if with_maps:
        Z = cells.pre.take(cells.anc)
        maps = np.concatenate([Z.directions, Z.offset[:, None]], axis=1)
    return _result(P, cnt, areas, cen, cells.bits, maps, cells.logits, scope, layer, first, last, depth, plane)
