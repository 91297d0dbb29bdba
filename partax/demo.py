"""``partax demo``: regions as natural bins on the Tishby information-bottleneck task.

:func:`run_demo` (DESIGN §5) needs no download:

1. builds the exact Tishby IB dataset (:func:`partax.datasets.tishby_ib`, 4096 x 12 bits);
2. trains the 12-10-7-5-4-3-2 ReLU network with Adam (lr 4e-4, batch 256) for 8000 epochs and
   traces, at the 274 log-spaced epochs of the IB literature (plus epoch 0), per-layer region
   counts, ``I(X;T)`` and ``I(T;Y)`` for the ``layer``, ``prefix`` and ``suffix`` scopes, and the
   ``binned30`` baseline on the activations (30 bin edges over each layer's observed range, as
   Shwartz-Ziv & Tishby's code: see :func:`partax.info.binned_mi`);
3. partitions the input box ``[0,1]^12`` of the final net with ``2**20`` uniform samples and
   writes the region report of :func:`partax.geometry.region_report` (``regions.npz``);
4. writes ``out/``: ``trace.jsonl``, ``tables/`` (partitions at a few checkpoints),
   ``infoplane.png``, ``regions_per_epoch.png``, ``net.npz``, ``history.npz`` and ``report.md``.

``quick=True`` trains 300 epochs, traces 40 log-spaced epochs and samples ``2**16`` points.

Failures are loud: if a step after training fails (the box partition, the region report, the
figures), the demo still writes everything the other steps produced, records the failed steps
and their errors in ``report.md`` and in the summary, and then raises :class:`DemoError`
naming them (``partax demo`` exits 1). A failure in training stops the demo at once, with a
:class:`DemoError` that names that step too.

Example:
    >>> from partax.demo import run_demo
    >>> summary = run_demo("runs/demo", quick=True, progress=False)  # doctest: +SKIP
    >>> summary["files"]["report"]  # doctest: +SKIP
    'runs/demo/report.md'
"""

from __future__ import annotations

import glob
import os
import time
from typing import Callable

import jax
import numpy as np
import optax

from partax.coding import SCOPES as _SCOPES
from partax.files import atomic_write_text

__all__ = ["run_demo", "ARCHITECTURE", "DemoError"]

ARCHITECTURE = (12, 10, 7, 5, 4, 3, 2)
_BASELINE = "binned30"
_FIGURE_DATA = "Tishby IB data (12 bits)"  # the data's name in the figures' titles



class DemoError(RuntimeError):
    """A step of the demo failed; ``failed`` maps each failed step to its error, ``summary``
    is what :func:`run_demo` would have returned (None when training failed)."""

    def __init__(self, failed: dict, summary: dict | None = None):
        self.failed = dict(failed)
        self.summary = summary
        steps = "; ".join(f"step {k!r} failed: {v}" for k, v in self.failed.items())
        super().__init__(f"partax demo: {steps}")


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _fmt(v, nd=3) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not np.isfinite(v):
        return "–"
    if v != 0 and abs(v) < 0.1:
        return f"{v:.3g}"
    return f"{v:.{nd}f}"


def _final_rows(tr: dict, step: int, L: int) -> list:
    rows = []
    for l in range(1, L + 1):
        row = {"_layer": l}
        for scope in _SCOPES + (_BASELINE,):
            sel = (tr["step"] == step) & (tr["scope"] == scope) & (tr["layer"] == l) & (tr["estimator"] == "plugin")
            if sel.any():
                i = int(np.flatnonzero(sel)[0])
                row[scope] = {k: tr[k][i] for k in ("regions", "I_XT", "I_TY", "saturated") if k in tr}
                row["width"] = int(tr["width"][i])
        rows.append(row)
    return rows


