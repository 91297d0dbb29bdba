"""TropEx on scikit-learn's 8x8 digits: the tropical classifier and shared regions over training.

Trains an FCN (ReLU MLP) on a fixed train/test split of the digits and, at log-spaced epochs,
computes the region statistics of Trimmel, Petzka & Sminchisescu (ICLR 2021) exactly with
:func:`partax.tropical.region_statistics`: the tropical classifier built from the training
inputs' linear terms (its agreement with the net and its accuracy, train and test), the
fraction of test inputs whose code (full, and at each prefix layer) equals some training
input's, and the per-layer fraction of units on which a test input agrees with the training
region the classifier chose for it.

The FCN-vs-CNN comparison of the paper waits for convolutional nets in partax (issue 14); with
``--mnist DIR`` (``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` in DIR)
the same study runs on MNIST.

Run:
    python experiments/tropex_digits.py            # 3 seeds, 100 epochs, ~30 s on 2 CPU cores
    python experiments/tropex_digits.py --quick    # ~20 s
Writes ``runs/tropex_digits/results.json`` and ``docs/tropex_digits.png``.
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
from partax.datasets import digits, load_idx
from partax.files import atomic_write_bytes
from partax.train import fit
from partax.tropical import region_statistics


def split(x, y, n_train, seed=0):
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def checkpoints(epochs):
    pts = {0, epochs} | {int(round(v)) for v in np.geomspace(1, epochs, 8)}
    return sorted(pts)


def run(widths, epochs, seed, xtr, ytr, xte, yte, lr=1e-3, batch=64):
    net = partax.mlp(jax.random.key(seed), widths, bias_std=0.0)
    rows = []
    want = set(checkpoints(epochs))

    def record(epoch, net):
        if epoch not in want:
            return
        t = time.perf_counter()
        st = region_statistics(net, xtr, xte, ytr, yte)
        rows.append({"epoch": int(epoch), "seconds": time.perf_counter() - t,
                     **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in st._asdict().items()}})
        print(f"seed {seed} epoch {epoch:4d}: net acc {st.net_accuracy_train:.3f}/{st.net_accuracy_test:.3f}  "
              f"tropical agree {st.agreement_train:.3f}/{st.agreement_test:.3f} acc {st.accuracy_train:.3f}/"
              f"{st.accuracy_test:.3f}  shared full {st.shared_full:.3f} prefix {np.round(st.shared_prefix, 3).tolist()}  "
              f"units {np.round(st.unit_agreement, 3).tolist()}  terms {st.terms} ({time.perf_counter() - t:.1f} s)")

    fit(net, xtr, ytr, optax.adam(lr), epochs=epochs, batch_size=batch, key=jax.random.key(100 + seed),
        callbacks=[record])
    return rows


def plot(results, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for s, rows in enumerate(results):
        ep = np.array([max(r["epoch"], 0.5) for r in rows])
        lab = (lambda t: t) if s == 0 else (lambda t: None)
        ax = axes[0]
        ax.plot(ep, [r["net_accuracy_test"] for r in rows], "-", color=colors[0], label=lab("net, test accuracy"))
        ax.plot(ep, [r["accuracy_test"] for r in rows], "--", color=colors[1], label=lab("tropical, test accuracy"))
        ax.plot(ep, [r["agreement_test"] for r in rows], ":", color=colors[2], label=lab("tropical, test agreement"))
        ax.plot(ep, [r["agreement_train"] for r in rows], "-.", color=colors[3], label=lab("tropical, train agreement"))
        sp = np.array([r["shared_prefix"] for r in rows])
        for l in range(sp.shape[1]):
            axes[1].plot(ep, sp[:, l], "-o", ms=3, color=colors[l], label=lab(f"prefix layer {l + 1}" + (" (full code)" if l == sp.shape[1] - 1 else "")))
        ua = np.array([r["unit_agreement"] for r in rows])
        for l in range(ua.shape[1]):
            axes[2].plot(ep, ua[:, l], "-o", ms=3, color=colors[l], label=lab(f"layer {l + 1}"))
    axes[0].set(xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="fraction", title="tropical classifier vs net")
    axes[1].set(xscale="log", yscale="symlog", xlabel="epoch", ylabel="fraction of test inputs",
                title="test code = some training code")
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_ylim(bottom=0)
    axes[2].set(xscale="log", xlabel="epoch", ylabel="fraction of units",
                title="test unit = unit of the chosen training region")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"TropEx statistics on {meta['data']} (N_train = {meta['n_train']}, N_test = {meta['n_test']}), "
                 f"FCN {'-'.join(map(str, meta['widths']))}, {len(results)} seed(s), Adam lr {meta['lr']}")
    fig.tight_layout()
    partax.plots.save(fig, path, dpi=110)  # atomic
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 30 epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    ap.add_argument("--mnist", default=None, help="a directory with MNIST's training IDX files (optional)")
    ap.add_argument("--out", default="runs/tropex_digits")
    ap.add_argument("--figure", default="docs/tropex_digits.png")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs = 1, 30
    if a.mnist:
        def find(stem):
            for name in (stem, stem + ".gz"):
                p = os.path.join(a.mnist, name)
                if os.path.exists(p):
                    return p
            raise SystemExit(f"--mnist: {stem}[.gz] not found in {a.mnist}")

        x, y = load_idx(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"))
        x, y = x[:12000], y[:12000]
        data, n_train = "MNIST (first 12000 training images)", 10000
    else:
        x, y = digits()
        data, n_train = "scikit-learn digits 8x8", 1200
    xtr, ytr, xte, yte = split(x, y, n_train)
    widths = [x.shape[1], *a.hidden, 10]
    t0 = time.perf_counter()
    results = [run(widths, a.epochs, s, xtr, ytr, xte, yte) for s in range(a.seeds)]
    meta = {"data": data, "n_train": int(len(xtr)), "n_test": int(len(xte)), "widths": widths, "epochs": a.epochs,
            "seeds": a.seeds, "lr": 1e-3, "batch": 64, "seconds": time.perf_counter() - t0}
    os.makedirs(a.out, exist_ok=True)
    atomic_write_bytes(os.path.join(a.out, "results.json"), json.dumps({"meta": meta, "runs": results}, indent=1).encode())
    if a.figure:
        os.makedirs(os.path.dirname(a.figure) or ".", exist_ok=True)
        plot(results, meta, a.figure)
    print(f"wrote {a.out}/results.json and {a.figure} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
