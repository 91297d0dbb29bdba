"""Independent NumPy float64 oracles shared by the tests (no partax code inside)."""

import numpy as np


def forward_preacts(arrays, x, alpha=0.0):
    """Hidden pre-activations in float64 for ``[W1, b1, ...]`` (W of shape (d_in, d_out))."""
    h = np.asarray(x, np.float64)
    out = []
    for l in range(len(arrays) // 2 - 1):
        W = np.asarray(arrays[2 * l], np.float64)
        b = np.asarray(arrays[2 * l + 1], np.float64)
        z = h @ W + b
        out.append(z)
        h = np.where(z > 0, z, alpha * z)
    return out


def relative_margins(arrays, x, alpha=0.0):
    """Per input, ``min_i |z_i| / (||h|| ||W[:, i]|| + |b_i|)`` over every hidden unit, in
    float64: the relative distance to a boundary that ``near_boundary`` thresholds."""
    h = np.asarray(x, np.float64)
    m = np.full(h.shape[0], np.inf)
    for l in range(len(arrays) // 2 - 1):
        W = np.asarray(arrays[2 * l], np.float64)
        b = np.asarray(arrays[2 * l + 1], np.float64)
        z = h @ W + b
        scale = np.linalg.norm(h, axis=1)[:, None] * np.linalg.norm(W, axis=0)[None, :] + np.abs(b)[None, :]
        m = np.minimum(m, (np.abs(z) / scale).min(axis=1))
        h = np.where(z > 0, z, alpha * z)
    return m


def away_from_boundaries(net, x, margin=1e-3):
    """``(keep, pre)``: which inputs have every float64 pre-activation farther than ``margin``
    from 0 (their codes cannot depend on rounding), and the pre-activations of all inputs."""
    pre = forward_preacts([np.asarray(a) for a in net.arrays()], x, net.alpha)
    keep = np.all([np.abs(z).min(axis=1) > margin for z in pre], axis=0)
    return keep, pre


def scope_layers(scope, layer, L):
    """1-based inclusive range of layers of a scope at a layer (as DESIGN §3.2 defines)."""
    return {"layer": (layer, layer), "prefix": (1, layer), "suffix": (layer, L)}[scope]


def groups(preacts, scope, layer):
    """Per input, the tuple of code bits of the scope's range, as a 2-D bool array."""
    L = len(preacts)
    f, t = scope_layers(scope, layer, L)
    return np.concatenate([z > 0 for z in preacts[f - 1 : t]], axis=1)


def table(code_rows, labels=None, num_classes=None):
    """np.unique on code rows: (unique rows, first index, counts, label counts or None)."""
    uniq, first, inverse, counts = np.unique(code_rows, axis=0, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    lc = None
    if labels is not None:
        C = num_classes or int(labels.max()) + 1
        lc = np.zeros((len(uniq), C), np.int64)
        np.add.at(lc, (inverse, labels), 1)
    return uniq, first, counts, lc, inverse


# --- the key function, written out in NumPy from its specification (partax.coding docstring) ---
_M32 = 0xFFFFFFFF


def _fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _mix(h, k):
    k = (k * 0xCC9E2D51) & _M32
    k = ((k << 15) | (k >> 17)) & _M32
    k = (k * 0x1B873593) & _M32
    h ^= k
    h = ((h << 13) | (h >> 19)) & _M32
    return (h * 5 + 0xE6546B64) & _M32


def layer_words(bits_row):
    """Packed uint32 words of one layer's code (bit i % 32 of word i // 32 is unit i)."""
    words = [0] * (-(-len(bits_row) // 32))
    for i, b in enumerate(bits_row):
        if b:
            words[i // 32] |= 1 << (i % 32)
    return words


def range_key(code_rows, first, last, seeds=(0x9E3779B1, 0x85EBCA77)):
    """The 64-bit key of layers first..last of one input, from its per-layer bit rows (1..L)."""
    lanes = []
    for seed in seeds:
        total = 0
        for l in range(first, last + 1):
            words = layer_words(code_rows[l - 1])
            h = seed
            for w in words:
                h = _mix(h, w)
            h = _fmix32(h ^ len(words))
            total = (total + _fmix32(h ^ ((l * 0x9E3779B9) & _M32))) & _M32
        lanes.append(_fmix32(total ^ (last - first + 1)))
    return lanes[0] | (lanes[1] << 32)


def prefix_rows(net, x, layer=None):
    """Sign-oriented rows ``A z <= b`` of the prefix region of one input ``x`` at ``layer``
    (default the last hidden layer), by an explicit float64 chain of the frozen-mask maps."""
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    alpha = net.alpha if net.activation == "leaky_relu" else 0.0
    L = net.num_hidden if layer is None else layer
    d = Ws[0].shape[0]
    M, v = np.eye(d), np.zeros(d)
    h = np.asarray(x, np.float64).reshape(-1)
    As, cs = [], []
    for W, b in zip(Ws[:L], bs[:L]):
        A, beta = W.T @ M, W.T @ v + b
        z = h @ W + b
        s = np.where(z > 0, -1.0, 1.0)
        As.append(s[:, None] * A)
        cs.append(-s * beta)
        slope = np.where(z > 0, 1.0, alpha)
        M, v, h = slope[:, None] * A, slope * beta, np.where(z > 0, z, alpha * z)
    return np.concatenate(As), np.concatenate(cs)


def check_partition(p, preacts, labels, num_classes, ids, scopes=("layer", "prefix", "suffix")):
    """Asserts that every table of a Partition groups, counts and labels inputs like
    ``np.unique`` over float64 code rows, with the first input of each group as exemplar.

    ``ids[scope]`` are the inputs' keys (``partax.region_ids``): they only name the rows; the
    grouping, counts, label counts and exemplars come from this module's float64 oracle.
    """
    for scope in scopes:
        for l in range(1, len(preacts) + 1):
            t = p.table(scope, l)
            uniq, first, counts, lc, inverse = table(groups(preacts, scope, l), labels, num_classes)
            assert len(t) == len(uniq), (scope, l)
            # the key of each oracle group (the key of its first input) is a row of the table
            rows = t.lookup(ids[scope][first, l - 1])
            assert (rows >= 0).all()
            assert len(np.unique(rows)) == len(rows)
            np.testing.assert_array_equal(t.counts[rows], counts)
            np.testing.assert_array_equal(t.exemplars[rows], first)
            if labels is not None:
                np.testing.assert_array_equal(t.label_counts[rows], lc)
            assert t.total == len(labels if labels is not None else inverse)
