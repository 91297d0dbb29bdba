"""The partition workloads of ``partax bench`` (DESIGN §6), each measured beside its baselines.

Every ratio is measured side by side in one run: same device, same inputs, same chunk size,
compilation and warm-up excluded, best of several repetitions (interleaved, so that a noisy
neighbour hurts both sides alike).

Workloads (:data:`WORKLOADS`): the IB net 12-10-7-5-4-3-2 on 2^22 uniform inputs, a
784-256-256-256-10 MLP on 2^20, a 784-1024-1024-1024-10 MLP on 2^18 (``--quick``: 2^18,
2^16, 2^14); and ``cnn`` (:data:`CNN_WORKLOADS`, :func:`digits_cnn`): a digits-sized conv net
on 8x8x1 inputs, conv 3x3 1->8 (same padding), ReLU, max pool 2x2, conv 3x3 8->16 (same),
ReLU, flatten, dense 256->10 (code groups of 512, 256 and 256 bits), on 2^20 uniform inputs
(quick: 2^16), measured by :func:`cnn_workload` with the same fields except the NumPy ones (the
NumPy practice would need a NumPy convolution; the entry says so in ``numpy_skipped``). For each: partition throughput with all three scopes on both reduction paths,
``reduce="host"`` and ``reduce="device"`` (inputs/s, ratio to the forward pass, bytes fetched from
the device per input), and without the collision check on the path ``"auto"`` picks (whose
rates are also the entry's ``partition_*`` fields); the bare jitted forward pass of the same net on the same chunks; the
common NumPy practice (float32 forward pass, ``np.packbits`` of the signs,
``np.unique(axis=0, return_index=True, return_counts=True)`` for every distinct range of
layers the three scopes need: the same tables the partition builds), on the same inputs (at
most ``numpy_max`` of them); and the hidden layers' matmuls alone in NumPy: the arithmetic
floor. ``ratio_vs_numpy_bound`` is the ratio to NumPy that a partition costing only its
matmuls would reach, at the faster of the two measured FLOP rates: for wide nets, whose time
is matmuls, a ceiling for any engine on the machine.

Example:
    >>> from partax.bench.partition import partition_workload
    >>> w = partition_workload("tiny", [3, 6, 2], 2**10, reps=1)
    >>> w["inputs"], w["partition_inputs_per_s"] > 0
    (1024, True)
"""

from __future__ import annotations

import resource
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from partax.coding import SCOPES, codes_and_layer_hashes, codes_hashes_and_checks, screens_near, tables_for
from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
from partax.nets import Net, as_structured, mlp, sequential
from partax.sources import uniform_box
from partax.engine import check_reduce, default_batch_size, partition

__all__ = ["WORKLOADS", "CNN_WORKLOADS", "partition_workload", "cnn_workload", "digits_cnn", "run_named", "best_of"]

# name -> (widths, inputs, quick inputs)
WORKLOADS = {
    "ib": ([12, 10, 7, 5, 4, 3, 2], 2**22, 2**18),
    "mlp256": ([784, 256, 256, 256, 10], 2**20, 2**16),
    "mlp1024": ([784, 1024, 1024, 1024, 10], 2**18, 2**14),
}
# name -> (inputs, quick inputs) of the conv net of :func:`digits_cnn`
CNN_WORKLOADS = {"cnn": (2**20, 2**16)}
CNN_DESCRIPTION = "8x8x1-conv3x3(8)-relu-maxpool2x2-conv3x3(16)-relu-dense(10)"


