"""A failed step of the demo is loud: the other steps' files are written, the report names the
failed step, run_demo raises DemoError and `partax demo` exits 1."""

import numpy as np
import pytest

import partax.geometry
from partax import demo
from partax.cli import main


def test_a_failed_region_report_fails_the_demo_after_writing_the_rest(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("forced LP failure")

    monkeypatch.setattr(partax.geometry, "region_report", broken)
    out = tmp_path / "demo"
    (out).mkdir()
    np.savez(out / "regions.npz", keys=np.zeros(1))  # a previous run's file must not survive
    with pytest.raises(demo.DemoError, match="step 'region_report' failed: RuntimeError: forced LP failure") as info:
        demo.run_demo(out, quick=True, epochs=20, progress=False)
    e = info.value
    assert e.failed == {"region_report": "RuntimeError: forced LP failure"}
    assert e.summary["failed"] == e.failed and "regions" not in e.summary["files"]
    for name in ("trace.jsonl", "infoplane.png", "report.md", "net.npz", "history.npz"):
        assert (out / name).exists(), name
    assert not (out / "regions.npz").exists()
    report = (out / "report.md").read_text()
    assert "## Failed steps" in report and "forced LP failure" in report
    assert e.summary["box"]["regions"]  # the box partition itself went through


def test_partax_demo_exits_1_naming_the_failed_step(tmp_path, monkeypatch, capsys):
    def failing(**kwargs):
        raise demo.DemoError({"figures": "OSError: disk full"}, summary={})

    monkeypatch.setattr(demo, "run_demo", failing)
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "step 'figures' failed: OSError: disk full" in err


def test_bad_epochs_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="epochs: expected a positive int"):
        demo.run_demo(tmp_path / "d", epochs=0, progress=False)
    assert not (tmp_path / "d").exists()
