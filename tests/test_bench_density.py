"""Smoke test of the density bench workload (partax.bench.density), at a tiny size."""

import math

import pytest

from partax.bench import density as bd


@pytest.mark.slow  # partax/bench/density.py's docstring example runs the same workload by default
def test_bench_density_tiny():
    r = bd.bench_density(widths=(8, 8, 1), inputs=2**12, reference=2**15, hr_regions=4, reps=1, chains=16, steps=40)
    assert r["regions_hit"] > 0 and r["hr_regions"] > 0
    assert r["hr_ok"] == r["hr_regions"]
    for k in ("log_prob_ratio", "log_prob_ratio_prefix", "mc_median_rel_stderr", "hr_median_rel_stderr",
              "hr_median_rel_error_vs_mc", "hr_within_3se"):
        assert math.isfinite(r[k]) and r[k] >= 0, k
    # the hit-and-run volumes of the most-hit regions agree with their Monte Carlo volumes
    assert r["hr_within_3se"] >= 0.5
    w = {"name": bd.NAME, "sizes": [r], "digits": {"regions": 1, "occupied": [3], "num_regions": 10, "seconds": 1.0,
                                                    "log_volume": [-30.0], "rel_stderr": [0.3], "phases": [100],
                                                    "status": [0], "accuracy": 1.0}}
    text = "\n".join(bd.markdown(w))
    assert "8-8-1" in text and "64-D digits" in text
    assert "log_prob at" in bd.readme_text(w)
