"""The mixed-integer (big-M) formulation of a ReLU net over a box, and its two solver backends.

Built from any partax :class:`~partax.nets.Net` (dense layers, ReLU or leaky ReLU) over a
:class:`partax.Box` (Serra, Tjandraatmadja & Ramalingam, ICML 2018, Sec. 4). Per hidden unit
``i`` of layer ``l`` with sound pre-activation bounds ``L_i <= g_i <= U_i`` over the box:

* **unstable** (``L_i <= 0 < U_i``): ``g_i = W_i a^{l-1} + b_i = p_i - q_i``, ``p_i, q_i >= 0``,
  ``p_i <= U_i z_i``, ``q_i <= -L_i (1 - z_i)``, ``z_i`` binary; the unit's output is
  ``a_i = p_i - alpha q_i`` (``alpha = 0`` for ReLU);
* **stably active** (``L_i > 0``): ``z_i = 1`` is fixed (not a variable), ``a_i = g_i``;
* **stably inactive** (``U_i <= 0``): ``z_i = 0`` is fixed, ``a_i = alpha g_i`` (no variable at
  all for ReLU). A unit with ``U_i <= 0`` would otherwise get ``M = U_i <= 0``: fixing it is what
  keeps the formulation correct.

**Full-dimensional regions.** The paper adds a margin variable ``f`` with ``f <= p_i + (1 - z_i) M``
and ``f <= q_i + z_i M`` and asks for ``max f > 0``. For counting only feasibility matters, so
``f`` is fixed to a small constant ``margin`` (``eps``): ``p_i >= eps z_i`` and
``q_i >= eps (1 - z_i)`` for every unstable unit. A code is counted iff some point of the box has
every unstable unit of the counted layers at least ``eps`` away from 0 on its side (stable units
have a constant sign on the whole box and need no margin). So a region is missed only if it is
thinner than ``eps`` in pre-activation units; the default ``eps = 1e-6`` is well above the
solvers' tolerances (set to ``1e-9``) times the big-M constants of nets at unit scale.

*Degenerate units.* With zero biases (``partax.mlp``'s default) a ReLU layer whose units are
all inactive feeds the next layer a constant: its pre-activations equal the biases, identically,
so a unit with ``b_i = 0`` is identically 0 there (code 0) and can have no margin. For every
ReLU layer ``l >= 2`` a binary ``d_{l-1} = [every unit of layer l-1 is inactive]`` (a function of
the ``z`` of layer ``l-1``, so it does not change counts) relaxes the margins of layer ``l`` and
forces ``z_i = 0`` where ``b_i = 0``. Other units that vanish identically on a full-dimensional
region (exact cancellations of weights) are outside this formulation's scope: it is exact for
nets in general position in that sense.

The big-M constants ``L, U`` come from :func:`partax.stability.preactivation_bounds` (the
tightest method asked for: ``"interval"``, ``"linear"`` or ``"lp"``), or are passed in.

The model is solver independent (:class:`Formulation`: variables with bounds and integrality, a
sparse constraint matrix with row bounds); two backends solve it:

* ``"scip"`` — SCIP through PySCIPOpt (the ``milp`` extra: ``pip install partax[milp]``;
  ``dev`` includes it). Native solution counting (``Model.count`` with the sparse test off, since
  the model has continuous variables) counts the feasible assignments of the binaries, i.e. the
  codes projected on ``z``.
* ``"highs"`` — HiGHS through ``highspy`` (a core dependency); codes are enumerated by a
  re-solve loop: find a feasible ``z``, exclude it with a no-good cut
  ``sum_{s_i=0} z_i + sum_{s_i=1} (1 - z_i) >= 1``, repeat until infeasible.

Every solution the no-good loop finds is checked in float64: the input point of the solution,
pushed through the net, must have the solution's code with every counted unstable unit at least
``eps / 2`` from 0 on its side; otherwise the LP with that ``z`` fixed (maximising the margin) must
have a positive optimum. Solutions that fail both checks are excluded but not counted
(``stats["rejected"]``).

Example:
    >>> import numpy as np, partax
    >>> from partax.milp import formulate, enumerate_codes
    >>> W1 = np.array([[1.0, 1.0]], np.float32); b1 = np.array([0.0, -0.5], np.float32)
    >>> net = partax.Net.from_arrays([W1, b1, np.ones((2, 1), np.float32), np.zeros(1, np.float32)])
    >>> form = formulate(net, partax.Box(-1.0, 1.0))
    >>> res = enumerate_codes(form, backend="highs")
    >>> res.count, res.exact, sorted(tuple(map(int, c)) for c in res.codes[0])
    (3, True, [(0, 0), (1, 0), (1, 1)])
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from typing import NamedTuple, Optional

import numpy as np

from partax.geometry import Box
from partax.highs import quiet_highs
from partax.nets import Net
from partax.stability import check_box, check_net, preactivation_bounds
from partax.validation import check_tolerance

__all__ = [
    "BACKENDS",
    "Formulation",
    "CodeEnumeration",
    "check_backend",
    "check_milp_domain",
    "check_time_limit",
    "formulate",
    "enumerate_codes",
    "count_native",
    "find_code",
    "milp_preactivation_bounds",
]

BACKENDS = ("scip", "highs")
BOUND_METHODS = ("interval", "linear", "lp")
_FEAS_TOL = 1e-9        # HiGHS, counting
_SCIP_FEAS_TOL = 1e-8   # SCIP, counting (at 1e-9 SCIP 9 was seen to return wrong optima)
_BOUND_WIDEN = 1e-6     # relative outward widening of MILP dual bounds (solver tolerances)
_INF = float("inf")


# -----------------------------------------------------------------------------------------
# validation
# -----------------------------------------------------------------------------------------
def check_backend(backend) -> str:
    """Validates a backend name and that its solver is installed.

    Args:
      backend: ``"scip"`` or ``"highs"``.

    Returns:
      The backend name.

    Raises:
      ValueError: an unknown name, or a backend whose solver package is missing (the message
        names the extra to install).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "scip":
        try:
            import pyscipopt  # noqa: F401
        except ImportError:
            raise ValueError("backend: 'scip' needs PySCIPOpt, which is not installed; install the "
                             "'milp' extra (pip install 'partax[milp]') or use backend='highs'") from None
    else:
        try:
            import highspy  # noqa: F401
        except ImportError:
            raise ValueError("backend: 'highs' needs highspy, which is not installed "
                             "(pip install highspy); or install the 'milp' extra and use backend='scip'") from None
    return backend


