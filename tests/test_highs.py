"""HiGHS's process-wide thread scheduler: a solve that asked for some thread count must not make
later solves that ask for another (or for none) fail.

HiGHS builds one scheduler per process at the first run and rejects, at ``run()``, an instance whose
``threads`` option differs from it; before ``partax.highs`` every geometry LP after a
``preactivation_bounds(..., threads=2)`` call came back FAILED. The oracle is the closed form of
the Chebyshev radius of a box (half its smallest side).
"""

import numpy as np
import pytest

import partax
from partax.geometry import Box, lp
from partax.highs import quiet_highs
from partax.stability import preactivation_bounds


def _boxes(B: int, d: int, seed: int):
    """``B`` random axis-aligned boxes as ``A x <= b``, and their Chebyshev radii in closed form."""
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-2, 0, (B, d))
    hi = lo + rng.uniform(0.1, 2, (B, d))
    A = np.concatenate([np.eye(d), -np.eye(d)])[None].repeat(B, 0)
    b = np.concatenate([hi, -lo], axis=1)
    return A, b, (hi - lo).min(axis=1) / 2


@pytest.mark.parametrize("first, then", [(2, None), (1, 2), (None, 1), (2, 1)])
def test_thread_counts_do_not_break_later_solves(first, then):
    net = partax.mlp(__import__("jax").random.key(0), [3, 8, 8, 2], bias_std=0.2)
    box = Box(-np.ones(3), np.ones(3))
    A, b, radii = _boxes(6, 3, seed=0)
    for threads in (first, then):
        # a real LP run (it initialises the scheduler), asking for `threads`
        bounds = preactivation_bounds(net, box, "lp", threads=threads)
        assert all(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) for lo, hi in bounds)
        res = lp.chebyshev(A, b, solver="highs")
        assert np.all(res.status == 0), res.status
        np.testing.assert_allclose(res.radii, radii, rtol=1e-9)


def test_quiet_highs_sets_the_thread_option_only_when_asked():
    assert quiet_highs().getOptionValue("threads")[1] == 0
    assert quiet_highs(threads=2).getOptionValue("threads")[1] == 2
