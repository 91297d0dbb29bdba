"""Batched polygon clipping: the cells of a plane's partition, layer by layer (slices).

The engine of :func:`partax.geometry.slice_regions`: cells are convex polygons stored padded
(``[R, V, 2]``, padding repeats vertex 0); for each hidden layer every cell crossed by a
unit's zero line is split in two (batched Sutherland–Hodgman over all cells at once, one unit
at a time, touching only the cells whose layer-start ancestor the unit actually crosses). The
pre-activations on each cell come from the plane pushed through the frozen layers
(:mod:`partax.geometry.linearize`). Also the exact decision-boundary segments of the cells.

Example:
    >>> import numpy as np
    >>> from partax.geometry.clipping import area_centroid, split_polygons
    >>> square = np.array([[[0., 0.], [1., 0.], [1., 1.], [0., 1.]]])
    >>> f = square[:, :, 0] - 0.25                          # the line s = 1/4
    >>> Ppos, cpos, Pneg, cneg = split_polygons(square, np.array([4]), f)
    >>> area_centroid(Ppos)[0].tolist(), area_centroid(Pneg)[0].tolist()
    ([0.75], [0.25])
"""

from __future__ import annotations

import numpy as np

from partax.geometry.linearize import AffineFamily, apply_layer, freeze

__all__ = ["area_centroid", "split_polygons", "clip_plane", "next_maps", "decision_segments"]


def area_centroid(P: np.ndarray):
    """Shoelace area and centroid of padded polygons (padding repeats vertex 0).

    Args:
      P: ``float64[R, V, 2]`` counter-clockwise polygons.

    Returns:
      ``(areas: float64[R], centroids: float64[R, 2])`` (the vertex mean for a degenerate one).
    """
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


