"""Linear terms per region (TropEx), the tropical classifier, and tangent sensitivity.

Inside one linear region a ReLU net is affine: logit ``k`` is ``coef[k] · x + bias[k]``.
Everything here is computed **once per occupied region** from the region's activation code
(the full code, layers ``1..L``, exactly as :func:`partax.codes` computes it in the net's
dtype) by the frozen-code linearisation of :mod:`partax.geometry.linearize`, in float64 under
a local x64 context; inputs are grouped by their exact partax region key
(:func:`partax.region_ids` at the last ``prefix`` layer, with the collision check), so the
number of distinct regions, not the number of inputs, bounds the work.

**The tropical split.** Following Zhang, Naitzat & Lim (ICML 2018), every hidden layer's
output is written as a difference ``h = F - G`` of two convex piecewise-linear functions whose
linear terms have *non-negative coefficients* in ``x``: ``F_0 = x``, ``G_0 = 0``, and with
``W = W⁺ - W⁻`` (``W⁺ = max(W, 0)``), ``A = F W⁺ + G W⁻ + b``, ``B = G W⁺ + F W⁻`` (so the
pre-activation is ``z = A - B``), a ReLU / leaky-ReLU layer of slope ``alpha ∈ [0, 1)`` gives
``F' = max(A + alpha B, alpha A + B)`` and ``G' = (1 + alpha) B``. At the output layer logit
``k`` is ``P_k - Q_k``. As TropEx (Trimmel, Petzka & Sminchisescu, ICLR 2021) needs for its
classifier, the denominators are made *common to all logits*: ``den = Σ_j Q_j`` and
``num_k = P_k + Σ_{j≠k} Q_j``, so ``logit_k = num_k - den`` for every ``k``, both are convex
with non-negative coefficients, and ``argmax_k logit_k = argmax_k num_k``. On a region the
maxima are resolved by the code (``A > B`` iff the unit is active), so the split's linear terms
(``num_coef``, ``num_bias``, ``den_coef``, ``den_bias``) are read off the same frozen push.
Because ``num_k`` is convex, its linear term on any region is a global minorant of ``num_k``.

**General nets** (:func:`partax.nets.sequential`: convolutions, pooling, batch norm, residual
blocks, leaky-ReLU, hard-tanh and max-pool sites; inputs ``[N, d_in]`` flat or ``[N,
*input_shape]``). The logits' maps are :func:`partax.geometry.linearize.push_sites` of the
identity (every site's code frozen). The split carries ``(F, G)`` through the layers, tensors of
the layers' shapes, every entry a convex function with non-negative coefficients in ``x``
(``F_0 = x``, ``G_0 = 0``); with ``z = A - B`` a layer's input split, per layer kind:

* Dense / Conv ``z -> L z + c``: ``(L⁺A + L⁻B + c, L⁺B + L⁻A)`` (``L⁺``, ``L⁻`` the layer with
  the positive / negative parts of its weights), computed as ``(|L|(A + B) ± L(A - B)) / 2``
  (two products, not four; coefficient entries that rounding puts below 0 are clamped at 0,
  a change within the sums' rounding error);
* BatchNorm (a signed per-channel gain ``g`` and shift ``s``): ``(g⁺A + g⁻B + s, g⁺B + g⁻A)``;
* AvgPool, Flatten, a one-slot MaxPool (non-negative linear maps): ``(L A, L B)``;
* ReLU / LeakyReLU (``alpha ∈ [0, 1)``): ``max(z, alpha z) = max(A + alpha B, alpha A + B) -
  (1 + alpha) B``;
* HardTanh: ``clip(z, lo, hi) = max(A, B + lo) - max(A - hi, B)``;
* MaxPool over a window's slots ``z_i = A_i - B_i`` (padded slots excluded):
  ``max_i z_i = max_i (A_i + Σ_{j≠i} B_j) - Σ_j B_j``;
* Residual ``s(h) + body(h)``: the two branches' pairs added.

Each ``max`` is resolved on a region by its code (the unit's side, the hard-tanh state, the
window's argmax slot), so the split's linear terms are read off one frozen push (a homogeneous
family: ``d`` coefficient rows and a constant row per region), and the output's pairs get the
shared denominator as above. A leaky slope outside ``[0, 1)`` has no such split
(``split=True`` is refused with the reason; ``split=False`` works). Tangent sensitivity is for
MLPs only (its exact per-weight factorisation needs dense weight matrices): general nets are
refused with a ``TypeError``.

**The tropical classifier** (TropEx): for each training input, the linear term of the
numerator of *its class* (by default the class the net predicts for it) on its region;
``label(x) = argmax_k max_{t ∈ T_k} t(x)``. Terms are deduplicated by ``(region key, class)``.
At a training input the classifier agrees with the net (its own term attains ``num_c(x)`` and
every other term is a minorant of its class's numerator).

**Tangent sensitivity** (Daróczy): ``∂/∂x ∇_θ f``. On a region with code frozen the Jacobian is
``J = ∂f/∂x = P_l W_l S_l`` for every weight matrix ``l`` (``P_l = ∂h^{l-1}/∂x``,
``S_l = D_l ∂f/∂h^l``, ``D_l`` the frozen slopes), independent of every bias, so
``‖∂J/∂W_l‖_F = ‖P_l‖_F ‖S_l‖_F`` exactly, the bias blocks are 0, and the norm over all
parameters is ``sqrt(Σ_l ‖P_l‖_F² ‖S_l‖_F²)``: constant on the region, computed once per
region from its code, aggregated with the region's count (:func:`tangent_sensitivity`) or its
mass in a region table (:func:`tangent_sensitivity_table`).

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.tropical import linear_terms, TropicalClassifier
    >>> net = partax.mlp(jax.random.key(0), [4, 16, 16, 3], bias_std=0.1)
    >>> x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    >>> t = linear_terms(net, x)
    >>> t.coef.shape, t.den_coef.shape, t.num_regions <= 50
    ((50, 3, 4), (50, 4), True)
    >>> y = np.einsum("nkd,nd->nk", t.coef, x.astype(np.float64)) + t.bias
    >>> bool(np.allclose(y, net(x), atol=1e-5))
    True
    >>> bool(np.allclose(t.num_bias - t.den_bias[:, None] + np.einsum("nkd,nd->nk", t.num_coef - t.den_coef[:, None], x), y))
    True
    >>> clf = TropicalClassifier.fit(net, x, allow_missing_classes=True)
    >>> clf.agreement(net, x)
    1.0

    A general net (here a 1-D convolution, a max pool and a hard tanh), inputs ``[N, 6, 1]``:

    >>> from partax.layers import Conv, Dense, Flatten, HardTanh, MaxPool
    >>> r = np.random.default_rng(1)
    >>> cnn = partax.nets.sequential([Conv(r.normal(size=(3, 1, 2)).astype(np.float32), np.zeros(2, np.float32)),
    ...                               MaxPool((2,)), HardTanh(-1.0, 1.0), Flatten(),
    ...                               Dense(r.normal(size=(4, 3)).astype(np.float32), np.zeros(3, np.float32))], (6, 1))
    >>> xc = r.normal(size=(20, 6, 1)).astype(np.float32)
    >>> tc = linear_terms(cnn, xc)
    >>> bool((tc.region_num_coef >= 0).all() and (tc.region_den_coef >= 0).all())
    True
    >>> f = np.einsum("nkd,nd->nk", tc.num_coef - tc.den_coef[:, None], xc.reshape(20, 6)) + tc.num_bias - tc.den_bias[:, None]
    >>> bool(np.allclose(f, np.asarray(cnn(xc)), atol=1e-5))
    True
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.coding import HashCollisionError, codes, region_ids
from partax.geometry.linearize import (AffineFamily, apply_layer, float64_arrays, float64_layers, freeze, net_sites,
                                       push, push_sites)
from partax.layers import (AvgPool, BatchNorm, Conv, Dense, Flatten, HardTanh, LeakyReLU, MaxPool, Residual,
                           index_bits, traverse, window_indices)
from partax.nets import Net, as_structured, flat_inputs
from partax.validation import check_inputs, check_labels, check_net
from partax.records import record_repr

__all__ = [
    "LinearTerms",
    "linear_terms",
    "TropicalClassifier",
    "RegionStatistics",
    "region_statistics",
    "shared_code_fractions",
    "TangentSensitivity",
    "TangentSummary",
    "tangent_sensitivity",
    "tangent_sensitivity_table",
    "tangent_probe",
]

_CHUNK_BYTES = 1 << 28  # float64 family memory per chunk of regions (about 256 MiB)


# --- inputs and regions -----------------------------------------------------------------------
def _check_net(net, caller: str) -> Net:
    net = check_net(net, stacked=False, caller=caller)
    if net.is_mlp and net.activation not in ("relu", "leaky_relu"):
        raise ValueError(f"net: {caller} supports relu and leaky_relu units, got {net.activation!r}")
    return net


def _mlp_only(net: Net, caller: str) -> Net:
    """Refuses a general net where only the MLP path exists (tangent sensitivity)."""
    net = _check_net(net, caller)
    if not net.is_mlp:
        kinds = ", ".join(sorted({type(layer).__name__ for layer in _all_layers(net.layers)}))
        raise TypeError(f"net: {caller} is defined for MLPs only (its exact per-region formula "
                        f"||dJ/dW_l||_F = ||P_l||_F ||S_l||_F needs dense weight matrices; convolution kernels share "
                        f"weights across positions and are not covered); this net has layers {kinds}")
    return net


def _all_layers(layers):
    """Every layer, residual bodies and shortcuts included (depth first)."""
    for layer in layers:
        yield layer
        if isinstance(layer, Residual):
            yield from _all_layers(layer.body)
            if layer.shortcut is not None:
                yield layer.shortcut


def _split_refusal(net: Net) -> str | None:
    """Why the tropical split does not apply to ``net`` (None: it does)."""
    if net.is_mlp:
        alpha = float(net.alpha) if net.activation == "leaky_relu" else 0.0
        if not 0.0 <= alpha < 1.0:
            return f"the tropical split needs a leaky slope alpha in [0, 1), got {alpha}"
        return None
    bad = [layer for layer in _all_layers(net.layers) if isinstance(layer, LeakyReLU) and not 0.0 <= layer.alpha < 1.0]
    if bad:
        return (f"the tropical split needs leaky slopes alpha in [0, 1) (a non-negative combination of the "
                f"pre-activation's two parts), got {bad[0]!r}")
    return None


def _check_x(x, net: Net, name: str = "x") -> np.ndarray:
    x = np.asarray(check_inputs(flat_inputs(net, x, name), net.input_dim, name))
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite inputs (found NaN or inf)")
    return x


class _Regions(NamedTuple):
    keys: np.ndarray  # uint64[M], sorted unique full-code keys
    index: np.ndarray  # int64[N], region of each input
    exemplars: np.ndarray  # int64[M], first input of each region
    counts: np.ndarray  # int64[M]
    masks: tuple  # bool[M, n_l] per hidden layer: the regions' codes


def _regions(net: Net, x: np.ndarray) -> _Regions:
    """Groups inputs by their exact full-code key (collision-checked) and reads their codes."""
    L = net.num_hidden
    if x.shape[0] == 0:
        z = np.zeros(0, np.int64)
        return _Regions(np.zeros(0, np.uint64), z, z, z, tuple(np.zeros((0, w), bool) for w in net.widths))
    keys = region_ids(net, x, "prefix", exact=True)[:, L - 1]
    uk, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    c = codes(net, x[first])
    masks = tuple(c.bits(l) for l in range(1, L + 1))
    return _Regions(uk, inverse.reshape(-1).astype(np.int64), first.astype(np.int64), counts.astype(np.int64), masks)


def _chunk_size(params, batch_size, per_region_floats: int) -> int:
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int or None, got {batch_size!r}")
        return int(batch_size)
    return int(max(1, min(4096, _CHUNK_BYTES // (8 * max(1, per_region_floats)))))


def _chunks(masks, size: int):
    """Yields ``(start, stop, padded masks)``: power-of-two chunk lengths, few compilations."""
    M = masks[0].shape[0]
    for start in range(0, M, size):
        stop = min(M, start + size)
        n = stop - start
        pad = min(size, 1 << max(0, (n - 1).bit_length()))
        yield start, stop, tuple(np.pad(m[start:stop], ((0, pad - n), (0, 0))) for m in masks)


def _jax_params(params):
    return jax.tree.map(jnp.asarray, params)


# --- the frozen push of the split -------------------------------------------------------------
def _fam_add(a: AffineFamily, b: AffineFamily, sa=1.0, sb=1.0) -> AffineFamily:
    return AffineFamily(sa * a.offset + sb * b.offset, sa * a.directions + sb * b.directions)


def _abs_apply(fam: AffineFamily, layer, xp) -> AffineFamily:
    """``|W|`` applied to a family, through the layer's ``magnitude`` (``|v| @ |W|``).

    The directions of the split's families are non-negative, so ``magnitude`` applies to them
    as it is; offsets of any sign go through as ``|W| u = |W| u⁺ - |W| u⁻``.
    """
    off = layer.magnitude(xp.maximum(fam.offset, 0.0), xp) - layer.magnitude(xp.maximum(-fam.offset, 0.0), xp)
    return AffineFamily(off, layer.magnitude(fam.directions, xp))


def _split_step(F: AffineFamily, G: AffineFamily, layer, xp):
    """``(A, B)``: ``A = F W⁺ + G W⁻ + b`` and ``B = G W⁺ + F W⁻``, via ``W⁺ = (|W| + W) / 2``."""
    m = _abs_apply(_fam_add(F, G), layer, xp)  # |W| (F + G)
    z = apply_layer(_fam_add(F, G, 1.0, -1.0), layer, xp)  # W (F - G) + b
    b = layer.affine(xp.zeros(F.offset.shape[-1:]), xp)  # the layer's bias (its value at 0)
    A = AffineFamily(0.5 * (m.offset + z.offset + b), 0.5 * (m.directions + z.directions))
    B = AffineFamily(0.5 * (m.offset - z.offset + b), 0.5 * (m.directions - z.directions))
    return A, B


def _where_family(mask, a: AffineFamily, b: AffineFamily, xp) -> AffineFamily:
    return AffineFamily(xp.where(mask, a.offset, b.offset), xp.where(mask[..., None, :], a.directions, b.directions))


@functools.partial(jax.jit, static_argnames=("split",))
def _terms_kernel(params, masks, split: bool):
    """Per region: the logits' affine map and, with ``split``, the tropical split's terms."""
    d = params.layers[0].W.shape[0]
    M = masks[0].shape[0]
    ident = AffineFamily(jnp.zeros(d), jnp.eye(d))
    out = push(params, ident, masks, output=True, xp=jnp)[-1]
    k = out.offset.shape[-1]
    res = {"coef": jnp.broadcast_to(out.rows, (M, k, d)), "bias": jnp.broadcast_to(out.offset, (M, k))}
    if split:
        alpha = params.alpha
        F, G = ident, AffineFamily(jnp.zeros(d), jnp.zeros((d, d)))
        for layer, mask in zip(params.layers[:-1], masks):
            A, B = _split_step(F, G, layer, jnp)
            F = _where_family(mask, _fam_add(A, B, 1.0, alpha), _fam_add(A, B, alpha, 1.0), jnp)
            G = AffineFamily((1.0 + alpha) * B.offset, (1.0 + alpha) * B.directions)
        P, Q = _split_step(F, G, params.layers[-1], jnp)
        den_off, den_dir = Q.offset.sum(-1), Q.directions.sum(-1)  # [M], [M, d]
        num_off = P.offset + den_off[..., None] - Q.offset
        num_dir = P.directions + den_dir[..., None] - Q.directions  # [M, d, k]
        res.update(num_coef=jnp.broadcast_to(num_dir.swapaxes(-1, -2), (M, k, d)),
                   num_bias=jnp.broadcast_to(num_off, (M, k)),
                   den_coef=jnp.broadcast_to(den_dir, (M, d)), den_bias=jnp.broadcast_to(den_off, (M,)))
    return res


# --- the split on general nets ------------------------------------------------------------------
# A state is the pair (F, G) of homogeneous families: arrays [M * (d + 1), *shape] holding, for
# each of M regions, the d coefficient rows (row i: the coefficient of x_i) and then the constant
# row (before the first code site, one shared copy: [d + 1, *shape]). Linear maps act on all rows;
# a constant goes into the constant rows only (``const``).
def _split_affine(layer, state, const):
    """An affine layer on ``(F, G)``: ``(L⁺F + L⁻G + c, L⁺G + L⁻F)`` (``c`` its constant)."""
    F, G = state
    if isinstance(layer, (Dense, Conv)):
        # L⁺F + L⁻G = (|L|(F + G) + L(F - G)) / 2 and L⁺G + L⁻F = (|L|(F + G) - L(F - G)) / 2: two
        # products, not four; the coefficient rows are >= 0 exactly in real arithmetic and are
        # clamped at 0 where rounding dips below (a change within the rounding error of the sums)
        c = layer.apply(jnp.zeros((1, *F.shape[1:]), F.dtype))  # the layer's value at 0: its bias
        m = jax.tree.map(jnp.abs, layer).linear(F + G)
        z = layer.linear(F - G)
        is_const = const(m.ndim) > 0
        A = jnp.where(is_const, 0.5 * (m + z) + c, jnp.maximum(0.5 * (m + z), 0.0))
        B = jnp.where(is_const, 0.5 * (m - z), jnp.maximum(0.5 * (m - z), 0.0))
        return A, B
    if isinstance(layer, BatchNorm):  # a signed per-channel scale and a shift
        g = layer.gain()
        gp, gn = jnp.maximum(g, 0.0), jnp.maximum(-g, 0.0)
        A = F * gp + G * gn
        return A + const(A.ndim) * layer.shift(), G * gp + F * gn
    if isinstance(layer, (AvgPool, Flatten, MaxPool)):  # non-negative linear maps (a one-slot max pool selects)
        return layer.linear(F), layer.linear(G)
    raise TypeError(f"net: the tropical split has no rule for layer {layer!r}")  # unreachable for LAYER_TYPES


def _split_site(layer, state, bits, const):
    """A code site with its code ``bits`` (one row per family row) frozen, on ``(F, G)``."""
    A, B = state  # the site's input z = A - B
    n = A.shape[0]
    if isinstance(layer, LeakyReLU):  # max(z, a z) = max(A + a B, a A + B) - (1 + a) B
        a = layer.alpha
        on = bits.reshape(A.shape)
        return jnp.where(on, A + a * B, a * A + B), (1.0 + a) * B
    if isinstance(layer, HardTanh):  # clip(z, lo, hi) = max(A, B + lo) - max(A - hi, B)
        b = bits.reshape(n, -1, 2)
        above_lo, above_hi = b[..., 0].reshape(A.shape), b[..., 1].reshape(A.shape)
        c = const(A.ndim)
        return jnp.where(above_lo, A, B + layer.lo * c), jnp.where(above_hi, A - layer.hi * c, B)
    if isinstance(layer, MaxPool):  # max_i (A_i - B_i) = max_i (A_i + sum_{j != i} B_j) - sum_j B_j
        in_shape = tuple(A.shape[1:])
        idx = window_indices(in_shape, layer.window, layer.strides, layer.padding)  # [windows, k], -1 padded
        valid = idx >= 0
        safe = np.where(valid, idx, 0)
        Aw = jnp.where(valid, A.reshape(n, -1)[:, safe], 0.0)
        Bw = jnp.where(valid, B.reshape(n, -1)[:, safe], 0.0)
        chosen = jnp.arange(idx.shape[1]) == layer.slots(bits)[..., None]  # [n, windows, k]
        F = jnp.where(chosen, Aw, 0.0).sum(-1) + jnp.where(chosen, 0.0, Bw).sum(-1)
        out = (n, *layer.output_shape(in_shape))
        return F.reshape(out), Bw.sum(-1).reshape(out)
    raise TypeError(f"net: the tropical split has no rule for code site {layer!r}")  # unreachable


@functools.partial(jax.jit, static_argnames=("input_shape", "split"))
def _layered_terms_kernel(layers, masks, input_shape, split: bool):
    """A general net's per-region logit maps (:func:`push_sites`) and, with ``split``, the split."""
    d = int(np.prod(input_shape))
    M = masks[0].shape[0]
    _, out = push_sites(layers, input_shape, AffineFamily(jnp.zeros(d), jnp.eye(d)), masks)
    res = {"coef": out.rows, "bias": out.offset}
    if split:
        rows = M * (d + 1)

        def const(ndim, n=rows):
            return ((jnp.arange(n) % (d + 1)) == d).reshape((n,) + (1,) * (ndim - 1)).astype(jnp.float64)

        def batched(a):  # a state shared by all regions (before the first site) -> one copy per region
            return a if a.shape[0] == rows else jnp.broadcast_to(a[None], (M, *a.shape)).reshape(rows, *a.shape[1:])

        def site(layer, st):
            return _split_site(layer, tuple(batched(a) for a in st), next(codes_), const)

        def add(a, b):
            if a[0].shape[0] != b[0].shape[0]:
                a, b = tuple(batched(v) for v in a), tuple(batched(v) for v in b)
            return a[0] + b[0], a[1] + b[1]

        start = jnp.concatenate([jnp.eye(d), jnp.zeros((1, d))]).reshape(d + 1, *input_shape)  # F_0 = x, G_0 = 0
        codes_ = iter([jnp.repeat(m, d + 1, axis=0) for m in masks])
        P, Q = traverse(layers, (start, jnp.zeros_like(start)),
                        affine=lambda layer, st: _split_affine(layer, st, lambda ndim: const(ndim, st[0].shape[0])),
                        site=site, add=add)
        P, Q = batched(P), batched(Q)
        P, Q = P.reshape(M, d + 1, -1), Q.reshape(M, d + 1, -1)
        den = Q.sum(-1)  # [M, d + 1]
        num = P + (den[..., None] - Q)  # [M, d + 1, k]; den - Q_k >= 0 (den sums Q_k and more)
        res.update(num_coef=num[:, :d].swapaxes(-1, -2), num_bias=num[:, d], den_coef=den[:, :d], den_bias=den[:, d])
    return res