def check_time_limit(time_limit) -> Optional[float]:
    """``None`` or a finite number of seconds ``> 0``, as a float.

    Args:
      time_limit: the value to check.

    Returns:
      ``None`` or the limit in seconds.

    Raises:
      ValueError: a limit that is not a positive finite number.
    """
    if time_limit is None:
        return None
    try:
        t = float(time_limit)
    except (TypeError, ValueError):
        raise ValueError(f"time_limit: expected seconds > 0 or None, got {time_limit!r}") from None
    if isinstance(time_limit, bool) or not (np.isfinite(t) and t > 0):
        raise ValueError(f"time_limit: expected a finite number of seconds > 0 or None, got {time_limit!r}")
    return t


def check_milp_domain(domain, d: int):
    """``(lo, hi)`` of the box a MILP needs; ``None`` (all of R^d) is refused.

    Args:
      domain: a :class:`partax.Box`.
      d: the input dimension.

    Returns:
      ``(lo, hi)``, ``float64[d]`` each.

    Raises:
      ValueError: ``domain`` is None (unbounded) or has another dimension.
      TypeError: ``domain`` is not a Box.
    """
    if domain is None:
        raise ValueError("domain: the MILP formulation needs a bounded box (a partax.Box) for its big-M "
                         "constants; got None (all of R^d, unbounded)")
    return check_box(domain, d)


# -----------------------------------------------------------------------------------------
# the formulation
# -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Formulation:
    """A solver-independent MILP: ``row_lo <= A v <= row_hi``, ``lb <= v <= ub``.

    Attributes:
      lb, ub: ``float64[V]`` variable bounds.
      integer: ``bool[V]``, integer variables (all binaries here).
      indptr, indices, data: the constraint matrix in CSR form (rows of ``A``).
      row_lo, row_hi: ``float64[C]`` row bounds (``-inf`` / ``inf`` for one-sided rows).
      x: ``int64[d]`` the input variables.
      z: per hidden layer ``1..depth``, ``int64[n_l]``: the binary of each unit, ``-1`` where the
        unit is stable.
      fixed: per hidden layer, ``int8[n_l]``: +1 stably active, -1 stably inactive, 0 unstable.
      outputs: per hidden layer, per unit, its output ``a_i`` as a list of ``(column, coefficient)``
        pairs (empty for a stably inactive ReLU unit, whose output is 0).
      weights, biases: float64 parameters of layers ``1..depth``.
      alpha: leaky slope (0 for ReLU).
      bounds: the ``(lo, hi)`` pre-activation bounds used for the big-M constants.
      margin: the margin ``eps`` of the full-dimensionality constraints (0: none).
      lo, hi: the input box.
    """

    lb: np.ndarray
    ub: np.ndarray
    integer: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    x: np.ndarray
    z: tuple
    fixed: tuple
    outputs: tuple
    weights: tuple
    biases: tuple
    alpha: float
    bounds: tuple
    margin: float
    lo: np.ndarray
    hi: np.ndarray

    @property
    def num_vars(self) -> int:
        return int(self.lb.shape[0])

    @property
    def num_rows(self) -> int:
        return int(self.row_lo.shape[0])

    @property
    def depth(self) -> int:
        return len(self.z)

    def counted_vars(self, first: int, last: int) -> np.ndarray:
        """The binaries of the unstable units of layers ``first..last`` (1-based), in order."""
        cols = [z[z >= 0] for z in self.z[first - 1:last]]
        return np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)

    def codes_of(self, zvals: np.ndarray, first: int, last: int) -> list:
        """Per layer ``first..last``, ``bool[R, n_l]`` codes from rounded values of the counted
        binaries ``zvals[R, K]`` (:meth:`counted_vars` order), stable units at their fixed bit."""
        zvals = np.asarray(zvals, bool)
        if zvals.ndim == 1:
            zvals = zvals[None]
        out, k = [], 0
        for l in range(first - 1, last):
            z, fx = self.z[l], self.fixed[l]
            bits = np.broadcast_to(fx > 0, (zvals.shape[0], z.shape[0])).copy()
            free = np.flatnonzero(z >= 0)
            bits[:, free] = zvals[:, k:k + len(free)]
            k += len(free)
            out.append(bits)
        return out

    def forward(self, x: np.ndarray) -> list:
        """Float64 pre-activations of layers ``1..depth`` at points ``x[N, d]``."""
        h = np.atleast_2d(np.asarray(x, np.float64))
        out = []
        for W, b in zip(self.weights, self.biases):
            g = h @ W + b
            out.append(g)
            h = np.where(g > 0, g, self.alpha * g)
        return out


class _Builder:
    def __init__(self):
        self.lb, self.ub, self.integer = [], [], []
        self.rows = []  # (cols, coefs, lo, hi)

    def var(self, lb, ub, integer=False) -> int:
        self.lb.append(float(lb)); self.ub.append(float(ub)); self.integer.append(bool(integer))
        return len(self.lb) - 1

    def row(self, cols, coefs, lo, hi):
        self.rows.append((np.asarray(cols, np.int64), np.asarray(coefs, np.float64), float(lo), float(hi)))


