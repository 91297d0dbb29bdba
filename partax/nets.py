"""Networks: continuous piecewise-linear networks as immutable pytrees.

A :class:`Net` is a sequence of layers (:mod:`partax.layers`) on inputs of a fixed
per-example shape. An *MLP* is the case ``Dense, act, Dense, act, ..., Dense`` with one
activation (``relu`` or ``leaky_relu``): every affine layer but the last is followed by it,
the last one gives the logits, and the net keeps the MLP attributes ``weights``, ``biases``,
``activation`` and ``alpha`` (and the MLP code paths of the package). The *code* of a hidden
unit is 1 iff its pre-activation is ``> 0``, so a point on a boundary belongs to the inactive
side. Any other sequence (convolutions, pooling, batch norm, residual blocks, hard-tanh units)
comes from :func:`sequential`; its code groups are its code sites in execution order (see
:mod:`partax.layers`), and ``net.widths`` their bits.

Representation: every net, MLP or not, is the tuple ``layers`` plus the static
``input_shape``; the MLP attributes are views of the ``Dense`` layers (so the pytree leaves of
an MLP are still ``W1, b1, W2, b2, ...``, and the MLP kernels of the package run unchanged).

A net may be *stacked*: every array carries the same leading axis (seeds,
checkpoints). ``partax.partition`` vmaps over that axis; ``net[i]`` takes one.

Example:
    >>> import jax, partax
    >>> net = partax.mlp(jax.random.key(0), [12, 10, 7, 2])
    >>> net.input_dim, net.widths, net.output_dim
    (12, (10, 7), 2)
    >>> [z.shape for z in net.preactivations(jax.numpy.ones((5, 12)))]
    [(5, 10), (5, 7)]
    >>> import numpy as np
    >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
    >>> rng = np.random.default_rng(0)
    >>> f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
    >>> cnn = sequential([Conv(f32(3, 3, 1, 4), f32(4)), ReLU(), MaxPool((2, 2)),
    ...                   Flatten(), Dense(f32(36, 3), f32(3))], (8, 8, 1))
    >>> cnn.input_dim, cnn.widths, cnn.output_dim   # ReLU bits of 6x6x4 units, 2-bit argmax of 3x3x4 windows
    (64, (144, 72), 3)
    >>> cnn(np.ones((2, 8, 8, 1))).shape
    (2, 3)
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from partax.files import load_npz, save_npz
from partax.jax_import import from_jax, input_axes
from partax.layers import LAYER_TYPES, BatchNorm, Conv, Dense, LeakyReLU, ReLU, Residual, traverse
from partax.onnx_import import from_onnx
from partax.state_dicts import from_state_dict, load_state_dict

__all__ = ["Net", "mlp", "sequential", "save_net", "load_net", "stack_nets", "site_shapes", "code_sites", "flat_inputs",
           "as_structured", "describe", "site_outputs", "weight_arrays",
           # importers (their own modules; re-exported here, where a user looks for networks)
           "from_jax", "input_axes", "from_onnx", "from_state_dict", "load_state_dict"]

_FORMAT = "partax.net"
_FORMAT_VERSION = 2  # 1: MLPs (W1, b1, ...); 2: any sequence of layers (a "layers" spec in the header)
_HIGHEST = jax.lax.Precision.HIGHEST


def _parse_activation(activation) -> tuple[str, float]:
    """Normalises ``"relu"`` / ``("leaky_relu", alpha)`` to ``(name, alpha)``."""
    if isinstance(activation, str):
        if activation == "relu":
            return "relu", 0.0
        if activation == "leaky_relu":
            return "leaky_relu", 0.01
    elif isinstance(activation, (tuple, list)) and len(activation) == 2:
        name, alpha = activation
        if name == "relu" and float(alpha) == 0.0:
            return "relu", 0.0
        if name == "leaky_relu":
            alpha = float(alpha)
            if not (np.isfinite(alpha) and alpha != 1.0):
                raise ValueError(f"activation: leaky_relu alpha must be finite and != 1, got {alpha}")
            return "leaky_relu", alpha
    raise ValueError(
        "activation: expected 'relu', 'leaky_relu' or ('leaky_relu', alpha), "
        f"got {activation!r}"
    )


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False, init=False, repr=False)
class Net:
    """A piecewise-linear network: a sequence of layers (:mod:`partax.layers`), as an immutable pytree.

    An MLP (``Dense``, then ``ReLU`` or one ``LeakyReLU`` and ``Dense`` alternating) keeps the
    MLP attributes ``weights``, ``biases``, ``activation`` and ``alpha`` and is built with
    :func:`mlp`, :meth:`from_arrays` or ``Net(weights, biases, activation, alpha)``; any other
    net comes from :func:`sequential`.

    Attributes:
      layers: tuple of layers; arrays may carry common leading stack axes.
      input_shape: the per-example input shape (static), ``(d_in,)`` for an MLP.
    """

    layers: tuple
    input_shape: tuple

    def __init__(self, weights=None, biases=None, activation="relu", alpha: float = 0.0, *, layers=None,
                 input_shape=None):
        if layers is None:
            if weights is None or biases is None:
                raise TypeError("Net: pass weights and biases (an MLP), or use partax.nets.sequential(layers, input_shape)")
            name, alpha = _parse_activation(activation if activation != "leaky_relu" else ("leaky_relu", alpha))
            act = ReLU() if name == "relu" else LeakyReLU(alpha)
            weights, biases = tuple(weights), tuple(biases)
            if len(weights) != len(biases) or not weights:
                raise ValueError(f"weights, biases: expected as many weights as biases (>= 1), got {len(weights)} "
                                 f"and {len(biases)}")
            layers = []
            for l, (W, b) in enumerate(zip(weights, biases)):
                if l:
                    layers.append(act)
                layers.append(_raw(Dense, W=W, b=b))
            input_shape = (int(np.shape(weights[0])[-2]),)
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in input_shape))

    # -- pytree protocol -------------------------------------------------------------
    def tree_flatten(self):
        return (self.layers,), (self.input_shape,)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        object.__setattr__(obj, "layers", tuple(children[0]))
        object.__setattr__(obj, "input_shape", aux[0])
        return obj

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_arrays(cls, arrays: Sequence, activation="relu") -> "Net":
        """Builds a net from ``[W1, b1, W2, b2, ...]`` with ``W`` of shape ``(d_in, d_out)``.

        Args:
          arrays: alternating weights ``(d_{l-1}, d_l)`` and biases ``(d_l,)``; a common
            leading axis on every array makes a stacked net.
          activation: ``"relu"`` or ``("leaky_relu", alpha)``.

        Returns:
          A :class:`Net` with ``len(arrays) // 2 - 1`` hidden layers.

        Example:
          >>> import numpy as np, partax
          >>> W1, b1 = np.eye(2, dtype=np.float32), np.zeros(2, np.float32)
          >>> W2, b2 = np.ones((2, 1), np.float32), np.zeros(1, np.float32)
          >>> partax.Net.from_arrays([W1, b1, W2, b2]).widths
          (2,)
        """
        name, alpha = _parse_activation(activation)
        arrays = list(arrays)
        if len(arrays) < 2 or len(arrays) % 2:
            raise ValueError(
                f"arrays: expected [W1, b1, W2, b2, ...] (an even number >= 2), got {len(arrays)} arrays"
            )
        _warn_if_float64_truncated(arrays)
        weights, biases = [], []
        for l in range(len(arrays) // 2):
            W = jnp.asarray(arrays[2 * l])
            b = jnp.asarray(arrays[2 * l + 1])
            if not jnp.issubdtype(W.dtype, jnp.floating):
                W = W.astype(jnp.float32)
            b = b.astype(W.dtype)
            if W.ndim >= 2 and b.ndim == W.ndim - 1 and b.shape[-1] == W.shape[-2] != W.shape[-1]:
                raise ValueError(
                    f"arrays: layer {l + 1} has W{tuple(W.shape)} and b{tuple(b.shape)}: the bias matches W's "
                    f"first axis, which looks like PyTorch's (d_out, d_in) layout; partax expects (d_in, d_out): "
                    f"pass W.T (e.g. state_dict()['...weight'].T)"
                )
            if W.ndim < 2 or b.ndim != W.ndim - 1 or b.shape[-1] != W.shape[-1] or b.shape[:-1] != W.shape[:-2]:
                raise ValueError(
                    f"arrays: layer {l + 1} expected W of shape (*stack, d_in, d_out) and b of shape "
                    f"(*stack, d_out), got W{tuple(W.shape)} and b{tuple(b.shape)}"
                )
            if weights and W.shape[-2] != weights[-1].shape[-1]:
                raise ValueError(
                    f"arrays: layer {l + 1} takes {W.shape[-2]} inputs but layer {l} gives "
                    f"{weights[-1].shape[-1]} outputs"
                )
            if weights and W.shape[:-2] != weights[0].shape[:-2]:
                raise ValueError(
                    f"arrays: every array must share the stack axes {weights[0].shape[:-2]}, "
                    f"layer {l + 1} has {W.shape[:-2]}"
                )
            weights.append(W)
            biases.append(b)
        return cls(tuple(weights), tuple(biases), name, alpha)

    # -- structure -------------------------------------------------------------------
    @property
    def is_mlp(self) -> bool:
        """Whether the net is an MLP: ``Dense`` then (one activation, ``Dense``) repeated, with
        one ReLU or leaky-ReLU slope throughout and a flat input."""
        layers = self.layers
        if len(self.input_shape) != 1 or not layers or len(layers) % 2 == 0:
            return False
        if not all(type(layer) is Dense for layer in layers[::2]):
            return False
        acts = layers[1::2]
        if not acts:
            return True
        t, a = type(acts[0]), acts[0].alpha if isinstance(acts[0], LeakyReLU) else None
        return t in (ReLU, LeakyReLU) and all(type(x) is t and x.alpha == a for x in acts)

    def _mlp_only(self, name: str):
        if not self.is_mlp:
            kinds = ", ".join(sorted({type(layer).__name__ for layer in self.layers}))
            raise TypeError(f"net.{name}: defined for MLPs only (Dense layers and one ReLU / leaky-ReLU "
                            f"activation alternating); this net has layers {kinds}: use net.layers")

    @property
    def weights(self) -> tuple:
        """An MLP's weights, layer ``l`` of shape ``(*stack, d_{l-1}, d_l)`` (MLPs only)."""
        self._mlp_only("weights")
        return tuple(layer.W for layer in self.layers[::2])

    @property
    def biases(self) -> tuple:
        """An MLP's biases, layer ``l`` of shape ``(*stack, d_l)`` (MLPs only)."""
        self._mlp_only("biases")
        return tuple(layer.b for layer in self.layers[::2])

    @property
    def activation(self) -> str:
        """An MLP's activation, ``"relu"`` or ``"leaky_relu"`` (MLPs only)."""
        self._mlp_only("activation")
        if len(self.layers) == 1 or type(self.layers[1]) is ReLU:
            return "relu"
        return "leaky_relu"

    @property
    def alpha(self) -> float:
        """An MLP's negative slope (0 for ReLU; MLPs only)."""
        self._mlp_only("alpha")
        return 0.0 if len(self.layers) == 1 else float(self.layers[1].alpha)

    # -- shape facts -----------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return int(math.prod(self.input_shape))

    @property
    def shapes(self) -> tuple:
        """Per-example shapes: the input's, then after each layer of :attr:`layers`."""
        out = [self.input_shape]
        for layer in self.layers:
            out.append(tuple(layer.output_shape(out[-1])))
        return tuple(out)

    @property
    def output_shape(self) -> tuple:
        """The per-example output shape."""
        return self.shapes[-1]

    @property
    def widths(self) -> tuple:
        """Bits of each code group, in execution order (hidden widths ``(n_1, ..., n_L)`` of an MLP)."""
        if self.is_mlp:
            return tuple(int(layer.W.shape[-1]) for layer in self.layers[:-1:2])
        return tuple(int(b) for b, _ in site_shapes(self))

    @property
    def output_dim(self) -> int:
        if self.is_mlp:
            return int(self.layers[-1].W.shape[-1])
        return int(math.prod(self.output_shape))

    @property
    def num_hidden(self) -> int:
        """Number of code groups ``L`` (hidden layers of an MLP)."""
        return len(self.widths)

    @property
    def stack_shape(self) -> tuple:
        """Leading stack axes (``()`` for a single net)."""
        for layer in self.layers:
            s = _layer_stack(layer)
            if s is not None:
                return s
        return ()

    @property
    def dtype(self):
        leaves = jax.tree_util.tree_leaves(self.layers)
        return leaves[0].dtype if leaves else jnp.dtype(jnp.float32)

    def __repr__(self) -> str:
        stack = f", stack={self.stack_shape}" if self.stack_shape else ""
        if self.is_mlp:
            act = self.activation if self.activation != "leaky_relu" else f"leaky_relu({self.alpha:g})"
            widths = "-".join(str(w) for w in (self.input_dim, *self.widths, self.output_dim))
            return f"Net({widths}, {act}, {np.dtype(self.dtype).name}{stack})"
        shape = "x".join(map(str, self.input_shape))
        return f"Net({shape}: {', '.join(map(repr, self.layers))}, {np.dtype(self.dtype).name}{stack})"

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        if not self.stack_shape:
            raise TypeError("len() of an unstacked Net; use net.num_hidden for its depth")
        return self.stack_shape[0]

    def __getitem__(self, i) -> "Net":
        """The ``i``-th net of a stacked net."""
        if not self.stack_shape:
            raise TypeError("indexing an unstacked Net")
        return jax.tree_util.tree_map(lambda a: a[i], self)

    def arrays(self) -> list:
        """``[W1, b1, W2, b2, ...]`` (the inverse of :meth:`from_arrays`; MLPs only)."""
        out = []
        for W, b in zip(self.weights, self.biases):
            out += [W, b]
        return out

    # -- evaluation ------------------------------------------------------------------
    def act(self, z):
        """The hidden activation applied to pre-activations ``z`` (MLPs only)."""
        if self.activation == "relu":
            return jnp.maximum(z, 0)
        return jnp.where(z > 0, z, self.alpha * z)

    def preactivations(self, x) -> tuple:
        """Pre-activations of every hidden layer (the input of every code site).

        Args:
          x: inputs ``[N, d_in]`` (or ``[d_in]``) for an MLP; ``[N, *input_shape]`` or the
            flattened ``[N, input_dim]`` for any net.

        Returns:
          A tuple of ``L`` arrays ``[N, n_l]`` (or ``[n_l]``), in the net's dtype; for a general
          net, each site's input flattened row-major (a HardTanh site has half as many entries
          as bits, a MaxPool site its whole input).
        """
        if not self.is_mlp:
            x = as_structured(self, x)
            out = []

            def site(layer, z):
                out.append(z.reshape(z.shape[0], -1))
                return layer.apply(z)

            traverse(self.layers, x, affine=lambda layer, h: layer.apply(h), site=site, add=jnp.add)
            return tuple(out)
        h = jnp.asarray(x, self.dtype)
        out = []
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            z = jnp.matmul(h, W, precision=_HIGHEST) + b
            out.append(z)
            h = self.act(z)
        return tuple(out)

    def __call__(self, x):
        """Outputs ``[N, *output_shape]`` for inputs ``[N, *input_shape]`` (``[N, d_out]`` for an MLP)."""
        if not self.is_mlp:
            x = jnp.asarray(x, self.dtype)
            if x.shape[1:] != self.input_shape:
                raise ValueError(f"x: expected shape (N, {', '.join(map(str, self.input_shape))}) "
                                 f"(channels last), got {tuple(x.shape)}")
            return traverse(self.layers, x, affine=lambda layer, h: layer.apply(h),
                            site=lambda layer, z: layer.apply(z), add=jnp.add)
        h = jnp.asarray(x, self.dtype)
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            h = self.act(jnp.matmul(h, W, precision=_HIGHEST) + b)
        return jnp.matmul(h, self.weights[-1], precision=_HIGHEST) + self.biases[-1]


