"""The density workload of ``partax bench``: ``log_prob`` against the partition, and region volumes.

On one random 8-input net over the box ``[-1, 1]^8`` (issue 15, item 8):

* **log_prob throughput**: :meth:`partax.density.PartitionDensity.log_prob` on ``n`` uniform
  inputs against :func:`partax.partition` of the same net on the same inputs (default scopes,
  and the prefix scope alone), side by side in one run, best of ``reps`` (interleaved);
  ``log_prob_ratio`` is log_prob's rate over the partition's (target ``>= 0.8``);
* **Monte Carlo volumes**: :func:`partax.density.estimate` with ``volumes="mc"`` from ``M``
  uniform reference samples: the time, the regions hit and the median relative standard error
  of their volumes (over the regions hit at least ``min_hits`` times, and over all);
* **hit-and-run volumes**: :func:`partax.geometry.hit_and_run.region_volumes` on the
  ``hr_regions`` most-hit regions: the time and the median relative standard error, and the
  median relative difference to their Monte Carlo volumes (there the reference, whose relative
  errors are far smaller), with the fraction of regions within 3 combined standard errors;
* (full run) **64-D digits regions**: a 64-32-32-10 net trained on the 8x8 digits, hit-and-run
  volumes of a few occupied regions of its box ``[0, 1]^64``, with their relative errors and
  the time.

Example:
    >>> from partax.bench.density import bench_density
    >>> r = bench_density(widths=(8, 8, 1), inputs=2**12, reference=2**14, hr_regions=4, reps=1,
    ...                   chains=16, steps=40)
    >>> r["regions_hit"] > 0, r["log_prob_inputs_per_s"] > 0, r["hr_ok"] == 4
    (True, True, True)
"""

from __future__ import annotations

import time

import jax
import numpy as np

from partax.coding import region_ids
from partax.density import estimate
from partax.bench.partition import best_of
from partax.engine import partition
from partax.geometry import Box
from partax.geometry.hit_and_run import OK, region_volumes
from partax.nets import mlp

__all__ = ["NAME", "bench_density", "digits_volumes", "entry", "markdown", "readme_text"]

NAME = "density"




