"""``partax bench``: the benchmark suite (:func:`partax.bench.run`).

Exit status 0, or 1 when a workload failed (named on stderr; the others are measured and
written all the same).
"""

from __future__ import annotations

import os
import sys

import partax.bench
from partax.cli.arguments import positive_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax bench`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    names = partax.bench.workload_names()
    p = subparsers.add_parser(
        "bench",
        help="run the benchmark suite",
        description="Run the benchmark workloads on the default JAX device, each in a fresh process, and "
        "write bench.json and bench.md into --out: partition throughput beside the bare forward pass and "
        "the NumPy practice (MLPs: ib, mlp256, mlp1024; a conv net: cnn, beside its forward pass), Chebyshev LPs (interior point against HiGHS), exact 2D slices and n-D "
        "enumeration, the sharded engine. A failed workload is named on stderr and the command exits 1 "
        "after writing the others.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (about 6 minutes on a 2-core CPU)")
    p.add_argument("--out", default="runs/bench", help="output directory (default: %(default)s)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help=f"run only these workloads, of {', '.join(names)} (default: all)")
    p.add_argument("--reps", type=positive_int, default=None,
                   help="repetitions per measurement, the best is kept (default: 2 with --quick, else 3)")
    p.set_defaults(run=run)
    return p


def _progress(line: str) -> None:
    print(line, flush=True)


def run(args) -> int:
    """Runs the suite and prints its Markdown report.

    Args:
      args: the parsed arguments (``quick``, ``out``, ``only``, ``reps``).

    Returns:
      The exit status: 0, or 1 when a workload failed.
    """
    result = partax.bench.run(quick=args.quick, out=args.out, only=args.only, reps=args.reps, log=_progress)
    print(partax.bench.to_markdown(result))
    print(f"wrote {os.path.join(args.out, 'bench.json')} and bench.md")
    failed = [w["name"] for w in result["workloads"] if "error" in w]
    if failed:
        print(f"partax bench: workloads failed: {', '.join(failed)} (the others are in bench.json)", file=sys.stderr)
        return 1
    return 0