def describe(net: Net) -> dict:
    """A JSON-ready description of a net's architecture (trace and checkpoint headers).

    MLPs: ``input_dim``, ``widths``, ``output_dim``, ``activation``, ``alpha``, ``stack_shape``,
    ``dtype`` (the fields headers always had); general nets: ``input_shape`` and ``layers`` (the
    layers' reprs) in place of ``activation`` and ``alpha``.

    Example:
      >>> import jax, partax
      >>> describe(partax.mlp(jax.random.key(0), [3, 4, 2]))["widths"]
      [4]
    """
    out = {"input_dim": int(net.input_dim), "widths": [int(w) for w in net.widths], "output_dim": int(net.output_dim)}
    if net.is_mlp:
        out.update(activation=net.activation, alpha=float(net.alpha))
    else:
        out.update(input_shape=[int(v) for v in net.input_shape], layers=[repr(layer) for layer in net.layers])
    out.update(stack_shape=[int(v) for v in net.stack_shape], dtype=str(np.dtype(net.dtype)))
    return out


def site_outputs(net: Net, x) -> tuple:
    """The output of every code site (hidden activations ``act(z)`` of an MLP), flattened.

    Args:
      net: an unstacked :class:`Net`.
      x: inputs ``[N, input_dim]`` or ``[N, *input_shape]``.

    Returns:
      A tuple of ``[N, m_l]`` arrays, one per code group.
    """
    if net.is_mlp:
        return tuple(net.act(z) for z in net.preactivations(x))
    out = []

    def site(layer, z):
        y = layer.apply(z)
        out.append(y.reshape(y.shape[0], -1))
        return y

    traverse(net.layers, as_structured(net, x), affine=lambda layer, h: layer.apply(h), site=site, add=jnp.add)
    return tuple(out)


