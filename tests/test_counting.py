"""Tests for partax.counting and partax.milp against independent oracles.

Oracles: exact enumeration by adjacency traversal (partax.geometry.enumerate_regions, LPs and
polar hulls, no MILP), Zaslavsky's closed form for one layer in general position, the Serra bound,
dense uniform sampling of the box (partax.region_ids), and the two MILP backends against each other.
"""

import itertools
import math

import jax
import numpy as np
import pytest

import partax
from partax import bounds
from partax.counting import count_regions, parity_lower_bound
from partax.geometry.enumerate import enumerate_regions
from partax.milp import formulate, milp_preactivation_bounds
from partax.stability import preactivation_bounds

try:
    import pyscipopt  # noqa: F401
    HAS_SCIP = True
except ImportError:
    HAS_SCIP = False
needs_scip = pytest.mark.skipif(not HAS_SCIP, reason="PySCIPOpt (the milp extra) is not installed")
AVAILABLE = ("scip", "highs") if HAS_SCIP else ("highs",)   # highspy is a core dependency

BOX = partax.Box(-1.0, 1.0)


def _net(seed, widths, bias_std=0.3, activation="relu"):
    return partax.mlp(jax.random.key(seed), widths, activation, bias_std=bias_std)


def _sampled_keys(net, box, n=200_000, scope="prefix", seed=7):
    x = box.sample(jax.random.key(seed), n, net.input_dim)
    return np.unique(partax.region_ids(net, x, scope)[:, -1 if scope != "suffix" else 0])


# -- exact counts against enumeration -------------------------------------------------------------

CASES = [
    (0, [2, 6, 6, 1], 0.3, "relu"),
    (2, [2, 8, 8, 1], 0.0, "relu"),          # zero biases: layers that die feed constants
    (3, [4, 6, 6, 1], 0.5, "relu"),
    (4, [5, 8, 1], 0.2, "relu"),
    (5, [6, 5, 4, 1], 0.3, "relu"),
    (6, [3, 6, 5, 1], 0.3, ("leaky_relu", 0.1)),
]


@needs_scip
@pytest.mark.parametrize("seed, widths, bias_std, act", CASES)
def test_scip_count_equals_enumeration(seed, widths, bias_std, act):
    net = _net(seed, widths, bias_std, act)
    en = enumerate_regions(net, BOX, progress=False)
    # d = 6: the volume certificate is not always computable; the traversal must still close
    assert en.complete or (widths[0] == 6 and en.frontier_left == 0 and en.dropped == 0)
    res = count_regions(net, BOX, backend="scip")
    assert res.exact and res.method == "native"
    assert res.count == en.num_regions
    assert res.count <= bounds.serra(widths[0], widths[1:-1])
    assert res.count >= len(_sampled_keys(net, BOX, 50_000))


@pytest.mark.parametrize("seed, widths, bias_std, act", [CASES[0], (2, [2, 6, 6, 1], 0.0, "relu"),
                                                         (6, [3, 5, 3, 1], 0.3, ("leaky_relu", 0.1))])
def test_highs_keys_equal_enumeration_keys(seed, widths, bias_std, act):
    net = _net(seed, widths, bias_std, act)
    en = enumerate_regions(net, BOX, progress=False)
    res = count_regions(net, BOX, backend="highs", return_codes=True)
    assert res.exact and res.count == en.num_regions
    np.testing.assert_array_equal(res.keys, np.sort(en.keys))
    # the points returned lie in their regions: partax's own keys there are the keys returned
    np.testing.assert_array_equal(partax.region_ids(net, res.points.astype(np.float32))[:, -1], res.keys)
    # every code met by dense sampling is among them
    assert np.isin(_sampled_keys(net, BOX), res.keys).all()


