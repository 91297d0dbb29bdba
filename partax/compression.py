"""Lossless compression: a smaller ReLU net that computes the same function on a box.

Serra, Kumar & Ramalingam (CPAIOR 2020) and Serra, Yu, Kumar & Ramalingam (NeurIPS 2021) shrink
a trained ReLU net without changing the function it computes on the input domain. With the
stability classes of :mod:`partax.stability` (sound bounds over the box), :func:`compress`
rebuilds the net layer by layer, in float64:

* a **stably inactive** unit outputs 0 on the box (a ReLU; a leaky ReLU outputs ``alpha * z``,
  which is affine and treated like an active unit with slope ``alpha``): it is removed;
* a unit whose incoming weights are all **zero** outputs a constant: it is removed and its
  constant moves into the next layer's bias;
* **stably active** units are affine on the box: a basis of them is kept (rank by QR with
  column pivoting on their incoming weights), and every linearly dependent one is merged into
  the next layer (its outgoing weights spread over the basis by its coefficients, its constant
  into the bias);
* a layer left with **no unstable unit** is affine: it is **folded** into the next layer (the
  product of the two affine maps); when every hidden layer folds the net is affine on the box
  (represented with one stably active unit per output, shifted to stay positive on the box), and
  when the map that reaches the output is zero — e.g. a layer whose units are all stably
  inactive — the net is **constant** (one dead unit, the constant in the output bias);
* a unit whose outgoing weights are all zero is removed (backwards, so removals cascade).

The smaller net is returned in the original net's dtype, so it equals the original up to the
rounding of its weights; :func:`verify_equivalent` measures and certifies that difference, and
:func:`compress` raises rather than return a net that failed it.

**Verification** (:func:`verify_equivalent`) is done two ways. (1) Dense sampling of the box
and its corners with float64 forward passes of both nets: ``max_abs_diff``. (2) An exact
certificate, an upper bound on ``max |f - g|`` over the whole box:

``"algebraic"`` (default; scales to any size)
    With the original net's sound pre-activation bounds, every stable unit of ``f`` is affine on
    the box, so ``f`` is a DAG of its unstable ReLUs with affine pre-activations over the
    variables ``v = (x, 1, r_1, ..., r_m)`` (``r`` the unstable units' outputs). Each unit of
    ``g`` is written over the same variables, layer by layer, and matched to a unit of ``f``
    whose pre-activation it equals up to an error bound ``e`` (weight differences times the
    variables' ranges, plus the error propagated from earlier units; ReLU is 1-Lipschitz); a
    ``g`` unit matched to a stable unit of ``f`` is stable itself when the bound ``e`` stays
    below the ``f`` unit's margin, and one whose own range (interval arithmetic on its row) is
    one-signed is stable by itself. The certified bound is the error at the outputs. It rests on
    the soundness of the bounds and on float64 arithmetic (the rows are widened by a relative
    ``1e-12``).
``"enumerate"`` (small nets and boxes)
    Every region of the joint net ``x -> (f(x), g(x))`` (both nets side by side, the shallower
    padded with identity layers ``(act(y) - act(-y)) / (1 + alpha)``; none exist for ``alpha = -1``,
    where nets of different depths get an infinite bound) by :func:`partax.geometry.enumerate_regions`;
    on each region both nets are affine, and the bound is the maximum over the regions of the
    difference of the two affine maps (over the whole box, or by an LP over the region where that
    is not already below the tolerance). Needs ``d <= 6`` and the enumeration's volume
    certificate (the regions found fill the box); edges found from one side only are accepted,
    since a unit of ``f`` and its copy in ``g`` give twin hyperplanes, non-generic by construction.

Example:
    >>> import numpy as np, partax
    >>> from partax.compression import compress
    >>> W1 = np.array([[1.0, 1.0, -1.0, 2.0], [0.0, 1.0, 0.0, 2.0]], np.float32)
    >>> b1 = np.array([0.0, 3.0, -5.0, 5.0], np.float32)  # unit 0 unstable, 1 and 3 active, 2 inactive
    >>> W2 = np.array([[1.0], [1.0], [1.0], [1.0]], np.float32); b2 = np.zeros(1, np.float32)
    >>> net = partax.Net.from_arrays([W1, b1, W2, b2])
    >>> small, report = compress(net, partax.Box(-1.0, 1.0), method="interval")
    >>> # unit 2 is removed, unit 3 = 2 * unit 1 - 1 is merged into the output layer
    >>> small.widths, report.units_before, report.units_after, report.verification.equivalent
    ((2,), 4, 2, True)
"""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np

from partax import stability
from partax.geometry import Box
from partax.nets import Net
from partax.stability import classify as _classify_bounds
from partax.validation import check_positive_int, check_tolerance

__all__ = ["compress", "verify_equivalent", "CompressionReport", "LayerReport", "Equivalence", "CompressionError",
           "CERTIFICATES"]

CERTIFICATES = ("auto", "algebraic", "enumerate", "none")
_ROW_SLACK = 1e-12


class CompressionError(RuntimeError):
    """The compressed net failed its own verification (it is never returned).

    Attributes:
      report: the :class:`CompressionReport` of the failed attempt (its ``verification`` says why).
    """

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