def weight_arrays(net: Net) -> tuple:
    """The weight arrays of a net (dense ``W`` and convolution kernels, residual branches
    included; biases, batch-norm statistics and scales excluded), in layer order."""
    out = []

    def collect(layers):
        for layer in layers:
            if isinstance(layer, Dense):
                out.append(layer.W)
            elif isinstance(layer, Conv):
                out.append(layer.kernel)
            elif isinstance(layer, Residual):
                collect(layer.body)
                if layer.shortcut is not None:
                    collect((layer.shortcut,))

    collect(net.layers)
    return tuple(out)


def _raw(cls, **fields):
    """A layer record built without validation (stacked arrays, from trusted constructors)."""
    obj = object.__new__(cls)
    for k, v in fields.items():
        object.__setattr__(obj, k, v)
    return obj


def _layer_stack(layer):
    """The stack axes of a layer's arrays, or None for a layer without arrays."""
    if isinstance(layer, Dense):
        return tuple(layer.W.shape[:-2])
    if isinstance(layer, Conv):
        return tuple(layer.kernel.shape[: layer.kernel.ndim - 2 - len(layer.strides)])
    if isinstance(layer, BatchNorm):
        return tuple(layer.mean.shape[:-1])
    if isinstance(layer, Residual):
        for sub in (*layer.body, layer.shortcut):
            s = None if sub is None else _layer_stack(sub)
            if s is not None:
                return s
    return None