def _widest(net: Net) -> int:
    """The largest per-example tensor anywhere in the net (residual bodies included)."""
    sizes = [int(np.prod(net.input_shape))]

    def step(layer, shape):
        out = tuple(layer.output_shape(shape))
        sizes.append(max(int(np.prod(out)), int(np.prod(shape))))
        return out

    traverse(net.layers, tuple(net.input_shape), affine=step, site=step, add=lambda a, b: a)
    return max(sizes)


def _zero_terms(M: int, k: int, d: int, split: bool) -> dict:
    """The per-region term arrays, zero: coefficients ``[M, k, d]``, biases ``[M, k]`` (and the split's)."""
    out = {"coef": np.zeros((M, k, d)), "bias": np.zeros((M, k))}
    if split:
        out.update(num_coef=np.zeros((M, k, d)), num_bias=np.zeros((M, k)), den_coef=np.zeros((M, d)),
                   den_bias=np.zeros(M))
    return out


def _layered_terms_of_masks(net: Net, masks, *, split: bool, batch_size=None) -> dict:
    d, k = net.input_dim, net.output_dim
    M = masks[0].shape[0]
    out = _zero_terms(M, k, d, split)
    if M == 0:
        return out
    size = _chunk_size(None, batch_size, (12 if split else 3) * (d + 1) * _widest(net))
    with jax.enable_x64(True):
        layers = jax.tree.map(jnp.asarray, float64_layers(net))
        for start, stop, chunk in _chunks(masks, size):
            res = _layered_terms_kernel(layers, tuple(jnp.asarray(m) for m in chunk), tuple(net.input_shape), split)
            for name, a in res.items():
                out[name][start:stop] = np.asarray(a)[: stop - start]
    return out


