"""Piecewise-constant densities over the regions of a ReLU network (regions as bins).

:func:`estimate` turns the ``prefix`` partition of a bounded input box into a histogram
whose bins are the network's linear regions: every region ``R`` of the box, occupied by
training data or not, gets its volume ``V_R`` and the density

    ``p(x) = (n_R + a) / (N + a K) / V_R``   for the region ``R`` that holds ``x``,

with ``n_R`` training points in ``R`` out of ``N``, ``K`` regions in the box and the
additive smoothing ``a`` (default ``0.5``, the Jeffreys / Krichevsky–Trofimov pseudo-count;
``a = 0`` is the plain histogram, whose empty regions have density 0). The density integrates
to 1 over the box by construction (``sum_R (n_R + a) / (N + a K) = 1``).

**Volumes.**

* ``volumes="exact"`` (``2 <= d <= 6``): :func:`partax.geometry.enumerate_regions` lists every
  region of the box with its exact volume (the enumeration must certify completeness, else a
  ``RuntimeError``: no silent gap). A point is looked up by the net's own (jitted) region key;
  the rare point whose float32 key is not among the enumerated (float64) keys — it lies
  within float32 rounding of a boundary — is looked up again with its float64 code, and a
  point still not found raises ``RuntimeError``.
* ``volumes="mc"`` (any dimension): ``M`` uniform reference samples of the box go through
  :func:`partax.partition`; a region hit ``m_R`` times gets ``V_R = V m_R / M`` with the
  binomial standard error ``V sqrt(q (1 - q) / M)``, ``q = m_R / M``. Regions that no reference
  sample hit cannot be given a volume of their own, and are **never** given volume 0: they are
  pooled into one explicit *residual* bin — the union of every region of the box the
  reference stream missed — whose volume is the Good–Turing estimate of the missed mass,
  ``V max(f_1, 1) / M`` (``f_1``: regions hit exactly once), the hit regions' volumes being
  scaled by ``1 - max(f_1, 1) / M`` so that the volumes still sum to ``V``. Training points in
  regions no reference sample hit count into the residual bin, and so does every later point
  whose key is not among the hit regions. The residual bin is the last row of the arrays
  (``resolved[-1] == False``, key ``0``); ``K`` counts it as one region.
* ``volumes="auto"``: exact for ``2 <= d <= 6``, Monte Carlo otherwise.

Points outside the box raise a ``ValueError`` by default; ``outside="-inf"`` gives them
``log_prob = -inf`` instead (the checks of points and of the flag are
:func:`partax.geometry.domains.check_points` and :func:`partax.geometry.domains.inside_box`, shared by
every density here).

**Lookup.** :meth:`PartitionDensity.log_prob` (and ``index``) is one jitted kernel per chunk of
``2^16`` inputs: the box test, the finiteness test, the forward pass, the region key, and the
row, found by a branch-free binary search of the sorted keys within the key's bucket (keys are
uniform hashes; the ``~R`` buckets of their top bits hold about one key each, so 2–4 steps
suffice); the host then gathers ``log_densities`` by row. Inputs in the net's dtype (float32)
go through it in one pass, the box's float64 bounds rounded inwards to float32 so that the
test is the float64 comparison's answer; other dtypes (and latent tie-breaks) are checked in
their own dtype first and then cast, as :func:`partax.region_ids` would. The results are those
of the NumPy lookup they replace, bit for bit: the same keys, rows and ``log_densities``. On a
shared 2-core CPU at ``10^6`` inputs of an 8-16-16-1 net (145,715 regions from ``2^20``
reference samples), ``log_prob`` took 0.09–0.11 s, 2.9–3.7 times the partition's throughput on
the same inputs (the NumPy lookup before it: 0.29–0.51 s, 0.9–1.3 times); with 359,905 regions
(``10^7`` samples, under heavier load) 0.24 s, 4.7 times (the bench's density workload, ``bench_density``).

Baselines with the same interface (``log_prob``, ``entropy``, ``sample``): :func:`grid` (a
uniform histogram of the box), :func:`kde` (Gaussian KDE, bandwidth by held-out likelihood),
and the Kozachenko–Leonenko kNN entropy :func:`knn_entropy`. Everything is in nats.

**Back-off** (``backoff=True``, instead of the pseudo-count): an empty region takes the density
of its nearest occupied prefix ancestor (layer ``l`` refines layer ``l - 1``), the way a
density tree backs off; the result is renormalised to mass 1 (see :func:`estimate`).

**Latent spaces.** ``estimate(net, x, domain, scope="suffix", layer=l)`` with ``l >= 2`` is the
density of the representation ``h^{l-1}`` over its own bins, the partition of that latent space
by layers ``l..L``, in a box around the training points' codes (:func:`latent_box`);
``scope="layer"`` bins it by layer ``l`` alone. It is the prefix density of :func:`sub_net`
on :func:`latent_codes`. :func:`density_probe` makes this a :class:`partax.Tracer` probe: per
layer and checkpoint, the held-out log-likelihood and the entropy.

**Trained partitions.** :func:`fit` (in :mod:`partax.density_fit`) trains a net whose
partition is a good histogram of the data.

**High dimension** (``volumes="hit_and_run"``): where uniform reference samples miss almost
every region (64-D digits), each *occupied* region (one training point names it) gets its own
randomized volume, :func:`partax.geometry.hit_and_run.region_volumes` (multiphase hit-and-run
from its Chebyshev centre, with a standard error), and the rest of the box — every unoccupied
region, and every occupied one whose estimate came back flagged (not converged, not round,
failed: ``volume_status``, shown in the repr as ``pooled_flagged``) — is the explicit residual
bin, of volume ``V - sum of the estimates`` (its error the root sum of squares of theirs). If
the estimates leave no positive residual the result is a ``RuntimeError``, not a clipped
volume. ``"auto"`` does not pick it: in 32–64 D the walk's estimates read low and many come back
``NOT_ROUND`` (see :mod:`partax.geometry.hit_and_run`), so it is asked for by name.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from partax.coding import codes_and_keys, keys_from_bits, region_ids
from partax.density_fit import FitHistory, fit
from partax.density_tree import DensityTree, MlpackDensityTree, tree
from partax.engine import partition
from partax.geometry import lp
from partax.geometry.code_regions import codes64, hidden_layers, split_bits
from partax.geometry.domains import Box, check_bounded_box, check_outside, check_points, inside_box
from partax.geometry.enumerate import enumerate_regions
from partax.geometry.hit_and_run import OK as _HR_OK
from partax.geometry.hit_and_run import region_volumes
from partax.geometry.local import halfspaces_batch
from partax.nets import Net
from partax.scopes import scope_range
from partax.sources import uniform_box
from partax.validation import check_inputs, check_net

__all__ = ["PartitionDensity", "GridDensity", "KDEDensity", "HeldOutLogLik", "estimate", "heldout_loglik",
           "grid", "kde", "knn_entropy", "latent_codes", "latent_box", "sub_net", "density_probe", "fit", "FitHistory",
           # the density-tree baseline (its own module, re-exported with the other baselines)
           "tree", "DensityTree", "MlpackDensityTree"]

_CHUNK = 1 << 16


class _DefaultSmoothing(float):
    """The default pseudo-count 0.5, told apart from an explicit 0.5 (``backoff=True`` turns
    the default into 0; an explicit positive value with ``backoff`` is an error)."""

    def __repr__(self) -> str:
        return "0.5"


_DEFAULT_SMOOTHING = _DefaultSmoothing(0.5)
_VOLUME_METHODS = ("auto", "exact", "mc", "hit_and_run")


# --- validation (points and the outside flag: partax.density_tree's checks, shared) ------
def _check_smoothing(a) -> float:
    if isinstance(a, bool) or not isinstance(a, (int, float, np.integer, np.floating)) or not np.isfinite(a) or a < 0:
        raise ValueError(f"smoothing: expected a finite number >= 0, got {a!r}")
    return float(a)


def _as_key(key) -> jax.Array:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    return key


def _smoothed(counts: np.ndarray, a: float, extra_empty: int = 0) -> np.ndarray:
    """``(n_R + a) / (N + a K)`` (``K = len(counts) + extra_empty``)."""
    N = float(counts.sum())
    K = len(counts) + extra_empty
    den = N + a * K
    if den <= 0:
        raise ValueError("smoothing: with no training point in the box, smoothing must be > 0")
    return (counts + a) / den


def _plugin_entropy(P: np.ndarray, V: np.ndarray) -> float:
    """``-sum P log(P / V)`` over bins with ``P > 0`` (nats)."""
    m = P > 0
    return float(-np.sum(P[m] * (np.log(P[m]) - np.log(V[m]))))


class HeldOutLogLik(NamedTuple):
    """Mean held-out log-likelihood (nats per point).

    Attributes:
      mean: mean of ``log_prob`` over the points (``-inf`` if any point has density 0).
      stderr: standard error of the mean (``std / sqrt(n)``; NaN if ``mean`` is not finite or
        ``n < 2``). The test NLL is ``-mean``.
      n: number of points.
      num_zero: points with density 0 (``log_prob = -inf``: outside the box with
        ``outside='-inf'``, or in an empty region with ``smoothing=0``).
    """

    mean: float
    stderr: float
    n: int
    num_zero: int


def _summary(lp: np.ndarray) -> HeldOutLogLik:
    n = int(lp.shape[0])
    zero = int(np.sum(np.isneginf(lp)))
    if zero or n == 0:
        return HeldOutLogLik(float("-inf") if zero else float("nan"), float("nan"), n, zero)
    se = float(np.std(lp, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return HeldOutLogLik(float(np.mean(lp)), se, n, zero)


def heldout_loglik(density, x, *, outside: str = "error") -> HeldOutLogLik:
    """Mean log-likelihood of held-out points under any density of this module.

    Args:
      density: a :class:`PartitionDensity`, :class:`GridDensity` or :class:`KDEDensity`
        (anything with ``log_prob(x, outside=...)``; KDE ignores ``outside``).
      x: points ``[N, d]``.
      outside: ``"error"`` (default) or ``"-inf"``, for points outside the box.

    Returns:
      :class:`HeldOutLogLik` (the test NLL is ``-mean``, in nats).

    Example:
      >>> import numpy as np
      >>> from partax.geometry import Box
      >>> g = grid(np.random.default_rng(0).uniform(size=(500, 2)), Box(0, 1), 4)
      >>> r = heldout_loglik(g, np.random.default_rng(1).uniform(size=(500, 2)))
      >>> abs(r.mean) < 0.1, r.n
      (True, 500)
    """
    if isinstance(density, KDEDensity):
        lp = density.log_prob(x)
    else:
        lp = density.log_prob(x, outside=outside)
    return _summary(np.asarray(lp, np.float64))


# --- sampling by rejection from the box ---------------------------------------------------
def _rejection_sample(log_prob, log_max: float, lo, hi, n: int, key, max_proposals: int) -> np.ndarray:
    """``n`` exact samples of a density bounded by ``exp(log_max)`` on the box ``[lo, hi]``:
    uniform proposals accepted with probability ``p(x) / p_max``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an int >= 0, got {n!r}")
    d = lo.shape[0]
    key = _as_key(key)
    out, have, proposed = [], 0, 0
    vol = float(np.prod(hi - lo))
    accept = math.exp(-log_max) / vol  # expected acceptance rate
    while have < n:
        m = int(min(max(2 * (n - have) / max(accept, 1e-12), 1024), 1 << 20))
        if proposed + m > max_proposals:
            raise RuntimeError(
                f"sample: more than max_proposals={max_proposals} uniform proposals needed (acceptance rate "
                f"{accept:.2e}: the density's peak is {1 / accept:.3g} times the uniform density); raise max_proposals")
        key, k1, k2 = jax.random.split(key, 3)
        u = np.asarray(jax.random.uniform(k1, (m, d), dtype=np.float32), np.float64)
        z = (lo + u * (hi - lo)).astype(np.float32).astype(np.float64)
        z = np.clip(z, lo, hi)
        r = np.asarray(jax.random.uniform(k2, (m,), dtype=np.float32), np.float64)
        keep = np.log(np.maximum(r, 1e-300)) < log_prob(z) - log_max
        out.append(z[keep])
        have += int(keep.sum())
        proposed += m
    return np.concatenate(out)[:n]


