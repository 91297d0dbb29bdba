"""The Hanin & Rolnick (2019) protocol on scikit-learn's 8x8 digits: region density of 2D slices.

ReLU MLPs of depths 1..4 with a fixed total number ``N`` of hidden units (default 48, split
evenly: 48, 24-24, 16-16-16, 12-12-12-12) are trained on a fixed train/test split of the digits
with :func:`partax.train.fit` (the seeds of one depth as one stacked net). At initialisation and
at log-spaced epochs, for several triples of training inputs, the exact linear regions of the net
on the plane through the three inputs are enumerated (:func:`partax.geometry.slice_regions`,
float64) on the square of side ``2.5 R`` centred at their circumcentre (``R`` the circumradius;
:meth:`partax.geometry.Plane.through` with ``margin = 1.25``, its half-side in units of ``R``).
Reported per depth and epoch, mean ± sd over triples and seeds:

* ``regions``: the number of linear regions meeting the square;
* ``density``: regions per unit area (area in input units: ``u``, ``v`` are orthonormal, so
  ``(s, t)`` are Euclidean input-space distances);
* ``density / (N^2 / 2)``: the density divided by ``N^2 / 2`` (about the number of regions
  ``N`` lines in general position cut a plane into), the ratio Hanin & Rolnick find to stay of
  order one and roughly independent of depth, at initialisation and across training; and
  ``regions / (N^2 / 2)``, the same count without the area.

With ``--mnist DIR`` (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``) the
protocol runs on the first 12000 MNIST training images instead (10000 train / 2000 test).

Run:
    python experiments/hanin_rolnick.py            # N = 48, depths 1-4, 3 seeds x 8 triples, 100 epochs, ~2 min
    python experiments/hanin_rolnick.py --quick    # 2 seeds x 3 triples, 10 epochs, depths 1-2, ~25 s
Writes ``runs/hanin_rolnick/results.json`` and ``docs/hanin_rolnick.png``.
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
from partax.geometry import Plane, slice_regions
from partax.trace import log_spaced
from partax.train import fit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_data import load_data, split  # noqa: E402  (the experiments' shared data)


SIDE = 2.5  # the square's side in units of the circumradius (Hanin & Rolnick)



def hidden_widths(units: int, depth: int) -> list:
    """``depth`` equal hidden widths summing to ``units`` (``units`` divisible by ``depth``).

    Example:
      >>> [hidden_widths(48, d) for d in (1, 2, 3, 4)]
      [[48], [24, 24], [16, 16, 16], [12, 12, 12, 12]]
    """
    units, depth = int(units), int(depth)
    if depth < 1 or units < depth or units % depth:
        raise ValueError(f"units, depth: expected depth >= 1 dividing units, got units={units}, depth={depth}")
    return [units // depth] * depth


def triples(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` triples of distinct indices into ``n`` inputs, ``int64[count, 3]`` (fixed by ``seed``)."""
    if n < 3 or count < 1:
        raise ValueError(f"n, count: expected n >= 3 and count >= 1, got n={n}, count={count}")
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(n, 3, replace=False) for _ in range(count)])


def slice_plane(x1, x2, x3, side: float = SIDE) -> Plane:
    """The square of side ``side * R`` centred at the circumcentre of three inputs, in their plane."""
    if not side > 0:
        raise ValueError(f"side: expected > 0, got {side}")
    return Plane.through(np.asarray(x1, np.float64), np.asarray(x2, np.float64), np.asarray(x3, np.float64),
                         margin=side / 2.0)


def slice_density(net, plane: Plane, units: int | None = None) -> dict:
    """Regions of ``net`` on ``plane`` (exact, prefix scope at the last layer: the linear regions).

    Args:
      net: an unstacked MLP :class:`partax.Net`.
      plane: the :class:`partax.geometry.Plane`.
      units: ``N`` for the normalisation (default: all hidden units of ``net``).

    Returns:
      A dict: ``regions``, ``area``, ``density`` (regions / area), ``ratio`` (density / (N^2/2)),
      ``count_ratio`` (regions / (N^2/2)), ``seconds``.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [5, 4, 2])
      >>> p = slice_plane(*np.eye(5)[:3])
      >>> d = slice_density(net, p)
      >>> 1 <= d["regions"] <= 11, round(d["density"] * d["area"]) == d["regions"]  # <= 1 + 4 + 6 regions
      (True, True)
    """
    n = int(sum(net.widths)) if units is None else int(units)
    t = time.perf_counter()
    res = slice_regions(net, plane)
    seconds = time.perf_counter() - t
    regions = res.num_regions
    area = float(plane.area)
    half = n * n / 2.0
    return {"regions": int(regions), "area": area, "density": regions / area, "ratio": regions / area / half,
            "count_ratio": regions / half, "seconds": seconds}


