"""Tangent sensitivity across training against the train–test gap (digits, FCNs).

Daróczy's tangent sensitivity ``∂/∂x ∇_θ f`` is constant on each activation region, so its
expectation over the training inputs is computed exactly, once per occupied region
(:func:`partax.tropical.tangent_sensitivity`), here through the :class:`partax.Tracer` probe
(:func:`partax.tropical.tangent_probe`) at log-spaced epochs. Nets of several widths and
weight decays are trained on a small training set of scikit-learn's digits; at the end the
Spearman rank correlation between the final tangent sensitivity and the generalisation gap
(train accuracy − test accuracy, and test − train cross-entropy) is reported across nets.

Run:
    python experiments/tangent_sensitivity.py            # 4 widths x 4 weight decays x 2 seeds, ~2 min on 2 CPU cores
    python experiments/tangent_sensitivity.py --quick    # ~30 s
Writes ``runs/tangent_sensitivity/results.json`` and ``docs/tangent_sensitivity.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.stats import spearmanr

import partax
from partax.datasets import digits
from partax.files import atomic_write_bytes
from partax.train import cross_entropy, fit
from partax.tropical import tangent_probe


def checkpoints(epochs):
    return sorted({0, epochs} | {int(round(v)) for v in np.geomspace(1, epochs, 6)})


def evaluate(net, x, y):
    logits = np.asarray(net(x))
    return float(np.mean(np.argmax(logits, 1) == y)), float(cross_entropy(net, jnp.asarray(x), jnp.asarray(y))[0])


def run_one(width, wd, seed, xtr, ytr, xte, yte, epochs, lr=1e-3, batch=32):
    net = partax.mlp(jax.random.key(seed), [xtr.shape[1], width, width, 10])
    steps = checkpoints(epochs)
    tracer = partax.Tracer(xtr, ytr, every=steps, scopes=(), probes={"tangent": tangent_probe()})
    evals = {}

    def ev(epoch, net):
        if epoch in steps:
            evals[epoch] = (*evaluate(net, xtr, ytr), *evaluate(net, xte, yte))

    opt = optax.adamw(lr, weight_decay=wd) if wd > 0 else optax.adam(lr)
    t = time.perf_counter()
    fit(net, xtr, ytr, opt, epochs=epochs, batch_size=batch, key=jax.random.key(100 + seed), callbacks=[tracer, ev])
    tr = tracer.trace()
    total = tr["layer"] == 0
    sens = dict(zip(tr["step"][total].tolist(), tr["mean"][total].tolist()))
    regions = dict(zip(tr["step"][total].tolist(), tr["regions"][total].tolist()))
    rows = [{"epoch": e, "tangent": sens[e], "regions": regions[e], "acc_train": evals[e][0], "loss_train": evals[e][1],
             "acc_test": evals[e][2], "loss_test": evals[e][3]} for e in steps]
    last = rows[-1]
    print(f"width {width:4d} wd {wd:g} seed {seed}: tangent {last['tangent']:.3g}  acc {last['acc_train']:.3f}/"
          f"{last['acc_test']:.3f}  loss {last['loss_train']:.3f}/{last['loss_test']:.3f}  regions {last['regions']}"
          f"  ({time.perf_counter() - t:.1f} s)")
    return {"width": width, "weight_decay": wd, "seed": seed, "rows": rows}


def correlations(runs):
    ts = np.array([r["rows"][-1]["tangent"] for r in runs])
    gap_acc = np.array([r["rows"][-1]["acc_train"] - r["rows"][-1]["acc_test"] for r in runs])
    gap_loss = np.array([r["rows"][-1]["loss_test"] - r["rows"][-1]["loss_train"] for r in runs])
    ra = spearmanr(ts, gap_acc)
    rl = spearmanr(ts, gap_loss)
    return {"spearman_acc_gap": float(ra.statistic), "p_acc_gap": float(ra.pvalue),
            "spearman_loss_gap": float(rl.statistic), "p_loss_gap": float(rl.pvalue), "nets": len(runs)}


def plot(runs, corr, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({r["width"] for r in runs})
    wds = sorted({r["weight_decay"] for r in runs})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    marks = "osD^v<>"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for r in runs:
        c, m = colors[widths.index(r["width"]) % len(colors)], marks[wds.index(r["weight_decay"]) % len(marks)]
        ep = [max(q["epoch"], 0.5) for q in r["rows"]]
        axes[0].plot(ep, [q["tangent"] for q in r["rows"]], "-", marker=m, ms=3, color=c, alpha=0.8)
        last = r["rows"][-1]
        axes[1].scatter(last["tangent"], last["acc_train"] - last["acc_test"], color=c, marker=m, s=40)
    for i, w in enumerate(widths):
        axes[0].plot([], [], "-", color=colors[i % len(colors)], label=f"width {w}")
    for j, wd in enumerate(wds):
        axes[0].plot([], [], linestyle="none", marker=marks[j % len(marks)], color="k", label=f"weight decay {wd:g}")
    axes[0].set(xscale="log", yscale="log", xlabel="epoch (0 drawn at 0.5)",
                ylabel="E_train ||d/dx grad_theta f||_F", title="tangent sensitivity across training")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].set(xscale="log", xlabel="final tangent sensitivity (mean over training inputs)",
                ylabel="train acc - test acc", title=f"Spearman rho = {corr['spearman_acc_gap']:.2f} "
                f"(p = {corr['p_acc_gap']:.2g}); loss gap rho = {corr['spearman_loss_gap']:.2f}")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Tangent sensitivity, {meta['data']} (N_train = {meta['n_train']}, N_test = {meta['n_test']}), "
                 f"FCN 64-w-w-10, {corr['nets']} nets, {meta['epochs']} epochs")
    fig.tight_layout()
    partax.plots.save(fig, path, dpi=110)  # atomic
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 widths x 2 weight decays, 40 epochs")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--weight-decays", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="runs/tangent_sensitivity")
    ap.add_argument("--figure", default="docs/tangent_sensitivity.png")
    a = ap.parse_args(argv)
    if a.quick:
        a.widths, a.weight_decays, a.epochs, a.seeds = [16, 64], [0.0, 1.0], 40, 1
    x, y = digits()
    perm = np.random.default_rng(0).permutation(len(x))
    tr, te = perm[: a.n_train], perm[a.n_train :]
    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    t0 = time.perf_counter()
    runs = [run_one(w, wd, s, xtr, ytr, xte, yte, a.epochs)
            for s in range(a.seeds) for w in a.widths for wd in a.weight_decays]
    corr = correlations(runs)
    meta = {"data": "scikit-learn digits 8x8", "n_train": int(len(xtr)), "n_test": int(len(xte)), "epochs": a.epochs,
            "widths": a.widths, "weight_decays": a.weight_decays, "seeds": a.seeds, "optimizer": "adam / adamw lr 1e-3, batch 32",
            "seconds": time.perf_counter() - t0}
    print(f"Spearman rho(tangent, acc gap) = {corr['spearman_acc_gap']:.3f} (p = {corr['p_acc_gap']:.3g}), "
          f"rho(tangent, loss gap) = {corr['spearman_loss_gap']:.3f} (p = {corr['p_loss_gap']:.3g}) over {corr['nets']} nets")
    os.makedirs(a.out, exist_ok=True)
    atomic_write_bytes(os.path.join(a.out, "results.json"),
                       json.dumps({"meta": meta, "correlation": corr, "runs": runs}, indent=1).encode())
    if a.figure:
        os.makedirs(os.path.dirname(a.figure) or ".", exist_ok=True)
        plot(runs, corr, meta, a.figure)
    print(f"wrote {a.out}/results.json and {a.figure} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