# --- linear terms ---------------------------------------------------------------------------------
_PER_INPUT = ("coef", "bias", "num_coef", "num_bias", "den_coef", "den_bias")


@dataclasses.dataclass(frozen=True, eq=False)
class LinearTerms:
    """The affine map of every logit on the regions of a batch of inputs (float64).

    The arrays are stored once per region (``region_*``, ``M`` regions); the per-input views
    ``coef``, ``bias``, ``num_coef``, ``num_bias``, ``den_coef``, ``den_bias`` index them with
    ``index`` (materialised on access: ``N * d_out * d`` floats).

    Attributes:
      region_coef: ``float64[M, d_out, d]``; logit ``k`` on region ``r`` is
        ``region_coef[r, k] · x + region_bias[r, k]``.
      region_bias: ``float64[M, d_out]``.
      region_num_coef, region_num_bias: the numerators ``[M, d_out, d]``, ``[M, d_out]``
        (non-negative coefficients; None without the split).
      region_den_coef, region_den_bias: the shared denominator ``[M, d]``, ``[M]``.
      keys: ``uint64[M]`` the regions' full-code keys (sorted; :func:`partax.region_ids` at
        the last ``prefix`` layer).
      index: ``int64[N]`` the region of each input.
      exemplars: ``int64[M]`` the first input of each region.
      counts: ``int64[M]`` inputs per region.
      masks: per hidden layer ``bool[M, n_l]``, the regions' codes.
    """

    region_coef: np.ndarray
    region_bias: np.ndarray
    region_num_coef: np.ndarray | None
    region_num_bias: np.ndarray | None
    region_den_coef: np.ndarray | None
    region_den_bias: np.ndarray | None
    keys: np.ndarray
    index: np.ndarray
    exemplars: np.ndarray
    counts: np.ndarray
    masks: tuple

    @property
    def num_regions(self) -> int:
        """``M``, the number of distinct regions."""
        return int(self.keys.shape[0])

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def _per_input(self, name: str) -> np.ndarray:
        a = getattr(self, "region_" + name)
        if a is None:
            raise ValueError(f"{name}: these terms were computed with split=False")
        return a[self.index]

    coef = property(lambda self: self._per_input("coef"), doc="``float64[N, d_out, d]`` per input.")
    bias = property(lambda self: self._per_input("bias"), doc="``float64[N, d_out]`` per input.")
    num_coef = property(lambda self: self._per_input("num_coef"), doc="``float64[N, d_out, d]`` numerators.")
    num_bias = property(lambda self: self._per_input("num_bias"), doc="``float64[N, d_out]``.")
    den_coef = property(lambda self: self._per_input("den_coef"), doc="``float64[N, d]`` shared denominator.")
    den_bias = property(lambda self: self._per_input("den_bias"), doc="``float64[N]``.")

    def __repr__(self) -> str:
        return f"LinearTerms(inputs={len(self)}, regions={self.num_regions}, split={self.region_num_coef is not None})"


