"""The stability workload of ``partax bench``: time per method to classify every unit of a
784-100-100-10 net over ``[0, 1]^784``, and how many units each certifies stable.

The net (:func:`bench_net`) is an l1-trained net on MNIST-shaped data: scikit-learn's 8x8
digits upsampled to 28x28 (no download), 30 epochs of Adam with an l1 weight of 1e-3, so that
a share of its units is stable over the box and the methods differ in what they certify. Each method of
:func:`partax.stability.preactivation_bounds` runs once after a warm-up (the MILP only when
:mod:`partax.milp` is installed, under a time limit); its certified counts are checked against
dense sampling (a certified unit must never be contradicted by a sample).

Example:
    >>> from partax.bench.stability import bench_stability
    >>> r = bench_stability(hidden=(8, 8), epochs=1, methods=("interval", "linear"), samples=1000)
    >>> sorted(r["methods"]), r["refuted"]
    (['interval', 'linear'], 0)
"""

from __future__ import annotations

import time

import jax
import numpy as np

import partax
from partax.stability import classify, preactivation_bounds, refute

__all__ = ["NAME", "mnist_shaped_digits", "bench_net", "bench_stability", "entry", "markdown", "readme_text"]

NAME = "stability"


def mnist_shaped_digits():
    """Scikit-learn's 8x8 digits upsampled to MNIST's shape: each pixel to 3x3, padded to 28x28.

    Returns:
      ``(x: float32[1797, 784] in [0, 1], y: int32[1797])``.
    """
    x, y = partax.datasets.digits()
    up = np.kron(x.reshape(-1, 8, 8), np.ones((3, 3), np.float32))
    return np.pad(up, ((0, 0), (2, 2), (2, 2))).reshape(-1, 784).astype(np.float32), y


def bench_net(hidden=(100, 100), l1: float = 1e-3, epochs: int = 30, seed: int = 0):
    """The benchmark's net: ``784-hidden-10``, trained with Adam (lr 1e-3, batch 64) and an l1
    penalty on :func:`mnist_shaped_digits`.

    Args:
      hidden: the hidden widths.
      l1: the l1 weight of :func:`partax.train.fit`.
      epochs: training epochs.
      seed: seed of the initial weights and the shuffling.

    Returns:
      A trained :class:`partax.Net` (float32).
    """
    import optax

    from partax.train import fit

    x, y = mnist_shaped_digits()
    net = partax.mlp(jax.random.key(seed), [784, *hidden, 10])
    net, _ = fit(net, x, y, optax.adam(1e-3), epochs=epochs, batch_size=64, key=seed, l1=l1)
    return net


def bench_stability(hidden=(100, 100), methods=("interval", "linear", "lp", "milp"), time_limit: float = 120.0,
                    samples: int = 20_000, seed: int = 0, epochs: int = 30) -> dict:
    """Classifies every unit of :func:`bench_net` over ``[0, 1]^784`` with each method.

    Args:
      hidden: the net's hidden widths.
      epochs: its training epochs.
      methods: the methods to time (``"milp"`` is skipped, and said so, without :mod:`partax.milp`).
      time_limit: seconds for ``"lp"`` and ``"milp"`` (sound at any limit).
      samples: uniform samples of the box that try to refute the certified classes.
      seed: seed of the net and the samples.

    Returns:
      ``dict(widths, units, methods={method: {seconds, active, inactive, stable}}, skipped,
      refuted, time_limit, backend)``; ``refuted`` counts certified units that a sample contradicts (0).
    """
    widths = (784, *hidden, 10)
    net = bench_net(hidden, epochs=epochs, seed=seed)
    box = partax.Box(0.0, 1.0)
    x = np.random.default_rng(seed).random((samples, 784)).astype(np.float32)
    small = partax.mlp(jax.random.key(0), [3, 4, 4, 2])
    preactivation_bounds(small, partax.Box(0.0, 1.0), "lp")  # warm-up (imports)
    out, skipped, refuted = {}, {}, 0
    for m in methods:
        if m == "milp":
            import importlib.util

            if importlib.util.find_spec("partax.milp") is None:
                skipped[m] = "partax.milp is not installed"
                continue
        t0 = time.perf_counter()
        b = preactivation_bounds(net, box, m, time_limit=time_limit if m in ("lp", "milp") else None)
        sec = time.perf_counter() - t0
        s = classify(b)
        refuted += int(sum(len(r) for r in refute(net, s, x)))
        out[m] = dict(seconds=sec, active=int(sum(int(np.sum(c == 1)) for c in s)),
                      inactive=int(sum(int(np.sum(c == -1)) for c in s)),
                      stable=int(sum(int(np.sum(c != 0)) for c in s)))
    return dict(widths=list(widths), units=int(sum(widths[1:-1])), methods=out, skipped=skipped, refuted=refuted,
                time_limit=time_limit, backend=jax.default_backend())


def entry(quick: bool) -> dict:
    """The ``stability`` entry: :func:`bench_stability` on the trained 784-100-100-10 net (the LP
    and MILP under a 20 s limit quick, 120 s otherwise).

    Args:
      quick: the quick limits.

    Returns:
      ``{"name": "stability", **bench_stability(...)}``.
    """
    return {"name": NAME, **bench_stability(time_limit=20.0 if quick else 120.0)}


def markdown(w: dict) -> list:
    """The entry's section of ``bench.md`` (its lines, without the heading).

    Args:
      w: an entry of :func:`entry`.

    Returns:
      Markdown lines.
    """
    net = "-".join(str(v) for v in w["widths"])
    lines = [f"Stable units of a {net} net over [0, 1]^{w['widths'][0]} ({w['units']} hidden units); "
             f"certified units contradicted by samples: {w['refuted']}; lp and milp under a "
             f"{w.get('time_limit', float('nan')):g} s limit (sound when cut short).", "",
             "| method | seconds | stably active | stably inactive | stable |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {m} | {v['seconds']:.3f} | {v['active']} | {v['inactive']} | {v['stable']} |"
              for m, v in w["methods"].items()]
    lines += [f"| {m} | skipped: {why} | | | |" for m, why in w.get("skipped", {}).items()]
    return lines


def readme_text(w: dict) -> str:
    """The entry's clause in the README's "Other entries" sentence.

    Args:
      w: an entry of :func:`entry`.

    Returns:
      One clause (no final full stop).
    """
    net = "-".join(str(v) for v in w["widths"])
    parts = ", ".join(f"{m} {v['stable']} in {v['seconds']:.2g} s" for m, v in w["methods"].items())
    return f"stable units of a {net} net over the unit box, certified per method: {parts} (of {w['units']})"
