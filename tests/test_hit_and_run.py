"""Multiphase hit-and-run volumes (partax.geometry.hit_and_run) against independent oracles.

Oracles: closed forms (boxes, simplices, cross-polytopes, a cube cut by a hyperplane: the
Irwin–Hall CDF), exact qhull volumes (scipy HalfspaceIntersection + ConvexHull, interior point
from scipy's linprog) of random regions of small ReLU nets, and the box volume as the sum over
all regions of a net's box. The default run walks everything in one batch in d = 3 (one
compilation); the other dimensions and the coverage of the standard errors are slow tests.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection

import partax
from partax.geometry import Box
from partax.geometry.enumerate import enumerate_regions
from partax.geometry.hit_and_run import EMPTY, FAILED, NOT_ROUND, OK, polytope_volumes, region_volumes
from partax.geometry.local import halfspaces_batch

# --- closed forms ------------------------------------------------------------------------------


def box(d, rng):
    lo = rng.uniform(-1, 0, d)
    hi = lo + rng.uniform(0.3, 2.0, d)
    return np.concatenate([np.eye(d), -np.eye(d)]), np.concatenate([hi, -lo]), float(np.prod(hi - lo))


def simplex(d, rng):
    s = rng.uniform(0.5, 2.0)  # {x >= 0, sum x <= s}
    return np.concatenate([-np.eye(d), np.ones((1, d))]), np.concatenate([np.zeros(d), [s]]), s**d / math.factorial(d)


def cross(d, rng):
    s = rng.uniform(0.5, 2.0)  # {sum |x_i| <= s}: 2^d rows
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * d)).reshape(d, -1).T
    return signs, np.full(len(signs), s), (2 * s) ** d / math.factorial(d)


def cut_cube(d, rng):
    t = rng.uniform(0.3, d - 0.3)  # [0, 1]^d ∩ {sum x <= t}: the Irwin–Hall CDF
    A = np.concatenate([np.eye(d), -np.eye(d), np.ones((1, d))])
    b = np.concatenate([np.ones(d), np.zeros(d), [t]])
    vol = sum((-1) ** k * math.comb(d, k) * (t - k) ** d for k in range(int(math.floor(t)) + 1)) / math.factorial(d)
    return A, b, vol


SHAPES = {"box": box, "simplex": simplex, "cross": cross, "cut_cube": cut_cube}


def stack(polys):
    """Pads rows with inert ``0·x <= 1`` and stacks."""
    m = max(len(b) for _, b, _ in polys)
    d = polys[0][0].shape[1]
    A = np.zeros((len(polys), m, d))
    b = np.ones((len(polys), m))
    for i, (a, bb, _) in enumerate(polys):
        A[i, : len(bb)] = a
        b[i, : len(bb)] = bb
    return A, b, np.array([v for _, _, v in polys])


# --- the qhull oracle --------------------------------------------------------------------------


def qhull_volume(A, b):
    """Exact volume of ``{A x <= b}`` (bounded) by scipy: Chebyshev point by linprog, then qhull."""
    nrm = np.linalg.norm(A, axis=1)
    keep = nrm > 0
    A, b, nrm = A[keep], b[keep], nrm[keep]
    d = A.shape[1]
    res = linprog(np.r_[np.zeros(d), -1.0], A_ub=np.c_[A, nrm], b_ub=b, bounds=[(None, None)] * d + [(0, None)],
                  method="highs")
    assert res.status == 0
    hs = HalfspaceIntersection(np.c_[A, -b], res.x[:d])
    return ConvexHull(hs.intersections).volume, res.x[-1]


def net_regions(d, seed, count, min_radius=0.05):
    """Rows of ``count`` distinct regions of a small random net in [-1, 1]^d, with qhull volumes."""
    net = partax.mlp(jax.random.key(seed), [d, 6, 6, 1], bias_std=0.3)
    pts = np.random.default_rng(seed).uniform(-1, 1, (400, d)).astype(np.float32)
    A, b = halfspaces_batch(net, pts, domain=Box(-1.0, 1.0))
    masks = (np.einsum("nmk,nk->nm", A, pts) <= b)
    _, first = np.unique(np.round(np.c_[A.reshape(len(pts), -1), b], 9), axis=0, return_index=True)
    out = []
    for i in sorted(first):
        vol, radius = qhull_volume(A[i], b[i])
        if radius >= min_radius and masks[i].all():
            out.append((A[i], b[i], vol))
        if len(out) == count:
            break
    assert len(out) == count
    return out


# --- one batch for the default run (d = 3) -----------------------------------------------------
D = 3
CFG = dict(chains=32, steps=40)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    polys, kinds = [], []
    for name, f in SHAPES.items():
        for _ in range(3):
            polys.append(f(D, rng))
            kinds.append(name)
    for p in net_regions(D, 1, 6):
        polys.append(p)
        kinds.append("qhull")
    net = partax.mlp(jax.random.key(2), [D, 5, 5, 1], bias_std=0.3)
    enum = enumerate_regions(net, Box(-1.0, 1.0), progress=False)
    assert enum.complete
    A_net, b_net = halfspaces_batch(net, enum.points, domain=Box(-1.0, 1.0))
    for i in range(len(A_net)):
        polys.append((A_net[i], b_net[i], np.nan))
        kinds.append("all")
    A, b, vol = stack(polys)
    res = polytope_volumes(A, b, jax.random.key(0), **CFG)
    return res, np.array(kinds), vol


@pytest.mark.parametrize("kind", ["box", "simplex", "cross", "cut_cube", "qhull"])
def test_volumes_against_oracles(batch, kind):
    res, kinds, vol = batch
    sel = kinds == kind
    assert np.all(res.status[sel] == OK)
    z = (res.volume[sel] - vol[sel]) / res.stderr[sel]
    assert np.all(np.abs(z) < 3.5), z  # 3 standard errors (3.5: a few dozen checks in the batch)
    assert np.all(res.log_stderr[sel] < 0.2)


def test_regions_of_a_box_sum_to_its_volume(batch):
    res, kinds, _ = batch
    sel = kinds == "all"
    assert sel.sum() >= 10
    ok = res.status[sel] == OK
    assert np.all(ok | (res.status[sel] == EMPTY))
    total = res.volume[sel].sum()
    se = math.sqrt(np.sum(res.stderr[sel] ** 2))
    assert abs(total - 8.0) < 3 * se, (total, se)


def test_region_volumes_matches_rows(batch):
    net = partax.mlp(jax.random.key(1), [D, 5, 5, 1], bias_std=0.3)  # 16 rows, 2 regions: one compilation
    pts = np.random.default_rng(1).uniform(-1, 1, (2, D)).astype(np.float32)
    A, b = halfspaces_batch(net, pts, domain=Box(-1.0, 1.0))
    r1 = region_volumes(net, pts, Box(-1.0, 1.0), 5, **CFG)
    r2 = polytope_volumes(A, b, 5, **CFG)
    np.testing.assert_array_equal(r1.volume, r2.volume)
    truth = [qhull_volume(A[i], b[i])[0] for i in range(2)]
    assert np.all(np.abs(r1.volume - truth) < 4 * r1.stderr)


def test_fixed_key_and_batching_invariance():
    rng = np.random.default_rng(3)
    A, b, _ = stack([simplex(D, rng), box(D, rng)])
    r_all = polytope_volumes(A, b, jax.random.key(7), **CFG)
    r_one = polytope_volumes(A, b, jax.random.key(7), batch_size=1, **CFG)
    np.testing.assert_allclose(r_all.volume, r_one.volume, rtol=1e-12)
    r_again = polytope_volumes(A, b, jax.random.key(7), **CFG)
    np.testing.assert_array_equal(r_all.volume, r_again.volume)


def test_flags_never_a_silent_number():
    # unbounded (a quadrant): the walk runs off; no volume
    A = np.array([[[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]])
    res = polytope_volumes(A, np.zeros((1, 3)), 0, **CFG)
    assert res.status.tolist() == [FAILED] and np.isnan(res.volume[0])
    # empty interior (a flat box): volume 0, flagged EMPTY
    A = np.concatenate([np.eye(3), -np.eye(3)])[None]
    b = np.array([[1.0, 1.0, 0.0, 1.0, 1.0, 0.0]])
    res = polytope_volumes(A, b, 0, **CFG)
    assert res.status.tolist() == [EMPTY] and res.volume.tolist() == [0.0]
    # max_phases too small: NOT_CONVERGED, NaN
    rng = np.random.default_rng(0)
    A, b, _ = stack([simplex(D, rng)])
    res = polytope_volumes(A, b, 0, max_phases=1, **CFG)
    assert res.status.tolist() == [1] and np.isnan(res.volume[0]) and np.isnan(res.stderr[0])
    # a walk that has not mixed (here: a threshold no finite sample meets): NOT_ROUND, NaN
    res = polytope_volumes(A, b, 0, max_anisotropy=1.0 + 1e-9, **CFG)
    assert res.status.tolist() == [NOT_ROUND] and np.isnan(res.volume[0]) and res.anisotropy[0] > 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(A=np.ones((2, 3)), b=np.ones(2)), "A: expected"),
    (dict(A=np.ones((1, 2, 3)), b=np.ones((1, 3))), "b: expected"),
    (dict(A=np.full((1, 2, 3), np.nan), b=np.ones((1, 2))), "finite"),
    (dict(chains=1), "chains"),
    (dict(steps=0), "steps"),
    (dict(steps=10, burn_in=10), "burn_in"),
    (dict(ratio=1.0), "ratio"),
    (dict(max_phases=0), "max_phases"),
    (dict(center=np.full((1, 3), 5.0)), "center"),
    (dict(center=np.zeros((2, 3))), "center"),
    (dict(key="seed"), "key"),
])
def test_bad_input(kwargs, match):
    A = np.concatenate([np.eye(3), -np.eye(3)])[None]
    args = dict(A=A, b=np.ones((1, 6)), key=0)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        polytope_volumes(args.pop("A"), args.pop("b"), args.pop("key"), **args)


def test_region_volumes_needs_a_bounded_box():
    net = partax.mlp(jax.random.key(0), [3, 4, 1])
    x = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match="domain: a density needs a bounded"):
        region_volumes(net, x, None, 0)
    with pytest.raises(TypeError, match="domain: expected a partax.Box"):
        region_volumes(net, x, (-1, 1), 0)
    with pytest.raises(ValueError, match="domain: a Box of dimension 2"):
        region_volumes(net, x, Box([-1, -1], [1, 1]), 0)
    # the box lives in the scope's space: 4 latent dimensions for the suffix at layer 2
    net2 = partax.mlp(jax.random.key(0), [3, 4, 4, 1], bias_std=0.3)
    with pytest.raises(ValueError, match="domain: a Box of dimension 3 for data of dimension 4"):
        region_volumes(net2, x, Box([0, 0, 0], [1, 1, 1]), 0, scope="suffix", layer=2)


# --- slow: dimensions 2..12 and the honesty of the errors --------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 4, 6, 8, 10, 12])
def test_closed_forms_and_coverage(d):
    """Every shape, 16 independent repeats each (one batch): each estimate within 4 standard
    errors, and the z-scores look standard (mean near 0, about 95 % within 2)."""
    rng = np.random.default_rng(d)
    polys, kinds = [], []
    for name, f in SHAPES.items():
        if name == "cross" and d > 8:
            continue
        p = f(d, rng)
        polys += [p] * 16
        kinds += [name] * 16
    A, b, vol = stack(polys)
    res = polytope_volumes(A, b, jax.random.key(d))
    assert np.all(res.status == OK)
    z = np.log(res.volume / vol) / res.log_stderr
    assert np.all(np.abs(z) < 4.5), z
    kinds = np.array(kinds)
    for name in set(kinds):
        zk = z[kinds == name]
        assert abs(zk.mean()) < 1.0, (name, zk.mean())
    assert np.mean(np.abs(z) < 2) > 0.8, np.mean(np.abs(z) < 2)


@pytest.mark.slow
@pytest.mark.parametrize("d", [3, 4, 5, 6])
def test_net_regions_against_qhull(d):
    polys = net_regions(d, d, 8, min_radius=0.02)
    A, b, vol = stack(polys)
    res = polytope_volumes(A, b, jax.random.key(d))
    assert np.all(res.status == OK)
    z = (res.volume - vol) / res.stderr
    assert np.all(np.abs(z) < 3.5), z


@pytest.mark.slow
def test_high_dimension_cube_is_rounded_and_simplex_flagged():
    """48-D cube: the default rounding (``2 d^2`` steps a round) keeps it round, and its estimates
    are within 3 standard errors of ``2^48``; a 64-D simplex, far from round, stays flagged
    NOT_ROUND (its estimate would be 4 standard errors low: see "High dimension")."""
    from partax.geometry.hit_and_run import default_rounding_steps

    assert default_rounding_steps(48) == 4608 and default_rounding_steps(16) == 512
    d = 48
    A = np.concatenate([np.eye(d), -np.eye(d)])[None].repeat(2, 0)
    res = polytope_volumes(A, np.ones((2, 2 * d)), jax.random.key(0))
    assert np.all(res.status == OK) and np.all(res.anisotropy < 2.5), res
    z = (res.log_volume - d * math.log(2)) / res.log_stderr
    assert np.all(np.abs(z) < 3), z
    d = 64
    A = np.concatenate([-np.eye(d), np.ones((1, d))])[None].repeat(2, 0)
    b = np.concatenate([np.zeros(d), [1.0]])[None].repeat(2, 0)
    res = polytope_volumes(A, b, jax.random.key(0))
    assert np.all(res.status == NOT_ROUND) and np.all(np.isnan(res.volume))


@pytest.mark.slow  # kept out of the default run (its ten minutes)
def test_a_batch_of_eight_64d_polytopes_finishes():
    """Eight 64-D cubes in one batch, run in a subprocess with a time limit: the rounding's
    LAPACK calls (eigenvalues, Cholesky, triangular solve) must run one after another. Run at
    once, two batched calls took both threads of XLA:CPU's pool on a 2-core machine, each
    waiting for its own batch's slices, and the walk never returned. The subprocess is pinned to
    two CPUs (XLA sizes its pool by the CPUs it may use), so a larger machine tests the same."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import jax, numpy as np
        from partax.geometry.hit_and_run import OK, polytope_volumes
        d = 64
        A = np.concatenate([np.eye(d), -np.eye(d)])[None].repeat(8, 0)
        b = np.ones((8, 2 * d))
        r = polytope_volumes(A, b, jax.random.key(0), center=np.zeros((8, d)), steps=8,
                             rounding_rounds=3, rounding_steps=64, max_phases=2, batch_size=8)
        print("ran", r.status.tolist())
    """)
    cpus = sorted(os.sched_getaffinity(0))[:2] if hasattr(os, "sched_getaffinity") else None
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, preexec_fn=pin)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ran ")
