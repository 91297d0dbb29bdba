"""``partax compress --net NET.npz --lo 0 --hi 1 --out DIR``: a smaller net, the same function on the box.

Classifies every hidden unit over the box ``[--lo, --hi]^d`` (:mod:`partax.stability`), builds
the smaller net (:func:`partax.compression.compress`), verifies it (dense sampling and an exact
certificate) and writes ``DIR/net.npz`` (the smaller net), ``DIR/report.json`` (what was removed
per layer and why, sizes, times) and ``DIR/verification.json``. A net that fails verification is
not written: the report and the verification are, and the command exits with status 1.
"""

from __future__ import annotations

import os

import partax
from partax.cli.arguments import check_box, positive_int, write_json
from partax.compression import CompressionError, compress
from partax.stability import METHODS

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax compress`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "compress",
        help="lossless compression: remove stable units, merge and fold (same function on a box)",
        description="Remove the stably inactive units of a ReLU net over the box [--lo, --hi]^d, merge linearly "
        "dependent stably active ones into the next layer, fold layers without unstable units, and verify "
        "that the smaller net computes the same function on the box (dense sampling and an exact certificate). "
        "Writes --out/net.npz, --out/report.json and --out/verification.json. "
        "Example: partax compress --net net.npz --lo 0 --hi 1 --out runs/compress",
    )
    p.add_argument("--net", required=True, help="a partax net file (.npz)")
    p.add_argument("--lo", type=float, required=True, help="the box's lower bound (every coordinate)")
    p.add_argument("--hi", type=float, required=True, help="the box's upper bound (every coordinate)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", default="lp", choices=METHODS,
                   help="stability bounds: interval, linear (CROWN-style), lp (triangle LP, HiGHS) or milp "
                   "(default: %(default)s)")
    p.add_argument("--certificate", default="auto", choices=("auto", "algebraic", "enumerate"),
                   help="the exact equivalence certificate; enumerate needs d <= 6 (default: %(default)s)")
    p.add_argument("--samples", type=positive_int, default=20_000,
                   help="uniform samples of the box for the sampled check, plus corners (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for the lp / milp bounds (sound at any limit; default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default: %(default)s)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Compresses, verifies and writes the results; prints the report's summary.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status: 0, or 1 if the smaller net failed verification (nothing but the report and
      the verification written).

    Raises:
      ValueError: ``--lo``/``--hi`` not finite or ``--hi`` not above ``--lo``, or a bad net file.
    """
    lo, hi = check_box(args.lo, args.hi)
    net = partax.load_net(args.net)
    box = partax.Box(lo, hi)
    os.makedirs(args.out, exist_ok=True)
    try:
        small, report = compress(net, box, method=args.method, certificate=args.certificate, samples=args.samples,
                                 time_limit=args.time_limit, seed=args.seed)
    except CompressionError as e:
        if e.report is not None:
            write_json(os.path.join(args.out, "report.json"), e.report.to_dict())
            write_json(os.path.join(args.out, "verification.json"), e.report.verification.to_dict())
            print(e.report.summary())
        print(f"partax compress: {e}")
        return 1
    partax.save_net(small, os.path.join(args.out, "net.npz"))
    write_json(os.path.join(args.out, "report.json"), report.to_dict())
    write_json(os.path.join(args.out, "verification.json"), report.verification.to_dict())
    print(report.summary())
    print(f"wrote {os.path.join(args.out, 'net.npz')}, report.json, verification.json")
    return 0
