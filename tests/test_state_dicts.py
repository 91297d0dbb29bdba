"""from_state_dict against an independent float64 NumPy forward pass with PyTorch's semantics."""

import jax
import numpy as np
import pytest

from partax import layers as L
from partax.state_dicts import from_state_dict, load_state_dict


# --- the oracle: PyTorch semantics (NCHW / NCW, OIHW kernels, (out, in) weights), loops over windows --
def _pad(x, pads, value):
    width = [(0, 0), (0, 0)] + [tuple(p) for p in pads]
    return np.pad(x, width, constant_values=value)


def _run(net, x):
    """The net's outputs, jitted (one compilation instead of one per operation)."""
    return jax.jit(lambda v: net(v))(x)


def _windows(x, window, stride, dilation):
    """``(N, C, *out, *window)`` patches of ``x`` (N, C, *spatial), one output position at a time."""
    sp = x.shape[2:]
    out = [(n - (k - 1) * d - 1) // s + 1 for n, k, s, d in zip(sp, window, stride, dilation)]
    res = np.empty(x.shape[:2] + tuple(out) + tuple(window))
    for pos in np.ndindex(*out):
        for off in np.ndindex(*window):
            src = tuple(p * s + o * d for p, s, o, d in zip(pos, stride, off, dilation))
            res[(slice(None), slice(None)) + pos + off] = x[(slice(None), slice(None)) + src]
    return res


def np_conv(x, w, b, stride, pads, dilation, groups):
    nsp = w.ndim - 2
    xp = _pad(x, pads, 0.0)
    P = _windows(xp, w.shape[2:], stride, dilation)  # (N, C, *out, *win)
    O, Cg = w.shape[:2]
    out = []
    for g in range(groups):
        Pg = P[:, g * Cg:(g + 1) * Cg]
        wg = w[g * (O // groups):(g + 1) * (O // groups)]
        sp_axes = "hw"[:nsp]
        win = "uv"[:nsp]
        out.append(np.einsum(f"nc{sp_axes}{win},oc{win}->no{sp_axes}", Pg, wg))
    y = np.concatenate(out, axis=1)
    return y + b.reshape((1, -1) + (1,) * nsp)


def np_pool(x, window, stride, pads, kind):
    xp = _pad(x, pads, -np.inf if kind == "max" else 0.0)
    P = _windows(xp, window, stride, (1,) * len(window))
    axes = tuple(range(P.ndim - len(window), P.ndim))
    return P.max(axis=axes) if kind == "max" else P.mean(axis=axes)


def torch_forward(model, x):
    """model: list of (kind, params) in PyTorch terms; x: (N, C, *spatial) or (N, d), float64."""
    h = np.asarray(x, np.float64)
    for kind, p in model:
        if kind == "conv":
            h = np_conv(h, p["w"], p["b"], p["stride"], p["pads"], p["dilation"], p["groups"])
        elif kind == "linear":
            h = h @ p["w"].T + p["b"]
        elif kind == "bn":
            sh = (1, -1) + (1,) * (h.ndim - 2)
            h = (h - p["mean"].reshape(sh)) / np.sqrt(p["var"].reshape(sh) + p["eps"]) * p["w"].reshape(sh) \
                + p["b"].reshape(sh)
        elif kind == "relu":
            h = np.maximum(h, 0)
        elif kind == "leaky":
            h = np.where(h > 0, h, p["alpha"] * h)
        elif kind == "hardtanh":
            h = np.clip(h, p["lo"], p["hi"])
        elif kind in ("max", "avg"):
            h = np_pool(h, p["window"], p["stride"], p["pads"], kind)
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif kind == "residual":
            body = torch_forward(p["body"], h)
            h = body + (h if p["shortcut"] is None else torch_forward([p["shortcut"]], h))
        else:
            raise AssertionError(kind)
    return h


# --- random PyTorch-style models and their state dicts ------------------------------------------
def _conv(rng, cin, cout, k, stride=1, pad=0, dil=1, groups=1, nsp=2):
    w = rng.normal(size=(cout, cin // groups, *(k,) * nsp)) / np.sqrt(cin * k ** nsp / groups)
    b = rng.normal(size=cout) * 0.2
    p = {"w": w, "b": b, "stride": (stride,) * nsp, "pads": ((pad, pad),) * nsp, "dilation": (dil,) * nsp,
         "groups": groups}
    return ("conv", p), ("conv", {"stride": stride, "padding": pad, "dilation": dil, "groups": groups}), \
        {"weight": w, "bias": b}


def _linear(rng, din, dout):
    w, b = rng.normal(size=(dout, din)) / np.sqrt(din), rng.normal(size=dout) * 0.2
    return ("linear", {"w": w, "b": b}), "dense", {"weight": w, "bias": b}


def _bn(rng, c, eps=1e-5):
    p = {"w": rng.uniform(0.5, 1.5, c), "b": rng.normal(size=c) * 0.3, "mean": rng.normal(size=c) * 0.3,
         "var": rng.uniform(0.5, 2, c), "eps": eps}
    return ("bn", p), ("batchnorm", {"eps": eps}), {"weight": p["w"], "bias": p["b"], "running_mean": p["mean"],
                                                    "running_var": p["var"],
                                                    "num_batches_tracked": np.array(7, np.int64)}


def _cnn(rng, C, H, W, k=3, c1=4, c2=6, pool=2):
    """conv (pad 1), bn, relu, maxpool, conv (stride 2, groups 2), leaky, avgpool (padded), flatten, linear."""
    parts = [_conv(rng, C, c1, k, pad=1), _bn(rng, c1), (("relu", {}), "relu", None),
             (("max", {"window": (pool, pool), "stride": (pool, pool), "pads": ((0, 0), (0, 0))}), ("maxpool", pool),
              None),
             _conv(rng, c1, c2, k, stride=2, pad=1, groups=2), (("leaky", {"alpha": 0.1}), ("leaky_relu", 0.1), None),
             (("avg", {"window": (2, 2), "stride": (1, 1), "pads": ((1, 0), (1, 0))}),
              ("avgpool", {"window": 2, "stride": 1, "padding": ((1, 0), (1, 0))}), None),
             (("flatten", {}), "flatten", None)]
    h = np.zeros((1, C, H, W))
    model = [p[0] for p in parts]
    D = torch_forward(model, h).shape[1]
    parts += [_linear(rng, D, 12), (("hardtanh", {"lo": 0.0, "hi": 6.0}), "relu6", None), _linear(rng, 12, 3)]
    return parts


def _split(parts):
    model = [p[0] for p in parts]
    spec = [p[1] for p in parts]
    state = {}
    for i, p in enumerate(parts):
        if p[2] is not None:
            for k, v in p[2].items():
                state[f"features.{i}.{k}"] = v
    return model, spec, state


@pytest.mark.parametrize("C,H,W", [(1, 8, 8), (3, 7, 9), pytest.param(2, 12, 10, marks=pytest.mark.slow)])
def test_torch_cnn_by_name_and_in_order(C, H, W):
    rng = np.random.default_rng(C * 100 + H)
    model, spec, state = _split(_cnn(rng, C, H, W))
    x = rng.normal(size=(16, C, H, W))
    ref = torch_forward(model, x)
    for st in (state, list(state.values())):
        net = from_state_dict(spec, st, (C, H, W), layout="torch")
        assert net.input_shape == (H, W, C)
        got = np.asarray(_run(net, np.moveaxis(x, 1, -1).astype(np.float32)), np.float64)
        err = np.max(np.abs(got - ref))
        print(f"torch CNN {C}x{H}x{W}: max abs diff vs NumPy {err:.3g}")
        assert err < 1e-4 * (1 + np.abs(ref).max())
    assert [type(l).__name__ for l in net.layers] == ["Conv", "BatchNorm", "ReLU", "MaxPool", "Conv", "LeakyReLU",
                                                      "AvgPool", "Flatten", "Dense", "HardTanh", "Dense"]


def test_torch_resnet_block_and_conv1d():
    rng = np.random.default_rng(5)
    c0, ck0, s0 = _conv(rng, 2, 4, 3, pad=1, nsp=1)
    c1, ck1, s1 = _conv(rng, 4, 4, 3, pad=1, nsp=1)
    c2, ck2, s2 = _conv(rng, 4, 6, 3, stride=2, pad=1, nsp=1)
    sc, cks, ss = _conv(rng, 4, 6, 1, stride=2, nsp=1)
    lin, _, sl = _linear(rng, 6 * 5, 2)
    model = [c0, ("relu", {}), ("residual", {"body": [c1, ("relu", {}), c2], "shortcut": sc}), ("relu", {}),
             ("flatten", {}), lin]
    spec = [ck0, "relu", ("residual", {"body": [ck1, "relu", ck2], "shortcut": cks}), "relu", "flatten", "dense"]
    state = {"stem.weight": s0["weight"], "stem.bias": s0["bias"], "block.conv1.weight": s1["weight"],
             "block.conv1.bias": s1["bias"], "block.conv2.weight": s2["weight"], "block.conv2.bias": s2["bias"],
             "block.downsample.weight": ss["weight"], "block.downsample.bias": ss["bias"],
             "fc.weight": sl["weight"], "fc.bias": sl["bias"]}
    x = rng.normal(size=(16, 2, 10))
    ref = torch_forward(model, x)
    net = from_state_dict(spec, state, (2, 10), layout="torch")
    got = np.asarray(_run(net, np.moveaxis(x, 1, -1).astype(np.float32)), np.float64)
    print(f"torch 1D ResNet block: max abs diff vs NumPy {np.max(np.abs(got - ref)):.3g}")
    assert np.max(np.abs(got - ref)) < 1e-4 * (1 + np.abs(ref).max())
    assert isinstance(net.layers[2], L.Residual) and isinstance(net.layers[2].shortcut, L.Conv)


def test_jax_layout_mlp_and_cnn():
    rng = np.random.default_rng(2)
    # a Flax-style nested dict, channels-last kernels (HWIO) and (in, out) weights
    k = rng.normal(size=(3, 3, 2, 4)) * 0.4
    params = {"Conv_0": {"kernel": k, "bias": rng.normal(size=4) * 0.1},
              "Dense_0": {"kernel": rng.normal(size=(4 * 3 * 3, 3)) * 0.2, "bias": rng.normal(size=3) * 0.1}}
    spec = [("conv", {"padding": "same"}), "relu", ("maxpool", {"window": 2, "stride": 2}), "flatten", "dense"]
    net = from_state_dict(spec, params, (6, 6, 2))
    x = rng.normal(size=(8, 6, 6, 2))
    # the same network in PyTorch terms for the oracle: OIHW kernel, (out, in) weight, C,H,W flatten
    Wd = params["Dense_0"]["kernel"].reshape(3, 3, 4, 3).transpose(2, 0, 1, 3).reshape(36, 3)
    model = [("conv", {"w": k.transpose(3, 2, 0, 1), "b": params["Conv_0"]["bias"], "stride": (1, 1),
                       "pads": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}), ("relu", {}),
             ("max", {"window": (2, 2), "stride": (2, 2), "pads": ((0, 0), (0, 0))}), ("flatten", {}),
             ("linear", {"w": Wd.T, "b": params["Dense_0"]["bias"]})]
    ref = torch_forward(model, np.moveaxis(x, -1, 1))
    got = np.asarray(_run(net, x.astype(np.float32)), np.float64)
    assert np.max(np.abs(got - ref)) < 1e-4 * (1 + np.abs(ref).max())
    # an MLP from a plain list [W1, b1, W2, b2]
    arrays = [rng.normal(size=(5, 7)), rng.normal(size=7), rng.normal(size=(7, 2)), rng.normal(size=2)]
    net = from_state_dict(["dense", "relu", "dense"], arrays, (5,))
    x = rng.normal(size=(10, 5))
    ref = np.maximum(x @ arrays[0] + arrays[1], 0) @ arrays[2] + arrays[3]
    assert np.max(np.abs(np.asarray(_run(net, x.astype(np.float32))) - ref)) < 1e-4 * (1 + np.abs(ref).max())


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_file_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(9)
    parts = _cnn(rng, 1, 8, 8)
    model, spec, state = _split(parts)
    # ten or more groups, so natural order ("features.10" after "features.9") matters
    state = {k: np.asarray(v, np.float32) if v.ndim else v for k, v in state.items()}
    path = str(tmp_path / f"s.{fmt}")
    if fmt == "npz":
        np.savez(path, **state)
    else:
        st = pytest.importorskip("safetensors.numpy")
        st.save_file(state, path)
    loaded = load_state_dict(path)
    assert sorted(loaded) == sorted(state) and all(np.array_equal(loaded[k], state[k]) for k in state)
    groups = list(dict.fromkeys(k.rpartition(".")[0] for k in loaded))
    assert groups == list(dict.fromkeys(k.rpartition(".")[0] for k in state))  # natural: features.8 < features.10
    net = from_state_dict(spec, path, (1, 8, 8), layout="torch")
    x = rng.normal(size=(8, 1, 8, 8))
    ref = torch_forward(model, x)
    got = np.asarray(_run(net, np.moveaxis(x, 1, -1).astype(np.float32)), np.float64)
    assert np.max(np.abs(got - ref)) < 1e-4 * (1 + np.abs(ref).max())


def test_bad_input():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(3, 4)), np.zeros(3)
    with pytest.raises(ValueError, match="layout"):
        from_state_dict(["dense"], [W, b], (4,), layout="keras")
    with pytest.raises(ValueError, match=r"spec\[0\] \(dense\).*takes 3 inputs"):
        from_state_dict(["dense"], [W, b], (4,))  # a PyTorch (out, in) weight given as JAX layout
    with pytest.raises(ValueError, match="left over"):
        from_state_dict(["dense"], [W.T, b, b], (4,))
    with pytest.raises(ValueError, match="ran out"):
        from_state_dict(["dense", "relu", "dense"], [W.T, b], (4,))
    with pytest.raises(ValueError, match="not piecewise linear"):
        from_state_dict(["dense", "softmax"], [W.T, b], (4,))
    with pytest.raises(ValueError, match="unexpected arrays"):
        from_state_dict(["dense"], {"fc.weight": W, "fc.bias": b, "fc.extra": b}, (4,), layout="torch")
    with pytest.raises(ValueError, match=r"spec\[0\] \(conv\).*channels last"):
        from_state_dict(["conv"], [rng.normal(size=(3, 3, 2, 4)), np.zeros(4)], (2, 6, 6))  # NCHW given for NHWC
    with pytest.raises(ValueError, match="unknown options"):
        from_state_dict([("conv", {"strid": 2})], [rng.normal(size=(3, 3, 2, 4)), np.zeros(4)], (6, 6, 2))
    with pytest.raises(FileNotFoundError, match="path"):
        from_state_dict(["dense"], "/nonexistent/x.npz", (4,))


# --- group order from files, the bias option, unknown options ---------------------------------
def _named_mlp(rng, names, d=6):
    """A dense / relu MLP whose groups have PyTorch-style names, and its float64 forward pass."""
    sizes = [d] * len(names) + [2]
    state = {}
    for n, (i, o) in zip(names, zip(sizes[:-1], sizes[1:])):
        state[f"{n}.weight"] = rng.normal(size=(o, i)).astype(np.float32)
        state[f"{n}.bias"] = rng.normal(size=o).astype(np.float32)

    def ref(x):
        h = np.asarray(x, np.float64)
        for k, n in enumerate(names):
            h = h @ state[f"{n}.weight"].T.astype(np.float64) + state[f"{n}.bias"]
            h = np.maximum(h, 0) if k < len(names) - 1 else h
        return h

    spec = sum((["dense", "relu"] for _ in names), [])[:-1]
    return state, spec, ref


def _save(state, path, fmt):
    if fmt == "npz":
        np.savez(path, **state)
    else:
        pytest.importorskip("safetensors.numpy").save_file(state, path)


@pytest.mark.parametrize("names", [("input", "hidden", "output"), ("fc", "a", "b", "proj"), ("z1", "y2")])
def test_npz_keeps_the_file_order(tmp_path, names):
    rng = np.random.default_rng(len(names))
    state, spec, ref = _named_mlp(rng, names)
    path = str(tmp_path / "s.npz")
    _save(state, path, "npz")
    assert [k.rpartition(".")[0] for k in load_state_dict(path)][::2] == list(names)
    net = from_state_dict(spec, path, (6,), layout="torch")
    x = rng.normal(size=(9, 6))
    assert np.max(np.abs(np.asarray(_run(net, x.astype(np.float32))) - ref(x))) < 1e-4 * (1 + np.abs(ref(x)).max())


@pytest.mark.parametrize("names,ok", [
    (("input", "hidden", "output"), False),
    (("fc2", "bn1", "fc1"), False),
    (tuple(f"layers.{i}" for i in (0, 2, 4, 6, 8, 10, 12)), True),  # integers only: natural order is layer order
    (("fc1", "fc2", "fc10"), True),
])
def test_safetensors_order_needs_integer_names_or_explicit_names(tmp_path, names, ok):
    rng = np.random.default_rng(7)
    state, spec, ref = _named_mlp(rng, names)
    path = str(tmp_path / "s.safetensors")
    _save(state, path, "safetensors")
    x = rng.normal(size=(9, 6))
    tol = 1e-4 * (1 + np.abs(ref(x)).max())
    if ok:
        net = from_state_dict(spec, path, (6,), layout="torch")
        assert np.max(np.abs(np.asarray(_run(net, x.astype(np.float32))) - ref(x))) < tol
    else:
        with pytest.raises(ValueError, match=r"safetensors.*sorted.*name each group"):
            from_state_dict(spec, path, (6,), layout="torch")
    # naming the groups in the spec always works
    named = [("dense", {"name": n}) if s == "dense" else s for s, n in zip(spec, sum(([n, None] for n in names), []))]
    net = from_state_dict(named, path, (6,), layout="torch")
    assert np.max(np.abs(np.asarray(_run(net, x.astype(np.float32))) - ref(x))) < tol


@pytest.mark.parametrize("source", ["list", "dict"])
@pytest.mark.parametrize("which", [0, 1])
def test_bias_false_dense(source, which):
    rng = np.random.default_rng(3 + which)
    W1, b1, W2, b2 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(4, 2)), rng.normal(size=2)
    spec = ["dense", "relu", "dense"]
    spec[2 * which] = ("dense", {"bias": False})
    arrays = [W1, b1, W2, b2]
    del arrays[2 * which + 1]
    if which == 0:
        b1 = np.zeros(4)
    else:
        b2 = np.zeros(2)
    st = arrays if source == "list" else {"a.kernel": arrays[0], **({"a.bias": b1} if which else {}),
                                          "b.kernel": W2, **({} if which else {"b.bias": b2})}
    net = from_state_dict(spec, st, (3,))
    x = rng.normal(size=(7, 3))
    ref = np.maximum(x @ W1 + b1, 0) @ W2 + b2
    assert np.max(np.abs(np.asarray(_run(net, x.astype(np.float32))) - ref)) < 1e-4 * (1 + np.abs(ref).max())


def test_bias_false_conv_and_misuse():
    rng = np.random.default_rng(8)
    k, w = rng.normal(size=(4, 2, 3, 3)), rng.normal(size=(3, 4 * 4 * 4))
    model = [("conv", {"w": k, "b": np.zeros(4), "stride": (1, 1), "pads": ((0, 0), (0, 0)), "dilation": (1, 1),
                       "groups": 1}), ("relu", {}), ("flatten", {}), ("linear", {"w": w, "b": np.zeros(3)})]
    spec = [("conv", {"bias": False}), "relu", "flatten", ("dense", {"bias": False})]
    x = rng.normal(size=(5, 2, 6, 6))
    ref = torch_forward(model, x)
    for st in ([k, w], {"c.weight": k, "d.weight": w}):
        net = from_state_dict(spec, st, (2, 6, 6), layout="torch")
        got = np.asarray(_run(net, np.moveaxis(x, 1, -1).astype(np.float32)), np.float64)
        assert np.max(np.abs(got - ref)) < 1e-4 * (1 + np.abs(ref).max())
    with pytest.raises(ValueError, match=r"left over"):  # bias=False consumes no bias array
        from_state_dict([("dense", {"bias": False})], [np.ones((4, 3)), np.zeros(3)], (4,))
    with pytest.raises(ValueError, match=r"'bias' array, but the spec says bias=False"):
        from_state_dict([("dense", {"bias": False})], {"fc.weight": np.ones((3, 4)), "fc.bias": np.zeros(3)}, (4,),
                        layout="torch")
    with pytest.raises(ValueError, match=r"spec\[0\] \(dense\): bias expected True or False"):
        from_state_dict([("dense", {"bias": 0})], [np.ones((4, 3))], (4,))


@pytest.mark.parametrize("spec", [
    [("dense", {"bais": False})],
    [("conv", {"use_bias": False})],
    [("dense", {}), ("relu", {"inplace": True})],
    [("dense", {}), ("relu6", 1)],
    [("dense", {}), ("identity", {"p": 0.5})],
    [("dense", {}), ("flatten", {"start_dim": 1})],
    [("dense", {}), ("leaky_relu", "0.1")],
    [("dense", {}), ("hardtanh", (0.0, 1.0, 2.0))],
    [("dense", {}), ("batchnorm", {"momentum": 0.1})],
    [("dense", {}), ("maxpool", {"window": 2, "dilation": 1})],
])
def test_unknown_options_are_errors(spec):
    conv = spec[0][0] == "conv"
    arrays = [np.ones((3, 3, 1, 2)), np.zeros(2)] if conv else [np.ones((4, 4)), np.zeros(4)]
    with pytest.raises(ValueError, match=r"spec\[\d\] \(\w+\): (unknown options|takes no options|expected)"):
        from_state_dict(spec, arrays, (4, 4, 1) if conv else (4,))


# --- batch norm: var + eps must be positive -----------------------------------------------------
@pytest.mark.parametrize("var,eps,ok", [
    ([1.0, 0.5], 1e-5, True), ([0.0, 1.0], 1e-5, True), ([-1.0, 1.0], 1e-5, False), ([0.0, 1.0], 0.0, False),
    ([1.0, np.nan], 1e-5, False), ([-1e-6, 2.0], 1e-5, True),
])
def test_batchnorm_needs_positive_var_plus_eps(var, eps, ok):
    var = np.asarray(var, np.float32)
    z, one = np.zeros(2, np.float32), np.ones(2, np.float32)
    spec, state = [("batchnorm", {"eps": eps})], {"bn.weight": one, "bn.bias": z, "bn.running_mean": z,
                                                   "bn.running_var": var}
    if ok:
        bn = L.BatchNorm(z, var, one, z, eps)
        assert np.allclose(np.asarray(bn.gain()), 1 / np.sqrt(var.astype(np.float64) + eps), rtol=1e-4)
        net = from_state_dict(spec, state, (2,))
        assert np.all(np.isfinite(np.asarray(_run(net, np.ones((3, 2), np.float32)))))
    else:
        with pytest.raises(ValueError, match=r"BatchNorm: var \+ eps must be > 0"):
            L.BatchNorm(z, var, one, z, eps)
        with pytest.raises(ValueError, match=r"spec\[0\] \(batchnorm\): BatchNorm: var \+ eps must be > 0"):
            from_state_dict(spec, state, (2,))
    # traced arrays are not checked (and not converted)
    out = jax.jit(lambda v: L.BatchNorm(z, v, one, z, eps).apply(np.ones((1, 2), np.float32)))(var)
    assert out.shape == (1, 2)


@pytest.mark.parametrize("spec", [
    [("conv", {"stride": 2, "padding": "same"}), "flatten"],
    [("maxpool", {"window": 2, "padding": "same"}), "flatten"],  # a pool's stride defaults to its window
])
def test_same_padding_with_a_stride_is_refused(spec):
    """JAX/TF 'SAME' with a stride depends on the input size (and PyTorch refuses it): an error, not a
    symmetric split that gives another net (a stride-2 'same' conv of 8x8 was 9.98 off lax's 'SAME')."""
    arrays = [np.ones((3, 3, 1, 2), np.float32), np.zeros(2, np.float32)] if spec[0][0] == "conv" else []
    with pytest.raises(ValueError, match="padding 'same' needs stride 1"):
        from_state_dict(spec, arrays, (8, 8, 1))
