"""Partitions trained to be good bins: :func:`fit` trains a ReLU net whose linear regions
are a density histogram of the data.

**Objective: a soft histogram's held-out likelihood.** A region is a sign pattern ``c`` of
the hidden units (all layers). Relax the hard membership ``[code(x) = c]`` into

    ``pi_c(x) = softmax_c( sum_u c_u log s(z_u(x)/t_u) + (1 - c_u) log s(-z_u(x)/t_u) )``

over the ``K`` codes currently present (``s`` the logistic function, ``z_u`` the unit's
pre-activation, ``t_u = tau * std(z_u)`` a temperature relative to the unit's spread over the
data, so that scaling weights up cannot sharpen it). Split the data into two halves ``A`` and
``B``. The soft histogram of ``A`` has masses ``P_c = (n_c + a) / (N_A + a K)`` with soft
counts ``n_c = sum_{x in A} pi_c(x)``, and soft volumes ``V_c = integral pi_c`` (by the mean of
``pi_c`` over uniform samples of the box, times its volume), so that its density
``p(x) = sum_c P_c pi_c(x) / V_c`` integrates to 1; :func:`fit` maximises the mean
``log p`` over ``B`` (and, swapping the halves, over ``A``) by Adam. As ``tau -> 0`` ``p`` is
the hard regions-as-bins histogram of :func:`partax.density.estimate`, and the held-out half
is what keeps the optimum from shrinking regions around single points: a region is worth
cutting only where the other half's points confirm it. ``tau`` is annealed geometrically
from ``tau_start`` to ``tau_end``, and Adam's learning rate from ``learning_rate`` to
``learning_rate_end``.

**Defaults** (a 2-32-32 net, 300 steps of 4,096 points per half, ``tau`` 0.3 -> 0.03, learning
rate 3e-3 -> 3e-4) come from a sweep on the 2D toys of ``experiments/density_fit_toys.py`` at
N = 10^5 (seed 0): test NLL 2.871 on 8gaussians (grid with the same 2,209 bins 2.872, KDE 2.844,
true entropy 2.832) and 3.506 on the checkerboard (grid 3.564, the CV density tree 3.470, true
3.466). The decaying learning rate is what gained most (a constant 3e-3 peaks mid-anneal, a
constant 1e-3 is still climbing at 200 steps); annealing ``tau`` on to 0.01 did not help.

Why this, and not the alternatives of issue 15: a classifier against uniform background
samples learns ``log p`` up to a constant with a *piecewise-linear* function, which puts
hyperplanes where ``log p`` bends, not where a piecewise-*constant* histogram needs its
boundaries (where ``p`` changes fastest and data are dense); greedy splitting along
hyperplanes gives a tree, which a density tree already is. The soft histogram optimises the
quantity that is scored, through the parameters of every layer at once.

**Initialisation: hyperplanes through the data.** Each unit's bias is set so that its
pre-activation is 0 at a random training point (layer by layer, through the net's own
forward pass): a random net's hyperplanes pass near the origin, most of its regions lie
where there are no data.

**Selection.** Every ``eval_every`` steps the *hard* held-out log-likelihood (counts from
one half, log density on the other, exact region keys, volumes by Monte Carlo from a fixed
reference set) is measured, and the parameters with the best one are kept (the soft objective
may prefer soft bins). The returned density is :func:`partax.density.estimate` of the kept net
on all of ``x``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from partax.coding import region_ids
from partax.geometry.domains import Box, check_bounded_box, check_points, inside_box
from partax.nets import Net, mlp

__all__ = ["FitHistory", "fit", "data_init"]


class FitHistory(NamedTuple):
    """What :func:`fit` did.

    Attributes:
      initial_net: the net after the data-dependent initialisation (before any step).
      steps: ``int64[E]`` the steps of the evaluations (0 = the initial net).
      soft_loglik: ``float64[E]`` the soft objective (mean held-out ``log p``, nats) at those steps.
      hard_loglik: ``float64[E]`` the hard held-out log-likelihood (nats) at those steps.
      regions: ``int64[E]`` regions hit by the data or the reference set at those steps.
      tau: ``float64[E]`` the temperature at those steps.
      best_step: the step whose net was kept.
    """

    initial_net: Net
    steps: np.ndarray
    soft_loglik: np.ndarray
    hard_loglik: np.ndarray
    regions: np.ndarray
    tau: np.ndarray
    best_step: int

    def __repr__(self) -> str:
        return (f"FitHistory(evaluations={len(self.steps)}, best_step={self.best_step}, "
                f"hard_loglik={float(self.hard_loglik[0]):.4f}->{float(np.max(self.hard_loglik)):.4f})")


def data_init(net: Net, x, key) -> Net:
    """Biases that put every unit's hyperplane through a training point.

    Layer by layer, unit ``u`` of layer ``l`` gets ``b_u = -(h^{l-1}(x_j) W)_u`` for a random
    training point ``x_j`` (its own per unit), so its pre-activation vanishes at ``x_j``.

    Args:
      net: an unstacked :class:`partax.Net`.
      x: training points ``[N, d]``.
      key: a ``jax.random`` key or int seed.

    Returns:
      the net with new hidden biases (weights and the output layer unchanged).

    Example:
      >>> import jax, numpy as np, partax
      >>> x = np.random.default_rng(0).uniform(2, 3, (50, 2))
      >>> net = data_init(partax.mlp(jax.random.key(0), [2, 4, 1]), x, 1)
      >>> z = np.asarray(net.preactivations(x)[0])
      >>> bool(np.all(np.min(np.abs(z), axis=0) < 1e-5))
      True
    """
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    x = jnp.asarray(np.asarray(x), net.dtype)
    biases = list(net.biases)
    h = x
    for l, W in enumerate(net.weights[:-1]):
        key, k = jax.random.split(key)
        j = jax.random.randint(k, (W.shape[-1],), 0, x.shape[0])
        z = jnp.matmul(h, W, precision=jax.lax.Precision.HIGHEST)
        b = -z[j, jnp.arange(W.shape[-1])]
        biases[l] = b.astype(net.dtype)
        h = net.act(z + b)
    return Net(tuple(net.weights), tuple(biases), net.activation, net.alpha)


def _unit_preacts(net: Net, x):
    """All hidden pre-activations concatenated, ``[n, U]``."""
    return jnp.concatenate(net.preactivations(x), axis=1)


_unit_preacts_jit = jax.jit(_unit_preacts)


def _soft_logpi(net: Net, x, C, valid, scale, tau):
    """``log pi_c(x)`` ``[n, K]`` over the codes ``C`` ``float[K, U]`` (rows with ``valid``
    False are padding: ``log pi = -1e30`` there)."""
    z = _unit_preacts(net, x) / (tau * scale)
    on, off = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    logit = jnp.where(valid[None, :], on @ C.T + off @ (1.0 - C).T, -1e30)  # finite: no NaN gradients
    return jax.nn.log_softmax(logit, axis=1)


def _soft_loglik(net, xa, xb, u, C, valid, scale, tau, a, n_a, vol):
    """Mean over ``xb`` of the log soft-histogram density of ``xa`` (counts scaled to ``n_a``)."""
    K = jnp.sum(valid)
    n = jnp.exp(_soft_logpi(net, xa, C, valid, scale, tau)).sum(0) * (n_a / xa.shape[0])
    logP = jnp.log(n + a) - jnp.log(n_a + a * K)
    logV = math.log(vol) + jax.nn.logsumexp(_soft_logpi(net, u, C, valid, scale, tau), axis=0) - math.log(u.shape[0])
    lb = _soft_logpi(net, xb, C, valid, scale, tau)
    terms = jnp.where(valid[None, :], lb + jnp.where(valid, logP - logV, 0.0)[None, :], -jnp.inf)
    return jnp.mean(jax.nn.logsumexp(terms, axis=1))


def _codes_bits(net: Net, x: np.ndarray) -> np.ndarray:
    """``bool[n, U]`` the hard codes of all hidden units."""
    return np.asarray(_unit_preacts_jit(net, jnp.asarray(x, net.dtype))) > 0


def _hard_loglik(net: Net, xa, xb, ref, vol: float, a: float) -> tuple[float, int]:
    """Hard held-out log-likelihood: counts of ``xa``, log density at ``xb``, volumes from the
    uniform reference ``ref`` (regions no reference point hit share the Good–Turing residual,
    as in :func:`partax.density.estimate`)."""
    ka, kb, kr = (np.asarray(region_ids(net, np.asarray(v, np.float32), "prefix"))[:, -1] for v in (xa, xb, ref))
    rk, hits = np.unique(kr, return_counts=True)
    M = len(kr)
    g = max(int(np.sum(hits == 1)), 1) / M
    vols = np.concatenate([vol * hits / M * (1 - g), [vol * g]])
    K = len(rk) + 1

    def row(k):
        p = np.minimum(np.searchsorted(rk, k), len(rk) - 1)
        return np.where(rk[p] == k, p, K - 1)

    counts = np.bincount(row(ka), minlength=K).astype(np.float64)
    logd = np.log((counts + a) / (len(ka) + a * K)) - np.log(vols)
    return float(np.mean(logd[row(kb)])), int(len(np.unique(np.concatenate([ka, kr]))))


def _check_x_box(x, domain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = check_points(x, None)
    if x.shape[0] < 4:
        raise ValueError(f"x: expected training points [N >= 4, d], got shape {x.shape}")
    lo, hi = check_bounded_box(domain, x.shape[1])
    inside_box(x, lo, hi)
    return x.astype(np.float64), lo, hi


def fit(x, domain: Box, *, widths: Sequence[int] = (32, 32), net: Optional[Net] = None, steps: int = 300,
        learning_rate: float = 3e-3, learning_rate_end: Optional[float] = 3e-4, tau_start: float = 0.3,
        tau_end: float = 0.03, batch_size: int = 4096, num_reference: int = 1 << 18, eval_every: int = 25,
        smoothing: float = 0.5, key=0, volumes: str = "auto", return_history: bool = False, **estimate_kwargs):
    """A :class:`partax.density.PartitionDensity` whose network was trained to be a good histogram.

    See the module docstring for the objective (the held-out likelihood of a soft
    histogram over the net's regions), the initialisation and the selection.

    Args:
      x: training points ``[N, d]`` inside ``domain`` (``N >= 4``).
      domain: a bounded :class:`partax.Box`.
      widths: hidden widths of the net to train (ignored when ``net`` is given).
      net: a starting net (default: ``partax.mlp(key, [d, *widths, 1])`` with data-dependent
        biases, :func:`data_init`); a given net is trained as it is.
      steps: Adam steps (0: the initial net).
      learning_rate: Adam's learning rate (at the first step).
      learning_rate_end: the learning rate reached after ``steps`` steps, geometrically like
        ``tau`` (``None``: constant ``learning_rate``).
      tau_start, tau_end: the temperature (relative to each unit's spread), annealed
        geometrically over the steps.
      batch_size: points per half (``A``, ``B``) per step; the soft volumes take ``4 batch_size``
        uniform samples (stratified on a grid where the dimension allows).
      num_reference: the fixed uniform reference set of the hard evaluations.
      eval_every: steps between hard evaluations (selection of the kept net).
      smoothing: the pseudo-count ``a`` of the objective, the evaluations and the result.
      key: a ``jax.random`` key or int seed: everything random derives from it, so the
        result is deterministic given the seed.
      volumes: passed to :func:`partax.density.estimate` for the result.
      return_history: also return a :class:`FitHistory`.
      **estimate_kwargs: more arguments of :func:`partax.density.estimate`.

    Returns:
      a :class:`partax.density.PartitionDensity` (``prefix`` scope at the last layer of the
      trained net), or ``(density, FitHistory)``.

    Example:
      >>> import numpy as np
      >>> from partax.geometry import Box
      >>> x = np.random.default_rng(0).beta(2, 5, (2000, 2))
      >>> dens, hist = fit(x, Box(0, 1), widths=(8,), steps=20, eval_every=10, batch_size=512,
      ...                  num_reference=2048, return_history=True)
      >>> bool(abs(dens.volumes.sum() - 1) < 1e-9), hist.steps.tolist()
      (True, [0, 10, 20])
    """
    from partax.density import estimate

    x, lo, hi = _check_x_box(x, domain)
    N, d = x.shape
    for name, v in (("steps", steps), ("batch_size", batch_size), ("num_reference", num_reference),
                    ("eval_every", eval_every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "steps" else 1):
            raise ValueError(f"{name}: expected an int >= {0 if name == 'steps' else 1}, got {v!r}")
    if not (0 < tau_end <= tau_start):
        raise ValueError(f"tau_start, tau_end: expected 0 < tau_end <= tau_start, got {tau_start!r}, {tau_end!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected > 0, got {learning_rate!r}")
    lr_end = learning_rate if learning_rate_end is None else learning_rate_end
    if not lr_end > 0:
        raise ValueError(f"learning_rate_end: expected > 0, got {learning_rate_end!r}")
    if isinstance(smoothing, bool) or not smoothing > 0:
        raise ValueError(f"smoothing: fit needs a pseudo-count > 0 (empty soft bins), got {smoothing!r}")
    a = float(smoothing)
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    k_net, k_init, k_split, k_ref, k_steps = jax.random.split(key, 5)
    if net is None:
        ws = [int(w) for w in widths]
        if not ws or any(w < 1 for w in ws):
            raise ValueError(f"widths: expected positive hidden widths, got {widths!r}")
        net = mlp(k_net, [d, *ws, 1])
        # scale the first layer to the box: unit-variance pre-activations over it
        W0 = net.weights[0] / jnp.asarray((hi - lo) / math.sqrt(12.0), net.dtype)[:, None]
        net = Net((W0, *net.weights[1:]), net.biases, net.activation, net.alpha)
        net = data_init(net, x, k_init)
    elif not isinstance(net, Net) or net.stack_shape or net.input_dim != d:
        raise ValueError(f"net: expected an unstacked partax.Net with input dimension {d}, got {net!r}")
    initial = net
    vol = float(np.prod(hi - lo))
    perm = np.asarray(jax.random.permutation(k_split, N))
    half = N // 2
    xa, xb = x[perm[:half]], x[perm[half : 2 * half]]
    ref = lo + np.asarray(jax.random.uniform(k_ref, (int(num_reference), d)), np.float64) * (hi - lo)
    B = int(min(batch_size, half))

    lr0, log_ratio, n_steps = float(learning_rate), math.log(float(lr_end) / float(learning_rate)), max(int(steps), 1)
    opt = optax.adam(lambda count: lr0 * jnp.exp(log_ratio * (count / n_steps)))  # geometric, like tau
    params = (net.weights, net.biases)
    state = opt.init(params)
    act, alpha = net.activation, net.alpha

    def objective(p, xa_, xb_, u, C, valid, scale, tau):
        n = Net(p[0], p[1], act, alpha)
        return -(_soft_loglik(n, xa_, xb_, u, C, valid, scale, tau, a, float(half), vol)
                 + _soft_loglik(n, xb_, xa_, u, C, valid, scale, tau, a, float(half), vol)) / 2

    objective_jit = jax.jit(objective)

    @jax.jit
    def step(p, s, xa_, xb_, u, C, valid, scale, tau):
        loss, g = jax.value_and_grad(objective)(p, xa_, xb_, u, C, valid, scale, tau)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    def evaluate(n):
        h1, k1 = _hard_loglik(n, xa, xb, ref, vol, a)
        h2, _ = _hard_loglik(n, xb, xa, ref, vol, a)
        return (h1 + h2) / 2, k1

    G = int(math.floor((4 * B) ** (1.0 / d) + 1e-9))
    cells = np.stack(np.meshgrid(*[np.arange(G)] * d, indexing="ij"), -1).reshape(-1, d) if G >= 2 else None

    def reference(rng):
        """Uniform samples of the box for the soft volumes: stratified (one per cell of a G^d
        grid, jittered) where G >= 2, which keeps ``V_c`` unbiased with a far smaller variance
        (the objective takes ``log V_c``: noisy volumes bias it, and training exploits the bias)."""
        if cells is None:
            return lo + rng.uniform(size=(4 * B, d)) * (hi - lo)
        return lo + (cells + rng.uniform(size=cells.shape)) / G * (hi - lo)

    ev_steps, soft, hard, regions, taus = [], [], [], [], []
    best = (-np.inf, 0, params)
    rng = np.random.default_rng(int(np.asarray(jax.random.randint(k_steps, (), 0, 2**31 - 1))))
    C = scale = None
    sub = np.concatenate([xa[: min(half, 4 * B)], xb[: min(half, 4 * B)], ref[: 4 * B]])
    for t in range(int(steps) + 1):
        tau = tau_start * (tau_end / tau_start) ** (t / max(int(steps), 1))
        cur = Net(params[0], params[1], act, alpha)
        if t % eval_every == 0 or t == steps or C is None:
            # the codes present, and each unit's spread over the data (fixed between refreshes)
            codes = np.unique(_codes_bits(cur, sub), axis=0)
            K = codes.shape[0]
            Kp = 512 * -(-K // 512)  # padded to a multiple of 512: few shapes, few compilations
            C = jnp.asarray(np.concatenate([codes, np.zeros((Kp - K, codes.shape[1]), bool)]), jnp.float32)
            valid = jnp.asarray(np.arange(Kp) < K)
            z = np.asarray(_unit_preacts_jit(cur, jnp.asarray(sub[: 2 * min(half, 4 * B)], cur.dtype)))
            scale = jnp.asarray(np.maximum(z.std(0), 1e-6), jnp.float32)
        if t % eval_every == 0 or t == steps:
            h, k = evaluate(cur)
            ia, ib = rng.integers(0, half, B), rng.integers(0, half, B)
            u = reference(rng)
            s_val = -float(objective_jit(params, jnp.asarray(xa[ia], jnp.float32), jnp.asarray(xb[ib], jnp.float32),
                                         jnp.asarray(u, jnp.float32), C, valid, scale, jnp.float32(tau)))
            ev_steps.append(t); soft.append(s_val); hard.append(h); regions.append(k); taus.append(tau)
            if not (np.isfinite(s_val) and all(np.all(np.isfinite(np.asarray(a)))
                                               for a in jax.tree_util.tree_leaves(params))):
                # a diverged run must not end as the best net from before it, silently
                raise FloatingPointError(f"fit: training diverged (objective {s_val} at step {t}); "
                                         "lower learning_rate")
            if h > best[0]:
                best = (h, t, params)
        if t == steps:
            break
        ia, ib = rng.integers(0, half, B), rng.integers(0, half, B)
        u = reference(rng)
        params, state, _ = step(params, state, jnp.asarray(xa[ia], jnp.float32), jnp.asarray(xb[ib], jnp.float32),
                                jnp.asarray(u, jnp.float32), C, valid, scale, jnp.float32(tau))
    _, best_step, p = best
    trained = Net(p[0], p[1], act, alpha)
    dens = estimate(trained, x, domain, smoothing=a, volumes=volumes, key=key, **estimate_kwargs)
    if not return_history:
        return dens
    hist = FitHistory(initial, np.asarray(ev_steps, np.int64), np.asarray(soft), np.asarray(hard),
                      np.asarray(regions, np.int64), np.asarray(taus), int(best_step))
    return dens, hist