def _net_arrays(net: Net, depth: int):
    Ws = [np.asarray(W, np.float64) for W in net.weights[:depth]]
    bs = [np.asarray(b, np.float64) for b in net.biases[:depth]]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError(f"net: layer {l + 1} has NaN or inf parameters")
    return Ws, bs


def _check_bounds(bounds, widths, depth):
    if not isinstance(bounds, (list, tuple)) or len(bounds) < depth:
        raise ValueError(f"bounds: expected a list of (lo, hi) pairs for at least {depth} hidden layers, "
                         f"got {type(bounds).__name__} of length {len(bounds) if hasattr(bounds, '__len__') else '?'}")
    out = []
    for l in range(depth):
        try:
            lo, hi = bounds[l]
        except (TypeError, ValueError):
            raise ValueError(f"bounds: entry {l} must be a (lo, hi) pair") from None
        lo = np.asarray(lo, np.float64); hi = np.asarray(hi, np.float64)
        if lo.shape != (widths[l],) or hi.shape != (widths[l],):
            raise ValueError(f"bounds: layer {l + 1} expected (lo, hi) of shape ({widths[l]},), "
                             f"got {lo.shape} and {hi.shape}")
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(~np.isfinite(lo) | ~np.isfinite(hi)):
            raise ValueError(f"bounds: layer {l + 1} has NaN or infinite bounds; big-M constants must be finite")
        if np.any(lo > hi):
            raise ValueError(f"bounds: layer {l + 1} has lo > hi")
        out.append((lo, hi))
    return tuple(out)


def formulate(net: Net, domain: Box, *, depth: Optional[int] = None, bounds=None, bound_method: str = "lp",
              margin: float = 1e-6, time_limit: Optional[float] = None) -> Formulation:
    """The big-M MILP of the first ``depth`` hidden layers of ``net`` over the box ``domain``.

    Args:
      net: an unstacked :class:`~partax.nets.Net` (dense layers, ReLU or leaky ReLU).
      domain: a :class:`partax.Box` of the input dimension (None, all of R^d, is refused).
      depth: number of hidden layers to model (default: all).
      bounds: optional sound pre-activation bounds, a list of ``(lo, hi)`` per hidden layer (at
        least ``depth``); default :func:`partax.stability.preactivation_bounds` with
        ``bound_method``.
      bound_method: ``"interval"``, ``"linear"`` or ``"lp"`` (the tightest, default).
      margin: the full-dimensionality margin ``eps >= 0`` in pre-activation units (0: no margin,
        the exact graph of the net, as bound tightening needs).
      time_limit: seconds for the ``"lp"`` bounds (None: no limit; the bounds stay sound).

    Returns:
      A :class:`Formulation`.

    Raises:
      ValueError / TypeError: naming the offending argument.
    """
    check_net(net)
    lo0, hi0 = check_milp_domain(domain, net.input_dim)
    L = net.num_hidden
    if depth is None:
        depth = L
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or not (1 <= depth <= L):
        raise ValueError(f"depth: expected an int in 1..{L}, got {depth!r}")
    depth = int(depth)
    margin = check_tolerance(margin, "margin")  # a finite number >= 0 (Python or NumPy, not a bool)
    if bounds is None:
        if bound_method not in BOUND_METHODS:
            raise ValueError(f"bound_method: expected one of {BOUND_METHODS}, got {bound_method!r}")
        bounds = preactivation_bounds(net, domain, bound_method, time_limit=time_limit)
    bounds = _check_bounds(bounds, net.widths, depth)
    Ws, bs = _net_arrays(net, depth)
    alpha = float(net.alpha) if net.activation == "leaky_relu" else 0.0
    relu = alpha == 0.0
    B = _Builder()
    x = np.array([B.var(lo0[j], hi0[j]) for j in range(net.input_dim)], np.int64)
    # the previous layer's outputs as linear expressions: per unit a list of (col, coef)
    prev = [[(int(x[j]), 1.0)] for j in range(net.input_dim)]
    zs, fixed_all, outputs_all = [], [], []
    dead_prev = None  # the binary d_{l-1} (all units of layer l-1 inactive), if modelled
    for l in range(depth):
        W, b = Ws[l], bs[l]
        lo, hi = bounds[l]
        n = W.shape[1]
        fixed = np.zeros(n, np.int8)
        fixed[lo > 0] = 1
        fixed[hi <= 0] = -1
        if relu and l > 0 and np.all(fixed_all[-1] == -1):
            # every unit of the layer below is stably inactive: this layer's input is 0 and its
            # pre-activations are the biases, constants (code 1 iff b > 0), whatever the bounds say
            fixed = np.where(b > 0, 1, -1).astype(np.int8)
        z = np.full(n, -1, np.int64)
        outs = []
        for i in range(n):
            cols, coefs = [], []
            for j, expr in enumerate(prev):
                w = W[j, i]
                if w != 0.0:
                    for c, a in expr:
                        cols.append(c); coefs.append(w * a)
            cols = np.asarray(cols, np.int64); coefs = np.asarray(coefs, np.float64)
            if fixed[i] == 1:  # a = g
                a = B.var(lo[i], hi[i])
                B.row(np.append(cols, a), np.append(-coefs, 1.0), b[i], b[i])
                outs.append([(a, 1.0)])
            elif fixed[i] == -1:
                if relu:
                    outs.append([])
                else:
                    a = B.var(min(alpha * lo[i], alpha * hi[i]), max(alpha * lo[i], alpha * hi[i]))
                    B.row(np.append(cols, a), np.append(-alpha * coefs, 1.0), alpha * b[i], alpha * b[i])
                    outs.append([(a, 1.0)])
            else:
                U, M = float(hi[i]), float(-lo[i])
                p = B.var(0.0, U)
                q = B.var(0.0, M)
                zi = B.var(0.0, 1.0, integer=True)
                z[i] = zi
                # p - q - W a = b
                B.row(np.concatenate([cols, [p, q]]), np.concatenate([-coefs, [1.0, -1.0]]), b[i], b[i])
                B.row([p, zi], [1.0, -U], -_INF, 0.0)            # p <= U z
                B.row([q, zi], [1.0, M], -_INF, M)               # q <= M (1 - z)
                if margin > 0:
                    if dead_prev is None:
                        B.row([p, zi], [1.0, -margin], 0.0, _INF)          # p >= eps z
                        B.row([q, zi], [1.0, margin], margin, _INF)        # q >= eps (1 - z)
                    else:
                        B.row([p, zi, dead_prev], [1.0, -margin, margin], 0.0, _INF)
                        B.row([q, zi, dead_prev], [1.0, margin, margin], margin, _INF)
                if dead_prev is not None and b[i] == 0.0:
                    B.row([zi, dead_prev], [1.0, 1.0], -_INF, 1.0)  # identically 0 there: code 0
                outs.append([(p, 1.0)] if relu else [(p, 1.0), (q, -alpha)])
        zs.append(z)
        fixed_all.append(fixed)
        outputs_all.append(tuple(tuple(o) for o in outs))
        dead_prev = None
        if relu and margin > 0 and l + 1 < depth and not np.any(fixed == 1):
            free = z[z >= 0]
            if len(free):
                d = B.var(0.0, 1.0, integer=True)
                for zi in free:
                    B.row([d, zi], [1.0, 1.0], -_INF, 1.0)                       # d <= 1 - z_j
                B.row(np.append(free, d), np.append(np.ones(len(free)), 1.0), 1.0, _INF)  # d >= 1 - sum z
                dead_prev = d
        prev = outs
    indptr = np.zeros(len(B.rows) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r[0]) for r in B.rows])
    indices = np.concatenate([r[0] for r in B.rows]) if B.rows else np.zeros(0, np.int64)
    data = np.concatenate([r[1] for r in B.rows]) if B.rows else np.zeros(0)
    return Formulation(
        lb=np.asarray(B.lb), ub=np.asarray(B.ub), integer=np.asarray(B.integer, bool), indptr=indptr,
        indices=indices, data=data, row_lo=np.asarray([r[2] for r in B.rows]),
        row_hi=np.asarray([r[3] for r in B.rows]), x=x, z=tuple(zs), fixed=tuple(fixed_all), outputs=tuple(outputs_all),
        weights=tuple(Ws), biases=tuple(bs), alpha=alpha, bounds=bounds, margin=margin, lo=lo0, hi=hi0)


