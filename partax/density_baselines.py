"""Regions as bins beside the density baselines, in one call.

:func:`compare` fits, on the same training points and box, the partition density of one or more
nets (:func:`partax.density.estimate`), a uniform grid with (about) the same number of bins as
the first net's partition (:func:`partax.density.grid`, ``round(K^(1/d))`` bins per axis), a
Gaussian KDE with a cross-validated bandwidth (:func:`partax.density.kde`, fitted on at most
``kde_max_points`` training points: a KDE's cost grows with N times the test size), the density
estimation tree (:func:`partax.density_tree.tree`) and the Kozachenko–Leonenko kNN entropy
(:func:`partax.density.knn_entropy`, an entropy without a density: no test NLL), and reports
for each the held-out NLL (nats per point, with its standard error), the estimator's entropy and
the seconds it took.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry import Box
    >>> rng = np.random.default_rng(0)
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
    >>> c = compare(rng.uniform(-1, 1, (600, 2)), rng.uniform(-1, 1, (600, 2)), Box(-1, 1), nets={"random": net},
    ...             true_entropy=np.log(4.0), tree_folds=5)
    >>> [r.name for r in c.rows]
    ['random', 'grid', 'kde', 'tree', 'knn']
    >>> bool(abs(c.row("tree").test_nll - np.log(4.0)) < 0.05)
    True
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional

import numpy as np

from partax import density
from partax.density_tree import tree
from partax.geometry.domains import Box, check_points

__all__ = ["BaselineRow", "Comparison", "compare", "ESTIMATORS"]

#: the baselines :func:`compare` knows (beside the nets' partition densities)
ESTIMATORS = ("grid", "kde", "tree", "knn")


class BaselineRow(NamedTuple):
    """One estimator's numbers.

    Attributes:
      name: the net's name (a partition density) or ``"grid"``, ``"kde"``, ``"tree"``, ``"knn"``.
      bins: its number of bins (regions, cells, leaves; None for KDE and kNN).
      test_nll: held-out negative log-likelihood (nats per point; NaN for kNN, ``inf`` if a
        test point has density 0).
      test_nll_stderr: its standard error (``std / sqrt(n_test)``).
      entropy: the estimator's differential entropy (nats): the plug-in entropy of the fitted
        histogram (partition, grid, tree), the Monte Carlo entropy of the KDE, the KL estimate.
      seconds: wall time of fitting and evaluating.
      note: what to know (the KDE's subsample and bandwidth factor, the grid's bins per axis).
    """

    name: str
    bins: Optional[int]
    test_nll: float
    test_nll_stderr: float
    entropy: float
    seconds: float
    note: str = ""


class Comparison(NamedTuple):
    """The side-by-side table of :func:`compare`.

    Attributes:
      rows: the :class:`BaselineRow` of each estimator, nets first.
      true_entropy: the data's true entropy (nats) if given, else None.
      n_train, n_test, dim: the sizes.
    """

    rows: tuple
    true_entropy: Optional[float]
    n_train: int
    n_test: int
    dim: int

    def row(self, name: str) -> BaselineRow:
        """The row of the estimator ``name`` (``KeyError`` if absent)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"name: no estimator {name!r} in this comparison ({[r.name for r in self.rows]})")

    def to_dict(self) -> dict:
        """A JSON-ready dict (with ``nll_minus_h`` and ``abs_entropy_error`` when the truth is known)."""
        out = []
        for r in self.rows:
            d = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r._asdict().items()}
            if self.true_entropy is not None:
                d["nll_minus_h"] = None if not math.isfinite(r.test_nll) else r.test_nll - self.true_entropy
                d["abs_entropy_error"] = abs(r.entropy - self.true_entropy) if math.isfinite(r.entropy) else None
            out.append(d)
        return {"true_entropy": self.true_entropy, "n_train": self.n_train, "n_test": self.n_test, "dim": self.dim,
                "rows": out}

    def markdown(self) -> str:
        """The table in Markdown."""
        h = self.true_entropy
        head = "| estimator | bins | test NLL | " + ("NLL − H | |Ĥ − H| |" if h is not None else "Ĥ |") + " s | note |"
        lines = [head, "|" + "---|" * (head.count("|") - 1)]
        for r in self.rows:
            nll = f"{r.test_nll:.4f} ± {r.test_nll_stderr:.4f}" if math.isfinite(r.test_nll) else "—"
            mid = (f"{r.test_nll - h:+.4f} | {abs(r.entropy - h):.4f}" if math.isfinite(r.test_nll)
                   else f"— | {abs(r.entropy - h):.4f}") if h is not None else f"{r.entropy:.4f}"
            lines.append(f"| {r.name} | {r.bins if r.bins is not None else '—'} | {nll} | {mid} | {r.seconds:.2f} | "
                         f"{r.note} |")
        return "\n".join(lines)


def _nll(lp: np.ndarray):
    lp = np.asarray(lp, np.float64)
    if np.isnan(lp).any():  # a broken estimator, not a point of density 0: never reported as NLL = inf
        raise FloatingPointError(f"log_prob: {int(np.isnan(lp).sum())} NaN value(s) among the test points")
    if not np.all(np.isfinite(lp)):
        return float("inf"), float("nan")
    return float(-lp.mean()), float(lp.std(ddof=1) / math.sqrt(len(lp))) if len(lp) > 1 else float("nan")


