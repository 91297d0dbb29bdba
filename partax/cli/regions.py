"""``partax regions``: the region report (exact polytope data) of the regions that inputs visit.

Loads the net and the inputs (``--data``, a ``.npy`` array; or, without it, ``--samples``
uniform inputs in the box ``[--lo, --hi]^d``), partitions them (or loads a saved partition of
those inputs, ``--partition``), writes the report (:func:`partax.geometry.region_report`) to
``DIR/regions.npz`` and, most populated regions first, to ``DIR/regions.md``, and prints a
short summary.
"""

from __future__ import annotations

import os

import jax
import numpy as np

import partax
import partax.geometry
from partax.files import atomic_write_text
from partax.cli.arguments import check_box, load_array, positive_int

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Adds ``partax regions`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "regions",
        help="exact polytope data (region report) of the regions data visits",
        description="Partition inputs (--data X.npy, or --samples uniform inputs of the box [--lo, --hi]^d) "
        "by a net's regions and write the region report to --out/regions.npz: per region its count, "
        "exemplar, margin and, for the --max-regions most populated, the Chebyshev radius and centre, "
        "the facets and (with a box) the volume. Exemplars whose float64 code does not reproduce their "
        "region are kept and flagged (code_reproduces). Also writes --out/regions.md, the most populated "
        "regions first.",
    )
    p.add_argument("--net", required=True, help="a partax net file (.npz)")
    p.add_argument("--data", help="inputs, a .npy array [N, d_in] (default: sample the box --lo, --hi)")
    p.add_argument("--partition", help="a saved partition (.npz from `partax partition` or Partition.save) of "
                   "exactly these inputs, instead of partitioning them again (default: partition the inputs)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--scope", default="prefix", choices=("prefix", "layer", "suffix"),
                   help="the scope of the regions (default: %(default)s)")
    p.add_argument("--layer", type=int, default=None, help="1-based hidden layer (default: the last)")
    p.add_argument("--max-regions", type=int, default=1000,
                   help="how many of the most populated regions get LP columns (default: %(default)s)")
    p.add_argument("--lo", type=float, default=None, help="domain box lower bound (with --hi; default: no box)")
    p.add_argument("--hi", type=float, default=None, help="domain box upper bound (with --lo; default: no box)")
    p.add_argument("--samples", type=positive_int, default=100_000,
                   help="uniform inputs drawn in the box without --data (default: %(default)s)")
    p.add_argument("--solver", default="auto", choices=("auto", "ipm", "highs"),
                   help="LP backend; auto: HiGHS on CPU, the JAX interior point on accelerators "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples and the volume estimates (default: %(default)s)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Partitions the inputs, writes ``regions.npz`` and prints a summary.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).

    Raises:
      ValueError: ``--lo`` without ``--hi`` (or the reverse), or neither ``--data`` nor a box.
    """
    check_box(args.lo, args.hi)
    if args.data is None and args.lo is None:
        raise ValueError("--data: give --data X.npy, or a box (--lo, --hi) to sample from")
    net = partax.load_net(args.net)
    box = partax.Box(args.lo, args.hi) if args.lo is not None else None
    sample_box = None
    if args.data is not None:
        x = load_array(args.data, "--data")
    else:
        x = box.sample(jax.random.key(args.seed), args.samples, net.input_dim)
        sample_box = box
    if args.partition:
        part = partax.load_partition(args.partition)
        if args.scope not in part.scopes:
            raise ValueError(f"--partition: {args.partition!r} has scopes {list(part.scopes)}, not {args.scope!r}")
        if part.total != len(x):
            raise ValueError(f"--partition: {args.partition!r} holds {part.total:,} inputs, the data {len(x):,}; "
                             "it must be the partition of exactly these inputs")
    else:
        part = partax.partition(net, x, scopes=(args.scope,), progress=True)
    layer = args.layer if args.layer is not None else net.num_hidden
    in_space = args.scope == "prefix" or layer == 1
    # keep_mismatched: a few exemplars off their region (rounding) are kept and flagged, with a warning
    rep = partax.geometry.region_report(
        net, part, x, scope=args.scope, layer=layer, domain=box if in_space else None,
        max_regions=args.max_regions, solver=args.solver,
        sample_box=sample_box if args.scope == "prefix" else None, seed=args.seed, keep_mismatched=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "regions.npz")
    rep.save(path)
    md_path = os.path.join(args.out, "regions.md")
    atomic_write_text(md_path, f"# Region report: {args.net}\n\n" + rep.to_markdown(max_rows=50))
    lp_rows = rep.has_lp
    print(f"{len(rep):,} regions ({args.scope}, layer {layer}) from {rep.meta['total']:,} inputs; "
          f"LP columns for {int(lp_rows.sum()):,}")
    if lp_rows.any():
        ok_r = lp_rows & np.isfinite(rep.radius)
        ok_f = lp_rows & (rep.num_facets >= 0)
        print(f"  margin   median {np.nanmedian(rep.margin):.3g}")
        if ok_r.any():
            print(f"  radius   median {np.median(rep.radius[ok_r]):.3g}  max {np.max(rep.radius[ok_r]):.3g}")
        if ok_f.any():
            print(f"  facets   median {np.median(rep.num_facets[ok_f]):.0f}  max {rep.num_facets[ok_f].max()}")
        if np.isfinite(rep.volume).any():
            print(f"  volume   sum over reported regions {np.nansum(rep.volume):.4g}")
    print(f"wrote {path} and {md_path}")
    return 0