def test_stably_inactive_units_are_fixed():
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(3, 8)).astype(np.float32)
    b1 = rng.normal(size=8).astype(np.float32) * 0.3
    b1[:3] = -20.0   # stably inactive on [-1, 1]^3
    b1[3] = 20.0     # stably active
    W2 = rng.normal(size=(8, 5)).astype(np.float32)
    b2 = rng.normal(size=5).astype(np.float32) * 0.3
    b2[0] = -50.0
    net = partax.Net.from_arrays([W1, b1, W2, b2, np.ones((5, 1), np.float32), np.zeros(1, np.float32)])
    en = enumerate_regions(net, BOX, progress=False)
    for backend in AVAILABLE:
        res = count_regions(net, BOX, backend=backend, return_codes=backend == "highs")
        assert res.stats["stable"] >= 5
        assert res.exact and res.count == en.num_regions
    np.testing.assert_array_equal(res.keys, np.sort(en.keys))
    assert not res.codes[0][:, :3].any() and res.codes[0][:, 3].all()


@pytest.mark.parametrize("d, k", [(2, 6), (3, 5)])
def test_one_layer_general_position_equals_zaslavsky(d, k):
    rng = np.random.default_rng(d * 10 + k)
    W = rng.normal(size=(d, k))
    b = rng.normal(size=k)
    verts = []
    for S in itertools.combinations(range(k), d):
        verts.append(np.linalg.solve(W[:, list(S)].T, -b[list(S)]))
    r = float(np.abs(verts).max()) * 1.5 + 1.0   # every vertex inside: every region meets the box
    net = partax.Net.from_arrays([W.astype(np.float32), b.astype(np.float32),
                                  np.ones((k, 1), np.float32), np.zeros(1, np.float32)])
    box = partax.Box(-r, r)
    for backend in AVAILABLE:
        res = count_regions(net, box, backend=backend)
        assert res.exact and res.count == bounds.zaslavsky(k, d)


@needs_scip
@pytest.mark.parametrize("scope, layer", [("layer", 2), ("layer", 1), ("suffix", 2), ("prefix", 1)])
def test_scopes_backends_agree_and_cover_sampling(scope, layer):
    net = _net(0, [2, 6, 6, 1], 0.3)
    res = {b: count_regions(net, BOX, scope=scope, layer=layer, backend=b, return_codes=True)
           for b in ("scip", "highs")}
    assert res["scip"].count == res["highs"].count
    np.testing.assert_array_equal(res["scip"].keys, res["highs"].keys)
    x = BOX.sample(jax.random.key(3), 200_000, 2)
    sampled = np.unique(partax.region_ids(net, x, scope)[:, layer - 1])
    assert np.isin(sampled, res["highs"].keys).all()
    if scope == "prefix":
        assert res["highs"].count == enumerate_regions(net, BOX, layer=1, progress=False).num_regions


def test_time_limit_gives_a_flagged_lower_bound():
    # 8 -> 16 -> 16: neither backend finishes this count in 10 s here (HiGHS found 32 codes, SCIP
    # 2807), so 0.05 s (formulation included) is always hit, on any machine
    net = _net(3, [8, 16, 16, 1], 0.5)
    for backend in AVAILABLE:
        part = count_regions(net, BOX, backend=backend, time_limit=0.05, bound_method="interval",
                             return_codes=backend == "highs")
        assert not part.exact and part.status == "time_limit"
        assert part.count <= bounds.serra(8, [16, 16])
        if backend == "highs" and part.count:   # what was counted is real: each point has its key
            np.testing.assert_array_equal(partax.region_ids(net, part.points.astype(np.float32))[:, -1],
                                          part.keys)


def test_bad_input(monkeypatch):
    net = _net(0, [2, 4, 1])
    with pytest.raises(ValueError, match="bounded box"):
        count_regions(net, None)
    with pytest.raises(TypeError, match="domain"):
        count_regions(net, (0, 1))
    for t in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="time_limit"):
            count_regions(net, BOX, time_limit=t)
    with pytest.raises(ValueError, match="backend"):
        count_regions(net, BOX, backend="gurobi")
    with pytest.raises(ValueError, match="scope"):
        count_regions(net, BOX, scope="nope")
    with pytest.raises(ValueError, match="layer"):
        count_regions(net, BOX, layer=3)
    with pytest.raises(ValueError, match="stack"):
        count_regions(partax.stack_nets([net, net]), BOX)
    with pytest.raises(TypeError, match="net"):
        count_regions("net", BOX)
    with pytest.raises(ValueError, match="margin"):
        count_regions(net, BOX, margin=0.0)
    with pytest.raises(ValueError, match="dimension"):
        count_regions(net, partax.Box([0, 0, 0], [1, 1, 1]))
    with pytest.raises(ValueError, match="trials"):
        parity_lower_bound(net, BOX, trials=0)
    monkeypatch.setitem(__import__("sys").modules, "pyscipopt", None)
    with pytest.raises(ValueError, match="milp"):
        count_regions(net, BOX, backend="scip")


