"""The n-D enumeration workload of ``partax bench``: boxes and all of R^d, against relucent.

:func:`bench_enumerate` times :func:`partax.geometry.enumerate_regions` cold and warm on small
nets; when the ``relucent`` package is installed (a baseline of the benchmark only, never a
dependency of partax) its breadth-first search runs on the same weights in the same run.

Example:
    >>> from partax.bench.enumerate import markdown
    >>> w = {"workloads": [{"name": "3-8-8-1", "box": "[-2, 2]^3", "regions": 50, "complete": True,
    ...                     "regions_per_s": 1000.0}]}
    >>> markdown(w)[-1]
    '| 3-8-8-1 | [-2, 2]^3 | 50 | True | 1,000 |'
"""

from __future__ import annotations

import time

import numpy as np

from partax.geometry import Box
from partax.geometry.enumerate import enumerate_regions
from partax.nets import Net

__all__ = ["NAME", "BENCH_WORKLOADS", "bench_enumerate", "relucent_regions", "entry", "markdown", "readme_text"]

NAME = "enumerate"


# name -> (widths, half-width h of the box [-h, h]^d or None for all of R^d, quick)
BENCH_WORKLOADS = {
    "3-8-8-1": ([3, 8, 8, 1], 2.0, True),
    "3-16-16-1": ([3, 16, 16, 1], 2.0, False),
    "4-8-8-8-1": ([4, 8, 8, 8, 1], 2.0, True),
    "4-12-12-12-1": ([4, 12, 12, 12, 1], 2.0, False),
    "R^2 2-32-32-1": ([2, 32, 32, 1], None, True),
    "R^3 3-10-10-1": ([3, 10, 10, 1], None, True),
    "R^3 3-12-12-1": ([3, 12, 12, 1], None, False),
    "R^4 4-8-8-1": ([4, 8, 8, 1], None, False),
}


def relucent_regions(net, timeout_regions: int = 200_000, nworkers: int = 1):
    """Regions of R^d by relucent's breadth-first search on the same weights (a baseline).

    relucent (``pip install relucent``; it uses Gurobi) is a baseline of the benchmark only,
    never a dependency of partax. Its ``Complex.bfs`` (default settings otherwise:
    certification on) explores the polyhedral complex of the net's hidden layers in all of
    R^d from the origin.

    Args:
      net: an unstacked ReLU :class:`partax.Net` (its output layer does not matter).
      timeout_regions: relucent's ``max_polys`` cap.
      nworkers: relucent's worker processes (1 by default: its pool forks, which is unsafe
        in a process where JAX already runs threads).

    Returns:
      ``(number of regions, seconds)``.

    Raises:
      ImportError: relucent is not installed.
    """
    if not isinstance(net, Net) or net.stack_shape:
        raise TypeError(f"net: expected an unstacked partax.Net, got {type(net).__name__}")
    if net.activation != "relu":
        raise ValueError(f"net: relucent handles ReLU nets only, got activation {net.activation!r}")
    from relucent import Complex
    from relucent.model.model import LinearLayer, ReLULayer, ReLUNetwork

    layers = []
    for W, b in zip(net.weights, net.biases):
        layers += [LinearLayer(np.asarray(W, np.float64).T.copy(), np.asarray(b, np.float64).copy()), ReLULayer()]
    rnet = ReLUNetwork(layers[:-1])
    cx = Complex(rnet)
    t0 = time.perf_counter()
    cx.bfs(start=np.zeros(net.input_dim), verbose=0, max_polys=timeout_regions, nworkers=nworkers)
    return len(cx), time.perf_counter() - t0


