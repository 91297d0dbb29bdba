"""``partax count --net NET.npz --lo LO --hi HI``: exact region counts by MILP, and the parity bound."""

from __future__ import annotations

import os

from partax.cli.arguments import check_box, write_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax count`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "count",
        help="count linear regions in a box exactly by MILP (and the parity lower bound)",
        description="Count the full-dimensional linear regions of a net in the box [--lo, --hi]^d exactly by "
        "mixed-integer programming (SCIP's solution counting or a HiGHS no-good loop); with --parity also the "
        "MIPBound probabilistic lower bound. A time limit gives a count marked as a lower bound (and exit status 1). Example: "
        "partax count --net net.npz --lo 0 --hi 1 --backend scip --time-limit 60 --out runs/count.",
    )
    p.add_argument("--net", required=True, help="a partax net file (.npz)")
    p.add_argument("--lo", type=float, required=True, help="box lower bound (every coordinate)")
    p.add_argument("--hi", type=float, required=True, help="box upper bound (every coordinate)")
    p.add_argument("--scope", default="prefix", choices=("prefix", "layer", "suffix"),
                   help="which codes are counted (default: %(default)s)")
    p.add_argument("--layer", type=int, default=None, help="1-based hidden layer (default: the last)")
    p.add_argument("--backend", default="highs", choices=("highs", "scip"),
                   help="MILP solver; scip needs the 'milp' extra (default: %(default)s)")
    p.add_argument("--time-limit", type=float, default=None, help="seconds (default: none)")
    p.add_argument("--parity", action="store_true", help="also compute the parity-constraint lower bound")
    p.add_argument("--trials", type=int, default=5, help="parity trials per level (default: %(default)s)")
    p.add_argument("--out", help="also write count.json into this directory")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Counts, prints a summary, writes ``count.json`` with ``--out``.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status: 0 when the count is exact, 1 when a time limit made it only a lower bound
      (the result is still printed and written, flagged ``exact: false``).

    Raises:
      ValueError: a bad box, time limit, net file, scope or layer, or a missing solver.
    """
    from partax.counting import count_regions, parity_lower_bound
    from partax.geometry import Box
    from partax.nets import load_net

    lo, hi = check_box(args.lo, args.hi)
    net = load_net(args.net)
    box = Box(lo, hi)
    res = count_regions(net, box, scope=args.scope, layer=args.layer, backend=args.backend,
                        time_limit=args.time_limit)
    kind = "exact" if res.exact else f"LOWER BOUND ({res.status})"
    print(f"{res.count} regions ({kind}), scope {res.scope} at layer {res.layer}, {args.backend} "
          f"{res.method}, {res.seconds:.2f} s")
    out = dict(count=res.count, exact=res.exact, status=res.status, scope=res.scope, layer=res.layer,
               backend=res.backend, method=res.method, seconds=res.seconds,
               stats={k: v for k, v in res.stats.items()})
    if args.parity:
        pb = parity_lower_bound(net, box, scope=args.scope, layer=args.layer, backend=args.backend,
                                trials=args.trials, time_limit=args.time_limit)
        print(f"parity bound: at least 2^{pb.log2_bound:g} regions with probability >= {pb.probability:.4f} "
              f"({pb.certain} regions found for certain), {pb.seconds:.2f} s")
        out["parity"] = dict(log2_bound=pb.log2_bound, probability=pb.probability, delta=pb.delta, k=pb.k,
                             certain=pb.certain, trials=pb.trials, complete=pb.complete, seconds=pb.seconds,
                             record=pb.record)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "count.json"), out)
    return 0 if res.exact else 1