# --- the partition density ----------------------------------------------------------------
class PartitionDensity(NamedTuple):
    """A piecewise-constant density on the regions of a net's partition of a box.

    ``K`` rows, one per region of the box (see the module docstring; with Monte Carlo volumes
    the last row is the residual bin of the regions no reference sample hit).

    Attributes:
      net: the network; scope, layer: the partition (``"prefix"``, 1-based layer).
      domain: the :class:`partax.Box`.
      keys: ``uint64[K]`` region keys (sorted over the resolved rows; ``0`` for the residual).
      counts: ``int64[K]`` training points per region.
      volumes: ``float64[K]`` region volumes; they sum to the box volume.
      volume_stderr: ``float64[K]`` standard errors of ``volumes`` (0 where exact; the
        residual's is the binomial error of its Good–Turing fraction, an approximation).
      resolved: ``bool[K]``: the row is one region with its own key (False: the residual).
      smoothing: the pseudo-count ``a``.
      total: ``N``, the number of training points.
      volume_method: ``"exact"``, ``"mc"`` or ``"hit_and_run"``.
      reference_hits: ``int64[K]`` reference samples per row (``"mc"``), else None.
      num_reference: ``M`` (``"mc"``), else 0.
      float64_lookups: training points looked up again by their float64 code (``"exact"``).
      points: ``float64[K, d]`` an interior point of each region (``"exact"``), else None.
      backoff: whether empty regions backed off to their nearest occupied prefix ancestor.
      mass: ``float64[K]`` the probability of each region (see :attr:`probabilities`).
      space: the space the density lives on: 0 for the input space, ``s >= 1`` for the latent
        space ``h^s`` (then ``net`` is the sub-net of layers ``s+1..``, ``domain`` the latent
        box, and ``scope``/``layer`` its prefix partition; points are latent codes,
        :func:`latent_codes`).
      source: ``(scope, layer)`` as asked of :func:`estimate` (None for other constructors).
      tie_break: points move this fraction of the way to the box's centre before their region
        is looked up (latent spaces: ``1e-6``; 0 in input space). ReLU codes have atoms on
        region boundaries (exact zeros: ``h = 0`` gives the next layer ``z = b``), whose own
        sign pattern may have no volume in the box; the move puts such a point in the
        full-dimensional region on the centre's side of the boundary (a tie-break, like a
        histogram's half-open bins) and changes no point farther than that from a boundary.
      volume_status: ``int32[K]`` (``"hit_and_run"``): each occupied region's status from
        :func:`partax.geometry.hit_and_run.polytope_volumes` (0 = OK) in the order of
        :func:`partax.partition`'s table, *before* the flagged ones were pooled into the residual
        bin; None for the other methods.
    """

    net: Net
    scope: str
    layer: int
    domain: Box
    keys: np.ndarray
    counts: np.ndarray
    volumes: np.ndarray
    volume_stderr: np.ndarray
    resolved: np.ndarray
    smoothing: float
    total: int
    volume_method: str
    reference_hits: Optional[np.ndarray]
    num_reference: int
    float64_lookups: int
    points: Optional[np.ndarray] = None
    backoff: bool = False
    mass: Optional[np.ndarray] = None
    space: int = 0
    source: Optional[tuple] = None
    tie_break: float = 0.0
    volume_status: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return (f"PartitionDensity(regions={len(self.keys)}, occupied={int((self.counts > 0).sum())}, N={self.total}, "
                f"{f'space=h^{self.space}, ' if self.space else ''}"
                f"scope={self.scope!r}, layer={self.layer}, volumes={self.volume_method!r}, smoothing={self.smoothing}"
                f"{', backoff=True' if self.backoff else ''}"
                f"{f', pooled_flagged={int((self.volume_status != _HR_OK).sum())}' if self.volume_status is not None else ''})")

    @property
    def num_regions(self) -> int:
        """``K``, the number of rows (regions, and the residual bin if any)."""
        return int(len(self.keys))

    @property
    def probabilities(self) -> np.ndarray:
        """``float64[K]`` the mass of each region: ``(n_R + a) / (N + a K)``, or with back-off
        ``q_R V_R / sum_S q_S V_S`` (see :func:`estimate`)."""
        if self.mass is not None:
            return self.mass
        return _smoothed(self.counts.astype(np.float64), self.smoothing)

    @property
    def log_densities(self) -> np.ndarray:
        """``float64[K]`` the log density on each region, ``log(P_R / V_R)`` (``-inf`` where 0)."""
        P = self.probabilities
        with np.errstate(divide="ignore"):
            return np.log(P) - np.log(self.volumes)

    def index(self, x, *, outside: str = "error") -> np.ndarray:
        """Row of each point (``-1`` outside the box with ``outside='-inf'``).

        Args:
          x: points ``[n, d]``.
          outside: ``"error"`` (default) or ``"-inf"``.

        Returns:
          ``int64[n]``.

        Raises:
          ValueError: points outside the box (with ``outside='error'``), bad input.
          RuntimeError: exact volumes and a point whose region is not in the enumeration.
        """
        return _rows(self, x, outside)[0].astype(np.int64, copy=False)

    def log_prob(self, x, *, outside: str = "error") -> np.ndarray:
        """Natural log of the density at each point (batched: one jitted pass, see "Lookup" in the module doc).

        Args:
          x: points ``[n, d]``.
          outside: ``"error"`` (default: points outside the box raise) or ``"-inf"``.

        Returns:
          ``float64[n]``.

        Example:
          >>> import jax, numpy as np, partax
          >>> from partax.geometry import Box
          >>> net = partax.mlp(jax.random.key(0), [2, 8, 1], bias_std=0.3)
          >>> x = np.random.default_rng(0).uniform(-1, 1, (400, 2))
          >>> dens = estimate(net, x, Box(-1, 1))
          >>> lp = dens.log_prob(x[:5])
          >>> lp.shape, bool(np.isfinite(lp).all())
          ((5,), True)
        """
        idx, _ = _rows(self, x, outside)
        return np.append(self.log_densities, -np.inf)[idx]  # row -1 (outside the box): -inf

    def entropy(self, estimator: str = "plugin") -> float:
        """Differential entropy in nats: ``-sum_R P_R log(P_R / V_R)``.

        With ``"plugin"`` this is the exact entropy of this (smoothed) density. With
        ``"miller_madow"`` the discrete part gets the Miller–Madow correction
        ``(K_occ - 1) / (2N)`` (``K_occ``: occupied regions).

        Args:
          estimator: ``"plugin"`` or ``"miller_madow"``.

        Returns:
          a float (nats).
        """
        if estimator not in ("plugin", "miller_madow"):
            raise ValueError(f"estimator: expected 'plugin' or 'miller_madow', got {estimator!r}")
        h = _plugin_entropy(self.probabilities, self.volumes)
        if estimator == "miller_madow":
            h += (int((self.counts > 0).sum()) - 1) / (2.0 * max(self.total, 1))
        return h

    def sample(self, n: int, key, *, max_proposals: int = 10**8) -> np.ndarray:
        """``n`` exact samples (``float64[n, d]``) of this density.

        With exact volumes: a region per sample from the multinomial of ``P_R``, then a
        uniform point of the region by rejection from its bounding box (``2d`` LPs per region
        on its H-representation, widened by a margin; membership by the float64 rows). With
        Monte Carlo volumes (no region geometry): uniform proposals in the box, accepted with
        probability ``p(x) / max p`` (float32-representable points).

        Args:
          n: number of samples.
          key: a ``jax.random`` key or an int seed.
          max_proposals: give up (``RuntimeError``) beyond this many proposals.

        Returns:
          ``float64[n, d]``.
        """
        lo, hi = self.domain.bounds(self.net.input_dim)
        if self.points is not None:
            return _sample_regions(self, n, key, lo, hi, max_proposals)
        return _rejection_sample(self.log_prob, float(np.max(self.log_densities)), lo, hi, n, key, max_proposals)


