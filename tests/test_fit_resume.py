"""partax.train.fit checkpoints its own state and a run killed with SIGKILL resumes to the same net."""

import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import partax
from partax.train import CheckpointMismatchError, fit

WORKER = os.path.join(os.path.dirname(__file__), "_fit_resume_worker.py")


def _run(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, WORKER, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_killed_run_resumes_to_the_uninterrupted_runs_parameters(tmp_path):
    ckpt = tmp_path / "fit.npz"
    killed = _run(ckpt, tmp_path / "never.npz", 7)
    assert killed.returncode == -9, killed.stderr  # SIGKILL at epoch 7's callback
    assert ckpt.exists() and not (tmp_path / "never.npz").exists()
    resumed = _run(ckpt, tmp_path / "resumed.npz", -1)
    assert resumed.returncode == 0, resumed.stderr
    a, b = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "resumed_plain.npz")
    assert a["seen"].tolist() == list(range(7, 13))  # epochs 1-6 were checkpointed; 7 is trained again
    assert b["seen"].tolist() == list(range(0, 13))
    for k in b.files:
        if k.startswith("arr_"):
            np.testing.assert_array_equal(a[k], b[k])  # bit for bit
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_a_checkpoint_of_another_run_is_refused_and_a_finished_one_returns_at_once(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (64, 3)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int32)
    net = partax.mlp(jax.random.key(0), [3, 5, 2])
    ckpt = tmp_path / "c.npz"
    done, hist = fit(net, x, y, optax.adam(1e-2), epochs=3, batch_size=16, checkpoint=ckpt)
    calls = []
    again, hist2 = fit(net, x, y, optax.adam(1e-2), epochs=3, batch_size=16, checkpoint=ckpt,
                       callbacks=[lambda e, n: calls.append(e)])
    assert calls == []  # nothing left to train
    for p, q in zip(done.arrays(), again.arrays()):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
    np.testing.assert_array_equal(hist["loss"], hist2["loss"])
    with pytest.raises(CheckpointMismatchError, match="labels"):
        fit(net, x, 1 - y, optax.adam(1e-2), epochs=3, batch_size=16, checkpoint=ckpt)
    with pytest.raises(CheckpointMismatchError, match="batch_size"):
        fit(net, x, y, optax.adam(1e-2), epochs=3, batch_size=8, checkpoint=ckpt)
    with pytest.raises(CheckpointMismatchError, match="optimizer_state"):
        fit(net, x, y, optax.sgd(1e-2), epochs=3, batch_size=16, checkpoint=ckpt)
    with pytest.raises(ValueError, match="checkpoint_seconds"):
        fit(net, x, y, optax.adam(1e-2), epochs=3, batch_size=16, checkpoint=ckpt, checkpoint_seconds=-1)
