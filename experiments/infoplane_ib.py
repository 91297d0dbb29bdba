"""Information plane of the Tishby IB task: regions as bins next to the binning and KDE baselines.

Several seeds of the 12-10-7-5-4-3-2 ReLU net are trained at once as one stacked net
(``partax.stack_nets``; ``partax.train.fit`` vmaps over the stack and ``partax.partition`` returns
one Partition per seed). A :class:`partax.Tracer` records, at log-spaced epochs, the regions-as-bins
measures for the ``layer``, ``prefix`` and ``suffix`` scopes, the 30-bin baseline and the
Kolchinsky–Tracey KDE bounds (noise variance 1e-3) on the hidden activations.

Writes into ``--out`` (default ``runs/infoplane_ib``): ``trace.jsonl``, ``infoplane_seeds.png``
(seed 0, one panel per estimator), ``final_layers.png`` (final I(X;T), I(T;Y) per layer, mean and
spread over seeds), ``summary.json`` and ``summary.md``.

Usage:
    python experiments/infoplane_ib.py                 # 3 seeds, 8000 epochs, 80 checkpoints
    python experiments/infoplane_ib.py --quick         # 2 seeds, 300 epochs, 20 checkpoints
    python experiments/infoplane_ib.py --seeds 5 --epochs 8000 --checkpoints 274
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import jax
import numpy as np
import optax

import partax
from partax import info, plots
from partax.datasets import tishby_ib
from partax.trace import Tracer, load_trace, log_spaced
from partax.train import fit

ARCH = [12, 10, 7, 5, 4, 3, 2]
PANELS = [("layer", "plugin"), ("prefix", "plugin"), ("suffix", "plugin"), ("binned30", "plugin"),
          ("kde", "upper"), ("kde", "lower")]


def _summarise(tr: dict, seeds: int, L: int) -> dict:
    last = int(tr["step"].max())
    out = {}
    for scope, est in PANELS:
        per = {}
        for l in range(1, L + 1):
            base = (tr["scope"] == scope) & (tr["estimator"] == est) & (tr["layer"] == l)
            fin_x, fin_y, peak_x, regions = [], [], [], []
            for m in range(seeds):
                s = base & (tr["member"] == m)
                if not s.any():
                    continue
                fin = s & (tr["step"] == last)
                fin_x.append(float(tr["I_XT"][fin][0]))
                fin_y.append(float(tr["I_TY"][fin][0]))
                # compression: drop of I(X;T) from its maximum after the first epochs to the end
                peak_x.append(float(np.nanmax(tr["I_XT"][s])))
                if "regions" in tr:
                    regions.append(float(tr["regions"][fin][0]))
            fin_x, fin_y, peak_x = map(np.asarray, (fin_x, fin_y, peak_x))
            per[str(l)] = {
                "I_XT_mean": float(fin_x.mean()), "I_XT_sd": float(fin_x.std()),
                "I_TY_mean": float(fin_y.mean()), "I_TY_sd": float(fin_y.std()),
                "compression_mean": float((peak_x - fin_x).mean()),
                "regions_mean": float(np.nanmean(regions)) if regions else float("nan"),
            }
        out[f"{scope}/{est}"] = per
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8000)
    ap.add_argument("--checkpoints", type=int, default=80)
    ap.add_argument("--out", default="runs/infoplane_ib")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs, a.checkpoints = 2, 300, 20
    if os.path.exists(os.path.join(a.out, "trace.jsonl")):  # a fresh study each run
        os.unlink(os.path.join(a.out, "trace.jsonl"))
    t0 = time.perf_counter()
    x, y = tishby_ib()
    nets = partax.stack_nets([partax.mlp(jax.random.key(1000 + s), ARCH) for s in range(a.seeds)])
    schedule = np.union1d([0], log_spaced(a.epochs, a.checkpoints))
    tracer = Tracer(x, y, every=schedule, baselines=("binned30", "kde"), out=a.out)
    nets, hist = fit(nets, x, y, optax.adam(4e-4), epochs=a.epochs, batch_size=256,
                     key=jax.random.key(7), callbacks=[tracer], progress=True)
    seconds = time.perf_counter() - t0
    tr = load_trace(a.out)
    L = len(ARCH) - 2

    data_name = f"Tishby IB data (12 bits), {a.seeds} seeds (seed 0 shown)"
    net_name = f"{'-'.join(map(str, ARCH))} ReLU, Adam 4e-4, {a.epochs} epochs"
    fig = plots.estimator_comparison(tr, scopes=["layer", "prefix", "suffix", "binned30", "kde"], data=data_name,
                                     net=net_name)
    plots.save(fig, os.path.join(a.out, "infoplane_seeds.png"))

    summary = _summarise(tr, a.seeds, L)
    from matplotlib.figure import Figure

    N = int(x.shape[0])
    h_y = float(info.entropy(np.bincount(y)))
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    layers = np.arange(1, L + 1)
    width = 0.8 / max(len(summary), 1)  # dodge the estimators so that their error bars do not overlap
    for i, (key, per) in enumerate(summary.items()):
        off = (i - (len(summary) - 1) / 2) * width
        mx = [per[str(l)]["I_XT_mean"] for l in layers]
        sx = [per[str(l)]["I_XT_sd"] for l in layers]
        my = [per[str(l)]["I_TY_mean"] for l in layers]
        sy = [per[str(l)]["I_TY_sd"] for l in layers]
        ax1.errorbar(layers + off, mx, yerr=sx, marker="o", ms=4, capsize=2, label=key)
        ax2.errorbar(layers + off, my, yerr=sy, marker="o", ms=4, capsize=2, label=key)
    ceiling = ax1.axhline(np.log2(N), ls="--", color="0.3", lw=0.9, label=f"log2 N = {np.log2(N):.0f} bits")
    label_entropy = ax2.axhline(h_y, ls=":", color="0.4", lw=0.9, label=f"H(Y) = {h_y:.3f} bits")
    ax1.set(xlabel="hidden layer", ylabel="final I(X;T) [bits]", xticks=layers, ylim=(0, 1.05 * np.log2(N)),
            title="I(X;T) at the last epoch")
    ax2.set(xlabel="hidden layer", ylabel="final I(T;Y) [bits]", xticks=layers, ylim=(0, 1.05 * h_y),
            title="I(T;Y) at the last epoch")
    handles, labels = ax1.get_legend_handles_labels()
    keep = [i for i, h in enumerate(handles) if h is not ceiling]
    handles = [handles[i] for i in keep] + [ceiling, label_entropy]
    labels = [labels[i] for i in keep] + [ceiling.get_label(), label_entropy.get_label()]
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8,
               title="estimator (mean ± sd over seeds; estimators dodged sideways around each layer)",
               title_fontsize=8)
    fig.suptitle(plots.figure_title("final information per layer", data=f"Tishby IB data (12 bits), {a.seeds} seeds",
                                    net=net_name, N=N), fontsize=11)
    plots.save(fig, os.path.join(a.out, "final_layers.png"))

    result = {
        "seeds": a.seeds, "epochs": a.epochs, "checkpoints": int(len(schedule)),
        "final_accuracy": np.asarray(hist["accuracy"][-1]).tolist(),
        "final_loss": np.asarray(hist["loss"][-1]).tolist(),
        "seconds": seconds, "summary": summary,
    }
    from partax.files import atomic_write_bytes

    atomic_write_bytes(os.path.join(a.out, "summary.json"), json.dumps(result, indent=1).encode())
    md = [f"seeds {a.seeds}, epochs {a.epochs}, checkpoints {len(schedule)}, {seconds:.0f} s; final accuracy "
          f"{np.round(np.asarray(hist['accuracy'][-1]), 3).tolist()}", "",
          "| estimator | " + " | ".join(f"L{l} I(X;T)" for l in layers) + " | "
          + " | ".join(f"L{l} I(T;Y)" for l in layers) + " | " + " | ".join(f"L{l} compr." for l in layers) + " |",
          "|" + "---|" * (1 + 3 * L)]
    for key, per in summary.items():
        md.append(f"| {key} | " + " | ".join(f"{per[str(l)]['I_XT_mean']:.2f}±{per[str(l)]['I_XT_sd']:.2f}" for l in layers)
                  + " | " + " | ".join(f"{per[str(l)]['I_TY_mean']:.3f}±{per[str(l)]['I_TY_sd']:.3f}" for l in layers)
                  + " | " + " | ".join(f"{per[str(l)]['compression_mean']:.2f}" for l in layers) + " |")
    atomic_write_bytes(os.path.join(a.out, "summary.md"), ("\n".join(md) + "\n").encode())
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
