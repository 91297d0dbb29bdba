"""Layers of general piecewise-linear networks, as immutable pytrees.

Deviations from the shared layer spec (issue 14), for importers: a ``MaxPool`` whose window has
one slot (``k = 1``) is *not* a code group (it would have 0 bits; it is an affine selection,
and ``net.widths`` has no 0 entry); ``ReLU`` is a subclass of ``LeakyReLU`` (``alpha = 0``), so
test ``type(layer) is LeakyReLU`` to tell them apart; pooling ``strides`` default to the window
and ``padding`` to none; ``Conv`` also takes ``padding`` as one int or ``"VALID"``.

A :class:`partax.Net` is a sequence of these layers (:func:`partax.nets.sequential`). Every
layer is a frozen dataclass registered as a JAX pytree: its arrays are the children, its static
settings (strides, padding, slopes, ...) the auxiliary data. Layout is JAX's: activations are
channels-last ``(N, W, C)`` / ``(N, H, W, C)``, kernels ``(*window, C_in // groups, C_out)``
(WIO / HWIO), dense weights ``(d_in, d_out)``.

*Affine* layers (no code): :class:`Dense`, :class:`Conv`, :class:`AvgPool`,
:class:`BatchNorm` (inference mode), :class:`Flatten`. *Code sites* (each is one code group,
one entry of ``net.widths``, in execution order):

* :class:`ReLU` / :class:`LeakyReLU`: one bit per unit, 1 iff ``z > 0``;
* :class:`HardTanh` (clipped ReLU is ``HardTanh(0, c)``): two bits per unit,
  ``(z > lo, z > hi)``, unit ``i``'s at bits ``2 i`` and ``2 i + 1``;
* :class:`MaxPool`: per window and channel the row-major index of its maximum (ties to the
  lowest index), in ``ceil(log2 k)`` bits (``k`` the window size; bit ``j`` of the index is
  bit ``j`` of the window's slot), windows in row-major order of the output ``(*spatial, C)``.

Units of a site are numbered in row-major order of its per-example input ``(*spatial, C)``.
:class:`Residual` ``(body, shortcut)`` computes ``s(h) + body(h)``; the body's sites are code
groups in order. Pooling windows and convolutions use explicit zero padding ``((lo, hi), ...)``
per spatial axis (``-inf`` padding for max pooling; average pooling divides by the full window
size, padding included).

Every layer has ``apply(x)`` (``x`` of shape ``(N, *in_shape)``), ``output_shape(in_shape)``
(per-example shapes; a mismatch is a ``ValueError``) and ``code_bits(in_shape)`` (0 for affine
layers). Affine layers also have ``linear(x)`` (the map without its constant term) and
``magnitude(s)`` (``|A| s + |c|`` for a non-negative ``s``: the size of the terms summed, the
scale of the rounding error, for near-boundary tests). Code sites have ``code(z)`` (``bool[N,
bits]``), ``near(z, s, tol)`` (``bool[N]``: some unit within ``tol`` of its threshold, relative to
the scale ``s`` of ``z``), ``frozen(z, bits)`` and ``frozen_linear(v, bits)`` (the site with its
code fixed: an affine map of ``z``, and its linear part).

Example:
    >>> import numpy as np
    >>> from partax.layers import Conv, MaxPool, ReLU
    >>> conv = Conv(np.ones((3, 3, 1, 2), np.float32), np.zeros(2, np.float32), padding=((1, 1), (1, 1)))
    >>> conv, conv.output_shape((8, 8, 1))
    (Conv(3x3, 1->2, padding 1), (8, 8, 2))
    >>> pool = MaxPool((2, 2), (2, 2))
    >>> pool.output_shape((8, 8, 2)), pool.code_bits((8, 8, 2)), ReLU().code_bits((8, 8, 2))
    ((4, 4, 2), 64, 128)
    >>> pool.code(np.arange(16.0).reshape(1, 4, 4, 1)).astype(int).tolist()  # slot 3 = bits (1, 1)
    [[1, 1, 1, 1, 1, 1, 1, 1]]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Dense",
    "Conv",
    "AvgPool",
    "BatchNorm",
    "Flatten",
    "ReLU",
    "LeakyReLU",
    "HardTanh",
    "MaxPool",
    "Residual",
    "LAYER_TYPES",
    "is_site",
    "index_bits",
    "same_padding",
    "traverse",
    "window_indices",
]

_HIGHEST = jax.lax.Precision.HIGHEST


def index_bits(k: int) -> int:
    """Bits of a max-pool window's code: ``ceil(log2 k)`` (0 for ``k = 1``).

    Args:
      k: the number of slots in the window (an int >= 1).

    Returns:
      An int: the bits that name one of ``k`` slots.

    Example:
      >>> [index_bits(k) for k in (1, 2, 3, 4, 9)]
      [0, 1, 2, 2, 4]
    """
    return max(0, (int(k) - 1).bit_length())


def _register(children: tuple):
    """Registers a frozen dataclass as a pytree: ``children`` are its array fields."""

    def wrap(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
        aux_names = tuple(n for n in names if n not in children)

        def flatten(obj):
            return tuple(getattr(obj, n) for n in children), tuple(getattr(obj, n) for n in aux_names)

        def unflatten(aux, kids):
            obj = object.__new__(cls)  # no validation: leaves may be tracers or placeholders
            for n, v in zip(children, kids):
                object.__setattr__(obj, n, v)
            for n, v in zip(aux_names, aux):
                object.__setattr__(obj, n, v)
            return obj

        jax.tree_util.register_pytree_node(cls, flatten, unflatten)
        return cls

    return wrap


def _pairs(padding, nsp: int, name: str) -> tuple:
    """Normalises padding to ``((lo, hi),) * nsp`` of non-negative ints."""
    if padding is None:
        return ((0, 0),) * nsp
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0),) * nsp
        raise ValueError(f"{name}: expected explicit ((lo, hi), ...) padding or 'VALID', got {padding!r} "
                         f"('SAME' depends on the input size: give the pairs)")
    if isinstance(padding, (int, np.integer)):
        padding = ((int(padding), int(padding)),) * nsp
    try:
        out = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {nsp} (lo, hi) pairs, got {padding!r}") from None
    if len(out) != nsp or any(lo < 0 or hi < 0 for lo, hi in out):
        raise ValueError(f"{name}: expected {nsp} non-negative (lo, hi) pairs, got {padding!r}")
    return out


def _ints(value, nsp: int, name: str, default: int = 1) -> tuple:
    if value is None:
        return (default,) * nsp
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * nsp
    out = tuple(int(v) for v in value)
    if len(out) != nsp or min(out, default=1) < 1:
        raise ValueError(f"{name}: expected {nsp} positive ints, got {value!r}")
    return out


def _shape(a) -> tuple:
    return tuple(int(s) for s in np.shape(a))


def _check_rank(in_shape, rank: int, what: str) -> None:
    if len(in_shape) != rank:
        layout = {2: "(W, C)", 3: "(H, W, C)"}.get(rank, f"{rank} axes")
        raise ValueError(f"{what}: expected a per-example input of shape {layout} (channels last), got {tuple(in_shape)}")


def _windows(x, window, strides, padding, fill):
    """The pooling windows of ``x[N, *spatial, C]``: ``[N, *out_spatial, C, k]`` (row-major slots).

    Padded positions hold ``fill``; works on NumPy and JAX arrays.
    """
    xp = np if isinstance(x, np.ndarray) else jnp
    nsp = len(window)
    pad = [(0, 0)] + list(padding) + [(0, 0)]
    xpad = xp.pad(x, pad, constant_values=fill)
    sizes = [(xpad.shape[1 + a] - window[a]) // strides[a] + 1 for a in range(nsp)]
    slots = []
    for offs in np.ndindex(*window):
        sl = [slice(None)] + [slice(o, o + (sizes[a] - 1) * strides[a] + 1, strides[a]) for a, o in enumerate(offs)]
        slots.append(xpad[tuple(sl)])
    return xp.stack(slots, axis=-1)


def _pool_shape(in_shape, window, strides, padding, what) -> tuple:
    _check_rank(in_shape, len(window) + 1, what)
    out = []
    for a, (n, k, s, (lo, hi)) in enumerate(zip(in_shape[:-1], window, strides, padding)):
        if lo >= k or hi >= k:
            raise ValueError(f"{what}: padding {(lo, hi)} on axis {a} must be smaller than the window {k}")
        m = (n + lo + hi - k) // s + 1
        if m < 1:
            raise ValueError(f"{what}: window {k} does not fit axis {a} of size {n} (padding {(lo, hi)})")
        out.append(m)
    return (*out, int(in_shape[-1]))


def window_indices(in_shape, window, strides, padding=None) -> np.ndarray:
    """Flat (row-major) input index of every slot of every pooling window, -1 where padded.

    Args:
      in_shape: per-example input shape ``(*spatial, C)``.
      window, strides, padding: the pooling's settings.

    Returns:
      ``int64[windows, k]``, windows in row-major order of the output ``(*spatial, C)``.

    Example:
      >>> window_indices((2, 2, 1), (2, 2), (1, 1), ((0, 1), (0, 0))).tolist()
      [[0, 1, 2, 3], [2, 3, -1, -1]]
    """
    window = tuple(window)
    padding = _pairs(padding, len(window), "padding")
    idx = np.arange(int(np.prod(in_shape)), dtype=np.int64).reshape(1, *in_shape)
    w = _windows(idx, window, tuple(strides), padding, -1)
    return w.reshape(-1, w.shape[-1])


# --- affine layers ----------------------------------------------------------------------------
@_register(("W", "b"))
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dense:
    """``x @ W + b`` on the last axis.

    Attributes:
      W: ``(d_in, d_out)``.
      b: ``(d_out,)``.
    """

    W: Any
    b: Any

    def __post_init__(self):
        W, b = _shape(self.W), _shape(self.b)
        if len(W) != 2 or b != W[1:]:
            raise ValueError(f"Dense: expected W (d_in, d_out) and b (d_out,), got W{W} and b{b}")

    def __repr__(self):
        return f"Dense({self.W.shape[-2]}->{self.W.shape[-1]})"

    def output_shape(self, in_shape) -> tuple:
        if len(in_shape) < 1 or in_shape[-1] != self.W.shape[-2]:
            raise ValueError(f"Dense: expected inputs (..., {self.W.shape[-2]}), got {tuple(in_shape)}")
        return (*in_shape[:-1], int(self.W.shape[-1]))

    def code_bits(self, in_shape) -> int:
        return 0

    def linear(self, x):
        return jnp.matmul(x, self.W, precision=_HIGHEST)

    def apply(self, x):
        return self.linear(x) + self.b

    def magnitude(self, s):
        return jnp.matmul(s, jnp.abs(self.W), precision=_HIGHEST) + jnp.abs(self.b)


@_register(("kernel", "bias"))
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Conv:
    """1D or 2D convolution (``kernel.ndim - 2`` spatial axes), channels last, plus a bias.

    Equivalent to ``jax.lax.conv_general_dilated(x, kernel, strides, padding,
    rhs_dilation=dilation, dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
    + bias`` (``('NWC', 'WIO', 'NWC')`` in 1D).

    Attributes:
      kernel: ``(*window, C_in // groups, C_out)``.
      bias: ``(C_out,)``.
      strides: per spatial axis (default 1).
      padding: ``((lo, hi), ...)`` zero padding per spatial axis (default none).
      dilation: the kernel's dilation per spatial axis (default 1).
      groups: feature groups (``C_in`` and ``C_out`` divisible by it).
    """

    kernel: Any
    bias: Any
    strides: tuple = None
    padding: tuple = None
    dilation: tuple = None
    groups: int = 1

    def __post_init__(self):
        k, b = _shape(self.kernel), _shape(self.bias)
        nsp = len(k) - 2
        if nsp not in (1, 2):
            raise ValueError(f"Conv: expected a kernel (W, C_in, C_out) or (H, W, C_in, C_out), got shape {k}")
        if b != k[-1:]:
            raise ValueError(f"Conv: expected bias ({k[-1]},) for kernel {k}, got {b}")
        object.__setattr__(self, "strides", _ints(self.strides, nsp, "Conv strides"))
        object.__setattr__(self, "padding", _pairs(self.padding, nsp, "Conv padding"))
        object.__setattr__(self, "dilation", _ints(self.dilation, nsp, "Conv dilation"))
        g = int(self.groups)
        if g < 1 or k[-1] % g:
            raise ValueError(f"Conv: groups must be a positive divisor of C_out={k[-1]}, got {self.groups}")
        object.__setattr__(self, "groups", g)

    @property
    def num_spatial(self) -> int:
        return len(self.strides)

    @property
    def window(self) -> tuple:
        return tuple(int(s) for s in self.kernel.shape[-2 - self.num_spatial : -2])

    def __repr__(self):
        k = self.kernel.shape[-2 - self.num_spatial :]
        cin, cout = k[-2] * self.groups, k[-1]
        extra = ""
        if set(self.strides) != {1}:
            extra += f", stride {'x'.join(map(str, self.strides))}"
        if any(lo or hi for lo, hi in self.padding):
            extra += f", padding {_padding_text(self.padding)}"
        if set(self.dilation) != {1}:
            extra += f", dilation {'x'.join(map(str, self.dilation))}"
        if self.groups != 1:
            extra += f", groups {self.groups}"
        return f"Conv({'x'.join(map(str, self.window))}, {cin}->{cout}{extra})"

    def output_shape(self, in_shape) -> tuple:
        nsp = self.num_spatial
        _check_rank(in_shape, nsp + 1, "Conv")
        cin = int(self.kernel.shape[-2]) * self.groups
        if in_shape[-1] != cin:
            raise ValueError(f"Conv: expected {cin} input channels (last axis), got input {tuple(in_shape)}")
        out = []
        for a in range(nsp):
            span = (self.window[a] - 1) * self.dilation[a] + 1
            n = in_shape[a] + sum(self.padding[a]) - span
            if n < 0:
                raise ValueError(f"Conv: the kernel (span {span}) does not fit axis {a} of input {tuple(in_shape)}")
            out.append(n // self.strides[a] + 1)
        return (*out, int(self.kernel.shape[-1]))

    def code_bits(self, in_shape) -> int:
        return 0

    def _conv(self, x, kernel):
        nsp = self.num_spatial
        dn = ("NWC", "WIO", "NWC") if nsp == 1 else ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, self.strides, self.padding, rhs_dilation=self.dilation,
                                            dimension_numbers=dn, feature_group_count=self.groups,
                                            precision=_HIGHEST)

    def linear(self, x):
        return self._conv(x, jnp.asarray(self.kernel, x.dtype))

    def apply(self, x):
        return self.linear(x) + self.bias

    def magnitude(self, s):
        return self._conv(s, jnp.abs(jnp.asarray(self.kernel, s.dtype))) + jnp.abs(self.bias)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AvgPool:
    """Mean over each window, channels independent; zero padding counts in the divisor.

    Attributes:
      window: window size per spatial axis.
      strides: per spatial axis (default: the window).
      padding: ``((lo, hi), ...)`` per spatial axis (default none).
    """

    window: tuple
    strides: tuple = None
    padding: tuple = None

    def __post_init__(self):
        window = _ints(self.window, len(tuple(np.atleast_1d(self.window))), "AvgPool window")
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "strides", _ints(self.strides if self.strides is not None else window, len(window),
                                                  "AvgPool strides"))
        object.__setattr__(self, "padding", _pairs(self.padding, len(window), "AvgPool padding"))

    def __repr__(self):
        return _pool_repr("AvgPool", self)

    def output_shape(self, in_shape) -> tuple:
        return _pool_shape(in_shape, self.window, self.strides, self.padding, "AvgPool")

    def code_bits(self, in_shape) -> int:
        return 0

    def linear(self, x):
        w = _windows(x, self.window, self.strides, self.padding, 0)
        return w.sum(axis=-1) / np.asarray(math.prod(self.window), x.dtype)

    apply = linear

    def magnitude(self, s):
        return self.linear(s)


@_register(("mean", "var", "scale", "offset"))
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class BatchNorm:
    """Inference-mode batch normalisation of the last axis: ``(x - mean) / sqrt(var + eps) * scale + offset``.

    Attributes:
      mean, var, scale, offset: ``(C,)``.
      eps: the variance offset.
    """

    mean: Any
    var: Any
    scale: Any
    offset: Any
    eps: float = 1e-5

    def __post_init__(self):
        shapes = [_shape(a) for a in (self.mean, self.var, self.scale, self.offset)]
        if len(shapes[0]) != 1 or any(s != shapes[0] for s in shapes):
            raise ValueError(f"BatchNorm: expected mean, var, scale, offset of one shape (C,), got {shapes}")
        object.__setattr__(self, "eps", float(self.eps))
        if not self.eps >= 0:
            raise ValueError(f"BatchNorm: eps must be >= 0, got {self.eps}")
        if not isinstance(self.var, jax.core.Tracer):  # concrete: var + eps must be positive (else NaN gains)
            v = np.asarray(self.var, np.float64) + self.eps
            bad = np.flatnonzero(~(v > 0))
            if bad.size:
                raise ValueError(f"BatchNorm: var + eps must be > 0 in every channel, got {v[bad[:5]].tolist()} at "
                                 f"channels {bad[:5].tolist()}{' ...' if bad.size > 5 else ''} (var holds variances, "
                                 "not log-variances)")

    def __repr__(self):
        return f"BatchNorm({self.mean.shape[-1]})"

    def output_shape(self, in_shape) -> tuple:
        if len(in_shape) < 1 or in_shape[-1] != self.mean.shape[-1]:
            raise ValueError(f"BatchNorm: expected {self.mean.shape[-1]} channels (last axis), got input {tuple(in_shape)}")
        return tuple(in_shape)

    def code_bits(self, in_shape) -> int:
        return 0

    def gain(self):
        """The per-channel factor ``scale / sqrt(var + eps)``."""
        return self.scale / jnp.sqrt(self.var + self.eps)

    def shift(self):
        """The per-channel constant ``offset - mean * gain``."""
        return self.offset - self.mean * self.gain()

    def linear(self, x):
        return x * self.gain()

    def apply(self, x):
        return (x - self.mean) * self.gain() + self.offset

    def magnitude(self, s):
        g = self.gain()
        return s * jnp.abs(g) + jnp.abs(self.mean * g) + jnp.abs(self.offset)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Flatten:
    """``(N, *spatial, C) -> (N, prod)`` in row-major order of the channels-last array."""

    def __repr__(self):
        return "Flatten()"

    def output_shape(self, in_shape) -> tuple:
        return (int(math.prod(in_shape)),)

    def code_bits(self, in_shape) -> int:
        return 0

    def linear(self, x):
        return x.reshape(x.shape[0], -1)

    apply = linear
    magnitude = linear


# --- code sites ---------------------------------------------------------------------------
def _flat(z):
    return z.reshape(z.shape[0], -1)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LeakyReLU:
    """``z`` where ``z > 0``, ``alpha z`` elsewhere; one bit per unit (1 iff ``z > 0``).

    Attributes:
      alpha: the slope of the inactive side (finite, not 1).
    """

    alpha: float = 0.01

    def __post_init__(self):
        a = float(self.alpha)
        if not (np.isfinite(a) and a != 1.0):
            raise ValueError(f"{type(self).__name__}: alpha must be finite and != 1, got {self.alpha}")
        object.__setattr__(self, "alpha", a)

    def __repr__(self):
        return f"LeakyReLU({self.alpha:g})"

    def output_shape(self, in_shape) -> tuple:
        return tuple(in_shape)

    def code_bits(self, in_shape) -> int:
        return int(math.prod(in_shape))

    def apply(self, z):
        return jnp.where(z > 0, z, self.alpha * z)

    def code(self, z):
        return _flat(z > 0)

    def near(self, z, s, tol):
        return _flat(jnp.abs(z) <= tol * s).any(axis=-1)

    def output_scale(self, z, out):
        """The rounding scale of the outputs (``|out|``: a clamped zero is exact)."""
        return jnp.abs(out)

    def slope(self, bits, shape):
        return jnp.where(bits, 1.0, self.alpha).reshape(shape)

    def frozen(self, z, bits):
        return self.slope(bits, z.shape) * z

    def frozen_linear(self, v, bits):
        return self.frozen(v, bits)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ReLU(LeakyReLU):
    """``max(z, 0)``; one bit per unit (1 iff ``z > 0``)."""

    alpha: float = 0.0

    def __post_init__(self):
        if float(self.alpha) != 0.0:
            raise ValueError(f"ReLU: alpha is 0 (use LeakyReLU({self.alpha}))")
        object.__setattr__(self, "alpha", 0.0)

    def __repr__(self):
        return "ReLU()"

    def apply(self, z):
        return jnp.maximum(z, 0)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class HardTanh:
    """``clip(z, lo, hi)``; three states, two bits per unit: ``(z > lo, z > hi)``.

    Attributes:
      lo, hi: the thresholds, ``lo < hi`` (clipped ReLU: ``HardTanh(0, c)``).
    """

    lo: float = -1.0
    hi: float = 1.0

    def __post_init__(self):
        lo, hi = float(self.lo), float(self.hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"HardTanh: expected finite lo < hi, got lo={self.lo}, hi={self.hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def __repr__(self):
        return f"HardTanh({self.lo:g}, {self.hi:g})"

    def output_shape(self, in_shape) -> tuple:
        return tuple(in_shape)

    def code_bits(self, in_shape) -> int:
        return 2 * int(math.prod(in_shape))

    def apply(self, z):
        return jnp.clip(z, self.lo, self.hi)

    def code(self, z):
        return jnp.stack([_flat(z > self.lo), _flat(z > self.hi)], axis=-1).reshape(z.shape[0], -1)

    def near(self, z, s, tol):
        return _flat((jnp.abs(z - self.lo) <= tol * s) | (jnp.abs(z - self.hi) <= tol * s)).any(axis=-1)

    def output_scale(self, z, out):
        """The rounding scale of the outputs: ``|out|`` on the linear piece, 0 where clamped (exact)."""
        return jnp.where((z > self.lo) & (z <= self.hi), jnp.abs(out), 0.0)

    def _states(self, bits, shape):
        b = bits.reshape(*bits.shape[:-1], -1, 2)
        above_lo, above_hi = b[..., 0].reshape(shape), b[..., 1].reshape(shape)
        return above_lo, above_hi

    def frozen(self, z, bits):
        above_lo, above_hi = self._states(bits, z.shape)
        return jnp.where(above_hi, self.hi, jnp.where(above_lo, z, self.lo))

    def frozen_linear(self, v, bits):
        above_lo, above_hi = self._states(bits, v.shape)
        return jnp.where(above_lo & ~above_hi, v, 0.0)


@_register(())
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class MaxPool:
    """Maximum over each window; code: the window's argmax slot (ties to the lowest) in
    ``ceil(log2 k)`` bits. Padded positions are ``-inf``.

    Attributes:
      window: window size per spatial axis.
      strides: per spatial axis (default: the window).
      padding: ``((lo, hi), ...)`` per spatial axis (default none; each side below the window).
    """

    window: tuple
    strides: tuple = None
    padding: tuple = None

    def __post_init__(self):
        window = _ints(self.window, len(tuple(np.atleast_1d(self.window))), "MaxPool window")
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "strides", _ints(self.strides if self.strides is not None else window, len(window),
                                                  "MaxPool strides"))
        object.__setattr__(self, "padding", _pairs(self.padding, len(window), "MaxPool padding"))

    @property
    def size(self) -> int:
        """``k``, the number of slots of a window."""
        return int(math.prod(self.window))

    def __repr__(self):
        return _pool_repr("MaxPool", self)

    def output_shape(self, in_shape) -> tuple:
        return _pool_shape(in_shape, self.window, self.strides, self.padding, "MaxPool")

    def code_bits(self, in_shape) -> int:
        return int(math.prod(self.output_shape(in_shape))) * index_bits(self.size)

    def windows(self, z):
        """``[N, *out_spatial, C, k]``: the windows' values (``-inf`` where padded)."""
        return _windows(z, self.window, self.strides, self.padding, -jnp.inf)

    def apply(self, z):
        return self.windows(z).max(axis=-1)

    def argmax(self, z):
        """``int32[N, windows]``: each window's slot of its maximum (the lowest on ties)."""
        return _flat(jnp.argmax(self.windows(z), axis=-1).astype(jnp.int32))

    def code(self, z):
        nb = index_bits(self.size)
        if nb == 0:
            return jnp.zeros((z.shape[0], 0), bool)
        idx = self.argmax(z)
        bits = (idx[..., None] >> jnp.arange(nb, dtype=jnp.int32)) & 1
        return bits.reshape(z.shape[0], -1).astype(bool)

    def output_scale(self, z, out):
        """The rounding scale of the outputs (``|out|``)."""
        return jnp.abs(out)

    def near(self, z, s, tol):
        """Some window whose top two values are within ``tol (s_top + s_second)``, unless both
        are exact (scale 0: a tie of clamped zeros after a ReLU is no rounding question)."""
        if self.size == 1:
            return jnp.zeros(z.shape[0], bool)
        w = _flat_windows(self.windows(z))
        sw = _flat_windows(_windows(s, self.window, self.strides, self.padding, 0))
        top = jnp.argmax(w, axis=-1)
        wtop = jnp.take_along_axis(w, top[..., None], -1)[..., 0]
        stop = jnp.take_along_axis(sw, top[..., None], -1)[..., 0]
        masked = jnp.where(jnp.arange(w.shape[-1]) == top[..., None], -jnp.inf, w)
        second = jnp.argmax(masked, axis=-1)
        wsec = jnp.take_along_axis(masked, second[..., None], -1)[..., 0]  # -inf: no second slot
        ssec = jnp.take_along_axis(sw, second[..., None], -1)[..., 0]
        both = stop + ssec
        return ((wtop - wsec <= tol * both) & (both > 0)).any(axis=-1)

    def slots(self, bits):
        """``int32[N, windows]``: the slots a code selects (the inverse of :meth:`code`; NumPy in, NumPy out)."""
        xp = np if isinstance(bits, np.ndarray) else jnp
        nb = index_bits(self.size)
        if nb == 0:
            return xp.zeros((bits.shape[0], bits.shape[-1]), xp.int32)  # never used: no bits
        b = bits.reshape(bits.shape[0], -1, nb).astype(xp.int32)
        return (b << xp.arange(nb, dtype=xp.int32)).sum(-1, dtype=xp.int32)

    def linear(self, v):
        """A window of one slot selects it (``k = 1`` only: then the pooling is affine, no site)."""
        if self.size != 1:
            raise ValueError(f"{self!r}: a max pool of more than one slot is not affine")
        return _windows(v, self.window, self.strides, self.padding, 0)[..., 0]

    magnitude = linear

    def frozen(self, z, bits):
        w = self.windows(z)
        out_shape = w.shape[:-1]
        if index_bits(self.size) == 0:
            return w[..., 0]
        slot = self.slots(bits).reshape(out_shape)
        return jnp.take_along_axis(w, slot[..., None], -1)[..., 0]

    def frozen_linear(self, v, bits):
        w = _windows(v, self.window, self.strides, self.padding, 0)
        if index_bits(self.size) == 0:
            return w[..., 0]
        slot = self.slots(bits).reshape(w.shape[:-1])
        return jnp.take_along_axis(w, slot[..., None], -1)[..., 0]


def _flat_windows(w):
    return w.reshape(w.shape[0], -1, w.shape[-1])


def same_padding(window, strides=None, dilation=None, in_spatial=None, *, lower: bool = False) -> tuple:
    """The explicit ``((lo, hi), ...)`` zero padding of ``"SAME"``: ``ceil(n / s)`` outputs per axis.

    The total per axis is ``max((ceil(n / s) - 1) s + (k - 1) d + 1 - n, 0)``, split with the odd
    element at the end (TensorFlow / JAX / ONNX ``SAME_UPPER``) or at the start (``lower=True``,
    ONNX ``SAME_LOWER``). With stride 1 it is ``(k - 1) d`` whatever the size, so ``in_spatial``
    may be omitted (PyTorch's ``padding="same"``).

    Args:
      window: the kernel or pooling window per spatial axis.
      strides: per axis (default 1).
      dilation: per axis (default 1).
      in_spatial: the input's spatial size per axis (needed when a stride is not 1).
      lower: put the odd element of the padding at the start.

    Returns:
      A tuple of ``(lo, hi)`` int pairs, one per spatial axis.

    Example:
      >>> same_padding((3, 3)), same_padding((2,), (2,), in_spatial=(5,))
      (((1, 1), (1, 1)), ((0, 1),))
    """
    window = tuple(int(k) for k in window)
    strides = (1,) * len(window) if strides is None else tuple(int(s) for s in strides)
    dilation = (1,) * len(window) if dilation is None else tuple(int(d) for d in dilation)
    if in_spatial is None:
        if set(strides) - {1}:
            raise ValueError(f"in_spatial: 'SAME' padding with strides {strides} depends on the input size: give it")
        in_spatial = (1,) * len(window)
    out = []
    for n, k, s, d in zip(in_spatial, window, strides, dilation):
        total = max((-(-int(n) // s) - 1) * s + (k - 1) * d + 1 - int(n), 0)
        lo = total - total // 2 if lower else total // 2
        out.append((lo, total - lo))
    return tuple(out)


def _padding_text(padding) -> str:
    """``1`` for ``((1, 1), (1, 1))``; the pairs otherwise."""
    flat = {v for pair in padding for v in pair}
    return str(flat.pop()) if len(flat) == 1 else str(tuple(padding))


def _pool_repr(name, p) -> str:
    extra = f", stride {'x'.join(map(str, p.strides))}" if p.strides != p.window else ""
    if any(lo or hi for lo, hi in p.padding):
        extra += f", padding {_padding_text(p.padding)}"
    return f"{name}({'x'.join(map(str, p.window))}{extra})"


# --- structure --------------------------------------------------------------------------------
@_register(("body", "shortcut"))
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Residual:
    """``s(h) + body(h)``: ``body`` a tuple of layers, ``s`` the identity (None) or a Dense / Conv.

    Attributes:
      body: tuple of layers (its code sites are code groups, in order).
      shortcut: None (identity) or an affine :class:`Dense` / :class:`Conv`.
    """

    body: tuple
    shortcut: Any = None

    def __post_init__(self):
        body = tuple(self.body)
        if not body:
            raise ValueError("Residual: body must hold at least one layer")
        for i, layer in enumerate(body):
            if not isinstance(layer, LAYER_TYPES):
                raise TypeError(f"Residual: body layer {i} is a {type(layer).__name__}, not a partax layer")
        if self.shortcut is not None and not isinstance(self.shortcut, (Dense, Conv)):
            raise TypeError(f"Residual: shortcut must be None, Dense or Conv, got {type(self.shortcut).__name__}")
        object.__setattr__(self, "body", body)

    def __repr__(self):
        s = "" if self.shortcut is None else f", shortcut={self.shortcut!r}"
        return f"Residual({', '.join(map(repr, self.body))}{s})"

    def body_shapes(self, in_shape) -> list:
        """Per-example shapes ``[in, after body[0], ...]`` (errors name the body index)."""
        shapes = [tuple(in_shape)]
        for i, layer in enumerate(self.body):
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except ValueError as e:
                raise ValueError(f"Residual body layer {i} ({type(layer).__name__}): {e}") from None
        return shapes

    def output_shape(self, in_shape) -> tuple:
        out = self.body_shapes(in_shape)[-1]
        short = tuple(in_shape) if self.shortcut is None else tuple(self.shortcut.output_shape(in_shape))
        if short != out:
            raise ValueError(f"Residual: the body gives {out} but the shortcut gives {short}")
        return out

    def code_bits(self, in_shape) -> int:
        shapes = self.body_shapes(in_shape)
        return sum(layer.code_bits(s) for layer, s in zip(self.body, shapes))

    def site_bits(self, in_shape) -> tuple:
        """Bits of each code group of the body, in order."""
        shapes = self.body_shapes(in_shape)
        return tuple(_group_bits(layer, s) for layer, s in zip(self.body, shapes) if _group_bits(layer, s) is not None)

    def shortcut_apply(self, h):
        return h if self.shortcut is None else self.shortcut.apply(h)

    def shortcut_linear(self, v):
        return v if self.shortcut is None else self.shortcut.linear(v)

    def shortcut_magnitude(self, s):
        return s if self.shortcut is None else self.shortcut.magnitude(s)

    def apply(self, h):
        y = h
        for layer in self.body:
            y = layer.apply(y)
        return self.shortcut_apply(h) + y


def _group_bits(layer, in_shape):
    """Bits of a site's code group, or None for a layer that is not a site (Residual: None)."""
    return layer.code_bits(in_shape) if is_site(layer) else None


def is_site(layer) -> bool:
    """Whether ``layer`` is a code site: ReLU, LeakyReLU, HardTanh, or a MaxPool of ``k > 1``
    slots (a one-slot max pool selects its slot: an affine layer with no code group).

    Args:
      layer: any partax layer.

    Returns:
      A Python bool.

    Example:
      >>> import numpy as np
      >>> [is_site(l) for l in (ReLU(), HardTanh(0.0, 6.0), Dense(np.ones((2, 3)), np.zeros(3)), Flatten())]
      [True, True, False, False]
      >>> is_site(MaxPool((2, 2), (2, 2))), is_site(MaxPool((1, 1), (1, 1)))
      (True, False)
    """
    if isinstance(layer, MaxPool):
        return layer.size > 1
    return isinstance(layer, (LeakyReLU, HardTanh))


LAYER_TYPES = (Dense, Conv, AvgPool, BatchNorm, Flatten, LeakyReLU, ReLU, HardTanh, MaxPool, Residual)


def traverse(layers, state, *, affine, site, add):
    """Runs a sequence of layers on a carried ``state`` (an interpreter for every pass over a net).

    Residual blocks recurse: ``add(shortcut_state, body_state)`` with the identity shortcut
    (``state`` itself) or ``affine(shortcut, state)``. Code sites are visited in execution order,
    so a ``site`` callback that records what it sees lists the code groups in order.

    Args:
      layers: a sequence of layers.
      state: what flows through (activations, ``(values, scales)``, affine families, ...).
      affine: ``(layer, state) -> state`` for an affine layer (and a one-slot max pool).
      site: ``(layer, state) -> state`` for a code site.
      add: ``(a, b) -> state``, the sum of a residual block.

    Returns:
      The final state.

    Example:
      >>> import numpy as np
      >>> layers = (Dense(np.eye(2), np.ones(2)), ReLU(), Residual((Dense(np.eye(2), -np.ones(2)),)))
      >>> traverse(layers, np.array([[1.0, -3.0]]), affine=lambda l, h: l.apply(h),
      ...          site=lambda l, z: l.apply(z), add=lambda a, b: a + b).tolist()
      [[3.0, -1.0]]
    """
    for layer in layers:
        if isinstance(layer, Residual):
            short = state if layer.shortcut is None else affine(layer.shortcut, state)
            body = traverse(layer.body, state, affine=affine, site=site, add=add)
            state = add(short, body)
        elif is_site(layer):
            state = site(layer, state)
        else:
            state = affine(layer, state)
    return state
