# Length: over 500 lines because the codes kernel, its bit packing, the two 64-bit key
# lanes, the check keys and the near-boundary test (exact and screened) are one kernel
# traced together; splitting them would spread one jitted function over modules.
"""Activation codes, bit packing and 64-bit region keys.

The code of an input at hidden layer ``l`` is its sign pattern ``S^l`` (bit ``i`` is 1
iff unit ``i``'s pre-activation is ``> 0``). Codes are packed into ``uint32`` words:
bit ``i % 32`` of word ``i // 32`` is unit ``i``.

A *scope* picks a contiguous range of the code sequence ``(S^1, ..., S^L)``; at hidden
layer ``l`` (1-based):

* ``"layer"``: ``S^l`` alone (bins of the representation ``h^l``);
* ``"prefix"``: ``S^1..S^l`` (the linear region, in input space, of the sub-net up to ``l``);
* ``"suffix"``: ``S^l..S^L`` (the partition of layer ``l``'s input space by the rest of
  the net; the natural bins of the latent space ``h^{l-1}``).

General nets (:func:`partax.nets.sequential`). "Hidden layer ``l``" reads "code group ``l``":
the ``l``-th code site in execution order (a ReLU or leaky-ReLU layer: one bit per unit; a
hard-tanh layer: two bits per unit; a max pool: the argmax slot of each window in
``ceil(log2 k)`` bits; see :mod:`partax.layers`), packed the same way, so keys, scopes, tables
and partitions are unchanged. Inputs are flat ``[N, input_dim]`` (row-major) or
``[N, *input_shape]``. Their near-boundary test (:func:`site_codes`) uses the scale of the
summed terms ``|A| |h| + |c|`` of the affine layers before each site instead of the MLPs'
``||h|| ||W[:, i]|| + |b_i|``; the partition engine screens it (:func:`screens_near`: a cheap
bound of each Dense / Conv scale, the exact test on the few rows it flags).

(:mod:`partax.scopes` defines them; ``SCOPES``, :func:`scope_range` and :func:`tables_for`
are re-exported here.)

Keys are 64-bit: two independently seeded 32-bit lanes of murmur3-style mixing, so no
x64 is needed on the device. Each layer's words are hashed to a per-layer lane value,
salted with the layer's position; the key of a range of layers ``l..m`` is the finalised
sum of those values over the range (running sums make every range cost O(1)). The key
depends only on the codes in the range and on the range's place in the net, so the same
range gets the same key in every scope:
``layer`` at 1 equals ``prefix`` at 1, ``suffix`` at ``L`` equals ``layer`` at ``L``,
and ``suffix`` at 1 equals ``prefix`` at ``L``.

Collisions. Two different codes share a 64-bit key with probability about ``2^-64`` per pair,
so a table of ``M`` distinct regions holds a collision with probability about ``M^2 / 2^65``
(``2^-25`` at a million regions, 3% at ``2^30``: the sizes cluster runs reach). The partition
engine therefore checks every key against a second, independent 64-bit *check key* of the
same code (and, on merges, against the per-layer fingerprints: for a layer of at most 32 units
each lane is a bijection of its code word, wider layers get two more lanes, 128 bits): a
collision raises :class:`HashCollisionError` instead of merging two regions, and goes
unnoticed only if both keys collide at once (about ``M^2 / 2^129``). ``exact=True`` compares
the codes themselves. Both comparisons are the one group-by of :mod:`partax.grouping`.

Near boundaries. An input is *near a boundary* when some hidden pre-activation satisfies
``|z_i| <= tol * s_i`` with ``s_i = ||h||_2 ||W[:, i]||_2 + |b_i|`` (``h`` the layer's input):
a tolerance relative to the scale of the dot product's terms, where its rounding error lives,
so pixel-scale and unit-scale inputs behave alike. Inputs that are not near a boundary get the
code of the exact (float64) network, up to a rounding error well below ``tol`` (default
``1e-5``; float32 rounding of a length-``n`` dot product is about ``sqrt(n) * 6e-8`` of its scale).

Example:
    >>> import jax, numpy as np, partax
    >>> net = partax.mlp(jax.random.key(0), [2, 40, 3, 1], bias_std=0.1)
    >>> x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    >>> c = partax.codes(net, x)
    >>> [w.shape for w in c.words], c.bits(1).shape
    ([(5, 2), (5, 1)], (5, 40))
    >>> partax.region_ids(net, x, "prefix").shape
    (5, 2)
"""

from __future__ import annotations

import functools
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from partax.grouping import HashCollisionError, group_keys
from partax.layers import Conv, Dense, HardTanh, LeakyReLU, MaxPool, ReLU, index_bits, traverse
from partax.nets import Net, as_structured, flat_inputs
from partax.scopes import SCOPES, scope_range, tables_for
from partax.validation import check_finite, check_inputs, check_layer, check_net, check_scope

__all__ = [
    "SCOPES",
    "Codes",
    "HashCollisionError",
    "check_collisions",
    "codes",
    "keys_from_bits",
    "region_ids",
    "scope_range",
    "site_codes",
    "tables_for",
]

if sys.byteorder != "little":  # keys travel as (lo, hi) uint32 lanes viewed as uint64
    raise ImportError("partax needs a little-endian host")

# Seeds of the two hash lanes (arbitrary odd constants, fixed forever: keys are saved).
_LANE_SEEDS = (0x9E3779B1, 0x85EBCA77)
# The collision check (see "Collisions" in the module docstring): two more lanes for layers
# wider than one word, and another position salt for the check keys of ranges.
_CHECK_SEEDS = (0x27D4EB2F, 0x165667B1)
_KEY_SALT = 0x9E3779B9
_CHECK_SALT = 0x61C88647
_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)


