"""Tracing the partition across training: a training-loop callback, schedules and trace files.

:class:`Tracer` is called as ``tracer(step, net)`` from any training loop (it is a valid
:func:`partax.train.fit` callback). At the steps of its schedule it partitions its fixed inputs
with the current net and appends, for every scope, hidden layer and estimator, one JSON record:
number of regions, ``H_T``, ``I_XT``, ``I_TY``, the saturation diagnostics of
:func:`partax.info.measures` and timing. Baseline estimators on the hidden activations
(``act(preactivations)``) are recorded alongside, with ``scope`` set to the baseline's name.

Trace directory layout (``out=DIR``)::

    DIR/trace.jsonl              one JSON object per line, append-only; the first is the header
    DIR/tables/step_000123.npz   optional: the Partition of that checkpoint (Partition.save)
    DIR/nets/step_000123.npz     optional: the net of that checkpoint (partax.save_net)

The header records what produced the trace: a SHA-256 of the inputs and of the labels, the
network's architecture, the schedule, scopes, estimators, baselines, probes, the partax
version and the caller's ``meta``. A new :class:`Tracer` on a directory that already holds a
trace resumes it only when all of these match; otherwise it refuses, naming what differs (or,
with ``if_different="new_dir"``, writes to the first free ``DIR-2``, ``DIR-3``, ...). Runs never
mix.

Each checkpoint is written as its measure lines (``"kind": "measure"``) followed by one commit
line (``"kind": "checkpoint"``), in one append, then flushed and ``fsync``-ed. A checkpoint counts
only once its commit line is complete, so a killed process loses at most the checkpoint in flight:
:func:`load_trace` ignores a partially written tail, and a new :class:`Tracer` on the same
directory truncates that tail and skips the steps already committed (no duplicates on resume).

Schedules: :func:`every_k`, :func:`log_spaced`, or any explicit sequence of steps.

Example:
    >>> import jax, optax, partax, tempfile
    >>> from partax.datasets import tishby_ib
    >>> from partax.trace import Tracer, load_trace
    >>> from partax.train import fit
    >>> x, y = tishby_ib()
    >>> net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2])
    >>> out = tempfile.mkdtemp()
    >>> tracer = Tracer(x, y, every=[0, 1, 2], out=out, baselines=("binned30",))
    >>> net, hist = fit(net, x, y, optax.adam(4e-4), epochs=2, batch_size=256,
    ...                 key=jax.random.key(1), callbacks=[tracer])
    >>> tr = load_trace(out)
    >>> sorted(set(tr["step"].tolist())), sorted(set(tr["scope"].tolist()))
    ([0, 1, 2], ['binned30', 'layer', 'prefix', 'suffix'])
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Callable, Sequence

import jax
import numpy as np

from partax import info, tracefiles
from partax.coding import SCOPES as _SCOPES
from partax.nets import Net, describe, flat_inputs, site_outputs
from partax.schedules import every_k, log_spaced
from partax.tracefiles import TRACE_FILE, load_trace

from partax.tracefiles import load_header

__all__ = ["Tracer", "load_trace", "load_header", "every_k", "log_spaced", "TRACE_FILE", "TraceMismatchError"]


class TraceMismatchError(ValueError):
    """A :class:`Tracer` was pointed at a trace that another run produced (the message says what differs)."""


def _array_digest(a) -> dict | None:
    """``{"sha256", "shape", "dtype"}`` of an array (None for None)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode() + str(a.shape).encode())
    h.update(a.tobytes())
    return {"sha256": h.hexdigest(), "shape": list(a.shape), "dtype": str(a.dtype)}


def _net_description(net: Net) -> dict:
    return describe(net)


def _differences(old: dict, new: dict, keys) -> list:
    """The names (with both values, shortened) of the fields that differ."""
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if a != b:
            sa, sb = json.dumps(a), json.dumps(b)
            if len(sa) > 80:
                sa = sa[:77] + "..."
            if len(sb) > 80:
                sb = sb[:77] + "..."
            out.append(f"{k} (trace: {sa}; now: {sb})")
    return out