# -- records -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayerReport:
    """What :func:`compress` did to one hidden layer of the original net.

    Attributes:
      layer: 1-based hidden layer of the original net.
      units_before: its width.
      stably_active, stably_inactive, unstable: the certified classes.
      removed_inactive: stably inactive units removed (ReLU: they output 0 on the box).
      removed_zero_incoming: units with all-zero incoming weights (constants) removed.
      merged_active: linearly dependent affine units merged into the next layer.
      kept_affine: affine units kept as a basis (stably active; stably inactive for a leaky ReLU).
      removed_zero_outgoing: units removed because their outgoing weights were all zero.
      folded: the layer had no unstable unit and was folded into the next one.
      units_after: its width in the smaller net (0 if folded).
    """

    layer: int
    units_before: int
    stably_active: int
    stably_inactive: int
    unstable: int
    removed_inactive: int = 0
    removed_zero_incoming: int = 0
    merged_active: int = 0
    kept_affine: int = 0
    removed_zero_outgoing: int = 0
    folded: bool = False
    units_after: int = 0


@dataclasses.dataclass(frozen=True)
class Equivalence:
    """The result of :func:`verify_equivalent`.

    Attributes:
      max_abs_diff: the largest ``|f(x) - g(x)|`` (float64, any output) over the samples.
      max_abs_f: the largest ``|f(x)|`` over the samples.
      tol: the tolerance both checks are held to: ``atol + rtol * (1 + max_abs_f)``.
      num_samples: the points sampled (uniform samples plus corners).
      sampled_ok: ``max_abs_diff <= tol``.
      certificate: the exact certificate used (``"algebraic"``, ``"enumerate"`` or ``"none"``).
      certified_bound: its upper bound on ``max |f - g|`` over the whole box (inf if it failed).
      certified: ``certified_bound <= tol``.
      equivalent: both hold (``sampled_ok and certified``).
      reason: why the certificate failed ("" if it holds).
      seconds: wall time.
    """

    max_abs_diff: float
    max_abs_f: float
    tol: float
    num_samples: int
    sampled_ok: bool
    certificate: str
    certified_bound: float
    certified: bool
    equivalent: bool
    reason: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """The record as a JSON-ready dict."""
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """What :func:`compress` removed, and why; the sizes before and after; the times.

    Attributes:
      method: the stability method.
      layers: one :class:`LayerReport` per hidden layer of the original net (a tuple).
      units_before, units_after: hidden units of the original and the smaller net.
      connections_before, connections_after: weights (dense, every layer including the output).
      layers_before, layers_after: hidden layers.
      constant: the smaller net is constant on the box.
      affine: the smaller net is affine on the box (no unstable unit anywhere).
      seconds: ``{"bounds", "compress", "verify", "total"}`` wall times.
      verification: the :class:`Equivalence` record of the smaller net.
    """

    method: str
    layers: tuple
    units_before: int
    units_after: int
    connections_before: int
    connections_after: int
    layers_before: int
    layers_after: int
    constant: bool
    affine: bool
    seconds: dict
    verification: Equivalence | None = None

    def __repr__(self) -> str:
        ok = None if self.verification is None else bool(self.verification.equivalent)
        return (f"CompressionReport(method={self.method!r}, units={self.units_before}->{self.units_after}, "
                f"connections={self.connections_before}->{self.connections_after}, "
                f"hidden_layers={self.layers_before}->{self.layers_after}, constant={self.constant}, "
                f"affine={self.affine}, verified={ok})")

    @property
    def units_removed_pct(self) -> float:
        """Percentage of hidden units removed."""
        return 100.0 * (self.units_before - self.units_after) / max(self.units_before, 1)

    @property
    def connections_removed_pct(self) -> float:
        """Percentage of connections (weights) removed."""
        return 100.0 * (self.connections_before - self.connections_after) / max(self.connections_before, 1)

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["verification"] = self.verification.to_dict() if self.verification is not None else None
        d["units_removed_pct"] = self.units_removed_pct
        d["connections_removed_pct"] = self.connections_removed_pct
        return d

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=1)

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"units {self.units_before} -> {self.units_after} ({self.units_removed_pct:.1f}% removed), "
            f"connections {self.connections_before} -> {self.connections_after} "
            f"({self.connections_removed_pct:.1f}% removed), hidden layers {self.layers_before} -> "
            f"{self.layers_after}" + (" [constant]" if self.constant else " [affine]" if self.affine else ""),
        ]
        for r in self.layers:
            lines.append(
                f"  layer {r.layer}: {r.units_before} units: {r.stably_active} stably active, "
                f"{r.stably_inactive} stably inactive, {r.unstable} unstable -> removed {r.removed_inactive} "
                f"inactive, {r.removed_zero_incoming} zero-in, {r.merged_active} merged, "
                f"{r.removed_zero_outgoing} zero-out" + (", folded" if r.folded else "") + f"; {r.units_after} left"
            )
        if self.verification is not None:
            v = self.verification
            lines.append(f"  verified: max |f-g| sampled {v.max_abs_diff:.3g} over {v.num_samples} points, "
                         f"certified bound {v.certified_bound:.3g} ({v.certificate}), tol {v.tol:.3g}: "
                         f"{'equivalent' if v.equivalent else 'NOT equivalent'}")
        s = self.seconds
        lines.append(f"  seconds: bounds {s.get('bounds', 0):.3f}, compress {s.get('compress', 0):.3f}, "
                     f"verify {s.get('verify', 0):.3f}")
        return "\n".join(lines)


