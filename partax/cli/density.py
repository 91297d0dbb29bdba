"""``partax density --net NET.npz --data X.npy [--box LO HI] [--test X_TEST.npy] --out DIR``.

The regions-as-bins density (:func:`partax.density.estimate`) of the training points ``--data``
over the box ``[LO, HI]^d``, beside the baselines (:func:`partax.density_baselines.compare`:
a grid with as many bins, KDE, the density estimation tree, the kNN entropy). Writes
``DIR/regions.npz`` (one row per region of the box: ``keys``, ``counts``, ``volumes``,
``volume_stderr``, ``resolved``, ``probabilities``, ``log_densities``), ``DIR/summary.json``
(held-out NLL and entropy of every estimator) and, for 2D inputs, ``DIR/density.png`` (the
density map). Without ``--test``, a random ``--holdout`` fraction of ``--data`` is held out for
the NLL and the densities are fitted on the rest. Without ``--box``, the box is the smallest one
holding ``--data`` and ``--test``, widened by 5 % of its side on every side (written to the
summary). Training points outside the box are an error; test points outside it are an error or,
with ``--outside zero``, get density 0 (an infinite NLL, reported as such).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

import partax
from partax.cli.arguments import check_box, load_array, positive_int, write_json
from partax import density
from partax.density_baselines import ESTIMATORS, BaselineRow, Comparison, compare
from partax.files import atomic_savez

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax density`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "density",
        help="regions as bins: a piecewise-constant density on a box, its held-out NLL and entropy, with baselines",
        description="Fit the density whose bins are the linear regions of a ReLU net (every region of the box "
        "[LO, HI]^d, occupied or not, with its volume) to the training points, and compare it with a uniform grid "
        "of as many bins, a KDE, a density estimation tree and the kNN entropy. Writes --out/regions.npz, "
        "--out/summary.json and, for 2D inputs, --out/density.png. "
        "Example: partax density --net net.npz --data x.npy --box -4 4 --test x_test.npy --out runs/density",
    )
    p.add_argument("--net", required=True, help="a partax net file (.npz)")
    p.add_argument("--data", required=True, help="training points, a .npy array (N, d)")
    p.add_argument("--box", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="the box [LO, HI]^d (default: the data's bounding box widened by 5%% per side)")
    p.add_argument("--test", default=None,
                   help="held-out points, a .npy array (n, d) (default: hold out --holdout of --data)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="fraction of --data held out when there is no --test (default: %(default)s)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--layer", type=positive_int, default=None,
                   help="the prefix layer whose regions are the bins (default: the last)")
    p.add_argument("--smoothing", type=float, default=0.5,
                   help="pseudo-count a per region: p = (n + a) / (N + a K) / V (default: %(default)s)")
    p.add_argument("--volumes", default="auto", choices=("auto", "exact", "mc", "hit_and_run"),
                   help="region volumes: exact (enumeration, 2 <= d <= 6), mc (uniform reference samples), "
                   "hit_and_run (a randomized volume per occupied region) or auto (default: %(default)s)")
    p.add_argument("--num-reference", type=positive_int, default=1 << 18,
                   help="reference samples for --volumes mc (default: %(default)s)")
    p.add_argument("--chains", type=positive_int, default=None,
                   help="hit-and-run chains per region for --volumes hit_and_run (default: 64)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="hit-and-run steps per chain and phase for --volumes hit_and_run (default: max(40, 4 d))")
    p.add_argument("--outside", default="error", choices=("error", "zero"),
                   help="test points outside the box: an error, or density 0 (log p = -inf, an infinite NLL) "
                   "(default: %(default)s)")
    p.add_argument("--baselines", default=",".join(ESTIMATORS),
                   help="comma-separated baselines among grid,kde,tree,knn, or 'none' (default: %(default)s)")
    p.add_argument("--tree-folds", type=positive_int, default=10,
                   help="cross-validation folds of the density tree baseline (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the holdout split, volumes, KDE, tree (default: %(default)s)")
    p.set_defaults(run=run)
    return p


def _points(path: str, flag: str, d: int) -> np.ndarray:
    x = load_array(path, flag)
    if x.ndim != 2:
        raise ValueError(f"{flag}: expected a 2-D array (N, {d}), got shape {x.shape}")
    if x.shape[1] != d:
        raise ValueError(f"{flag}: the net takes {d} inputs, the points have {x.shape[1]} columns (shape {x.shape})")
    if x.shape[0] == 0:
        raise ValueError(f"{flag}: no points (shape {x.shape})")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{flag}: expected a real numeric array, got dtype {x.dtype}")
    x = np.asarray(x, np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{flag}: {int(np.sum(~np.all(np.isfinite(x), axis=1)))} point(s) with NaN or inf")
    return x


def _outside(x, lo, hi, flag):
    out = ~np.all((x >= lo) & (x <= hi), axis=1)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        return (f"{flag}: {int(out.sum())} point(s) outside the box (first: row {i}, {x[i].tolist()}; box "
                f"[{lo.min():g}, {hi.max():g}])")
    return None


def run(args) -> int:
    """Fits, compares and writes the results; prints a summary.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).

    Raises:
      ValueError: bad input (a bad net or array file, the wrong dimension, no points, an unbounded
        or empty box, points outside the box, a bad --holdout or --baselines).
    """
    t0 = time.perf_counter()
    net = partax.load_net(args.net)
    d = net.input_dim
    x = _points(args.data, "--data", d)
    z = _points(args.test, "--test", d) if args.test is not None else None
    if args.box is not None:
        lo_, hi_ = check_box(*args.box, flag="--box", metavars=("LO", "HI"))
        lo, hi = np.full(d, lo_), np.full(d, hi_)
        box_note = "given"
    else:
        allx = x if z is None else np.concatenate([x, z])
        a, b = allx.min(0), allx.max(0)
        pad = 0.05 * np.where(b > a, b - a, 1.0)
        lo, hi = a - pad, b + pad
        box_note = "the data's bounding box widened by 5% per side"
    msg = _outside(x, lo, hi, "--data")
    if msg:
        raise ValueError(msg + "; the training points must lie in the box")
    if z is not None and args.outside == "error":
        msg = _outside(z, lo, hi, "--test")
        if msg:
            raise ValueError(msg + "; pass --outside zero to give them density 0")
    if args.baselines.strip() == "none":
        baselines = ()
    else:
        baselines = tuple(s.strip() for s in args.baselines.split(",") if s.strip())
        bad = [s for s in baselines if s not in ESTIMATORS]
        if bad:
            raise ValueError(f"--baselines: expected a comma-separated subset of {','.join(ESTIMATORS)} or 'none', "
                             f"got {bad}")
    if z is None:
        if not 0 < args.holdout < 1:
            raise ValueError(f"--holdout: expected a fraction in (0, 1), got {args.holdout}")
        rng = np.random.default_rng(args.seed)
        perm = rng.permutation(x.shape[0])
        nh = int(round(args.holdout * x.shape[0]))
        if nh < 2 or x.shape[0] - nh < 1:
            raise ValueError(f"--data: {x.shape[0]} point(s) are too few to hold out {args.holdout} of them; "
                             "give --test")
        z, x = x[perm[:nh]], x[perm[nh:]]
        test_note = f"{nh} points of --data held out (--holdout {args.holdout})"
    else:
        test_note = f"--test {args.test}"
    box = partax.Box(lo, hi)
    outside = "-inf" if args.outside == "zero" else "error"
    t = time.perf_counter()
    walk = {k: v for k, v in (("chains", args.chains), ("steps", args.steps)) if v is not None}
    if walk and args.volumes != "hit_and_run":
        raise ValueError(f"--{next(iter(walk))}: applies to --volumes hit_and_run only, got --volumes {args.volumes}")
    dens = density.estimate(net, x, box, layer=args.layer, smoothing=args.smoothing, volumes=args.volumes,
                            num_reference=args.num_reference, key=args.seed, hit_and_run_options=walk or None)
    held = density.heldout_loglik(dens, z, outside=outside)
    part = BaselineRow("partition", dens.num_regions, -held.mean, held.stderr, dens.entropy(), time.perf_counter() - t,
                       f"{dens.volume_method} volumes, {int((dens.counts > 0).sum())} occupied")
    rows = (part,)
    if baselines:
        rows += compare(x, z, box, bins=dens.num_regions, estimators=baselines, outside=outside,
                        tree_folds=args.tree_folds, key=args.seed).rows
    comp = Comparison(rows, None, int(x.shape[0]), int(z.shape[0]), int(d))
    os.makedirs(args.out, exist_ok=True)
    atomic_savez(os.path.join(args.out, "regions.npz"), {
        "keys": dens.keys, "counts": dens.counts, "volumes": dens.volumes, "volume_stderr": dens.volume_stderr,
        "resolved": dens.resolved, "probabilities": dens.probabilities, "log_densities": dens.log_densities,
        "lo": lo, "hi": hi})
    summary = {
        "net": repr(net), "net_file": args.net, "data": args.data, "n_train": int(x.shape[0]), "dim": int(d),
        "test": test_note, "n_test": int(z.shape[0]), "box": {"lo": lo.tolist(), "hi": hi.tolist(), "how": box_note},
        "layer": dens.layer, "smoothing": dens.smoothing, "volume_method": dens.volume_method,
        "num_regions": dens.num_regions, "occupied_regions": int((dens.counts > 0).sum()),
        "test_nll": part.test_nll if math.isfinite(part.test_nll) else None,
        "test_nll_stderr": part.test_nll_stderr if math.isfinite(part.test_nll_stderr) else None,
        "test_points_outside": int(np.sum(~np.all((z >= lo) & (z <= hi), axis=1))),
        "entropy": dens.entropy(), "entropy_miller_madow": dens.entropy("miller_madow"),
        "comparison": comp.to_dict(), "seconds": time.perf_counter() - t0,
    }
    write_json(os.path.join(args.out, "summary.json"), summary)
    wrote = ["regions.npz", "summary.json"]
    if d == 2:
        _density_map(dens, x, lo, hi, os.path.join(args.out, "density.png"), args.data)
        wrote.append("density.png")
    print(f"{dens!r}\nheld-out: {test_note}\n" + comp.markdown())
    print(f"wrote {', '.join(os.path.join(args.out, w) for w in wrote)}")
    return 0


def _density_map(dens, x, lo, hi, path, data_name, res: int = 300) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from partax.plots import save

    gx = np.linspace(lo[0], hi[0], res + 1)
    gy = np.linspace(lo[1], hi[1], res + 1)
    cx, cy = 0.5 * (gx[1:] + gx[:-1]), 0.5 * (gy[1:] + gy[:-1])
    X, Y = np.meshgrid(cx, cy, indexing="xy")
    p = np.exp(dens.log_prob(np.stack([X.ravel(), Y.ravel()], 1)))
    fig, ax = plt.subplots(figsize=(6.2, 5.2), constrained_layout=True)
    vmax = float(np.quantile(p, 0.995))  # tiny regions with a few points spike: clip them (over 0.5 % of the map)
    im = ax.imshow(p.reshape(res, res), origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap="magma",
                   interpolation="nearest", aspect="auto", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, label="density (regions as bins; clipped at the 99.5th percentile of the map)",
                 extend="max")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title(f"{os.path.basename(data_name)}, N={dens.total}: {dens.net!r}\n{dens.num_regions} regions "
                 f"(layer {dens.layer}, {dens.volume_method} volumes, smoothing {dens.smoothing})", fontsize=9)
    save(fig, path)
    plt.close(fig)
