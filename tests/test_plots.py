"""Tests for partax.plots: figures render headless (Agg), are written atomically, and show what a
reviewer needs (titles naming data / net / N, shared ranges, the log2 N ceiling, saturated points,
non-overlapping labels, legible degenerate panels, an explained slice).

Every expected value is computed here from the inputs (the fake trace, NumPy, a brute-force grid),
never read back from the code under test."""

import itertools
import math
import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")

from matplotlib.path import Path  # noqa: E402

from partax import plots  # noqa: E402

N_FAKE = 4096
H_Y_FAKE = 0.97


def _fake_trace(seed=0):
    rows = []
    rng = np.random.default_rng(seed)
    for step in [0, 1, 2, 5, 10, 50]:
        for scope, ests in [("layer", ["plugin"]), ("prefix", ["plugin"]), ("binned30", ["plugin"]),
                            ("kde", ["upper", "lower"])]:
            for l in (1, 2, 3):
                for e in ests:
                    rows.append(dict(step=step, member=0, scope=scope, layer=l, width=[8, 6, 4][l - 1], estimator=e,
                                     regions=float(rng.integers(1, 500)), N=N_FAKE, H_Y=H_Y_FAKE,
                                     I_XT=float(rng.uniform(0, 12)), I_TY=float(rng.uniform(0, H_Y_FAKE)),
                                     saturated=bool(rng.random() < 0.3)))
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def _is_png(p):
    with open(p, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _panel_axes(fig):
    return [a for a in fig.axes if a.get_visible() and a.get_xlabel() == "I(X;T) [bits]"]


def _drawn(fig):
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig.canvas.get_renderer()


def _legend_texts(fig_or_ax):
    legs = list(getattr(fig_or_ax, "legends", []))
    if hasattr(fig_or_ax, "get_legend") and fig_or_ax.get_legend() is not None:
        legs.append(fig_or_ax.get_legend())
    return [t.get_text() for lg in legs for t in lg.get_texts()]


def test_figures_render(tmp_path):
    tr = _fake_trace()
    figs = {
        "ip.png": plots.information_plane(tr, scope="layer"),
        "ip_kde.png": plots.information_plane(tr, scope="kde"),
        "reg.png": plots.regions_vs_epoch(tr, scope="prefix"),
        "regs.png": plots.regions_comparison(tr, scopes=("layer", "prefix")),
        "cmp.png": plots.estimator_comparison(tr),
    }
    for name, fig in figs.items():
        p = tmp_path / "sub" / name
        plots.save(fig, p)
        assert _is_png(p) and p.stat().st_size > 1000
    # the comparison has one panel per scope
    axes = _panel_axes(figs["cmp.png"])
    assert [a.get_title().split(" ")[0] for a in axes] == ["layer", "prefix", "binned30", "kde"]
    # the information plane has one curve per layer, with the data we gave it
    ax = figs["ip.png"].axes[0]
    for l in (1, 2, 3):
        sel = (tr["scope"] == "layer") & (tr["layer"] == l)
        (coll,) = [c for c in ax.collections if c.get_label() == f"layer {l}"]
        np.testing.assert_allclose(coll.get_offsets()[:, 0], tr["I_XT"][sel])
        np.testing.assert_allclose(coll.get_offsets()[:, 1], tr["I_TY"][sel])
    assert not [f for f in os.listdir(tmp_path / "sub") if f.startswith(".tmp-")]


def test_information_plane_ceiling_saturation_and_ranges():
    tr = _fake_trace()
    fig = plots.information_plane(tr, scope="layer", data="fake data", net="3-8-6-4-2 net")
    ax = fig.axes[0]
    # the title names the data, the network and N
    title = ax.get_title()
    assert "fake data" in title and "3-8-6-4-2 net" in title and f"N = {N_FAKE}" in title
    # the log2 N ceiling: a vertical line at exactly log2(4096) = 12
    ceil = [ln for ln in ax.lines if ln.get_gid() == "log2N"]
    assert len(ceil) == 1
    np.testing.assert_allclose(ceil[0].get_xdata(), [12.0, 12.0])
    # I(T;Y) in [0, H(Y)], I(X;T) up to log2 N
    y0, y1 = ax.get_ylim()
    assert y0 <= 0.0 and H_Y_FAKE <= y1 <= 1.15 * H_Y_FAKE
    x0, x1 = ax.get_xlim()
    assert x0 <= 0.0 and 12.0 <= x1 <= 12.0 * 1.1
    # saturated points are marked: the ring collections hold exactly the saturated rows
    rings = [c for c in ax.collections if not c.get_label().startswith("layer")
             and len(c.get_offsets()) and np.allclose(c.get_facecolor()[:, 3], 0)]
    got = np.concatenate([c.get_offsets() for c in rings])
    sel = (tr["scope"] == "layer") & tr["saturated"]
    want = np.stack([tr["I_XT"][sel], tr["I_TY"][sel]], 1)
    assert sorted(map(tuple, np.round(got, 12))) == sorted(map(tuple, np.round(want, 12)))
    texts = _legend_texts(ax)
    assert {"layer 1", "layer 2", "layer 3"} <= set(texts)
    assert "log2 N = 12.00 bits" in texts and any(t.startswith("saturated") for t in texts)


def test_comparison_panels_share_ranges_and_title():
    tr = _fake_trace()
    fig = plots.estimator_comparison(tr, data="fake data", net="3-8-6-4-2 net")
    axes = _panel_axes(fig)
    assert len(axes) == 4
    assert len({a.get_xlim() for a in axes}) == 1 and len({a.get_ylim() for a in axes}) == 1
    y0, y1 = axes[0].get_ylim()
    assert y0 <= 0.0 and H_Y_FAKE <= y1 <= 1.15 * H_Y_FAKE
    assert axes[0].get_xlim()[1] >= math.log2(N_FAKE)
    for a in axes:  # every panel carries the ceiling
        assert any(ln.get_gid() == "log2N" and np.allclose(ln.get_xdata(), 12.0) for ln in a.lines)
    sup = fig.get_suptitle()
    assert "fake data" in sup and "3-8-6-4-2 net" in sup and f"N = {N_FAKE}" in sup
    texts = _legend_texts(fig)
    assert {"layer 1", "layer 2", "layer 3"} <= set(texts) and "log2 N = 12.00 bits" in texts


def test_layer_labels_do_not_overlap():
    # the worst case: every layer ends at the same point of the plane, in every panel
    tr = _fake_trace(1)
    last = tr["step"] == tr["step"].max()
    tr["I_XT"] = np.where(last, 5.0, tr["I_XT"])
    tr["I_TY"] = np.where(last, 0.5, tr["I_TY"])
    for fig in (plots.information_plane(tr, scope="layer"), plots.estimator_comparison(tr)):
        r = _drawn(fig)
        for ax in _panel_axes(fig):
            labels = [t for t in ax.texts if t.get_text() in ("L1", "L2", "L3")]
            assert sorted(t.get_text() for t in labels) == ["L1", "L2", "L3"]
            boxes = [t.get_window_extent(r) for t in labels]
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b)
            axbox = ax.get_window_extent(r)
            for b in boxes:
                assert axbox.x0 <= b.x0 and b.x1 <= axbox.x1 and axbox.y0 <= b.y0 and b.y1 <= axbox.y1
            if ax.get_legend() is not None:
                lb = ax.get_legend().get_window_extent(r)
                assert not any(lb.overlaps(b) for b in boxes)


