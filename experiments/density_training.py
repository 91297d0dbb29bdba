"""The founding hypothesis, measured: do a network's regions become better bins as it learns?

On the Tishby IB task (12-10-7-5-4-3-2) and on scikit-learn's 8x8 digits (64-32-16-6-4-10), a
:class:`partax.Tracer` records at log-spaced epochs, per layer, the regions-as-bins density of the
representation ``h^s`` over its own bins (``partax.density.density_probe``: the ``suffix``
partition of latent space ``h^s`` by layers ``s+1..L``, in a box around the training and held-out
codes): the held-out log-likelihood and the plug-in entropy, both also relative to the uniform
density of that box (``heldout_gain = log V - NLL``, ``entropy_gap = log V - H``: the NLL and the
differential entropy change when training rescales a layer's codes, these do not). Next to them:
the 30-bin and KDE (Kolchinsky–Tracey, noise variance 1e-3) mutual-information baselines on the
hidden activations, and the test accuracy.

``--toys`` also runs :func:`partax.density.fit` (partitions trained to be good bins) on the 2D
checkerboard (``ln 32``) and 8gaussians (2.8313 nats) next to the grid with the same number of
regions and a cross-validated KDE.

Writes ``runs/density_training/{ib,digits}/trace.jsonl`` (with ``--seeds``:
``runs/density_training/{ib,digits}/seed<S>/trace.jsonl``), ``runs/density_training/summary.json``
(``{"command", "seeds", "seconds", "failed", "aggregate", "runs"}``: every run's series and findings, and per
task the seed mean and standard error of the findings; rewritten after each run) and ``toys.json``,
and the figure ``docs/density_training.png`` (with several seeds: their mean, each seed faintly).

Usage:
    python experiments/density_training.py               # full: IB 3000 epochs, digits 300 epochs
    python experiments/density_training.py --quick       # a few minutes on a laptop CPU
    python experiments/density_training.py --seeds 0 1 2 # three seeds, mean and standard error
    # the committed run (benchmarks/2026-12-02-cpu/density_training/summary.json, 16 min on 2 CPU cores):
    python experiments/density_training.py --seeds 0 1 2 3 4 --num-reference 32768 --keep-going
    python experiments/density_training.py --toys --toy-n 100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import jax
import numpy as np
import optax

import partax
from partax import density, plots
from partax.datasets import digits, tishby_ib
from partax.files import atomic_write_text
from partax.geometry import Box
from partax.trace import Tracer, load_trace, log_spaced
from partax.train import fit

TASKS = {
    "ib": dict(arch=[12, 10, 7, 5, 4, 3, 2], lr=4e-4, batch=256, epochs=3000, quick_epochs=300),
    "digits": dict(arch=[64, 32, 16, 6, 4, 10], lr=1e-3, batch=128, epochs=300, quick_epochs=40),
}


def _split(n: int, seed: int, frac: float = 0.8):
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(frac * n))
    return perm[:k], perm[k:]


def accuracy_probe(x_test, y_test):
    """Tracer probe: test accuracy (one record, ``layer`` 0)."""
    def probe(net, x, y):
        pred = np.asarray(jax.numpy.argmax(net(x_test), axis=1))
        train = np.asarray(jax.numpy.argmax(net(x), axis=1))
        return [{"layer": 0, "test_accuracy": float(np.mean(pred == y_test)),
                 "train_accuracy": float(np.mean(train == y)), "estimator": "accuracy"}]
    return probe


def run_task(name: str, tdir: str, quick: bool, checkpoints: int, num_reference: int, seed: int,
             epochs: int | None = None, volumes: str = "auto") -> dict:
    """Train one net on task ``name`` with ``seed`` (split, init, batches, reference streams) and
    trace it into ``tdir``; returns the run's summary (``series`` per representation)."""
    cfg = TASKS[name]
    x, y = tishby_ib() if name == "ib" else digits()
    x = np.asarray(x, np.float32)
    tr_idx, te_idx = _split(len(x), seed)
    xtr, ytr, xte, yte = x[tr_idx], y[tr_idx], x[te_idx], y[te_idx]
    if epochs is None:
        epochs = cfg["quick_epochs"] if quick else cfg["epochs"]
    schedule = np.union1d([0], log_spaced(epochs, min(checkpoints, epochs))).astype(int)
    box = Box(0.0, 1.0)
    probes = {"density": density.density_probe(xte, box, scope="suffix", volumes=volumes,
                                              num_reference=num_reference, key=seed),
              "accuracy": accuracy_probe(xte, yte)}
    if os.path.isdir(tdir):
        shutil.rmtree(tdir)
    tracer = Tracer(xtr, ytr, every=schedule, scopes=("suffix",), baselines=("binned30", "kde"), out=tdir,
                    probes=probes, meta={"experiment": "density_training", "task": name, "quick": quick, "seed": seed})
    net = partax.mlp(jax.random.key(seed), cfg["arch"])
    t0 = time.perf_counter()
    net, hist = fit(net, xtr, ytr, optax.adam(cfg["lr"]), epochs=epochs, batch_size=cfg["batch"],
                    key=jax.random.key(seed + 1), callbacks=[tracer])
    seconds = time.perf_counter() - t0
    tr = load_trace(tdir)
    return {"task": name, "seed": seed, "arch": cfg["arch"], "epochs": epochs, "quick": quick,
            "checkpoints": schedule.tolist(), "train_size": int(len(xtr)), "test_size": int(len(xte)),
            "seconds": seconds,
            "series": _series(tr, len(cfg["arch"]) - 2)}