# -- parity bound -----------------------------------------------------------------------------------

def _coverage(num_runs, trials, alpha, nets):
    fails, bounds_seen, runs = 0, [], 0
    for net, box, true_count, bnds in nets:
        for s in range(num_runs // len(nets)):
            pb = parity_lower_bound(net, box, trials=trials, alpha=alpha, seed=1000 * runs + s, bounds=bnds)
            runs += 1
            assert pb.certain <= true_count            # found codes are real regions
            assert pb.delta == 2.0 ** (-alpha * trials)
            fails += 2.0 ** pb.log2_bound > true_count
            bounds_seen.append(pb.log2_bound)
    return fails, runs, np.asarray(bounds_seen)


def _tiny_nets():
    out = []
    for seed, widths in [(0, [2, 4, 1]), (1, [2, 3, 3, 1]), (2, [2, 5, 1]), (3, [2, 4, 2, 1])]:
        net = _net(seed, widths, 0.5)
        box = partax.Box(-2.0, 2.0)
        true = enumerate_regions(net, box, progress=False).num_regions
        out.append((net, box, true, preactivation_bounds(net, box, "lp")))
    return out


@pytest.mark.slow  # a coverage study over many draws
def test_parity_bound_coverage_within_delta():
    nets = _tiny_nets()
    trials, alpha = 2, 1.0                                 # delta = 1/4
    fails, runs, seen = _coverage(100, trials, alpha, nets)
    delta = 2.0 ** (-alpha * trials)
    assert runs >= 100
    # the failure count is binomial with p <= delta: allow three standard deviations
    assert fails <= runs * delta + 3 * math.sqrt(runs * delta * (1 - delta))
    assert seen.max() >= 2.0          # the bound is informative, not always the trivial 2^0


@pytest.mark.slow
def test_parity_bound_coverage_study():
    nets = _tiny_nets()
    for trials, alpha in [(1, 1.0), (3, 1.0), (2, 0.5)]:
        fails, runs, _ = _coverage(400, trials, alpha, nets)
        delta = 2.0 ** (-alpha * trials)
        assert fails <= runs * delta + 3 * math.sqrt(runs * delta * (1 - delta))


@needs_scip
def test_parity_bound_below_exact_count_on_a_larger_net():
    net = _net(3, [4, 6, 6, 1], 0.5)
    exact = count_regions(net, BOX, backend="scip").count
    pb = parity_lower_bound(net, BOX, trials=5, backend="scip")
    assert pb.probability == 1 - 2.0 ** -5
    assert 1 <= pb.certain <= exact
    assert 2.0 ** pb.log2_bound <= exact   # holds with probability >= 1 - 1/32 (fixed seed)
    assert pb.log2_bound >= 3


# -- the formulation and exact pre-activation bounds ------------------------------------------------

def test_milp_preactivation_bounds_sound_and_tight():
    net = _net(1, [2, 6, 6, 5, 1], 0.3)
    box = partax.Box(-1.0, 1.0)
    lp = preactivation_bounds(net, box, "lp")
    x = box.sample(jax.random.key(0), 200_000, 2).astype(np.float64)
    Ws = [np.asarray(W, np.float64) for W in net.weights]
    bs = [np.asarray(b, np.float64) for b in net.biases]
    gs, h = [], x
    for W, b in zip(Ws[:-1], bs[:-1]):
        g = h @ W + b
        gs.append(g)
        h = np.maximum(g, 0)
    res = {b: milp_preactivation_bounds(net, box, lp, backend=b) for b in AVAILABLE}
    for l in range(1, 3):
        lo, hi = res["highs"][l]
        assert np.all(lo <= gs[l].min(0) + 1e-6) and np.all(hi >= gs[l].max(0) - 1e-6)   # sound
        assert np.all(lo >= lp[l][0] - 1e-5) and np.all(hi <= lp[l][1] + 1e-5)           # tighter than LP
        # exact: dense sampling of a 2D box comes within a few percent of the true extremes
        scale = hi - lo
        assert np.all(hi - gs[l].max(0) <= 0.05 * scale) and np.all(gs[l].min(0) - lo <= 0.05 * scale)
        if HAS_SCIP:
            np.testing.assert_allclose(res["scip"][l][0], lo, atol=1e-5)
            np.testing.assert_allclose(res["scip"][l][1], hi, atol=1e-5)


def test_formulation_fixes_stable_units():
    net = _net(0, [2, 6, 6, 1], 0.3)
    b = preactivation_bounds(net, BOX, "interval")
    form = formulate(net, BOX, bounds=b)
    for (lo, hi), z, fx in zip(b, form.z, form.fixed):
        np.testing.assert_array_equal(fx == 1, lo > 0)
        np.testing.assert_array_equal(fx == -1, hi <= 0)
        np.testing.assert_array_equal(z >= 0, (lo <= 0) & (hi > 0))
    assert form.integer[form.counted_vars(1, 2)].all()


@needs_scip
def test_cli_count(tmp_path, capsys):
    import argparse
    import json

    from partax.cli import count as count_cli

    net = _net(0, [2, 6, 6, 1], 0.3)
    partax.save_net(net, tmp_path / "net.npz")
    parser = argparse.ArgumentParser()
    count_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["count", "--net", str(tmp_path / "net.npz"), "--lo", "-1", "--hi", "1",
                              "--backend", "scip", "--parity", "--trials", "2", "--out", str(tmp_path)])
    assert args.run(args) == 0
    out = json.loads((tmp_path / "count.json").read_text())
    assert out["count"] == enumerate_regions(net, BOX, progress=False).num_regions and out["exact"]
    assert out["parity"]["delta"] == 0.25
    assert "regions (exact)" in capsys.readouterr().out
    args = parser.parse_args(["count", "--net", str(tmp_path / "net.npz"), "--lo", "-1", "--hi", "1",
                              "--time-limit", "0"])
    with pytest.raises(ValueError, match="time_limit"):
        args.run(args)


