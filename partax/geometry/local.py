"""Local affine maps and H-representations of the regions of a net.

Inside one linear region the net is affine. The region of an exemplar input ``x`` is
named by its activation code, computed by :func:`partax.codes` in the net's own dtype
(bit = pre-activation ``> 0``). Freezing that code (slope 1 for an active unit, ``alpha``
for an inactive one, 0 for ReLU) turns the net into an affine map: the identity family of
the input space is pushed through the net by the one frozen-code linearisation of
:mod:`partax.geometry.linearize` (jitted, in float64 under a local x64 context), so any
layer that module supports works.

Code convention (the one of :mod:`partax.coding`): the masks are the exemplar's code exactly
as the partition engine computes it (``partax.coding``, net dtype, ``precision=HIGHEST``), so
the region described is the one whose key (:func:`partax.coding.keys_from_bits` of those
masks) is the exemplar's key in the partition tables; only the geometry is float64.

Scopes (see :mod:`partax.coding`) name a range of layers at hidden layer ``l``:

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

General nets (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
blocks, hard-tanh and max-pool sites) have local maps and every ``"prefix"`` quantity (rows,
margins, Chebyshev balls) in their flattened input space ``R^{input_dim}`` (row-major; inputs
may also be given as ``[N, *input_shape]``): ``pre[l-1]`` is then the map of code site ``l``'s
input, and the rows are those of :func:`partax.geometry.hrep.site_rows` (two per hard-tanh unit,
``k`` per max-pool window: ``z_j - z_argmax <= 0``). ``"layer"`` / ``"suffix"`` scopes of general
nets are refused: the input of a later code group is not one tensor in general (a residual
block carries its input past its body).

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
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.coding import SCOPES, keys_from_bits
from partax.coding import codes as net_codes
from partax.validation import check_finite_inputs, check_layer, check_net
from partax.geometry.domains import check_domain
from partax.geometry.hrep import append_rows, code_rows, site_rows
from partax.geometry.linearize import AffineFamily, float64_arrays, float64_layers, net_sites, push, push_sites
from partax.nets import Net, flat_inputs
from partax.records import record_repr

__all__ = [
    "LayerMap",
    "OutputMap",
    "LocalMaps",
    "local_maps",
    "halfspaces",
    "halfspaces_batch",
    "scope_space",
    "check_general_scope",
    "SCOPES",
]


class LayerMap(NamedTuple):
    """Pre-activations of one hidden layer as an affine map: ``z = A @ x + beta``.

    Attributes:
      A: ``float64[N, n_l, d]``.
      beta: ``float64[N, n_l]``.
    """

    A: np.ndarray
    beta: np.ndarray

    def __repr__(self) -> str:
        return record_repr("LayerMap", A=self.A, beta=self.beta)


class OutputMap(NamedTuple):
    """The net's outputs as an affine map: ``net(x) = A @ x + c``.

    Attributes:
      A: ``float64[N, d_out, d]``.
      c: ``float64[N, d_out]``.
    """

    A: np.ndarray
    c: np.ndarray

    def __repr__(self) -> str:
        return record_repr("OutputMap", A=self.A, c=self.c)


class LocalMaps(NamedTuple):
    """Local affine maps of the regions of ``N`` inputs.

    Attributes:
      pre: tuple of :class:`LayerMap`, one per hidden layer (per code site of a general net:
        the map of the site's input, flattened; ``n_l`` is then the site's input size, which
        is not its number of bits for hard-tanh and max-pool sites).
      out: :class:`OutputMap`.
      masks: tuple of ``bool[N, n_l]``, the frozen activation codes (code group bits).
      sites: None for an MLP; for a general net ``(layer, input_shape)`` per code site
        (:func:`partax.geometry.linearize.net_sites`), which the rows of a code need.
    """

    pre: tuple
    out: OutputMap
    masks: tuple
    sites: tuple = None

    def __repr__(self) -> str:
        return record_repr("LocalMaps", inputs=int(self.out.A.shape[0]), dim=int(self.out.A.shape[2]),
                           widths=tuple(int(m.shape[-1]) for m in self.masks), outputs=int(self.out.A.shape[1]))


# --- the frozen forward pass ------------------------------------------------------------------
_SUBNETS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def subnet(net: Net, first: int) -> Net:
    """The net made of layers ``first..L+1`` (1-based), taking ``h^{first-1}`` as input.

    One object per ``(net, first)`` while ``net`` lives; it shares the net's float64
    parameters (:func:`partax.geometry.linearize.float64_arrays`).

    Args:
      net: an unstacked :class:`partax.Net`.
      first: the 1-based hidden layer where the sub-net starts.

    Returns:
      A :class:`partax.Net` (``net`` itself for ``first == 1``).
    """
    if first == 1:
        return net
    subs = _SUBNETS.setdefault(net, {})
    if first not in subs:
        sub = Net(tuple(net.weights[first - 1 :]), tuple(net.biases[first - 1 :]), net.activation, net.alpha)
        float64_arrays(sub, parent=net, first=first)  # the sub-net shares the net's float64 copy
        subs[first] = sub
    return subs[first]


@jax.jit
def _maps_kernel(params, masks):
    """``(A, beta)`` per hidden layer, then the output's: the identity family pushed through."""
    d = params.layers[0].W.shape[0]
    N = masks[0].shape[0]
    fams = push(params, AffineFamily(jnp.zeros(d), jnp.eye(d)), masks, output=True, xp=jnp)
    return tuple((jnp.broadcast_to(f.rows, (N,) + f.rows.shape[-2:]), jnp.broadcast_to(f.offset, (N, f.offset.shape[-1])))
                 for f in fams)