def _last_step(tdir: str):
    """The last epoch traced in ``tdir`` (``None`` if nothing was)."""
    try:
        steps = load_trace(tdir)["step"]
    except (OSError, ValueError, KeyError):
        return None
    return int(np.max(steps)) if len(steps) else None


def _col(tr, key, mask):
    return [float(v) for v in np.asarray(tr[key])[mask]] if key in tr else []


def _series(tr: dict, L: int) -> dict:
    """Per representation ``h^s`` the traced columns, ordered by step."""
    out = {}
    steps = np.asarray(tr["step"])
    scope, est, layer = np.asarray(tr["scope"]), np.asarray(tr["estimator"]), np.asarray(tr["layer"])
    acc = scope == "accuracy"
    order = np.argsort(steps[acc])
    out["accuracy"] = {"step": steps[acc][order].tolist(),
                       "test": np.asarray(tr["test_accuracy"])[acc][order].tolist(),
                       "train": np.asarray(tr["train_accuracy"])[acc][order].tolist()}
    for s in range(0, L + 1):
        rec = {}
        m = (scope == "density") & (np.asarray(tr.get("space", np.full(len(steps), -1)), dtype=float) == s)
        if m.any():
            o = np.argsort(steps[m])
            for k in ("heldout_nll", "heldout_nll_stderr", "train_nll", "entropy", "entropy_mm", "heldout_gain",
                      "entropy_gap", "regions", "occupied", "dim", "residual_points"):
                if k in tr:
                    rec[k] = [float(v) for v in np.asarray(tr[k], dtype=float)[m][o]]
            rec["step"] = steps[m][o].tolist()
            rec["volumes"] = str(np.asarray(tr["volumes"])[m][0])
        if s >= 1:
            for base, e, key in (("binned30", "plugin", "binned30"), ("kde", "upper", "kde_upper"),
                                 ("kde", "lower", "kde_lower")):
                b = (scope == base) & (est == e) & (layer == s)
                if b.any():
                    o = np.argsort(steps[b])
                    rec[key] = {"step": steps[b][o].tolist(), "I_XT": np.asarray(tr["I_XT"], float)[b][o].tolist(),
                                "I_TY": np.asarray(tr["I_TY"], float)[b][o].tolist()}
        out[f"h{s}"] = rec
    return out


