"""experiments/density_toys.py: its samplers have the entropies it claims, and a tiny run works
end to end (rows for every estimator, the tables, the figure)."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def toys():
    spec = importlib.util.spec_from_file_location("density_toys", os.path.join(HERE, "..", "experiments", "density_toys.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_checkerboard_is_uniform_on_its_eight_squares(toys):
    x = toys.checkerboard(80_000, np.random.default_rng(0))
    assert np.all(np.abs(x) <= 4)
    sq = (np.floor(x[:, 0] / 2) + 2).astype(int) * 4 + (np.floor(x[:, 1] / 2) + 2).astype(int)
    freq = np.bincount(sq, minlength=16) / len(x)
    occupied = ((np.arange(16) // 4 + np.arange(16) % 4) % 2) == 0
    assert np.all(freq[~occupied] == 0)
    assert np.max(np.abs(freq[occupied] - 1 / 8)) < 5 * math.sqrt(1 / 8 * 7 / 8 / len(x))
    lab = toys.checkerboard_labels(x)
    assert sorted(np.unique(lab)) == list(range(8))  # one class per occupied square


def test_entropies_against_closed_forms(toys):
    # the truncated Gaussian's entropy is (d/2) ln(2 pi e) to 1e-5
    for d in (2, 5, 8):
        assert abs(toys.gauss_entropy(d) - 0.5 * d * math.log(2 * math.pi * math.e)) < 1e-4
    # the 8-Gaussian mixture: between H(X | Z) + ln 8 minus the overlap and H(X | Z) + ln 8
    h, se = toys.eight_gaussians_entropy(200_000, seed=1)
    upper = math.log(8) + math.log(2 * math.pi * math.e * toys.EIGHT_STD**2)
    assert upper - 0.02 < h < upper + 3 * se and se < 0.003
    # the mixture log density integrates to 1 on the box (independent Monte Carlo)
    u = np.random.default_rng(2).uniform(-5, 5, (400_000, 2))
    assert abs(np.mean(np.exp(toys.eight_gaussians_logpdf(u))) * 100 - 1) < 0.02


@pytest.mark.parametrize("toy_names,estimators,figure", [
    (["checkerboard"], ("random", "trained", "grid", "kde", "tree", "knn"), False),
    pytest.param(["gauss3"], ("random", "grid", "kde", "tree", "knn"), True, marks=pytest.mark.slow),
])
def test_tiny_run_end_to_end(toys, tmp_path, toy_names, estimators, figure):
    rows, truths, accs = toys.run(toy_names, [300], [0], 400, 20_000, 3, log=lambda s: None, train_n=300, epochs=1)
    assert {(r["toy"], r["name"]) for r in rows} == {(t, n) for t in toy_names for n in estimators}
    for r in rows:
        if r["name"] != "knn":
            assert r["test_nll"] is not None and r["nll_minus_h"] > -3 * r["test_nll_stderr"]  # no NLL below H
    agg = toys.aggregate(rows)
    md = toys.markdown(agg, truths, toy_names, [300])
    assert f"| {toy_names[0]} | {truths[toy_names[0]]:.4f} | 3e+02 |" in md and "|Ĥ − H|" in md
    json.dumps(agg)  # JSON-ready
    if figure:
        toys.figure([tmp_path / "f.png"], 300, res=30, train_n=300, epochs=1, tree_folds=3)
        assert (tmp_path / "f.png").stat().st_size > 20_000
