"""The frozen-code linearisation: affine families pushed through a net, in float64.

Inside one linear region a ReLU net is affine, and so is its restriction to any affine
subspace. An :class:`AffineFamily` is an affine map ``t -> offset + t @ directions`` from
``R^k`` into a layer's space (``offset[..., n]``, ``directions[..., k, n]``, any leading
batch axes): ``k = d`` with the identity for local maps and H-representations, ``k = 1`` for
a segment ``a + t (b - a)``, ``k = 2`` for a plane ``origin + s u + t v``, ``k = 0`` for plain
points. Pushing a family through a layer with the layer's code *frozen* (slope 1 for an
active unit, the leaky slope ``alpha`` for an inactive one, 0 for ReLU) gives the family of
the layer's pre-activations and, after the frozen activation, of its output.

This module is the only place that knows how a layer acts on such a family:

* a layer (:class:`Dense`) provides ``linear(v)`` (its linear part, applied to directions),
  ``affine(v)`` (applied to offsets and points) and ``magnitude(v)`` (``|W|`` applied to
  ``|v|``: the size of the terms summed, for rounding tolerances);
* :func:`activate` applies a frozen code to values, :func:`freeze` to a family;
* :func:`apply_layer`, :func:`push_layer` and :func:`push` chain them.

A new layer type (a convolution, a pooling window, a residual block) is one more class with
these three methods; every consumer — :func:`partax.geometry.local_maps`,
:func:`~partax.geometry.halfspaces`, :func:`~partax.geometry.line_regions`,
:func:`~partax.geometry.slice_regions`, :func:`~partax.geometry.enumerate_regions`, the
float64 codes — goes through them. The functions take an array module ``xp`` (``numpy``, the
default, for host code; ``jax.numpy`` inside a jitted function under
``jax.enable_x64``), so each action is written once for both.

The float64 parameters of a net are :func:`float64_arrays` (one read-only host copy per
:class:`partax.Net`, cached while the net lives).

**General nets** (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
blocks, hard-tanh and max-pool sites). Their layers are the :mod:`partax.layers` classes, which
carry the same actions under other names: ``apply`` (affine), ``linear`` and ``magnitude`` on
affine layers, and on code sites ``frozen(z, bits)`` / ``frozen_linear(v, bits)`` (the site
with its code fixed: slope 1 / ``alpha`` for ReLU units; 1 on the linear piece and a constant
``lo`` / ``hi`` where a hard-tanh unit is clamped; the selected slot of each max-pool window).
:func:`push_sites` pushes a family through them (one :func:`partax.layers.traverse`; residual
blocks add the families of their two branches), in JAX float64 (``float64_layers`` holds the
net's layers with float64 arrays). A new layer type goes into :mod:`partax.layers` with those
methods; a new *site* also needs its rows in :func:`partax.geometry.hrep.site_rows`.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry.linearize import AffineFamily, float64_arrays, forward_codes, push
    >>> net = partax.mlp(jax.random.key(0), [2, 6, 6, 1], bias_std=0.3)
    >>> p = float64_arrays(net)
    >>> x = np.array([[0.3, -0.2]])
    >>> masks = forward_codes(p, x)                            # the float64 code of x
    >>> fams = push(p, AffineFamily(np.zeros(2), np.eye(2)), masks, output=True)
    >>> out = fams[-1]                                         # net(z) = offset + z @ directions
    >>> y = out.offset + np.einsum("nk,nko->no", x, out.directions)
    >>> bool(np.allclose(y, np.asarray(net(x.astype(np.float32))), atol=1e-5))
    True
"""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.layers import traverse
from partax.nets import code_sites

__all__ = ["Dense", "Params64", "AffineFamily", "float64_arrays", "activate", "freeze", "apply_layer",
           "push_layer", "push", "forward_codes", "float64_layers", "push_sites", "net_sites",
           "forward_site_codes"]

_HIGHEST = jax.lax.Precision.HIGHEST