def site_shapes(net: Net) -> tuple:
    """``(bits, input_shape)`` of every code site of ``net``, in execution order.

    Args:
      net: a :class:`Net` (stacked or not).

    Returns:
      A tuple of ``(int, tuple)`` pairs: the site's code bits and its per-example input shape.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Conv, Flatten, MaxPool, ReLU, Dense
      >>> one = lambda *shape: np.ones(shape, np.float32)
      >>> net = sequential([Conv(one(3, 3, 1, 2), one(2)), ReLU(), MaxPool((2, 2)),
      ...                   Flatten(), Dense(one(8, 3), one(3))], (6, 6, 1))
      >>> site_shapes(net)
      ((32, (4, 4, 2)), (16, (4, 4, 2)))
    """
    return tuple((int(layer.code_bits(shape)), shape) for layer, shape in code_sites(net))


def code_sites(net: Net) -> tuple:
    """``(layer, input_shape)`` of every code site of ``net``, in execution order.

    Args:
      net: a :class:`Net` (stacked or not).

    Returns:
      A tuple of ``(layer, tuple)`` pairs: the site (a :mod:`partax.layers` activation or max
      pool, inside residual bodies too) and its per-example input shape.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Dense, MaxPool, ReLU, Flatten
      >>> net = sequential([MaxPool((2,)), ReLU(), Flatten(), Dense(np.ones((2, 1), np.float32),
      ...                   np.zeros(1, np.float32))], (4, 1))
      >>> code_sites(net)
      ((MaxPool(2), (4, 1)), (ReLU(), (2, 1)))
    """
    out = []

    def site(layer, shape):
        out.append((layer, tuple(shape)))
        return tuple(layer.output_shape(shape))

    def affine(layer, shape):
        return tuple(layer.output_shape(shape))

    traverse(net.layers, tuple(net.input_shape), affine=affine, site=site, add=lambda a, b: a)
    return tuple(out)


