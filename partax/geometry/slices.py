"""Exact enumeration of the regions of a ReLU net on a segment (1D) and on a plane (2D).

Both work in NumPy float64 by walking the network layer by layer: on each current piece
(an interval of a segment, a convex polygon of a plane) the pre-activations of the next
layer are affine in the piece's coordinates, so their zero sets (points, lines) split the
piece exactly. Polygons are clipped for all cells at once (batched Sutherland–Hodgman on a
padded vertex array), one unit at a time, and only the cells whose layer-start ancestor is
actually crossed by the unit are touched.

Code convention (the one of :mod:`partax.codes`): a piece's code is decided in float64,
bit = pre-activation ``> 0`` (a piece on which a unit is zero up to the snapping tolerance
gets the inactive bit), with the masks of the earlier layers frozen from the piece's own code,
and its key is :func:`partax.codes.keys_from_bits` of that code, the same key function and bit
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

import dataclasses
import time
from typing import NamedTuple, Optional

import numpy as np

from partax.codes import SCOPES as _SCOPES
from partax.codes import keys_from_bits

__all__ = [
    "Plane",
    "SliceRegions",
    "LineRegions",
    "slice_regions",
    "line_regions",
    "plot_slice",
    "cli_slice",
    "bench_slices",
]


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _net_arrays(net):
    """Float64 weights/biases of an unstacked net, plus the activation slope for 'off'."""
    from partax.nets import Net

    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.stack_shape:
        raise ValueError(f"net: expected a single (unstacked) Net, got stack shape {net.stack_shape}; use net[i]")
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    alpha = float(net.alpha) if net.activation == "leaky_relu" else 0.0
    return Ws, bs, alpha


def _scope_layers(net, scope: str, layer) -> tuple[int, int, int]:
    """``(layer, first, last)``: 1-based layer and the inclusive range of the scope."""
    if scope not in _SCOPES:
        raise ValueError(f"scope: expected one of {_SCOPES}, got {scope!r}")
    L = net.num_hidden
    if L < 1:
        raise ValueError("net: expected at least one hidden layer")
    if layer is None:
        layer = L
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= int(layer) <= L:
        raise ValueError(f"layer: expected an int in 1..{L} (1-based hidden layer), got {layer!r}")
    layer = int(layer)
    first, last = {"layer": (layer, layer), "prefix": (1, layer), "suffix": (layer, L)}[scope]
    return layer, first, last


def _finite_vector(name: str, v, d: Optional[int] = None) -> np.ndarray:
    v = np.asarray(v, np.float64)
    if v.ndim != 1 or (d is not None and v.shape[0] != d):
        want = f"({d},)" if d is not None else "(d,)"
        raise ValueError(f"{name}: expected a vector of shape {want}, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return v


# --------------------------------------------------------------------------------------
# 1D: segments
# --------------------------------------------------------------------------------------
class LineRegions(NamedTuple):
    """The exact partition of a segment ``x(t) = a + t (b - a)``, ``t in [0, 1]``.

    Attributes:
      breakpoints: ``float64[P-1]``, sorted, in ``(0, 1)``: where the scope's key changes.
      keys: ``uint64[P]``, the key of each piece: :func:`partax.codes.keys_from_bits` of the
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


