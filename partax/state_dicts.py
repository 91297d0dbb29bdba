"""Networks from plain arrays, ``.npz`` or safetensors state dicts and a layer spec.

A *spec* lists the layers by name, with options where needed::

    [("conv", {"stride": 1, "padding": 1}), "relu", ("maxpool", 2), "flatten", "dense", "relu", "dense"]

Names: ``"dense"`` (``"linear"``), ``"conv"`` (1D or 2D, from the kernel; options ``stride``,
``padding`` (an int, a pair per axis, ``((lo, hi), ...)``, ``"same"`` or ``"valid"``),
``dilation``, ``groups``; dense and conv also take ``bias=False``: no bias array, a zero bias), ``"batchnorm"`` (option ``eps``, default 1e-5), ``"maxpool"`` /
``"avgpool"`` (``("maxpool", 2)`` or options ``window`` (``kernel_size``), ``stride``,
``padding``), ``"flatten"``, ``"relu"``, ``"leaky_relu"`` (``("leaky_relu", 0.1)``; default
0.01), ``"hardtanh"`` (options ``lo``, ``hi``; default -1, 1), ``"relu6"``, ``"identity"`` /
``"dropout"`` (nothing; these and ``relu``, ``relu6``, ``flatten`` take no options), and ``("residual", body)`` or ``("residual", {"body": [...],
"shortcut": "conv" | ("conv", {...}) | "dense" | None})``. An unknown option is an error.

The parametrised layers (dense, conv, batch norm, and a residual's shortcut after its body)
take their arrays in spec order: from a list (``[W, b, kernel, bias, ...]``; a batch norm takes
``scale, offset, mean, var``), or from a dict / file of named arrays grouped by prefix
(``"features.0.weight"`` is field ``weight`` of layer ``"features.0"``; nested dicts such as Flax
parameters are joined with ``.``), the groups in order (a dict's own order; an ``.npz`` file's own
order; a safetensors file, which stores its names sorted, in natural order ``"2" < "10"``, and only
when the group names differ in integer tokens alone, as ``"layers.2"`` and ``"layers.10"`` do:
otherwise name the groups), or named in the spec with the option ``name``. Field names:
``weight`` / ``kernel`` / ``W`` / ``w``, ``bias`` / ``b``; batch norm ``weight`` / ``scale`` /
``gamma``, ``bias`` / ``offset`` / ``beta``, ``running_mean`` / ``mean``, ``running_var`` /
``var``; ``num_batches_tracked`` is ignored.

Layouts: ``layout="jax"`` — dense ``(in, out)``, kernels ``(*window, in // groups, out)``,
inputs channels last, so ``input_shape`` is ``(H, W, C)``. ``layout="torch"`` — dense
``(out, in)``, kernels ``OIHW``, ``input_shape`` ``(C, H, W)``: the net is channels-last (its
``input_shape`` is ``(H, W, C)``; pass it ``np.moveaxis(x, 1, -1)``), kernels are transposed, and
the dense layer after a ``flatten`` gets its rows reordered, since PyTorch flattens ``(C, H, W)``.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> state = {"0.weight": rng.normal(size=(4, 1, 3, 3)), "0.bias": np.zeros(4),
    ...          "3.weight": rng.normal(size=(2, 4 * 3 * 3)), "3.bias": np.zeros(2)}
    >>> net = from_state_dict([("conv", {"padding": 1}), "relu", ("maxpool", 2), "flatten", "dense"],
    ...                       state, (1, 6, 6), layout="torch")
    >>> net.layers, net.input_shape
    ((Conv(3x3, 1->4, padding 1), ReLU(), MaxPool(2x2), Flatten(), Dense(36->2)), (6, 6, 1))
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from partax import layers as L
from partax.layers import same_padding

__all__ = ["from_state_dict", "load_state_dict"]

_FIELDS = {
    "dense": {"W": ("weight", "kernel", "W", "w"), "b": ("bias", "b")},
    "conv": {"W": ("weight", "kernel", "W", "w"), "b": ("bias", "b")},
    "batchnorm": {"scale": ("weight", "scale", "gamma"), "offset": ("bias", "offset", "beta"),
                  "mean": ("running_mean", "mean", "moving_mean"), "var": ("running_var", "var", "moving_variance")},
}
_IGNORED = ("num_batches_tracked",)
_ALIASES = {"linear": "dense", "batch_norm": "batchnorm", "bn": "batchnorm", "max_pool": "maxpool",
            "avg_pool": "avgpool", "leakyrelu": "leaky_relu", "hard_tanh": "hardtanh", "dropout": "identity"}


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def load_state_dict(path) -> dict:
    """Named arrays from a ``.npz`` or ``.safetensors`` file.

    An ``.npz`` keeps the order it was written in; a safetensors file stores its names sorted, so
    its arrays come in natural order of their names (``"2.bias"`` before ``"10.bias"``).

    Args:
      path: the file (``.safetensors`` read with the ``safetensors`` package; anything else as
        an ``.npz``, without pickle).

    Returns:
      A dict name -> NumPy array.

    Example:
      >>> import os, tempfile, numpy as np
      >>> p = os.path.join(tempfile.mkdtemp(), "s.npz")
      >>> np.savez(p, **{"10.bias": np.zeros(2), "2.bias": np.ones(2)})
      >>> list(load_state_dict(p))  # the file's own order
      ['10.bias', '2.bias']
    """
    return _read(path)[0]


def _read(path):
    """``(arrays, by_name)``: the named arrays, and whether their order is only that of their names."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"path: no such state-dict file {p!r}")
    if p.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ImportError(
                f"path: reading {p!r} needs the safetensors package (pip install 'partax[safetensors]')"
            ) from None
    try:
        if p.endswith(".safetensors"):
            arrays = dict(load_file(p))
        else:
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise ValueError(f"path: {p!r} is not a readable .npz / .safetensors state dict: {e}") from None
    if p.endswith(".safetensors"):  # stored sorted: the file has no order of its own
        return {k: arrays[k] for k in sorted(arrays, key=_natural)}, True
    return arrays, False