def _dot(v, W, xp):
    """``v @ W`` over the last axis of ``v`` (any leading axes)."""
    if xp is np:
        return np.matmul(v, W)
    return xp.tensordot(v, W, axes=1, precision=_HIGHEST)


class Dense(NamedTuple):
    """A dense layer ``v -> v @ W + b`` (float64; NumPy or JAX arrays).

    Attributes:
      W: ``[n_in, n_out]``.
      b: ``[n_out]``.
    """

    W: Any
    b: Any

    @property
    def width(self) -> int:
        """``n_out``."""
        return int(self.W.shape[-1])

    def linear(self, v, xp=np):
        """The linear part ``v @ W`` of ``v[..., n_in]`` (directions, derivatives)."""
        return _dot(v, self.W, xp)

    def affine(self, v, xp=np):
        """The layer ``v @ W + b`` of ``v[..., n_in]`` (offsets, points)."""
        return _dot(v, self.W, xp) + self.b

    def magnitude(self, v, xp=np):
        """``|v| @ |W|``: the size of the terms of :meth:`linear` (for rounding tolerances)."""
        return _dot(xp.abs(v), xp.abs(self.W), xp)


class Params64(NamedTuple):
    """A net's layers in float64: ``layers[:-1]`` hidden, ``layers[-1]`` the output layer.

    Attributes:
      layers: tuple of :class:`Dense`.
      alpha: the slope of an inactive unit (0 for ReLU, the leaky slope otherwise).
    """

    layers: tuple
    alpha: Any

    @property
    def input_dim(self) -> int:
        return int(self.layers[0].W.shape[0])

    @property
    def widths(self) -> tuple:
        """Hidden widths ``(n_1, ..., n_L)``."""
        return tuple(layer.width for layer in self.layers[:-1])

    def sub(self, first: int) -> "Params64":
        """The layers ``first..L+1`` (1-based): the net that takes ``h^{first-1}`` as input."""
        return Params64(tuple(self.layers[first - 1 :]), self.alpha)


_PARAMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _read_only(a) -> np.ndarray:
    a = np.array(a, np.float64)  # an owned copy, whatever the input
    a.setflags(write=False)
    return a


def float64_arrays(net, *, parent=None, first: int = 1) -> Params64:
    """The float64 host copy of a net's parameters (read-only; one per net).

    The copy is cached on the :class:`partax.Net` object while it lives (nets hold immutable
    JAX arrays; a net built on NumPy arrays, which could change under it, is converted anew
    each call). A sub-net made of the layers ``first..L+1`` of ``parent`` shares the parent's
    copy (pass ``parent`` and ``first`` when making it).

    Args:
      net: an unstacked :class:`partax.Net`.
      parent: the net ``net`` was cut from, or None.
      first: the 1-based layer of ``parent`` where ``net`` starts.

    Returns:
      :class:`Params64`.
    """
    try:
        cached = _PARAMS.get(net)
    except TypeError:  # not weak-referenceable / hashable
        cached = None
    if cached is not None:
        return cached
    if parent is not None:
        params = float64_arrays(parent).sub(first)
    else:
        layers = tuple(Dense(_read_only(W), _read_only(b)) for W, b in zip(net.weights, net.biases))
        params = Params64(layers, float(net.alpha) if net.activation == "leaky_relu" else 0.0)
    if all(isinstance(a, jax.Array) for a in tuple(net.weights) + tuple(net.biases)):
        _PARAMS[net] = params
    return params


class AffineFamily(NamedTuple):
    """The affine map ``t -> offset + t @ directions`` from ``R^k`` into a layer's space.

    Attributes:
      offset: ``[..., n]``.
      directions: ``[..., k, n]``.
    """

    offset: Any
    directions: Any

    @property
    def rows(self):
        """The directions as rows, ``[..., n, k]``: unit ``i`` is ``rows[i] · t + offset[i]``."""
        return self.directions.swapaxes(-1, -2)

    def take(self, idx) -> "AffineFamily":
        """The family of the members ``idx`` of the leading axis."""
        return AffineFamily(self.offset[idx], self.directions[idx])


