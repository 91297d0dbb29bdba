"""The bench harness: its fields are consistent, its table renders, bad names are refused.

Timings themselves are not asserted (performance lives in ``partax bench``, not in tests).
"""

import math

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
    assert math.isfinite(entry["codes_ratio_vs_forward"])  # the codes-alone ceiling is measured


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


# --- the conv-net workload (issue 14, item 7) and the general-net kernel it measures ---------
@pytest.fixture(scope="module")
def cnn_entry():
    from partax.bench.partition import digits_cnn

    return bench.cnn_workload("cnn_tiny", 2**11, reps=1, net=digits_cnn(channels=(2, 3), side=4))


def test_cnn_workload_fields(cnn_entry):
    """The conv-net entry has the MLP entries' fields except the NumPy ones, and renders."""
    w = cnn_entry
    assert w["widths"] == [32, 16, 12] and w["inputs"] == 2**11 and "NumPy convolution" in w["numpy_skipped"]
    assert not any(k.startswith("numpy_inputs") or k.startswith("ratio_vs_numpy") for k in w)
    for path in ("host", "device"):
        assert w[f"{path}_inputs_per_s"] > 0 and w[f"{path}_bytes_per_input"] > 0
        assert w[f"{path}_ratio_vs_forward"] == pytest.approx(w[f"{path}_inputs_per_s"] / w["forward_inputs_per_s"])
    assert w["kernel_ratio_vs_forward"] == pytest.approx(w["kernel_inputs_per_s"] / w["forward_inputs_per_s"])
    # FLOPs: conv 3x3 1->2 on 4x4 (16 * 2 * 9), conv 3x3 2->3 on 2x2 (4 * 3 * 18), dense 12->10
    macs = 16 * 2 * 9 + 4 * 3 * 18 + 12 * 10
    assert w["forward_gflops"] == pytest.approx(2 * macs * w["forward_inputs_per_s"] / 1e9)
    assert 1 <= w["regions_prefix_last"] <= w["inputs"]
    result = {"date": "2026-01-01", "device": None, "jax_version": "0", "host": "h", "quick": True, "workloads": [w]}
    md = bench.to_markdown(result)
    row, paths = [line for line in md.splitlines() if line.startswith("| cnn_tiny ")]  # the two tables
    header, paths_header = [line for line in md.splitlines() if line.startswith("| workload |")]
    assert row.count("|") == header.count("|") and row.count("–") == 4  # the NumPy columns
    assert paths.count("|") == paths_header.count("|") and "–" not in paths
    assert "No NumPy columns for cnn_tiny" in md
    readme = bench.readme_section(result, "runs/x").splitlines()
    (arch_row,) = [line for line in readme if line.startswith("| Conv(3x3, 1->2, padding 1) ReLU() MaxPool(2x2) ")]
    assert "| 2^11 | " in arch_row and arch_row.count("–") == 3  # NumPy practice, ratio and bound
    (paths_row,) = [line for line in readme if line.startswith("| cnn_tiny |")]  # the reduction paths' table
    assert paths_row.count("|") == 10 and "–" not in paths_row
    assert f"| {w['host_ratio_vs_forward']:.2f} |" in paths_row and f"| {w['device_ratio_vs_forward']:.2f} |" in paths_row


def test_cnn_is_a_workload_of_the_suite():
    from partax.bench.partition import CNN_WORKLOADS, digits_cnn

    assert "cnn" in bench.workload_names() and CNN_WORKLOADS["cnn"] == (2**20, 2**16)
    net = digits_cnn()
    assert net.input_shape == (8, 8, 1) and net.widths == (512, 256, 256) and net.output_dim == 10
    with pytest.raises(ValueError, match="net: expected a general net"):
        bench.cnn_workload("x", 16, net=partax_mlp())


def partax_mlp():
    import jax

    import partax

    return partax.mlp(jax.random.key(0), [4, 3, 2])


