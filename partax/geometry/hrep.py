"""H-representations: the sign-oriented rows of a frozen code, and the one row normalisation.

**Rows of a code.** A region with code ``mask`` is ``{z : z_i(z) > 0 for the active units,
z_i(z) <= 0 for the others}``; with the pre-activation ``z_i = A_i · z + beta_i`` affine on it
(:mod:`partax.geometry.linearize`), its closure is ``{z : A z <= b}`` with one
*sign-oriented* row per unit: ``-A_i · z <= beta_i`` for an active unit, ``A_i · z <=
-beta_i`` for an inactive one (:func:`code_rows`).

**Rows of the other code sites** (general nets, :func:`site_rows`). A hard-tanh unit with
code ``(z > lo, z > hi)`` gives the two sign-oriented rows of ``z - lo`` and ``z - hi`` (unit
``i``'s at rows ``2 i``, ``2 i + 1``, like its bits). A max-pool window whose code selects slot
``a`` gives one row per slot ``j``: ``z_j - z_a <= 0`` (strict for ``j < a``, since ties go to
the lowest slot; the closure is what is returned). Slot ``a``'s own row is ``0 <= 0`` and a
padded slot's ``0 <= 1`` (both dead rows, see below), so every window has ``k`` rows. Exact
repeats of a row (a max pool after a ReLU repeats the ReLU's rows) become ``0 <= 1`` too
(:func:`inert_duplicates`).

**Row normalisation** (:func:`unit_rows`), used by every LP and polytope routine of
:mod:`partax.geometry`: each row ``a · z <= b`` is divided by ``||a||``. A row is **dead**
when its normal is numerically zero: ``||a|| <= rtol * max_j ||a_j||`` over the rows of its
own polytope (``rtol = 1e-12``: rows computed in float64 from products of the net's matrices
carry rounding errors around ``1e-16`` of the magnitudes involved, so a normal that small has
no direction; an exactly zero normal is always dead). A dead row reads ``0 · z <= b``: it
holds everywhere or nowhere, so

* if ``b >= 0`` (``b > 0`` for a *strict* row ``0 · z < b``, e.g. an active unit whose
  pre-activation is a constant) it is always satisfied: it becomes the inert row
  ``0 · z <= 1`` and is marked not ``live`` (redundant, never a facet);
* otherwise it is never satisfied: it becomes ``0 · z <= -1``, is marked not ``live``, and its
  polytope is **empty** (``empty[...] = True``; an LP over it is infeasible).

Example:
    >>> import numpy as np
    >>> from partax.geometry.hrep import unit_rows
    >>> A = np.array([[[2.0, 0.0], [0.0, 0.0], [0.0, 1e-20]]])
    >>> r = unit_rows(A, np.array([[4.0, 3.0, -1.0]]))
    >>> r.A[0].tolist(), r.b.tolist(), r.live.tolist(), r.empty.tolist()
    ([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], [[2.0, 1.0, -1.0]], [[True, False, False]], [True])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from partax.layers import HardTanh, MaxPool, window_indices

__all__ = ["DEAD_RTOL", "UnitRows", "code_rows", "site_rows", "inert_duplicates", "unit_rows", "append_rows"]

DEAD_RTOL = 1e-12  # a normal below this fraction of its polytope's largest is dead


class UnitRows(NamedTuple):
    """Rows normalised by :func:`unit_rows`.

    Attributes:
      A: ``float64[..., m, k]`` unit normals (zero for dead rows).
      b: ``float64[..., m]`` bounds over the norms (1 or -1 for dead rows).
      live: ``bool[..., m]`` the rows that are not dead.
      empty: ``bool[...]`` polytopes with a dead row that is never satisfied.
    """

    A: np.ndarray
    b: np.ndarray
    live: np.ndarray
    empty: np.ndarray


def unit_rows(A, b, *, strict=None, rtol: float = DEAD_RTOL) -> UnitRows:
    """Unit-norm rows with the dead-row rule of the module docstring.

    Args:
      A: ``[..., m, k]`` row normals.
      b: ``[..., m]`` bounds.
      strict: optional ``bool[..., m]``: rows that stand for a strict inequality (``<``);
        it only matters for dead rows (``0 < b`` needs ``b > 0``).
      rtol: the dead-row threshold relative to the polytope's largest normal.

    Returns:
      :class:`UnitRows`.
    """
    A = np.asarray(A, np.float64)
    b = np.asarray(b, np.float64)
    nrm = np.linalg.norm(A, axis=-1)
    top = np.max(nrm, axis=-1, keepdims=True, initial=0.0)
    live = nrm > rtol * top
    safe = np.where(live, nrm, 1.0)
    Au = np.where(live[..., None], A / safe[..., None], 0.0)
    holds = b >= 0 if strict is None else np.where(strict, b > 0, b >= 0)
    bu = np.where(live, b / safe, np.where(holds, 1.0, -1.0))
    empty = np.any(~live & ~holds, axis=-1)
    return UnitRows(Au, bu, live, empty)


def code_rows(maps, masks, xp=np):
    """Sign-oriented rows of frozen codes (see the module docstring).

    Args:
      maps: one ``(A[..., n_l, k], beta[..., n_l])`` per layer: the pre-activations
        ``z = A @ t + beta`` (e.g. :class:`~partax.geometry.LayerMap`, or
        ``(family.rows, family.offset)`` of an :class:`~partax.geometry.linearize.AffineFamily`).
      masks: the codes ``bool[..., n_l]``, one per layer.
      xp: the array module.

    Returns:
      ``(A[..., m, k], b[..., m])`` with ``m = sum(n_l)``, layers in order.
    """
    As, bs = [], []
    for (A, beta), mask in zip(maps, masks):
        sign = xp.where(mask, -1.0, 1.0)
        As.append(sign[..., None] * A)
        bs.append(-sign * beta)
    return xp.concatenate(As, axis=-2), xp.concatenate(bs, axis=-1)


def site_rows(maps, masks, sites):
    """Rows of frozen codes of a general net's code sites (see the module docstring).

    Args:
      maps: one ``(A[N, n, k], beta[N, n])`` per site: its input ``z = A @ t + beta``
        (flattened, as in :class:`~partax.geometry.LocalMaps`).
      masks: the codes ``bool[N, bits]``, one per site.
      sites: ``(layer, input_shape)`` per site (:func:`partax.geometry.linearize.net_sites`).

    Returns:
      ``(A[N, m, k], b[N, m])``, sites in order: ReLU / leaky ReLU one row per unit, hard-tanh
      two, max pool ``k`` per window.

    Example:
      >>> from partax.layers import MaxPool
      >>> A = np.eye(2)[None]                       # z = t in R^2, one window of two slots
      >>> rows, b = site_rows([(A, np.zeros((1, 2)))], [np.array([[True]])], [(MaxPool((2,)), (2, 1))])
      >>> rows[0].tolist(), b[0].tolist()           # slot 1 selected: z_0 - z_1 <= 0, then 0 <= 0
      ([[1.0, -1.0], [0.0, 0.0]], [0.0, 0.0])
    """
    As, bs = [], []
    for (A, beta), mask, (layer, shape) in zip(maps, masks, sites):
        A = np.asarray(A, np.float64)
        beta = np.asarray(beta, np.float64)
        mask = np.asarray(mask, bool)
        if isinstance(layer, HardTanh):
            A2 = np.repeat(A, 2, axis=-2)
            beta2 = np.stack([beta - layer.lo, beta - layer.hi], axis=-1).reshape(*beta.shape[:-1], -1)
            a, c = code_rows([(A2, beta2)], [mask])
        elif isinstance(layer, MaxPool):
            idx = window_indices(shape, layer.window, layer.strides, layer.padding)  # [W, k], -1 padded
            N, n, k = A.shape[0], A.shape[-2], A.shape[-1]
            slots = layer.slots(mask)  # [N, W]
            sel = idx[np.arange(idx.shape[0])[None], slots]  # [N, W]: the selected input unit
            Az = np.concatenate([A, np.zeros((N, 1, k))], axis=1)  # row n: a padded slot's zero
            bz = np.concatenate([beta, np.zeros((N, 1))], axis=1)
            j = np.where(idx < 0, n, idx)  # [W, slots]
            rows = Az[:, j] - Az[np.arange(N)[:, None], sel][:, :, None]  # [N, W, slots, k]
            bound = bz[np.arange(N)[:, None], sel][:, :, None] - bz[:, j]
            # a padded slot (-inf) can never be the maximum: its row is the inert 0 <= 1
            rows = np.where((idx < 0)[None, :, :, None], 0.0, rows)
            bound = np.where((idx < 0)[None], 1.0, bound)
            a, c = rows.reshape(N, -1, k), bound.reshape(N, -1)
        else:
            a, c = code_rows([(A, beta)], [mask])
        As.append(a)
        bs.append(c)
    return inert_duplicates(np.concatenate(As, axis=-2), np.concatenate(bs, axis=-1))


def inert_duplicates(A, b):
    """Exact repeats of a row (same normal and bound, bit for bit) become the inert ``0 <= 1``.

    A max pool after a ReLU repeats rows: a window's slot whose unit is inactive is the
    constant 0, so its row ``0 - z_a <= 0`` is the active unit ``a``'s own ReLU row. The
    region is the same without the copies, and LPs over the facets stay non-degenerate.

    Args:
      A: ``[N, m, k]``; b: ``[N, m]``.

    Returns:
      ``(A, b)`` with every repeat after the first replaced (same shapes).
    """
    A = np.array(A, np.float64)
    b = np.array(b, np.float64)
    for n in range(A.shape[0]):
        rows = np.concatenate([A[n], b[n][:, None]], axis=1)
        _, first = np.unique(rows, axis=0, return_index=True)
        dup = np.ones(len(rows), bool)
        dup[first] = False
        dup &= np.any(A[n] != 0, axis=1)  # zero rows are dead already
        A[n, dup] = 0.0
        b[n, dup] = 1.0
    return A, b


def append_rows(A, b, extra_A, extra_b):
    """Rows ``extra_A z <= extra_b`` (shared by every polytope) appended to each polytope.

    Args:
      A: ``[N, m, k]``; b: ``[N, m]``; extra_A: ``[e, k]``; extra_b: ``[e]``.

    Returns:
      ``(A[N, m + e, k], b[N, m + e])``.
    """
    n = A.shape[0]
    A = np.concatenate([A, np.broadcast_to(extra_A, (n,) + tuple(extra_A.shape))], axis=1)
    b = np.concatenate([b, np.broadcast_to(extra_b, (n,) + tuple(extra_b.shape))], axis=1)
    return A, b
