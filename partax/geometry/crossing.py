"""Crossing codes: the region across a facet of a prefix region, exactly (enumeration).

Step 5 of :func:`partax.geometry.enumerate_regions` (see its module docstring): across the
relative interior of a facet ``F`` of a prefix region ``P`` lies exactly one region, whose
code follows from ``P``'s alone — the units that vanish on all of ``F`` take the sign of their
derivative along the facet's outward normal, pushed layer by layer through the linear parts
of the layers (:mod:`partax.geometry.linearize`) with the crossing code's slopes; every other
unit keeps its bit. :func:`step_across` is the rescue when such a code is found empty
(rounding): it reads the float64 code at points just beyond the facet.

Example:
    >>> import numpy as np
    >>> from partax.geometry.linearize import Dense
    >>> from partax.geometry.code_regions import HiddenLayers
    >>> from partax.geometry.crossing import crossing_codes
    >>> hl = HiddenLayers((Dense(np.eye(2), np.zeros(2)),), 0.0)   # units z_1 = x, z_2 = y
    >>> bits = np.array([[True, True]])                           # the quadrant x, y > 0
    >>> Au = np.array([[[-1.0, 0.0], [0.0, -1.0]]]); bu = np.zeros((1, 2))
    >>> crossing_codes(hl, bits, Au, bu, np.zeros((1, 2), bool), np.array([0]), np.array([0])).tolist()
    [[False, True]]
"""

from __future__ import annotations

import numpy as np

from partax.geometry.code_regions import HiddenLayers, codes64
from partax.geometry.linearize import activate

__all__ = ["crossing_codes", "step_across"]

_SAME_ROW = 1e-9  # two unit-norm rows within this are the same hyperplane (crossing codes)


def crossing_codes(hl: HiddenLayers, bits, Au, bu, zero, own, frow) -> np.ndarray:
    """The code of the region across each facet (see step 5 of the module docstring).

    Args:
      hl: the hidden layers.
      bits: ``bool[B, n_tot]`` codes of the regions; ``Au, bu``: their unit-norm rows (the
        first ``n_tot`` are the units'); ``zero``: ``bool[B, n_tot]`` units identically 0 on
        the region; ``own, frow``: ``int64[F]`` region and unit row of each facet.

    Returns:
      ``bool[F, n_tot]``: ``Z`` (the units vanishing on the facet: its own unit, the units
      with the same hyperplane, the units identically 0) take the sign of their derivative
      along the facet's outward normal, computed layer by layer with the new code's slopes;
      every other unit keeps its bit.
    """
    n_tot = bits.shape[1]
    F = len(own)
    out = np.empty((F, n_tot), bool)
    step = max(1, (1 << 22) // max(1, n_tot * Au.shape[2]))  # bounded temporaries
    for s in range(0, F, step):
        o, u = own[s:s + step], frow[s:s + step]
        normal = Au[o, u]  # outward unit normal of each facet
        rows = Au[o, :n_tot]
        same = np.max(np.abs(rows - normal[:, None]), axis=2) <= _SAME_ROW
        off = bu[o, u]
        same &= np.abs(bu[o, :n_tot] - off[:, None]) <= _SAME_ROW * (1.0 + np.abs(off))[:, None]
        Z = same | zero[o]
        Z[np.arange(len(o)), u] = True
        old = bits[o]
        new = old.copy()
        dh = normal
        start = 0
        for layer in hl.layers:
            g = layer.linear(dh)
            eps = 1e-12 * layer.magnitude(dh)
            sl = slice(start, start + layer.width)
            new[:, sl] = np.where(Z[:, sl], g > eps, old[:, sl])
            dh = activate(g, new[:, sl], hl.alpha)
            start += layer.width
        out[s:s + step] = new
    return out


def step_across(hl: HiddenLayers, parent, row, fpt, pts_all, rad_all, lo, hi):
    """Codes met just across facets, for crossings whose crossing code was found empty.

    From the parent region's interior point through the facet's centroid, points slightly
    beyond the facet (at three distances); the float64 code there names a real region.

    Args:
      hl: the hidden layers.
      parent, row: ``int64[K]`` the crossed region (processing order; -1: none) and facet row.
      fpt: ``float64[K, d]`` a point of each crossed facet.
      pts_all, rad_all: interior points and radii of the regions processed so far.
      lo, hi: the domain's bounds (infinite in R^d).

    Returns:
      ``(src: int64[K], rows: int64[K], codes: bool[K, n_tot], points: float64[K, d])``,
      unique per (src, code).
    """
    n_tot = int(sum(hl.widths))
    src, rows, pts = [], [], []
    for p, r, f in zip(parent.tolist(), row.tolist(), fpt):
        if p < 0:
            continue
        direction = f - pts_all[p]
        length = np.linalg.norm(direction)
        if not length > 0:
            continue
        for frac in (1e-3, 1e-5, 1e-7):
            q = f + frac * max(rad_all[p], 1e-9) * direction / length
            if np.all((q >= lo) & (q <= hi)):
                src.append(p)
                rows.append(r)
                pts.append(q)
    if not pts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_tot), bool), np.zeros((0, hl.d))
    src = np.array(src, np.int64)
    rows = np.array(rows, np.int64)
    pts = np.array(pts)
    codes = codes64(hl, pts)
    # one arc per (parent, code); an arc back to the parent itself is dropped with the edges
    key = np.concatenate([src[:, None], codes.astype(np.int64)], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return src[first], rows[first], codes[first], pts[first]
