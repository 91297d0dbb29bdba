"""One process of the multi-process test (tests/test_distributed.py starts two of these).

Usage: python tests/_distributed_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_DIR

Each process initialises jax.distributed on localhost with 2 CPU devices and gloo
collectives, partitions its own shard of several sources, and saves every Partition to
OUT_DIR/<case>.p<PROCESS_ID>.npz. The cases are built by ``cases()`` below, which the test
imports to compute the single-process reference on the concatenated data.
"""

import os
import sys

import numpy as np

SIZES = (700, 333)  # uneven shards (neither divisible by 4 nor by the batch)


def make_net(seed=0, widths=(5, 12, 9, 6, 3)):
    import jax
    import partax

    return partax.mlp(jax.random.key(seed), list(widths), bias_std=0.4)


def shard_data(process_id):
    """Process ``process_id``'s inputs and labels (shards of one global array)."""
    rng = np.random.default_rng(123)
    n = sum(SIZES)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = rng.integers(0, 4, n)
    start = sum(SIZES[:process_id])
    return x[start : start + SIZES[process_id]], y[start : start + SIZES[process_id]]


def batches(x, y, size):
    for i in range(0, x.shape[0], size):
        yield x[i : i + size], y[i : i + size]


def main():
    port, pid, nproc, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid, initialization_timeout=60
    )
    import partax
    from partax import distributed as dist

    assert jax.device_count() == 2 * nproc, jax.devices()
    net = make_net()
    x, y = shard_data(pid)
    sampler = partax.sources.uniform_box(-2.0, 2.0, 9000, jax.random.key(7), block=1024)
    runs = {
        "array": lambda: dist.partition(net, x, y, progress=False, batch_size=128),
        "array_exact": lambda: dist.partition(net, x, progress=False, exact=True, scopes=("prefix",)),
        # lengths differ and are unknown to the engine: batches of different sizes per process
        "iterable": lambda: dist.partition(net, batches(x, y, 50 + 37 * pid), progress=False, batch_size=64),
        "sampler_split": lambda: dist.partition(net, sampler, progress=False, batch_size=1024),
        "sampler_per_process": lambda: dist.partition(net, dist.per_process(sampler), progress=False, batch_size=1024),
    }
    import time

    only = os.environ.get("PARTAX_WORKER_CASES")
    for name, run in runs.items():
        if only and name not in only.split(","):
            continue
        t0 = time.perf_counter()
        run().save(os.path.join(out, f"{name}.p{pid}.npz"))
        print(f"case {name}: {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