def as_structured(net: Net, x, name: str = "x"):
    """Inputs as ``[N, *input_shape]``: accepts that shape or the flattened ``[N, input_dim]``.

    Args:
      net: the net.
      x: a NumPy or JAX array.
      name: the argument's name in the messages.

    Returns:
      ``x`` reshaped (a JAX array in the net's dtype).
    """
    x = jnp.asarray(x, net.dtype)
    shape = tuple(net.input_shape)
    if x.ndim == 2 and x.shape[1] == net.input_dim:
        return x.reshape(x.shape[0], *shape)
    if x.shape[1:] == shape:
        return x
    raise ValueError(_shape_message(net, x, name))


def _shape_message(net: Net, x, name: str) -> str:
    shape = tuple(net.input_shape)
    msg = (f"{name}: expected shape (N, {', '.join(map(str, shape))}) (channels last) or the flattened "
           f"(N, {net.input_dim}), got {tuple(x.shape)}")
    if len(shape) >= 2 and x.ndim == len(shape) + 1 and tuple(x.shape[2:]) + (x.shape[1],) == shape:
        msg += " (channels first? partax is channels-last: move axis 1 to the end)"
    return msg


def flat_inputs(net: Net, x, name: str = "x"):
    """Inputs as ``[N, input_dim]`` (row-major): accepts that shape or ``[N, *input_shape]``.

    Args:
      net: the net.
      x: a NumPy or JAX array (its type and dtype are kept).
      name: the argument's name in the messages.

    Returns:
      ``x`` as a 2-D array; any other shape is a ``ValueError`` naming the expected shapes.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Flatten, Dense, ReLU
      >>> one = lambda *shape: np.ones(shape, np.float32)
      >>> net = sequential([Flatten(), Dense(one(4, 3), one(3)), ReLU(), Dense(one(3, 1), one(1))], (2, 2, 1))
      >>> flat_inputs(net, np.zeros((5, 2, 2, 1))).shape
      (5, 4)
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    shape = tuple(net.input_shape)
    if x.ndim == 2 and x.shape[1] == net.input_dim:
        return x
    if len(shape) > 1 and tuple(x.shape[1:]) == shape:
        return x.reshape(x.shape[0], net.input_dim)
    if len(shape) == 1:
        return x  # an MLP: the callers' own checks give the messages they always gave
    raise ValueError(_shape_message(net, x, name))


FLOAT64_TRUNCATED = (
    "partax: float64 network parameters run in float32 because JAX's x64 mode is off; to keep "
    "float64, call jax.config.update('jax_enable_x64', True) before creating arrays (or set "
    "JAX_ENABLE_X64=1)"
)


def _warn_if_float64_truncated(arrays) -> None:
    """Warns (once per session, by the warnings filter) when float64 arrays will become float32."""
    if jax.config.jax_enable_x64:
        return
    if any(getattr(a, "dtype", None) == np.float64 for a in arrays):
        warnings.warn(FLOAT64_TRUNCATED, UserWarning, stacklevel=3)


def mlp(key, widths: Sequence[int], activation="relu", *, bias_std: float = 0.0, dtype=jnp.float32) -> Net:
    """A random MLP with He-normal weights.

    Args:
      key: a ``jax.random`` key.
      widths: ``[d_in, n_1, ..., n_L, d_out]`` (at least two entries).
      activation: ``"relu"`` or ``("leaky_relu", alpha)``.
      bias_std: standard deviation of normal biases (0: zero biases).
      dtype: floating dtype of the parameters.

    Returns:
      A :class:`Net`.

    Example:
      >>> import jax, partax
      >>> partax.mlp(jax.random.key(0), [784, 256, 256, 10]).widths
      (256, 256)
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths: expected [d_in, n_1, ..., d_out] of positive ints, got {widths}")
    name, alpha = _parse_activation(activation)
    weights, biases = [], []
    keys = jax.random.split(key, 2 * (len(widths) - 1))
    for l, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        W = jax.random.normal(keys[2 * l], (a, b), dtype) * np.sqrt(2.0 / a).astype(dtype)
        if bias_std:
            bias = jax.random.normal(keys[2 * l + 1], (b,), dtype) * bias_std
        else:
            bias = jnp.zeros((b,), dtype)
        weights.append(W)
        biases.append(bias)
    return Net(tuple(weights), tuple(biases), name, alpha)