def _flatten_dict(d, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) or (hasattr(v, "items") and not hasattr(v, "shape")):
            out.update(_flatten_dict(dict(v.items()), key + "."))
        else:
            out[key] = v
    return out


class _Source:
    """Hands out each parametrised layer's arrays, from a list or from named groups."""

    def __init__(self, state, by_name):
        if isinstance(state, (list, tuple)):  # 0-d integer arrays (num_batches_tracked) are skipped
            self.items = [np.asarray(a) for a in state]
            self.items = [a for a in self.items if not (a.ndim == 0 and np.issubdtype(a.dtype, np.integer))]
            self.groups = None
        else:
            flat = _flatten_dict(dict(state.items()))
            groups = {}
            for k, v in flat.items():
                prefix, _, field = k.rpartition(".")
                if field in _IGNORED:
                    continue
                groups.setdefault(prefix, {})[field] = np.asarray(v)
            order = sorted(groups, key=_natural) if by_name else list(groups)
            self.groups, self.order = groups, order
            # sorted names give the layers' order only when they differ in integer tokens alone
            self.ambiguous = by_name and len({re.sub(r"\d+", "#", g) for g in groups}) > 1
        self.used = []
        self.pos = 0

    def take(self, kind, index, name=None, optional=(), skip=()):
        fields = {f: names for f, names in _FIELDS[kind].items() if f not in skip}
        if self.groups is None:
            out = {}
            for f in fields:
                if self.pos >= len(self.items):
                    if f in optional:
                        continue
                    raise ValueError(f"state: ran out of arrays at spec[{index}] ({kind}, field {f!r}); "
                                     f"{len(self.items)} arrays given")
                out[f] = self.items[self.pos]
                self.pos += 1
            return out
        if name is None:
            free = [g for g in self.order if g not in self.used]
            if not free:
                raise ValueError(f"state: no array group left for spec[{index}] ({kind}); groups: {self.order}")
            if self.ambiguous:
                raise ValueError(f"state: a safetensors file stores its array names sorted, not in layer order, and "
                                 f"its groups {self.order} differ in more than integer tokens, so spec[{index}] ({kind}) "
                                 f"cannot be matched by position; name each group in the spec, e.g. "
                                 f"({kind!r}, {{'name': {free[0]!r}}}), or save an .npz, which keeps its order")
            name = free[0]
        if name not in self.groups:
            raise ValueError(f"state: spec[{index}] names the group {name!r}, not in {self.order}")
        self.used.append(name)
        g = self.groups[name]
        out = {}
        for f, names in fields.items():
            hit = [n for n in names if n in g]
            if not hit:
                if f in optional:
                    continue
                raise ValueError(f"state: group {name!r} (spec[{index}], {kind}) has no {f!r} array "
                                 f"(expected one of {names}), it has {sorted(g)}")
            out[f] = g[hit[0]]
        for f in skip:
            hit = [n for n in _FIELDS[kind][f] if n in g]
            if hit:
                raise ValueError(f"state: group {name!r} (spec[{index}], {kind}) has a {hit[0]!r} array, but the spec "
                                 f"says bias=False")
        extra = set(g) - {n for names in _FIELDS[kind].values() for n in names}
        if extra:
            raise ValueError(f"state: group {name!r} (spec[{index}], {kind}) has unexpected arrays {sorted(extra)}")
        return out

    def finish(self):
        if self.groups is None:
            if self.pos != len(self.items):
                raise ValueError(f"state: {len(self.items) - self.pos} arrays left over after the spec "
                                 f"(used {self.pos} of {len(self.items)})")
        else:
            left = [g for g in self.order if g not in self.used]
            if left:
                raise ValueError(f"state: array groups {left} are not used by the spec")


