"""Distributed runs fail together: a bad input on one process raises on every process.

Two processes on localhost (2 CPU devices each, gloo) run every failure case of
``tests/_distributed_failures_worker.py`` in sequence, in one spawned pair: for each case,
both must raise (the failing process its own exception, naming the cause; the other a
``RemoteInputError`` naming the failing process and the same cause) and move on to the next
case, and the whole pair must finish within a short timeout — a hang in any collective
fails the test. After the failures, a good run on the same processes must equal the
single-process partition of the concatenated shards (the contract's oracle).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import partax
from partax import distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _distributed_failures_worker as fw  # noqa: E402

TIMEOUT_S = 90  # both processes, startup included, every case in sequence


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Runs the pair once; returns ({process: {case: record}}, out_dir, wall seconds)."""
    out = tmp_path_factory.mktemp("failures")
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "_distributed_failures_worker.py"), str(port), str(i), "2", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    outs, errs, timed_out = [], [], False
    try:
        for p in procs:
            try:
                o, e = p.communicate(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - t0)))
            except subprocess.TimeoutExpired:
                timed_out = True
                p.kill()
                o, e = p.communicate()
            outs.append(o)
            errs.append(e)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    wall = time.perf_counter() - t0
    records = {i: {} for i in range(2)}
    for i in range(2):
        path = out / f"records.p{i}.jsonl"
        for line in (path.read_text().splitlines() if path.exists() else []):
            if line.strip():
                rec = json.loads(line)
                records[i][rec["case"]] = rec
    if timed_out or any(p.returncode != 0 for p in procs):
        done = {i: list(records[i]) for i in range(2)}
        pytest.fail(f"worker pair {'timed out' if timed_out else 'failed'} after {wall:.1f} s; cases done: {done}\n"
                    + "\n".join(f"--- process {i} stderr ---\n{e[-3000:]}" for i, e in enumerate(errs)))
    return records, out, wall


@pytest.mark.parametrize("case", list(fw.CASES))
def test_one_bad_process_fails_every_process(pair, case):
    records, _, _ = pair
    failing, exc_type, pattern, where = fw.CASES[case]
    for p in range(2):
        rec = records[p][case]
        assert rec["type"] is not None, f"process {p} did not raise in case {case}"
        assert rec["seconds"] < 30, rec
        if p in failing:  # its own, detailed exception
            assert rec["type"] == exc_type and not rec["remote"], rec
            assert re.search(pattern, rec["message"]), rec
        else:  # a RemoteInputError naming the failing process and the cause
            assert rec["type"] == "RemoteInputError" and rec["remote"], rec
            first = min(failing)
            assert rec["process"] == first and rec["error_type"] == exc_type, rec
            assert rec["message"].startswith(f"process {first} failed {where}: {exc_type}: "), rec
            assert re.search(pattern, rec["message"]), rec


@pytest.mark.parametrize("case", list(fw.SAME_ON_ALL))
def test_disagreeing_processes_raise_the_same_error(pair, case):
    records, _, _ = pair
    exc_type, pattern = fw.SAME_ON_ALL[case]
    msgs = set()
    for p in range(2):
        rec = records[p][case]
        assert rec["type"] == exc_type and not rec["remote"], rec
        assert re.search(pattern, rec["message"]), rec
        msgs.add(rec["message"])
    assert len(msgs) == 1


def test_int64_crosses_processes(pair):
    records, _, _ = pair
    for p in range(2):
        assert records[p]["int64_allgather"]["values"] == [[2**40, -(2**62)], [2**40 + 1, -(2**62)]]


def test_processes_stay_usable_after_failures(pair):
    records, out, wall = pair
    print(f"failure pair: {wall:.1f} s wall for {len(fw.CASES) + len(fw.SAME_ON_ALL)} failing cases and a good run")
    net = fw.make_net()
    xs, ys = zip(*(fw.shard_data(p) for p in range(2)))
    q = partax.partition(net, np.concatenate(xs), np.concatenate(ys), progress=False)
    for p in range(2):
        got = partax.load_partition(out / f"good.p{p}.npz")
        assert got.total == q.total and got.near_boundary == q.near_boundary
        for s in q.scopes:
            for l in range(1, q.num_layers + 1):
                assert got.table(s, l) == q.table(s, l), (p, s, l)


def test_remote_error_message():
    e = dist.RemoteInputError({1: ("TypeError", "labels: expected integer class labels, got dtype float64")},
                              "before the first step")
    assert isinstance(e, ValueError)
    assert str(e) == ("process 1 failed before the first step: TypeError: labels: expected integer class labels, "
                      "got dtype float64")
    assert (e.process, e.error_type, e.where) == (1, "TypeError", "before the first step")
    two = dist.RemoteInputError({3: ("OSError", "b"), 2: ("ValueError", "a")}, "in step 4")
    assert two.process == 2
    assert str(two) == "process 2 failed in step 4: ValueError: a; process 3 failed in step 4: OSError: b"
