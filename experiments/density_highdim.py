"""Regions-as-bins densities in 64-D: ``volumes="mc"`` against ``volumes="hit_and_run"`` on digits.

On scikit-learn's 8x8 digits (``partax.datasets.digits``, grey levels scaled to ``[0, 1]``) a
64-32-32-10 net, random and trained briefly as a classifier (``partax.train.fit``), partitions the
box ``Box(-0.05, 1.05)^64`` (the pixels' range ``[0, 1]`` with a 5% margin, so that no training
or held-out point lies on the box's boundary; the box volume is ``1.1^64 = 445``). For each net
and each number of training points, the prefix density of the last hidden layer is estimated
twice (:func:`partax.density.estimate`):

* ``volumes="mc"``: ``--num-reference`` uniform samples of the box; regions they miss are the
  residual bin (Good–Turing volume);
* ``volumes="hit_and_run"``: a multiphase hit-and-run volume per occupied region; unoccupied and
  flagged regions are the residual bin (``V`` minus the estimates).

Per setting it records: occupied regions, the hit-and-run statuses (flagged: ``NOT_CONVERGED``,
``FAILED``, ``NOT_ROUND``), the wall time and the time per region, the median relative standard
error of the region volumes, the residual volume, the held-out mean log-likelihood with its
standard error, the plug-in entropy, and how many held-out points fall in the residual bin.
``--diagnose K`` also walks the first ``K`` occupied regions with
:func:`partax.geometry.hit_and_run.region_volumes` itself (same key and options, so the same
statuses) to record their anisotropy, phases and relative errors: the reason for the flags.

No downloads. Writes ``runs/density_highdim/results.json``.

Usage:
    nice -n 10 python experiments/density_highdim.py --quick      # 8 training points, random net: ~3.5 min on 2 busy cores
    nice -n 10 python experiments/density_highdim.py --n-train 32 150 --nets random trained   # ~15 s CPU per region

``--har`` passes ``hit_and_run_options`` on (JSON; default: ``polytope_volumes``' own). Before its
rounding's LAPACK calls were chained, a batch of 8 or more of these 64-D regions blocked forever
on a 2-core CPU (two batched calls at once took both threads of XLA:CPU's pool); the results in
``experiments/README.md`` were measured in batches of 4 for that reason.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax
import numpy as np
import optax

import partax
from partax import density
from partax.datasets import digits
from partax.files import atomic_write_text
from partax.geometry import Box
from partax.geometry import hit_and_run
from partax.train import fit

STATUS = {hit_and_run.OK: "OK", hit_and_run.NOT_CONVERGED: "NOT_CONVERGED", hit_and_run.FAILED: "FAILED",
          hit_and_run.EMPTY: "EMPTY", hit_and_run.NOT_ROUND: "NOT_ROUND"}
ARCH = [64, 32, 32, 10]


def make_nets(names, xtr, ytr, xte, yte, epochs, seed):
    """``{name: (net, info)}``: the random net at initialisation and a briefly trained classifier."""
    out = {}
    net0 = partax.mlp(jax.random.key(seed), ARCH)
    acc = lambda n, x, y: float(np.mean(np.asarray(jax.numpy.argmax(n(x), axis=1)) == y))  # noqa: E731
    if "random" in names:
        out["random"] = (net0, {"epochs": 0, "test_accuracy": acc(net0, xte, yte)})
    if "trained" in names:
        t0 = time.perf_counter()
        net, _ = fit(net0, xtr, ytr, optax.adam(1e-3), epochs=epochs, batch_size=128, key=jax.random.key(seed + 1))
        out["trained"] = (net, {"epochs": epochs, "train_seconds": time.perf_counter() - t0,
                                "test_accuracy": acc(net, xte, yte)})
    return out


def occupied_keys(net, x, layer):
    """Distinct last-layer prefix region keys of ``x`` (the occupied regions, by the net's own keys)."""
    return np.unique(np.asarray(partax.region_ids(net, np.asarray(x, net.dtype), "prefix"))[:, layer - 1])


def summarise(dens, x_test, seconds, occupied):
    """The per-setting record of one :class:`partax.density.PartitionDensity`."""
    V = float(np.sum(dens.volumes))
    res = dens.resolved
    rel = dens.volume_stderr[res] / dens.volumes[res]
    occ_res = res & (dens.counts > 0)
    ll = density.heldout_loglik(dens, x_test)
    idx_te = dens.index(x_test)
    K = dens.num_regions
    r = {"method": dens.volume_method, "seconds": seconds, "regions_rows": K, "occupied": int(occupied),
         "occupied_with_own_volume": int(occ_res.sum()),
         "train_in_residual": int(dens.counts[-1]) if not res[-1] else 0,
         "median_rel_stderr": float(np.median(rel)) if rel.size else float("nan"),
         "median_rel_stderr_occupied": float(np.median(dens.volume_stderr[occ_res] / dens.volumes[occ_res]))
         if occ_res.any() else float("nan"),
         "residual_volume": float(dens.volumes[-1]) if not res[-1] else 0.0,
         "residual_fraction": float(dens.volumes[-1] / V) if not res[-1] else 0.0,
         "residual_stderr": float(dens.volume_stderr[-1]) if not res[-1] else 0.0,
         "residual_mass": float(dens.probabilities[-1]) if not res[-1] else 0.0,
         "heldout_loglik": ll.mean, "heldout_loglik_stderr": ll.stderr,
         "test_in_residual": int(np.sum(idx_te == K - 1)) if not res[-1] else 0,
         "n_test": int(len(x_test)), "entropy": dens.entropy(), "entropy_mm": dens.entropy("miller_madow"),
         "log_box_volume": math.log(V)}
    if dens.volume_method == "hit_and_run":
        st = np.asarray(dens.volume_status)
        r["status_counts"] = {STATUS[int(s)]: int(c) for s, c in zip(*np.unique(st, return_counts=True))}
        r["flagged"] = int(np.sum(st != hit_and_run.OK))
        r["seconds_per_region"] = seconds / max(len(st), 1)
        vol = dens.volumes[res]
        r["log_volume_resolved"] = {"min": float(np.log(vol).min()), "median": float(np.median(np.log(vol))),
                                    "max": float(np.log(vol).max())} if vol.size else None
    else:
        r["num_reference"] = int(dens.num_reference)
        r["reference_hit_regions"] = int(res.sum())
        r["seconds_per_hit_region"] = seconds / max(int(res.sum()), 1)  # regions the references hit
    return r


def diagnose(net, x, box, layer, k, key, options):
    """Anisotropy, phases and relative errors of the first ``k`` occupied regions (table order)."""
    part = partax.partition(net, np.asarray(x, net.dtype), scopes=("prefix",), progress=False)
    ex = np.asarray(x, np.float64)[np.asarray(part.table("prefix", layer).exemplars)][:k]
    t0 = time.perf_counter()
    res = hit_and_run.region_volumes(net, ex, box, jax.random.key(key), scope="prefix", layer=layer, **options)
    sec = time.perf_counter() - t0
    f = lambda a: [round(float(v), 4) for v in np.asarray(a)]  # noqa: E731
    return {"regions": int(len(ex)), "seconds": sec, "status": [STATUS[int(s)] for s in np.asarray(res.status)],
            "anisotropy": f(res.anisotropy), "phases": [int(p) for p in np.asarray(res.phases)],
            "log_volume": f(res.log_volume), "log_stderr": f(res.log_stderr), "inner_radius": f(res.inner_radius)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 training points, the random net only, 2^16 references")
    ap.add_argument("--n-train", type=int, nargs="+", default=[32, 150], help="training points of the density")
    ap.add_argument("--n-test", type=int, default=400, help="held-out points")
    ap.add_argument("--nets", nargs="+", default=["random", "trained"], choices=["random", "trained"])
    ap.add_argument("--epochs", type=int, default=20, help="classifier epochs of the trained net")
    ap.add_argument("--num-reference", type=int, default=1 << 18, help="uniform reference samples of volumes='mc'")
    ap.add_argument("--har", default="{}", help="JSON of hit_and_run_options (default: polytope_volumes' defaults)")
    ap.add_argument("--methods", nargs="+", default=["mc", "hit_and_run"], choices=["mc", "hit_and_run"])
    ap.add_argument("--diagnose", type=int, default=0, help="walk the first K occupied regions again for diagnostics")
    ap.add_argument("--box", type=float, nargs=2, default=[-0.05, 1.05], metavar=("LO", "HI"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/density_highdim/results.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_train, args.nets, args.num_reference = [8], ["random"], 1 << 16
    har = json.loads(args.har)

    x, y = digits()
    x = np.asarray(x, np.float32)  # already in [0, 1] (grey levels / 16)
    perm = np.random.default_rng(args.seed).permutation(len(x))
    tr, te = perm[:1200], perm[1200:1200 + args.n_test]
    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    box = Box(*args.box)
    layer = len(ARCH) - 2
    nets = make_nets(args.nets, xtr, ytr, xte, yte, args.epochs, args.seed)
    rows = []
    for name, (net, info) in nets.items():
        for n in args.n_train:
            xs = xtr[:n]
            occ = len(occupied_keys(net, xs, layer))
            for method in args.methods:
                t0, c0 = time.perf_counter(), time.process_time()
                kw = {"hit_and_run_options": har} if method == "hit_and_run" else {"num_reference": args.num_reference}
                try:
                    dens = density.estimate(net, xs, box, volumes=method, key=args.seed, **kw)
                except RuntimeError as e:  # e.g. no positive residual left: recorded, not hidden
                    rows.append({"net": name, "n_train": n, "method": method, "error": str(e),
                                 "seconds": time.perf_counter() - t0})
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                r = {"net": name, "n_train": n, **info, **summarise(dens, xte, time.perf_counter() - t0, occ),
                     "cpu_seconds": time.process_time() - c0}  # all threads: the measure on a shared machine
                rows.append(r)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
            if args.diagnose:
                d = diagnose(net, xs, box, layer, args.diagnose, args.seed, har)
                rows.append({"net": name, "n_train": n, "method": "diagnose", **d})
                print(json.dumps(rows[-1]), flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, json.dumps({"arch": ARCH, "box": args.box, "layer": layer, "har": har,
                                            "num_reference": args.num_reference, "n_test": args.n_test,
                                            "quick": args.quick, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