def _sample_regions(dens: PartitionDensity, n: int, key, lo, hi, max_proposals: int) -> np.ndarray:
    """Exact samples: region by its mass, then uniform in the region by rejection from its
    bounding box (exact volumes only: the enumeration's interior points give the rows)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an int >= 0, got {n!r}")
    d = lo.shape[0]
    if n == 0:
        return np.zeros((0, d))
    A, b = halfspaces_batch(dens.net, dens.points, scope="prefix", layer=dens.layer, domain=dens.domain)
    A, b = np.asarray(A, np.float64), np.asarray(b, np.float64)
    K = A.shape[0]
    # bounding box of every region: min and max of each coordinate, 2d LPs per region
    c = np.concatenate([np.eye(d), -np.eye(d)])  # [2d, d]
    res = lp.solve(np.tile(c, (K, 1)), np.repeat(A, 2 * d, axis=0), np.repeat(b, 2 * d, axis=0), solver="highs")
    ext = np.asarray(res.x, np.float64).reshape(K, 2 * d, d)
    ok = (np.asarray(res.status) == 0).reshape(K, 2 * d).all(axis=1)
    blo = np.where(ok[:, None], ext[:, np.arange(d), np.arange(d)], lo)
    bhi = np.where(ok[:, None], ext[:, d + np.arange(d), np.arange(d)], hi)
    pad = 1e-7 * (hi - lo)  # LP tolerance: the box must contain the region
    blo, bhi = np.maximum(blo - pad, lo), np.minimum(bhi + pad, hi)
    rng = np.random.default_rng(int(np.asarray(jax.random.randint(_as_key(key), (), 0, 2**31 - 1))))
    need = rng.multinomial(n, dens.probabilities / dens.probabilities.sum())
    out = [np.zeros((0, d))]
    rate = np.ones(K)  # running acceptance estimate per region
    proposed = 0
    while need.sum() > 0:
        todo = np.flatnonzero(need)
        m = np.minimum(np.ceil(1.5 * need[todo] / rate[todo]).astype(np.int64) + 4, 1 << 20)
        proposed += int(m.sum())
        if proposed > max_proposals:
            raise RuntimeError(f"sample: more than max_proposals={max_proposals} proposals; raise max_proposals")
        r = np.repeat(todo, m)
        z = blo[r] + rng.uniform(size=(len(r), d)) * (bhi[r] - blo[r])
        inside = np.all(np.einsum("nmd,nd->nm", A[r], z) <= b[r], axis=1)
        for j, t in enumerate(todo):  # per region: keep what is needed, update the rate
            sl = slice(int(m[:j].sum()), int(m[: j + 1].sum()))
            got = z[sl][inside[sl]]
            rate[t] = max(len(got) / m[j], 1e-3)
            take = got[: need[t]]
            out.append(take)
            need[t] -= len(take)
    z = np.concatenate(out)
    return z[rng.permutation(len(z))]


def _tie_break(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: float) -> np.ndarray:
    """``x + t (centre - x)`` (nothing when ``t = 0``)."""
    return x if not t else x + t * ((lo + hi) / 2 - x)


_LATENT_TIE_BREAK = 1e-6


def _keys64(net: Net, x: np.ndarray, layer: int) -> np.ndarray:
    hl = hidden_layers(net, layer)
    bits = split_bits(hl, codes64(hl, x))
    return keys_from_bits(bits, 1, layer)


# --- the lookup: one jitted kernel for "inside the box + code + key + row" ------------------
# Codes of the kernel's answer besides a row ``>= 0`` (int32).
_NOT_FOUND, _OUTSIDE_BOX, _NOT_FINITE = -1, -2, -3
_MAX_BUCKET_BITS = 24
_IN_FLIGHT = 4  # chunks dispatched ahead of the one being copied back


class _KeyTable(NamedTuple):
    """The resolved rows' sorted keys, bucketed by their top bits, for the kernel's lookup.

    A key's bucket is its top ``bits`` bits (keys are uniform hashes, so ``2^bits ~ R`` buckets
    hold about one key each); the kernel binary-searches the key's bucket, ``[starts[t],
    starts[t + 1])`` of the sorted lanes ``hi, lo`` (the key is ``hi << 32 | lo``), in ``steps``
    branch-free steps (enough for the fullest bucket).
    """

    hi: jax.Array  # uint32[2^k > R] (zeros after the R keys)
    lo: jax.Array
    starts: jax.Array  # int32[2^bits + 1]
    rows: Optional[np.ndarray]  # row of each table position (None: position == row)
    shift: int  # 32 - bits
    steps: int


def _key_table(dens: PartitionDensity) -> _KeyTable:
    rows = np.flatnonzero(dens.resolved)
    keys = dens.keys[rows]
    if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
        order = np.argsort(keys, kind="stable")
        keys, rows = keys[order], rows[order]
    R = int(keys.size)
    bits = int(np.clip(R.bit_length() - 1, 1, _MAX_BUCKET_BITS))
    hi = (keys >> np.uint64(32)).astype(np.uint32)
    lo = (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    per = np.bincount(hi >> np.uint32(32 - bits), minlength=1 << bits)
    starts = np.concatenate([[0], np.cumsum(per)]).astype(np.int32)
    # shapes and steps in few sizes, so that densities of other sizes (a tracer's checkpoints) reuse
    # the compiled kernel: lanes padded to a power of two (>= R + 1: a sentinel keeps gathers in
    # bounds), steps a multiple of 4 (4 unless a bucket holds more than 15 keys)
    steps = -(-max(int(per.max()).bit_length(), 1) // 4) * 4
    identity = bool(np.array_equal(rows, np.arange(R)))
    pad = np.zeros((1 << R.bit_length()) - R, np.uint32)
    return _KeyTable(jax.device_put(np.concatenate([hi, pad])), jax.device_put(np.concatenate([lo, pad])),
                     jax.device_put(starts), None if identity else rows, 32 - bits, steps)


@functools.partial(jax.jit, static_argnames=("layer", "shift", "steps"))
def _locate_kernel(net, x, lo, hi, t_hi, t_lo, starts, miss, *, layer, shift, steps):
    """Per point: its table position, ``miss`` when its key is not in the table, or
    :data:`_OUTSIDE_BOX` / :data:`_NOT_FINITE` (``int32[N]``)."""
    _, keys, _, finite = codes_and_keys(net, x, ((1, layer),))
    q_lo, q_hi = keys[:, 0, 0], keys[:, 0, 1]
    h = jnp.asarray(x, net.dtype)
    inside = jnp.all((h >= lo) & (h <= hi), axis=1)
    t = q_hi >> shift
    first, end = starts[t], starts[t + 1]

    def step(_, carry):  # lower bound of the key in [first, end): branch-free, a gather per step
        pos, count = carry
        half = count // 2
        mid = pos + half
        m_hi, m_lo = t_hi[mid], t_lo[mid]
        less = (m_hi < q_hi) | ((m_hi == q_hi) & (m_lo < q_lo))
        return jnp.where(less, mid + 1, pos), jnp.where(less, count - half - 1, half)

    pos, _ = jax.lax.fori_loop(0, steps, step, (first, end - first), unroll=True)
    found = (pos < end) & (t_hi[pos] == q_hi) & (t_lo[pos] == q_lo)
    out = jnp.where(found, pos, miss)
    out = jnp.where(inside, out, _OUTSIDE_BOX)
    return jnp.where(finite, out, _NOT_FINITE)


def _inward_bounds(lo: np.ndarray, hi: np.ndarray, dtype) -> tuple:
    """The box's bounds rounded inwards to ``dtype``: for ``x`` of that dtype, ``x >= lo'`` iff
    ``x >= lo`` and ``x <= hi'`` iff ``x <= hi`` exactly (the float64 comparison's answer)."""
    lo_r, hi_r = lo.astype(dtype), hi.astype(dtype)
    lo_r = np.where(lo_r < lo, np.nextafter(lo_r, dtype.type(np.inf)), lo_r).astype(dtype)
    hi_r = np.where(hi_r > hi, np.nextafter(hi_r, dtype.type(-np.inf)), hi_r).astype(dtype)
    return lo_r, hi_r


def _locate(dens: PartitionDensity, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The kernel over ``x`` (in ``net.dtype``) in chunks, padded to a power of two (few shapes
    compile); ``lo, hi`` in ``x``'s dtype (``-inf, inf``: no box test). Returns ``int32[n]``."""
    table = _key_table(dens)
    residual = dens.volume_method != "exact"  # Monte Carlo: a key not in the table is in the residual bin
    miss = np.int32(len(dens.keys) - 1 if residual and table.rows is None else _NOT_FOUND)
    n = x.shape[0]
    out = np.empty(n, np.int32)
    lo, hi = jax.device_put(lo), jax.device_put(hi)
    pending = collections.deque()
    for s in range(0, n, _CHUNK):
        xc = x[s : s + _CHUNK]
        m = xc.shape[0]
        size = max(8, 1 << (m - 1).bit_length())
        if size != m:
            xc = np.concatenate([xc, np.zeros((size - m, xc.shape[1]), xc.dtype)])
        pending.append((s, m, _locate_kernel(dens.net, xc, lo, hi, table.hi, table.lo, table.starts, miss,
                                             layer=dens.layer, shift=table.shift, steps=table.steps)))
        while len(pending) > _IN_FLIGHT or (s + _CHUNK >= n and pending):  # the device runs ahead of the copies
            s0, m0, r = pending.popleft()
            out[s0 : s0 + m0] = np.asarray(r)[:m0]
    if table.rows is not None:
        found = out >= 0
        out[found] = table.rows[out[found]]
        if residual:
            out[out == _NOT_FOUND] = len(dens.keys) - 1
    return out


