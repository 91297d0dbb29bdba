"""TropEx on scikit-learn's 8x8 digits: the tropical classifier and shared regions of an FCN and a CNN.

Trains an FCN (ReLU MLP 64-64-64-10) and a CNN of similar test accuracy (Conv 3x3 1->8 SAME,
ReLU, MaxPool 2x2, Conv 3x3 8->16 SAME, ReLU, Flatten, Dense -> 10 on the (8, 8, 1) image) on one
fixed train/test split of the digits and, at log-spaced epochs, computes the region statistics of
Trimmel, Petzka & Sminchisescu (ICLR 2021) exactly with :func:`partax.tropical.region_statistics`:
the tropical classifier built from the training inputs' linear terms (its agreement with the net
and its accuracy, train and test), the fraction of test inputs whose code (full, and at each
prefix code group) equals some training input's, and per code group the fraction of units on
which a test input agrees with the training region the classifier chose for it (a max-pool unit
is a window: its argmax). Both nets see the same seeds, optimiser, batches and checkpoints.

With ``--mnist DIR`` (``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` in
DIR) the same study runs on MNIST (the CNN then sees (28, 28, 1) images; its split carries 785
rows of every activation per region, about 40 MB per tensor per region, so the CNN on MNIST is
far slower than on digits: not measured; ``--arch fcn`` runs the FCN alone).

Run:
    python experiments/tropex_digits.py            # 3 seeds x 2 nets, 100 epochs
    python experiments/tropex_digits.py --quick    # 1 seed x 2 nets, 30 epochs
    python experiments/tropex_digits.py --arch fcn # one architecture only
Writes ``runs/tropex_digits/results.json`` and ``docs/tropex_digits.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np
import optax

import partax
from partax.files import atomic_write_bytes
from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
from partax.nets import sequential
from partax.train import fit
from partax.tropical import region_statistics

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_data import load_data, split  # noqa: E402  (the experiments' shared data)




def checkpoints(epochs):
    pts = {0, epochs} | {int(round(v)) for v in np.geomspace(1, epochs, 8)}
    return sorted(pts)


def cnn(key, side, channels=(8, 16), classes=10):
    """Conv 3x3 1->c1 SAME, ReLU, MaxPool 2x2, Conv 3x3 c1->c2 SAME, ReLU, Flatten, Dense -> classes (He init)."""
    k1, k2, k3 = jax.random.split(key, 3)
    c1, c2 = channels
    he = lambda k, shape, fan_in: np.asarray(jax.random.normal(k, shape) * np.sqrt(2.0 / fan_in), np.float32)
    flat = (side // 2) ** 2 * c2
    return sequential([Conv(he(k1, (3, 3, 1, c1), 9), np.zeros(c1, np.float32), padding=1), ReLU(), MaxPool((2, 2)),
                       Conv(he(k2, (3, 3, c1, c2), 9 * c1), np.zeros(c2, np.float32), padding=1), ReLU(), Flatten(),
                       Dense(he(k3, (flat, classes), flat), np.zeros(classes, np.float32))], (side, side, 1))


def make_net(arch, seed, d, hidden):
    if arch == "fcn":
        return partax.mlp(jax.random.key(seed), [d, *hidden, 10], bias_std=0.0)
    return cnn(jax.random.key(seed), int(round(np.sqrt(d))))


def describe(net):
    return repr(net)


def run(arch, hidden, epochs, seed, xtr, ytr, xte, yte, lr=1e-3, batch=64):
    net = make_net(arch, seed, xtr.shape[1], hidden)
    rows = []
    want = set(checkpoints(epochs))

    def record(epoch, net):
        if epoch not in want:
            return
        t = time.perf_counter()
        st = region_statistics(net, xtr, xte, ytr, yte)
        rows.append({"epoch": int(epoch), "seconds": time.perf_counter() - t,
                     **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in st._asdict().items()}})
        print(f"{arch} seed {seed} epoch {epoch:4d}: net acc {st.net_accuracy_train:.3f}/{st.net_accuracy_test:.3f}  "
              f"tropical agree {st.agreement_train:.3f}/{st.agreement_test:.3f} acc {st.accuracy_train:.3f}/"
              f"{st.accuracy_test:.3f}  shared full {st.shared_full:.3f} prefix {np.round(st.shared_prefix, 3).tolist()}  "
              f"units {np.round(st.unit_agreement, 3).tolist()}  terms {st.terms} ({time.perf_counter() - t:.1f} s)",
              flush=True)

    t0 = time.perf_counter()
    fit(net, xtr, ytr, optax.adam(lr), epochs=epochs, batch_size=batch, key=jax.random.key(100 + seed),
        callbacks=[record])
    return rows, describe(net), time.perf_counter() - t0


SITE_NAMES = {"fcn": None, "cnn": ["conv1 ReLU", "max pool", "conv2 ReLU"]}
SHORT = {"fcn": lambda meta: "FCN " + "-".join(map(str, meta["fcn_widths"])),
         "cnn": lambda meta: "CNN conv8-pool-conv16-dense"}


def plot(results, meta, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = [a for a in ("fcn", "cnn") if a in results]
    fig, axes = plt.subplots(len(archs), 3, figsize=(15, 4.2 * len(archs)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, arch in zip(axes, archs):
        names = SITE_NAMES[arch]
        for s, rows in enumerate(results[arch]):
            ep = np.array([max(r["epoch"], 0.5) for r in rows])
            lab = (lambda t: t) if s == 0 else (lambda t: None)
            ax = row[0]
            ax.plot(ep, [r["net_accuracy_test"] for r in rows], "-", color=colors[0], label=lab("net, test accuracy"))
            ax.plot(ep, [r["accuracy_test"] for r in rows], "--", color=colors[1], label=lab("tropical, test accuracy"))
            ax.plot(ep, [r["agreement_test"] for r in rows], ":", color=colors[2], label=lab("tropical, test agreement"))
            ax.plot(ep, [r["agreement_train"] for r in rows], "-.", color=colors[3], label=lab("tropical, train agreement"))
            sp = np.array([r["shared_prefix"] for r in rows])
            for l in range(sp.shape[1]):
                name = names[l] if names else f"layer {l + 1}"
                row[1].plot(ep, sp[:, l], "-o", ms=3, color=colors[l],
                            label=lab(f"prefix to {name}" + (" (full code)" if l == sp.shape[1] - 1 else "")))
            ua = np.array([r["unit_agreement"] for r in rows])
            for l in range(ua.shape[1]):
                row[2].plot(ep, ua[:, l], "-o", ms=3, color=colors[l], label=lab(names[l] if names else f"layer {l + 1}"))
        label = SHORT[arch](meta)
        row[0].set(xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="fraction",
                   title=f"{label}: tropical classifier vs net")
        row[1].set(xscale="log", xlabel="epoch", ylabel="fraction of test inputs",
                   title=f"{arch.upper()}: test code = some training code")
        row[1].set_yscale("symlog", linthresh=1e-3)
        row[1].set_ylim(bottom=0, top=1)
        if all(max(r["shared_prefix"]) == 0 for rows in results[arch] for r in rows):
            row[1].text(0.5, 0.5, "0 at every checkpoint and seed", transform=row[1].transAxes, ha="center")
        row[2].set(xscale="log", xlabel="epoch", ylabel="fraction of units",
                   title=f"{arch.upper()}: test unit = chosen training region's")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"TropEx statistics on {meta['data']} (N_train = {meta['n_train']}, N_test = {meta['n_test']}), "
                 f"{meta['seeds']} seed(s), Adam lr {meta['lr']}, batch {meta['batch']}")
    fig.tight_layout()
    partax.plots.save(fig, path, dpi=110)  # atomic
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, 30 epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="the FCN's hidden widths")
    ap.add_argument("--arch", choices=("both", "fcn", "cnn"), default="both")
    ap.add_argument("--mnist", default=None, help="a directory with MNIST's training IDX files (optional)")
    ap.add_argument("--out", default="runs/tropex_digits")
    ap.add_argument("--figure", default="docs/tropex_digits.png")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs = 1, 30
    x, y, _, data, n_train = load_data(a.mnist)
    xtr, ytr, xte, yte = split(x, y, n_train)
    archs = ["fcn", "cnn"] if a.arch == "both" else [a.arch]
    t0 = time.perf_counter()
    results, nets, seconds = {}, {}, {}
    for arch in archs:
        t = time.perf_counter()
        out = [run(arch, a.hidden, a.epochs, s, xtr, ytr, xte, yte) for s in range(a.seeds)]
        results[arch] = [rows for rows, _, _ in out]
        nets[arch] = out[0][1]
        seconds[arch] = time.perf_counter() - t
    meta = {"data": data, "n_train": int(len(xtr)), "n_test": int(len(xte)), "nets": nets,
            "fcn_widths": [x.shape[1], *a.hidden, 10], "epochs": a.epochs, "seeds": a.seeds, "lr": 1e-3, "batch": 64,
            "seconds_per_arch": seconds, "seconds": time.perf_counter() - t0}
    os.makedirs(a.out, exist_ok=True)
    atomic_write_bytes(os.path.join(a.out, "results.json"), json.dumps({"meta": meta, "runs": results}, indent=1).encode())
    if a.figure:
        os.makedirs(os.path.dirname(a.figure) or ".", exist_ok=True)
        plot(results, meta, a.figure)
    for arch in archs:
        last = [rows[-1] for rows in results[arch]]
        mean = lambda k: float(np.mean([r[k] for r in last]))
        print(f"{arch}: final (mean of {len(last)} seeds) net test acc {mean('net_accuracy_test'):.3f}, tropical "
              f"test acc {mean('accuracy_test'):.3f}, test agreement {mean('agreement_test'):.3f}, train agreement "
              f"{mean('agreement_train'):.3f}, shared full code {mean('shared_full'):.4f}, first-group prefix "
              f"{float(np.mean([r['shared_prefix'][0] for r in last])):.3f} ({seconds[arch]:.0f} s)")
    print(f"wrote {a.out}/results.json and {a.figure} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