# -- helpers -----------------------------------------------------------------------------------

def _params64(net: Net):
    return ([np.asarray(W, np.float64) for W in net.weights], [np.asarray(b, np.float64) for b in net.biases])


def _alpha(net: Net) -> float:
    return float(net.alpha) if net.activation == "leaky_relu" else 0.0


def _act(z, alpha):
    return np.where(z > 0, z, alpha * z)


def _forward64(Ws, bs, alpha, x, preactivations=None):
    """float64 forward pass; appends ``(z, |h| @ |W| + |b|)`` per hidden layer to ``preactivations``."""
    h = np.asarray(x, np.float64)
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = h @ W + b
        if preactivations is not None:
            preactivations.append((z, np.abs(h) @ np.abs(W) + np.abs(b)))
        h = _act(z, alpha)
    return h @ Ws[-1] + bs[-1]


def _check_net_bounds(net: Net, net_bounds, x, pre):
    """Caller-supplied bounds of ``net``, checked against the samples already drawn.

    Checks the shapes per layer, NaN and ``lo <= hi`` (:func:`partax.stability.classify`), that no
    class is refuted by the samples ``x`` (:func:`partax.stability.refute`), and that every sampled
    pre-activation (``pre``: float64, with the magnitudes of its terms) lies inside its bounds up
    to float64 rounding. Returns the bounds as float64 pairs.

    Raises:
      ValueError / TypeError: a message starting with ``net_bounds:``.
    """
    widths = [int(w) for w in net.widths]
    if not isinstance(net_bounds, (list, tuple)) or len(net_bounds) != len(widths):
        got = len(net_bounds) if isinstance(net_bounds, (list, tuple)) else type(net_bounds).__name__
        raise ValueError(f"net_bounds: expected {len(widths)} (lo, hi) pairs (one per hidden layer of net), got {got}")
    bounds = []
    for l, (pair, n) in enumerate(zip(net_bounds, widths)):
        try:
            lo, hi = pair
        except (TypeError, ValueError):
            raise ValueError(f"net_bounds: layer {l + 1}: expected a (lo, hi) pair") from None
        lo = np.asarray(lo, np.float64); hi = np.asarray(hi, np.float64)
        if lo.shape != (n,) or hi.shape != (n,):
            raise ValueError(f"net_bounds: layer {l + 1}: expected lo and hi of shape ({n},) each, got "
                             f"{lo.shape} and {hi.shape}")
        bounds.append((lo, hi))
    try:
        classes = _classify_bounds(bounds)
    except (TypeError, ValueError) as e:
        raise ValueError(f"net_bounds: {e}") from None
    refuted = stability.refute(net, classes, x)
    for l, r in enumerate(refuted):
        if r.size:
            raise ValueError(f"net_bounds: not sound: the samples contradict the classes they certify at layer {l + 1} "
                             f"units {r[:10].tolist()} (e.g. a unit certified stably inactive seen active)")
    for l, ((lo, hi), (z, mag)) in enumerate(zip(bounds, pre)):
        t = 1e-12 * mag + 1e-300
        out = np.nonzero(np.any((z < lo - t) | (z > hi + t), axis=0))[0]
        if out.size:
            raise ValueError(f"net_bounds: not sound: sampled pre-activations of layer {l + 1} units "
                             f"{out[:10].tolist()} lie outside their bounds")
    return bounds


def _connections(Ws) -> int:
    return int(sum(W.shape[0] * W.shape[1] for W in Ws))


def _basis(L, rtol=1e-10):
    """Indices of a basis of the columns of ``L`` and the coefficients of every column on it.

    Returns:
      ``(basis, C)`` with ``L ~= L[:, basis] @ C`` (``C: [len(basis), ncols]``).
    """
    import scipy.linalg

    k = L.shape[1]
    if k == 0:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    norms = np.linalg.norm(L, axis=0)
    scale = max(float(norms.max()), 1e-300)
    _, R, piv = scipy.linalg.qr(L, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R)) if R.size else np.zeros(0)
    r = int(np.sum(diag > rtol * scale))
    basis = list(piv[:r])
    while True:
        B = L[:, basis]
        if basis:
            C, *_ = np.linalg.lstsq(B, L, rcond=None)
            res = np.linalg.norm(B @ C - L, axis=0)
        else:
            C = np.zeros((0, k))
            res = norms
        bad = [j for j in np.argsort(-res) if res[j] > 1e-9 * max(norms[j], 1e-300) and norms[j] > 0]
        if not bad:
            order = np.argsort(basis)
            return np.asarray(basis, np.int64)[order], C[order]
        basis.append(int(bad[0]))


# -- compression -------------------------------------------------------------------------------

