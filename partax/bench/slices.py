"""The 2D slice workload of ``partax bench``: regions per second of the exact slice enumeration.

Example:
    >>> from partax.bench.slices import markdown
    >>> markdown({"slice_tiny": {"regions": 10, "cells": 12, "seconds": 0.5, "regions_per_s": 20.0}})[-1]
    '| tiny | 10 | 0.50 | 20 |'
"""

from __future__ import annotations

import time

import jax
import numpy as np

from partax.geometry.slices import Plane, slice_regions
from partax.nets import mlp

__all__ = ["NAME", "bench_slices", "entry", "markdown", "readme_text"]

NAME = "slices"


def bench_slices(seed: int = 0) -> dict:
    """Regions per second of :func:`partax.geometry.slice_regions` on two workloads (warm-up excluded).

    Workloads: a 2-64-64-64-1 net (``bias_std=0.5``) on the input plane ``[-3, 3]^2``, and a
    784-256-256-256-10 net (``bias_std=0.1``) on the plane through three uniform ``[0, 1]``
    inputs (``Plane.through``, margin 1.5).

    Args:
      seed: seed of the nets and inputs.

    Returns:
      ``{"slice_<widths>": {"regions", "cells", "seconds", "regions_per_s"}}``.
    """
    out = {}
    key = jax.random.key(seed)
    k1, k2 = jax.random.split(key)
    net = mlp(k1, [2, 64, 64, 64, 1], bias_std=0.5)
    workloads = [("slice_2-64-64-64-1", net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-3, 3), (-3, 3))))]
    net = mlp(k2, [784, 256, 256, 256, 10], bias_std=0.1)
    x = np.random.default_rng(seed).random((3, 784))
    workloads.append(("slice_784-256-256-256-10", net, Plane.through(*x)))
    for name, net, plane in workloads:
        small = Plane(plane.origin, plane.u, plane.v, tuple((0.01 * a, 0.01 * b) for a, b in plane.extent))
        slice_regions(net, small)  # warm-up (imports, key hashing)
        t = time.perf_counter()
        res = slice_regions(net, plane)
        dt = time.perf_counter() - t
        out[name] = {
            "regions": res.num_regions,
            "cells": res.num_cells,
            "seconds": dt,
            "regions_per_s": res.num_regions / dt,
        }
    return out


def entry(quick: bool) -> dict:
    """The ``slices`` entry (the same sizes quick or not).

    Args:
      quick: unused (the workloads take seconds).

    Returns:
      ``{"name": "slices", **bench_slices()}``.
    """
    return {"name": NAME, **bench_slices()}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    lines = ["| slice | regions | seconds | regions/s |", "|---|---:|---:|---:|"]
    lines += [
        f"| {k[len('slice_'):]} | {v['regions']:,} | {v['seconds']:.2f} | {v['regions_per_s']:,.0f} |"
        for k, v in w.items() if k.startswith("slice_")
    ]
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause.
    """
    parts = [f"{v['regions_per_s'] / 1e3:.0f} k regions/s ({k[len('slice_'):]})" for k, v in w.items()
             if k.startswith("slice_")]
    return "exact 2D slices at " + " and ".join(parts)