def _entry(item, index):
    if isinstance(item, str):
        name, opts = item, {}
    elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
        name, opts = item
    else:
        raise ValueError(f"spec[{index}]: expected a layer name or (name, options), got {item!r}")
    name = _ALIASES.get(name.lower(), name.lower())
    return name, opts


def _per_axis(v, nsp, what, index):
    if v is None:
        return None
    if isinstance(v, (int, np.integer)):
        return (int(v),) * nsp
    v = tuple(int(u) for u in v)
    if len(v) != nsp:
        raise ValueError(f"spec[{index}]: {what} expected {nsp} values, got {v}")
    return v


def _padding(p, nsp, window, dilation, index, strides):
    if p is None:
        return ((0, 0),) * nsp
    if isinstance(p, str):
        if p.lower() == "valid":
            return ((0, 0),) * nsp
        if p.lower() == "same":
            if any(int(t) != 1 for t in strides):
                # SAME with a stride depends on the input size (JAX/TF) and PyTorch refuses it
                raise ValueError(f"spec[{index}]: padding 'same' needs stride 1 (got strides {tuple(strides)}); "
                                 "give the padding as ints per axis")
            return same_padding(window, strides, dilation)
        raise ValueError(f"spec[{index}]: padding expected 'same', 'valid' or ints, got {p!r}")
    if isinstance(p, (int, np.integer)):
        return ((int(p), int(p)),) * nsp
    p = tuple(p)
    if len(p) == nsp and all(isinstance(q, (int, np.integer)) for q in p):
        return tuple((int(q), int(q)) for q in p)
    if len(p) == nsp and all(len(q) == 2 for q in p):
        return tuple((int(q[0]), int(q[1])) for q in p)
    raise ValueError(f"spec[{index}]: padding expected an int, one per axis or ((lo, hi), ...), got {p!r}")


def _no_opts(opts, index, name):
    if opts is not None and not (isinstance(opts, dict) and not opts):
        raise ValueError(f"spec[{index}] ({name}): takes no options, got {opts!r}")


def _bias(o, index, name):
    bias = o.get("bias", True)
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"spec[{index}] ({name}): bias expected True or False, got {bias!r}")
    return ("b",) if not bias else ()


def _opts(opts, index, name, allowed):
    if not isinstance(opts, dict):
        raise ValueError(f"spec[{index}] ({name}): expected an options dict, got {opts!r}")
    extra = set(opts) - set(allowed)
    if extra:
        raise ValueError(f"spec[{index}] ({name}): unknown options {sorted(extra)} (allowed: {sorted(allowed)})")
    return opts


