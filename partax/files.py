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
import os
import tempfile

import numpy as np

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_savez"]


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
