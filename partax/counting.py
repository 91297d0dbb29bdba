"""Counting linear regions exactly by MILP, and probabilistic lower bounds by parity constraints.

:func:`count_regions` counts the full-dimensional regions of a net's partition of a box with the
big-M formulation of :mod:`partax.milp` (Serra, Tjandraatmadja & Ramalingam, "Bounding and
counting linear regions of deep neural networks", ICML 2018): every feasible assignment of the
binaries of the counted layers — with every unstable unit at least ``margin`` from 0 on its side
at some point of the box — is one region. Two backends: SCIP's native solution counting
(``backend="scip"``, the ``milp`` extra) and a HiGHS re-solve loop with no-good cuts
(``backend="highs"``). A time limit gives a count flagged ``exact=False``: a lower bound.

:func:`parity_lower_bound` is MIPBound (Serra & Ramalingam, "Empirical bounds on linear regions
of deep rectifier networks", AAAI 2020): random parity (XOR) constraints on the binaries cut the
set of codes roughly in half each; if the model stays feasible under ``k`` of them in every one
of ``t`` independent trials, there are probably at least ``2^(k - alpha)`` codes.

Scopes (:mod:`partax.coding`): at hidden layer ``l``, ``"prefix"`` counts the codes
``(S^1..S^l)`` (the linear regions of the sub-net up to ``l``), ``"layer"`` the distinct ``S^l``
and ``"suffix"`` the distinct ``(S^l..S^L)`` among the full-dimensional regions of the box — the
codes dense sampling of the box meets with probability 1.

Example:
    >>> import jax, partax
    >>> from partax.counting import count_regions
    >>> net = partax.mlp(jax.random.key(0), [2, 5, 1], bias_std=0.5)
    >>> res = count_regions(net, partax.Box(-3.0, 3.0), backend="highs", return_codes=True)
    >>> res.exact, res.count <= partax.bounds.zaslavsky(5, 2), len(res.keys) == res.count
    (True, True, True)
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

import numpy as np

from partax.coding import keys_from_bits
from partax.geometry import Box
from partax.milp import (check_backend, check_milp_domain, check_time_limit, count_native, enumerate_codes,
                         find_code, formulate)
from partax.nets import Net
from partax.records import record_repr
from partax.stability import check_net
from partax.validation import check_scope_layer, check_tolerance

__all__ = ["RegionCount", "ParityBound", "count_regions", "parity_lower_bound"]


class RegionCount(NamedTuple):
    """The result of :func:`count_regions`.

    Attributes:
      count: number of full-dimensional regions found (exact iff ``exact``).
      exact: False if a time limit (or a solver failure) stopped the count: ``count`` is then a
        lower bound, never a number to read as exact.
      keys: ``numpy.uint64[count]`` sorted region keys (the keys of :func:`partax.region_ids` under
        the scope, at an interior point), or None unless ``return_codes``.
      codes: per layer of the scope's range, ``bool[count, n_l]`` (in ``keys`` order), or None.
      points: ``float64[count, d]`` a point of the box inside each region (``keys`` order), or None.
      seconds: wall time (formulation included).
      scope, layer: the scope and its 1-based layer.
      backend: ``"scip"`` or ``"highs"``.
      method: ``"native"`` (SCIP's solution counting) or ``"nogood"`` (re-solve loop).
      status: ``"complete"``, ``"time_limit"``, ``"check_undecided"`` (the float64 re-check of a
        solution was cut short: the count stopped there), ``"count_invalid"`` (SCIP flags its
        count invalid) or the solver's failure status; ``exact`` is False for all but the first.
      stats: ``solves``, ``rejected``, ``lp_checks``, ``unstable`` (binaries counted over),
        ``stable`` (units fixed by the bounds), ``bound_seconds``, ``margin``.
    """

    count: int
    exact: bool
    keys: Optional[np.ndarray]
    codes: Optional[list]
    points: Optional[np.ndarray]
    seconds: float
    scope: str
    layer: int
    backend: str
    method: str
    status: str
    stats: dict

    def __repr__(self) -> str:
        return record_repr("RegionCount", count=self.count, exact=self.exact, scope=self.scope, layer=self.layer,
                           backend=self.backend, method=self.method, status=self.status, seconds=self.seconds)


class ParityBound(NamedTuple):
    """The result of :func:`parity_lower_bound`: "at least ``2**log2_bound`` regions, with
    probability at least ``probability``".

    Attributes:
      log2_bound: ``max(k - alpha, 0)`` with ``k`` the most parity constraints under which every
        trial stayed feasible.
      probability: ``1 - delta``, ``delta = 2^(-alpha * trials)``.
      delta: the failure probability of the statement.
      k: the number of parity constraints of the last level that passed (0: none passed).
      alpha, trials, step: the parameters.
      certain: number of distinct regions met by the feasible trials (each checked in float64):
        a bound that holds with certainty.
      record: one dict per trial: ``num_xors``, ``trial``, ``status`` (``"feasible"``,
        ``"infeasible"``, ``"time_limit"``, ...), ``seconds``.
      complete: False if the time limit stopped the search before a level failed (the statement
        still holds; a larger one might).
      seconds: wall time.
      scope, layer, backend: as in :class:`RegionCount`.
    """

    log2_bound: float
    probability: float
    delta: float
    k: int
    alpha: float
    trials: int
    step: int
    certain: int
    record: list
    complete: bool
    seconds: float
    scope: str
    layer: int
    backend: str

    def __repr__(self) -> str:
        return record_repr("ParityBound", log2_bound=self.log2_bound, probability=self.probability, k=self.k,
                           certain=self.certain, trials=self.trials, complete=self.complete, seconds=self.seconds)


def _check_common(net, domain, scope, layer, backend, time_limit):
    check_net(net)
    check_milp_domain(domain, net.input_dim)
    layer, first, last = check_scope_layer(scope, layer, net.num_hidden)
    backend = check_backend(backend)
    time_limit = check_time_limit(time_limit)
    return layer, first, last, backend, time_limit


def _check_positive_number(name: str, v) -> float:
    """``v`` as a float if it is a finite number > 0 (Python or NumPy int / float, not a bool)."""
    if check_tolerance(v, name) <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {v!r}")
    return float(v)


def _keys(codes: list, first: int, last: int) -> np.ndarray:
    return keys_from_bits(codes, first, last, start=first)


def count_regions(net: Net, domain: Box, *, scope: str = "prefix", layer: Optional[int] = None,
                  backend: str = "highs", time_limit: Optional[float] = None, return_codes: bool = False,
                  margin: float = 1e-6, bound_method: str = "lp", bounds=None) -> RegionCount:
    """The exact number of full-dimensional regions of ``net`` in the box ``domain``, by MILP.

    The formulation is :func:`partax.milp.formulate` (big-M constants from sound pre-activation
    bounds, stable units fixed, a full-dimensionality margin). ``backend="scip"`` counts the
    feasible binary assignments natively when the scope's range starts at layer 1 and no codes are
    asked for; otherwise (and always for ``"highs"``) codes are enumerated by re-solving with
    no-good cuts on the counted binaries, which also projects the count on the scope's layers.

    Args:
      net: an unstacked :class:`~partax.nets.Net` (ReLU or leaky ReLU).
      domain: a :class:`partax.Box` (a MILP needs bounded variables: None is refused).
      scope: ``"prefix"``, ``"layer"`` or ``"suffix"``.
      layer: 1-based hidden layer (default: the last).
      backend: ``"highs"`` (default; highspy is a core dependency) or ``"scip"`` (PySCIPOpt, the
        ``milp`` extra).
      time_limit: seconds > 0, or None. When it stops the count, ``exact`` is False and ``count``
        is a lower bound.
      return_codes: also return ``keys``, ``codes`` and ``points``.
      margin: the full-dimensionality margin in pre-activation units (a region is counted iff
        some point of it has every unstable unit at least ``margin`` from 0); > 0.
      bound_method: how the big-M bounds are computed (:func:`partax.stability.preactivation_bounds`:
        ``"interval"``, ``"linear"``, ``"lp"``).
      bounds: precomputed sound bounds (overrides ``bound_method``).

    Returns:
      A :class:`RegionCount`.

    Raises:
      ValueError / TypeError: an unbounded domain, an unsupported net, a bad scope or layer, a
        time limit <= 0, an unknown backend or a missing solver (naming the ``milp`` extra).
    """
    t0 = time.perf_counter()
    layer, first, last, backend, time_limit = _check_common(net, domain, scope, layer, backend, time_limit)
    margin = _check_positive_number("margin", margin)
    form = formulate(net, domain, depth=last, bounds=bounds, bound_method=bound_method, margin=margin,
                     time_limit=time_limit)
    t_form = time.perf_counter() - t0
    left = None if time_limit is None else max(time_limit - t_form, 1e-3)
    if backend == "scip" and first == 1 and not return_codes:
        res = count_native(form, time_limit=left)
        method = "native"
    else:
        res = enumerate_codes(form, first=first, last=last, backend=backend, time_limit=left)
        method = "nogood"
    keys = codes = points = None
    if return_codes:
        codes = res.codes
        keys = _keys(codes, first, last) if res.count else np.zeros(0, np.uint64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        codes = [c[order] for c in codes]
        points = res.points[order]
        if len(np.unique(keys)) != len(keys):
            from partax.coding import HashCollisionError
            raise HashCollisionError("count_regions: two distinct codes share a 64-bit key")
    stats = dict(res.stats)
    stats.update(unstable=int(len(form.counted_vars(first, last))),
                 stable=int(sum(int(np.sum(f != 0)) for f in form.fixed[first - 1:last])),
                 bound_seconds=t_form, margin=float(margin))
    return RegionCount(count=int(res.count), exact=bool(res.exact), keys=keys, codes=codes, points=points,
                       seconds=time.perf_counter() - t0, scope=scope, layer=layer, backend=backend,
                       method=method, status=res.status, stats=stats)


def parity_lower_bound(net: Net, domain: Box, *, scope: str = "prefix", layer: Optional[int] = None,
                       backend: str = "highs", trials: int = 5, step: int = 1, alpha: float = 1.0,
                       max_xors: Optional[int] = None, seed: int = 0, time_limit: Optional[float] = None,
                       margin: float = 1e-6, bound_method: str = "lp", bounds=None) -> ParityBound:
    """MIPBound: a probabilistic lower bound on the number of regions from random parity constraints.

    Level ``k = step, 2 step, ...``: ``trials`` independent trials, each adding ``k`` random parity
    constraints ``sum_{i in S} z_i = p (mod 2)`` to the formulation (``S`` holds each counted
    binary independently with probability 1/2, ``p`` is a fair coin; encoded as
    ``sum_{i in S} z_i - 2 y = p`` with an integer ``y``) and asking for any feasible point. The
    search stops at the first level where some trial is infeasible (or undecided).

    **The guarantee** (Gomes, Sabharwal & Selman, "Model counting: a new strategy for obtaining
    good bounds", AAAI 2006, the MBound theorem): each code satisfies a random parity constraint
    with probability exactly 1/2, independently, so with ``C`` codes a trial with ``k``
    constraints is feasible with probability at most ``C 2^-k`` (Markov). If ``C < 2^(k - alpha)``
    that is below ``2^-alpha``, and all ``t`` trials pass with probability below
    ``delta = 2^(-alpha t)``. Every level up to the last passed one passed, including the smallest
    level whose statement would be false, so the final statement — "at least ``2^(k - alpha)``
    regions" — fails with probability at most

        ``delta = 2^(-alpha * trials)``.

    Args:
      net: an unstacked :class:`~partax.nets.Net`.
      domain: a :class:`partax.Box`.
      scope, layer: as in :func:`count_regions` (the parity constraints act on that scope's binaries).
      backend: ``"highs"`` or ``"scip"``.
      trials: trials per level ``t >= 1``.
      step: parity constraints added per level ``r >= 1``.
      alpha: the slack ``alpha > 0`` of the statement (larger: a smaller bound, a smaller delta).
      max_xors: the most parity constraints tried (default: the number of counted binaries).
      seed: seed of the random subsets and parities.
      time_limit: total seconds, or None; an undecided trial counts as a failed one, and the
        search ends when the time is spent (``complete`` False).
      margin, bound_method, bounds: as in :func:`count_regions`.

    Returns:
      A :class:`ParityBound`.

    Example:
      >>> import jax, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 6, 1], bias_std=0.5)
      >>> pb = parity_lower_bound(net, partax.Box(-3.0, 3.0), trials=3)
      >>> pb.delta, pb.certain >= 1, 2 ** pb.log2_bound >= 1
      (0.125, True, True)
    """
    t0 = time.perf_counter()
    layer, first, last, backend, time_limit = _check_common(net, domain, scope, layer, backend, time_limit)
    for name, v in (("trials", trials), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    alpha = _check_positive_number("alpha", alpha)
    margin = _check_positive_number("margin", margin)
    form = formulate(net, domain, depth=last, bounds=bounds, bound_method=bound_method, margin=margin,
                     time_limit=time_limit)
    counted = form.counted_vars(first, last)
    K = len(counted)
    if max_xors is None:
        max_xors = K
    if isinstance(max_xors, bool) or not isinstance(max_xors, (int, np.integer)) or max_xors < 0:
        raise ValueError(f"max_xors: expected an int >= 0 or None, got {max_xors!r}")
    deadline = None if time_limit is None else t0 + time_limit
    rng = np.random.default_rng(seed)
    record, seen = [], set()
    passed, complete = 0, True
    k = step
    while k <= max_xors:
        ok = True
        for t in range(int(trials)):
            if deadline is not None and time.perf_counter() >= deadline:
                ok, complete = False, False
                break
            ts = time.perf_counter()
            masks = rng.random((k, K)) < 0.5
            parities = rng.integers(0, 2, size=k)
            rows, extra, trivially_infeasible = [], [], False
            for j in range(k):
                S = counted[masks[j]]
                if len(S) == 0:
                    if parities[j]:
                        trivially_infeasible = True
                    continue
                y = form.num_vars + len(extra)
                extra.append((0.0, float(len(S) // 2 + 1), True))
                rows.append((np.append(S, y), np.append(np.ones(len(S)), -2.0), float(parities[j]),
                             float(parities[j])))
            if trivially_infeasible:
                status = "infeasible"
            else:
                left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
                status, z = find_code(form, first=first, last=last, backend=backend, time_limit=left,
                                      extra_rows=rows, extra_vars=extra)
                if status == "feasible":
                    seen.add(z.tobytes())
            record.append(dict(num_xors=int(k), trial=int(t), status=status, seconds=time.perf_counter() - ts))
            if status != "feasible":
                ok = False
                if status != "infeasible":  # undecided (time limit, solver failure): stop, flagged
                    complete = False
                break
        if not ok:
            break
        passed = k
        k += step
    delta = 2.0 ** (-float(alpha) * int(trials))
    return ParityBound(log2_bound=float(max(passed - alpha, 0.0)), probability=1.0 - delta, delta=delta,
                       k=int(passed), alpha=float(alpha), trials=int(trials), step=int(step),
                       certain=max(len(seen), 1), record=record, complete=bool(complete),
                       seconds=time.perf_counter() - t0, scope=scope, layer=layer, backend=backend)
