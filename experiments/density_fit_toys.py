"""partax.density.fit on the 2D toys against the grid, the density tree and KDE (issue 15 item 5).

Each toy (checkerboard, 8gaussians; samplers of ``density_toys.py``) at N training points:
``density.fit`` (a trained partition), a uniform grid with as many bins as the fit's regions,
the cross-validated density estimation tree and KDE (bandwidth cross-validated, fitted on at
most ``--kde-n`` points). Prints and writes test NLL and |H_hat - H| (plug-in and Miller–Madow).

    python experiments/density_fit_toys.py --N 100000 --seeds 0 1

``--fit`` takes fit's keyword arguments as JSON, or a JSON list of them for a sweep (the tree
and KDE are then computed once per toy and seed), e.g.
``--fit '[{"steps": 100}, {"steps": 300, "learning_rate_end": 1e-4}]'``.
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


def run_one(name, N, seed, fit_kwargs, n_test=20_000, kde_n=20_000, tree_folds=5, cache=None):
    """One toy, one seed, one fit configuration; ``cache`` (a dict) keeps the tree and KDE
    of a (toy, N, seed) for the next configuration (they do not depend on the fit)."""
    d, box, sampler, H = toy(name)
    H = H_8GAUSSIANS if H is None else H
    rng = np.random.default_rng([seed, N, 7])
    x, z = sampler(N, rng), sampler(n_test, rng)
    nll = lambda m: -density.heldout_loglik(m, z).mean  # noqa: E731
    cache = {} if cache is None else cache
    if (name, N, seed) not in cache:
        tr = density.tree(x, box, folds=tree_folds, key=seed)
        cache[name, N, seed] = (int(len(tr.counts)), nll(tr), nll(density.kde(x[:kde_n], key=seed)))
    tree_leaves, tree_nll, kde_nll = cache[name, N, seed]
    t0 = time.perf_counter()
    dens, hist = density.fit(x, box, key=seed, return_history=True, **fit_kwargs)
    secs = time.perf_counter() - t0
    K = dens.num_regions
    b = max(int(round(math.sqrt(K))), 1)
    g = density.grid(x, box, b)
    r = {"fit": {k: (list(v) if isinstance(v, tuple) else v) for k, v in fit_kwargs.items()},
         "toy": name, "N": N, "seed": seed, "H": H, "fit_seconds": round(secs, 1), "regions": K,
         "best_step": hist.best_step, "fit_nll": nll(dens), "fit_H": dens.entropy(),
         "fit_H_mm": dens.entropy("miller_madow"), "grid_bins": b * b, "grid_nll": nll(g),
         "tree_leaves": tree_leaves, "tree_nll": tree_nll, "kde_nll": kde_nll}
    r["fit_minus_kde"] = r["fit_nll"] - r["kde_nll"]
    r["abs_H_err"], r["abs_H_err_mm"] = abs(r["fit_H"] - H), abs(r["fit_H_mm"] - H)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--N", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--toys", nargs="+", default=["checkerboard", "8gaussians"])
    ap.add_argument("--fit", default="{}", help="JSON of density.fit keyword arguments (default: fit's defaults), "
                    "or a JSON list of them (a sweep: the tree and KDE are computed once per toy and seed)")
    ap.add_argument("--out", default="runs/density_fit_toys.json")
    args = ap.parse_args(argv)
    configs = json.loads(args.fit)
    configs = configs if isinstance(configs, list) else [configs]
    for kw in configs:
        if "widths" in kw:
            kw["widths"] = tuple(kw["widths"])
    rows, cache = [], {}
    for name in args.toys:
        for s in args.seeds:
            for kw in configs:
                r = run_one(name, args.N, s, kw, cache=cache)
                rows.append(r)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps({"fit": configs[0] if len(configs) == 1 else configs, "rows": rows},
                                           indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