def _resolve_misses(dens: PartitionDensity, code: np.ndarray, x: np.ndarray, name: str = "x") -> int:
    """Exact volumes: points whose key is not among the enumerated (float32 rounding near a
    boundary) are looked up again by their float64 code, in place; returns how many there were.
    ``x``: the points as given (their own dtype), the same rows as ``code``."""
    miss = np.flatnonzero(code == _NOT_FOUND)
    if miss.size == 0:
        return 0
    res = np.flatnonzero(dens.resolved)
    rkeys = dens.keys[res]
    k64 = _keys64(dens.net, x[miss], dens.layer)
    p = np.minimum(np.searchsorted(rkeys, k64), len(rkeys) - 1)
    ok = rkeys[p] == k64
    if not ok.all():
        i = int(miss[np.flatnonzero(~ok)[0]])
        raise RuntimeError(f"{name}: {int((~ok).sum())} point(s) (first: row {i}, {x[i].tolist()}) lie in no "
                           "enumerated region, even by their float64 code")
    code[miss] = res[p]
    return int(miss.size)


def _rows(dens: PartitionDensity, x, outside: str, name: str = "x") -> tuple:
    """Row of each point (``int32[n]`` or ``int64[n]``, ``-1`` outside the box), and how many
    points were looked up by their float64 code.

    One pass over the inputs when they come in the net's dtype with no tie-break (the usual
    case): the kernel tests the box (its bounds rounded inwards, so the answer is the float64
    comparison's), finiteness, and finds the row; only if some point is not found, outside or
    not finite is there more to do. Otherwise (other dtypes, latent tie-breaks) the points are
    checked here in their own dtype first, and the kernel gets the (tie-broken) points cast to
    the net's dtype, as :func:`partax.region_ids` would.
    """
    outside = check_outside(outside)
    d = dens.net.input_dim
    x = np.asarray(check_inputs(np.asarray(x), d, name))
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    lo, hi = dens.domain.bounds(d)
    dtype = np.dtype(dens.net.dtype)
    if x.shape[0] == 0:
        return np.zeros(0, np.int64), 0
    if x.dtype == dtype and not dens.tie_break:
        code = _locate(dens, x, *_inward_bounds(lo, hi, dtype))
        if code.min() >= 0:
            return code, 0
        if np.any(code == _NOT_FINITE):
            raise ValueError(f"{name}: expected finite points (found NaN or inf)")
        inside = inside_box(x, lo, hi, outside, name, inside=code != _OUTSIDE_BOX)
        xh = x
    else:
        x = check_points(x, d, name, allow_empty=True)
        inside = inside_box(x, lo, hi, outside, name)
        xh = _tie_break(x, lo, hi, dens.tie_break)
        code = _locate(dens, xh.astype(dtype, copy=False), np.full(d, -np.inf, dtype), np.full(d, np.inf, dtype))
        code[~inside] = _OUTSIDE_BOX
        if np.any(code == _NOT_FINITE):
            i = int(np.flatnonzero(code == _NOT_FINITE)[0])
            raise ValueError(f"{name}: row {i} is not finite in the net's dtype {dtype} ({x[i].tolist()})")
    num64 = _resolve_misses(dens, code, xh, name) if dens.volume_method == "exact" else 0
    code[~inside] = -1
    return code, num64


