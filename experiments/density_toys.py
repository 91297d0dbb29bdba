"""Regions as bins on toy data of known entropy, beside the density baselines (issue 15, item 4).

Data (each sampler below, in a bounded box; the truth in nats):

* ``checkerboard``: FFJORD's checkerboard on ``[-4, 4]^2``, uniform on 8 of the 16 squares of
  side 2: ``H = ln 32 = 3.4657``.
* ``8gaussians``: FFJORD's eight Gaussians (centres ``4 (cos k pi/4, sin k pi/4) / 1.414``,
  standard deviation ``0.5 / 1.414``), on ``[-5, 5]^2`` (a point outside is redrawn; the
  truncated mass is below 1e-9): ``H`` by Monte Carlo of the exact mixture log density
  (``--h-samples`` points, printed with its standard error; 2.8313 ± 0.0007 quoted in the issue).
* ``gauss{d}``: ``N(0, I_d)`` truncated to ``[-5, 5]^d`` (redrawn outside), ``d = 2..8``:
  ``H = d [ln(sqrt(2 pi e) Z) - 5 phi(5) / Z]``, ``Z = Phi(5) - Phi(-5)``, which is
  ``(d/2) ln(2 pi e)`` to 1e-5.

Estimators, on ``N`` training points and ``--test`` held-out points (both fresh per seed), through
:func:`partax.density_baselines.compare`: the partition density (:func:`partax.density.estimate`)
of a **random** ``d-32-32-1`` ReLU net (He init, bias std 1; exact volumes in 2D, Monte Carlo
with 2^18 reference samples otherwise) and, on the 2D toys, of a **trained** ``2-32-32-C``
classifier (Adam, 30 epochs, on 10^4 separate points labelled by their Gaussian / their
square); the uniform grid with the random net's number of regions; KDE with a cross-validated
bandwidth (fitted on at most 10^4 training points); the density estimation tree
(:func:`partax.density_tree.tree`, 5-fold CV); the Kozachenko–Leonenko kNN entropy (k = 3).
Reported: ``test NLL − H`` and ``|Ĥ − H|``, mean ± standard error over seeds.

Run:
    python experiments/density_toys.py            # N in 1e3, 1e4, 1e5; 5 seeds; all toys
    python experiments/density_toys.py --quick    # N in 1e3, 1e4; 2 seeds; checkerboard, 8gaussians, gauss2, gauss4
Writes ``runs/density_toys/{results.json, table.md, density_toys.png}`` (``--figure PATH`` also
writes the figure there, e.g. ``docs/density_toys.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib

import jax
import numpy as np
from scipy import special, stats

import partax
from partax import density
from partax.density_baselines import compare
from partax.density_tree import tree
from partax.files import atomic_write_text
from partax.geometry import Box

BOX = {"checkerboard": 4.0, "8gaussians": 5.0}
GAUSS_B = 5.0
EIGHT_SCALE = 4.0 / 1.414
EIGHT_STD = 0.5 / 1.414


# --- samplers and truths ------------------------------------------------------------------
def checkerboard(n, rng):
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def checkerboard_labels(x):
    """The square (0..7) of each checkerboard point."""
    i, j = np.floor(x[:, 0] / 2 + 2).clip(0, 3), np.floor(x[:, 1] / 2 + 2).clip(0, 3)
    return (4 * i + j).astype(np.int64) // 2


def eight_centres():
    a = np.arange(8) * np.pi / 4
    return EIGHT_SCALE * np.stack([np.cos(a), np.sin(a)], 1)


def eight_gaussians(n, rng, *, labels=False):
    c = eight_centres()
    out, lab, have = [], [], 0
    while have < n:
        k = rng.integers(0, 8, n - have)
        z = c[k] + EIGHT_STD * rng.normal(size=(n - have, 2))
        ok = np.all(np.abs(z) <= BOX["8gaussians"], axis=1)
        out.append(z[ok])
        lab.append(k[ok])
        have += int(ok.sum())
    x, y = np.concatenate(out), np.concatenate(lab)
    return (x, y) if labels else x


def eight_gaussians_logpdf(x):
    c = eight_centres()
    d2 = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    return special.logsumexp(-d2 / (2 * EIGHT_STD**2), axis=1) - math.log(8 * 2 * math.pi * EIGHT_STD**2)


def eight_gaussians_entropy(n, seed=12345, chunk=1_000_000):
    """Monte Carlo ``-E log p`` with its standard error (the mixture's own log density)."""
    rng = np.random.default_rng(seed)
    s, s2, m = 0.0, 0.0, 0
    while m < n:
        k = min(chunk, n - m)
        lp = eight_gaussians_logpdf(eight_gaussians(k, rng))
        s, s2, m = s + lp.sum(), s2 + (lp**2).sum(), m + k
    mean = s / m
    return -mean, math.sqrt(max(s2 / m - mean**2, 0.0) / m)


def gauss(n, rng, d):
    out, have = [], 0
    while have < n:
        z = rng.normal(size=(int(1.01 * (n - have)) + 16, d))
        z = z[np.all(np.abs(z) <= GAUSS_B, axis=1)]
        out.append(z)
        have += len(z)
    return np.concatenate(out)[:n]


def gauss_entropy(d):
    Z = stats.norm.cdf(GAUSS_B) - stats.norm.cdf(-GAUSS_B)
    return d * (math.log(math.sqrt(2 * math.pi * math.e) * Z) - GAUSS_B * stats.norm.pdf(GAUSS_B) / Z)


def toy(name):
    """``(dim, box, sampler(n, rng), true entropy or None)`` (8gaussians' is computed by the caller)."""
    if name == "checkerboard":
        return 2, Box(-4, 4), checkerboard, math.log(32.0)
    if name == "8gaussians":
        return 2, Box(-5, 5), eight_gaussians, None
    if name.startswith("gauss"):
        d = int(name[5:])
        return d, Box(-GAUSS_B, GAUSS_B), (lambda n, rng, d=d: gauss(n, rng, d)), gauss_entropy(d)
    raise ValueError(f"toy: unknown {name!r}")


# --- nets ---------------------------------------------------------------------------------
def random_net(d, seed):
    return partax.mlp(jax.random.key(1000 + seed), [d, 32, 32, 1], bias_std=1.0)


def trained_net(name, seed, epochs=30, n=10_000):
    """A 2-32-32-C classifier of the toy's components (8gaussians) or squares (checkerboard)."""
    import optax

    rng = np.random.default_rng(777 + seed)
    if name == "8gaussians":
        x, y = eight_gaussians(n, rng, labels=True)
    else:
        x = checkerboard(n, rng)
        y = checkerboard_labels(x)
    net = partax.mlp(jax.random.key(2000 + seed), [2, 32, 32, 8], bias_std=0.1)
    net, hist = partax.train.fit(net, x.astype(np.float32), y, optax.adam(3e-3), epochs=epochs, batch_size=128,
                                 key=jax.random.key(seed))
    return net, float(hist["accuracy"][-1])


# --- the study ----------------------------------------------------------------------------
def run(toys, Ns, seeds, n_test, h_samples, tree_folds, log=print, train_n=10_000, epochs=30):
    H8, H8_se = eight_gaussians_entropy(h_samples)
    log(f"8gaussians: H = {H8:.5f} +- {H8_se:.5f} nats (Monte Carlo, {h_samples} samples)")
    rows, truths, accs = [], {}, {}
    for name in toys:
        d, box, sampler, H = toy(name)
        H = H8 if name == "8gaussians" else H
        truths[name] = H
        for seed in seeds:
            nets = {"random": random_net(d, seed)}
            if name in BOX:  # the 2D toys with labels (components / squares)
                nets["trained"], acc = trained_net(name, seed, epochs=epochs, n=train_n)
                accs[f"{name}/{seed}"] = acc
            for N in Ns:
                rng = np.random.default_rng([seed, N, zlib.crc32(name.encode())])
                x, z = sampler(N, rng), sampler(n_test, rng)
                t = time.perf_counter()
                c = compare(x, z, box, nets=nets, true_entropy=H, tree_folds=tree_folds, key=seed,
                            volumes="exact" if d == 2 else "mc")
                for r in c.to_dict()["rows"]:
                    rows.append({"toy": name, "dim": d, "N": N, "seed": seed, **r})
                log(f"{name:12s} N={N:<6d} seed={seed} ({time.perf_counter() - t:5.1f} s) " + "  ".join(
                    f"{r.name}:{(r.test_nll - H) if math.isfinite(r.test_nll) else float('nan'):+.3f}"
                    f"/{abs(r.entropy - H):.3f}" for r in c.rows))
    return rows, truths, accs


ORDER = ("random", "trained", "grid", "kde", "tree", "knn")


def aggregate(rows):
    """Mean and standard error over seeds of NLL - H and |H_hat - H| per (toy, N, estimator)."""
    out = {}
    for r in rows:
        out.setdefault((r["toy"], r["N"], r["name"]), []).append(r)
    agg = []
    for (toy_, N, name), rs in out.items():
        def ms(key):
            v = np.array([r[key] for r in rs if r[key] is not None], np.float64)
            if len(v) == 0:
                return None, None
            return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None
        nll, nll_se = ms("nll_minus_h")
        ent, ent_se = ms("abs_entropy_error")
        agg.append({"toy": toy_, "N": N, "name": name, "seeds": len(rs), "nll_minus_h": nll, "nll_minus_h_se": nll_se,
                    "abs_entropy_error": ent, "abs_entropy_error_se": ent_se,
                    "bins": float(np.mean([r["bins"] for r in rs])) if rs[0]["bins"] is not None else None,
                    "seconds": float(np.mean([r["seconds"] for r in rs]))})
    return agg


def _cell(m, se):
    if m is None:
        return "—"
    return f"{m:.3f} ± {se:.3f}" if se is not None else f"{m:.3f}"


def markdown(agg, truths, toys, Ns):
    names = [n for n in ORDER if any(a["name"] == n for a in agg)]
    look = {(a["toy"], a["N"], a["name"]): a for a in agg}
    parts = []
    for key, title in (("nll_minus_h", "test NLL − H (nats; lower is better, ≥ 0 up to noise)"),
                       ("abs_entropy_error", "|Ĥ − H| (nats)")):
        lines = [f"**{title}**", "", "| data | H | N | " + " | ".join(names) + " |",
                 "|---|---|---|" + "---|" * len(names)]
        for t in toys:
            for N in Ns:
                if not any((t, N, n) in look for n in names):
                    continue  # not run
                cells = []
                for n in names:
                    a = look.get((t, N, n))
                    cells.append(_cell(a[key], a[key + "_se"]) if a else "—")
                lines.append(f"| {t} | {truths[t]:.4f} | {N:.0e} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    bins = ["**bins** (mean over seeds)", "", "| data | N | " + " | ".join(n for n in names if n not in ("kde", "knn")) + " |",
            "|---|---|" + "---|" * len([n for n in names if n not in ("kde", "knn")])]
    for t in toys:
        for N in Ns:
            if not any((t, N, n) in look for n in names):
                continue
            cells = []
            for n in names:
                if n in ("kde", "knn"):
                    continue
                a = look.get((t, N, n))
                cells.append(f"{a['bins']:.0f}" if a and a["bins"] is not None else "—")
            bins.append(f"| {t} | {N:.0e} | " + " | ".join(cells) + " |")
    parts.append("\n".join(bins))
    return "\n\n".join(parts) + "\n"


# --- the figure ---------------------------------------------------------------------------
def figure(path_list, N, seed=0, res=160, train_n=10_000, epochs=30, tree_folds=5):
    """2D densities of each estimator on both 2D toys (one row per toy), titled with data, net and N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from partax.plots import save

    toys2 = ("checkerboard", "8gaussians")
    fig, axes = plt.subplots(2, 6, figsize=(19, 6.8), constrained_layout=True)
    for i, name in enumerate(toys2):
        d, box, sampler, H = toy(name)
        B = BOX[name]
        rng = np.random.default_rng(99 + seed)
        x = sampler(N, rng)
        g1 = np.linspace(-B, B, res + 1)
        c = 0.5 * (g1[1:] + g1[:-1])
        gx, gy = np.meshgrid(c, c, indexing="xy")
        pts = np.stack([gx.ravel(), gy.ravel()], 1)
        if name == "8gaussians":
            truth = np.exp(eight_gaussians_logpdf(pts))
        else:
            truth = np.where((np.floor(pts[:, 0] / 2) + np.floor(pts[:, 1] / 2)) % 2 == 0, 1 / 32, 0.0)
        rnet = random_net(2, seed)
        tnet, acc = trained_net(name, seed, epochs=epochs, n=train_n)
        dr = density.estimate(rnet, x, box)
        dt = density.estimate(tnet, x, box)
        per = max(1, int(round(math.sqrt(dr.num_regions))))
        panels = [
            ("true density", truth),
            (f"partition: random 2-32-32 net\n{dr.num_regions} regions", np.exp(dr.log_prob(pts))),
            (f"partition: trained 2-32-32-8 net (train acc {acc:.2f})\n{dt.num_regions} regions", np.exp(dt.log_prob(pts))),
            (f"grid {per}×{per}", np.exp(density.grid(x, box, per).log_prob(pts))),
        ]
        k = density.kde(x if N <= 10_000 else x[np.random.default_rng(0).choice(N, 10_000, replace=False)])
        panels.append((f"KDE (CV factor {k.factor:.2g}" + (", 1e4 subsample)" if N > 10_000 else ")"),
                       np.exp(k.log_prob(pts))))
        tr = tree(x, box, folds=tree_folds)
        panels.append((f"density tree ({tree_folds}-fold CV)\n{tr.num_leaves} leaves", np.exp(tr.log_prob(pts))))
        vmax = 1.5 * float(truth.max())  # shared colour range: 1.5 x the true peak (brighter bins saturate)
        for j, (title, v) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(v.reshape(res, res), origin="lower", extent=(-B, B, -B, B), cmap="magma", vmin=0, vmax=vmax,
                           interpolation="nearest")
            ax.set_title(f"{name}, N={N:.0e}: {title}" if j == 0 else title, fontsize=9)
            ax.set_xticks([-B, 0, B])
            ax.set_yticks([-B, 0, B])
            if j == 0:
                ax.set_ylabel(f"{name}\n$x_2$")
            ax.set_xlabel("$x_1$")
        fig.colorbar(im, ax=axes[i, :], shrink=0.85, label="density (clipped at 1.5x the true peak)", extend="max")
    fig.suptitle(f"Densities on the 2D toys (N = {N:.0e} training points, seed {seed}): regions as bins "
                 "beside a grid with as many bins, KDE and a density tree", fontsize=11)
    for p in path_list:
        save(fig, p)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N in 1e3, 1e4; 2 seeds; four toys")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--N", type=int, nargs="+", default=None, help="training sizes")
    ap.add_argument("--toys", nargs="+", default=None)
    ap.add_argument("--test", type=int, default=20_000, help="held-out points per cell")
    ap.add_argument("--h-samples", type=int, default=10_000_000, help="Monte Carlo samples of 8gaussians' entropy")
    ap.add_argument("--tree-folds", type=int, default=5)
    ap.add_argument("--out", default="runs/density_toys")
    ap.add_argument("--figure", default=None, help="also write the figure here (e.g. docs/density_toys.png)")
    ap.add_argument("--figure-N", type=int, default=None, help="training size of the figure (default: the largest N)")
    ap.add_argument("--no-figure", action="store_true")
    args = ap.parse_args(argv)
    toys = args.toys or (["checkerboard", "8gaussians", "gauss2", "gauss4"] if args.quick else
                         ["checkerboard", "8gaussians"] + [f"gauss{d}" for d in range(2, 9)])
    Ns = args.N or ([1000, 10_000] if args.quick else [1000, 10_000, 100_000])
    seeds = list(range(args.seeds if args.seeds is not None else (2 if args.quick else 5)))
    h_samples = min(args.h_samples, 1_000_000) if args.quick else args.h_samples
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    rows, truths, accs = run(toys, Ns, seeds, args.test, h_samples, args.tree_folds,
                             log=lambda s: print(s, flush=True))
    agg = aggregate(rows)
    md = markdown(agg, truths, toys, Ns)
    secs = time.perf_counter() - t0
    result = {"toys": toys, "N": Ns, "seeds": seeds, "n_test": args.test, "tree_folds": args.tree_folds,
              "true_entropy": truths, "eight_gaussians_h_samples": h_samples, "trained_net_accuracy": accs,
              "seconds": secs, "aggregate": agg, "rows": rows}
    atomic_write_text(os.path.join(args.out, "results.json"), json.dumps(result, indent=1) + "\n")
    atomic_write_text(os.path.join(args.out, "table.md"), md)
    print(md)
    if not args.no_figure:
        paths = [os.path.join(args.out, "density_toys.png")] + ([args.figure] if args.figure else [])
        figure(paths, args.figure_N or max(Ns))
    print(f"wrote {args.out}/results.json, table.md{', density_toys.png' if not args.no_figure else ''} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
