"""Tests for partax.trace: schedules, Tracer records against NumPy oracles, crash safety."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import jax
import numpy as np
import optax
import pytest

import partax
from partax import info
from partax.trace import Tracer, every_k, load_trace, log_spaced
from partax.train import fit


# -- schedules -------------------------------------------------------------------------

def test_every_k():
    assert every_k(3, 10).tolist() == [0, 3, 6, 9, 10]
    assert every_k(5, 10).tolist() == [0, 5, 10]
    assert every_k(1, 0).tolist() == [0]
    with pytest.raises(ValueError, match="k"):
        every_k(0, 10)


def test_log_spaced_ib_grid():
    s = log_spaced(8000, 274)
    lit = np.unique(np.logspace(np.log2(1), np.log2(8000), 400, dtype=int, base=2))  # Shwartz-Ziv & Tishby
    np.testing.assert_array_equal(s, lit)
    assert len(s) == 274 and s[0] == 1 and s[-1] == 8000


@pytest.mark.parametrize("total,n", [(10, 10), (10, 1), (100, 7), (1000, 50), (8000, 100), (12345, 999), (37, 30)])
def test_log_spaced_counts(total, n):
    s = log_spaced(total, n)
    assert len(s) == n and len(np.unique(s)) == n and np.all(np.diff(s) > 0)
    assert s.min() >= 1 and s.max() <= total and s[-1] == total
    if n >= 2:
        assert s[0] == 1
    np.testing.assert_array_equal(s, log_spaced(total, n))  # deterministic


def test_log_spaced_errors():
    with pytest.raises(ValueError, match="n"):
        log_spaced(10, 11)
    with pytest.raises(ValueError, match="total"):
        log_spaced(0, 1)


# -- Tracer records vs oracles ----------------------------------------------------------

def _np_signs(net, x):
    h = np.asarray(x, np.float64)
    out = []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = h @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        out.append(z > 0)
        h = np.maximum(z, 0)
    return out, h


def _np_acts(net, x):
    h = np.asarray(x, np.float64)
    acts = []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        h = np.maximum(h @ np.asarray(W, np.float64) + np.asarray(b, np.float64), 0)
        acts.append(h)
    return acts


def _h(items):
    c = Counter(items)
    n = sum(c.values())
    return -sum(v / n * math.log2(v / n) for v in c.values())


def _data(n=600, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32)
    return x, y


def test_tracer_records_match_numpy_oracle(tmp_path):
    x, y = _data()
    net = partax.mlp(jax.random.key(0), [4, 6, 5, 3, 2], bias_std=0.3)
    tr = Tracer(x, y, every=[7], out=tmp_path, estimators=("plugin", "miller_madow"),
                baselines=("binned30", "binsize0.5"), save_tables=True)
    tr(6, net)  # not in the schedule
    tr(7, net)
    d = load_trace(tmp_path)
    assert set(d["step"].tolist()) == {7}
    signs, _ = _np_signs(net, x)
    L = 3
    for scope in ("layer", "prefix", "suffix"):
        for l in range(1, L + 1):
            lo, hi = {"layer": (l, l), "prefix": (1, l), "suffix": (l, L)}[scope]
            items = [tuple(np.concatenate([signs[k][i] for k in range(lo - 1, hi)]).tolist()) for i in range(len(x))]
            sel = (d["scope"] == scope) & (d["layer"] == l) & (d["estimator"] == "plugin")
            assert sel.sum() == 1
            assert d["regions"][sel][0] == len(set(items))
            assert d["H_T"][sel][0] == pytest.approx(_h(items), abs=1e-9)
            assert d["I_XT"][sel][0] == pytest.approx(_h(items), abs=1e-9)
            i_ty = _h(items) + _h(y.tolist()) - _h(list(zip(items, y.tolist())))
            assert d["I_TY"][sel][0] == pytest.approx(i_ty, abs=1e-9)
            sel_mm = (d["scope"] == scope) & (d["layer"] == l) & (d["estimator"] == "miller_madow")
            k = len(set(items))
            assert d["H_T"][sel_mm][0] == pytest.approx(_h(items) + (k - 1) / (2 * len(x) * math.log(2)), abs=1e-9)
    acts = _np_acts(net, x)
    for l in range(1, L + 1):
        a = acts[l - 1]
        sel = (d["scope"] == "binsize0.5") & (d["layer"] == l) & (d["estimator"] == "plugin")
        rows = [tuple(np.floor(r / 0.5).astype(int).tolist()) for r in a]
        assert d["I_XT"][sel][0] == pytest.approx(_h(rows), abs=1e-9)
        sel = (d["scope"] == "binned30") & (d["layer"] == l) & (d["estimator"] == "plugin")
        assert d["I_XT"][sel][0] == pytest.approx(info.binned_mi(a, y, bins=30, range=None).I_XT, abs=1e-6)
        # independent: Shwartz-Ziv & Tishby's binning, 30 edges over the observed range
        a64 = a.astype(np.float64)
        edges = np.linspace(a64.min(), a64.max(), 30)
        left = edges[np.digitize(a64, edges) - 1]
        assert d["I_XT"][sel][0] == pytest.approx(_h([tuple(r) for r in left.tolist()]), abs=1e-9)
    # the tables side file is a loadable Partition
    p = partax.load_partition(tmp_path / "tables" / "step_000007.npz")
    assert p.num_regions("prefix").tolist() == d["regions"][(d["scope"] == "prefix") & (d["estimator"] == "plugin")].astype(int).tolist()
    assert d["seconds"].min() > 0 and np.all(np.isfinite(d["time"]))


def test_tracer_in_fit_and_kde_baseline(tmp_path):
    x, y = _data(300, 3, 1)
    net = partax.mlp(jax.random.key(1), [3, 5, 4, 2])
    tr = Tracer(x, y, every=2, scopes=("prefix",), baselines=("kde",), out=tmp_path)
    fit(net, x, y, optax.adam(1e-2), epochs=5, batch_size=64, key=jax.random.key(0), callbacks=[tr])
    d = load_trace(tmp_path)
    assert sorted(set(d["step"].tolist())) == [0, 2, 4]
    kde = d["scope"] == "kde"
    assert set(d["estimator"][kde].tolist()) == {"upper", "lower"}
    up = kde & (d["estimator"] == "upper")
    lo = kde & (d["estimator"] == "lower")
    assert np.all(d["I_XT"][lo] <= d["I_XT"][up] + 1e-6)
    mem = tr.trace()
    assert len(mem["step"]) == len(d["step"])


def test_tracer_stacked_net(tmp_path):
    x, y = _data(200, 3, 2)
    nets = partax.stack_nets([partax.mlp(jax.random.key(s), [3, 5, 2], bias_std=0.2) for s in range(3)])
    tr = Tracer(x, y, out=tmp_path, scopes=("layer",), baselines=("binned30",))
    tr(0, nets)
    d = load_trace(tmp_path)
    assert sorted(set(d["member"].tolist())) == [0, 1, 2]
    for m in range(3):
        signs, _ = _np_signs(nets[m], x)
        sel = (d["member"] == m) & (d["scope"] == "layer")
        assert d["regions"][sel][0] == len(set(map(tuple, signs[0].tolist())))


def test_tracer_validation(tmp_path):
    x, y = _data(20, 3)
    with pytest.raises(ValueError, match="scopes"):
        Tracer(x, y, scopes=("bogus",))
    with pytest.raises(ValueError, match="estimators"):
        Tracer(x, y, estimators=("nsb?",))
    with pytest.raises(ValueError, match="baselines"):
        Tracer(x, y, baselines=("binnedX",))
    with pytest.raises(ValueError, match="baselines"):
        Tracer(x, y, baselines=("binned1",))  # one edge is not a binning
    with pytest.raises(ValueError, match="y"):
        Tracer(x, y[:5])
    with pytest.raises(ValueError, match="every"):
        Tracer(x, y, every=0)
    with pytest.raises(ValueError, match="save_tables"):
        Tracer(x, y, save_tables=True)
    tr = Tracer(x, y)
    with pytest.raises(ValueError, match="net"):
        tr(0, partax.mlp(jax.random.key(0), [4, 3, 2]))
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "nothing")


def test_tracer_out_jsonl_file(tmp_path):
    # out= may name the trace file itself (as load_trace accepts): its directory is created and
    # tables/ goes next to it
    x, y = _data(100, 3)
    net = partax.mlp(jax.random.key(0), [3, 4, 2])
    path = tmp_path / "runs" / "a" / "run.jsonl"
    tr = Tracer(x, y, out=path, save_tables=True)
    tr(0, net)
    tr(1, net)
    assert path.is_file()
    assert (tmp_path / "runs" / "a" / "tables" / "step_000001.npz").is_file()
    assert not (path / "tables").exists()
    d = load_trace(path)
    assert sorted(set(d["step"].tolist())) == [0, 1]
    assert Tracer(x, y, out=path).steps_done == {0, 1}  # resumes from the same file
    # a bare file name in the working directory
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        tr = Tracer(x, y, out="bare.jsonl")
        tr(0, net)
        assert load_trace("bare.jsonl")["step"].tolist()[0] == 0
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("baselines", [(), ("binned30",), ("kde",), ("binned30", "kde")])
def test_load_trace_fixed_dtypes(tmp_path, baselines):
    x, y = _data(120, 3)
    net = partax.mlp(jax.random.key(0), [3, 5, 4, 2], bias_std=0.2)
    tr = Tracer(x, y, out=tmp_path, scopes=("layer",), baselines=baselines)
    tr(0, net)
    for d in (load_trace(tmp_path), tr.trace()):
        for k in ("step", "member", "layer", "width", "regions", "N"):
            assert d[k].dtype == np.int64, k
        assert d["saturated"].dtype == bool
        assert d["scope"].dtype.kind == "U" and d["estimator"].dtype.kind == "U"
        for k in ("H_T", "I_XT", "I_TY", "time", "seconds"):
            assert d[k].dtype == np.float64, k
        kde = d["scope"] == "kde"
        assert np.all(d["regions"][kde] == -1) and not d["saturated"][kde].any()
        assert np.all(d["regions"][~kde] >= 1) and np.all(d["N"] == 120)
        signs, _ = _np_signs(net, x)
        sel = (d["scope"] == "layer") & (d["layer"] == 1)
        assert d["regions"][sel][0] == len(set(map(tuple, signs[0].tolist())))


# -- crash safety ----------------------------------------------------------------------

def test_partial_tail_ignored_and_truncated(tmp_path):
    x, y = _data(100, 3)
    net = partax.mlp(jax.random.key(0), [3, 4, 2])
    tr = Tracer(x, y, out=tmp_path)
    tr(0, net)
    tr(1, net)
    path = tmp_path / "trace.jsonl"
    good_size = path.stat().st_size
    lines = path.read_bytes().splitlines(keepends=True)
    # simulate a crash in the middle of step 2: two complete measure lines and half of a third
    step1 = [ln for ln in lines if json.loads(ln).get("step") == 1 and json.loads(ln)["kind"] == "measure"]
    fake = [ln.replace(b'"step": 1', b'"step": 2') for ln in step1[:3]]
    with open(path, "ab") as f:
        f.write(fake[0] + fake[1] + fake[2][: len(fake[2]) // 2])
    d = load_trace(tmp_path)
    assert sorted(set(d["step"].tolist())) == [0, 1]
    n_before = len(d["step"])
    tr2 = Tracer(x, y, out=tmp_path)
    assert path.stat().st_size == good_size and tr2.steps_done == {0, 1}
    for s in range(4):
        tr2(s, net)
    d2 = load_trace(tmp_path)
    steps = d2["step"].tolist()
    assert sorted(set(steps)) == [0, 1, 2, 3]
    assert len(steps) == 2 * n_before  # 4 checkpoints, each once


_CHILD = textwrap.dedent("""
    import sys, jax, numpy as np, partax
    from partax.trace import Tracer
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2000, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    net = partax.mlp(jax.random.key(0), [5, 8, 8, 8, 2], bias_std=0.2)
    tr = Tracer(x, y, out=out, baselines=("binned30",), save_tables=True)
    for step in range(100000):
        tr(step, net)
        print(step, flush=True)