_MATCHED = ("partax_version", "inputs", "labels", "schedule", "scopes", "estimators", "baselines", "probes", "meta")



# -- baselines ---------------------------------------------------------------------------

_BASELINE_RE = (
    (re.compile(r"^binned(\d+)$"), "binned"),
    (re.compile(r"^binned(\d+)_fixed$"), "binned_fixed"),
    (re.compile(r"^binsize([0-9.eE+-]+)$"), "binsize"),
    (re.compile(r"^adaptive(\d+)$"), "adaptive"),
    (re.compile(r"^kde([0-9.eE+-]*)$"), "kde"),
)


def _parse_baseline(name: str) -> Callable:
    """Returns ``fn(t, y, estimator) -> list of (estimator_label, dict of fields)``."""
    if not isinstance(name, str):
        raise TypeError(f"baselines: expected names (str), got {type(name).__name__}")
    for rx, kind in _BASELINE_RE:
        m = rx.match(name)
        if not m:
            continue
        arg = m.group(1)
        try:
            if kind in ("binned", "binned_fixed", "adaptive"):
                k = int(arg)
                if k < (1 if kind == "adaptive" else 2):  # binned<K>: K edges, at least 2
                    raise ValueError
            else:
                v = float(arg) if arg else 1e-3
                if not v > 0:
                    raise ValueError
        except ValueError:
            break

        def as_fields(r):
            return {"I_XT": r.I_XT, "I_TY": r.I_TY, "H_T": r.H_T, "H_Y": r.H_Y, "regions": r.bins, "N": r.N,
                    "coverage": r.coverage, "saturated": r.saturated}

        if kind == "binned":
            return lambda t, y, est, k=k: [(est, as_fields(info.binned_mi(t, y, bins=k, range=None, estimator=est)))]
        if kind == "binned_fixed":
            return lambda t, y, est, k=k: [
                (est, as_fields(info.binned_mi(t, y, bins=k, range=(-1.0, 1.0), estimator=est)))
            ]
        if kind == "binsize":
            return lambda t, y, est, v=v: [(est, as_fields(info.binned_mi(t, y, binsize=v, estimator=est)))]
        if kind == "adaptive":
            return lambda t, y, est, k=k: [(est, as_fields(info.adaptive_binned_mi(t, y, bins=k, estimator=est)))]

        def kde(t, y, est, v=v):
            r = info.kde_mi(t, y, noise_var=v)
            return [
                ("upper", {"I_XT": r.I_XT_upper, "I_TY": r.I_TY_upper, "H_T": r.H_T_upper, "N": t.shape[0]}),
                ("lower", {"I_XT": r.I_XT_lower, "I_TY": r.I_TY_lower, "H_T": r.H_T_lower, "N": t.shape[0]}),
            ]

        kde.per_estimator = False
        return kde
    raise ValueError(
        f"baselines: unknown baseline {name!r}; expected 'binned<K>' (K >= 2 bin edges over the layer's "
        "observed range), 'binned<K>_fixed' (K >= 2 edges over [-1, 1]), 'binsize<s>' (floor(t/s)), 'adaptive<K>' "
        "(quantile bins) or 'kde[<noise_var>]'"
    )