def _box_region_report(net, n_samples: int, seed: int, data_part, out: str, lp_regions: int = 256,
                       volume_samples: int = 20_000):
    """Step 3: partition [0,1]^12 by uniform samples, then the region report.

    A failure of the report is recorded in ``result["report_error"]`` (the partition's
    numbers stay); the caller turns it into a failed step.
    """
    import partax
    from partax import sources

    t0 = time.perf_counter()
    src = sources.uniform_box(0.0, 1.0, n_samples, jax.random.key(seed + 1), dim=net.input_dim)
    box = partax.partition(net, src, scopes=("prefix",), progress=False)
    L = len(box.widths)
    counts = box.num_regions("prefix")
    with_data = []
    for l in range(1, L + 1):
        kb = box.table("prefix", l).keys
        kd = data_part.table("prefix", l).keys
        with_data.append(int(np.isin(kb, kd).sum()))
    result = {
        "samples": n_samples,
        "regions": counts.tolist(),
        "regions_with_data": with_data,
        "near_boundary": int(box.near_boundary),
        "report": None,
    }
    # Step 3: the region report (DESIGN §3.7): LP columns for the most populated regions, their
    # geometric volume by Monte Carlo in each region's bounding box beside the count-based one.
    from partax.geometry import Box, region_report
    from partax.files import atomic_savez

    try:
        unit = Box(0.0, 1.0)
        rep = region_report(net, box, src, scope="prefix", domain=unit, sample_box=unit,
                            max_regions=lp_regions, volume_method="mc", num_samples=volume_samples,
                            seed=seed, progress=False, keep_mismatched=True)
        arrays = {k: np.asarray(v) for k, v in rep.columns().items() if v is not None}
        result["report_mismatched"] = int((~arrays["code_reproduces"]).sum())
        arrays["holds_data"] = np.isin(arrays["keys"], data_part.table("prefix", L).keys)
        atomic_savez(os.path.join(out, "regions.npz"), arrays)
        keep = arrays["holds_data"] & arrays["has_lp"]
        result["report"] = {k: arrays[k][keep] for k in
                            ("keys", "counts", "mc_volume", "mc_volume_err", "volume", "volume_err", "radius",
                             "num_facets", "margin")
                            if k in arrays}
        result["report_regions"] = int(len(arrays["keys"]))
        result["report_lp_regions"] = int(arrays["has_lp"].sum())
    except Exception as e:  # recorded; run_demo writes the rest, then raises DemoError
        result["report_error"] = _error_text(e)
    result["seconds"] = time.perf_counter() - t0
    return result


