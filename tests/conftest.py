"""Test configuration: several CPU devices for the sharded tests, set before any JAX work."""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("PARTAX_CACHE_DIR", "")  # the CLI's persistent compilation cache stays off in tests
# One XLA compilation cache for the whole test session, fresh each session, shared by the pytest-xdist
# workers and by the processes the tests spawn (through the environment): the same small programs
# are compiled in many files and in every spawned process.
_OWN_XLA_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ  # made here: removed at the end
if _OWN_XLA_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="partax-tests-xla-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

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


def pytest_unconfigure(config):
    """The session's compilation cache goes with the session (the controller, not a worker, made it)."""
    if _OWN_XLA_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
