"""Figures: the information plane, regions across training, estimator comparisons, 2D slices.

This module is the one home of partax's figures. matplotlib is an optional dependency (the
``plot`` extra), imported inside the functions. Figures are built with the object-oriented API
(``matplotlib.figure.Figure``, no pyplot), so they render headless without touching the global
backend; :func:`save` writes them atomically.

What every figure shows, so that it can go into a paper as it is:

* a title naming the data, the network and ``N`` (the number of traced inputs). Pass them as
  ``data=`` / ``net=`` / ``title=``; by default they come from the trace's header when it has
  one (keys ``data``, ``net`` / ``architecture`` / ``widths``, ``N``), else from its columns
  (``N``, the hidden ``width`` of each layer);
* in the information plane, the ceiling ``I(X;T) <= log2 N`` (dashed vertical line), the label
  entropy ``H(Y)`` (dotted horizontal line), the checkpoints flagged ``saturated`` by
  :func:`partax.info.measures` ringed in red, one marker per layer explained in a legend (no
  labels on the curves, so none can overlap), and axes shared by every panel: ``I(T;Y)`` in
  ``[0, H(Y)]``, ``I(X;T)`` in ``[0, log2 N]``;
* in the region counts, a shared log axis up to ``N`` (dashed line), saturated checkpoints as
  open circles, and legible ticks when a series is constant;
* in a slice (:func:`plot_slice`), the axes explained (``s``, ``t`` along the plane's ``u``,
  ``v`` from its origin), the anchor inputs labelled, and a legend for the region boundaries,
  the decision boundary and the data box.

The trace functions take a trace as returned by :func:`partax.trace.load_trace` (or a trace
directory) and return the :class:`~matplotlib.figure.Figure`.

Example:
    >>> from partax import plots
    >>> fig = plots.information_plane("runs/demo", scope="layer")  # doctest: +SKIP
    >>> plots.save(fig, "runs/demo/infoplane.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from partax.coding import SCOPES

__all__ = [
    "information_plane",
    "regions_vs_epoch",
    "regions_comparison",
    "estimator_comparison",
    "plot_slice",
    "box_section",
    "figure_title",
    "save",
]

#: One marker per hidden layer (layer ``l`` uses ``LAYER_MARKERS[(l - 1) % len]``).
LAYER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">")
_SAT_COLOR = "crimson"


# --------------------------------------------------------------------------------------
# traces, metadata and titles
# --------------------------------------------------------------------------------------
def _trace(trace) -> dict:
    if isinstance(trace, (str, os.PathLike)):
        from partax.trace import load_trace

        return load_trace(trace)
    if not isinstance(trace, dict) or "step" not in trace:
        raise TypeError("trace: expected a dict from partax.load_trace (with a 'step' column) or a trace directory")
    return trace


def _read_header(trace) -> dict:
    """The trace's header (:func:`partax.tracefiles.load_header` of a trace directory, or
    ``trace["header"]`` of a dict); ``{}`` when there is none."""
    if isinstance(trace, dict):
        h = trace.get("header")
        return dict(h) if isinstance(h, dict) else {}
    if isinstance(trace, (str, os.PathLike)):
        from partax import tracefiles

        loader = getattr(tracefiles, "load_header", None)
        try:
            if loader is not None:
                h = loader(trace)
            else:
                with open(tracefiles.trace_path(trace), "rb") as f:
                    h = json.loads(f.readline())
                h = h if isinstance(h, dict) and h.get("kind") == "header" else None
        except (OSError, ValueError):
            return {}
        return dict(h) if isinstance(h, dict) else {}
    return {}


def _as_arch(v) -> str | None:
    """A network description: ``"12-10-7-2 relu net"`` from a header's ``net`` dict, a list of
    widths or a string."""
    if v is None:
        return None
    if isinstance(v, dict):
        try:
            dims = [v["input_dim"], *v["widths"], v["output_dim"]]
        except (KeyError, TypeError):
            return None
        act = v.get("activation")
        return "-".join(str(int(w)) for w in dims) + (f" {act}" if act else "") + " net"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "-".join(str(int(w)) for w in v) + " net"
    return str(v)


def _trace_meta(trace, tr: dict, data, net, member: int = 0) -> tuple:
    """``(data, net, N)`` for a title: the caller's, else the header's, else the columns'."""
    h = _read_header(trace)
    meta = h.get("meta") if isinstance(h.get("meta"), dict) else {}
    inputs = h.get("inputs") if isinstance(h.get("inputs"), dict) else {}
    shape = inputs.get("shape") if isinstance(inputs.get("shape"), list) else None
    if data is None:
        data = meta.get("data") or meta.get("dataset") or h.get("data")
        if data is None and shape and len(shape) == 2:
            data = f"inputs {shape[0]} x {shape[1]}"
    if net is None:
        net = _as_arch(meta.get("net") or h.get("net") or h.get("architecture"))
        if net is None and "width" in tr and "layer" in tr:
            sel = tr["member"] == member if "member" in tr else np.ones(len(tr["step"]), bool)
            sel = sel & (tr["layer"] > 0) & (tr["width"] > 0)
            if sel.any():
                widths = {int(l): int(w) for l, w in zip(tr["layer"][sel], tr["width"][sel])}
                net = "hidden widths " + "-".join(str(widths[l]) for l in sorted(widths))
    N = None
    if "N" in tr:
        n = np.asarray(tr["N"], np.float64)
        n = n[np.isfinite(n) & (n > 0)]
        N = int(n.max()) if n.size else None
    if N is None and shape:
        N = int(shape[0])
    return data, net, N