def _rebuild(Ws, bs, alpha, classes, lo0, hi0):
    """The smaller net's float64 layers and the per-layer records (each built once, at the end)."""
    L = len(Ws) - 1
    d = Ws[0].shape[0]
    P = np.eye(d)  # h_{l-1} = P^T u + q  (u: the smaller net's last hidden output, or x)
    q = np.zeros(d)
    new_W, new_b = [], []
    records = []
    for l in range(L):
        W, b = Ws[l], bs[l]
        s = np.asarray(classes[l])
        n = W.shape[1]
        Wt = P @ W
        bt = q @ W + b
        rec = dict(layer=l + 1, units_before=n, stably_active=int(np.sum(s == 1)),
                   stably_inactive=int(np.sum(s == -1)), unstable=int(np.sum(s == 0)))
        zero_in = ~np.any(Wt != 0, axis=0)
        const = zero_in.copy()
        inactive = (s == -1) & ~const
        if alpha == 0.0:
            removed_inactive = inactive
        else:
            removed_inactive = np.zeros(n, bool)
        affine = ((s == 1) | ((s == -1) & (alpha != 0.0))) & ~const
        unstable = (s == 0) & ~const
        slope = np.where(s == 1, 1.0, alpha)
        rec["removed_inactive"] = int(removed_inactive.sum())
        rec["removed_zero_incoming"] = int(const.sum())
        aff_idx = np.nonzero(affine)[0]
        Laff = Wt[:, aff_idx] * slope[aff_idx]
        # constants: zero-incoming units output act(bt); removed inactive relu units output 0
        qn = np.zeros(n)
        qn[const] = _act(bt[const], alpha)
        if not unstable.any():  # fold: h_l = M^T u + m
            M = np.zeros((Wt.shape[0], n))
            M[:, aff_idx] = Laff
            qn[aff_idx] = slope[aff_idx] * bt[aff_idx]
            P, q = M, qn
            rec["folded"] = True
            rec["units_after"] = 0
            records.append(rec)
            continue
        basis_local, C = _basis(Laff)
        basis = aff_idx[basis_local]
        dependent = np.setdiff1d(aff_idx, basis)
        rec["merged_active"] = int(dependent.size)
        rec["kept_affine"] = int(basis.size)
        kept = np.sort(np.concatenate([np.nonzero(unstable)[0], basis]))
        pos = {int(k): i for i, k in enumerate(kept)}
        Pn = np.zeros((kept.size, n))
        for k in kept:
            Pn[pos[int(k)], k] = 1.0
        if dependent.size:
            col_of = {int(j): i for i, j in enumerate(aff_idx)}
            Cb = C  # [len(basis), len(aff_idx)] coefficients on the basis (sorted like basis)
            hb_const = slope[basis] * bt[basis]
            for j in dependent:
                c = Cb[:, col_of[int(j)]]
                for bi, k in enumerate(basis):
                    Pn[pos[int(k)], j] = c[bi]
                qn[j] = slope[j] * bt[j] - c @ hb_const
        new_W.append(Wt[:, kept])
        new_b.append(bt[kept])
        rec["units_after"] = int(kept.size)
        records.append(rec)
        P, q = Pn, qn
    Wo = P @ Ws[-1]
    bo = q @ Ws[-1] + bs[-1]
    new_W.append(Wo)
    new_b.append(bo)
    # units with zero outgoing weights, backwards (removals cascade)
    kept_rec = [r for r in records if not r.get("folded", False)]
    for k in range(len(new_W) - 2, -1, -1):
        out_zero = ~np.any(new_W[k + 1] != 0, axis=1)
        if out_zero.all():
            return None, [LayerReport(**r) for r in records]  # nothing reaches the output: constant
        if out_zero.any():
            keep = ~out_zero
            new_W[k] = new_W[k][:, keep]
            new_b[k] = new_b[k][keep]
            new_W[k + 1] = new_W[k + 1][keep]
            kept_rec[k]["removed_zero_outgoing"] = int(out_zero.sum())
            kept_rec[k]["units_after"] = int(keep.sum())
    return (new_W, new_b), [LayerReport(**r) for r in records]


def _affine_net(Wo, bo, lo0, hi0):
    """An affine map on the box as a one-hidden-layer ReLU net (stably active, shifted units)."""
    nz = np.nonzero(np.any(Wo != 0, axis=0))[0]
    if nz.size == 0:
        return None
    Wh = Wo[:, nz]
    c = 0.5 * (lo0 + hi0); r = 0.5 * (hi0 - lo0)
    minval = c @ Wh - r @ np.abs(Wh)
    shift = 1.0 + np.abs(minval).max() - minval  # pre-activation >= 1 + |min| > 0 on the box
    W2 = np.zeros((nz.size, Wo.shape[1]))
    W2[np.arange(nz.size), nz] = 1.0
    b2 = bo.copy()
    b2[nz] -= shift
    return [Wh, shift, W2, b2]