def _spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def findings(res: dict) -> dict:
    """Per task and representation: first/last held-out gain (and its change, last - first) and
    entropy gap, the gain's rank correlations with the epoch and with the test accuracy, and the
    first/last ``I(T;Y)`` of the MI baselines of the same representation."""
    out = {}
    acc = res["series"]["accuracy"]
    acc_by_step = dict(zip(acc["step"], acc["test"]))
    for k, rec in res["series"].items():
        if k == "accuracy" or "heldout_gain" not in rec:
            continue
        g, st = rec["heldout_gain"], rec["step"]
        a = [acc_by_step.get(s, float("nan")) for s in st]
        out[k] = {"dim": int(rec["dim"][0]), "volumes": rec["volumes"],
                  "gain_first": g[0], "gain_last": g[-1], "gain_change": g[-1] - g[0], "gain_max": max(g),
                  "entropy_gap_first": rec["entropy_gap"][0], "entropy_gap_last": rec["entropy_gap"][-1],
                  "nll_first": rec["heldout_nll"][0], "nll_last": rec["heldout_nll"][-1],
                  "regions_first": rec["regions"][0], "regions_last": rec["regions"][-1],
                  "residual_points_last": rec.get("residual_points", [float("nan")])[-1],
                  "spearman_gain_epoch": _spearman(st, g), "spearman_gain_accuracy": _spearman(a, g)}
        for base in ("binned30", "kde_upper"):  # the MI baselines of the same representation (bits)
            if base in rec:
                ity = rec[base]["I_TY"]
                out[k].update({f"ity_{base}_first": ity[0], f"ity_{base}_last": ity[-1],
                               f"spearman_ity_{base}_epoch": _spearman(rec[base]["step"], ity)})
    out["accuracy_first"], out["accuracy_last"] = acc["test"][0], acc["test"][-1]
    return out


AGGREGATED = ("gain_first", "gain_last", "gain_change", "gain_max", "entropy_gap_first", "entropy_gap_last",
              "nll_first", "nll_last", "regions_first", "regions_last", "residual_points_last", "spearman_gain_epoch",
              "spearman_gain_accuracy",
              "ity_binned30_first", "ity_binned30_last", "spearman_ity_binned30_epoch",
              "ity_kde_upper_first", "ity_kde_upper_last", "spearman_ity_kde_upper_epoch")


def _mean_se(values) -> dict:
    """Mean and standard error (sample standard deviation / sqrt(n); NaN for one value) of the
    finite ``values``, with ``n`` and the values themselves."""
    v = np.asarray(values, float)
    f = v[np.isfinite(v)]
    n = len(f)
    mean = float(f.mean()) if n else float("nan")
    se = float(f.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": mean, "se": se, "n": n, "values": [float(x) for x in v]}


def aggregate(results: list) -> dict:
    """Per task, the seed mean and standard error of :func:`findings`.

    Args:
      results: run summaries (each with ``task``, ``seed`` and ``findings``), any number of seeds per task.

    Returns:
      ``{task: {"seeds": [...], "accuracy_first": {mean, se, n, values}, "accuracy_last": ...,
      "h<s>": {"dim", "volumes", <each of AGGREGATED>: {mean, se, n, values}}}}``; the standard
      error is over seeds (NaN with one seed).
    """
    out = {}
    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]
        fs = [r["findings"] for r in runs]
        agg = {"seeds": [r.get("seed") for r in runs], "epochs": runs[0]["epochs"],
               "checkpoints": runs[0]["checkpoints"]}
        for k in ("accuracy_first", "accuracy_last"):
            agg[k] = _mean_se([f[k] for f in fs])
        reps = [k for k in fs[0] if k.startswith("h")]
        for k in reps:
            have = [f[k] for f in fs if k in f]
            agg[k] = {"dim": have[0]["dim"], "volumes": sorted({h["volumes"] for h in have}),
                      **{m: _mean_se([h[m] for h in have]) for m in AGGREGATED if all(m in h for h in have)}}
        out[task] = agg
    return out