def _terms_of_masks(net: Net, masks, *, split: bool, batch_size=None) -> dict:
    params = float64_arrays(net)
    d, k = net.input_dim, net.output_dim
    M = masks[0].shape[0]
    out = _zero_terms(M, k, d, split)
    if M == 0:
        return out
    widest = max(tuple(net.widths) + (k,))  # batched families are [chunk, d, n_l] (the identity is shared)
    size = _chunk_size(params, batch_size, (10 if split else 3) * d * widest)
    with jax.enable_x64(True):
        p = _jax_params(params)
        for start, stop, chunk in _chunks(masks, size):
            res = _terms_kernel(p, tuple(jnp.asarray(m) for m in chunk), split)
            for name, a in res.items():
                out[name][start:stop] = np.asarray(a)[: stop - start]
    return out


def linear_terms(net: Net, x, *, split: bool = True, batch_size: int | None = None) -> LinearTerms:
    """The affine map of every logit on each input's region, computed once per region.

    Args:
      net: an unstacked :class:`partax.Net`: an MLP (ReLU, or leaky ReLU with ``0 <= alpha < 1``
        for the split) or a general net of :func:`partax.nets.sequential` (any layers of
        :mod:`partax.layers`; leaky slopes in ``[0, 1)`` for the split).
      x: inputs ``[N, d_in]`` (a general net also takes ``[N, *input_shape]``).
      split: also the tropical split (numerators and the shared denominator; see the module
        docstring for each layer kind's rule).
      batch_size: regions per kernel call (default: by memory, about 256 MiB of float64).

    Returns:
      :class:`LinearTerms`. Each region is the one :func:`partax.codes` assigns in the net's
      dtype; the maps are float64 with that code frozen, so at an input away from every
      boundary ``coef`` equals ``jax.jacfwd`` of the float64 net there, and
      ``num - den`` equals the logit.

    Raises:
      TypeError, ValueError: a net that is not a :class:`partax.Net`, a stacked net, inputs of
        the wrong shape or with NaN/inf, a leaky slope outside ``[0, 1)`` with ``split``.
      HashCollisionError: two different codes share a key.
    """
    net = _check_net(net, "linear_terms()")
    x = _check_x(x, net)
    why = _split_refusal(net) if split else None
    if why:
        raise ValueError(f"net: {why}; pass split=False for the logits' maps alone")
    reg = _regions(net, x)
    terms_of_masks = _terms_of_masks if net.is_mlp else _layered_terms_of_masks
    t = terms_of_masks(net, reg.masks, split=split, batch_size=batch_size)
    return LinearTerms(t["coef"], t["bias"], t.get("num_coef"), t.get("num_bias"), t.get("den_coef"),
                       t.get("den_bias"), reg.keys, reg.index, reg.exemplars, reg.counts, reg.masks)


