"""Trace files: the append-only JSON-lines format of :class:`partax.Tracer`, and its reader.

Layout of a trace directory ``DIR``::

    DIR/trace.jsonl              one JSON object per line, append-only
    DIR/tables/step_000123.npz   optional: the Partition of that checkpoint (Partition.save)

The first line is the trace's header (``"kind": "header"``: what produced the trace, see
:class:`partax.Tracer`), written with the first checkpoint. Each checkpoint is its measure lines
(``"kind": "measure"``) followed by one commit line (``"kind": "checkpoint"``), written in one
append, flushed and ``fsync``-ed: a checkpoint counts only once its commit line is complete
(:func:`scan_trace`), so a killed writer loses at most the checkpoint in flight and
:func:`load_trace` ignores a partial tail. Traces written before headers existed load as before
(:func:`load_header` gives None).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

__all__ = ["TRACE_FILE", "trace_path", "scan_trace", "columns", "load_trace", "load_header", "json_value",
           "fsync_dir"]

TRACE_FILE = "trace.jsonl"


def trace_path(path) -> str:
    path = os.fspath(path)
    return path if path.endswith(".jsonl") else os.path.join(path, TRACE_FILE)


def scan_trace(path: str, with_header: bool = False):
    """Parses a trace file. Returns ``(committed measure rows, committed steps, end offset)``
    (and the header dict or None last, with ``with_header``): ``end`` is the byte offset just
    after the last complete commit line. A header counts only with a committed checkpoint."""
    rows, steps, pending, end = [], [], [], 0
    header, pending_header = None, None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return (rows, steps, 0, None) if with_header else (rows, steps, 0)
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:  # partial last line (crash mid-write): ignored
            break
        line = data[pos:nl]
        pos = nl + 1
        try:
            rec = json.loads(line)
        except ValueError:
            pending = []  # corrupted line: drop the checkpoint it belongs to
            continue
        if not isinstance(rec, dict):
            continue
        if rec.get("kind") == "header":
            pending_header = rec
        elif rec.get("kind") == "checkpoint":
            good = [r for r in pending if r.get("step") == rec.get("step")]
            if len(good) == rec.get("records", len(good)):
                rows.extend(good)
                steps.append(rec["step"])
                if header is None and pending_header is not None:
                    header = pending_header
            pending = []
            end = pos
        else:
            pending.append(rec)
    if with_header:
        return rows, steps, end, header
    return rows, steps, end


def _column(values) -> np.ndarray:
    """An unknown column: its dtype follows the values found."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        if len(present) == len(values):
            return np.asarray(values, dtype=bool)
        return np.asarray([np.nan if v is None else float(v) for v in values])
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        if len(present) == len(values):
            return np.asarray(values, dtype=np.int64)
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.asarray(["" if v is None else str(v) for v in values])


#: Known columns and their fixed dtypes (whatever baselines were traced): integers use -1 for a
#: missing value, ``saturated`` False, strings "", floats NaN.
_INT_COLUMNS = ("step", "member", "layer", "width", "regions", "N")
_BOOL_COLUMNS = ("saturated",)
_STR_COLUMNS = ("scope", "estimator")
_FLOAT_COLUMNS = ("H_T", "I_XT", "I_TY", "H_Y", "regions_per_input", "singleton_fraction", "coverage",
                  "time", "seconds")


def _typed_column(name: str, values) -> np.ndarray:
    if name in _INT_COLUMNS:
        return np.asarray([-1 if v is None else int(v) for v in values], dtype=np.int64)
    if name in _BOOL_COLUMNS:
        return np.asarray([False if v is None else bool(v) for v in values], dtype=bool)
    if name in _STR_COLUMNS:
        return np.asarray(["" if v is None else str(v) for v in values], dtype=str)
    if name in _FLOAT_COLUMNS:
        return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return _column(values)


def columns(rows) -> dict:
    cols: list = []
    for r in rows:
        for k in r:
            if k not in cols and k != "kind":
                cols.append(k)
    return {k: _typed_column(k, [r.get(k) for r in rows]) for k in cols}


def load_trace(path) -> dict:
    """Reads a trace written by :class:`Tracer`.

    Args:
      path: the trace directory (or the trace file itself, a path ending in ``.jsonl``).

    Returns:
      A dict column -> NumPy array, one entry per record of every committed checkpoint, in file
      order. The known columns have fixed dtypes, whichever baselines were traced:

      * int64 (``-1`` where a record has no value, e.g. ``regions`` of a ``kde`` baseline):
        ``step``, ``member`` (index in a stacked net, 0 otherwise), ``layer``, ``width``,
        ``regions``, ``N``;
      * bool (``False`` where absent): ``saturated``;
      * str: ``scope``, ``estimator``;
      * float64 (``nan`` where absent): ``H_T``, ``I_XT``, ``I_TY``, ``H_Y``,
        ``regions_per_input``, ``singleton_fraction``, ``coverage``, ``time`` (unix seconds),
        ``seconds`` (time to compute the checkpoint).

      Other columns take the dtype of their values. A partially written tail (crash) is ignored.

    Raises:
      FileNotFoundError: if there is no trace file at ``path``.

    Example:
      >>> tr = load_trace("runs/demo")  # doctest: +SKIP
      >>> sel = (tr["scope"] == "layer") & (tr["layer"] == 1)  # doctest: +SKIP
    """
    p = trace_path(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: no trace file at {p!r}")
    rows, _, _ = scan_trace(p)
    return columns(rows)


def load_header(path) -> dict | None:
    """The header of a trace: what produced it (see :class:`partax.Tracer`), or None.

    Args:
      path: the trace directory (or the trace file itself, a path ending in ``.jsonl``).

    Returns:
      The header as a dict (``partax_version``, ``inputs``, ``labels``, ``net``, ``schedule``,
      ``scopes``, ``estimators``, ``baselines``, ``probes``, ``meta``), or None for a trace
      without one (written before headers existed, or with no committed checkpoint).

    Raises:
      FileNotFoundError: if there is no trace file at ``path``.
    """
    p = trace_path(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: no trace file at {p!r}")
    header = scan_trace(p, with_header=True)[3]
    return None if header is None else {k: v for k, v in header.items() if k != "kind"}


def json_value(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