def figure_title(what: str, *, data=None, net=None, N=None) -> str:
    """A figure title: ``what`` on the first line, then ``data · net · N = ...``.

    Args:
      what: what the figure shows (e.g. ``"information plane"``).
      data: the data's name (omitted when None).
      net: the network, e.g. ``"12-10-7-5-4-3-2 ReLU"`` (omitted when None).
      N: the number of inputs (omitted when None).

    Returns:
      The title text.

    Example:
      >>> figure_title("information plane", data="Tishby IB", net="12-10-7-5-4-3-2 net", N=4096)
      'information plane\\nTishby IB · 12-10-7-5-4-3-2 net · N = 4096'
    """
    parts = [str(p) for p in (data, net) if p]
    if N is not None:
        parts.append(f"N = {int(N)}")
    return what + ("\n" + " · ".join(parts) if parts else "")


def _select(tr: dict, scope: str, estimator: str | None, member: int) -> np.ndarray:
    sel = tr["scope"] == scope
    if estimator is not None:
        sel &= tr["estimator"] == estimator
    if "member" in tr:
        sel &= tr["member"] == member
    if not sel.any():
        have = sorted(set(zip(tr["scope"].tolist(), tr["estimator"].tolist())))
        raise ValueError(f"scope/estimator: no records for ({scope!r}, {estimator!r}); the trace has {have}")
    return sel


