"""One process of the failure tests (tests/test_distributed_failures.py starts two of these).

Usage: python tests/_distributed_failures_worker.py PORT PROCESS_ID NUM_PROCESSES OUT_DIR

Each process initialises jax.distributed on localhost (2 CPU devices each, gloo), then runs
every case of ``CASES`` in order: one process gets a bad input (or a batch iterator that
raises), the other a good one. Each call must raise on both processes; the process writes
one JSON line per case (``{"case", "type", "message", "remote", "process", "seconds"}``) to
OUT_DIR/records.p<PROCESS_ID>.jsonl, line-buffered, so a hang shows which case it was (not to
stdout, where gloo's own logging can land on the same line). After the failures, a good run
is saved to OUT_DIR/good.p<PROCESS_ID>.npz: a failed call leaves the job usable.
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _distributed_worker import make_net, shard_data  # noqa: E402

# case -> (failing processes, expected exception type on them, regex of its message, where it fails)
CASES = {
    "dimension": ((1,), "ValueError", r"source: expected inputs of dimension 5 \(the net's\), got 4",
                  "before the first step"),
    "empty_shard": ((1,), "ValueError", r"source: the array holds no inputs", "before the first step"),
    "negative_labels": ((1,), "ValueError", r"labels: expected labels >= 0, got -3", "before the first step"),
    "labels_out_of_range": ((1,), "ValueError", r"labels: expected labels below 2\^31 .*got 2147483648",
                            "before the first step"),
    "non_integer_labels": ((1,), "TypeError", r"labels: expected integer class labels, got dtype float64",
                           "before the first step"),
    "nan_inputs": ((1,), "ValueError", r"source: input 17 of process 1's inputs has a NaN or inf coordinate",
                   "in step 0"),
    "nan_in_a_later_batch": ((1,), "ValueError", r"source: input 130 of process 1's inputs has a NaN or inf",
                             "in step 1"),
    "iterator_raises": ((1,), "RuntimeError", r"reader died after 5 batches", "in step 1"),
    "bad_labels_mid_stream": ((1,), "ValueError", r"labels \(batch 9\): expected labels >= 0, got -1", "in step 2"),
    "process_0_fails": ((0,), "OSError", r"shard file vanished", "in step 0"),
    "both_fail": ((0, 1), "ValueError", r"source: expected inputs of dimension 5", "before the first step"),
    # a host-side failure after a step (here: a merge that raises) is reported with the next step
    # (step 0 is reduced before step 1 is dispatched: its regions seed the devices' key tables)
    "host_merge_fails": ((1,), "HashCollisionError", r"injected collision", "in step 1"),
    "final_merge_fails": ((1,), "HashCollisionError", r"injected final collision", "after the last step"),
}
# cases that fail identically on every process (an agreement check)
SAME_ON_ALL = {
    "batch_size_differs": ("ValueError", r"batch_size: process 1 passed 48 and process 0 passed 64"),
    "net_differs": ("ValueError", r"net: process 1 passed a different net than process 0"),
}


def batches(x, y, size, fail_after=None, error=None):
    for b, i in enumerate(range(0, x.shape[0], size)):
        if fail_after is not None and b == fail_after:
            raise error
        yield x[i : i + size], y[i : i + size]


def run_case(name, pid, net, x, y, dist):
    bad = pid in CASES.get(name, ((),))[0]
    kw = dict(progress=False, batch_size=64)
    if name in ("dimension", "both_fail"):
        return dist.partition(net, x[:, :4] if bad else x, y, **kw)
    if name == "empty_shard":
        return dist.partition(net, x[:0] if bad else x, y[:0] if bad else y, **kw)
    if name == "negative_labels":
        y = y.copy()
        if bad:
            y[11] = -3
        return dist.partition(net, x, y, **kw)
    if name == "labels_out_of_range":
        y = y.astype(np.int64)
        if bad:
            y[5] = 2**31
        return dist.partition(net, x, y, **kw)
    if name == "non_integer_labels":
        return dist.partition(net, x, y + 0.5 if bad else y, **kw)
    if name == "nan_inputs":
        x = x.copy()
        if bad:
            x[17, 2] = np.nan
        return dist.partition(net, x, y, **kw)
    if name == "nan_in_a_later_batch":  # an iterable: the NaN arrives in step 1 (batch of 128 rows per step)
        x = x.copy()
        if bad:
            x[130, 0] = np.inf
        return dist.partition(net, batches(x, y, 40), **kw)
    if name == "iterator_raises":  # batch 5 is read for step 1 (128 rows per step)
        died = RuntimeError("reader died after 5 batches")
        return dist.partition(net, batches(x, y, 50, 5 if bad else None, died), **kw)
    if name == "bad_labels_mid_stream":  # batch 9 holds rows 270..299: step 2
        y = y.copy()
        if bad:
            y[9 * 30 + 4] = -1
        return dist.partition(net, batches(x, y, 30), **kw)
    if name == "process_0_fails":
        return dist.partition(net, batches(x, y, 50, 1 if bad else None, OSError("shard file vanished")), **kw)
    if name in ("host_merge_fails", "final_merge_fails"):
        from partax import accumulate
        from partax.coding import HashCollisionError

        original = accumulate.table_accumulator
        calls = [0]

        def failing_accumulator(**kw):  # the engine's accumulator, with a merge that raises
            acc = original(**kw)

            def update(state, table):
                calls[0] += 1
                if calls[0] == 1:  # in the host merge of step 0, before step 1 is dispatched: step 1 reports it
                    raise HashCollisionError("injected collision")
                return acc.update(state, table)

            def finalize(state):
                raise HashCollisionError("injected final collision")

            return acc._replace(update=update) if name == "host_merge_fails" else acc._replace(finalize=finalize)

        if bad:
            accumulate.table_accumulator = failing_accumulator
        try:
            return dist.partition(net, x, y, progress=False, batch_size=32)  # 64 rows per step: 11 steps on p0
        finally:
            accumulate.table_accumulator = original
    if name == "batch_size_differs":
        return dist.partition(net, x, y, progress=False, batch_size=64 if pid == 0 else 48)
    if name == "net_differs":
        return dist.partition(make_net(seed=pid), x, y, **kw)
    raise KeyError(name)


def main():
    port, pid, nproc, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid, initialization_timeout=60
    )
    from partax import distributed as dist

    # records go to a file of their own: gloo's C++ logging writes to the same stdout
    # without a newline, so a record printed there can share a line with it
    records = open(os.path.join(out, f"records.p{pid}.jsonl"), "w", buffering=1)

    def record(rec):
        records.write(json.dumps(rec) + "\n")

    net = make_net()
    x, y = shard_data(pid)
    # 64-bit values cross processes intact (x64 is off: JAX alone would make them int32)
    got = dist._allgather(np.array([2**40 + pid, -(2**62)], np.int64))  # partax.multihost.allgather
    record({"case": "int64_allgather", "values": got.tolist()})
    for name in list(CASES) + list(SAME_ON_ALL):
        t0 = time.perf_counter()
        try:
            run_case(name, pid, net, x, y, dist)
            rec = {"case": name, "type": None, "message": "no error"}
        except Exception as e:  # noqa: BLE001 - recorded for the test
            rec = {"case": name, "type": type(e).__name__, "message": str(e),
                   "remote": isinstance(e, dist.RemoteInputError), "process": getattr(e, "process", None),
                   "error_type": getattr(e, "error_type", None)}
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        record(rec)
    t0 = time.perf_counter()
    dist.partition(net, x, y, progress=False, batch_size=64).save(os.path.join(out, f"good.p{pid}.npz"))
    record({"case": "good", "seconds": round(time.perf_counter() - t0, 3)})
    records.close()
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