def _by_task(results: list) -> list:
    """The runs grouped by task, in first-seen order: ``[[run, ...], ...]``."""
    return [[r for r in results if r["task"] == t] for t in dict.fromkeys(r["task"] for r in results)]


def _seed_mean(steps_list, values_list):
    """The mean over seeds of series sampled at the same steps (``None`` if the steps differ)."""
    if not values_list or any(list(s) != list(steps_list[0]) for s in steps_list):
        return None
    return np.maximum(np.asarray(steps_list[0], float), 0.8), np.mean(np.asarray(values_list, float), axis=0)


def figure(results: list, path: str) -> None:
    """Draw the traced series per task (rows): the seed mean (bold) and each seed (faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["accuracy", "held-out log-lik. − log-lik. of uniform on box\n(nats; regions as bins)",
            "log V(box) − entropy (nats; regions as bins)", "I(X;T) bits: 30 bins (—), KDE upper (- -)",
            "I(T;Y) bits: 30 bins (—), KDE upper (- -)"]
    groups = _by_task(results)
    fig, axes = plt.subplots(len(groups), 5, figsize=(22, 4.3 * len(groups)), squeeze=False)
    faint = dict(lw=0.7, alpha=0.3)
    for r, runs in enumerate(groups):
        res = runs[0]
        many = len(runs) > 1
        cmap = plt.get_cmap("viridis")

        def draw(ax, steps_list, values_list, fmt, color, label, ms=3):
            mean = _seed_mean(steps_list, values_list)
            if many:
                for st, v in zip(steps_list, values_list):
                    ax.plot(np.maximum(st, 0.8), v, fmt.replace("o", ""), color=color, **faint)
            if mean is not None:
                ax.plot(*mean, fmt, ms=ms, color=color, label=label)
            elif not many:
                ax.plot(np.maximum(steps_list[0], 0.8), values_list[0], fmt, ms=ms, color=color, label=label)

        accs = [run["series"]["accuracy"] for run in runs]
        ax = axes[r, 0]
        draw(ax, [a["step"] for a in accs], [a["test"] for a in accs], "-o", "k", "test")
        draw(ax, [a["step"] for a in accs], [a["train"] for a in accs], "--", "k", "train")
        ax.legend(fontsize=8)
        keys = [k for k in res["series"] if k != "accuracy"]
        for i, k in enumerate(keys):
            recs = [run["series"].get(k, {}) for run in runs]
            c = cmap(i / max(len(keys) - 1, 1))
            if all("heldout_gain" in rec for rec in recs):
                rec = recs[0]
                vols = "/".join(sorted({q["volumes"] for q in recs}))
                lab = f"h^{k[1:]} ({int(rec['dim'][0])}-D, {vols})"
                st = [q["step"] for q in recs]
                draw(axes[r, 1], st, [q["heldout_gain"] for q in recs], "-o", c, lab)
                draw(axes[r, 2], st, [q["entropy_gap"] for q in recs], "-o", c, lab)
            for key, ls in (("binned30", "-"), ("kde_upper", "--")):
                if all(key in rec for rec in recs):
                    st = [q[key]["step"] for q in recs]
                    lab = f"h^{k[1:]}" if ls == "-" else None
                    draw(axes[r, 3], st, [q[key]["I_XT"] for q in recs], ls, c, lab)
                    draw(axes[r, 4], st, [q[key]["I_TY"] for q in recs], ls, c, lab)
        for c_, ax in enumerate(axes[r]):
            ax.set_xscale("log")
            ax.set_xlabel("epoch (0 drawn at 0.8)")
            ax.set_title(cols[c_], fontsize=9)
            ax.grid(alpha=0.3)
        seeds = (f"mean of {len(runs)} seeds (bold), each seed (faint)" if many else f"seed {res.get('seed', 0)}")
        axes[r, 0].set_ylabel(f"{res['task']}: {'-'.join(map(str, res['arch']))}\nN_train={res['train_size']}, "
                              f"N_test={res['test_size']}, {res['epochs']} epochs\n{seeds}", fontsize=10)
        axes[r, 1].legend(fontsize=7)
        axes[r, 3].legend(fontsize=7)
    fig.suptitle("Regions as bins across training: the density of each representation h^s over its own (suffix) "
                 "regions (held-out log-likelihood, entropy), next to the binned / KDE MI baselines of the same "
                 "layers" + (" [--quick run]" if any(r.get("quick") for r in results) else ""), fontsize=11)
    fig.tight_layout()
    plots.save(fig, path)
    plt.close(fig)


# --- toys: partitions trained to be good bins ---------------------------------------------
def checkerboard(n, seed):
    """Uniform on 8 of the 16 unit-2 squares of [-4, 4]^2 (entropy ln 32)."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
    return (np.stack([x1, x2], 1) * 2).astype(np.float32).astype(np.float64)


