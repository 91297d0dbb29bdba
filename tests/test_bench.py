"""The bench harness: its fields are consistent, its table renders, bad names are refused.

Timings themselves are not asserted (performance lives in ``partax bench``, not in tests).
"""

import pytest

from partax import bench


@pytest.fixture(scope="module")
def entry():
    return bench.partition_workload("tiny", [4, 8, 8, 2], 2**12, reps=1, numpy_max=2**11)


def test_partition_workload_fields(entry):
    rates = ["partition_inputs_per_s", "forward_inputs_per_s", "numpy_inputs_per_s", "numpy_matmul_inputs_per_s"]
    assert all(entry[k] > 0 for k in rates)
    assert entry["inputs"] == 2**12 and entry["numpy_inputs"] == 2**11
    assert entry["ratio_vs_forward"] == pytest.approx(entry["partition_inputs_per_s"] / entry["forward_inputs_per_s"])
    assert entry["ratio_vs_numpy"] == pytest.approx(entry["partition_inputs_per_s"] / entry["numpy_inputs_per_s"])
    floor = max(entry["forward_inputs_per_s"], entry["numpy_matmul_inputs_per_s"])
    assert entry["ratio_vs_numpy_bound"] == pytest.approx(floor / entry["numpy_inputs_per_s"])
    # FLOP rates: 2 * inputs * sum(d_in * d_out) over the layers each one runs
    assert entry["forward_gflops"] == pytest.approx(2 * (4 * 8 + 8 * 8 + 8 * 2) * entry["forward_inputs_per_s"] / 1e9)
    assert entry["numpy_matmul_gflops"] == pytest.approx(2 * (4 * 8 + 8 * 8) * entry["numpy_matmul_inputs_per_s"] / 1e9)
    assert entry["regions_prefix_last"] >= 1


def test_kernel_decomposition_is_measured(entry):
    """The kernel alone, its near-boundary test and each path's cost over it are consistent."""
    assert entry["kernel_inputs_per_s"] > 0
    assert entry["kernel_ratio_vs_forward"] == pytest.approx(
        entry["kernel_inputs_per_s"] / entry["forward_inputs_per_s"])
    for path in ("host", "device"):
        assert entry[f"{path}_cost_over_kernel"] == pytest.approx(
            entry["kernel_inputs_per_s"] / entry[f"{path}_inputs_per_s"] - 1.0)
    assert entry["near_test_cost"] > -1.0


def test_markdown_table(entry):
    result = {"date": "2026-01-01", "device": None, "jax_version": "0", "host": "h", "quick": True, "workloads": [entry]}
    md = bench.to_markdown(result)
    row = [line for line in md.splitlines() if line.startswith("| tiny 4-8-8-2 |")]
    assert len(row) == 1
    header = [line for line in md.splitlines() if line.startswith("| workload |")][0]
    assert row[0].count("|") == header.count("|")
    paths = [line for line in md.splitlines() if line.startswith("| tiny |")]
    header = [line for line in md.splitlines() if line.startswith("| workload | auto |")][0]
    assert len(paths) == 1 and paths[0].count("|") == header.count("|") and "–" not in paths[0]


def test_unknown_workload():
    with pytest.raises(ValueError, match="only"):
        bench.run(only=["nope"], isolate=False)


def test_a_crashing_workload_fails_the_command_after_writing_the_others(tmp_path, monkeypatch, capsys):
    import json

    from partax.cli import main

    def crash(quick):
        raise RuntimeError("forced failure")

    monkeypatch.setitem(bench.EXTRA_WORKLOADS, "crash", crash)
    monkeypatch.setitem(bench.EXTRA_WORKLOADS, "ok", lambda quick: {"value": 1})
    real_run = bench.run
    monkeypatch.setattr(bench, "run", lambda **kw: real_run(**{**kw, "isolate": False, "log": None}))
    assert main(["bench", "--only", "crash", "ok", "--out", str(tmp_path)]) == 1
    assert "workloads failed: crash" in capsys.readouterr().err
    written = json.loads((tmp_path / "bench.json").read_text())
    by_name = {w["name"]: w for w in written["workloads"]}
    assert by_name["crash"]["error"] == "RuntimeError: forced failure"
    assert by_name["ok"]["value"] == 1 and "error" not in by_name["ok"]


def test_collision_check_cost_is_measured(entry):
    assert entry["unchecked_inputs_per_s"] > 0
    assert entry["collision_check_cost"] == pytest.approx(
        entry["unchecked_inputs_per_s"] / entry["partition_inputs_per_s"] - 1.0)


def test_isolated_run_of_one_workload(tmp_path):
    """``run`` starts ``python -m partax.bench NAME`` per workload and collects its JSON line."""
    import json

    lines = []
    result = bench.run(quick=True, only=["lp"], out=str(tmp_path), log=lines.append)
    (w,) = result["workloads"]
    assert w["name"] == "chebyshev_lp" and "error" not in w and "device" not in w
    assert result["device"]["platform"] == "cpu" and result["device"]["count"] >= 1
    (size,) = w["sizes"]
    assert (size["d"], size["m"], size["num"]) == (10, 60, 200)
    assert size["ipm_failures"] == 0 and size["highs_failures"] == 0
    assert size["max_radius_diff"] < 1e-6  # the interior point agrees with HiGHS
    assert json.loads((tmp_path / "bench.json").read_text())["workloads"][0]["sizes"] == w["sizes"]
    assert "## chebyshev_lp" in (tmp_path / "bench.md").read_text()
    assert len(lines) == 1 and lines[0].startswith("  lp: done in ")


def test_the_workload_runner_refuses_an_unknown_name():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "partax.bench", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "invalid choice: 'nope'" in done.stderr.strip().splitlines()[-1]
    with pytest.raises(ValueError, match="name: unknown workload 'nope'"):
        bench.run_workload("nope")


def test_highs_chebyshev_is_the_highs_backend_on_the_random_polytopes():
    import numpy as np

    from partax.bench.lp import highs_chebyshev, random_polytopes
    from partax.geometry import lp

    A, b = random_polytopes(30, 4, 12, seed=3)
    centers, radii, status = highs_chebyshev(A, b, threads=1)
    ref = lp.chebyshev(A, b, solver="highs")
    assert np.all(status == 0)
    np.testing.assert_allclose(radii, ref.radii, rtol=1e-9, atol=1e-12)
    # closed-form bounds: the ball B(0, min_i r_i) fits (each halfspace is tangent to a sphere of
    # radius r_i around 0), and no ball wider than the box [-2, 2]^d does
    assert np.all(radii >= b[:, :12].min(axis=1) - 1e-7) and np.all(radii <= 2.0 + 1e-9)
    assert np.all(A[:, :12] @ np.zeros(4) < b[:, :12])  # the origin is interior


@pytest.mark.parametrize("run_dir", ["benchmarks/2026-11-20-cpu", "benchmarks/2026-11-21-cpu"])
def test_committed_runs_render_as_committed(run_dir):
    """The other entries' sections of a committed ``bench.md`` are what ``to_markdown`` renders from
    its ``bench.json`` (the partition table's columns changed since, so it is left out)."""
    import json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / run_dir
    result = json.loads((root / "bench.json").read_text())
    result["workloads"] = [w for w in result["workloads"] if "partition_inputs_per_s" not in w]
    committed = (root / "bench.md").read_text()
    rendered = bench.to_markdown(result)
    assert rendered[rendered.index("\n## "):] == committed[committed.index("\n## "):]
