# Length: over 500 lines because the tree's growth, its weakest-link pruning, the cross-validation
# that picks the pruning and the mlpack backend with the same interface are one estimator.
"""Density estimation trees (Ram & Gray, 2011): the axis-aligned baseline of regions as bins.

A density estimation tree (DET) is a histogram whose bins are the leaves of a binary tree of
axis-aligned boxes. :func:`tree` grows it from the domain box down, choosing at each node the
split that most lowers the empirical integrated-squared-error risk of the piecewise-constant
estimate ``f_T(x) = n_l / (N V_l)`` on the leaf ``l`` holding ``x``:

    ``R(T) = sum_l R(l)``,  ``R(l) = -n_l^2 / (N^2 V_l)``   (Ram & Gray 2011, eq. 2–3),

then prunes it back by minimal cost-complexity pruning (the weakest-link sequence
``alpha_1 <= alpha_2 <= ...`` of ``R_alpha(T) = R(T) + alpha |leaves(T)|``), and picks
``alpha`` by K-fold cross-validation of the unbiased ISE estimate
``int f_T^2 - (2 / n_test) sum_test f_T(x)`` (their eq. 5, held-out form): each fold's tree is
grown on the other folds and pruned at every candidate ``alpha``; the full-data tree is pruned at
the ``alpha`` with the least mean held-out risk.

Conventions (those of mlpack's ``det``, the reference implementation): candidate splits are
midpoints between consecutive distinct coordinates of a node's points; a node is split only if
it holds more than ``max_leaf_size`` points, and each child must keep at least
``min_leaf_size``. Differences, on purpose: the root is the **domain box** (mlpack's is the
bounding box of the training data, so test points outside it get density 0), so every point of
the box gets a density, and every leaf holds at least ``min_leaf_size >= 1`` training points —
no leaf is empty, so no smoothing is needed and ``log_prob`` is finite on the whole box. The
candidate ``alpha`` values are at most ``max_alphas`` steps of the pruning sequence, spaced
evenly in the log of the tree's number of leaves (every step when the sequence is shorter).

``backend="mlpack"`` runs mlpack's own ``det`` instead (mlpack is not a partax dependency: it
must be installed separately, else an ``ImportError`` saying so).

The point checks of every density (this tree, and :mod:`partax.density`'s partition, grid and
KDE densities) live here, the lowest of the density modules: :func:`check_points` (a finite
``[n, d]`` batch), :func:`inside_box` (the closed box, with the ``outside="error"|"-inf"`` flag
of ``log_prob``, :func:`check_outside`); bounded boxes are checked by
:func:`partax.geometry.domains.check_bounded_box`.

Example:
    >>> import numpy as np
    >>> from partax.geometry import Box
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.uniform(0, 0.25, (600, 2)), rng.uniform(0, 1, (400, 2))])
    >>> t = tree(x, Box(0, 1), folds=5)
    >>> bool(abs(np.exp(t.log_prob(t.lower + 1e-9)) @ t.volumes - 1) < 1e-12), t.num_leaves < 40
    (True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import numpy as np

from partax.geometry.domains import Box, check_bounded_box, check_outside, check_points, inside_box

__all__ = ["DensityTree", "MlpackDensityTree", "tree"]

_BACKENDS = ("partax", "mlpack")


def _int_at_least(v, lo: int, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    return int(v)


def _seed(key) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    return int(np.asarray(jax.random.randint(key, (), 0, 2**31 - 1)))


# --- the grown tree -----------------------------------------------------------------------
class _Grown(NamedTuple):
    """A fully grown tree in depth-first preorder (a node's subtree is ``t .. t + size - 1``)."""

    dim: np.ndarray  # int64[M], -1 at leaves
    split: np.ndarray  # float64[M]
    left: np.ndarray  # int64[M], -1 at leaves
    right: np.ndarray
    parent: np.ndarray  # int64[M], -1 at the root
    size: np.ndarray  # int64[M] nodes in the subtree
    count: np.ndarray  # int64[M] training points
    volume: np.ndarray  # float64[M]
    lower: np.ndarray  # float64[M, d]
    upper: np.ndarray


def _best_split(v, lo, hi, min_leaf):
    """The split ``(dim, value)`` maximising ``i^2 / V_L + (n - i)^2 / V_R`` (``V`` relative to
    the node's volume) over the midpoints of ``v`` (``[n, d]``, each column sorted), or None
    when no dimension has a valid split."""
    n = v.shape[0]
    i = np.arange(min_leaf, n - min_leaf + 1)
    if i.size == 0:
        return None
    a, b = v[i - 1], v[i]  # [m, d]
    s = 0.5 * (a + b)
    fl = (s - lo) / (hi - lo)  # the left child's fraction of the node's volume
    ok = (a < b) & (fl > 0) & (fl < 1)
    if not ok.any():
        return None
    ii = i[:, None].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(ok, ii**2 / fl + (n - ii) ** 2 / (1 - fl), -np.inf)
    k = int(np.argmax(gain))
    r, j = divmod(k, v.shape[1])
    return int(j), float(s[r, j])


def _grow(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, min_leaf: int, max_leaf: int) -> _Grown:
    d = x.shape[1]
    dims, splits, lefts, rights, parents, counts, lows, highs = [], [], [], [], [], [], [], []
    stack = [(np.arange(x.shape[0]), lo.copy(), hi.copy(), -1, 0)]  # (points, lo, hi, parent, side)
    while stack:
        idx, nlo, nhi, par, side = stack.pop()
        t = len(dims)
        if par >= 0:
            (lefts if side == 0 else rights)[par] = t
        dims.append(-1)
        splits.append(0.0)
        lefts.append(-1)
        rights.append(-1)
        parents.append(par)
        counts.append(len(idx))
        lows.append(nlo)
        highs.append(nhi)
        n = len(idx)
        if n <= max_leaf or n < 2 * min_leaf:
            continue
        pts = x[idx]
        found = _best_split(np.sort(pts, axis=0), nlo, nhi, min_leaf)
        if found is None:
            continue
        j, s = found
        dims[t], splits[t] = j, s
        go_left = pts[:, j] < s
        llo, lhi, rlo, rhi = nlo.copy(), nhi.copy(), nlo.copy(), nhi.copy()
        lhi[j] = s
        rlo[j] = s
        stack.append((idx[~go_left], rlo, rhi, t, 1))  # right pushed first: the left subtree comes next
        stack.append((idx[go_left], llo, lhi, t, 0))
    M = len(dims)
    left, right = np.asarray(lefts, np.int64), np.asarray(rights, np.int64)
    size = np.ones(M, np.int64)
    for t in range(M - 1, -1, -1):  # children have larger ids than their parent
        if left[t] >= 0:
            size[t] += size[left[t]] + size[right[t]]
    lower, upper = np.asarray(lows, np.float64).reshape(M, d), np.asarray(highs, np.float64).reshape(M, d)
    return _Grown(np.asarray(dims, np.int64), np.asarray(splits, np.float64), left, right,
                  np.asarray(parents, np.int64), size, np.asarray(counts, np.int64),
                  np.prod(upper - lower, axis=1), lower, upper)


def _prune_alphas(g: _Grown, N: int):
    """Weakest-link pruning: the ``alpha`` at which each node stops being internal (``-inf`` at
    the grown tree's leaves), and the sequence ``(alpha_k, leaves after step k)``."""
    M = len(g.dim)
    R = -(g.count.astype(np.float64) ** 2) / (float(N) ** 2 * g.volume)  # node risks
    internal = g.dim >= 0
    leaves = np.where(internal, 0, 1).astype(np.int64)
    RT = np.where(internal, 0.0, R)
    for t in range(M - 1, -1, -1):  # subtree risks and leaf counts, bottom-up
        if internal[t]:
            RT[t] = RT[g.left[t]] + RT[g.right[t]]
            leaves[t] = leaves[g.left[t]] + leaves[g.right[t]]
    with np.errstate(divide="ignore", invalid="ignore"):
        gval = np.where(internal, (R - RT) / np.maximum(leaves - 1, 1), np.inf)
    gval = np.maximum(gval, 0.0)  # rounding: a split never raises the risk
    gval[~internal] = np.inf
    alpha = np.where(internal, np.inf, -np.inf)
    seq = [(0.0, int(leaves[0]))]
    while np.isfinite(gval[0]):
        t = int(np.argmin(gval))
        a = float(gval[t])
        sl = slice(t, t + int(g.size[t]))
        alpha[sl] = np.minimum(alpha[sl], a)  # t and every internal node below it, not yet collapsed
        gval[sl] = np.inf
        dR, dL = R[t] - RT[t], leaves[t] - 1
        RT[t], leaves[t] = R[t], 1
        u = int(g.parent[t])
        while u >= 0:
            RT[u] += dR
            leaves[u] -= dL
            gval[u] = max((R[u] - RT[u]) / (leaves[u] - 1), 0.0)
            u = int(g.parent[u])
        seq.append((a, int(leaves[0])))
    return alpha, seq


def _paths(g: _Grown, x: np.ndarray) -> np.ndarray:
    """``int64[n, depth + 1]``: the nodes from the root to each point's grown leaf (-1 padded)."""
    node = np.zeros(x.shape[0], np.int64)
    cols = [node.copy()]
    rows = np.arange(x.shape[0])
    while True:
        dim = g.dim[node]
        live = dim >= 0
        if not live.any():
            break
        nxt = np.where(x[rows, np.maximum(dim, 0)] < g.split[node], g.left[node], g.right[node])
        node = np.where(live, nxt, node)
        cols.append(np.where(live, node, -1))
    return np.stack(cols, 1)


def _leaf_at(alpha_nodes: np.ndarray, paths: np.ndarray, beta: float) -> np.ndarray:
    """The leaf of the tree pruned at ``beta`` on each path: its shallowest node with ``alpha <= beta``."""
    a = np.where(paths >= 0, alpha_nodes[np.maximum(paths, 0)], np.inf)
    first = np.argmax(a <= beta, axis=1)
    return paths[np.arange(paths.shape[0]), first]


def _leaves_mask(g: _Grown, alpha: np.ndarray, beta: float) -> np.ndarray:
    pa = np.where(g.parent >= 0, alpha[np.maximum(g.parent, 0)], np.inf)
    return (alpha <= beta) & (pa > beta)


def _candidates(seq, max_alphas: int) -> np.ndarray:
    """Candidate alphas: the geometric means of consecutive steps (CART's choice inside each
    interval of the sequence), at most ``max_alphas`` spaced evenly in log(leaves)."""
    a = np.array([s[0] for s in seq])
    nl = np.array([s[1] for s in seq], np.float64)
    mid = np.concatenate([[0.0], np.sqrt(a[1:-1] * a[2:]) if len(a) > 2 else [], [a[-1]] if len(a) > 1 else []])
    # mid[k] lies inside step k's interval [a_k, a_{k+1}), where the tree has nl[k] leaves
    if len(mid) > max_alphas:
        targets = np.geomspace(nl[0], 1.0, max_alphas)
        ks = np.unique(np.array([int(np.argmin(np.abs(np.log(nl) - math.log(t)))) for t in targets]))
        mid = mid[ks]
    return np.unique(mid)


# --- the record ---------------------------------------------------------------------------
class DensityTree(NamedTuple):
    """A pruned density estimation tree (a histogram on ``K`` axis-aligned leaf boxes).

    Attributes:
      domain: the :class:`partax.Box` (the root).
      lower, upper: ``float64[K, d]`` the leaf boxes' corners.
      counts: ``int64[K]`` training points per leaf (each ``>= min_leaf_size``).
      total: ``N``.
      dim, split, left, right: ``[M]`` the pruned tree's nodes (``dim = -1`` at leaves; a point
        goes left when ``x[dim] < split``), preorder, the root first.
      leaf: ``int64[M]`` each node's leaf row (``-1`` at internal nodes).
      alpha: the chosen cost-complexity parameter (0: the unpruned tree).
      cv: ``((alpha, leaves, held-out risk), ...)`` the cross-validated risks of the candidates
        (held-out ``int f^2 - 2 mean f``; empty when ``folds`` is None).
      folds, min_leaf_size, max_leaf_size: the settings.
    """

    domain: Box
    lower: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    total: int
    dim: np.ndarray
    split: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    alpha: float
    cv: tuple
    folds: Optional[int]
    min_leaf_size: int
    max_leaf_size: int

    def __repr__(self) -> str:
        return (f"DensityTree(leaves={self.num_leaves}, N={self.total}, d={self.lower.shape[1]}, "
                f"alpha={self.alpha:.3g}, folds={self.folds})")

    @property
    def num_leaves(self) -> int:
        """``K``, the number of leaves (bins)."""
        return int(len(self.counts))

    @property
    def volumes(self) -> np.ndarray:
        """``float64[K]`` the leaf volumes (they sum to the box volume)."""
        return np.prod(self.upper - self.lower, axis=1)

    @property
    def probabilities(self) -> np.ndarray:
        """``float64[K]`` the leaf masses ``n_l / N``."""
        return self.counts / float(self.total)

    def index(self, x, *, outside: str = "error") -> np.ndarray:
        """The leaf row of each point (``-1`` outside the box with ``outside='-inf'``).

        Args:
          x: points ``[n, d]``.
          outside: ``"error"`` (default) or ``"-inf"``.

        Returns:
          ``int64[n]``.
        """
        d = self.lower.shape[1]
        outside = check_outside(outside)
        x = check_points(x, d, allow_empty=True).astype(np.float64, copy=False)
        lo, hi = self.domain.bounds(d)
        inside = inside_box(x, lo, hi, outside)
        node = np.zeros(x.shape[0], np.int64)
        rows = np.arange(x.shape[0])
        while True:
            dim = self.dim[node]
            live = dim >= 0
            if not live.any():
                break
            nxt = np.where(x[rows, np.maximum(dim, 0)] < self.split[node], self.left[node], self.right[node])
            node = np.where(live, nxt, node)
        return np.where(inside, self.leaf[node], -1)

    def log_prob(self, x, *, outside: str = "error") -> np.ndarray:
        """Natural log of the density ``n_l / (N V_l)`` at each point (``[n, d]`` -> ``float64[n]``).

        Args:
          x: points ``[n, d]``.
          outside: ``"error"`` (default: points outside the box raise) or ``"-inf"``.

        Returns:
          ``float64[n]`` (finite everywhere in the box: no leaf is empty).
        """
        idx = self.index(x, outside=outside)
        logf = np.log(self.counts / float(self.total)) - np.log(self.volumes)
        return np.where(idx >= 0, logf[np.maximum(idx, 0)], -np.inf)

    def entropy(self) -> float:
        """The tree density's own differential entropy ``-sum_l P_l log(P_l / V_l)`` (nats)."""
        P = self.probabilities
        return float(-np.sum(P * (np.log(P) - np.log(self.volumes))))

    def sample(self, n: int, key) -> np.ndarray:
        """``n`` exact samples ``float64[n, d]``: a leaf by its mass, then uniform in its box.

        Args:
          n: the number of samples.
          key: a ``jax.random`` key or an int seed.

        Returns:
          ``float64[n, d]``.
        """
        n = _int_at_least(n, 0, "n")
        rng = np.random.default_rng(_seed(key))
        r = rng.choice(self.num_leaves, size=n, p=self.probabilities)
        u = rng.uniform(size=(n, self.lower.shape[1]))
        return self.lower[r] + u * (self.upper[r] - self.lower[r])


class MlpackDensityTree(NamedTuple):
    """mlpack's own density estimation tree (``mlpack.det``), with the same interface.

    Attributes:
      model: mlpack's trained ``DTreeType``.
      domain: the :class:`partax.Box` (points outside it: an error or -inf, as for
        :class:`DensityTree`; points inside it but outside the training data's bounding box,
        mlpack's root, have density 0, ``log_prob = -inf``).
      total: ``N``.
      train_log_prob: ``float64[N]`` the log density at the training points.
      distinct_densities: the number of distinct training-point densities, a lower bound on
        the leaves (mlpack's Python binding does not report the leaves themselves).
      folds, min_leaf_size, max_leaf_size: the settings.
      dim: the input dimension.
    """

    model: object
    domain: Box
    total: int
    train_log_prob: np.ndarray
    distinct_densities: int
    folds: Optional[int]
    min_leaf_size: int
    max_leaf_size: int
    dim: int

    def __repr__(self) -> str:
        return f"MlpackDensityTree(distinct_densities={self.distinct_densities}, N={self.total}, folds={self.folds})"

    @property
    def num_leaves(self) -> int:
        """A lower bound on the leaves: :attr:`distinct_densities`."""
        return self.distinct_densities

    def log_prob(self, x, *, outside: str = "error") -> np.ndarray:
        """Natural log of mlpack's density estimate (``[n, d]`` -> ``float64[n]``).

        Args:
          x: points ``[n, d]``.
          outside: ``"error"`` (default) or ``"-inf"``, for points outside the domain box.

        Returns:
          ``float64[n]``.
        """
        mlpack = _import_mlpack()
        d = self.dim
        outside = check_outside(outside)
        x = check_points(x, d, allow_empty=True).astype(np.float64, copy=False)
        lo, hi = self.domain.bounds(d)
        inside = inside_box(x, lo, hi, outside)
        out = np.full(x.shape[0], -np.inf)
        if inside.any():
            est = np.asarray(mlpack.det(input_model=self.model, test=np.ascontiguousarray(x[inside]))
                             ["test_set_estimates"], np.float64).ravel()
            with np.errstate(divide="ignore"):
                out[inside] = np.log(est)
        return out

    def entropy(self) -> float:
        """The tree density's own entropy (nats): every leaf holds its training points and has
        mass ``n_l / N``, so ``-sum_l P_l log f_l`` is exactly ``-mean_i log f(x_i)``."""
        return float(-np.mean(self.train_log_prob))


def _import_mlpack():
    try:
        import mlpack
    except ImportError as e:
        raise ImportError("backend: 'mlpack' needs the mlpack Python package (pip install mlpack), which is not "
                          "a partax dependency and is not installed here; use backend='partax' (our own "
                          f"implementation of the same tree) ({e})") from None
    return mlpack


# --- the public function ------------------------------------------------------------------
def tree(x, domain: Box, *, min_leaf_size: int = 5, max_leaf_size: int = 10, folds: Optional[int] = 10,
         max_alphas: int = 64, alpha: Optional[float] = None, key=0, backend: str = "partax"):
    """A density estimation tree of ``x`` over a box, pruned by cross-validation (Ram & Gray 2011).

    Args:
      x: training points ``[N, d]`` in the box.
      domain: a bounded :class:`partax.Box` (the root of the tree).
      min_leaf_size: the fewest points a child of a split may hold (``>= 1``).
      max_leaf_size: nodes with at most this many points are not split (``>= min_leaf_size``).
      folds: folds of the cross-validation that picks the pruning (``>= 2``, at most ``N``);
        None: no pruning (the fully grown tree).
      max_alphas: at most this many candidate pruning levels in the cross-validation.
      alpha: prune at this cost-complexity parameter ``>= 0`` instead of cross-validating (the
        smallest subtree minimising ``R(T) + alpha |leaves(T)|``); ``folds`` is then unused.
      key: ``jax.random`` key or int seed of the fold assignment.
      backend: ``"partax"`` (this module's tree) or ``"mlpack"`` (``mlpack.det``; needs mlpack).

    Returns:
      :class:`DensityTree` (``backend="partax"``) or :class:`MlpackDensityTree`.

    Raises:
      ValueError / TypeError: naming the bad argument (unbounded or wrong-dimension box, empty
        or non-finite data, points outside the box, bad settings).
      ImportError: ``backend="mlpack"`` without mlpack installed.

    Example:
      >>> import numpy as np
      >>> from partax.geometry import Box
      >>> x = np.random.default_rng(0).uniform(size=(2000, 2))
      >>> t = tree(x, Box(0, 1), folds=5)
      >>> t.num_leaves <= 4, bool(abs(t.entropy()) < 0.01)
      (True, True)
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D array (N, d), got shape {x.shape}")
    d = x.shape[1]
    lo, hi = check_bounded_box(domain, d)
    x = check_points(x, d).astype(np.float64, copy=False)
    inside_box(x, lo, hi)
    N = x.shape[0]
    min_leaf = _int_at_least(min_leaf_size, 1, "min_leaf_size")
    max_leaf = _int_at_least(max_leaf_size, min_leaf, "max_leaf_size")
    if folds is not None:
        folds = _int_at_least(folds, 2, "folds")
        if folds > N:
            raise ValueError(f"folds: expected at most N={N} folds, got {folds}")
    max_alphas = _int_at_least(max_alphas, 2, "max_alphas")
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    if alpha is not None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) or \
                not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha: expected a finite number >= 0 or None, got {alpha!r}")
        folds = None
    if backend == "mlpack":
        if alpha is not None:
            raise ValueError("alpha: mlpack's det has no fixed-alpha pruning; use backend='partax'")
        return _mlpack_tree(x, domain, min_leaf, max_leaf, folds)
    full = _grow(x, lo, hi, min_leaf, max_leaf)
    alpha_full, seq = _prune_alphas(full, N)
    beta, cv = (-np.inf if alpha is None else float(alpha)), ()  # -inf: the fully grown tree
    if folds is not None and len(seq) > 1:
        betas = _candidates(seq, max_alphas)
        rng = np.random.default_rng(_seed(key))
        fold = rng.permutation(N) % folds
        risk = np.zeros(len(betas))
        for f in range(folds):
            tr, te = x[fold != f], x[fold == f]
            g = _grow(tr, lo, hi, min_leaf, max_leaf)
            a, _ = _prune_alphas(g, tr.shape[0])
            dens = g.count / (float(tr.shape[0]) * g.volume)
            sq = g.count.astype(np.float64) ** 2 / (float(tr.shape[0]) ** 2 * g.volume)
            paths = _paths(g, te)
            for k, b in enumerate(betas):
                ise = float(np.sum(sq[_leaves_mask(g, a, b)]))
                risk[k] += (ise - 2.0 * float(np.mean(dens[_leaf_at(a, paths, b)]))) / folds
        best = int(np.argmin(risk))
        beta = float(betas[best])
        nleaves = [int(_leaves_mask(full, alpha_full, b).sum()) for b in betas]
        cv = tuple(zip(betas.tolist(), nleaves, risk.tolist()))
    return _pruned(full, alpha_full, beta, domain, N, cv, folds, min_leaf, max_leaf)


def _pruned(g: _Grown, alpha: np.ndarray, beta: float, domain, N, cv, folds, min_leaf, max_leaf) -> DensityTree:
    M = len(g.dim)
    keep = np.zeros(M, bool)
    keep[0] = True
    for t in range(1, M):  # preorder: the parent comes first
        p = g.parent[t]
        keep[t] = keep[p] and alpha[p] > beta
    is_leaf = keep & (alpha <= beta)
    ids = np.flatnonzero(keep)
    new = np.full(M, -1, np.int64)
    new[ids] = np.arange(len(ids))
    leaf_rows = np.flatnonzero(is_leaf)
    leaf = np.full(len(ids), -1, np.int64)
    leaf[new[leaf_rows]] = np.arange(len(leaf_rows))
    internal = ~is_leaf[ids]
    dim = np.where(internal, g.dim[ids], -1)
    left = np.where(internal, new[np.maximum(g.left[ids], 0)], -1)
    right = np.where(internal, new[np.maximum(g.right[ids], 0)], -1)
    return DensityTree(domain, g.lower[leaf_rows], g.upper[leaf_rows], g.count[leaf_rows].astype(np.int64), int(N),
                       dim.astype(np.int64), np.where(internal, g.split[ids], 0.0), left, right, leaf, max(float(beta), 0.0),
                       cv, folds, min_leaf, max_leaf)


def _mlpack_tree(x, domain, min_leaf, max_leaf, folds) -> MlpackDensityTree:
    mlpack = _import_mlpack()
    kw = dict(training=np.ascontiguousarray(x), min_leaf_size=min_leaf, max_leaf_size=max_leaf)
    if folds is None:
        kw["skip_pruning"] = True
    else:
        kw["folds"] = folds
    res = mlpack.det(**kw)
    est = np.asarray(res["training_set_estimates"], np.float64).ravel()
    with np.errstate(divide="ignore"):
        lp = np.log(est)
    return MlpackDensityTree(res["output_model"], domain, int(x.shape[0]), lp, int(len(np.unique(est))), folds,
                             min_leaf, max_leaf, int(x.shape[1]))
