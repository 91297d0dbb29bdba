"""``partax bounds N0 N1 ... NL``: the published upper bounds on the number of linear regions."""

from __future__ import annotations

import os

from partax import bounds
from partax.cli.arguments import write_json

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax bounds`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "bounds",
        help="upper bounds on the number of linear regions",
        description="Print the published upper bounds on the number of linear regions of an N0-N1-...-NL "
        "ReLU network side by side (Serra et al., Montufar, Raghu et al., trivial; Zaslavsky for the first "
        "layer), exact integers with their log10. Example: partax bounds 784 256 256 256.",
    )
    p.add_argument("widths", nargs="+", type=int, metavar="N",
                   help="the input dimension N0, then the hidden widths N1 ... NL (at least one)")
    p.add_argument("--out", help="also write bounds.json into this directory")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Prints :func:`partax.bounds.format_table`; writes ``bounds.json`` with ``--out``.

    Args:
      args: the parsed arguments (``widths``, ``out``).

    Returns:
      The exit status (0).

    Raises:
      ValueError: fewer than two numbers, or a width below 1.
    """
    if len(args.widths) < 2:
        raise ValueError(f"widths: expected N0 N1 ... NL (input dim then hidden widths), got {args.widths}")
    n0, widths = args.widths[0], args.widths[1:]
    result = bounds.table(n0, widths)
    print(bounds.format_table(n0, widths))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "bounds.json"),
                   {k: str(v) if isinstance(v, int) else v for k, v in result.items()})
    return 0
