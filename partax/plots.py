"""Figures of traces: the information plane, regions across training, estimator comparisons.

matplotlib is an optional dependency, imported inside the functions. Figures are built with the
object-oriented API (``matplotlib.figure.Figure``, no pyplot), so they render headless without
touching the global backend; :func:`save` writes them atomically.

Every function takes a trace as returned by :func:`partax.trace.load_trace` (or a trace
directory) and returns the :class:`~matplotlib.figure.Figure`.

Example:
    >>> from partax import plots
    >>> fig = plots.information_plane("runs/demo", scope="layer")  # doctest: +SKIP
    >>> plots.save(fig, "runs/demo/infoplane.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os

import numpy as np

from partax.coding import SCOPES

__all__ = ["information_plane", "regions_vs_epoch", "estimator_comparison", "save"]


def _trace(trace) -> dict:
    if isinstance(trace, (str, os.PathLike)):
        from partax.trace import load_trace

        return load_trace(trace)
    if not isinstance(trace, dict) or "step" not in trace:
        raise TypeError("trace: expected a dict from partax.load_trace (with a 'step' column) or a trace directory")
    return trace


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


def _new_axes(ax, figsize=(6.0, 4.5)):
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


def _plane(ax, tr, scope, estimator, member, cmap, colorbar=True, title=None, log_color=None):
    estimator = _default_estimator(tr, scope, estimator)
    sel = _select(tr, scope, estimator, member)
    steps = tr["step"][sel]
    norm = _step_norm(steps, log_color)
    sc = None
    for l in np.unique(tr["layer"][sel]):
        s = sel & (tr["layer"] == l)
        order = np.argsort(tr["step"][s], kind="stable")
        xs, ys, st = tr["I_XT"][s][order], tr["I_TY"][s][order], tr["step"][s][order]
        ax.plot(xs, ys, "-", color="0.75", lw=0.6, zorder=1)
        sc = ax.scatter(xs, ys, c=st, cmap=cmap, norm=norm, s=14, edgecolors="none", zorder=2)
        ax.annotate(f"L{l}", (xs[-1], ys[-1]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("I(X;T) [bits]")
    ax.set_ylabel("I(T;Y) [bits]")
    ax.set_title(title or f"{scope} ({estimator})", fontsize=10)
    if colorbar and sc is not None:
        ax.figure.colorbar(sc, ax=ax, label="epoch")
    return sc


def information_plane(trace, *, scope: str = "layer", estimator: str = "plugin", member: int = 0,
                      ax=None, cmap: str = "viridis", log_color: bool | None = None):
    """The information plane: one curve per layer, points coloured by epoch (with a colourbar).

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

    Returns:
      The matplotlib ``Figure``.
    """
    tr = _trace(trace)
    fig, ax = _new_axes(ax)
    _plane(ax, tr, scope, estimator, member, cmap, log_color=log_color)
    return fig


def regions_vs_epoch(trace, *, scope: str = "prefix", estimator: str = "plugin", member: int = 0,
                     ax=None, logy: bool = True):
    """Number of regions per layer against the training step (symlog x axis).

    Saturated checkpoints (``H_T`` pinned at ``log2 N``, see :func:`partax.info.measures`) are
    drawn as open circles; the dashed line marks ``N``, the number of traced inputs.

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scope: ``"layer"``, ``"prefix"`` or ``"suffix"``.
      estimator: the estimator whose records to use (region counts do not depend on it).
      member: index of the net in a stacked trace.
      ax: an existing Axes to draw in.
      logy: logarithmic region axis.

    Returns:
      The matplotlib ``Figure``.
    """
    tr = _trace(trace)
    sel = _select(tr, scope, estimator, member)
    fig, ax = _new_axes(ax)
    for l in np.unique(tr["layer"][sel]):
        s = sel & (tr["layer"] == l)
        order = np.argsort(tr["step"][s], kind="stable")
        st, rg = tr["step"][s][order], tr["regions"][s][order]
        (line,) = ax.plot(st, rg, "-", lw=1.2, label=f"layer {l}")
        if "saturated" in tr:
            sat = np.asarray(tr["saturated"][s][order], dtype=float) == 1
            if sat.any():
                ax.plot(st[sat], rg[sat], "o", mfc="none", color=line.get_color(), ms=4)
    if "N" in tr:
        ax.axhline(float(np.nanmax(tr["N"][sel])), ls="--", color="0.5", lw=0.8, label="N inputs")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=min(0.0, float(tr["step"][sel].min())))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("regions")
    ax.set_title(f"regions per layer ({scope})", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def estimator_comparison(trace, *, scopes=None, estimator: str = "plugin", member: int = 0,
                         cmap: str = "viridis", log_color: bool | None = None):
    """Information planes side by side, one panel per scope / baseline.

    Args:
      trace: a dict from :func:`partax.trace.load_trace`, or a trace directory.
      scopes: panels to draw (default: every scope in the trace, region scopes first).
      estimator: estimator for the panels (KDE panels use ``"upper"``).
      member: index of the net in a stacked trace.
      cmap: colour map for the epochs.
      log_color: as in :func:`information_plane`.

    Returns:
      The matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    tr = _trace(trace)
    if scopes is None:
        present = list(dict.fromkeys(tr["scope"].tolist()))
        first = [s for s in SCOPES if s in present]
        scopes = first + [s for s in present if s not in first]
    scopes = list(scopes)
    if not scopes:
        raise ValueError("scopes: nothing to draw")
    n = len(scopes)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.2 * cols + 0.8, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    sc = None
    for i, scope in enumerate(scopes):
        ax = axes[i // cols][i % cols]
        sc = _plane(ax, tr, scope, estimator, member, cmap, colorbar=False, log_color=log_color) or sc
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), label="epoch")
    return fig


def save(fig, path, **kwargs) -> None:
    """Writes ``fig`` to ``path`` atomically (temp file in the same directory, then rename).

    The format follows the extension of ``path`` (png, pdf, svg, ...); ``kwargs`` go to
    ``fig.savefig`` (default ``dpi=150``).
    """
    import io

    from partax.files import atomic_write_bytes

    ext = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    kwargs.setdefault("dpi", 150)
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, **kwargs)
    atomic_write_bytes(path, buf.getvalue())