def split_polygons(P: np.ndarray, cnt: np.ndarray, f: np.ndarray):
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
      M: the :class:`~partax.geometry.linearize.AffineFamily` of the layer's pre-activations on
        each cell (``M0, M1 = directions[:, 0], directions[:, 1]``, ``M2 = offset``: ``[R0, n]``).
      scale: ``[R0, n]`` snapping tolerance of each unit on each cell.
      tiny: minimum area of a split part.

    Returns:
      ``(P, cnt, anc, bits)``: the new cells, the index of their layer-start cell, and
      their codes ``bool[R, n]`` (1 iff the unit is > 0 on the cell).
    """
    R0, V0, _ = P.shape
    M0, M1, M2 = M.directions[:, 0, :], M.directions[:, 1, :], M.offset
    # cheap screen: |f(x) - f(c)| <= |grad f| * r on a cell of centroid c and radius r
    _, cen = area_centroid(P)
    rad = np.sqrt(((P - cen[:, None, :]) ** 2).sum(-1).max(1))  # [R0]
    fc = cen[:, 0, None] * M0 + cen[:, 1, None] * M1 + M2
    reach = np.sqrt(M0**2 + M1**2) * (rad[:, None] * (1 + 1e-9))
    maybe = np.abs(fc) <= reach + scale  # [R0, n]
    bits0 = fc > scale  # exact where not `maybe`
    cand = np.zeros_like(maybe)
    r_idx, u_idx = np.nonzero(maybe)
    if r_idx.size:
        Pr = P[r_idx]
        f = (Pr[:, :, 0] * M0[r_idx, u_idx][:, None] + Pr[:, :, 1] * M1[r_idx, u_idx][:, None]
             + M2[r_idx, u_idx][:, None])
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
        f = Pr[:, :, 0] * M0[anc, i][:, None] + Pr[:, :, 1] * M1[anc, i][:, None] + M2[anc, i][:, None]
        f[np.abs(f) <= scale[anc, i][:, None]] = 0.0
        pos, neg = (f > 0).any(1), (f < 0).any(1)
        cells.bits[rows, i] = pos
        crossed = pos & neg
        if not crossed.any():
            continue
        rows, Pr, f, anc = rows[crossed], Pr[crossed], f[crossed], anc[crossed]
        Ppos, cpos, Pneg, cneg = split_polygons(Pr, cells.cnt[rows], f)
        apos, _ = area_centroid(Ppos)
        aneg, _ = area_centroid(Pneg)
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


def clip_plane(params, plane, depth: int, rtol: float, area_tol: float):
    """Clips the extent rectangle of ``plane`` by every unit of layers ``1..depth``.

    The plane is the ``k = 2`` family ``(s, t) -> origin + s u + t v``; layer by layer its
    pre-activations on each layer-start cell come from
    :func:`~partax.geometry.linearize.apply_layer` and, once the cell's code of the layer is
    known, :func:`~partax.geometry.linearize.freeze` gives the next layer's input.

    Args:
      params: :class:`~partax.geometry.linearize.Params64` of the net.
      plane: a :class:`~partax.geometry.plane.Plane`.
      depth: the number of hidden layers clipped.
      rtol, area_tol: see :func:`partax.geometry.slice_regions`.

    Returns:
      ``(P, cnt, bits, M, anc)``: cells, vertex counts, codes per layer (``bool[R, n_l]``), the
      :class:`~partax.geometry.linearize.AffineFamily` ``M`` (``[R0]`` members) of the last
      layer's pre-activations on its layer-start cells and ``anc[R]`` the layer-start cell of
      each final cell (so cell ``r`` has the family ``M.take(anc)[r]``).
    """
    (s0, s1), (t0, t1) = plane.extent
    span_s, span_t = s1 - s0, t1 - t0
    P = np.array([[[s0, t0], [s1, t0], [s1, t1], [s0, t1]]], np.float64)
    cnt = np.array([4])
    H = AffineFamily(plane.origin[None], np.stack([plane.u, plane.v])[None])  # h^0 = x on the plane
    tiny = area_tol * plane.area
    bits = []
    for l in range(1, depth + 1):
        M = apply_layer(H, params.layers[l - 1])  # [R0] members: offset [R0, n], directions [R0, 2, n]
        scale = rtol * (np.abs(M.directions[:, 0, :]) * span_s + np.abs(M.directions[:, 1, :]) * span_t
                        + np.abs(M.offset))
        P, cnt, anc, bit = _clip_layer(P, cnt, M, scale, tiny)
        bits = [bb[anc] for bb in bits] + [bit]
        if l < depth:
            H = freeze(M.take(anc), bit, params.alpha)
    return P, cnt, bits, M, anc


def next_maps(M, anc, bit, alpha, layer, chunk: int = 4096) -> np.ndarray:
    """The next layer's affine maps on each final cell, ``[R, 3, n_out]`` (``(s, t, 1)`` rows).

    ``layer`` applied to the frozen activation (``bit``) of ``M.take(anc)``, in chunks of
    ``chunk`` cells (the gathered families are large for wide nets).

    Args:
      M: the last clipped layer's family on its layer-start cells (:func:`clip_plane`).
      anc: ``int[R]`` the layer-start cell of each final cell.
      bit: ``bool[R, n]`` the cells' codes of that layer.
      alpha: the slope of an inactive unit.
      layer: the next layer (a :class:`~partax.geometry.linearize.Dense`).
      chunk: cells per gathered block.

    Returns:
      ``float64[R, 3, n_out]``: rows ``s``, ``t`` and the constant.
    """
    R = anc.shape[0]
    out = np.empty((R, 3, layer.width))
    for c in range(0, R, chunk):
        sl = slice(c, c + chunk)
        nxt = apply_layer(freeze(M.take(anc[sl]), bit[sl], alpha), layer)
        out[sl, :2] = nxt.directions
        out[sl, 2] = nxt.offset
    return out


def decision_segments(P: np.ndarray, cnt: np.ndarray, G: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
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
            Pc, cc2, _, _ = split_polygons(Pc, cc, f)
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