def stack_nets(nets: Sequence[Net]) -> Net:
    """Stacks nets of one architecture along a new leading axis."""
    nets = list(nets)
    if not nets:
        raise ValueError("nets: expected at least one Net")
    first = nets[0]
    leaves0, tree0 = jax.tree_util.tree_flatten(first)
    for i, n in enumerate(nets):
        if not isinstance(n, Net):
            raise TypeError(f"nets: item {i} is a {type(n).__name__}, not a partax.Net")
        leaves, tree = jax.tree_util.tree_flatten(n)
        if tree != tree0 or [np.shape(a) for a in leaves] != [np.shape(a) for a in leaves0]:
            raise ValueError(f"nets: net {i} has a different architecture from net 0")
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *nets)


def sequential(layers: Sequence, input_shape) -> Net:
    """A general network: a sequence of layers (:mod:`partax.layers`) on inputs of one shape.

    Shapes are checked layer by layer (an error names the layer's index and type); arrays
    become JAX arrays of one floating dtype (the first layer's; float64 needs x64 mode).
    ``Dense, ReLU, Dense, ...`` (or one leaky slope throughout) on a flat input is an MLP
    (``net.is_mlp``).

    Args:
      layers: the layers, in order; the affine layers after the last code site give the outputs.
      input_shape: the per-example input shape, channels last (e.g. ``(8, 8, 1)``, ``(16, 3)``
        or ``(d_in,)``).

    Returns:
      An unstacked :class:`Net`.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Conv, Dense, Flatten, HardTanh, Residual
      >>> one = lambda *shape: np.ones(shape, np.float32)
      >>> res = Residual((Conv(one(3, 2, 2), one(2), padding=((1, 1),)), HardTanh(0.0, 6.0), Conv(one(1, 2, 2), one(2))))
      >>> net = sequential([res, Flatten(), Dense(one(10, 1), one(1))], (5, 2))
      >>> net.widths, net.output_dim
      ((20,), 1)
    """
    try:
        input_shape = tuple(int(s) for s in np.atleast_1d(np.asarray(input_shape, dtype=object)))
    except (TypeError, ValueError):
        raise ValueError(f"input_shape: expected a tuple of positive ints, got {input_shape!r}") from None
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"input_shape: expected a tuple of positive ints, got {input_shape!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers: expected at least one layer")
    arrays = jax.tree_util.tree_leaves(layers)
    _warn_if_float64_truncated(arrays)
    dtype = None
    for a in arrays:
        a = jnp.asarray(a)
        if jnp.issubdtype(a.dtype, jnp.floating):
            dtype = a.dtype
            break
    dtype = jnp.float32 if dtype is None else dtype
    shape = input_shape
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, LAYER_TYPES):
            raise TypeError(f"layers[{i}]: expected a partax.layers layer ({', '.join(t.__name__ for t in LAYER_TYPES)}), "
                            f"got {type(layer).__name__}")
        try:
            shape = tuple(layer.output_shape(shape))
        except ValueError as e:
            raise ValueError(f"layers[{i}] ({type(layer).__name__}): {e}") from None
        out.append(jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), layer))
    leaves = jax.tree_util.tree_leaves(out)
    if any(not np.isfinite(np.asarray(a)).all() for a in leaves):
        raise ValueError("layers: parameters must be finite (found NaN or inf)")
    return Net(layers=tuple(out), input_shape=input_shape)


