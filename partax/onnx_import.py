"""Import an ONNX file (``torch.onnx.export``, Keras, ...) as a partax network.

:func:`from_onnx` reads the graph with the ``onnx`` package (an optional dependency), writes
each node as the JAX operation it denotes (channels-first, as ONNX is) and imports that function
with :func:`partax.jax_import.from_jax`, which turns it into channels-last partax layers
(kernels transposed from ``OIHW`` to ``HWIO``, the channels-first flatten before a dense layer
absorbed into its weight rows) and checks the net against it.

Supported operators: ``Gemm``, ``MatMul``, ``Add`` / ``Sub`` / ``Mul`` / ``Div`` (with
constants, or a residual ``Add``), ``Conv`` (pads, strides, dilations, group, ``auto_pad``),
``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``BatchNormalization`` (inference),
``Relu``, ``LeakyRelu``, ``Clip``, ``HardSigmoid``, ``Flatten``, ``Reshape``, ``Transpose``,
``Squeeze`` / ``Unsqueeze``, ``Identity``, ``Dropout`` and ``Constant``. Anything else is a
``ValueError`` naming the node and its operator.

Input layout: a graph input ``(N, C, *spatial)`` of rank 3 or more is read channels-last, so
the imported net takes ``np.moveaxis(x, 1, -1)`` (``(N, C, H, W) -> (N, H, W, C)``); an input
``(N, d)`` is taken as it is.

Example:
    >>> import os, tempfile, numpy as np
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> W = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    >>> g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
    ...     "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [W])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    >>> from_onnx(path).layers
    (Dense(3->2), ReLU(), Dense(2->2))
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from partax.jax_import import from_jax
from partax.layers import same_padding

__all__ = ["from_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = frozenset({
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool",
    "BatchNormalization", "Relu", "LeakyRelu", "Clip", "HardSigmoid", "Flatten", "Reshape", "Transpose",
    "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant",
})
_NOT_PL = frozenset({
    "Softmax", "LogSoftmax", "Sigmoid", "Tanh", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Pow", "Reciprocal",
    "Softplus", "Softsign", "Elu", "Selu", "Celu", "Mish", "HardSwish", "LayerNormalization",
    "InstanceNormalization", "GroupNormalization", "LpNormalization", "Attention", "MultiHeadAttention",
    "Sin", "Cos", "Sign", "Floor", "Ceil", "Round", "ReduceL2", "ReduceLogSumExp", "Einsum",
})


class _NodeError(ValueError):
    pass


def _fail(node, why):
    raise _NodeError(f"node {node.name or '(unnamed)'!r} ({node.op_type}): {why}")


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(v):
    return tuple(int(i) for i in v)


def _spatial_pads(node, a, nsp, in_sp, kernel, strides, dilations):
    """Explicit ``((lo, hi), ...)`` padding of a Conv / pool node."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("NOTSET", ""):
        p = _ints(a.get("pads", [0] * (2 * nsp)))
        if len(p) != 2 * nsp:
            _fail(node, f"expected {2 * nsp} pads, got {list(p)}")
        return tuple((p[i], p[i + nsp]) for i in range(nsp))
    if auto == "VALID":
        return ((0, 0),) * nsp
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return same_padding(kernel, strides, dilations, in_sp, lower=auto == "SAME_LOWER")
    _fail(node, f"auto_pad {auto!r} is not supported")