def bench_enumerate(quick: bool = False, *, seed: int = 0, solver: str = "auto", bias_std: float = 0.5,
                    workloads=None, relucent: bool = True) -> dict:
    """Regions per second of :func:`enumerate_regions` on small nets, in boxes and in all of R^d.

    Each workload is ``partax.mlp(jax.random.key(seed), widths, bias_std=bias_std)`` over the
    box ``[-h, h]^d`` of :data:`BENCH_WORKLOADS`, or over all of R^d. It is run once cold
    (the first call in this process for that net: ``first_seconds``, with whatever
    compilation it needs) and then timed warm; ``first_over_warm`` is their ratio. The
    1-minute load average before and after each timed run is reported next to the rate (the
    rate is that of a shared machine). For the R^d workloads, when the ``relucent`` package
    is importable, its breadth-first search runs on the same weights in the same process
    (``relucent`` entry: its seconds, its count, whether the counts are equal, and partax's
    speed-up); otherwise the entry says ``"not installed"``.

    Args:
      quick: only the workloads marked quick.
      seed, bias_std: the nets' initialisation.
      solver: the Chebyshev LP backend (see :func:`enumerate_regions`).
      workloads: optional names from :data:`BENCH_WORKLOADS` (overrides ``quick``).
      relucent: run the relucent baseline on the R^d workloads when it is installed.

    Returns:
      ``dict(workloads=[dict(name, widths, box, regions, unbounded, complete, volume_error,
      seconds, regions_per_s, first_seconds, warmup_seconds, first_over_warm, loadavg, stats,
      relucent)], cpus, backend, relucent_version)``.

    Example:
      >>> r = bench_enumerate(workloads=["3-8-8-1"])
      >>> w = r["workloads"][0]
      >>> w["complete"], w["regions_per_s"] > 0
      (True, True)
    """
    import os

    import jax

    from partax.nets import mlp

    if workloads is None:
        names = [k for k, v in BENCH_WORKLOADS.items() if v[2] or not quick]
    else:
        names = list(workloads)
        for n in names:
            if n not in BENCH_WORKLOADS:
                raise ValueError(f"workloads: unknown workload {n!r}; expected names from {list(BENCH_WORKLOADS)}")
    try:
        import relucent as _relucent_pkg

        relucent_version = getattr(_relucent_pkg, "__version__", "unknown")
    except ImportError:
        relucent_version = None
    out = []
    for name in names:
        widths, h, _ = BENCH_WORKLOADS[name]
        net = mlp(jax.random.key(seed), widths, bias_std=bias_std)
        box = None if h is None else Box(-h, h)
        kw = dict(progress=False, solver=solver, max_regions=10_000_000)
        t0 = time.perf_counter()
        enumerate_regions(net, box, **kw)  # first call: compilations, if any
        first = time.perf_counter() - t0
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = enumerate_regions(net, box, **kw)
        dt = time.perf_counter() - t0
        entry = dict(name=name, widths=list(widths), box="R^d" if h is None else [-h, h], regions=res.num_regions,
                     unbounded=res.num_unbounded, complete=res.complete, volume_error=res.volume_error,
                     seconds=round(dt, 3), regions_per_s=round(res.num_regions / dt, 1),
                     first_seconds=round(first, 3), warmup_seconds=round(first, 3),
                     first_over_warm=round(first / dt, 2),
                     loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)],
                     stats={k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.stats.items()
                            if k != "cert_box"})
        if h is None:
            if relucent_version is None:
                entry["relucent"] = "not installed"
            elif not relucent:
                entry["relucent"] = "not run (relucent=False)"
            else:
                try:
                    count, secs = relucent_regions(net)
                    entry["relucent"] = dict(seconds=round(secs, 3), regions=count, equal_counts=count == res.num_regions,
                                             speedup=round(secs / dt, 1))
                except Exception as e:  # a baseline failing is reported, not raised
                    entry["relucent"] = f"failed: {type(e).__name__}: {e}"
        out.append(entry)
    return dict(workloads=out, cpus=os.cpu_count(), backend=jax.default_backend(), relucent_version=relucent_version)


def entry(quick: bool) -> dict:
    """The ``enumerate`` entry.

    Args:
      quick: only the quick workloads.

    Returns:
      ``{"name": "enumerate", **bench_enumerate(quick=quick)}``.
    """
    return {"name": NAME, **bench_enumerate(quick=quick)}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    rows = w["workloads"]
    if not any("first_over_warm" in z for z in rows):  # runs before R^d enumeration and relucent
        lines = ["| net | box | regions | complete | regions/s |", "|---|---|---:|---|---:|"]
        return lines + [
            f"| {z['name']} | {z['box']} | {z['regions']:,} | {z['complete']} | {z['regions_per_s']:,.0f} |"
            for z in rows
        ]
    lines = ["| net | box | regions | unbounded | complete | regions/s | first / warm call | relucent s | speed-up |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for z in rows:
        rel = z.get("relucent")
        if isinstance(rel, dict):
            eq = "" if rel.get("equal_counts") else " (counts differ!)"
            rel_cells = f"{rel['seconds']:.2f} | {rel['seconds'] / z['seconds']:.1f}×{eq}"
        else:
            rel_cells = f"{rel or '–'} | –"
        lines.append(
            f"| {z['name']} | {z['box']} | {z['regions']:,} | {z.get('unbounded', '–')} | {z['complete']} "
            f"| {z['regions_per_s']:,.0f} | {z.get('first_over_warm', float('nan')):.2f} | {rel_cells} |"
        )
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause.
    """
    parts = []
    for z in w["workloads"]:
        where = " of R^d" if z.get("box") == "R^d" else ""
        part = f"{z['name']}{where}: {z['regions']:,} regions at {z['regions_per_s'] / 1e3:.1f} k/s"
        rel = z.get("relucent")
        if isinstance(rel, dict):
            part += f", {rel['seconds'] / z['seconds']:.0f}× relucent's time" + (
                "" if rel.get("equal_counts") else " (counts differ)")
        parts.append(part)
    return "exact n-D enumeration (" + "; ".join(parts) + ")"