def eight_gaussians(n, seed):
    """FFJORD's 8gaussians (clipped to [-4, 4]^2; entropy 2.8313 nats)."""
    rng = np.random.default_rng(seed)
    r = 1 / np.sqrt(2)
    c = 4 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)])
    x = (rng.normal(size=(n, 2)) * 0.5 + c[rng.integers(0, 8, n)]) / 1.414
    return np.clip(x, -4, 4).astype(np.float32).astype(np.float64)


TOYS = {"checkerboard": (checkerboard, math.log(32.0)), "8gaussians": (eight_gaussians, 2.8313)}


def run_toys(n: int, steps: int, widths, seed: int, kde_n: int) -> dict:
    out = {}
    box = Box(-4.0, 4.0)
    for name, (gen, H) in TOYS.items():
        x, xt = gen(n, seed), gen(min(n, 100_000), seed + 1)
        t0 = time.perf_counter()
        dens, hist = density.fit(x, box, widths=widths, steps=steps, batch_size=4096, eval_every=max(steps // 4, 1),
                                 learning_rate=3e-3, tau_start=0.3, tau_end=0.01, key=seed, return_history=True)
        secs = time.perf_counter() - t0
        init = density.estimate(hist.initial_net, x, box)
        K = dens.num_regions
        b = max(int(round(math.sqrt(K))), 1)
        g = density.grid(x, box, b)
        k = density.kde(x[:kde_n], key=seed)
        r = {"H": H, "N": n, "regions": K, "steps": steps, "widths": list(widths), "fit_seconds": secs,
             "fit_nll": -density.heldout_loglik(dens, xt).mean, "fit_entropy": dens.entropy(),
             "init_nll": -density.heldout_loglik(init, xt).mean, "init_regions": init.num_regions,
             "grid_bins": b * b, "grid_nll": -density.heldout_loglik(g, xt).mean, "grid_entropy": g.entropy(),
             "kde_n": kde_n, "kde_nll": -density.heldout_loglik(k, xt[:20000]).mean,
             "hard_loglik_history": hist.hard_loglik.tolist(), "best_step": hist.best_step}
        r["fit_minus_kde"] = r["fit_nll"] - r["kde_nll"]
        r["fit_abs_entropy_error"] = abs(r["fit_entropy"] - H)
        out[name] = r
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a few minutes on a CPU)")
    ap.add_argument("--out", default="runs/density_training")
    ap.add_argument("--figure", default="docs/density_training.png")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--checkpoints", type=int, default=None, help="traced epochs (default 24, quick 10)")
    ap.add_argument("--num-reference", type=int, default=None, help="Monte Carlo reference samples per layer")
    ap.add_argument("--seed", type=int, default=0, help="the seed of a one-seed run (and of the toys)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                    help="run every task for each seed (trace dirs OUT/<task>/seed<S>); summary.json then holds "
                         "every run and the seed mean and standard error of the findings")
    ap.add_argument("--epochs", type=int, nargs="+", default=None, metavar="E",
                    help="override the training epochs, one value per task in --tasks order (default: IB 3000, "
                         "digits 300; quick 300, 40)")
    ap.add_argument("--volumes", default="auto", choices=("auto", "exact", "mc"),
                    help="region volumes of every traced layer (density.estimate's volumes; default auto: exact "
                         "enumeration in low dimension, Monte Carlo otherwise)")
    ap.add_argument("--keep-going", action="store_true",
                    help="record a run that raises RuntimeError under 'failed' in summary.json (task, seed, error, "
                         "last traced epoch), leave it out of the aggregate and go on (default: raise)")
    ap.add_argument("--toys", action="store_true", help="also run density.fit on the 2D toys")
    ap.add_argument("--toys-only", action="store_true", help="only the toys")
    ap.add_argument("--toy-n", type=int, default=None, help="toy training size (default 1e5, quick 1e4)")
    ap.add_argument("--toy-steps", type=int, default=None, help="fit steps (default 200, quick 60)")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the figure from OUT/summary.json (and recompute its findings and aggregate)")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv_list)
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        path = os.path.join(args.out, "summary.json")
        with open(path) as f:
            summary = json.load(f)
        if isinstance(summary, dict):  # recompute the findings and their seed aggregate from the stored series
            for res in summary["runs"]:
                res["findings"] = findings(res)
            summary["aggregate"] = aggregate(summary["runs"])
            atomic_write_text(path, json.dumps(summary, indent=1))
        figure(summary["runs"] if isinstance(summary, dict) else summary, args.figure)
        print(f"[density_training] wrote {args.figure}")
        return 0
    if not args.toys_only:
        cp = args.checkpoints or (10 if args.quick else 24)
        nref = args.num_reference or ((1 << 14) if args.quick else (1 << 16))
        if args.epochs is not None and len(args.epochs) != len(args.tasks):
            ap.error(f"--epochs: expected one value per task ({len(args.tasks)}), got {len(args.epochs)}")
        if args.epochs is not None and min(args.epochs) < 1:
            ap.error(f"--epochs: expected positive epoch counts, got {args.epochs}")
        epochs = dict(zip(args.tasks, args.epochs or [None] * len(args.tasks)))
        seeds = args.seeds if args.seeds is not None else [args.seed]
        results, failed = [], []
        t_start = time.perf_counter()
        for seed in seeds:  # seed-major: a run cut short still has every task for the seeds it finished
            for t in args.tasks:
                print(f"[density_training] {t}, seed {seed}: training and tracing ...", flush=True)
                tdir = os.path.join(args.out, t, f"seed{seed}") if args.seeds is not None else os.path.join(args.out, t)
                try:
                    res = run_task(t, tdir, args.quick, cp, nref, seed, epochs=epochs[t], volumes=args.volumes)
                except RuntimeError as err:  # e.g. an exact enumeration not certified complete
                    if not args.keep_going:
                        raise
                    failed.append({"task": t, "seed": seed, "error": str(err), "last_step": _last_step(tdir)})
                    print(f"[density_training] {t}, seed {seed} FAILED (left out of the aggregate): {err}",
                          flush=True)
                else:
                    res["findings"] = findings(res)
                    results.append(res)
                    print(json.dumps({t: res["findings"]}, indent=1), flush=True)
                summary = {"command": "python experiments/density_training.py " + " ".join(argv_list),
                           "seeds": seeds, "seconds": time.perf_counter() - t_start, "failed": failed,
                           "aggregate": aggregate(results), "runs": results}
                atomic_write_text(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=1))
        print(json.dumps({"aggregate": summary["aggregate"]}, indent=1), flush=True)
        if results:
            figure(results, args.figure)
            print(f"[density_training] wrote {args.out}/summary.json and {args.figure}")
        else:
            print(f"[density_training] every run failed: wrote {args.out}/summary.json, no figure")
    if args.toys or args.toys_only:
        n = args.toy_n or (10_000 if args.quick else 100_000)
        steps = args.toy_steps or (60 if args.quick else 200)
        toys = run_toys(n, steps, (32, 32), args.seed, kde_n=min(n, 20_000))
        atomic_write_text(os.path.join(args.out, "toys.json"), json.dumps(toys, indent=1))
        print(json.dumps(toys, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
