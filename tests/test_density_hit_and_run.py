"""volumes="hit_and_run": per-occupied-region randomized volumes against exact enumeration."""

import jax
import numpy as np
import pytest

import partax
from partax import density
from partax.geometry import Box


@pytest.fixture(scope="module")
def case():
    net = partax.mlp(jax.random.key(1), [3, 6, 6, 1], bias_std=0.3)
    x = np.random.default_rng(0).uniform(-1, 1, (400, 3))
    return net, x, density.estimate(net, x, Box(-1, 1), volumes="exact")


def test_volumes_agree_with_exact_enumeration(case):
    net, x, exact = case
    h = density.estimate(net, x, Box(-1, 1), volumes="hit_and_run", key=3)
    assert h.volume_method == "hit_and_run" and not h.resolved[-1] and h.resolved[:-1].all()
    truth = dict(zip(exact.keys.tolist(), exact.volumes))
    occupied = {k for k, c in zip(exact.keys.tolist(), exact.counts) if c > 0}
    assert set(h.keys[h.resolved].tolist()) == occupied  # every occupied region, nothing else
    z = np.array([(truth[k] - v) / s for k, v, s in zip(h.keys[h.resolved].tolist(), h.volumes[h.resolved],
                                                         h.volume_stderr[h.resolved])])
    assert np.abs(z).max() < 5 and abs(z.mean()) < 0.5  # errors honest, no large bias
    # the residual is the rest of the box: the unoccupied regions' exact volume, within its error
    unocc = sum(v for k, v in truth.items() if k not in occupied)
    assert abs(h.volumes[-1] - unocc) < 5 * h.volume_stderr[-1] + 1e-12
    assert abs(h.volumes.sum() - 8.0) < 1e-9
    assert abs(np.exp(h.log_densities) @ h.volumes - 1) < 1e-12
    assert h.counts.sum() == len(x) and h.counts[-1] == 0
    # each region's count (the partition's table) is the exact enumeration's (points looked up by key)
    exact_counts = dict(zip(exact.keys.tolist(), exact.counts.tolist()))
    assert h.counts[h.resolved].tolist() == [exact_counts[k] for k in h.keys[h.resolved].tolist()]
    assert (h.volume_status == 0).all() and "pooled_flagged=0" in repr(h)


def test_flagged_regions_go_to_the_residual(case):
    net, x, _ = case
    # one phase reaches the inner ball of few regions: the others come back NOT_CONVERGED and are pooled
    h = density.estimate(net, x, Box(-1, 1), volumes="hit_and_run", hit_and_run_options={"max_phases": 1})
    flagged = int((h.volume_status != 0).sum())
    assert flagged > len(h.volume_status) // 2 and f"pooled_flagged={flagged}" in repr(h)
    assert len(h.keys) == len(h.volume_status) - flagged + 1  # the OK ones and the residual bin
    exact_keys = partax.region_ids(net, x.astype(np.float32), "prefix")[:, -1]
    in_resolved = np.isin(exact_keys, h.keys[h.resolved])
    assert h.counts[-1] == int((~in_resolved).sum()) > 0  # points of flagged regions count into the residual
    assert abs(h.volumes.sum() - 8.0) < 1e-9


def test_bad_options(case):
    net, x, _ = case
    with pytest.raises(ValueError, match="hit_and_run_options"):
        density.estimate(net, x, Box(-1, 1), volumes="mc", hit_and_run_options={"chains": 8})
    with pytest.raises(ValueError, match="hit_and_run_options"):
        density.estimate(net, x, Box(-1, 1), volumes="hit_and_run", hit_and_run_options=[("chains", 8)])
    with pytest.raises(TypeError):
        density.estimate(net, x, Box(-1, 1), volumes="hit_and_run", hit_and_run_options={"no_such_option": 1})


def test_latent_space_passes_the_options_on(case):
    net, x, _ = case
    # the options reach the latent space's estimate: one phase leaves most of its regions flagged
    h = density.estimate(net, x, Box(-1, 1), scope="suffix", layer=2, volumes="hit_and_run",
                         hit_and_run_options={"max_phases": 1})
    assert h.space == 1 and h.volume_method == "hit_and_run"
    assert (h.volume_status != 0).sum() > len(h.volume_status) // 2
