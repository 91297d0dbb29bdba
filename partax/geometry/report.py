"""Region report: polytope data for the regions of a partition, as columns.

:func:`region_report` takes a :class:`partax.Partition`, the source it was computed on and a
scope/layer, regenerates each region's exemplar input, and fills one row per region of
``partition.table(scope, layer)``:

* cheap columns for **every** region: ``keys``, ``counts``, ``exemplar_index`` (global
  stream index), ``exemplars`` (the input), ``margin`` (exact distance from the exemplar
  to the region's boundary), ``out_norm`` (Frobenius norm of the region's output map,
  from the scope's space), and — when the inputs were sampled uniformly from a box
  (``sample_box``) — ``mc_volume = count / total × box volume`` with its binomial
  standard error ``mc_volume_err``; ``key_ok`` (the regenerated exemplar lies in its region:
  a check that ``source`` is the one the partition was computed from) and
  ``code_reproduces`` (the exemplar's code computed in float64 is the region's code);
* LP columns for the ``max_regions`` most populated regions (NaN, or -1 for integers,
  elsewhere): ``radius`` and ``center`` (Chebyshev), ``num_facets``, ``volume``,
  ``volume_err`` and ``volume_upper`` (:func:`partax.geometry.volumes`, only with a bounded
  ``domain``), with the status of their LPs: ``radius_status``, ``facets_status``,
  ``volume_status`` (0 fine, 1 iteration limit, 2 failure, 3 no Monte Carlo hit; -1 where
  not computed). A failed LP never leaves a number behind: its row's values are NaN (and
  ``num_facets`` -1), and a ``RuntimeWarning`` counts such rows.

An exemplar that does not reproduce its region's code (``key_ok`` or ``code_reproduces``
False) is an error naming the rows, unless ``keep_mismatched=True``: the rows are then kept
and flagged.

General nets (:func:`partax.nets.sequential`: convolutions, pooling, residual blocks, hard-tanh
and max-pool sites) get reports in the ``"prefix"`` scope, in their flattened input space (the
other scopes are refused, as by all their geometry: see :mod:`partax.geometry.local`); sources
of ``[N, *input_shape]`` inputs are flattened row-major, as the engine does, and the
``exemplars`` column holds the flat inputs.

Example:
    >>> import jax, numpy as np, partax
    >>> from partax.geometry import Box, region_report
    >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1], bias_std=0.3)
    >>> x = np.random.default_rng(0).uniform(-1, 1, (2000, 2)).astype(np.float32)
    >>> p = partax.partition(net, x, progress=False)
    >>> rep = region_report(net, p, x, domain=Box(-1, 1), max_regions=5, progress=False)
    >>> len(rep) == p.table("prefix", 2).num_regions, int(np.sum(rep.num_facets >= 0))
    (True, 5)
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from partax.geometry import lp
from partax.validation import check_positive_int
from partax.geometry.domains import Box, check_domain
from partax.geometry.hrep import unit_rows
from partax.geometry.code_regions import codes64, hidden_layers, split_bits
from partax.geometry.linearize import float64_arrays, forward_codes
from partax.geometry.local import keys_of_bits, scope_rows
from partax.geometry.polytope import REACH
from partax.geometry.region_lps import NO_HITS, RADIUS_CAP, facets_rows, volumes_rows
from partax.files import load_npz, save_npz

__all__ = ["RegionReport", "region_report"]

_FORMAT = "partax.regions"
_COLUMNS = ("keys", "counts", "exemplar_index", "exemplars", "margin", "out_norm", "mc_volume",
            "mc_volume_err", "radius", "center", "num_facets", "volume", "volume_err", "has_lp", "key_ok",
            "code_reproduces", "radius_status", "facets_status", "volume_status", "volume_upper")


@dataclasses.dataclass(frozen=True, eq=False)
class RegionReport:
    """Columnar polytope data, one row per region (sorted by key, as the table).

    Attributes:
      keys: ``uint64[M]``; counts: ``int64[M]``; exemplar_index: ``int64[M]``;
      exemplars: ``[M, d_in]`` exemplar inputs; margin: ``float64[M]``;
      out_norm: ``float64[M]``; mc_volume, mc_volume_err: ``float64[M]`` (NaN without a
      ``sample_box``); radius: ``float64[M]``; center: ``float64[M, k]``;
      num_facets: ``int64[M]`` (-1 where not computed); volume, volume_err: ``float64[M]``;
      has_lp: ``bool[M]`` rows whose LP columns were computed (their LPs may still have
        failed: see the status columns).
      key_ok: ``bool[M]`` the regenerated exemplar lies in the row's region (its key, recomputed
        from the exemplar in the net's dtype as the partition does, equals the table's key).
        Rows with False (kept only with ``keep_mismatched=True``) have NaN ``margin`` and
        ``out_norm`` and no LP columns: their exemplar lies in another region.
      code_reproduces: ``bool[M]`` the exemplar's code computed in float64 (a NumPy float64
        forward pass of the scope's layers at the exemplar's point in the scope's space) gives
        the table's key. False with ``key_ok`` True means the exemplar lies within the net's
        rounding of a boundary of its region (``margin`` about 0 or below); the region's polytope
        columns are still the table's region (its rows come from the net-dtype code).
      radius_status: ``int32[M]`` the Chebyshev LP's status (0 optimal, 1 iteration limit,
        2 failure; -1 without LP columns). ``radius`` and ``center`` are NaN where it is not 0.
      facets_status: ``int32[M]`` the worst status of the row's Chebyshev and facet LPs (-1
        without LP columns); ``num_facets`` is -1 where it is not 0.
      volume_status: ``int32[M]`` as :class:`partax.geometry.polytope.VolumeResult` ``.status``
        (3: no Monte Carlo hit; -1 where no volume was computed); ``volume`` and
        ``volume_err`` are NaN where it is not 0.
      volume_upper: ``float64[M]`` a 95 % upper bound on the volume (``VolumeResult.upper``:
        the volume for exact volumes; set for rows without a Monte Carlo hit too).
      meta: dict with ``scope``, ``layer``, ``total``, ``dim``, ``domain`` (``[lo, hi]`` or None),
      ``solver``, ``volume_method``, ``radius_cap`` (None with a domain; without one, ``reach``:
      each region's radius and centre are those of the region intersected with a box of that
      half-width around its exemplar, so a radius never exceeds it).
    """

    keys: np.ndarray
    counts: np.ndarray
    exemplar_index: np.ndarray
    exemplars: np.ndarray
    margin: np.ndarray
    out_norm: np.ndarray
    mc_volume: np.ndarray
    mc_volume_err: np.ndarray
    radius: np.ndarray
    center: np.ndarray
    num_facets: np.ndarray
    volume: np.ndarray
    volume_err: np.ndarray
    has_lp: np.ndarray
    key_ok: np.ndarray
    code_reproduces: np.ndarray
    radius_status: np.ndarray
    facets_status: np.ndarray
    volume_status: np.ndarray
    volume_upper: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __repr__(self) -> str:
        return (f"RegionReport(regions={len(self)}, with_lp={int(self.has_lp.sum())}, "
                f"scope={self.meta.get('scope')!r}, layer={self.meta.get('layer')})")

    def to_markdown(self, max_rows: int = 20, rows=None) -> str:
        """The report as Markdown: a header (scope, layer, inputs, domain) and the most populated rows.

        Args:
          max_rows: how many rows to show (the most populated first).
          rows: optional ``bool[M]`` mask of the rows to choose from (default: all).

        Returns:
          The Markdown text (a trailing newline).
        """
        m = self.meta
        domain = m.get("domain")
        where = (f"domain box [{min(domain[0]):g}, {max(domain[1]):g}]^{m.get('dim')}" if domain is not None else
                 f"no domain: Chebyshev radii and centres are of each region intersected with a box of half-width "
                 f"reach = {m.get('radius_cap', REACH):g} around its exemplar (capped), volumes are not computed")
        lines = [f"{len(self):,} regions (scope {m.get('scope')!r}, layer {m.get('layer')}) of "
                 f"{m.get('total', 0):,} inputs in dimension {m.get('dim')}; {where}. LP columns for "
                 f"{int(self.has_lp.sum()):,} regions (the most populated); solver {m.get('solver')}, volumes "
                 f"{m.get('volume_method')}.", ""]
        mask = np.ones(len(self), bool) if rows is None else np.asarray(rows, bool)
        order = [i for i in np.argsort(-self.counts, kind="stable") if mask[i]][:max_rows]
        cols = ["key", "count", "margin", "radius", "facets", "volume", "volume_err", "reproduces"]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

        def num(v):
            return "–" if not np.isfinite(v) else f"{v:.3g}"

        for i in order:
            lines.append(f"| {int(self.keys[i]):#018x} | {int(self.counts[i])} | {num(self.margin[i])} | "
                         f"{num(self.radius[i])} | {int(self.num_facets[i]) if self.num_facets[i] >= 0 else '–'} | "
                         f"{num(self.volume[i])} | {num(self.volume_err[i])} | "
                         f"{'yes' if self.code_reproduces[i] else 'no'} |")
        shown = int(mask.sum())
        if shown > len(order):
            lines += ["", f"{shown - len(order):,} more rows in the columns (`RegionReport.columns()`)."]
        return "\n".join(lines) + "\n"

    def columns(self) -> dict:
        """The columns as a dict of NumPy arrays."""
        return {name: getattr(self, name) for name in _COLUMNS}

    def save(self, path) -> None:
        """Writes the report as one ``.npz`` (no pickle, JSON header); the write is atomic."""
        save_npz(path, self.columns(), _FORMAT, **self.meta)

    @classmethod
    def load(cls, path) -> "RegionReport":
        """Reads a report written by :meth:`save`.

        Raises:
          ValueError: the file lacks some columns (written by an older partax: recompute it).
        """
        arrays, header = load_npz(path, _FORMAT, "region report")
        missing = [name for name in _COLUMNS if name not in arrays]
        if missing:
            raise ValueError(f"path: the region report {os.fspath(path)!r} lacks the columns {missing} (written by "
                             "an older partax?); recompute it with region_report")
        return cls(**{name: arrays[name] for name in _COLUMNS}, meta=header)


def _batches(idx, size):
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def _float64_bits(space) -> tuple:
    """The codes of a scope's layers at the space's points, computed in float64.

    The forward pass of the space's sub-network (``h @ W + b``, bit = pre-activation ``> 0``,
    as :func:`partax.codes` defines it) in float64 (NumPy), for the ``space.depth`` layers that
    bound the region. A general net (prefix scope: the space is its input space) takes the float64
    codes of :func:`partax.geometry.code_regions.codes64`, each code site by its own rule
    (hard-tanh's two bits, max-pool ties to the lowest slot).
    """
    net = space.net
    if net.is_mlp:
        return tuple(forward_codes(float64_arrays(net), space.points, space.depth))
    sites = hidden_layers(net, space.depth)
    return tuple(split_bits(sites, codes64(sites, space.points)))


def _mismatch_text(rows, keys, ex_keys, limit: int = 8) -> str:
    shown = ", ".join(f"row {int(r)}: key {int(keys[r]):#018x} -> {int(ex_keys[r]):#018x}" for r in rows[:limit])
    return shown + (", ..." if len(rows) > limit else "")


def region_report(net, partition, source, *, scope: str = "prefix", layer=None, domain=None,
                  max_regions: int | None = None, solver: str = "auto", volume_method: str = "auto",
                  sample_box: Box | None = None, batch_size: int = 256, num_samples: int = 20000,
                  seed: int = 0, progress: bool = True, keep_mismatched: bool = False) -> RegionReport:
    """Polytope data for the regions of ``partition.table(scope, layer)``.

    Args:
      net: the unstacked :class:`partax.Net` the partition was computed with.
      partition: a :class:`partax.Partition` holding ``scope``.
      source: the source the partition was computed on (array, sampler, ...; a general net's
        ``[N, *input_shape]`` arrays and batches are flattened row-major, as the engine does):
        the exemplars are regenerated with ``partax.sources.as_source(source,
        input_shape=net.input_shape).inputs_at``.
      scope, layer: the tables' scope and 1-based layer (default: the last one).
      domain: a :class:`Box` in the scope's space bounding the regions (needed for the
        ``volume`` column), or None.
      max_regions: LP columns for this many of the most populated regions (all if None).
      solver: ``"auto"`` (HiGHS on CPU, the JAX interior point on accelerators), ``"ipm"``,
        ``"numpy"`` or ``"highs"``.
      volume_method: ``"auto"``, ``"exact"``, ``"mc"`` (see :func:`partax.geometry.volumes`)
        or ``"none"``.
      sample_box: the input box the partition's inputs were drawn uniformly from, for the
        count-based ``mc_volume`` column (``"prefix"`` scope only).
      batch_size: regions per LP batch.
      num_samples, seed: Monte Carlo volumes.
      progress: a tqdm bar over the LP batches.
      keep_mismatched: keep (flagged, with a warning) the rows whose exemplar does not
        reproduce the region's code instead of raising. Rows with ``key_ok`` False get no LP
        columns (the ``max_regions`` most populated *other* rows get them).

    Returns:
      A :class:`RegionReport`.

    Raises:
      ValueError: ``source`` does not regenerate the partition's inputs: most exemplars fall
        outside the regions the table says they name (a different source, or a different net;
        raised even with ``keep_mismatched``). Without ``keep_mismatched``, also when any
        exemplar does not reproduce its region's code (``key_ok`` or ``code_reproduces`` False,
        e.g. an exemplar within float32 rounding of a boundary): the message names the rows
        and keys.
    """
    from partax.sources import as_source

    if net.stack_shape:
        raise ValueError("net: expected an unstacked Net; index a stacked one first (net[i])")
    L = net.num_hidden
    layer = L if layer is None else layer
    if volume_method not in ("auto", "exact", "mc", "none"):
        raise ValueError(f"volume_method: expected 'auto', 'exact', 'mc' or 'none', got {volume_method!r}")
    if max_regions is not None and (not isinstance(max_regions, (int, np.integer)) or max_regions < 0):
        raise ValueError(f"max_regions: expected a non-negative int or None, got {max_regions!r}")
    batch_size = check_positive_int(batch_size, "batch_size")
    num_samples = check_positive_int(num_samples, "num_samples")
    if not isinstance(keep_mismatched, (bool, np.bool_)):
        raise TypeError(f"keep_mismatched: expected a bool, got {type(keep_mismatched).__name__}")
    solver = lp.default_solver() if solver == "auto" else solver
    if solver not in lp.SOLVERS:
        raise ValueError(f"solver: expected 'auto' or one of {lp.SOLVERS}, got {solver!r}")
    table = partition.table(scope, layer)
    M = len(table)
    ex = np.asarray(as_source(source, input_shape=net.input_shape).inputs_at(table.exemplars))  # flat [M, d_in]
    if ex.shape != (M, net.input_dim):
        raise ValueError(f"source: expected exemplar inputs of shape {(M, net.input_dim)}, got {ex.shape}")
    margin = np.full(M, np.nan)
    out_norm = np.full(M, np.nan)
    ex_keys = np.zeros(M, np.uint64)
    ex_keys64 = np.zeros(M, np.uint64)
    k = None
    # cheap columns for every region
    for idx in _batches(np.arange(M), 4 * batch_size):
        A, b, space, maps = scope_rows(net, ex[idx], scope, layer, domain)
        k = space.dim
        Au, bu, live, _ = unit_rows(A, b)
        slack = bu - np.einsum("nmk,nk->nm", Au, np.asarray(space.points, np.float64))
        margin[idx] = np.where(live, slack, np.inf).min(axis=1)
        out_norm[idx] = np.linalg.norm(maps.out.A, axis=(1, 2))
        ex_keys[idx] = keys_of_bits(space, maps.masks[: space.depth])
        ex_keys64[idx] = keys_of_bits(space, _float64_bits(space))
    table_keys = np.asarray(table.keys, np.uint64)
    key_ok = ex_keys == table_keys
    code_reproduces = ex_keys64 == table_keys
    bad = int(M - key_ok.sum())
    if M and bad > M // 2:
        raise ValueError(
            f"source: {bad} of {M} regenerated exemplars do not lie in their regions ({scope!r}, layer {layer}): "
            "it is not the source this partition was computed from (or the net differs)"
        )
    mismatched = np.flatnonzero(~(key_ok & code_reproduces))
    if mismatched.size:
        moved = np.flatnonzero(~key_ok)
        rounding = np.flatnonzero(key_ok & ~code_reproduces)
        parts = []
        if moved.size:
            parts.append(f"{moved.size} lie in another region in the net's dtype (key_ok False; "
                         f"{_mismatch_text(moved, table_keys, ex_keys)})")
        if rounding.size:
            parts.append(f"{rounding.size} get another code in float64, within rounding of a boundary "
                         f"(code_reproduces False; {_mismatch_text(rounding, table_keys, ex_keys64)})")
        what = (f"{mismatched.size} of {M} exemplars do not reproduce their region's code ({scope!r}, layer {layer}): "
                + "; ".join(parts))
        if not keep_mismatched:
            raise ValueError(f"source: {what}; pass keep_mismatched=True to keep such rows, flagged")
        warnings.warn(f"region_report: {what}; kept and flagged (key_ok / code_reproduces columns)", RuntimeWarning,
                      stacklevel=2)
    margin[~key_ok] = np.nan  # the exemplar lies in another region: its numbers are not this row's
    out_norm[~key_ok] = np.nan
    if k is None:
        k = net.input_dim if scope == "prefix" or layer == 1 else net.widths[layer - 2]
    domain = check_domain(domain, k)
    mc_volume = np.full(M, np.nan)
    mc_err = np.full(M, np.nan)
    if sample_box is not None:
        if scope != "prefix":
            raise ValueError("sample_box: the count-based volume is defined for the 'prefix' scope (input space)")
        bv = sample_box.volume(net.input_dim)
        p = table.counts / max(table.total, 1)
        mc_volume = p * bv
        mc_err = bv * np.sqrt(p * (1 - p) / max(table.total, 1))
    # LP columns for the most populated regions
    order = np.lexsort((table.keys, -table.counts))
    order = order[key_ok[order]]  # an exemplar in another region would describe that region
    top = order if max_regions is None else order[:max_regions]
    radius = np.full(M, np.nan)
    center = np.full((M, k), np.nan)
    num_facets = np.full(M, -1, np.int64)
    volume = np.full(M, np.nan)
    volume_err = np.full(M, np.nan)
    volume_upper = np.full(M, np.nan)
    radius_status = np.full(M, -1, np.int32)
    facets_status = np.full(M, -1, np.int32)
    volume_status = np.full(M, -1, np.int32)
    has_lp = np.zeros(M, bool)
    batches = _batches(top, batch_size)
    bar = None
    if progress and batches:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(top), desc="region LPs", unit="region", leave=False)
    for idx in batches:
        A, b, space, _ = scope_rows(net, ex[idx], scope, layer, domain)
        pts = np.asarray(space.points, np.float64)
        fac, _, _, c, r, cst, fst = facets_rows(A, b, pts, domain, solver, REACH, RADIUS_CAP, 1e-8, 1e-7, 64, seed,
                                            4096)
        radius[idx] = r  # NaN where the Chebyshev LP failed
        center[idx] = c
        radius_status[idx] = cst
        facets_status[idx] = fst
        num_facets[idx] = np.where(fst == lp.OPTIMAL, [len(f) for f in fac], -1)
        if domain is not None and volume_method != "none":
            # the rows include the domain's, and with a domain the Chebyshev LP of _facets is the
            # one volumes would solve: its centres are reused
            vr = volumes_rows(A, b, pts, c, r, cst, method=volume_method, num_samples=num_samples, key=seed,
                          solver=solver, tol=1e-8, facet_tol=1e-9)
            volume[idx], volume_err[idx], volume_upper[idx], volume_status[idx] = (vr.volume, vr.stderr, vr.upper,
                                                                                   vr.status)
        has_lp[idx] = True
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    failed = np.flatnonzero(has_lp & ((facets_status != lp.OPTIMAL)
                                      | ((volume_status != lp.OPTIMAL) & (volume_status != NO_HITS)
                                         & (volume_status != -1))))
    no_hit = np.flatnonzero(volume_status == NO_HITS)
    if failed.size:
        warnings.warn(f"region_report: the LPs of {failed.size} region(s) did not reach optimality (rows "
                      f"{failed[:10].tolist()}{' ...' if failed.size > 10 else ''}): their LP columns are NaN / -1, "
                      "see radius_status, facets_status, volume_status", RuntimeWarning, stacklevel=2)
    if no_hit.size:
        warnings.warn(f"region_report: {no_hit.size} region(s) got no Monte Carlo hit (volume NaN, volume_status 3; "
                      "volume_upper bounds it): raise num_samples", RuntimeWarning, stacklevel=2)
    meta = {
        "scope": scope,
        "layer": int(layer),
        "total": int(table.total),
        "dim": int(k),
        "domain": None if domain is None else [domain.bounds(k)[0].tolist(), domain.bounds(k)[1].tolist()],
        "solver": solver,
        "volume_method": volume_method,
        "radius_cap": None if domain is not None else REACH,  # without a domain: radii capped at reach
    }
    return RegionReport(
        keys=table.keys, counts=table.counts, exemplar_index=table.exemplars, exemplars=ex,
        margin=margin, out_norm=out_norm, mc_volume=mc_volume, mc_volume_err=mc_err,
        radius=radius, center=center, num_facets=num_facets, volume=volume, volume_err=volume_err,
        has_lp=has_lp, key_ok=key_ok, code_reproduces=code_reproduces, radius_status=radius_status,
        facets_status=facets_status, volume_status=volume_status, volume_upper=volume_upper, meta=meta,
    )
