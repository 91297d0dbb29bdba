"""Test configuration: several CPU devices for the sharded tests, set before any JAX work."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("PARTAX_CACHE_DIR", "")  # the CLI's persistent compilation cache stays off in tests

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