@functools.partial(jax.jit, static_argnames="input_shape")
def _site_maps_kernel(layers, masks, input_shape):
    """A general net's ``(A, beta)`` per code site (its input), then the output's."""
    d = int(np.prod(input_shape))
    pres, out = push_sites(layers, input_shape, AffineFamily(jnp.zeros(d), jnp.eye(d)), masks)
    return tuple((f.rows, f.offset) for f in pres + (out,))


def activation_masks(net: Net, x) -> tuple:
    """Activation codes of every hidden layer: :func:`partax.codes` itself (net dtype).

    Args:
      net: an unstacked :class:`partax.Net`.
      x: inputs ``[N, d]`` in the net's dtype.

    Returns:
      A tuple of ``bool[N, n_l]``.
    """
    if np.shape(x)[0] == 0:
        return tuple(np.zeros((0, w), bool) for w in net.widths)
    c = net_codes(net, x)
    return tuple(c.bits(l) for l in range(1, net.num_hidden + 1))


def frozen_maps(net: Net, x, masks) -> LocalMaps:
    """The local maps of the regions with codes ``masks`` (one per hidden layer of ``net``).

    Args:
      net: an unstacked :class:`partax.Net`.
      x: ``[N, d]`` (only its length matters: the maps are those of the codes).
      masks: ``bool[N, n_l]`` per hidden layer.

    Returns:
      :class:`LocalMaps`.
    """
    N = np.shape(x)[0]
    if N == 0 and net.is_mlp:
        d = net.input_dim
        pre = tuple(LayerMap(np.zeros((0, w, d)), np.zeros((0, w))) for w in net.widths)
        return LocalMaps(pre, OutputMap(np.zeros((0, net.output_dim, d)), np.zeros((0, net.output_dim))),
                         tuple(masks))
    if not net.is_mlp:
        sites = net_sites(net)
        if N == 0:
            d = net.input_dim
            pre = tuple(LayerMap(np.zeros((0, int(np.prod(s)), d)), np.zeros((0, int(np.prod(s))))) for _, s in sites)
            return LocalMaps(pre, OutputMap(np.zeros((0, net.output_dim, d)), np.zeros((0, net.output_dim))),
                             tuple(masks), sites)
        with jax.enable_x64(True):
            out = _site_maps_kernel(jax.tree.map(jnp.asarray, float64_layers(net)),
                                    tuple(jnp.asarray(m) for m in masks), tuple(net.input_shape))
            out = [(np.asarray(A), np.asarray(b)) for A, b in out]
        pre = tuple(LayerMap(A, b) for A, b in out[:-1])
        return LocalMaps(pre, OutputMap(*out[-1]), tuple(masks), sites)
    params = float64_arrays(net)
    with jax.enable_x64(True):
        out = _maps_kernel(jax.tree.map(jnp.asarray, params), tuple(jnp.asarray(m) for m in masks))
        out = [(np.asarray(A), np.asarray(b)) for A, b in out]
    pre = tuple(LayerMap(A, b) for A, b in out[:-1])
    return LocalMaps(pre, OutputMap(*out[-1]), tuple(masks))


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
    check_net(net, stacked=False, caller="geometry")
    x = check_finite_inputs(flat_inputs(net, np.asarray(x)), net.input_dim)
    x = np.asarray(x, net.dtype)
    return frozen_maps(net, x, activation_masks(net, x))


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