# -----------------------------------------------------------------------------------------
# backends: one feasibility / optimisation model per call
# -----------------------------------------------------------------------------------------
class _Solved(NamedTuple):
    status: str        # "feasible" | "infeasible" | "time_limit" | "error"
    values: Optional[np.ndarray]
    objective: float
    dual_bound: float


class _HighsModel:
    """A HiGHS model of a formulation plus extra rows (cuts, parity rows)."""

    def __init__(self, form: Formulation, extra_vars=(), threads: Optional[int] = None, tight: bool = True):
        import highspy

        self.hs = highspy
        h = quiet_highs(threads=threads or None)
        if tight:
            h.setOptionValue("mip_feasibility_tolerance", _FEAS_TOL)
            h.setOptionValue("primal_feasibility_tolerance", _FEAS_TOL)
        lb, ub, integer = list(form.lb), list(form.ub), list(form.integer)
        for (vlb, vub, vint) in extra_vars:
            lb.append(vlb); ub.append(vub); integer.append(vint)
        nv = len(lb)
        lp = highspy.HighsLp()
        lp.num_col_ = nv
        lp.num_row_ = form.num_rows
        lp.col_cost_ = np.zeros(nv)
        lp.col_lower_ = np.asarray(lb, np.float64)
        lp.col_upper_ = np.asarray(ub, np.float64)
        inf = highspy.kHighsInf
        lp.row_lower_ = np.where(np.isinf(form.row_lo), -inf, form.row_lo)
        lp.row_upper_ = np.where(np.isinf(form.row_hi), inf, form.row_hi)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = form.indptr.astype(np.int32)
        lp.a_matrix_.index_ = form.indices.astype(np.int32)
        lp.a_matrix_.value_ = form.data.astype(np.float64)
        lp.integrality_ = [highspy.HighsVarType.kInteger if v else highspy.HighsVarType.kContinuous
                           for v in integer]
        h.passModel(lp)
        self.h = h
        self.nv = nv
        self.n_int = int(np.sum(integer))
        # a float64 copy of the model for the weak-duality bound of pure LPs (see _lp_dual_bound)
        self.col_lo = np.asarray(lb, np.float64)
        self.col_hi = np.asarray(ub, np.float64)
        self.rows = [(form.indices[form.indptr[r]:form.indptr[r + 1]], form.data[form.indptr[r]:form.indptr[r + 1]],
                      float(form.row_lo[r]), float(form.row_hi[r])) for r in range(form.num_rows)]
        self.cost = np.zeros(nv)
        self.sense = "min"

    def add_row(self, cols, coefs, lo, hi):
        inf = self.hs.kHighsInf
        self.rows.append((np.asarray(cols, np.int64), np.asarray(coefs, np.float64), float(lo), float(hi)))
        lo = -inf if lo == -_INF else lo
        hi = inf if hi == _INF else hi
        self.h.addRow(float(lo), float(hi), len(cols), np.asarray(cols, np.int32), np.asarray(coefs, np.float64))

    def set_objective(self, cols, coefs, sense: str):
        cost = np.zeros(self.nv)
        cost[np.asarray(cols, np.int64)] = coefs
        self.cost, self.sense = cost, sense
        self.h.changeColsCost(self.nv, np.arange(self.nv, dtype=np.int32), cost)
        self.h.changeObjectiveSense(self.hs.ObjSense.kMaximize if sense == "max" else self.hs.ObjSense.kMinimize)

    def relax_integrality(self):
        self.h.changeColsIntegrality(self.nv, np.arange(self.nv, dtype=np.int32),
                                     np.array([self.hs.HighsVarType.kContinuous] * self.nv))
        self.n_int = 0

    def _lp_dual_bound(self) -> float:
        """A rigorous bound on the optimum of the (pure) LP from HiGHS' row duals, in float64.

        Weak duality (Neumaier & Shcherbina 2004): for any multipliers ``y`` and every feasible
        ``v``, ``c.v = y.(A v) + (c - A^T y).v``; each term is bounded below over the row and
        column bounds (a multiplier whose row bound is infinite is dropped). The bound is the
        best of ``y``, ``-y`` (whatever HiGHS' sign convention) and ``0`` (the column-bound
        bound), less a rounding allowance. A lower bound when minimising, an upper bound when
        maximising; ``-inf`` / ``inf`` if nothing finite is proven.
        """
        R = len(self.rows)
        rl = np.array([r[2] for r in self.rows], np.float64)
        rh = np.array([r[3] for r in self.rows], np.float64)
        c = self.cost if self.sense == "min" else -self.cost
        sol = self.h.getSolution()
        cands = [np.zeros(R)]
        if sol.dual_valid and len(sol.row_dual) == R:
            y = np.asarray(sol.row_dual, np.float64)
            cands += [y, -y]

        def at_y(y):  # A^T y
            out = np.zeros(self.nv)
            for (cols, coefs, _, _), yr in zip(self.rows, y):
                if yr != 0.0:
                    np.add.at(out, np.asarray(cols, np.int64), yr * np.asarray(coefs, np.float64))
            return out

        best = -_INF
        for y in cands:
            y = np.where(y > 0, np.where(np.isfinite(rl), y, 0.0), np.where(np.isfinite(rh), y, 0.0))
            part_rows = np.where(y > 0, y * np.where(np.isfinite(rl), rl, 0.0),
                                 y * np.where(np.isfinite(rh), rh, 0.0))
            aty = at_y(y)
            red = c - aty
            with np.errstate(invalid="ignore"):
                part_cols = np.where(red == 0.0, 0.0, np.minimum(red * self.col_lo, red * self.col_hi))
            if np.any(np.isnan(part_cols)):
                continue
            val = float(part_rows.sum() + part_cols.sum())
            if not np.isfinite(val):
                continue
            mag = float(np.abs(part_rows).sum() + np.abs(part_cols).sum() + np.abs(aty).sum())
            best = max(best, val - 4 * np.finfo(np.float64).eps * mag * max(1, self.nv + R))
        return best if self.sense == "min" else -best

    def solve(self, time_limit: Optional[float]) -> _Solved:
        hs = self.hs
        self.h.setOptionValue("time_limit", float(time_limit) if time_limit is not None else hs.kHighsInf)
        self.h.run()
        st = self.h.getModelStatus()
        info = self.h.getInfo()
        if self.n_int > 0:
            # the MIP solver's proven bound; HiGHS leaves a stale value here after a pure LP solve
            dual = float(getattr(info, "mip_dual_bound", float("nan")))
        else:
            dual = self._lp_dual_bound()
        dual = dual if np.isfinite(dual) else float("nan")
        has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
        vals = np.asarray(self.h.getSolution().col_value, np.float64) if has_sol else None
        obj = float(info.objective_function_value) if has_sol else float("nan")
        if st == hs.HighsModelStatus.kOptimal:
            return _Solved("feasible", vals, obj, dual)
        if st in (hs.HighsModelStatus.kInfeasible,):
            return _Solved("infeasible", None, float("nan"), float("nan"))
        if st in (hs.HighsModelStatus.kTimeLimit, hs.HighsModelStatus.kInterrupt,
                  hs.HighsModelStatus.kIterationLimit, hs.HighsModelStatus.kSolutionLimit):
            return _Solved("time_limit", vals, obj, dual)
        return _Solved("error:" + str(st), vals, obj, dual)