def compress(net: Net, domain: Box, *, method: str = "lp", certificate: str = "auto", samples: int = 20_000,
             atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0, time_limit: float | None = None,
             **bound_kwargs):
    """A smaller net that computes the same function as ``net`` on ``domain``, and a report.

    See the module docstring for what is removed and how equivalence is verified.

    Args:
      net: an unstacked :class:`~partax.nets.Net` (ReLU or leaky ReLU).
      domain: a :class:`partax.Box` of the net's input dimension.
      method: the stability method (``"interval"``, ``"linear"``, ``"lp"``, ``"milp"``).
      certificate: ``"auto"`` (= ``"algebraic"``), ``"algebraic"`` or ``"enumerate"``.
      samples: uniform samples of the box for the sampled check (plus corners).
      atol, rtol: tolerance of both checks: ``atol + rtol * (1 + max |f|)`` (the smaller net's
        weights are rounded to the net's dtype).
      seed: seed of the samples.
      time_limit: seconds for the ``"lp"`` / ``"milp"`` bounds (sound at any limit).
      **bound_kwargs: more keywords for :func:`partax.stability.preactivation_bounds`.

    Returns:
      ``(smaller, report)``: a :class:`~partax.nets.Net` in ``net``'s dtype and a
      :class:`CompressionReport` (its ``verification`` holds the :class:`Equivalence`).

    Raises:
      CompressionError: the smaller net failed verification (it is never returned).
      ValueError / TypeError: bad net, domain, method or certificate.
    """
    if certificate not in ("auto", "algebraic", "enumerate"):
        raise ValueError(f"certificate: expected 'auto', 'algebraic' or 'enumerate', got {certificate!r}")
    check_positive_int(samples, "samples")
    check_tolerance(atol, "atol")
    check_tolerance(rtol, "rtol")
    t0 = time.perf_counter()
    bounds = stability.preactivation_bounds(net, domain, method, time_limit=time_limit, **bound_kwargs)
    t1 = time.perf_counter()
    classes = stability.classify(bounds)
    Ws, bs = _params64(net)
    alpha = _alpha(net)
    lo0, hi0 = domain.bounds(net.input_dim)
    built, records = _rebuild(Ws, bs, alpha, classes, lo0, hi0)
    constant = built is None
    affine = False
    if not constant and len(built[0]) == 1:
        arrays = _affine_net(built[0][0], built[1][0], lo0, hi0)
        constant = arrays is None
        affine = not constant
    elif not constant:
        arrays = []
        for W, b in zip(*built):
            arrays += [W, b]
    if constant:
        value = _forward64(Ws, bs, alpha, (0.5 * (lo0 + hi0))[None])[0]
        arrays = [np.zeros((net.input_dim, 1)), np.zeros(1), np.zeros((1, net.output_dim)), value]
    dtype = np.dtype(net.dtype)
    act = net.activation if net.activation == "relu" else (net.activation, net.alpha)
    smaller = Net.from_arrays([np.asarray(a, dtype) for a in arrays], activation=act)
    t2 = time.perf_counter()
    ver = verify_equivalent(net, smaller, domain, certificate=certificate, samples=samples, atol=atol, rtol=rtol,
                            seed=seed, net_bounds=bounds)
    t3 = time.perf_counter()
    Wn = [np.asarray(W) for W in smaller.weights]
    report = CompressionReport(
        method=method, layers=tuple(records), units_before=int(sum(net.widths)), units_after=int(sum(smaller.widths)),
        connections_before=_connections(Ws), connections_after=_connections(Wn), layers_before=net.num_hidden,
        layers_after=smaller.num_hidden, constant=bool(constant), affine=bool(affine),
        seconds={"bounds": t1 - t0, "compress": t2 - t1, "verify": t3 - t2, "total": t3 - t0},
        verification=ver,
    )
    if not ver.equivalent:
        raise CompressionError(
            f"compress: the smaller net failed verification (sampled max |f-g| = {ver.max_abs_diff:.3g}, "
            f"certified bound {ver.certified_bound:.3g} by {ver.certificate}, tol {ver.tol:.3g}"
            + (f": {ver.reason}" if ver.reason else "") + "); no net returned", report)
    return smaller, report


# -- verification ------------------------------------------------------------------------------

def _sample_points(lo, hi, samples, seed):
    d = lo.shape[0]
    rng = np.random.default_rng(seed)
    pts = [lo + rng.random((int(samples), d)) * (hi - lo)]
    if d <= 12:
        corners = np.array(np.meshgrid(*[[0, 1]] * d, indexing="ij")).reshape(d, -1).T.astype(bool)
    else:
        corners = rng.random((4096, d)) < 0.5
    pts.append(np.where(corners, hi, lo))
    pts.append(0.5 * (lo + hi)[None])
    return np.concatenate(pts)


def _canonical_f(Ws, bs, alpha, bounds, classes, d):
    """Pre-activation rows of every unit of ``f`` over ``v = (x, 1, r)`` and the output rows."""
    m = int(sum(int(np.sum(np.asarray(s) == 0)) for s in classes))
    V = d + 1 + m
    E = np.zeros((d, V))
    E[:, :d] = np.eye(d)
    Z, cls, zlo, zhi, rvar = [], [], [], [], []
    nr = 0
    for l in range(len(Ws) - 1):
        W, b = Ws[l], bs[l]
        s = np.asarray(classes[l])
        R = W.T @ E
        R[:, d] += b
        Z.append(R)
        cls.append(s)
        zlo.append(bounds[l][0]); zhi.append(bounds[l][1])
        En = np.zeros((W.shape[1], V))
        rv = np.full(W.shape[1], -1)
        for j in range(W.shape[1]):
            if s[j] == 1:
                En[j] = R[j]
            elif s[j] == -1:
                En[j] = alpha * R[j]
            else:
                En[j, d + 1 + nr] = 1.0
                rv[j] = d + 1 + nr
                nr += 1
        rvar.append(rv)
        E = En
    O = Ws[-1].T @ E
    O[:, d] += bs[-1]
    return (np.concatenate(Z), np.concatenate(cls), np.concatenate(zlo), np.concatenate(zhi),
            np.concatenate(rvar), O, V)


