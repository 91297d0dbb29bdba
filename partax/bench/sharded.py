"""The sharded-engine workload of ``partax bench``: the IB net on a mesh of devices.

On a CPU host the workload's own process gets 4 virtual devices (:data:`ENVIRONMENT`). For
now the measurement itself is :func:`partax.distributed.bench_sharded`; this module names
the entry, sizes it and formats it.

Example:
    >>> from partax.bench.sharded import ENVIRONMENT
    >>> ENVIRONMENT["XLA_FLAGS"]
    '--xla_force_host_platform_device_count=4'
"""

from __future__ import annotations

from partax import distributed

__all__ = ["NAME", "ENVIRONMENT", "entry", "markdown", "readme_text"]

NAME = "sharded"
# environment variables of the workload's own process (``partax.bench.run`` with ``isolate``)
ENVIRONMENT = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


def entry(quick: bool) -> dict:
    """The ``sharded`` entry: the IB net on 2^18 (quick) or 2^20 uniform inputs.

    Args:
      quick: the quick size (and one repeat instead of two).

    Returns:
      ``{"name": "sharded", **partax.distributed.bench_sharded(...)}``.
    """
    n = 2**18 if quick else 2**20
    return {"name": NAME, **distributed.bench_sharded((12, 10, 7, 5, 4, 3, 2), n, repeats=1 if quick else 2)}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    return [
        f"IB net on {w['n']:,} uniform inputs: single-device engine {w['single_partition_s']:.2f} s; "
        f"sharded engine on 1 device {w['one_device_s']:.2f} s (merge {w['one_device_merge_share_of_step']:.0%} "
        f"of a step), on {w['devices']} devices {w['sharded_s']:.2f} s (merge "
        f"{w['sharded_merge_share_of_step']:.0%}); results agree: {w['agree']}."
    ]


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause.
    """
    return (
        f"the sharded engine on {w['n']:,} IB inputs: {w['one_device_s']:.2f} s on a one-device mesh, "
        f"{w['sharded_s']:.2f} s on {w['devices']} virtual devices of the same cores (merge "
        f"{w['one_device_merge_share_of_step']:.0%} and {w['sharded_merge_share_of_step']:.0%} of a step), "
        f"{w['single_partition_s']:.2f} s for `partax.partition`; tables agree: {w['agree']}"
    )