# --- files ------------------------------------------------------------------------------
_ARRAY_FIELDS = {Dense: ("W", "b"), Conv: ("kernel", "bias"), BatchNorm: ("mean", "var", "scale", "offset")}
_BY_NAME = {t.__name__: t for t in LAYER_TYPES}


def _layer_spec(layer, path: str, arrays: dict) -> dict:
    """A JSON spec of a layer; its arrays go into ``arrays`` under ``path.field``."""
    kind = type(layer)
    spec = {"type": kind.__name__}
    if kind is Residual:
        spec["body"] = [_layer_spec(sub, f"{path}.body.{i}", arrays) for i, sub in enumerate(layer.body)]
        spec["shortcut"] = None if layer.shortcut is None else _layer_spec(layer.shortcut, f"{path}.shortcut", arrays)
        return spec
    names = _ARRAY_FIELDS.get(kind, ())
    for f in dataclasses.fields(kind):
        if f.name in names:
            arrays[f"{path}.{f.name}"] = np.asarray(getattr(layer, f.name))
            spec.setdefault("arrays", []).append(f.name)
        else:
            v = getattr(layer, f.name)
            spec[f.name] = [list(p) if isinstance(p, tuple) else p for p in v] if isinstance(v, tuple) else v
    return spec


def _layer_from_spec(spec: dict, path: str, files, index: int | None = None):
    kind = _BY_NAME.get(spec.get("type"))
    if kind is None:
        raise ValueError(f"path: layer {path} has an unknown type {spec.get('type')!r} (a newer partax?)")
    if kind is Residual:
        body = tuple(_layer_from_spec(s, f"{path}.body.{i}", files, index) for i, s in enumerate(spec["body"]))
        short = None if spec["shortcut"] is None else _layer_from_spec(spec["shortcut"], f"{path}.shortcut", files, index)
        return Residual(body, short)
    kwargs = {}
    for f in dataclasses.fields(kind):
        if f.name in _ARRAY_FIELDS.get(kind, ()):
            a = files[f"{path}.{f.name}"]
            kwargs[f.name] = a if index is None else a[index]
        elif f.name in spec:
            v = spec[f.name]
            kwargs[f.name] = tuple(tuple(p) if isinstance(p, list) else p for p in v) if isinstance(v, list) else v
    return kind(**kwargs)