def _new_axes(ax, figsize=(6.0, 4.8)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot(1, 1, 1)


def _default_estimator(tr: dict, scope: str, estimator: str) -> str:
    ests = set(tr["estimator"][tr["scope"] == scope].tolist())
    if estimator in ests or not ests:
        return estimator
    return "upper" if "upper" in ests else sorted(ests)[0]


def _step_norm(steps, log_color):
    from matplotlib import colors

    lo, hi = float(steps.min()), float(max(steps.max(), steps.min() + 1))
    if log_color is None:  # log-spaced checkpoints read best on a log colour scale
        log_color = lo >= 0 and hi >= 100 * max(lo, 1.0)
    if log_color:
        return colors.SymLogNorm(linthresh=1.0, vmin=lo, vmax=hi, base=10)
    return colors.Normalize(vmin=lo, vmax=hi)


def _finite_max(*arrays) -> float:
    vals = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    return float(vals.max()) if vals.size else float("nan")


def _span(lo: float, hi: float, log: bool = False) -> tuple:
    """Axis limits around ``[lo, hi]`` that stay readable when the series is constant."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return (0.1, 10.0) if log else (0.0, 1.0)
    if log:
        lo, hi = max(lo, 1e-12), max(hi, 1e-12)
        if hi / lo < 10.0:  # under a decade: no major tick would be labelled
            mid = math.sqrt(lo * hi)
            lo, hi = min(lo, mid / math.sqrt(10.0)), max(hi, mid * math.sqrt(10.0))
        return lo / 1.3, hi * 1.3
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        pad = max(0.5, 0.1 * abs(hi))
        return lo - pad, hi + pad
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad


def _layer_handles(layers) -> list:
    from matplotlib.lines import Line2D

    return [Line2D([], [], ls="none", marker=LAYER_MARKERS[(int(l) - 1) % len(LAYER_MARKERS)], color="0.35",
                   markersize=5, label=f"layer {int(l)}") for l in layers]


# --------------------------------------------------------------------------------------
# the information plane
# --------------------------------------------------------------------------------------
def _plane_limits(tr: dict, sel_all: np.ndarray, N) -> tuple:
    """``(log2 N, H(Y), xlim, ylim)`` shared by every panel drawn from the rows ``sel_all``."""
    log2n = math.log2(N) if N else float("nan")
    hy = _finite_max(tr["H_Y"][sel_all]) if "H_Y" in tr else float("nan")
    xmax = _finite_max(tr["I_XT"][sel_all])
    ymax = _finite_max(tr["I_TY"][sel_all])
    xtop = max(v for v in (log2n, xmax, 0.0) if math.isfinite(v))
    xlim = (-0.03 * xtop, 1.04 * xtop) if xtop > 0 else _span(0.0, 0.0)
    ytop = hy if math.isfinite(hy) and hy > 0 else ymax
    if math.isfinite(ymax) and math.isfinite(ytop):
        ytop = max(ytop, ymax)
    ylim = (-0.04 * ytop, 1.09 * ytop) if math.isfinite(ytop) and ytop > 0 else _span(0.0, 0.0)
    return log2n, hy, xlim, ylim


def _plane(ax, tr, scope, estimator, member, cmap, norm, limits, title=None):
    estimator = _default_estimator(tr, scope, estimator)
    sel = _select(tr, scope, estimator, member)
    log2n, hy, xlim, ylim = limits
    sc = None
    layers = np.unique(tr["layer"][sel])
    any_sat = False
    for l in layers:
        s = sel & (tr["layer"] == l)
        order = np.argsort(tr["step"][s], kind="stable")
        xs, ys, st = tr["I_XT"][s][order], tr["I_TY"][s][order], tr["step"][s][order]
        marker = LAYER_MARKERS[(int(l) - 1) % len(LAYER_MARKERS)]
        ax.plot(xs, ys, "-", color="0.75", lw=0.6, zorder=1)
        sc = ax.scatter(xs, ys, c=st, cmap=cmap, norm=norm, s=14, marker=marker, edgecolors="none", zorder=2,
                        label=f"layer {int(l)}")
        if "saturated" in tr:
            sat = np.asarray(tr["saturated"][s][order], dtype=float) == 1
            if sat.any():
                any_sat = True
                ax.scatter(xs[sat], ys[sat], s=42, marker=marker, facecolors="none", edgecolors=_SAT_COLOR,
                           linewidths=0.7, zorder=3)
        fin = np.isfinite(xs) & np.isfinite(ys)
        if fin.any():
            k = np.flatnonzero(fin)[-1]
            ann = ax.annotate(f"L{int(l)}", (xs[k], ys[k]), xytext=(5, 4), textcoords="offset points", fontsize=8,
                              ha="left", va="bottom", zorder=5, gid="layer_label",
                              bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                              arrowprops=dict(arrowstyle="-", color="0.3", lw=0.5, shrinkA=0, shrinkB=2))
            ann.set_in_layout(False)
    if math.isfinite(log2n):
        ax.axvline(log2n, ls="--", color="0.25", lw=0.9, zorder=0, gid="log2N")
    if math.isfinite(hy):
        ax.axhline(hy, ls=":", color="0.45", lw=0.9, zorder=0, gid="H_Y")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)
    ax.set_xlabel("I(X;T) [bits]")
    ax.set_ylabel("I(T;Y) [bits]")
    ax.set_title(title or f"{scope} ({estimator})", fontsize=10)
    return sc, layers, any_sat


def _plane_legend_handles(layers, log2n, hy, any_sat) -> list:
    from matplotlib.lines import Line2D

    handles = _layer_handles(layers)
    if math.isfinite(log2n):
        handles.append(Line2D([], [], ls="--", color="0.25", lw=0.9, label=f"log2 N = {log2n:.2f} bits"))
    if math.isfinite(hy):
        handles.append(Line2D([], [], ls=":", color="0.45", lw=0.9, label=f"H(Y) = {hy:.3f} bits"))
    if any_sat:
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec=_SAT_COLOR, markersize=6,
                              label="saturated (H(T) ≈ log2 N)"))
    return handles


def _layer_labels(ax) -> list:
    return [c for c in ax.texts if c.get_gid() == "layer_label"]


def _declutter(fig, axes) -> None:
    """Moves the end-of-curve layer labels of ``axes`` so that no two overlap (nor a legend),
    with a leader line to their point. Lays the figure out once (headless Agg renderer)."""
    if not any(_layer_labels(ax) for ax in axes):
        return
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backend_bases import FigureCanvasBase

        if type(fig.canvas) is not FigureCanvasBase:  # a canvas of the caller's backend: leave it alone
            import warnings

            warnings.warn(f"layer labels were not moved apart: the figure's canvas ({type(fig.canvas).__name__}) "
                          "has no renderer to measure them; draw on an Agg figure (matplotlib.use('Agg') or "
                          "ax=None) to get non-overlapping labels", stacklevel=3)
            return
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)  # the default canvas of an object-oriented Figure: measure with Agg
    fig.draw_without_rendering()
    r = fig.canvas.get_renderer()
    obstacles = [lg.get_window_extent(r) for lg in fig.legends]
    step = 9.0
    cands = [(5.0, 4.0), (5.0, -12.0), (-17.0, 4.0), (-17.0, -12.0)]
    for ring in range(1, 9):
        for ang in np.linspace(0.0, 2 * np.pi, 12, endpoint=False) + ring * 0.3:
            cands.append((ring * 1.6 * step * np.cos(ang), ring * 1.6 * step * np.sin(ang)))
    for ax in axes:
        labels = _layer_labels(ax)
        if not labels:
            continue
        box = ax.get_window_extent(r)
        placed = list(obstacles) + ([ax.get_legend().get_window_extent(r)] if ax.get_legend() else [])
        for a in sorted(labels, key=lambda a: -ax.transData.transform(a.xy)[1]):
            best = None
            for dx, dy in cands:
                a.xyann = (dx, dy)
                bb = a.get_window_extent(r)
                inside = bb.x0 >= box.x0 and bb.x1 <= box.x1 and bb.y0 >= box.y0 and bb.y1 <= box.y1
                if inside and not any(bb.overlaps(p) for p in placed):
                    best = (dx, dy)
                    break
            if best is None:  # nowhere free inside the axes: the first spot clear of the others
                for dx, dy in cands:
                    a.xyann = (dx, dy)
                    if not any(a.get_window_extent(r).overlaps(p) for p in placed):
                        best = (dx, dy)
                        break
            a.xyann = best if best is not None else cands[0]
            placed.append(a.get_window_extent(r))


def information_plane(trace, *, scope: str = "layer", estimator: str = "plugin", member: int = 0,
                      ax=None, cmap: str = "viridis", log_color: bool | None = None, title: str | None = None,
                      data: str | None = None, net: str | None = None):
    """The information plane: one curve per layer, points coloured by epoch (with a colourbar).

    The panel shows the ceiling ``I(X;T) = log2 N`` (dashed), ``H(Y)`` (dotted), the checkpoints
    flagged ``saturated`` ringed in red, and a legend of the layer markers; ``I(T;Y)`` spans
    ``[0, H(Y)]`` and ``I(X;T)`` ``[0, log2 N]`` (or the data's maximum when larger).

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scope: ``"layer"``, ``"prefix"``, ``"suffix"`` or a baseline name (e.g. ``"binned30"``).
      estimator: ``"plugin"``, ``"miller_madow"``, or ``"upper"`` / ``"lower"`` for ``"kde"``
        (defaults to ``"upper"`` when the scope has no ``estimator`` records).
      member: index of the net in a stacked trace.
      ax: an existing Axes to draw in (its figure is returned).
      cmap: colour map for the epochs.
      log_color: colour epochs on a (symmetric) log scale; default: when the steps span more
        than two decades (log-spaced checkpoints).
      title: the whole title (default: :func:`figure_title` of the panel, data, net and ``N``).
      data, net: names for the title (default: the trace header's, see the module docstring).

    Returns:
      The matplotlib ``Figure``.
    """
    tr = _trace(trace)
    data, net, N = _trace_meta(trace, tr, data, net, member)
    est = _default_estimator(tr, scope, estimator)
    sel = _select(tr, scope, est, member)
    fig, ax = _new_axes(ax)
    limits = _plane_limits(tr, sel, N)
    norm = _step_norm(tr["step"][sel], log_color)
    what = f"information plane: {scope} ({est})"
    sc, layers, any_sat = _plane(ax, tr, scope, est, member, cmap, norm, limits,
                                 title=title or figure_title(what, data=data, net=net, N=N))
    ax.legend(handles=_plane_legend_handles(layers, limits[0], limits[1], any_sat), fontsize=7, loc="best",
              framealpha=0.85)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="epoch")
    _declutter(fig, [ax])
    return fig


def estimator_comparison(trace, *, scopes=None, estimator: str = "plugin", member: int = 0,
                         cmap: str = "viridis", log_color: bool | None = None, title: str | None = None,
                         data: str | None = None, net: str | None = None):
    """Information planes side by side, one panel per scope / baseline, on shared axes.

    Every panel has the same ranges (``I(T;Y)`` in ``[0, H(Y)]``, ``I(X;T)`` up to ``log2 N``),
    the same epoch colour scale and the marks of :func:`information_plane`; one legend (layer
    markers, ``log2 N``, ``H(Y)``, saturation) and one colourbar serve them all.

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scopes: panels to draw (default: every scope in the trace, region scopes first).
      estimator: estimator for the panels (KDE panels use ``"upper"``).
      member: index of the net in a stacked trace.
      cmap: colour map for the epochs.
      log_color: as in :func:`information_plane`.
      title: the figure's title (default: :func:`figure_title` of data, net and ``N``).
      data, net: names for the title (default: the trace header's).

    Returns:
      The matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    tr = _trace(trace)
    data, net, N = _trace_meta(trace, tr, data, net, member)
    if scopes is None:
        present = list(dict.fromkeys(tr["scope"].tolist()))
        first = [s for s in SCOPES if s in present]
        scopes = first + [s for s in present if s not in first]
    scopes = list(scopes)
    if not scopes:
        raise ValueError("scopes: nothing to draw")
    sels = [_select(tr, s, _default_estimator(tr, s, estimator), member) for s in scopes]
    sel_all = np.logical_or.reduce(sels)
    limits = _plane_limits(tr, sel_all, N)
    norm = _step_norm(tr["step"][sel_all], log_color)
    n = len(scopes)
    cols = n if n <= 3 else (2 if n == 4 else 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.4 * cols + 1.0, 3.6 * rows + 1.1), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    sc, layers, any_sat = None, set(), False
    for i, scope in enumerate(scopes):
        ax = axes[i // cols][i % cols]
        s, ls, sat = _plane(ax, tr, scope, estimator, member, cmap, norm, limits)
        sc = s or sc
        layers |= set(int(l) for l in ls)
        any_sat |= sat
        ax.tick_params(labelbottom=True, labelleft=True)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), label="epoch")
    handles = _plane_legend_handles(sorted(layers), limits[0], limits[1], any_sat)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or figure_title("information plane, regions as bins and baselines", data=data, net=net, N=N),
                 fontsize=11)
    _declutter(fig, [a for a in axes.ravel() if a.get_visible()])
    return fig


# --------------------------------------------------------------------------------------
# regions across training
# --------------------------------------------------------------------------------------
def _regions_panel(ax, tr, scope, estimator, member, logy, colors):
    sel = _select(tr, scope, estimator, member)
    any_sat = False
    for l in np.unique(tr["layer"][sel]):
        s = sel & (tr["layer"] == l)
        order = np.argsort(tr["step"][s], kind="stable")
        st, rg = tr["step"][s][order], np.asarray(tr["regions"][s][order], np.float64)
        c = colors[(int(l) - 1) % len(colors)]
        ax.plot(st, rg, "-", lw=1.2, color=c, label=f"layer {int(l)}")
        if "saturated" in tr:
            sat = np.asarray(tr["saturated"][s][order], dtype=float) == 1
            if sat.any():
                any_sat = True
                ax.plot(st[sat], rg[sat], "o", mfc="none", color=c, ms=4)
    ax.set_xscale("symlog", linthresh=1.0)
    lo_step, hi_step = float(tr["step"][sel].min()), float(tr["step"][sel].max())
    ax.set_xlim(min(0.0, lo_step), max(hi_step, lo_step + 1.0))
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel("regions")
    ax.set_title(f"{scope} scope: regions per hidden layer", fontsize=10)
    return sel, any_sat


def _regions_legend(ax_or_fig, layers, N, any_sat, colors, **kw):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[(int(l) - 1) % len(colors)], lw=1.2, label=f"layer {int(l)}")
               for l in layers]
    if N:
        handles.append(Line2D([], [], ls="--", color="0.5", lw=0.8, label=f"N = {int(N)} inputs"))
    if any_sat:
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", color="0.3", ms=4,
                              label="saturated (H(T) ≈ log2 N)"))
    return ax_or_fig.legend(handles=handles, **kw)