def accuracy(net, x, y) -> float:
    return float((np.asarray(net(x)).argmax(axis=1) == np.asarray(y)).mean())


def run_depth(depth, units, seeds, epochs, schedule, xtr, ytr, xte, yte, tri, *, lr, batch, bias_std):
    """Trains ``seeds`` nets of one depth and measures every triple's slice at the checkpoints."""
    widths = [xtr.shape[1], *hidden_widths(units, depth), 10]
    nets = partax.stack_nets([partax.mlp(jax.random.key(100 * depth + s), widths, bias_std=bias_std)
                              for s in range(seeds)])
    planes = [slice_plane(*xtr[i]) for i in tri]
    rows = []
    want = set(int(e) for e in schedule)

    def record(epoch, stacked):
        if epoch not in want:
            return
        t = time.perf_counter()
        for s in range(seeds):
            net = stacked[s]
            acc = accuracy(net, xte, yte)
            for k, plane in enumerate(planes):
                rows.append({"depth": depth, "seed": s, "epoch": int(epoch), "triple": k, "test_accuracy": acc,
                             **slice_density(net, plane, units)})
        cur = [r for r in rows if r["epoch"] == epoch]
        print(f"depth {depth} {'-'.join(map(str, widths))} epoch {epoch:4d}: test acc "
              f"{np.mean([r['test_accuracy'] for r in cur]):.3f}  regions {np.mean([r['regions'] for r in cur]):7.1f} "
              f"± {np.std([r['regions'] for r in cur]):6.1f}  density/(N^2/2) {np.mean([r['ratio'] for r in cur]):.4f} "
              f"± {np.std([r['ratio'] for r in cur]):.4f}  ({time.perf_counter() - t:.1f} s)")

    fit(nets, xtr, ytr, optax.adam(lr), epochs=epochs, batch_size=batch, key=jax.random.key(7 + depth),
        callbacks=[record])
    return rows, widths


def summarise(rows) -> list:
    """Mean and sd over (triples, seeds) per depth and epoch."""
    out = []
    for depth in sorted({r["depth"] for r in rows}):
        for epoch in sorted({r["epoch"] for r in rows if r["depth"] == depth}):
            rs = [r for r in rows if r["depth"] == depth and r["epoch"] == epoch]
            s = {"depth": depth, "epoch": epoch, "samples": len(rs)}
            for f in ("regions", "density", "ratio", "count_ratio", "test_accuracy", "area"):
                v = np.array([r[f] for r in rs], float)
                s[f"{f}_mean"], s[f"{f}_sd"] = float(v.mean()), float(v.std())
            out.append(s)
    return out


