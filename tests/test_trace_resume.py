"""Traces that resume only when the same run produced them, never mix, and keep their nets."""

import json

import jax
import numpy as np
import pytest

import partax
from partax.trace import TraceMismatchError, Tracer, load_header, load_trace


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (300, 4)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int32)
    net = partax.mlp(jax.random.key(0), [4, 6, 5, 2], bias_std=0.1)
    return x, y, net


def _perturbed(net, eps):
    return partax.Net(tuple(W + eps for W in net.weights), net.biases, net.activation, net.alpha)


def test_header_records_what_produced_the_trace(data, tmp_path):
    import hashlib

    x, y, net = data
    t = Tracer(x, y, every=[0, 1], scopes=("prefix",), out=tmp_path, meta={"data": "toy"})
    t(0, net)
    h = load_header(tmp_path)
    xa = np.ascontiguousarray(x)
    digest = hashlib.sha256(str(xa.dtype).encode() + str(xa.shape).encode() + xa.tobytes()).hexdigest()
    assert h["inputs"]["sha256"] == digest and h["inputs"]["shape"] == [300, 4]
    assert h["labels"]["shape"] == [300]
    assert h["net"]["widths"] == [6, 5] and h["net"]["input_dim"] == 4 and h["net"]["activation"] == "relu"
    assert h["schedule"] == [0, 1] and h["scopes"] == ["prefix"] and h["meta"] == {"data": "toy"}
    assert h["partax_version"] == partax.__version__
    first = json.loads(open(tmp_path / "trace.jsonl").readline())
    assert first["kind"] == "header"
    assert sorted(set(load_trace(tmp_path)["step"].tolist())) == [0]  # the header is not a record


def test_resume_skips_committed_steps_and_refuses_another_run(data, tmp_path):
    x, y, net = data
    kw = dict(every=[0, 1, 2], scopes=("prefix",), out=tmp_path)
    t = Tracer(x, y, **kw)
    t(0, net)
    t(1, net)
    again = Tracer(x, y, **kw)
    assert again.steps_done == {0, 1}
    again(1, net)  # already committed: skipped
    again(2, net)
    steps = load_trace(tmp_path)["step"]
    assert sorted(set(steps.tolist())) == [0, 1, 2] and len(steps) == 3 * 2  # 2 layers, no duplicate
    with pytest.raises(TraceMismatchError, match=r"differs in labels"):
        Tracer(x, 1 - y, **kw)
    with pytest.raises(TraceMismatchError, match=r"differs in inputs"):
        Tracer(x + 1, y, **kw)
    with pytest.raises(TraceMismatchError, match=r"scopes"):
        Tracer(x, y, **{**kw, "scopes": ("layer",)})
    other = partax.mlp(jax.random.key(1), [4, 7, 2])
    t = Tracer(x, y, **kw)
    with pytest.raises(TraceMismatchError, match=r"another network.*widths"):
        t(3, other)


def test_new_dir_when_different_and_it_resumes_there(data, tmp_path):
    x, y, net = data
    out = tmp_path / "run"
    Tracer(x, y, every=[0, 1], scopes=("prefix",), out=out)(0, net)
    t = Tracer(x, 1 - y, every=[0, 1], scopes=("prefix",), out=out, if_different="new_dir")
    assert t.out == f"{out}-2" and not t.steps_done
    t(0, net)
    t2 = Tracer(x, 1 - y, every=[0, 1], scopes=("prefix",), out=out, if_different="new_dir")
    assert t2.out == f"{out}-2" and t2.steps_done == {0}  # this run's directory, resumed
    other = partax.mlp(jax.random.key(1), [4, 7, 2])
    t3 = Tracer(x, y, every=[0, 1], scopes=("prefix",), out=out, if_different="new_dir")
    assert t3.out == str(out)
    t3(1, other)  # another net than the trace at out: moves on (out-2 holds other labels)
    assert t3.out == f"{out}-3" and load_header(t3.out)["net"]["widths"] == [7]
    assert load_header(out)["net"]["widths"] == [6, 5]


def test_a_trace_without_header_is_refused(data, tmp_path):
    x, y, net = data
    rec = {"kind": "measure", "step": 0, "member": 0, "scope": "prefix", "layer": 1}
    with open(tmp_path / "trace.jsonl", "w") as f:
        f.write(json.dumps(rec) + "\n" + json.dumps({"kind": "checkpoint", "step": 0, "records": 1}) + "\n")
    assert load_header(tmp_path) is None and load_trace(tmp_path)["step"].tolist() == [0]
    with pytest.raises(TraceMismatchError, match="has none"):
        Tracer(x, y, scopes=("prefix",), out=tmp_path)


def test_save_nets_keeps_every_checkpoints_parameters(data, tmp_path):
    x, y, net = data
    t = Tracer(x, y, every=[0, 5], scopes=("prefix",), out=tmp_path, save_nets=True)
    moved = _perturbed(net, 0.05)
    t(0, net)
    t(5, moved)
    for step, want in ((0, net), (5, moved)):
        back = partax.load_net(tmp_path / "nets" / f"step_{step:06d}.npz")
        for a, b in zip(back.arrays(), want.arrays()):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="save_tables, save_nets: need out"):
        Tracer(x, y, save_nets=True)
