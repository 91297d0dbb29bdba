"""The counting workload of ``partax bench``: exact region counts by MILP against enumeration.

On the same random nets over the box ``[-1, 1]^d``: regions per second of SCIP's native solution
counting (:func:`partax.counting.count_regions`, ``backend="scip"``), the HiGHS no-good loop
(``backend="highs"``) and partax's adjacency enumeration
(:func:`partax.geometry.enumerate_regions`), with the three counts side by side (they must agree);
and the parity bound's time (:func:`partax.counting.parity_lower_bound`, 5 trials per level)
against exact counting at the largest size.

Example:
    >>> from partax.bench.counting import bench_net
    >>> r = bench_net([2, 4, 4, 1], highs=False)
    >>> r["agree"], r["scip_count"] == r["enumerate_count"]
    (True, True)
"""

from __future__ import annotations

import time

import jax

from partax.counting import count_regions, parity_lower_bound
from partax.geometry import Box
from partax.geometry.enumerate import enumerate_regions
from partax.nets import mlp
from partax.stability import preactivation_bounds

__all__ = ["NAME", "bench_net", "entry", "markdown", "readme_text"]

NAME = "counting"


def bench_net(widths, seed: int = 0, bias_std: float = 0.3, highs: bool = True, parity: bool = False,
              time_limit: float = 600.0, highs_limit: float = 120.0) -> dict:
    """Counts the regions of one random net in ``[-1, 1]^d`` three ways and times them.

    Args:
      widths: ``[d, n_1, ..., n_L, d_out]`` of :func:`partax.mlp`.
      seed: the net's seed.
      bias_std: standard deviation of its biases.
      highs: also run the HiGHS no-good loop (the slowest).
      parity: also time :func:`partax.counting.parity_lower_bound` (5 trials per level).
      time_limit: seconds for each SCIP run.
      highs_limit: seconds for the HiGHS loop (its rate is still ``count / seconds`` when the limit
        stops it; ``highs_exact`` says so).

    Returns:
      ``dict(widths, regions, scip_count, scip_seconds, scip_regions_per_s, highs_*,
      enumerate_*, bound_seconds, agree, exact, parity_log2_bound, parity_seconds, ...)``;
      ``agree`` is True iff every count that finished equals the enumeration's.
    """
    net = mlp(jax.random.key(seed), list(widths), bias_std=bias_std)
    box = Box(-1.0, 1.0)
    out = {"widths": list(widths)}
    t0 = time.perf_counter()
    bounds = preactivation_bounds(net, box, "lp")
    out["bound_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    en = enumerate_regions(net, box, progress=False)
    out.update(enumerate_count=en.num_regions, enumerate_seconds=time.perf_counter() - t0,
               enumerate_complete=bool(en.complete))
    runs = [("scip", time_limit)] + ([("highs", highs_limit)] if highs else [])
    exact = True
    counts = [en.num_regions]
    for backend, limit in runs:
        res = count_regions(net, box, backend=backend, time_limit=limit, bounds=bounds)
        out[f"{backend}_count"] = res.count
        out[f"{backend}_seconds"] = res.seconds
        out[f"{backend}_exact"] = bool(res.exact)
        exact &= bool(res.exact)
        if res.exact:
            counts.append(res.count)
    out["regions"] = en.num_regions
    for k in ("scip", "highs", "enumerate"):
        if f"{k}_seconds" in out:
            out[f"{k}_regions_per_s"] = out[f"{k}_count"] / max(out[f"{k}_seconds"], 1e-9)
    out["agree"] = bool(len(set(counts)) == 1)
    out["exact"] = exact
    if parity:
        pb = parity_lower_bound(net, box, trials=5, backend="scip", bounds=bounds, time_limit=time_limit)
        out.update(parity_log2_bound=pb.log2_bound, parity_probability=pb.probability, parity_seconds=pb.seconds,
                   parity_certain=pb.certain, parity_complete=pb.complete)
    return out


def entry(quick: bool) -> dict:
    """The ``counting`` entry: :func:`bench_net` on random nets of growing size.

    Quick: ``[3, 6, 6, 1]`` and ``[4, 8, 8, 1]`` (the HiGHS loop on the first only, at most 60 s).
    Full: also ``[5, 10, 10, 1]`` and ``[6, 10, 10, 1]`` (the HiGHS loop on the first two, at most
    300 s each); the parity bound on the largest.

    Args:
      quick: the quick sizes.

    Returns:
      ``{"name": "counting", "sizes": [bench_net(...) per net]}``.
    """
    nets = [[3, 6, 6, 1], [4, 8, 8, 1]] if quick else [[3, 6, 6, 1], [4, 8, 8, 1], [5, 10, 10, 1], [6, 10, 10, 1]]
    sizes = []
    for i, w in enumerate(nets):
        sizes.append(bench_net(w, highs=(i == 0) if quick else (i <= 1), parity=(i == len(nets) - 1),
                               highs_limit=60.0 if quick else 300.0))
    return {"name": NAME, "sizes": sizes}


def _fmt(z, k):
    v = z.get(f"{k}_regions_per_s")
    return "—" if v is None else f"{v:,.0f}"


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    lines = [
        "Exact region counts in [-1, 1]^d, same nets: regions per second of each method.",
        "",
        "| net | regions | SCIP count /s | HiGHS loop /s | enumeration /s | agree |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for z in w["sizes"]:
        net = "-".join(map(str, z["widths"]))
        lines.append(f"| {net} | {z['regions']} | {_fmt(z, 'scip')} | {_fmt(z, 'highs')} | "
                     f"{_fmt(z, 'enumerate')} | {z['agree']} |")
    last = w["sizes"][-1]
    if "parity_seconds" in last:
        lines += ["", f"Parity bound (5 trials per level) on {'-'.join(map(str, last['widths']))}: "
                      f"2^{last['parity_log2_bound']:.0f} regions with probability {last['parity_probability']:.3f} "
                      f"in {last['parity_seconds']:.2f} s, against {last['regions']} regions counted exactly "
                      f"by SCIP in {last['scip_seconds']:.2f} s."]
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause (no final full stop).
    """
    last = w["sizes"][-1]
    net = "-".join(map(str, last["widths"]))
    return (f"exact region counts on {net} in [-1, 1]^d: {last['regions']} regions, SCIP counting "
            f"{_fmt(last, 'scip')} regions/s against {_fmt(last, 'enumerate')} for adjacency enumeration")
