"""partax.density.fit on the 2D toys against the grid, the density tree and KDE (issue 15 item 5).

Each toy (checkerboard, 8gaussians; samplers of ``density_toys.py``) at N training points:
``density.fit`` (a trained partition), a uniform grid with as many bins as the fit's regions,
the cross-validated density estimation tree and KDE (bandwidth cross-validated, fitted on at
most ``--kde-n`` points). Prints and writes test NLL and |H_hat - H| (plug-in and Miller–Madow).

    python experiments/density_fit_toys.py --N 100000 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from density_toys import toy  # noqa: E402

from partax import density  # noqa: E402
from partax.files import atomic_write_text  # noqa: E402

H_8GAUSSIANS = 2.8323  # 10^7-sample Monte Carlo (density_toys.eight_gaussians_entropy)


def run_one(name, N, seed, fit_kwargs, n_test=20_000, kde_n=20_000, tree_folds=5):
    d, box, sampler, H = toy(name)
    H = H_8GAUSSIANS if H is None else H
    rng = np.random.default_rng([seed, N, 7])
    x, z = sampler(N, rng), sampler(n_test, rng)
    t0 = time.perf_counter()
    dens, hist = density.fit(x, box, key=seed, return_history=True, **fit_kwargs)
    secs = time.perf_counter() - t0
    K = dens.num_regions
    b = max(int(round(math.sqrt(K))), 1)
    g = density.grid(x, box, b)
    tr = density.tree(x, box, folds=tree_folds, key=seed)
    k = density.kde(x[:kde_n], key=seed)
    nll = lambda m: -density.heldout_loglik(m, z).mean  # noqa: E731
    r = {"toy": name, "N": N, "seed": seed, "H": H, "fit_seconds": round(secs, 1), "regions": K,
         "best_step": hist.best_step, "fit_nll": nll(dens), "fit_H": dens.entropy(),
         "fit_H_mm": dens.entropy("miller_madow"), "grid_bins": b * b, "grid_nll": nll(g),
         "tree_leaves": int(len(tr.counts)), "tree_nll": nll(tr), "kde_nll": nll(k)}
    r["fit_minus_kde"] = r["fit_nll"] - r["kde_nll"]
    r["abs_H_err"], r["abs_H_err_mm"] = abs(r["fit_H"] - H), abs(r["fit_H_mm"] - H)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--toys", nargs="+", default=["checkerboard", "8gaussians"])
    ap.add_argument("--fit", default="{}", help="JSON of density.fit keyword arguments (default: fit's defaults)")
    ap.add_argument("--out", default="runs/density_fit_toys.json")
    args = ap.parse_args(argv)
    kw = json.loads(args.fit)
    if "widths" in kw:
        kw["widths"] = tuple(kw["widths"])
    rows = []
    for name in args.toys:
        for s in args.seeds:
            r = run_one(name, args.N, s, kw)
            rows.append(r)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps({"fit": kw, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
