"""A rectangle of a 2D affine plane in input space: :class:`Plane` (slices).

The domain of :func:`partax.geometry.slice_regions`: ``x = origin + s u + t v`` for ``(s, t)``
in the ``extent`` rectangle; :meth:`Plane.through` spans the plane of three inputs.

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
        origin = check_vector(self.origin, "origin")
        d = origin.shape[0]
        u = check_vector(self.u, "u", d)
        v = check_vector(self.v, "v", d)
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
        x1 = check_vector(x1, "x1")
        d = x1.shape[0]
        x2 = check_vector(x2, "x2", d)
        x3 = check_vector(x3, "x3", d)
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