def activate(z, mask, alpha, xp=np):
    """The frozen activation of values: ``z`` where ``mask``, ``alpha z`` elsewhere.

    Args:
      z: pre-activations ``[..., n]``.
      mask: ``bool[..., n]`` the code.
      alpha: the slope of an inactive unit.
      xp: the array module.

    Returns:
      The activations, ``[..., n]``.
    """
    return xp.where(mask, 1.0, alpha) * z


def freeze(family: AffineFamily, mask, alpha, xp=np) -> AffineFamily:
    """The frozen activation of a family of pre-activations.

    Args:
      family: the pre-activations' :class:`AffineFamily`.
      mask: ``bool[..., n]`` the code (broadcast against the family's batch axes).
      alpha: the slope of an inactive unit.
      xp: the array module.

    Returns:
      The family of the activations.
    """
    slope = xp.where(mask, 1.0, alpha)
    return AffineFamily(slope * family.offset, slope[..., None, :] * family.directions)


def apply_layer(family: AffineFamily, layer, xp=np) -> AffineFamily:
    """The family of a layer's outputs (its pre-activations, for a hidden layer).

    Args:
      family: the family of the layer's inputs.
      layer: a :class:`Dense`.
      xp: the array module.

    Returns:
      :class:`AffineFamily` of the outputs.

    With NumPy the directions and the offset go through the layer's linear part as one
    stacked array ``[..., k + 1, n]`` (one matrix product per member, as the slices'
    homogeneous chains always did); the bias is then added to the offset.
    """
    if xp is np:
        offset = np.broadcast_to(family.offset, family.directions.shape[:-2] + family.offset.shape[-1:])
        stacked = layer.linear(np.concatenate([family.directions, offset[..., None, :]], axis=-2), xp)
        return AffineFamily(stacked[..., -1, :] + layer.b, stacked[..., :-1, :])
    return AffineFamily(layer.affine(family.offset, xp), layer.linear(family.directions, xp))


def push_layer(family: AffineFamily, layer, mask, alpha, xp=np) -> tuple:
    """One hidden layer with its code frozen: ``(pre-activations, outputs)`` as families.

    Args:
      family: the family of the layer's inputs.
      layer: a :class:`Dense`.
      mask: ``bool[..., n]``, the layer's code (True: active).
      alpha: the slope of an inactive unit.
      xp: the array module.

    Returns:
      ``(pre, post)``: :class:`AffineFamily` of the pre-activations and of the outputs.
    """
    pre = apply_layer(family, layer, xp)
    return pre, freeze(pre, mask, alpha, xp)


def push(params: Params64, family: AffineFamily, masks, *, first: int = 1, output: bool = False,
         xp=np) -> tuple:
    """Pre-activation families of consecutive hidden layers, their codes frozen to ``masks``.

    Args:
      params: :class:`Params64` (or its JAX counterpart inside a jitted function).
      family: the family in the input space of layer ``first``.
      masks: the codes ``bool[..., n_l]`` of layers ``first, first + 1, ...`` (one per layer).
      first: the 1-based index in ``params.layers`` of the first layer.
      output: also the family of the next layer's affine map (the logits when ``masks`` reach
        the last hidden layer).
      xp: the array module.

    Returns:
      A tuple of :class:`AffineFamily`, one per mask (plus one with ``output``). A family
      without batch axes broadcasts against batched masks, so an unbatched identity gives
      batched families from the first frozen layer on.
    """
    out = []
    n = len(masks)
    for i, mask in enumerate(masks):
        pre = apply_layer(family, params.layers[first - 1 + i], xp)
        out.append(pre)
        if i + 1 < n or output:
            family = freeze(pre, mask, params.alpha, xp)
    if output:
        out.append(apply_layer(family, params.layers[first - 1 + n], xp))
    return tuple(out)