class Codes(NamedTuple):
    """Packed activation codes.

    Attributes:
      words: tuple of ``uint32[N, ceil(n_l / 32)]``, one per hidden layer.
      widths: hidden widths ``(n_1, ..., n_L)``.
    """

    words: tuple
    widths: tuple

    def __repr__(self) -> str:
        n = int(np.shape(self.words[0])[0]) if self.words else 0
        return f"Codes(N={n}, widths={tuple(int(w) for w in self.widths)})"

    def bits(self, l: int) -> np.ndarray:
        """Unpacked code of hidden layer ``l`` (1-based) as ``bool[N, n_l]``."""
        l = check_layer(l, len(self.widths), name="l")
        w = np.asarray(self.words[l - 1])
        shifts = np.arange(32, dtype=np.uint32)
        bits = (w[..., None] >> shifts) & np.uint32(1)
        return bits.reshape(*w.shape[:-1], w.shape[-1] * 32)[..., : self.widths[l - 1]].astype(bool)


# --- hashing (uint32 arithmetic, wraps mod 2^32) -----------------------------------------
def _rotl(x, r: int):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _fmix32(h):
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _mix(h, k):
    """One murmur3 block step: absorbs the word ``k`` into the running hash ``h``."""
    k = k * _C1
    k = _rotl(k, 15) * _C2
    h = h ^ k
    h = _rotl(h, 13)
    return h * np.uint32(5) + np.uint32(0xE6546B64)


def _hash_words(words, seed):
    """Hashes packed words ``uint32[..., W]`` to ``uint32[...]`` with one lane seed."""
    h = jnp.full(words.shape[:-1], np.uint32(seed), jnp.uint32)
    for j in range(words.shape[-1]):
        h = _mix(h, words[..., j])
    return _fmix32(h ^ np.uint32(words.shape[-1]))


def _range_keys(layer_hashes, ranges, start: int = 1, salt: int = _KEY_SALT):
    """Keys of layer ranges from per-layer hashes of one lane.

    Each layer's hash is salted with its position (``g_l = fmix(h_l ^ salt_l)``, a bijection
    of ``h_l``); the key of layers ``first..last`` is ``fmix((G_last - G_{first-1}) ^ len)``
    with ``G`` the running sum mod 2^32. So every range costs one subtraction and one
    finaliser whatever its length, and depends only on the codes it covers. Traceable, and
    the same arithmetic on NumPy arrays (the host finishes range keys this way).

    Args:
      layer_hashes: per hidden layer, ``uint32[...]`` hashes of one lane, of layers
        ``start, start + 1, ...`` (JAX or NumPy arrays).
      ranges: 1-based inclusive ``(first, last)`` pairs (absolute layer numbers).
      start: the absolute number of the layer of ``layer_hashes[0]``.
      salt: the position salt (``_KEY_SALT`` for keys, ``_CHECK_SALT`` for check keys).

    Returns:
      A list of ``uint32[...]``, one per range.
    """
    xp = np if isinstance(layer_hashes[0], np.ndarray) else jnp
    total = xp.zeros(layer_hashes[0].shape, xp.uint32)
    running = [total]
    for l, h in enumerate(layer_hashes, start=start):
        total = total + _fmix32(h ^ np.uint32((l * salt) & 0xFFFFFFFF))
        running.append(total)
    return [_fmix32((running[t - start + 1] - running[f - start]) ^ np.uint32(t - f + 1)) for f, t in ranges]


def range_keys(layer_hashes: np.ndarray, ranges) -> np.ndarray:
    """Keys of layer ranges, on the host, from per-layer lane hashes.

    Args:
      layer_hashes: ``uint32[2, L, G]``, per lane and hidden layer (as returned by
        :func:`codes_and_layer_hashes`), for ``G`` inputs.
      ranges: 1-based inclusive ``(first, last)`` pairs.

    Returns:
      ``numpy.uint64[G, R]``, equal to the keys :func:`codes_and_keys` computes.
    """
    layer_hashes = np.asarray(layer_hashes, np.uint32)
    lanes = [_range_keys(list(layer_hashes[i]), ranges) for i in range(2)]
    out = np.empty((len(ranges), layer_hashes.shape[-1]), np.uint64)
    for r, pair in enumerate(zip(*lanes)):
        out[r] = as_uint64(np.stack(pair, axis=-1))
    return out.T  # each range's column is contiguous


