"""from_onnx on the committed fixtures (tests/data/onnx), against onnxruntime on random inputs."""

import os
import sys

import jax
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from partax import layers as L  # noqa: E402
from partax.onnx_import import from_onnx  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data", "onnx")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(net, x):
    """The net's outputs, jitted (one compilation instead of one per operation)."""
    return jax.jit(lambda v: net(v))(x)


def _reference(path, x):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name,in_shape,kinds", [
    ("mlp", (6,), ["Dense", "ReLU", "Dense", "LeakyReLU", "Dense"]),
    ("cnn_maxpool", (2, 10, 10), ["Conv", "ReLU", "MaxPool", "Conv", "HardTanh", "MaxPool", "Flatten", "Dense"]),
    ("residual", (3, 8, 8), ["Conv", "ReLU", "Residual", "ReLU", "Residual", "ReLU", "AvgPool", "Flatten", "Dense"]),
    ("batchnorm", (1, 8, 8), ["Conv", "LeakyReLU", "AvgPool", "Flatten", "Dense"]),  # the batch norm is folded
])
def test_fixture_matches_onnxruntime(name, in_shape, kinds):
    path = os.path.join(DATA, f"{name}.onnx")
    net = from_onnx(path)
    assert [type(l).__name__ for l in net.layers] == kinds
    x = np.random.default_rng(1).normal(size=(64, *in_shape)).astype(np.float32)
    ref = _reference(path, x)
    x_net = np.moveaxis(x, 1, -1) if x.ndim > 2 else x  # NCHW -> NHWC, as documented
    assert net.input_shape == x_net.shape[1:]
    got = np.asarray(_run(net, x_net))
    err = float(np.max(np.abs(ref - got)))
    print(f"{name}.onnx: max abs diff vs onnxruntime {err:.3g}")
    assert got.shape == ref.shape and err <= 1e-5 * (1 + np.abs(ref).max())
    if name == "residual":
        assert net.layers[2].shortcut is None and isinstance(net.layers[4].shortcut, L.Conv)


def test_fixtures_are_reproducible(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import make_onnx_fixtures
    finally:
        sys.path.pop(0)
    make_onnx_fixtures.main(str(tmp_path))
    for name in make_onnx_fixtures.FIXTURES:
        with open(tmp_path / f"{name}.onnx", "rb") as f, open(os.path.join(DATA, f"{name}.onnx"), "rb") as g:
            assert f.read() == g.read(), name


def _write(tmp_path, nodes, inits, x_shape, y_shape, name="m"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    path = str(tmp_path / f"{name}.onnx")
    with open(path, "wb") as f:
        f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.mark.parametrize("op,attrs,why", [
    ("Softmax", {}, "not piecewise linear"),
    ("Sigmoid", {}, "not piecewise linear"),
    ("Tanh", {}, "not piecewise linear"),
    ("Elu", {}, "not piecewise linear"),
    ("Abs", {}, "not supported"),
])
def test_unsupported_node_names_node_and_op(tmp_path, op, attrs, why):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="fc1"),
             helper.make_node(op, ["h"], ["y"], name="act1", **attrs)]
    path = _write(tmp_path, nodes, {"W": np.ones((3, 2))}, [3], [2])
    with pytest.raises(ValueError) as e:
        from_onnx(path)
    msg = str(e.value)
    assert "'act1'" in msg and op in msg and why in msg, msg


def test_unsupported_attributes(tmp_path):
    k = np.ones((2, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "k"], ["h"], name="c"),
             helper.make_node("MaxPool", ["h"], ["p"], name="pool", kernel_shape=[2, 2], ceil_mode=1),
             helper.make_node("Flatten", ["p"], ["y"], name="f")]
    path = _write(tmp_path, nodes, {"k": k}, [1, 7, 7], [18])
    with pytest.raises(ValueError, match=r"'pool' \(MaxPool\): ceil_mode=1"):
        from_onnx(path)
    nodes[1] = helper.make_node("AveragePool", ["h"], ["p"], name="avg", kernel_shape=[2, 2], pads=[1, 1, 1, 1])
    path = _write(tmp_path, nodes, {"k": k}, [1, 7, 7], [18])
    with pytest.raises(ValueError, match=r"'avg' \(AveragePool\): .*count_include_pad"):
        from_onnx(path)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07this is not an onnx model\xff\xff")
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        from_onnx(str(bad))
    trunc = tmp_path / "trunc.onnx"
    with open(os.path.join(DATA, "mlp.onnx"), "rb") as f:
        trunc.write_bytes(f.read()[:300])
    with pytest.raises(ValueError, match="trunc.onnx"):
        from_onnx(str(trunc))
    with pytest.raises(FileNotFoundError, match="path"):
        from_onnx(str(tmp_path / "missing.onnx"))


def test_two_inputs_refused(tmp_path):
    g = helper.make_graph([helper.make_node("Add", ["x", "z"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])])
    path = str(tmp_path / "two.onnx")
    with open(path, "wb") as f:
        f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    with pytest.raises(ValueError, match="one input"):
        from_onnx(path)
