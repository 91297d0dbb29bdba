"""The partax command: outputs on disk agree with the library; bad input exits 2 with a named error."""

import json

import jax
import numpy as np
import pytest

import partax
from partax.cli import main


def test_partition_info_and_bounds(tmp_path, capsys):
    net = partax.mlp(jax.random.key(0), [3, 12, 9, 2], bias_std=0.3)
    x = np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 2, 3000)
    partax.save_net(net, tmp_path / "net.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "run"
    assert main(["partition", "--net", str(tmp_path / "net.npz"), "--data", str(tmp_path / "x.npy"),
                 "--labels", str(tmp_path / "y.npy"), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    p = partax.partition(net, x, y, progress=False)
    assert summary["regions"]["prefix"] == p.num_regions("prefix").tolist()
    assert partax.load_partition(out / "partition.npz").table("suffix", 1) == p.table("suffix", 1)
    printed = capsys.readouterr().out
    assert "regions per hidden layer" in printed and f"{p.num_regions('prefix')[-1]:,}" in printed

    assert main(["info", str(out / "partition.npz"), "--out", str(out)]) == 0
    info = json.loads((out / "info.json").read_text())
    assert np.allclose(info["prefix"]["I_XT"], partax.info.information_plane(p, "prefix")["I_XT"])

    assert main(["bounds", "4", "6", "4"]) == 0
    assert "817" in capsys.readouterr().out


def test_sampled_partition(tmp_path):
    assert main(["partition", "--widths", "4,8,8,2", "--sample", "gaussian", "--n", "5000", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["total"] == 5000 and len(summary["regions"]["layer"]) == 2


@pytest.mark.parametrize(
    "argv,message",
    [
        (["partition", "--net", "NOPE.npz", "--sample", "uniform", "--out", "o"], "NOPE.npz"),
        (["partition", "--net", "{x}", "--sample", "uniform", "--out", "o"], "not a partax net"),
        (["info", "{x}"], "not a partax partition"),
    ],
)
def test_bad_input_exits_2_with_a_named_error(tmp_path, capsys, argv, message):
    np.save(tmp_path / "x.npy", np.zeros((3, 3), np.float32))
    argv = [a.replace("{x}", str(tmp_path / "x.npy")) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_errors_of_partax_checks_exit_2_others_exit_1_with_a_traceback(tmp_path, monkeypatch, capsys):
    """A ValueError raised by partax's own validation is one 'error:' line and exit 2; an
    exception from elsewhere (a bug, a library) keeps its traceback and exits 1."""
    import partax.cli as cli

    def partax_check(args):
        partax.tables.check_labels(np.array([0, -1]), 2)  # a validation inside partax

    def library_failure(args):
        np.linalg.inv(np.zeros((2, 2)))  # raises LinAlgError inside NumPy

    def numpy_value_error(args):
        np.zeros(3).reshape(7)  # a ValueError raised inside NumPy, not by a partax check

    for run, code in ((partax_check, 2), (library_failure, 1), (numpy_value_error, 1)):
        monkeypatch.setattr(cli.bounds, "run", run)
        assert main(["bounds", "4", "6"]) == code
        err = capsys.readouterr().err
        if code == 2:
            assert err.strip() == "partax bounds: error: labels: expected labels >= 0, got -1"
        else:
            assert "Traceback (most recent call last)" in err


def test_missing_file_is_a_named_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
