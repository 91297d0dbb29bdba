"""Bounding vs counting: exact region counts of 22-unit digit classifiers (Serra et al., ICML 2018).

For splits ``n1 + n2 = 22`` of two ReLU hidden layers, trains several 64-n1-n2-10 nets on
scikit-learn's 8x8 digits (inputs in ``[0, 1]^64``; MNIST through ``partax.datasets.load_idx``
with ``--mnist DIR`` when the IDX files are there, box ``[0, 1]^784``), counts the linear regions of
each net in the input box exactly by MILP (:func:`partax.counting.count_regions`, SCIP's native
counting) and by the parity bound (:func:`partax.counting.parity_lower_bound`), and plots

1. the counts per split (median, min–max bars; open markers where the time limit made a count a
   lower bound) against the Serra, Montúfar and Raghu upper bounds, with the parity bounds;
2. counts against test accuracy.

Run:
    python experiments/counting_22.py            # 7 splits x 2 nets, 5 s limits: ~3 minutes on 2 cores
    python experiments/counting_22.py --full     # every split, 5 nets each, 10-minute limits (hours)
Writes ``runs/counting_22/results.json`` and the figures ``docs/counting_22_bounds.png`` and
``docs/counting_22_accuracy.png`` (``--docs DIR`` to put them elsewhere).
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
from partax import bounds
from partax.counting import count_regions, parity_lower_bound
from partax.datasets import digits
from partax.files import atomic_write_bytes
from partax.train import fit


def load_data(mnist_dir=None, seed=0):
    """``(x_train, y_train, x_test, y_test, name)``: digits split 75/25, or MNIST from IDX files."""
    if mnist_dir:
        from partax.datasets import load_idx

        xtr, ytr = load_idx(os.path.join(mnist_dir, "train-images-idx3-ubyte"),
                            os.path.join(mnist_dir, "train-labels-idx1-ubyte"))
        xte, yte = load_idx(os.path.join(mnist_dir, "t10k-images-idx3-ubyte"),
                            os.path.join(mnist_dir, "t10k-labels-idx1-ubyte"))
        xtr, xte = (np.asarray(a, np.float32).reshape(len(a), -1) for a in (xtr, xte))
        if xtr.max() > 1.0:
            xtr, xte = xtr / 255.0, xte / 255.0
        return xtr, np.asarray(ytr, np.int32), xte, np.asarray(yte, np.int32), "MNIST"
    x, y = digits()
    perm = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.75 * len(x))
    tr, te = perm[:cut], perm[cut:]
    return x[tr], y[tr], x[te], y[te], "8x8 digits"


def run(splits, seeds, *, epochs, count_limit, parity_limit, data, backend="scip", log=print):
    xtr, ytr, xte, yte, name = data
    d = xtr.shape[1]
    box = partax.Box(0.0, 1.0)
    rows = []
    for n1 in splits:
        n2 = 22 - n1
        for seed in seeds:
            net = partax.mlp(jax.random.key(100 * n1 + seed), [d, n1, n2, 10])
            t = time.perf_counter()
            net, _ = fit(net, xtr, ytr, optax.adam(1e-2), epochs=epochs, batch_size=128, key=seed)
            train_s = time.perf_counter() - t
            acc = float(np.mean(np.asarray(net(xte)).argmax(1) == yte))
            res = count_regions(net, box, backend=backend, time_limit=count_limit)
            pb = parity_lower_bound(net, box, backend=backend, trials=3, step=2, seed=seed,
                                    time_limit=parity_limit)
            rows.append(dict(n1=n1, n2=n2, seed=seed, accuracy=acc, count=res.count, exact=res.exact,
                             count_seconds=res.seconds, stable=res.stats["stable"],
                             parity_log2=pb.log2_bound, parity_probability=pb.probability,
                             parity_seconds=pb.seconds, parity_certain=pb.certain, train_seconds=train_s))
            log(f"{n1:2d}-{n2:2d} seed {seed}: acc {acc:.3f}  regions {res.count}{'' if res.exact else '+'} "
                f"({res.seconds:.1f} s)  parity >= 2^{pb.log2_bound:.0f} w.p. {pb.probability:.3f} "
                f"({pb.seconds:.1f} s)")
    return dict(data=name, input_dim=d, rows=rows,
                bounds={n1: dict(serra=bounds.serra(d, [n1, 22 - n1]), montufar=bounds.montufar(d, [n1, 22 - n1]),
                                 raghu=bounds.raghu(d, [n1, 22 - n1])) for n1 in splits})


def plot(result, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    result = dict(result, bounds={int(k): v for k, v in result["bounds"].items()})  # JSON keys are strings
    splits = sorted({r["n1"] for r in rows})
    n_nets = len(rows) // max(len(splits), 1)
    limit = f", {result['count_limit']:g} s limit" if "count_limit" in result else ""
    title = (f"{result['data']}, [0,1]^{result['input_dim']}, {result['input_dim']}-n1-n2-10 nets with n1+n2=22, "
             f"N={n_nets} per split{limit}")
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, style in (("serra", "k-"), ("montufar", "b--"), ("raghu", "g:")):
        ax.plot(splits, [result["bounds"][n1][key] for n1 in splits], style, label=f"{key.capitalize()} bound")
    med, lo, hi, exact = [], [], [], []
    for n1 in splits:
        c = np.array([r["count"] for r in rows if r["n1"] == n1], float)
        med.append(np.median(c)); lo.append(c.min()); hi.append(c.max())
        exact.append(all(r["exact"] for r in rows if r["n1"] == n1))
    med, lo, hi, exact = map(np.asarray, (med, lo, hi, exact))
    sp = np.asarray(splits)
    ax.errorbar(sp, med, yerr=[med - lo, hi - med], fmt="none", ecolor="r", capsize=3)
    ax.plot(sp[exact], med[exact], "ro", label="exact count (median, min-max)")
    if (~exact).any():
        ax.plot(sp[~exact], med[~exact], "o", mfc="none", mec="r", label="count at time limit (lower bound)")
    par = [np.median([2.0 ** r["parity_log2"] for r in rows if r["n1"] == n1]) for n1 in splits]
    ax.plot(splits, par, "m^", mfc="none", label=f"parity bound (p >= {rows[0]['parity_probability']:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("n1 (first hidden layer; n2 = 22 - n1)")
    ax.set_ylabel("linear regions")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    p1 = os.path.join(out_dir, "counting_22_bounds.png")
    fig.savefig(p1 + ".tmp.png", dpi=110)
    os.replace(p1 + ".tmp.png", p1)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for exact in (True, False):
        sel = [r for r in rows if bool(r["exact"]) == exact]
        if not sel:
            continue
        sc = ax.scatter([r["accuracy"] for r in sel], [r["count"] for r in sel], c=[r["n1"] for r in sel],
                        cmap="viridis", vmin=min(splits), vmax=max(splits), marker="o",
                        label="exact" if exact else "lower bound (time limit)")
        if not exact:
            sc.set_facecolor("none")
            sc.set_edgecolors(plt.get_cmap("viridis")((np.array([r["n1"] for r in sel]) - min(splits))
                                                      / max(max(splits) - min(splits), 1)))
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(min(splits), max(splits)), cmap="viridis"),
                 ax=ax, label="n1")
    ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel("linear regions (exact or lower bound)")
    ax.set_title(f"regions vs test accuracy: {result['data']}, {result['input_dim']}-n1-n2-10 nets, n1+n2=22, N={len(rows)} nets"
                 f"{limit}", fontsize=9)
    fig.tight_layout()
    p2 = os.path.join(out_dir, "counting_22_accuracy.png")
    fig.savefig(p2 + ".tmp.png", dpi=110)
    os.replace(p2 + ".tmp.png", p2)
    plt.close(fig)
    return p1, p2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="every split, 5 nets each, 10-minute limits")
    ap.add_argument("--mnist", default=None, help="directory with the MNIST IDX files")
    ap.add_argument("--out", default="runs/counting_22")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--backend", default="scip", choices=("scip", "highs"))
    ap.add_argument("--limit", type=float, default=None, help="seconds per count and per parity bound")
    ap.add_argument("--seeds", type=int, default=None, help="nets per split")
    ap.add_argument("--replot", default=None, help="only redraw the figures from a results.json")
    args = ap.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            for p in plot(json.load(f), args.docs):
                print("wrote", p)
        return
    if args.full:
        splits, seeds, epochs, cl, pl = list(range(1, 22)), list(range(5)), 30, 600.0, 600.0
    else:
        splits, seeds, epochs, cl, pl = [1, 4, 7, 10, 13, 16, 19], [0, 1], 20, 5.0, 5.0
    if args.limit is not None:
        cl = pl = float(args.limit)
    if args.seeds is not None:
        seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    result = run(splits, seeds, epochs=epochs, count_limit=cl, parity_limit=pl, data=load_data(args.mnist),
                 backend=args.backend)
    result.update(seconds=time.perf_counter() - t0, count_limit=cl, parity_limit=pl, epochs=epochs)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_bytes(os.path.join(args.out, "results.json"),
                       json.dumps(result, indent=1, default=str).encode())
    for p in plot(result, args.docs):
        print("wrote", p)
    print(f"done in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
