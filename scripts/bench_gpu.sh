#!/usr/bin/env bash
# Full `partax bench` on a machine with an NVIDIA GPU and no internet, against its
# preinstalled JAX (CUDA). Wheels that machine lacks (highspy) can be put in .whl/ beside
# the checkout; they are installed from there without any index.
#
#   bash scripts/bench_gpu.sh [OUT_DIR]      # default: benchmarks/<date>-<gpu>
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps .whl/*.whl
fi
python3 -m pip install -q --no-deps --no-build-isolation -e .
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' || echo gpu)
out=${1:-benchmarks/$(date +%F)-${gpu}}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print('devices:', jax.devices())"
python3 -m partax.cli bench --out "$out"
echo "wrote $out/bench.md"
