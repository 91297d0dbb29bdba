"""The ``partax`` command.

Subcommands print a short human summary and write machine-readable output (JSON / npz)
into the directory they name. ``partax <command> --help`` documents each one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

__all__ = ["main"]


def _positive_int(s: str) -> int:
    v = int(float(s)) if "e" in s.lower() else int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s}")
    return v


def _widths(s: str) -> list:
    try:
        w = [int(v) for v in s.replace("-", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 12,10,7,2, got {s!r}") from None
    if len(w) < 3 or min(w) < 1:
        raise argparse.ArgumentTypeError(f"expected at least d_in, one hidden width and d_out, got {s!r}")
    return w


def _write_json(path: str, obj) -> None:
    from partax.files import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def _regions_table(p) -> str:
    L = p.num_layers
    head = "scope   " + "".join(f"{'layer ' + str(l):>12}" for l in range(1, L + 1))
    rows = [head, "-" * len(head)]
    for s in p.scopes:
        rows.append(f"{s:<8}" + "".join(f"{v:>12,}" for v in p.num_regions(s)))
    return "\n".join(rows)


# --- partax demo ------------------------------------------------------------------------
def _add_demo(sub):
    p = sub.add_parser(
        "demo",
        help="the main job: IB data, training traced through its regions, region report",
        description="Build the exact Tishby IB dataset, train the 12-10-7-5-4-3-2 ReLU net with Adam while "
        "tracing regions, I(X;T) and I(T;Y) per layer and scope at log-spaced epochs, partition [0,1]^12 "
        "of the final net, write its region report, figures and report.md into --out.",
    )
    p.add_argument("--quick", action="store_true", help="300 epochs and fewer samples (under a minute)")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from partax.demo import DemoError, run_demo

    try:
        summary = run_demo(out=args.out, quick=args.quick, seed=args.seed, progress=True)
    except DemoError as e:
        for step, error in e.failed.items():
            print(f"partax demo: step {step!r} failed: {error}", file=sys.stderr)
        print(f"partax demo: wrote what the other steps produced into {args.out}/ (see report.md)", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k in ("epochs", "checkpoints", "final_accuracy", "seconds")}))
    print(f"wrote {args.out}/ (report.md, infoplane.png, trace.jsonl, regions.npz)")
    return 0


# --- partax info ------------------------------------------------------------------------
def _add_info(sub):
    p = sub.add_parser(
        "info",
        help="information measures of a saved partition (regions as bins)",
        description="Read a partition.npz (from partax partition) and print, per scope and hidden layer, the "
        "regions, H(T) = I(X;T), I(T;Y) (when labels were given) and the saturation diagnostics.",
    )
    p.add_argument("partition", help="a partition.npz written by partax partition")
    p.add_argument("--estimator", default="plugin", choices=["plugin", "miller_madow"])
    p.add_argument("--out", help="also write info.json into this directory")
    p.set_defaults(run=_run_info)


def _run_info(args) -> int:
    import numpy as np

    import partax
    from partax import info

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
        _write_json(os.path.join(args.out, "info.json"), result)
    return 0


# --- partax partition -------------------------------------------------------------------
def _add_partition(sub):
    p = sub.add_parser(
        "partition",
        help="partition inputs by the regions of a network",
        description="Partition inputs (a .npy array or a sampler) by the linear regions of a network and "
        "write the region tables (partition.npz) and summary.json into --out.",
    )
    p.add_argument("--net", help="a partax net (.npz from partax.save_net); default: a random --widths net")
    p.add_argument("--widths", type=_widths, default=[12, 10, 7, 5, 4, 3, 2], help="random net widths (default 12,10,7,5,4,3,2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random net and the sampler")
    p.add_argument("--data", help="inputs, a .npy array (N, d_in)")
    p.add_argument("--labels", help="labels, a .npy int array (N,)")
    p.add_argument("--sample", choices=["uniform", "gaussian"], help="draw inputs instead of --data")
    p.add_argument("--n", type=_positive_int, default=2**20, help="number of samples (default 2^20)")
    p.add_argument("--lo", type=float, default=0.0, help="uniform box lower bound / gaussian mean (default 0)")
    p.add_argument("--hi", type=float, default=1.0, help="uniform box upper bound / gaussian std (default 1)")
    p.add_argument("--scopes", default="layer,prefix,suffix", help="comma-separated scopes")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--exact", action="store_true", help="detect hash collisions (slower)")
    p.add_argument("--distributed", action="store_true",
                   help="run on every device of every process (jax.distributed; see scripts/README.md)")
    p.add_argument("--coordinator", help="with --distributed: coordinator host:port (default: environment / cluster)")
    p.add_argument("--num-processes", type=int, help="with --distributed: number of processes")
    p.add_argument("--process-id", type=int, help="with --distributed: this process's index")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=_run_partition)


def _run_partition(args) -> int:
    import jax
    import numpy as np

    import partax

    if args.distributed:
        from partax import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.net:
        net = partax.load_net(args.net)
        net_desc = args.net
    else:
        net = partax.mlp(jax.random.key(args.seed), args.widths, bias_std=0.1)
        net_desc = f"random {'-'.join(map(str, args.widths))} (seed {args.seed})"
    if (args.data is None) == (args.sample is None):
        raise SystemExit("partax partition: give exactly one of --data X.npy or --sample uniform|gaussian")
    labels = None
    if args.data:
        source = np.load(args.data, allow_pickle=False, mmap_mode="r" if args.distributed else None)
        if args.labels:
            labels = np.load(args.labels, allow_pickle=False)
        data_desc = f"{args.data} {source.shape}"
        if args.distributed:  # each process reads its own contiguous shard
            share = distributed.process_slice(len(source))
            source = np.asarray(source[share])
            labels = None if labels is None else labels[share]
    else:
        if args.labels:
            raise SystemExit("partax partition: --labels goes with --data, not --sample")
        key = jax.random.key(args.seed + 1)
        if args.sample == "uniform":
            source = partax.sources.uniform_box(args.lo, args.hi, args.n, key, dim=net.input_dim)
            data_desc = f"{args.n:,} uniform samples of [{args.lo}, {args.hi}]^{net.input_dim}"
        else:
            source = partax.sources.gaussian(args.lo, args.hi, args.n, key, dim=net.input_dim)
            data_desc = f"{args.n:,} gaussian samples N({args.lo}, {args.hi}^2) in R^{net.input_dim}"
    scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())
    t0 = time.perf_counter()
    if args.distributed:
        p = distributed.partition(net, source, labels, scopes=scopes, batch_size=args.batch_size, exact=args.exact)
        if jax.process_index() != 0:  # every process holds the global tables; process 0 writes them
            return 0
    else:
        p = partax.partition(net, source, labels, scopes=scopes, batch_size=args.batch_size, exact=args.exact)
    seconds = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    p.save(os.path.join(args.out, "partition.npz"))
    summary = dict(p.summary(), net=net_desc, data=data_desc, seconds=seconds, inputs_per_s=p.total / seconds)
    _write_json(os.path.join(args.out, "summary.json"), summary)
    print(f"net:  {net_desc}, widths {list(net.widths)}")
    print(f"data: {data_desc}")
    print(f"{p.total:,} inputs in {seconds:.2f} s ({p.total / seconds:,.0f} inputs/s); "
          f"{p.near_boundary:,} within {p.boundary_tol:g} of a boundary")
    print("regions per hidden layer:")
    print(_regions_table(p))
    print(f"wrote {os.path.join(args.out, 'partition.npz')} and summary.json")
    return 0


# --- partax bench -----------------------------------------------------------------------
def _add_bench(sub):
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite",
        description="Run the benchmark workloads on the default JAX device and write bench.json and bench.md.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes on a 2-core CPU)")
    p.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these workloads")
    p.add_argument("--reps", type=_positive_int, default=None, help="repetitions (best is kept)")
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    from partax import bench

    result = bench.run(quick=args.quick, out=args.out, only=args.only, reps=args.reps)
    print(bench.to_markdown(result))
    print(f"wrote {os.path.join(args.out, 'bench.json')} and bench.md")
    failed = [w["name"] for w in result["workloads"] if "error" in w]
    if failed:
        print(f"partax bench: workloads failed: {', '.join(failed)} (the others are in bench.json)", file=sys.stderr)
        return 1
    return 0


# --- partax bounds ----------------------------------------------------------------------
def _add_bounds(sub):
    p = sub.add_parser(
        "bounds",
        help="upper bounds on the number of linear regions",
        description="Print the published upper bounds on the number of linear regions of an N0-N1-...-NL "
        "ReLU network side by side (trivial, Raghu, Montufar, Serra; Zaslavsky for one layer).",
    )
    p.add_argument("widths", nargs="+", type=int, metavar="N", help="input dimension N0, then hidden widths")
    p.add_argument("--out", help="also write bounds.json into this directory")
    p.set_defaults(run=_run_bounds)


def _run_bounds(args) -> int:
    from partax import bounds

    result = bounds.cli_bounds(args.widths)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        _write_json(os.path.join(args.out, "bounds.json"), {k: str(v) if isinstance(v, int) else v for k, v in result.items()})
    return 0


# --- partax slice -----------------------------------------------------------------------
def _add_slice(sub):
    p = sub.add_parser(
        "slice",
        help="draw the exact regions of a 2D slice",
        description="Enumerate the exact regions of a 2D slice of the input space (the input plane of a "
        "2-input net, or the plane through three inputs), draw them to a PNG (one colour per region, the "
        "decision boundary in black) and print the count beside the bounds.",
    )
    p.add_argument("--net", required=True, help="a partax net (.npz)")
    p.add_argument("--through", nargs=3, type=int, metavar=("I", "J", "K"), help="rows of --data spanning the plane")
    p.add_argument("--data", help="inputs (.npy) that --through refers to")
    p.add_argument("--scope", choices=["prefix", "layer", "suffix"], default="prefix")
    p.add_argument("--layer", type=int, default=None, help="hidden layer (1-based; default the last)")
    p.add_argument("--extent", type=float, default=3.0, help="half-width of the square for a 2-input net")
    p.add_argument("--margin", type=float, default=1.5, help="square half-side around the circumcircle, in radii")
    p.add_argument("--out", required=True, help="output PNG (a .json summary is written beside it)")
    p.set_defaults(run=_run_slice)


def _run_slice(args) -> int:
    from partax.geometry import slices

    slices.cli_slice(args)
    return 0


# --- partax regions ---------------------------------------------------------------------
def _add_regions(sub):
    p = sub.add_parser(
        "regions",
        help="exact polytope data (region report) of the regions data visits",
        description="partax regions --net NET.npz (--data X.npy | --lo A --hi B [--samples N]) --out DIR "
        "[--scope --layer --max-regions --solver --seed]: partition, then write DIR/regions.npz. "
        "Run `partax regions --help` for the full list.",
        add_help=False,
    )
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(run=_run_regions)


def _run_regions(args) -> int:
    from partax.geometry.report import cli_regions

    cli_regions(args.args[1:] if args.args[:1] == ["--"] else args.args)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partax",
        description="The convex partition that a ReLU network draws on its input and latent spaces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS = [_add_demo, _add_partition, _add_info, _add_regions, _add_bounds, _add_slice, _add_bench]


def main(argv=None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["regions"]:  # parses its own arguments
        argv = [argv[0], "--", *argv[1:]] if argv[1:2] != ["--"] else argv
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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


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


if __name__ == "__main__":
    sys.exit(main())
