"""Worker for tests/test_fit_resume.py: trains, optionally killing itself with SIGKILL mid-run."""

import os
import signal
import sys

import jax
import numpy as np
import optax

import partax
from partax.train import fit


def main():
    checkpoint, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (500, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > x[:, 2] + 0.5).astype(np.int32)
    net = partax.mlp(jax.random.key(0), [6, 16, 8, 2], bias_std=0.1)
    seen = []

    def callback(epoch, net):
        seen.append(epoch)
        if epoch == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a killed job

    trained, hist = fit(net, x, y, optax.adam(3e-3), epochs=12, batch_size=64, key=jax.random.key(5),
                        callbacks=[callback], checkpoint=checkpoint, checkpoint_seconds=0)
    np.savez(out, *[np.asarray(a) for a in trained.arrays()], loss=hist["loss"], seen=np.array(seen))
    # the uninterrupted run, in the same process (same compiled code), for the comparison
    seen.clear()
    plain, hist = fit(net, x, y, optax.adam(3e-3), epochs=12, batch_size=64, key=jax.random.key(5), callbacks=[callback])
    np.savez(out.replace(".npz", "_plain.npz"), *[np.asarray(a) for a in plain.arrays()], loss=hist["loss"],
             seen=np.array(seen))


if __name__ == "__main__":
    main()