def _visible_tick_labels(fig, axis):
    _drawn(fig)
    lo, hi = sorted(axis.axes.get_ylim()) if axis is axis.axes.yaxis else sorted(axis.axes.get_xlim())
    ticks = [t for t, loc in zip(axis.get_ticklabels(), axis.get_ticklocs()) if lo <= loc <= hi]
    return [t.get_text() for t in ticks if t.get_text()]


def test_degenerate_panels_keep_legible_ticks():
    tr = _fake_trace()
    tr["regions"] = np.full_like(tr["regions"], 4.0)
    del tr["N"]  # no N line to widen the axis: the constant series alone
    fig = plots.regions_vs_epoch(tr, scope="prefix")
    ax = fig.axes[0]
    y0, y1 = ax.get_ylim()
    assert y1 / y0 >= 10.0 and y0 < 4.0 < y1
    assert len(_visible_tick_labels(fig, ax.yaxis)) >= 1
    # a constant information plane without labels (no H(Y)): a real range, plain tick labels
    tr = _fake_trace()
    for k in ("H_Y", "N"):
        del tr[k]
    tr["I_TY"] = np.full_like(tr["I_TY"], 0.25)
    tr["I_XT"] = np.full_like(tr["I_XT"], 3.0)
    fig = plots.information_plane(tr, scope="layer")
    ax = fig.axes[0]
    assert not [ln for ln in ax.lines if ln.get_gid() in ("log2N", "H_Y")]  # nothing to draw them from
    y0, y1 = ax.get_ylim()
    assert y0 <= 0.0 < 0.25 < y1
    x0, x1 = ax.get_xlim()
    assert x0 <= 0.0 < 3.0 < x1
    labels = _visible_tick_labels(fig, ax.yaxis)
    assert len(labels) >= 2 and not ax.yaxis.get_offset_text().get_text()