class _ScipModel:
    """A SCIP model of a formulation plus extra rows."""

    def __init__(self, form: Formulation, extra_vars=(), threads: Optional[int] = None, tight: bool = True):
        import pyscipopt

        m = pyscipopt.Model()
        m.hideOutput()
        if tight:
            m.setParam("numerics/feastol", _SCIP_FEAS_TOL)
        self.pyscipopt = pyscipopt
        self.vars = []
        specs = list(zip(form.lb, form.ub, form.integer)) + list(extra_vars)
        for k, (vlb, vub, vint) in enumerate(specs):
            self.vars.append(m.addVar(name=f"v{k}", vtype="I" if vint else "C", lb=float(vlb), ub=float(vub)))
        for r in range(form.num_rows):
            s, e = form.indptr[r], form.indptr[r + 1]
            self._add(m, form.indices[s:e], form.data[s:e], form.row_lo[r], form.row_hi[r])
        self.m = m
        self.nv = len(self.vars)

    def _add(self, m, cols, coefs, lo, hi):
        expr = self.pyscipopt.quicksum(float(a) * self.vars[int(c)] for c, a in zip(cols, coefs))
        if lo == hi:
            m.addCons(expr == float(lo))
        elif lo == -_INF:
            m.addCons(expr <= float(hi))
        elif hi == _INF:
            m.addCons(expr >= float(lo))
        else:
            m.addCons(float(lo) <= (expr <= float(hi)))

    def add_row(self, cols, coefs, lo, hi):
        self.m.freeTransform()
        self._add(self.m, cols, coefs, lo, hi)

    def set_objective(self, cols, coefs, sense: str):
        self.m.freeTransform()
        expr = self.pyscipopt.quicksum(float(a) * self.vars[int(c)] for c, a in zip(cols, coefs))
        self.m.setObjective(expr, "maximize" if sense == "max" else "minimize")

    def solve(self, time_limit: Optional[float]) -> _Solved:
        m = self.m
        m.setParam("limits/time", float(time_limit) if time_limit is not None else 1e20)
        m.optimize()
        st = m.getStatus()
        vals = None
        if m.getNSols() > 0:
            sol = m.getBestSol()
            vals = np.array([m.getSolVal(sol, v) for v in self.vars], np.float64)
        obj = m.getObjVal() if vals is not None else float("nan")
        dual = m.getDualbound()
        if st == "optimal":
            return _Solved("feasible", vals, obj, dual)
        if st in ("infeasible",):
            return _Solved("infeasible", None, float("nan"), float("nan"))
        if st in ("timelimit", "userinterrupt", "nodelimit", "sollimit", "gaplimit"):
            return _Solved("time_limit", vals, obj, dual)
        return _Solved("error:" + st, vals, obj, dual)


