"""Domains of the geometry routines: an axis-aligned box, or all of R^d (``None``).

A region of a ReLU net is a convex polyhedron; it is often unbounded. Quantities such as
volumes need a bounded domain, so every geometry routine takes ``domain=``: a
:class:`Box` (intersected with each region) or ``None`` (all of R^d).

Example:
    >>> import numpy as np
    >>> from partax.geometry import Box
    >>> box = Box(0.0, 1.0)
    >>> A, b = box.rows(2)
    >>> A.shape, b.tolist()
    ((4, 2), [1.0, 1.0, -0.0, -0.0])
    >>> box.volume(3)
    1.0
"""

from __future__ import annotations

import dataclasses

from typing import Optional

import jax
import numpy as np

from partax.validation import check_inputs

__all__ = ["Box", "check_domain", "check_bounded_box", "OUTSIDE", "check_outside", "check_points", "inside_box"]


def _as_bound(value, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number or a 1-D array of numbers, got {value!r}") from None
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite bounds, got {arr}")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class Box:
    """The axis-aligned box ``{z : lo <= z <= hi}``.

    Attributes:
      lo: lower corner, a scalar (every coordinate) or ``float64[d]``.
      hi: upper corner, a scalar or ``float64[d]``; ``hi > lo`` coordinate-wise.

    Example:
      >>> Box([0, -1], [1, 1]).volume(2)
      2.0
    """

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self):
        lo = _as_bound(self.lo, "lo")
        hi = _as_bound(self.hi, "hi")
        if lo.ndim == 1 and hi.ndim == 1 and lo.shape != hi.shape:
            raise ValueError(f"lo, hi: expected equal lengths, got {lo.shape[0]} and {hi.shape[0]}")
        if not np.all(np.broadcast_to(hi, np.broadcast_shapes(lo.shape, hi.shape)) > lo):
            raise ValueError(f"lo, hi: expected hi > lo in every coordinate, got lo={lo}, hi={hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def __repr__(self) -> str:
        return f"Box(lo={self.lo.tolist()}, hi={self.hi.tolist()})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Box):
            return NotImplemented
        return np.array_equal(self.lo, other.lo) and np.array_equal(self.hi, other.hi)

    def __hash__(self):
        return hash((self.lo.tobytes(), self.hi.tobytes()))

    @property
    def dim(self) -> int | None:
        """The dimension fixed by per-coordinate bounds, or None for scalar bounds."""
        if self.lo.ndim == 1:
            return int(self.lo.shape[0])
        if self.hi.ndim == 1:
            return int(self.hi.shape[0])
        return None

    def bounds(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` as ``float64[d]`` arrays.

        Raises:
          ValueError: if the box has per-coordinate bounds of another length.
        """
        d = int(d)
        if self.dim is not None and self.dim != d:
            raise ValueError(f"domain: a Box of dimension {self.dim} used in dimension {d}")
        return np.broadcast_to(self.lo, (d,)).copy(), np.broadcast_to(self.hi, (d,)).copy()

    def rows(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """The box as ``2d`` halfspaces ``A z <= b``: first ``z_j <= hi_j``, then ``-z_j <= -lo_j``.

        Returns:
          ``(A: float64[2d, d], b: float64[2d])``.
        """
        lo, hi = self.bounds(d)
        eye = np.eye(d)
        return np.concatenate([eye, -eye]), np.concatenate([hi, -lo])

    def volume(self, d: int) -> float:
        """Lebesgue volume of the box in dimension ``d``."""
        lo, hi = self.bounds(d)
        return float(np.prod(hi - lo))

    def contains(self, z) -> np.ndarray:
        """``bool[N]``: whether each row of ``z[N, d]`` lies in the (closed) box."""
        z = np.asarray(z, np.float64)
        lo, hi = self.bounds(z.shape[-1])
        return np.all((z >= lo) & (z <= hi), axis=-1)

    def sample(self, key, n: int, d: int | None = None, dtype=np.float32) -> np.ndarray:
        """``n`` points drawn uniformly from the box, as a NumPy array ``[n, d]``.

        Args:
          key: a ``jax.random`` key.
          n: number of points.
          d: dimension (required for scalar bounds).
          dtype: dtype of the result.
        """
        if d is None:
            d = self.dim
            if d is None:
                raise ValueError("d: required for a Box with scalar bounds")
        lo, hi = self.bounds(d)
        u = np.asarray(jax.random.uniform(key, (int(n), d), dtype="float32"), np.float64)
        return (lo + u * (hi - lo)).astype(dtype)


def check_domain(domain, d: int):
    """Validates ``domain`` (a :class:`Box` or None) for dimension ``d``; returns it."""
    if domain is None:
        return None
    if not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box or None (all of R^d), got {type(domain).__name__}")
    domain.bounds(d)
    return domain


def check_bounded_box(domain, d: int) -> tuple:
    """The finite bounds of ``domain``, a :class:`Box` that must be bounded, for dimension ``d``.

    Args:
      domain: a :class:`Box` (None, all of ``R^d``, is refused: a density needs a bounded box).
      d: the data's dimension.

    Returns:
      ``(lo, hi)``: ``float64[d]`` each.

    Raises:
      ValueError: None (no box), the wrong dimension, an infinite bound. TypeError: not a Box.

    Example:
      >>> import numpy as np
      >>> from partax.geometry.domains import Box, check_bounded_box
      >>> check_bounded_box(Box(0.0, 1.0), 2)[1]
      array([1., 1.])
    """
    if domain is None:
        raise ValueError("domain: a density needs a bounded partax.Box (got None, i.e. all of R^d)")
    if not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box, got {type(domain).__name__}")
    if domain.dim is not None and domain.dim != d:
        raise ValueError(f"domain: a Box of dimension {domain.dim} for data of dimension {d}")
    lo, hi = domain.bounds(d)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("domain: expected finite bounds (a bounded box)")
    return lo, hi


# --- points of a box (the densities' checks: partax.density, density_tree, density_fit, baselines) --
#: the ``outside=`` choices of every density's ``log_prob``: raise, or density 0 (``-inf``)
OUTSIDE = ("error", "-inf")


def check_outside(outside) -> str:
    """The ``outside=`` flag of a density's ``log_prob``, validated.

    Args:
      outside: ``"error"`` (points outside the box raise) or ``"-inf"`` (they get ``log_prob = -inf``).

    Returns:
      ``outside``.

    Example:
      >>> check_outside("-inf")
      '-inf'
    """
    if outside not in OUTSIDE:
        raise ValueError(f"outside: expected one of {OUTSIDE}, got {outside!r}")
    return outside


def check_points(x, d: Optional[int], name: str = "x", *, allow_empty: bool = False) -> np.ndarray:
    """Points of a density: a 2-D numeric NumPy array ``[n, d]`` of finite values.

    Args:
      x: the points (anything ``np.asarray`` takes).
      d: the expected number of columns, or None (any).
      name: the argument's name in the messages.
      allow_empty: accept ``n = 0``.

    Returns:
      ``x`` as a NumPy array, its dtype kept if floating, else ``float64``.

    Raises:
      ValueError: the wrong shape, no point (unless ``allow_empty``), NaN or inf. TypeError: not numeric.

    Example:
      >>> check_points([[0, 1], [2, 3]], 2).dtype
      dtype('float64')
    """
    x = np.asarray(check_inputs(np.asarray(x), d, name))
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one point, got an empty array of shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite points (found NaN or inf)")
    return x


def inside_box(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, outside: Optional[str] = None, name: str = "x", *,
               inside: Optional[np.ndarray] = None) -> np.ndarray:
    """Which points lie in the closed box ``[lo, hi]``; with ``outside="error"`` a point outside raises.

    Args:
      x: points ``[n, d]`` (checked, e.g. by :func:`check_points`).
      lo, hi: ``float64[d]`` the box's corners.
      outside: ``"error"`` or ``"-inf"`` (:func:`check_outside`), a ``log_prob``'s flag (its error
        names the other choice); None (default): an error, for points that must lie in the box
        (training data).
      name: the argument's name in the message.
      inside: ``bool[n]`` the answer, when it was computed elsewhere (a jitted kernel): only
        the error is raised here, the same one.

    Returns:
      ``bool[n]``.

    Raises:
      ValueError: with ``outside="error"``, naming how many points are outside and the first.

    Example:
      >>> import numpy as np
      >>> inside_box(np.array([[0.5], [2.0]]), np.zeros(1), np.ones(1), "-inf").tolist()
      [True, False]
    """
    flag = outside is not None
    outside = check_outside(outside) if flag else "error"
    if inside is None:
        inside = np.all((x >= lo) & (x <= hi), axis=1)
    if outside == "error" and not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        hint = "; pass outside='-inf' to give them log_prob -inf" if flag else ""
        raise ValueError(f"{name}: {int((~inside).sum())} point(s) outside the domain box (first: row {i}, "
                         f"{x[i].tolist()}){hint}")
    return inside
