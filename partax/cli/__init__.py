"""The ``partax`` command: one module per subcommand.

Subcommands print a short human summary and write machine-readable output (JSON / npz)
into the directory they name; ``partax <command> --help`` documents each one. Each module
(:mod:`~partax.cli.demo`, :mod:`~partax.cli.partition`, :mod:`~partax.cli.info`,
:mod:`~partax.cli.regions`, :mod:`~partax.cli.bounds`, :mod:`~partax.cli.slice`,
:mod:`~partax.cli.density`, :mod:`~partax.cli.bench`) has ``add_parser(subparsers)`` and ``run(args) -> int``; shared
argument types are in :mod:`partax.cli.arguments`. This package is the only place in
partax that parses arguments and prints (beside the runner ``python -m partax.bench``).

Exit status: what the subcommand returns (0 done; 1 a demo step or a bench workload failed);
2 for a bad argument or input that partax's own checks refuse (one line
``partax CMD: error: ...`` on stderr) or a file that cannot be read (``OSError`` with a file
name); 1 with the traceback for any other exception (a bug, or a library's failure); 130 on
Ctrl-C.

Example:
    >>> from partax.cli import build_parser
    >>> args = build_parser().parse_args(["bounds", "4", "6", "4"])
    >>> args.command, args.widths
    ('bounds', [4, 6, 4])

From the shell: ``partax bounds 4 6 4`` (or ``python -m partax.cli bounds 4 6 4``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

# NB: the subcommand modules ``slice`` and ``partition`` are names in this namespace
from partax.cli import bench, bounds, compress, count, demo, density, info, partition, regions, slice

__all__ = ["main", "build_parser", "COMMANDS"]

# the subcommands, in the order ``partax --help`` lists them
COMMANDS = (demo, partition, info, regions, bounds, count, slice, compress, density, bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``partax`` argument parser, with every subcommand of :data:`COMMANDS`.

    Returns:
      The parser; a parsed namespace has ``command`` (the subcommand's name) and ``run`` (its
      ``run(args) -> int``).
    """
    parser = argparse.ArgumentParser(
        prog="partax",
        description="The convex partition that a ReLU network draws on its input and latent spaces. "
        "Run partax COMMAND --help for the options of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Runs the ``partax`` command.

    Args:
      argv: the arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status (see the module's docstring). ``--help`` and argparse's own errors
      (unknown options, bad values) exit through ``SystemExit`` (0 and 2).
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    _persistent_compilation_cache()
    try:
        return args.run(args) or 0
    except (ValueError, TypeError) as e:
        if not _raised_by_partax(e):  # a bug or a library's failure, not a check of ours
            traceback.print_exc()
            return 1
        print(f"partax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output went to a pipe that closed (| head): not an error
        try:
            sys.stdout = open(os.devnull, "w")  # Python's exit flush must not raise again
        except OSError:
            pass
        return 0
    except OSError as e:
        if e.filename is None:
            traceback.print_exc()
            return 1
        print(f"partax {args.command}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"partax {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a failure: the traceback says where
        traceback.print_exc()
        return 1


# the partax package: a ValueError/TypeError raised from a frame in here is one of its checks
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _persistent_compilation_cache() -> None:
    """Compiled kernels persist across ``partax`` runs (XLA's compilation cache), so a command's
    first call does not pay for compiling again: ``$PARTAX_CACHE_DIR`` (default
    ``~/.cache/partax/xla``); ``PARTAX_CACHE_DIR=`` (empty) turns it off, and a cache directory
    the user set for JAX is left alone."""
    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    path = os.environ.get("PARTAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "partax", "xla"))
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _raised_by_partax(e: BaseException) -> bool:
    """Whether the innermost frame that raised ``e`` is partax's own code (a validation error
    of an argument or file) rather than a library's (NumPy, JAX, ...)."""
    tb = e.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)
