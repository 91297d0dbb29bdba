"""The LP workload of ``partax bench``: Chebyshev LPs, the JAX interior point against HiGHS.

Both backends of :mod:`partax.geometry.lp` solve the same random polytopes
(:func:`random_polytopes`); the entry reports milliseconds per LP of each, the speed-up of
the interior point and the largest difference between their radii.

Example:
    >>> from partax.bench.lp import bench_chebyshev
    >>> r = bench_chebyshev(num=20, d=3, m=10, reps=1)
    >>> r["max_radius_diff"] < 1e-6, r["ipm_failures"], r["highs_failures"]
    (True, 0, 0)
"""

from __future__ import annotations

import time

import jax
import numpy as np

from partax.geometry.lp import OPTIMAL, chebyshev, chebyshev_lp, solve

__all__ = ["NAME", "random_polytopes", "bench_chebyshev", "highs_chebyshev", "entry", "markdown", "readme_text"]

NAME = "chebyshev_lp"  # the entry's name (its workload is ``lp``)


def random_polytopes(num: int, d: int, m: int, seed: int = 0):
    """``num`` random bounded polytopes in R^d: ``m`` halfspaces tangent to spheres of radius
    in ``[0.5, 1.5]`` around the origin (random unit normals), plus the box ``[-2, 2]^d``.

    Args:
      num: number of polytopes.
      d: dimension.
      m: random halfspaces per polytope.
      seed: seed of the normals and radii.

    Returns:
      ``(A: float64[num, m + 2d, d], b: float64[num, m + 2d])``; the origin is interior.

    Example:
      >>> A, b = random_polytopes(5, 3, 4)
      >>> A.shape, b.shape, bool((b > 0).all())  # b > 0: the origin is interior
      ((5, 10, 3), (5, 10), True)
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(num, m, d))
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    r = rng.uniform(0.5, 1.5, size=(num, m))
    eye = np.eye(d)
    A = np.concatenate([a, np.broadcast_to(np.concatenate([eye, -eye]), (num, 2 * d, d))], axis=1)
    b = np.concatenate([r, np.full((num, 2 * d), 2.0)], axis=1)
    return A, b


def highs_chebyshev(A, b, threads: int | None = None):
    """Chebyshev centres and radii by HiGHS on ``threads`` worker threads.

    The LP of :func:`partax.geometry.lp.chebyshev_lp` solved by
    :func:`partax.geometry.lp.solve` (``solver="highs"``, ``tol=1e-8``): what
    ``chebyshev(A, b, solver="highs")`` computes, with the thread count exposed.

    Args:
      A: ``[B, m, k]``; b: ``[B, m]``.
      threads: HiGHS worker threads (default: all cores).

    Returns:
      ``(centers: float64[B, k], radii: float64[B], status: int32[B])``; NaN centre and
      radius where the status is not 0.
    """
    c, AA, bb = chebyshev_lp(A, b)
    res = solve(c, AA, bb, solver="highs", tol=1e-8, threads=threads)
    return res.x[:, :-1], res.x[:, -1], res.status


def bench_chebyshev(num: int = 1000, d: int = 10, m: int = 60, seed: int = 0, reps: int = 3,
                    threads: int | None = None) -> dict:
    """Times the Chebyshev LPs of ``num`` random polytopes with both backends.

    The polytopes are :func:`random_polytopes` (``m`` random halfspaces plus a box, so
    ``m + 2d + 2`` rows and ``d + 1`` variables per LP). Each backend is warmed up once
    (JIT compilation excluded), then timed ``reps`` times; the best time counts.

    Args:
      num: number of polytopes (one LP each).
      d: dimension.
      m: random halfspaces per polytope.
      seed: seed of the polytopes.
      reps: timed repetitions per backend.
      threads: HiGHS worker threads (default: all cores).

    Returns:
      ``dict(ipm_ms_per_lp, highs_ms_per_lp, speedup, max_radius_diff, num, d, m,
      ipm_failures, highs_failures, backend)``.
    """
    A, b = random_polytopes(num, d, m, seed)
    out = {}
    radii = {}
    fails = {}
    for solver in ("ipm", "highs"):
        chebyshev(A[:2], b[:2], solver=solver)  # warm-up (compilation for the IPM)
        if solver == "ipm":  # compile for the full batch shape too
            chebyshev(A, b, solver=solver)
        best = np.inf
        for _ in range(max(1, reps)):
            t0 = time.perf_counter()
            _, r, st = chebyshev(A, b, solver=solver) if solver == "ipm" else highs_chebyshev(A, b, threads)
            best = min(best, time.perf_counter() - t0)
        out[f"{solver}_ms_per_lp"] = 1e3 * best / num
        radii[solver] = r
        fails[solver] = int(np.sum(st != OPTIMAL))
    out["speedup"] = out["highs_ms_per_lp"] / out["ipm_ms_per_lp"]
    out["max_radius_diff"] = float(np.max(np.abs(radii["ipm"] - radii["highs"])))
    out.update(num=num, d=d, m=m, ipm_failures=fails["ipm"], highs_failures=fails["highs"],
               backend=jax.default_backend())
    return out


def entry(quick: bool) -> dict:
    """The ``lp`` entry: :func:`bench_chebyshev` at d = 10, m = 60 (and d = 100, m = 300 in
    the full suite), 200 LPs each quick, 1000 otherwise.

    Args:
      quick: the quick sizes.

    Returns:
      ``{"name": "chebyshev_lp", "sizes": [bench_chebyshev(...) per size]}``.
    """
    sizes = [(10, 60)] if quick else [(10, 60), (100, 300)]
    num = 200 if quick else 1000
    return {"name": NAME, "sizes": [{**bench_chebyshev(num=num, d=d, m=m), "d": d, "m": m} for d, m in sizes]}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    lines = [
        "Chebyshev LPs on the same random polytopes (m halfspaces + a box), side by side.",
        "",
        "| d | m | LPs | ipm ms/LP | HiGHS ms/LP | speed-up | max radius diff |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {z['d']} | {z['m']} | {z['num']} | {z['ipm_ms_per_lp']:.3f} | {z['highs_ms_per_lp']:.3f} | "
        f"{z['speedup']:.1f} | {z['max_radius_diff']:.1e} |"
        for z in w["sizes"]
    ]
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause (no final full stop).
    """
    sizes = "; ".join(f"{z['speedup']:.1f}× at d = {z['d']}, m = {z['m']}" for z in w["sizes"])
    diff = max(z["max_radius_diff"] for z in w["sizes"])
    return (f"Chebyshev LPs, the JAX interior point against HiGHS on the same polytopes: {sizes} "
            f"(radii agree to {diff:.1e})")