def forward_codes(params: Params64, x, depth=None, xp=np) -> list:
    """The float64 codes of points: bit = pre-activation ``> 0`` (as :func:`partax.codes`).

    Args:
      params: :class:`Params64`.
      x: points ``[..., n_0]`` in the input space of ``params.layers[0]``.
      depth: number of hidden layers (default: all).
      xp: the array module.

    Returns:
      A list of ``bool[..., n_l]``, one per layer.
    """
    depth = len(params.layers) - 1 if depth is None else depth
    h = xp.asarray(x, xp.float64)
    bits = []
    for layer in params.layers[:depth]:
        z = layer.affine(h, xp)
        on = z > 0
        bits.append(on)
        h = activate(z, on, params.alpha, xp)
    return bits


# --- general nets ---------------------------------------------------------------------------------
_LAYERS64: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def float64_layers(net) -> tuple:
    """A general net's layers with read-only float64 host arrays (cached per net while it lives).

    Args:
      net: an unstacked :class:`partax.Net`.

    Returns:
      A tuple of :mod:`partax.layers` layers (pass through ``jax.tree.map(jnp.asarray, ...)``
      under ``jax.enable_x64`` to compute with them).
    """
    try:
        cached = _LAYERS64.get(net)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    layers = jax.tree_util.tree_map(_read_only, tuple(net.layers))
    if all(isinstance(a, jax.Array) for a in jax.tree_util.tree_leaves(net)):
        _LAYERS64[net] = layers
    return layers


def net_sites(net) -> tuple:
    """``(layer, input_shape)`` of every code site of a net, in execution order
    (:func:`partax.nets.code_sites`, named here for the geometry)."""
    return code_sites(net)


def forward_site_codes(layers, x, input_shape) -> tuple:
    """A general net's codes at points: its forward pass, each code site by its own rule (traceable).

    Run it under ``jax.enable_x64`` on :func:`float64_layers` for the float64 codes the geometry
    compares against (ReLU ``z > 0``, hard-tanh's two thresholds, max-pool ties to the lowest slot).

    Args:
      layers: the net's layers.
      x: points ``[N, input_dim]`` (flattened row-major) or ``[N, *input_shape]``.
      input_shape: the per-example input shape.

    Returns:
      A tuple of ``bool[N, n_g]``, one per code group.
    """
    bits = []

    def site(layer, z):
        bits.append(layer.code(z))
        return layer.apply(z)

    traverse(layers, x.reshape(x.shape[0], *input_shape), affine=lambda layer, h: layer.apply(h), site=site,
             add=lambda a, b: a + b)
    return tuple(bits)


def push_sites(layers, input_shape, family: AffineFamily, bits) -> tuple:
    """A family pushed through a general net with every site's code frozen (JAX, traceable).

    Args:
      layers: the net's layers (float64 JAX arrays inside a jitted function under x64).
      input_shape: the per-example input shape.
      family: :class:`AffineFamily` in the flattened input space (``offset[..., d]``,
        ``directions[..., k, d]``; no batch axes broadcasts against the codes).
      bits: per code group ``bool[N, n_g]``.

    Returns:
      ``(pres, out)``: per site the :class:`AffineFamily` of its input (flattened,
      ``offset[N, n]``, ``directions[N, k, n]``), and the family of the outputs.
    """
    N = bits[0].shape[0] if bits else family.offset.reshape(-1, family.offset.shape[-1]).shape[0]
    d = family.offset.shape[-1]
    k = family.directions.shape[-2]
    off = jnp.broadcast_to(family.offset, (N, d)).reshape(N, *input_shape)
    dirs = jnp.broadcast_to(family.directions, (N, k, d)).reshape(N * k, *input_shape)
    codes = iter(bits)
    pres = []

    def affine(layer, state):
        o, v = state
        return layer.apply(o), layer.linear(v)

    def site(layer, state):
        o, v = state
        b = next(codes)
        pres.append(AffineFamily(o.reshape(N, -1), v.reshape(N, k, -1)))
        return layer.frozen(o, b), layer.frozen_linear(v, jnp.repeat(b, k, axis=0))

    def add(a, b):
        return a[0] + b[0], a[1] + b[1]

    o, v = traverse(layers, (off, dirs), affine=affine, site=site, add=add)
    return tuple(pres), AffineFamily(o.reshape(N, -1), v.reshape(N, k, -1))