def _node_fn(node, consts):
    """A JAX function of the node's inputs (constants filled in), or raises naming the node."""
    op = node.op_type
    a = _attrs(node)
    if op in _NOT_PL:
        _fail(node, "is not piecewise linear, so partax cannot import it")
    if op not in SUPPORTED_OPS:
        _fail(node, f"operator {op!r} is not supported (supported: {', '.join(sorted(SUPPORTED_OPS))})")
    if node.domain not in ("", "ai.onnx"):
        _fail(node, f"operator domain {node.domain!r} is not supported")

    if op in ("Identity", "Dropout"):
        return lambda x, *rest: x
    if op in ("Add", "Sub", "Mul", "Div"):
        f = {"Add": jnp.add, "Sub": jnp.subtract, "Mul": jnp.multiply, "Div": jnp.divide}[op]
        return lambda x, y: f(x, y)
    if op == "MatMul":
        return lambda x, y: jnp.matmul(x, y)
    if op == "Gemm":
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        ta, tb = int(a.get("transA", 0)), int(a.get("transB", 0))

        def gemm(A, B, C=None):
            A = A.T if ta else A
            B = B.T if tb else B
            y = jnp.matmul(A, B) * alpha if alpha != 1.0 else jnp.matmul(A, B)
            return y if C is None else y + (beta * C if beta != 1.0 else C)
        return gemm
    if op == "Relu":
        return lambda x: jnp.maximum(x, 0.0)
    if op == "LeakyRelu":
        alpha = float(a.get("alpha", 0.01))
        return lambda x: jnp.where(x >= 0, x, alpha * x)
    if op == "HardSigmoid":
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        return lambda x: jnp.clip(alpha * x + beta, 0.0, 1.0)
    if op == "Clip":
        lo_a, hi_a = a.get("min"), a.get("max")

        def clip(x, lo=None, hi=None):
            lo = lo_a if lo is None else lo
            hi = hi_a if hi is None else hi
            if lo is not None:
                x = jnp.maximum(x, jnp.asarray(lo, x.dtype))
            if hi is not None:
                x = jnp.minimum(x, jnp.asarray(hi, x.dtype))
            return x
        return clip
    if op == "Flatten":
        axis = int(a.get("axis", 1))
        if axis != 1:
            _fail(node, f"Flatten with axis={axis} is not supported (only 1, keeping the batch)")
        return lambda x: x.reshape(x.shape[0], -1)
    if op == "Reshape":
        if len(node.input) < 2 or node.input[1] not in consts:
            _fail(node, "needs a constant target shape")
        target = [int(v) for v in np.asarray(consts[node.input[1]]).reshape(-1)]
        allowzero = int(a.get("allowzero", 0))

        def reshape(x, _shape=None):  # the first axis stays the batch
            rest = [x.shape[i] if (v == 0 and not allowzero) else v for i, v in enumerate(target)][1:]
            return x.reshape([x.shape[0], *rest])
        return reshape
    if op == "Transpose":
        perm = a.get("perm")
        return lambda x: jnp.transpose(x, None if perm is None else _ints(perm))
    if op in ("Squeeze", "Unsqueeze"):
        axes_a = a.get("axes")

        def sq(x, axes=None):
            axes = axes_a if axes is None else axes
            axes = None if axes is None else tuple(int(v) for v in np.asarray(axes).reshape(-1))
            if op == "Squeeze":
                return jnp.squeeze(x, axes)
            for ax in sorted(v % (x.ndim + len(axes)) for v in axes):
                x = jnp.expand_dims(x, ax)
            return x
        return sq
    if op == "BatchNormalization":
        if int(a.get("training_mode", 0)):
            _fail(node, "training_mode=1 is not supported (inference batch norm only)")
        eps = float(a.get("epsilon", 1e-5))

        def bn(x, scale, bias, mean, var):
            sh = (1, -1) + (1,) * (x.ndim - 2)
            return (x - mean.reshape(sh)) / jnp.sqrt(var.reshape(sh) + eps) * scale.reshape(sh) + bias.reshape(sh)
        return bn
    if op == "GlobalAveragePool":
        return lambda x: jnp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)
    if op in ("Conv", "MaxPool", "AveragePool"):
        return _window_fn(node, op, a)
    _fail(node, "is not supported")  # pragma: no cover


def _window_fn(node, op, a):
    def fn(x, w=None, b=None):
        nsp = x.ndim - 2
        if nsp not in (1, 2):
            _fail(node, f"expected a 1D or 2D input (N, C, ...), got rank {x.ndim}")
        kernel = _ints(a["kernel_shape"]) if "kernel_shape" in a else tuple(w.shape[2:])
        strides = _ints(a.get("strides", [1] * nsp))
        dil = _ints(a.get("dilations", [1] * nsp))
        if int(a.get("ceil_mode", 0)):
            _fail(node, "ceil_mode=1 is not supported")
        pads = _spatial_pads(node, a, nsp, x.shape[2:], kernel, strides, dil)
        if op == "Conv":
            dn = ("NCH", "OIH", "NCH") if nsp == 1 else ("NCHW", "OIHW", "NCHW")
            y = jax.lax.conv_general_dilated(x, w, strides, pads, rhs_dilation=dil, dimension_numbers=dn,
                                             feature_group_count=int(a.get("group", 1)))
            return y if b is None else y + b.reshape((1, -1) + (1,) * nsp)
        if any(d != 1 for d in dil):
            _fail(node, "pooling with dilations is not supported")
        if op == "MaxPool":
            if len(node.output) > 1 and node.output[1]:
                _fail(node, "the Indices output of MaxPool is not supported")
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, *kernel), (1, 1, *strides),
                                         ((0, 0), (0, 0), *pads))
        if any(p != (0, 0) for p in pads) and not int(a.get("count_include_pad", 0)):
            _fail(node, "AveragePool with padding and count_include_pad=0 divides border windows by fewer "
                        "elements, which is not supported (export with count_include_pad=1)")
        s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 1, *kernel), (1, 1, *strides), ((0, 0), (0, 0), *pads))
        return s / float(np.prod(kernel))
    return fn


