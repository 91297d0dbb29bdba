"""Import any JAX function of a batch as a partax network, by reading its jaxpr.

:func:`from_jax` traces ``apply_fn`` (parameters closed over) with :func:`jax.make_jaxpr` and
interprets the primitives it lowers to: Flax (linen and nnx), Equinox, Haiku and plain JAX all
write ``dot_general``, ``conv_general_dilated``, ``add`` / ``sub`` / ``mul`` / ``div`` by
constants, ``max`` / ``min`` with constants and ``select_n`` on comparisons (ReLU, leaky ReLU,
hard tanh, ReLU6, ``abs``), ``reduce_window_max`` (max pooling), ``reduce_window_sum`` and
``reduce_sum`` (average / global average pooling, sums), ``pad`` right before a convolution or
pooling (merged into its padding), reshapes, transposes, broadcasts, and the
inference-mode batch-norm chain (its constant sub-expressions are folded by evaluating them).
Calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``closed_call``, ``remat``) are inlined;
other higher-order primitives (``scan``, ``while``, ``cond``, a ``reduce_window`` with a custom
reduction) are refused by name on input-dependent values.

Elementwise functions of one tensor are tracked as exact one-dimensional piecewise-linear
functions and become one code site each: two linear pieces give a (leaky) ReLU, three with flat
outer pieces a :class:`~partax.layers.HardTanh`; per-channel scales and shifts become
:class:`~partax.layers.BatchNorm` layers or are folded into the ``Dense`` / ``Conv`` before them.
``h + f(h)`` becomes a :class:`~partax.layers.Residual`. Any other primitive on input-dependent
data is a ``ValueError`` that names it and says why (not piecewise linear, or not supported);
the imported net is finally compared with ``apply_fn`` on random inputs, and a mismatch is an
error too, so a wrong net is never returned.

Layout: the net is channels-last. A function whose convolutions read channels-first inputs
(Equinox, PyTorch-style ``NCHW``) gives a net on the transposed input: the net takes
``np.moveaxis(x, 1, -1)`` (``(N, C, H, W) -> (N, H, W, C)``). :func:`input_axes` says which axes.

Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> W1, W2 = jnp.ones((3, 4)) / 3, jnp.arange(8.0).reshape(4, 2)
    >>> f = lambda x: jax.nn.relu(x @ W1 - 0.5) @ W2 + 1.0
    >>> net = from_jax(f, jnp.zeros((2, 3)))
    >>> net.layers
    (Dense(3->4), ReLU(), Dense(4->2))
    >>> x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    >>> bool(np.allclose(net(x), f(x), atol=1e-5))
    True
"""

from __future__ import annotations

import bisect
import math

import jax
import jax.numpy as jnp
import numpy as np

from partax import layers as L

__all__ = ["from_jax", "input_axes", "NOT_PIECEWISE_LINEAR"]

#: Primitives that are not piecewise linear on input-dependent data (refused with that reason).
NOT_PIECEWISE_LINEAR = frozenset({
    "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "erf", "erfc", "erf_inv", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sqrt", "rsqrt", "cbrt", "pow",
    "integer_pow", "square", "atan2", "sign", "floor", "ceil", "round", "lgamma", "digamma", "is_finite", "erf_inv",
    "reciprocal", "logaddexp",
})
#: Call primitives inlined by name (jax 0.10 names first), and the parameter holding the body.
_CALLS = {
    "jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr", "call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat2": "jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr",
}
#: Higher-order primitives that are not calls, refused by name on input-dependent values.
_HIGHER_ORDER = {
    "scan": "is a loop, and loops are not supported (unroll the loop in Python, e.g. a for loop over the layers)",
    "while": "is a loop, and loops are not supported (unroll the loop in Python)",
    "cond": "branches on values, which is not supported",
    "switch": "branches on values, which is not supported",
    "reduce_window": ("with a custom reduction is not supported (pool with jax.lax.reduce_window(x, -jnp.inf, "
                      "jax.lax.max, ...) or flax / jnp pooling, which lower to reduce_window_max / reduce_window_sum)"),
    "reduce": "with a custom reduction is not supported (use jnp.sum / jnp.max, which lower to reduce_sum / reduce_max)",
    "custom_transpose_call": "is not supported",
    "custom_lin": "is not supported",
}
_IDENTITY_PRIMS = frozenset({"copy", "copy_p", "optimization_barrier", "stop_gradient", "reduce_precision"})
_TOL = 1e-12


# --- one-dimensional piecewise-linear functions ---------------------------------------------
class _PL:
    """``f(x)`` on the real line: breakpoints ``ts`` (sorted) and pieces ``(slope, intercept)``."""

    __slots__ = ("ts", "pieces")

    def __init__(self, ts, pieces):
        self.ts, self.pieces = tuple(ts), tuple(pieces)

    @staticmethod
    def identity():
        return _PL((), ((1.0, 0.0),))

    @staticmethod
    def const(c):
        return _PL((), ((0.0, float(c)),))

    def piece(self, x):
        return self.pieces[bisect.bisect(self.ts, x)]

    def affine(self, s, o):
        return _PL(self.ts, [(a * s, b * s + o) for a, b in self.pieces]).simplify()

    def simplify(self):
        ts, ps = [], [self.pieces[0]]
        for t, p in zip(self.ts, self.pieces[1:]):
            if _same(p, ps[-1]):
                continue
            ts.append(t)
            ps.append(p)
        return _PL(ts, ps)


class _Bool:
    """A predicate of ``x``: breakpoints ``ts`` and a truth value per interval."""

    __slots__ = ("ts", "vals")

    def __init__(self, ts, vals):
        self.ts, self.vals = tuple(ts), tuple(vals)

    def at(self, x):
        return self.vals[bisect.bisect(self.ts, x)]


def _same(p, q) -> bool:
    return all(abs(u - v) <= _TOL * (1.0 + abs(u) + abs(v)) for u, v in zip(p, q))


def _intervals(ts):
    """``(lo, hi, mid)`` of each interval between breakpoints."""
    edges = [-math.inf, *ts, math.inf]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if math.isinf(lo) and math.isinf(hi):
            mid = 0.0
        elif math.isinf(lo):
            mid = hi - 1.0
        elif math.isinf(hi):
            mid = lo + 1.0
        else:
            mid = 0.5 * (lo + hi)
        out.append((lo, hi, mid))
    return out


def _crossings(ts, pairs):
    """Breakpoints ``ts`` refined by the crossings of each interval's two lines ``pairs[i]``."""
    out = set(ts)
    for (lo, hi, _), ((a1, b1), (a2, b2)) in zip(_intervals(ts), pairs):
        if a1 != a2:
            x = (b2 - b1) / (a1 - a2)
            if lo < x < hi:
                out.add(x)
    return sorted(out)


def _pl_binary(f: _PL, g: _PL, op: str) -> _PL:
    ts = sorted(set(f.ts) | set(g.ts))
    if op in ("max", "min"):
        ts = _crossings(ts, [(f.piece(m), g.piece(m)) for _, _, m in _intervals(ts)])
    pieces = []
    for _, _, m in _intervals(ts):
        p, q = f.piece(m), g.piece(m)
        if op == "add":
            pieces.append((p[0] + q[0], p[1] + q[1]))
        else:
            vp, vq = p[0] * m + p[1], q[0] * m + q[1]
            pieces.append(p if (vp >= vq) == (op == "max") else q)
    return _PL(ts, pieces).simplify()


def _pl_compare(f: _PL, g: _PL, greater: bool) -> _Bool:
    """The predicate ``f > g`` (or ``f < g``); values on the boundary are immaterial for a continuous result."""
    d = _pl_binary(f, g.affine(-1.0, 0.0), "add")
    ts = _crossings(d.ts, [(d.piece(m), (0.0, 0.0)) for _, _, m in _intervals(d.ts)])
    vals = []
    for _, _, m in _intervals(ts):
        a, b = d.piece(m)
        v = a * m + b
        vals.append(v > 0 if greater else v < 0)
    return _Bool(ts, vals)


