"""Recompiles that would hurt are guarded: the partition kernel traces once per chunk shape
(whatever the number of inputs, whatever the parameter values: a Tracer's checkpoints), and
codes / region_ids compile for a few power-of-two batch sizes only."""

import chex
import jax
import numpy as np
import pytest

import partax

import partax.engine as engine
import partax.coding as codes_module


@pytest.fixture(autouse=True)
def _fresh_counters():
    chex.clear_trace_counter()
    yield
    chex.clear_trace_counter()


def test_partition_kernel_traces_once_across_sizes_and_checkpoints(monkeypatch):
    guarded = jax.jit(chex.assert_max_traces(engine._kernel, n=1), static_argnames=("boundary_tol", "with_words", "check"))
    monkeypatch.setattr(engine, "_array_kernel", guarded)
    rng = np.random.default_rng(0)
    for seed, n in enumerate([1000, 4096, 3333, 17]):  # new parameters each time: checkpoints
        net = partax.mlp(jax.random.key(seed), [6, 16, 12, 2], bias_std=0.2)
        x = rng.normal(size=(n, 6)).astype(np.float32)
        partax.partition(net, x, batch_size=1024, progress=False)
    with pytest.raises(AssertionError, match="traced > 1"):  # the guard is live: a new chunk shape
        partax.partition(net, x, batch_size=512, progress=False)


def test_sampler_kernel_traces_once_across_checkpoints(monkeypatch):
    def kernel(net, sampler, blocks, boundary_tol, with_words, check):
        x = sampler.generate(blocks).astype(net.dtype)
        return engine._kernel(net, x, boundary_tol, with_words, check), None

    guarded = jax.jit(chex.assert_max_traces(kernel, n=1), static_argnames=("boundary_tol", "with_words", "check"))
    monkeypatch.setattr(engine, "_sampler_kernel", guarded)
    for seed in range(3):
        net = partax.mlp(jax.random.key(seed), [3, 8, 2])
        src = partax.sources.uniform_box(0.0, 1.0, 10_000, jax.random.key(seed), dim=3)
        partax.partition(net, src, batch_size=8192, progress=False)


def test_codes_and_region_ids_compile_for_power_of_two_buckets(monkeypatch):
    guarded_codes = jax.jit(chex.assert_max_traces(codes_module._codes_jit.__wrapped__, n=4))
    guarded_ids = jax.jit(chex.assert_max_traces(codes_module.codes_and_keys, n=4), static_argnames=("ranges",))
    monkeypatch.setattr(codes_module, "_codes_jit", guarded_codes)
    monkeypatch.setattr(codes_module, "_region_ids_jit", guarded_ids)
    net = partax.mlp(jax.random.key(0), [3, 8, 8, 2])
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    full_ids = partax.region_ids(net, x)
    full_bits = partax.codes(net, x).bits(2)
    for n in [1, 3, 5, 8, 9, 15, 16, 17, 30, 33, 50, 64]:  # buckets 8, 16, 32, 64
        assert (partax.region_ids(net, x[:n]) == full_ids[:n]).all()
        assert (partax.codes(net, x[:n]).bits(2) == full_bits[:n]).all()
