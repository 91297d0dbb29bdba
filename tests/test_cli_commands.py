"""The subcommands regions, slice and bounds end to end, and their refusals: outputs on disk
agree with the library and with closed forms; bad input exits 2 with one named error."""

import json

import jax
import numpy as np
import pytest

import partax
from partax import bounds
from partax.cli import main
from partax.geometry import Plane, RegionReport, lp, region_report, slice_regions


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    net = partax.mlp(jax.random.key(1), [2, 6, 6, 1], bias_std=0.3)
    partax.save_net(net, d / "net.npz")
    x = np.random.default_rng(1).uniform(-1, 1, (2000, 2)).astype(np.float32)
    np.save(d / "x.npy", x)
    net3 = partax.mlp(jax.random.key(2), [3, 8, 8, 1], bias_std=0.3)
    partax.save_net(net3, d / "net3.npz")
    np.save(d / "x3.npy", np.random.default_rng(0).normal(size=(5, 3)))
    return d, net, x, net3


def test_regions_writes_the_report_of_the_library(files, tmp_path, capsys):
    d, net, x, _ = files
    argv = ["regions", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--out", str(tmp_path),
            "--max-regions", "5", "--lo", "-1", "--hi", "1", "--solver", "highs"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "regions (prefix, layer 2) from 2,000 inputs" in out and "wrote" in out
    back = RegionReport.load(tmp_path / "regions.npz")
    p = partax.partition(net, x, scopes=("prefix",), progress=False)
    assert np.array_equal(back.keys, p.table("prefix", 2).keys) and back.counts.sum() == 2000
    assert back.has_lp.sum() == 5 and np.all(np.isfinite(back.volume[back.has_lp]))
    assert back.volume[back.has_lp].sum() <= 4.0 + 1e-6  # disjoint regions inside the box [-1, 1]^2
    direct = region_report(net, p, x, domain=partax.Box(-1.0, 1.0), max_regions=5, solver="highs",
                           keep_mismatched=True, progress=False)
    np.testing.assert_allclose(back.radius[back.has_lp], direct.radius[direct.has_lp], rtol=1e-9)
    assert np.array_equal(back.num_facets, direct.num_facets)


def test_regions_from_a_saved_partition_writes_markdown_by_population(files, tmp_path):
    d, net, x, _ = files
    p = partax.partition(net, x, scopes=("prefix",), progress=False)
    p.save(tmp_path / "partition.npz")
    argv = ["regions", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--partition",
            str(tmp_path / "partition.npz"), "--out", str(tmp_path), "--max-regions", "3", "--solver", "highs"]
    assert main(argv) == 0
    back = RegionReport.load(tmp_path / "regions.npz")
    assert np.array_equal(back.counts, p.table("prefix", 2).counts)
    md = (tmp_path / "regions.md").read_text()
    assert "no domain: Chebyshev radii" in md and "reach = 100" in md  # radii capped without a domain
    rows = [line for line in md.splitlines() if line.startswith("| 0x")]
    counts = [int(r.split("|")[2]) for r in rows]
    assert counts == sorted(back.counts.tolist(), reverse=True)[: len(rows)]  # most populated first
    np.save(tmp_path / "fewer.npy", x[:100])
    argv[argv.index("--data") + 1] = str(tmp_path / "fewer.npy")
    assert main(argv) == 2  # a partition of other inputs


def test_regions_samples_the_box_without_data(files, tmp_path):
    d, net, _, _ = files
    assert main(["regions", "--net", str(d / "net.npz"), "--lo", "0", "--hi", "1", "--samples", "3000",
                 "--max-regions", "2", "--solver", "highs", "--out", str(tmp_path)]) == 0
    back = RegionReport.load(tmp_path / "regions.npz")
    assert back.counts.sum() == 3000 and back.meta["total"] == 3000
    assert np.all(np.isfinite(back.mc_volume))  # uniform samples of the box: Monte Carlo volumes


def test_regions_survives_failed_lps(files, tmp_path, monkeypatch, capsys):
    d, _, _, _ = files
    real = lp.solve

    def failing(c, A, b, **kw):  # every LP "fails" but keeps a plausible solution
        res = real(c, A, b, **kw)
        return lp.LPResult(res.x, res.value, np.full_like(res.status, lp.FAILED), res.iterations)

    monkeypatch.setattr(lp, "solve", failing)
    with pytest.warns(RuntimeWarning):
        assert main(["regions", "--net", str(d / "net.npz"), "--data", str(d / "x.npy"), "--out", str(tmp_path),
                     "--max-regions", "3", "--lo", "-1", "--hi", "1", "--solver", "highs"]) == 0
    assert "wrote" in capsys.readouterr().out
    rep = RegionReport.load(tmp_path / "regions.npz")
    assert rep.has_lp.sum() == 3 and np.all(rep.facets_status[rep.has_lp] == 2)
    assert np.all(np.isnan(rep.volume[rep.has_lp])) and np.all(rep.num_facets[rep.has_lp] == -1)
    assert np.all(np.isnan(rep.radius[rep.has_lp]))


def test_slice_of_a_2_input_net(files, tmp_path, capsys):
    d, net, _, _ = files
    out = tmp_path / "fig" / "s.png"
    assert main(["slice", "--net", str(d / "net.npz"), "--extent", "2", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    summary = json.loads((tmp_path / "fig" / "s.json").read_text())
    exact = slice_regions(net, Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-2.0, 2.0), (-2.0, 2.0))))
    assert summary["regions"] == exact.num_regions > 1
    assert summary["extent"] == [[-2.0, 2.0], [-2.0, 2.0]] and summary["scope"] == "prefix"
    assert summary["regions"] <= bounds.serra(2, [6, 6]) == int(summary["bounds_n0_2"]["serra"])
    printed = capsys.readouterr().out
    assert "serra" in printed and f"{exact.num_regions} prefix regions" in printed


