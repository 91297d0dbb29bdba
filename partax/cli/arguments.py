"""Argument types and helpers shared by the ``partax`` subcommands.

Example:
    >>> from partax.cli.arguments import positive_int, widths
    >>> positive_int("1e6"), widths("12,10,7-2")
    (1000000, [12, 10, 7, 2])
"""

from __future__ import annotations

import argparse
import json

from partax.files import atomic_write_text

__all__ = ["positive_int", "widths", "write_json"]


def positive_int(s: str) -> int:
    """An integer ``>= 1`` (``1e6`` allowed).

    Args:
      s: the argument's text.

    Returns:
      The integer.

    Raises:
      argparse.ArgumentTypeError: not a positive integer (argparse reports it, exit 2).
    """
    try:
        v = int(float(s)) if "e" in s.lower() else int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s}")
    return v


def widths(s: str) -> list:
    """Network widths ``d_in,n_1,...,d_out`` (commas or dashes), at least three, all ``>= 1``.

    Args:
      s: the argument's text, e.g. ``12,10,7,2`` or ``12-10-7-2``.

    Returns:
      The widths as a list of ints.

    Raises:
      argparse.ArgumentTypeError: not such a list.
    """
    try:
        w = [int(v) for v in s.replace("-", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 12,10,7,2, got {s!r}") from None
    if len(w) < 3 or min(w) < 1:
        raise argparse.ArgumentTypeError(f"expected at least d_in, one hidden width and d_out, got {s!r}")
    return w


def write_json(path, obj) -> None:
    """Writes ``obj`` as indented JSON (atomically, with a final newline).

    Args:
      path: the file.
      obj: a JSON-ready object.
    """
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")
