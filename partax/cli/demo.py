"""``partax demo``: the main job (:func:`partax.demo.run_demo`).

Exit status 0, or 1 when a step failed (each failed step named on stderr; the other steps'
files are written all the same).
"""

from __future__ import annotations

import json
import sys

import partax.demo

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax demo`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "demo",
        help="the main job: IB data, training traced through its regions, region report",
        description="Build the exact Tishby IB dataset, train the 12-10-7-5-4-3-2 ReLU net with Adam while "
        "tracing regions, I(X;T) and I(T;Y) per layer and scope at log-spaced epochs, partition [0,1]^12 "
        "of the final net, write its region report, figures and report.md into --out. A failed step is "
        "named on stderr and the command exits 1 after writing what the other steps produced.",
    )
    p.add_argument("--quick", action="store_true",
                   help="300 epochs, 40 traced epochs and 2^16 box samples (about 15 s on 2 CPU cores; "
                   "default: 8000 epochs, 274 traced, 2^20 samples, about a minute)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initialisation, the shuffling and the box samples (default: %(default)s)")
    p.set_defaults(run=run)
    return p


def _status(msg: str) -> None:
    print(f"[partax demo] {msg}", flush=True)


def run(args) -> int:
    """Runs the demo.

    Args:
      args: the parsed arguments (``out``, ``quick``, ``seed``).

    Returns:
      The exit status: 0, or 1 when a step failed.
    """
    try:
        summary = partax.demo.run_demo(out=args.out, quick=args.quick, seed=args.seed, progress=True, log=_status)
    except partax.demo.DemoError as e:
        for step, error in e.failed.items():
            print(f"partax demo: step {step!r} failed: {error}", file=sys.stderr)
        print(f"partax demo: wrote what the other steps produced into {args.out}/ (see report.md)", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k in ("epochs", "checkpoints", "final_accuracy", "seconds")}))
    print(f"wrote {args.out}/ (report.md, infoplane.png, trace.jsonl, regions.npz)")
    return 0