def _model(form: Formulation, backend: str, extra_vars=(), threads=None, tight: bool = True):
    cls = _ScipModel if backend == "scip" else _HighsModel
    return cls(form, extra_vars, threads, tight)


def _deadline_left(deadline):
    if deadline is None:
        return None
    return max(deadline - time.perf_counter(), 1e-3)


# -----------------------------------------------------------------------------------------
# checking one solution
# -----------------------------------------------------------------------------------------
def _verify(form: Formulation, xval: np.ndarray, bits: list, first: int, last: int) -> bool:
    """The code at ``xval`` (float64) is ``bits`` on layers ``first..last`` with every unstable
    unit at least ``margin / 2`` from 0 on its side (0 margin: strictly)."""
    gs = form.forward(xval)
    tol = 0.5 * form.margin
    for l in range(first - 1, last):
        g = gs[l][0]
        s = bits[l - first + 1][0]
        free = form.fixed[l] == 0
        if form.alpha == 0.0 and l > 0 and np.all(gs[l - 1][0] <= 0):
            # the layer below is all inactive at x: this layer is constant (its biases), no margin
            free = np.zeros_like(free)
        on_side = np.where(s, g > tol, g < -tol) if tol > 0 else np.where(s, g > 0, g < 0)
        if not np.all(on_side[free]) or not np.all((g > 0)[~free] == s[~free]):
            return False
    return True


def _verify_fixed(form: Formulation, zrow: np.ndarray, counted: np.ndarray, first: int, last: int,
                  deadline: Optional[float] = None) -> str:
    """Re-solves with the counted binaries fixed exactly to ``zrow`` (no integrality slack on
    them, HiGHS) and checks the new point in float64 with a quarter of the margin.

    Returns ``"feasible"`` (the code is confirmed), ``"infeasible"`` (the solver proved the fixed
    model infeasible, or its point fails the float64 check: the code is rejected) or
    ``"undecided"`` (time limit or solver failure: neither confirmed nor refuted)."""
    hm = _HighsModel(form)
    for c, v in zip(counted, zrow):
        hm.h.changeColBounds(int(c), float(v), float(v))
    res = hm.solve(_deadline_left(deadline))
    if res.status == "infeasible":
        return "infeasible"
    if res.status != "feasible":
        return "undecided"
    bits = form.codes_of(zrow[None], first, last)
    ok = _verify(dataclasses.replace(form, margin=0.5 * form.margin), res.values[form.x], bits, first, last)
    return "feasible" if ok else "infeasible"


# -----------------------------------------------------------------------------------------
# enumeration by no-good cuts, native counting, one feasible code
# -----------------------------------------------------------------------------------------
class CodeEnumeration(NamedTuple):
    """What :func:`enumerate_codes` / :func:`count_native` found.

    Attributes:
      count: number of distinct codes (a lower bound unless ``exact``).
      exact: True iff the enumeration finished (no time limit hit, no solver failure).
      codes: per layer ``first..last``, ``bool[count, n_l]`` (None from native counting).
      points: ``float64[count, d]`` an input point of each code (None from native counting).
      status: ``"complete"``, ``"time_limit"``, ``"max_codes"``, ``"check_undecided"`` (the
        float64 re-check of a solution hit the time limit or failed, so the enumeration stopped
        there), ``"count_invalid"`` (SCIP says its count is not valid) or the solver's failure
        status.
      seconds: wall time.
      stats: ``solves``, ``rejected`` (solutions that failed the float64 check), ``lp_checks``.
    """

    count: int
    exact: bool
    codes: Optional[list]
    points: Optional[np.ndarray]
    status: str
    seconds: float
    stats: dict


