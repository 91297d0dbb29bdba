"""Sound pre-activation bounds over a box, and the stable units they certify.

Over a bounded input domain (a :class:`partax.Box`) every hidden pre-activation ``z_i`` of a
ReLU net lies in an interval ``[lo_i, hi_i]``. A unit with ``lo_i > 0`` is **stably active**
(its activation is the affine map ``z_i`` on the whole box); one with ``hi_i <= 0`` is **stably
inactive** (its activation is ``0``, or ``alpha * z_i`` for a leaky ReLU; the code of a unit is 1
iff ``z > 0``, so ``hi = 0`` is inactive); every other unit is **unstable** as far as the bounds
can tell. :func:`preactivation_bounds` computes sound intervals with four methods of
increasing strength and cost:

``"interval"``
    interval arithmetic, layer by layer (``centre +- |W|^T radius``).
``"linear"``
    CROWN / DeepPoly-style back-substitution: each unstable ReLU is replaced by a linear upper
    bound (the chord of the triangle) and an adaptive linear lower bound (slope 0 or 1, the
    smaller area), and the bound of every unit of layer ``l`` is a linear function of the input
    back-substituted through layers ``l-1 ... 1`` and maximised over the box in closed form.
    Batched NumPy float64 (every unit of a layer at once).
``"lp"``
    the LP relaxation over the triangle relaxation of every earlier layer (Ehlers 2017), solved
    with HiGHS per unit, layer by layer (each layer uses the tightened bounds of the previous
    ones). The bound returned is not HiGHS's objective value but a **safe dual bound**
    (weak duality evaluated in float64 from HiGHS's dual values, Neumaier & Shcherbina 2004), so
    it is sound even where the solver stops early or is slightly infeasible.
``"milp"``
    exact per-unit bounds from the mixed-integer formulation of :mod:`partax.milp`
    (``milp_preactivation_bounds``; sound under a time limit: the solver's dual bounds), with the
    LP bounds as big-M constants.

Every method intersects its intervals with those of the weaker methods it builds on, so what
they certify is nested: interval ⊆ linear ⊆ lp ⊆ milp. All arithmetic is float64 (the net's
float32 weights are exact in float64) and every bound is widened outward by ``slack`` times the
magnitude of the terms that produced it, to absorb float64 rounding. The bounds, and so the
classes, are over **exact arithmetic** on the net's parameters (not over the net's float32 forward
pass, which can round a pre-activation of ``3.7e-8`` to ``0``). Data can only **refute** stability
(:func:`refute`, with its own float64 pre-activations): a unit seen active at some input cannot be
stably inactive.

Under a ``time_limit`` (``"lp"``, ``"milp"``), or where HiGHS returns no valid dual, a unit keeps
the bounds of the weaker method (sound, but weaker). This is flagged, never silent:
``preactivation_bounds(..., return_info=True)`` returns ``(bounds, info)`` with
``info["unfinished"]``, the number of such units per hidden layer; without ``return_info`` a
``RuntimeWarning`` names how many units kept weaker bounds.

Example:
    >>> import numpy as np, partax
    >>> from partax.stability import preactivation_bounds, stable_units
    >>> W1 = np.array([[1.0, -1.0, 1.0]], np.float32); b1 = np.array([2.0, -2.0, 0.0], np.float32)
    >>> net = partax.Net.from_arrays([W1, b1, np.ones((3, 1), np.float32), np.zeros(1, np.float32)])
    >>> [s.tolist() for s in stable_units(net, partax.Box(-1.0, 1.0))]
    [[1, -1, 0]]
    >>> lo, hi = preactivation_bounds(net, partax.Box(-1.0, 1.0))[0]
    >>> np.round(lo, 6).tolist(), np.round(hi, 6).tolist()
    ([1.0, -3.0, -1.0], [3.0, -1.0, 1.0])
"""

from __future__ import annotations

import importlib
import time
import warnings

import numpy as np

from partax.geometry import Box
from partax.highs import quiet_highs
from partax.nets import Net
from partax.validation import check_inputs, check_positive, check_positive_int, check_tolerance

__all__ = [
    "METHODS",
    "ACTIVE",
    "INACTIVE",
    "UNSTABLE",
    "preactivation_bounds",
    "stable_units",
    "classify",
    "refute",
    "check_net",
    "check_box",
]

