"""``partax partition``: the region tables of inputs (a ``.npy`` array or a sampler) under a net.

Writes ``partition.npz`` (:meth:`partax.Partition.save`) and ``summary.json`` into ``--out``
and prints the regions per hidden layer and scope.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

import partax
from partax import distributed
from partax.cli.arguments import check_box, load_array, positive_int, widths, write_json

__all__ = ["add_parser", "run", "regions_table"]


def add_parser(subparsers):
    """Adds ``partax partition`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "partition",
        help="partition inputs by the regions of a network",
        description="Partition inputs (a .npy array or a sampler) by the linear regions of a network and "
        "write the region tables (partition.npz) and summary.json into --out. Give exactly one of --data "
        "and --sample.",
    )
    p.add_argument("--net", help="a partax net (.npz from partax.save_net) (default: a random --widths net)")
    p.add_argument("--widths", type=widths, default="12,10,7,5,4,3,2",
                   help="widths d_in,n_1,...,d_out of the random net (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random net and the sampler (default: %(default)s)")
    p.add_argument("--data", help="inputs, a .npy array (N, d_in)")
    p.add_argument("--labels", help="labels of --data, a .npy int array (N,)")
    p.add_argument("--sample", choices=["uniform", "gaussian"], help="draw the inputs instead of --data")
    p.add_argument("--n", type=positive_int, default=2**20, help="number of samples (default: %(default)s = 2^20)")
    p.add_argument("--lo", type=float, default=0.0,
                   help="uniform box lower bound / gaussian mean (default: %(default)s)")
    p.add_argument("--hi", type=float, default=1.0,
                   help="uniform box upper bound / gaussian std (default: %(default)s)")
    p.add_argument("--scopes", default="layer,prefix,suffix",
                   help="comma-separated scopes, of layer, prefix, suffix (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="inputs per chunk (default: the engine's choice for the net and device)")
    p.add_argument("--exact", action="store_true", help="detect hash collisions (slower)")
    p.add_argument("--reduce", choices=["auto", "host", "device"], default="auto",
                   help="where each chunk is grouped by key: host (a NumPy sort), device (a table of known "
                   "regions on the device), auto: host on CPU, device on accelerators (default: %(default)s)")
    p.add_argument("--distributed", action="store_true",
                   help="run on every device of every process (jax.distributed; see scripts/README.md)")
    p.add_argument("--coordinator", help="with --distributed: coordinator host:port (default: environment / cluster)")
    p.add_argument("--num-processes", type=int, help="with --distributed: number of processes (default: environment)")
    p.add_argument("--process-id", type=int, help="with --distributed: this process's index (default: environment)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(run=run)
    return p


def regions_table(p) -> str:
    """Regions per scope (rows) and hidden layer (columns), as aligned text.

    Args:
      p: a :class:`partax.Partition`.

    Returns:
      The table's lines.
    """
    L = p.num_layers
    head = "scope   " + "".join(f"{'layer ' + str(l):>12}" for l in range(1, L + 1))
    rows = [head, "-" * len(head)]
    for s in p.scopes:
        rows.append(f"{s:<8}" + "".join(f"{v:>12,}" for v in p.num_regions(s)))
    return "\n".join(rows)


def run(args) -> int:
    """Partitions the inputs and writes ``partition.npz`` and ``summary.json``.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).

    Raises:
      ValueError: not exactly one of ``--data`` and ``--sample``, or ``--labels`` without ``--data``.
    """
    if (args.data is None) == (args.sample is None):
        raise ValueError("--data/--sample: give exactly one of --data X.npy or --sample uniform|gaussian")
    if args.labels and not args.data:
        raise ValueError("--labels: goes with --data, not --sample")
    if args.distributed:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    if args.net:
        net = partax.load_net(args.net)
        net_desc = args.net
    else:
        net = partax.mlp(jax.random.key(args.seed), args.widths, bias_std=0.1)
        net_desc = f"random {'-'.join(map(str, args.widths))} (seed {args.seed})"
    labels = None
    if args.data:
        source = load_array(args.data, "--data", mmap=args.distributed)
        if args.labels:
            labels = load_array(args.labels, "--labels")
        data_desc = f"{args.data} {source.shape}"
        if args.distributed:  # each process reads its own contiguous shard
            share = distributed.process_slice(len(source))
            source = np.asarray(source[share])
            labels = None if labels is None else labels[share]
    else:
        key = jax.random.key(args.seed + 1)
        if args.sample == "uniform":
            check_box(args.lo, args.hi)
            source = partax.sources.uniform_box(args.lo, args.hi, args.n, key, dim=net.input_dim)
            data_desc = f"{args.n:,} uniform samples of [{args.lo}, {args.hi}]^{net.input_dim}"
        else:
            source = partax.sources.gaussian(args.lo, args.hi, args.n, key, dim=net.input_dim)
            data_desc = f"{args.n:,} gaussian samples N({args.lo}, {args.hi}^2) in R^{net.input_dim}"
    scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())
    warmup = None
    if not args.distributed and isinstance(source, np.ndarray):
        # one chunk first, so that the throughput below is the steady state, not the compilation
        from partax.engine import default_batch_size

        bs = args.batch_size or default_batch_size(net)
        t0 = time.perf_counter()
        partax.partition(net, source[:bs], None if labels is None else labels[:bs], scopes=scopes,
                         batch_size=args.batch_size, exact=args.exact, progress=False, reduce=args.reduce)
        warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.distributed:
        p = distributed.partition(net, source, labels, scopes=scopes, batch_size=args.batch_size, exact=args.exact)
        if jax.process_index() != 0:  # every process holds the global tables; process 0 writes them
            return 0
    else:
        p = partax.partition(net, source, labels, scopes=scopes, batch_size=args.batch_size, exact=args.exact,
                             reduce=args.reduce)
    seconds = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    p.save(os.path.join(args.out, "partition.npz"))
    summary = dict(p.summary(), net=net_desc, data=data_desc, seconds=seconds, inputs_per_s=p.total / seconds,
                   compile_seconds=warmup)
    write_json(os.path.join(args.out, "summary.json"), summary)
    print(f"net:  {net_desc}, widths {list(net.widths)}")
    print(f"data: {data_desc}")
    if warmup is not None:
        print(f"compilation and a first chunk: {warmup:.2f} s; then {p.total:,} inputs in {seconds:.2f} s "
              f"({p.total / seconds:,.0f} inputs/s, steady state)")
    else:
        print(f"{p.total:,} inputs in {seconds:.2f} s ({p.total / seconds:,.0f} inputs/s, compilation included)")
    print(f"{p.near_boundary:,} inputs within {p.boundary_tol:g} of a boundary")
    print("regions per hidden layer:")
    print(regions_table(p))
    print(f"wrote {os.path.join(args.out, 'partition.npz')} and summary.json")
    return 0