def _pl_select(pred: _Bool, f_false: _PL, f_true: _PL) -> _PL:
    ts = sorted(set(pred.ts) | set(f_false.ts) | set(f_true.ts))
    pieces = [(f_true if pred.at(m) else f_false).piece(m) for _, _, m in _intervals(ts)]
    return _PL(ts, pieces).simplify()


# --- the layer graph --------------------------------------------------------------------------
class _Node:
    """One layer of the graph being built: ``op`` on ``inputs``, per-example output ``shape``."""

    __slots__ = ("op", "inputs", "params", "shape", "id")
    _count = 0

    def __init__(self, op, inputs, params, shape):
        _Node._count += 1
        self.op, self.inputs, self.params, self.shape, self.id = op, tuple(inputs), params, tuple(shape), _Node._count


class _Sym:
    """An input-dependent array ``fn(gather(node, idx))`` with the batch at axis ``bpos``."""

    __slots__ = ("node", "bpos", "idx", "fn")

    def __init__(self, node, bpos, idx, fn=None):
        self.node, self.bpos, self.idx, self.fn = node, bpos, np.asarray(idx), fn

    def same_base(self, other) -> bool:
        return (self.node is other.node and self.bpos == other.bpos and self.idx.shape == other.idx.shape
                and np.array_equal(self.idx, other.idx))


class _Pred:
    """A boolean array ``pred(gather(node, idx))`` of an input-dependent value."""

    __slots__ = ("base", "pred")

    def __init__(self, base, pred):
        self.base, self.pred = base, pred


class _Relayout(Exception):
    """The input must be read in another axis order (raised once, then the trace restarts)."""

    def __init__(self, axes):
        super().__init__(axes)
        self.axes = tuple(axes)


def _refuse(prim, why, where):
    loc = f" (inside {' > '.join(where)})" if where else ""
    raise ValueError(f"apply_fn: primitive {prim!r}{loc} {why}; partax imports networks of dense / convolution / "
                     "pooling / batch-norm layers with ReLU, leaky ReLU or hard-tanh units")


def _unravel(idx, shape):
    return np.unravel_index(idx, shape) if shape else ()


def _axis_map(sym: _Sym):
    """Canonical axis of each per-example axis of ``sym`` (None: a size-1 axis), or None if the view is
    not a plain transposition of the node's tensor (with size-1 axes added or dropped)."""
    shape, idx = sym.node.shape, sym.idx
    strides = [int(math.prod(shape[k + 1:])) for k in range(len(shape))]
    out, used = [], set()
    if idx.size == 0 or idx.flat[0] != 0:
        return None
    for k, n in enumerate(idx.shape):
        if n == 1:
            out.append(None)
            continue
        step = int(np.take(idx, [1], axis=k).flat[0] - idx.flat[0])
        cands = [a for a in range(len(shape)) if strides[a] == step and shape[a] == n and a not in used]
        if len(cands) != 1:
            return None
        used.add(cands[0])
        out.append(cands[0])
    if any(shape[a] > 1 and a not in used for a in range(len(shape))):
        return None
    return out if np.array_equal(idx, _view_idx(shape, out, idx.shape)) else None


def _fill(amap, shape, sizes):
    """``amap`` with its size-1 axes matched, in order, to the unused size-1 canonical axes."""
    free = [a for a in range(len(shape)) if shape[a] == 1 and a not in amap]
    out = []
    for a, n in zip(amap, sizes):
        if a is None and n == 1 and free:
            a = free.pop(0)
        out.append(a)
    return out


def _view_idx(shape, amap, pshape):
    """The gather index of a view that reads canonical axis ``amap[k]`` along per-example axis ``k``."""
    strides = [int(math.prod(shape[k + 1:])) for k in range(len(shape))]
    idx = np.zeros(pshape, np.int64)
    for k, a in enumerate(amap):
        if a is not None and pshape[k] > 1:
            sh = [1] * len(pshape)
            sh[k] = pshape[k]
            idx = idx + (np.arange(pshape[k]) * strides[a]).reshape(sh)
    return idx


