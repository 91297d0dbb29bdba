"""``python -m partax.bench NAME [--quick] [--reps N]``: one workload in a fresh process.

This is a command entry point, the runner that :func:`partax.bench.run` starts for each
workload (so that each workload's peak RSS is its own): unlike the library modules it parses
its arguments and prints. Its last line on stdout is the workload's entry as JSON, with the
``device`` it ran on; a failure exits non-zero with the error on the last line of stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from partax.bench import device_info, run_workload, workload_names


def main(argv=None) -> int:
    """Runs one workload and prints its entry as one JSON line.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status (0).
    """
    ap = argparse.ArgumentParser(
        prog="python -m partax.bench",
        description="Run one benchmark workload in this process and print its entry as one JSON line "
        "(the runner behind partax bench's isolation).",
    )
    ap.add_argument("name", choices=workload_names(), metavar="NAME",
                    help=f"the workload, one of {', '.join(workload_names())}")
    ap.add_argument("--quick", action="store_true", help="the quick sizes")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement (default: %(default)s)")
    a = ap.parse_args(argv)
    if a.reps < 1:
        ap.error(f"--reps: expected a positive integer, got {a.reps}")
    print(json.dumps(dict(run_workload(a.name, a.quick, a.reps), device=device_info())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