def enumerate_codes(form: Formulation, *, first: int = 1, last: Optional[int] = None, backend: str = "highs",
                    time_limit: Optional[float] = None, max_codes: Optional[int] = None,
                    extra_rows=(), extra_vars=()) -> CodeEnumeration:
    """Every feasible code of layers ``first..last``, by re-solving with no-good cuts.

    Each solve asks for any feasible point; its counted binaries (the unstable units of layers
    ``first..last``) are rounded, checked in float64 (module docstring), recorded and cut off;
    the loop ends when the model is infeasible. The codes are thus the projection of the
    feasible set on those binaries.

    Args:
      form: a :class:`Formulation`.
      first, last: 1-based inclusive range of the counted layers (``last`` default: the
        formulation's depth).
      backend: ``"highs"`` or ``"scip"``.
      time_limit: total seconds (None: no limit); when hit, ``exact`` is False and ``count`` is
        the number found so far (a lower bound).
      max_codes: stop after this many codes (``exact`` False if more may exist).
      extra_rows: more rows ``(cols, coefs, lo, hi)`` (e.g. parity constraints).
      extra_vars: more variables ``(lb, ub, integer)`` appended after the formulation's.

    Returns:
      A :class:`CodeEnumeration`.
    """
    t0 = time.perf_counter()
    check_backend(backend)
    time_limit = check_time_limit(time_limit)
    last = form.depth if last is None else int(last)
    if not (1 <= first <= last <= form.depth):
        raise ValueError(f"first, last: expected 1 <= first <= last <= {form.depth}, got {first}, {last}")
    deadline = None if time_limit is None else t0 + time_limit
    counted = form.counted_vars(first, last)
    model = _model(form, backend, extra_vars)
    for r in extra_rows:
        model.add_row(*r)
    found, points = [], []
    stats = dict(solves=0, rejected=0, lp_checks=0)
    status, exact = "complete", True
    while True:
        if deadline is not None and time.perf_counter() >= deadline:
            status, exact = "time_limit", False
            break
        res = model.solve(_deadline_left(deadline))
        stats["solves"] += 1
        if res.status == "infeasible":
            break
        if res.status != "feasible":
            status, exact = res.status, False
            break
        zrow = np.round(res.values[counted]).astype(np.int8)
        bits = form.codes_of(zrow[None], first, last)
        xval = res.values[form.x]
        ok = _verify(form, xval, bits, first, last)
        if not ok:
            stats["lp_checks"] += 1
            check = _verify_fixed(form, zrow, counted, first, last, deadline)
            if check == "undecided":  # neither confirmed nor refuted: cutting it off could lose a code
                status, exact = "check_undecided", False
                break
            ok = check == "feasible"
        if ok:
            found.append(zrow)
            points.append(xval)
        else:
            stats["rejected"] += 1
        if len(counted) == 0:
            break
        ones = zrow.astype(bool)
        coefs = np.where(ones, -1.0, 1.0)
        model.add_row(counted, coefs, 1.0 - float(ones.sum()), _INF)
        if max_codes is not None and len(found) >= max_codes:
            status, exact = "max_codes", False
            break
    zs = np.asarray(found, np.int8).reshape(len(found), len(counted))
    return CodeEnumeration(
        count=len(found), exact=exact, codes=form.codes_of(zs, first, last),
        points=np.asarray(points, np.float64).reshape(len(found), len(form.x)), status=status,
        seconds=time.perf_counter() - t0, stats=stats)


