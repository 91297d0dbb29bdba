"""``partax slice``: the exact regions of a 2D slice of the input space, drawn to a PNG.

The plane is the input plane of a 2-input net (the square ``[-extent, extent]^2``) or the
plane through three rows of ``--data`` (:meth:`partax.geometry.Plane.through`). Writes the
figure (:func:`partax.plots.plot_slice`: one colour per region, the decision boundary in black,
with ``--through`` the data box ``[min, max]^d`` of ``--data`` and the three inputs labelled by
row and, with ``--labels``, class) and a JSON summary beside it (same path, ``.json``), and
prints the count next to the bounds a 2D slice obeys.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from partax import bounds, plots
from partax.cli.arguments import load_array
from partax.files import atomic_write_text
from partax.geometry.slices import Plane, slice_regions
from partax.nets import load_net

__all__ = ["add_parser", "run", "slice_summary"]


def add_parser(subparsers):
    """Adds ``partax slice`` to the ``partax`` parser.

    Args:
      subparsers: the action of ``ArgumentParser.add_subparsers``.

    Returns:
      The subcommand's parser.
    """
    p = subparsers.add_parser(
        "slice",
        help="draw the exact regions of a 2D slice",
        description="Enumerate the exact regions of a 2D slice of the input space (the input plane of a "
        "2-input net, or the plane through three inputs), draw them to a PNG (one colour per region, the "
        "decision boundary in black; with --through also the box of --data and the three inputs, named by row "
        "and, with --labels, class; the axes are the plane's coordinates s, t along u, v from its origin), "
        "write a JSON summary beside it and print the count beside the bounds. On 2 CPU cores the slice of a "
        "64-32-32-10 digits net through three digits (675 regions) enumerates in about 0.2 s; the command "
        "takes 6-9 s in all, most of it start-up and drawing.",
    )
    p.add_argument("--net", required=True, help="a partax net (.npz)")
    p.add_argument("--through", nargs=3, type=int, metavar=("I", "J", "K"),
                   help="rows of --data spanning the plane (required unless the net has 2 inputs)")
    p.add_argument("--data", help="inputs (.npy) that --through refers to; the figure outlines their box "
                   "[min, max]^d (the range of all their values)")
    p.add_argument("--labels", help="labels (.npy, one per row of --data): the figure names the class of each "
                   "anchor input")
    p.add_argument("--scope", choices=["prefix", "layer", "suffix"], default="prefix",
                   help="the scope of the regions (default: %(default)s)")
    p.add_argument("--layer", type=int, default=None, help="hidden layer, 1-based (default: the last)")
    p.add_argument("--extent", type=float, default=3.0,
                   help="half-width of the square [-extent, extent]^2 for a 2-input net (default: %(default)s)")
    p.add_argument("--margin", type=float, default=1.5,
                   help="with --through: half-side of the square around the circumcircle, in circumradii "
                   "(default: %(default)s)")
    p.add_argument("--out", required=True,
                   help="output figure, its format from the extension (.png, .pdf, .svg, ...; PNG without one); "
                   "a .json summary is written beside it")
    p.set_defaults(run=run)
    return p


def _plane(args, net):
    """``(plane, marks, labels, box)``: the slice's plane, the ``(s, t)`` of the three inputs, their
    labels for the figure and the data box ``(lo, hi)`` (all but the plane None without ``--through``)."""
    if args.through:
        if not args.data:
            raise ValueError("data: --through needs --data X.npy (the inputs the indices refer to)")
        X = load_array(args.data, "--data")
        X = X.reshape(X.shape[0], -1)
        if X.shape[1] != net.input_dim:
            raise ValueError(f"data: expected rows of {net.input_dim} values (net.input_dim), got {X.shape[1]}")
        idx = [int(i) for i in args.through]
        for i in idx:
            if not 0 <= i < X.shape[0]:
                raise ValueError(f"through: index {i} out of range for data with {X.shape[0]} rows")
        classes = None
        if getattr(args, "labels", None):
            y = load_array(args.labels, "--labels").reshape(-1)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"labels: expected one label per row of --data ({X.shape[0]}), got {y.shape[0]}")
            classes = [y[i].item() for i in idx]
        plane = Plane.through(*X[idx].astype(np.float64), margin=args.margin)
        names = [f"#{i}" + ("" if classes is None else f" (class {c})") for i, c in zip(idx, classes or idx)]
        box = (float(np.min(X)), float(np.max(X)))
        return plane, plane.coords(X[idx].astype(np.float64)), names, box
    if net.input_dim != 2:
        raise ValueError(
            f"through: the net has {net.input_dim} inputs; pass --through I J K --data X.npy to pick a plane"
        )
    h = float(args.extent)
    return Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-h, h), (-h, h))), None, None, None


def slice_summary(net_path, res, plane, seconds: float, widths) -> dict:
    """The JSON summary of a slice (what ``partax slice`` writes beside its PNG).

    Args:
      net_path: the net's file.
      res: the :class:`partax.geometry.SliceRegions`.
      plane: its :class:`partax.geometry.Plane`.
      seconds: the enumeration's time.
      widths: the hidden widths the slice sees.

    Returns:
      ``{"net", "scope", "layer", "regions", "cells", "seconds", "extent", "bounds_n0_2"}``
      (the bounds for ``n0 = 2`` as strings: exact integers).
    """
    return {
        "net": os.fspath(net_path),
        "scope": res.scope,
        "layer": res.layer,
        "regions": res.num_regions,
        "cells": res.num_cells,
        "seconds": seconds,
        "extent": [list(e) for e in plane.extent],
        "bounds_n0_2": {k: str(v) for k, v in bounds.table(2, widths).items()},
    }


def run(args) -> int:
    """Enumerates the slice, writes the PNG and its JSON summary, prints the counts.

    Args:
      args: the parsed arguments.

    Returns:
      The exit status (0).

    Raises:
      ValueError: no plane (a net with more than 2 inputs without ``--through``), ``--through``
        without ``--data``, rows out of range, or an ``--out`` extension matplotlib cannot write.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(os.fspath(args.out))[1].lstrip(".").lower() or "png"
    supported = FigureCanvasBase.get_supported_filetypes()
    if ext not in supported:
        raise ValueError(f"out: expected a figure file ({', '.join('.' + k for k in sorted(supported))}), "
                         f"got {os.fspath(args.out)!r}")
    net = load_net(args.net)
    plane, marks, names, box = _plane(args, net)
    t = time.perf_counter()
    res = slice_regions(net, plane, scope=args.scope, layer=args.layer)
    seconds = time.perf_counter() - t
    widths = list(net.widths[: res.depth])
    summary = slice_summary(args.net, res, plane, seconds, widths)
    print(f"slice of {net.input_dim}-{'-'.join(map(str, net.widths))}-{net.output_dim}: "
          f"{res.num_regions} {args.scope} regions at layer {res.layer} ({res.num_cells} cells, {seconds:.2f} s)")
    print("a 2D slice is bounded by the n0 = 2 bounds of the layers it sees:")
    print(bounds.format_table(2, widths))
    if net.input_dim != 2:
        print(f"(whole input space, n0 = {net.input_dim}: serra = {bounds.serra(net.input_dim, widths)})")
    data_name = os.path.basename(os.fspath(args.data)) if args.through else None
    note = None
    if args.through:
        i, j, _ = args.through
        note = (f"plane through rows {', '.join(map(str, args.through))} of {data_name}: origin = their "
                f"circumcentre, u along x[{j}] - x[{i}], v orthogonal to u in the plane (unit vectors)")
    ax = plots.plot_slice(res, net=net, plane=plane, marks=marks, mark_labels=names, box=box,
                          data=data_name, note=note)
    plots.save(ax.figure, args.out, dpi=150, bbox_inches="tight")
    atomic_write_text(os.path.splitext(os.fspath(args.out))[0] + ".json", json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0
