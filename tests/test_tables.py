import numpy as np
import pytest

import partax
from partax.tables import RegionTable, merge_tables


def _stream(n, num_keys, num_classes, seed):
    rng = np.random.default_rng(seed)
    universe = rng.integers(0, 2**64 - 1, num_keys, dtype=np.uint64)
    keys = universe[rng.integers(0, num_keys, n)]
    labels = rng.integers(0, num_classes, n)
    return keys, labels


def _oracle(keys, labels, C):
    uniq, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    lc = np.zeros((len(uniq), C), np.int64)
    np.add.at(lc, (inverse.ravel(), labels), 1)
    return uniq, first, counts, lc


@pytest.mark.parametrize("n,num_keys,C", [(1, 1, 1), (100, 5, 2), (5000, 3000, 10), (20000, 40, 3)])
def test_from_keys_matches_np_unique(n, num_keys, C):
    keys, labels = _stream(n, num_keys, C, 0)
    t = RegionTable.from_keys(keys, labels=labels, num_classes=C, offset=7)
    uniq, first, counts, lc = _oracle(keys, labels, C)
    np.testing.assert_array_equal(t.keys, uniq)
    np.testing.assert_array_equal(t.counts, counts)
    np.testing.assert_array_equal(t.exemplars, first + 7)
    np.testing.assert_array_equal(t.label_counts, lc)
    assert t.total == n and t.keys.dtype == np.uint64


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("num_keys", [10, 2000])
def test_merge_of_any_split_is_the_whole(seed, num_keys):
    n, C = 3000, 4
    keys, labels = _stream(n, num_keys, C, seed)
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(1, 6), replace=False))
    bounds = np.concatenate([[0], cuts, [n]])
    parts = [
        RegionTable.from_keys(keys[a:b], labels=labels[a:b], num_classes=C, offset=a) for a, b in zip(bounds[:-1], bounds[1:])
    ]
    uniq, first, counts, lc = _oracle(keys, labels, C)
    whole = RegionTable(uniq, counts, lc, first, n)
    # any order, any bracketing
    rng.shuffle(parts)
    left = parts[0]
    for p in parts[1:]:
        left = left.merge(p)
    right = parts[-1]
    for p in parts[-2::-1]:
        right = p.merge(right)
    assert left == whole and right == whole and merge_tables(parts) == whole


def test_merge_pads_label_columns():
    a = RegionTable.from_keys(np.array([1, 2], np.uint64), labels=np.array([0, 0]))
    b = RegionTable.from_keys(np.array([2], np.uint64), labels=np.array([2]), offset=2)
    t = a.merge(b)
    np.testing.assert_array_equal(t.label_counts, [[1, 0, 0], [1, 0, 1]])


def test_merge_rejects_mixed_labels():
    a = RegionTable.from_keys(np.array([1], np.uint64), labels=np.array([0]))
    b = RegionTable.from_keys(np.array([1], np.uint64))
    with pytest.raises(ValueError, match="labels"):
        a.merge(b)


def test_merge_detects_collision_in_exemplar_codes():
    a = RegionTable.from_keys(np.array([5], np.uint64), codes=np.array([[1]], np.uint32))
    b = RegionTable.from_keys(np.array([5], np.uint64), codes=np.array([[2]], np.uint32), offset=1)
    with pytest.raises(partax.HashCollisionError):
        a.merge(b)
    with pytest.raises(partax.HashCollisionError):
        RegionTable.from_keys(np.array([5, 5], np.uint64), codes=np.array([[1], [2]], np.uint32))


def test_save_load(tmp_path):
    keys, labels = _stream(500, 50, 3, 1)
    t = RegionTable.from_keys(keys, labels=labels)
    t.save(tmp_path / "t.npz")
    assert RegionTable.load(tmp_path / "t.npz") == t
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    np.savez(tmp_path / "other.npz", keys=keys)
    with pytest.raises(ValueError, match="not a partax region table"):
        RegionTable.load(tmp_path / "other.npz")


def test_lookup():
    t = RegionTable.from_keys(np.array([9, 3, 3], np.uint64))
    np.testing.assert_array_equal(t.lookup(np.array([3, 4, 9], np.uint64)), [0, -1, 1])


def test_labels_out_of_range_are_rejected():
    with pytest.raises(ValueError, match=r"labels: expected labels in 0..1"):
        RegionTable.from_keys(np.array([1, 2], np.uint64), labels=np.array([2, 0]), num_classes=2)