def digits_cnn(seed: int = 0, channels=(8, 16), side: int = 8, outputs: int = 10) -> Net:
    """The ``cnn`` workload's net: conv 3x3 (same) -> ReLU -> max pool 2x2 -> conv 3x3 (same) ->
    ReLU -> flatten -> dense, on ``side x side x 1`` inputs (scikit-learn's digits are 8x8).

    Weights He-normal (standard deviation ``sqrt(2 / fan_in)``), biases normal with standard
    deviation 0.1 (as the MLP workloads' ``bias_std=0.1``), from ``numpy.random.default_rng(seed)``.

    Args:
      seed: the seed.
      channels: output channels of the two convolutions.
      side: the input's height and width (even).
      outputs: the dense layer's outputs.

    Returns:
      A general :class:`partax.Net` (code groups: ``side^2 c_1`` ReLU bits, ``(side/2)^2 c_1``
      windows of 2 bits, ``(side/2)^2 c_2`` ReLU bits).

    Example:
      >>> from partax.bench.partition import digits_cnn
      >>> net = digits_cnn()
      >>> net.input_shape, net.widths, net.is_mlp
      ((8, 8, 1), (512, 256, 256), False)
    """
    rng = np.random.default_rng(seed)
    c1, c2 = channels

    def he(*shape):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(np.float32)

    def bias(n):
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    same = ((1, 1), (1, 1))
    flat = (side // 2) ** 2 * c2
    layers = [Conv(he(3, 3, 1, c1), bias(c1), padding=same), ReLU(), MaxPool((2, 2)),
              Conv(he(3, 3, c1, c2), bias(c2), padding=same), ReLU(), Flatten(), Dense(he(flat, outputs), bias(outputs))]
    return sequential(layers, (side, side, 1))


def best_of(fns: dict, reps: int) -> dict:
    """Runs each callable ``reps`` times, interleaved; returns the best time of each.

    Args:
      fns: name -> a callable of no arguments (it must block until its work is done).
      reps: repetitions; the callables take turns so that load drifts hit them alike.

    Returns:
      name -> best wall time in seconds.

    Example:
      >>> from partax.bench.partition import best_of
      >>> sorted(best_of({"a": lambda: None, "b": lambda: None}, 2))
      ['a', 'b']
    """
    best = {k: np.inf for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def _chunked(fn: Callable, net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    """Runs the jitted ``fn(net, chunk)`` over ``x`` chunk by chunk, the next chunk dispatched
    before the last one is waited for, nothing fetched."""
    def run():
        out = None
        for s in range(0, x.shape[0], batch_size):
            nxt = fn(net, jnp.asarray(x[s : s + batch_size]))
            if out is not None:
                jax.block_until_ready(out)
            out = nxt
        jax.block_until_ready(out)

    return run


def _forward_pass(net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    """The bare jitted forward pass, chunk by chunk (a general net reshapes its flat chunk to
    ``[N, *input_shape]`` inside the jitted function: a free bitcast)."""
    if net.is_mlp:
        return _chunked(jax.jit(lambda n, xb: n(xb)), net, x, batch_size)
    return _chunked(jax.jit(lambda n, xb: n(as_structured(n, xb))), net, x, batch_size)


def _kernel_pass(net: Net, x: np.ndarray, batch_size: int, boundary_tol: float) -> Callable[[], None]:
    """The engine's kernel alone (codes of every layer, full-code key, check key, per-layer
    hashes, near-boundary and finite flags: what the host path fetches), chunk by chunk like
    :func:`_forward_pass`, nothing fetched: the part of a partition no reduction can remove."""
    screen = screens_near(net, boundary_tol)
    kern = jax.jit(lambda n, xb: codes_hashes_and_checks(n, xb, boundary_tol, screen=screen)[1:])
    return _chunked(kern, net, x, batch_size)


def _codes_pass(net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    """The codes alone, packed into words (XLA drops the kernel's keys and flags, unused):
    what every partition computes whatever its keys, near-boundary test or reduction."""
    return _chunked(jax.jit(lambda n, xb: codes_and_layer_hashes(n, xb, 0.0)[0]), net, x, batch_size)


def _numpy_practice(net: Net, x: np.ndarray) -> Callable[[], None]:
    """The common NumPy practice, doing the same job as the partition (every distinct range
    of layers that the three scopes need): float32 forward pass, ``np.packbits`` of the
    signs, ``np.unique(axis=0, return_index=True, return_counts=True)``."""
    Ws = [np.asarray(W, np.float32) for W in net.weights[:-1]]
    bs = [np.asarray(b, np.float32) for b in net.biases[:-1]]
    ranges, _ = tables_for(SCOPES, len(Ws))

    def run():
        h, signs = x, []
        for W, b in zip(Ws, bs):
            z = h @ W + b
            signs.append(z > 0)
            h = np.maximum(z, 0)
        for f, t in ranges:
            code = np.packbits(np.concatenate(signs[f - 1 : t], axis=1), axis=1)
            np.unique(code, axis=0, return_index=True, return_counts=True)

    return run


def _numpy_matmuls(net: Net, x: np.ndarray, batch_size: int) -> Callable[[], None]:
    """The arithmetic floor: only the hidden layers' float32 matmuls, in NumPy (its BLAS),
    chunk by chunk into preallocated buffers (no bias, no ReLU, no page faults)."""
    Ws = [np.asarray(W, np.float32) for W in net.weights[:-1]]
    bufs = [np.full((batch_size, W.shape[1]), 0.0, np.float32) for W in Ws]  # written: no page faults later

    def run():
        for s in range(0, x.shape[0], batch_size):
            h = x[s : s + batch_size]
            for W, buf in zip(Ws, bufs):
                h = np.matmul(h, W, out=buf[: h.shape[0]])

    return run


def _flops(widths, n: int) -> float:
    return 2.0 * n * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def _general_flops(net: Net, n: int, hidden_only: bool = False) -> float:
    """``2 n`` times the multiply-adds of a sequential net's Dense and Conv layers (those before
    its last code site with ``hidden_only``)."""
    shape, macs, last_site = tuple(net.input_shape), [], 0
    for layer in net.layers:
        out = layer.output_shape(shape)
        if isinstance(layer, Dense):
            macs.append(int(np.prod(out)) * int(layer.W.shape[0]))
        elif isinstance(layer, Conv):
            macs.append(int(np.prod(out)) * int(np.prod(layer.kernel.shape[:-1])))
        else:
            macs.append(0)
        if layer.code_bits(shape):
            last_site = len(macs)
        shape = out
    return 2.0 * n * sum(macs[:last_site] if hidden_only else macs)


def partition_workload(name: str, widths, n: int, *, reps: int = 3, numpy_max: int = 2**20, seed: int = 0) -> dict:
    """Measures one partition workload side by side with its baselines.

    Args:
      name: the entry's name.
      widths: the MLP's widths ``[d_in, n_1, ..., d_out]`` (``partax.mlp``, ``bias_std=0.1``).
      n: number of uniform ``[0, 1)`` float32 inputs.
      reps: repetitions of each measurement (interleaved; the best is kept).
      numpy_max: at most this many inputs for the NumPy baselines.
      seed: seed of the net and of the inputs.

    Returns:
      The entry: rates (``*_inputs_per_s``), their ratios, FLOP rates, the collision check's
      cost, per reduction path (``host_*``, ``device_*``) its rate, ratio to the forward pass,
      bytes fetched from the device per input and its time over the kernel's alone
      (``*_cost_over_kernel``), the kernel alone (``kernel_*``) and the share of it the
      near-boundary test costs (``near_test_cost``: its time over its time at
      ``boundary_tol=0``, minus one), the packed codes alone (``codes_ratio_vs_forward``: a
      ceiling for any partition, whatever its keys and reduction), the path ``"auto"`` picks (``reduce_auto``,
      whose rate is ``partition_inputs_per_s``), the number of prefix regions at the last
      layer, the inputs' size and the peak RSS (with a GPU/TPU backend also
      ``forward_tflops`` and ``pipeline_tflops``).
    """
    key = jax.random.key(seed)
    net = mlp(key, widths, bias_std=0.1)
    x = np.random.default_rng(seed).random((n, widths[0]), dtype=np.float32)  # uniform [0, 1)
    entry = _measure(name, net, x, reps=reps, numpy_max=numpy_max, seed=seed)
    entry["forward_gflops"] = _flops(widths, n) / (n / entry["forward_inputs_per_s"]) / 1e9
    if "numpy_inputs" in entry:
        entry["numpy_matmul_gflops"] = (_flops(widths[:-1], entry["numpy_inputs"])
                                        / (entry["numpy_inputs"] / entry["numpy_matmul_inputs_per_s"]) / 1e9)
    if jax.default_backend() != "cpu":
        entry["forward_tflops"] = _flops(widths, n) / (n / entry["forward_inputs_per_s"]) / 1e12
        entry["pipeline_tflops"] = _flops(widths[:-1], n) / (n / entry["partition_inputs_per_s"]) / 1e12
    return _ordered(entry)


def cnn_workload(name: str, n: int, *, reps: int = 3, seed: int = 0, net: Net | None = None) -> dict:
    """Measures the conv-net workload side by side with its bare forward pass.

    The fields of :func:`partition_workload` without the NumPy baselines (``numpy_skipped`` says
    why: the NumPy practice would need a NumPy convolution), with ``net`` (the architecture),
    ``widths`` (the code groups' bits, ``net.widths``) and FLOP rates counting the Dense and Conv
    layers' multiply-adds.

    Args:
      name: the entry's name.
      n: number of uniform ``[0, 1)`` float32 inputs (flattened ``[n, input_dim]``).
      reps: repetitions of each measurement (interleaved; the best is kept).
      seed: seed of the net (:func:`digits_cnn`) and of the inputs.
      net: another general net to measure instead (its inputs uniform in ``[0, 1)`` too).

    Returns:
      The entry.

    Raises:
      ValueError: ``net`` is an MLP.

    Example:
      >>> import jax, partax
      >>> from partax.bench.partition import CNN_WORKLOADS, cnn_workload
      >>> CNN_WORKLOADS["cnn"]  # inputs, quick inputs (partax bench --only cnn)
      (1048576, 65536)
      >>> cnn_workload("x", 16, net=partax.mlp(jax.random.key(0), [2, 3, 1]))
      Traceback (most recent call last):
      ...
      ValueError: net: expected a general net (conv layers); measure MLPs with partition_workload
    """
    net = digits_cnn(seed) if net is None else net
    if net.is_mlp:
        raise ValueError("net: expected a general net (conv layers); measure MLPs with partition_workload")
    x = np.random.default_rng(seed).random((n, net.input_dim), dtype=np.float32)  # uniform [0, 1)
    entry = _measure(name, net, x, reps=reps, numpy_max=0, seed=seed)
    entry["net"] = CNN_DESCRIPTION if name == "cnn" else " ".join(map(repr, net.layers))
    entry["numpy_skipped"] = "the NumPy practice would need a NumPy convolution (not measured)"
    seconds = n / entry["forward_inputs_per_s"]
    entry["forward_gflops"] = _general_flops(net, n) / seconds / 1e9
    if jax.default_backend() != "cpu":
        entry["forward_tflops"] = _general_flops(net, n) / seconds / 1e12
        entry["pipeline_tflops"] = _general_flops(net, n, True) / (n / entry["partition_inputs_per_s"]) / 1e12
    return _ordered(entry)


# the entries' fields in the order bench.json has always listed them
_ORDER = ("name", "net", "widths", "inputs", "batch_size", "partition_inputs_per_s", "forward_inputs_per_s",
          "ratio_vs_forward", "reduce_auto")


def _ordered(entry: dict) -> dict:
    first = {k: entry[k] for k in _ORDER if k in entry}
    return {**first, **{k: v for k, v in entry.items() if k not in first}}


def _measure(name: str, net: Net, x: np.ndarray, *, reps: int, numpy_max: int, seed: int) -> dict:
    """The measurements both workload kinds share (NumPy baselines on MLPs with ``numpy_max > 0``)."""
    n = x.shape[0]
    bs = min(default_batch_size(net), n)
    sampler = uniform_box(0.0, 1.0, n, jax.random.key(seed + 1), dim=net.input_dim)
    bs_sampled = max(sampler.block, bs // sampler.block * sampler.block)
    n_np = min(n, numpy_max) if net.is_mlp else 0
    x_np = x[:n_np]
    auto = check_reduce("auto")
    fns = {
        "host": lambda: partition(net, x, batch_size=bs, progress=False, reduce="host"),
        "device": lambda: partition(net, x, batch_size=bs, progress=False, reduce="device"),
        "unchecked": lambda: partition(net, x, batch_size=bs, collision_check=False, progress=False, reduce=auto),
        # inputs drawn on the device (a sampler fused into the kernel): no host-to-device copy
        "host_sampled": lambda: partition(net, sampler, batch_size=bs_sampled, progress=False, reduce="host"),
        "device_sampled": lambda: partition(net, sampler, batch_size=bs_sampled, progress=False, reduce="device"),
        "forward": _forward_pass(net, x, bs),
        # the kernel alone, and without its near-boundary tolerance test (boundary_tol=0)
        "kernel": _kernel_pass(net, x, bs, 1e-5),
        "kernel_tol0": _kernel_pass(net, x, bs, 0.0),
        "codes": _codes_pass(net, x, bs),
    }
    if n_np:
        fns["numpy"] = _numpy_practice(net, x_np)
        fns["numpy_matmul"] = _numpy_matmuls(net, x_np, bs)
    # warm-up: compile and touch everything once (numpy on a small slice); then one partition
    # alone, so that the peak RSS is that of the inputs plus the partition (not the baselines)
    for path in ("host", "device"):
        partition(net, x[: 2 * bs], batch_size=bs, progress=False, reduce=path)
        partition(net, sampler, batch_size=bs_sampled, progress=False, reduce=path)
    for k in ("forward", "kernel", "kernel_tol0", "codes"):
        fns[k]()  # compiles the very function that is timed
    if n_np:
        _numpy_practice(net, x[:256])()
        _numpy_matmuls(net, x[:256], 256)()
    p = partition(net, x, batch_size=bs, progress=False, reduce=auto)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    moved = {path: partition(net, x, batch_size=bs, progress=False, reduce=path).device_to_host_bytes / n
             for path in ("host", "device")}  # also compiles the device path's later table sizes
    best = best_of(fns, reps)
    best["partition"] = best[auto]
    entry = {
        "name": name,
        "widths": list(net.widths) if not net.is_mlp else [net.input_dim, *net.widths, net.output_dim],
        "inputs": n,
        "batch_size": bs,
        "partition_inputs_per_s": n / best["partition"],
        "forward_inputs_per_s": n / best["forward"],
        "ratio_vs_forward": best["forward"] / best["partition"],
        "reduce_auto": auto,
        # both reduction paths side by side: rate, ratio to the forward pass, bytes off the device
        "host_inputs_per_s": n / best["host"],
        "host_ratio_vs_forward": best["forward"] / best["host"],
        "host_bytes_per_input": moved["host"],
        "device_inputs_per_s": n / best["device"],
        "device_ratio_vs_forward": best["forward"] / best["device"],
        "device_bytes_per_input": moved["device"],
        # where a partition's time goes: the kernel alone (its ratio to the forward pass is a
        # ceiling for both paths), its near-boundary test, and each path's cost over the kernel
        "kernel_inputs_per_s": n / best["kernel"],
        "kernel_ratio_vs_forward": best["forward"] / best["kernel"],
        "near_test_cost": best["kernel"] / best["kernel_tol0"] - 1.0,
        # the packed codes alone (no keys, no near-boundary test): a ceiling for any partition
        "codes_ratio_vs_forward": best["forward"] / best["codes"],
        "host_cost_over_kernel": best["host"] / best["kernel"] - 1.0,
        "device_cost_over_kernel": best["device"] / best["kernel"] - 1.0,
        "host_sampled_inputs_per_s": n / best["host_sampled"],
        "device_sampled_inputs_per_s": n / best["device_sampled"],
        # the collision check (a second 64-bit key per input): its cost, side by side
        "unchecked_inputs_per_s": n / best["unchecked"],
        "collision_check_cost": best["partition"] / best["unchecked"] - 1.0,
    }
    if n_np:
        entry.update({
            "numpy_inputs": n_np,
            "numpy_inputs_per_s": n_np / best["numpy"],
            "ratio_vs_numpy": (n / best["partition"]) / (n_np / best["numpy"]),
            "numpy_matmul_inputs_per_s": n_np / best["numpy_matmul"],
            # the ratio vs NumPy of a partition that cost only its matmuls, at the faster of the
            # two measured rates (XLA's forward pass, NumPy's BLAS): a ceiling for wide nets
            "ratio_vs_numpy_bound": max(n / best["forward"], n_np / best["numpy_matmul"]) / (n_np / best["numpy"]),
        })
    entry.update({
        "regions_prefix_last": int(p.num_regions("prefix")[-1]),
        "near_boundary": int(p.near_boundary),
        "inputs_mb": x.nbytes / 2**20,
        "peak_rss_mb": peak_rss_mb,
    })
    return entry


def run_named(name: str, quick: bool, reps: int) -> dict:
    """The workload ``name`` of :data:`WORKLOADS` or :data:`CNN_WORKLOADS` at its full or quick size.

    Args:
      name: a key of :data:`WORKLOADS` or :data:`CNN_WORKLOADS`.
      quick: the quick size.
      reps: repetitions of each measurement.

    Returns:
      The :func:`partition_workload` (:func:`cnn_workload`) entry.
    """
    if name in CNN_WORKLOADS:
        n, n_quick = CNN_WORKLOADS[name]
        return cnn_workload(name, n_quick if quick else n, reps=reps)
    widths, n, n_quick = WORKLOADS[name]
    return partition_workload(name, widths, n_quick if quick else n, reps=reps)
