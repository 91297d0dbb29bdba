#!/usr/bin/env bash
# The partition workloads of `partax bench` on a machine with an NVIDIA GPU and no internet,
# against its preinstalled JAX (CUDA), in one command that fits a 10-minute slot. Each workload
# is measured on both reduction paths (reduce="host" and reduce="device", side by side, with the
# bytes fetched from the device per input, and with inputs drawn on the device by a sampler);
# then the codes of the GPU are compared with the CPU's on the same inputs. Wheels that machine
# lacks can be put in .whl/ beside the checkout; they are installed from there without any index.
#
#   bash scripts/bench_gpu.sh [OUT_DIR] [--quick]   # default: benchmarks/<date>-<gpu>
#
# Limits: PARTAX_BENCH_TIMEOUT seconds for the bench (default 420), 120 for the codes check.
set -euo pipefail
cd "$(dirname "$0")/.."
out=""
quick=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=(--quick) ;;
    *) out="$arg" ;;
  esac
done
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps .whl/*.whl
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || echo "pip install -e . failed: running from the checkout"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' ' '_' || true)
out=${out:-benchmarks/$(date +%F)-${gpu:-gpu}}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print('devices:', jax.devices())"
status=0
timeout "${PARTAX_BENCH_TIMEOUT:-420}" python3 -m partax.cli bench "${quick[@]}" --only ib mlp256 mlp1024 --out "$out" \
  || status=$?
# codes on the GPU equal the CPU's on the same inputs (both float32, precision=HIGHEST)
timeout 120 python3 - "$out" <<'EOF' || status=$?
import json, sys
import jax, numpy as np, partax
out = {}
for name, widths in (("ib", [12, 10, 7, 5, 4, 3, 2]), ("mlp256", [784, 256, 256, 256, 10])):
    net = partax.mlp(jax.random.key(0), widths, bias_std=0.1)
    x = np.random.default_rng(0).random((2**16, widths[0]), dtype=np.float32)
    gpu = partax.codes(net, x)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = partax.codes(jax.device_put(net, jax.devices("cpu")[0]), x)
    same = np.all([np.all(a == b, axis=1) for a, b in zip(gpu.words, cpu.words)], axis=0)
    out[name] = {"inputs": len(x), "codes_equal": int(same.sum()), "backend": jax.default_backend()}
    print(name, f"codes equal to the CPU's on {int(same.sum())} of {len(x)} inputs")
with open(f"{sys.argv[1]}/codes_vs_cpu.json", "w") as f:
    json.dump(out, f, indent=1)
EOF
echo "wrote $out (bench.md, bench.json, codes_vs_cpu.json); status $status"
exit $status
