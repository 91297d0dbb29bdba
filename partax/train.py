"""A small jitted optax training loop (softmax cross-entropy) for the demo and the experiments.

Users keep their own loops; :class:`partax.Tracer` works as a callback in any of them. Here one
epoch (a shuffle plus every minibatch step) is one jitted ``lax.scan``, so thousands of epochs of
a small net run at the speed of the arithmetic, and the callbacks see the net after each epoch.

A stacked net (one leading axis, e.g. seeds: :func:`partax.stack_nets`) trains every member
independently on the same data with its own shuffling, vmapped in one program.

Example:
    >>> import jax, optax, partax
    >>> from partax.datasets import tishby_ib
    >>> from partax.train import fit
    >>> x, y = tishby_ib()
    >>> net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2])
    >>> net, hist = fit(net, x, y, optax.adam(4e-4), epochs=2, batch_size=256, key=jax.random.key(1))
    >>> hist["loss"].shape
    (2,)
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from partax.files import load_npz, save_npz
from partax.nets import Net, as_structured, describe, flat_inputs, weight_arrays

__all__ = ["fit", "cross_entropy", "l1_norm", "CheckpointMismatchError"]

_CHECKPOINT_FORMAT = "partax.fit_checkpoint"


class CheckpointMismatchError(ValueError):
    """:func:`fit` was given a checkpoint that another run wrote (the message says what differs)."""


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def _run_fingerprint(net, x, y, batch_size, epochs, l1, key_data, opt_leaves) -> dict:
    """What a checkpoint must share with the run that resumes from it."""
    return {
        "inputs": _digest(x), "labels": _digest(y), "batch_size": int(batch_size), "epochs": int(epochs),
        "l1": float(l1), "key": np.asarray(key_data).astype(np.uint32).tolist(),
        "net": describe(net),
        "optimizer_state": [[list(map(int, np.shape(v))), str(np.asarray(v).dtype)] for v in opt_leaves],
    }


def _save_checkpoint(path, epoch, net, opt_state, losses, accs, fingerprint) -> None:
    """Writes the training state after ``epoch`` atomically (one ``.npz``, no pickle)."""
    arrays = {f"net_{i}": np.asarray(v) for i, v in enumerate(jax.tree_util.tree_leaves(net))}
    arrays.update({f"opt_{i}": np.asarray(v) for i, v in enumerate(jax.tree_util.tree_leaves(opt_state))})
    arrays["loss"] = np.asarray(jax.device_get(losses), np.float64).reshape((len(losses),) + tuple(net.stack_shape))
    arrays["accuracy"] = np.asarray(jax.device_get(accs), np.float64).reshape(arrays["loss"].shape)
    save_npz(path, arrays, _CHECKPOINT_FORMAT, 1, epoch=int(epoch), run=fingerprint)


def _load_checkpoint(path, net, opt_state, fingerprint):
    """``(epoch, net, opt_state, losses, accs)`` from a checkpoint of this run; else an error."""
    files, header = load_npz(path, _CHECKPOINT_FORMAT, "fit checkpoint", required=("epoch", "run"))
    old = header["run"]
    diffs = [k for k in fingerprint if old.get(k) != fingerprint[k]]
    if diffs:
        raise CheckpointMismatchError(
            f"checkpoint: {os.fspath(path)!r} was written by another run (it differs in {', '.join(diffs)}); "
            "delete it or pass another checkpoint path")
    net_leaves, net_def = jax.tree_util.tree_flatten(net)
    opt_leaves, opt_def = jax.tree_util.tree_flatten(opt_state)
    net = jax.tree_util.tree_unflatten(net_def, [jnp.asarray(files[f"net_{i}"], v.dtype)
                                                 for i, v in enumerate(net_leaves)])
    opt_state = jax.tree_util.tree_unflatten(opt_def, [jnp.asarray(files[f"opt_{i}"], jnp.asarray(v).dtype)
                                                       for i, v in enumerate(opt_leaves)])
    return int(header["epoch"]), net, opt_state, list(files["loss"]), list(files["accuracy"])


def cross_entropy(net: Net, x, y, weights=None):
    """Mean softmax cross-entropy of ``net`` on ``(x, y)``, and the accuracy.

    Args:
      net: an unstacked :class:`~partax.nets.Net`.
      x: inputs ``[B, d_in]``.
      y: integer labels ``[B]``.
      weights: optional ``[B]`` sample weights (0 masks a sample out).

    Returns:
      ``(loss, accuracy)`` as scalars (weighted means).
    """
    if not net.is_mlp:  # flattened inputs -> (N, *input_shape); logits flattened
        x = as_structured(net, x)
        logits = net(x).reshape(x.shape[0], -1)
    else:
        logits = net(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = (jnp.argmax(logits, axis=-1) == y).astype(logits.dtype)
    if weights is None:
        return jnp.mean(ce), jnp.mean(correct)
    w = weights.astype(logits.dtype)
    tot = jnp.maximum(jnp.sum(w), 1.0)
    return jnp.sum(ce * w) / tot, jnp.sum(correct * w) / tot


def l1_norm(net: Net):
    """The sum of the absolute values of every weight of ``net`` (biases excluded).

    Args:
      net: an unstacked :class:`~partax.nets.Net`.

    Returns:
      A scalar: ``sum_l sum |W_l|``.

    Example:
      >>> import numpy as np, partax
      >>> f32 = lambda a: np.array(a, np.float32)
      >>> net = partax.Net.from_arrays([f32([[1.0, -2.0]]), f32([5.0, 5.0]), f32([[3.0], [0.5]]), f32([1.0])])
      >>> float(l1_norm(net))
      6.5
    """
    return sum(jnp.sum(jnp.abs(W)) for W in weight_arrays(net))


def _make_epoch(optimizer, n: int, batch_size: int, l1: float = 0.0):
    """Builds ``epoch(net, opt_state, key, x, y) -> (net, opt_state, loss, acc)`` for one net."""
    num_batches = -(-n // batch_size)
    n_pad = num_batches * batch_size

    def loss_fn(net, xb, yb, wb):
        loss, acc = cross_entropy(net, xb, yb, wb)
        if l1:
            loss = loss + l1 * l1_norm(net)
        return loss, acc

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def epoch(net, opt_state, key, x, y):
        perm = jax.random.permutation(key, n)
        idx = jnp.concatenate([perm, jnp.zeros((n_pad - n,), perm.dtype)]).reshape(num_batches, batch_size)
        w = (jnp.arange(n_pad) < n).reshape(num_batches, batch_size)

        def step(carry, batch):
            net, opt_state = carry
            bi, bw = batch
            (loss, acc), grads = grad_fn(net, x[bi], y[bi], bw)
            updates, opt_state = optimizer.update(grads, opt_state, net)
            net = optax.apply_updates(net, updates)
            size = jnp.sum(bw).astype(loss.dtype)
            return (net, opt_state), (loss * size, acc * size)

        (net, opt_state), (losses, accs) = jax.lax.scan(step, (net, opt_state), (idx, w))
        return net, opt_state, jnp.sum(losses) / n, jnp.sum(accs) / n

    return epoch


def fit(
    net: Net,
    x,
    y,
    optimizer: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    key=None,
    callbacks: Sequence[Callable] = (),
    progress: bool = False,
    l1: float = 0.0,
    checkpoint=None,
    checkpoint_seconds: float = 10.0,
):
    """Trains ``net`` with softmax cross-entropy over shuffled minibatches.

    Every epoch draws a fresh permutation and takes ``ceil(N / batch_size)`` optimizer steps (the
    last batch is smaller when ``batch_size`` does not divide ``N``; it is padded and masked, never
    dropped). Each callback is called as ``callback(epoch, net)`` with ``epoch = 0`` before
    training and ``epoch = e`` after the ``e``-th epoch.

    Args:
      net: a :class:`~partax.nets.Net`, or a stacked net with one leading axis (members trained
        independently, each with its own shuffling).
      x: inputs ``[N, d_in]``.
      y: integer labels ``[N]`` in ``0..d_out-1``.
      optimizer: an ``optax.GradientTransformation`` (e.g. ``optax.adam(4e-4)``).
      epochs: number of epochs (>= 0).
      batch_size: minibatch size (>= 1; capped at ``N``).
      key: a ``jax.random`` key for the shuffling, or an int seed; None (the default) means
        ``jax.random.key(0)``, so a run without a key is reproducible.
      callbacks: callables ``(epoch, net)``, e.g. a :class:`partax.Tracer`.
      progress: show a tqdm bar over epochs.
      l1: weight of an l1 penalty ``l1 * sum_l sum |W_l|`` on the weights (biases excluded; see
        :func:`l1_norm`) added to the minibatch loss, so that training drives units towards
        stability and zero weights, which :func:`partax.compress` can remove (Serra et al. 2020).
        0 (the default) is plain cross-entropy.
      checkpoint: a file (``.npz``) to keep the training state in, or None. The state (the
        parameters, the optimizer state, the epoch, the losses so far; the shuffling keys follow
        from ``key`` and the epoch) is written atomically after the callbacks of an epoch, at
        most every ``checkpoint_seconds`` and after the last epoch. If the file exists, ``fit``
        resumes from it: a run killed at any point continues from its last checkpoint and ends
        with the parameters an uninterrupted run reaches (bit for bit on the same machine), and
        the callbacks see only the epochs after it (a :class:`partax.Tracer` skips those it has
        already committed). A checkpoint of another run (other data, net, batch size, epochs,
        ``l1``, key or optimizer state layout) raises :class:`CheckpointMismatchError`.
      checkpoint_seconds: the least time between two checkpoints (0: after every epoch).

    Returns:
      ``(net, history)``: the trained net and a dict of NumPy arrays ``loss`` and ``accuracy`` of
      shape ``[epochs]`` (``[epochs, S]`` for a stack of ``S`` nets): the mean minibatch loss
      (including the l1 term when ``l1 > 0``) and accuracy over the epoch (each measured before
      its step).

    Example:
      >>> net, hist = fit(net, x, y, optax.adam(1e-3), epochs=10, batch_size=32,
      ...                 key=jax.random.key(0))  # doctest: +SKIP
      >>> net, hist = fit(net, x, y, optax.adam(1e-3), epochs=10, batch_size=32)  # key(0)  # doctest: +SKIP
    """
    if not isinstance(net, Net):
        raise TypeError(f"net: expected a partax Net, got {type(net).__name__}")
    stack = net.stack_shape
    if len(stack) > 1:
        raise ValueError(f"net: expected an unstacked net or one stack axis, got stack shape {stack}")
    x = np.asarray(flat_inputs(net, np.asarray(x)))  # a general net also takes (N, *input_shape)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != net.input_dim or x.shape[0] == 0:
        raise ValueError(f"x: expected inputs of shape (N >= 1, {net.input_dim}), got {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y: expected integer labels of shape ({x.shape[0]},), got {y.shape} {y.dtype}")
    if y.min() < 0 or y.max() >= net.output_dim:
        raise ValueError(f"y: labels must lie in 0..{net.output_dim - 1}, got range [{y.min()}, {y.max()}]")
    if not np.all(np.isfinite(x)):
        raise ValueError("x: contains NaN or inf")
    epochs = int(epochs)
    if epochs < 0:
        raise ValueError(f"epochs: expected >= 0, got {epochs}")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if key is None:
        key = jax.random.key(0)
    elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    elif not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                             or (key.dtype == jnp.uint32 and key.shape == (2,)))):
        raise TypeError(f"key: expected a jax.random key, an int seed or None, got {type(key).__name__}")
    n = x.shape[0]
    batch_size = min(batch_size, n)
    try:
        l1 = float(l1)
    except (TypeError, ValueError):
        raise TypeError(f"l1: expected a number >= 0, got {l1!r}") from None
    if not (np.isfinite(l1) and l1 >= 0):
        raise ValueError(f"l1: expected a finite number >= 0, got {l1}")
    callbacks = tuple(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks: item {i} is not callable")
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
    try:
        checkpoint_seconds = float(checkpoint_seconds)
    except (TypeError, ValueError):
        raise TypeError(f"checkpoint_seconds: expected a number >= 0, got {checkpoint_seconds!r}") from None
    if not checkpoint_seconds >= 0:
        raise ValueError(f"checkpoint_seconds: expected a number >= 0, got {checkpoint_seconds}")

    xd = jnp.asarray(x, net.dtype)
    yd = jnp.asarray(y, jnp.int32)
    epoch = _make_epoch(optimizer, n, batch_size, l1)
    if stack:
        s = stack[0]
        opt_state = jax.jit(jax.vmap(optimizer.init))(net)
        epoch_fn = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None, None)))

        def run(net, opt_state, k):
            return epoch_fn(net, opt_state, jax.random.split(k, s), xd, yd)
    else:
        opt_state = jax.jit(optimizer.init)(net)
        epoch_fn = jax.jit(epoch)

        def run(net, opt_state, k):
            return epoch_fn(net, opt_state, k, xd, yd)

    losses, accs = [], []
    start = 0
    fingerprint = None
    if checkpoint is not None:
        key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        fingerprint = _run_fingerprint(net, x, y, batch_size, epochs, l1, key_data,
                                       jax.tree_util.tree_leaves(opt_state))
        if os.path.exists(checkpoint):
            start, net, opt_state, losses, accs = _load_checkpoint(checkpoint, net, opt_state, fingerprint)
    if start == 0:
        for cb in callbacks:
            cb(0, net)
    last_save = time.monotonic()
    it = range(start + 1, epochs + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(it, desc="train", unit="epoch", initial=start, total=epochs)
        it = bar
    keys = jax.random.split(key, max(epochs, 1))
    for e in it:
        net, opt_state, loss, acc = run(net, opt_state, keys[e - 1])
        losses.append(loss)
        accs.append(acc)
        for cb in callbacks:
            cb(e, net)
        if checkpoint is not None and (e == epochs or time.monotonic() - last_save >= checkpoint_seconds):
            _save_checkpoint(checkpoint, e, net, opt_state, losses, accs, fingerprint)
            last_save = time.monotonic()
        if bar is not None and (e % 50 == 0 or e == epochs):
            bar.set_postfix(loss=float(np.mean(np.asarray(loss))), acc=float(np.mean(np.asarray(acc))))
    if bar is not None:
        bar.close()
    shape = (epochs,) + tuple(stack)
    # device_get + np.stack: jnp.stack of thousands of scalars would compile a huge concatenate
    hist = {
        "loss": np.asarray(jax.device_get(losses), np.float64).reshape(shape),
        "accuracy": np.asarray(jax.device_get(accs), np.float64).reshape(shape),
    }
    return net, hist