def _named(fn, label):
    """``fn`` as a named call, so that an error inside it names the ONNX node."""
    def call(*args):
        return fn(*args)
    call.__name__ = call.__qualname__ = label
    return jax.jit(call)


def _load(path):
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is installed in dev
        raise ImportError("from_onnx needs the onnx package (pip install onnx)") from e
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"path: no such ONNX file {p!r}")
    try:
        model = onnx.load(p)
        onnx.checker.check_model(model)
    except Exception as e:
        raise ValueError(f"path: {p!r} is not a valid ONNX model: {type(e).__name__}: {e}") from None
    return model, numpy_helper


def from_onnx(path, *, check: bool = True):
    """A partax :class:`~partax.Net` computing the same function as an ONNX file.

    Args:
      path: the ``.onnx`` file: one graph input ``(N, d)`` or ``(N, C, *spatial)`` (the batch
        size may be symbolic, the other sizes must be fixed), one output ``(N, d_out)``.
      check: compare the net with the graph's JAX transcription on random inputs (see
        :func:`partax.jax_import.from_jax`).

    Returns:
      An unstacked :class:`~partax.Net`. A channels-first input ``(N, C, *spatial)`` is read
      channels-last: the net takes ``np.moveaxis(x, 1, -1)``, its ``input_shape`` is
      ``(*spatial, C)``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: a corrupt or invalid file (naming ``path``), or a node partax cannot import
        (naming the node and its operator, and why).

    Example:
      >>> import os, tempfile, numpy as np
      >>> from onnx import TensorProto, helper, numpy_helper
      >>> k = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "k")  # OIHW
      >>> nodes = [helper.make_node("Conv", ["x", "k"], ["h"], pads=[1, 1, 1, 1]),
      ...          helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Flatten", ["r"], ["y"])]
      >>> g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
      ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])], [k])
      >>> path = os.path.join(tempfile.mkdtemp(), "c.onnx")
      >>> with open(path, "wb") as f:
      ...     _ = f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
      >>> net = from_onnx(path)
      >>> net.input_shape, net.layers  # NCHW (1, 4, 4) is read as NHWC (4, 4, 1)
      ((4, 4, 1), (Conv(3x3, 1->2, padding 1), ReLU(), Flatten(), Dense(32->32)))
    """
    model, numpy_helper = _load(path)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"path: expected a graph of one input and one output, got inputs "
                         f"{[i.name for i in inputs]} and outputs {[o.name for o in g.output]}")
    (inp,), out_name = inputs, g.output[0].name
    dims = inp.type.tensor_type.shape.dim
    shape = []
    for k, d in enumerate(dims[1:], 1):
        if not d.HasField("dim_value"):
            raise ValueError(f"path: input {inp.name!r} axis {k} has no fixed size ({d.dim_param or '?'})")
        shape.append(int(d.dim_value))
    if not shape:
        raise ValueError(f"path: input {inp.name!r} must be (N, d) or (N, C, *spatial), got rank {len(dims)}")
    nodes = list(g.node)
    for node in nodes:  # refuse before tracing, naming the node
        if node.op_type == "Constant":
            a = _attrs(node)
            if "value" not in a:
                _fail(node, "only a tensor 'value' is supported")
            consts[node.output[0]] = numpy_helper.to_array(a["value"])
        else:
            _node_fn(node, consts)
    fns = {k: _node_fn(n, consts) for k, n in enumerate(nodes) if n.op_type != "Constant"}
    channels_first = len(shape) >= 2

    def apply(x):
        env = {k: jnp.asarray(v) for k, v in consts.items()}
        env[inp.name] = jnp.moveaxis(x, -1, 1) if channels_first else x
        for k, node in enumerate(nodes):
            if node.op_type == "Constant":
                continue
            args = [env[n] if n else None for n in node.input]
            while args and args[-1] is None:
                args.pop()
            try:
                y = _named(fns[k], f"{node.op_type} node {node.name or '(unnamed)'}")(*args)
            except _NodeError:
                raise
            except Exception as e:
                raise ValueError(f"node {node.name or '(unnamed)'!r} ({node.op_type}): {e}") from None
            env[node.output[0]] = y
        return env[out_name]

    example = np.zeros((2, *(shape[1:] + shape[:1] if channels_first else shape)), np.float32)
    try:
        return from_jax(apply, example, check=check)
    except ValueError as e:
        raise ValueError(f"path: {os.fspath(path)!r}: {e}") from None
