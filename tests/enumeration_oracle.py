"""An independent exact enumerator of the prefix regions of a ReLU net, for the tests only.

Layer-by-layer sign-pattern refinement: the regions of layers ``1..l`` are the cells of
the regions of layers ``1..l-1`` cut by the affine functions (frozen masks) of layer ``l``'s
units, one unit at a time. A candidate cell ``{x : A x <= b}`` (rows normalised) is kept iff
the LP ``max t  s.t.  A x + t <= b,  t <= 1`` (scipy.optimize.linprog, HiGHS) has
``t > eps``. A cell whose Chebyshev ball is cut by a unit's hyperplane needs no LP (both
sides are non-empty); otherwise the side holding the ball's centre needs none either.
Unboundedness: a full-rank region ``{A x <= b}`` is unbounded iff its recession cone
``{r : A r <= 0}`` holds an ``r`` with ``sum(A r) = -1`` (a feasibility LP).

Nothing here imports partax's enumeration, geometry or LP code: the net's arrays are read
as NumPy float64 and the forward pass is written out below.
"""

import numpy as np
from scipy.optimize import linprog


def _arrays(net):
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    alpha = float(net.alpha) if net.activation == "leaky_relu" else 0.0
    return Ws, bs, alpha


def codes(net, x, layer=None):
    """``bool[N, n_1 + ... + n_layer]`` float64 codes (bit = pre-activation > 0)."""
    Ws, bs, alpha = _arrays(net)
    L = len(Ws) - 1 if layer is None else layer
    h = np.asarray(x, np.float64)
    out = []
    for W, b in zip(Ws[:L], bs[:L]):
        z = h @ W + b
        out.append(z > 0)
        h = np.where(z > 0, z, alpha * z)
    return np.concatenate(out, axis=1)


def chebyshev(A, b, eps):
    """``(t, x)`` of ``max t : A x + t <= b, t <= 1`` (rows of A unit or zero)."""
    d = A.shape[1]
    live = np.linalg.norm(A, axis=1) > 1e-12
    if np.any(~live & (b < 0)):
        return -1.0, None
    A, b = A[live], b[live]
    if len(A) == 0:
        return 1.0, np.zeros(d)
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[A, np.ones(len(A))], b_ub=b,
                  bounds=[(None, None)] * d + [(None, 1.0)], method="highs")
    if res.status != 0:
        raise RuntimeError(f"oracle LP failed: {res.message}")
    return -res.fun, res.x[:d]


def _normalise(A, b):
    nrm = np.linalg.norm(A, axis=1)
    safe = np.where(nrm > 1e-12, nrm, 1.0)
    return A / safe[:, None], b / safe


def regions(net, box=None, layer=None, eps=1e-9):
    """Every prefix region (layers ``1..layer``) of R^d, or of a box ``(lo, hi)``.

    Returns a list of ``dict(code: bool[n], A, b, point, radius)``: ``A x <= b`` its rows
    (normalised; the box rows first in a box), ``point`` an interior point and ``radius`` the
    radius of a ball around it inside the region (at most 1).
    """
    Ws, bs, alpha = _arrays(net)
    d = Ws[0].shape[0]
    L = len(Ws) - 1 if layer is None else layer
    A0 = np.zeros((0, d))
    b0 = np.zeros(0)
    if box is not None:
        lo, hi = (np.broadcast_to(np.asarray(v, np.float64), (d,)) for v in box)
        A0 = np.concatenate([np.eye(d), -np.eye(d)])
        b0 = np.concatenate([hi, -lo])
    t, x = chebyshev(A0, b0, eps)
    # a cell: code so far, rows A x <= b, h^{l-1} = x @ G + g on the cell, a ball (x, t) inside
    cells = [(np.zeros(0, bool), A0, b0, np.eye(d), np.zeros(d), x, t)]
    for W, bias in zip(Ws[:L], bs[:L]):
        nxt = []
        for code, A, b, G, g, x, t in cells:
            Z = G @ W  # pre-activations on the cell: z = x @ Z + zc
            zc = g @ W + bias
            sub = [(np.zeros(0, bool), A, b, x, t)]
            for j in range(W.shape[1]):
                a, c = Z[:, j], zc[j]
                na = np.linalg.norm(a)
                out = []
                for bits, Ac, bc, xc, tc in sub:
                    for on in (True, False):
                        if na <= 1e-12:  # a unit constant on the cell: one side only
                            if (c > 0) == on:
                                out.append((np.r_[bits, on], Ac, bc, xc, tc))
                            continue
                        # on: z > 0  <=>  -a.x < c ;  off: z <= 0  <=>  a.x <= -c
                        n, beta = ((-a, c) if on else (a, -c))
                        n, beta = n / na, beta / na
                        A2, b2 = np.r_[Ac, n[None]], np.r_[bc, beta]
                        dist = beta - n @ xc  # slack of the ball's centre
                        if dist >= tc:  # the ball lies on this side
                            t2, x2 = tc, xc
                        elif (tc + dist) / 2 > 0.1 * tc:  # the hyperplane cuts the ball: a smaller ball
                            t2 = (tc + dist) / 2
                            x2 = xc + (t2 - tc) * n
                        else:
                            t2, x2 = chebyshev(A2, b2, eps)
                        if t2 > eps:
                            out.append((np.r_[bits, on], A2, b2, x2, t2))
                sub = out
            for bits, Ac, bc, xc, tc in sub:
                slope = np.where(bits, 1.0, alpha)
                nxt.append((np.r_[code, bits], Ac, bc, Z * slope, zc * slope, xc, tc))
        cells = nxt
    return [dict(code=code, A=A, b=b, point=x, radius=t) for code, A, b, G, g, x, t in cells]


def is_unbounded(A):
    """Whether a non-empty ``{x : A x <= b}`` is unbounded: ``A`` has rank < d, or
    ``{r : A r <= 0, sum(A r) = -1}`` is feasible (a non-zero recession direction)."""
    A = A[np.linalg.norm(A, axis=1) > 1e-12]
    d = A.shape[1]
    if np.linalg.matrix_rank(A) < d:  # a line in every direction of the kernel
        return True
    res = linprog(np.zeros(d), A_ub=A, b_ub=np.zeros(len(A)), A_eq=A.sum(axis=0)[None], b_eq=[-1.0],
                  bounds=[(None, None)] * d, method="highs")
    if res.status not in (0, 2):
        raise RuntimeError(f"oracle recession LP failed: {res.message}")
    return res.status == 0
