"""``partax info``: information measures of a saved partition, its regions taken as bins."""

from __future__ import annotations

import os

import numpy as np

import partax
from partax import info
from partax.cli.arguments import write_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax info`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "info",
        help="information measures of a saved partition (regions as bins)",
        description="Read a partition.npz (from partax partition) and print, per scope and hidden layer, the "
        "regions, H(T) = I(X;T), I(T;Y) (when labels were given; '-' otherwise) and the saturation "
        "diagnostics, in bits.",
    )
    p.add_argument("partition", help="a partition.npz written by partax partition")
    p.add_argument("--estimator", default="plugin", choices=["plugin", "miller_madow"],
                   help="entropy estimator (default: %(default)s)")
    p.add_argument("--out", help="also write info.json into this directory")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Prints the information plane of every scope; writes ``info.json`` with ``--out``.

    Args:
      args: the parsed arguments (``partition``, ``estimator``, ``out``).

    Returns:
      The exit status (0).
    """
    p = partax.load_partition(args.partition)
    result = {}
    print(f"{p.total:,} inputs; estimator {args.estimator}; bits")
    print(f"{'scope':<8}{'layer':>6}{'regions':>10}{'I(X;T)':>9}{'I(T;Y)':>9}{'coverage':>10}  saturated")
    for scope in p.scopes:
        plane = info.information_plane(p, scope, estimator=args.estimator)
        result[scope] = {k: np.asarray(v).tolist() for k, v in plane.items()}
        for i, l in enumerate(plane["layer"]):
            ity = plane["I_TY"][i]
            ity = f"{ity:>9.3f}" if np.isfinite(ity) else f"{'-':>9}"  # '-': no labels
            print(f"{scope:<8}{int(l):>6}{int(plane['regions'][i]):>10,}{plane['I_XT'][i]:>9.3f}"
                  f"{ity}{plane['coverage'][i]:>10.3f}  {bool(plane['saturated'][i])}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "info.json"), result)
    return 0