def check_general_scope(net: Net, scope: str) -> None:
    """Raises the reason a general net (not an MLP) has no ``"layer"`` / ``"suffix"`` geometry."""
    if not net.is_mlp and scope != "prefix":
        raise ValueError(f"scope: the geometry of general nets (not MLPs) takes scope='prefix' (regions in the input "
                         f"space), got {scope!r}: the input space of a later code group is not one tensor in "
                         f"general (a residual block carries its input past it)")


def scope_space(net: Net, x, scope: str = "prefix", layer=None) -> ScopeSpace:
    """Maps exemplars ``x[N, d_in]`` into the space of a scope's regions (see module doc)."""
    check_net(net, stacked=False, caller="geometry")
    if scope not in SCOPES:
        raise ValueError(f"scope: expected one of {SCOPES}, got {scope!r}")
    layer = check_layer(layer, net.num_hidden, none_is_last=True)
    x = np.asarray(check_finite_inputs(flat_inputs(net, np.asarray(x)), net.input_dim), net.dtype)
    if scope == "prefix":
        return ScopeSpace(net, x, layer, 1, net.input_dim)
    check_general_scope(net, scope)
    first = layer
    if first > 1:
        pts = np.asarray(_latent(net, jnp.asarray(x), first))
        sub = subnet(net, first)
    else:
        pts, sub = x, net
    depth = 1 if scope == "layer" else net.num_hidden - first + 1
    return ScopeSpace(sub, pts, depth, first, sub.input_dim)


def keys_of_bits(space: ScopeSpace, bits) -> np.ndarray:
    """Keys of codes of a scope's layers (``bits``: one ``bool[P, n]`` per layer of the space).

    Salted with the scope's *absolute* layer range, so they equal the full net's keys
    (``partax.region_ids(net, x, scope)[:, layer-1]``).

    Args:
      space: a :class:`ScopeSpace`.
      bits: the codes of its ``depth`` layers.

    Returns:
      ``uint64[P]``.
    """
    first = space.first
    return keys_from_bits(bits, first, first + space.depth - 1, start=first)


def space_keys(space: ScopeSpace, pts) -> np.ndarray:
    """Keys (as ``partax.region_ids(net, x, scope)[:, layer-1]``) of points ``[P, k]`` of a scope's space.

    The codes are those of the space's sub-network in the net's dtype (:func:`partax.codes`).

    Args:
      space: a :class:`ScopeSpace`.
      pts: points ``[P, k]`` of its space.

    Returns:
      ``uint64[P]``.
    """
    pts = np.asarray(pts, space.net.dtype)
    if pts.shape[0] == 0:
        return np.zeros(0, np.uint64)
    return keys_of_bits(space, activation_masks(space.net, pts)[: space.depth])


def region_rows(maps: LocalMaps, depth: int, domain, k: int):
    """Sign-oriented rows (:func:`partax.geometry.hrep.code_rows`) of the first ``depth``
    hidden layers of ``maps``, then the rows of the domain (a :class:`Box` or None).

    Args:
      maps: :class:`LocalMaps`.
      depth: the number of layers that bound the region.
      domain: a :class:`~partax.geometry.Box` or None.
      k: the dimension of the space.

    Returns:
      ``(A[N, m, k], b[N, m])``.
    """
    if maps.sites is not None:
        A, b = site_rows(maps.pre[:depth], maps.masks[:depth], maps.sites[:depth])
    else:
        A, b = code_rows(maps.pre[:depth], maps.masks[:depth])
    if domain is not None:
        A, b = append_rows(A, b, *domain.rows(k))
    return A, b


def scope_rows(net: Net, x, scope: str, layer, domain):
    """Rows of the regions of a batch of exemplars, with their space and local maps.

    Args:
      net, x, scope, layer, domain: see :func:`halfspaces_batch`.

    Returns:
      ``(A[N, m, k], b[N, m], space: ScopeSpace, maps: LocalMaps)``.
    """
    space = scope_space(net, x, scope, layer)
    domain = check_domain(domain, space.dim)
    sub = space.net
    maps = frozen_maps(sub, space.points, activation_masks(sub, space.points))
    A, b = region_rows(maps, space.depth, domain, space.dim)
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
    A, b, _, _ = scope_rows(net, x, scope, layer, domain)
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
    check_net(net, stacked=False, caller="geometry")
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x: expected one input of shape ({net.input_dim},), got {x.shape}; "
                         "use halfspaces_batch for a batch")
    A, b = halfspaces_batch(net, x[None], scope=scope, layer=layer, domain=domain)
    return A[0], b[0]