def _scip_counted(m) -> tuple:
    """``(count, valid)`` of SCIP's solution counter. PySCIPOpt does not return SCIP's ``valid``
    flag: it prints a line when it is False, which is captured here (the library prints nothing)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        n = int(m.getNCountedSols())
    valid = "not valid" not in buf.getvalue() and n >= 0
    return n, valid


def count_native(form: Formulation, *, time_limit: Optional[float] = None) -> CodeEnumeration:
    """SCIP's native solution counting of the formulation's binaries (every layer).

    ``Model.count()`` with ``constraints/countsols/sparsetest`` off (the sparse test assumes
    unfixed binaries are free, which continuous variables break): every leaf of the tree where
    all binaries are fixed and the LP is feasible is one code. With a time limit the count so far
    is a lower bound (``exact`` False). If SCIP flags its count invalid (an overflow of its
    counter), ``exact`` is False and ``status`` is ``"count_invalid"``.

    Args:
      form: a :class:`Formulation`; every binary of it is counted (use it with the scope whose
        range covers layers ``1..depth``).
      time_limit: seconds, or None.

    Returns:
      A :class:`CodeEnumeration` with ``codes`` and ``points`` None.
    """
    t0 = time.perf_counter()
    check_backend("scip")
    time_limit = check_time_limit(time_limit)
    model = _ScipModel(form)
    m = model.m
    m.setParamsCountsols()
    m.setParam("constraints/countsols/sparsetest", False)
    m.setParam("numerics/feastol", _SCIP_FEAS_TOL)
    if time_limit is not None:
        m.setParam("limits/time", time_limit)
    m.count()
    n, valid = _scip_counted(m)
    st = m.getStatus()
    exact = st in ("infeasible", "optimal")  # counting ends "infeasible": every leaf was rejected
    status = "complete" if exact else ("time_limit" if st == "timelimit" else st)
    if not valid:  # SCIP's count overflowed (or is otherwise flagged invalid): not a number to trust
        exact, status = False, "count_invalid"
    return CodeEnumeration(count=n, exact=exact, codes=None, points=None, status=status,
                           seconds=time.perf_counter() - t0, stats=dict(solves=1, rejected=0, lp_checks=0))


def find_code(form: Formulation, *, first: int = 1, last: Optional[int] = None, backend: str = "highs",
              time_limit: Optional[float] = None, extra_rows=(), extra_vars=()):
    """One feasible (checked) code of layers ``first..last`` under extra rows, or none.

    Args:
      form: a :class:`Formulation`.
      first, last: the counted layers (as in :func:`enumerate_codes`).
      backend: ``"highs"`` or ``"scip"``.
      time_limit: seconds, or None.
      extra_rows, extra_vars: as in :func:`enumerate_codes`.

    Returns:
      ``(status, zrow)``: ``"feasible"`` with the counted binaries ``int8[K]`` of a checked code,
      ``"infeasible"`` with None, or ``"time_limit"`` / a failure status with None (undecided).
    """
    res = enumerate_codes(form, first=first, last=last, backend=backend, time_limit=time_limit,
                          max_codes=1, extra_rows=extra_rows, extra_vars=extra_vars)
    if res.count:
        counted = form.counted_vars(first, form.depth if last is None else last)
        z = np.concatenate([b[0][form.fixed[l] == 0] for l, b in
                            zip(range(first - 1, form.depth if last is None else last), res.codes)])
        return "feasible", z.astype(np.int8)[: len(counted)]
    if res.status in ("complete",):
        return "infeasible", None
    return res.status, None


# -----------------------------------------------------------------------------------------
# exact pre-activation bounds (the stability helper's "milp" method)
# -----------------------------------------------------------------------------------------
def milp_preactivation_bounds(net: Net, domain: Box, bounds, *, backend: str = "highs",
                              time_limit: Optional[float] = None) -> list:
    """Per-unit bounds of every hidden pre-activation by exact MILP, layer by layer.

    For layer ``l`` the MILP of layers ``1..l-1`` (no margin: the exact graph of the net, big-M
    from the bounds given, tightened layer by layer as the MILP bounds come in) is minimised and
    maximised over each unit's pre-activation. The value returned is the solver's **dual bound**
    (the best bound proven), so a solve cut short by the time limit still gives a sound bound;
    units not reached in time get NaN (the caller keeps its own bounds there). The solvers run at
    their default tolerances (``1e-6``; tighter ones were seen to make SCIP return wrong optima)
    and every bound is widened outward by ``1e-6 (1 + |bound|)`` for them.

    Args:
      net: an unstacked :class:`~partax.nets.Net`.
      domain: a :class:`partax.Box`.
      bounds: sound bounds, a list of ``(lo, hi)`` per hidden layer (e.g. the ``"lp"`` method of
        :func:`partax.stability.preactivation_bounds`): the big-M constants.
      backend: ``"highs"`` (default) or ``"scip"``.
      time_limit: total seconds (None: no limit).

    Returns:
      A list of ``(lo, hi)`` ``float64[n_l]`` pairs, one per hidden layer; NaN where no bound
      was obtained (time spent, or a solve that ended in an error: its dual bound is not used).
      Layer 1 is returned as given (its bounds over a box are exact already). Where the earlier
      layers are all stable the model has no binaries, and the bound is the LP's weak-duality
      bound (HiGHS) rather than a MIP dual bound.

    Raises:
      RuntimeError: a MILP bound lies outside the sound bounds given (a minimum above the given
        upper bound, or a maximum below the given lower bound): a solver failure, never returned
        as a number.

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.stability import preactivation_bounds
      >>> net = partax.mlp(jax.random.key(0), [2, 6, 6, 1], bias_std=0.3)
      >>> box = partax.Box(-1.0, 1.0)
      >>> lp = preactivation_bounds(net, box, "lp")
      >>> ex = milp_preactivation_bounds(net, box, lp)
      >>> bool(np.all(ex[1][0] >= lp[1][0] - 1e-5) and np.all(ex[1][1] <= lp[1][1] + 1e-5))
      True
    """
    check_net(net)
    check_milp_domain(domain, net.input_dim)
    check_backend(backend)
    time_limit = check_time_limit(time_limit)
    L = net.num_hidden
    cur = [(np.array(lo, np.float64), np.array(hi, np.float64)) for lo, hi in _check_bounds(bounds, net.widths, L)]
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + time_limit
    out = [(cur[0][0].copy(), cur[0][1].copy())]
    Ws, bs = _net_arrays(net, L)
    for l in range(1, L):
        n = net.widths[l]
        lo_l = np.full(n, np.nan); hi_l = np.full(n, np.nan)
        if deadline is not None and time.perf_counter() >= deadline:
            out.append((lo_l, hi_l))
            continue
        form = formulate(net, domain, depth=l, bounds=cur, margin=0.0)
        # the outputs of layer l (1-based) as linear expressions of the formulation's columns
        expr = form.outputs[l - 1]
        model = _model(form, backend, tight=False)  # the solvers' default tolerances, see below
        W, b = Ws[l], bs[l]
        for i in range(n):
            cols, coefs = _combine(expr, W[:, i])
            for sense in ("min", "max"):
                if deadline is not None and time.perf_counter() >= deadline:
                    break
                if len(cols) == 0:
                    val = 0.0
                else:
                    model.set_objective(cols, coefs, sense)
                    res = model.solve(_deadline_left(deadline))
                    # only a finished or time-limited solve proves a bound; an error's is not trusted
                    if res.status not in ("feasible", "time_limit") or not np.isfinite(res.dual_bound):
                        continue
                    val = float(res.dual_bound)
                    widen = _BOUND_WIDEN * (1.0 + abs(val))
                    val = val - widen if sense == "min" else val + widen
                given_lo, given_hi = cur[l][0][i], cur[l][1][i]
                if sense == "min":
                    lo_l[i] = val + b[i]
                    if lo_l[i] > given_hi:
                        raise RuntimeError(
                            f"milp_preactivation_bounds: layer {l + 1} unit {i}: the {backend} lower bound "
                            f"{lo_l[i]!r} exceeds the sound upper bound given ({given_hi!r}): a solver failure")
                else:
                    hi_l[i] = val + b[i]
                    if hi_l[i] < given_lo:
                        raise RuntimeError(
                            f"milp_preactivation_bounds: layer {l + 1} unit {i}: the {backend} upper bound "
                            f"{hi_l[i]!r} is below the sound lower bound given ({given_lo!r}): a solver failure")
        out.append((lo_l, hi_l))
        nl, nh = cur[l]
        cur[l] = (np.where(np.isnan(lo_l), nl, np.maximum(nl, lo_l)), np.where(np.isnan(hi_l), nh, np.minimum(nh, hi_l)))
        cur[l] = (np.minimum(cur[l][0], cur[l][1]), cur[l][1])
    return out


def _combine(expr: list, w: np.ndarray):
    acc = {}
    for j, e in enumerate(expr):
        if w[j] == 0.0:
            continue
        for c, a in e:
            acc[c] = acc.get(c, 0.0) + w[j] * a
    cols = np.fromiter(acc.keys(), np.int64, len(acc))
    coefs = np.fromiter(acc.values(), np.float64, len(acc))
    return cols, coefs
