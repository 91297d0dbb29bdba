"""Networks: continuous piecewise-linear MLPs as immutable pytrees.

A :class:`Net` is a sequence of affine layers ``x @ W + b``; every layer but the
last is followed by a piecewise-linear activation (``relu`` or ``leaky_relu``),
the last one gives the logits. The *code* of a hidden unit is 1 iff its
pre-activation is ``> 0``, so a point on a boundary belongs to the inactive side.

A net may be *stacked*: every array carries the same leading axis (seeds,
checkpoints). ``partax.partition`` vmaps over that axis; ``net[i]`` takes one.

Example:
    >>> import jax, partax
    >>> net = partax.mlp(jax.random.key(0), [12, 10, 7, 2])
    >>> net.input_dim, net.widths, net.output_dim
    (12, (10, 7), 2)
    >>> [z.shape for z in net.preactivations(jax.numpy.ones((5, 12)))]
    [(5, 10), (5, 7)]
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from partax.files import load_npz, save_npz

__all__ = ["Net", "mlp", "save_net", "load_net", "stack_nets"]

_FORMAT = "partax.net"
_FORMAT_VERSION = 1
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
@dataclasses.dataclass(frozen=True, eq=False)
class Net:
    """An MLP with piecewise-linear hidden activations, as an immutable pytree.

    Attributes:
      weights: tuple of arrays, layer ``l`` of shape ``(*stack, d_{l-1}, d_l)``.
      biases: tuple of arrays, layer ``l`` of shape ``(*stack, d_l)``.
      activation: ``"relu"`` or ``"leaky_relu"`` (static).
      alpha: negative slope of the leaky ReLU (0 for ReLU; static).
    """

    weights: tuple
    biases: tuple
    activation: str = "relu"
    alpha: float = 0.0

    # -- pytree protocol -------------------------------------------------------------
    def tree_flatten(self):
        return (self.weights, self.biases), (self.activation, self.alpha)

    @classmethod
    def tree_unflatten(cls, aux, children):
        weights, biases = children
        return cls(tuple(weights), tuple(biases), *aux)

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

    # -- shape facts -----------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[-2])

    @property
    def widths(self) -> tuple:
        """Hidden widths ``(n_1, ..., n_L)``."""
        return tuple(int(W.shape[-1]) for W in self.weights[:-1])

    @property
    def output_dim(self) -> int:
        return int(self.weights[-1].shape[-1])

    @property
    def num_hidden(self) -> int:
        """Number of hidden layers ``L``."""
        return len(self.weights) - 1

    @property
    def stack_shape(self) -> tuple:
        """Leading stack axes (``()`` for a single net)."""
        return tuple(self.weights[0].shape[:-2])

    @property
    def dtype(self):
        return self.weights[0].dtype

    def __repr__(self) -> str:
        stack = f", stack={self.stack_shape}" if self.stack_shape else ""
        act = self.activation if self.activation != "leaky_relu" else f"leaky_relu({self.alpha:g})"
        widths = "-".join(str(w) for w in (self.input_dim, *self.widths, self.output_dim))
        return f"Net({widths}, {act}, {np.dtype(self.dtype).name}{stack})"

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
        """``[W1, b1, W2, b2, ...]`` (the inverse of :meth:`from_arrays`)."""
        out = []
        for W, b in zip(self.weights, self.biases):
            out += [W, b]
        return out

    # -- evaluation ------------------------------------------------------------------
    def act(self, z):
        """The hidden activation applied to pre-activations ``z``."""
        if self.activation == "relu":
            return jnp.maximum(z, 0)
        return jnp.where(z > 0, z, self.alpha * z)

    def preactivations(self, x) -> tuple:
        """Pre-activations of every hidden layer.

        Args:
          x: inputs ``[N, d_in]`` (or ``[d_in]``).

        Returns:
          A tuple of ``L`` arrays ``[N, n_l]`` (or ``[n_l]``), in the net's dtype.
        """
        h = jnp.asarray(x, self.dtype)
        out = []
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            z = jnp.matmul(h, W, precision=_HIGHEST) + b
            out.append(z)
            h = self.act(z)
        return tuple(out)

    def __call__(self, x):
        """Logits ``[N, d_out]`` for inputs ``[N, d_in]``."""
        h = jnp.asarray(x, self.dtype)
        for W, b in zip(self.weights[:-1], self.biases[:-1]):
            h = self.act(jnp.matmul(h, W, precision=_HIGHEST) + b)
        return jnp.matmul(h, self.weights[-1], precision=_HIGHEST) + self.biases[-1]


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
    for i, n in enumerate(nets):
        if (n.input_dim, n.widths, n.output_dim, n.activation, n.alpha) != (
            first.input_dim, first.widths, first.output_dim, first.activation, first.alpha
        ):
            raise ValueError(f"nets: net {i} has a different architecture from net 0")
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *nets)


def save_net(net: Net, path) -> None:
    """Saves a net as one ``.npz`` (no pickle) with a JSON header; the write is atomic.

    Example:
      >>> import jax, partax, tempfile, os
      >>> net = partax.mlp(jax.random.key(0), [3, 4, 2])
      >>> p = os.path.join(tempfile.mkdtemp(), "net.npz")
      >>> partax.save_net(net, p); partax.load_net(p).widths
      (4,)
    """
    arrays = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l + 1}"] = np.asarray(W)
        arrays[f"b{l + 1}"] = np.asarray(b)
    save_npz(
        path, arrays, _FORMAT, _FORMAT_VERSION, activation=net.activation, alpha=net.alpha,
        num_layers=len(net.weights), stack_shape=list(net.stack_shape),
    )


def load_net(path) -> Net:
    """Loads a net written by :func:`save_net`.

    Raises:
      ValueError: if ``path`` is not a partax net file.
    """
    files, header = load_npz(
        path, _FORMAT, "net file", version=_FORMAT_VERSION, required=("num_layers", "activation", "alpha")
    )
    arrays = []
    for l in range(header["num_layers"]):
        arrays += [files[f"W{l + 1}"], files[f"b{l + 1}"]]
    act = header["activation"] if header["activation"] == "relu" else (header["activation"], header["alpha"])
    return Net.from_arrays(arrays, activation=act)
