"""The data of the digits experiments: scikit-learn's 8x8 digits (shipped with partax), or the
first 12,000 MNIST training images from a directory of IDX files, and one fixed train/test split.

Used by ``digits_fcn_cnn.py``, ``hanin_rolnick.py`` and ``tropex_digits.py`` (run from any
directory: each puts this folder on ``sys.path``).
"""

from __future__ import annotations

import os

import numpy as np

from partax.datasets import digits, load_idx


def split(x, y, n_train, seed=0):
    """A fixed random train/test split: ``(x_train, y_train, x_test, y_test)``."""
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


def load_data(mnist=None):
    """``(x, y, input_shape, name, n_train)`` of the digits, or of MNIST's first 12000 training
    images (5/6 of them for training) when ``mnist`` names a directory holding
    ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``."""
    if mnist:
        def find(stem):
            for name in (stem, stem + ".gz"):
                p = os.path.join(mnist, name)
                if os.path.exists(p):
                    return p
            raise SystemExit(f"--mnist: {stem}[.gz] not found in {mnist}")

        x, y = load_idx(find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte"))
        side = int(round(np.sqrt(x.shape[1])))
        x, y = x[:12000], y[:12000]
        return x, y, (side, side, 1), f"MNIST (first {len(x)} training images)", len(x) * 5 // 6
    x, y = digits()
    return x, y, (8, 8, 1), "scikit-learn digits 8x8", 1200
