"""The example general nets of the layered tests (conv / pool / residual / hard-tanh), each from
its own seed, so a net is the same whatever test builds it first."""

from __future__ import annotations

import numpy as np

from partax.layers import AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, ReLU, Residual
from partax.nets import sequential


def f32_of(rng):
    return lambda *shape, scale=1.0: (rng.normal(size=shape) * scale).astype(np.float32)


def conv_pool():
    f = f32_of(np.random.default_rng(10))
    return sequential([Conv(f(3, 3, 1, 2, scale=0.6), f(2, scale=0.2)), ReLU(), MaxPool((2, 2)),
                       Flatten(), Dense(f(8, 2), f(2))], (6, 6, 1))


def residual():
    f = f32_of(np.random.default_rng(11))
    return sequential([Conv(f(2, 2, 2, 2, scale=0.6), f(2, scale=0.1), strides=2), LeakyReLU(0.1),
                       Residual((Conv(f(3, 3, 2, 2, scale=0.5), f(2, scale=0.1), padding=1), HardTanh(-0.5, 0.5),
                                 Conv(f(1, 1, 2, 2), f(2)))),
                       BatchNorm(f(2), np.abs(f(2)) + 0.5, f(2), f(2)),
                       MaxPool((2, 2), (1, 1), ((1, 0), (0, 1))), Flatten(), Dense(f(8, 2), f(2))], (5, 5, 2))


def conv1d():
    f = f32_of(np.random.default_rng(12))
    return sequential([Conv(f(3, 1, 3, scale=0.7), f(3, scale=0.2), dilation=(2,)), HardTanh(0.0, 1.0),
                       AvgPool((2,)), MaxPool((2,), (1,)), Flatten(), Dense(f(6, 2), f(2))], (11, 1))


def padded_pool():
    f = f32_of(np.random.default_rng(13))
    return sequential([Conv(f(2, 1, 2, scale=1.5), f(2)), MaxPool((3,), (2,), ((1, 1),)), LeakyReLU(0.1),
                       Flatten(), Dense(f(6, 1), f(1))], (6, 1))


NETS = {"conv_pool": conv_pool, "residual": residual, "conv1d": conv1d, "padded_pool": padded_pool}
