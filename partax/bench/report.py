"""The bench result as text: ``bench.md`` (:func:`to_markdown`) and the README's table
(:func:`readme_section`). Pure formatting: every number comes from the result dict.

Example:
    >>> from partax.bench.report import to_markdown
    >>> result = {"date": "2026-01-01", "device": None, "jax_version": "0", "host": "h", "quick": True,
    ...           "workloads": [{"name": "lp", "error": "RuntimeError: boom", "seconds": 1.0}]}
    >>> print(to_markdown(result).splitlines()[-1])
    failed: RuntimeError: boom
"""

from __future__ import annotations

import json

from partax.bench import enumerate as enumeration
from partax.bench import counting, density, lp, sharded, slices, stability, tropical
from partax.bench.partition import WORKLOADS

__all__ = ["to_markdown", "readme_section"]

# the other workloads' modules, in the README's order; each has NAME, markdown(w), readme_text(w)
_SECTIONS = {m.NAME: m for m in (lp, slices, enumeration, sharded, stability, tropical, counting, density)}
_README_NAMES = {"ib": "IB"}


def _no_device() -> dict:
    return {"platform": "?", "device_kind": "?", "count": 0}


def _field(w: dict, key: str, fmt: str) -> str:
    """``w[key]`` formatted, or a dash where the entry lacks it (the conv net's NumPy fields,
    runs written before a field existed)."""
    return format(w[key], fmt) if key in w else "–"


def _label(w: dict) -> str:
    """A partition entry's net: its architecture (the conv net) or its widths joined by dashes."""
    return w["net"] if "net" in w else "-".join(map(str, w["widths"]))


# The reduction paths' columns: entry key -> (header, format; "rate" = inputs/s, formatted per table)
_PATH_COLUMNS = {
    "reduce_auto": ("auto", "s"),
    "host_inputs_per_s": ("host in/s", "rate"),
    "host_ratio_vs_forward": ("host / forward", ".2f"),
    "host_bytes_per_input": ("host B/input", ".1f"),
    "device_inputs_per_s": ("device in/s", "rate"),
    "device_ratio_vs_forward": ("device / forward", ".2f"),
    "device_bytes_per_input": ("device B/input", ".1f"),
    "host_sampled_inputs_per_s": ("host, sampled in/s", "rate"),
    "device_sampled_inputs_per_s": ("device, sampled in/s", "rate"),
    "kernel_ratio_vs_forward": ("kernel / forward", ".2f"),
    "codes_ratio_vs_forward": ("codes / forward", ".2f"),
    "near_test_cost": ("near test", "+.0%"),
    "host_cost_over_kernel": ("host over kernel", "+.0%"),
    "device_cost_over_kernel": ("device over kernel", "+.0%"),
}
# the README's shorter table (its rates in k/M, "path" named in the headers)
_README_PATH_COLUMNS = {
    "host_inputs_per_s": ("host path in/s", "rate"),
    **{k: _PATH_COLUMNS[k] for k in ("host_ratio_vs_forward", "host_bytes_per_input")},
    "device_inputs_per_s": ("device path in/s", "rate"),
    **{k: _PATH_COLUMNS[k] for k in ("device_ratio_vs_forward", "device_bytes_per_input",
                                     "kernel_ratio_vs_forward", "codes_ratio_vs_forward")},
}


def _paths_table(paths: list, columns: dict, rate) -> list:
    """The reduction paths' table: a header, then a row per entry of ``paths`` (a dash where an
    entry lacks a column's field); ``rate`` formats the inputs/s columns."""
    def cell(w, key, fmt):
        if key not in w:
            return "–"
        return rate(w[key]) if fmt == "rate" else format(w[key], fmt)

    lines = ["| workload | " + " | ".join(h for h, _ in columns.values()) + " |",
             "|---|" + "|".join("---" if fmt == "s" else "---:" for _, fmt in columns.values()) + "|"]
    for w in paths:
        lines.append(f"| {w['name']} | " + " | ".join(cell(w, k, fmt) for k, (_, fmt) in columns.items()) + " |")
    return lines


