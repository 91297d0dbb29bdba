"""Crossing codes: the region across a facet of a prefix region, exactly (enumeration).

Step 5 of :func:`partax.geometry.enumerate_regions` (see its module docstring): across the
relative interior of a facet ``F`` of a prefix region ``P`` lies exactly one region, whose
code follows from ``P``'s alone — the units that vanish on all of ``F`` take the sign of their
derivative along the facet's outward normal, pushed layer by layer through the linear parts
of the layers (:mod:`partax.geometry.linearize`) with the crossing code's slopes; every other
unit keeps its bit. :func:`step_across` is the rescue when such a code is found empty
(rounding): it reads the float64 code at points just beyond the facet.

**General nets** (:func:`site_crossing_codes`). The same argument holds for every code site:
a function of the region's rows (a ReLU unit's ``z``, a hard-tanh unit's ``z - lo`` and
``z - hi``, a max-pool window's ``z_j - z_a``) that vanishes somewhere in the relative interior
of ``F`` vanishes on all of ``F`` (it is ``<= 0`` on ``P``), so it is proportional to the facet's
affine function (or identically 0 on ``P``); every other one keeps its strict sign just beyond
``F``. The sites are then visited in order: a vanishing unit takes the sign of its
derivative along the outward normal (pushed through the layers with the *new* codes of the
earlier sites); a max-pool window's new argmax is, among the slots tied with its argmax on
``F`` (the vanishing ``z_j - z_a``), the one with the largest derivative, ties to the lowest
slot. A crossing may so change many bits: a window's index moves to another slot, a
hard-tanh unit between its three states, and downstream units that vanish on ``F`` as well.

Example (general net):
    >>> from partax.geometry.code_regions import hidden_layers, codes64, region_unit_rows
    >>> from partax.geometry.crossing import site_crossing_codes
    >>> from partax.layers import Flatten, Dense, MaxPool
    >>> from partax.nets import sequential
    >>> net = sequential([MaxPool((2,)), Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))],
    ...                  (2, 1))                                    # one window: argmax of (x, y)
    >>> cs = hidden_layers(net, 1)
    >>> bits = codes64(cs, np.array([[1.0, 0.0]]))                 # slot 0 wins: x > y
    >>> Au, bu, live, maps = region_unit_rows(cs, bits, np.zeros((0, 2)), np.zeros(0))
    >>> bits.tolist(), site_crossing_codes(cs, bits, Au, bu, maps, np.array([0]), np.array([1])).tolist()
    ([[False]], [[True]])

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

import functools

import jax
import jax.numpy as jnp
import numpy as np

from partax.geometry.code_regions import BLOCK, CodeSites, HiddenLayers, SiteMaps, codes64, split_bits
from partax.geometry.linearize import activate
from partax.layers import HardTanh, MaxPool, index_bits, traverse, window_indices

__all__ = ["crossing_codes", "site_crossing_codes", "changed_units", "step_across"]

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


_DERIV_RTOL = 1e-12  # a derivative within this fraction of its terms' size is 0
_ZERO_RTOL = 1e-12  # a function whose normal and constant are within this of the region's scale is 0


def _vanishing(W, c, a, b, top, ctop):
    """``bool[...]``: the functions ``W · x + c`` that vanish on the hyperplane ``a · x = b``.

    Proportional to ``a · x - b`` (``a`` a unit normal) up to :data:`_SAME_ROW` relative to the
    function's norm, or identically zero (normal and constant below ``_ZERO_RTOL`` of the
    scales ``top``, ``ctop``).

    Args:
      W: ``[F, ..., d]`` normals; c: ``[F, ...]`` constants; a: ``[F, d]``; b: ``[F]``;
      top, ctop: ``[F]`` the scales of the normals and of the constants.
    """
    extra = (slice(None),) + (None,) * (W.ndim - 2)
    lam = np.einsum("f...k,fk->f...", W, a)
    resid = np.max(np.abs(W - lam[..., None] * a[extra]), axis=-1)
    nrm = np.linalg.norm(W, axis=-1)
    off = np.abs(c + lam * b[extra])
    return ((resid <= _SAME_ROW * nrm + _ZERO_RTOL * top[extra])
            & (off <= _SAME_ROW * nrm * (1.0 + np.abs(b[extra])) + _ZERO_RTOL * ctop[extra]))


def _site_ties(cs: CodeSites, maps: SiteMaps, groups, normal, offset, frow):
    """Per site ``1..depth``, the functions of the region's rows that vanish on each facet.

    ReLU / leaky ReLU ``bool[F, n]``; hard-tanh ``bool[F, 2 n]`` (``z - lo``, ``z - hi``
    interleaved, like the bits); max pool ``bool[F, W, k]``, the slots tied with the window's
    argmax on the facet (the argmax itself included). The facet's own row is always one.
    """
    top = np.zeros(len(frow))
    ctop = np.ones(len(frow))
    for A, beta in zip(maps.A, maps.beta):
        top = np.maximum(top, np.max(np.linalg.norm(A, axis=-1), axis=1, initial=0.0))
        ctop = np.maximum(ctop, np.max(np.abs(beta), axis=1, initial=0.0))
    out = []
    start = 0
    F = len(frow)
    for (layer, shape), A, beta, g in zip(cs.prefix_sites, maps.A, maps.beta, groups):
        if isinstance(layer, MaxPool):
            idx = window_indices(shape, layer.window, layer.strides, layer.padding)  # [W, k]
            W_, k = idx.shape
            sel = idx[np.arange(W_)[None], layer.slots(g)]  # [F, W]
            j = np.where(idx < 0, 0, idx)
            rows = np.arange(F)[:, None]
            dA = A[rows[:, :, None], j[None]] - A[rows, sel][:, :, None]  # [F, W, k, d]
            db = beta[rows[:, :, None], j[None]] - beta[rows, sel][:, :, None]
            tie = _vanishing(dA, db, normal, offset, top, ctop) & (idx >= 0)[None]
            tie |= (idx[None] == sel[..., None])
            n = W_ * k
        elif isinstance(layer, HardTanh):
            c = np.stack([beta - layer.lo, beta - layer.hi], axis=-1)  # [F, n, 2]
            tie = _vanishing(np.repeat(A[:, :, None], 2, axis=2), c, normal, offset, top, ctop).reshape(F, -1)
            n = tie.shape[1]
        else:
            tie = _vanishing(A, beta, normal, offset, top, ctop)
            n = tie.shape[1]
        mine = np.flatnonzero((frow >= start) & (frow < start + n))  # the facet's own row
        flat = tie.reshape(F, -1)
        flat[mine, frow[mine] - start] = True
        out.append(flat.reshape(tie.shape))
        start += n
    return out


@functools.partial(jax.jit, static_argnames=("input_shape", "depth"))
def _crossing_kernel(layers, normal, old, ties, input_shape, depth):
    """The new codes of the sites ``1..depth`` just beyond each facet (see the module docstring)."""
    F = normal.shape[0]
    new = []
    count = [0]

    def affine(layer, state):
        if state is None:
            return None
        v, m = state
        return layer.linear(v), jnp.maximum(layer.magnitude(m) - layer.magnitude(jnp.zeros_like(m)), 0.0)

    def site(layer, state):
        i = count[0]
        count[0] += 1
        if state is None or i >= depth:
            return None
        v, m = state
        if isinstance(layer, MaxPool):
            tie = ties[i]  # [F, W, k]
            gw = layer.windows(v).reshape(F, -1, layer.size)
            mw = jnp.where(tie, layer.windows(m).reshape(F, -1, layer.size), 0.0)
            best = jnp.max(jnp.where(tie, gw, -jnp.inf), axis=-1, keepdims=True)
            eps = 2 * _DERIV_RTOL * jnp.max(mw, axis=-1, keepdims=True)
            slot = jnp.argmax(tie & (gw >= best - eps), axis=-1).astype(jnp.int32)  # the lowest of the best
            nb = index_bits(layer.size)
            b = ((slot[..., None] >> jnp.arange(nb, dtype=jnp.int32)) & 1).reshape(F, -1).astype(bool)
        else:
            g, eps = v.reshape(F, -1), _DERIV_RTOL * m.reshape(F, -1)
            if isinstance(layer, HardTanh):
                g, eps = jnp.repeat(g, 2, axis=1), jnp.repeat(eps, 2, axis=1)
            b = jnp.where(ties[i], g > eps, old[i])
        new.append(b)
        return layer.frozen_linear(v, b), jnp.abs(layer.frozen_linear(m, b))

    def add(a, b):
        return None if a is None or b is None else (a[0] + b[0], a[1] + b[1])

    traverse(layers, (normal.reshape(F, *input_shape), jnp.abs(normal).reshape(F, *input_shape)), affine=affine,
             site=site, add=add)
    return jnp.concatenate(new, axis=1)


def _padded(a):
    """``a`` padded with zeros along its first axis to :data:`~partax.geometry.code_regions.BLOCK` rows."""
    return np.concatenate([a, np.zeros((BLOCK - len(a),) + a.shape[1:], a.dtype)])


def site_crossing_codes(cs: CodeSites, bits, Au, bu, maps: SiteMaps, own, frow) -> np.ndarray:
    """The code of the region across each facet of a general net's regions (module docstring).

    Args:
      cs: the code sites.
      bits: ``bool[B, n_tot]`` codes of the regions; ``Au, bu``: their unit-norm rows (the first
        ``num_rows(cs)`` are the sites', :func:`partax.geometry.code_regions.region_unit_rows`);
      maps: the regions' :class:`~partax.geometry.code_regions.SiteMaps`;
      own, frow: ``int64[F]`` region and site row of each facet.

    Returns:
      ``bool[F, n_tot]``: the codes just beyond the facets.
    """
    n_tot = bits.shape[1]
    F = len(own)
    out = np.empty((F, n_tot), bool)
    with jax.enable_x64(True):
        for s in range(0, F, BLOCK):
            o, u = own[s:s + BLOCK], frow[s:s + BLOCK]
            n = len(o)
            normal, offset = Au[o, u], bu[o, u]
            groups = split_bits(cs, bits[o])
            ties = _site_ties(cs, maps.take(o), groups, normal, offset, u)
            new = _crossing_kernel(cs.layers, jnp.asarray(_padded(normal)),
                                   tuple(jnp.asarray(_padded(g)) for g in groups),
                                   tuple(jnp.asarray(_padded(t)) for t in ties), cs.input_shape, cs.depth)
            out[s:s + n] = np.asarray(new)[:n]
    return out


def changed_units(hl, old, new) -> np.ndarray:
    """Per crossing, the number of units whose code changed (a max-pool window counts once).

    Args:
      hl: :class:`HiddenLayers` (units are bits) or :class:`CodeSites` (hard-tanh units have two
        bits, max-pool windows ``ceil(log2 k)``).
      old, new: ``bool[F, n_tot]`` codes before and after each crossing.

    Returns:
      ``int64[F]`` (1 for a generic crossing).
    """
    diff = np.asarray(old) != np.asarray(new)
    if not isinstance(hl, CodeSites):
        return np.sum(diff, axis=1)
    total = np.zeros(len(diff), np.int64)
    for (layer, _), g in zip(hl.prefix_sites, split_bits(hl, diff)):
        per = index_bits(layer.size) if isinstance(layer, MaxPool) else 2 if isinstance(layer, HardTanh) else 1
        total += np.any(g.reshape(len(g), g.shape[1] // per, per), axis=2).sum(axis=1)
    return total


def step_across(hl, parent, row, fpt, pts_all, rad_all, lo, hi):
    """Codes met just across facets, for crossings whose crossing code was found empty.

    From the parent region's interior point through the facet's centroid, points slightly
    beyond the facet (at three distances); the float64 code there names a real region.

    Args:
      hl: the hidden layers (:class:`HiddenLayers` or :class:`CodeSites`).
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
