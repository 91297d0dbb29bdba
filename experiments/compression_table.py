"""Lossless compression of l1-trained nets (Serra, Kumar & Ramalingam, CPAIOR 2020): the talk's table in shape.

Trains 2-hidden-layer ReLU nets of width 25, 50 and 100 on scikit-learn's 8x8 digits (a fixed
split: 1400 training, 397 test images; with ``--mnist DIR``, MNIST from the user's IDX files over
``[0, 1]^784``; nothing is downloaded) with several l1 weights
(including 0) and several seeds per cell, compresses each over the input box ``[0, 1]^64`` with
:func:`partax.compress` (LP stability bounds), and reports per cell: test accuracy, % of hidden
units and % of connections removed, certification time (bounds + rebuild + verification), and
whether every compressed net passed its verification (dense sampling and the algebraic
certificate) and kept every test prediction.

Run:
    python experiments/compression_table.py            # 3 seeds, 100 epochs: ~3 min on 2 cores
    python experiments/compression_table.py --quick    # 2 seeds, 30 epochs, widths 25 and 100: ~40 s
Writes ``runs/compression/{results.json, table.md}``, and with ``--docs`` also
``docs/compression.md`` and ``docs/compression.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
import optax

import partax
from partax.compression import compress
from partax.files import atomic_write_text
from partax.train import fit


def split(seed=0, n_train=1400, mnist=None):
    """Digits (a fixed 1400 / 397 split), or MNIST's training / test files from the directory ``mnist``."""
    if mnist:
        from partax.datasets import load_idx

        def pick(*names):
            for name in names:
                if os.path.exists(os.path.join(mnist, name)):
                    return os.path.join(mnist, name)
            raise FileNotFoundError(f"--mnist: none of {names} in {mnist!r}")

        xtr, ytr = load_idx(pick("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"),
                            pick("train-labels-idx1-ubyte", "train-labels-idx1-ubyte.gz"))
        xte, yte = load_idx(pick("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"),
                            pick("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"))
        return xtr, ytr, xte, yte
    x, y = partax.datasets.digits()
    perm = np.random.default_rng(seed).permutation(len(x))
    return x[perm[:n_train]], y[perm[:n_train]], x[perm[n_train:]], y[perm[n_train:]]


def run(widths, l1s, seeds, epochs, method="lp", mnist=None):
    xtr, ytr, xte, yte = split(mnist=mnist)
    box = partax.Box(0.0, 1.0)
    rows = []
    for w in widths:
        for l1 in l1s:
            nets = [partax.mlp(jax.random.key(1000 * s + w), [xtr.shape[1], w, w, 10]) for s in seeds]
            t0 = time.perf_counter()
            stacked, _ = fit(partax.stack_nets(nets), xtr, ytr, optax.adam(1e-3), epochs=epochs, batch_size=64,
                             key=w, l1=l1)
            train_s = time.perf_counter() - t0
            cell = dict(width=w, l1=l1, seeds=len(seeds), epochs=epochs, train_seconds=train_s, runs=[])
            for i, s in enumerate(seeds):
                net = stacked[i]
                small, rep = compress(net, box, method=method)
                pred = np.argmax(np.asarray(net(xte)), 1)
                pred_small = np.argmax(np.asarray(small(xte)), 1)
                cell["runs"].append(dict(
                    seed=s, accuracy=float(np.mean(pred == yte)), accuracy_small=float(np.mean(pred_small == yte)),
                    same_predictions=bool(np.array_equal(pred, pred_small)),
                    units_removed_pct=rep.units_removed_pct, connections_removed_pct=rep.connections_removed_pct,
                    units_after=rep.units_after, widths_after=list(small.widths),
                    seconds=rep.seconds["total"], seconds_bounds=rep.seconds["bounds"],
                    equivalent=rep.verification.equivalent, max_abs_diff=rep.verification.max_abs_diff,
                    certified_bound=rep.verification.certified_bound,
                    stable=[[r.stably_active, r.stably_inactive, r.unstable] for r in rep.layers]))
            rows.append(cell)
            r = cell["runs"]
            print(f"width {w:4d} l1 {l1:7.1e}: acc {np.mean([v['accuracy'] for v in r]):.3f}  units removed "
                  f"{np.mean([v['units_removed_pct'] for v in r]):5.1f}%  connections removed "
                  f"{np.mean([v['connections_removed_pct'] for v in r]):5.1f}%  cert {np.mean([v['seconds'] for v in r]):.2f} s"
                  f"  equivalent {sum(v['equivalent'] for v in r)}/{len(r)}", flush=True)
    return rows


