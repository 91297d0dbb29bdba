"""The benchmark suite behind ``partax bench``.

Every ratio is measured side by side in one run: same device, same inputs, same chunk
size, compilation and warm-up excluded, best of several repetitions (interleaved, so a
noisy neighbour hurts both sides alike). Absolute rates are labelled with the device.

Partition workloads (DESIGN §6): the IB net 12-10-7-5-4-3-2 on 2^22 uniform inputs, a
784-256-256-256-10 MLP on 2^20, a 784-1024-1024-1024-10 MLP on 2^18 (``--quick``: 2^18,
2^16, 2^14). For each: partition throughput with all three scopes; the bare jitted forward
pass of the same net on the same chunks; the common NumPy practice (float32 forward pass,
``np.packbits`` of the signs, ``np.unique(axis=0, return_index=True, return_counts=True)``
for every distinct range of layers the three scopes need: the same tables the partition
builds), on the same inputs (at most ``numpy_max`` of them); and the hidden layers' matmuls
alone in NumPy: the arithmetic floor. ``ratio_vs_numpy_bound`` is the ratio to NumPy that a
partition costing only its matmuls would reach, at the faster of the two measured FLOP rates:
for wide nets, whose time is matmuls, a ceiling for any engine on the machine.
Other entries (LP, slices) are added by the modules that provide them.

Example:
    partax bench --quick --out runs/bench
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from partax.codes import SCOPES, tables_for
from partax.files import atomic_write_bytes
from partax.nets import Net, mlp
from partax.partition import default_batch_size, partition

__all__ = ["WORKLOADS", "run", "partition_workload", "to_markdown", "readme_section"]

# name -> (widths, inputs, quick inputs)
WORKLOADS = {
    "ib": ([12, 10, 7, 5, 4, 3, 2], 2**22, 2**18),
    "mlp256": ([784, 256, 256, 256, 10], 2**20, 2**16),
    "mlp1024": ([784, 1024, 1024, 1024, 10], 2**18, 2**14),
}


def _best_of(fns: dict, reps: int) -> dict:
    """Runs each callable ``reps`` times, interleaved; returns the best time of each."""
    best = {k: np.inf for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _forward_pass(net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    fwd = jax.jit(lambda n, xb: n(xb))

    def run():
        out = None
        for s in range(0, x.shape[0], batch_size):
            nxt = fwd(net, jnp.asarray(x[s : s + batch_size]))
            if out is not None:
                out.block_until_ready()
            out = nxt
        out.block_until_ready()

    return run


def _numpy_practice(net: Net, x: np.ndarray) -> Callable[[], None]:
    """The common NumPy practice, doing the same job as the partition (every distinct range
    of layers that the three scopes need): float32 forward pass, ``np.packbits`` of the
    signs, ``np.unique(axis=0, return_index=True, return_counts=True)``."""
    Ws = [np.asarray(W, np.float32) for W in net.weights[:-1]]
    bs = [np.asarray(b, np.float32) for b in net.biases[:-1]]
    ranges, _ = tables_for(SCOPES, len(Ws))

    def run():
        h, signs = x, []
        for W, b in zip(Ws, bs):
            z = h @ W + b
            signs.append(z > 0)
            h = np.maximum(z, 0)
        for f, t in ranges:
            code = np.packbits(np.concatenate(signs[f - 1 : t], axis=1), axis=1)
            np.unique(code, axis=0, return_index=True, return_counts=True)

    return run


def _numpy_matmuls(net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    """The arithmetic floor: only the hidden layers' float32 matmuls, in NumPy (its BLAS),
    chunk by chunk into preallocated buffers (no bias, no ReLU, no page faults)."""
    Ws = [np.asarray(W, np.float32) for W in net.weights[:-1]]
    bufs = [np.full((batch_size, W.shape[1]), 0.0, np.float32) for W in Ws]  # written: no page faults later

    def run():
        for s in range(0, x.shape[0], batch_size):
            h = x[s : s + batch_size]
            for W, buf in zip(Ws, bufs):
                h = np.matmul(h, W, out=buf[: h.shape[0]])

    return run


def _flops(widths, n: int) -> float:
    return 2.0 * n * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def partition_workload(name: str, widths, n: int, *, reps: int = 3, numpy_max: int = 2**20, seed: int = 0) -> dict:
    """Measures one partition workload side by side with its baselines."""
    key = jax.random.key(seed)
    net = mlp(key, widths, bias_std=0.1)
    x = np.random.default_rng(seed).random((n, widths[0]), dtype=np.float32)  # uniform [0, 1)
    bs = min(default_batch_size(net), n)
    n_np = min(n, numpy_max)
    x_np = x[:n_np]
    fns = {
        "partition": lambda: partition(net, x, batch_size=bs, progress=False),
        "unchecked": lambda: partition(net, x, batch_size=bs, collision_check=False, progress=False),
        "forward": _forward_pass(net, x, bs),
        "numpy": _numpy_practice(net, x_np),
        "numpy_matmul": _numpy_matmuls(net, x_np, bs),
    }
    # warm-up: compile and touch everything once (numpy on a small slice); then one partition
    # alone, so that the peak RSS is that of the inputs plus the partition (not the baselines)
    partition(net, x[: 2 * bs], batch_size=bs, progress=False)
    fns["forward"]()  # compiles the very function that is timed
    _numpy_practice(net, x[:256])()
    _numpy_matmuls(net, x[:256], 256)()
    p = partition(net, x, batch_size=bs, progress=False)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    best = _best_of(fns, reps)
    entry = {
        "name": name,
        "widths": list(widths),
        "inputs": n,
        "batch_size": bs,
        "partition_inputs_per_s": n / best["partition"],
        "forward_inputs_per_s": n / best["forward"],
        "ratio_vs_forward": best["forward"] / best["partition"],
        # the collision check (a second 64-bit key per input): its cost, side by side
        "unchecked_inputs_per_s": n / best["unchecked"],
        "collision_check_cost": best["partition"] / best["unchecked"] - 1.0,
        "numpy_inputs": n_np,
        "numpy_inputs_per_s": n_np / best["numpy"],
        "ratio_vs_numpy": (n / best["partition"]) / (n_np / best["numpy"]),
        "numpy_matmul_inputs_per_s": n_np / best["numpy_matmul"],
        # the ratio vs NumPy of a partition that cost only its matmuls, at the faster of the
        # two measured rates (XLA's forward pass, NumPy's BLAS): a ceiling for wide nets
        "ratio_vs_numpy_bound": max(n / best["forward"], n_np / best["numpy_matmul"]) / (n_np / best["numpy"]),
        "forward_gflops": _flops(widths, n) / best["forward"] / 1e9,
        "numpy_matmul_gflops": _flops(widths[:-1], n_np) / best["numpy_matmul"] / 1e9,
        "regions_prefix_last": int(p.num_regions("prefix")[-1]),
        "inputs_mb": x.nbytes / 2**20,
        "peak_rss_mb": peak_rss_mb,
    }
    if jax.default_backend() != "cpu":
        entry["forward_tflops"] = _flops(widths, n) / best["forward"] / 1e12
        entry["pipeline_tflops"] = _flops(widths[:-1], n) / best["partition"] / 1e12
    return entry


def _device_info() -> dict:
    devs = jax.devices()
    return {"platform": devs[0].platform, "device_kind": devs[0].device_kind, "count": len(devs)}


def to_markdown(result: dict) -> str:
    """The bench result as a Markdown report."""
    dev = result["device"] or {"platform": "?", "device_kind": "?", "count": 0}
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
    for w in result["workloads"]:
        if "partition_inputs_per_s" not in w:
            continue
        lines.append(
            f"| {w['name']} {'-'.join(map(str, w['widths']))} | {w['inputs']:,} | {w['partition_inputs_per_s']:,.0f} | "
            f"{w['forward_inputs_per_s']:,.0f} | {w['ratio_vs_forward']:.2f} | {w['numpy_inputs_per_s']:,.0f} | "
            f"{w['ratio_vs_numpy']:.1f} | {w['ratio_vs_numpy_bound']:.1f} | {w['forward_gflops']:,.1f} | "
            f"{w['numpy_matmul_gflops']:,.1f} | {w['collision_check_cost']:+.0%} | {w['peak_rss_mb']:,.0f} |"
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
    for w in result["workloads"]:
        if "partition_inputs_per_s" in w:
            continue
        lines += ["", f"## {w['name']}", ""]
        if "error" in w:
            lines += [f"failed: {w['error']}"]
        elif w["name"] == "chebyshev_lp":
            lines += [
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
        elif w["name"] == "slices":
            lines += ["| slice | regions | seconds | regions/s |", "|---|---:|---:|---:|"]
            lines += [
                f"| {k[len('slice_'):]} | {v['regions']:,} | {v['seconds']:.2f} | {v['regions_per_s']:,.0f} |"
                for k, v in w.items() if k.startswith("slice_")
            ]
        elif w["name"] == "enumerate":
            lines += ["| net | box | regions | complete | regions/s |", "|---|---|---:|---|---:|"]
            lines += [
                f"| {z['name']} | {z['box']} | {z['regions']:,} | {z['complete']} | {z['regions_per_s']:,.0f} |"
                for z in w["workloads"]
            ]
        elif w["name"] == "sharded":
            lines += [
                f"IB net on {w['n']:,} uniform inputs: single-device engine {w['single_partition_s']:.2f} s; "
                f"sharded engine on 1 device {w['one_device_s']:.2f} s (merge {w['one_device_merge_share_of_step']:.0%} "
                f"of a step), on {w['devices']} devices {w['sharded_s']:.2f} s (merge "
                f"{w['sharded_merge_share_of_step']:.0%}); results agree: {w['agree']}."
            ]
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


_README_NAMES = {"ib": "IB"}


def readme_section(result: dict, path: str) -> str:
    """The README's table of a committed bench run: every number it quotes comes from
    ``result`` (the ``bench.json`` at ``path``), so a test can regenerate and compare it.

    ``scripts/readme_bench.py DIR`` writes it between the README's ``bench:begin`` /
    ``bench:end`` markers.
    """
    dev = result["device"] or {"platform": "?", "device_kind": "?", "count": 0}
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
        net = "-".join(map(str, WORKLOADS[w["name"]][0] if w["name"] in WORKLOADS else w["widths"]))
        label = f"{_README_NAMES[w['name']]} {net}" if w["name"] in _README_NAMES else net
        lines.append(
            f"| {label} | {_pow2(w['inputs'])} | {_si(w['partition_inputs_per_s'])} | {_si(w['forward_inputs_per_s'])} "
            f"| {w['ratio_vs_forward']:.2f} | {_si(w['numpy_inputs_per_s'])} | {w['ratio_vs_numpy']:.3g} "
            f"| {w['ratio_vs_numpy_bound']:.3g} | "
            f"{format(w['collision_check_cost'], '+.0%') if 'collision_check_cost' in w else '–'} |"
        )
    other = []
    lp = by_name.get("chebyshev_lp")
    if lp and "sizes" in lp:
        sizes = "; ".join(f"{z['speedup']:.1f}× at d = {z['d']}, m = {z['m']}" for z in lp["sizes"])
        diff = max(z["max_radius_diff"] for z in lp["sizes"])
        other.append(f"Chebyshev LPs, the JAX interior point against HiGHS on the same polytopes: {sizes} "
                     f"(radii agree to {diff:.1e})")
    sl = by_name.get("slices")
    if sl and "error" not in sl:
        parts = [f"{v['regions_per_s'] / 1e3:.0f} k regions/s ({k[len('slice_'):]})" for k, v in sl.items()
                 if k.startswith("slice_")]
        other.append("exact 2D slices at " + " and ".join(parts))
    en = by_name.get("enumerate")
    if en and "workloads" in en:
        parts = [f"{z['name']}: {z['regions']:,} regions at {z['regions_per_s'] / 1e3:.1f} k/s" for z in en["workloads"]]
        other.append("exact n-D enumeration (" + "; ".join(parts) + ")")
    sh = by_name.get("sharded")
    if sh and "error" not in sh:
        other.append(
            f"the sharded engine on {sh['n']:,} IB inputs: {sh['one_device_s']:.2f} s on a one-device mesh, "
            f"{sh['sharded_s']:.2f} s on {sh['devices']} virtual devices of the same cores (merge "
            f"{sh['one_device_merge_share_of_step']:.0%} and {sh['sharded_merge_share_of_step']:.0%} of a step), "
            f"{sh['single_partition_s']:.2f} s for `partax.partition`; tables agree: {sh['agree']}"
        )
    failed = [w["name"] for w in result["workloads"] if "error" in w]
    if other:
        lines += ["", "Other entries of the same run: " + "; ".join(other) + "."]
    if failed:
        lines += ["", f"Failed in that run: {', '.join(failed)}."]
    return "\n".join(lines)


def _run_one(name: str, quick: bool, reps: int) -> dict:
    if name in WORKLOADS:
        widths, n, n_quick = WORKLOADS[name]
        return partition_workload(name, widths, n_quick if quick else n, reps=reps)
    entry = _EXTRA[name](quick)
    entry.setdefault("name", name)
    return entry


def run(
    *, quick: bool = False, out: str | None = None, only=None, reps: int | None = None, progress: bool = True,
    isolate: bool = True,
) -> dict:
    """Runs the suite; writes ``bench.json`` and ``bench.md`` into ``out`` if given.

    Args:
      quick: small sizes (about 2 minutes on a 2-core CPU).
      out: output directory.
      only: names of the workloads to run (default: all).
      reps: repetitions per measurement (the best is kept).
      progress: print a line per finished workload.
      isolate: run each workload in a fresh Python process, so that its ``peak_rss_mb`` is its own.

    Returns:
      The result; a workload that crashed is an entry ``{"name", "error", "seconds"}`` (the
      others are measured and written all the same; ``partax bench`` then exits 1).
    """
    names = list(WORKLOADS) + list(_EXTRA)
    if only:
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ValueError(f"only: unknown workloads {unknown}; expected some of {names}")
        names = [n for n in names if n in only]
    reps = reps or (2 if quick else 3)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": None if isolate else _device_info(),  # isolated: the parent never touches the device
        "jax_version": jax.__version__,
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "quick": quick,
        "workloads": [],
    }
    for name in names:
        t0 = time.perf_counter()
        if isolate:
            cmd = [sys.executable, "-m", "partax.bench", name, "--reps", str(reps)] + (["--quick"] if quick else [])
            env = dict(os.environ, **_ENV.get(name, {}))
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if done.returncode:
                last = done.stderr.strip().splitlines()[-1:]
                entry = {"name": name, "error": last[0] if last else f"exit status {done.returncode}"}
            else:
                entry = json.loads(done.stdout.strip().splitlines()[-1])
                result["device"] = result["device"] or entry.pop("device")
        else:
            try:
                entry = _run_one(name, quick, reps)
            except Exception as e:  # recorded; the command exits non-zero after writing the rest
                entry = {"name": name, "error": f"{type(e).__name__}: {e}"}
        entry["seconds"] = time.perf_counter() - t0
        result["workloads"].append(entry)
        if progress:
            print(f"  {name}: {'failed: ' + str(entry['error']) if 'error' in entry else 'done'} "
                  f"in {entry['seconds']:.1f} s", flush=True)
    if out:
        os.makedirs(out, exist_ok=True)
        atomic_write_bytes(os.path.join(out, "bench.json"), json.dumps(result, indent=1).encode())
        atomic_write_bytes(os.path.join(out, "bench.md"), to_markdown(result).encode())
    return result


def _lp_entry(quick: bool) -> dict:
    from partax.geometry import lp  # the geometry module provides its own LP benchmark

    sizes = [(10, 60)] if quick else [(10, 60), (100, 300)]
    num = 200 if quick else 1000
    return {"name": "chebyshev_lp", "sizes": [{**lp.bench_chebyshev(num=num, d=d, m=m), "d": d, "m": m} for d, m in sizes]}


def _slice_entry(quick: bool) -> dict:
    from partax.geometry import slices

    return {"name": "slices", **slices.bench_slices()}


def _enumerate_entry(quick: bool) -> dict:
    from partax.geometry import enumerate as enumeration

    return {"name": "enumerate", **enumeration.bench_enumerate(quick=quick)}


def _sharded_entry(quick: bool) -> dict:
    from partax import distributed

    n = 2**18 if quick else 2**20
    return {"name": "sharded", **distributed.bench_sharded((12, 10, 7, 5, 4, 3, 2), n, repeats=1 if quick else 2)}


_EXTRA = {"lp": _lp_entry, "slices": _slice_entry, "enumerate": _enumerate_entry, "sharded": _sharded_entry}
# Environment of a workload's own process: the sharded one gets 4 virtual devices on a CPU host.
_ENV = {"sharded": {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}}


if __name__ == "__main__":  # one workload in a fresh process: python -m partax.bench NAME [--quick]
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    print(json.dumps(dict(_run_one(a.name, a.quick, a.reps), device=_device_info())))