class _Builder:
    def __init__(self, source, torch, dtype):
        self.src, self.torch, self.dtype = source, torch, dtype
        self.pending_flatten = None  # (spatial..., C) shape before a torch flatten

    def _torch_order(self):
        """For each index of partax's channels-last flatten, the index of PyTorch's ``(C, *spatial)`` one."""
        sh = self.pending_flatten
        nsp = len(sh) - 1
        return np.arange(math.prod(sh)).reshape(sh[-1], *sh[:-1]).transpose(*range(1, nsp + 1), 0).reshape(-1)

    def arr(self, a):
        return np.asarray(a, self.dtype)

    def build(self, spec, shape, where=""):
        out = []
        for i, item in enumerate(spec):
            index = f"{where}{i}"
            name, opts = _entry(item, index)
            layer = self.layer(L, name, opts, index, shape)
            if layer is None:
                continue
            try:
                new = tuple(layer.output_shape(shape))
            except ValueError as e:
                raise ValueError(f"spec[{index}] ({name}): {e}") from None
            if name == "flatten":
                self.pending_flatten = shape if len(shape) > 1 and self.torch else None
            elif name not in ("relu", "leaky_relu", "hardtanh", "relu6", "batchnorm"):
                self.pending_flatten = None
            out.append(layer)
            shape = new
        return out, shape

    def layer(self, L, name, opts, index, shape):
        if name in ("identity", "relu", "relu6", "flatten"):
            _no_opts(opts, index, name)
        if name == "identity":
            return None
        if name == "relu":
            return L.ReLU()
        if name == "relu6":
            return L.HardTanh(0.0, 6.0)
        if name == "leaky_relu":
            if isinstance(opts, dict):
                return L.LeakyReLU(float(_opts(opts, index, name, {"alpha", "negative_slope"}).get(
                    "alpha", opts.get("negative_slope", 0.01))))
            if not isinstance(opts, (int, float, np.integer, np.floating)) or isinstance(opts, bool):
                raise ValueError(f"spec[{index}] (leaky_relu): expected a slope or {{'alpha': slope}}, got {opts!r}")
            return L.LeakyReLU(float(opts))
        if name == "hardtanh":
            if isinstance(opts, (tuple, list)):
                if len(opts) != 2:
                    raise ValueError(f"spec[{index}] (hardtanh): expected (lo, hi) or {{'lo': .., 'hi': ..}}, "
                                     f"got {opts!r}")
                return L.HardTanh(float(opts[0]), float(opts[1]))
            o = _opts(opts, index, name, {"lo", "hi", "min_val", "max_val"})
            return L.HardTanh(float(o.get("lo", o.get("min_val", -1.0))), float(o.get("hi", o.get("max_val", 1.0))))
        if name == "flatten":
            return L.Flatten()
        if name in ("maxpool", "avgpool"):
            if not isinstance(opts, dict):
                opts = {"window": opts}
            o = _opts(opts, index, name, {"window", "kernel_size", "stride", "strides", "padding"})
            nsp = len(shape) - 1
            if nsp < 1:
                raise ValueError(f"spec[{index}] ({name}): needs a spatial input, got per-example shape {shape}")
            window = _per_axis(o.get("window", o.get("kernel_size")), nsp, "window", index)
            if window is None:
                raise ValueError(f"spec[{index}] ({name}): needs a window")
            strides = _per_axis(o.get("stride", o.get("strides")), nsp, "stride", index) or window
            pad = _padding(o.get("padding"), nsp, window, (1,) * nsp, index, strides)
            return (L.MaxPool if name == "maxpool" else L.AvgPool)(window, strides, pad)
        if name == "dense":
            o = _opts(opts, index, name, {"name", "bias"})
            a = self.src.take("dense", index, o.get("name"), optional=("b",), skip=_bias(o, index, name))
            W = np.asarray(a["W"])
            if W.ndim != 2:
                raise ValueError(f"spec[{index}] (dense): expected a 2D weight, got shape {W.shape}")
            if self.torch:
                W = W.T
                if self.pending_flatten is not None and W.shape[0] == math.prod(self.pending_flatten):
                    W = W[self._torch_order()]  # PyTorch flattened (C, *spatial): reorder the rows
            b = a.get("b", np.zeros(W.shape[1]))
            if W.shape[0] != shape[-1]:
                lay = "(out, in)" if self.torch else "(in, out)"
                raise ValueError(f"spec[{index}] (dense): weight {np.asarray(a['W']).shape} in {lay} layout takes "
                                 f"{W.shape[0]} inputs, but its input has per-example shape {shape}")
            return L.Dense(self.arr(W), self.arr(b))
        if name == "conv":
            o = _opts(opts, index, name, {"name", "bias", "stride", "strides", "padding", "dilation", "groups"})
            a = self.src.take("conv", index, o.get("name"), optional=("b",), skip=_bias(o, index, name))
            k = np.asarray(a["W"])
            nsp = k.ndim - 2
            if nsp not in (1, 2):
                raise ValueError(f"spec[{index}] (conv): expected a 3D or 4D kernel, got shape {k.shape}")
            if self.torch:  # OIHW -> HWIO
                k = np.transpose(k, (*range(2, k.ndim), 1, 0))
            groups = int(o.get("groups", 1))
            dil = _per_axis(o.get("dilation"), nsp, "dilation", index) or (1,) * nsp
            strides = _per_axis(o.get("stride", o.get("strides")), nsp, "stride", index) or (1,) * nsp
            pad = _padding(o.get("padding"), nsp, k.shape[:nsp], dil, index, strides)
            if len(shape) != nsp + 1 or shape[-1] != k.shape[-2] * groups:
                want = f"(C={k.shape[-2] * groups}, {nsp} spatial axes)"
                raise ValueError(f"spec[{index}] (conv): kernel {np.asarray(a['W']).shape} expects inputs {want}, got "
                                 f"per-example shape {shape} (channels last here)")
            b = a.get("b", np.zeros(k.shape[-1]))
            return L.Conv(self.arr(k), self.arr(b), strides, pad, dil, groups)
        if name == "batchnorm":
            o = _opts(opts, index, name, {"name", "eps"})
            a = self.src.take("batchnorm", index, o.get("name"))
            C = shape[-1]
            for f in ("scale", "offset", "mean", "var"):
                if np.shape(a[f]) != (C,):
                    raise ValueError(f"spec[{index}] (batchnorm): {f} expected shape ({C},), got {np.shape(a[f])}")
            if self.torch and self.pending_flatten is not None:  # a BatchNorm1d of PyTorch's flatten order
                a = {f: np.asarray(v)[self._torch_order()] for f, v in a.items()}
            try:
                return L.BatchNorm(self.arr(a["mean"]), self.arr(a["var"]), self.arr(a["scale"]),
                                   self.arr(a["offset"]), float(o.get("eps", 1e-5)))
            except ValueError as e:
                raise ValueError(f"spec[{index}] (batchnorm): {e}") from None
        if name == "residual":
            if isinstance(opts, dict):
                o = _opts(opts, index, name, {"body", "shortcut"})
                body, short = o.get("body"), o.get("shortcut")
            else:
                body, short = opts, None
            if not body:
                raise ValueError(f"spec[{index}] (residual): needs a non-empty body")
            saved = self.pending_flatten
            inner, _ = self.build(body, shape, where=f"{index}.")
            sc = None
            if short is not None:
                sname, sopts = _entry(short, f"{index}.shortcut")
                if sname not in ("conv", "dense"):
                    raise ValueError(f"spec[{index}] (residual): the shortcut must be conv or dense, got {sname!r}")
                sc = self.layer(L, sname, sopts, f"{index}.shortcut", shape)
            self.pending_flatten = saved
            return L.Residual(tuple(inner), sc)
        raise ValueError(f"spec[{index}]: unknown layer {name!r} (known: dense, conv, batchnorm, maxpool, avgpool, "
                         "flatten, relu, leaky_relu, hardtanh, relu6, identity, residual); softmax, GELU, attention "
                         "and layer norm are not piecewise linear, so partax cannot take them")


