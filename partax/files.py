"""Atomic file writes: a temp file in the target's folder, fsync, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves the previous version in place.

Example:
    >>> import os, tempfile, numpy as np
    >>> from partax.files import atomic_savez
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npz")
    >>> atomic_savez(p, {"x": np.arange(3)}); np.load(p)["x"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import io
import json
import os
import tempfile

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_savez", "save_npz", "load_npz"]


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (the file gets the usual ``0666 & ~umask`` mode)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_savez(path, arrays: dict) -> None:
    """Writes ``arrays`` as an uncompressed ``.npz`` via a temp file and rename."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_write_text(path, text: str) -> None:
    """Writes ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode())


def save_npz(path, arrays: dict, fmt: str, version: int = 1, **header) -> None:
    """Writes ``arrays`` as one ``.npz`` (no pickle) with a JSON header naming its format.

    Args:
      path: the file.
      arrays: name -> array.
      fmt: the format name (``"partax.net"``, ``"partax.table"``, ...), checked on load.
      version: the format version.
      **header: more JSON-ready header fields.
    """
    head = {"format": fmt, "version": version, **header}
    atomic_savez(path, {**arrays, "header": np.frombuffer(json.dumps(head).encode(), np.uint8)})


def load_npz(path, fmt: str, what: str, *, version: int = 1, required=()) -> tuple[dict, dict]:
    """Reads a file written by :func:`save_npz`.

    Args:
      path: the file.
      fmt: the expected format name.
      what: what the file should be, for the error message (``"net file"``, ...).
      version: the newest format version this reader knows.
      required: header fields that must be present.

    Returns:
      ``(arrays, header)``, the header without ``format`` and ``version``.

    Raises:
      OSError: the file cannot be read (missing, a directory, no permission).
      ValueError: naming ``path``, if it is not such a file or comes from a newer partax.
    """
    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except OSError:
        raise
    except Exception:  # not a NumPy file at all
        loaded = None
    header = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded as f:
            arrays = dict(f)
        try:
            header = json.loads(bytes(arrays.pop("header")).decode())
        except Exception:
            header = None
    if not isinstance(header, dict) or header.get("format") != fmt or not set(required) <= set(header):
        raise ValueError(f"path: {path!r} is not a partax {what} (an .npz with a {fmt} header)")
    if header.get("version", 1) > version:
        raise ValueError(f"path: {path!r} was written by a newer partax ({fmt} version {header['version']})")
    header = {k: v for k, v in header.items() if k not in ("format", "version")}
    return arrays, header
