"""partax.density.fit: a net trained so that its partition is a good histogram.

Oracles: held-out log-likelihood of fresh samples against the same estimator on the initial net
(before training; :class:`FitHistory.initial_net`), the box volume, independent NumPy Monte Carlo
of the density's integral, and a second run with the same seed (bit-identical).
"""

import math

import numpy as np
import pytest

from partax import density
from partax.density_fit import data_init
from partax.geometry import Box


def blobs(n, seed):
    """Four tight Gaussians on [-2, 2]^2 (a density a random partition bins badly)."""
    rng = np.random.default_rng(seed)
    c = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float64)
    x = c[rng.integers(0, 4, n)] + 0.15 * rng.normal(size=(n, 2))
    return np.clip(x, -2, 2).astype(np.float32).astype(np.float64)


KW = dict(widths=(8,), steps=60, eval_every=20, batch_size=512, num_reference=1 << 13, learning_rate=1e-2)


@pytest.fixture(scope="module")
def fitted():
    x = blobs(3000, 0)
    return x, density.fit(x, Box(-2, 2), key=4, return_history=True, **KW)


def test_fit_improves_heldout_nll_over_the_initial_net(fitted):
    x, (dens, hist) = fitted
    xt = blobs(5000, 1)
    init = density.estimate(hist.initial_net, x, Box(-2, 2))
    got, base = density.heldout_loglik(dens, xt), density.heldout_loglik(init, xt)
    assert got.mean > base.mean + 3 * math.hypot(got.stderr, base.stderr)
    assert hist.steps[0] == 0 and hist.steps[-1] == 60 and hist.best_step > 0
    assert np.all(np.isfinite(hist.soft_loglik)) and np.all(np.isfinite(hist.hard_loglik))


def test_fit_is_a_valid_density(fitted):
    _, (dens, _) = fitted
    assert dens.volume_method == "exact" and abs(dens.volumes.sum() - 16.0) < 1e-9
    assert abs(np.exp(dens.log_densities) @ dens.volumes - 1) < 1e-12
    u = np.random.default_rng(2).uniform(-2, 2, (50_000, 2))
    p = np.exp(dens.log_prob(u))
    assert abs(16 * p.mean() - 1) < 4 * 16 * p.std() / math.sqrt(len(p)) + 1e-3
    assert dens.counts.sum() == 3000 and np.isfinite(dens.entropy())


def test_fit_is_deterministic_given_the_seed(fitted):
    x, (dens, hist) = fitted
    again, h2 = density.fit(x, Box(-2, 2), key=4, return_history=True, **KW)
    np.testing.assert_array_equal(again.keys, dens.keys)
    np.testing.assert_array_equal(again.counts, dens.counts)
    np.testing.assert_array_equal(h2.hard_loglik, hist.hard_loglik)


def test_data_init_puts_hyperplanes_through_data():
    import jax
    import partax

    x = blobs(500, 3)
    net = data_init(partax.mlp(jax.random.key(0), [2, 6, 5, 1]), x, 0)
    for z in net.preactivations(x):
        assert np.all(np.min(np.abs(np.asarray(z)), axis=0) < 1e-5)


def test_fit_bad_input():
    x = blobs(100, 0)
    with pytest.raises(ValueError, match="outside"):
        density.fit(x, Box(-1, 1), steps=0)
    with pytest.raises(ValueError, match="domain: a density needs a bounded"):  # as estimate's
        density.fit(x, None, steps=0)
    with pytest.raises(ValueError, match="x"):
        density.fit(x[:2], Box(-2, 2), steps=0)
    with pytest.raises(ValueError, match="tau"):
        density.fit(x, Box(-2, 2), steps=0, tau_start=0.01, tau_end=0.1)
    with pytest.raises(ValueError, match="smoothing"):
        density.fit(x, Box(-2, 2), steps=0, smoothing=0)
    with pytest.raises(ValueError, match="steps"):
        density.fit(x, Box(-2, 2), steps=-1)
    with pytest.raises(ValueError, match="widths"):
        density.fit(x, Box(-2, 2), widths=(), steps=0)
    with pytest.raises(ValueError, match="learning_rate_end"):
        density.fit(x, Box(-2, 2), steps=0, learning_rate_end=0.0)


def test_a_diverged_fit_is_an_error_not_the_best_net_before_it():
    x = blobs(2000, 1)
    with pytest.raises(FloatingPointError, match="diverged"):
        density.fit(x, Box(-2, 2), key=0, **{**KW, "learning_rate": 3e38, "steps": 20, "eval_every": 10})


def test_compare_refuses_nan_log_densities():
    """A broken estimator (NaN log-densities) is an error, never reported as an infinite NLL."""
    from partax.density_baselines import _nll

    assert _nll(np.array([-1.0, -np.inf]))[0] == np.inf  # density 0: an infinite NLL, by definition
    with pytest.raises(FloatingPointError, match="NaN"):
        _nll(np.array([-1.0, np.nan]))