# The general-net kernel the cnn workload measures (partax.coding's screened near-boundary test,
# its max-pool pass and byte packing): each against the layers' own methods, the float64 oracle
# of tests/layers_oracle.py, or the exact test.
def _conv_layers():
    import numpy as np

    from partax.layers import Conv

    rng = np.random.default_rng(3)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "same3x3": (Conv(f32(3, 3, 2, 4), f32(4), padding=1), (6, 5, 2)),
        "strided": (Conv(f32(2, 3, 2, 3), f32(3), strides=(2, 1), padding=((1, 0), (0, 2))), (7, 6, 2)),
        "dilated_grouped": (Conv(f32(2, 2, 2, 4), f32(4), dilation=2, groups=2), (6, 6, 4)),
        "conv1d": (Conv(f32(3, 3, 2), f32(2), strides=(2,), padding=((2, 1),)), (9, 3)),
    }


@pytest.mark.parametrize("case", sorted(_conv_layers()))
def test_scale_bound_holds_against_the_float64_magnitudes(case):
    """The screen's Cauchy-Schwarz bound is >= |A| s + |c| (the float64 oracle's convolution with
    |K| and |b|) everywhere, and mostly within a small factor of it on dense inputs."""
    import numpy as np
    import layers_oracle as lo
    import jax.numpy as jnp

    from partax import coding
    from partax.layers import Conv, Dense

    conv, shape = _conv_layers()[case]
    s = np.random.default_rng(0).random((5, *shape)).astype(np.float32)
    s[0] = 0.0  # a zero input: the bound is |c| (times the slack)
    bound = np.asarray(coding._scale_bound(conv, jnp.asarray(s)), np.float64)
    absolute = Conv(np.abs(np.asarray(conv.kernel)), np.abs(np.asarray(conv.bias)), conv.strides, conv.padding,
                    conv.dilation, conv.groups)
    exact = lo.conv(absolute, s.astype(np.float64))
    assert bound.shape == exact.shape
    assert (bound >= exact).all() and np.median(bound[1:] / exact[1:]) < 2
    dense = Dense(np.asarray(conv.kernel).reshape(-1, conv.kernel.shape[-1])[:shape[-1]], np.asarray(conv.bias))
    flat = np.asarray(coding._scale_bound(dense, jnp.asarray(s)), np.float64)
    assert (flat >= np.abs(s.astype(np.float64)) @ np.abs(np.asarray(dense.W, np.float64)) + np.abs(dense.b)).all()


@pytest.mark.parametrize("window,strides,padding", [((2, 2), None, None), ((3, 2), (2, 1), ((1, 1), (0, 1))),
                                                    ((3,), (2,), ((1, 1),))])
def test_pool_site_is_the_layers_code_output_and_near_test(window, strides, padding):
    """One scan over the slots gives MaxPool.code / apply / near exactly, with ties (to the
    lowest slot: the oracle's strict scan), padded slots, NaN, and scales given or the values'."""
    import jax.numpy as jnp
    import numpy as np
    import layers_oracle as lo

    from partax import coding
    from partax.layers import MaxPool

    pool = MaxPool(window, strides, padding)
    shape = (7, 6, 3) if len(window) == 2 else (9, 3)
    rng = np.random.default_rng(1)
    z = rng.integers(-2, 3, (6, *shape)).astype(np.float32)  # many exact ties
    z[1] = np.maximum(z[1], 0)  # ties of clamped zeros
    z[2] = z[2] + 1e-6 * rng.standard_normal(shape).astype(np.float32)  # near ties
    z[3].flat[[0, 5]] = np.nan
    s = np.abs(rng.standard_normal((6, *shape))).astype(np.float32)
    for tol in (0.0, 1e-5, 1e-1):
        for scales in (s, None):
            ref_s = np.abs(np.maximum(z, 0)) if scales is None else scales
            zz = np.maximum(z, 0) if scales is None else z  # s=None: the values are a ReLU's outputs
            code, out, near = coding._pool_site(pool, jnp.asarray(zz), None if scales is None else jnp.asarray(scales), tol)
            np.testing.assert_array_equal(np.asarray(code), np.asarray(pool.code(jnp.asarray(zz))))
            np.testing.assert_array_equal(np.asarray(out), np.asarray(pool.apply(jnp.asarray(zz))))
            np.testing.assert_array_equal(np.asarray(near), np.asarray(pool.near(jnp.asarray(zz), jnp.asarray(ref_s), tol)))
    ok = ~np.isnan(z).reshape(6, -1).any(1)
    wins = lo.windows(z[ok].astype(np.float64), pool.window, pool.strides, pool.padding, -np.inf)
    idx = lo.argmax_lowest(wins).reshape(ok.sum(), -1)
    bits = ((idx[..., None] >> np.arange(lo.nbits(pool.size))) & 1).reshape(ok.sum(), -1).astype(bool)
    code, _, _ = coding._pool_site(pool, jnp.asarray(z), jnp.asarray(s), 0.0)
    np.testing.assert_array_equal(np.asarray(code)[ok], bits)


