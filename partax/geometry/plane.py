"""A rectangle of a 2D affine plane in input space: :class:`Plane` (slices).

The domain of :func:`partax.geometry.slice_regions`: ``x = origin + s u + t v`` for ``(s, t)``
in the ``extent`` rectangle; :meth:`Plane.through` spans the plane of three inputs.

Points and directions may be given flat (``[d]``) or in a net's per-example input shape (an
image ``(H, W, C)``, channels last): they are stored flat (row-major, as
:func:`partax.nets.flat_inputs` flattens inputs) and the plane remembers the ``shape``.

Example:
    >>> from partax.geometry.plane import Plane
    >>> Plane([0., 0., 1.], [1., 0., 0.], [0., 1., 0.], ((0, 2), (0, 1))).area
    2.0
"""

from __future__ import annotations

import dataclasses

import numpy as np

from partax.validation import check_vector

__all__ = ["Plane"]


@dataclasses.dataclass(frozen=True, eq=False)
class Plane:
    """A rectangle of a 2D affine plane in input space: ``x = origin + s u + t v``.

    Attributes:
      origin: ``float64[d]`` (given flat or shaped: stored flat, row-major).
      u: ``float64[d]``.
      v: ``float64[d]`` (``u`` and ``v`` linearly independent).
      extent: ``((s0, s1), (t0, t1))`` with ``s0 < s1``, ``t0 < t1``.
      shape: the per-example input shape of the points (default: the shape of the first of
        ``origin``, ``u``, ``v`` given shaped, else ``(d,)``); ``prod(shape) == d``.

    Example:
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-1, 1), (-2, 2)))
      >>> p.points([[0.5, 1.0]]).tolist(), p.area
      ([[0.5, 1.0]], 8.0)
      >>> q = Plane(np.zeros((2, 2, 1)), np.eye(4)[0].reshape(2, 2, 1), np.eye(4)[3])
      >>> q.dim, q.shape, q.u.tolist()
      (4, (2, 2, 1), [1.0, 0.0, 0.0, 0.0])
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    extent: tuple = ((-1.0, 1.0), (-1.0, 1.0))
    shape: tuple = None

    def __post_init__(self):
        (origin, u, v), shape = _flat_points((self.origin, self.u, self.v), ("origin", "u", "v"), self.shape)
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
        object.__setattr__(self, "shape", shape)

    @property
    def dim(self) -> int:
        return int(self.origin.shape[0])

    @property
    def area(self) -> float:
        """Area of the extent rectangle in ``(s, t)`` units."""
        (s0, s1), (t0, t1) = self.extent
        return (s1 - s0) * (t1 - t0)

    def points(self, st) -> np.ndarray:
        """Input-space points ``origin + s u + t v`` of ``st`` ``[N, 2]`` -> ``float64[N, d]``
        (flat, row-major: ``.reshape(-1, *plane.shape)`` gives them in the input shape)."""
        st = np.asarray(st, np.float64)
        if st.ndim != 2 or st.shape[1] != 2:
            raise ValueError(f"st: expected shape (N, 2), got {st.shape}")
        return self.origin[None] + st[:, :1] * self.u[None] + st[:, 1:] * self.v[None]

    def coords(self, x) -> np.ndarray:
        """Least-squares ``(s, t)`` of input points ``x`` ``[N, d]`` or ``[N, *shape]`` (exact for
        points on the plane)."""
        x = np.asarray(x, np.float64)
        if x.ndim >= 2 and x.shape[1:] == self.shape:
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            alt = "" if self.shape == (self.dim,) else f" or (N, {', '.join(map(str, self.shape))})"
            raise ValueError(f"x: expected shape (N, {self.dim}){alt}, got {x.shape}")
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
          x1, x2, x3: inputs ``[d]`` or in a net's input shape (e.g. images ``(H, W, C)``; flat
            and shaped may be mixed when the sizes agree), not collinear.
          margin: half-side of the square in units of the circumradius (``> 1``).

        Returns:
          A :class:`Plane` (flat vectors; ``shape`` the points' shape);
          ``plane.coords(np.stack([x1, x2, x3]))`` gives their ``(s, t)``.

        Example:
          >>> p = Plane.through([0., 0., 0.], [2., 0., 0.], [0., 2., 0.])
          >>> p.origin.tolist(), round(p.extent[0][1], 6)
          ([1.0, 1.0, 0.0], 2.12132)
          >>> Plane.through(*np.eye(4).reshape(4, 2, 2, 1)[:3]).shape
          (2, 2, 1)
        """
        (x1, x2, x3), shape = _flat_points((x1, x2, x3), ("x1", "x2", "x3"))
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
        return cls(centre, u, v, ((-h, h), (-h, h)), shape)


def _flat_points(values, names, shape=None):
    """Flattens points / directions given flat or in one common shape.

    Args:
      values: the arrays (each ``[d]`` or of one shared shape with ``prod == d``).
      names: their argument names (for the messages).
      shape: the expected per-example shape, or None (the first shaped value's, else ``(d,)``).

    Returns:
      ``(flat float64[d] arrays, shape)``.
    """
    arrs = [np.asarray(v, np.float64) for v in values]
    if shape is not None:
        try:
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape: expected a tuple of positive ints, got {shape!r}") from None
        if not shape or min(shape) < 1:
            raise ValueError(f"shape: expected a tuple of positive ints, got {shape!r}")
    else:
        shaped = [a.shape for a in arrs if a.ndim > 1]
        shape = shaped[0] if shaped else (arrs[0].shape if arrs[0].ndim == 1 else None)
        if shape is None:
            raise ValueError(f"{names[0]}: expected a vector of shape (d,) or a point in the input shape, "
                             f"got shape {arrs[0].shape}")
    d = int(np.prod(shape))
    want = f"({d},)" if len(shape) == 1 else f"({d},) or {shape}"
    out = []
    for a, name in zip(arrs, names):
        if not (a.shape == shape or a.shape == (d,)):
            raise ValueError(f"{name}: expected a vector of shape {want}, got shape {a.shape}")
        out.append(check_vector(a.reshape(d), name, d))
    return out, shape