def test_slice_through_three_inputs(files, tmp_path):
    d, _, _, net3 = files
    assert main(["slice", "--net", str(d / "net3.npz"), "--through", "0", "1", "2", "--data", str(d / "x3.npy"),
                 "--scope", "suffix", "--layer", "1", "--out", str(tmp_path / "t.svg")]) == 0
    assert (tmp_path / "t.svg").read_text().lstrip().startswith("<?xml")  # the format of the extension
    X = np.load(d / "x3.npy")
    exact = slice_regions(net3, Plane.through(*X[:3]), scope="suffix", layer=1)
    assert json.loads((tmp_path / "t.json").read_text())["regions"] == exact.num_regions > 1


def test_bounds_prints_and_writes_the_reference_values(tmp_path, capsys):
    assert main(["bounds", "4", "6", "4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "817" in out and "912" in out and "log10" in out  # DESIGN §3.8: serra 817, montufar 912
    written = json.loads((tmp_path / "bounds.json").read_text())
    assert written["serra"] == "817" and written["montufar"] == "912" and written["trivial"] == str(2**10)
    assert main(["bounds", "784", "256", "256"]) == 0
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bounds", "4"], "partax bounds: error: widths: expected N0 N1 ... NL"),
        (["bounds", "4", "0"], "partax bounds: error: widths[0]"),
        (["partition", "--sample", "uniform", "--data", "{x}", "--out", "{o}"], "give exactly one of --data"),
        (["partition", "--out", "{o}"], "give exactly one of --data"),
        (["partition", "--sample", "gaussian", "--labels", "{x}", "--out", "{o}"], "--labels: goes with --data"),
        (["regions", "--net", "{net}", "--lo", "0", "--out", "{o}"], "partax regions: error: --lo/--hi"),
        (["regions", "--net", "{net}", "--out", "{o}"], "partax regions: error: --data"),
        (["regions", "--net", "{net}", "--lo", "1", "--hi", "0", "--out", "{o}"], "expected lo < hi"),
        (["regions", "--net", "{net}", "--data", "{txt}", "--out", "{o}"], "is not a .npy array file"),
        (["regions", "--net", "{net}", "--data", "{o}/none.npy", "--out", "{o}"], "--data: no such file"),
        (["partition", "--data", "{txt}", "--out", "{o}"], "partax partition: error: --data"),
        (["partition", "--sample", "uniform", "--lo", "2", "--hi", "1", "--out", "{o}"], "expected lo < hi"),
        (["slice", "--net", "{net3}", "--out", "{o}/s.png"], "partax slice: error: through"),
        (["slice", "--net", "{net3}", "--through", "0", "1", "2", "--out", "{o}/s.png"], "--through needs --data"),
        (["slice", "--net", "{net}", "--out", "{o}/s.nope"], "partax slice: error: out: expected a figure file"),
    ],
)
def test_refusals_exit_2_with_one_named_error(files, tmp_path, capsys, argv, message):
    d = files[0]
    (d / "x.txt").write_text("1 2\n3 4\n")
    subs = {"{x}": str(d / "x.npy"), "{txt}": str(d / "x.txt"), "{net}": str(d / "net.npz"), "{net3}": str(d / "net3.npz"), "{o}": str(tmp_path)}
    for k, v in subs.items():
        argv = [a.replace(k, v) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "regions.npz").exists() and not (tmp_path / "summary.json").exists()
