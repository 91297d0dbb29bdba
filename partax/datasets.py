"""Built-in datasets: the exact Tishby information-bottleneck data, the 8x8 digits, an IDX reader.

Nothing here downloads anything: :func:`tishby_ib` builds its data from a closed rule,
:func:`digits` reads the copy of scikit-learn's 8x8 digits (the UCI "Optical Recognition of
Handwritten Digits" test set, 1797 images, CC BY 4.0) that ships inside the package, and
:func:`load_idx` reads files the user already has.

Example:
    >>> from partax.datasets import tishby_ib
    >>> x, y = tishby_ib()
    >>> x.shape, x.dtype, int(y.sum())
    ((4096, 12), dtype('float32'), 2118)
"""

from __future__ import annotations

import gzip
import itertools
import os

import numpy as np

__all__ = ["tishby_ib", "digits", "load_idx", "ICOSAHEDRON_NEIGHBOURS", "ICOSAHEDRON_ANTIPODES"]

#: Neighbours of each vertex (0-based) of the icosahedron behind the Tishby IB dataset.
ICOSAHEDRON_NEIGHBOURS = (
    (1, 3, 5, 10, 11),
    (0, 2, 3, 4, 11),
    (1, 3, 4, 8, 9),
    (0, 1, 2, 8, 10),
    (1, 2, 6, 9, 11),
    (0, 6, 7, 10, 11),
    (4, 5, 7, 9, 11),
    (5, 6, 8, 9, 10),
    (2, 3, 7, 9, 10),
    (2, 4, 6, 7, 8),
    (0, 3, 5, 7, 8),
    (0, 1, 4, 5, 6),
)
#: Antipode of each vertex.
ICOSAHEDRON_ANTIPODES = (9, 7, 5, 6, 10, 2, 3, 1, 11, 0, 4, 8)


def tishby_ib() -> tuple[np.ndarray, np.ndarray]:
    """The exact Tishby information-bottleneck dataset (Shwartz-Ziv & Tishby 2017, ``var_u``).

    The 12 inputs are the vertices of an icosahedron; the rows are all ``2**12`` binary vectors in
    lexicographic order (``itertools.product([0, 1], repeat=12)``, first bit most significant).
    With ``n`` ones, ``a`` "on" neighbour pairs, ``c`` "on" antipodal pairs and
    ``b = n(n-1)/2 - a - c`` the remaining "on" pairs, the label is
    ``y = 1`` iff ``103 n + 2 a - 22 b - 34 c > 429.5``. 2118 of the 4096 labels are 1 and
    ``H(Y) = 0.99916`` bits.

    Returns:
      ``(x, y)``: ``x`` float32 ``[4096, 12]`` of 0/1, ``y`` int32 ``[4096]`` of 0/1.

    Example:
      >>> x, y = tishby_ib()
      >>> x[1].tolist()[-2:], int(y.sum())
      ([0.0, 1.0], 2118)
    """
    x = np.array(list(itertools.product([0, 1], repeat=12)), dtype=np.int64)
    n = x.sum(axis=1)
    nb = np.zeros((12, 12), dtype=np.int64)
    for i, js in enumerate(ICOSAHEDRON_NEIGHBOURS):
        for j in js:
            nb[i, j] = 1
    if not np.array_equal(nb, nb.T):  # the table is symmetric by construction
        raise AssertionError("icosahedron neighbour table is not symmetric")
    ap = np.zeros((12, 12), dtype=np.int64)
    for i, j in enumerate(ICOSAHEDRON_ANTIPODES):
        ap[i, j] = 1
    # Each unordered pair counted once: x^T A x counts both orders.
    a = np.einsum("ni,ij,nj->n", x, nb, x) // 2
    c = np.einsum("ni,ij,nj->n", x, ap, x) // 2
    b = n * (n - 1) // 2 - a - c
    y = (103 * n + 2 * a - 22 * b - 34 * c > 429.5).astype(np.int32)
    return x.astype(np.float32), y


# -- IDX ------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == b"\x1f\x8b":
            try:
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            except (OSError, EOFError) as e:
                raise ValueError(f"{path!r}: corrupt or truncated gzip stream ({e})") from None
        return f.read()


def _read_idx(path) -> np.ndarray:
    """Reads one IDX file into an array with its declared dims."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{os.fspath(path)!r}: truncated IDX file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(
            f"{os.fspath(path)!r}: wrong IDX magic number {data[:4].hex()} "
            "(expected 00 00 <type in 08,09,0B,0C,0D,0E> <ndim >= 1>)"
        )
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{os.fspath(path)!r}: truncated IDX header (needs {header} bytes, has {len(data)})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    need = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) < need:
        raise ValueError(
            f"{os.fspath(path)!r}: truncated IDX file: dims {dims} need {need} bytes, file has {len(data)}"
        )
    if len(data) > need:
        raise ValueError(
            f"{os.fspath(path)!r}: IDX file has {len(data) - need} trailing bytes after dims {dims}"
        )
    return np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=header).reshape(dims)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits (scikit-learn's ``load_digits``), shipped with partax.

    Returns:
      ``(x, y)``: ``x`` float32 ``[1797, 64]``, the 17 grey levels ``0..16`` of each pixel
      (row-major) divided by 16, so in ``[0, 1]``; ``y`` int32 ``[1797]``, the digit ``0..9``.

    Example:
      >>> from partax.datasets import digits
      >>> x, y = digits()
      >>> x.shape, x.dtype, float(x.max()), sorted(set(y.tolist())) == list(range(10))
      ((1797, 64), dtype('float32'), 1.0, True)
    """
    path = os.path.join(os.path.dirname(__file__), "data", "digits.npz")
    with np.load(path) as data:
        images = data["images"]
        labels = data["labels"]
    x = images.astype(np.float32) / np.float32(16.0)
    return np.ascontiguousarray(x), labels.astype(np.int32)


def load_idx(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """Reads an MNIST-format IDX pair (images, labels); ``.gz`` files are read transparently.

    Args:
      images_path: IDX file of ``N`` images (``ndim >= 2``, usually ``uint8`` ``[N, rows, cols]``).
      labels_path: IDX file of ``N`` labels (``ndim == 1``, integer type).

    Returns:
      ``(x, y)``: ``x`` float32 ``[N, rows * cols]`` scaled to ``[0, 1]`` (unsigned bytes are
      divided by 255; other types are divided by their maximum absolute value if it exceeds 1),
      ``y`` int32 ``[N]``.

    Raises:
      ValueError: naming the file, for a truncated file, a wrong magic number, labels that are not
        1-D integers, or a count mismatch between images and labels.

    Example:
      >>> x, y = load_idx("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")  # doctest: +SKIP
    """
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim < 2:
        raise ValueError(f"{os.fspath(images_path)!r}: expected images with ndim >= 2, got dims {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{os.fspath(labels_path)!r}: expected 1-D integer labels, got dims {labels.shape} of {labels.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{os.fspath(images_path)!r} holds {images.shape[0]} images but "
            f"{os.fspath(labels_path)!r} holds {labels.shape[0]} labels"
        )
    x = images.reshape(images.shape[0], -1)
    if images.dtype == np.dtype(">u1"):
        x = x.astype(np.float32) / np.float32(255.0)
    else:
        x = x.astype(np.float32)
        m = float(np.max(np.abs(x))) if x.size else 0.0
        if m > 1.0:
            x = x / np.float32(m)
    return np.ascontiguousarray(x), labels.astype(np.int32)