def bench_density(widths=(8, 16, 16, 1), inputs: int = 10**6, reference: int = 10**7, hr_regions: int = 200,
                  reps: int = 3, seed: int = 0, min_hits: int = 100, chains: int = 64, steps=None) -> dict:
    """Measures ``log_prob`` against the partition, and the two volume estimators, on one net.

    Args:
      widths: the net's widths (``widths[0]`` inputs; the box is ``[-1, 1]^d``).
      inputs: ``n`` inputs for the throughput comparison.
      reference: ``M`` reference samples for the Monte Carlo volumes.
      hr_regions: regions (the most hit) given hit-and-run volumes.
      reps: repetitions of the timed throughput measurements (best kept).
      seed: the net's seed.
      min_hits: the Monte Carlo median relative error is also reported over regions with at
        least this many hits.
      chains, steps: of :func:`partax.geometry.hit_and_run.polytope_volumes`.

    Returns:
      A dict of the numbers (see the module docstring); times in seconds, rates in inputs/s;
      ``hr_includes_compile``: ``hr_seconds`` includes the compilation (64 regions or fewer).
    """
    widths = list(widths)
    d = widths[0]
    net = mlp(jax.random.key(seed), widths, bias_std=0.3)
    box = Box(-1.0, 1.0)
    out = {"widths": widths, "inputs": int(inputs), "reference": int(reference)}
    rng = np.random.default_rng(seed)
    train = rng.uniform(-1, 1, (20_000, d))
    t0 = time.perf_counter()
    dens = estimate(net, train, box, volumes="mc", num_reference=int(reference), key=seed)
    out["mc_seconds"] = time.perf_counter() - t0
    res = dens.resolved
    hits = dens.reference_hits[res]
    rel = dens.volume_stderr[res] / dens.volumes[res]
    out.update(regions_hit=int(res.sum()), mc_median_rel_stderr=float(np.median(rel)),
               mc_median_rel_stderr_min_hits=float(np.median(rel[hits >= min_hits])) if np.any(hits >= min_hits)
               else float("nan"), min_hits=int(min_hits), residual_volume=float(dens.volumes[~res].sum()))
    # throughput, side by side
    x = np.asarray(rng.uniform(-1, 1, (int(inputs), d)), net.dtype)
    dens.log_prob(x[:1024])  # warm-up: compilation excluded
    partition(net, x[:1024], progress=False)
    partition(net, x[:1024], scopes=("prefix",), progress=False)
    best = best_of({"log_prob": lambda: dens.log_prob(x),
                     "partition": lambda: partition(net, x, progress=False),
                     "partition_prefix": lambda: partition(net, x, scopes=("prefix",), progress=False)}, reps)
    for k, v in best.items():
        out[f"{k}_seconds"] = v
        out[f"{k}_inputs_per_s"] = inputs / v
    out["log_prob_ratio"] = best["partition"] / best["log_prob"]
    out["log_prob_ratio_prefix"] = best["partition_prefix"] / best["log_prob"]
    # hit-and-run on the most-hit regions, against their Monte Carlo volumes
    order = np.argsort(-hits, kind="stable")[: int(hr_regions)]
    idx = np.flatnonzero(res)[order]
    # an exemplar of each: the first of 2^18 fresh uniform points that falls in it (the most-hit
    # regions hold at least 1e-3 of the box, so all are found; a region not found is dropped)
    pts = np.asarray(rng.uniform(-1, 1, (1 << 18, d)), net.dtype)
    pk = region_ids(net, pts, "prefix")[:, dens.layer - 1]
    uk, first = np.unique(pk, return_index=True)
    pos = np.minimum(np.searchsorted(uk, dens.keys[idx]), len(uk) - 1)
    found = uk[pos] == dens.keys[idx]
    idx = idx[found]
    ex = pts[first[pos[found]]].astype(np.float64)
    # warm-up on the first batch (the same shape compiles), excluded from hr_seconds; with at most
    # one batch it would be the whole run again, so it is skipped and hr_seconds includes compilation
    out["hr_includes_compile"] = bool(idx.size <= 64)
    if idx.size > 64:
        t0 = time.perf_counter()
        region_volumes(net, ex[:64], box, jax.random.key(seed), chains=chains, steps=steps)
        out["hr_warmup_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    hr = region_volumes(net, ex, box, jax.random.key(seed), chains=chains, steps=steps)
    out["hr_seconds"] = time.perf_counter() - t0
    ok = hr.status == OK
    g = dens.volumes[~res].sum() / box.volume(d)  # the Good–Turing fraction the hit regions were scaled by
    mc_v, mc_se = dens.volumes[idx][ok] / (1.0 - g), dens.volume_stderr[idx][ok]  # V m_R / M
    diff = hr.volume[ok] - mc_v
    comb = np.sqrt(hr.stderr[ok] ** 2 + mc_se**2)
    out.update(hr_regions=int(idx.size), hr_ok=int(ok.sum()),
               hr_median_rel_stderr=float(np.median(hr.log_stderr[ok])) if ok.any() else float("nan"),
               hr_median_rel_error_vs_mc=float(np.median(np.abs(diff) / mc_v)) if ok.any() else float("nan"),
               hr_within_3se=float(np.mean(np.abs(diff) < 3 * comb)) if ok.any() else float("nan"),
               hr_seconds_per_region=out["hr_seconds"] / max(idx.size, 1),
               hr_median_phases=float(np.median(hr.phases[ok])) if ok.any() else float("nan"))
    return out


def digits_volumes(regions: int = 4, epochs: int = 30, seed: int = 0, chains: int = 64, steps=None) -> dict:
    """Hit-and-run volumes of the most occupied regions of a 64-32-32-10 digits net in ``[0, 1]^64``.

    Args:
      regions: how many regions (the most occupied by the 1,797 digits).
      epochs: Adam (``3e-3``) epochs of training, batch 128.
      seed: the net's seed.
      chains, steps: of :func:`partax.geometry.hit_and_run.polytope_volumes`.

    Returns:
      ``dict(regions, occupied, num_regions, seconds, log_volume, rel_stderr, phases, status,
      anisotropy, accuracy)``: raw estimates (``max_anisotropy=inf``; see the module docstring of
      :mod:`partax.geometry.hit_and_run` on what an anisotropy above 3 means).
    """
    import optax

    from partax.datasets import digits
    from partax.train import fit

    x, y = digits()
    net, hist = fit(mlp(jax.random.key(seed), [64, 32, 32, 10]), x, y, optax.adam(3e-3), epochs=epochs,
                    batch_size=128, key=seed)
    tab = partition(net, x, progress=False).table("prefix", 2)
    order = np.argsort(-np.asarray(tab.counts), kind="stable")[:regions]
    ex = np.asarray(x[np.asarray(tab.exemplars)[order]], np.float64)
    t0 = time.perf_counter()
    # max_anisotropy=inf: the raw estimates, with their anisotropy (> 3: the walk has not mixed,
    # region_volumes' default would flag them NOT_ROUND; see partax.geometry.hit_and_run)
    hr = region_volumes(net, ex, Box(0.0, 1.0), jax.random.key(seed), chains=chains, steps=steps,
                        max_anisotropy=np.inf)
    return {"anisotropy": hr.anisotropy.tolist(), "regions": int(regions), "occupied": [int(c) for c in np.asarray(tab.counts)[order]],
            "num_regions": int(tab.num_regions), "seconds": time.perf_counter() - t0,
            "log_volume": hr.log_volume.tolist(), "rel_stderr": hr.log_stderr.tolist(), "phases": hr.phases.tolist(),
            "status": hr.status.tolist(), "accuracy": float(hist["accuracy"][-1])}


def entry(quick: bool) -> dict:
    """The ``density`` entry.

    Quick: an 8-16-16-1 net, ``2^16`` inputs, ``2^20`` reference samples, 20 hit-and-run regions,
    no digits. Full: 8-8-8-1 and 8-16-16-1, ``10^6`` inputs, ``10^7`` reference samples, 200
    regions each, and :func:`digits_volumes` on 4 regions.

    Args:
      quick: the quick sizes.

    Returns:
      ``{"name": "density", "sizes": [bench_density(...)], "digits": ... or None}``.
    """
    if quick:
        sizes = [bench_density((8, 16, 16, 1), inputs=2**16, reference=2**20, hr_regions=20, reps=2)]
        return {"name": NAME, "sizes": sizes, "digits": None}
    sizes = [bench_density((8, 8, 8, 1)), bench_density((8, 16, 16, 1))]
    return {"name": NAME, "sizes": sizes, "digits": digits_volumes()}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    lines = [
        "Regions-as-bins densities on [-1, 1]^8: `log_prob` against the partition of the same net on the same",
        "inputs, and region volumes (Monte Carlo from uniform reference samples; multiphase hit-and-run).",
        "",
        "| net | inputs | log_prob in/s | partition in/s | ratio | prefix-only ratio | reference | MC s | regions "
        "| MC median rel. se | HR regions | HR s/region | HR median rel. se | HR vs MC median rel. diff | within 3 se |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for z in w["sizes"]:
        lines.append(
            f"| {'-'.join(map(str, z['widths']))} | {z['inputs']:,} | {z['log_prob_inputs_per_s']:,.0f} | "
            f"{z['partition_inputs_per_s']:,.0f} | {z['log_prob_ratio']:.2f} | {z['log_prob_ratio_prefix']:.2f} | "
            f"{z['reference']:,} | {z['mc_seconds']:.1f} | {z['regions_hit']:,} | {z['mc_median_rel_stderr']:.3f} | "
            f"{z['hr_ok']}/{z['hr_regions']} | {z['hr_seconds_per_region']:.3f}{'*' if z.get('hr_includes_compile') else ''} | {z['hr_median_rel_stderr']:.3f} | "
            f"{z['hr_median_rel_error_vs_mc']:.3f} | {z['hr_within_3se']:.2f} |")
    if any(z.get("hr_includes_compile") for z in w["sizes"]):
        lines += ["", "\\* including the compilation (64 regions or fewer: no separate warm-up)."]
    dg = w.get("digits")
    if dg:
        lv = ", ".join(f"{v:.1f}" for v in dg["log_volume"])
        rs = ", ".join(f"{v:.2f}" for v in dg["rel_stderr"])
        lines += ["", f"64-D digits net 64-32-32-10 ({dg['num_regions']} regions hold the 1,797 digits): hit-and-run "
                      f"log-volumes of its {dg['regions']} most occupied regions in [0, 1]^64: {lv} "
                      f"(relative standard errors {rs}; statuses {dg['status']}), {dg['seconds']:.1f} s in all. "
                      f"Anisotropy after rounding {', '.join(f'{v:.1f}' for v in dg.get('anisotropy', []))}: above 3 the "
                      "walk has not mixed and the estimates are biased low (a 64-D simplex, anisotropy 3.5, reads 4 "
                      "standard errors low; a 64-D cube, 2.0, 1-2.5 low), so these are lower estimates whose errors "
                      "are not to be trusted (see partax.geometry.hit_and_run, \"High dimension\")."]
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause (no final full stop).
    """
    z = w["sizes"][-1]
    return (f"densities on {'-'.join(map(str, z['widths']))}: log_prob at {z['log_prob_ratio']:.2f}x the partition's "
            f"throughput, Monte Carlo volumes of {z['regions_hit']:,} regions from {z['reference']:,} samples in "
            f"{z['mc_seconds']:.1f} s (median relative standard error {z['mc_median_rel_stderr']:.3f})")