def _step_set(value, name: str):
    """A ``save_*`` argument: True / False, or a frozenset of steps."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return bool(value)
    try:
        return frozenset(int(s) for s in value)
    except TypeError:
        raise TypeError(f"{name}: expected a bool or a sequence of steps") from None


@jax.jit
def _activations(net, x):
    return site_outputs(net, x)


class Tracer:
    """A training-loop callback that records the partition's information measures at checkpoints.

    Args:
      x: the traced inputs ``[N, d_in]`` (fixed across checkpoints).
      y: integer labels ``[N]`` or None (then ``I_TY`` is ``nan``).
      every: the schedule: None (every call), an int ``k`` (steps divisible by ``k``) or a
        sequence of steps (e.g. :func:`log_spaced`).
      scopes: scopes to record (``"layer"``, ``"prefix"``, ``"suffix"``).
      estimators: entropy estimators (``"plugin"``, ``"miller_madow"``).
      baselines: estimators on the hidden activations ``act(preactivations(x))``, recorded with
        ``scope`` = the name: ``"binned<K>"`` (``K`` bin *edges* over the layer's observed
        ``[min, max]`` at that checkpoint, i.e. ``K - 1`` equal intervals plus the bin of the
        maximum, Shwartz-Ziv & Tishby's ``num_of_bins`` convention, see
        :func:`partax.info.binned_mi`; suited to unbounded ReLU activations),
        ``"binned<K>_fixed"`` (``K`` edges over ``[-1, 1]``, Shwartz-Ziv & Tishby for tanh),
        ``"binsize<s>"`` (Saxe et al. ``floor(t/s)``), ``"adaptive<K>"`` (quantile bins),
        ``"kde"`` / ``"kde<var>"`` (Kolchinsky–Tracey bounds, ``estimator`` = ``"upper"`` /
        ``"lower"``; default noise variance 1e-3). Binning baselines use each of ``estimators``.
      out: trace directory (created; the trace is ``out/trace.jsonl``), or a path ending in
        ``.jsonl`` naming the trace file itself (its directory is created, and ``tables/`` goes
        next to it), or None to keep the records in memory only.
      save_tables: also write each checkpoint's partition to ``tables/step_XXXXXX.npz`` next to the trace file
        (``_m<i>`` suffix per member of a stacked net; :func:`partax.load_partition` reads them):
        True (every checkpoint), False, or a sequence of steps (only those).
      batch_size: chunk size passed to :func:`partax.partition`.
      probes: extra per-checkpoint measurements: a mapping ``name -> probe`` where
        ``probe(net, x, y)`` (one unstacked member) returns a list of dicts, each one record
        with at least ``"layer"``; the tracer adds ``step``, ``member``, ``scope`` (= ``name``)
        and ``estimator`` (``"probe"`` unless the record sets it). E.g.
        ``{"tangent": partax.tropical.tangent_probe()}`` records tangent sensitivity.
      save_nets: also write each checkpoint's net (parameters, stacked nets whole) to
        ``nets/step_XXXXXX.npz`` next to the trace file, before the checkpoint commits, so that
        geometry can be run on any checkpoint later (:func:`partax.load_net`): True, False, or a
        sequence of steps.
      meta: a JSON-ready dict recorded in the header (e.g. ``{"data": "digits", "seed": 0}``);
        part of what must match on resume; figures take their titles from it.
      if_different: what to do when ``out`` already holds a trace that another run produced (a
        different header, or none: a trace of an older partax): ``"error"`` (the default) raises
        :class:`TraceMismatchError` naming what differs; ``"new_dir"`` traces into the first of
        ``out-2``, ``out-3``, ... that is free or holds this run's trace (see :attr:`out`).

    Attributes:
      records: the records written by this tracer (list of dicts).
      steps_done: set of steps committed (including those found on resume).
      out: the trace directory (or file) in use: ``out``, or the new one ``if_different`` chose.
      header: the header (a dict) this tracer writes or resumed (``"net"`` once it has seen one).

    Example:
      >>> tracer = Tracer(x, y, every=log_spaced(8000, 274), out="runs/ib")  # doctest: +SKIP
      >>> partax.train.fit(net, x, y, optax.adam(4e-4), epochs=8000, batch_size=256,
      ...                  key=key, callbacks=[tracer])  # doctest: +SKIP
    """

    def __init__(
        self,
        x,
        y=None,
        *,
        every=None,
        scopes: Sequence[str] = _SCOPES,
        estimators: Sequence[str] = ("plugin",),
        baselines: Sequence[str] = (),
        out=None,
        save_tables: bool = False,
        batch_size: int | None = None,
        probes=None,
        save_nets=False,
        meta=None,
        if_different: str = "error",
    ):
        x = np.asarray(x)
        self._x_shape = tuple(x.shape[1:])  # checked against the net's input shape at its first call
        if x.ndim > 2 and x.shape[0]:  # (N, *input_shape): partax works on flattened (row-major) inputs
            x = x.reshape(x.shape[0], -1)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"x: expected inputs of shape (N >= 1, d_in), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("x: contains NaN or inf")
        if y is not None:
            y = np.asarray(y)
            if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
                raise ValueError(f"y: expected non-negative integer labels of shape ({x.shape[0]},), got {y.shape} {y.dtype}")
        self.x, self.y = x, y
        if every is None:
            self._schedule = None
        elif isinstance(every, (int, np.integer)) and not isinstance(every, bool):
            if every < 1:
                raise ValueError(f"every: expected an int >= 1, got {every}")
            self._schedule = int(every)
        else:
            try:
                steps = np.asarray(list(every))
            except TypeError:
                raise TypeError(f"every: expected None, an int or a sequence of steps, got {type(every).__name__}") from None
            if steps.size and not np.issubdtype(steps.dtype, np.integer):
                raise TypeError(f"every: expected integer steps, got {steps.dtype}")
            self._schedule = frozenset(int(s) for s in steps)
        if isinstance(scopes, str):
            scopes = (scopes,)
        self.scopes = tuple(scopes)
        for s in self.scopes:
            if s not in _SCOPES:
                raise ValueError(f"scopes: expected a subset of {_SCOPES}, got {s!r}")
        probes = {} if probes is None else probes
        if not isinstance(probes, dict) or not all(isinstance(k, str) and callable(v) for k, v in probes.items()):
            raise TypeError("probes: expected a dict of name (str) -> callable probe(net, x, y)")
        self.probes = dict(probes)
        clash = sorted(set(self.probes) & (set(_SCOPES) | set(baselines if not isinstance(baselines, str) else (baselines,))))
        if clash:
            raise ValueError(f"probes: names {clash} are already scopes or baselines; expected other names")
        if not self.scopes and not baselines and not self.probes:
            raise ValueError("scopes: expected at least one scope (or a baseline or a probe)")
        if isinstance(estimators, str):
            estimators = (estimators,)
        self.estimators = tuple(estimators)
        if not self.estimators:
            raise ValueError("estimators: expected at least one estimator")
        for e in self.estimators:
            if e not in info.ESTIMATORS:
                raise ValueError(f"estimators: expected a subset of {info.ESTIMATORS}, got {e!r}")
        if isinstance(baselines, str):
            baselines = (baselines,)
        self.baselines = tuple(baselines)
        self._baseline_fns = {b: _parse_baseline(b) for b in self.baselines}
        if isinstance(save_tables, (bool, np.bool_)) or save_tables is None:
            self._table_steps = bool(save_tables)
        else:
            try:
                self._table_steps = frozenset(int(s) for s in save_tables)
            except TypeError:
                raise TypeError("save_tables: expected a bool or a sequence of steps") from None
        self.save_tables = bool(self._table_steps)
        self._net_steps = _step_set(save_nets, "save_nets")
        self.batch_size = batch_size
        if if_different not in ("error", "new_dir"):
            raise ValueError(f"if_different: expected 'error' or 'new_dir', got {if_different!r}")
        self.if_different = if_different
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta: expected a JSON-ready dict or None, got {type(meta).__name__}")
        try:
            meta = None if meta is None else json.loads(json.dumps(meta))
        except (TypeError, ValueError):
            raise TypeError("meta: expected a JSON-ready dict (str keys; numbers, strings, lists, dicts)") from None
        self.header = self._fixed_header(meta)
        self.out = None if out is None else os.fspath(out)
        if (self.save_tables or self._net_steps) and self.out is None:
            raise ValueError("save_tables, save_nets: need out=DIR")
        self.records: list = []
        self.steps_done: set = set()
        self._requested_out = self.out
        if self.out is not None:
            self._open(self.out)

    def _fixed_header(self, meta) -> dict:
        """The header fields known before the first net (JSON-normalised)."""
        from partax import __version__

        if self._schedule is None:
            schedule = "every call"
        elif isinstance(self._schedule, int):
            schedule = {"every": self._schedule}
        else:
            schedule = sorted(self._schedule)
        head = {"kind": "header", "format": "partax.trace", "version": 1, "partax_version": __version__,
                "inputs": _array_digest(self.x), "labels": _array_digest(self.y), "schedule": schedule,
                "scopes": list(self.scopes), "estimators": list(self.estimators), "baselines": list(self.baselines),
                "probes": sorted(self.probes), "meta": meta}
        return json.loads(json.dumps(head))

    def _open(self, out: str) -> None:
        """Points the tracer at ``out``: resumes a matching trace, or refuses / moves on.

        A trace matches when its header equals this tracer's in every field of ``_MATCHED``
        (and in ``net`` once this tracer has seen a net); an empty or missing trace is free.
        """
        keys = _MATCHED + (("net",) if "net" in self.header else ())
        k = 1
        cand = out
        while True:
            path = tracefiles.trace_path(cand)
            _, steps, end, header = tracefiles.scan_trace(path, with_header=True)
            diffs = []
            if steps:
                diffs = (["header (the trace has none: an older partax wrote it, so what produced it is unknown)"]
                         if header is None else _differences(header, self.header, keys))
            if not diffs:
                break
            if self.if_different == "error":
                what = "network" if all(d.startswith("net ") for d in diffs) else "run"
                raise TraceMismatchError(
                    f"out: the trace at {path!r} was produced by another {what}; it differs in "
                    + "; ".join(diffs) + ". Pass another out, or if_different='new_dir' to trace into a new "
                    "directory next to it")
            k += 1
            cand = f"{out.removesuffix('.jsonl')}-{k}" + (".jsonl" if out.endswith(".jsonl") else "")
        self.out = cand
        os.makedirs(self._dir, exist_ok=True)
        self.steps_done = {int(s) for s in steps}
        if header is not None and steps and "net" in header:
            self.header = {**self.header, "net": header["net"]}
        if os.path.exists(path) and os.path.getsize(path) != end:
            with open(path, "r+b") as f:  # drop the uncommitted tail of a crashed run
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())

    def _check_net(self, net: Net) -> None:
        """The first net fixes the header's architecture; a resumed trace's must match it."""
        desc = json.loads(json.dumps(_net_description(net)))
        known = self.header.get("net")
        if known == desc:
            return
        if known is not None and (self.records or self.out is None):
            raise TraceMismatchError("net: this tracer traced another network: "
                                     + "; ".join(_differences({"net": known}, {"net": desc}, ("net",))))
        self.header = {**self.header, "net": desc}
        if known is not None:  # resumed a trace of another net: refuse, or find this run's directory
            self._open(self._requested_out)

    @property
    def _dir(self) -> str:
        """The directory holding the trace file (and ``tables/``)."""
        return os.path.dirname(tracefiles.trace_path(self.out)) or "."

    # -- schedule --------------------------------------------------------------------
    def wants(self, step: int) -> bool:
        """True if ``step`` is in the schedule and not yet recorded."""
        step = int(step)
        if step in self.steps_done:
            return False
        if self._schedule is None:
            return True
        if isinstance(self._schedule, int):
            return step % self._schedule == 0
        return step in self._schedule

    # -- the callback ----------------------------------------------------------------
    def __call__(self, step, net: Net) -> None:
        """Records checkpoint ``step`` of ``net`` if the schedule asks for it.

        Every call checks the net's architecture against the trace's (the first net fixes it),
        scheduled or not: one tracer traces one run.
        """
        step = int(step)
        if not isinstance(net, Net):
            raise TypeError(f"net: expected a partax Net, got {type(net).__name__}")
        if net.input_dim != self.x.shape[1]:
            raise ValueError(f"net: takes inputs of dimension {net.input_dim}, the tracer holds {self.x.shape[1]}")
        if len(self._x_shape) > 1 and self._x_shape != tuple(net.input_shape):
            # structured inputs of another layout (NCHW for NHWC) flatten to the same size: refuse them
            flat_inputs(net, np.empty((1, *self._x_shape), np.float32), "x")
        self._check_net(net)
        if not self.wants(step):
            return
        t0 = time.perf_counter()
        from partax.engine import partition  # late import: the tracer is used from partax.__init__

        members = [net] if not net.stack_shape else [net[i] for i in range(net.stack_shape[0])]
        parts = None
        if self.scopes:
            parts = partition(net, self.x, labels=self.y, scopes=self.scopes, batch_size=self.batch_size, progress=False)
            if not net.stack_shape:
                parts = (parts,)
        recs = []
        for i, member in enumerate(members):
            widths = member.widths
            if parts is not None:
                p = parts[i]
                for scope in self.scopes:
                    for l in range(1, len(widths) + 1):
                        table = p.table(scope, l)
                        for est in self.estimators:
                            m = info.measures(table, est)
                            recs.append({"step": step, "member": i, "scope": scope, "layer": l,
                                         "width": widths[l - 1], "estimator": est, **m._asdict()})
            if self._baseline_fns:
                acts = [np.asarray(a) for a in _activations(member, self.x)]
                for name, fn in self._baseline_fns.items():
                    ests = self.estimators if getattr(fn, "per_estimator", True) else (None,)
                    for l, t in enumerate(acts, start=1):
                        for est in ests:
                            for label, fields in fn(t, self.y, est or "plugin"):
                                recs.append({"step": step, "member": i, "scope": name, "layer": l,
                                             "width": widths[l - 1], "estimator": label, **fields})
            for name, probe in self.probes.items():
                for fields in probe(member, self.x, self.y):
                    recs.append({"estimator": "probe", **fields, "step": step, "member": i, "scope": name})
        keep = self._table_steps is True or (isinstance(self._table_steps, frozenset) and step in self._table_steps)
        if keep and parts is not None:
            d = os.path.join(self._dir, "tables")
            os.makedirs(d, exist_ok=True)
            for i, p in enumerate(parts):
                suffix = f"_m{i}" if net.stack_shape else ""
                p.save(os.path.join(d, f"step_{step:06d}{suffix}.npz"))
        if self._net_steps is True or (isinstance(self._net_steps, frozenset) and step in self._net_steps):
            from partax.nets import save_net

            save_net(net, os.path.join(self._dir, "nets", f"step_{step:06d}.npz"))
        seconds = time.perf_counter() - t0
        now = time.time()
        for r in recs:
            r["time"] = now
            r["seconds"] = seconds
        self._commit(step, recs, now, seconds)

    def _commit(self, step: int, recs: list, now: float, seconds: float) -> None:
        if self.out is not None:
            lines = [json.dumps({"kind": "measure", **{k: tracefiles.json_value(v) for k, v in r.items()}}) for r in recs]
            lines.append(json.dumps({"kind": "checkpoint", "step": step, "records": len(recs),
                                     "time": now, "seconds": seconds}))
            path = tracefiles.trace_path(self.out)
            new = not os.path.exists(path)
            if not self.steps_done:  # the first checkpoint of this trace carries its header
                lines.insert(0, json.dumps(self.header))
            data = ("\n".join(lines) + "\n").encode()
            with open(path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if new:
                tracefiles.fsync_dir(self._dir)
        self.records.extend(recs)
        self.steps_done.add(step)

    def trace(self) -> dict:
        """The records of this tracer (this session only) as columns, like :func:`load_trace`."""
        rows = [{k: tracefiles.json_value(v) for k, v in r.items()} for r in self.records]
        return tracefiles.columns(rows)

    def __repr__(self) -> str:
        return (f"Tracer(N={self.x.shape[0]}, scopes={self.scopes}, estimators={self.estimators}, "
                f"baselines={self.baselines}, out={self.out!r}, steps_done={len(self.steps_done)})")
