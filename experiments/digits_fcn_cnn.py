"""FCN vs CNN on scikit-learn's 8x8 digits: regions per layer, the information plane, shared regions.

Trains a fully connected ReLU net (FCN, default 64-64-64-64-10) and a convolutional one (CNN:
``Conv 3x3 -> ReLU -> MaxPool 2x2 -> Conv 3x3 -> ReLU -> Flatten -> Dense``, channels last, input
``(8, 8, 1)``, built with :func:`partax.nets.sequential`) with :func:`partax.train.fit` on a fixed
train/test split, several seeds of each trained at once as one stacked net. A
:class:`partax.Tracer` follows both at log-spaced epochs: per code group (layer: the FCN's hidden
layers; the CNN's first ReLU, its max-pool argmax choices and its second ReLU) the number of
regions the training inputs fall in (``layer`` and ``prefix`` scopes) and the regions-as-bins
information plane ``I(X;T)``, ``I(T;Y)``; a probe of the same tracer records, per code group,

* the fraction of *test* inputs whose prefix region (codes of groups ``1..l``; the last group is
  the full code, the linear region) contains some training input, and
* the fraction of *training* inputs alone in their prefix region,

from 64-bit region keys (:func:`partax.region_ids`, ``exact=True``: equal keys are checked to be
equal codes), and the test accuracy.

With ``--mnist DIR`` (``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` in DIR,
read by :func:`partax.datasets.load_idx`) the same study runs on the first 12000 MNIST training
images (10000 train / 2000 test; input ``(28, 28, 1)``).

Run:
    python experiments/digits_fcn_cnn.py            # 3 seeds, 100 epochs, ~2 min on 2 busy CPU cores
    python experiments/digits_fcn_cnn.py --quick    # 2 seeds, 12 epochs, ~40-70 s
    python experiments/digits_fcn_cnn.py --channels 1 4 --out runs/digits_fcn_cnn_narrow --figure ""  # narrow CNN
Writes ``runs/digits_fcn_cnn/{results.json, trace_fcn/, trace_cnn/}`` and ``docs/digits_fcn_cnn.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import shutil
import time

import jax
import numpy as np
import optax

import partax
from partax.files import atomic_write_bytes
from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
from partax.nets import as_structured
from partax.trace import Tracer, load_trace, log_spaced
from partax.train import fit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_data import load_data, split  # noqa: E402  (the experiments' shared data)


SCOPES = ("layer", "prefix")



def fcn(key, d_in, hidden=(64, 64, 64), classes=10):
    """The FCN: ``d_in-hidden...-classes`` ReLU MLP (:func:`partax.mlp`, He weights, zero biases)."""
    return partax.mlp(key, [d_in, *hidden, classes])


def cnn(key, input_shape=(8, 8, 1), channels=(8, 16), classes=10):
    """The CNN: Conv 3x3 (pad 1) -> ReLU -> MaxPool 2x2 -> Conv 3x3 (pad 1) -> ReLU -> Flatten -> Dense.

    He-normal weights (drawn with NumPy from a generator seeded by ``key``'s data), zero biases.

    Args:
      key: a ``jax.random`` key.
      input_shape: ``(H, W, C)``, channels last; ``H`` and ``W`` even.
      channels: output channels of the two convolutions.
      classes: outputs of the dense layer.

    Returns:
      An unstacked :class:`partax.Net` with three code groups (ReLU, MaxPool, ReLU).
    """
    h, w, c = input_shape
    c1, c2 = channels
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())  # NumPy draws: no compiles

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    flat = (h // 2) * (w // 2) * c2
    layers = [Conv(he((3, 3, c, c1), 9 * c), np.zeros(c1, np.float32), padding=1), ReLU(), MaxPool((2, 2)),
              Conv(he((3, 3, c1, c2), 9 * c1), np.zeros(c2, np.float32), padding=1), ReLU(), Flatten(),
              Dense(he((flat, classes), flat), np.zeros(classes, np.float32))]
    return partax.nets.sequential(layers, input_shape)


def accuracy(net, x, y) -> float:
    """Test accuracy of an unstacked net on flat inputs ``x`` ``[N, d_in]``."""
    logits = np.asarray(net(x) if net.is_mlp else net(as_structured(net, x)).reshape(len(x), -1))
    return float((logits.argmax(axis=1) == np.asarray(y)).mean())


def shared_regions(net, x_train, x_test, scope="prefix") -> dict:
    """Per code group ``l``, how training and test inputs share regions of one scope.

    Under ``"prefix"`` the region of group ``l`` is given by the codes of groups ``1..l`` (the
    last group's is the full code, the linear region); under ``"layer"`` by group ``l``'s alone.

    Args:
      net: an unstacked :class:`partax.Net`.
      x_train: ``[N, d_in]`` (or ``[N, *input_shape]``), ``N >= 1``.
      x_test: ``[K, d_in]`` (or ``[K, *input_shape]``), ``K >= 1``.
      scope: ``"prefix"`` or ``"layer"``.

    Returns:
      A dict of ``float64[L]`` arrays: ``test_shared`` (fraction of test inputs whose region holds
      some training input), ``train_alone`` (fraction of training inputs alone among the training
      inputs in their region) and ``train_regions`` (number of regions the training inputs meet).
      Equal keys are checked to be equal codes (:func:`partax.region_ids` with ``exact=True``).

    Example:
      >>> import jax, numpy as np
      >>> net = fcn(jax.random.key(0), 4, (3,), 2)
      >>> x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
      >>> s = shared_regions(net, x[:4], np.concatenate([x[:1], x[4:]]))
      >>> float(s["test_shared"][0]) >= 1 / 3
      True
    """
    if scope not in ("prefix", "layer"):
        raise ValueError(f"scope: expected 'prefix' or 'layer', got {scope!r}")
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    if len(x_train) == 0 or len(x_test) == 0:
        raise ValueError("x_train, x_test: expected at least one input each")
    keys = partax.region_ids(net, np.concatenate([x_train, x_test]), scope, exact=True)
    n = len(x_train)
    L = keys.shape[1]
    out = {"test_shared": np.zeros(L), "train_alone": np.zeros(L), "train_regions": np.zeros(L)}
    for l in range(L):
        uniq, counts = np.unique(keys[:n, l], return_counts=True)
        out["test_shared"][l] = np.isin(keys[n:, l], uniq).mean()
        out["train_alone"][l] = (counts == 1).sum() / n
        out["train_regions"][l] = len(uniq)
    return out


def shared_probe(x_test, y_test):
    """A :class:`partax.Tracer` probe: per code group the :func:`shared_regions` fractions and the test accuracy."""

    def probe(net, x, y):
        p, q = shared_regions(net, x, x_test, "prefix"), shared_regions(net, x, x_test, "layer")
        acc = accuracy(net, x_test, y_test)
        return [{"layer": l + 1, "test_shared": float(p["test_shared"][l]), "train_alone": float(p["train_alone"][l]),
                 "test_shared_layer": float(q["test_shared"][l]), "train_alone_layer": float(q["train_alone"][l]),
                 "test_accuracy": acc} for l in range(len(p["test_shared"]))]

    return probe


def run(kind, make, seeds, epochs, xtr, ytr, xte, yte, out, *, lr=1e-3, batch=64, checkpoints=12, meta=None):
    """Trains ``seeds`` nets of one kind as a stack with a Tracer; returns the per-checkpoint rows."""
    nets = partax.stack_nets([make(jax.random.key(1000 + s)) for s in range(seeds)])
    schedule = np.union1d([0], log_spaced(epochs, min(checkpoints, epochs))) if epochs else np.array([0])
    if os.path.isdir(out):  # a fresh trace each run
        shutil.rmtree(out)
    tracer = Tracer(xtr, ytr, every=schedule, scopes=SCOPES, out=out, probes={"shared": shared_probe(xte, yte)},
                    meta={"kind": kind, **(meta or {})})
    t0 = time.perf_counter()
    nets, hist = fit(nets, xtr, ytr, optax.adam(lr), epochs=epochs, batch_size=batch, key=jax.random.key(7),
                     callbacks=[tracer])
    seconds = time.perf_counter() - t0
    tr = load_trace(out)
    rows = []
    for step in sorted(set(tr["step"].tolist())):
        for m in range(seeds):
            sel = (tr["step"] == step) & (tr["member"] == m)
            row = {"epoch": int(step), "seed": m}
            for scope in SCOPES:
                s = sel & (tr["scope"] == scope)
                order = np.argsort(tr["layer"][s])
                for f in ("regions", "I_XT", "I_TY"):
                    row[f"{scope}_{f}"] = np.asarray(tr[f][s][order], float).tolist()
            s = sel & (tr["scope"] == "shared")
            order = np.argsort(tr["layer"][s])
            for f in ("test_shared", "train_alone", "test_shared_layer", "train_alone_layer"):
                row[f] = np.asarray(tr[f][s][order], float).tolist()
            row["test_accuracy"] = float(tr["test_accuracy"][s][0])
            rows.append(row)
    last = [r for r in rows if r["epoch"] == max(schedule)]
    for r in last:
        print(f"{kind} seed {r['seed']} epoch {r['epoch']}: test acc {r['test_accuracy']:.3f}  "
              f"prefix regions {r['prefix_regions']}  layer regions {r['layer_regions']}  "
              f"test shared {np.round(r['test_shared'], 3).tolist()}  train alone {np.round(r['train_alone'], 3).tolist()}")
    train_acc = np.asarray(hist["accuracy"][-1]).tolist() if epochs else None
    return {"rows": rows, "widths": list(nets.widths), "train_accuracy_last_epoch": train_acc, "seconds": seconds,
            "net": repr(jax.tree_util.tree_map(lambda a: a[0], nets))}


def summarise(study) -> dict:
    """Mean and sd over seeds at the last epoch of every per-layer quantity, per net."""
    out = {}
    for kind, res in study.items():
        last = max(r["epoch"] for r in res["rows"])
        rows = [r for r in res["rows"] if r["epoch"] == last]
        s = {"epoch": last, "widths": res["widths"]}
        for f in ("test_accuracy", "prefix_regions", "layer_regions", "layer_I_XT", "layer_I_TY", "prefix_I_XT",
                  "prefix_I_TY", "test_shared", "train_alone", "test_shared_layer", "train_alone_layer"):
            v = np.array([r[f] for r in rows], float)
            s[f] = {"mean": v.mean(axis=0).tolist(), "sd": v.std(axis=0).tolist()}
        out[kind] = s
    return out


def plot(study, meta, path):
    """The six-panel figure (lines: mean over seeds; band: min..max of the test accuracy)."""
    from matplotlib.figure import Figure

    from partax import plots

    fig = Figure(figsize=(16, 9.5), layout="constrained")
    ax = fig.subplots(2, 3)
    style = {"fcn": ("-", "o", ["#08306b", "#2171b5", "#6baed6"], "k"),
             "cnn": ("--", "s", ["#67000d", "#cb181d", "#fc9272"], "#cb181d")}
    group_names = meta["group_names"]
    n = meta["n_train"]
    for kind, res in study.items():
        ls, mk, colors, main = style[kind]
        epochs = sorted({r["epoch"] for r in res["rows"]})
        ep = np.array([max(e, 0.5) for e in epochs], float)

        def per(field):
            return np.array([[r[field] for r in res["rows"] if r["epoch"] == e] for e in epochs], float)  # [E, S, (L)]

        acc = per("test_accuracy")
        ax[0, 0].plot(ep, acc.mean(1), ls, marker=mk, ms=3, color=main,
                      label=f"{kind.upper()}: {acc[-1].mean():.3f} ± {acc[-1].std():.3f} at epoch {epochs[-1]}")
        ax[0, 0].fill_between(ep, acc.min(1), acc.max(1), alpha=0.2, color=main)
        def name(l, kind=kind):
            return f"{kind.upper()} {group_names[kind][l]}"

        for f, axis, lsf in (("prefix_regions", ax[0, 1], ls), ("layer_regions", ax[0, 1], ":"),
                             ("test_shared", ax[1, 1], ls), ("test_shared_layer", ax[1, 1], ":"),
                             ("train_alone", ax[1, 2], ls), ("train_alone_layer", ax[1, 2], ":")):
            v = per(f)
            for l in range(v.shape[2]):
                if f.endswith("layer") or f.startswith("layer"):
                    if l == 0:
                        continue  # the layer and prefix scopes coincide on the first code group
                    lab = f"{name(l)} (layer)"
                else:
                    lab = f"{name(l)} (prefix)"
                axis.plot(ep, v[:, :, l].mean(1), lsf, marker=mk, ms=3, color=colors[l], label=lab)
        for scope, axis in (("layer", ax[0, 2]), ("prefix", ax[1, 0])):
            ix, iy = per(f"{scope}_I_XT"), per(f"{scope}_I_TY")
            for l in range(ix.shape[2]):
                axis.plot(ix[:, :, l].mean(1), iy[:, :, l].mean(1), ls, marker=mk, ms=3, color=colors[l], label=name(l))
                axis.plot(ix[-1, :, l].mean(), iy[-1, :, l].mean(), mk, ms=9, mfc="none", color=colors[l])
    ax[0, 0].set(xscale="log", xlabel="epoch (0 drawn at 0.5)", ylabel="test accuracy", title="test accuracy")
    ax[0, 1].axhline(n, color="0.4", lw=0.8, ls="--")
    ax[0, 1].set(xscale="log", xlabel="epoch", ylabel="regions met by the training inputs",
                 title=f"regions per code group (dotted: layer scope; dashed line N_train = {n})")
    for axis, scope in ((ax[0, 2], "layer"), (ax[1, 0], "prefix")):
        axis.axvline(np.log2(n), color="0.4", lw=0.8, ls="--")
        axis.axhline(meta["H_Y_train"], color="0.4", lw=0.8, ls=":")
        axis.set(xlabel="I(X;T) [bits]", ylabel="I(T;Y) [bits]",
                 title=f"information plane, {scope} scope (ring: last epoch)")
    ax[1, 1].set(xscale="log", xlabel="epoch", ylabel="fraction of test inputs",
                 title="test input's region holds a training input")
    ax[1, 2].set(xscale="log", xlabel="epoch", ylabel="fraction of training inputs",
                 title="training input alone in its region")
    for a in ax.ravel():
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(plots.figure_title(
        "FCN vs CNN: regions per code group, information plane (regions as bins, training inputs), shared regions",
        data=f"{meta['data']} (N_train = {n}, N_test = {meta['n_test']})",
        net=f"FCN {meta['fcn']} vs CNN {meta['cnn']}; {meta['seeds']} seeds, Adam {meta['lr']}, batch {meta['batch']}",
        N=None), fontsize=11)
    plots.save(fig, path, dpi=100)



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 12 epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--checkpoints", type=int, default=12, help="log-spaced checkpoints (plus epoch 0)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 64, 64], help="the FCN's hidden widths")
    ap.add_argument("--channels", type=int, nargs=2, default=[8, 16], help="the CNN's two conv widths")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mnist", default=None, help="a directory with MNIST's training IDX files (optional)")
    ap.add_argument("--out", default="runs/digits_fcn_cnn")
    ap.add_argument("--figure", default="docs/digits_fcn_cnn.png", help="'' for none")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs, a.checkpoints = 2, 12, 5
    for name in ("seeds", "checkpoints", "batch"):
        if getattr(a, name) < 1:
            ap.error(f"--{name}: expected >= 1")
    if a.epochs < 0:
        ap.error("--epochs: expected >= 0")
    x, y, shape, data, n_train = load_data(a.mnist)
    xtr, ytr, xte, yte = split(x, y, n_train)
    d_in = x.shape[1]
    makers = {"fcn": lambda k: fcn(k, d_in, tuple(a.hidden)), "cnn": lambda k: cnn(k, shape, tuple(a.channels))}
    t0 = time.perf_counter()
    meta = {"data": data, "n_train": int(len(xtr)), "n_test": int(len(xte)), "epochs": a.epochs, "seeds": a.seeds,
            "lr": a.lr, "batch": a.batch,
            "fcn": "-".join(map(str, [d_in, *a.hidden, 10])),
            "cnn": f"conv3x3({a.channels[0]})-relu-maxpool2x2-conv3x3({a.channels[1]})-relu-dense(10), input {shape}",
            "H_Y_train": float(partax.info.entropy(np.bincount(ytr)))}
    study = {kind: run(kind, make, a.seeds, a.epochs, xtr, ytr, xte, yte, os.path.join(a.out, f"trace_{kind}"),
                       lr=a.lr, batch=a.batch, checkpoints=a.checkpoints, meta={"data": data})
             for kind, make in makers.items()}
    meta["group_names"] = {"fcn": [f"L{l + 1}" for l in range(len(a.hidden))], "cnn": ["relu1", "pool", "relu2"]}
    meta["seconds"] = time.perf_counter() - t0
    summary = summarise(study)
    os.makedirs(a.out, exist_ok=True)
    atomic_write_bytes(os.path.join(a.out, "results.json"),
                       json.dumps({"meta": meta, "summary": summary, "runs": study}, indent=1).encode())
    for kind, s in summary.items():
        print(f"{kind}: widths {s['widths']}  test acc {s['test_accuracy']['mean']:.3f} ± {s['test_accuracy']['sd']:.3f}  "
              f"prefix regions {np.round(s['prefix_regions']['mean'], 1).tolist()}  "
              f"layer regions {np.round(s['layer_regions']['mean'], 1).tolist()}  "
              f"test shared {np.round(s['test_shared']['mean'], 3).tolist()}  "
              f"train alone {np.round(s['train_alone']['mean'], 3).tolist()}")
    if a.figure:
        os.makedirs(os.path.dirname(a.figure) or ".", exist_ok=True)
        plot(study, meta, a.figure)
    print(f"wrote {a.out}/results.json" + (f" and {a.figure}" if a.figure else "") + f" ({meta['seconds']:.0f} s)")
    return {"meta": meta, "summary": summary, "runs": study}


if __name__ == "__main__":
    main()
