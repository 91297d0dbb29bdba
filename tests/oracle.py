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
