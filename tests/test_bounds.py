"""Tests for partax.bounds: published reference values and brute-force oracles."""

import itertools
import math

import numpy as np
import pytest

from partax import bounds


def _serra_brute(n0, widths):
    """Enumerates J literally (the definition in Serra et al. 2018, Thm 1)."""
    total = 0
    for js in itertools.product(*[range(n + 1) for n in widths]):
        ok = True
        for l, (n, j) in enumerate(zip(widths, js)):
            lim = min([n0] + [widths[i] - js[i] for i in range(l)] + [n])
            if j > lim:
                ok = False
                break
        if ok:
            total += math.prod(math.comb(n, j) for n, j in zip(widths, js))
    return total


@pytest.mark.parametrize(
    "n0, widths, expected",
    [
        (4, [6, 4], 817),
        (784, [11, 11], 2_449_868),
        (784, [8, 14], 600_370),
        (2, [8, 8, 8], 50_653),
    ]
    + [(4, [6, 2 * k], v) for k, v in zip(range(1, 9), [228, 817, 2424, 6001, 12852, 24633, 43352, 71369])],
)
def test_serra_reference(n0, widths, expected):
    assert bounds.serra(n0, widths) == expected


@pytest.mark.parametrize("n0, widths, expected", [(4, [6, 4], 912), (784, [11, 11], 4_194_304)])
def test_montufar_reference(n0, widths, expected):
    assert bounds.montufar(n0, widths) == expected


@pytest.mark.parametrize("widths", [[1], [3], [5, 2], [2, 7, 3], [4, 4, 4, 4]])
def test_serra_n0_one_is_product(widths):
    assert bounds.serra(1, widths) == math.prod(n + 1 for n in widths)


_SMALL = [(n0, list(ws)) for n0 in (1, 2, 3, 5) for ws in ([3], [4, 2], [2, 4], [3, 3, 3], [5, 1, 4], [6, 4, 2], [2, 2, 2, 2])]


@pytest.mark.parametrize("n0, widths", _SMALL)
def test_serra_matches_brute_force(n0, widths):
    assert bounds.serra(n0, widths) == _serra_brute(n0, widths)


@pytest.mark.parametrize("n0, widths", _SMALL)
def test_ordering(n0, widths):
    s, m, r, t = (bounds.serra(n0, widths), bounds.montufar(n0, widths), bounds.raghu(n0, widths), bounds.trivial(widths))
    assert s <= m <= t and m <= r <= t


@pytest.mark.parametrize("n0, widths", _SMALL)
def test_raghu_montufar_closed_forms(n0, widths):
    def prefix(n, d):
        return sum(math.comb(n, j) for j in range(0, min(d, n) + 1))

    dims = [n0] + widths[:-1]
    assert bounds.raghu(n0, widths) == math.prod(prefix(n, d) for n, d in zip(widths, dims))
    assert bounds.montufar(n0, widths) == math.prod(prefix(n, min([n0] + widths[: l + 1])) for l, n in enumerate(widths))
    assert bounds.trivial(widths) == 2 ** sum(widths)


@pytest.mark.parametrize("k, d", [(0, 2), (1, 2), (3, 2), (5, 2), (4, 3), (6, 1), (3, 5)])
def test_zaslavsky_counts_general_lines(k, d):
    expected = sum(math.comb(k, j) for j in range(d + 1))
    assert bounds.zaslavsky(k, d) == expected
    if d == 2:  # Euler: 1 + k + C(k, 2) for lines in general position
        assert expected == 1 + k + k * (k - 1) // 2


def test_single_layer_serra_is_zaslavsky():
    for n0 in (1, 2, 3, 7):
        for n in (1, 4, 9):
            assert bounds.serra(n0, [n]) == bounds.zaslavsky(n, n0)


def test_exact_python_ints_for_huge_nets():
    v = bounds.serra(784, [256, 256, 256])
    assert isinstance(v, int) and v > 10**200
    assert isinstance(bounds.trivial([256] * 3), int)


def test_table_and_format_table():
    t = bounds.table(4, [6, 4])
    out = bounds.format_table(4, [6, 4])
    assert t["serra"] == 817 and t["montufar"] == 912
    assert "817" in out and "912" in out and "log10" in out
    assert "digits" in bounds.format_table(784, [256, 256])


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: bounds.serra(0, [3]), ValueError),
        (lambda: bounds.serra(2, []), ValueError),
        (lambda: bounds.serra(2, [3, 0]), ValueError),
        (lambda: bounds.serra(2.0, [3]), TypeError),
        (lambda: bounds.montufar(2, 3), TypeError),
        (lambda: bounds.zaslavsky(-1, 2), ValueError),
        (lambda: bounds.format_table(4, []), ValueError),
    ],
)
def test_validation(call, exc):
    with pytest.raises(exc):
        call()


def test_numpy_ints_accepted():
    assert bounds.serra(np.int64(4), np.array([6, 4])) == 817
