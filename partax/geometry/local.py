"""Local affine maps and H-representations of the regions of a net.

Inside one linear region the net is affine. The region of an exemplar input ``x`` is
named by its activation code, computed by :func:`partax.codes` in the net's own dtype
(bit = pre-activation ``> 0``). Freezing that code (slope 1 for an active unit, ``alpha``
for an inactive one, 0 for ReLU) turns the net into an affine map, which is evaluated
in float64 under a local x64 context and differentiated with ``jax.jacfwd``; no matrix
chain is written by hand, so any layer the net supports works.

Code convention (the one of :mod:`partax.codes`): the masks are the exemplar's code exactly
as the partition engine computes it (``partax.codes``, net dtype, ``precision=HIGHEST``), so
the region described is the one whose key (:func:`partax.codes.keys_from_bits` of those
masks) is the exemplar's key in the partition tables; only the geometry is float64.

Scopes (see :mod:`partax.codes`) name a range of layers at hidden layer ``l``:

* ``"prefix"``: layers ``1..l`` — a convex polyhedron in the *input* space (dim ``d_in``);
* ``"suffix"``: layers ``l..L`` — a convex polyhedron in the input space of layer ``l``,
  i.e. the latent space ``h^{l-1}`` (dim ``n_{l-1}``; ``d_in`` for ``l = 1``); the
  exemplar is first mapped there by the net;
* ``"layer"``: layer ``l`` alone — the set of latent points ``h^{l-1}`` that layer ``l``
  gives the exemplar's code: a cell of the hyperplane arrangement of layer ``l`` in the
  space ``h^{l-1}`` (convex). (The set of *inputs* with a given layer-``l`` code is not
  convex in general, so it is not what this scope describes.)

In every case the ``domain`` (a :class:`partax.geometry.Box` or ``None``) lives in the
scope's space.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry import local_maps, halfspaces
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.1)
    >>> x = np.array([[0.3, -0.2]], np.float32)
    >>> maps = local_maps(net, x)
    >>> maps.pre[0].A.shape, maps.out.A.shape, maps.out.c.dtype
    ((1, 8, 2), (1, 1, 2), dtype('float64'))
    >>> A, b = halfspaces(net, x[0])
    >>> A.shape, bool(np.all(A @ x[0] <= b + 1e-6))
    ((16, 2), True)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.codes import SCOPES
from partax.codes import codes as _codes
from partax.geometry.domains import check_domain
from partax.nets import Net

__all__ = [
    "LayerMap",
    "OutputMap",
    "LocalMaps",
    "local_maps",
    "halfspaces",
    "halfspaces_batch",
    "scope_space",
    "SCOPES",
]

_HIGHEST = jax.lax.Precision.HIGHEST


class LayerMap(NamedTuple):
    """Pre-activations of one hidden layer as an affine map: ``z = A @ x + beta``.

    Attributes:
      A: ``float64[N, n_l, d]``.
      beta: ``float64[N, n_l]``.
    """

    A: np.ndarray
    beta: np.ndarray


class OutputMap(NamedTuple):
    """The net's outputs as an affine map: ``net(x) = A @ x + c``.

    Attributes:
      A: ``float64[N, d_out, d]``.
      c: ``float64[N, d_out]``.
    """

    A: np.ndarray
    c: np.ndarray


class LocalMaps(NamedTuple):
    """Local affine maps of the regions of ``N`` inputs.

    Attributes:
      pre: tuple of :class:`LayerMap`, one per hidden layer.
      out: :class:`OutputMap`.
      masks: tuple of ``bool[N, n_l]``, the frozen activation codes.
    """

    pre: tuple
    out: OutputMap
    masks: tuple


# --- validation ----------------------------------------------------------------------------
def _check_net(net) -> Net:
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax.Net, got {type(net).__name__}")
    if net.stack_shape:
        raise ValueError("net: expected an unstacked Net; index a stacked one first (net[i])")
    if net.num_hidden < 1:
        raise ValueError("net: expected at least one hidden layer")
    return net


def _check_x(x, d: int, name: str = "x") -> np.ndarray:
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"{name}: expected shape (N, {d}), got {tuple(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name}: expected a numeric array, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite inputs (found NaN or inf)")
    return x


def _check_scope(net: Net, scope: str, layer) -> int:
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    L = net.num_hidden
    if layer is None:
        return L
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not 1 <= layer <= L:
        raise ValueError(f"layer: expected a hidden layer in 1..{L} (1-based) or None, got {layer!r}")
    return int(layer)


# --- the frozen forward pass ------------------------------------------------------------------
def _subnet(net: Net, first: int) -> Net:
    """The net made of layers ``first..L+1`` (1-based), taking ``h^{first-1}`` as input."""
    return Net(tuple(net.weights[first - 1 :]), tuple(net.biases[first - 1 :]), net.activation, net.alpha)


def _frozen_forward(weights, biases, slopes, x):
    """Pre-activations and output of one input with the activation slopes frozen."""
    h = x
    zs = []
    for W, b, s in zip(weights[:-1], biases[:-1], slopes):
        z = jnp.matmul(h, W, precision=_HIGHEST) + b
        zs.append(z)
        h = s * z
    return tuple(zs), jnp.matmul(h, weights[-1], precision=_HIGHEST) + biases[-1]


@jax.jit
def _maps_kernel(weights, biases, slopes, x):
    def one(s, xi):
        f = lambda v: _frozen_forward(weights, biases, s, v)
        jz, jo = jax.jacfwd(f)(xi)
        z0, o0 = f(jnp.zeros_like(xi))
        return jz, z0, jo, o0

    return jax.vmap(one)(slopes, x)


def _masks(net: Net, x) -> tuple:
    """Activation codes of every hidden layer: :func:`partax.codes` itself (net dtype)."""
    if np.shape(x)[0] == 0:
        return tuple(np.zeros((0, w), bool) for w in net.widths)
    c = _codes(net, x)
    return tuple(c.bits(l) for l in range(1, net.num_hidden + 1))


def _maps(net: Net, x, masks) -> LocalMaps:
    alpha = 0.0 if net.activation == "relu" else float(net.alpha)
    with jax.enable_x64(True):
        weights = tuple(jnp.asarray(np.asarray(W), jnp.float64) for W in net.weights)
        biases = tuple(jnp.asarray(np.asarray(b), jnp.float64) for b in net.biases)
        slopes = tuple(jnp.asarray(np.where(m, 1.0, alpha)) for m in masks)
        x64 = jnp.asarray(np.asarray(x, np.float64))
        jz, z0, jo, o0 = _maps_kernel(weights, biases, slopes, x64)
        pre = tuple(LayerMap(np.asarray(a), np.asarray(b)) for a, b in zip(jz, z0))
        out = OutputMap(np.asarray(jo), np.asarray(o0))
    return LocalMaps(pre, out, tuple(masks))


def local_maps(net: Net, x) -> LocalMaps:
    """Affine maps of the regions containing the inputs ``x``.

    The region of ``x[n]`` is the one :func:`partax.codes` assigns it in the net's dtype;
    the maps are computed in float64 with that code frozen, so ``net(x) ≈ A @ x + c``
    (up to the net's dtype) at every point of the region.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: inputs ``[N, d]``.

    Returns:
      :class:`LocalMaps`: ``pre[l-1].A: float64[N, n_l, d]``, ``pre[l-1].beta:
      float64[N, n_l]`` (pre-activation ``z_i = A[i] @ x + beta_i``), ``out.A:
      float64[N, d_out, d]``, ``out.c: float64[N, d_out]``, ``masks``: the codes.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(1), [3, 10, 10, 2], bias_std=0.1)
      >>> x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
      >>> m = partax.geometry.local_maps(net, x)
      >>> y = np.einsum("noi,ni->no", m.out.A, x) + m.out.c
      >>> bool(np.allclose(y, net(x), atol=1e-5))
      True
    """
    _check_net(net)
    x = _check_x(x, net.input_dim)
    x = np.asarray(x, net.dtype)
    return _maps(net, x, _masks(net, x))


# --- H-representation ---------------------------------------------------------------------------
class ScopeSpace(NamedTuple):
    """Where the regions of a scope live.

    Attributes:
      net: the net whose prefix regions these are (the full net for ``"prefix"``, the
        sub-net of layers ``layer..L+1`` otherwise).
      points: the exemplars mapped into that space, in the net's dtype ``[N, k]``.
      depth: number of the sub-net's hidden layers that bound the region.
      first: the 1-based hidden layer of the full net where ``net`` starts.
      dim: ``k``, the dimension of the space.
    """

    net: Net
    points: np.ndarray
    depth: int
    first: int
    dim: int


@functools.partial(jax.jit, static_argnames="first")
def _latent(net: Net, x, first: int):
    return net.act(net.preactivations(x)[first - 2])


def scope_space(net: Net, x, scope: str = "prefix", layer=None) -> ScopeSpace:
    """Maps exemplars ``x[N, d_in]`` into the space of a scope's regions (see module doc)."""
    _check_net(net)
    layer = _check_scope(net, scope, layer)
    x = np.asarray(_check_x(x, net.input_dim), net.dtype)
    if scope == "prefix":
        return ScopeSpace(net, x, layer, 1, net.input_dim)
    first = layer
    if first > 1:
        pts = np.asarray(_latent(net, jnp.asarray(x), first))
        sub = _subnet(net, first)
    else:
        pts, sub = x, net
    depth = 1 if scope == "layer" else net.num_hidden - first + 1
    return ScopeSpace(sub, pts, depth, first, sub.input_dim)


