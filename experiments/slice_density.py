"""Regions of 2D slices at initialisation vs number of neurons (Hanin & Rolnick, 2019).

For MLPs of input dimension ``d`` with hidden widths ``w`` and depths ``1..D``, counts the exact
linear regions that the plane through three random Gaussian inputs meets (a square of half-side
``margin * circumradius`` around them), averaged over seeds, and compares the density (regions per
unit area) with ``(#neurons)^2`` and with the n0 = 2 bound of Serra et al.

Run:
    python experiments/slice_density.py            # ~ a few minutes on a laptop CPU
    python experiments/slice_density.py --quick    # ~ 20 s
Writes ``runs/slice_density/{results.json, slice_density.png}``.

``--example-figure PATH`` instead draws the README's slice (``docs/slice.png``): a 64-32-32-10 ReLU
net trained on scikit-learn's 8x8 digits, cut by the plane through three digits of different
classes, drawn by ``partax slice`` (decision boundary, data box ``[0, 1]^64``, anchors named by
index and class).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

import partax
from partax import bounds
from partax.geometry.slices import Plane, slice_regions
from partax.files import atomic_write_bytes


def run(widths, depths, seeds, d_in=16, margin=1.5, bias_std=0.1):
    rows = []
    for w in widths:
        for depth in depths:
            counts, areas, secs = [], [], []
            for seed in seeds:
                key = jax.random.key(1000 * seed + 10 * w + depth)
                net = partax.mlp(key, [d_in] + [w] * depth + [1], bias_std=bias_std)
                x = np.random.default_rng(seed).normal(size=(3, d_in))
                plane = Plane.through(*x, margin=margin)
                t = time.perf_counter()
                res = slice_regions(net, plane)
                secs.append(time.perf_counter() - t)
                counts.append(res.num_regions)
                areas.append(plane.area)
            n = w * depth
            rows.append(
                {
                    "width": w,
                    "depth": depth,
                    "neurons": n,
                    "regions_mean": float(np.mean(counts)),
                    "regions_std": float(np.std(counts)),
                    "density_mean": float(np.mean(np.array(counts) / np.array(areas))),
                    "area_mean": float(np.mean(areas)),
                    "serra_n0_2": str(bounds.serra(2, [w] * depth)),
                    "log10_serra_n0_2": float(np.log10(float(bounds.serra(2, [w] * depth)))) if depth * w < 900 else None,
                    "seconds_mean": float(np.mean(secs)),
                }
            )
            print(f"w={w:4d} depth={depth} neurons={n:4d} regions={np.mean(counts):9.1f} +- {np.std(counts):7.1f} "
                  f"serra(2)~1e{np.log10(float(bounds.serra(2, [w] * depth))):.1f}  ({np.mean(secs):.2f} s)")
    return rows


def fit_slope(rows):
    n = np.array([r["neurons"] for r in rows], float)
    c = np.array([r["regions_mean"] for r in rows], float)
    slope, intercept = np.polyfit(np.log(n), np.log(c), 1)
    return float(slope), float(intercept)


def example_figure(path, *, epochs: int = 40, rows=(0, 1, 2), seed: int = 0) -> int:
    """Trains the digits net and draws its slice through three digits with ``partax slice``.

    Args:
      path: the figure file (its JSON summary is written beside it).
      epochs: training epochs (Adam, lr 1e-2, batch 128).
      rows: the three rows of the digits data spanning the plane.
      seed: initialisation and shuffling seed.

    Returns:
      The exit status of ``partax slice``.
    """
    import tempfile

    import optax

    from partax.cli import main as cli_main
    from partax.datasets import digits
    from partax.train import fit

    x, y = digits()
    net = partax.mlp(jax.random.key(seed), [64, 32, 32, 10])
    net, hist = fit(net, x, y, optax.adam(1e-2), epochs=epochs, batch_size=128, key=jax.random.key(seed + 1))
    print(f"digits 64-32-32-10: {epochs} epochs, training accuracy {float(hist['accuracy'][-1]):.3f}")
    with tempfile.TemporaryDirectory() as d:
        partax.save_net(net, os.path.join(d, "digits_net.npz"))
        np.save(os.path.join(d, "digits_x.npy"), x)
        np.save(os.path.join(d, "digits_y.npy"), y)
        return cli_main(["slice", "--net", os.path.join(d, "digits_net.npz"), "--through", *map(str, rows),
                         "--data", os.path.join(d, "digits_x.npy"), "--labels", os.path.join(d, "digits_y.npy"),
                         "--out", os.fspath(path)])


def plot(rows, path, d_in=16, seeds=None):
    from matplotlib.figure import Figure

    from partax import plots

    fig = Figure(figsize=(6.4, 4.9), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for w in sorted({r["width"] for r in rows}):
        rs = [r for r in rows if r["width"] == w]
        ax.errorbar([r["neurons"] for r in rs], [r["regions_mean"] for r in rs], yerr=[r["regions_std"] for r in rs],
                    marker="o", capsize=2, label=f"width {w} (depths {', '.join(str(r['depth']) for r in rs)})")
    n = np.array(sorted({r["neurons"] for r in rows}), float)
    slope, intercept = fit_slope(rows)
    ax.plot(n, np.exp(intercept) * n**slope, "k--", lw=1, label=f"least-squares fit: ∝ (#neurons)^{slope:.2f}")
    ax.plot(n, (rows[0]["regions_mean"] / rows[0]["neurons"] ** 2) * n**2, ":", color="gray",
            label="∝ (#neurons)^2 (Hanin & Rolnick)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of hidden neurons (width x depth)")
    ax.set_ylabel("regions in the slice (mean ± sd over seeds)")
    n_seeds = "?" if seeds is None else len(seeds)
    ax.set_title(plots.figure_title(
        "exact regions of 2D slices through 3 inputs, at initialisation",
        data=f"3 Gaussian inputs in R^{d_in}", net=f"{d_in}-w-...-w-1 ReLU nets, bias sd 0.1", N=None)
        + f" · {n_seeds} seeds per point", fontsize=9)
    ax.legend(fontsize=8)
    plots.save(fig, path, dpi=140)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few configurations and seeds (~20 s)")
    p.add_argument("--out", default="runs/slice_density")
    p.add_argument("--d-in", type=int, default=16)
    p.add_argument("--example-figure", metavar="PATH",
                   help="draw the README's slice of the digits net to PATH instead (docs/slice.png)")
    args = p.parse_args(argv)
    if args.example_figure:
        return example_figure(args.example_figure)
    if args.quick:
        widths, depths, seeds = (16, 32), (1, 2, 3), (0, 1)
    else:
        widths, depths, seeds = (16, 32, 64), (1, 2, 3, 4), (0, 1, 2, 3)
    rows = run(widths, depths, seeds, d_in=args.d_in)
    slope, _ = fit_slope(rows)
    print(f"log-log slope of regions vs neurons: {slope:.2f} (Hanin & Rolnick: ~2)")
    os.makedirs(args.out, exist_ok=True)
    result = {"rows": rows, "slope": slope, "quick": args.quick, "d_in": args.d_in}
    atomic_write_bytes(os.path.join(args.out, "results.json"), json.dumps(result, indent=2).encode())
    plot(rows, os.path.join(args.out, "slice_density.png"), d_in=args.d_in, seeds=seeds)
    print(f"wrote {args.out}/results.json and slice_density.png")


if __name__ == "__main__":
    main()
