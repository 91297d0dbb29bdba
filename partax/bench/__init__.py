"""The benchmark suite behind ``partax bench``: workloads, the runner, the reports.

Every ratio is measured side by side in one run: same device, same inputs, same chunk
size, compilation and warm-up excluded, best of several repetitions (interleaved, so a
noisy neighbour hurts both sides alike). Absolute rates are labelled with the device.

One module per workload family, each with its measuring functions and an ``entry(quick)``:

* :mod:`partax.bench.partition`: the partition workloads of :data:`WORKLOADS` (``ib``,
  ``mlp256``, ``mlp1024``) beside the bare forward pass and the NumPy practice, and the conv net
  of :data:`CNN_WORKLOADS` (``cnn``: conv, max pool, conv, dense on 8x8 inputs) beside its
  forward pass (run last, so the older workloads keep their places);
* :mod:`partax.bench.lp` (``lp``): batched Chebyshev LPs, interior point against HiGHS;
* :mod:`partax.bench.slices` (``slices``): exact 2D slices, regions per second;
* :mod:`partax.bench.enumerate` (``enumerate``): exact n-D enumeration;
* :mod:`partax.bench.sharded` (``sharded``): the sharded engine on 4 virtual devices;
* :mod:`partax.bench.stability` (``stability``): certified stable units per bound method;
* :mod:`partax.bench.tropical` (``tropical``): linear terms per region against per-input jacfwd;
* :mod:`partax.bench.counting` (``counting``): exact region counts by MILP against enumeration.
* :mod:`partax.bench.density` (``density``): ``log_prob`` against the partition; Monte Carlo and
  hit-and-run region volumes.

:mod:`partax.bench.report` renders a result as ``bench.md`` and as the README's table;
``python -m partax.bench NAME`` (:mod:`partax.bench.__main__`) runs one workload in a fresh
process, which is how :func:`run` isolates them. Nothing here prints: :func:`run` reports
progress through its ``log`` callback (``partax bench`` passes ``print``).

Example:
    >>> from partax import bench
    >>> bench.workload_names()
    ['ib', 'mlp256', 'mlp1024', 'lp', 'slices', 'enumerate', 'sharded', 'stability', 'tropical', 'counting', 'density', 'cnn']
    >>> bench.run(only=["nope"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: only: unknown workloads ['nope']; expected some of ['ib', ...]

From the shell: ``partax bench --quick --out runs/bench``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Callable, Optional

import jax

# NB: importing the submodule ``partax.bench.enumerate`` binds the name ``enumerate`` in this
# package's namespace, so this file never calls the builtin ``enumerate``.
from partax.bench import enumerate as enumeration
from partax.bench import counting, density, lp, sharded, slices, stability, tropical
from partax.bench.partition import CNN_WORKLOADS, WORKLOADS, cnn_workload, partition_workload, run_named
from partax.bench.report import readme_section, to_markdown
from partax.files import atomic_write_bytes

__all__ = ["WORKLOADS", "CNN_WORKLOADS", "EXTRA_WORKLOADS", "run", "run_workload", "workload_names", "device_info",
           "partition_workload", "cnn_workload", "to_markdown", "readme_section"]

# the other workloads: name (for ``only`` / ``--only``) -> entry(quick) -> dict
EXTRA_WORKLOADS = {"lp": lp.entry, "slices": slices.entry, "enumerate": enumeration.entry, "sharded": sharded.entry,
                   "stability": stability.entry, "tropical": tropical.entry, "counting": counting.entry,
                   "density": density.entry}
# environment of a workload's own process (``isolate=True``)
ENVIRONMENT = {"sharded": sharded.ENVIRONMENT}


def workload_names() -> list:
    """The names ``run(only=...)`` accepts, in the order the suite runs them.

    Returns:
      The partition workloads of :data:`WORKLOADS`, then those of :data:`EXTRA_WORKLOADS`, then
      the conv net's of :data:`CNN_WORKLOADS`.
    """
    return list(WORKLOADS) + list(EXTRA_WORKLOADS) + list(CNN_WORKLOADS)


def device_info() -> dict:
    """The default JAX backend's devices.

    Returns:
      ``{"platform", "device_kind", "count"}``.
    """
    devs = jax.devices()
    return {"platform": devs[0].platform, "device_kind": devs[0].device_kind, "count": len(devs)}


def run_workload(name: str, quick: bool = False, reps: int = 3) -> dict:
    """Runs one workload in this process.

    Args:
      name: one of :func:`workload_names`.
      quick: the quick sizes.
      reps: repetitions of each timed measurement (partition and cnn workloads; the best is kept).

    Returns:
      The workload's entry (its ``"name"`` set).

    Raises:
      ValueError: an unknown ``name``.
    """
    if name in WORKLOADS or name in CNN_WORKLOADS:
        return run_named(name, quick, reps)
    if name not in EXTRA_WORKLOADS:
        raise ValueError(f"name: unknown workload {name!r}; expected one of {workload_names()}")
    entry = EXTRA_WORKLOADS[name](quick)
    entry.setdefault("name", name)
    return entry


def _isolated(name: str, quick: bool, reps: int) -> tuple:
    """``(entry, device)`` of ``python -m partax.bench NAME`` (device None if it failed)."""
    cmd = [sys.executable, "-m", "partax.bench", name, "--reps", str(reps)] + (["--quick"] if quick else [])
    env = dict(os.environ, **ENVIRONMENT.get(name, {}))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:]
        return {"name": name, "error": last[0] if last else f"exit status {done.returncode}"}, None
    entry = json.loads(done.stdout.strip().splitlines()[-1])
    return entry, entry.pop("device")


def run(
    *, quick: bool = False, out: Optional[str] = None, only=None, reps: Optional[int] = None,
    log: Optional[Callable[[str], None]] = None, isolate: bool = True,
) -> dict:
    """Runs the suite; writes ``bench.json`` and ``bench.md`` into ``out`` if given.

    Args:
      quick: small sizes (about 2 minutes on a 2-core CPU).
      out: output directory.
      only: names of the workloads to run (default: all; see :func:`workload_names`).
      reps: repetitions per measurement (the best is kept; default 2 quick, 3 otherwise).
      log: called with one line per finished workload (default: nothing is reported).
      isolate: run each workload in a fresh Python process (``python -m partax.bench NAME``),
        so that its ``peak_rss_mb`` is its own.

    Returns:
      The result: ``date``, ``device``, ``jax_version``, ``host``, ``quick`` and ``workloads``
      (one entry each, with its ``seconds``). A workload that crashed is an entry
      ``{"name", "error", "seconds"}``; the others are measured and written all the same
      (``partax bench`` then exits 1).

    Raises:
      ValueError: ``only`` names an unknown workload.
    """
    names = workload_names()
    if only:
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ValueError(f"only: unknown workloads {unknown}; expected some of {names}")
        names = [n for n in names if n in only]
    reps = reps or (2 if quick else 3)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": None if isolate else device_info(),  # isolated: the parent never touches the device
        "jax_version": jax.__version__,
        "host": f"{platform.machine()}, {os.cpu_count()} cores",
        "quick": quick,
        "workloads": [],
    }
    for name in names:
        t0 = time.perf_counter()
        if isolate:
            entry, device = _isolated(name, quick, reps)
            result["device"] = result["device"] or device
        else:
            try:
                entry = run_workload(name, quick, reps)
            except Exception as e:  # recorded; the command exits non-zero after writing the rest
                entry = {"name": name, "error": f"{type(e).__name__}: {e}"}
        entry["seconds"] = time.perf_counter() - t0
        result["workloads"].append(entry)
        if log is not None:
            log(f"  {name}: {'failed: ' + str(entry['error']) if 'error' in entry else 'done'} "
                f"in {entry['seconds']:.1f} s")
    if out:
        os.makedirs(out, exist_ok=True)
        atomic_write_bytes(os.path.join(out, "bench.json"), json.dumps(result, indent=1).encode())
        atomic_write_bytes(os.path.join(out, "bench.md"), to_markdown(result).encode())
    return result