def _ms(vals, fmt):
    vals = np.asarray(vals, np.float64)
    return f"{fmt.format(vals.mean())} ± {fmt.format(vals.std())}"


def table(rows) -> str:
    lines = ["| width | l1 | test accuracy | units removed % | connections removed % | certification s | "
             "equivalent | same predictions |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in rows:
        r = c["runs"]
        lines.append(
            f"| {c['width']} | {c['l1']:g} | {_ms([v['accuracy'] for v in r], '{:.3f}')} | "
            f"{_ms([v['units_removed_pct'] for v in r], '{:.1f}')} | "
            f"{_ms([v['connections_removed_pct'] for v in r], '{:.1f}')} | "
            f"{_ms([v['seconds'] for v in r], '{:.2f}')} | {sum(v['equivalent'] for v in r)}/{len(r)} | "
            f"{sum(v['same_predictions'] for v in r)}/{len(r)} |")
    return "\n".join(lines) + "\n"


def figure(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for w in sorted({c["width"] for c in rows}):
        cells = [c for c in rows if c["width"] == w]
        l1 = [max(c["l1"], 1e-5) for c in cells]
        for ax, key in zip(axes, ("units_removed_pct", "accuracy")):
            m = [np.mean([v[key] for v in c["runs"]]) for c in cells]
            s = [np.std([v[key] for v in c["runs"]]) for c in cells]
            ax.errorbar(l1, m, yerr=s, marker="o", capsize=3, label=f"width {w}")
    axes[0].set_ylabel("hidden units removed (%)")
    axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("l1 weight (0 drawn at 1e-5)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Lossless compression of 64-w-w-10 digits nets over [0,1]^64 (every net verified)")
    fig.tight_layout()
    
    partax.plots.save(fig, path, dpi=120)  # atomic
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 seeds, 30 epochs, widths 25 and 100")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; 2 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 100; 30 with --quick)")
    p.add_argument("--method", default="lp", help="stability method (default: lp)")
    p.add_argument("--out", default="runs/compression", help="output directory")
    p.add_argument("--docs", action="store_true", help="also write docs/compression.md and docs/compression.png")
    p.add_argument("--mnist", default=None, help="a directory with MNIST's IDX files (train-*/t10k-*, .gz or not): "
                   "run on MNIST over [0, 1]^784 instead of the digits")
    args = p.parse_args(argv)
    widths = (25, 100) if args.quick else (25, 50, 100)
    seeds = list(range(args.seeds or (2 if args.quick else 3)))
    epochs = args.epochs or (30 if args.quick else 100)
    l1s = (0.0, 3e-4, 1e-3, 3e-3)
    t0 = time.perf_counter()
    rows = run(widths, l1s, seeds, epochs, args.method, args.mnist)
    total = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    result = dict(widths=list(widths), l1=list(l1s), seeds=seeds, epochs=epochs, method=args.method,
                  seconds=total, backend=jax.default_backend(), rows=rows)
    atomic_write_text(os.path.join(args.out, "results.json"), json.dumps(result, indent=1) + "\n")
    md = table(rows)
    atomic_write_text(os.path.join(args.out, "table.md"), md)
    print(md)
    print(f"total {total:.0f} s; wrote {args.out}/results.json, table.md")
    if args.docs:
        head = (f"# Lossless compression of digits nets (experiments/compression_table.py)\n\n"
                f"64-w-w-10 ReLU nets, {epochs} epochs of Adam (lr 1e-3, batch 64) on 1400 digits, "
                f"test accuracy on the other 397; {len(seeds)} seeds per cell (mean ± sd); compressed over "
                f"[0, 1]^64 with `partax.compress(method={args.method!r})`; certification time = bounds + "
                f"rebuild + verification (sampling + algebraic certificate) per net; run time {total:.0f} s "
                f"({jax.default_backend()}).\n\n")
        atomic_write_text("docs/compression.md", head + md)
        figure(rows, "docs/compression.png")
        print("wrote docs/compression.md, docs/compression.png")


if __name__ == "__main__":
    main()
