"""The n-D enumeration workload of ``partax bench``.

For now the measurement itself is :func:`partax.geometry.enumerate.bench_enumerate`; this
module names the entry and formats it.

Example:
    >>> from partax.bench.enumerate import markdown
    >>> w = {"workloads": [{"name": "3-8-8-1", "box": "[-2, 2]^3", "regions": 50, "complete": True,
    ...                     "regions_per_s": 1000.0}]}
    >>> markdown(w)[-1]
    '| 3-8-8-1 | [-2, 2]^3 | 50 | True | 1,000 |'
"""

from __future__ import annotations

from partax.geometry import enumerate as enumeration

__all__ = ["NAME", "entry", "markdown", "readme_text"]

NAME = "enumerate"


def entry(quick: bool) -> dict:
    """The ``enumerate`` entry.

    Args:
      quick: only the quick workloads.

    Returns:
      ``{"name": "enumerate", **partax.geometry.enumerate.bench_enumerate(quick=quick)}``.
    """
    return {"name": NAME, **enumeration.bench_enumerate(quick=quick)}


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