def line_regions(net, a, b, *, scope: str = "prefix", layer: Optional[int] = None, tol: float = 1e-12) -> LineRegions:
    """Exact breakpoints of the (scope, layer) partition along the segment from ``a`` to ``b``.

    Layer by layer, in float64: on each current interval every pre-activation of the layer is
    affine in ``t``; its zero crossing (if strictly inside the interval) splits it. At the end
    only the breakpoints where the scope's code changes are kept.

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
    Ws, bs, alpha = _net_arrays(net)
    layer, first, last = _scope_layers(net, scope, layer)
    d = net.input_dim
    a = _finite_vector("a", a, d)
    b = _finite_vector("b", b, d)
    if np.array_equal(a, b):
        raise ValueError("b: expected an end point different from a")
    direction = b - a
    # breakpoints (interior) and per-piece affine maps of h^{l-1}: [P, 2, n] rows (slope, const)
    bps = np.zeros((0,), np.float64)
    H = np.stack([direction, a])[None]  # [1, 2, d]
    bits_all = []
    for l in range(1, last + 1):
        W, bias = Ws[l - 1], bs[l - 1]
        Z = H @ W  # [P, 2, n]
        Z[:, 1, :] += bias
        edges = np.concatenate([[0.0], bps, [1.0]])
        lo, hi = edges[:-1, None], edges[1:, None]
        slope, const = Z[:, 0, :], Z[:, 1, :]
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
        Zp = Z[parent]  # [P', 2, n]
        zmid = Zp[:, 0, :] * mids[:, None] + Zp[:, 1, :]
        bit = zmid > 0
        # earlier layers' bits for the new pieces
        bits_all = [bb[parent] for bb in bits_all] + [bit]
        factor = np.where(bit, 1.0, alpha)
        H = Zp * factor[:, None, :]
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


# --------------------------------------------------------------------------------------
# 2D: planes
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Plane:
    """A rectangle of a 2D affine plane in input space: ``x = origin + s u + t v``.

    Attributes:
      origin: ``float64[d]``.
      u: ``float64[d]``.
      v: ``float64[d]`` (``u`` and ``v`` linearly independent).
      extent: ``((s0, s1), (t0, t1))`` with ``s0 < s1``, ``t0 < t1``.

    Example:
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-1, 1), (-2, 2)))
      >>> p.points([[0.5, 1.0]]).tolist(), p.area
      ([[0.5, 1.0]], 8.0)
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    extent: tuple = ((-1.0, 1.0), (-1.0, 1.0))

    def __post_init__(self):
        origin = _finite_vector("origin", self.origin)
        d = origin.shape[0]
        u = _finite_vector("u", self.u, d)
        v = _finite_vector("v", self.v, d)
        G = np.array([[u @ u, u @ v], [u @ v, v @ v]])
        if np.linalg.det(G) <= 1e-24 * max(G[0, 0] * G[1, 1], 1e-300):
            raise ValueError("u, v: expected two linearly independent directions")
        try:
            (s0, s1), (t0, t1) = self.extent
            ext = ((float(s0), float(s1)), (float(t0), float(t1)))
        except (TypeError, ValueError):
            raise ValueError(f"extent: expected ((s0, s1), (t0, t1)), got {self.extent!r}") from None
        if not (np.all(np.isfinite(ext)) and ext[0][0] < ext[0][1] and ext[1][0] < ext[1][1]):
            raise ValueError(f"extent: expected finite s0 < s1 and t0 < t1, got {ext}")
        for name, val in (("origin", origin), ("u", u), ("v", v)):
            val.setflags(write=False)
            object.__setattr__(self, name, val)
        object.__setattr__(self, "extent", ext)

    @property
    def dim(self) -> int:
        return int(self.origin.shape[0])

    @property
    def area(self) -> float:
        """Area of the extent rectangle in ``(s, t)`` units."""
        (s0, s1), (t0, t1) = self.extent
        return (s1 - s0) * (t1 - t0)

    def points(self, st) -> np.ndarray:
        """Input-space points ``origin + s u + t v`` of ``st`` ``[N, 2]`` -> ``float64[N, d]``."""
        st = np.asarray(st, np.float64)
        if st.ndim != 2 or st.shape[1] != 2:
            raise ValueError(f"st: expected shape (N, 2), got {st.shape}")
        return self.origin[None] + st[:, :1] * self.u[None] + st[:, 1:] * self.v[None]

    def coords(self, x) -> np.ndarray:
        """Least-squares ``(s, t)`` of input points ``x`` ``[N, d]`` (exact for points on the plane)."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x: expected shape (N, {self.dim}), got {x.shape}")
        B = np.stack([self.u, self.v], axis=1)
        return np.linalg.lstsq(B, (x - self.origin[None]).T, rcond=None)[0].T

    def grid(self, resolution: int) -> np.ndarray:
        """Cell-centred grid ``float64[resolution**2, 2]`` of ``(s, t)`` over the extent."""
        (s0, s1), (t0, t1) = self.extent
        r = int(resolution)
        s = s0 + (np.arange(r) + 0.5) * (s1 - s0) / r
        t = t0 + (np.arange(r) + 0.5) * (t1 - t0) / r
        S, T = np.meshgrid(s, t, indexing="xy")
        return np.stack([S.ravel(), T.ravel()], axis=1)

    @classmethod
    def through(cls, x1, x2, x3, *, margin: float = 1.5) -> "Plane":
        """The plane through three inputs, centred on their circumcentre.

        ``u, v`` are an orthonormal basis of ``span(x2 - x1, x3 - x1)`` (``u`` along
        ``x2 - x1``); the extent is the square ``[-margin R, margin R]^2`` with ``R`` the
        circumradius, so the three points (at distance ``R`` from the origin) lie inside.

        Args:
          x1, x2, x3: inputs ``[d]`` (not collinear).
          margin: half-side of the square in units of the circumradius (``> 1``).

        Returns:
          A :class:`Plane`; ``plane.coords(np.stack([x1, x2, x3]))`` gives their ``(s, t)``.

        Example:
          >>> p = Plane.through([0., 0., 0.], [2., 0., 0.], [0., 2., 0.])
          >>> p.origin.tolist(), round(p.extent[0][1], 6)
          ([1.0, 1.0, 0.0], 2.12132)
        """
        x1 = _finite_vector("x1", x1)
        d = x1.shape[0]
        x2 = _finite_vector("x2", x2, d)
        x3 = _finite_vector("x3", x3, d)
        if not margin > 0:
            raise ValueError(f"margin: expected > 0, got {margin}")
        p, q = x2 - x1, x3 - x1
        G = np.array([[p @ p, p @ q], [p @ q, q @ q]])
        if np.linalg.det(G) <= 1e-12 * G[0, 0] * G[1, 1]:
            raise ValueError("x1, x2, x3: expected three points that are not collinear")
        ab = np.linalg.solve(G, 0.5 * np.array([p @ p, q @ q]))
        centre = x1 + ab[0] * p + ab[1] * q
        radius = float(np.linalg.norm(x1 - centre))
        u = p / np.linalg.norm(p)
        w = q - (q @ u) * u
        v = w / np.linalg.norm(w)
        h = margin * radius
        return cls(centre, u, v, ((-h, h), (-h, h)))


class SliceRegions(NamedTuple):
    """The exact partition of a plane's extent rectangle.

    The enumeration is made of convex *cells* (the ``prefix`` regions at the clipping depth);
    for ``scope="prefix"`` each cell is one region. For ``"layer"`` and ``"suffix"`` the
    regions are unions of cells with equal keys — possibly non-convex or disconnected in the
    slice — and the result lists the cells with their keys; ``region_index`` maps each cell to
    its region (``unique_keys``) and ``region_areas`` sums them.

    Attributes:
      keys: ``uint64[R]``, :func:`partax.codes.keys_from_bits` of the cell's float64 code
        (layers ``first..last`` of the scope): what ``partax.region_ids(net, x, scope)[:,
        layer-1]`` (the net's dtype, usually float32) gives at every point ``x`` of the cell
        that is not near a boundary (``partax.partition``'s ``near_boundary`` tolerance).
      polygons: ``float64[R, V, 2]`` counter-clockwise vertices in ``(s, t)``, padded by
        repeating vertex 0.
      counts: ``int64[R]`` number of vertices of each cell.
      areas: ``float64[R]`` cell areas in ``(s, t)`` units.
      points: ``float64[R, 2]`` interior point (centroid) of each cell in ``(s, t)``.
      bits: tuple, one ``bool[R, n_l]`` per hidden layer ``1..depth`` (float64 codes).
      maps: ``float64[R, 3, n_layer]`` or ``None`` (unless ``with_maps``): pre-activations of
        ``layer`` on each cell, ``z = s * maps[:, 0] + t * maps[:, 1] + maps[:, 2]``.
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


def _area_centroid(P: np.ndarray):
    """Shoelace area and centroid of padded polygons ``[R, V, 2]`` (padding repeats vertex 0)."""
    x, y = P[..., 0], P[..., 1]
    xn, yn = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cr = x * yn - xn * y
    a2 = cr.sum(1)
    area = 0.5 * a2
    with np.errstate(divide="ignore", invalid="ignore"):
        cx = ((x + xn) * cr).sum(1) / (3.0 * a2)
        cy = ((y + yn) * cr).sum(1) / (3.0 * a2)
    bad = ~np.isfinite(cx) | ~np.isfinite(cy)
    if np.any(bad):  # degenerate: vertex mean
        cx = np.where(bad, x.mean(1), cx)
        cy = np.where(bad, y.mean(1), cy)
    return area, np.stack([cx, cy], axis=1)


def _compact(pts: np.ndarray, keep: np.ndarray):
    """Keeps the marked candidate vertices in order; pads with vertex 0. Returns (P, counts)."""
    cnt = keep.sum(1)
    V = max(int(cnt.max()), 1)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :V]
    out = np.take_along_axis(pts, order[:, :, None], axis=1)
    pad = np.arange(V)[None, :] >= cnt[:, None]
    out = np.where(pad[:, :, None], out[:, :1, :], out)
    return out, cnt


def _split(P: np.ndarray, cnt: np.ndarray, f: np.ndarray):
    """Splits convex polygons by the sign of an affine function given at their vertices.

    Args:
      P: ``[K, V, 2]`` padded polygons; ``cnt``: ``[K]`` vertex counts; ``f``: ``[K, V]``
        function values (already snapped: exact zeros on the line).

    Returns:
      ``(Ppos, cpos, Pneg, cneg)``: the parts where ``f >= 0`` and ``f <= 0``.
    """
    K, V, _ = P.shape
    valid = np.arange(V)[None, :] < cnt[:, None]
    nxt = np.roll(np.arange(V), -1)
    Pn, fn = P[:, nxt], f[:, nxt]
    # padding repeats vertex 0 so the edge from the last real vertex to slot cnt (or, when
    # cnt == V, to slot 0) is the closing edge; padded edges are degenerate (no crossing).
    cross = ((f > 0) & (fn < 0)) | ((f < 0) & (fn > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.where(cross, f / (f - fn), 0.0)
    X = P + lam[:, :, None] * (Pn - P)
    cand = np.stack([P, X], axis=2).reshape(K, 2 * V, 2)
    keep_pos = np.stack([valid & (f >= 0), cross], axis=2).reshape(K, 2 * V)
    keep_neg = np.stack([valid & (f <= 0), cross], axis=2).reshape(K, 2 * V)
    Ppos, cpos = _compact(cand, keep_pos)
    Pneg, cneg = _compact(cand, keep_neg)
    return Ppos, cpos, Pneg, cneg


class _Cells:
    """Growable storage of padded polygons with per-cell data (capacity doubling)."""

    def __init__(self, P, cnt, anc, bits):
        self.P, self.cnt, self.anc, self.bits, self.n = P, cnt, anc, bits, P.shape[0]

    def _fit(self, P):
        V = self.P.shape[1]
        if P.shape[1] > V:
            self.P = np.concatenate([self.P, np.repeat(self.P[:, :1], P.shape[1] - V, axis=1)], axis=1)
        elif P.shape[1] < V:
            P = np.concatenate([P, np.repeat(P[:, :1], V - P.shape[1], axis=1)], axis=1)
        return P

    def append(self, P, cnt, anc, bits):
        k = P.shape[0]
        P = self._fit(P)
        if self.n + k > self.P.shape[0]:
            cap = max(2 * self.P.shape[0], self.n + k)
            grow = cap - self.P.shape[0]
            self.P = np.concatenate([self.P, np.zeros((grow,) + self.P.shape[1:])])
            self.cnt = np.concatenate([self.cnt, np.zeros(grow, self.cnt.dtype)])
            self.anc = np.concatenate([self.anc, np.zeros(grow, self.anc.dtype)])
            self.bits = np.concatenate([self.bits, np.zeros((grow,) + self.bits.shape[1:], bool)])
        sl = slice(self.n, self.n + k)
        self.P[sl], self.cnt[sl], self.anc[sl], self.bits[sl] = P, cnt, anc, bits
        self.n += k

    def put(self, rows, P, cnt):
        P = self._fit(P)
        self.P[rows] = P
        self.cnt[rows] = cnt

    def view(self):
        V = int(self.cnt[: self.n].max())
        return self.P[: self.n, :V], self.cnt[: self.n], self.anc[: self.n], self.bits[: self.n]


def _clip_layer(P, cnt, M, scale, tiny):
    """Splits the cells ``P`` by every unit's zero line ``s M0 + t M1 + M2 = 0``.

    Args:
      P, cnt: the layer-start cells ``[R0, V, 2]``, ``[R0]``.
      M: ``[R0, 3, n]`` affine pre-activation maps of the layer on each cell.
      scale: ``[R0, n]`` snapping tolerance of each unit on each cell.
      tiny: minimum area of a split part.

    Returns:
      ``(P, cnt, anc, bits)``: the new cells, the index of their layer-start cell, and
      their codes ``bool[R, n]`` (1 iff the unit is > 0 on the cell).
    """
    R0, V0, _ = P.shape
    # cheap screen: |f(x) - f(c)| <= |grad f| * r on a cell of centroid c and radius r
    _, cen = _area_centroid(P)
    rad = np.sqrt(((P - cen[:, None, :]) ** 2).sum(-1).max(1))  # [R0]
    fc = cen[:, 0, None] * M[:, 0, :] + cen[:, 1, None] * M[:, 1, :] + M[:, 2, :]
    reach = np.sqrt(M[:, 0, :] ** 2 + M[:, 1, :] ** 2) * (rad[:, None] * (1 + 1e-9))
    maybe = np.abs(fc) <= reach + scale  # [R0, n]
    bits0 = fc > scale  # exact where not `maybe`
    cand = np.zeros_like(maybe)
    r_idx, u_idx = np.nonzero(maybe)
    if r_idx.size:
        A = M[r_idx, :, u_idx]  # [K, 3]
        Pr = P[r_idx]
        f = Pr[:, :, 0] * A[:, 0, None] + Pr[:, :, 1] * A[:, 1, None] + A[:, 2, None]
        sc = scale[r_idx, u_idx][:, None]
        fmax, fmin = f.max(1), f.min(1)
        cand[r_idx, u_idx] = (fmin < -sc[:, 0]) & (fmax > sc[:, 0])
        bits0[r_idx, u_idx] = fmax > sc[:, 0]
    cells = _Cells(P.copy(), cnt.copy(), np.arange(R0), bits0)
    for i in np.flatnonzero(cand.any(0)):
        if cells.n == R0:
            rows = np.flatnonzero(cand[:, i])
        else:
            rows = np.flatnonzero(cand[cells.anc[: cells.n], i])
        anc = cells.anc[rows]
        V = int(cells.cnt[rows].max())
        Pr = cells.P[rows, :V]
        A = M[anc, :, i]
        f = Pr[:, :, 0] * A[:, 0, None] + Pr[:, :, 1] * A[:, 1, None] + A[:, 2, None]
        f[np.abs(f) <= scale[anc, i][:, None]] = 0.0
        pos, neg = (f > 0).any(1), (f < 0).any(1)
        cells.bits[rows, i] = pos
        crossed = pos & neg
        if not crossed.any():
            continue
        rows, Pr, f, anc = rows[crossed], Pr[crossed], f[crossed], anc[crossed]
        Ppos, cpos, Pneg, cneg = _split(Pr, cells.cnt[rows], f)
        apos, _ = _area_centroid(Ppos)
        aneg, _ = _area_centroid(Pneg)
        ok = (apos > tiny) & (aneg > tiny)
        # a split refused (a part below the area tolerance): the cell takes the big side
        cells.bits[rows[~ok], i] = apos[~ok] >= aneg[~ok]
        if not ok.any():
            continue
        rows, anc = rows[ok], anc[ok]
        cells.put(rows, Ppos[ok], cpos[ok])
        nb = cells.bits[rows].copy()
        nb[:, i] = False
        cells.append(Pneg[ok], cneg[ok], anc, nb)
    return cells.view()


def _clip_plane(Ws, bs, alpha, plane: Plane, depth: int, rtol: float, area_tol: float):
    """Clips the extent rectangle by every unit of layers ``1..depth``.

    Returns ``(P, cnt, bits, M, anc)``: cells, vertex counts, codes per layer (``bool[R, n_l]``),
    the ``[R0, 3, n_depth]`` pre-activation maps of the last layer on its layer-start cells and
    ``anc[R]`` the layer-start cell of each final cell (so cell ``r`` has map ``M[anc[r]]``).
    """
    (s0, s1), (t0, t1) = plane.extent
    span_s, span_t = s1 - s0, t1 - t0
    P = np.array([[[s0, t0], [s1, t0], [s1, t1], [s0, t1]]], np.float64)
    cnt = np.array([4])
    H = np.stack([plane.u, plane.v, plane.origin])[None]  # [1, 3, d]: maps of h^0 = x
    tiny = area_tol * plane.area
    bits = []
    for l in range(1, depth + 1):
        M = H @ Ws[l - 1]  # [R0, 3, n]
        M[:, 2, :] += bs[l - 1]
        scale = rtol * (np.abs(M[:, 0, :]) * span_s + np.abs(M[:, 1, :]) * span_t + np.abs(M[:, 2, :]))
        P, cnt, anc, bit = _clip_layer(P, cnt, M, scale, tiny)
        bits = [bb[anc] for bb in bits] + [bit]
        if l < depth:
            H = M[anc] * np.where(bit, 1.0, alpha)[:, None, :]
    return P, cnt, bits, M, anc


def _next_maps(M, anc, bit, alpha, W, b, chunk: int = 4096):
    """``(act(M[anc]) masked by bit) @ W + b`` in chunks: ``[R, 3, d_out]``."""
    R = anc.shape[0]
    out = np.empty((R, 3, W.shape[1]))
    for c in range(0, R, chunk):
        sl = slice(c, c + chunk)
        out[sl] = (M[anc[sl]] * np.where(bit[sl], 1.0, alpha)[:, None, :]) @ W
    out[:, 2, :] += b
    return out


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
    by a unit's zero line is split in two (batched over all cells, one unit at a time).

    Args:
      net: an unstacked :class:`partax.Net`.
      plane: a :class:`Plane` in the net's input space.
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"``.
      layer: 1-based hidden layer (default: the last). ``prefix``/``layer`` clip layers
        ``1..layer``; ``suffix`` clips all layers.
      rtol: relative tolerance under which a vertex counts as lying on a line.
      area_tol: splits leaving a part of area below ``area_tol * plane.area`` are not made.
      with_maps: also return ``maps``, the affine pre-activations of ``layer`` on each cell
        (``R * 3 * n_layer`` floats: large for wide nets).

    Returns:
      A :class:`SliceRegions`.

    Example:
      >>> import jax, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 5, 1], bias_std=0.3)
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-50, 50), (-50, 50)))
      >>> slice_regions(net, p).num_regions <= 16  # zaslavsky(5, 2)
      True
    """
    Ws, bs, alpha = _net_arrays(net)
    layer, first, last = _scope_layers(net, scope, layer)
    if not isinstance(plane, Plane):
        raise TypeError(f"plane: expected a Plane, got {type(plane).__name__}")
    if plane.dim != net.input_dim:
        raise ValueError(f"plane: expected a plane in R^{net.input_dim} (net.input_dim), got R^{plane.dim}")
    depth = last
    P, cnt, bits, M, anc = _clip_plane(Ws, bs, alpha, plane, depth, rtol, area_tol)
    areas, cen = _area_centroid(P)
    maps = None
    if with_maps:
        if layer == depth:
            maps = M[anc]
        else:
            maps = np.stack([plane.u, plane.v, plane.origin])[None]  # x = s u + t v + origin
            for l in range(1, layer + 1):
                Z = maps @ Ws[l - 1]
                Z[:, 2, :] += bs[l - 1]
                maps = Z * np.where(bits[l - 1], 1.0, alpha)[:, None, :] if l < layer else Z
    logits = None
    if depth == net.num_hidden:
        logits = _next_maps(M, anc, bits[-1], alpha, Ws[-1], bs[-1])
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


# --------------------------------------------------------------------------------------
# decision boundary, figures, command line, benchmark
# --------------------------------------------------------------------------------------
def _decision_segments(P: np.ndarray, cnt: np.ndarray, G: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """Exact decision-boundary segments inside the cells.

    Args:
      P, cnt: cells ``[R, V, 2]`` and vertex counts.
      G: ``[R, 3, C]`` affine logits on each cell (``C == 1``: the boundary is ``logit = 0``).

    Returns:
      ``float64[S, 2, 2]`` segments (each may appear twice, once from each side).
    """
    if G.shape[2] == 1:
        G = np.concatenate([np.zeros_like(G), G], axis=2)
    C = G.shape[2]
    segs = []
    scale_all = np.abs(G).sum(1).max(1) + 1e-300  # [R]
    for c in range(C):
        Pc, cc = P, cnt.copy()
        for k in range(C):
            if k == c:
                continue
            D = G[:, :, c] - G[:, :, k]
            f = Pc[:, :, 0] * D[:, 0, None] + Pc[:, :, 1] * D[:, 1, None] + D[:, 2, None]
            f[np.abs(f) <= rtol * scale_all[:, None]] = 0.0
            Pc, cc2, _, _ = _split(Pc, cc, f)
            cc = np.where(cc > 0, cc2, 0)
        live = cc >= 2
        if not live.any():
            continue
        Q, q = Pc[live], cc[live]
        Gl = G[live]
        Qn = np.roll(Q, -1, axis=1)
        valid = np.arange(Q.shape[1])[None, :] < q[:, None]
        on_any = np.zeros(valid.shape, bool)
        for k in range(C):
            if k == c:
                continue
            D = Gl[:, :, c] - Gl[:, :, k]
            tol = rtol * scale_all[live][:, None] * 10
            f0 = Q[:, :, 0] * D[:, 0, None] + Q[:, :, 1] * D[:, 1, None] + D[:, 2, None]
            f1 = Qn[:, :, 0] * D[:, 0, None] + Qn[:, :, 1] * D[:, 1, None] + D[:, 2, None]
            on_any |= (np.abs(f0) <= tol) & (np.abs(f1) <= tol)
        edge = valid & on_any & (np.linalg.norm(Qn - Q, axis=-1) > 0)
        r, j = np.nonzero(edge)
        segs.append(np.stack([Q[r, j], Qn[r, j]], axis=1))
    return np.concatenate(segs) if segs else np.zeros((0, 2, 2))


def _region_colors(keys: np.ndarray) -> np.ndarray:
    """A stable RGB colour per key (golden-ratio hues, varied lightness)."""
    import colorsys

    k = np.asarray(keys, np.uint64)
    h = ((k >> np.uint64(40)) & np.uint64(0xFFFFFF)).astype(np.float64) / float(1 << 24)
    light = 0.4 + 0.3 * ((k & np.uint64(0xFF)).astype(np.float64) / 255.0)
    return np.array([colorsys.hls_to_rgb(hh, ll, 0.65) for hh, ll in zip(h, light)]).reshape(-1, 3)


def plot_slice(result: SliceRegions, ax=None, *, net=None, plane=None, marks=None, edges: bool = True):
    """Draws a slice: one colour per region and the decision boundary in black.

    Args:
      result: a :class:`SliceRegions`.
      ax: a matplotlib axes (default: a new figure).
      net, plane: needed for the decision boundary when ``result.logits`` is ``None``
        (cells shallower than the last layer); ignored otherwise.
      marks: optional ``[K, 2]`` points ``(s, t)`` to mark (e.g. the three inputs).
      edges: draw thin cell edges.

    Returns:
      The matplotlib axes.

    Example:
      >>> import jax, partax, matplotlib
      >>> matplotlib.use("Agg")
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
      >>> ax = plot_slice(slice_regions(net, Plane([0., 0.], [1., 0.], [0., 1.], ((-2, 2), (-2, 2)))))
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection

    if not isinstance(result, SliceRegions):
        raise TypeError(f"result: expected a SliceRegions, got {type(result).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    polys = [result.polygons[i, : result.counts[i]] for i in range(result.num_cells)]
    colours = _region_colors(result.unique_keys)[result.region_index]
    ax.add_collection(
        PolyCollection(polys, facecolors=colours, edgecolors=(0.2, 0.2, 0.2, 0.35) if edges else "none",
                       linewidths=0.15 if edges else 0.0)
    )
    G, P, cnt = result.logits, result.polygons, result.counts
    if G is None and net is not None and plane is not None:
        full = slice_regions(net, plane, scope="prefix")
        G, P, cnt = full.logits, full.polygons, full.counts
    if G is not None:
        segs = _decision_segments(P, cnt, G)
        if len(segs):
            ax.add_collection(LineCollection(segs, colors="black", linewidths=1.2))
    if marks is not None:
        marks = np.asarray(marks, np.float64)
        ax.scatter(marks[:, 0], marks[:, 1], s=30, c="white", edgecolors="black", zorder=5)
    (s0, s1), (t0, t1) = result.extent
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xlabel("s")
    ax.set_ylabel("t")
    ax.set_title(f"{result.num_regions} regions ({result.scope}, layer {result.layer})")
    return ax


def cli_slice(args) -> dict:
    """``partax slice``: draws the exact partition of a 2D slice to a PNG and prints the counts.

    Expected argparse arguments (attributes of ``args``):
      net (str): path of a net saved by ``partax.save_net`` (``--net NET.npz``, required).
      through (list of 3 ints or None): ``--through I J K``, rows of ``--data`` spanning the
        plane (``Plane.through``); required unless the net has 2 inputs.
      data (str or None): ``--data X.npy``, inputs ``[N, d_in]`` (needed with ``--through``).
      scope (str): ``--scope {prefix,layer,suffix}``, default ``prefix``.
      layer (int or None): ``--layer L`` (1-based, default the last hidden layer).
      out (str): ``--out PNG`` output figure; a JSON summary is written next to it
        (same path with ``.json``).
      extent (float, optional): ``--extent H``: half-width of the square ``[-H, H]^2`` for 2-input
        nets without ``--through`` (default 3).
      margin (float, optional): ``--margin M``: half-side of the square around the
        circumcircle in circumradii for ``--through`` (default 1.5).

    Returns:
      The summary dict (also written as JSON).
    """
    import json
    import os

    from partax import bounds as _bounds
    from partax.files import atomic_write_bytes
    from partax.nets import load_net

    net = load_net(args.net)
    scope = getattr(args, "scope", None) or "prefix"
    layer = getattr(args, "layer", None)
    through = getattr(args, "through", None)
    marks = None
    if through:
        if len(through) != 3:
            raise ValueError(f"through: expected three row indices I J K, got {through}")
        if not getattr(args, "data", None):
            raise ValueError("data: --through needs --data X.npy (the inputs the indices refer to)")
        X = np.load(args.data, allow_pickle=False)
        X = X.reshape(X.shape[0], -1)
        if X.shape[1] != net.input_dim:
            raise ValueError(f"data: expected rows of {net.input_dim} values (net.input_dim), got {X.shape[1]}")
        idx = [int(i) for i in through]
        for i in idx:
            if not 0 <= i < X.shape[0]:
                raise ValueError(f"through: index {i} out of range for data with {X.shape[0]} rows")
        margin = getattr(args, "margin", None) or 1.5
        plane = Plane.through(*X[idx].astype(np.float64), margin=margin)
        marks = plane.coords(X[idx].astype(np.float64))
    else:
        if net.input_dim != 2:
            raise ValueError(
                f"through: the net has {net.input_dim} inputs; pass --through I J K --data X.npy to pick a plane"
            )
        h = float(getattr(args, "extent", None) or 3.0)
        plane = Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-h, h), (-h, h)))
    t = time.perf_counter()
    res = slice_regions(net, plane, scope=scope, layer=layer)
    seconds = time.perf_counter() - t
    widths = list(net.widths[: res.depth])
    table2 = _bounds.table(2, widths)
    summary = {
        "net": os.fspath(args.net),
        "scope": scope,
        "layer": res.layer,
        "regions": res.num_regions,
        "cells": res.num_cells,
        "seconds": seconds,
        "extent": [list(e) for e in plane.extent],
        "bounds_n0_2": {k: str(v) for k, v in table2.items()},
    }
    print(f"slice of {net.input_dim}-{'-'.join(map(str, net.widths))}-{net.output_dim}: "
          f"{res.num_regions} {scope} regions at layer {res.layer} ({res.num_cells} cells, {seconds:.2f} s)")
    print("a 2D slice is bounded by the n0 = 2 bounds of the layers it sees:")
    print(_bounds.format_table(2, widths))
    if net.input_dim != 2:
        print(f"(whole input space, n0 = {net.input_dim}: serra = {_bounds.serra(net.input_dim, widths)})")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 7))
    plot_slice(res, ax, net=net, plane=plane, marks=marks)
    out = os.fspath(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(os.path.splitext(out)[0] + ".json", json.dumps(summary, indent=2).encode())
    print(f"wrote {out}")
    return summary


def bench_slices(seed: int = 0) -> dict:
    """Regions per second of :func:`slice_regions` on two workloads (warm-up excluded).

    Workloads: a 2-64-64-64-1 net (``bias_std=0.5``) on the input plane ``[-3, 3]^2``, and a
    784-256-256-256-10 net (``bias_std=0.1``) on the plane through three uniform ``[0, 1]``
    inputs (``Plane.through``, margin 1.5).

    Args:
      seed: seed of the nets and inputs.

    Returns:
      ``{workload: {"regions", "cells", "seconds", "regions_per_s"}}``.
    """
    import jax

    from partax.nets import mlp

    out = {}
    key = jax.random.key(seed)
    k1, k2 = jax.random.split(key)
    net = mlp(k1, [2, 64, 64, 64, 1], bias_std=0.5)
    workloads = [("slice_2-64-64-64-1", net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-3, 3), (-3, 3))))]
    net = mlp(k2, [784, 256, 256, 256, 10], bias_std=0.1)
    x = np.random.default_rng(seed).random((3, 784))
    workloads.append(("slice_784-256-256-256-10", net, Plane.through(*x)))
    for name, net, plane in workloads:
        small = Plane(plane.origin, plane.u, plane.v, tuple((0.01 * a, 0.01 * b) for a, b in plane.extent))
        slice_regions(net, small)  # warm-up (imports, key hashing)
        t = time.perf_counter()
        res = slice_regions(net, plane)
        dt = time.perf_counter() - t
        out[name] = {
            "regions": res.num_regions,
            "cells": res.num_cells,
            "seconds": dt,
            "regions_per_s": res.num_regions / dt,
        }
    return out
