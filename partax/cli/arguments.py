"""Argument types and helpers shared by the ``partax`` subcommands.

Example:
    >>> from partax.cli.arguments import positive_int, widths
    >>> positive_int("1e6"), widths("12,10,7-2")
    (1000000, [12, 10, 7, 2])
"""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from partax.files import atomic_write_text

__all__ = ["positive_int", "widths", "write_json", "load_array", "check_box"]

NPY_MAGIC = b"\x93NUMPY"


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


def load_array(path: str, flag: str, *, mmap: bool = False) -> np.ndarray:
    """Loads a ``.npy`` array given on the command line; a clear error for anything else.

    Args:
      path: the file.
      flag: the option it came from (``"--data"``), for the messages.
      mmap: memory-map the file instead of reading it.

    Returns:
      The array.

    Raises:
      ValueError: the file does not exist, or is not a ``.npy`` array file (a text file, a
        ``.npz`` archive, a pickle), or holds Python objects.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: no such file {path!r}")
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        kind = "a .npz archive (use one of its arrays)" if head[:2] == b"PK" else "another format"
        raise ValueError(f"{flag}: {path!r} is not a .npy array file (it is {kind}); write arrays with numpy.save")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as e:
        raise ValueError(f"{flag}: {path!r} holds Python objects, not a numeric array ({e})") from None


def check_box(lo, hi, flag: str = "--lo/--hi", metavars=("lo", "hi")) -> tuple:
    """``(lo, hi)`` of a ``--lo``/``--hi`` box: both given, finite, ``lo < hi``; or both None.

    Args:
      lo, hi: the parsed values (floats or None).
      flag: the option(s) the bounds came from, for the messages (``"--box"``: one ``LO HI`` pair).
      metavars: the bounds' names in the option's help, for the messages.

    Returns:
      ``(lo, hi)``.

    Raises:
      ValueError: one without the other, a non-finite bound, or ``lo >= hi``.
    """
    if (lo is None) != (hi is None):
        raise ValueError(f"{flag}: give both (the box [lo, hi]^d) or neither")
    if lo is None:
        return None, None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{flag}: expected finite bounds, got {lo} and {hi}")
    if not lo < hi:
        raise ValueError(f"{flag}: expected {metavars[0]} < {metavars[1]}, got {lo} and {hi}")
    return lo, hi
