"""Test configuration: several CPU devices for the sharded tests, set before any JAX work."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("PARTAX_CACHE_DIR", "")  # the CLI's persistent compilation cache stays off in tests

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)

import pytest  # noqa: E402


@pytest.fixture
def weak_keys(monkeypatch):
    """Only the 64-bit keys are weakened (1 bit per lane: 4 keys in all); the per-layer hashes
    and the check lanes, the fingerprints the collision check compares, stay strong."""

    import numpy as np

    import partax.coding as codes_module

    real = codes_module._range_keys

    def weak(layer_hashes, ranges, start=1, salt=codes_module._KEY_SALT):
        out = real(layer_hashes, ranges, start, salt)
        return [k & np.uint32(1) for k in out] if salt == codes_module._KEY_SALT else out

    monkeypatch.setattr(codes_module, "_range_keys", weak)
    jax.clear_caches()
    yield
    monkeypatch.undo()
    jax.clear_caches()