def _regions_limits(tr, sel, N, logy):
    vals = np.asarray(tr["regions"][sel], np.float64)
    vals = vals[np.isfinite(vals) & (vals > 0 if logy else np.isfinite(vals))]
    lo = float(vals.min()) if vals.size else float("nan")
    hi = float(vals.max()) if vals.size else float("nan")
    if N:
        hi = max(hi, float(N)) if math.isfinite(hi) else float(N)
        lo = lo if math.isfinite(lo) else 1.0
    return _span(lo, hi, log=logy)


def regions_vs_epoch(trace, *, scope: str = "prefix", estimator: str = "plugin", member: int = 0,
                     ax=None, logy: bool = True, title: str | None = None, data: str | None = None,
                     net: str | None = None):
    """Number of regions per layer against the training step (symlog x axis).

    Saturated checkpoints (``H_T`` pinned at ``log2 N``, see :func:`partax.info.measures`) are
    drawn as open circles; the dashed line marks ``N``, the number of traced inputs. A constant
    series keeps labelled ticks (the axis spans at least a decade on a log scale).

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scope: ``"layer"``, ``"prefix"`` or ``"suffix"``.
      estimator: the estimator whose records to use (region counts do not depend on it).
      member: index of the net in a stacked trace.
      ax: an existing Axes to draw in.
      logy: logarithmic region axis.
      title: the axes' title (default: :func:`figure_title` of the scope, data, net and ``N``).
      data, net: names for the title (default: the trace header's).

    Returns:
      The matplotlib ``Figure``.
    """
    tr = _trace(trace)
    data, net, N = _trace_meta(trace, tr, data, net, member)
    fig, ax = _new_axes(ax)
    colors = _layer_colors()
    sel, any_sat = _regions_panel(ax, tr, scope, estimator, member, logy, colors)
    if N:
        ax.axhline(float(N), ls="--", color="0.5", lw=0.8, gid="N")
    ax.set_ylim(*_regions_limits(tr, sel, N, logy))
    what = f"{scope} scope: regions per hidden layer"
    ax.set_title(title or figure_title(what, data=data, net=net, N=N), fontsize=10)
    _regions_legend(ax, np.unique(tr["layer"][sel]), N, any_sat, colors, fontsize=8, loc="best", framealpha=0.85)
    return fig


