"""An independent float64 NumPy implementation of partax's layers (no partax code runs here).

It reads only the layers' arrays and settings (``W``, ``kernel``, ``strides``, ...) and computes
everything with explicit loops: convolutions over output positions and kernel offsets, pooling
over windows, the max-pool argmax by a strict ``>`` scan (so ties go to the lowest slot). It
also freezes codes (every site given the code it should use), which makes the net affine:
the oracle's local maps are ``A[:, i] = f(e_i) - f(0)``, ``c = f(0)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _a(v):
    return np.asarray(v, np.float64)


def _out_size(n, k, s, lo, hi, d=1):
    return (n + lo + hi - ((k - 1) * d + 1)) // s + 1


def conv(layer, x):
    """``x[N, *spatial, C_in]`` -> ``[N, *out, C_out]``: explicit loops over positions and offsets."""
    K, b = _a(layer.kernel), _a(layer.bias)
    nsp = K.ndim - 2
    window = K.shape[:nsp]
    strides, dil, pad, g = layer.strides, layer.dilation, layer.padding, layer.groups
    N = x.shape[0]
    cin_g, cout = K.shape[-2], K.shape[-1]
    cout_g = cout // g
    xp = np.zeros((N, *[x.shape[1 + a] + pad[a][0] + pad[a][1] for a in range(nsp)], x.shape[-1]))
    xp[(slice(None), *[slice(pad[a][0], pad[a][0] + x.shape[1 + a]) for a in range(nsp)])] = x
    outs = [_out_size(x.shape[1 + a], window[a], strides[a], *pad[a], dil[a]) for a in range(nsp)]
    y = np.zeros((N, *outs, cout))
    for o in itertools.product(*[range(m) for m in outs]):
        acc = np.zeros((N, cout))
        for off in itertools.product(*[range(k) for k in window]):
            pos = tuple(o[a] * strides[a] + off[a] * dil[a] for a in range(nsp))
            v = xp[(slice(None), *pos)]  # [N, C_in]
            for gi in range(g):
                acc[:, gi * cout_g:(gi + 1) * cout_g] += (
                    v[:, gi * cin_g:(gi + 1) * cin_g] @ K[off][:, gi * cout_g:(gi + 1) * cout_g])
        y[(slice(None), *o)] = acc + b
    return y


def windows(x, window, strides, padding, fill):
    """``[N, *out, C, k]``: every window's slots in row-major order, ``fill`` where padded."""
    nsp = len(window)
    N, C = x.shape[0], x.shape[-1]
    outs = [_out_size(x.shape[1 + a], window[a], strides[a], *padding[a]) for a in range(nsp)]
    k = math.prod(window)
    w = np.full((N, *outs, C, k), fill, np.float64)
    for o in itertools.product(*[range(m) for m in outs]):
        for j, off in enumerate(itertools.product(*[range(kk) for kk in window])):
            pos = [o[a] * strides[a] + off[a] - padding[a][0] for a in range(nsp)]
            if all(0 <= pos[a] < x.shape[1 + a] for a in range(nsp)):
                w[(slice(None), *o, slice(None), j)] = x[(slice(None), *pos)]
    return w


def argmax_lowest(w):
    """Index of the maximum over the last axis, by a strict ``>`` scan (ties: the lowest)."""
    best = np.zeros(w.shape[:-1], np.int64)
    top = w[..., 0].copy()
    for j in range(1, w.shape[-1]):
        better = w[..., j] > top
        best = np.where(better, j, best)
        top = np.where(better, w[..., j], top)
    return best


def nbits(k):
    return int(math.ceil(math.log2(k))) if k > 1 else 0


def _site_kind(layer):
    name = type(layer).__name__
    if name == "MaxPool" and math.prod(layer.window) == 1:
        return None
    return name if name in ("ReLU", "LeakyReLU", "HardTanh", "MaxPool") else None