def test_saved_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    t = RegionTable.from_keys(np.array([1, 2], np.uint64))
    t.save(tmp_path / "t.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "t.npz").st_mode) == 0o666 & ~umask


@pytest.mark.parametrize(
    "labels,num_classes,error,message",
    [
        ([0, -1, 1], None, ValueError, "labels: expected labels >= 0"),
        ([0, -1, 1], 3, ValueError, "labels: expected labels >= 0"),
        ([0, 3, 1], 3, ValueError, r"labels: expected labels in 0..2"),
        # not class indices at all: a TypeError, as from every other entry point (partax.validation)
        ([0.0, 1.5, 1.0], None, TypeError, "labels: expected integer class labels"),
        ([0.0, 1.5, 1.0], 2, TypeError, "labels: expected integer class labels"),
        ([0, 1], None, ValueError, r"labels: expected shape \(3,\)"),
        (["a", "b", "c"], None, TypeError, "labels: expected integer class labels"),
        ([0.0, np.nan, 1.0], 2, TypeError, "labels: expected integer class labels"),
    ],
)
def test_from_keys_validates_labels_with_or_without_num_classes(labels, num_classes, error, message):
    keys = np.array([5, 3, 5], np.uint64)
    with pytest.raises(error, match=message):
        RegionTable.from_keys(keys, labels=np.asarray(labels), num_classes=num_classes)


def test_integer_valued_float_labels_are_accepted():
    keys = np.array([5, 3, 5], np.uint64)
    a = RegionTable.from_keys(keys, labels=np.array([0.0, 1.0, 1.0]))
    b = RegionTable.from_keys(keys, labels=np.array([0, 1, 1]))
    assert a == b and a.label_counts.tolist() == [[0, 1], [1, 1]]


def test_tables_with_and_without_codes_do_not_merge_silently():
    keys = np.array([5, 3], np.uint64)
    coded = RegionTable.from_keys(keys, codes=np.array([[1], [2]], np.uint32))
    plain = RegionTable.from_keys(np.array([5, 7], np.uint64), offset=2)
    with pytest.raises(ValueError, match="exemplar codes"):
        coded.merge(plain)
    with pytest.raises(ValueError, match="exemplar codes"):
        merge_tables([plain, coded])
    # an empty table carries no code to check: it merges with either kind
    assert coded.merge(RegionTable.empty()) == coded
    # equality compares the codes too
    other = RegionTable.from_keys(keys, codes=np.array([[1], [9]], np.uint32))
    assert other != coded and plain != RegionTable.from_keys(np.array([5, 7], np.uint64), offset=2,
                                                              codes=np.array([[1], [2]], np.uint32))


@pytest.mark.parametrize("min_rows", [0, 7, 2**16])
def test_accumulator_folds_a_stream_into_its_table(min_rows):
    """The engines' accumulator (pure init / update / finalize) gives np.unique's table of the
    whole stream whatever its flush threshold, and holds at most about twice the table."""
    from partax.accumulate import table_accumulator

    keys, labels = _stream(4000, 300, 3, 7)
    acc = table_accumulator(min_rows=min_rows)
    state = acc.init()
    bounds = np.unique(np.random.default_rng(8).integers(0, 4000, 40))
    bounds = np.concatenate([[0], bounds, [4000]])
    held = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        before, snapshot = state, (state.table, state.pending, state.pending_rows)
        state = acc.update(state, RegionTable.from_keys(keys[a:b], labels=labels[a:b], num_classes=3, offset=a))
        assert (before.table, before.pending, before.pending_rows) == snapshot  # update is pure
        held.append(state.num_rows)
    uniq, first, counts, lc = _oracle(keys, labels, 3)
    assert acc.finalize(state) == RegionTable(uniq, counts, lc, first, 4000)
    if min_rows == 0:  # pending rows never outgrow the running table by much
        assert max(held) <= 2 * len(uniq) + max(np.diff(bounds))
    with pytest.raises(ValueError, match="nothing was accumulated"):
        acc.finalize(acc.init())


@pytest.mark.parametrize("n, distinct, low_bits_only", [
    (500, 100, False),  # below 1024 rows: a general sort
    (5000, 700, False),  # repeats: the composite sort
    (2**16, 2**16, False),  # all distinct
    (3000, 3000, True),  # distinct keys that differ only in their low bits: the general sort's fallback
])
def test_argsort_keys_sorts(n, distinct, low_bits_only):
    from partax.grouping import argsort_keys

    rng = np.random.default_rng(n)
    pool = rng.integers(0, 2**64, distinct, dtype=np.uint64, endpoint=False)
    if low_bits_only:
        pool = np.uint64(0xDEADBEEF) << np.uint64(32) | rng.permutation(distinct).astype(np.uint64)
    keys = pool[rng.integers(0, distinct, n)] if distinct < n else rng.permutation(pool)
    order = argsort_keys(keys)
    np.testing.assert_array_equal(np.sort(order), np.arange(n))  # a permutation
    np.testing.assert_array_equal(keys[order], np.sort(keys))


def test_group_keys_matches_np_unique_and_checks_codes():
    from partax.grouping import group_keys

    keys, _ = _stream(5000, 700, 1, 3)  # > 1024 rows: the radix sort path
    values = np.random.default_rng(4).integers(0, 1000, 5000)
    g = group_keys(keys)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(g.unique_keys, uniq)
    np.testing.assert_array_equal(g.sizes, counts)
    np.testing.assert_array_equal(g.sum(values), np.bincount(inverse.ravel(), weights=values).astype(np.int64))
    mins = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(mins, inverse.ravel(), values)
    np.testing.assert_array_equal(g.min(values), mins)
    codes = (inverse.ravel()[:, None] * np.array([[3, 5]])).astype(np.uint32)  # one code per key
    group_keys(keys, codes)
    row = int(np.flatnonzero(counts[inverse.ravel()] > 1)[-1])
    codes[row, 1] += 1  # one row's code differs from the other rows of its key
    with pytest.raises(partax.HashCollisionError, match=f"{int(keys[row]):#018x}"):
        group_keys(keys, codes)
