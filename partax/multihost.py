"""Meshes, processes and the exchanges that let a multi-process job fail together.

The plumbing under :func:`partax.distributed.partition`: a one-axis data mesh, this
process's share of a stream, host all-gathers that keep 64-bit values intact (JAX with x64
off would narrow an ``int64`` array to ``int32``), fingerprints that check that processes
pass the same net / sampler / settings, and the status exchanges of "Failing together"
(:mod:`partax.sharded`): every process reaches the same exchanges in the same order and
carries its own status into each; when any status is set, every process raises, the
failing one its own exception and the others a :class:`RemoteInputError` naming it.

Example:
    >>> from partax.multihost import data_mesh, process_slice
    >>> data_mesh().axis_names, process_slice(10, 1, 3)
    (('data',), slice(3, 6, None))
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from partax.sources import Sampler

__all__ = [
    "MSG_BYTES", "STATUS_WORDS", "RemoteInputError", "allgather", "allgather_rows", "data_mesh", "digest",
    "host_exchange", "initialize", "is_collective", "net_fingerprint", "per_process", "process_slice",
    "raise_together", "sampler_fingerprint",
]


def data_mesh(devices=None) -> jax.sharding.Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: every device of every process).

    Example:
      >>> from partax.multihost import data_mesh
      >>> data_mesh().axis_names
      ('data',)
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Explicit,), devices=devices
    )


def per_process(sampler: Sampler) -> Sampler:
    """The sampler with the process index folded into its key: an independent stream per process.

    Passing ``per_process(s)`` on every process makes each contribute its own ``s.num_inputs``
    inputs; the global stream is their concatenation in process order.
    """
    if not isinstance(sampler, Sampler) or not hasattr(sampler, "key"):
        raise TypeError(f"sampler: expected a partax sampler with a key, got {type(sampler).__name__}")
    return dataclasses.replace(sampler, key=jax.random.fold_in(sampler.key, jax.process_index()))


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               **kwargs) -> None:
    """Starts ``jax.distributed`` from arguments, the environment, or the cluster.

    Arguments left ``None`` come from the environment: ``JAX_COORDINATOR_ADDRESS``
    (``host:port``), ``PARTAX_NUM_PROCESSES``, ``PARTAX_PROCESS_ID`` (what
    ``scripts/launch_local.sh`` sets). When those are absent too, ``jax.distributed``
    detects the cluster itself (SLURM, Open MPI, Kubernetes, Cloud TPU). A no-op when
    already initialised. Extra keyword arguments go to :func:`jax.distributed.initialize`.
    """
    from jax._src import distributed as _jd  # JAX has no public "already initialised?"

    if _jd.global_state.client is not None:
        return
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("PARTAX_NUM_PROCESSES"):
        num_processes = int(env["PARTAX_NUM_PROCESSES"])
    if process_id is None and env.get("PARTAX_PROCESS_ID"):
        process_id = int(env["PARTAX_PROCESS_ID"])
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, **kwargs)


def process_slice(n: int, process_id: int | None = None, num_processes: int | None = None) -> slice:
    """This process's contiguous share of ``n`` rows (process ``p`` gets rows
    ``[p n // P, (p + 1) n // P)``), e.g. to read one's shard of a memory-mapped ``.npy``.

    Example:
      >>> from partax.multihost import process_slice
      >>> [process_slice(10, p, 3) for p in range(3)]
      [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    P_ = jax.process_count() if num_processes is None else int(num_processes)
    p = jax.process_index() if process_id is None else int(process_id)
    return slice(p * n // P_, (p + 1) * n // P_)


def allgather(a: np.ndarray, local: bool = False) -> np.ndarray:
    """``a`` from every process, stacked on a leading process axis (host NumPy).

    64-bit values travel as pairs of ``uint32`` words: with x64 off, JAX would otherwise
    turn an ``int64`` array into ``int32`` on the way (sizes and counts above ``2^31``
    would wrap).
    """
    a = np.asarray(a)
    if local or jax.process_count() == 1:
        return a[None]
    from jax.experimental import multihost_utils

    if a.dtype.itemsize == 8:
        words = np.ascontiguousarray(a).reshape(-1).view(np.uint32)
        got = np.ascontiguousarray(multihost_utils.process_allgather(words, tiled=False))
        return got.view(a.dtype).reshape((got.shape[0],) + a.shape)
    return np.asarray(multihost_utils.process_allgather(a, tiled=False))


def allgather_rows(a: np.ndarray) -> list:
    """Variable-length row arrays from every process (lengths exchanged first)."""
    if jax.process_count() == 1:
        return [a]
    n = allgather(np.array([a.shape[0]], np.int64))[:, 0]
    pad = int(n.max())
    buf = np.zeros((max(pad, 1),) + a.shape[1:], a.dtype)
    buf[: a.shape[0]] = a
    got = allgather(buf)
    return [got[p, : n[p]] for p in range(len(n))]


def sampler_fingerprint(sampler: Sampler) -> int:
    """A sampler's key, parameters and structure (the same on every process: one split stream)."""
    leaves, treedef = jax.tree_util.tree_flatten(sampler)
    is_key = lambda a: isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jax.dtypes.prng_key)  # noqa: E731
    leaves = [jax.random.key_data(leaf) if is_key(leaf) else leaf for leaf in leaves]
    return digest(str(treedef), *leaves)


def digest(*parts) -> int:
    """A 63-bit fingerprint of strings and arrays (to check that processes agree)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, (np.ndarray, jax.Array)):
            a = np.asarray(part)
            h.update(str((a.dtype, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return int(np.frombuffer(h.digest(), np.int64)[0] & np.int64(2**63 - 1))


def net_fingerprint(net) -> int:
    """Structure and values of a net: processes of one job must pass the same net."""
    leaves, treedef = jax.tree_util.tree_flatten(net)
    return digest(str(treedef), *leaves)


# --- failing together ------------------------------------------------------------------
class RemoteInputError(ValueError):
    """Raised on every process of a job whose own input was fine when another process failed.

    The process whose input (or batch iterator) failed raises its own exception; every other
    process raises this one, at the same point of the run, with the failing process's
    exception type and message::

        process 1 failed before the first step: ValueError: source: expected inputs of dimension 5 (the net's), got 4

    With several failing processes the message lists each (``; ``-separated), in process order.

    Attributes:
      process: the first failing process (lowest index).
      error_type: the name of its exception's class (e.g. ``"TypeError"``).
      cause: its exception's message (at most about 1 KiB of it).
      failures: ``{process: (error_type, cause)}`` for every failing process.
      where: the point of the run: ``"before the first step"``, ``"in step s"`` (0-based)
        or ``"after the last step"``.
    """

    def __init__(self, failures: dict, where: str):
        self.failures = dict(sorted(failures.items()))
        self.process = min(self.failures)
        self.error_type, self.cause = self.failures[self.process]
        self.where = where
        super().__init__("; ".join(f"process {p} failed {where}: {t}: {m}" for p, (t, m) in self.failures.items()))


STATUS_WORDS = 12  # every host exchange: one status word and 11 payload words per process
MSG_BYTES = 1024  # an error's type and message, as UTF-8, per process


def encode_error(error) -> np.ndarray:
    """An exception's type name and message as ``uint32[MSG_BYTES / 4]`` words (zeros for None)."""
    buf = np.zeros(MSG_BYTES, np.uint8)
    if error is not None:
        text = f"{type(error).__name__}\x00{error}".encode("utf-8", "replace")
        if len(text) > MSG_BYTES:
            text = text[: MSG_BYTES - 3] + b"..."
        buf[: len(text)] = np.frombuffer(text, np.uint8)
    return buf.view(np.uint32)


def decode_error(words: np.ndarray) -> tuple:
    """``(type name, message)`` from :func:`encode_error`'s words."""
    raw = np.ascontiguousarray(words, np.uint32).tobytes().rstrip(b"\x00").decode("utf-8", "replace")
    name, _, message = raw.partition("\x00")
    return name or "Exception", message


def raise_together(error, failed, collective: bool, where: str):
    """Every process raises: the failing ones their own ``error``, the others a RemoteInputError.

    Called by every process at the same point (each knows ``failed``, the failing process
    indices, from a replicated exchange); one all-gather of ``MSG_BYTES`` per process
    carries the failing processes' messages.
    """
    if not collective:
        if error is None:  # a step flagged this process (NaN) but no exception was built
            raise RuntimeError("partax.distributed: a failure was flagged without an error")  # pragma: no cover
        raise error
    got = allgather(encode_error(error))
    if error is not None:
        raise error
    raise RemoteInputError({int(p): decode_error(got[p]) for p in failed}, where)


def host_exchange(error, payload, collective: bool, where: str) -> np.ndarray:
    """The status exchange between steps: every process sends ``[status, *payload]``.

    ``status`` is 1 when this process caught ``error`` (then ``payload`` is ignored), else 0.
    Every host exchange has the same shape (``STATUS_WORDS`` int64 per process), so the
    exchanges of processes at different points of a failed run still pair up. Raises on
    every process when any process failed; returns ``payload`` of every process
    (``int64[P, STATUS_WORDS - 1]``).
    """
    vec = np.zeros(STATUS_WORDS, np.int64)
    if error is not None:
        vec[0] = 1
    else:
        vec[1 : 1 + len(payload)] = payload
    if not collective:
        if error is not None:
            raise error
        return vec[None, 1:]
    every = allgather(vec)
    failed = np.flatnonzero(every[:, 0])
    if failed.size:
        raise_together(error, failed, collective, where)
    return every[:, 1:]


def is_collective(mesh) -> bool:
    """Whether a call on ``mesh`` exchanges with other processes (a mesh that is not a
    Mesh counts as the default one, so the process still joins the first exchange)."""
    if jax.process_count() == 1:
        return False
    if not isinstance(mesh, jax.sharding.Mesh):
        return True
    return {d.process_index for d in mesh.devices.flat} != {jax.process_index()}
