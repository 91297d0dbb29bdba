#!/usr/bin/env bash
# The partition workloads of `partax bench` on a machine with an NVIDIA GPU and no internet,
# against its preinstalled JAX (CUDA), in one command that fits a 10-minute slot. Each workload
# is measured on both reduction paths (reduce="host" and reduce="device", side by side, with the
# bytes fetched from the device per input, the kernel alone, and with inputs drawn on the device
# by a sampler); then the conv net of `partax bench`'s cnn workload (conv, max pool, conv, dense on
# 8x8 inputs, issue 14) the same way, beside its forward pass, in its own run (OUT_DIR/cnn); then
# the IB net's throughput with on-device uniform sampling at 2^28 (and 2^30 if fast) inputs on the
# device path; then the codes of the GPU are compared with the CPU's on the same inputs (the
# MLPs and the conv net). Wheels that machine lacks can be put in .whl/ beside the checkout; they are
# installed from there without any index.
#
#   bash scripts/bench_gpu.sh [OUT_DIR] [--quick]   # default: benchmarks/<date>-<gpu>, e.g. -h200
#
# Limits (all within a 10-minute slot): PARTAX_BENCH_TIMEOUT seconds for the MLP bench (default
# 300), PARTAX_CNN_TIMEOUT for the cnn one (default 100), 90 for the sampled IB run, 60 for the
# codes check; each step writes its file as it ends.
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
# "NVIDIA H200" -> h200 (the model, lower case)
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | sed 's/^NVIDIA //' \
  | tr '[:upper:] ' '[:lower:]_' || true)
out=${out:-benchmarks/$(date +%F)-${gpu:-gpu}}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import jax; print('devices:', jax.devices())"
status=0
timeout "${PARTAX_BENCH_TIMEOUT:-300}" python3 -m partax.cli bench "${quick[@]}" --only ib mlp256 mlp1024 --out "$out" \
  || status=$?
# the conv net (issue 14, item 7: partition >= 0.85x its forward pass), its own run and files
timeout "${PARTAX_CNN_TIMEOUT:-100}" python3 -m partax.cli bench "${quick[@]}" --only cnn --out "$out/cnn" \
  || status=$?
# the IB net with inputs drawn on the device (issue 19's target: >= 1e9 inputs/s), device path
timeout 90 python3 - "$out" <<'EOF' || status=$?
import json, sys, time
import jax, partax
net = partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1)
out = {"backend": jax.default_backend(), "runs": []}
def run(n, reps):
    src = partax.sources.uniform_box(0.0, 1.0, n, jax.random.key(1), dim=12)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        p = partax.partition(net, src, reduce="device", progress=False)
        best = min(best, time.perf_counter() - t0)
    return {"inputs": n, "seconds": best, "inputs_per_s": n / best,
            "regions_prefix_last": int(p.num_regions("prefix")[-1]), "bytes_per_input": p.device_to_host_bytes / n}
run(2**22, 2)  # compiles every table size the larger runs meet
for n in (2**28, 2**30):
    r = run(n, 2 if n < 2**30 else 1)
    out["runs"].append(r)
    print(f"ib sampled, device path: {n} inputs in {r['seconds']:.2f} s: {r['inputs_per_s']:.3g} inputs/s", flush=True)
    with open(f"{sys.argv[1]}/ib_sampled.json", "w") as f:
        json.dump(out, f, indent=1)
    if r["inputs_per_s"] < 2e8:  # 2^30 inputs would take over 5 s
        break
EOF
# codes on the GPU equal the CPU's on the same inputs (both float32, precision=HIGHEST)
timeout 60 python3 - "$out" <<'EOF' || status=$?
import json, sys
import jax, numpy as np, partax
from partax.bench.partition import digits_cnn
out = {}
nets = {"ib": partax.mlp(jax.random.key(0), [12, 10, 7, 5, 4, 3, 2], bias_std=0.1),
        "mlp256": partax.mlp(jax.random.key(0), [784, 256, 256, 256, 10], bias_std=0.1), "cnn": digits_cnn()}
for name, net in nets.items():
    x = np.random.default_rng(0).random((2**16, net.input_dim), dtype=np.float32)
    gpu = partax.codes(net, x)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = partax.codes(jax.device_put(net, jax.devices("cpu")[0]), x)
    same = np.all([np.all(a == b, axis=1) for a, b in zip(gpu.words, cpu.words)], axis=0)
    out[name] = {"inputs": len(x), "codes_equal": int(same.sum()), "backend": jax.default_backend()}
    print(name, f"codes equal to the CPU's on {int(same.sum())} of {len(x)} inputs")
with open(f"{sys.argv[1]}/codes_vs_cpu.json", "w") as f:
    json.dump(out, f, indent=1)
EOF
echo "wrote $out (bench.md, bench.json, cnn/bench.*, ib_sampled.json, codes_vs_cpu.json); status $status"
exit $status