def estimate(net: Net, x, domain: Box, *, scope: str = "prefix", layer: Optional[int] = None,
             smoothing: float = _DEFAULT_SMOOTHING, volumes: str = "auto", num_reference: int = 1 << 18, key=0,
             max_regions: int = 100_000, backoff: bool = False, latent_box: Optional[Box] = None,
             latent_margin: float = 0.05, hit_and_run_options: Optional[dict] = None) -> PartitionDensity:
    """The regions-as-bins density of training points ``x`` over a box (see the module docstring).

    Args:
      net: an unstacked :class:`partax.Net`.
      x: training points ``[N, d]`` in the box (a point outside raises ``ValueError``).
      domain: a bounded :class:`partax.Box` of the net's input dimension.
      scope: which bins (:mod:`partax.scopes`). ``"prefix"`` at ``layer``: the convex linear
        regions of layers ``1..layer`` in input space. ``"suffix"`` at ``layer = l``: the
        partition of layer ``l``'s input space, the latent space ``h^{l-1}``, by layers
        ``l..L`` (its natural bins); ``"layer"`` at ``l``: the same space binned by layer
        ``l`` alone (a hyperplane arrangement). At ``l = 1`` both are input-space partitions
        (``"layer"`` is the prefix of layer 1, ``"suffix"`` the prefix of layer ``L``; the
        result reports ``scope="prefix"`` and that layer). At ``l >= 2`` the result is a
        density over ``h^{l-1}`` (``space = l - 1``): its ``net`` is the sub-net of layers
        ``l..L`` (:func:`sub_net`), its ``domain`` the latent box, and its ``log_prob`` /
        ``index`` / ``sample`` take and give latent points (``latent_codes(net, x, l - 1)``).
        Exact volumes apply when the latent width is in ``2..6``, Monte Carlo otherwise.
      layer: 1-based hidden layer (default: the last for ``"prefix"``, 1 otherwise).
      smoothing: the pseudo-count ``a >= 0`` added to every region. The default 0.5 is the
        Jeffreys (Krichevsky–Trofimov) pseudo-count: the Bayes estimate of the region masses
        under the Jeffreys prior ``Dir(1/2, ..., 1/2)``, whose cumulative log-loss exceeds that of
        the best histogram on the same bins by ``(K-1)/2 log N + O(1)``, the minimax rate
        (Krichevsky & Trofimov 1981);
        ``a = 0`` gives held-out points in empty regions ``log_prob = -inf``, and Laplace's
        ``a = 1`` gives the ``K - n_occupied`` empty regions twice the mass, which matters
        when ``K`` is comparable to ``N``, as it is for partitions. With ``backoff=True`` the
        default becomes 0 and a positive value is refused: both treat empty regions. ``None``
        means the default.
      volumes: ``"exact"`` (enumeration, ``2 <= d <= 6``), ``"mc"`` (uniform reference
        samples), ``"hit_and_run"`` (a randomized volume per occupied region, see the module
        docstring) or ``"auto"`` (exact where the dimension allows, else Monte Carlo).
      hit_and_run_options: keyword arguments of
        :func:`partax.geometry.hit_and_run.polytope_volumes` (``chains``, ``steps``, ...) for
        ``volumes="hit_and_run"``; refused with the other methods.
      num_reference: ``M``, the number of reference samples for ``"mc"``.
      key: ``jax.random`` key or int seed of the reference stream.
      max_regions: enumeration limit for ``"exact"`` (reached: ``RuntimeError``).
      latent_box: the latent box (``scope`` at ``l >= 2`` only): a bounded :class:`partax.Box`
        of the latent width. Default: the bounding box of the training points' latent codes,
        widened by ``latent_margin`` times its side on every side (see :func:`latent_box`).
        Pass one box around train *and* held-out codes to score held-out points, whose codes
        may fall outside the training codes' box.
      latent_margin: the relative margin of the default latent box.
      backoff: back empty regions off through the prefix hierarchy: layer ``l``'s regions
        refine layer ``l - 1``'s, so an empty region ``R`` takes the density ``n_A / (N V_A)``
        of its nearest occupied prefix ancestor ``A`` (layer ``l - 1``, then ``l - 2``, ...;
        the box itself at the root, ``V_A`` the exact or estimated volume of ``A``, the sum of
        its regions' volumes), an occupied one keeps ``n_R / (N V_R)``; the result is
        renormalised to mass 1 (``q_R V_R / sum_S q_S V_S``). With Monte Carlo volumes a
        region's ancestors are read at its first reference sample, and the residual bin backs
        off to the box.

    Returns:
      :class:`PartitionDensity`.

    Raises:
      TypeError / ValueError: naming the bad argument (unbounded or wrong-dimension box,
        empty or non-finite data, points outside the box, unknown scope or volume method).
      RuntimeError: an exact enumeration that did not certify completeness.

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.geometry import Box
      >>> net = partax.mlp(jax.random.key(0), [2, 16, 16, 1], bias_std=0.3)
      >>> x = np.random.default_rng(0).normal(0, 0.3, (2000, 2)).clip(-1, 1)
      >>> dens = estimate(net, x, Box(-1, 1))
      >>> bool(abs(dens.volumes.sum() - 4.0) < 1e-9), bool(abs(np.exp(dens.log_densities) @ dens.volumes - 1) < 1e-12)
      (True, True)
    """
    net = check_net(net, stacked=False, caller="density.estimate()")
    d = net.input_dim
    lo, hi = check_bounded_box(domain, d)
    L = net.num_hidden
    if scope not in ("prefix", "layer", "suffix"):
        raise ValueError(f"scope: expected 'prefix', 'layer' or 'suffix', got {scope!r}")
    if layer is None:
        layer = L if scope == "prefix" else 1
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= L:
        raise ValueError(f"layer: expected an int in 1..{L} or None, got {layer!r}")
    layer = int(layer)
    if not isinstance(backoff, (bool, np.bool_)):
        raise TypeError(f"backoff: expected a bool, got {type(backoff).__name__}")
    if smoothing is None:  # (accepted as "the default")
        smoothing = _DEFAULT_SMOOTHING
    first, last = scope_range(scope, layer, L)
    if first >= 2:  # a latent space: the prefix density of the sub-net on the latent codes
        x = check_points(x, d)
        inside_box(x, lo, hi)
        space = first - 1
        h = latent_codes(net, x, space)
        box = _check_latent_box(latent_box, latent_margin, h, net)
        sub = sub_net(net, first, last)
        blo, bhi = box.bounds(h.shape[1])
        dens = estimate(sub, _tie_break(h, blo, bhi, _LATENT_TIE_BREAK), box, layer=last - first + 1,
                        smoothing=smoothing, volumes=volumes, num_reference=num_reference, key=key,
                        max_regions=max_regions, backoff=backoff, hit_and_run_options=hit_and_run_options)
        return dens._replace(space=space, source=(scope, layer), tie_break=_LATENT_TIE_BREAK)
    if latent_box is not None:
        raise ValueError(f"latent_box: only for a latent space (scope 'layer'/'suffix' at layer >= 2), "
                         f"not for {scope!r} at layer {layer}")
    asked = (scope, layer)
    layer = last  # input space: the prefix of the last layer of the range, the same keys
    a = _check_smoothing(0.0 if smoothing is _DEFAULT_SMOOTHING and backoff else smoothing)
    if backoff and a > 0:
        raise ValueError(f"smoothing: a pseudo-count ({a}) and backoff=True are alternative treatments of empty "
                         "regions; pass smoothing=0 (or leave it out) with backoff")
    if volumes not in _VOLUME_METHODS:
        raise ValueError(f"volumes: expected one of {_VOLUME_METHODS}, got {volumes!r}")
    if hit_and_run_options is not None and (volumes != "hit_and_run" or not isinstance(hit_and_run_options, dict)):
        raise ValueError(f"hit_and_run_options: a dict, with volumes='hit_and_run' only (got {type(hit_and_run_options).__name__} "
                         f"with volumes={volumes!r})")
    x = check_points(x, d)
    inside_box(x, lo, hi)
    if volumes == "auto":
        volumes = "exact" if 2 <= d <= 6 else "mc"
    if volumes == "exact":
        if not 2 <= d <= 6:
            raise ValueError(f"volumes: 'exact' needs an input dimension in 2..6, got {d}; use 'mc'")
        dens, anc = _exact(net, x, domain, layer, a, max_regions)
    elif volumes == "hit_and_run":
        dens, anc = _hit_and_run(net, x, domain, lo, hi, layer, a, _as_key(key), dict(hit_and_run_options or {}))
    else:
        if isinstance(num_reference, bool) or not isinstance(num_reference, (int, np.integer)) or num_reference < 1:
            raise ValueError(f"num_reference: expected an int >= 1, got {num_reference!r}")
        dens, anc = _monte_carlo(net, x, domain, lo, hi, layer, a, int(num_reference), _as_key(key))
    if backoff:
        dens = _back_off(dens, anc, _all_keys(net, x, layer))
    return dens._replace(source=asked)


def density_probe(x_heldout, domain: Box, *, scope: str = "suffix", layers=None, volumes: str = "auto",
                  num_reference: int = 1 << 16, latent_margin: float = 0.05, key=0):
    """A :class:`partax.trace.Tracer` probe: per layer, the regions-as-bins density of the
    representation and its held-out log-likelihood and entropy.

    At every checkpoint, for each hidden layer ``l`` in ``layers``, the probe estimates the
    density of the Tracer's inputs with :func:`estimate` at ``(scope, l)`` — for ``"suffix"``
    or ``"layer"`` at ``l >= 2`` a density over the latent space ``h^{l-1}``, in the box
    around the training *and* held-out codes (:func:`latent_box`), so every held-out code is
    in it — and scores ``x_heldout`` (mapped to the same space).

    Args:
      x_heldout: held-out inputs ``[n, d]`` in ``domain``.
      domain: the input :class:`partax.Box`.
      scope: ``"suffix"`` (default), ``"layer"`` or ``"prefix"``.
      layers: 1-based hidden layers (default: all).
      volumes, num_reference: as in :func:`estimate`.
      latent_margin: relative margin of the latent boxes.
      key: seed of the Monte Carlo reference streams.

    Returns:
      ``probe(net, x, y) -> list[dict]`` with per layer ``layer``, ``space`` (the index
      ``s`` of ``h^s``), ``dim``, ``regions``, ``occupied``, ``residual_points`` (training
      points in the Monte Carlo residual bin: regions no reference sample hit), ``heldout_nll`` and
      ``heldout_nll_stderr`` (nats per point), ``train_nll``, ``entropy`` (plug-in) and
      ``entropy_mm`` (Miller–Madow), ``box_log_volume`` (``log V`` of the box the density
      lives on), ``heldout_gain = log V - heldout_nll`` and ``entropy_gap = log V - entropy``
      (nats over the uniform density of that box: unlike the NLL and the differential
      entropy, they do not change when a layer's codes are rescaled, which training does),
      ``volumes`` and ``estimator="density"``.

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.geometry import Box
      >>> net = partax.mlp(jax.random.key(0), [2, 4, 3, 2], bias_std=0.3)
      >>> rng = np.random.default_rng(0)
      >>> probe = density_probe(rng.uniform(-1, 1, (200, 2)), Box(-1, 1))
      >>> recs = probe(net, rng.uniform(-1, 1, (300, 2)), None)
      >>> [(r["layer"], r["space"], r["dim"]) for r in recs]
      [(1, 0, 2), (2, 1, 4)]
    """
    if scope not in ("prefix", "layer", "suffix"):
        raise ValueError(f"scope: expected 'prefix', 'layer' or 'suffix', got {scope!r}")
    x_heldout = check_points(x_heldout, None, "x_heldout")
    check_bounded_box(domain, x_heldout.shape[1])

    def probe(net, x, y=None):
        L = net.num_hidden
        chosen = range(1, L + 1) if layers is None else layers
        recs = []
        for l in chosen:
            first, _ = scope_range(scope, int(l), L)
            space = first - 1
            box = None
            if space:
                h = np.concatenate([latent_codes(net, x, space), latent_codes(net, x_heldout, space)])
                box = latent_box(h, margin=latent_margin, nonnegative=net.activation == "relu")
            dens = estimate(net, x, domain, scope=scope, layer=int(l), volumes=volumes,
                            num_reference=num_reference, key=key, latent_box=box)
            test = heldout_loglik(dens, latent_codes(net, x_heldout, space))
            train = heldout_loglik(dens, latent_codes(net, x, space))
            logv = float(np.sum(np.log(np.subtract(*dens.domain.bounds(dens.net.input_dim)[::-1]))))
            h = dens.entropy()
            recs.append({"layer": int(l), "space": space, "dim": int(dens.net.input_dim),
                         "regions": dens.num_regions, "occupied": int((dens.counts > 0).sum()),
                         "residual_points": int(dens.counts[~dens.resolved].sum()),
                         "heldout_nll": -test.mean, "heldout_nll_stderr": test.stderr, "train_nll": -train.mean,
                         "entropy": h, "entropy_mm": dens.entropy("miller_madow"), "box_log_volume": logv,
                         "heldout_gain": logv + test.mean, "entropy_gap": logv - h,
                         "volumes": dens.volume_method, "estimator": "density"})
        return recs

    return probe