def regions_comparison(trace, *, scopes=("layer", "prefix"), estimator: str = "plugin", member: int = 0,
                       logy: bool = True, title: str | None = None, data: str | None = None,
                       net: str | None = None):
    """Regions per layer across training, one panel per scope, on a shared region axis.

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scopes: the panels (region scopes of the trace).
      estimator: the estimator whose records to use (region counts do not depend on it).
      member: index of the net in a stacked trace.
      logy: logarithmic region axis.
      title: the figure's title (default: :func:`figure_title` of data, net and ``N``).
      data, net: names for the title (default: the trace header's).

    Returns:
      The matplotlib ``Figure``; the panels share the y range (from the smallest count up to
      ``N``), one legend below them.
    """
    from matplotlib.figure import Figure

    tr = _trace(trace)
    data, net, N = _trace_meta(trace, tr, data, net, member)
    scopes = [scopes] if isinstance(scopes, str) else list(scopes)
    if not scopes:
        raise ValueError("scopes: nothing to draw")
    fig = Figure(figsize=(5.5 * len(scopes), 4.6), layout="constrained")
    axes = fig.subplots(1, len(scopes), squeeze=False, sharey=True)[0]
    colors = _layer_colors()
    sels, layers, any_sat = [], set(), False
    for ax, scope in zip(axes, scopes):
        sel, sat = _regions_panel(ax, tr, scope, estimator, member, logy, colors)
        sels.append(sel)
        layers |= set(int(l) for l in np.unique(tr["layer"][sel]))
        any_sat |= sat
        if N:
            ax.axhline(float(N), ls="--", color="0.5", lw=0.8, gid="N")
        ax.tick_params(labelleft=True)
    axes[0].set_ylim(*_regions_limits(tr, np.logical_or.reduce(sels), N, logy))
    _regions_legend(fig, sorted(layers), N, any_sat, colors, loc="outside lower center", ncol=8, fontsize=8,
                    frameon=False)
    fig.suptitle(title or figure_title("regions per layer across training", data=data, net=net, N=N), fontsize=11)
    return fig


