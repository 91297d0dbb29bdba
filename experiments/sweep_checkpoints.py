"""Partition every checkpoint of a directory, the checkpoints spread over the processes.

Each ``*.npz`` partax net in ``--checkpoints`` (sorted by name) is partitioned on one
process, with the devices of that process (``partax.distributed.partition`` on a mesh of
the local devices: no cross-process collective inside a partition). Checkpoint ``i`` of the
to-do list goes to process ``i % P``; after each round of ``P`` checkpoints the records are
all-gathered and **only process 0 writes** the trace, atomically (temp file + rename of the
whole file), so a crash loses at most the round in flight. A restarted sweep skips the
checkpoints already in the trace.

Trace: ``OUT/trace.jsonl``, one JSON line per checkpoint, scope and hidden layer::

    {"checkpoint": "step_000100.npz", "scope": "prefix", "layer": 2, "regions": 1234,
     "total": 1048576, "near_boundary": 0, "process": 1, "seconds": 0.8}

Usage (one process)::

    python experiments/sweep_checkpoints.py --checkpoints ckpts/ --out runs/sweep --n 1048576

Several processes on one machine, or a SLURM job (``partax.distributed.initialize`` reads
the launcher's environment)::

    scripts/launch_local.sh 2 --cpu-devices 2 -- \\
        python experiments/sweep_checkpoints.py --checkpoints ckpts/ --out runs/sweep --distributed
    srun python experiments/sweep_checkpoints.py --checkpoints ckpts/ --out runs/sweep --distributed

``--demo K`` first writes K random IB-shaped nets (12-10-7-5-4-3-2, seeds 0..K-1) into an
empty checkpoint directory, to try the sweep without a training run. ``--figure PATH`` draws the
regions per hidden layer of every checkpoint of the trace (one panel per scope, shared region axis
up to the number of inputs, title naming the inputs, the network and N) once the sweep is done.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", required=True, help="directory of partax net .npz files")
    p.add_argument("--out", required=True, help="output directory (trace.jsonl)")
    p.add_argument("--data", help="inputs .npy (N, d_in), the same on every process (default: a sampler)")
    p.add_argument("--labels", help="labels .npy (N,) for --data")
    p.add_argument("--n", type=int, default=2**18, help="uniform samples per checkpoint (default 2^18)")
    p.add_argument("--lo", type=float, default=0.0)
    p.add_argument("--hi", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="sampler seed (the same inputs for every checkpoint)")
    p.add_argument("--scopes", default="layer,prefix,suffix")
    p.add_argument("--batch-size", type=int, default=None, help="inputs per device per step")
    p.add_argument("--distributed", action="store_true", help="partax.distributed.initialize() first")
    p.add_argument("--save-partitions", action="store_true",
                   help="also write OUT/partitions/<checkpoint>.npz (each by the process that computed it)")
    p.add_argument("--demo", type=int, default=0, help="write this many random IB nets first (empty dir only)")
    p.add_argument("--figure", metavar="PATH", help="also draw the regions per checkpoint to PATH (process 0)")
    return p.parse_args(argv)


def regions_figure(records: list, *, data: str, net: str):
    """Regions per hidden layer against the checkpoint, one panel per scope, on a shared log axis.

    Args:
      records: the trace's records (``checkpoint``, ``scope``, ``layer``, ``regions``, ``total``).
      data: what the inputs are, for the title.
      net: the network, for the title.

    Returns:
      The matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    from partax import plots

    names = sorted({r["checkpoint"] for r in records})
    scopes = list(dict.fromkeys(r["scope"] for r in records))
    N = max(int(r["total"]) for r in records)
    fig = Figure(figsize=(max(5.0, 0.35 * len(names) + 3.0) * len(scopes) / 1.4, 4.4), layout="constrained")
    axes = fig.subplots(1, len(scopes), squeeze=False, sharey=True)[0]
    pos = {n: i for i, n in enumerate(names)}
    lo = min(max(int(r["regions"]), 1) for r in records)
    for ax, scope in zip(axes, scopes):
        rs = [r for r in records if r["scope"] == scope]
        for layer in sorted({r["layer"] for r in rs}):
            pts = sorted((pos[r["checkpoint"]], r["regions"]) for r in rs if r["layer"] == layer)
            ax.plot([p for p, _ in pts], [c for _, c in pts], "o-", ms=3, lw=1, label=f"layer {layer}")
        ax.axhline(N, ls="--", color="0.5", lw=0.8, label=f"N = {N} inputs")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set(xlabel="checkpoint", ylabel="regions")
        ax.set_title(f"{scope} regions per layer", fontsize=10)
        ax.tick_params(labelleft=True)
    axes[0].set_ylim(lo / 1.5, N * 1.5)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(plots.figure_title("regions per checkpoint", data=data, net=net, N=N), fontsize=10)
    return fig


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_trace(path: str) -> list:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def _gather_json(obj, dist) -> list:
    """``obj`` (JSON-able) from every process, in process order."""
    import jax

    raw = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    if jax.process_count() == 1:
        return [obj]
    return [json.loads(bytes(r).decode()) for r in dist._allgather_rows(raw)]