# --- latent spaces --------------------------------------------------------------------------
def latent_codes(net: Net, x, space: int) -> np.ndarray:
    """The representation ``h^space`` of inputs (``h^0 = x``; ``h^l = act(z^l)``).

    Args:
      net: an unstacked :class:`partax.Net` with ``L`` hidden layers.
      x: inputs ``[n, d]``.
      space: ``0..L``.

    Returns:
      ``float64[n, n_space]``: the net's own (``net.dtype``) activations, widened exactly.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 3, 1])
      >>> latent_codes(net, np.zeros((4, 2)), 1).shape
      (4, 3)
    """
    net = check_net(net, stacked=False, caller="density.latent_codes()")
    L = net.num_hidden
    if isinstance(space, bool) or not isinstance(space, (int, np.integer)) or not 0 <= space <= L:
        raise ValueError(f"space: expected an int in 0..{L}, got {space!r}")
    x = check_points(x, net.input_dim, allow_empty=True)
    if space == 0:
        return x
    out = np.empty((x.shape[0], net.widths[space - 1]), np.float64)
    f = jax.jit(lambda z: net.act(net.preactivations(z)[space - 1]))
    xf = x.astype(net.dtype, copy=False)
    for s in range(0, x.shape[0], _CHUNK):
        out[s : s + _CHUNK] = np.asarray(f(xf[s : s + _CHUNK]), np.float64)
    return out


def sub_net(net: Net, first: int, last: int) -> Net:
    """The net of hidden layers ``first..last`` of ``net`` (input: ``h^{first-1}``).

    With ``last = L`` it keeps the output layer; otherwise it ends in a zero output layer of
    width 1 (the partition of its input space is that of layers ``first..last`` alone).

    Args:
      net: an unstacked :class:`partax.Net`.
      first, last: 1-based hidden layers, ``1 <= first <= last <= L``.

    Returns:
      a :class:`partax.Net` with ``last - first + 1`` hidden layers.

    Example:
      >>> import jax, partax
      >>> sub_net(partax.mlp(jax.random.key(0), [2, 5, 4, 3, 1]), 2, 3)
      Net(5-4-3-1, relu, float32)
    """
    net = check_net(net, stacked=False, caller="density.sub_net()")
    L = net.num_hidden
    if not (isinstance(first, (int, np.integer)) and isinstance(last, (int, np.integer)) and 1 <= first <= last <= L):
        raise ValueError(f"first, last: expected ints with 1 <= first <= last <= {L}, got {first!r}, {last!r}")
    W, b = list(net.weights[first - 1 : last]), list(net.biases[first - 1 : last])
    if last == L:
        W.append(net.weights[-1])
        b.append(net.biases[-1])
    else:
        W.append(np.zeros((net.widths[last - 1], 1), net.dtype))
        b.append(np.zeros(1, net.dtype))
    act = net.activation if net.activation == "relu" else (net.activation, net.alpha)
    return Net.from_arrays([a for pair in zip(W, b) for a in pair], act)


def latent_box(h, *, margin: float = 0.05, nonnegative: bool = False) -> Box:
    """A box around latent codes: their bounding box widened by ``margin`` times its side.

    A coordinate with no spread (a dead unit) gets a side of 1 (``[c - 1/2, c + 1/2]``);
    with ``nonnegative`` (ReLU codes) lower bounds are clipped at 0, where such a coordinate
    gets ``[0, 1]`` if it is 0 — the unit side adds nothing to the log densities.

    Args:
      h: codes ``[n, w]`` (``n >= 1``).
      margin: relative margin ``>= 0``.
      nonnegative: clip at 0 (the codes of a ReLU layer are ``>= 0``).

    Returns:
      a :class:`partax.Box` of dimension ``w``.

    Example:
      >>> import numpy as np
      >>> latent_box(np.array([[0.0, 1.0], [2.0, 1.0]]), margin=0.1, nonnegative=True)
      Box(lo=[0.0, 0.5], hi=[2.2, 1.5])
    """
    h = np.asarray(h, np.float64)
    if h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(f"h: expected latent codes [n >= 1, w], got shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError("h: expected finite latent codes")
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.floating)) or not margin >= 0:
        raise ValueError(f"latent_margin: expected a number >= 0, got {margin!r}")
    mn, mx = h.min(0), h.max(0)
    r = mx - mn
    lo = np.where(r > 0, mn - margin * r, mn - 0.5)
    hi = np.where(r > 0, mx + margin * r, mx + 0.5)
    if nonnegative:
        lo = np.maximum(lo, 0.0)
        hi = np.where(r > 0, hi, np.maximum(hi, lo + 1.0))
    return Box(lo, hi)


def _check_latent_box(box, margin, h: np.ndarray, net: Net) -> Box:
    if box is None:
        return latent_box(h, margin=margin, nonnegative=net.activation == "relu")
    if not isinstance(box, Box):
        raise TypeError(f"latent_box: expected a partax.Box, got {type(box).__name__}")
    if box.dim is not None and box.dim != h.shape[1]:
        raise ValueError(f"latent_box: a Box of dimension {box.dim} for a latent space of width {h.shape[1]}")
    lo, hi = box.bounds(h.shape[1])  # (a Box's bounds are finite: it is bounded)
    inside = inside_box(h, lo, hi, "-inf")
    if not inside.all():
        raise ValueError(f"latent_box: {int((~inside).sum())} training point(s) have latent codes outside it")
    return box


def _all_keys(net: Net, x: np.ndarray, layer: int) -> np.ndarray:
    """``uint64[n, layer]`` prefix keys at layers ``1..layer`` (the net's own evaluation)."""
    out = np.empty((x.shape[0], layer), np.uint64)
    xf = x.astype(net.dtype, copy=False)
    for s in range(0, x.shape[0], _CHUNK):
        out[s : s + _CHUNK] = region_ids(net, xf[s : s + _CHUNK], "prefix")[:, :layer]
    return out


def _back_off(dens: PartitionDensity, anc: np.ndarray, train_keys: np.ndarray) -> PartitionDensity:
    """Empty rows take the density of their nearest occupied prefix ancestor; renormalised.

    ``anc``: ``uint64[K, layer - 1]`` ancestor keys of every row at layers ``1..layer-1``
    (ignored for rows that are not resolved: those back off to the box)."""
    N = float(dens.total)
    V = dens.volumes
    q = np.where(dens.counts > 0, dens.counts / np.where(dens.counts > 0, V, 1.0) / N, np.nan)
    todo = dens.counts == 0
    todo_res = todo & dens.resolved
    for j in range(anc.shape[1] - 1, -1, -1):  # layer j+1, the nearest first
        if not todo_res.any():
            break
        ak = anc[:, j]
        uk, inv = np.unique(ak[dens.resolved], return_inverse=True)
        vol_a = np.bincount(inv, weights=V[dens.resolved], minlength=len(uk))  # V_A: its regions' volumes
        tk, tc = np.unique(train_keys[:, j], return_counts=True)
        pos = np.minimum(np.searchsorted(tk, uk), len(tk) - 1)
        n_a = np.where(tk[pos] == uk, tc[pos], 0)
        rows = np.flatnonzero(todo_res)
        ia = np.searchsorted(uk, ak[rows])
        hit = n_a[ia] > 0
        q[rows[hit]] = n_a[ia[hit]] / vol_a[ia[hit]] / N
        todo_res[rows[hit]] = False
        todo[rows[hit]] = False
    q[todo] = 1.0 / float(V.sum())  # the root: the box holds every training point
    mass = q * V
    return dens._replace(backoff=True, mass=mass / mass.sum())