def _layer_colors():
    from matplotlib import colormaps

    return [colormaps["tab10"](i) for i in range(10)]


# --------------------------------------------------------------------------------------
# 2D slices
# --------------------------------------------------------------------------------------
def box_section(plane, lo, hi) -> np.ndarray:
    """The part of a box that lies in a plane's extent, in the plane's ``(s, t)``.

    ``{(s, t) in extent : lo <= origin + s u + t v <= hi}``: the extent rectangle clipped by the
    ``2 d`` half-planes of the box (a convex polygon, possibly empty).

    Args:
      plane: a :class:`partax.geometry.Plane`.
      lo, hi: the box's corners, scalars or ``[d]`` arrays.

    Returns:
      ``float64[K, 2]`` counter-clockwise vertices (``K = 0``: the plane's rectangle misses
      the box).

    Example:
      >>> from partax.geometry import Plane
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-2, 2), (-2, 2)))
      >>> sorted(box_section(p, 0.0, 1.0).tolist())
      [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    """
    d = plane.dim
    lo = np.broadcast_to(np.asarray(lo, np.float64), (d,))
    hi = np.broadcast_to(np.asarray(hi, np.float64), (d,))
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
        raise ValueError("lo, hi: expected finite box corners with hi >= lo")
    (s0, s1), (t0, t1) = plane.extent
    poly = np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]], np.float64)
    # rows a . (s, t) <= b: u_i s + v_i t <= hi_i - o_i and -(u_i s + v_i t) <= o_i - lo_i
    A = np.concatenate([np.stack([plane.u, plane.v], 1), -np.stack([plane.u, plane.v], 1)])
    b = np.concatenate([hi - plane.origin, plane.origin - lo])
    scale = max(1.0, float(np.abs(poly).max()))
    for a, bb in zip(A, b):
        if len(poly) == 0:
            break
        f = poly @ a - bb
        tol = 1e-12 * (np.abs(a).sum() * scale + abs(bb) + 1.0)
        inside = f <= tol
        if inside.all():
            continue
        if not inside.any():
            return np.zeros((0, 2))
        out = []
        for k in range(len(poly)):
            p, q = poly[k], poly[(k + 1) % len(poly)]
            fp, fq = f[k], f[(k + 1) % len(poly)]
            if fp <= tol:
                out.append(p)
            if (fp <= tol) != (fq <= tol):
                out.append(p + (fp / (fp - fq)) * (q - p))
        poly = np.asarray(out, np.float64).reshape(-1, 2)
    return poly


def _region_colors(keys: np.ndarray) -> np.ndarray:
    """A stable RGB colour per key (golden-ratio hues, varied lightness)."""
    import colorsys

    k = np.asarray(keys, np.uint64)
    h = ((k >> np.uint64(40)) & np.uint64(0xFFFFFF)).astype(np.float64) / float(1 << 24)
    light = 0.45 + 0.3 * ((k & np.uint64(0xFF)).astype(np.float64) / 255.0)
    return np.array([colorsys.hls_to_rgb(hh, ll, 0.55) for hh, ll in zip(h, light)]).reshape(-1, 3)