class _Interpreter:
    def __init__(self, B, user_shape, in_axes):
        self.B = B
        self.user_shape = tuple(user_shape)
        self.in_axes = tuple(in_axes)
        self.lowered = {}
        self.input = _Node("input", (), {}, tuple(1 if a is None else user_shape[a] for a in in_axes))

    # -- values ----------------------------------------------------------------------
    def input_value(self):
        amap = [self.in_axes.index(a) if a in self.in_axes else None for a in range(len(self.user_shape))]
        amap = [None if a is None or self.input.shape[a] == 1 else a for a in amap]
        return _Sym(self.input, 0, _view_idx(self.input.shape, amap, self.user_shape))

    def finalize(self, s: _Sym) -> _Sym:
        """``s`` with its elementwise function turned into layers."""
        if s.fn is None:
            return s
        key = (s.node.id, id(s.fn))
        if key not in self.lowered:  # one lowering per function, however many consumers it has
            self.lowered[key] = (self.lower_fn(s.node, s.fn), s.fn)
        return _Sym(self.lowered[key][0], s.bpos, s.idx)

    def channel_affine(self, node, scale, offset):
        C = node.shape[-1] if node.shape else 1
        scale = np.broadcast_to(np.asarray(scale, np.float64), (C,)).copy()
        offset = np.broadcast_to(np.asarray(offset, np.float64), (C,)).copy()
        if np.all(scale == 1) and np.all(offset == 0):
            return node
        return _Node("ca", (node,), {"scale": scale, "offset": offset}, node.shape)

    def lower_fn(self, node, f: _PL):
        if not node.shape:
            raise ValueError("apply_fn: an elementwise function of a scalar per example is not supported")
        for t, p, q in zip(f.ts, f.pieces[:-1], f.pieces[1:]):
            vl, vr = p[0] * t + p[1], q[0] * t + q[1]
            if abs(vl - vr) > 1e-6 * (1.0 + abs(vl) + abs(vr)):
                raise ValueError(f"apply_fn: an elementwise function jumps at {t:g} (from {vl:g} to {vr:g}): it is "
                                 "not continuous, so not piecewise linear")
        ps, ts = f.pieces, f.ts
        if len(ps) == 1:
            return self.channel_affine(node, ps[0][0], ps[0][1])
        if len(ps) == 2:
            t = ts[0]
            (aL, _), (aR, bR) = ps
            v = aR * t + bR
            # a positive factor after a (leaky) ReLU moves in front of it: s relu(z) = relu(s z)
            if aR != 0:
                g = aR if aR > 0 else 1.0
                pre = self.channel_affine(node, g, -t * g)
                site = (_Node("relu", (pre,), {}, pre.shape) if aL == 0 else
                        _Node("leaky", (pre,), {"alpha": aL / aR}, pre.shape))
                return self.channel_affine(site, aR / g, v)
            g = -aL if aL < 0 else 1.0
            pre = self.channel_affine(node, -g, t * g)
            site = _Node("relu", (pre,), {}, pre.shape)
            return self.channel_affine(site, -aL / g, v)
        if len(ps) == 3 and ps[0][0] == 0 and ps[2][0] == 0:
            lo, hi = ts
            a = ps[1][0]
            v0 = ps[0][1]
            site = _Node("hardtanh", (node,), {"lo": lo, "hi": hi}, node.shape)
            return self.channel_affine(site, a, v0 - a * lo)
        slopes = ", ".join(f"{p[0]:g}" for p in ps)
        raise ValueError(f"apply_fn: an elementwise piecewise-linear function with {len(ps)} pieces (slopes {slopes}, "
                         f"breakpoints {', '.join(f'{t:g}' for t in ts)}) is not supported: partax units are ReLU, "
                         "leaky ReLU (two pieces) and hard tanh (three, flat outside)")

    # -- the jaxpr walk ------------------------------------------------------------------
    def run(self, jaxpr, consts, args, where=()):
        env = {}

        def read(v):
            if hasattr(v, "val") and not hasattr(v, "count"):  # a Literal
                return np.asarray(v.val)
            return env[v]

        for v, c in zip(jaxpr.constvars, consts):
            env[v] = np.asarray(c)
        for v, a in zip(jaxpr.invars, args):
            env[v] = a
        for k, eqn in enumerate(jaxpr.eqns):
            vals = [read(v) for v in eqn.invars]
            try:
                outs = self.eqn(eqn, vals, where)
            except ValueError as e:
                msg = str(e)
                later = _nonpl_names(jaxpr.eqns[k:]) - {eqn.primitive.name}
                if later and "not piecewise linear" not in msg and "later" not in msg:
                    raise ValueError(f"{msg}. (The function also applies {', '.join(sorted(later))} later, which is "
                                     "not piecewise linear: softmax, GELU, LayerNorm and attention cannot be imported)"
                                     ) from None
                raise
            for v, o in zip(eqn.outvars, outs):
                if type(v).__name__ != "DropVar":
                    env[v] = o
        return [read(v) for v in jaxpr.outvars]

    def eqn(self, eqn, vals, where):
        name = eqn.primitive.name
        params = eqn.params
        sub = _call_body(eqn)
        if sub is not None:
            inner = sub.jaxpr if hasattr(sub, "jaxpr") else sub
            consts = sub.consts if hasattr(sub, "consts") else ()
            label = params.get("name") or getattr(getattr(inner, "debug_info", None), "func_name", None) or name
            return self.run(inner, consts, vals, (*where, str(label)))
        if not any(isinstance(v, (_Sym, _Pred)) for v in vals):
            out = eqn.primitive.bind(*[jnp.asarray(v) for v in vals], **params)
            return [np.asarray(o) for o in out] if eqn.primitive.multiple_results else [np.asarray(out)]
        if name in NOT_PIECEWISE_LINEAR:
            _refuse(name, "is not piecewise linear", where)
        if name in _HIGHER_ORDER:
            _refuse(name, _HIGHER_ORDER[name], where)
        handler = getattr(self, "p_" + name, None)
        if handler is None:
            _refuse(name, "is not supported on input-dependent values", where)
        return [handler(eqn, vals, where)]

    # -- layout primitives ------------------------------------------------------------------
    def _sym_arg(self, vals, name, where):
        if not isinstance(vals[0], _Sym) or any(isinstance(v, (_Sym, _Pred)) for v in vals[1:]):
            _refuse(name, "is only supported with the input-dependent value as its first operand", where)
        return vals[0]

    def p_convert_element_type(self, eqn, vals, where):
        s = self._sym_arg(vals, "convert_element_type", where)
        if not jnp.issubdtype(eqn.params["new_dtype"], jnp.floating):
            _refuse("convert_element_type", f"to {eqn.params['new_dtype']} is not piecewise linear", where)
        return s

    def _identity(self, eqn, vals, where):
        return self._sym_arg(vals, eqn.primitive.name, where)

    p_copy = p_copy_p = p_optimization_barrier = p_reduce_precision = _identity

    def p_transpose(self, eqn, vals, where):
        s = self._sym_arg(vals, "transpose", where)
        perm = tuple(eqn.params["permutation"])
        bpos = perm.index(s.bpos)
        pe = [a - (a > s.bpos) for a in perm if a != s.bpos]
        return _Sym(s.node, bpos, np.transpose(s.idx, pe), s.fn)

    def _batch_axis(self, shape, name, where):
        hits = [k for k, n in enumerate(shape) if n == self.B]
        if len(hits) != 1:
            _refuse(name, f"gives shape {tuple(shape)}, where the batch axis cannot be told apart", where)
        return hits[0]

    def p_reshape(self, eqn, vals, where):
        s = self._sym_arg(vals, "reshape", where)
        if eqn.params.get("dimensions") is not None:
            _refuse("reshape", "with dimensions is not supported", where)
        new = tuple(eqn.params["new_sizes"])
        old_pe = s.idx.shape
        before = int(math.prod(old_pe[:s.bpos]))
        j = self._batch_axis(new, "reshape", where)
        if int(math.prod(new[:j])) != before:
            _refuse("reshape", f"to {new} mixes the batch axis with the features", where)
        # row-major: per-example elements keep their order around the batch axis
        idx = s.idx.reshape(-1)
        if before > 1 and int(math.prod(old_pe[s.bpos:])) > 1:
            _refuse("reshape", f"to {new} mixes the batch axis with the features", where)
        return _Sym(s.node, j, idx.reshape(new[:j] + new[j + 1:]), s.fn)

    def p_squeeze(self, eqn, vals, where):
        s = self._sym_arg(vals, "squeeze", where)
        dims = sorted(d % (s.idx.ndim + 1) for d in eqn.params["dimensions"])
        if s.bpos in dims:
            _refuse("squeeze", "of the batch axis is not supported", where)
        pe = [d - (d > s.bpos) for d in dims]
        return _Sym(s.node, s.bpos - sum(d < s.bpos for d in dims), np.squeeze(s.idx, tuple(pe)), s.fn)

    def p_pad(self, eqn, vals, where):
        s = self._sym_arg(vals, "pad", where)
        cfg = [tuple(int(v) for v in c) for c in eqn.params["padding_config"]]
        if all(c == (0, 0, 0) for c in cfg):
            return s
        value = self._scalar(vals[1])
        s = self.finalize(s)
        amap = _axis_map(s)
        if amap is None or any(c[2] != 0 or c[0] < 0 or c[1] < 0 for c in cfg) or cfg[s.bpos] != (0, 0, 0):
            _refuse("pad", "other than non-negative edge padding of the spatial axes is not supported", where)
        pads = [(0, 0)] * len(s.node.shape)
        for k, c in enumerate(cfg):
            if k == s.bpos or c[:2] == (0, 0):
                continue
            a = amap[k - (k > s.bpos)]
            if a is None:
                _refuse("pad", "of an axis of size 1 is not supported", where)
            pads[a] = c[:2]
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(s.node.shape, pads))
        node = _Node("pad", (s.node,), {"pads": tuple(pads), "value": value}, shape)
        out_shape = tuple(eqn.outvars[0].aval.shape)
        return _Sym(node, s.bpos, _view_idx(shape, amap, out_shape[:s.bpos] + out_shape[s.bpos + 1:]))

    @staticmethod
    def _unpad(x, fill, name, where):
        """``(source node, extra padding per canonical axis)`` of a padded tensor, checked for ``fill``."""
        if x.node.op != "pad":
            return x.node, ((0, 0),) * len(x.node.shape)
        if x.node.params["value"] != fill:
            _refuse(name, f"after a pad with {x.node.params['value']} (expected {fill}) is not supported", where)
        if x.node.params["pads"][-1] != (0, 0):
            _refuse(name, "after a pad of the channel axis is not supported", where)
        return x.node.inputs[0], x.node.params["pads"]

    def p_expand_dims(self, eqn, vals, where):
        _refuse("expand_dims", "is not supported", where)

    def p_broadcast_in_dim(self, eqn, vals, where):
        s = self._sym_arg(vals, "broadcast_in_dim", where)
        shape = tuple(eqn.params["shape"])
        dims = tuple(int(d) for d in eqn.params["broadcast_dimensions"])
        bpos = dims[s.bpos]
        if shape[bpos] != self.B:
            _refuse("broadcast_in_dim", "of the batch axis is not supported", where)
        full = [1] * len(shape)
        per = [d for k, d in enumerate(dims) if k != s.bpos]
        for k, d in zip(per, range(len(per))):
            full[k] = s.idx.shape[d]
        pe_out = [n for k, n in enumerate(shape) if k != bpos]
        full_pe = [n for k, n in enumerate(full) if k != bpos]
        # operand axes keep their order (broadcast_dimensions is increasing)
        if list(per) != sorted(per):
            _refuse("broadcast_in_dim", "that reorders axes is not supported", where)
        idx = np.broadcast_to(s.idx.reshape(full_pe), pe_out)
        return _Sym(s.node, bpos, np.ascontiguousarray(idx), s.fn)

    # -- elementwise --------------------------------------------------------------------
    def _align(self, eqn, vals, where):
        """Operands as per-example arrays of the output's shape: ``_Sym`` (idx broadcast) or constants."""
        name = eqn.primitive.name
        out_shape = tuple(eqn.outvars[0].aval.shape)
        syms = [v for v in vals if isinstance(v, (_Sym, _Pred))]
        bpos = (syms[0].base if isinstance(syms[0], _Pred) else syms[0]).bpos
        if any((v.base if isinstance(v, _Pred) else v).bpos != bpos for v in syms):
            _refuse(name, "of arrays with their batch axes in different places is not supported", where)
        pe_shape = out_shape[:bpos] + out_shape[bpos + 1:]
        out = []
        for v in vals:
            if isinstance(v, _Sym):
                if v.idx.shape != pe_shape:
                    v = _Sym(v.node, v.bpos, np.ascontiguousarray(np.broadcast_to(v.idx, pe_shape)), v.fn)
                out.append(v)
            elif isinstance(v, _Pred):
                if v.base.idx.shape != pe_shape:
                    _refuse(name, "of a broadcast comparison is not supported", where)
                out.append(v)
            else:
                c = np.asarray(v)
                if c.ndim == 0:
                    out.append(np.broadcast_to(c, pe_shape))
                    continue
                c = np.broadcast_to(c, out_shape)
                c0 = np.take(c, [0], axis=bpos)
                if not np.array_equal(c, np.broadcast_to(c0, out_shape)):
                    _refuse(name, "with a constant that differs across the batch is not supported", where)
                out.append(np.take(c, 0, axis=bpos))
        return out

    @staticmethod
    def _scalar(c):
        c = np.asarray(c)
        if c.size and np.all(c == c.flat[0]):
            return float(c.flat[0])
        return None

    def _fn_of(self, v, base):
        if isinstance(v, _Sym):
            return v.fn or _PL.identity()
        return _PL.const(self._scalar(v))

    def _elementwise(self, eqn, vals, where, op):
        vals = self._align(eqn, vals, where)
        syms = [v for v in vals if isinstance(v, _Sym)]
        consts = [v for v in vals if not isinstance(v, (_Sym, _Pred))]
        base = syms[0]
        if all(s.same_base(base) for s in syms) and all(self._scalar(c) is not None for c in consts):
            fs = [self._fn_of(v, base) for v in vals]
            return _Sym(base.node, base.bpos, base.idx, op(*fs))
        return None

    def _per_channel(self, sym, c, name, where):
        """The constant ``c`` (per-example array over ``sym``'s view) as one value per channel of its node."""
        node = sym.node
        size = int(math.prod(node.shape))
        canon = np.full(size, np.nan)
        flat_idx, flat_c = sym.idx.reshape(-1), np.asarray(c, np.float64).reshape(-1)
        canon[flat_idx] = flat_c
        if not np.array_equal(canon[flat_idx], flat_c):
            _refuse(name, "with a constant that differs between copies of one value is not supported", where)
        C = node.shape[-1] if node.shape else 1
        grid = canon.reshape(-1, C)
        chan = np.zeros(C)
        for ch in range(C):
            col = grid[:, ch]
            col = col[~np.isnan(col)]
            if col.size and not np.all(col == col[0]):
                _refuse(name, "with a constant that varies over spatial positions (not one value per channel) is "
                        "not supported", where)
            chan[ch] = col[0] if col.size else 0.0
        return chan

    def _affine_const(self, eqn, vals, where, kind):
        """``sym + c``, ``sym * c`` with a per-element constant ``c``: a per-channel affine layer."""
        name = eqn.primitive.name
        vals = self._align(eqn, vals, where)
        i = 0 if isinstance(vals[0], _Sym) else 1
        s, c = self.finalize(vals[i]), vals[1 - i]
        chan = self._per_channel(s, c, name, where)
        if kind == "add":
            node = self.channel_affine(s.node, 1.0, chan)
        elif kind == "sub":
            node = self.channel_affine(s.node, 1.0, -chan) if i == 0 else self.channel_affine(s.node, -1.0, chan)
        elif kind == "mul":
            node = self.channel_affine(s.node, chan, 0.0)
        else:
            if i == 1:
                _refuse("div", "by an input-dependent value is not piecewise linear", where)
            node = self.channel_affine(s.node, 1.0 / chan, 0.0)
        return _Sym(node, s.bpos, s.idx)

    def _add_syms(self, a: _Sym, b: _Sym, where, name):
        a, b = self.finalize(a), self.finalize(b)
        if not (a.bpos == b.bpos and np.array_equal(a.idx, b.idx)) or a.node.shape != b.node.shape:
            _refuse(name, "of two input-dependent tensors in different layouts is not supported", where)
        return _Sym(_Node("add", (a.node, b.node), {}, a.node.shape), a.bpos, a.idx)

    def p_add(self, eqn, vals, where, name="add"):
        r = self._elementwise(eqn, vals, where, lambda f, g: _pl_binary(f, g, "add"))
        if r is not None:
            return r
        v = self._align(eqn, vals, where)
        if all(isinstance(x, _Sym) for x in v):
            return self._add_syms(v[0], v[1], where, name)
        return self._affine_const(eqn, vals, where, "add")

    p_add_any = p_add

    def p_sub(self, eqn, vals, where):
        r = self._elementwise(eqn, vals, where, lambda f, g: _pl_binary(f, g.affine(-1.0, 0.0), "add"))
        if r is not None:
            return r
        v = self._align(eqn, vals, where)
        if all(isinstance(x, _Sym) for x in v):
            b = self.finalize(v[1])
            return self._add_syms(v[0], _Sym(self.channel_affine(b.node, -1.0, 0.0), b.bpos, b.idx), where, "sub")
        return self._affine_const(eqn, vals, where, "sub")

    def p_neg(self, eqn, vals, where):
        s = vals[0]
        return _Sym(s.node, s.bpos, s.idx, (s.fn or _PL.identity()).affine(-1.0, 0.0))

    def p_abs(self, eqn, vals, where):
        s = vals[0]
        f = s.fn or _PL.identity()
        return _Sym(s.node, s.bpos, s.idx, _pl_binary(f, f.affine(-1.0, 0.0), "max"))

    def p_mul(self, eqn, vals, where):
        if all(isinstance(v, _Sym) for v in vals):
            _refuse("mul", "of two input-dependent values is not piecewise linear", where)
        v = self._align(eqn, vals, where)
        i = 0 if isinstance(v[0], _Sym) else 1
        c = self._scalar(v[1 - i])
        if c is not None:
            s = v[i]
            return _Sym(s.node, s.bpos, s.idx, (s.fn or _PL.identity()).affine(c, 0.0))
        return self._affine_const(eqn, vals, where, "mul")

    def p_div(self, eqn, vals, where):
        if not isinstance(vals[0], _Sym) or isinstance(vals[1], (_Sym, _Pred)):
            _refuse("div", "by an input-dependent value is not piecewise linear", where)
        v = self._align(eqn, vals, where)
        c = self._scalar(v[1])
        if c is not None:
            s = v[0]
            return _Sym(s.node, s.bpos, s.idx, (s.fn or _PL.identity()).affine(1.0 / c, 0.0))
        return self._affine_const(eqn, vals, where, "div")

    def _maxmin(self, eqn, vals, where, op):
        r = self._elementwise(eqn, vals, where, lambda f, g: _pl_binary(f, g, op))
        if r is None:
            _refuse(op, "of two different input-dependent tensors, or with a non-scalar constant, is not supported",
                    where)
        return r

    def p_max(self, eqn, vals, where):
        return self._maxmin(eqn, vals, where, "max")

    def p_min(self, eqn, vals, where):
        return self._maxmin(eqn, vals, where, "min")

    def p_clamp(self, eqn, vals, where):
        lo, x, hi = vals
        if not isinstance(x, _Sym) or isinstance(lo, _Sym) or isinstance(hi, _Sym):
            _refuse("clamp", "with input-dependent bounds is not supported", where)
        lo_s, hi_s = self._scalar(lo), self._scalar(hi)
        if lo_s is None or hi_s is None:
            _refuse("clamp", "with non-scalar bounds is not supported", where)
        f = x.fn or _PL.identity()
        f = _pl_binary(_pl_binary(f, _PL.const(lo_s), "max"), _PL.const(hi_s), "min")
        return _Sym(x.node, x.bpos, x.idx, f)

    def _compare(self, eqn, vals, where, greater):
        name = eqn.primitive.name
        v = self._align(eqn, vals, where)
        syms = [x for x in v if isinstance(x, _Sym)]
        if isinstance(v[0], _Pred) or isinstance(v[1], _Pred):
            _refuse(name, "of boolean values is not supported", where)
        base = syms[0]
        if not all(s.same_base(base) for s in syms) or any(
                not isinstance(x, _Sym) and self._scalar(x) is None for x in v):
            _refuse(name, "between different input-dependent tensors, or with a non-scalar constant, is not "
                    "supported", where)
        f, g = (self._fn_of(x, base) for x in v)
        return _Pred(_Sym(base.node, base.bpos, base.idx), _pl_compare(f, g, greater))

    def p_gt(self, eqn, vals, where):
        return self._compare(eqn, vals, where, True)

    p_ge = p_gt

    def p_lt(self, eqn, vals, where):
        return self._compare(eqn, vals, where, False)

    p_le = p_lt

    def p_select_n(self, eqn, vals, where):
        pred, *cases = vals
        if len(cases) != 2 or not isinstance(pred, _Pred):
            _refuse("select_n", "is only supported as where(comparison of an input-dependent value, ., .)", where)
        v = self._align(eqn, vals, where)
        pred, cases = v[0], v[1:]
        base = pred.base
        for c in cases:
            if (isinstance(c, _Sym) and not c.same_base(base)) or (
                    not isinstance(c, _Sym) and self._scalar(c) is None):
                _refuse("select_n", "choosing between different tensors, or non-scalar constants, is not supported",
                        where)
        f0, f1 = (self._fn_of(c, base) for c in cases)
        return _Sym(base.node, base.bpos, base.idx, _pl_select(pred.pred, f0, f1))

    # -- linear maps -------------------------------------------------------------------
    def p_dot_general(self, eqn, vals, where):
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        a, b = vals
        if isinstance(a, _Sym) and isinstance(b, _Sym):
            _refuse("dot_general", "of two input-dependent operands (as in attention) is not piecewise linear", where)
        if isinstance(a, _Pred) or isinstance(b, _Pred) or lb or rb:
            _refuse("dot_general", "with batch dimensions is not supported", where)
        x_is_lhs = isinstance(a, _Sym)
        s, W = (a, np.asarray(b, np.float64)) if x_is_lhs else (b, np.asarray(a, np.float64))
        xc, wc = (tuple(lc), tuple(rc)) if x_is_lhs else (tuple(rc), tuple(lc))
        s = self.finalize(s)
        if s.bpos in xc:
            _refuse("dot_general", "contracting the batch axis is not supported", where)
        w_free = [k for k in range(W.ndim) if k not in wc]
        Wm = np.transpose(W, list(wc) + w_free)
        F = int(math.prod(W.shape[k] for k in w_free))
        Wm = Wm.reshape(-1, F)
        x_pe_axes = [k for k in range(s.idx.ndim + 1) if k != s.bpos]  # jaxpr axis of each per-example axis
        kx = [x_pe_axes.index(k) for k in xc]
        free = [d for d in range(s.idx.ndim) if d not in kx]
        x_free_full = [k for k in range(s.idx.ndim + 1) if k not in xc]  # jaxpr free axes of x, incl. batch
        w_free_shape = [W.shape[k] for k in w_free]
        if not free:  # contract every per-example axis: flatten, then one dense layer
            node = s.node
            if len(node.shape) != 1:
                node = _Node("flatten", (node,), {}, (int(math.prod(node.shape)),))
            D = node.shape[0]
            Wd = np.zeros((D, F))
            np.add.at(Wd, np.transpose(s.idx, kx).reshape(-1), Wm)
            dense = _Node("dense", (node,), {"W": Wd, "b": np.zeros(F)}, (F,))
            x_out = [None if k != s.bpos else "B" for k in x_free_full]
            axes = x_out + ["F"] * len(w_free) if x_is_lhs else ["F"] * len(w_free) + x_out
            bpos = axes.index("B")
            return _Sym(dense, bpos, np.arange(F).reshape(w_free_shape))
        amap = _axis_map(s)
        if amap is not None:
            amap = _fill(amap, s.node.shape, s.idx.shape)
        C = s.node.shape[-1] if s.node.shape else 0
        if amap is None or len(kx) != 1 or amap[kx[0]] != len(s.node.shape) - 1 or s.idx.shape[kx[0]] != C:
            _refuse("dot_general", "contracting axes other than all features or the channel axis is not supported",
                    where)
        dense = _Node("dense", (s.node,), {"W": Wm, "b": np.zeros(F)}, s.node.shape[:-1] + (F,))
        # output axes: x's free axes (batch included), then W's free axes (or the reverse)
        out_shape = self._out_pe_shape(eqn)
        x_map = [amap[d] for d in free]
        w_map = [len(s.node.shape) - 1] if len(w_free) == 1 else []
        if len(w_free) > 1:
            _refuse("dot_general", "with a weight of more than one output axis on a channel axis is not supported",
                    where)
        pe_map = x_map + w_map if x_is_lhs else w_map + x_map
        bpos = (x_free_full.index(s.bpos) if x_is_lhs else len(w_free) + x_free_full.index(s.bpos))
        return _Sym(dense, bpos, _view_idx(dense.shape, pe_map, out_shape(bpos)))

    def _out_pe_shape(self, eqn):
        shape = tuple(eqn.outvars[0].aval.shape)
        return lambda bpos: shape[:bpos] + shape[bpos + 1:]

    def p_conv_general_dilated(self, eqn, vals, where):
        p = eqn.params
        x, K = vals
        if not isinstance(x, _Sym) or isinstance(K, (_Sym, _Pred)):
            _refuse("conv_general_dilated", "with an input-dependent kernel is not piecewise linear", where)
        if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
            _refuse("conv_general_dilated", "with input dilation (a transposed convolution) or batch groups is not "
                    "supported", where)
        dn = p["dimension_numbers"]
        lhs, rhs, outs = tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)
        x = self.finalize(x)
        if lhs[0] != x.bpos:
            _refuse("conv_general_dilated", "whose batch dimension is not the batch axis is not supported", where)
        amap = _axis_map(x)
        pe = lambda k: k - (k > x.bpos)  # noqa: E731
        nsp = len(lhs) - 2
        order = [pe(k) for k in (*lhs[2:], lhs[1])]
        if amap is not None:
            amap = _fill(amap, x.node.shape, x.idx.shape)
        want = [amap[k] for k in order] if amap is not None else None
        src = x.node.inputs[0] if x.node.op == "pad" else x.node
        canon_ok = amap is not None and want == list(range(nsp + 1)) and len(x.node.shape) == nsp + 1
        if not canon_ok:
            others = [a for a in range(len(x.node.shape)) if amap is not None and a not in want]
            if src is self.input and amap is not None and all(x.node.shape[a] == 1 for a in others):
                raise _Relayout([None if w is None else self.in_axes[w] for w in want])
            _refuse("conv_general_dilated", "on a tensor whose spatial / channel axes are not those of the layers "
                    "before it is not supported", where)
        if any(lo < 0 or hi < 0 for lo, hi in p["padding"]):
            _refuse("conv_general_dilated", "with negative padding is not supported", where)
        kernel = np.transpose(np.asarray(K, np.float64), (*rhs[2:], rhs[1], rhs[0]))
        out_shape = tuple(eqn.outvars[0].aval.shape)
        osp = tuple(out_shape[k] for k in outs[2:])
        src, extra = self._unpad(x, 0.0, "conv_general_dilated", where)  # a zero pad joins the conv's padding
        node = _Node("conv", (src,), {
            "kernel": kernel, "bias": np.zeros(kernel.shape[-1]), "strides": tuple(p["window_strides"]),
            "padding": tuple((int(q[0]) + e[0], int(q[1]) + e[1]) for q, e in zip(p["padding"], extra)),
            "dilation": tuple(p["rhs_dilation"]), "groups": int(p["feature_group_count"])},
            (*osp, kernel.shape[-1]))
        pe_map = [None] * (len(out_shape) - 1)
        ob = outs[0]
        ope = lambda k: k - (k > ob)  # noqa: E731
        for i, k in enumerate(outs[2:]):
            pe_map[ope(k)] = i
        pe_map[ope(outs[1])] = nsp
        return _Sym(node, ob, _view_idx(node.shape, pe_map, out_shape[:ob] + out_shape[ob + 1:]))

    def _pool(self, eqn, vals, where, kind):
        name = eqn.primitive.name
        p = eqn.params
        x = self.finalize(self._sym_arg(vals, name, where))
        if any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
            _refuse(name, "with dilation is not supported", where)
        amap = _axis_map(x)
        if amap is None:
            _refuse(name, "on a tensor whose axes are not those of the layers before it is not supported", where)
        nsp = len(x.node.shape) - 1
        window, strides, pad = [1] * nsp, [1] * nsp, [(0, 0)] * nsp
        for k, (w, st, pd) in enumerate(zip(p["window_dimensions"], p["window_strides"], p["padding"])):
            trivial = w == 1 and st == 1 and tuple(pd) == (0, 0)
            if k == x.bpos or amap[k - (k > x.bpos)] is None or amap[k - (k > x.bpos)] == nsp:
                if not trivial:
                    _refuse(name, "over the batch or channel axis is not supported", where)
                continue
            a = amap[k - (k > x.bpos)]
            window[a], strides[a], pad[a] = int(w), int(st), (int(pd[0]), int(pd[1]))
        if nsp == 0 or all(w == 1 for w in window) and all(s == 1 for s in strides) and x.node.op != "pad":
            return x
        return self._emit_pool(x, kind, window, strides, pad, eqn, where)

    def _emit_pool(self, x, kind, window, strides, pad, eqn, where):
        nsp = len(window)
        osp = tuple((x.node.shape[a] + pad[a][0] + pad[a][1] - window[a]) // strides[a] + 1 for a in range(nsp))
        src, extra = self._unpad(x, 0.0 if kind == "sum" else -math.inf, eqn.primitive.name, where)
        pad = [(lo + e[0], hi + e[1]) for (lo, hi), e in zip(pad, extra)]
        node = _Node("avgpool" if kind == "sum" else "maxpool", (src,),
                     {"window": tuple(window), "strides": tuple(strides), "padding": tuple(pad)},
                     (*osp, x.node.shape[-1]))
        if kind == "sum":
            node = self.channel_affine(node, float(math.prod(window)), 0.0)
        amap = _axis_map(x)
        out_shape = tuple(eqn.outvars[0].aval.shape)
        pe_shape = out_shape[:x.bpos] + out_shape[x.bpos + 1:]
        return _Sym(node, x.bpos, _view_idx(node.shape, amap, pe_shape))

    def p_reduce_window_max(self, eqn, vals, where):
        return self._pool(eqn, vals, where, "max")

    def p_reduce_window_sum(self, eqn, vals, where):
        return self._pool(eqn, vals, where, "sum")

    def p_reduce_sum(self, eqn, vals, where):
        x = self.finalize(self._sym_arg(vals, "reduce_sum", where))
        axes = tuple(eqn.params["axes"])
        amap = _axis_map(x)
        nsp = len(x.node.shape) - 1
        if x.bpos in axes or amap is None:
            _refuse("reduce_sum", "over the batch axis, or of a reordered tensor, is not supported", where)
        reduced = {amap[k - (k > x.bpos)] for k in axes} - {None}
        big = {a for a, n in enumerate(x.node.shape) if n > 1}
        kept = [k for k in range(x.idx.ndim + 1) if k not in axes]
        out_shape = tuple(eqn.outvars[0].aval.shape)
        bpos = kept.index(x.bpos)
        pe_out = out_shape[:bpos] + out_shape[bpos + 1:]
        if nsp in reduced and big <= reduced:  # everything: flatten, then a dense layer of ones
            node = x.node
            if len(node.shape) != 1:
                node = _Node("flatten", (node,), {}, (int(math.prod(node.shape)),))
            dense = _Node("dense", (node,), {"W": np.ones((node.shape[0], 1)), "b": np.zeros(1)}, (1,))
            return _Sym(dense, bpos, np.zeros(pe_out, np.int64))
        if nsp in reduced and reduced == {nsp}:  # the channels only: a dense layer of ones on the last axis
            dense = _Node("dense", (x.node,), {"W": np.ones((x.node.shape[-1], 1)), "b": np.zeros(1)},
                          x.node.shape[:-1] + (1,))
            pe_map = [amap[k - (k > x.bpos)] for k in kept if k != x.bpos]
            return _Sym(dense, bpos, _view_idx(dense.shape, pe_map, pe_out))
        if nsp in reduced:
            _refuse("reduce_sum", "over the channel axis and some (not all) spatial axes is not supported", where)
        window = [1] * nsp
        for a in reduced:
            window[a] = x.node.shape[a]
        if all(w == 1 for w in window):
            pe = tuple(k - (k > x.bpos) for k in axes)
            return _Sym(x.node, x.bpos - sum(k < x.bpos for k in axes), np.squeeze(x.idx, pe), x.fn)
        node = _Node("avgpool", (x.node,), {"window": tuple(window), "strides": tuple(window),
                                            "padding": ((0, 0),) * nsp},
                     tuple(1 if window[a] > 1 else x.node.shape[a] for a in range(nsp)) + (x.node.shape[-1],))
        node = self.channel_affine(node, float(math.prod(window)), 0.0)
        pe_map = [amap[k - (k > x.bpos)] for k in kept if k != x.bpos]
        return _Sym(node, bpos, _view_idx(node.shape, pe_map, pe_out))


def _nonpl_names(eqns) -> set:
    out = set()
    for e in eqns:
        if e.primitive.name in NOT_PIECEWISE_LINEAR:
            out.add(e.primitive.name)
        sub = _call_body(e)
        if sub is not None:
            out |= _nonpl_names((sub.jaxpr if hasattr(sub, "jaxpr") else sub).eqns)
    return out


def _call_body(eqn):
    """The body (a ``Jaxpr`` or ``ClosedJaxpr``) of a call primitive to inline, else ``None``."""
    key = _CALLS.get(eqn.primitive.name)
    return None if key is None else eqn.params.get(key)


# --- from the graph to a sequence of layers -------------------------------------------------
def _ancestors(node) -> dict:
    seen, stack = {}, [node]
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen[n.id] = n
        stack.extend(n.inputs)
    return seen


def _chain(end, start) -> list:
    """The IR layers from ``start`` (exclusive) to ``end`` (inclusive); residual blocks nested."""
    seq, node = [], end
    while node is not start:
        if node.op == "input":
            raise ValueError("apply_fn: its graph is not a sequence of layers and residual blocks (a branch "
                             "joins the main path where partax cannot express it)")
        if node.op == "pad":
            raise ValueError("apply_fn: primitive 'pad' is only supported right before a convolution (zero "
                             "padding) or a pooling (-inf for max, 0 for average)")
        if node.op == "add":
            a, b = node.inputs
            common = set(_ancestors(a)) & set(_ancestors(b))
            fork = max((n for n in _ancestors(a).values() if n.id in common), key=lambda n: n.id)
            pa, pb = _fold(_chain(a, fork)), _fold(_chain(b, fork))
            seq.append(("residual", *_residual(pa, pb)))
            node = fork
        else:
            seq.append((node.op, node.params))
            node = node.inputs[0]
    return seq[::-1]


def _is_site(item) -> bool:
    return item[0] in ("relu", "leaky", "hardtanh", "maxpool", "residual")


def _shortcut_of(path):
    if not path:
        return None, True
    if len(path) == 1 and path[0][0] in ("dense", "conv"):
        return path[0], True
    if len(path) == 1 and path[0][0] == "ca":
        return ("ca_shortcut", path[0][1]), True
    return None, False


def _residual(pa, pb):
    sa, oka = _shortcut_of(pa)
    sb, okb = _shortcut_of(pb)
    if oka and (pb or not okb):
        shortcut, body = sa, pb
    elif okb:
        shortcut, body = sb, pa
    else:
        raise ValueError("apply_fn: an add of two branches that both hold several layers is not supported: a "
                         "residual block is h + f(h), with an identity or single linear layer on the shortcut")
    if not body:
        body = [("ca", {"scale": np.array([1.0]), "offset": np.array([0.0]), "broadcast": True})]
    return body, shortcut


def _fold(seq) -> list:
    """Merges per-channel affine maps into the dense / convolution before them, drops identities."""
    out = []
    for item in seq:
        op, params = item[0], item[1]
        if op == "residual":
            out.append(item)
        elif op == "ca":
            s, o = params["scale"], params["offset"]
            if out and out[-1][0] == "ca":
                q = out.pop()[1]
                s, o = q["scale"] * s, q["offset"] * s + o
            if out and out[-1][0] in ("dense", "conv"):
                kind, q = out.pop()
                w = "W" if kind == "dense" else "kernel"
                b = "b" if kind == "dense" else "bias"
                q = dict(q)
                q[w], q[b] = q[w] * s, q[b] * s + o
                out.append((kind, q))
                continue
            if np.all(s == 1) and np.all(o == 0):
                continue
            out.append(("ca", {"scale": s, "offset": o}))
        elif op == "dense" and out and out[-1][0] == "dense":
            q = out.pop()[1]
            out.append(("dense", {"W": q["W"] @ params["W"], "b": q["b"] @ params["W"] + params["b"]}))
        else:
            out.append(item)
    return out


def _to_layers(seq, dtype, shape):
    def arr(a):
        return np.asarray(a, dtype)

    out = []
    for item in seq:
        op = item[0]
        if op == "residual":
            body, shortcut = item[1], item[2]
            inner = _to_layers(body, dtype, shape)
            sc = None
            if shortcut is not None:
                sc = _to_layers([shortcut], dtype, shape)[0]
            out.append(L.Residual(tuple(inner), sc))
            shape = tuple(out[-1].output_shape(shape))
            continue
        p = item[1]
        if op == "dense":
            out.append(L.Dense(arr(p["W"]), arr(p["b"])))
        elif op == "conv":
            out.append(L.Conv(arr(p["kernel"]), arr(p["bias"]), p["strides"], p["padding"], p["dilation"],
                              p["groups"]))
        elif op == "ca_shortcut":  # a per-channel scale on a shortcut: a depthwise 1x1 convolution / diagonal
            C = len(p["scale"])
            if len(shape) == 1:
                out.append(L.Dense(arr(np.diag(p["scale"])), arr(p["offset"])))
            else:
                k = np.zeros((1,) * (len(shape) - 1) + (1, C))
                k[..., 0, :] = p["scale"]
                out.append(L.Conv(arr(k), arr(p["offset"]), groups=C))
        elif op == "ca":
            C = shape[-1]
            s = np.broadcast_to(p["scale"], (C,))
            o = np.broadcast_to(p["offset"], (C,))
            out.append(L.BatchNorm(arr(np.zeros(C)), arr(np.ones(C)), arr(s), arr(o), eps=0.0))
        elif op == "avgpool":
            out.append(L.AvgPool(p["window"], p["strides"], p["padding"]))
        elif op == "maxpool":
            out.append(L.MaxPool(p["window"], p["strides"], p["padding"]))
        elif op == "flatten":
            out.append(L.Flatten())
        elif op == "relu":
            out.append(L.ReLU())
        elif op == "leaky":
            out.append(L.LeakyReLU(p["alpha"]))
        elif op == "hardtanh":
            out.append(L.HardTanh(p["lo"], p["hi"]))
        else:  # pragma: no cover - every op the interpreter makes is listed above
            raise AssertionError(op)
        shape = tuple(out[-1].output_shape(shape))
    return out


def _pick_batch(closed, n0) -> int:
    dims = set()

    def walk(jaxpr):
        for v in (*jaxpr.invars, *jaxpr.constvars, *jaxpr.outvars):
            dims.update(getattr(getattr(v, "aval", None), "shape", ()) or ())
        for e in jaxpr.eqns:
            for v in (*e.invars, *e.outvars):
                dims.update(getattr(getattr(v, "aval", None), "shape", ()) or ())
            sub = _call_body(e)
            if sub is not None:
                walk(sub.jaxpr if hasattr(sub, "jaxpr") else sub)

    walk(closed.jaxpr)
    dims.discard(n0)
    B = 2
    while B in dims or B == n0:
        B += 1
    return B


def _trace(apply_fn, example_input):
    x = np.asarray(example_input)
    if x.ndim < 2:
        raise ValueError(f"example_input: expected a batch (N, *input_shape) with N >= 1, got shape {x.shape} "
                         "(for a function of one example, pass batched=False)")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    try:
        closed = jax.make_jaxpr(apply_fn)(jnp.asarray(x))
    except Exception as e:
        raise ValueError(f"apply_fn: could not be traced on example_input of shape {x.shape}: {e}") from e
    B = _pick_batch(closed, x.shape[0])
    xb = jnp.zeros((B, *x.shape[1:]), x.dtype)
    try:
        closed = jax.make_jaxpr(apply_fn)(xb)
    except Exception as e:
        raise ValueError(f"apply_fn: could not be traced on a batch of {B} inputs of shape {x.shape[1:]} (it must "
                         f"accept any batch size): {e}") from e
    if len(closed.jaxpr.invars) != 1 or len(closed.jaxpr.outvars) != 1:
        raise ValueError("apply_fn: expected a function of one array returning one array, got "
                         f"{len(closed.jaxpr.invars)} inputs and {len(closed.jaxpr.outvars)} outputs")
    return closed, B, x


def _import(closed, B, user_shape, in_axes):
    for a in range(len(user_shape)):
        if a not in in_axes and user_shape[a] != 1:
            raise ValueError(f"apply_fn: input axis {a + 1} (of size {user_shape[a]}) is dropped by the function")
    interp = _Interpreter(B, user_shape, in_axes)
    (out,) = interp.run(closed.jaxpr, closed.consts, [interp.input_value()])
    if isinstance(out, _Pred):
        raise ValueError("apply_fn: returns booleans, not a piecewise-linear function")
    if not isinstance(out, _Sym):
        raise ValueError("apply_fn: its output does not depend on its input")
    out = interp.finalize(out)
    if out.idx.ndim > 1:
        raise ValueError(f"apply_fn: expected outputs of shape (N, d) (logits), got per-example shape {out.idx.shape}; "
                         "flatten them in the function")
    node = out.node
    if len(node.shape) != 1:
        node = _Node("flatten", (node,), {}, (int(math.prod(node.shape)),))
    idx = out.idx.reshape(-1)
    D, F = node.shape[0], idx.size
    if not np.array_equal(idx, np.arange(D)):
        W = np.zeros((D, F))
        W[idx, np.arange(F)] = 1.0
        node = _Node("dense", (node,), {"W": W, "b": np.zeros(F)}, (F,))
    seq = _fold(_chain(node, interp.input))
    if not seq or _is_site(seq[-1]):  # the outputs are an affine map after the last code site
        seq.append(("dense", {"W": np.eye(F), "b": np.zeros(F)}))
    return seq, interp.input.shape


def input_axes(apply_fn, example_input, *, batched: bool = True) -> tuple:
    """The axes of ``example_input`` (batch first) in the order the imported net reads them.

    Args:
      apply_fn: as for :func:`from_jax`.
      example_input: as for :func:`from_jax`.
      batched: as for :func:`from_jax`.

    Returns:
      A tuple of axes of the batched input: ``x.transpose(axes).reshape(N, *net.input_shape)``
      is what the net of :func:`from_jax` takes (``(0, 2, 3, 1)`` for a channels-first 2D
      convolution net).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> k = jnp.ones((4, 3, 3, 3))  # OIHW
      >>> f = lambda x: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID").reshape(x.shape[0], -1)
      >>> input_axes(f, jnp.zeros((2, 3, 5, 5)))
      (0, 2, 3, 1)
    """
    return _prepare(apply_fn, example_input, batched)[2]


def _prepare(apply_fn, example_input, batched):
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
    if not batched:
        apply_fn = jax.vmap(apply_fn)
        example_input = np.asarray(example_input)[None]
    closed, B, x = _trace(apply_fn, example_input)
    axes = tuple(range(x.ndim - 1))
    for _ in range(2):
        try:
            seq, shape = _import(closed, B, x.shape[1:], axes)
            used = [a for a in axes if a is not None]
            perm = (0, *(a + 1 for a in used), *(a + 1 for a in range(x.ndim - 1) if a not in used))
            return seq, shape, perm, apply_fn, x, closed
        except _Relayout as r:
            if r.axes == axes:
                raise ValueError("apply_fn: its convolution reads the input in an order partax cannot express")
            axes = r.axes
    raise ValueError("apply_fn: its convolutions read the input in two different axis orders")


def from_jax(apply_fn, example_input, *, batched: bool = True, check: bool = True, rtol: float = 1e-4):
    """A partax :class:`~partax.Net` computing the same function as a JAX function.

    Args:
      apply_fn: a function of a batch ``x`` of shape ``(N, *shape)`` returning logits ``(N, d)``, with
        the parameters closed over (``lambda x: model.apply(params, x)``; an Equinox module, or
        ``jax.vmap(module)``). It must accept any batch size.
      example_input: an array ``(N, *shape)`` (floating; its values do not matter).
      batched: False if ``apply_fn`` takes one example ``shape`` (it is vmapped, and
        ``example_input`` is one example).
      check: compare the net with ``apply_fn`` on random inputs and raise on a mismatch.
      rtol: the tolerance of that check, relative to each output's rounding scale (the size of
        the terms summed to make it, layer by layer: strict for tiny outputs too).

    Returns:
      An unstacked :class:`~partax.Net` of ``partax.layers`` in the dtype of the function's
      parameters. Its inputs are channels-last: a function whose convolutions read channels-first
      data gives a net on ``x.transpose(input_axes(apply_fn, example_input))``.

    Raises:
      ValueError: naming the primitive and why (not piecewise linear / not supported), for a
        function partax cannot represent exactly; or if the check fails.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> k = jax.random.normal(jax.random.key(0), (3, 3, 1, 4))  # HWIO
      >>> def f(x):
      ...     h = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
      ...     h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
      ...     return h.reshape(h.shape[0], -1)
      >>> from_jax(f, jnp.zeros((2, 6, 6, 1))).layers
      (Conv(3x3, 1->4, padding 1), ReLU(), MaxPool(2x2), Flatten())
    """
    from partax.nets import sequential

    seq, shape, axes, fn, x, closed = _prepare(apply_fn, example_input, batched)
    dtype = _param_dtype(closed, x)
    net = sequential(_to_layers(seq, dtype, shape), shape)
    if check:
        _check(net, fn, x, axes, rtol)
    return net


def _param_dtype(closed, x):
    for c in closed.consts:
        if jnp.issubdtype(jnp.asarray(c).dtype, jnp.floating):
            return np.dtype(jnp.asarray(c).dtype)
    return np.dtype(x.dtype) if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float32)