def _rows(maps: LocalMaps, depth: int, domain, k: int):
    """Sign-oriented rows of the first ``depth`` hidden layers, then the domain rows."""
    As, bs = [], []
    for l in range(depth):
        sign = np.where(maps.masks[l], -1.0, 1.0)
        As.append(sign[..., None] * maps.pre[l].A)
        bs.append(-sign * maps.pre[l].beta)
    A = np.concatenate(As, axis=1)
    b = np.concatenate(bs, axis=1)
    if domain is not None:
        Ad, bd = domain.rows(k)
        n = A.shape[0]
        A = np.concatenate([A, np.broadcast_to(Ad, (n,) + Ad.shape)], axis=1)
        b = np.concatenate([b, np.broadcast_to(bd, (n,) + bd.shape)], axis=1)
    return A, b


def _scope_rows(net: Net, x, scope: str, layer, domain):
    """``(A[N, m, k], b[N, m], space, maps)`` for a batch of exemplars."""
    space = scope_space(net, x, scope, layer)
    domain = check_domain(domain, space.dim)
    sub = space.net
    maps = _maps(sub, space.points, _masks(sub, space.points))
    A, b = _rows(maps, space.depth, domain, space.dim)
    return A, b, space, maps


def halfspaces_batch(net: Net, x, *, scope: str = "prefix", layer=None, domain=None):
    """H-representations of the regions of a batch of exemplars.

    Every region has the same number of rows ``m`` (one per unit of the scope, then the
    ``2k`` rows of a box domain), so no padding is needed.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: exemplars ``[N, d_in]`` (always in the net's input space).
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"`` (see the module doc).
      layer: 1-based hidden layer (default: the last one).
      domain: a :class:`partax.geometry.Box` in the scope's space, or None.

    Returns:
      ``(A: float64[N, m, k], b: float64[N, m])`` with region ``n`` equal to the closure
      ``{z : A[n] @ z <= b[n]}`` in the scope's space of dimension ``k``.
    """
    A, b, _, _ = _scope_rows(net, x, scope, layer, domain)
    return A, b