def _exact(net, x, domain, layer, a, max_regions) -> PartitionDensity:
    enum = enumerate_regions(net, domain, scope="prefix", layer=layer, max_regions=max_regions,
                                             progress=False)
    if not enum.complete:
        raise RuntimeError(
            f"volumes: the exact enumeration of the box is not certified complete ({enum.num_regions} regions, "
            f"frontier_left={enum.frontier_left}, dropped={enum.dropped}, volume_error={enum.volume_error:.3g}); "
            "raise max_regions or use volumes='mc'")
    K = len(enum.keys)
    z = np.zeros(K, np.float64)
    dens = PartitionDensity(net, "prefix", layer, domain, np.asarray(enum.keys, np.uint64), np.zeros(K, np.int64),
                            np.asarray(enum.volumes, np.float64), z, np.ones(K, bool), a, 0, "exact", None, 0, 0,
                            np.asarray(enum.points, np.float64))
    idx, fallback = _rows(dens, x, "error")
    counts = np.bincount(idx, minlength=K).astype(np.int64)
    hl = hidden_layers(net, layer)
    bits = split_bits(hl, codes64(hl, dens.points))
    anc = np.stack([keys_from_bits(bits, 1, j) for j in range(1, layer)], 1) if layer > 1 else np.zeros((K, 0), np.uint64)
    return dens._replace(counts=counts, total=int(x.shape[0]), float64_lookups=fallback), anc


def _monte_carlo(net, x, domain, lo, hi, layer, a, M, key) -> PartitionDensity:
    src = uniform_box(lo, hi, M, key, dtype=net.dtype)
    part = partition(net, src, scopes=("prefix",), progress=False)
    table = part.table("prefix", layer)
    rkeys = np.asarray(table.keys, np.uint64)
    hits = np.asarray(table.counts, np.int64)
    if int(hits.sum()) != M:
        raise RuntimeError(f"num_reference: the partition counted {int(hits.sum())} reference samples, expected {M}")
    V = float(np.prod(hi - lo))
    f1 = int(np.sum(hits == 1))
    if f1 == M:  # the missed mass would be 1 and every region found would get volume 0
        raise RuntimeError(f"num_reference: each of the {M} reference samples fell in a region of its own, so the "
                         f"Monte Carlo volumes carry no information (Good–Turing missed mass 1, every region's "
                         f"volume 0); use many more reference samples, or volumes='hit_and_run'")
    g = max(f1, 1) / M  # Good–Turing missed mass
    q = hits / M
    vol = np.concatenate([V * q * (1.0 - g), [V * g]])
    se = np.concatenate([V * np.sqrt(q * (1 - q) / M), [V * math.sqrt(g * (1 - g) / M)]])
    K = len(rkeys) + 1
    keys = np.concatenate([rkeys, np.zeros(1, np.uint64)])
    resolved = np.concatenate([np.ones(K - 1, bool), [False]])
    dens = PartitionDensity(net, "prefix", layer, domain, keys, np.zeros(K, np.int64), vol, se, resolved, a, 0,
                            "mc", np.concatenate([hits, [0]]).astype(np.int64), M, 0)
    idx, _ = _rows(dens, x, "error")
    counts = np.bincount(idx, minlength=K).astype(np.int64)
    anc = np.zeros((K, layer - 1), np.uint64)
    if layer > 1:
        anc[:-1] = _all_keys(net, np.asarray(src.inputs_at(np.asarray(table.exemplars)), np.float64), layer)[:, :-1]
    return dens._replace(counts=counts, total=int(x.shape[0])), anc


def _hit_and_run(net, x, domain, lo, hi, layer, a, key, options) -> PartitionDensity:
    """Volumes of the occupied regions by multiphase hit-and-run; the rest of the box (every
    unoccupied region, and every occupied one whose estimate is flagged) is the residual bin."""
    part = partition(net, np.asarray(x, net.dtype), scopes=("prefix",), progress=False)
    table = part.table("prefix", layer)
    rkeys = np.asarray(table.keys, np.uint64)
    exemplars = np.asarray(x, np.float64)[np.asarray(table.exemplars)]
    res = region_volumes(net, exemplars, domain, key, scope="prefix", layer=layer, **options)
    status = np.asarray(res.status, np.int32)
    ok = status == _HR_OK
    V = float(np.prod(hi - lo))
    vol_ok = np.asarray(res.volume, np.float64)[ok]
    se_ok = np.asarray(res.stderr, np.float64)[ok]
    residual = V - float(vol_ok.sum())
    if not residual > 0:
        raise RuntimeError(
            f"volumes: the hit-and-run volumes of the {int(ok.sum())} occupied regions sum to {V - residual:.6g}, "
            f"not below the box volume {V:.6g} (estimates biased high or too noisy): no residual volume is left "
            "for the unoccupied regions; raise hit_and_run_options' chains/steps or use volumes='mc'")
    order = np.argsort(rkeys[ok], kind="stable")
    keys = np.concatenate([rkeys[ok][order], np.zeros(1, np.uint64)])
    vol = np.concatenate([vol_ok[order], [residual]])
    se = np.concatenate([se_ok[order], [math.sqrt(float(np.sum(se_ok ** 2)))]])
    K = len(keys)
    resolved = np.concatenate([np.ones(K - 1, bool), [False]])
    # the counts are the partition's own (no second pass): a flagged region's points are the residual's
    held = np.asarray(table.counts, np.int64)[ok][order]
    counts = np.concatenate([held, [int(x.shape[0]) - int(held.sum())]])
    dens = PartitionDensity(net, "prefix", layer, domain, keys, counts, vol, se, resolved, a, int(x.shape[0]),
                            "hit_and_run", None, 0, 0, volume_status=status)
    anc = np.zeros((K, layer - 1), np.uint64)
    if layer > 1:
        anc[:-1] = _all_keys(net, exemplars[ok][order], layer)[:, :-1]
    return dens, anc


# --- baselines ----------------------------------------------------------------------------
class GridDensity(NamedTuple):
    """A uniform histogram of a box with the same smoothing rule as :class:`PartitionDensity`.

    Attributes:
      domain: the box; bins: ``int64[d]`` bins per axis; edges: per axis ``float64[bins+1]``.
      cells: ``int64[C]`` sorted flat indices (C order) of the occupied cells.
      counts: ``int64[C]`` their counts; total: ``N``; smoothing: ``a``.
      num_cells: ``K = prod(bins)``; cell_volume: the volume of one cell.
    """

    domain: Box
    bins: np.ndarray
    edges: tuple
    cells: np.ndarray
    counts: np.ndarray
    total: int
    smoothing: float
    num_cells: int
    cell_volume: float

    def _flat(self, x: np.ndarray) -> np.ndarray:
        idx = [np.clip(np.searchsorted(e, x[:, j], side="right") - 1, 0, len(e) - 2) for j, e in enumerate(self.edges)]
        return np.ravel_multi_index(idx, tuple(int(b) for b in self.bins))

    def _probs(self):
        den = self.total + self.smoothing * self.num_cells
        if den <= 0:
            raise ValueError("smoothing: with no training point, smoothing must be > 0")
        return (self.counts + self.smoothing) / den, self.smoothing / den

    def log_prob(self, x, *, outside: str = "error") -> np.ndarray:
        """Natural log of the density at each point (``[n, d]`` -> ``float64[n]``); cells are
        ``[e_i, e_{i+1})``, the last one closed, as in ``numpy.histogramdd``."""
        outside = check_outside(outside)
        d = len(self.edges)
        x = check_points(x, d, allow_empty=True)
        lo, hi = self.domain.bounds(d)
        inside = inside_box(x, lo, hi, outside)
        out = np.full(x.shape[0], -np.inf)
        if inside.any():
            f = self._flat(x[inside])
            pos = np.minimum(np.searchsorted(self.cells, f), max(len(self.cells) - 1, 0))
            found = self.cells[pos] == f if len(self.cells) else np.zeros(len(f), bool)
            P, P0 = self._probs()
            with np.errstate(divide="ignore"):
                p = np.where(found, P[pos] if len(P) else 0.0, P0)
                out[inside] = np.log(p) - math.log(self.cell_volume)
        return out

    def entropy(self, estimator: str = "plugin") -> float:
        """Differential entropy (nats) of this histogram; ``"miller_madow"`` adds ``(C - 1) / (2N)``."""
        if estimator not in ("plugin", "miller_madow"):
            raise ValueError(f"estimator: expected 'plugin' or 'miller_madow', got {estimator!r}")
        P, P0 = self._probs()
        empty = self.num_cells - len(self.cells)
        h = -float(np.sum(P * np.log(P))) + math.log(self.cell_volume)
        if P0 > 0 and empty:
            h -= empty * P0 * math.log(P0)
        if estimator == "miller_madow":
            h += (len(self.cells) - 1) / (2.0 * max(self.total, 1))
        return h

    def sample(self, n: int, key, *, max_proposals: int = 10**8) -> np.ndarray:
        """``n`` exact samples (``float64[n, d]``) by rejection from the box."""
        d = len(self.edges)
        lo, hi = self.domain.bounds(d)
        P, P0 = self._probs()
        log_max = math.log(max(float(P.max()) if len(P) else 0.0, P0)) - math.log(self.cell_volume)
        return _rejection_sample(self.log_prob, log_max, lo, hi, n, key, max_proposals)