def save_net(net: Net, path) -> None:
    """Saves a net as one ``.npz`` (no pickle) with a JSON header; the write is atomic.

    MLPs are written as format version 1 (``W1, b1, ...``: any partax reads them); other nets
    as version 2, a ``layers`` spec in the header and one array per layer field.

    Example:
      >>> import jax, partax, tempfile, os
      >>> net = partax.mlp(jax.random.key(0), [3, 4, 2])
      >>> p = os.path.join(tempfile.mkdtemp(), "net.npz")
      >>> partax.save_net(net, p); partax.load_net(p).widths
      (4,)
    """
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.is_mlp:
        arrays = {}
        for l, (W, b) in enumerate(zip(net.weights, net.biases)):
            arrays[f"W{l + 1}"] = np.asarray(W)
            arrays[f"b{l + 1}"] = np.asarray(b)
        save_npz(
            path, arrays, _FORMAT, 1, activation=net.activation, alpha=net.alpha,
            num_layers=len(net.weights), stack_shape=list(net.stack_shape),
        )
        return
    arrays = {}
    specs = [_layer_spec(layer, f"L{i}", arrays) for i, layer in enumerate(net.layers)]
    save_npz(path, arrays, _FORMAT, 2, layers=specs, input_shape=list(net.input_shape),
             stack_shape=list(net.stack_shape))


def load_net(path) -> Net:
    """Loads a net written by :func:`save_net` (either format version).

    Raises:
      ValueError: if ``path`` is not a partax net file.
    """
    files, header = load_npz(path, _FORMAT, "net file", version=_FORMAT_VERSION)
    if "layers" in header:
        stack = tuple(header.get("stack_shape", ()))
        if len(stack) > 1:
            raise ValueError(f"path: {path!r} holds a net with stack shape {stack}; at most one stack axis loads")

        def build(index):
            layers = [_layer_from_spec(s, f"L{i}", files, index) for i, s in enumerate(header["layers"])]
            return sequential(layers, tuple(header["input_shape"]))

        if stack:
            return stack_nets([build(i) for i in range(stack[0])])
        return build(None)
    for key in ("num_layers", "activation", "alpha"):
        if key not in header:
            raise ValueError(f"path: {path!r} is not a partax net file (an .npz with a {_FORMAT} header)")
    arrays = []
    for l in range(header["num_layers"]):
        arrays += [files[f"W{l + 1}"], files[f"b{l + 1}"]]
    act = header["activation"] if header["activation"] == "relu" else (header["activation"], header["alpha"])
    return Net.from_arrays(arrays, activation=act)