def _net_name(net) -> str | None:
    if net is None:
        return None
    if isinstance(net, str):
        return net
    try:
        if not net.is_mlp:  # widths are code bits per site there, not layer widths: name the layers
            return "x".join(map(str, net.input_shape)) + " " + "-".join(_layer_name(layer) for layer in net.layers)
        return "-".join(str(w) for w in (net.input_dim, *net.widths, net.output_dim)) + " net"
    except AttributeError:
        return None


def _layer_name(layer) -> str:
    """``Conv(3x3, 1->8)`` -> ``conv3x3``; ``Dense(64->10)`` -> ``dense10``; ``ReLU()`` -> ``relu``."""
    kind = type(layer).__name__.lower()
    if hasattr(layer, "window"):
        return kind + "x".join(map(str, layer.window))
    if kind == "dense":
        return f"dense{layer.W.shape[-1]}"
    if kind == "residual":
        return "res(" + "-".join(_layer_name(inner) for inner in layer.body) + ")"
    return kind


def _box_corners(box):
    if box is None:
        return None
    if hasattr(box, "lo") and hasattr(box, "hi"):
        return np.asarray(box.lo, np.float64), np.asarray(box.hi, np.float64)
    try:
        lo, hi = box
    except (TypeError, ValueError):
        raise TypeError("box: expected a partax.Box or a (lo, hi) pair of scalars or [d] arrays") from None
    return np.asarray(lo, np.float64), np.asarray(hi, np.float64)


def _box_label(lo, hi, d: int) -> str:
    lo, hi = np.asarray(lo, np.float64).ravel(), np.asarray(hi, np.float64).ravel()
    if np.all(lo == lo[0]) and np.all(hi == hi[0]):
        return f"data box [{lo[0]:g}, {hi[0]:g}]^{d}"
    return f"data box (per-coordinate bounds in R^{d})"