def test_regions_comparison_shares_y_and_marks_n():
    tr = _fake_trace()
    fig = plots.regions_comparison(tr, scopes=("layer", "prefix"), data="fake data", net="3-8-6-4-2 net")
    axes = [a for a in fig.axes if a.get_ylabel() == "regions"]
    assert len(axes) == 2 and axes[0].get_ylim() == axes[1].get_ylim()
    lo, hi = axes[0].get_ylim()
    sel = np.isin(tr["scope"], ["layer", "prefix"])
    assert lo <= tr["regions"][sel].min() and hi >= N_FAKE
    for a in axes:
        assert any(ln.get_gid() == "N" and np.allclose(ln.get_ydata(), N_FAKE) for ln in a.lines)
        sat = [ln for ln in a.lines if ln.get_marker() == "o"]
        n_sat = int((tr["saturated"] & (tr["scope"] == a.get_title().split(" ")[0])).sum())
        assert sum(len(ln.get_xdata()) for ln in sat) == n_sat
    sup = fig.get_suptitle()
    assert "fake data" in sup and f"N = {N_FAKE}" in sup
    assert f"N = {N_FAKE} inputs" in _legend_texts(fig)


def test_title_from_header_and_columns():
    tr = _fake_trace()
    # no header: N and the hidden widths from the columns
    t = plots.information_plane(tr, scope="layer").axes[0].get_title()
    assert f"N = {N_FAKE}" in t and "hidden widths 8-6-4" in t
    tr["header"] = {"inputs": {"shape": [N_FAKE, 3]}, "meta": {"data": "my data"},
                    "net": {"input_dim": 3, "widths": [8, 6, 4], "output_dim": 2, "activation": "relu"}}
    t = plots.regions_vs_epoch(tr, scope="layer").axes[0].get_title()
    assert "my data" in t and "3-8-6-4-2 relu net" in t and f"N = {N_FAKE}" in t
    assert plots.figure_title("x", data="d", net="n", N=5) == "x\nd · n · N = 5"
    assert plots.figure_title("x") == "x"


def test_errors(tmp_path):
    tr = _fake_trace()
    with pytest.raises(ValueError, match="scope"):
        plots.information_plane(tr, scope="suffix")
    with pytest.raises(TypeError, match="trace"):
        plots.information_plane([1, 2, 3])
    with pytest.raises(ValueError, match="scopes"):
        plots.regions_comparison(tr, scopes=())


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
    assert "N = 100" in fig.axes[0].get_title()
    plots.save(fig, tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"


# -- slices ------------------------------------------------------------------------------
def _in_polygon(poly, pts):
    return Path(np.vstack([poly, poly[:1]]), closed=True).contains_points(pts)


def test_box_section_matches_brute_force():
    from partax.geometry import Plane

    rng = np.random.default_rng(3)
    for trial in range(5):
        d = 5
        x = rng.uniform(0.1, 0.9, (3, d))
        plane = Plane.through(*x, margin=2.5)
        poly = plots.box_section(plane, 0.0, 1.0)
        g = plane.grid(120)
        inside = np.all((plane.points(g) >= 0.0) & (plane.points(g) <= 1.0), axis=1)
        assert len(poly) >= 3
        got = _in_polygon(poly, g)
        # agreement away from the boundary (a grid point within a cell of an edge may go either way)
        (s0, s1), _ = plane.extent
        h = (s1 - s0) / 120
        z = plane.points(g)
        slack = np.min(np.minimum(z, 1.0 - z), axis=1)  # u, v orthonormal: |grad z_i| <= 1
        far = np.abs(slack) > 2 * h
        assert np.array_equal(got[far], inside[far])
        # the three inputs lie inside the box, so inside its section
        assert _in_polygon(poly, plane.coords(x)).all()
    # a plane that misses the box: empty; a zero-direction coordinate outside the box: empty
    far_plane = Plane([5.0, 5.0, 5.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], ((-1, 1), (-1, 1)))
    assert plots.box_section(far_plane, 0.0, 1.0).shape == (0, 2)
    # box bigger than the rectangle: the rectangle itself
    p = Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-1, 1), (-2, 2)))
    sec = plots.box_section(p, -5.0, 5.0)
    assert sorted(map(tuple, sec)) == sorted([(-1.0, -2.0), (1.0, -2.0), (1.0, 2.0), (-1.0, 2.0)])