def test_dead_first_layer_gives_one_region():
    W1 = np.ones((2, 3), np.float32)
    b1 = np.full(3, -10.0, np.float32)               # dead on [-1, 1]^2
    W2 = np.ones((3, 3), np.float32)
    b2 = np.array([0.5, 0.0, -0.3], np.float32)      # constants: codes 1, 0, 0
    net = partax.Net.from_arrays([W1, b1, W2, b2, np.ones((3, 1), np.float32), np.zeros(1, np.float32)])
    assert enumerate_regions(net, BOX, progress=False).num_regions == 1
    for backend in AVAILABLE:
        res = count_regions(net, BOX, backend=backend, return_codes=True)
        assert res.exact and res.count == 1
        np.testing.assert_array_equal(res.codes[1][0], [True, False, False])
        np.testing.assert_array_equal(res.keys, partax.region_ids(net, np.zeros((1, 2), np.float32))[:, 1])


# -- soundness under solver failures ----------------------------------------------------------------

def _stable_first_layer_net():
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(2, 5)).astype(np.float32)
    b1 = np.full(5, 10.0, np.float32)                    # every unit stably active on [-1, 1]^2
    W2 = rng.normal(size=(5, 4)).astype(np.float32)
    b2 = rng.normal(size=4).astype(np.float32)
    return partax.Net.from_arrays([W1, b1, W2, b2, np.ones((4, 1), np.float32), np.zeros(1, np.float32)])


