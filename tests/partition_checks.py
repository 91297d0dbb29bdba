"""Comparison of two partitions, table by table, shared by the sharded-engine tests."""


def assert_same_partition(p, q):
    """Asserts ``p`` and ``q`` have the same scopes, totals, near-boundary counts, widths and,
    for every scope and layer, equal tables (keys, counts, exemplars, label counts, total)."""
    assert p.scopes == q.scopes
    assert p.total == q.total and p.near_boundary == q.near_boundary and p.widths == q.widths
    for s in q.scopes:
        for l in range(1, q.num_layers + 1):
            a, b = p.table(s, l), q.table(s, l)
            assert a == b, (s, l, a, b)