def halfspaces(net: Net, x, *, scope: str = "prefix", layer=None, domain=None):
    """H-representation ``{z : A z <= b}`` of the region of one input ``x``.

    Rows are sign-oriented: for an active unit (``z_i(x) > 0``) the row is ``-A_i`` with
    bound ``beta_i`` (``-z_i <= 0``); for an inactive one it is ``A_i`` with bound
    ``-beta_i`` (``z_i <= 0``). The rows of the scope's units come in layer order, then the
    domain's rows (``Box.rows``).

    Args:
      net: an unstacked :class:`partax.Net`.
      x: one input ``[d_in]``.
      scope: ``"prefix"`` (layers ``1..layer``, input space), ``"layer"`` (layer ``layer``
        alone, in the space ``h^{layer-1}``) or ``"suffix"`` (layers ``layer..L``, in the
        space ``h^{layer-1}``, where ``x`` is mapped first).
      layer: 1-based hidden layer (default: the last one).
      domain: a :class:`partax.geometry.Box` in the scope's space, or None (all of R^k).

    Returns:
      ``(A: float64[m, k], b: float64[m])``.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 5, 1])
      >>> A, b = partax.geometry.halfspaces(net, np.ones(2, np.float32),
      ...                                   domain=partax.geometry.Box(-1, 2))
      >>> A.shape
      (9, 2)
    """
    _check_net(net)
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x: expected one input of shape ({net.input_dim},), got {x.shape}; "
                         "use halfspaces_batch for a batch")
    A, b = halfspaces_batch(net, x[None], scope=scope, layer=layer, domain=domain)
    return A[0], b[0]
