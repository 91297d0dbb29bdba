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


def test_markdown_table(entry):
    result = {"date": "2026-01-01", "device": None, "jax_version": "0", "host": "h", "quick": True, "workloads": [entry]}
    md = bench.to_markdown(result)
    row = [line for line in md.splitlines() if line.startswith("| tiny 4-8-8-2 |")]
    assert len(row) == 1
    header = [line for line in md.splitlines() if line.startswith("| workload |")][0]
    assert row[0].count("|") == header.count("|")


def test_unknown_workload():
    with pytest.raises(ValueError, match="only"):
        bench.run(only=["nope"], isolate=False, progress=False)


def test_a_crashing_workload_fails_the_command_after_writing_the_others(tmp_path, monkeypatch, capsys):
    import json

    from partax.cli import main

    def crash(quick):
        raise RuntimeError("forced failure")

    monkeypatch.setitem(bench._EXTRA, "crash", crash)
    monkeypatch.setitem(bench._EXTRA, "ok", lambda quick: {"value": 1})
    real_run = bench.run
    monkeypatch.setattr(bench, "run", lambda **kw: real_run(**{**kw, "isolate": False, "progress": False}))
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