def to_markdown(result: dict) -> str:
    """The bench result as a Markdown report.

    Args:
      result: the dict of :func:`partax.bench.run` (or a ``bench.json``).

    Returns:
      The report: a table of the partition workloads, then a section per other entry (a
      failed entry's section says ``failed: <error>``).
    """
    dev = result["device"] or _no_device()
    lines = [
        f"# partax bench — {result['date']}",
        "",
        f"Device: {dev['platform']} / {dev['device_kind']} × {dev['count']}; jax {result['jax_version']}; "
        f"host {result['host']}; {'quick' if result['quick'] else 'full'} run.",
        "",
        "| workload | inputs | partition in/s | forward in/s | ratio vs forward | NumPy in/s | ratio vs NumPy "
        "| NumPy ratio bound | forward GFLOP/s | BLAS GFLOP/s | collision check cost | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    paths = [w for w in result["workloads"] if "host_inputs_per_s" in w]
    for w in result["workloads"]:
        if "partition_inputs_per_s" not in w:
            continue
        lines.append(
            f"| {w['name']} {_label(w)} | {w['inputs']:,} | {w['partition_inputs_per_s']:,.0f} | "
            f"{w['forward_inputs_per_s']:,.0f} | {w['ratio_vs_forward']:.2f} | {_field(w, 'numpy_inputs_per_s', ',.0f')} | "
            f"{_field(w, 'ratio_vs_numpy', '.1f')} | {_field(w, 'ratio_vs_numpy_bound', '.1f')} | "
            f"{w['forward_gflops']:,.1f} | {_field(w, 'numpy_matmul_gflops', ',.1f')} | "
            f"{w['collision_check_cost']:+.0%} | {w['peak_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        "NumPy ratio bound: the ratio to the NumPy practice that a partition costing nothing but its",
        "hidden layers' matmuls would reach, at the faster of the two FLOP rates measured in the same",
        "run (XLA's forward pass; NumPy's BLAS on preallocated chunks, the BLAS column).",
        "Peak RSS includes the inputs array (the partition itself streams it in chunks).",
        "Collision check cost: the partition's time with its check keys (the default) over its time",
        "with `collision_check=False`, minus one, measured in the same run.",
    ]
    skipped = [w for w in result["workloads"] if "numpy_skipped" in w]
    if skipped:
        lines += [f"No NumPy columns for {', '.join(w['name'] for w in skipped)}: {skipped[0]['numpy_skipped']}; "
                  "its FLOP rate counts the Dense and Conv layers' multiply-adds."]
    if paths:
        lines += [
            "",
            "## Reduction paths",
            "",
            "Both of `partax.partition`'s reduction paths on the same inputs in the same run: `host` (every",
            "input's keys and hashes leave the device, one NumPy sort per chunk) and `device` (a table of",
            "known regions on the device counts each chunk; only per-slot counts and new regions leave",
            "it). The partition columns above are those of the path `reduce=\"auto\"` picks.",
            "",
        ] + _paths_table(paths, _PATH_COLUMNS, rate=lambda v: format(v, ",.0f"))
        lines += [
            "",
            "B/input: bytes fetched from the device per input (`Partition.device_to_host_bytes`). Sampled:",
            "the same number of inputs drawn on the device by `partax.sources.uniform_box` (no copy of",
            "the inputs to the device). Kernel: the engine's jitted kernel alone on the same chunks (codes,",
            "keys, check keys, per-layer hashes, near-boundary and finite flags; nothing reduced or",
            "fetched), a ceiling for both paths; codes: the packed codes alone (no keys, no near-boundary",
            "test), a ceiling for any partition; near test: the kernel's time over its time at",
            "`boundary_tol=0`, minus one; host / device over kernel: each path's time over the kernel's.",
        ]
    for w in result["workloads"]:
        if "partition_inputs_per_s" in w:
            continue
        lines += ["", f"## {w['name']}", ""]
        if "error" in w:
            lines += [f"failed: {w['error']}"]
        elif w["name"] in _SECTIONS:
            lines += _SECTIONS[w["name"]].markdown(w)
        else:
            lines += ["```", json.dumps(w, indent=1), "```"]
    return "\n".join(lines) + "\n"


def _si(v: float) -> str:
    """``13.6 M``, ``162 k``, ``9.2 k``: three significant digits at most."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            q = v / scale
            return f"{q:.3g} {unit}" if q < 100 else f"{q:.0f} {unit}"
    return f"{v:.3g}"


def _pow2(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else f"{n:,}"


def readme_section(result: dict, path: str) -> str:
    """The README's table of a committed bench run.

    Every number it quotes comes from ``result`` (the ``bench.json`` at ``path``), so a test
    can regenerate and compare it. ``scripts/readme_bench.py DIR`` writes it between the
    README's ``bench:begin`` / ``bench:end`` markers.

    Args:
      result: the bench result.
      path: where the run is committed (named in the text).

    Returns:
      Markdown: the partition table, the reduction paths' table (runs that measured both paths),
      then one sentence on the other entries and the failed ones.
    """
    dev = result["device"] or _no_device()
    lines = [
        f"Run of {result['date']} ({dev['platform']}, {result['host']}, jax {result['jax_version']}, "
        f"{'quick' if result['quick'] else 'full'} suite; `{path}`):",
        "",
        "| workload | inputs | partition in/s | bare forward in/s | ratio vs forward | NumPy practice in/s "
        "| ratio vs NumPy | NumPy ratio bound | collision check cost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_name = {w["name"]: w for w in result["workloads"]}
    for w in result["workloads"]:
        if "partition_inputs_per_s" not in w:
            continue
        net = "-".join(map(str, WORKLOADS[w["name"]][0])) if w["name"] in WORKLOADS else _label(w)
        label = f"{_README_NAMES[w['name']]} {net}" if w["name"] in _README_NAMES else net
        lines.append(
            f"| {label} | {_pow2(w['inputs'])} | {_si(w['partition_inputs_per_s'])} | {_si(w['forward_inputs_per_s'])} "
            f"| {w['ratio_vs_forward']:.2f} | {_si(w['numpy_inputs_per_s']) if 'numpy_inputs_per_s' in w else '–'} "
            f"| {_field(w, 'ratio_vs_numpy', '.3g')} | {_field(w, 'ratio_vs_numpy_bound', '.3g')} | "
            f"{format(w['collision_check_cost'], '+.0%') if 'collision_check_cost' in w else '–'} |"
        )
    paths = [w for w in result["workloads"] if "host_inputs_per_s" in w]
    if paths:  # both reduction paths side by side, and the kernel and codes alone (ceilings)
        lines += [""] + _paths_table(paths, _README_PATH_COLUMNS, rate=_si)
    other = [m.readme_text(by_name[name]) for name, m in _SECTIONS.items()
             if name in by_name and "error" not in by_name[name]]
    failed = [w["name"] for w in result["workloads"] if "error" in w]
    if other:
        lines += ["", "Other entries of the same run: " + "; ".join(other) + "."]
    if failed:
        lines += ["", f"Failed in that run: {', '.join(failed)}."]
    return "\n".join(lines)
