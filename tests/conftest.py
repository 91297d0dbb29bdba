"""Test configuration: several CPU devices for the sharded tests, set before any JAX work."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