def test_plot_slice_is_explained():
    import jax
    import partax
    from matplotlib.collections import LineCollection
    from partax.geometry import Plane, slice_regions

    net = partax.mlp(jax.random.key(4), [4, 8, 8, 3], bias_std=0.3)
    X = np.random.default_rng(0).uniform(0, 1, (3, 4))
    plane = Plane.through(*X, margin=1.6)
    res = slice_regions(net, plane)
    marks = plane.coords(X)
    ax = plots.plot_slice(res, net=net, plane=plane, marks=marks, mark_labels=["#0 (class 1)", "#1 (class 2)",
                                                                              "#2 (class 0)"],
                          box=(0.0, 1.0), data="toy data", note="origin: circumcentre")
    fig = ax.figure
    assert ax.get_xlabel().startswith("s:") and "along u" in ax.get_xlabel()
    assert ax.get_ylabel().startswith("t:") and "along v" in ax.get_ylabel()
    assert f"{res.num_regions} prefix regions" in ax.get_title() and "4-8-8-3 net" in ax.get_title()
    assert "toy data" in ax.get_title()
    texts = _legend_texts(ax)
    assert any(t.startswith("decision boundary") for t in texts)
    assert "data box [0, 1]^4 ∩ slice" in texts
    assert any("regions" in t and "boundaries" in t for t in texts)
    assert any(t.startswith("anchor inputs") for t in texts)
    # the decision boundary is drawn, and the box outline is the brute-force section
    assert any(isinstance(c, LineCollection) and c.get_gid() == "decision" for c in ax.collections)
    (box,) = [p for p in ax.patches if p.get_gid() == "box"]
    g = plane.grid(80)
    z = plane.points(g)
    inside = np.all((z >= 0) & (z <= 1), axis=1)
    got = box.get_path().contains_points(g)
    assert (got == inside).mean() > 0.97
    # the anchors: marked at their (s, t), labelled, labels apart
    labels = [t for t in ax.texts if t.get_gid() == "mark_label"]
    assert sorted(t.get_text() for t in labels) == ["#0 (class 1)", "#1 (class 2)", "#2 (class 0)"]
    r = _drawn(fig)
    for a, b in itertools.combinations([t.get_window_extent(r) for t in labels], 2):
        assert not a.overlaps(b)
    (pts,) = [c for c in ax.collections if c.get_gid() == "marks"]
    np.testing.assert_allclose(pts.get_offsets(), marks)


def test_plot_slice_errors_and_reexport():
    import jax
    import partax
    from partax.geometry import Plane, slice_regions
    from partax.geometry.slices import plot_slice

    assert plot_slice is plots.plot_slice
    net = partax.mlp(jax.random.key(0), [2, 6, 1], bias_std=0.3)
    p = Plane([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], ((-2, 2), (-2, 2)))
    res = slice_regions(net, p)
    with pytest.raises(TypeError, match="result"):
        plots.plot_slice(object())
    with pytest.raises(ValueError, match="plane"):
        plots.plot_slice(res, box=(0, 1))
    with pytest.raises(TypeError, match="box"):
        plots.plot_slice(res, plane=p, box=3.0)
    with pytest.raises(ValueError, match="mark_labels"):
        plots.plot_slice(res, marks=[[0, 0], [1, 1]], mark_labels=["a"])
    with pytest.raises(ValueError, match="marks"):
        plots.plot_slice(res, marks=[0, 0])
    ax = plots.plot_slice(res, net=net, plane=p, box=(5.0, 6.0))  # a box the slice misses: said so
    assert any("does not meet the slice" in t for t in _legend_texts(ax))


def test_cli_slice_names_anchor_classes(tmp_path):
    import jax
    import partax
    from partax.cli import main

    net = partax.mlp(jax.random.key(1), [5, 8, 3], bias_std=0.2)
    partax.save_net(net, tmp_path / "net.npz")
    X = np.random.default_rng(0).uniform(0, 1, (10, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", np.arange(10, dtype=np.int32) % 3)
    out = tmp_path / "s.png"
    assert main(["slice", "--net", str(tmp_path / "net.npz"), "--through", "1", "4", "8", "--data",
                 str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--out", str(out)]) == 0
    assert _is_png(out)
    np.save(tmp_path / "y_short.npy", np.zeros(3, np.int32))
    assert main(["slice", "--net", str(tmp_path / "net.npz"), "--through", "1", "4", "8", "--data",
                 str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y_short.npy"), "--out", str(out)]) == 2


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