METHODS = ("interval", "linear", "lp", "milp")
ACTIVE = 1
INACTIVE = -1
UNSTABLE = 0
_SLACK = 1e-9


# -- validation --------------------------------------------------------------------------------

def check_net(net) -> None:
    """Raises unless ``net`` is an unstacked partax :class:`~partax.nets.Net` with ReLU / leaky ReLU units.

    Args:
      net: the object to check.

    Returns:
      None.

    Raises:
      TypeError: ``net`` is not a partax Net.
      ValueError: a stacked net, a net without hidden layers, or an unsupported activation.
    """
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax Net (dense layers with relu / leaky_relu units), "
                        f"got {type(net).__name__}")
    if net.stack_shape:
        raise ValueError(f"net: expected an unstacked net, got stack shape {net.stack_shape}; index it first")
    if net.activation not in ("relu", "leaky_relu"):
        raise ValueError(f"net: unsupported activation {net.activation!r}; expected relu or leaky_relu")
    if net.num_hidden < 1:
        raise ValueError("net: expected at least one hidden layer")


def check_box(domain, d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` of a bounded domain as ``float64[d]``.

    Args:
      domain: a :class:`partax.Box`.
      d: the input dimension it must have.

    Returns:
      ``(lo, hi)``, ``float64[d]`` each.

    Raises:
      ValueError: ``domain`` is None (all of R^d: unbounded) or has another dimension.
      TypeError: ``domain`` is not a Box.
    """
    if domain is None:
        raise ValueError("domain: stability needs a bounded domain (a partax.Box), got None (all of R^d)")
    if not isinstance(domain, Box):
        raise TypeError(f"domain: expected a partax.Box, got {type(domain).__name__}")
    return domain.bounds(d)


def _arrays64(net: Net) -> tuple[list, list]:
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    for l, (W, b) in enumerate(zip(Ws, bs)):
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError(f"net: layer {l + 1} has NaN or inf parameters")
    return Ws, bs


def _alpha(net: Net) -> float:
    return float(net.alpha) if net.activation == "leaky_relu" else 0.0


def _act_bounds(lo, hi, alpha):
    """Bounds of the activation given pre-activation bounds (monotone activation)."""
    if alpha == 0.0:
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    f = lambda z: np.where(z > 0, z, alpha * z)  # noqa: E731
    a, b = f(lo), f(hi)
    if alpha < 0:  # non-monotone leaky unit: the minimum may sit at 0
        return np.minimum(np.minimum(a, b), 0.0), np.maximum(a, b)
    return a, b


def _affine_interval(W, b, lo, hi, slack):
    """Interval of ``h @ W + b`` for ``h`` in ``[lo, hi]``, widened for float64 rounding."""
    c = 0.5 * (lo + hi)
    r = 0.5 * (hi - lo)
    absW = np.abs(W)
    mid = c @ W + b
    rad = r @ absW
    mag = np.abs(c) @ absW + rad + np.abs(b)
    return mid - rad - slack * mag, mid + rad + slack * mag


# -- interval ----------------------------------------------------------------------------------

def _interval(Ws, bs, lo0, hi0, alpha, slack):
    out = []
    lo, hi = lo0, hi0
    for W, b in zip(Ws[:-1], bs[:-1]):
        zl, zu = _affine_interval(W, b, lo, hi, slack)
        out.append((zl, zu))
        lo, hi = _act_bounds(zl, zu, alpha)
    return out


# -- linear relaxation (CROWN / DeepPoly back-substitution) ------------------------------------

def _relax(zl, zu, alpha):
    """Per unit linear bounds ``sl*z + tl <= act(z) <= su*z + tu`` valid on ``[zl, zu]``."""
    n = zl.shape[0]
    su = np.zeros(n); tu = np.zeros(n); sl = np.zeros(n); tl = np.zeros(n)
    act = zl > 0
    ina = zu <= 0
    uns = ~(act | ina)
    su[act] = sl[act] = 1.0
    su[ina] = sl[ina] = alpha
    if np.any(uns):
        l, u = zl[uns], zu[uns]
        s = (u - alpha * l) / (u - l)
        su[uns] = s
        tu[uns] = alpha * l - s * l
        if alpha <= 1.0:
            # lower bound slope in {alpha, 1}: the one with the smaller relaxation area
            sl[uns] = np.where(u > -l, 1.0, alpha)
        else:  # alpha > 1 makes the unit concave: swap the roles (chord below, tangent above)
            sl[uns], tl[uns] = s, alpha * l - s * l
            su[uns] = np.where(u > -l, 1.0, alpha)
            tu[uns] = 0.0
    if alpha < 0:  # non-convex, non-monotone: fall back to constant bounds for unstable units
        lo_a, hi_a = _act_bounds(zl[uns], zu[uns], alpha)
        sl[uns] = su[uns] = 0.0
        tl[uns], tu[uns] = lo_a, hi_a
    return sl, tl, su, tu


def _backsub(Ws, bs, k, relax, lo0, hi0, slack, upper):
    """Bound of ``z_k`` (0-based hidden layer ``k``; ``k = L`` the output) by back-substitution.

    Returns the upper bound if ``upper`` else the lower bound, as float64[n_k], and the magnitude
    of the terms (for the rounding slack).
    """
    lam = Ws[k].T.copy()  # [n_k, n_{k-1}]: coefficients on h_{k-1}
    const = bs[k].copy()
    mag = np.abs(bs[k]).copy()
    for j in range(k - 1, -1, -1):
        sl, tl, su, tu = relax[j]
        pos = np.maximum(lam, 0.0)
        neg = np.minimum(lam, 0.0)
        if upper:
            s_pos, t_pos, s_neg, t_neg = su, tu, sl, tl
        else:
            s_pos, t_pos, s_neg, t_neg = sl, tl, su, tu
        # coefficient on z_j and constant from the relaxation of h_j = act(z_j)
        add = pos @ t_pos + neg @ t_neg
        const = const + add
        mag = mag + np.abs(pos) @ np.abs(t_pos) + np.abs(neg) @ np.abs(t_neg)
        lam = pos * s_pos + neg * s_neg  # on z_j
        # z_j = W_j^T h_{j-1} + b_j
        const = const + lam @ bs[j]
        mag = mag + np.abs(lam) @ np.abs(bs[j])
        lam = lam @ Ws[j].T
    c = 0.5 * (lo0 + hi0)
    r = 0.5 * (hi0 - lo0)
    val = lam @ c + const
    rad = np.abs(lam) @ r
    mag = mag + np.abs(lam) @ np.abs(c) + rad
    return (val + rad if upper else val - rad), mag


def _linear(Ws, bs, lo0, hi0, alpha, slack, base):
    out = []
    relax = []
    for k in range(len(Ws) - 1):
        u, mu = _backsub(Ws, bs, k, relax, lo0, hi0, slack, True)
        l, ml = _backsub(Ws, bs, k, relax, lo0, hi0, slack, False)
        zl = np.maximum(l - slack * ml, base[k][0])
        zu = np.minimum(u + slack * mu, base[k][1])
        out.append((zl, zu))
        relax.append(_relax(zl, zu, alpha))
    return out


# -- LP relaxation (triangle relaxation, HiGHS, safe dual bounds) ------------------------------

class _LP:
    """The triangle-relaxation LP of the first ``k`` hidden layers, over the variables
    ``v = (x, z_1, h_1, ..., z_k, h_k)`` with box bounds on every variable."""

    def __init__(self, Ws, bs, bounds, lo0, hi0, alpha, k):
        d = lo0.shape[0]
        col_lo = [lo0]
        col_hi = [hi0]
        rows, cols, vals, rlo, rhi = [], [], [], [], []
        nrow = 0
        off_prev = 0  # offset of h_{j-1} (x for j = 0)
        n_prev = d
        off = d
        for j in range(k):
            W, b = Ws[j], bs[j]
            n = W.shape[1]
            zl, zu = bounds[j]
            hl, hu = _act_bounds(zl, zu, alpha)
            off_z, off_h = off, off + n
            col_lo += [zl, hl]
            col_hi += [zu, hu]
            # z_j - W^T h_{j-1} = b
            ii, jj = np.nonzero(W.T)
            rows.append(nrow + ii); cols.append(off_prev + jj); vals.append(-W.T[ii, jj])
            rows.append(nrow + np.arange(n)); cols.append(off_z + np.arange(n)); vals.append(np.ones(n))
            rlo.append(b); rhi.append(b)
            nrow += n
            act = zl > 0
            ina = zu <= 0
            uns = ~(act | ina)
            # stable: h = z (active) or h = alpha z (inactive)
            for mask, slope in ((act, 1.0), (ina, alpha)):
                idx = np.nonzero(mask)[0]
                m = idx.size
                if m:
                    rows += [nrow + np.arange(m), nrow + np.arange(m)]
                    cols += [off_h + idx, off_z + idx]
                    vals += [np.ones(m), np.full(m, -slope)]
                    rlo.append(np.zeros(m)); rhi.append(np.zeros(m))
                    nrow += m
            idx = np.nonzero(uns)[0]
            m = idx.size
            if m:
                l, u = zl[idx], zu[idx]
                if alpha <= 1.0:  # act = max(z, alpha z) is convex
                    # h >= z and h >= alpha z (h >= 0 for relu is the column bound)
                    for slope in ((1.0, alpha) if alpha != 0 else (1.0,)):
                        rows += [nrow + np.arange(m), nrow + np.arange(m)]
                        cols += [off_h + idx, off_z + idx]
                        vals += [np.ones(m), np.full(m, -slope)]
                        rlo.append(np.zeros(m)); rhi.append(np.full(m, np.inf))
                        nrow += m
                    # h <= s (z - l) + alpha l   i.e.  h - s z <= alpha l - s l
                    s = (u - alpha * l) / (u - l)
                    rows += [nrow + np.arange(m), nrow + np.arange(m)]
                    cols += [off_h + idx, off_z + idx]
                    vals += [np.ones(m), -s]
                    rlo.append(np.full(m, -np.inf)); rhi.append(alpha * l - s * l)
                    nrow += m
                # other alphas: the column bounds [hl, hu] only (sound, weak)
            off_prev, n_prev = off_h, n
            off = off_h + n
        self.nvar = off
        self.off_h = off_prev
        self.n_h = n_prev
        self.col_lo = np.concatenate(col_lo)
        self.col_hi = np.concatenate(col_hi)
        self.row_lo = np.concatenate(rlo) if rlo else np.zeros(0)
        self.row_hi = np.concatenate(rhi) if rhi else np.zeros(0)
        if rows:
            r = np.concatenate(rows); c = np.concatenate(cols); v = np.concatenate(vals)
        else:
            r = c = np.zeros(0, np.int64); v = np.zeros(0)
        import scipy.sparse as sp

        self.A = sp.csr_matrix((v, (r, c)), shape=(nrow, self.nvar))
        self.AT = self.A.T.tocsr()
        self._highs = None

    def _model(self, threads):
        import highspy

        h = quiet_highs(threads=threads or None)
        inf = highspy.kHighsInf
        lp = highspy.HighsLp()
        lp.num_col_ = self.nvar
        lp.num_row_ = self.A.shape[0]
        lp.col_cost_ = np.zeros(self.nvar)
        lp.col_lower_ = self.col_lo
        lp.col_upper_ = self.col_hi
        lp.row_lower_ = np.where(np.isfinite(self.row_lo), self.row_lo, -inf)
        lp.row_upper_ = np.where(np.isfinite(self.row_hi), self.row_hi, inf)
        csc = self.A.tocsc()
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
        lp.a_matrix_.index_ = csc.indices.astype(np.int32)
        lp.a_matrix_.value_ = csc.data.astype(np.float64)
        h.passModel(lp)
        return h

    def safe_min(self, c, y):
        """A rigorous lower bound on ``min c.v`` over the LP from any row multipliers ``y``."""
        y = np.where(y > 0, np.where(np.isfinite(self.row_lo), y, 0.0),
                     np.where(np.isfinite(self.row_hi), y, 0.0))
        rl = np.where(np.isfinite(self.row_lo), self.row_lo, 0.0)
        rh = np.where(np.isfinite(self.row_hi), self.row_hi, 0.0)
        part_rows = np.where(y > 0, y * rl, y * rh)
        red = c - self.AT @ y
        part_cols = np.minimum(red * self.col_lo, red * self.col_hi)
        val = part_rows.sum() + part_cols.sum()
        mag = np.abs(part_rows).sum() + np.abs(part_cols).sum() + np.abs(self.AT @ y).sum()
        return val - 4 * np.finfo(np.float64).eps * mag * max(1, len(c))

    def bounds_of(self, W, b, threads, deadline):
        """Lower and upper bounds of ``h_k @ W + b`` for every column of ``W``, and a mask of the
        units whose LP was not solved with a valid dual (the deadline passed, or HiGHS had no
        valid dual): their bounds are the weak ones (``-inf``/``inf`` or the zero-multiplier bound)."""
        if self._highs is None:
            self._highs = self._model(threads)
        h = self._highs
        n = W.shape[1]
        lo = np.full(n, -np.inf)
        hi = np.full(n, np.inf)
        unfinished = np.zeros(n, bool)
        cols = np.arange(self.off_h, self.off_h + self.n_h, dtype=np.int32)
        for i in range(n):
            for sign in (1.0, -1.0):
                if deadline is not None and time.perf_counter() > deadline:
                    unfinished[i:] = True
                    return lo, hi, unfinished
                c = np.zeros(self.nvar)
                c[self.off_h:self.off_h + self.n_h] = sign * W[:, i]
                h.changeColsCost(len(cols), cols, c[cols])
                h.run()
                sol = h.getSolution()
                y = np.asarray(sol.row_dual, np.float64) if sol.dual_valid else np.zeros(self.A.shape[0])
                if not sol.dual_valid:
                    unfinished[i] = True
                best = self.safe_min(c, y)
                if sol.dual_valid:  # HiGHS' sign convention is fixed, but both signs are valid bounds
                    best = max(best, self.safe_min(c, -y))
                best = max(best, self.safe_min(c, np.zeros(self.A.shape[0])))
                if sign > 0:
                    lo[i] = best + b[i]
                else:
                    hi[i] = -best + b[i]
        return lo, hi, unfinished


def _lp(Ws, bs, lo0, hi0, alpha, slack, base, threads, time_limit):
    deadline = None if time_limit is None else time.perf_counter() + float(time_limit)
    out = [base[0]]  # over a box the first layer's LP bound is the interval bound
    unfinished = [0]
    for k in range(1, len(Ws) - 1):
        lp = _LP(Ws, bs, out, lo0, hi0, alpha, k)
        l, u, unf = lp.bounds_of(Ws[k], bs[k], threads, deadline)
        mag = np.abs(base[k][0]) + np.abs(base[k][1]) + 1.0
        out.append((np.maximum(l - slack * mag, base[k][0]), np.minimum(u + slack * mag, base[k][1])))
        unfinished.append(int(unf.sum()))
    return out, unfinished


# -- public ------------------------------------------------------------------------------------

def preactivation_bounds(net: Net, domain: Box, method: str = "interval", *, slack: float = _SLACK,
                         time_limit: float | None = None, threads: int | None = None,
                         backend: str = "highs", return_info: bool = False):
    """Sound bounds of every hidden pre-activation of ``net`` over the box ``domain``.

    Args:
      net: an unstacked :class:`~partax.nets.Net` (ReLU or leaky ReLU).
      domain: a :class:`partax.Box` of the net's input dimension (bounded: None is refused).
      method: ``"interval"``, ``"linear"``, ``"lp"`` or ``"milp"`` (see the module docstring);
        each certifies at least what the ones before it certify.
      slack: relative outward widening of every bound (float64 rounding); a finite number >= 0.
      time_limit: seconds (a finite number > 0) for the ``"lp"`` and ``"milp"`` methods (None: no
        limit). Units whose LP was not reached keep their ``"linear"`` bounds, MILP units their LP
        bounds or the MILP's dual bound, so the result stays sound; they are counted in
        ``info["unfinished"]`` (see ``return_info``).
      threads: HiGHS threads for ``"lp"``, a positive int (None: HiGHS' default).
      backend: MILP backend for ``"milp"`` (passed to :func:`partax.milp.milp_preactivation_bounds`).
      return_info: also return an ``info`` dict. Without it, a ``RuntimeWarning`` says how many
        units kept weaker bounds, when some did.

    Returns:
      A list of ``(lo, hi)`` pairs of ``float64[n_l]`` arrays, one per hidden layer: every
      input of the box has ``lo <= z <= hi`` (exact arithmetic on the net's parameters). With
      ``return_info=True``, ``(bounds, info)``: ``info["unfinished"]`` is a list (per hidden layer)
      of the number of units that kept the bounds of a weaker method because the time limit passed
      or HiGHS (or the MILP) returned no valid bound for them (always 0 for ``"interval"`` and
      ``"linear"``), ``info["method"]`` the method and ``info["seconds"]`` the wall time.

    Raises:
      ValueError: unknown method, unbounded domain, a domain of the wrong dimension, a stacked net,
        an unsupported activation, NaN parameters, a bad ``slack``, ``time_limit`` or ``threads``.
      TypeError: ``net`` is not a Net or ``domain`` not a Box.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    check_net(net)
    lo0, hi0 = check_box(domain, net.input_dim)
    slack = check_tolerance(slack, "slack")
    if time_limit is not None:
        time_limit = check_positive(time_limit, "time_limit")
    if threads is not None:
        threads = check_positive_int(threads, "threads")
    if not isinstance(return_info, (bool, np.bool_)):
        raise TypeError(f"return_info: expected a bool, got {return_info!r}")
    Ws, bs = _arrays64(net)
    alpha = _alpha(net)
    unfinished = [0] * net.num_hidden
    out = _interval(Ws, bs, lo0, hi0, alpha, slack)
    if method != "interval":
        out = _linear(Ws, bs, lo0, hi0, alpha, slack, out)
    if method in ("lp", "milp"):
        out, unfinished = _lp(Ws, bs, lo0, hi0, alpha, slack, out, threads, time_limit)
    if method == "milp":
        out, unfinished = _milp(net, domain, out, unfinished, slack, backend, time_limit)
    total = int(sum(unfinished))
    if return_info:
        return out, {"method": method, "unfinished": [int(u) for u in unfinished],
                     "seconds": time.perf_counter() - t0}
    if total:
        why = "the time limit passed or the solver returned no valid bound"
        warnings.warn(f"preactivation_bounds: {total} unit(s) (per hidden layer: {unfinished}) kept the sound "
                      f"but weaker bounds of a weaker method ({why}); pass return_info=True for the counts",
                      RuntimeWarning, stacklevel=2)
    return out


def _milp(net, domain, out, unfinished, slack, backend, time_limit):
    # imported here, not at the top: partax.milp imports this module
    milp = importlib.import_module("partax.milp")
    exact = milp.milp_preactivation_bounds(net, domain, out, backend=backend, time_limit=time_limit)
    if len(exact) != len(out):
        raise RuntimeError(f"partax.milp returned bounds for {len(exact)} layers, expected {len(out)}")
    res = []
    unf = []
    for (l, u), (el, eu), prev in zip(out, exact, unfinished):
        el = np.asarray(el, np.float64); eu = np.asarray(eu, np.float64)
        mag = np.abs(l) + np.abs(u) + 1.0
        missing = np.isnan(el) | np.isnan(eu)
        el = np.where(np.isnan(el), -np.inf, el - slack * mag)
        eu = np.where(np.isnan(eu), np.inf, eu + slack * mag)
        res.append((np.maximum(l, el), np.minimum(u, eu)))
        unf.append(max(int(prev), int(missing.sum())))
    return res, unf


def _check_bounds(bounds, name="bounds", widths=None):
    """``bounds`` as a list of float64 ``(lo, hi)`` pairs, checked (shapes, NaN, ``lo <= hi``)."""
    if not isinstance(bounds, (list, tuple)):
        raise TypeError(f"{name}: expected a list of (lo, hi) pairs, one per hidden layer, got "
                        f"{type(bounds).__name__}")
    if widths is not None and len(bounds) != len(widths):
        raise ValueError(f"{name}: expected {len(widths)} (lo, hi) pairs (one per hidden layer), got {len(bounds)}")
    out = []
    for l, pair in enumerate(bounds):
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise ValueError(f"{name}: layer {l + 1}: expected a (lo, hi) pair") from None
        lo = np.asarray(lo, np.float64); hi = np.asarray(hi, np.float64)
        n = widths[l] if widths is not None else (lo.shape[0] if lo.ndim == 1 else -1)
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"{name}: layer {l + 1}: expected lo and hi of shape ({n},) each, got "
                             f"{lo.shape} and {hi.shape}")
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
            raise ValueError(f"{name}: layer {l + 1}: NaN bounds")
        bad = np.nonzero(lo > hi)[0]
        if bad.size:
            raise ValueError(f"{name}: layer {l + 1}: expected lo <= hi, got lo > hi at units {bad[:10].tolist()}")
        out.append((lo, hi))
    return out


def classify(bounds) -> list:
    """Stability classes from pre-activation bounds.

    Args:
      bounds: a list of ``(lo, hi)`` per hidden layer (as :func:`preactivation_bounds` returns):
        1-D arrays of equal length, no NaN, ``lo <= hi``.

    Returns:
      A list of ``int8[n_l]``: +1 where ``lo > 0`` (stably active), -1 where ``hi <= 0`` (stably
      inactive), 0 otherwise (unstable).

    Raises:
      TypeError: ``bounds`` is not a list of pairs.
      ValueError: a layer's ``lo``/``hi`` have other shapes, NaN, or ``lo > hi``.
    """
    out = []
    for lo, hi in _check_bounds(bounds):
        s = np.zeros(lo.shape, np.int8)
        s[lo > 0] = ACTIVE
        s[hi <= 0] = INACTIVE
        out.append(s)
    return out


def stable_units(net: Net, domain: Box, method: str = "interval", **kwargs) -> list:
    """Classifies every hidden unit of ``net`` over ``domain`` as stably active, inactive or unstable.

    Args:
      net: an unstacked :class:`~partax.nets.Net`.
      domain: a :class:`partax.Box`.
      method: ``"interval"``, ``"linear"``, ``"lp"`` or ``"milp"``.
      **kwargs: passed to :func:`preactivation_bounds` (``slack``, ``time_limit``, ``threads``,
        ``backend``).

    Returns:
      A list, per hidden layer, of ``int8[n_l]``: +1 stably active, -1 stably inactive,
      0 unstable (not certified stable by this method).

    Example:
      >>> import jax, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1])
      >>> [s.shape for s in stable_units(net, partax.Box(0.0, 1.0), method="linear")]
      [(8,), (8,)]
    """
    return classify(preactivation_bounds(net, domain, method, **kwargs))


def refute(net: Net, stability, x) -> list:
    """Units whose certified class is contradicted by data (which must never happen).

    Data can refute stability, never prove it: a unit seen active (``z > 0``) at an input of the
    box cannot be stably inactive, one seen inactive (``z <= 0``) cannot be stably active. The
    classes are over exact arithmetic, so the pre-activations are computed in float64 NumPy from
    ``net.weights`` / ``net.biases`` (exact products of float32 parameters and inputs), not by the
    net's float32 forward pass, whose rounding could fake a contradiction.

    Args:
      net: an unstacked :class:`~partax.nets.Net`.
      stability: classes as :func:`stable_units` returns (one ``[n_l]`` array of -1/0/+1 per
        hidden layer).
      x: inputs ``[N, d_in]`` from the domain.

    Returns:
      A list per hidden layer of the indices of the units whose class some input contradicts.

    Raises:
      TypeError: ``net`` is not a Net, or ``x`` is not numeric.
      ValueError: ``x`` is not ``[N, d_in]`` or not finite; ``stability`` does not have one array
        of the layer's width per hidden layer, or holds values other than -1, 0, 1.
    """
    check_net(net)
    x = np.asarray(check_inputs(x, net.input_dim, "x"), np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x: expected finite inputs (found NaN or inf)")
    widths = tuple(int(w) for w in net.widths)
    if not isinstance(stability, (list, tuple)) or len(stability) != len(widths):
        raise ValueError(f"stability: expected {len(widths)} class arrays (one per hidden layer), got "
                         f"{len(stability) if isinstance(stability, (list, tuple)) else type(stability).__name__}")
    classes = []
    for l, (s, n) in enumerate(zip(stability, widths)):
        s = np.asarray(s)
        if s.shape != (n,):
            raise ValueError(f"stability: layer {l + 1}: expected shape ({n},), got {s.shape}")
        if not np.all(np.isin(s, (ACTIVE, INACTIVE, UNSTABLE))):
            raise ValueError(f"stability: layer {l + 1}: expected classes -1, 0, 1")
        classes.append(s)
    Ws, bs = _arrays64(net)
    alpha = _alpha(net)
    h = x
    out = []
    for s, W, b in zip(classes, Ws[:-1], bs[:-1]):
        z = h @ W + b
        seen_on = (z > 0).any(axis=0)
        seen_off = (z <= 0).any(axis=0)
        out.append(np.nonzero((seen_on & (s == INACTIVE)) | (seen_off & (s == ACTIVE)))[0])
        h = np.where(z > 0, z, alpha * z)
    return out