def plot(summary, meta, path):
    from matplotlib.figure import Figure

    from partax import plots

    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax = fig.subplots(1, 3)
    depths = sorted({s["depth"] for s in summary})
    for i, depth in enumerate(depths):
        ss = [s for s in summary if s["depth"] == depth]
        ep = np.array([max(s["epoch"], 0.5) for s in ss]) * (1 + 0.04 * (i - (len(depths) - 1) / 2))  # dodge
        lab = f"depth {depth} ({'-'.join(map(str, meta['widths'][str(depth)][1:-1]))})"
        for a, f in ((ax[0], "ratio"), (ax[1], "regions"), (ax[2], "test_accuracy")):
            a.errorbar(ep, [s[f"{f}_mean"] for s in ss], yerr=[s[f"{f}_sd"] for s in ss], marker="o", ms=4,
                       capsize=2, color=f"C{i}", label=lab)
    n = meta["units"]
    ax[0].set(xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="(regions / area) / (N²/2)",
              title=f"region density / (N²/2), N = {n} hidden units")
    ax[0].set_ylim(bottom=0)
    ax[1].axhline(n * n / 2, color="0.4", ls="--", lw=0.8, label=f"N²/2 = {n * n / 2:g}")
    ax[1].set(xscale="log", xlabel="epoch", ylabel="regions in the square",
              title=f"linear regions in the square of side {SIDE} R")
    ax[1].set_ylim(bottom=0)
    ax[2].set(xscale="log", xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(plots.figure_title(
        f"Hanin & Rolnick protocol: exact 2D slices through 3 training inputs (square of side {SIDE}× circumradius); "
        f"mean ± sd over {meta['triples']} triples × {meta['seeds']} seeds",
        data=f"{meta['data']} (N_train = {meta['n_train']}), mean area {meta['mean_area']:.1f} (input units²)",
        net=f"ReLU MLPs, {n} hidden units, He weights, bias sd {meta['bias_std']}, Adam {meta['lr']}, batch {meta['batch']}",
        N=None), fontsize=10)
    plots.save(fig, path, dpi=110)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="depths 1-2, 2 seeds x 3 triples, 10 epochs")
    ap.add_argument("--units", type=int, default=48, help="N, the total number of hidden units")
    ap.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--triples", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--checkpoints", type=int, default=6, help="log-spaced checkpoints (plus epoch 0)")
    ap.add_argument("--bias-std", type=float, default=0.0, help="sd of the initial biases (0: zero biases)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mnist", default=None, help="a directory with MNIST's training IDX files (optional)")
    ap.add_argument("--out", default="runs/hanin_rolnick")
    ap.add_argument("--figure", default="docs/hanin_rolnick.png", help="'' for none")
    a = ap.parse_args(argv)
    if a.quick:
        a.depths, a.seeds, a.triples, a.epochs, a.checkpoints = [1, 2], 2, 3, 10, 3
    for name in ("seeds", "triples", "checkpoints", "batch"):
        if getattr(a, name) < 1:
            ap.error(f"--{name}: expected >= 1")
    if a.epochs < 0:
        ap.error("--epochs: expected >= 0")
    if a.bias_std < 0:
        ap.error("--bias-std: expected >= 0")
    for d in a.depths:
        try:
            hidden_widths(a.units, d)
        except ValueError as e:
            ap.error(f"--depths/--units: {e}")
    x, y, _, data, n_train = load_data(a.mnist)
    xtr, ytr, xte, yte = split(x, y, n_train)
    tri = triples(len(xtr), a.triples)
    schedule = np.union1d([0], log_spaced(a.epochs, min(a.checkpoints, a.epochs))) if a.epochs else np.array([0])
    t0 = time.perf_counter()
    rows, widths = [], {}
    for depth in a.depths:
        r, w = run_depth(depth, a.units, a.seeds, a.epochs, schedule, xtr, ytr, xte, yte, tri, lr=a.lr,
                         batch=a.batch, bias_std=a.bias_std)
        rows += r
        widths[str(depth)] = w
    summary = summarise(rows)
    meta = {"data": data, "n_train": int(len(xtr)), "n_test": int(len(xte)), "units": a.units, "depths": a.depths,
            "widths": widths, "seeds": a.seeds, "triples": a.triples, "triple_indices": tri.tolist(),
            "side_over_circumradius": SIDE, "epochs": a.epochs, "schedule": schedule.tolist(), "lr": a.lr,
            "batch": a.batch, "bias_std": a.bias_std, "mean_area": float(np.mean([r["area"] for r in rows])),
            "seconds": time.perf_counter() - t0, "quick": a.quick}
    os.makedirs(a.out, exist_ok=True)
    atomic_write_bytes(os.path.join(a.out, "results.json"),
                       json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1).encode())
    print("\n| depth | widths | epoch | regions | density [1/unit²] | density/(N²/2) | regions/(N²/2) | test acc |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['depth']} | {'-'.join(map(str, widths[str(s['depth'])][1:-1]))} | {s['epoch']} | "
              f"{s['regions_mean']:.0f} ± {s['regions_sd']:.0f} | {s['density_mean']:.2f} ± {s['density_sd']:.2f} | "
              f"{s['ratio_mean']:.4f} ± {s['ratio_sd']:.4f} | {s['count_ratio_mean']:.3f} ± {s['count_ratio_sd']:.3f} | "
              f"{s['test_accuracy_mean']:.3f} |")
    if a.figure:
        os.makedirs(os.path.dirname(a.figure) or ".", exist_ok=True)
        plot(summary, meta, a.figure)
    print(f"wrote {a.out}/results.json" + (f" and {a.figure}" if a.figure else "") + f" ({meta['seconds']:.0f} s)")
    return {"meta": meta, "summary": summary, "rows": rows}


if __name__ == "__main__":
    main()