def _check(net, fn, x, axes, rtol):
    rng = np.random.default_rng(0)
    n = max(4, min(16, x.shape[0]))
    xs = rng.normal(size=(n, *x.shape[1:])).astype(x.dtype)
    ref = np.asarray(jax.jit(fn)(jnp.asarray(xs)), np.float64).reshape(n, -1)
    got = np.asarray(jax.jit(lambda v: net(v))(jnp.asarray(np.transpose(xs, axes).reshape(n, *net.input_shape))),
                     np.float64)
    got = got.reshape(n, -1)
    xs_net = jnp.asarray(np.transpose(xs, axes).reshape(n, *net.input_shape))
    scale = np.asarray(jax.jit(lambda v: _output_scale(net, v))(xs_net), np.float64).reshape(n, -1)
    diff = np.abs(ref - got)
    err = float(np.max(diff)) if ref.size else 0.0
    if not np.all(np.isfinite(diff)) or np.any(diff > rtol * scale):
        worst = float(np.max(diff / np.maximum(scale, np.finfo(np.float64).tiny))) if ref.size else 0.0
        raise ValueError(f"apply_fn: the imported net differs from apply_fn by {err:.3g} on random inputs ({worst:.3g} "
                         f"of the outputs' rounding scale, rtol={rtol:g}; the function uses an operation partax read "
                         "wrongly; please report it)")


def _output_scale(net, x):
    """Per output, the size of the terms summed to make it (``|A| s + |c|`` layer by layer from
    ``s = |x|``, carried through the code sites): the scale of a correct import's rounding error.
    Relative to it, and not to the outputs, the check stays strict for tiny outputs."""

    def affine(layer, state):
        v, s = state
        return layer.apply(v), layer.magnitude(s)

    def site(layer, state):
        z, s = state  # s >= 0: a (leaky) ReLU / max pool passes (the window maxima of) it; hard-tanh keeps it
        if isinstance(layer, L.HardTanh):
            return layer.apply(z), s
        if isinstance(layer, L.LeakyReLU):
            return layer.apply(z), s * max(1.0, abs(float(layer.alpha)))
        return layer.apply(z), layer.apply(s)

    def add(a, b):
        return a[0] + b[0], a[1] + b[1]

    return L.traverse(net.layers, (x, jnp.abs(x)), affine=affine, site=site, add=add)[1].reshape(x.shape[0], -1)