def main(argv=None) -> int:
    args = _parse(argv)
    import jax

    import partax
    from partax import distributed as dist

    if args.distributed:
        dist.initialize()
    me, nproc = jax.process_index(), jax.process_count()
    os.makedirs(args.out, exist_ok=True)
    trace_path = os.path.join(args.out, "trace.jsonl")

    if args.demo and me == 0:
        os.makedirs(args.checkpoints, exist_ok=True)
        if not glob.glob(os.path.join(args.checkpoints, "*.npz")):
            for s in range(args.demo):
                net = partax.mlp(jax.random.key(s), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1)
                partax.save_net(net, os.path.join(args.checkpoints, f"seed_{s:04d}.npz"))
    if args.demo:
        _gather_json(0, dist)  # barrier: the checkpoints exist before anyone lists them

    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(args.checkpoints, "*.npz")))
    if not names:
        raise SystemExit(f"sweep_checkpoints: no .npz checkpoints in {args.checkpoints!r}")
    # process 0's view of the trace decides what is left (every process gets the same list)
    records = _read_trace(trace_path) if me == 0 else []
    done = set(_gather_json(sorted({r["checkpoint"] for r in records}), dist)[0])
    todo = [n for n in names if n not in done]
    scopes = tuple(s.strip() for s in args.scopes.split(",") if s.strip())

    labels = None
    if args.data:
        x = np.load(args.data, mmap_mode="r")
        labels = np.load(args.labels) if args.labels else None
    mesh = dist.data_mesh(jax.local_devices())
    if me == 0:
        print(f"sweep: {len(todo)} of {len(names)} checkpoints to do on {nproc} process(es) x "
              f"{len(jax.local_devices())} device(s); trace {trace_path}", flush=True)

    rounds = -(-len(todo) // nproc)
    for r in range(rounds):
        mine = []
        i = r * nproc + me
        if i < len(todo):
            name = todo[i]
            net = partax.load_net(os.path.join(args.checkpoints, name))
            if args.data:
                source = np.asarray(x)
            else:
                source = partax.sources.uniform_box(args.lo, args.hi, args.n, jax.random.key(args.seed),
                                                    dim=net.input_dim)
            t0 = time.perf_counter()
            p = dist.partition(net, source, labels, mesh=mesh, scopes=scopes, batch_size=args.batch_size,
                               progress=False)
            seconds = time.perf_counter() - t0
            if args.save_partitions:
                os.makedirs(os.path.join(args.out, "partitions"), exist_ok=True)
                p.save(os.path.join(args.out, "partitions", name))
            for s in p.scopes:
                for layer, count in enumerate(p.num_regions(s).tolist(), start=1):
                    mine.append(dict(checkpoint=name, scope=s, layer=layer, regions=int(count), total=p.total,
                                     near_boundary=p.near_boundary, process=me, seconds=round(seconds, 4)))
        gathered = _gather_json(mine, dist)
        if me == 0:
            for recs in gathered:
                records.extend(recs)
            text = "".join(json.dumps(rec) + "\n" for rec in records)
            _atomic_write_text(trace_path, text)
            print(f"sweep: round {r + 1}/{rounds}: " + ", ".join(
                f"{recs[0]['checkpoint']} ({recs[0]['seconds']:.2f} s)" for recs in gathered if recs), flush=True)
    if args.figure and me == 0 and records:
        from partax import plots

        first = partax.load_net(os.path.join(args.checkpoints, names[0]))
        data = (os.path.basename(args.data) if args.data
                else f"uniform samples of [{args.lo:g}, {args.hi:g}]^{first.input_dim}, seed {args.seed}")
        net = "-".join(str(w) for w in (first.input_dim, *first.widths, first.output_dim)) + " net"
        plots.save(regions_figure(records, data=data, net=net), args.figure)
        print(f"sweep: wrote {args.figure}", flush=True)
    if args.distributed:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