def _certify_algebraic(f: Net, g: Net, lo0, hi0, bounds, tol):
    """Upper bound on ``max |f - g|`` over the box (see the module docstring), and a reason."""
    Wf, bf = _params64(f)
    Wg, bg = _params64(g)
    af, ag = _alpha(f), _alpha(g)
    if af != ag:
        return np.inf, f"activations differ (alpha {af} vs {ag})"
    alpha = af
    lip = max(1.0, abs(alpha))
    d = lo0.shape[0]
    classes = stability.classify(bounds)
    Z, cls, zlo, zhi, rvar, O, V = _canonical_f(Wf, bf, alpha, bounds, classes, d)
    # ranges of the variables: x in the box, 1, r in the activation's range
    vlo = np.zeros(V); vhi = np.zeros(V)
    vlo[:d], vhi[:d] = lo0, hi0
    vlo[d] = vhi[d] = 1.0
    for j in np.nonzero(rvar >= 0)[0]:
        a = _act(np.array([zlo[j], zhi[j]]), alpha)
        vlo[rvar[j]] = min(a.min(), 0.0)
        vhi[rvar[j]] = max(a.max(), 0.0)
    vm = np.maximum(np.abs(vlo), np.abs(vhi))
    vc = 0.5 * (vlo + vhi); vr = 0.5 * (vhi - vlo)
    Zn = np.abs(Z) @ vm
    E = np.zeros((d, V))
    E[:, :d] = np.eye(d)
    dev = np.zeros(d)
    for l in range(len(Wg) - 1):
        W, b = Wg[l], bg[l]
        R = W.T @ E
        R[:, d] += b
        p = np.abs(W).T @ dev + _ROW_SLACK * (np.abs(W).T @ (np.abs(E) @ vm) + np.abs(b))
        En = np.zeros((W.shape[1], V))
        devn = np.zeros(W.shape[1])
        # own range of each row (interval arithmetic over the variables)
        mid = R @ vc
        rad = np.abs(R) @ vr
        own_lo, own_hi = mid - rad - p, mid + rad + p
        # nearest f unit by the weighted row distance
        dist = np.zeros((W.shape[1], Z.shape[0]))
        if Z.size:
            step = max(1, int(4e6 // max(1, Z.shape[0] * V)))  # bounded memory: chunks of rows
            for i0 in range(0, W.shape[1], step):
                dist[i0:i0 + step] = np.abs(R[i0:i0 + step, None, :] - Z[None, :, :]) @ vm
        for k in range(W.shape[1]):
            j = int(np.argmin(dist[k])) if dist.shape[1] else -1
            e = dist[k, j] + p[k] + _ROW_SLACK * Zn[j] if j >= 0 else np.inf
            if j >= 0 and cls[j] == 0 and lip * e <= tol:  # the same unstable unit as in f
                En[k, rvar[j]] = 1.0
                devn[k] = lip * e
            elif (j >= 0 and cls[j] == 1 and zlo[j] - e > 0) or own_lo[k] > 0:  # stably active
                En[k], devn[k] = R[k], p[k]
            elif (j >= 0 and cls[j] == -1 and zhi[j] + e <= 0) or own_hi[k] <= 0:  # stably inactive
                En[k], devn[k] = alpha * R[k], abs(alpha) * p[k]
            elif j >= 0 and cls[j] == 0:  # an unstable unit of f, up to a large error
                En[k, rvar[j]] = 1.0
                devn[k] = lip * e
            else:
                return np.inf, (f"layer {l + 1} unit {k} of the other net matches no unit of the net "
                                f"(nearest row distance {dist[k, j]:.3g})" if j >= 0 else
                                f"layer {l + 1} unit {k} of the other net is unstable and the net has no unit")
        E, dev = En, devn
    Og = Wg[-1].T @ E
    Og[:, d] += bg[-1]
    p = np.abs(Wg[-1]).T @ dev + _ROW_SLACK * (np.abs(Wg[-1]).T @ (np.abs(E) @ vm) + np.abs(bg[-1]))
    diff = Og - O
    # the output difference is affine in v: bound it over the variables' box
    bound = np.abs(diff @ vc) + np.abs(diff) @ vr + p + _ROW_SLACK * (np.abs(O) @ vm)
    return float(bound.max()), ""


def _carry(n, alpha=0.0):
    """The weights carrying ``(act(y), act(-y))`` (``2n`` units) to the pre-activations ``(y, -y)``
    of the next such pair: ``act(y) - act(-y) = (1 + alpha) y`` for a (leaky) ReLU of slope
    ``alpha``, so the block is divided by ``1 + alpha`` (which must not be 0)."""
    eye = np.eye(n)
    return np.block([[eye, -eye], [-eye, eye]]) / (1.0 + alpha)


def _joint(f: Net, g: Net):
    """A net ``x -> (f(x), g(x))`` with the two nets side by side (block-diagonal layers).

    The shallower net is padded with identity layers: its output ``y`` goes through the units
    ``(act(y), act(-y))``, and ``act(y) - act(-y) = (1 + alpha) y``, so the carried pair and the
    padded output block are divided by ``1 + alpha``. Needs ``alpha != -1`` when the depths differ.
    """
    Wf, bf = _params64(f)
    Wg, bg = _params64(g)
    alpha = _alpha(f)
    Lf, Lg = len(Wf) - 1, len(Wg) - 1
    L = max(Lf, Lg)
    out = f.output_dim

    def padded(Ws, bs, Lx):
        """Per joint hidden layer (W, b) and the output layer, for a net of depth ``Lx <= L``."""
        layers = [(Ws[l], bs[l]) for l in range(Lx)]
        if Lx == L:
            return layers, (Ws[-1], bs[-1])
        eye = np.eye(out)
        # layer Lx+1 computes (y, -y) through act; later ones carry the pair
        layers.append((np.concatenate([Ws[-1], -Ws[-1]], axis=1), np.concatenate([bs[-1], -bs[-1]])))
        for _ in range(Lx + 1, L):
            layers.append((_carry(out, alpha), np.zeros(2 * out)))
        return layers, (np.concatenate([eye, -eye], axis=0) / (1.0 + alpha), np.zeros(out))

    lf, of = padded(Wf, bf, Lf)
    lg, og = padded(Wg, bg, Lg)
    arrays = []
    for l in range(L):
        (A, a), (B, c) = lf[l], lg[l]
        if l == 0:
            W = np.concatenate([A, B], axis=1)
        else:
            W = np.block([[A, np.zeros((A.shape[0], B.shape[1]))], [np.zeros((B.shape[0], A.shape[1])), B]])
        arrays += [W, np.concatenate([a, c])]
    (A, a), (B, c) = of, og
    arrays += [np.block([[A, np.zeros((A.shape[0], B.shape[1]))], [np.zeros((B.shape[0], A.shape[1])), B]]),
               np.concatenate([a, c])]
    return arrays


def _certify_enumerate(f: Net, g: Net, domain: Box, lo0, hi0, max_regions, tol):
    import jax

    from partax.geometry import enumerate_regions

    if lo0.shape[0] > 6 or lo0.shape[0] < 2:
        return np.inf, f"the enumerate certificate needs 2 <= d <= 6 (volume certificate), got d = {lo0.shape[0]}"
    alpha = _alpha(f)
    if _alpha(g) != alpha:
        return np.inf, "activations differ"
    if alpha == -1.0 and f.num_hidden != g.num_hidden:
        return np.inf, ("the enumerate certificate cannot pad nets of different depths with alpha = -1 "
                        "(act(y) - act(-y) = 0: no identity layer); use the algebraic certificate")
    arrays = _joint(f, g)
    act = f.activation if f.activation == "relu" else (f.activation, f.alpha)
    with jax.enable_x64(True):
        joint = Net.from_arrays([np.asarray(a, np.float64) for a in arrays], activation=act)
        res = enumerate_regions(joint, domain, progress=False, max_regions=max_regions)
    st = res.stats
    # twin hyperplanes (a unit of f and its copy in g) are non-generic by construction, so edges
    # seen from one side only are expected; the volume certificate is what proves coverage
    covered = (res.certificate == "volume" and abs(res.volume_gap) <= res.volume_tol and res.dropped == 0
               and res.frontier_left == 0 and st.get("lp_failures", 0) == 0 and st.get("facet_lp_failures", 0) == 0)
    if not (res.complete or covered):
        return np.inf, (f"the enumeration of the joint net does not cover the box ({res.num_regions} regions, "
                        f"volume gap {res.volume_gap:.3g}, frontier {res.frontier_left}, dropped {res.dropped})")
    # local affine maps from the regions' codes (frozen masks), in float64
    Ws = [np.asarray(a, np.float64) for a in arrays[0::2]]
    bs = [np.asarray(a, np.float64) for a in arrays[1::2]]
    out = f.output_dim
    c = 0.5 * (lo0 + hi0); r = 0.5 * (hi0 - lo0)
    from partax.geometry.lp import OPTIMAL, solve

    d = lo0.shape[0]
    box_A, box_b = domain.rows(d)
    worst = 0.0
    R = res.keys.shape[0]
    for i0 in range(0, R, 2048):
        sl = slice(i0, min(R, i0 + 2048))
        n = sl.stop - sl.start
        A = np.broadcast_to(np.eye(d), (n, d, d)).copy()  # z = x @ A + beta
        beta = np.zeros((n, d))
        rows_A, rows_b = [], []
        for l in range(len(Ws) - 1):
            z_A = A @ Ws[l]
            z_b = beta @ Ws[l] + bs[l]
            on = res.bits[l][sl]
            sign = np.where(on, -1.0, 1.0)  # on: -z <= 0; off: z <= 0
            rows_A.append(np.swapaxes(z_A, 1, 2) * sign[:, :, None])
            rows_b.append(-z_b * sign)
            mask = np.where(on, 1.0, alpha)
            A = z_A * mask[:, None, :]
            beta = z_b * mask
        oA = A @ Ws[-1]
        ob = beta @ Ws[-1] + bs[-1]
        dA = oA[:, :, :out] - oA[:, :, out:]  # [n, d, out]
        db = ob[:, :out] - ob[:, out:]
        # over the whole box first; only regions that fail it need LPs (slivers between twin hyperplanes)
        val = np.abs(np.einsum("d,ndo->no", c, dA) + db) + np.einsum("d,ndo->no", r, np.abs(dA))
        lp_i, lp_o = np.nonzero(val > tol)
        if lp_i.size:
            HA = np.concatenate(rows_A + [np.broadcast_to(box_A, (n,) + box_A.shape)], axis=1)
            Hb = np.concatenate(rows_b + [np.broadcast_to(box_b, (n,) + box_b.shape)], axis=1)
            # the bound is the larger of |min| and |max| of the difference
            lo_s = solve(dA[lp_i, :, lp_o], HA[lp_i], Hb[lp_i], solver="highs", tol=1e-9)
            hi_s = solve(-dA[lp_i, :, lp_o], HA[lp_i], Hb[lp_i], solver="highs", tol=1e-9)
            if np.any(lo_s.status != OPTIMAL) or np.any(hi_s.status != OPTIMAL):
                return np.inf, "an LP over a region of the joint net failed"
            lo_v = lo_s.value + db[lp_i, lp_o]
            hi_v = -hi_s.value + db[lp_i, lp_o]
            val[lp_i, lp_o] = np.maximum(np.abs(lo_v), np.abs(hi_v))
        worst = max(worst, float(np.max(val)) if val.size else 0.0)
    if not np.isfinite(worst):
        return np.inf, "an LP over a region of the joint net failed"
    return worst, ""


def verify_equivalent(net: Net, other: Net, domain: Box, *, certificate: str = "auto", samples: int = 20_000,
                      atol: float = 1e-5, rtol: float = 1e-5, seed: int = 0, method: str = "lp",
                      net_bounds=None, max_regions: int = 20_000) -> Equivalence:
    """Checks that ``other`` computes the same function as ``net`` on ``domain``, two ways.

    See the module docstring. Both checks hold the difference to ``tol = atol + rtol * (1 + max
    |f|)`` (``max |f|`` over the samples).

    Args:
      net: the reference :class:`~partax.nets.Net` (``f``).
      other: the net to check (``g``): same input and output dimensions and activation.
      domain: a :class:`partax.Box`.
      certificate: ``"auto"`` (= ``"algebraic"``), ``"algebraic"``, ``"enumerate"`` or ``"none"``
        (no certificate: ``certified`` is False).
      samples: uniform samples of the box, a positive int (plus its corners, or 4096 random corners
        when ``d > 12``, and its centre).
      atol, rtol: the tolerance, finite numbers >= 0.
      seed: seed of the samples (an int).
      method: stability method of ``net``'s bounds for the algebraic certificate (ignored when
        ``net_bounds`` is given).
      net_bounds: sound pre-activation bounds of ``net`` over ``domain`` (as
        :func:`partax.stability.preactivation_bounds` returns), to reuse. They are not trusted:
        their shapes are checked per layer, and the samples must neither refute the classes they
        certify (:func:`partax.stability.refute`) nor fall outside them.
      max_regions: region limit of the ``"enumerate"`` certificate, a positive int.

    Returns:
      An :class:`Equivalence` record (``max_abs_diff``, ``certified``, ``equivalent``, ...).

    Raises:
      ValueError / TypeError: bad nets (dimensions differ), domain, certificate,
        samples, atol, rtol, seed, max_regions or method; ``net_bounds`` of the wrong shapes or
        contradicted by the samples (``ValueError("net_bounds: ...")``).
    """
    if certificate not in CERTIFICATES:
        raise ValueError(f"certificate: expected one of {CERTIFICATES}, got {certificate!r}")
    stability.check_net(net)
    if not isinstance(other, Net) or other.stack_shape:
        raise TypeError(f"other: expected an unstacked partax Net, got {type(other).__name__}")
    if (other.input_dim, other.output_dim) != (net.input_dim, net.output_dim):
        raise ValueError(f"other: expected input/output dims {(net.input_dim, net.output_dim)}, got "
                         f"{(other.input_dim, other.output_dim)}")
    lo0, hi0 = stability.check_box(domain, net.input_dim)
    samples = check_positive_int(samples, "samples")
    atol = check_tolerance(atol, "atol")
    rtol = check_tolerance(rtol, "rtol")
    max_regions = check_positive_int(max_regions, "max_regions")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if net_bounds is None and method not in stability.METHODS:
        raise ValueError(f"method: expected one of {stability.METHODS}, got {method!r}")
    t0 = time.perf_counter()
    x = _sample_points(lo0, hi0, samples, seed)
    Wf, bf = _params64(net)
    Wg, bg = _params64(other)
    pre = [] if net_bounds is not None else None
    yf = _forward64(Wf, bf, _alpha(net), x, pre)
    if net_bounds is not None:
        net_bounds = _check_net_bounds(net, net_bounds, x, pre)
    yg = _forward64(Wg, bg, _alpha(other), x)
    diff = float(np.max(np.abs(yf - yg)))
    maxf = float(np.max(np.abs(yf)))
    tol = atol + rtol * (1.0 + maxf)
    reason = ""
    cert = "algebraic" if certificate == "auto" else certificate
    if cert == "none":
        bound, reason = np.inf, "no certificate asked"
    elif cert == "algebraic":
        if net_bounds is None:
            net_bounds = stability.preactivation_bounds(net, domain, method)
        bound, reason = _certify_algebraic(net, other, lo0, hi0, net_bounds, tol)
    else:
        bound, reason = _certify_enumerate(net, other, domain, lo0, hi0, max_regions, tol)
    if not np.isfinite(diff):
        diff = np.inf
    certified = bool(bound <= tol)
    if not certified and not reason:
        reason = f"certified bound {bound:.3g} exceeds the tolerance {tol:.3g}"
    return Equivalence(
        max_abs_diff=diff, max_abs_f=maxf, tol=tol, num_samples=int(x.shape[0]), sampled_ok=bool(diff <= tol),
        certificate=cert, certified_bound=float(bound), certified=certified,
        equivalent=bool(diff <= tol and certified), reason=reason, seconds=time.perf_counter() - t0,
    )