def test_milp_bounds_with_no_binaries_are_sound():
    # layer 1 fully stable: the MILP of layer 2 has no integer variables (HiGHS solves a pure LP)
    net = _stable_first_layer_net()
    box = partax.Box(-1.0, 1.0)
    given = preactivation_bounds(net, box, "interval")
    assert not formulate(net, box, depth=1, bounds=given, margin=0.0).integer.any()
    x = box.sample(jax.random.key(0), 100_000, 2).astype(np.float64)
    W1, W2 = (np.asarray(W, np.float64) for W in net.weights[:2])
    b1, b2 = (np.asarray(b, np.float64) for b in net.biases[:2])
    g = np.maximum(x @ W1 + b1, 0) @ W2 + b2            # NumPy float64 oracle
    for backend in AVAILABLE:
        lo, hi = milp_preactivation_bounds(net, box, given, backend=backend)[1]
        assert np.all(lo <= g.min(0)) and np.all(hi >= g.max(0))                # sound
        scale = g.max(0) - g.min(0)
        # exact (the map is affine here): dense samples come within a few percent of the extremes
        assert np.all(g.min(0) - lo <= 0.05 * scale) and np.all(hi - g.max(0) <= 0.05 * scale)


def test_milp_bound_outside_the_given_bounds_raises(monkeypatch):
    import partax.milp as milp

    net = _stable_first_layer_net()
    box = partax.Box(-1.0, 1.0)
    given = preactivation_bounds(net, box, "interval")
    solve = milp._HighsModel.solve

    def wrong(self, time_limit):  # a solver "proving" a minimum of 1e6, far above any sound bound
        res = solve(self, time_limit)
        return res._replace(dual_bound=1e6 if self.sense == "min" else res.dual_bound)

    monkeypatch.setattr(milp._HighsModel, "solve", wrong)
    with pytest.raises(RuntimeError, match="solver failure"):
        milp_preactivation_bounds(net, box, given)

    def error(self, time_limit):  # an "error:*" status: its (finite) dual bound must not be used
        res = solve(self, time_limit)
        return res._replace(status="error:kSolveError", dual_bound=0.0)

    monkeypatch.setattr(milp._HighsModel, "solve", error)
    out = milp_preactivation_bounds(net, box, given)
    assert np.isnan(out[1][0]).all() and np.isnan(out[1][1]).all()


def test_undecided_check_is_flagged_not_cut(monkeypatch):
    import partax.milp as milp

    net = _net(1, [2, 4, 3, 1], 0.5)
    true = enumerate_regions(net, BOX, progress=False).num_regions
    b = preactivation_bounds(net, BOX, "interval")
    # every solution fails the direct float64 check (full margin) and goes to the fixed-binaries
    # re-check (half the margin, still checked for real): alone it confirms every region
    verify = milp._verify
    monkeypatch.setattr(milp, "_verify", lambda form, *a: form.margin < 1e-6 and verify(form, *a))
    res = count_regions(net, BOX, backend="highs", bounds=b)
    assert res.exact and res.count == true and res.stats["lp_checks"] >= true
    # a re-check that cannot decide (time limit, solver error) stops the count, flagged
    monkeypatch.setattr(milp, "_verify_fixed", lambda *a, **k: "undecided")
    res = count_regions(net, BOX, backend="highs", bounds=b)
    assert not res.exact and res.status == "check_undecided" and res.count == 0


@needs_scip
def test_invalid_scip_count_is_not_exact(monkeypatch):
    import partax.milp as milp

    net = _net(0, [2, 4, 1])
    assert count_regions(net, BOX, backend="scip").exact
    monkeypatch.setattr(milp, "_scip_counted", lambda m: (7, False))   # SCIP's valid flag False
    res = count_regions(net, BOX, backend="scip")
    assert not res.exact and res.status == "count_invalid"


def test_numpy_numbers_accepted_bools_refused():
    net = _net(0, [2, 4, 1])
    ref = count_regions(net, BOX).count
    assert count_regions(net, BOX, margin=np.float32(1e-6)).count == ref
    assert count_regions(net, BOX, margin=np.float64(1e-6)).count == ref
    pb = parity_lower_bound(net, BOX, trials=1, alpha=np.float32(1.0), margin=np.float32(1e-6))
    assert pb.alpha == 1.0 and pb.delta == 0.5
    for bad in (True, np.bool_(True), "1e-6", float("inf"), -1.0):
        with pytest.raises(ValueError, match="margin"):
            count_regions(net, BOX, margin=bad)
        with pytest.raises(ValueError, match="alpha"):
            parity_lower_bound(net, BOX, alpha=bad)
