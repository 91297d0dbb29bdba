"""``partax density`` end to end: its files agree with the library and with a NumPy histogram
oracle; bad input exits 2 with one named error line."""

import json
import math

import jax
import numpy as np
import pytest

import partax
from partax import density
from partax.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("density_cli")
    net = partax.mlp(jax.random.key(0), [2, 10, 10, 1], bias_std=0.5)
    partax.save_net(net, d / "net.npz")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.5, (1000, 2)).clip(-2, 2)
    z = rng.normal(0, 0.5, (600, 2)).clip(-2, 2)
    np.save(d / "x.npy", x)
    np.save(d / "z.npy", z)
    np.save(d / "x3.npy", rng.normal(size=(50, 3)))
    np.save(d / "empty.npy", np.zeros((0, 2)))
    net3 = partax.mlp(jax.random.key(1), [3, 6, 1], bias_std=0.5)
    partax.save_net(net3, d / "net3.npz")
    np.save(d / "u3.npy", rng.uniform(-1, 1, (400, 3)))
    return d, net, x, z


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("baselines", ["grid,tree,knn", pytest.param("grid,kde,tree,knn", marks=pytest.mark.slow)])
def test_writes_the_librarys_density_and_baselines(files, tmp_path, capsys, baselines):
    d, net, x, z = files
    rc, out, err = _run(["density", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--box", "-2", "2",
                         "--test", str(d / "z.npy"), "--out", str(tmp_path), "--baselines", baselines, "--tree-folds", "5"], capsys)
    assert rc == 0, err
    assert "wrote" in out and (tmp_path / "density.png").stat().st_size > 10_000
    reg = np.load(tmp_path / "regions.npz")
    lib = density.estimate(net, x, partax.Box(-2, 2))
    assert np.array_equal(reg["keys"], lib.keys) and np.array_equal(reg["counts"], lib.counts)
    assert abs(reg["volumes"].sum() - 16.0) < 1e-9 and reg["counts"].sum() == 1000
    assert abs(np.exp(reg["log_densities"]) @ reg["volumes"] - 1) < 1e-12
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_train"] == 1000 and s["n_test"] == 600 and s["num_regions"] == lib.num_regions
    lp = lib.log_prob(z)
    assert s["test_nll"] == pytest.approx(-lp.mean(), abs=1e-12) and s["entropy"] == pytest.approx(lib.entropy())
    rows = {r["name"]: r for r in s["comparison"]["rows"]}
    assert list(rows) == ["partition"] + baselines.split(",")
    # the grid row against numpy.histogram2d (smoothing 0.5, as many bins as regions)
    per = int(round(math.sqrt(lib.num_regions)))
    e = np.linspace(-2, 2, per + 1)
    h, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[e, e])
    p = (h + 0.5) / (1000 + 0.5 * per * per) / (4.0 / per) ** 2
    ix = np.clip(np.searchsorted(e, z[:, 0], side="right") - 1, 0, per - 1)
    iy = np.clip(np.searchsorted(e, z[:, 1], side="right") - 1, 0, per - 1)
    assert rows["grid"]["bins"] == per * per
    assert rows["grid"]["test_nll"] == pytest.approx(-np.mean(np.log(p[ix, iy])), abs=1e-10)
    # every held-out NLL is finite and not far below the kNN entropy of the same data
    for name in set(rows) - {"knn"}:
        assert math.isfinite(rows[name]["test_nll"]) and rows[name]["test_nll"] > rows["knn"]["entropy"] - 0.2


