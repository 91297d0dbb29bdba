"""Exact polytope data of the regions of a ReLU net: ``partax.geometry``.

Everything is batched over regions, each named by an exemplar input that lies in it,
and runs in float64 under a local x64 context.

* :class:`Box` — domains (``None`` is all of R^d).
* :func:`local_maps` — the affine maps of the regions (codes frozen).
* :func:`halfspaces` / :func:`halfspaces_batch` — H-representations.
* :func:`margins`, :func:`chebyshev`, :func:`facets`, :func:`neighbors`, :func:`volumes`.
* :func:`region_report` / :class:`RegionReport` — a columnar report over a partition.
* :mod:`partax.geometry.lp` — batched LPs: ``"highs"``, the JAX interior point ``"ipm"`` and
  the NumPy interior point ``"numpy"`` (CPU, no compilation).
* :func:`line_regions`, :class:`Plane`, :func:`slice_regions` — exact 1D / 2D enumeration.
* :func:`enumerate_regions` — every region of a small box, by traversing the adjacency graph.

Internal modules, one concept each: :mod:`~partax.geometry.linearize` (the one frozen-code
linearisation: affine families pushed through the layers, float64 parameters),
:mod:`~partax.geometry.hrep` (rows of a code; the one row normalisation and dead-row rule),
:mod:`~partax.geometry.ipm` (the interior
points), :mod:`~partax.geometry.region_lps` (per-region LPs from rows),
:mod:`~partax.geometry.lines`, :mod:`~partax.geometry.plane`, :mod:`~partax.geometry.clipping`
(slices), and for the enumeration :mod:`~partax.geometry.code_regions`,
:mod:`~partax.geometry.polar`, :mod:`~partax.geometry.crossing`,
:mod:`~partax.geometry.unbounded`.
"""

from partax.geometry import lp
from partax.geometry.domains import Box
from partax.geometry.enumerate import Enumeration
from partax.geometry.enumerate import enumerate_regions
from partax.geometry.local import LayerMap
from partax.geometry.local import LocalMaps
from partax.geometry.local import OutputMap
from partax.geometry.local import halfspaces
from partax.geometry.local import halfspaces_batch
from partax.geometry.local import local_maps
from partax.geometry.polytope import chebyshev
from partax.geometry.polytope import facets
from partax.geometry.polytope import margins
from partax.geometry.polytope import neighbors
from partax.geometry.polytope import region_keys
from partax.geometry.polytope import volumes
from partax.geometry.report import RegionReport
from partax.geometry.report import region_report
from partax.geometry.slices import LineRegions
from partax.geometry.slices import Plane
from partax.geometry.slices import SliceRegions
from partax.geometry.slices import line_regions
from partax.geometry.slices import slice_regions

__all__ = [
    "Box",
    "Enumeration",
    "LineRegions",
    "Plane",
    "SliceRegions",
    "RegionReport",
    "LayerMap",
    "LocalMaps",
    "OutputMap",
    "chebyshev",
    "enumerate_regions",
    "facets",
    "halfspaces",
    "halfspaces_batch",
    "local_maps",
    "line_regions",
    "lp",
    "margins",
    "neighbors",
    "region_keys",
    "region_report",
    "slice_regions",
    "volumes",
]