def plot_slice(result, ax=None, *, net=None, plane=None, marks=None, mark_labels=None, box=None,
               edges: bool = True, title: str | None = None, data: str | None = None, note: str | None = None,
               legend: bool = True):
    """Draws a 2D slice: one colour per region, the decision boundary, the data box, the anchors.

    The axes are the plane's coordinates: a point ``(s, t)`` is the input
    ``plane.origin + s * plane.u + t * plane.v`` (for :meth:`partax.geometry.Plane.through`: the
    origin is the circumcentre of the three inputs, ``u`` points along ``x2 - x1`` and ``v`` is
    orthogonal to it in their plane, both of unit length, so ``s``, ``t`` are Euclidean
    distances in input space). A legend below the map explains the region boundaries, the
    decision boundary (black), the data box (dashed: where the plane stays inside ``box``) and
    the anchor points.

    Args:
      result: a :class:`partax.geometry.SliceRegions`.
      ax: a matplotlib axes (default: a new figure, object-oriented API, no pyplot).
      net: the :class:`partax.Net` (names the network in the title; needed for the decision
        boundary when ``result.logits`` is ``None``, i.e. cells shallower than the last layer),
        or a string naming it.
      plane: the :class:`partax.geometry.Plane` of ``result``; needed for ``box`` and for the
        decision boundary of shallow cells.
      marks: optional ``[K, 2]`` points ``(s, t)`` to mark (e.g. the three inputs).
      mark_labels: optional ``K`` strings written next to the marks (e.g. ``"#12 (class 3)"``);
        default ``x1, x2, ...``.
      box: optional data box, a :class:`partax.Box` or ``(lo, hi)`` (scalars or ``[d]``): its
        section by the plane (:func:`box_section`) is outlined.
      edges: draw thin cell edges.
      title: the whole title (default: the region count, scope and layer, then data and net).
      data: the data's name for the title.
      note: an extra line under the axes (e.g. how the plane was chosen).
      legend: draw the legend.

    Returns:
      The matplotlib axes.

    Raises:
      TypeError: ``result`` is not a SliceRegions, or ``box`` is neither a Box nor a pair.
      ValueError: ``box`` without ``plane``, or marks / labels of the wrong shape.

    Example:
      >>> import jax, partax
      >>> from partax.geometry import Plane, slice_regions
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.5)
      >>> p = Plane([0., 0.], [1., 0.], [0., 1.], ((-2, 2), (-2, 2)))
      >>> ax = plot_slice(slice_regions(net, p), net=net, plane=p, box=(-1, 1))
      >>> ax.get_xlabel().startswith("s")
      True
    """
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Polygon

    from partax.geometry.clipping import decision_segments
    from partax.geometry.slices import SliceRegions, slice_regions

    if not isinstance(result, SliceRegions):
        raise TypeError(f"result: expected a SliceRegions, got {type(result).__name__}")
    corners = _box_corners(box)
    if corners is not None and plane is None:
        raise ValueError("plane: box= needs the plane of the slice (plane=...)")
    if marks is not None:
        marks = np.asarray(marks, np.float64)
        if marks.ndim != 2 or marks.shape[1] != 2:
            raise ValueError(f"marks: expected (s, t) points of shape (K, 2), got {marks.shape}")
        if mark_labels is None:
            mark_labels = [f"x{i + 1}" for i in range(len(marks))]
        mark_labels = [str(m) for m in mark_labels]
        if len(mark_labels) != len(marks):
            raise ValueError(f"mark_labels: expected {len(marks)} labels (one per mark), got {len(mark_labels)}")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.0, 7.8), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    handles = []
    polys = [result.polygons[i, : result.counts[i]] for i in range(result.num_cells)]
    colours = _region_colors(result.unique_keys)[result.region_index]
    edge_rgba = (0.15, 0.15, 0.15, 0.45)
    ax.add_collection(
        PolyCollection(polys, facecolors=colours, edgecolors=edge_rgba if edges else "none",
                       linewidths=0.2 if edges else 0.0, gid="regions")
    )
    handles.append(Patch(facecolor=colours[0] if len(colours) else "0.8", edgecolor=edge_rgba, linewidth=0.6,
                         label=f"{result.num_regions} {result.scope} regions (layer {result.layer}), "
                         "one colour each; thin lines: their boundaries"))
    G, P, cnt = result.logits, result.polygons, result.counts
    if G is None and not isinstance(net, (str, type(None))) and plane is not None:
        full = slice_regions(net, plane, scope="prefix")
        G, P, cnt = full.logits, full.polygons, full.counts
    if G is not None:
        segs = decision_segments(P, cnt, G)
        if len(segs):
            ax.add_collection(LineCollection(segs, colors="black", linewidths=1.4, gid="decision"))
        handles.append(Line2D([], [], color="black", lw=1.4, label="decision boundary"
                              + ("" if len(segs) else " (does not cross the slice)")))
    if corners is not None:
        sec = box_section(plane, *corners)
        what = _box_label(corners[0], corners[1], plane.dim)
        if len(sec):
            ax.add_patch(Polygon(sec, closed=True, fill=False, ls="--", lw=1.6, ec="white", zorder=4, gid="box_bg"))
            ax.add_patch(Polygon(sec, closed=True, fill=False, ls=(0, (4, 3)), lw=1.2, ec="black", zorder=4,
                                 gid="box"))
            handles.append(Line2D([], [], color="black", ls=(0, (4, 3)), lw=1.2, label=what + " ∩ slice"))
        else:
            handles.append(Line2D([], [], color="black", ls=(0, (4, 3)), lw=1.2,
                                  label=what + ": does not meet the slice"))
    (s0, s1), (t0, t1) = result.extent
    if marks is not None and len(marks):
        ax.scatter(marks[:, 0], marks[:, 1], s=46, c="white", edgecolors="black", linewidths=1.2, zorder=6,
                   gid="marks")
        centre = np.array([(s0 + s1) / 2, (t0 + t1) / 2])
        for (ms, mt), lab in zip(marks, mark_labels):
            d = np.array([ms, mt]) - centre
            nd = float(np.hypot(*d))
            d = d / nd if nd > 0 else np.array([0.0, 1.0])
            ax.annotate(lab, (ms, mt), xytext=(14 * d[0], 14 * d[1]), textcoords="offset points",
                        ha="left" if d[0] >= 0 else "right", va="bottom" if d[1] >= 0 else "top", fontsize=9,
                        zorder=7, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.3", lw=0.6, alpha=0.9),
                        arrowprops=dict(arrowstyle="-", color="0.2", lw=0.6), gid="mark_label")
        handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="black", markersize=7,
                              label="anchor inputs (the plane goes through them)"))
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xlabel("s: coordinate along u, from the plane's origin (input units)")
    ax.set_ylabel("t: coordinate along v, perpendicular to u (input units)")
    if title is None:
        name = _net_name(net)
        head = f"exact regions of a 2D slice: {result.num_regions} {result.scope} regions at layer {result.layer}"
        sub = " · ".join(p for p in (data, name, f"{result.num_cells} cells") if p)
        title = head + "\n" + sub
    ax.set_title(title, fontsize=10)
    if note:
        import textwrap

        note = textwrap.fill(str(note), 95)
    if legend:
        lg = ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=1, fontsize=8,
                       frameon=False, title=note, title_fontsize=7.5)
        if note:
            lg.get_title().set_color("0.25")
    elif note:
        ax.set_xlabel(ax.get_xlabel() + "\n" + note)
    return ax


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def save(fig, path, **kwargs) -> None:
    """Writes ``fig`` to ``path`` atomically (temp file in the same directory, then rename).

    Args:
      fig: a matplotlib ``Figure``.
      path: the output file; the format follows its extension (png, pdf, svg, ...; PNG without
        one).
      **kwargs: passed to ``fig.savefig`` (default ``dpi=150``).
    """
    import io

    from partax.files import atomic_write_bytes

    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    kwargs.setdefault("dpi", 150)
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, **kwargs)
    atomic_write_bytes(path, buf.getvalue())