@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 64, 100, 257])
def test_word_packing_puts_unit_i_in_bit_i_mod_32_of_word_i_div_32(n):
    import jax.numpy as jnp
    import numpy as np

    from partax import coding

    bits = np.random.default_rng(n).random((9, n)) < 0.5
    packed = np.asarray(coding._pack(jnp.asarray(bits)))
    expect = np.zeros((9, -(-n // 32)), np.uint64)
    for i in range(n):  # bit i % 32 of word i // 32 is unit i
        expect[:, i // 32] |= bits[:, i].astype(np.uint64) << np.uint64(i % 32)
    np.testing.assert_array_equal(packed, expect.astype(np.uint32))


def _general_nets():
    import test_layered_geometry as tlg

    from partax.bench.partition import digits_cnn

    nets = {name: make() for name, make in tlg.NETS.items()}
    nets["digits_cnn"] = digits_cnn(seed=2)
    return nets


# the default run: a small conv-pool net at both tolerances, a residual net past the compacted batches
_SCREENED_FAST = {("conv_pool", 1e-5), ("residual", 3e-3), ("conv_pool", 0.0)}


@pytest.mark.parametrize("name,tol", [
    pytest.param(name, tol, marks=() if (name, tol) in _SCREENED_FAST else pytest.mark.slow)
    for name in ("conv_pool", "residual", "conv1d", "padded_pool", "digits_cnn")
    for tol in (0.0, 1e-5, 3e-3)])  # 3e-3: more rows flagged than the compacted batches hold
def test_screened_near_boundary_flags_are_the_exact_ones(name, tol):
    """General nets screen their near-boundary test (Dense / Conv scales bounded, the exact test on
    the flagged rows only): codes and flags equal the exact test's, and codes equal the float64
    oracle's wherever its tie margin is clear of float32 rounding."""
    import jax
    import numpy as np
    import layers_oracle as lo

    from partax import coding

    net = _general_nets()[name]
    assert coding.screens_near(net, tol)
    x = np.random.default_rng(5).random((1024, net.input_dim), dtype=np.float32)
    if tol == 0.0:
        x[:64] = np.round(x[:64] * 2) / 2  # exact ties on a grid
    run = jax.jit(coding.codes_hashes_and_checks, static_argnames=("boundary_tol", "screen"))
    screened = run(net, x, boundary_tol=tol, screen=True)
    exact = run(net, x, boundary_tol=tol, screen=False)
    for a, b in zip(screened[0], exact[0]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    near = np.asarray(screened[4])
    np.testing.assert_array_equal(near, np.asarray(exact[4]))
    np.testing.assert_array_equal(near, np.asarray(coding.site_codes(net, x, tol)[1]))
    assert near.sum() < len(x) and (near.sum() > 0 or tol < 3e-3)
    x64 = x.reshape(len(x), *net.input_shape).astype(np.float64)
    bits, margin = lo.codes(net.layers, x64)
    clear = margin > 1e-4
    clear[:64] &= tol > 0  # the grid rows' float64 ties of pooled values need not tie in float32
    assert clear.sum() > 50
    words = [np.asarray(w) for w in screened[0]]
    for w, b in zip(words, bits):
        np.testing.assert_array_equal(np.asarray(coding._pack(np.asarray(b)))[clear], w[clear])


def test_stacked_general_nets_are_not_screened():
    from partax import coding
    from partax.nets import stack_nets

    net = _general_nets()["conv_pool"]
    assert coding.screens_near(net, 1e-5) and not coding.screens_near(stack_nets([net, net]), 1e-5)
