"""Sharded and multi-host partitions: many devices, many processes, one set of tables.

:func:`partition` gives the same :class:`~partax.engine.Partition` as
:func:`partax.partition` on the concatenation of every process's inputs (identical keys,
counts, label counts, exemplars, totals), while the inputs are split over every device of
a mesh and over every process of a ``jax.distributed`` job. This module is the public
face; the concepts behind it have a module each:

* :mod:`partax.multihost`: meshes (:func:`data_mesh`), processes (:func:`initialize`,
  :func:`process_slice`, :func:`per_process`), host all-gathers, and the status exchanges
  through which a multi-process job fails together (:class:`RemoteInputError`);
* :mod:`partax.sharded_step`: one jitted step on the devices (codes, keys, the local and
  the owner reductions, the all-to-all between them);
* :mod:`partax.sharded_tables`: the owner rows of a step into region tables, tables
  across processes;
* :mod:`partax.sharded`: the engine that runs the steps (how a run goes, what it costs,
  how it fails together, exemplars and labels across processes).

The tables are folded with the single-device engine's accumulator (:mod:`partax.accumulate`)
and finished with its code (:mod:`partax.coarsening`), and both engines check every key
against fingerprints of its code (``collision_check``).

Example:
    >>> import jax, numpy as np, partax
    >>> from partax import distributed
    >>> net = partax.mlp(jax.random.key(0), [3, 16, 8, 2], bias_std=0.3)
    >>> x = np.random.default_rng(0).normal(size=(1000, 3)).astype(np.float32)
    >>> p = distributed.partition(net, x, progress=False)
    >>> q = partax.partition(net, x, progress=False)
    >>> all(p.table(s, l) == q.table(s, l) for s in p.scopes for l in (1, 2))
    True
"""

from __future__ import annotations

from typing import Sequence

import jax

from partax.multihost import RemoteInputError, allgather, data_mesh, initialize, per_process, process_slice
from partax.nets import Net
from partax.scopes import SCOPES
from partax.sharded import partition_one
from partax.sources import Sampler, as_source
from partax.validation import check_net

__all__ = [
    "RemoteInputError", "data_mesh", "initialize", "partition", "per_process", "process_slice",
]

_allgather = allgather  # the name the multi-process tests use


def partition(
    net: Net,
    source,
    labels=None,
    *,
    mesh: jax.sharding.Mesh | None = None,
    scopes: Sequence[str] = SCOPES,
    batch_size: int | None = None,
    exact: bool = False,
    progress: bool = True,
    boundary_tol: float = 1e-5,
    collision_check: bool = True,
    _timings: dict | None = None,
):
    """Partitions inputs spread over the devices of a mesh and the processes of a job.

    Call it on every process of a ``jax.distributed`` job (or in one process: it then
    shards over the local devices); each process passes its own shard of the data.

    Args:
      net: a :class:`~partax.nets.Net`; a stacked net gives a tuple of Partitions (each
        net is one pass over the source, so the source must be an array or a sampler).
        Every process must pass the same net (checked by a fingerprint of its arrays).
      source: this process's inputs: an array ``[N_p, d_in]``, an iterable of batches
        (``x`` or ``(x, y)``; lengths may differ between processes and need not be known),
        or a sampler (the same sampler on every process is one global stream split between
        processes; different samplers are concatenated in process order, see
        :func:`per_process`). An empty shard is an error, as in :func:`partax.partition`.
      labels: optional ``int[N_p]`` labels for an array source, in ``0 .. 2^31 - 1``.
      mesh: devices to shard over (every axis of the mesh is a data axis); default
        :func:`data_mesh` (every device of every process). A mesh of this process's devices
        only (``data_mesh(jax.local_devices())``) runs without any cross-process
        collective: in a multi-process job each process then partitions its own source
        alone (e.g. different checkpoints per process); any other mesh must span every
        process.
      scopes: as in :func:`partax.partition`.
      batch_size: inputs per *device* per step (default: :func:`~partax.engine.default_batch_size`,
        shrunk for small sources; a multiple of the sampler block for samplers); a step
        holds fewer than ``2^31`` rows over the whole mesh.
      exact: carry the full codes and raise :class:`~partax.coding.HashCollisionError` on
        a key shared by two codes (on device and in the host merges).
      progress: a tqdm bar on process 0.
      boundary_tol: as in :func:`partax.partition`.
      collision_check: as in :func:`partax.partition`: every key is checked against
        fingerprints of its code (per-layer hashes, and check lanes of the layers wider than
        one word) in every reduction, on the devices and on the hosts, and a collision
        raises :class:`~partax.coding.HashCollisionError`; ``False`` trusts the 64-bit keys
        alone.
      _timings: a dict that receives the run's timings (for :func:`partax.bench.sharded.bench_sharded`).

    Returns:
      The global :class:`~partax.engine.Partition` on every process (a tuple for a
      stacked net). Exemplars are global stream indices (process ``p``'s inputs after those
      of processes ``0..p-1``).

    Raises:
      ValueError / TypeError: as :func:`partax.partition` (wrong input dimension, an empty
        shard, labels negative, non-integer or above ``2^31 - 1``, NaN or inf inputs, ...),
        and when processes pass different nets, scopes, ``batch_size``, ``exact`` /
        ``collision_check`` or kinds of source. Raised on every process at the same point of
        the run: the process whose input failed raises its own exception (an exception of
        its batch iterator too), every other process a :class:`RemoteInputError` naming that
        process and its message. No process is left waiting in a collective.
      HashCollisionError: two codes under one key, found on the devices or in the final
        tables (on every process), or in one host's merge (on that process; the others
        raise a :class:`RemoteInputError` naming it).
      RemoteInputError: on the processes whose input was fine, when another one failed.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 2])
      >>> x = np.random.default_rng(1).uniform(-1, 1, (101, 2)).astype(np.float32)
      >>> partax.distributed.partition(net, x, progress=False).total
      101
    """
    kw = dict(mesh=mesh, scopes=scopes, batch_size=batch_size, exact=exact, collision_check=collision_check,
              progress=progress, boundary_tol=boundary_tol, _timings=_timings)
    stacked, error = False, None
    try:
        check_net(net)
        stacked = bool(net.stack_shape)
        if stacked:
            src = as_source(source, labels)
            if not (isinstance(src, Sampler) or hasattr(src, "x")):
                raise ValueError(
                    "source: a stacked net is partitioned one net at a time, so the source must be "
                    "an array or a sampler (an iterable of batches can be read only once)"
                )
    except Exception as e:  # reported at the first exchange, where every process raises
        error = e
    if error is not None or not stacked:
        return partition_one(net, source, labels, error=error, **kw)
    if isinstance(src, Sampler):
        return tuple(partition_one(net[i], source, None, **kw) for i in range(net.stack_shape[0]))
    return tuple(partition_one(net[i], source, labels, **kw) for i in range(net.stack_shape[0]))