def _pack(bits):
    """Packs ``bool[..., n]`` into ``uint32[..., ceil(n/32)]`` (bit i%32 of word i//32)."""
    n = bits.shape[-1]
    nw = -(-n // 32)
    pad = nw * 32 - n
    if nw == 1:  # one word: no padding to 32 lanes (narrow layers cost a third as much)
        b = bits.astype(jnp.uint32)
        return (b << jnp.arange(n, dtype=jnp.uint32)).sum(-1, dtype=jnp.uint32)[..., None]
    # wider: eight bits summed into each byte, four little-endian bytes bitcast to a word (the
    # same words; XLA:CPU sums 32 shifted bits per word slowly: on 784-256-256-256-10 this
    # packing made the kernel about 10% faster)
    b = bits.astype(jnp.uint8)
    if pad:
        b = jnp.pad(b, [(0, 0)] * (b.ndim - 1) + [(0, pad)])
    b = b.reshape(*b.shape[:-1], nw * 4, 8)
    octets = (b << jnp.arange(8, dtype=jnp.uint8)).sum(-1, dtype=jnp.uint8)
    return jax.lax.bitcast_convert_type(octets.reshape(*octets.shape[:-1], nw, 4), jnp.uint32)


def _any_units(mask):
    """``bool[N]``: some unit of an MLP layer's ``mask[N, n]`` is set. A one-word layer ORs its
    bits packed like its code (:func:`_any_rows`: on the IB net 12-10-7-5-4-3-2 the kernel ran
    16% faster than with a float row sum); wider layers sum them as floats (:func:`_any_float`: on 784-256-256-256-10
    the kernel ran at 0.80x its forward pass with float sums, 0.71x with :func:`_any_rows`' words)."""
    return _any_rows(mask) if mask.shape[-1] <= 32 else _any_float(mask)


def _any_float(mask):
    """``bool[N]``: some entry of the row ``mask[N, ...]`` is set, as a float sum of 0/1 (XLA:CPU's
    boolean row reductions are slow)."""
    hits = jnp.where(mask, np.float32(1.0), np.float32(0.0)).reshape(mask.shape[0], -1)
    return jnp.sum(hits, axis=-1) > 0  # a sum of 0/1 with one 1 is >= 1 in any rounding


def _near(z, h, W, b, boundary_tol: float):
    """``bool[N]``: some unit has ``|z_i| <= tol * (||h|| ||W[:, i]|| + |b_i|)`` (relative)."""
    if boundary_tol == 0:
        return _any_units(z == 0)
    col = jnp.sqrt(jnp.sum(W * W, axis=0))
    hn = jnp.sqrt(jnp.sum(h * h, axis=-1, keepdims=True))
    scale = hn * (boundary_tol * col) + boundary_tol * jnp.abs(b)
    return _any_units(jnp.abs(z) <= scale)  # not .any(-1): XLA:CPU's boolean row reductions are slow


SCREEN_MAX_WIDTH = 64  # nets no wider than this screen their near-boundary test (see _screened_near)
_SCREEN_SLACK = 1.001  # the screen's bounds are inflated by this factor (float32 rounding)


def screens_near(net: Net, boundary_tol: float) -> bool:
    """Whether :func:`codes_hashes_and_checks` (``screen=None``) screens ``net``'s near-boundary
    test: narrow MLPs (input and every hidden layer at most ``SCREEN_MAX_WIDTH`` wide), where
    the per-row norms ``||h||`` of the exact test cost more than the layers' matmuls, and
    unstacked general nets, whose exact scales ``|A| s + |c|`` cost a second pass through every
    Dense and Conv layer (:func:`_screened_site_codes`; a stacked net, vmapped, would run both
    branches of the screen's ``switch``)."""
    if not net.is_mlp:  # at tol 0 too: the screen then flags exact ties only (and pools' bounded ones)
        return not net.stack_shape
    return boundary_tol > 0 and max((net.input_dim,) + tuple(net.widths)) <= SCREEN_MAX_WIDTH


def _exact_near(net: Net, x, boundary_tol: float):
    h = jnp.asarray(x, net.dtype)
    near = jnp.zeros(h.shape[:-1], bool)
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = jnp.matmul(h, W, precision=jax.lax.Precision.HIGHEST) + b
        near = near | _near(z, h, W, b, boundary_tol)
        h = net.act(z)
    return near


def _screened_near(net: Net, x, zs, boundary_tol: float):
    """The near-boundary flags of :func:`_near`, computed exactly only where they may be set.

    A row's ``||h||`` at layer ``l`` is bounded once per net: ``U_1 = ||x||``,
    ``U_{l+1} = g (sigma_l U_l + ||b_l||)`` (``sigma_l`` the spectral norm of ``W_l``, ``g``
    the activation's largest slope), so a row with every ``|z_i| > tol (U_l ||W[:, i]|| + |b_i|)``
    (bounds inflated by ``_SCREEN_SLACK``) is not near, and only the other rows (about 1% on
    the IB net) get the exact test, on a compacted batch of ``N // 16`` rows (all rows at once
    if more are flagged). The flags equal :func:`_near`'s up to the rounding of those rows'
    own float32 pre-activations.
    """
    h = jnp.asarray(x, net.dtype)
    N = h.shape[0]
    slack = jnp.asarray(_SCREEN_SLACK, h.dtype)
    gain = max(1.0, abs(float(getattr(net, "alpha", 0.0))))
    U = jnp.sqrt(jnp.sum(h * h, axis=-1, keepdims=True)) * slack
    flagged = jnp.zeros(N, bool)
    for z, W, b in zip(zs, net.weights[:-1], net.biases[:-1]):
        col = jnp.sqrt(jnp.sum(W * W, axis=0)) * slack
        flagged = flagged | _any_units(jnp.abs(z) <= U * (boundary_tol * col) + (boundary_tol * slack) * jnp.abs(b))
        sigma = jnp.linalg.norm(W, ord=2) * slack
        U = gain * (U * sigma + jnp.sqrt(jnp.sum(b * b)) * slack) * slack
    capacity = max(1, N // 16)
    num = flagged.sum()
    (rows,) = jnp.nonzero(flagged, size=capacity, fill_value=0)
    some = _exact_near(net, h[rows], boundary_tol) & (jnp.arange(capacity) < num)

    def few():
        return jnp.zeros(N, bool).at[rows].max(some)

    return jax.lax.cond(num > capacity, lambda: _exact_near(net, h, boundary_tol), few)


def site_codes(net: Net, x, boundary_tol: float = 0.0):
    """Codes and near-boundary flags of a general net's code sites (traceable).

    One forward pass through :func:`partax.layers.traverse` carries the activations and, for
    the near-boundary test, the scale ``s = |A| s_in + |c|`` of every affine layer's terms
    (``|h|`` after a site, 0 for a clamped output: an exact constant); a site is near when some
    unit is within ``boundary_tol * s`` of a threshold (ReLU: ``|z|``; HardTanh: ``|z - lo|`` and
    ``|z - hi|``; MaxPool: the gap between a window's top two values against the sum of their
    scales, where that sum is > 0: ties of exact values, e.g. the zeros of a ReLU before the
    pool, go to the lowest slot in any precision and are not near).

    Args:
      net: an unstacked :class:`Net` (any layers).
      x: inputs ``[N, input_dim]`` (flattened row-major) or ``[N, *input_shape]``.
      boundary_tol: the relative tolerance (0: exact ties only, still of values with a scale > 0
        at a max pool).

    Returns:
      ``(bits, near)``: a list of ``bool[N, n_g]`` per code group, ``near`` ``bool[N]``.

    Example:
      >>> import numpy as np
      >>> from partax.layers import Conv, Dense, Flatten, MaxPool, ReLU
      >>> from partax.nets import sequential
      >>> net = sequential([Conv(np.ones((2, 1, 1), np.float32), -np.ones(1, np.float32)), ReLU(),
      ...                   MaxPool((2,)), Flatten(), Dense(np.ones((1, 1), np.float32), np.zeros(1, np.float32))], (3, 1))
      >>> bits, near = site_codes(net, np.array([[1.0, 0.5, 2.0], [0.5, 0.5, 0.25]], np.float32), 1e-5)
      >>> [b.astype(int).tolist() for b in bits], near.tolist()  # row 1: z = 0 at unit 0
      ([[[1, 1], [0, 0]], [[1], [0]]], [False, True])
    """
    bits, near, _ = _site_pass(net, x, float(boundary_tol), screened=False)
    return bits, near


def _any_rows(mask):
    """``bool[N]``: some entry of a code site's ``mask[N, ...]`` is set. The row's bits are packed
    into words the way codes are (:func:`_pack`) and the words ORed: on the bench's cnn workload
    the kernel ran at 0.64x its forward pass so, 0.55x with :func:`_any_float`'s float sums."""
    words = _pack(mask.reshape(mask.shape[0], -1))
    return jax.lax.reduce(words, np.uint32(0), jax.lax.bitwise_or, (1,)) != 0


def _site_near(layer, z, s, tol: float):
    """``bool[N]``: the site's near test (``layer.near``'s flags, through :func:`_any_rows`)."""
    if isinstance(layer, LeakyReLU):  # ReLU too
        return _any_rows(jnp.abs(z) <= tol * s)
    if isinstance(layer, HardTanh):
        return _any_rows((jnp.abs(z - layer.lo) <= tol * s) | (jnp.abs(z - layer.hi) <= tol * s))
    return layer.near(z, s, tol)


def _window_slots(pool, v, fill):
    """The slots of ``pool``'s windows over ``v[N, *spatial, C]``: a list of ``k`` arrays
    ``[N, *out_spatial, C]`` in row-major slot order (padded positions hold ``fill``), each a
    strided slice (``pool.windows`` stacks them: slicing that stack again costs a copy)."""
    vpad = jnp.pad(v, [(0, 0)] + list(pool.padding) + [(0, 0)], constant_values=fill)
    out = pool.output_shape(v.shape[1:])[:-1]
    slots = []
    for offs in np.ndindex(*pool.window):
        sl = [slice(o, o + (out[a] - 1) * pool.strides[a] + 1, pool.strides[a]) for a, o in enumerate(offs)]
        slots.append(vpad[tuple([slice(None)] + sl + [slice(None)])])
    return slots


def _pool_site(layer, z, s, tol: float):
    """A max pool's code, output and near flags in one pass over the window slots.

    The same values as ``layer.code(z)``, ``layer.apply(z)`` and ``layer.near(z, s, tol)``: the
    slots are scanned in order keeping the top value (the first maximum, NaN above all, as
    ``argmax``) and the runner-up (the first maximum of the other slots), with their scales:
    one elementwise pass, where ``layer.near`` takes two ``argmax`` and gathers per window.
    ``s=None``: the scales are the values themselves (the pool reads a ReLU's outputs, whose
    scale ``|out|`` is ``out``; a padded slot, -inf, is never the top and makes no gap small).
    """
    w = _window_slots(layer, z, -jnp.inf)
    sw = None if s is None else _window_slots(layer, s, 0)
    best, idx = w[0], jnp.zeros(w[0].shape, jnp.int32)
    sec = jnp.full(best.shape, -jnp.inf, best.dtype)
    if sw is not None:
        sbest, ssec = sw[0], jnp.zeros(best.shape, sw[0].dtype)
    for j in range(1, len(w)):
        v = w[j]
        # ~(v <= t) & (t == t): v > t, or v NaN and t not (argmax: NaN is the largest, first wins)
        top = ~(v <= best) & (best == best)
        runner = ~top & ~(v <= sec) & (sec == sec)
        if sw is not None:
            sv = sw[j]
            ssec = jnp.where(top, sbest, jnp.where(runner, sv, ssec))
            sbest = jnp.where(top, sv, sbest)
        sec = jnp.where(top, best, jnp.where(runner, v, sec))
        best = jnp.where(top, v, best)
        idx = jnp.where(top, np.int32(j), idx)
    nb = index_bits(layer.size)
    flat = idx.reshape(idx.shape[0], -1)
    code = ((flat[..., None] >> jnp.arange(nb, dtype=jnp.int32)) & 1).reshape(idx.shape[0], -1).astype(bool)
    both = best + sec if sw is None else sbest + ssec
    return code, layer.apply(z), _any_rows((best - sec <= tol * both) & (both > 0))


def _patch_sums(conv, q):
    """``q[N, *spatial, G]`` summed over each output position's (zero-padded, strided,
    dilated) window of ``conv``: ``[N, *out_spatial, G]``, by shifted slices (no convolution)."""
    qpad = jnp.pad(q, [(0, 0)] + list(conv.padding) + [(0, 0)])
    out = conv.output_shape(q.shape[1:-1] + (conv.kernel.shape[-2] * conv.groups,))[:-1]
    total = None
    for offs in np.ndindex(*conv.window):
        sl = [slice(None)]
        for a, o in enumerate(offs):
            start = o * conv.dilation[a]
            sl.append(slice(start, start + (out[a] - 1) * conv.strides[a] + 1, conv.strides[a]))
        part = qpad[tuple(sl + [slice(None)])]
        total = part if total is None else total + part
    return total


def _scale_bound(layer, s):
    """An upper bound of ``layer.magnitude(s)`` (``|A| s + |c|``, ``s >= 0``) for a Dense or Conv
    layer without its matmul or convolution: Cauchy-Schwarz per output unit,
    ``||A_i||_2 ||s_window(i)||_2 + |c_i|``, inflated by ``_SCREEN_SLACK``."""
    if isinstance(layer, Dense):
        norm = jnp.sqrt(jnp.sum(s * s, axis=-1, keepdims=True))
        col = jnp.sqrt(jnp.sum(layer.W * layer.W, axis=0))
        return (norm * col + jnp.abs(layer.b)) * _SCREEN_SLACK
    g = layer.groups
    cin = s.shape[-1]
    q = jnp.sum((s * s).reshape(*s.shape[:-1], g, cin // g), axis=-1)  # [N, *spatial, G]
    patch = jnp.sqrt(_patch_sums(layer, q))  # [N, *out_spatial, G]
    k = layer.kernel
    kn = jnp.sqrt(jnp.sum((k * k).reshape(-1, k.shape[-1]), axis=0))  # [C_out], group-major channels
    patch = jnp.repeat(patch, k.shape[-1] // g, axis=-1)
    return (patch * kn + jnp.abs(layer.bias)) * _SCREEN_SLACK


def _site_pass(net: Net, x, tol: float, screened: bool):
    """``(bits, near, flagged)`` of every code site in one traversal.

    Exact (``screened=False``): ``near`` is :func:`site_codes`'s flags and ``flagged`` is all
    False. Screened: every Dense / Conv layer's scale is the bound of :func:`_scale_bound`
    instead of its ``|A| s + |c|`` (which costs as much as the layer itself); a site whose scale
    is exact (after another site, or only non-Dense/Conv affine layers from the inputs, e.g. a
    max pool after a ReLU) sets ``near``, one whose scale is a bound sets ``flagged``: a superset
    of its near rows (``|z| <= tol s <= tol U``), for the exact test to decide.
    """
    h = as_structured(net, x)
    bits = []
    near = [jnp.zeros(h.shape[0], bool)]
    flagged = [jnp.zeros(h.shape[0], bool)]

    def affine(layer, state):
        v, _, exact = state
        s = _scales(state)
        if screened and isinstance(layer, (Dense, Conv)):
            return layer.apply(v), _scale_bound(layer, s), False
        return layer.apply(v), layer.magnitude(s), exact

    def site(layer, state):
        z, s, exact = state
        if isinstance(layer, MaxPool) and layer.size > 1:
            code, out, hit = _pool_site(layer, z, None if s is _VALUES else _scales(state), tol)
        else:
            code, out, hit = layer.code(z), layer.apply(z), _site_near(layer, z, _scales(state), tol)
        bits.append(code)
        target = near if exact else flagged
        target[0] = target[0] | hit
        if type(layer) is ReLU:  # its output scale |out| is out itself
            return out, _VALUES, True
        return out, layer.output_scale(z, out), True

    def add(a, b):
        return a[0] + b[0], _scales(a) + _scales(b), a[2] and b[2]

    traverse(net.layers, (h, jnp.abs(h), True), affine=affine, site=site, add=add)  # scales at tol 0 too (exact ties)
    return bits, near[0], flagged[0]


_VALUES = "values"  # a scale that is the values themselves (a ReLU's outputs), in _site_pass


def _scales(state):
    """The scales of a ``(values, scales, exact)`` state of :func:`_site_pass`, as an array."""
    v, s, _ = state
    return v if s is _VALUES else s


# the compacted batches of the screened general-net test, as fractions of the chunk: the first
# that holds every flagged row runs (a conv net at tol 1e-5 flags 2-4% of its rows); all rows else
_SCREEN_TIERS = (32, 8)


def _screened_site_codes(net: Net, x, boundary_tol: float):
    """:func:`site_codes` with the near-boundary test screened (general nets).

    One pass computes the codes, the exact flags of the sites whose scale is exact, and flags the
    rows where a Dense / Conv scale bound (:func:`_scale_bound`) may hide a near unit; those rows
    alone get :func:`site_codes`'s exact test, on the smallest compacted batch of
    ``N // _SCREEN_TIERS[i]`` rows that holds them (all rows at once if none does; none at all
    when no row is flagged, as at ``boundary_tol=0`` without exact ties). The flags
    equal :func:`site_codes`'s up to the rounding of those rows' own float32 pre-activations.
    """
    h = jnp.asarray(x, net.dtype)
    h = h.reshape(h.shape[0], -1)
    N = h.shape[0]
    bits, near, flagged = _site_pass(net, h, boundary_tol, screened=True)
    num = flagged.sum()
    caps = sorted({max(1, N // t) for t in _SCREEN_TIERS if N // t < N})

    def compacted(cap):
        def run():
            (rows,) = jnp.nonzero(flagged, size=cap, fill_value=0)
            hit = site_codes(net, h[rows], boundary_tol)[1] & (jnp.arange(cap) < num)
            return jnp.zeros(N, bool).at[rows].max(hit)
        return run

    branches = [lambda: jnp.zeros(N, bool)] + [compacted(c) for c in caps] + [lambda: site_codes(net, h, boundary_tol)[1]]
    tier = sum(((num > c).astype(jnp.int32) for c in caps), (num > 0).astype(jnp.int32))
    return bits, near | jax.lax.switch(tier, branches)


def finite_rows(h):
    """``bool[N]``: every coordinate of the row ``h[N, d]`` is finite.

    The same flags as ``isfinite(h).all(-1)``, as a float sum: ``h * 0`` is 0 for a finite
    value and NaN for inf and NaN, and no sum of zeros overflows. XLA:CPU emits the boolean
    row reduction as a slow reduce-window (about 7% of the 784-256-256-256-10 kernel's time);
    the float sum costs next to nothing.

    Example:
      >>> import numpy as np
      >>> finite_rows(np.array([[1.0, 2.0], [np.inf, 0.0], [0.0, np.nan]], np.float32)).tolist()
      [True, False, False]
    """
    h = jnp.asarray(h)
    return jnp.sum(h * jnp.zeros((), h.dtype), axis=-1) == 0


def _layer_codes(net: Net, x, boundary_tol: float, check: bool = False, screen: bool = False):
    """Forward pass: packed words, per-layer hashes, check lanes, boundary and finite flags.

    ``check_lanes`` (with ``check``) holds, per hidden layer wider than one word, two more
    lanes ``(c, d)``; for a one-word layer the key lanes are bijections of its word and serve
    as its fingerprint (None there). ``screen``: the near-boundary flags of
    :func:`_screened_near` (the same flags, cheaper on narrow nets). A general net (not an
    MLP) codes its sites through :func:`site_codes` (``screen``: :func:`_screened_site_codes`);
    ``x`` is flat ``[N, input_dim]``.
    """
    h = jnp.asarray(x, net.dtype)
    finite = finite_rows(h)
    if not net.is_mlp:
        if screen:
            bits, near = _screened_site_codes(net, h, boundary_tol)
        else:
            bits, near = site_codes(net, h, boundary_tol)
        codes_words = [_pack(b) for b in bits]
        return (tuple(codes_words),) + _hash_layers(codes_words, check) + (near, finite)
    near = jnp.zeros(h.shape[:-1], bool)
    screen = screen and boundary_tol > 0
    words, zs = [], []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        z = jnp.matmul(h, W, precision=jax.lax.Precision.HIGHEST) + b
        if screen:
            zs.append(z)
        else:
            near = near | _near(z, h, W, b, boundary_tol)
        words.append(_pack(z > 0))
        h = net.act(z)
    if screen:
        near = _screened_near(net, x, zs, boundary_tol)
    return (tuple(words),) + _hash_layers(words, check) + (near, finite)


def _hash_layers(words, check: bool):
    """Per code group: the two key lanes and, with ``check``, the check lanes of wide groups."""
    lane_a, lane_b, check_lanes = [], [], []
    for w in words:
        lane_a.append(_hash_words(w, _LANE_SEEDS[0]))
        lane_b.append(_hash_words(w, _LANE_SEEDS[1]))
        if check and w.shape[-1] > 1:
            check_lanes.append((_hash_words(w, _CHECK_SEEDS[0]), _hash_words(w, _CHECK_SEEDS[1])))
        else:
            check_lanes.append(None)
    return lane_a, lane_b, check_lanes


def check_lane_values(lane_a, lane_b, check_lanes) -> tuple[list, list]:
    """The per-layer ``(c, d)`` lanes behind check keys: the key lanes for one-word layers."""
    c = [a if cl is None else cl[0] for a, cl in zip(lane_a, check_lanes)]
    d = [b if cl is None else cl[1] for b, cl in zip(lane_b, check_lanes)]
    return c, d


def codes_and_keys(net: Net, x, ranges, boundary_tol: float = 0.0):
    """The traceable kernel: codes, keys of layer ranges, and boundary flags.

    Args:
      net: an unstacked :class:`Net`.
      x: inputs ``[N, d_in]``.
      ranges: static tuple of 1-based inclusive layer ranges ``(first, last)``.
      boundary_tol: an input is *near a boundary* if some hidden pre-activation has
        ``|z| <= boundary_tol``.

    Returns:
      ``(words, keys, near, finite)``: ``words`` a tuple of packed codes per layer;
      ``keys`` ``uint32[N, R, 2]`` with lanes ``(lo, hi)`` of the 64-bit key of each range
      (so a little-endian view as ``uint64`` gives the key); ``near`` ``bool[N]``;
      ``finite`` ``bool[N]`` (all input coordinates finite).
    """
    words, lane_a, lane_b, _, near, finite = _layer_codes(net, x, boundary_tol)
    return words, _stack_range_keys(lane_a, lane_b, ranges, near.shape), near, finite


def _stack_range_keys(lane_a, lane_b, ranges, shape, salt: int = _KEY_SALT):
    if not ranges:
        return jnp.zeros((*shape, 0, 2), jnp.uint32)
    pairs = zip(_range_keys(lane_a, ranges, salt=salt), _range_keys(lane_b, ranges, salt=salt))
    return jnp.stack([jnp.stack(pair, axis=-1) for pair in pairs], axis=-2)


def codes_keys_and_checks(net: Net, x, ranges, boundary_tol: float = 0.0):
    """:func:`codes_and_keys` plus the check key of every range (``uint32[N, R, 2]``).

    The check key is an independent 64-bit hash of the same code (other lane seeds for
    layers wider than one word, another position salt): rows with one key and two check
    keys are a hash collision. Returns ``(words, keys, check_keys, near, finite)``.
    """
    words, lane_a, lane_b, check_lanes, near, finite = _layer_codes(net, x, boundary_tol, check=True)
    keys = _stack_range_keys(lane_a, lane_b, ranges, near.shape)
    c, d = check_lane_values(lane_a, lane_b, check_lanes)
    return words, keys, _stack_range_keys(c, d, ranges, near.shape, _CHECK_SALT), near, finite


def codes_and_layer_hashes(net: Net, x, boundary_tol: float = 0.0, *, screen: bool = False):
    """The streaming engine's kernel: the full-code key per input, and per-layer hashes.

    Every range key is a function of the per-layer hashes, so the engine groups a chunk by
    the key of the whole code and finishes the other ranges' keys on the host
    (:func:`range_keys`) for one input per group only: writing ``R`` keys for every input
    would cost more than the forward pass of a small net.

    Returns:
      ``(words, full_keys, layer_hashes, near, finite)``: ``full_keys`` ``uint32[N, 2]``
      (lanes of the key of layers ``1..L``), ``layer_hashes`` ``uint32[2, L, N]``; the rest
      as in :func:`codes_and_keys`.
    """
    words, lane_a, lane_b, _, near, finite = _layer_codes(net, x, boundary_tol, screen=screen)
    L = len(lane_a)
    (ka,), (kb,) = _range_keys(lane_a, ((1, L),)), _range_keys(lane_b, ((1, L),))
    layer_hashes = jnp.stack([jnp.stack(lane_a), jnp.stack(lane_b)])
    return words, jnp.stack([ka, kb], axis=-1), layer_hashes, near, finite


def codes_hashes_and_checks(net: Net, x, boundary_tol: float = 0.0, *, screen: bool = False):
    """:func:`codes_and_layer_hashes` with the collision check's data (``screen``: the
    near-boundary flags through the cheaper screen, see :func:`screens_near`).

    Returns:
      ``(words, full_keys, full_checks, layer_hashes, near, finite)``: ``full_checks``
      ``uint32[N, 2]`` the check key of layers ``1..L``; ``layer_hashes``
      ``uint32[2 L + 2 L_w, N]``: rows ``a_1..a_L, b_1..b_L`` (the key lanes), then
      ``c, d`` of each layer wider than one word (``L_w`` of them, in layer order).
    """
    words, lane_a, lane_b, check_lanes, near, finite = _layer_codes(net, x, boundary_tol, check=True, screen=screen)
    L = len(lane_a)
    (ka,), (kb,) = _range_keys(lane_a, ((1, L),)), _range_keys(lane_b, ((1, L),))
    c, d = check_lane_values(lane_a, lane_b, check_lanes)
    (kc,), (kd,) = _range_keys(c, ((1, L),), salt=_CHECK_SALT), _range_keys(d, ((1, L),), salt=_CHECK_SALT)
    rows = list(lane_a) + list(lane_b) + [v for cl in check_lanes if cl is not None for v in cl]
    return words, jnp.stack([ka, kb], axis=-1), jnp.stack([kc, kd], axis=-1), jnp.stack(rows), near, finite


def full_check_keys(hash_rows, widths) -> np.ndarray:
    """The check key of the full code ``S^1..S^L``, on the host, from the per-layer hash rows.

    The same value as the ``full_checks`` of :func:`codes_hashes_and_checks`, recomputed
    from its ``layer_hashes`` rows (a base table's payload holds them, so the partition
    engine's device path can give its table of known keys their check keys).

    Args:
      hash_rows: ``uint32[2 L + 2 L_w, G]``, rows as :func:`codes_hashes_and_checks` returns
        them: ``a_1..a_L, b_1..b_L``, then ``c, d`` of each layer wider than one word.
      widths: hidden widths ``(n_1, ..., n_L)``.

    Returns:
      ``uint32[G, 2]``, the check key lanes of every column.
    """
    rows = np.asarray(hash_rows, np.uint32)
    L = len(widths)
    wide = [l for l in range(L) if widths[l] > 32]
    if rows.ndim != 2 or rows.shape[0] != 2 * L + 2 * len(wide):
        raise ValueError(f"hash_rows: expected {2 * L + 2 * len(wide)} rows for widths {tuple(widths)}, "
                         f"got shape {rows.shape}")
    check_lanes = [None] * L
    for j, l in enumerate(wide):
        check_lanes[l] = (rows[2 * L + 2 * j], rows[2 * L + 2 * j + 1])
    c, d = check_lane_values(list(rows[:L]), list(rows[L : 2 * L]), check_lanes)
    (kc,), (kd,) = _range_keys(c, ((1, L),), salt=_CHECK_SALT), _range_keys(d, ((1, L),), salt=_CHECK_SALT)
    return np.stack([kc, kd], axis=-1).astype(np.uint32)


def fingerprint_columns(widths, ranges) -> list:
    """Per range, the rows of :func:`codes_hashes_and_checks`'s ``layer_hashes`` that
    fingerprint the range's code (key lanes of its layers, check lanes of its wide ones)."""
    L = len(widths)
    wide = [l for l in range(1, L + 1) if widths[l - 1] > 32]
    cols = []
    for f, t in ranges:
        c = [l - 1 for l in range(f, t + 1)] + [L + l - 1 for l in range(f, t + 1)]
        for j, l in enumerate(wide):
            if f <= l <= t:
                c += [2 * L + 2 * j, 2 * L + 2 * j + 1]
        cols.append(np.asarray(c, np.int64))
    return cols


@functools.partial(jax.jit, static_argnames=("first", "last", "start"))
def _keys_from_bits_jit(bits, first, last, start):
    words = [_pack(b) for b in bits]
    lane_a = [_hash_words(w, _LANE_SEEDS[0]) for w in words]
    lane_b = [_hash_words(w, _LANE_SEEDS[1]) for w in words]
    ranges = ((first, last),)
    (a,), (b,) = _range_keys(lane_a, ranges, start), _range_keys(lane_b, ranges, start)
    return jnp.stack([a, b], axis=-1)


def keys_from_bits(bits, first: int, last: int, *, start: int = 1) -> np.ndarray:
    """Region keys of the layer range ``first..last`` (1-based) from unpacked codes.

    The same hash as :func:`region_ids`, for codes obtained some other way (exact
    enumeration, float64 geometry, a sub-network). Keys depend on the codes of the range and
    on where the range sits in the net (its absolute layer numbers).

    Args:
      bits: a sequence of ``bool[R, n_l]``, one per hidden layer ``start, start + 1, ...``,
        covering ``first..last``.
      first, last: the inclusive range of (absolute, 1-based) layers.
      start: the absolute layer number of ``bits[0]`` (default 1).

    Returns:
      ``numpy.uint64[R]``.

    Example:
      >>> import jax, numpy as np, partax
      >>> from partax.coding import keys_from_bits
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1])
      >>> x = np.ones((3, 2), np.float32)
      >>> c = partax.codes(net, x)
      >>> bool((keys_from_bits([c.bits(1), c.bits(2)], 1, 2) == partax.region_ids(net, x)[:, 1]).all())
      True
      >>> bool((keys_from_bits([c.bits(2)], 2, 2, start=2) == partax.region_ids(net, x, "layer")[:, 1]).all())
      True
    """
    bits = [np.asarray(b, bool) for b in bits]
    if not (start <= first <= last <= start + len(bits) - 1):
        raise ValueError(
            f"first, last: expected start <= first <= last <= {start + len(bits) - 1} "
            f"(bits covers layers {start}..{start + len(bits) - 1}), got {first}, {last}"
        )
    R = bits[0].shape[0]
    if R == 0:
        return np.zeros(0, np.uint64)
    size = 1 << max(0, (R - 1).bit_length())  # pad to a power of two: few compilations
    padded = tuple(np.pad(b, ((0, size - R), (0, 0))) for b in bits[: last - start + 1])
    k = np.asarray(_keys_from_bits_jit(padded, first, last, start))[:R]
    return as_uint64(k)


def as_uint64(lanes: np.ndarray) -> np.ndarray:
    """``uint32[..., 2]`` lanes ``(lo, hi)`` -> ``uint64[...]`` keys (on any byte order)."""
    lanes = np.asarray(lanes, np.uint32)
    return lanes[..., 0].astype(np.uint64) | (lanes[..., 1].astype(np.uint64) << np.uint64(32))


@jax.jit
def _codes_jit(net, x):
    words, _, _, finite = codes_and_keys(net, x, ())
    return words, finite


def _padded(x, minimum: int = 8):
    """``x`` padded with zero rows to a power-of-two length: calls on batches of any size
    compile for a few shapes only (the tests guard it with ``chex.assert_max_traces``)."""
    n = x.shape[0]
    size = max(minimum, 1 << max(0, (n - 1).bit_length()))
    if size == n:
        return x
    pad = jnp.zeros((size - n, x.shape[1]), x.dtype) if isinstance(x, jax.Array) else np.zeros((size - n, x.shape[1]), x.dtype)
    return (jnp if isinstance(x, jax.Array) else np).concatenate([x, pad])


def codes(net: Net, x) -> Codes:
    """Packed activation codes of every hidden layer.

    Args:
      net: an unstacked :class:`Net`.
      x: inputs ``[N, d_in]`` (a general net also takes ``[N, *input_shape]``).

    Returns:
      :class:`Codes` with ``words[l-1]: uint32[N, ceil(n_l/32)]``.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(1), [3, 5, 2])
      >>> partax.codes(net, np.ones((4, 3), np.float32)).bits(1).shape
      (4, 5)
    """
    check_net(net, stacked=False, caller="codes()")
    x = check_inputs(flat_inputs(net, x), net.input_dim)
    n = x.shape[0]
    words, finite = _codes_jit(net, _padded(x))
    check_finite(np.asarray(finite)[:n])
    return Codes(tuple(np.asarray(w)[:n] for w in words), net.widths)


_region_ids_jit = jax.jit(codes_and_keys, static_argnames=("ranges",))


def region_ids(net: Net, x, scope: str = "prefix", *, exact: bool = False) -> np.ndarray:
    """64-bit region keys of every input at every hidden layer under one scope.

    Args:
      net: an unstacked :class:`Net`.
      x: inputs ``[N, d_in]`` (a general net also takes ``[N, *input_shape]``).
      scope: ``"layer"``, ``"prefix"`` or ``"suffix"``.
      exact: if True, check that equal keys among ``x`` have equal codes and raise
        :class:`HashCollisionError` otherwise.

    Returns:
      ``numpy.uint64[N, L]``; column ``l-1`` is the key at hidden layer ``l``.

    Example:
      >>> import jax, numpy as np, partax
      >>> net = partax.mlp(jax.random.key(0), [2, 8, 8, 1])
      >>> ids = partax.region_ids(net, np.zeros((3, 2), np.float32), "suffix")
      >>> ids.dtype, ids.shape
      (dtype('uint64'), (3, 2))
    """
    check_net(net, stacked=False, caller="region_ids()")
    check_scope(scope)
    x = check_inputs(flat_inputs(net, x), net.input_dim)
    L = net.num_hidden
    ranges = tuple(scope_range(scope, l, L) for l in range(1, L + 1))
    n = x.shape[0]
    words, keys, _, finite = _region_ids_jit(net, _padded(x), ranges=ranges)
    check_finite(np.asarray(finite)[:n])
    keys = as_uint64(np.asarray(keys)[:n])
    if exact:
        words = [np.asarray(w)[:n] for w in words]
        for l, (f, t) in enumerate(ranges):
            code = np.concatenate(words[f - 1 : t], axis=1)
            check_collisions(keys[:, l], code)
    return keys


def check_collisions(keys: np.ndarray, code: np.ndarray) -> None:
    """Raises :class:`HashCollisionError` if two different codes share a key.

    Args:
      keys: ``uint64[N]``.
      code: ``uint32[N, W]``, the packed code of the scope's range for each input.
    """
    group_keys(np.asarray(keys, np.uint64), np.asarray(code))
