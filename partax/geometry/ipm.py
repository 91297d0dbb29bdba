"""The two batched interior-point LP backends of :mod:`partax.geometry.lp`.

Both solve ``min c·x  s.t.  A x <= b`` for every lane of a batch by the same method: a
primal-dual interior point (Mehrotra predictor-corrector) on the inequality form, with slacks
``s = b - A x >= 0`` and multipliers ``y >= 0``, the normal equations ``A^T diag(y/s) A``
solved per lane by Cholesky. Rows arrive unit-normalised and the objective scaled to unit
norm (:func:`partax.geometry.lp.solve` does both).

* :func:`solve_jax` (``solver="ipm"``): JAX float64 under ``jit`` + ``vmap``; runs on
  accelerators. Each lane has its own ``done`` flag and a lane that is done is frozen (its
  state no longer changes, so its result does not depend on its batch). The batch is padded
  to a power of two (at least 8) and the rows to a multiple of 8 (inert rows ``0·x <= 1``); it
  iterates until all but an eighth of its lanes are done, and the slow tail then finishes in
  a sub-batch of its own, padded to one of two fixed sizes (``max(8, P/64)`` or ``P/8`` for a
  batch of ``P``), so a batch size compiles at most four shapes (init, run, two tails,
  finish share them) whatever its lanes do.
* :func:`solve_numpy` (``solver="numpy"``): the same method in batched NumPy float64, for
  the CPU: nothing to compile, so the first call is as fast as the next ones; lanes leave the
  batch as they converge. For many small LPs (a few variables) it is as fast per LP as the
  compiled one.

Statuses: :data:`OPTIMAL` (0) converged (the largest of the relative primal residual, dual
residual and duality gap below ``tol``, or stalled within ``100 tol``), :data:`MAX_ITER` (1)
the iteration limit, :data:`FAILED` (2) numerical trouble (non-finite iterates), as for every
backend of :mod:`partax.geometry.lp`.

Example:
    >>> import numpy as np
    >>> from partax.geometry.ipm import solve_numpy
    >>> A = np.array([[[1.0], [-1.0]]]); b = np.array([[2.0, 1.0]])  # -1 <= x <= 2
    >>> x, status, its = solve_numpy(np.array([[1.0]]), A, b, np.zeros((1, 1)), 1e-9, 100)
    >>> np.round(x, 6).tolist(), status.tolist()
    ([[-1.0]], [0])
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["OPTIMAL", "MAX_ITER", "FAILED", "solve_jax", "solve_numpy", "tail_sizes"]

OPTIMAL, MAX_ITER, FAILED = 0, 1, 2


# --- JAX ----------------------------------------------------------------------------------------------
def _max_step(v, dv):
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio))


_SMALL_N = 32  # normal matrices up to this size are solved through an explicit L^-1


def _ipm_lane(c, A, b, tol, max_iter):
    """The IPM of one LP as ``(init(x0) -> state, body(state) -> state, finish(state))``."""
    m, n = A.shape
    bn = 1.0 + jnp.linalg.norm(b)
    cn = 1.0 + jnp.linalg.norm(c)
    eye = jnp.eye(n, dtype=A.dtype)
    hi = jax.lax.Precision.HIGHEST

    def residuals(x, s, y):
        """Primal and dual residuals and the merit: the largest of the relative primal
        residual, dual residual and duality gap."""
        rp = jnp.dot(A, x, precision=hi) + s - b
        rd = jnp.dot(y, A, precision=hi) + c
        gap = s @ y / (1.0 + jnp.abs(c @ x))
        return rp, rd, jnp.maximum(jnp.maximum(jnp.linalg.norm(rp) / bn, jnp.linalg.norm(rd) / cn), gap)

    def factor(M):
        """Cholesky factor of the (slightly regularised) normal matrix. For small ``n`` its
        inverse ``L^-1`` instead: one factorisation and one triangular inversion per
        iteration (two LAPACK calls per lane instead of one per triangular solve), after
        which every solve is two fused matrix-vector products."""
        L = jnp.linalg.cholesky(M + (1e-13 * jnp.max(jnp.diag(M)) + 1e-300) * eye)
        if n <= _SMALL_N:
            return jax.scipy.linalg.solve_triangular(L, eye, lower=True)
        return L

    def solve(L, r):
        if n <= _SMALL_N:
            return jnp.dot(jnp.dot(L, r, precision=hi), L, precision=hi)
        return jax.scipy.linalg.cho_solve((L, True), r)

    def newton(chol, M, s, y, rp, rd, rc, refine):
        rhs = -rd - jnp.dot((-rc + y * rp) / s, A, precision=hi)
        dx = solve(chol, rhs)
        if refine:  # one step of iterative refinement against the unregularised normal matrix
            dx = dx + solve(chol, rhs - jnp.dot(M, dx, precision=hi))
        ds = -rp - jnp.dot(A, dx, precision=hi)
        dy = (-rc - y * ds) / s
        return dx, ds, dy

    def body(state):
        x, s, y, rp, rd, k, done, best, best_x, best_k = state
        mu = s @ y / m
        M = jnp.dot(A.T * (y / s), A, precision=hi)
        chol = factor(M)
        # predictor (affine-scaling) direction: only its step lengths and second-order term are used
        dx, ds, dy = newton(chol, M, s, y, rp, rd, s * y, False)
        ap = _max_step(s, ds)
        ad = _max_step(y, dy)
        mu_aff = (s + ap * ds) @ (y + ad * dy) / m
        sigma = jnp.clip((mu_aff / mu) ** 3, 0.0, 1.0)
        dx, ds, dy = newton(chol, M, s, y, rp, rd, s * y + ds * dy - sigma * mu, True)
        ap = jnp.minimum(1.0, 0.99 * _max_step(s, ds))
        ad = jnp.minimum(1.0, 0.99 * _max_step(y, dy))
        xn, sn, yn = x + ap * dx, s + ap * ds, y + ad * dy
        bad = ~(jnp.all(jnp.isfinite(xn)) & jnp.all(jnp.isfinite(yn)) & jnp.all(jnp.isfinite(sn)))
        bad = bad | jnp.any(sn <= 0) | jnp.any(yn <= 0)
        x = jnp.where(bad, x, xn)
        s = jnp.where(bad, s, sn)
        y = jnp.where(bad, y, yn)
        k = k + 1
        rpn, rdn, phi = residuals(x, s, y)
        rp = jnp.where(bad, rp, rpn)
        rd = jnp.where(bad, rd, rdn)
        better = (phi < 0.5 * best) & ~bad
        best_x = jnp.where(better | (phi < best) & ~bad, x, best_x)
        best = jnp.where(~bad, jnp.minimum(best, phi), best)
        best_k = jnp.where(better, k, best_k)
        stalled = (k - best_k >= 15) | ((k - best_k >= 3) & (best <= 100 * tol))
        done = bad | (best <= tol) | (k >= max_iter) | stalled
        return x, s, y, rp, rd, k, done, best, best_x, best_k

    def init(x):
        s = jnp.maximum(b - jnp.dot(A, x, precision=hi), 1.0)
        y = jnp.ones_like(b)
        rp, rd, phi = residuals(x, s, y)
        return (x, s, y, rp, rd, jnp.int32(0), phi <= tol, phi, x, jnp.int32(0))

    def finish(state):
        k, best, x = state[5], state[7], state[8]
        # Stagnation near the optimum (ill-conditioned normal equations) is accepted within 100 tol.
        status = jnp.where(best <= 100 * tol, OPTIMAL, jnp.where(k >= max_iter, MAX_ITER, FAILED))
        return x, status.astype(jnp.int32), k

    return init, body, finish


_DONE = 6  # index of the per-lane ``done`` flag in the state


@jax.jit
def _ipm_init(c, A, b, x0, tol):
    return jax.vmap(lambda c, A, b, x0: _ipm_lane(c, A, b, tol, 1)[0](x0))(c, A, b, x0)


@functools.partial(jax.jit, static_argnames=("max_iter", "min_active"))
def _ipm_run(c, A, b, state, tol, max_iter, min_active):
    """Iterates every lane that is not done until at most ``min_active`` lanes are left.

    A lane that is done is frozen (its state is no longer updated), so a lane's result does
    not depend on the batch it runs in."""
    step = jax.vmap(lambda c, A, b, st: _ipm_lane(c, A, b, tol, max_iter)[1](st))

    def body(st):
        new = step(c, A, b, st)
        done = st[_DONE]
        return jax.tree.map(lambda o, v: jnp.where(done.reshape(done.shape + (1,) * (o.ndim - 1)), o, v), st, new)

    return jax.lax.while_loop(lambda st: jnp.sum(~st[_DONE]) > min_active, body, state)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _ipm_finish(c, A, b, state, tol, max_iter):
    return jax.vmap(lambda c, A, b, st: _ipm_lane(c, A, b, tol, max_iter)[2](st))(c, A, b, state)


def _pow2(k):
    return max(8, 1 << (k - 1).bit_length())


def tail_sizes(P: int) -> tuple:
    """The sub-batch sizes the slow tail of a padded batch may be padded to.

    Args:
      P: the padded batch size (a power of two).

    Returns:
      The sorted sizes (at most two): ``max(8, P // 64)`` and ``P // 8``.
    """
    return tuple(sorted({max(8, P // 64), P // 8}))


def solve_jax(c, A, b, x0, tol, max_iter):
    """The JAX interior point on a batch (see the module docstring).

    Args:
      c: ``float64[B, n]`` (unit norm); A: ``[B, m, n]`` (unit rows); b: ``[B, m]``;
      x0: ``[B, n]`` starting points; tol: tolerance; max_iter: iteration limit.

    Returns:
      ``(x: float64[B, n], status: int32[B], iterations: int32[B])``.
    """
    B = c.shape[0]
    P = _pow2(B)  # pad the batch to a power of two: fewer compilations
    if P != B:
        pad = lambda v: np.concatenate([v, np.repeat(v[:1], P - B, axis=0)])
        c, A, b, x0 = pad(c), pad(A), pad(b), pad(x0)
    m = A.shape[1]
    mp = -(-m // 8) * 8  # and the rows to a multiple of 8 with inert rows 0·x <= 1
    if mp != m:
        A = np.concatenate([A, np.zeros((P, mp - m, A.shape[2]))], axis=1)
        b = np.concatenate([b, np.ones((P, mp - m))], axis=1)
    with jax.enable_x64(True):
        c, A, b, tol = jnp.asarray(c), jnp.asarray(A), jnp.asarray(b), jnp.float64(tol)
        state = _ipm_init(c, A, b, jnp.asarray(x0), tol)
        # The whole batch iterates until all but an eighth of the lanes are done; the slow
        # tail then continues in a sub-batch of its own (one of two fixed sizes) instead of
        # dragging the finished lanes along (under vmap every lane pays for every iteration).
        tail = P // 8 if P >= 64 else 0
        state = _ipm_run(c, A, b, state, tol, max_iter, tail)
        if tail:
            active = np.flatnonzero(~np.asarray(state[_DONE]))
            if active.size:
                size = next(s for s in tail_sizes(P) if s >= active.size)
                idx = np.concatenate([active, np.repeat(active[:1], size - active.size)])
                sub = jax.tree.map(lambda v: v[idx], state)
                sub = _ipm_run(c[idx], A[idx], b[idx], sub, tol, max_iter, 0)
                keep = jnp.asarray(active)
                state = jax.tree.map(lambda v, w: v.at[keep].set(w[: active.size]), state, sub)
        x, status, k = _ipm_finish(c, A, b, state, tol, max_iter)
        # owned NumPy arrays (not read-only views of JAX buffers)
        x = np.array(x[:B], np.float64)
        status = np.array(status[:B], np.int32)
        k = np.array(k[:B], np.int32)
    return x, status, k


# --- NumPy -------------------------------------------------------------------------------------------
def _np_max_step(v, dv):
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dv < 0, -v / dv, np.inf)
    return np.minimum(1.0, ratio.min(axis=1))


def _np_merit(A, b, c, x, s, y, bn, cn):
    rp = np.einsum("bmn,bn->bm", A, x) + s - b
    rd = np.einsum("bm,bmn->bn", y, A) + c
    gap = np.einsum("bm,bm->b", s, y)
    merit = np.maximum(np.maximum(np.linalg.norm(rp, axis=1) / bn, np.linalg.norm(rd, axis=1) / cn),
                       gap / (1.0 + np.abs(np.einsum("bn,bn->b", c, x))))
    return rp, rd, gap, merit


def solve_numpy(c, A, b, x0, tol, max_iter):
    """The NumPy interior point on a batch (see the module docstring).

    Lanes leave the batch as they converge (or fail); at the iteration limit a lane that
    stagnated within ``100 tol`` of the optimum is accepted.

    Args:
      c: ``float64[B, n]``; A: ``[B, m, n]`` (unit rows); b: ``[B, m]``; x0: ``[B, n]`` start;
      tol: tolerance; max_iter: iteration limit.

    Returns:
      ``(x: float64[B, n], status: int32[B], iterations: int32[B])``.
    """
    B, m, n = A.shape
    x = np.array(x0, np.float64)
    s = np.maximum(b - np.einsum("bmn,bn->bm", A, x), 1.0)
    y = np.ones((B, m))
    status = np.full(B, MAX_ITER, np.int32)
    its = np.full(B, max_iter, np.int32)
    bn = 1.0 + np.linalg.norm(b, axis=1)
    cn = 1.0 + np.linalg.norm(c, axis=1)
    act = np.arange(B)
    eye = np.eye(n)
    Aa, ba, ca, xa, sa, ya = A, b, c, x, s, y
    for it in range(max_iter):
        rp, rd, gap, merit = _np_merit(Aa, ba, ca, xa, sa, ya, bn[act], cn[act])
        done = merit <= tol
        bad = ~np.isfinite(merit)
        if done.any() or bad.any():
            fin = done | bad
            x[act[fin]] = xa[fin]
            its[act[fin]] = it
            status[act[done]] = OPTIMAL
            status[act[bad]] = FAILED
            keep = ~fin
            act = act[keep]
            if not len(act):
                break
            Aa, ba, ca, xa, sa, ya = Aa[keep], ba[keep], ca[keep], xa[keep], sa[keep], ya[keep]
            rp, rd, gap = rp[keep], rd[keep], gap[keep]
        mu = gap / m
        w = ya / sa
        M = np.matmul(Aa.transpose(0, 2, 1) * w[:, None, :], Aa)
        M += (1e-13 * np.trace(M, axis1=1, axis2=2) / n + 1e-300)[:, None, None] * eye
        try:
            L = np.linalg.cholesky(M)
            Minv = None
        except np.linalg.LinAlgError:  # some lane's normal matrix is not numerically PD
            L = None
            Minv = np.linalg.pinv(M)

        def newton(rc):
            rhs = -rd - np.einsum("bm,bmn->bn", (-rc + ya * rp) / sa, Aa)
            if L is not None:
                t = np.linalg.solve(L, rhs[..., None])
                dx = np.linalg.solve(L.transpose(0, 2, 1), t)[..., 0]
            else:
                dx = np.einsum("bij,bj->bi", Minv, rhs)
            ds = -rp - np.einsum("bmn,bn->bm", Aa, dx)
            dy = (-rc - ya * ds) / sa
            return dx, ds, dy

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            dx, ds, dy = newton(sa * ya)
            ap = _np_max_step(sa, ds)
            ad = _np_max_step(ya, dy)
            mu_aff = np.einsum("bm,bm->b", sa + ap[:, None] * ds, ya + ad[:, None] * dy) / m
            sigma = np.clip((mu_aff / mu) ** 3, 0.0, 1.0)
            dx, ds, dy = newton(sa * ya + ds * dy - (sigma * mu)[:, None])
            ap = np.minimum(1.0, 0.99 * _np_max_step(sa, ds))[:, None]
            ad = np.minimum(1.0, 0.99 * _np_max_step(ya, dy))[:, None]
            xa = xa + ap * dx
            sa = sa + ap * ds
            ya = ya + ad * dy
    else:
        # iteration limit: lanes that stagnated near the optimum are accepted within 100 tol
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            _, _, _, merit = _np_merit(Aa, ba, ca, xa, sa, ya, bn[act], cn[act])
        x[act] = xa
        status[act[merit <= 100 * tol]] = OPTIMAL
        status[act[~np.isfinite(merit)]] = FAILED
    return x, status, its
