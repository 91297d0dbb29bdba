"""Batched polygon clipping: the cells of a plane's partition, layer by layer (slices).

The engine of :func:`partax.geometry.slice_regions`: cells are convex polygons stored padded
(``[R, V, 2]``, padding repeats vertex 0); for each hidden layer every cell crossed by a
unit's zero line is split in two (batched Sutherland–Hodgman over all cells at once, one unit
at a time, touching only the cells whose layer-start ancestor the unit actually crosses). The
pre-activations on each cell come from the plane pushed through the frozen layers
(:mod:`partax.geometry.linearize`). Also the exact decision-boundary segments of the cells.

General nets (:func:`partax.nets.sequential`) go through :func:`clip_sites`: the code sites
are walked in execution order (:func:`partax.layers.traverse`, residual blocks included) and on
each cell the site's input is the plane pushed through the layers with the earlier codes frozen.
A ReLU / leaky-ReLU unit splits a cell by ``z = 0``, a hard-tanh unit by ``z = lo`` and
``z = hi``, and a max-pool window of ``k`` slots splits it into at most ``k`` convex pieces,
piece ``s`` = cell ∩ ``{z_s >= z_j, j > s}`` ∩ ``{z_s > z_j, j < s}`` (ties to the lowest
slot), each obtained by clipping the cell by its ``k - 1`` half-planes (so no edge inside a
piece).

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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.geometry.linearize import AffineFamily, apply_layer, float64_layers, freeze
from partax.layers import HardTanh, LeakyReLU, MaxPool, index_bits, traverse, window_indices
from partax.records import record_repr

__all__ = ["area_centroid", "split_polygons", "clip_plane", "next_maps", "clip_sites", "SiteCells",
           "decision_segments"]


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
            self.bits = np.concatenate([self.bits, np.zeros((grow,) + self.bits.shape[1:], self.bits.dtype)])
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


# --- general nets -----------------------------------------------------------------------------
class SiteCells(NamedTuple):
    """The cells of a general net's slice, clipped by its code sites ``1..depth`` (:func:`clip_sites`).

    Attributes:
      polygons: ``float64[R, V, 2]`` counter-clockwise cells, padded by repeating vertex 0.
      counts: ``int[R]`` vertex counts.
      bits: list over the code groups ``1..depth`` of ``bool[R, n_g]`` (the cells' codes).
      pre: :class:`~partax.geometry.linearize.AffineFamily` of the input of site ``depth`` on
        its layer-start cells (``offset[R0, n]``, ``directions[R0, 2, n]``, flattened).
      anc: ``int[R]`` the layer-start cell of each cell (cell ``r``'s family is ``pre.take(anc)[r]``).
      logits: ``float64[R, 3, d_out]`` the affine outputs on each cell (rows ``s``, ``t``, the
        constant), or ``None`` when ``depth`` is not the last code group.
    """

    polygons: np.ndarray
    counts: np.ndarray
    bits: list
    pre: AffineFamily
    anc: np.ndarray
    logits: object

    def __repr__(self) -> str:
        return record_repr("SiteCells", cells=int(self.polygons.shape[0]), depth=len(self.bits),
                           widths=tuple(int(b.shape[1]) for b in self.bits), logits=self.logits is not None)


@jax.jit
def _affine64(layer, o, v):
    """An affine layer on a family: ``offset`` through ``apply``, the directions through ``linear``."""
    return layer.apply(o), layer.linear(v)


@jax.jit
def _frozen64(layer, o, v, bits):
    """A code site with its code frozen, on a family (``v`` holds 2 direction rows per member)."""
    return layer.frozen(o, bits), layer.frozen_linear(v, jnp.repeat(bits, 2, axis=0))


_CHUNK = 16384  # members per call of a jitted layer (bounded memory, one shape for large slices)


def _bucket(n: int) -> int:
    """``n`` rounded up to ``64 * 4^j`` (at most ``_CHUNK``): few distinct shapes, few compilations."""
    b = 64
    while b < n:
        b *= 4
    return min(b, _CHUNK)


def _run(fn, layer, o, v, *bits):
    """``fn(layer, o, v, *bits)`` in float64, in chunks of members padded to a bucket size.

    ``o`` holds ``R`` members, ``v`` their ``2 R`` direction rows (member-major), ``bits``
    ``R`` codes; the results are NumPy arrays of the same layout.
    """
    R = o.shape[0]
    outs_o, outs_v = [], []
    for c in range(0, max(R, 1), _CHUNK):
        n = min(_CHUNK, R - c)
        B = _bucket(n)
        oc, vc = o[c:c + n], v[2 * c:2 * (c + n)]
        bc = tuple(b[c:c + n] for b in bits)
        if B != n:
            oc = np.concatenate([oc, np.zeros((B - n,) + o.shape[1:])])
            vc = np.concatenate([vc, np.zeros((2 * (B - n),) + v.shape[1:])])
            bc = tuple(np.concatenate([b, np.zeros((B - n,) + b.shape[1:], b.dtype)]) for b in bc)
        with jax.enable_x64(True):
            oo, vv = fn(layer, oc, vc, *bc)
            outs_o.append(np.asarray(oo)[:n])
            outs_v.append(np.asarray(vv)[: 2 * n])
    if len(outs_o) == 1:
        return outs_o[0], outs_v[0]
    return np.concatenate(outs_o), np.concatenate(outs_v)


def _scale(M: AffineFamily, span, rtol: float):
    """``rtol (|z_s| span_s + |z_t| span_t + |z_0|)`` per member and unit: the snapping tolerance."""
    return rtol * (np.abs(M.directions[:, 0, :]) * span[0] + np.abs(M.directions[:, 1, :]) * span[1]
                   + np.abs(M.offset))


def _slot_values(Pr, anc, units, M):
    """``[K, V, m]``: the window's units at the vertices of the cells (layer-start cells ``anc``)."""
    a, u = anc[:, None], units[None, :]
    M0, M1, M2 = M.directions[a, 0, u], M.directions[a, 1, u], M.offset[a, u]  # [K, m]
    return Pr[:, :, 0, None] * M0[:, None] + Pr[:, :, 1, None] * M1[:, None] + M2[:, None]


def _window_screen(Pr, anc, units, M, S):
    """Cells that lie in one max-pool piece, and which (cells ``Pr`` of layer-start cells ``anc``).

    Piece ``s`` holds the whole cell iff at every vertex ``z_s - z_j >= 0`` (snapped) for every
    ``j``, and ``> 0`` at some vertex for ``j < s`` (ties go to the lowest slot). Only the piece of
    the cell's first vertex is tried: a cell not decided here goes to the exact per-piece
    clipping (:func:`_slot_piece`), so the screen only saves time.

    Args:
      Pr: ``[K, V, 2]`` cells; anc: ``[K]``; units: ``[m]`` the window's real units (slot order).
      M: the site input's family on the layer-start cells; S: its snapping scale ``[R0, n]``.

    Returns:
      ``(decided bool[K], piece int[K])`` (``piece``: position in ``units``).
    """
    K, m = Pr.shape[0], len(units)
    f = _slot_values(Pr, anc, units, M)  # [K, V, m]
    s = np.argmax(f[:, 0], axis=1)  # the lowest maximal slot at vertex 0
    rk = np.arange(K)
    g = f[rk, :, s][:, :, None] - f  # [K, V, m]: z_s - z_j
    sc = S[anc[:, None], units[None, :]]
    g[np.abs(g) <= (sc[rk, s][:, None] + sc)[:, None]] = 0.0
    below = np.arange(m)[None, :] < s[:, None]  # j < s: strict
    ok = (g >= 0).all(1) & ((g > 0).any(1) | ~below)
    return ok.all(1), s


def _slot_piece(Pr, cr, anc, units, s, M, S):
    """Piece ``s`` of a max-pool window on each cell: the cell clipped by ``z_s >= z_j`` (``j > s``)
    and ``z_s > z_j`` (``j < s``). Returns ``(Q, q, area)`` (area 0 for an empty piece)."""
    Q, q = Pr, cr
    K = Pr.shape[0]
    empty = np.zeros(K, bool)
    a = units[s]
    for j, b in enumerate(units):
        if j == s:
            continue
        D = M.directions[anc, :, a] - M.directions[anc, :, b]  # [K, 2]
        D2 = M.offset[anc, a] - M.offset[anc, b]
        f = Q[:, :, 0] * D[:, 0, None] + Q[:, :, 1] * D[:, 1, None] + D2[:, None]
        f[np.abs(f) <= (S[anc, a] + S[anc, b])[:, None]] = 0.0
        if j < s:  # strict: a piece on which z_s == z_j throughout goes to slot j
            valid = np.arange(Q.shape[1])[None, :] < q[:, None]
            empty |= ~((f > 0) & valid).any(1)
        Q, q, _, _ = split_polygons(Q, q, f)
    area, _ = area_centroid(Q)
    return Q, np.where(empty, 0, q), np.where(empty, 0.0, area)


def _clip_windows(P, cnt, M, idx, S, tiny):
    """Splits the cells ``P`` by every max-pool window: at most ``k`` convex pieces per cell.

    Args:
      P, cnt: the layer-start cells ``[R0, V, 2]``, ``[R0]``.
      M: the site input's :class:`~partax.geometry.linearize.AffineFamily` on them (``[R0, n]``).
      idx: ``int[W, k]`` each window's flat input units (-1: a padded slot, never the maximum).
      S: ``[R0, n]`` snapping tolerance of each unit on each cell.
      tiny: minimum area of a piece (a cell with one piece above it is not split; smaller
        pieces of a split cell are dropped).

    Returns:
      ``(P, cnt, anc, slot)``: the new cells, the index of their layer-start cell and the
      selected slot of every window ``int[R, W]``.
    """
    R0 = P.shape[0]
    W = idx.shape[0]
    slot0 = np.zeros((R0, W), np.int64)
    todo = np.zeros((R0, W), bool)
    reals = [np.flatnonzero(idx[w] >= 0) for w in range(W)]
    for w in range(W):
        if len(reals[w]) == 1:
            slot0[:, w] = reals[w][0]
            continue
        dec, piece = _window_screen(P, np.arange(R0), idx[w, reals[w]], M, S)
        slot0[:, w] = reals[w][piece]
        todo[:, w] = ~dec
    cells = _Cells(P.copy(), cnt.copy(), np.arange(R0), slot0)
    for w in np.flatnonzero(todo.any(0)):
        slots = reals[w]
        units = idx[w, slots]
        rows = np.flatnonzero(todo[cells.anc[: cells.n], w])
        anc = cells.anc[rows]
        V = int(cells.cnt[rows].max())
        Pr = cells.P[rows, :V]
        dec, piece = _window_screen(Pr, anc, units, M, S)  # the cells may be smaller by now
        cells.bits[rows[dec], w] = slots[piece[dec]]
        if dec.all():
            continue
        rows, anc, Pr = rows[~dec], anc[~dec], Pr[~dec]
        cr = cells.cnt[rows]
        pieces = [_slot_piece(Pr, cr, anc, units, s, M, S) for s in range(len(units))]
        areas = np.stack([pc[2] for pc in pieces], axis=1)  # [K, m]
        kept = areas > tiny
        split = kept.sum(1) >= 2
        # one piece above the area tolerance (or none): the cell is not split, that piece's slot
        cells.bits[rows[~split], w] = slots[np.argmax(areas[~split], axis=1)]
        if not split.any():
            continue
        rows, anc, kept = rows[split], anc[split], kept[split]
        first = np.argmax(kept, axis=1)
        base = cells.bits[rows].copy()
        for s, (Q, q, _) in enumerate(pieces):
            Q, q = Q[split], q[split]
            put = first == s
            if put.any():
                cells.put(rows[put], Q[put], q[put])
                cells.bits[rows[put], w] = slots[s]
            add = kept[:, s] & ~put
            if add.any():
                nb = base[add]
                nb[:, w] = slots[s]
                cells.append(Q[add], q[add], anc[add], nb)
    return cells.view()


class _SiteClipper:
    """The callbacks of :func:`partax.layers.traverse` that clip a plane's cells site by site.

    The state is ``(offset[R, *shape], directions[2 R, *shape], generation)`` on the cells of
    ``generation`` (the number of sites clipped when it was made); a residual block's shortcut
    state, made before its body split the cells, is re-indexed to the newer cells when added.
    After site ``depth`` the state is ``None`` unless the outputs are wanted (``depth`` = the last
    code group).
    """

    def __init__(self, plane, depth: int, num_groups: int, rtol: float, area_tol: float):
        (s0, s1), (t0, t1) = plane.extent
        self.span = (s1 - s0, t1 - t0)
        self.P = np.array([[[s0, t0], [s1, t0], [s1, t1], [s0, t1]]], np.float64)
        self.cnt = np.array([4])
        self.tiny = area_tol * plane.area
        self.rtol, self.depth, self.num_groups = rtol, depth, num_groups
        self.bits, self.parents = [], []
        self.pre = self.anc = None

    def affine(self, layer, state):
        if state is None:
            return None
        o, v, g = state
        o, v = _run(_affine64, layer, o, v)
        return o, v, g

    def current(self, state):
        """``state`` re-indexed to the cells of the latest generation."""
        o, v, g = state
        if g == len(self.parents):
            return state
        sel = np.arange(self.P.shape[0])
        for par in reversed(self.parents[g:]):
            sel = par[sel]
        shape = o.shape[1:]
        return o[sel], v.reshape(o.shape[0], 2, *shape)[sel].reshape(-1, *shape), len(self.parents)

    def add(self, a, b):
        if a is None or b is None:
            return None
        a, b = self.current(a), self.current(b)
        return a[0] + b[0], a[1] + b[1], a[2]

    def site(self, layer, state):
        if state is None:
            return None
        o, v, g = state
        if g != len(self.parents):
            raise AssertionError("slice: a site's input is not on the current cells")
        R, shape = o.shape[0], o.shape[1:]
        M = AffineFamily(o.reshape(R, -1), v.reshape(R, 2, -1))
        S = _scale(M, self.span, self.rtol)
        if isinstance(layer, MaxPool):
            idx = window_indices(shape, layer.window, layer.strides, layer.padding)
            P, cnt, anc, slot = _clip_windows(self.P, self.cnt, M, idx, S, self.tiny)
            nb = index_bits(layer.size)
            code = ((slot[:, :, None] >> np.arange(nb)) & 1).reshape(len(slot), -1).astype(bool)
        elif isinstance(layer, HardTanh):  # units z - lo and z - hi, interleaved as the code's bits
            two = AffineFamily(np.stack([M.offset - layer.lo, M.offset - layer.hi], -1).reshape(R, -1),
                               np.repeat(M.directions, 2, axis=-1))
            S2 = np.repeat(S, 2, axis=-1) + self.rtol * np.tile([abs(layer.lo), abs(layer.hi)], S.shape[1])
            P, cnt, anc, code = _clip_layer(self.P, self.cnt, two, S2, self.tiny)
        elif isinstance(layer, LeakyReLU):
            P, cnt, anc, code = _clip_layer(self.P, self.cnt, M, S, self.tiny)
        else:
            raise TypeError(f"slice: no clipping for the code site {layer!r}")
        self.bits = [b[anc] for b in self.bits] + [code]
        self.parents.append(anc)
        self.P, self.cnt = P, cnt
        if len(self.bits) == self.depth:
            self.pre, self.anc = M, anc
            if self.depth < self.num_groups:
                return None
        o, v = _run(_frozen64, layer, o[anc], v.reshape(R, 2, *shape)[anc].reshape(-1, *shape), code)
        return o, v, g + 1


def clip_sites(net, plane, depth: int, rtol: float, area_tol: float) -> SiteCells:
    """Clips the extent rectangle of ``plane`` by the code sites ``1..depth`` of a general net.

    The plane is the ``k = 2`` family ``(s, t) -> origin + s u + t v`` in the net's flattened
    input space, walked through the layers (:func:`partax.layers.traverse`, float64, each
    site's code frozen from the cell's own code): see the module docstring for how each kind of
    site splits a cell.

    Args:
      net: an unstacked general :class:`partax.Net` (:func:`partax.nets.sequential`).
      plane: a :class:`~partax.geometry.plane.Plane` in its input space (``plane.dim ==
        net.input_dim``).
      depth: the number of code groups clipped (``1..net.num_hidden``).
      rtol, area_tol: see :func:`partax.geometry.slice_regions`.

    Returns:
      A :class:`SiteCells`.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Dense, Flatten, MaxPool
      >>> from partax.nets import sequential
      >>> from partax.geometry.plane import Plane
      >>> net = sequential([MaxPool((2,)), Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))],
      ...                  (2, 1))                           # max(x_0, x_1): two pieces split by x_0 = x_1
      >>> cells = clip_sites(net, Plane([0., 0.], [1., 0.], [0., 1.], ((-1, 1), (-1, 1))), 1, 1e-11, 1e-13)
      >>> area_centroid(cells.polygons)[0].tolist(), cells.bits[0][:, 0].tolist()
      ([2.0, 2.0], [False, True])
      >>> cells
      SiteCells(cells=2, depth=1, widths=(1,), logits=True)
    """
    shape = tuple(net.input_shape)
    clipper = _SiteClipper(plane, depth, net.num_hidden, rtol, area_tol)
    start = (plane.origin.reshape(1, *shape), np.stack([plane.u, plane.v]).reshape(2, *shape), 0)
    out = traverse(float64_layers(net), start, affine=clipper.affine, site=clipper.site, add=clipper.add)
    logits = None
    if out is not None:
        o, v, _ = clipper.current(out)
        R = o.shape[0]
        logits = np.concatenate([v.reshape(R, 2, -1), o.reshape(R, 1, -1)], axis=1)
    return SiteCells(clipper.P, clipper.cnt, clipper.bits, clipper.pre, clipper.anc, logits)


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