def forward(layers, x, freeze=None, record=None):
    """The float64 forward pass of ``layers`` on ``x[N, *input_shape]``.

    Args:
      layers: partax layers (only their arrays and settings are read).
      x: the inputs.
      freeze: optional iterator of per-site codes ``bool[N, bits]`` to use instead of the computed
        ones (the frozen, affine net).
      record: optional list; each site appends ``(kind, z, bits, extra)`` with ``z`` its input
        and ``extra`` the tie margin per input (``min |z|``, the thresholds' distance, the
        top-two gap).

    Returns:
      The outputs.
    """
    h = _a(x)
    for layer in layers:
        name = type(layer).__name__
        kind = _site_kind(layer)
        N = h.shape[0]
        if name == "Dense":
            h = h @ _a(layer.W) + _a(layer.b)
        elif name == "Conv":
            h = conv(layer, h)
        elif name == "AvgPool":
            h = windows(h, layer.window, layer.strides, layer.padding, 0.0).sum(-1) / math.prod(layer.window)
        elif name == "MaxPool" and kind is None:
            h = windows(h, layer.window, layer.strides, layer.padding, -np.inf)[..., 0]
        elif name == "BatchNorm":
            h = (h - _a(layer.mean)) / np.sqrt(_a(layer.var) + layer.eps) * _a(layer.scale) + _a(layer.offset)
        elif name == "Flatten":
            h = h.reshape(N, -1)
        elif name == "Residual":
            short = h if layer.shortcut is None else forward([layer.shortcut], h)
            h = short + forward(layer.body, h, freeze, record)
        elif kind in ("ReLU", "LeakyReLU"):
            alpha = 0.0 if kind == "ReLU" else layer.alpha
            bits = (h > 0).reshape(N, -1)
            extra = np.abs(h).reshape(N, -1).min(-1)
            if freeze is not None:
                bits = next(freeze)
            if record is not None:
                record.append((kind, h.reshape(N, -1), bits, extra, np.zeros(N, bool)))
            h = np.where(bits.reshape(h.shape), h, alpha * h)
        elif kind == "HardTanh":
            lo, hi = layer.lo, layer.hi
            bits = np.stack([(h > lo).reshape(N, -1), (h > hi).reshape(N, -1)], -1).reshape(N, -1)
            extra = np.minimum(np.abs(h - lo), np.abs(h - hi)).reshape(N, -1).min(-1)
            if freeze is not None:
                bits = next(freeze)
            if record is not None:
                record.append((kind, h.reshape(N, -1), bits, extra, np.zeros(N, bool)))
            b = bits.reshape(N, -1, 2)
            above_lo, above_hi = b[..., 0].reshape(h.shape), b[..., 1].reshape(h.shape)
            h = np.where(above_hi, hi, np.where(above_lo, h, lo))
        elif kind == "MaxPool":
            w = windows(h, layer.window, layer.strides, layer.padding, -np.inf)
            k = w.shape[-1]
            idx = argmax_lowest(w)
            srt = np.sort(w, axis=-1)
            gap = (srt[..., -1] - srt[..., -2]).reshape(N, -1)
            # exact ties (the zeros of a ReLU before the pool) are no rounding question: the
            # margin is the smallest positive gap (exact_ties() finds the ties)
            extra = np.where(gap > 0, gap, np.inf).min(-1)
            nb = nbits(k)
            bits = ((idx.reshape(N, -1)[..., None] >> np.arange(nb)) & 1).reshape(N, -1).astype(bool)
            if freeze is not None:
                bits = next(freeze)
                idx = (bits.reshape(N, -1, nb).astype(np.int64) << np.arange(nb)).sum(-1).reshape(idx.shape)
            if record is not None:
                record.append((kind, h.reshape(N, -1), bits, extra, (gap == 0).any(-1)))
            wz = windows(h, layer.window, layer.strides, layer.padding, 0.0) if freeze is not None else w
            h = np.take_along_axis(wz, idx[..., None], -1)[..., 0]
        else:
            raise TypeError(f"oracle: unknown layer {name}")
    return h


def exact_ties(layers, x):
    """Per input, whether some max-pool window has an exact tie at its top."""
    rec = []
    forward(layers, x, record=rec)
    out = np.zeros(len(x), bool)
    for r in rec:
        out |= r[4]
    return out


def codes(layers, x):
    """Per site ``bool[N, bits]`` and the smallest tie margin of each input over all sites."""
    rec = []
    forward(layers, x, record=rec)
    margin = np.min(np.stack([r[3] for r in rec]), axis=0) if rec else np.full(len(x), np.inf)
    return [r[2] for r in rec], margin


def local_map(layers, input_shape, x_codes):
    """The affine map of the region of each code: ``out = A @ x_flat + c`` and per site the
    pre-activation maps ``z = A_s @ x_flat + c_s`` (frozen codes, ``f(e_i) - f(0)``).

    Args:
      layers: the net's layers.
      input_shape: per-example input shape.
      x_codes: per site ``bool[N, bits]``.

    Returns:
      ``(A[N, out, d], c[N, out], [(A_s[N, n_s, d], c_s[N, n_s]), ...])``.
    """
    d = math.prod(input_shape)
    N = x_codes[0].shape[0]
    basis = np.concatenate([np.zeros((1, d)), np.eye(d)])  # f(0), f(e_1), ...
    pts = np.tile(basis, (N, 1)).reshape(N * (d + 1), *input_shape)
    frozen = iter([np.repeat(b, d + 1, axis=0) for b in x_codes])
    rec = []
    out = forward(layers, pts, freeze=frozen, record=rec).reshape(N, d + 1, -1)
    c = out[:, 0]
    A = (out[:, 1:] - c[:, None]).swapaxes(1, 2)
    sites = []
    for r in rec:
        z = r[1].reshape(N, d + 1, -1)
        sites.append(((z[:, 1:] - z[:, :1]).swapaxes(1, 2), z[:, 0]))
    return A, c, sites
