"""The linear-terms workload of ``partax bench``: per region (partax) against per input (jacfwd).

:func:`partax.tropical.linear_terms` computes the affine map of every logit once per
occupied region, from the region's code, in float64; the common practice is
``jax.vmap(jax.jacfwd(net))`` on every input (float32, the net's dtype). The inputs are
``regions`` random points of ``[0, 1]^d`` each repeated with a small Gaussian jitter, so that
many inputs share a region (the entry reports the number of distinct regions found: it bounds
the per-region work). The per-input baseline is timed on ``baseline_inputs`` of the inputs and
scaled linearly to all of them when that is fewer (``baseline_extrapolated`` says so); the
largest difference between the two Jacobians on those inputs is reported.

Example:
    >>> from partax.bench.tropical import bench_linear_terms
    >>> r = bench_linear_terms([16, 8, 8, 3], n=512, regions=8, reps=1)
    >>> r["max_abs_diff"] < 1e-4, r["distinct_regions"] <= 512
    (True, True)
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import partax
from partax.tropical import linear_terms

__all__ = ["NAME", "bench_linear_terms", "entry", "markdown", "readme_text"]

NAME = "linear_terms"  # the entry's name (its workload is ``tropical``)


def _inputs(d: int, n: int, regions: int, radius: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.0, 1.0, size=(regions, d))
    x = centers[rng.integers(0, regions, size=n)] + radius * rng.normal(size=(n, d))
    return x.astype(np.float32)


def _best(fn, reps: int) -> float:
    best = np.inf
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_linear_terms(widths, n: int = 100_000, regions: int = 1000, radius: float = 1e-4, seed: int = 0,
                       reps: int = 2, baseline_inputs: int | None = None, chunk: int = 1024,
                       split: bool = True) -> dict:
    """Times linear terms per region against per-input ``jacfwd`` on the same inputs.

    Args:
      widths: the MLP's widths ``[d_in, n_1, ..., n_L, d_out]`` (He-normal, bias std 0.1, key 0).
      n: number of inputs.
      regions: number of jittered centres the inputs are drawn around.
      radius: the jitter's standard deviation.
      seed: seed of the inputs.
      reps: timed repetitions (best counts; compilation excluded by a warm-up).
      baseline_inputs: inputs the per-input baseline is timed on (default: all ``n``).
      chunk: inputs per ``jacfwd`` call.
      split: also time the terms with the tropical split.

    Returns:
      ``dict(widths, n, distinct_regions, per_region_s, per_region_split_s, jacfwd_s,
      jacfwd_inputs_timed, baseline_extrapolated, speedup, speedup_split, max_abs_diff, backend)``;
      ``jacfwd_s`` is for all ``n`` inputs (scaled when extrapolated).
    """
    widths = [int(w) for w in widths]
    net = partax.mlp(jax.random.key(0), widths, bias_std=0.1)
    x = _inputs(widths[0], n, regions, radius, seed)
    linear_terms(net, x, split=False)  # warm-up: compilation
    per_region = _best(lambda: linear_terms(net, x, split=False), reps)
    terms = linear_terms(net, x, split=False)
    per_region_split = None
    if split:
        linear_terms(net, x)
        per_region_split = _best(lambda: linear_terms(net, x), reps)
    m = n if baseline_inputs is None else max(1, min(n, int(baseline_inputs)))
    chunk = min(chunk, m)
    jac = jax.jit(jax.vmap(jax.jacfwd(lambda p: net(p[None])[0])))
    xb = x[:m]
    pad = (-m) % chunk
    xp = np.concatenate([xb, np.zeros((pad, xb.shape[1]), xb.dtype)]) if pad else xb
    jac(jnp.asarray(xp[:chunk])).block_until_ready()  # warm-up

    def baseline():
        return [np.asarray(jac(jnp.asarray(xp[i : i + chunk]))) for i in range(0, xp.shape[0], chunk)]

    t_base = _best(baseline, reps)
    J = np.concatenate(baseline())[:m]
    t_all = t_base * n / m
    diff = float(np.max(np.abs(terms.region_coef[terms.index[:m]] - J)))
    return {"widths": widths, "n": n, "distinct_regions": terms.num_regions, "per_region_s": per_region,
            "per_region_split_s": per_region_split, "jacfwd_s": t_all, "jacfwd_inputs_timed": m,
            "baseline_extrapolated": m < n, "speedup": t_all / per_region,
            "speedup_split": None if per_region_split is None else t_all / per_region_split,
            "max_abs_diff": diff, "backend": jax.default_backend()}


def entry(quick: bool) -> dict:
    """The ``tropical`` entry: 10^5 inputs of a 784-256-256-256-10 MLP around 1000 centres (quick:
    10^4 inputs of 784-64-64-64-10 around 200). On CPU the per-input baseline is timed on 8192
    inputs (4096 quick) and scaled.

    Args:
      quick: the quick sizes.

    Returns:
      ``{"name": "linear_terms", "sizes": [bench_linear_terms(...)]}``.
    """
    cpu = jax.default_backend() == "cpu"
    if quick:
        r = bench_linear_terms([784, 64, 64, 64, 10], n=10_000, regions=200, baseline_inputs=4096 if cpu else None)
    else:
        r = bench_linear_terms([784, 256, 256, 256, 10], n=100_000, regions=1000, baseline_inputs=8192 if cpu else None)
    return {"name": NAME, "sizes": [r]}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    lines = [
        "Linear terms of every logit on each input's region: once per region (float64, partax) "
        "against per-input `jacfwd` (float32), same inputs.",
        "",
        "| net | inputs | regions | per region s | with split s | jacfwd s | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for z in w["sizes"]:
        est = f" (est. from {z['jacfwd_inputs_timed']})" if z["baseline_extrapolated"] else ""
        split = "–" if z["per_region_split_s"] is None else f"{z['per_region_split_s']:.2f}"
        lines.append(f"| {'-'.join(map(str, z['widths']))} | {z['n']} | {z['distinct_regions']} | "
                     f"{z['per_region_s']:.2f} | {split} | {z['jacfwd_s']:.1f}{est} | {z['speedup']:.0f} | "
                     f"{z['max_abs_diff']:.1e} |")
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause (no final full stop).
    """
    z = w["sizes"][0]
    return (f"linear terms of a {'-'.join(map(str, z['widths']))} MLP on {z['n']} inputs in "
            f"{z['distinct_regions']} regions, per region against per-input jacfwd: {z['speedup']:.0f}×")