def test_holdout_without_test_and_no_map_in_3d(files, tmp_path, capsys):
    d = files[0]
    rc, out, err = _run(["density", "--net", str(d / "net3.npz"), "--data", str(d / "u3.npy"), "--box", "-1", "1",
                         "--out", str(tmp_path), "--holdout", "0.25", "--baselines", "none"], capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n_train"] == 300 and s["n_test"] == 100 and "held out" in s["test"]
    assert s["volume_method"] == "exact" and not (tmp_path / "density.png").exists()
    assert abs(s["test_nll"] - math.log(8.0)) < 0.3  # uniform on [-1, 1]^3: H = ln 8


@pytest.mark.slow  # 9 s (the hit-and-run kernels' compilation); the library's hit-and-run densities are in the default run
def test_hit_and_run_volumes_agree_with_exact_ones(files, tmp_path, capsys):
    d = files[0]
    out = {}
    for method, extra in (("exact", []), ("hit_and_run", ["--chains", "32"])):
        rc, _, err = _run(["density", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--box", "-2", "2",
                           "--test", str(d / "z.npy"), "--out", str(tmp_path / method), "--baselines", "none",
                           "--volumes", method] + extra, capsys)
        assert rc == 0, err
        assert json.loads((tmp_path / method / "summary.json").read_text())["volume_method"] == method
        with np.load(tmp_path / method / "regions.npz") as f:
            out[method] = {k: f[k] for k in ("keys", "counts", "volumes", "volume_stderr")}
    exact, walk = out["exact"], out["hit_and_run"]
    common, ie, iw = np.intersect1d(exact["keys"], walk["keys"], return_indices=True)
    occupied = exact["counts"][ie] > 0
    assert occupied.sum() >= 5 and np.array_equal(exact["counts"][ie], walk["counts"][iw])
    # a randomized volume within 5 standard errors (or 20 %) of the enumeration's exact one (measured:
    # 87 occupied regions, at most 3.0 standard errors and 10 % off)
    ve, vw, se = exact["volumes"][ie][occupied], walk["volumes"][iw][occupied], walk["volume_stderr"][iw][occupied]
    assert np.all(np.abs(vw - ve) <= np.maximum(5 * se, 0.2 * ve)), np.c_[ve, vw, se]


def test_default_box_is_the_widened_bounding_box(files, tmp_path, capsys):
    d, _, x, z = files
    rc, _, err = _run(["density", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--test", str(d / "z.npy"),
                       "--out", str(tmp_path), "--baselines", "none"], capsys)
    assert rc == 0, err
    box = json.loads((tmp_path / "summary.json").read_text())["box"]
    both = np.concatenate([x, z])
    a, b = both.min(0), both.max(0)
    np.testing.assert_allclose(box["lo"], a - 0.05 * (b - a))
    np.testing.assert_allclose(box["hi"], b + 0.05 * (b - a))


def test_test_points_outside_error_or_minus_inf(files, tmp_path, capsys):
    d = files[0]
    argv = ["density", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--box", "-2", "2", "--test",
            str(d / "u3.npy"), "--out", str(tmp_path), "--baselines", "none"]
    z = np.random.default_rng(5).uniform(-2, 2, (50, 2))
    z[0] = [3.0, 0.0]
    np.save(tmp_path / "zo.npy", z)
    argv[argv.index(str(d / "u3.npy"))] = str(tmp_path / "zo.npy")
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and err.strip().count("\n") == 0 and "--test: 1 point(s) outside the box" in err
    rc, _, err = _run(argv + ["--outside", "zero"], capsys)
    assert rc == 0, err
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["test_points_outside"] == 1 and s["test_nll"] is None  # density 0: an infinite NLL


@pytest.mark.parametrize("change,match", [
    ({"--box": ["0", "inf"]}, "--box: expected finite bounds"),
    ({"--box": ["1", "-1"]}, "--box: expected LO < HI"),
    ({"--box": ["-1", "1"]}, "--data: "),  # training points outside the box
    ({"--data": "x3.npy"}, "--data: the net takes 2 inputs, the points have 3 columns"),
    ({"--data": "empty.npy"}, "--data: no points"),
    ({"--test": "x3.npy"}, "--test: the net takes 2 inputs"),
    ({"--data": "missing.npy"}, "--data: no such file"),
    ({"--baselines": "grid,histogram"}, "--baselines: expected a comma-separated subset"),
    ({"--chains": "16"}, "--chains: applies to --volumes hit_and_run only, got --volumes auto"),
])
def test_bad_input_exits_2_with_one_error_line(files, tmp_path, capsys, change, match):
    d = files[0]
    opts = {"--net": str(d / "net.npz"), "--data": "x.npy", "--box": ["-2", "2"], "--test": "z.npy",
            "--baselines": "none"}
    opts.update(change)
    argv = ["density", "--out", str(tmp_path)]
    for k, v in opts.items():
        if k in ("--data", "--test"):
            v = str(d / v)
        argv += [k] + (v if isinstance(v, list) else [v])
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("partax density: error: ") and match in lines[0], err