""")


def test_sigkill_mid_run_then_resume(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 120
        seen = 0
        while seen < 8 and time.time() < deadline:  # wait until a few checkpoints are committed
            line = proc.stdout.readline()
            if not line:
                break
            seen += 1
        time.sleep(0.037)  # land somewhere inside a later checkpoint
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert seen >= 8, "child did not trace"
    d = load_trace(out)
    steps = sorted(set(d["step"].tolist()))
    assert steps == list(range(len(steps))) and len(steps) >= 8
    per_step = len(d["step"]) // len(steps)
    assert len(d["step"]) == per_step * len(steps)
    x = np.random.default_rng(0).uniform(-1, 1, (2000, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    net = partax.mlp(jax.random.key(0), [5, 8, 8, 8, 2], bias_std=0.2)
    tr = Tracer(x, y, out=out, baselines=("binned30",))
    assert tr.steps_done == set(steps)
    last = max(steps)
    for s in range(last + 3):
        tr(s, net)
    d2 = load_trace(out)
    s2 = d2["step"].tolist()
    assert sorted(set(s2)) == list(range(last + 3))
    assert len(s2) == per_step * (last + 3)  # no step recorded twice
    c = Counter(zip(s2, d2["scope"].tolist(), d2["layer"].tolist(), d2["estimator"].tolist()))
    assert max(c.values()) == 1