def _report_table(arrays: dict, max_rows: int = 12) -> str:
    cols = [k for k, v in arrays.items() if v.ndim == 1]
    if not cols:
        return ""
    n = min(len(arrays[cols[0]]), max_rows)
    order = np.arange(len(arrays[cols[0]]))
    if "counts" in arrays and arrays["counts"].ndim == 1:
        order = np.argsort(-arrays["counts"], kind="stable")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i in order[:n]:
        cells = []
        for c in cols:
            v = arrays[c][i]
            if c == "keys" or (isinstance(v, np.integer) and arrays[c].dtype == np.uint64):
                cells.append(f"{int(v):#018x}")
            else:
                cells.append(_fmt(v.item() if hasattr(v, "item") else v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_demo(out="runs/demo", *, quick: bool = False, seed: int = 0, progress: bool = True,
             epochs: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Runs the demo: IB data, training with tracing, box partition, figures and report.

    A rerun on the same ``out`` starts afresh (it replaces the trace and tables of the last run).

    Args:
      out: output directory.
      quick: a short run (300 epochs, 40 traced epochs, ``2**16`` box samples).
      seed: seed of the initialisation, the shuffling and the box samples.
      progress: show progress bars (tqdm, on stderr).
      log: called with a short status line at each stage (``partax demo`` prints them);
        default: none.
      epochs: override the number of training epochs (default 8000, quick 300).

    Returns:
      A JSON-ready summary: ``epochs``, ``checkpoints``, ``final_loss``, ``final_accuracy``,
      ``H_Y``, ``final`` (per-layer regions / I(X;T) / I(T;Y) per scope at the last epoch),
      ``box`` (regions of ``[0,1]^12`` per prefix layer), ``seconds``, ``files`` and
      ``failed`` (empty: a failed step raises).

    Raises:
      DemoError: a step failed (after the other steps' files were written).
    """
    import partax
    from partax import info, plots
    from partax.datasets import tishby_ib
    from partax.trace import TRACE_FILE, Tracer, load_trace, log_spaced
    from partax.train import fit

    if log is not None and not callable(log):
        raise TypeError(f"log: expected a callable taking one str, or None, got {type(log).__name__}")
    if epochs is None:
        epochs = 300 if quick else 8000
    elif isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a positive int, got {epochs!r}")
    epochs = int(epochs)
    t_start = time.perf_counter()
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    # a demo run starts afresh: drop the previous run's outputs (only our files), so that none
    # of a failed step's files can be mistaken for this run's
    ours = [TRACE_FILE, "regions.npz", "infoplane.png", "regions_per_epoch.png", "report.md", "net.npz", "history.npz"]
    for old in [os.path.join(out, f) for f in ours] + glob.glob(os.path.join(out, "tables", "step_*.npz")):
        if os.path.exists(old):
            os.unlink(old)

    n_trace = min(40 if quick else 274, epochs)
    n_box = 2**16 if quick else 2**20
    schedule = np.union1d([0], log_spaced(epochs, n_trace)).astype(int)
    table_steps = np.union1d([0], log_spaced(epochs, 8)).astype(int)

    def say(msg):
        if log is not None:
            log(msg)

    failed = {}  # step -> error, for the steps after training
    try:
        x, y = tishby_ib()
        h_y = info.entropy(np.bincount(y))
        key = jax.random.key(seed)
        k_init, k_train = jax.random.split(key)
        net = partax.mlp(k_init, list(ARCHITECTURE))
        tracer = Tracer(x, y, every=schedule, scopes=_SCOPES, estimators=("plugin",), baselines=(_BASELINE,),
                        out=out, save_tables=table_steps, meta={"data": "Tishby IB (12 bits)"})
        say(f"Tishby IB data: {x.shape[0]} inputs x {x.shape[1]} bits, H(Y) = {h_y:.5f} bits")
        say(f"training {'-'.join(map(str, ARCHITECTURE))} ReLU, Adam lr 4e-4, batch 256, {epochs} epochs; "
            f"tracing {len(schedule)} checkpoints")
        t0 = time.perf_counter()
        net, hist = fit(net, x, y, optax.adam(4e-4), epochs=epochs, batch_size=256, key=k_train,
                        callbacks=[tracer], progress=progress)
        t_train = time.perf_counter() - t0
        partax.save_net(net, os.path.join(out, "net.npz"))
        from partax.files import atomic_savez

        atomic_savez(os.path.join(out, "history.npz"), {"loss": hist["loss"], "accuracy": hist["accuracy"]})
        tr = load_trace(out)
    except Exception as e:  # nothing after training can run without it
        raise DemoError({"train": _error_text(e)}) from e

    # step 3: the partition of the input box by the final net, and its region report
    say(f"partitioning [0,1]^12 with {n_box} uniform samples")
    try:
        data_part = partax.partition(net, x, labels=y, scopes=("prefix",), progress=False)
        box = _box_region_report(net, n_box, seed, data_part, out, lp_regions=64 if quick else 256,
                                 volume_samples=5_000 if quick else 20_000)
        if "report_error" in box:
            failed["region_report"] = box["report_error"]
    except Exception as e:
        failed["box_partition"] = _error_text(e)
        box = {"samples": n_box, "regions": [], "regions_with_data": [], "near_boundary": None, "report": None,
               "seconds": 0.0}

    # figures
    t0 = time.perf_counter()
    try:
        fig_data, fig_net = _FIGURE_DATA, f"{'-'.join(map(str, ARCHITECTURE))} ReLU, {epochs} epochs"
        fig = plots.estimator_comparison(tr, scopes=list(_SCOPES) + [_BASELINE], data=fig_data, net=fig_net)
        plots.save(fig, os.path.join(out, "infoplane.png"))
        fig = plots.regions_comparison(tr, scopes=("layer", "prefix"), data=fig_data, net=fig_net)
        plots.save(fig, os.path.join(out, "regions_per_epoch.png"))
    except Exception as e:
        failed["figures"] = _error_text(e)
    t_fig = time.perf_counter() - t0

    L = len(net.widths)
    last = int(schedule[-1])
    rows = _final_rows(tr, last, L)
    seconds = {"train_and_trace": t_train, "box_partition": box["seconds"], "figures": t_fig}
    trace_seconds = float(np.sum([tr["seconds"][tr["step"] == s][0] for s in np.unique(tr["step"])]))
    seconds["trace_only"] = trace_seconds
    seconds["total"] = time.perf_counter() - t_start

    # report.md
    md = [
        "# partax demo: regions as bins on the Tishby IB task",
        "",
        f"- data: exact Tishby IB set, {x.shape[0]} inputs x {x.shape[1]} bits, {int(y.sum())} positives, "
        f"H(Y) = {h_y:.5f} bits",
        f"- network: {'-'.join(map(str, ARCHITECTURE))}, ReLU, Adam lr 4e-4, batch 256, {epochs} epochs, seed {seed}",
        f"- final training loss {hist['loss'][-1]:.4f}, accuracy {hist['accuracy'][-1]:.4f}",
        f"- traced {len(np.unique(tr['step']))} checkpoints (epoch 0 and log_spaced({epochs}, {n_trace})); "
        f"scopes {', '.join(_SCOPES)}; baseline `{_BASELINE}` (Shwartz-Ziv & Tishby "
        "binning with 30 bin edges over each layer's observed activation range at the checkpoint, "
        "i.e. 29 equal intervals plus the bin of the maximum)",
        f"- time: {seconds['total']:.1f} s total; training + tracing {t_train:.1f} s "
        f"(of which tracing {trace_seconds:.1f} s); box partition {box['seconds']:.1f} s",
        "",
        f"## Final epoch ({last}): per hidden layer",
        "",
        "I(X;T) and I(T;Y) in bits; for regions as bins I(X;T) = H(T) (deterministic net, "
        f"empirical inputs); the maximum is log2 N = {np.log2(x.shape[0]):.0f} bits. "
        "`sat` marks a saturated estimate (H(T) within 0.05 bits of log2 N or coverage < 0.5).",
        "",
        "| layer | width | " + " | ".join(f"{s} regions | {s} I(X;T) | {s} I(T;Y)" for s in _SCOPES)
        + f" | {_BASELINE} bins | {_BASELINE} I(X;T) | {_BASELINE} I(T;Y) |",
        "|" + "---|" * (2 + 3 * (len(_SCOPES) + 1)),
    ]
    for r in rows:
        cells = [str(r["_layer"]), str(r.get("width", ""))]
        for s in _SCOPES + (_BASELINE,):
            d = r.get(s, {})
            sat = " (sat)" if d.get("saturated", False) else ""  # load_trace: always bool
            regions = int(d.get("regions", -1))  # int64, -1 where not recorded
            cells += [_fmt(regions) + sat if regions >= 0 else "–", _fmt(d.get("I_XT", np.nan)),
                      _fmt(d.get("I_TY", np.nan))]
        md.append("| " + " | ".join(cells) + " |")
    md += [
        "",
        "## Figures",
        "",
        "Information plane per scope and the `binned30` baseline (30 bin edges over each layer's observed "
        "range; one curve per layer, colour = epoch):",
        "",
        "![information plane](infoplane.png)",
        "",
        "Regions per layer across training (`layer` and `prefix` scopes; open circles: saturated):",
        "",
        "![regions per epoch](regions_per_epoch.png)",
        "",
        f"## The input box [0,1]^12 of the final net ({box['samples']} uniform samples)",
        "",
        "| layer | prefix regions met | of which hold training inputs |",
        "|---|---|---|",
    ]
    for l, (c, w) in enumerate(zip(box["regions"], box["regions_with_data"]), start=1):
        md.append(f"| {l} | {c} | {w} |")
    if box["near_boundary"] is not None:
        md += ["", f"Samples within a relative 1e-5 of a boundary (`Partition.near_boundary`): "
                   f"{box['near_boundary']}.", ""]
    if box.get("report") is not None:
        md += ["### Region report (partax.geometry.region_report)", "",
               f"LP columns (Chebyshev radius, facets, geometric volume) for the {box.get('report_lp_regions')} most "
               f"populated of {box.get('report_regions')} prefix regions of the last layer. `mc_volume` = fraction "
               "of the box samples in the region (box volume 1) with its binomial standard error; `volume` = the "
               "region's geometric volume by rejection sampling in its bounding box, with its standard error. "
               "Below: the most populated regions that also hold training inputs.", "",
               _report_table(box["report"]), "", "Full columns in `regions.npz`.", "",
               f"Rows whose exemplar's float64 code does not reproduce the region's key (kept, flagged in "
               f"`code_reproduces`): {box.get('report_mismatched', 0)}.", ""]
    if failed:
        md += ["## Failed steps", "", "These steps failed; their outputs are missing and `partax demo` exits 1:", ""]
        md += [f"- `{k}`: `{v}`" for k, v in failed.items()] + [""]
    md += ["## Files", "", "`trace.jsonl` (load with `partax.load_trace`), `tables/step_*.npz` "
           "(`partax.load_partition`), `net.npz` (`partax.load_net`), `history.npz`"
           + ("" if "figures" in failed else ", `infoplane.png`, `regions_per_epoch.png`")
           + (", `regions.npz`" if box.get("report") is not None else "") + ".", ""]
    report_path = os.path.join(out, "report.md")
    atomic_write_text(report_path, "\n".join(md))
    say(f"wrote {report_path} ({seconds['total']:.1f} s)")

    final = {
        str(r["_layer"]): {
            s: {k: (bool(v) if k == "saturated" and isinstance(v, (bool, np.bool_)) else float(v))
                for k, v in r[s].items()}
            for s in _SCOPES + (_BASELINE,) if s in r
        }
        for r in rows
    }
    files = {
        "trace": os.path.join(out, TRACE_FILE),
        "tables": os.path.join(out, "tables"),
        "net": os.path.join(out, "net.npz"),
        "history": os.path.join(out, "history.npz"),
        "report": report_path,
    }
    if "figures" not in failed:
        files["infoplane"] = os.path.join(out, "infoplane.png")
        files["regions_per_epoch"] = os.path.join(out, "regions_per_epoch.png")
    if box.get("report") is not None:
        files["regions"] = os.path.join(out, "regions.npz")
    summary = {
        "out": out,
        "quick": bool(quick),
        "epochs": epochs,
        "checkpoints": int(len(np.unique(tr["step"]))),
        "final_loss": float(hist["loss"][-1]),
        "final_accuracy": float(hist["accuracy"][-1]),
        "H_Y": float(h_y),
        "final": final,
        "box": {k: v for k, v in box.items() if k != "report"},
        "seconds": seconds,
        "files": files,
        "failed": failed,
    }
    if failed:
        raise DemoError(failed, summary)
    return summary