def compare(x_train, x_test, domain: Box, *, nets=None, bins=None, estimators=ESTIMATORS, true_entropy=None,
            kde_max_points: int = 10_000, tree_folds: int = 10, knn_k: int = 3, volumes: str = "auto",
            outside: str = "error", key=0) -> Comparison:
    """Partition densities and the baselines on the same data, side by side.

    Args:
      x_train: training points ``[N, d]`` in the box.
      x_test: held-out points ``[n, d]`` (with ``outside="error"``, in the box).
      domain: a bounded :class:`partax.Box`.
      nets: a :class:`partax.Net` or a dict ``{name: Net}`` whose partition densities to fit
        (:func:`partax.density.estimate` with ``volumes``), or None.
      bins: the grid's total number of bins (default: the first net's number of regions; needed
        when ``"grid"`` is asked for without nets).
      estimators: the baselines to add, a subset of :data:`ESTIMATORS`.
      true_entropy: the data's entropy in nats, if known (for ``NLL − H`` and ``|Ĥ − H|``).
      kde_max_points: the KDE is fitted on a random subsample of at most this many training points.
      tree_folds: cross-validation folds of the density tree.
      knn_k: the neighbour order of the kNN entropy.
      volumes: the partition densities' volume method (``"auto"``, ``"exact"``, ``"mc"``).
      outside: ``"error"`` or ``"-inf"``: test points outside the box (an error, or density 0).
      key: int seed (KDE subsample and bandwidth split, tree folds, Monte Carlo volumes).

    Returns:
      :class:`Comparison`.

    Raises:
      ValueError / TypeError: naming the bad argument.
    """
    x_train = check_points(x_train, None, "x_train")
    d = x_train.shape[1]
    x_test = check_points(x_test, d, "x_test")
    if x_test.shape[0] < 2:
        raise ValueError(f"x_test: expected at least 2 held-out points, got {x_test.shape[0]}")
    if isinstance(estimators, str):
        estimators = (estimators,)
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise ValueError(f"estimators: expected a subset of {ESTIMATORS}, got {bad}")
    if nets is None:
        nets = {}
    elif not isinstance(nets, dict):
        nets = {"partition": nets}
    if isinstance(kde_max_points, bool) or not isinstance(kde_max_points, (int, np.integer)) or kde_max_points < d + 2:
        raise ValueError(f"kde_max_points: expected an int > d + 1, got {kde_max_points!r}")
    rows = []
    K = None
    for name, net in nets.items():
        t = time.perf_counter()
        dens = density.estimate(net, x_train, domain, volumes=volumes, key=key)
        nll, se = _nll(dens.log_prob(x_test, outside=outside))
        rows.append(BaselineRow(str(name), dens.num_regions, nll, se, dens.entropy(), time.perf_counter() - t,
                                f"{dens.volume_method} volumes, {int((dens.counts > 0).sum())} occupied"))
        K = dens.num_regions if K is None else K
    if "grid" in estimators:
        total = K if bins is None else bins
        if total is None:
            raise ValueError("bins: the grid needs a number of bins (or a net whose regions it matches)")
        if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 1:
            raise ValueError(f"bins: expected a positive int, got {total!r}")
        per = max(1, int(round(total ** (1.0 / d))))
        t = time.perf_counter()
        g = density.grid(x_train, domain, per)
        nll, se = _nll(g.log_prob(x_test, outside=outside))
        rows.append(BaselineRow("grid", g.num_cells, nll, se, g.entropy(), time.perf_counter() - t,
                                f"{per} per axis"))
    rng = np.random.default_rng(int(key))
    if "kde" in estimators:
        t = time.perf_counter()
        sub = x_train if x_train.shape[0] <= kde_max_points else \
            x_train[rng.choice(x_train.shape[0], kde_max_points, replace=False)]
        k = density.kde(sub, key=int(key))
        nll, se = _nll(k.log_prob(x_test))
        h = k.entropy(20_000, int(key))
        rows.append(BaselineRow("kde", None, nll, se, h, time.perf_counter() - t,
                                f"fit on {sub.shape[0]} points, factor {k.factor:.3g}"))
    if "tree" in estimators:
        t = time.perf_counter()
        tr = tree(x_train, domain, folds=min(tree_folds, x_train.shape[0]), key=int(key))
        nll, se = _nll(tr.log_prob(x_test, outside=outside))
        rows.append(BaselineRow("tree", tr.num_leaves, nll, se, tr.entropy(), time.perf_counter() - t,
                                f"{tree_folds}-fold CV"))
    if "knn" in estimators:
        t = time.perf_counter()
        h = density.knn_entropy(x_train, knn_k)
        rows.append(BaselineRow("knn", None, float("nan"), float("nan"), h, time.perf_counter() - t, f"k={knn_k}"))
    return Comparison(tuple(rows), None if true_entropy is None else float(true_entropy), int(x_train.shape[0]),
                      int(x_test.shape[0]), int(d))
