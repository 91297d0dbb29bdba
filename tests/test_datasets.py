"""Tests for partax.datasets: the exact Tishby IB data and the IDX reader."""

import gzip
import itertools
import math
import struct

import numpy as np
import pytest

from partax.datasets import load_idx, tishby_ib

# Independent statement of the icosahedron (DESIGN §5) for the oracle below.
_NB = {0: [1, 3, 5, 10, 11], 1: [0, 2, 3, 4, 11], 2: [1, 3, 4, 8, 9], 3: [0, 1, 2, 8, 10],
       4: [1, 2, 6, 9, 11], 5: [0, 6, 7, 10, 11], 6: [4, 5, 7, 9, 11], 7: [5, 6, 8, 9, 10],
       8: [2, 3, 7, 9, 10], 9: [2, 4, 6, 7, 8], 10: [0, 3, 5, 7, 8], 11: [0, 1, 4, 5, 6]}
_AP = [9, 7, 5, 6, 10, 2, 3, 1, 11, 0, 4, 8]


def _label_loop(bits):
    on = [i for i, v in enumerate(bits) if v]
    n = len(on)
    a = c = 0
    for i, j in itertools.combinations(on, 2):
        if j in _NB[i]:
            a += 1
        elif _AP[i] == j:
            c += 1
    b = n * (n - 1) // 2 - a - c
    return int(103 * n + 2 * a - 22 * b - 34 * c > 429.5)


def test_tishby_ib_exact():
    x, y = tishby_ib()
    assert x.shape == (4096, 12) and x.dtype == np.float32
    assert y.shape == (4096,) and y.dtype == np.int32
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    # lexicographic order, first bit most significant: row k is k in binary
    k = (x.astype(np.int64) * (1 << np.arange(11, -1, -1))).sum(1)
    np.testing.assert_array_equal(k, np.arange(4096))
    assert int(y.sum()) == 2118
    p = y.mean()
    h = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert abs(h - 0.99916) < 1e-5
    # per-row oracle by explicit pair loops
    expect = np.array([_label_loop(b) for b in itertools.product([0, 1], repeat=12)])
    np.testing.assert_array_equal(y, expect)


def test_icosahedron_is_consistent():
    for i, js in _NB.items():
        assert len(js) == 5
        for j in js:
            assert i in _NB[j]
        assert _AP[_AP[i]] == i and _AP[i] not in js and _AP[i] != i


def _idx_bytes(arr, type_code):
    arr = np.asarray(arr)
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    head = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return head + arr.astype(dt).tobytes()


@pytest.mark.parametrize("n,rows,cols,gz", [(5, 3, 4, False), (7, 2, 2, True), (1, 28, 28, False)])
def test_load_idx_roundtrip(tmp_path, n, rows, cols, gz):
    rng = np.random.default_rng(n)
    img = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    lab = rng.integers(0, 10, size=n, dtype=np.uint8)
    ip, lp = tmp_path / "img.idx", tmp_path / "lab.idx"
    ib, lb = _idx_bytes(img, 0x08), _idx_bytes(lab, 0x08)
    if gz:
        ip, lp = tmp_path / "img.idx.gz", tmp_path / "lab.idx.gz"
        ib, lb = gzip.compress(ib), gzip.compress(lb)
    ip.write_bytes(ib)
    lp.write_bytes(lb)
    x, y = load_idx(ip, lp)
    assert x.dtype == np.float32 and x.shape == (n, rows * cols)
    np.testing.assert_allclose(x, img.reshape(n, -1) / 255.0, rtol=0, atol=1e-7)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(y, lab.astype(np.int64))


def test_load_idx_errors(tmp_path):
    img = np.zeros((4, 2, 2), np.uint8)
    lab = np.zeros(4, np.uint8)
    good_i, good_l = tmp_path / "i", tmp_path / "l"
    good_i.write_bytes(_idx_bytes(img, 0x08))
    good_l.write_bytes(_idx_bytes(lab, 0x08))
    trunc = tmp_path / "trunc"
    trunc.write_bytes(_idx_bytes(img, 0x08)[:-3])
    with pytest.raises(ValueError, match="trunc"):
        load_idx(trunc, good_l)
    hdr = tmp_path / "hdr"
    hdr.write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(ValueError, match="hdr"):
        load_idx(hdr, good_l)
    magic = tmp_path / "magic"
    magic.write_bytes(b"\x01\x02" + _idx_bytes(img, 0x08)[2:])
    with pytest.raises(ValueError, match="magic"):
        load_idx(magic, good_l)
    short_l = tmp_path / "short_labels"
    short_l.write_bytes(_idx_bytes(lab[:3], 0x08))
    with pytest.raises(ValueError, match="short_labels"):
        load_idx(good_i, short_l)
    badgz = tmp_path / "bad.gz"
    badgz.write_bytes(gzip.compress(_idx_bytes(img, 0x08))[:-10])
    with pytest.raises(ValueError, match="bad.gz"):
        load_idx(badgz, good_l)


def test_digits_equal_scikit_learns_copy():
    """The shipped digits are scikit-learn's load_digits, pixel for pixel (scaled by 1/16)."""
    import sklearn.datasets as sk  # a dev dependency
    from partax.datasets import digits

    x, y = digits()
    ref = sk.load_digits()
    np.testing.assert_array_equal(x * 16.0, ref.data.astype(np.float32))
    np.testing.assert_array_equal(y, ref.target)
    assert x.dtype == np.float32 and y.dtype == np.int32
