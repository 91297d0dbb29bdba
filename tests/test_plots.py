"""Tests for partax.plots: figures render headless (Agg) and are written atomically."""

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")

from partax import plots  # noqa: E402


def _fake_trace():
    rows = []
    rng = np.random.default_rng(0)
    for step in [0, 1, 2, 5, 10, 50]:
        for scope, ests in [("layer", ["plugin"]), ("prefix", ["plugin"]), ("binned30", ["plugin"]),
                            ("kde", ["upper", "lower"])]:
            for l in (1, 2, 3):
                for e in ests:
                    rows.append(dict(step=step, member=0, scope=scope, layer=l, estimator=e,
                                     regions=float(rng.integers(1, 500)), N=4096,
                                     I_XT=float(rng.uniform(0, 12)), I_TY=float(rng.uniform(0, 1)),
                                     saturated=bool(rng.random() < 0.3)))
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def _is_png(p):
    with open(p, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_figures_render(tmp_path):
    tr = _fake_trace()
    figs = {
        "ip.png": plots.information_plane(tr, scope="layer"),
        "ip_kde.png": plots.information_plane(tr, scope="kde"),
        "reg.png": plots.regions_vs_epoch(tr, scope="prefix"),
        "cmp.png": plots.estimator_comparison(tr),
    }
    for name, fig in figs.items():
        p = tmp_path / "sub" / name
        plots.save(fig, p)
        assert _is_png(p) and p.stat().st_size > 1000
    # the comparison has one panel per scope (+ colourbar axes)
    axes = [a for a in figs["cmp.png"].axes if a.get_visible() and a.get_title()]
    assert [a.get_title().split(" ")[0] for a in axes] == ["layer", "prefix", "binned30", "kde"]
    # the information plane has one curve per layer, with the data we gave it
    ax = figs["ip.png"].axes[0]
    sel = (tr["scope"] == "layer") & (tr["layer"] == 2)
    offsets = [c.get_offsets() for c in ax.collections]
    assert len(offsets) == 3
    np.testing.assert_allclose(offsets[1][:, 0], tr["I_XT"][sel])
    assert not [f for f in os.listdir(tmp_path / "sub") if f.startswith(".tmp-")]


def test_errors(tmp_path):
    tr = _fake_trace()
    with pytest.raises(ValueError, match="scope"):
        plots.information_plane(tr, scope="suffix")
    with pytest.raises(TypeError, match="trace"):
        plots.information_plane([1, 2, 3])


def test_from_trace_dir(tmp_path):
    import jax
    import partax
    from partax.trace import Tracer

    x = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    tr = Tracer(x, y, out=tmp_path)
    for s in range(3):
        tr(s, partax.mlp(jax.random.key(s), [3, 4, 4, 2]))
    fig = plots.information_plane(tmp_path, scope="prefix")
    plots.save(fig, tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"


def test_quick_demo_end_to_end(tmp_path):
    """run_demo(quick=True): files exist, the report's numbers match the trace and the data."""
    from partax.demo import run_demo
    from partax.trace import load_trace

    s = run_demo(tmp_path / "demo", quick=True, progress=False)
    out = tmp_path / "demo"
    # every output DESIGN §5 lists, and the rest of the demo's files
    for name in ("trace.jsonl", "infoplane.png", "regions.npz", "report.md", "regions_per_epoch.png", "net.npz",
                 "history.npz"):
        assert (out / name).exists(), name
    assert list((out / "tables").glob("step_*.npz"))
    assert s["failed"] == {} and set(s["files"]) >= {"trace", "tables", "infoplane", "regions", "report"}
    regions = np.load(out / "regions.npz")
    assert len(regions["keys"]) > 0 and "Failed steps" not in (out / "report.md").read_text()
    assert _is_png(out / "infoplane.png")
    tr = load_trace(out)
    assert s["checkpoints"] == len(np.unique(tr["step"])) == 41
    assert set(tr["scope"].tolist()) == {"layer", "prefix", "suffix", "binned30"}
    assert abs(s["H_Y"] - 0.99916) < 1e-5
    # prefix at the last layer and suffix at layer 1 are the same partition
    last = tr["step"].max()
    pre = (tr["step"] == last) & (tr["scope"] == "prefix") & (tr["layer"] == 5)
    suf = (tr["step"] == last) & (tr["scope"] == "suffix") & (tr["layer"] == 1)
    assert tr["regions"][pre][0] == tr["regions"][suf][0] and tr["I_XT"][pre][0] == tr["I_XT"][suf][0]
    assert s["final"]["5"]["prefix"]["regions"] == tr["regions"][pre][0]
    report = (out / "report.md").read_text()
    assert "| 5 | 3 |" in report and "infoplane.png" in report
    # the box partition found at least as many prefix regions per layer as hold data
    assert all(r >= w for r, w in zip(s["box"]["regions"], s["box"]["regions_with_data"]))
    assert s["seconds"]["total"] < 300