def grid(x, domain: Box, bins, *, smoothing: float = 0.5) -> GridDensity:
    """A uniform-grid histogram density of ``x`` over a box (the baseline of :func:`estimate`).

    Args:
      x: training points ``[N, d]`` in the box.
      domain: a bounded :class:`partax.Box`.
      bins: bins per axis, an int or ``d`` ints.
      smoothing: pseudo-count ``a >= 0`` per cell (``p = (n + a) / (N + a K) / V_cell``).

    Returns:
      :class:`GridDensity`.

    Example:
      >>> import numpy as np
      >>> from partax.geometry import Box
      >>> x = np.random.default_rng(0).uniform(size=(1000, 2))
      >>> g = grid(x, Box(0, 1), 10, smoothing=0)
      >>> h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=10, range=[[0, 1], [0, 1]], density=True)
      >>> bool(np.allclose(np.exp(g.log_prob(x)), h[(x[:, 0] * 10).astype(int), (x[:, 1] * 10).astype(int)]))
      True
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array (N, d), got shape {x.shape}")
    d = x.shape[1]
    lo, hi = check_bounded_box(domain, d)
    x = check_points(x, d)
    inside_box(x, lo, hi)
    b = np.broadcast_to(np.asarray(bins), (d,)) if np.ndim(bins) == 0 else np.asarray(bins)
    if b.shape != (d,) or not np.issubdtype(b.dtype, np.integer) or np.any(b < 1):
        raise ValueError(f"bins: expected a positive int or {d} positive ints, got {bins!r}")
    b = b.astype(np.int64)
    if float(np.prod(b.astype(np.float64))) > 2.0**62:
        raise ValueError(f"bins: {b.tolist()} gives more than 2^62 cells")
    a = _check_smoothing(smoothing)
    edges = tuple(np.linspace(lo[j], hi[j], int(b[j]) + 1) for j in range(d))
    g = GridDensity(domain, b, edges, np.zeros(0, np.int64), np.zeros(0, np.int64), int(x.shape[0]), a,
                    int(np.prod(b)), float(np.prod((hi - lo) / b)))
    cells, counts = np.unique(g._flat(x), return_counts=True)
    return g._replace(cells=cells.astype(np.int64), counts=counts.astype(np.int64))


class KDEDensity(NamedTuple):
    """A Gaussian kernel density estimate (``scipy.stats.gaussian_kde``) on all of R^d.

    Attributes:
      kde: the fitted ``scipy.stats.gaussian_kde``.
      factor: its bandwidth factor (kernel covariance = ``factor^2`` times the data covariance).
      cv_loglik: per candidate factor ``(factor, held-out mean log-likelihood)`` when the
        bandwidth was cross-validated, else empty.
    """

    kde: object
    factor: float
    cv_loglik: tuple

    def log_prob(self, x, *, outside: str = "error") -> np.ndarray:
        """Natural log of the density (``[n, d]`` -> ``float64[n]``); the KDE has no box, so
        ``outside`` is accepted for interface parity and ignored."""
        x = check_points(x, self.kde.d, allow_empty=True)
        if x.shape[0] == 0:
            return np.zeros(0)
        return np.concatenate([self.kde.logpdf(x[s : s + 4096].T) for s in range(0, x.shape[0], 4096)])

    def entropy(self, n: int = 20_000, key=0) -> float:
        """Monte Carlo differential entropy (nats): ``-mean log p`` over ``n`` own samples."""
        return -float(np.mean(self.log_prob(self.sample(n, key))))

    def sample(self, n: int, key) -> np.ndarray:
        """``n`` samples ``float64[n, d]`` (the key seeds NumPy)."""
        seed = int(np.asarray(jax.random.randint(_as_key(key), (), 0, 2**31 - 1)))
        return self.kde.resample(int(n), seed=seed).T


def kde(x, *, bandwidth="cv", factors=None, holdout: float = 0.2, key=0) -> KDEDensity:
    """A Gaussian KDE of ``x`` with a bandwidth chosen by held-out likelihood.

    Args:
      x: training points ``[N, d]`` (``N > d``).
      bandwidth: ``"cv"`` (default: the factor among ``factors`` that maximises the mean
        log-likelihood of a random ``holdout`` fraction under a KDE of the rest, the rest's
        factor rescaled by ``(N_fit / N)^(1/(d+4))``), ``"scott"``, ``"silverman"`` or a factor.
      factors: candidate factors for ``"cv"`` (default: Scott's factor times ``2^(-3..1)`` in
        quarter-octave steps).
      holdout: the held-out fraction for ``"cv"``.
      key: seed of the held-out split.

    Returns:
      :class:`KDEDensity`.
    """
    from scipy.stats import gaussian_kde

    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array (N, d), got shape {x.shape}")
    x = check_points(x, x.shape[1])
    N, d = x.shape
    if N <= d:
        raise ValueError(f"x: a KDE needs more points than dimensions, got {N} points in {d} dimensions")
    if isinstance(bandwidth, str) and bandwidth in ("scott", "silverman"):
        k = gaussian_kde(x.T, bw_method=bandwidth)
        return KDEDensity(k, float(k.factor), ())
    if not isinstance(bandwidth, str):
        f = float(bandwidth)
        if not f > 0:
            raise ValueError(f"bandwidth: expected a factor > 0, got {bandwidth!r}")
        k = gaussian_kde(x.T, bw_method=f)
        return KDEDensity(k, f, ())
    if bandwidth != "cv":
        raise ValueError(f"bandwidth: expected 'cv', 'scott', 'silverman' or a float, got {bandwidth!r}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout: expected a fraction in (0, 1), got {holdout!r}")
    scott = N ** (-1.0 / (d + 4))
    if factors is None:
        factors = scott * 2.0 ** np.arange(-3.0, 1.01, 0.25)
    factors = np.asarray(factors, np.float64)
    if factors.ndim != 1 or factors.size == 0 or not np.all(factors > 0):
        raise ValueError(f"factors: expected positive candidate factors, got {factors!r}")
    rng = np.random.default_rng(int(np.asarray(jax.random.randint(_as_key(key), (), 0, 2**31 - 1))))
    perm = rng.permutation(N)
    nh = max(1, int(round(holdout * N)))
    test, fit = x[perm[:nh]], x[perm[nh:]]
    if fit.shape[0] <= d:
        raise ValueError("holdout: too large, the fitting part has no more points than dimensions")
    rescale = (fit.shape[0] / N) ** (-1.0 / (d + 4))  # the fit part's factor for a full-data factor
    scores = []
    for f in factors:
        k = gaussian_kde(fit.T, bw_method=float(f * rescale))
        scores.append(float(np.mean(KDEDensity(k, float(f), ()).log_prob(test))))
    best = float(factors[int(np.argmax(scores))])
    return KDEDensity(gaussian_kde(x.T, bw_method=best), best, tuple(zip(factors.tolist(), scores)))


def knn_entropy(x, k: int = 3) -> float:
    """Kozachenko–Leonenko k-nearest-neighbour differential entropy (nats).

    ``H = psi(N) - psi(k) + log c_d + (d / N) sum_i log eps_i``, with ``eps_i`` the Euclidean
    distance from ``x_i`` to its ``k``-th nearest neighbour and ``c_d = pi^(d/2) / Gamma(d/2 + 1)``
    the volume of the unit ball (Kozachenko & Leonenko 1987; Kraskov, Stögbauer & Grassberger
    2004, eq. 20).

    Args:
      x: points ``[N, d]`` (``N > k``), distinct.
      k: the neighbour order.

    Returns:
      a float (nats).

    Raises:
      ValueError: too few points, or duplicate points (a zero distance).

    Example:
      >>> import numpy as np
      >>> h = knn_entropy(np.random.default_rng(0).normal(size=(4000, 2)))
      >>> bool(abs(h - np.log(2 * np.pi * np.e)) < 0.1)
      True
    """
    from scipy.spatial import cKDTree

    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array (N, d), got shape {x.shape}")
    x = check_points(x, x.shape[1])
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    N, d = x.shape
    if N <= k:
        raise ValueError(f"x: expected more than k={k} points, got {N}")
    dist, _ = cKDTree(x).query(x, k=k + 1)
    eps = dist[:, k]
    if np.any(eps <= 0):
        raise ValueError(f"x: {int(np.sum(eps <= 0))} point(s) have k={k} duplicates (zero distance); "
                         "the Kozachenko-Leonenko estimator needs distinct points")
    log_cd = (d / 2) * math.log(math.pi) - special.gammaln(d / 2 + 1)
    return float(special.digamma(N) - special.digamma(k) + log_cd + d * np.mean(np.log(eps)))
