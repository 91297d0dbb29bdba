"""Writes the small ONNX fixtures of tests/test_onnx_import.py into tests/data/onnx/.

Built with ``onnx.helper`` (no PyTorch needed), random weights from a fixed seed, batch axis
symbolic ("N"), opset 13. Run from the repository root:

    python scripts/make_onnx_fixtures.py [out_dir]

Fixtures: ``mlp.onnx`` (Gemm / MatMul+Add, Relu, LeakyRelu), ``cnn_maxpool.onnx`` (Conv with pads,
strides, dilation and groups, Relu, MaxPool, Clip, Flatten, Gemm), ``residual.onnx`` (Conv, Relu,
Conv, Add with the block input, a projection-shortcut block, GlobalAveragePool, Reshape, MatMul),
``batchnorm.onnx`` (Conv, BatchNormalization, LeakyRelu, AveragePool with padding, Transpose to
NHWC then Flatten, Gemm with transB).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from partax.files import atomic_write_bytes

OPSET = 13


class _Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.k = [], [], 0

    def const(self, name, a):
        self.inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def rand(self, name, *shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = scale if scale is not None else 1.0 / np.sqrt(max(fan_in, 1))
        return self.const(name, self.rng.normal(size=shape) * scale)

    def node(self, op, inputs, **attrs):
        self.k += 1
        out = f"{op.lower()}_{self.k}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.k}", **attrs))
        return out

    def model(self, name, x_shape, y_dim, out):
        self.nodes[-1].output[0] = "y"
        for n in self.nodes:  # the last output is called y
            for i, v in enumerate(n.input):
                if v == out:
                    n.input[i] = "y"
        g = helper.make_graph(self.nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", y_dim])], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="partax-fixtures")
        m.ir_version = 8
        return m


def mlp():
    b = _Builder(0)
    h = b.node("Gemm", ["x", b.rand("W1", 16, 6), b.rand("b1", 16, scale=0.3)], transB=1)
    h = b.node("Relu", [h])
    h = b.node("MatMul", [h, b.rand("W2", 16, 12)])
    h = b.node("Add", [h, b.rand("b2", 12, scale=0.3)])
    h = b.node("LeakyRelu", [h], alpha=0.1)
    y = b.node("Gemm", [h, b.rand("W3", 12, 3), b.rand("b3", 3, scale=0.3)], alpha=0.5, beta=2.0)
    return b.model("mlp", [6], 3, y)


def cnn_maxpool():
    b = _Builder(1)
    h = b.node("Conv", ["x", b.rand("k1", 4, 2, 3, 3), b.rand("c1", 4, scale=0.2)], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h])
    h = b.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])  # 10x10 -> 5x5
    h = b.node("Conv", [h, b.rand("k2", 6, 2, 3, 3), b.rand("c2", 6, scale=0.2)], group=2, strides=[2, 1],
               dilations=[1, 2], pads=[1, 0, 1, 2])  # -> 3x5
    h = b.node("Clip", [h, b.const("lo", 0.0), b.const("hi", 0.8)])
    h = b.node("MaxPool", [h], kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 1])  # -> 3x3
    h = b.node("Flatten", [h])
    y = b.node("Gemm", [h, b.rand("W", 36, 4), b.rand("b", 4, scale=0.2)])
    return b.model("cnn_maxpool", [2, 10, 10], 4, y)


def residual():
    b = _Builder(2)
    h = b.node("Relu", [b.node("Conv", ["x", b.rand("k0", 4, 3, 3, 3), b.rand("c0", 4, scale=0.2)],
                                 pads=[1, 1, 1, 1])])
    r = b.node("Relu", [b.node("Conv", [h, b.rand("k1", 4, 4, 3, 3), b.rand("c1", 4, scale=0.2)],
                                 pads=[1, 1, 1, 1])])
    r = b.node("Conv", [r, b.rand("k2", 4, 4, 3, 3), b.rand("c2", 4, scale=0.2)], pads=[1, 1, 1, 1])
    h = b.node("Relu", [b.node("Add", [h, r])])
    s = b.node("Conv", [h, b.rand("ks", 6, 4, 1, 1)], strides=[2, 2])  # projection shortcut, no bias
    r = b.node("Relu", [b.node("Conv", [h, b.rand("k3", 6, 4, 3, 3), b.rand("c3", 6, scale=0.2)],
                                 pads=[1, 1, 1, 1], strides=[2, 2])])
    r = b.node("Conv", [r, b.rand("k4", 6, 6, 3, 3), b.rand("c4", 6, scale=0.2)], pads=[1, 1, 1, 1])
    h = b.node("Relu", [b.node("Add", [r, s])])
    h = b.node("GlobalAveragePool", [h])
    shape = "shape"
    b.inits.append(numpy_helper.from_array(np.array([-1, 6], np.int64), shape))
    h = b.node("Reshape", [h, shape])
    y = b.node("Add", [b.node("MatMul", [h, b.rand("W", 6, 3)]), b.rand("b", 3, scale=0.2)])
    return b.model("residual", [3, 8, 8], 3, y)


def batchnorm():
    b = _Builder(3)
    h = b.node("Conv", ["x", b.rand("k", 5, 1, 3, 3), b.rand("c", 5, scale=0.2)], auto_pad="SAME_UPPER")
    h = b.node("BatchNormalization", [h, b.const("scale", b.rng.uniform(0.5, 1.5, 5)),
                                      b.const("bias", b.rng.normal(size=5) * 0.3),
                                      b.const("mean", b.rng.normal(size=5) * 0.3),
                                      b.const("var", b.rng.uniform(0.5, 2.0, 5))], epsilon=1e-3)
    h = b.node("LeakyRelu", [h], alpha=0.05)
    h = b.node("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)
    h = b.node("Transpose", [h], perm=[0, 2, 3, 1])  # NHWC, as Keras exports
    h = b.node("Flatten", [h])
    y = b.node("Gemm", [h, b.rand("W", 2, 80), b.rand("b2", 2, scale=0.2)], transB=1)
    return b.model("batchnorm", [1, 8, 8], 2, y)


FIXTURES = {"mlp": mlp, "cnn_maxpool": cnn_maxpool, "residual": residual, "batchnorm": batchnorm}


def main(out_dir=os.path.join("tests", "data", "onnx")):
    import onnx

    for name, make in FIXTURES.items():
        m = make()
        onnx.checker.check_model(m)
        atomic_write_bytes(os.path.join(out_dir, f"{name}.onnx"), m.SerializeToString())


if __name__ == "__main__":
    main(*sys.argv[1:])