def from_state_dict(spec, state, input_shape, *, layout: str = "jax", dtype=np.float32):
    """A partax :class:`~partax.Net` from a layer spec and its arrays.

    Args:
      spec: the layers, as described in the module docstring.
      state: the arrays: a list in spec order, a dict of named arrays (nested dicts allowed), or
        the path of an ``.npz`` / ``.safetensors`` file (:func:`load_state_dict`).
      input_shape: the per-example input shape in ``layout``'s order (``(C, H, W)`` for PyTorch).
      layout: ``"jax"`` or ``"torch"``.
      dtype: the floating dtype of the net's arrays.

    Returns:
      An unstacked :class:`~partax.Net` on channels-last inputs.

    Raises:
      ValueError: naming the spec entry or array group that does not fit.

    Example:
      >>> import numpy as np
      >>> arrays = [np.ones((3, 4)), np.zeros(4), np.ones((4, 1)), np.zeros(1)]  # [W1, b1, W2, b2], (in, out)
      >>> net = from_state_dict(["dense", ("leaky_relu", 0.1), "dense"], arrays, (3,))
      >>> net.layers, net(np.ones((1, 3), np.float32)).tolist()
      ((Dense(3->4), LeakyReLU(0.1), Dense(4->1)), [[12.0]])
    """
    if layout not in ("jax", "torch"):
        raise ValueError(f"layout: expected 'jax' or 'torch', got {layout!r}")
    if isinstance(spec, (str, bytes)) or not hasattr(spec, "__iter__"):
        raise ValueError(f"spec: expected a list of layers, got {spec!r}")
    spec = list(spec)
    if not spec:
        raise ValueError("spec: expected at least one layer")
    by_name = False
    if isinstance(state, (str, os.PathLike)):
        state, by_name = _read(state)
    elif not isinstance(state, (list, tuple)) and not hasattr(state, "items"):
        raise ValueError(f"state: expected a list of arrays, a dict or a file path, got {type(state).__name__}")
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"input_shape: expected a tuple of ints, got {input_shape!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape: expected positive sizes, got {input_shape!r}")
    torch = layout == "torch"
    if torch and len(shape) > 1:
        shape = (*shape[1:], shape[0])  # (C, *spatial) -> (*spatial, C)
    builder = _Builder(_Source(state, by_name), torch, np.dtype(dtype))
    layers, _ = builder.build(spec, shape)
    builder.src.finish()
    from partax.nets import sequential

    return sequential(layers, shape)