# --- the tropical classifier ----------------------------------------------------------------------
def _net_predictions(net: Net, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    if x.shape[0] == 0:
        return np.zeros(0, np.int64)
    if net.is_mlp:
        return np.concatenate([np.asarray(jnp.argmax(net(x[i : i + batch]), axis=-1)) for i in range(0, x.shape[0], batch)]).astype(np.int64)
    return np.concatenate([np.asarray(_layered_argmax(net, as_structured(net, x[i : i + batch])))
                           for i in range(0, x.shape[0], batch)]).astype(np.int64)


@jax.jit
def _layered_argmax(net: Net, x):
    """A general net's predicted class (its flattened outputs' argmax, lowest on ties)."""
    return jnp.argmax(net(x).reshape(x.shape[0], -1), axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class TropicalClassifier:
    """TropEx's tropical classifier: ``label(x) = argmax_k max_{t ∈ T_k} t(x)``.

    ``T_k`` holds the numerator linear terms of class ``k`` (see the module docstring) of the
    training inputs of class ``k``, one per ``(region key, class)`` pair. Build it with
    :meth:`fit`.

    Attributes:
      coef: ``float64[T, d]`` the terms' coefficients (non-negative).
      bias: ``float64[T]``.
      classes: ``int64[T]`` the class of each term (sorted).
      keys: ``uint64[T]`` the full-code key of each term's region.
      exemplars: ``int64[T]`` the first training input of each term.
      masks: per hidden layer ``bool[T, n_l]``, the code of each term's region.
      num_classes: the net's number of logits.
      missing_classes: classes without a term (never predicted); empty unless
        ``allow_missing_classes``.
      net: the net the terms were taken from.
    """

    coef: np.ndarray
    bias: np.ndarray
    classes: np.ndarray
    keys: np.ndarray
    exemplars: np.ndarray
    masks: tuple
    num_classes: int
    missing_classes: tuple
    net: Net

    @classmethod
    def fit(cls, net: Net, x_train, labels=None, *, allow_missing_classes: bool = False,
            batch_size: int | None = None) -> "TropicalClassifier":
        """The classifier of the training inputs' linear terms.

        Args:
          net: an unstacked :class:`partax.Net` (see :func:`linear_terms`).
          x_train: training inputs ``[N, d_in]`` (or ``[N, *input_shape]``), ``N >= 1``.
          labels: the class of each training input; None (default, as TropEx): the class the
            net predicts for it (``argmax`` of its logits, lowest index on ties).
          allow_missing_classes: a class with no training input has no term. False (default):
            that is a ``ValueError``; True: the class scores ``-inf`` and is never predicted
            (listed in ``missing_classes``).
          batch_size: regions per kernel call (see :func:`linear_terms`).

        Returns:
          :class:`TropicalClassifier`.
        """
        net = _check_net(net, "TropicalClassifier.fit()")
        x_train = _check_x(x_train, net, "x_train")
        if x_train.shape[0] == 0:
            raise ValueError("x_train: expected at least one training input, got an empty array")
        C = net.output_dim
        if labels is None:
            cls_of = _net_predictions(net, x_train)
            what = "the net predicts no training input as"
        else:
            cls_of = check_labels(labels, x_train.shape[0], C)
            what = "no training label is"
        missing = tuple(int(k) for k in np.setdiff1d(np.arange(C), cls_of))
        if missing and not allow_missing_classes:
            raise ValueError(
                f"x_train: {what} class {list(missing)} (of {C}), so the tropical classifier has no term for "
                "it; pass allow_missing_classes=True to fit anyway (those classes are never predicted)"
            )
        terms = linear_terms(net, x_train, batch_size=batch_size)
        pair = terms.index * C + cls_of
        upair, first = np.unique(pair, return_index=True)
        r, c = upair // C, upair % C  # sorted by region, then class
        order = np.lexsort((r, c))  # by class, then region key
        r, c, first = r[order], c[order], first[order]
        return cls(terms.region_num_coef[r, c], terms.region_num_bias[r, c], c.astype(np.int64), terms.keys[r],
                   first.astype(np.int64), tuple(m[r] for m in terms.masks), C, missing, net)

    @property
    def num_terms(self) -> int:
        return int(self.classes.shape[0])

    def _check(self, x, name: str = "x") -> np.ndarray:
        x = np.asarray(check_inputs(flat_inputs(self.net, x, name), self.coef.shape[1], name))
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: expected finite inputs (found NaN or inf)")
        return x.astype(np.float64)

    def decide(self, x, *, block: int | None = None) -> tuple:
        """Scores, predictions and the winning term of each input.

        Args:
          x: inputs ``[N, d_in]`` or ``[N, *input_shape]`` (evaluated in float64).
          block: inputs per block (default: about 2^24 scores per block).

        Returns:
          ``(scores float64[N, C], labels int64[N], term int64[N])``: ``scores[n, k] =
          max_{t ∈ T_k} t(x_n)`` (``-inf`` for a missing class), ``labels`` its argmax (lowest
          class on ties), ``term`` the index of the term that attains it (lowest on ties).
        """
        x = self._check(x)
        N, C, T = x.shape[0], self.num_classes, self.num_terms
        scores = np.full((N, C), -np.inf)
        best = np.zeros((N, C), np.int64)
        bounds = np.searchsorted(self.classes, np.arange(C + 1))
        block = block or max(1, (1 << 24) // max(1, T))
        for i in range(0, N, block):
            s = x[i : i + block] @ self.coef.T + self.bias  # [n, T]
            for k in range(C):
                lo, hi = bounds[k], bounds[k + 1]
                if hi > lo:
                    j = np.argmax(s[:, lo:hi], axis=1)
                    best[i : i + block, k] = lo + j
                    scores[i : i + block, k] = s[np.arange(s.shape[0]), lo + j]
        labels = np.argmax(scores, axis=1).astype(np.int64)
        return scores, labels, best[np.arange(N), labels]

    def predict(self, x) -> np.ndarray:
        """``int64[N]``: the tropical classifier's label of each input."""
        return self.decide(x)[1]

    def agreement(self, net: Net, x) -> float:
        """The fraction of inputs on which the classifier's label is the net's ``argmax``.

        Args:
          net: the net to compare with (usually the one the classifier was fitted on).
          x: inputs ``[N, d_in]`` or ``[N, *input_shape]``, ``N >= 1``.

        Returns:
          A float in ``[0, 1]``.
        """
        net = _check_net(net, "agreement()")
        x = _check_x(x, net)
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one input")
        return float(np.mean(self.predict(x) == _net_predictions(net, x)))

    def agreement_with_net(self, x) -> float:
        """:meth:`agreement` with the net the classifier was fitted on."""
        return self.agreement(self.net, x)

    def accuracy(self, x, y) -> float:
        """The fraction of inputs whose label ``y`` the classifier predicts.

        Args:
          x: inputs ``[N, d_in]`` or ``[N, *input_shape]``, ``N >= 1``.
          y: integer labels ``[N]`` in ``0..C-1``.

        Returns:
          A float in ``[0, 1]``.
        """
        x = self._check(x)
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one input")
        y = check_labels(y, x.shape[0], self.num_classes, "y")
        return float(np.mean(self.predict(x) == y))

    def __repr__(self) -> str:
        return f"TropicalClassifier(terms={self.num_terms}, classes={self.num_classes}, missing={list(self.missing_classes)})"


# --- region statistics (TropEx) -------------------------------------------------------------------
def _unpacked(net: Net, x: np.ndarray) -> list:
    c = codes(net, x)
    return [c.bits(l) for l in range(1, net.num_hidden + 1)]


def _bits_per_unit(net: Net) -> tuple:
    """Per code group, the bits of one unit: 1 per (leaky) ReLU, 2 per hard tanh, a max-pool window's slot bits."""
    out = []
    for layer, _ in net_sites(net):
        out.append(index_bits(layer.size) if isinstance(layer, MaxPool) else 2 if isinstance(layer, HardTanh) else 1)
    return tuple(out)


def shared_code_fractions(net: Net, x_train, x_test) -> np.ndarray:
    """Per prefix layer, the fraction of test inputs whose code equals some training input's.

    Column ``l - 1`` is the fraction of test inputs whose codes of layers ``1..l`` (code groups
    ``1..l`` of a general net: the ``prefix`` scope) equal those of some training input; the last column is the full code
    (the same linear region). Keys come from the partition engine's tables of the training
    inputs (:func:`partax.partition`, ``exact=True``) and :func:`partax.region_ids` of the
    test inputs; every key match is then confirmed by comparing the codes themselves.

    Args:
      net: an unstacked :class:`partax.Net`.
      x_train: ``[N, d_in]`` (or ``[N, *input_shape]``), ``N >= 1``.
      x_test: ``[K, d_in]`` (or ``[K, *input_shape]``), ``K >= 1``.

    Returns:
      ``float64[L]``.

    Raises:
      HashCollisionError: a key match whose codes differ.
    """
    from partax.engine import partition  # late: partax.engine imports much of the package

    net = _check_net(net, "shared_code_fractions()")
    x_train = _check_x(x_train, net, "x_train")
    x_test = _check_x(x_test, net, "x_test")
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise ValueError("x_train, x_test: expected at least one input each")
    L = net.num_hidden
    part = partition(net, x_train, scopes=("prefix",), exact=True, progress=False)
    test_keys = region_ids(net, x_test, "prefix")
    bits_test = _unpacked(net, x_test)
    out = np.zeros(L)
    for l in range(1, L + 1):
        table = part.table("prefix", l)
        k = test_keys[:, l - 1]
        pos = np.minimum(np.searchsorted(table.keys, k), len(table) - 1)
        hit = table.keys[pos] == k
        if hit.any():
            ex = table.exemplars[pos[hit]]
            bits_train = _unpacked(net, x_train[ex])
            same = np.ones(int(hit.sum()), bool)
            for j in range(l):
                same &= (bits_train[j] == bits_test[j][hit]).all(axis=1)
            if not same.all():
                raise HashCollisionError(f"prefix layer {l}: a test code and a training code share a key")
        out[l - 1] = hit.mean()
    return out


class RegionStatistics(NamedTuple):
    """The region statistics TropEx reports, computed exactly.

    Attributes:
      shared_prefix: ``float64[L]`` (:func:`shared_code_fractions`): test inputs whose code of
        layers ``1..l`` equals some training input's.
      shared_full: ``shared_prefix[-1]``: test inputs in the linear region of some training input.
      train_regions: distinct full-code regions of the training inputs.
      test_regions: distinct full-code regions of the test inputs.
      terms: the tropical classifier's number of terms.
      agreement_train, agreement_test: the classifier's agreement with the net.
      accuracy_train, accuracy_test: its accuracy (None without labels).
      net_accuracy_train, net_accuracy_test: the net's own accuracy (None without labels).
      unit_agreement: ``float64[L]``: per hidden layer (code group of a general net), the mean
        over test inputs of the fraction of units on which the test input's code equals the
        code of the term (training region) the classifier chose for it; a unit is a (leaky)
        ReLU unit (1 bit), a hard-tanh unit (its 2 bits) or a max-pool window (its argmax).
    """

    shared_prefix: np.ndarray
    shared_full: float
    train_regions: int
    test_regions: int
    terms: int
    agreement_train: float
    agreement_test: float
    accuracy_train: float | None
    accuracy_test: float | None
    net_accuracy_train: float | None
    net_accuracy_test: float | None
    unit_agreement: np.ndarray


def region_statistics(net: Net, x_train, x_test, y_train=None, y_test=None, *, classifier=None,
                      allow_missing_classes: bool = True) -> RegionStatistics:
    """TropEx's comparison of training and test inputs through their regions and terms.

    Args:
      net: an unstacked :class:`partax.Net`.
      x_train, x_test: ``[N, d_in]`` and ``[K, d_in]`` (or ``[N, *input_shape]``), both non-empty.
      y_train, y_test: labels, or None (then the accuracies are None).
      classifier: a fitted :class:`TropicalClassifier`, or None to fit one on ``x_train``
        with the net's predicted classes (TropEx's choice).
      allow_missing_classes: passed to :meth:`TropicalClassifier.fit`.

    Returns:
      :class:`RegionStatistics`.
    """
    net = _check_net(net, "region_statistics()")
    x_train = _check_x(x_train, net, "x_train")
    x_test = _check_x(x_test, net, "x_test")
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        raise ValueError("x_train, x_test: expected at least one input each")
    clf = classifier or TropicalClassifier.fit(net, x_train, allow_missing_classes=allow_missing_classes)
    shared = shared_code_fractions(net, x_train, x_test)
    _, pred_test, term = clf.decide(x_test)
    pred_train = clf.predict(x_train)
    net_train, net_test = _net_predictions(net, x_train), _net_predictions(net, x_test)
    bits_test = _unpacked(net, x_test)
    if net.is_mlp:
        units = np.array([float(np.mean(bits_test[l] == clf.masks[l][term])) for l in range(net.num_hidden)])
    else:  # a unit: a (leaky) ReLU unit (1 bit), a hard-tanh unit (2 bits), a max-pool window (its slot's bits)
        units = np.array([float(np.mean(np.all((b == m[term]).reshape(b.shape[0], -1, per), axis=-1)))
                          for b, m, per in zip(bits_test, clf.masks, _bits_per_unit(net))])

    def acc(pred, y, n):
        return None if y is None else float(np.mean(pred == check_labels(y, n, net.output_dim)))

    L = net.num_hidden
    n_train = len(np.unique(region_ids(net, x_train, "prefix")[:, L - 1]))
    n_test = len(np.unique(region_ids(net, x_test, "prefix")[:, L - 1]))
    return RegionStatistics(
        shared, float(shared[-1]), n_train, n_test, clf.num_terms,
        float(np.mean(pred_train == net_train)), float(np.mean(pred_test == net_test)),
        acc(pred_train, y_train, x_train.shape[0]), acc(pred_test, y_test, x_test.shape[0]),
        acc(net_train, y_train, x_train.shape[0]), acc(net_test, y_test, x_test.shape[0]), units,
    )


# --- tangent sensitivity ----------------------------------------------------------------------
@jax.jit
def _tangent_kernel(params, masks):
    """Per region: ``‖P_l‖_F²`` ``[M, L+1]`` and ``‖S_l[:, k]‖²`` ``[M, L+1, d_out]``."""
    d = params.layers[0].W.shape[0]
    M = masks[0].shape[0]
    L = len(masks)
    pre = push(params, AffineFamily(jnp.zeros(d), jnp.eye(d)), masks, xp=jnp)
    p2 = [jnp.full((M,), float(d))]
    for fam, mask in zip(pre, masks):
        post = freeze(fam, mask, params.alpha, jnp)
        p2.append(jnp.broadcast_to(jnp.sum(post.directions ** 2, axis=(-2, -1)), (M,)))
    s2 = []
    for l in range(1, L + 1):
        n = params.layers[l - 1].W.shape[1]
        jac = push(params, AffineFamily(jnp.zeros(n), jnp.eye(n)), masks[l:], first=l + 1, output=True, xp=jnp)[-1]
        slope = jnp.where(masks[l - 1], 1.0, params.alpha)  # [M, n]
        S = slope[..., :, None] * jac.directions  # [M, n, d_out]
        s2.append(jnp.sum(S ** 2, axis=-2))
    k = params.layers[-1].W.shape[1]
    s2.append(jnp.ones((M, k)))
    return jnp.stack(p2, axis=1), jnp.stack(s2, axis=1)


def _tangent_of_masks(net: Net, masks, output, batch_size=None) -> np.ndarray:
    """``float64[M, L+1]``: per region the squared Frobenius norm of each weight's block."""
    params = float64_arrays(net)
    M = masks[0].shape[0]
    L = net.num_hidden
    if M == 0:
        return np.zeros((0, L + 1))
    d = net.input_dim
    widest = max(net.widths)
    size = _chunk_size(params, batch_size, (L + 3) * max(d, widest) * widest)
    out = np.zeros((M, L + 1))
    with jax.enable_x64(True):
        p = _jax_params(params)
        for start, stop, chunk in _chunks(masks, size):
            p2, s2 = _tangent_kernel(p, tuple(jnp.asarray(m) for m in chunk))
            p2, s2 = np.asarray(p2)[: stop - start], np.asarray(s2)[: stop - start]
            s = s2.sum(-1) if output is None else s2[:, :, output]
            out[start:stop] = p2 * s
    return out


def _check_output(output, net: Net):
    if output is None:
        return None
    if isinstance(output, bool) or not isinstance(output, (int, np.integer)) or not 0 <= output < net.output_dim:
        raise ValueError(f"output: expected None (all logits) or a logit index in 0..{net.output_dim - 1}, got {output!r}")
    return int(output)


class TangentSensitivity(NamedTuple):
    """Tangent sensitivity ``‖∂/∂x ∇_θ f‖_F`` per input, computed once per region.

    Attributes:
      norm: ``float64[N]`` the Frobenius norm over all parameters (and the chosen logits).
      layers: ``float64[N, L+1]`` the norm of each weight matrix's block ``∂J/∂W_l`` (bias
        blocks are identically 0).
      mean: the expectation of ``norm`` over the inputs (each weighted ``1/N``).
      mean_layers: ``float64[L+1]`` the expectation of each layer's norm.
      region_norm: ``float64[M]``, region_layers ``float64[M, L+1]``: per region.
      keys, index, counts: the regions (as in :class:`LinearTerms`).
    """

    norm: np.ndarray
    layers: np.ndarray
    mean: float
    mean_layers: np.ndarray
    region_norm: np.ndarray
    region_layers: np.ndarray
    keys: np.ndarray
    index: np.ndarray
    counts: np.ndarray

    def __repr__(self) -> str:
        return record_repr("TangentSensitivity", inputs=int(self.norm.shape[0]), regions=int(self.keys.shape[0]),
                           mean=float(self.mean))


def tangent_sensitivity(net: Net, x, *, output: int | None = None, batch_size: int | None = None) -> TangentSensitivity:
    """Daróczy's tangent sensitivity ``∂/∂x ∇_θ f`` of every input, once per region.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: inputs ``[N, d_in]``, ``N >= 1``.
      output: None: the whole tensor over all logits (``[d_out, P, d]``); an int ``k``: logit ``k``.
      batch_size: regions per kernel call.

    Returns:
      :class:`TangentSensitivity`; at an input away from every boundary ``norm`` equals the
      Frobenius norm of ``jax.jacfwd(jax.jacrev(f, θ), x)`` of the float64 net.
    """
    net = _mlp_only(net, "tangent_sensitivity()")
    x = _check_x(x, net)
    if x.shape[0] == 0:
        raise ValueError("x: expected at least one input, got an empty array")
    output = _check_output(output, net)
    reg = _regions(net, x)
    sq = _tangent_of_masks(net, reg.masks, output, batch_size)
    rl = np.sqrt(sq)
    rn = np.sqrt(sq.sum(1))
    w = reg.counts / x.shape[0]
    return TangentSensitivity(rn[reg.index], rl[reg.index], float(w @ rn), w @ rl, rn, rl, reg.keys, reg.index, reg.counts)


class TangentSummary(NamedTuple):
    """Tangent sensitivity aggregated over a region table (each region with its mass).

    Attributes:
      mean: ``Σ_R p_R ‖Sens_R‖_F`` with ``p_R = count_R / total``.
      mean_layers: ``float64[L+1]`` the same per weight matrix.
      rms: ``sqrt(Σ_R p_R ‖Sens_R‖_F²)``.
      region_norm: ``float64[M]`` per region of the table (its order).
      regions, total: the table's size and number of inputs.
    """

    mean: float
    mean_layers: np.ndarray
    rms: float
    region_norm: np.ndarray
    regions: int
    total: int


def tangent_sensitivity_table(net: Net, table, source, *, output: int | None = None,
                              batch_size: int | None = None) -> TangentSummary:
    """Tangent sensitivity aggregated over a region table, one evaluation per region.

    Args:
      net: the unstacked :class:`partax.Net` the table was made with.
      table: its full-code :class:`partax.RegionTable` (``partition.table("prefix", L)``).
      source: the inputs the table was made from, ``[N, d_in]`` (``table.exemplars`` index it).
      output: None (all logits) or a logit index.
      batch_size: regions per kernel call.

    Returns:
      :class:`TangentSummary`.

    Raises:
      ValueError: the table is empty, its exemplars fall outside ``source``, or their codes do
        not have the table's keys (not the full-code table of this net over this source).
    """
    from partax.tables import RegionTable

    net = _mlp_only(net, "tangent_sensitivity_table()")
    if not isinstance(table, RegionTable):
        raise TypeError(f"table: expected a partax.RegionTable, got {type(table).__name__}")
    if len(table) == 0 or table.total <= 0:
        raise ValueError("table: expected a non-empty region table")
    source = _check_x(source, net, "source")
    ex = table.exemplars
    if ex.min() < 0 or ex.max() >= source.shape[0]:
        raise ValueError(f"table: exemplars index inputs up to {int(ex.max())}, source has {source.shape[0]}")
    output = _check_output(output, net)
    xe = source[ex]
    keys = region_ids(net, xe, "prefix")[:, net.num_hidden - 1]
    if not np.array_equal(keys, table.keys):
        raise ValueError("table: its keys are not the full-code keys of its exemplars in source; expected "
                         "partition(net, source).table('prefix', L) of this net")
    c = codes(net, xe)
    masks = tuple(c.bits(l) for l in range(1, net.num_hidden + 1))
    sq = _tangent_of_masks(net, masks, output, batch_size)
    p = table.counts / table.total
    rn = np.sqrt(sq.sum(1))
    return TangentSummary(float(p @ rn), p @ np.sqrt(sq), float(np.sqrt(p @ sq.sum(1))), rn, len(table), table.total)


def tangent_probe(output: int | None = None):
    """A :class:`partax.Tracer` probe recording tangent sensitivity at each checkpoint.

    Args:
      output: None (all logits) or a logit index.

    Returns:
      ``probe(net, x, y) -> list of records``: ``layer`` 0 the norm over all parameters,
      ``layer`` l (1-based, ``1..L+1``) the block of weight matrix ``l``; fields ``mean``
      (the expectation over the tracer's inputs), ``regions`` (distinct full-code regions),
      ``estimator`` ``"exact"``.

    Example:
      >>> tracer = partax.Tracer(x, y, probes={"tangent": tangent_probe()})  # doctest: +SKIP
    """
    output_ = output

    def probe(net, x, y=None):
        ts = tangent_sensitivity(net, x, output=output_)
        m = int(ts.keys.shape[0])
        recs = [{"layer": 0, "estimator": "exact", "mean": ts.mean, "regions": m}]
        recs += [{"layer": l + 1, "estimator": "exact", "mean": float(v), "regions": m} for l, v in enumerate(ts.mean_layers)]
        return recs

    return probe
