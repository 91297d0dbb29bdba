#!/usr/bin/env bash
# Runs one command as NUM_PROCESSES cooperating JAX processes on this machine.
#
#   scripts/launch_local.sh NUM_PROCESSES [options] -- COMMAND [ARGS...]
#
# Options:
#   --port PORT               coordinator port on 127.0.0.1 (default: a free port)
#   --cpu-devices K           CPU devices per process (sets JAX_NUM_CPU_DEVICES; CPU runs)
#   --gpus-per-process K      give process i the GPUs i*K .. i*K+K-1 (CUDA_VISIBLE_DEVICES)
#   --logs DIR                per-process logs (default: runs/launch_local/<timestamp>)
#   --timeout SECONDS         kill the job after this long (default: none)
#
# Every process gets JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT, PARTAX_NUM_PROCESSES and
# PARTAX_PROCESS_ID; partax.distributed.initialize() reads them. Process 0's output is
# echoed; all logs are kept. The exit status is the first non-zero one of the processes; if
# one process fails the others are stopped (by PID, only the ones started here).
#
# Example (2 processes x 2 CPU devices):
#   scripts/launch_local.sh 2 --cpu-devices 2 -- \
#       python experiments/sweep_checkpoints.py --checkpoints ckpts/ --out runs/sweep
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
[[ $# -ge 1 ]] || usage
case "$1" in -h|--help) usage 0 ;; esac
NPROC=$1; shift
[[ "$NPROC" =~ ^[1-9][0-9]*$ ]] || { echo "launch_local.sh: NUM_PROCESSES must be a positive integer, got '$NPROC'" >&2; exit 2; }
PORT="" CPU_DEVICES="" GPUS="" LOGS="" TIMEOUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT=$2; shift 2 ;;
    --cpu-devices) CPU_DEVICES=$2; shift 2 ;;
    --gpus-per-process) GPUS=$2; shift 2 ;;
    --logs) LOGS=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) usage 0 ;;
    *) echo "launch_local.sh: unknown option '$1' (the command goes after --)" >&2; exit 2 ;;
  esac
done
[[ $# -ge 1 ]] || { echo "launch_local.sh: no command given after --" >&2; exit 2; }
if [[ -z "$PORT" ]]; then
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
LOGS=${LOGS:-runs/launch_local/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$LOGS"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup INT TERM

for ((i = 0; i < NPROC; i++)); do
  (
    export JAX_COORDINATOR_ADDRESS="127.0.0.1:$PORT" PARTAX_NUM_PROCESSES="$NPROC" PARTAX_PROCESS_ID="$i"
    [[ -n "$CPU_DEVICES" ]] && export JAX_NUM_CPU_DEVICES="$CPU_DEVICES" JAX_PLATFORMS=cpu
    if [[ -n "$GPUS" ]]; then
      export CUDA_VISIBLE_DEVICES=$(seq -s, $((i * GPUS)) $((i * GPUS + GPUS - 1)))
    fi
    if [[ -n "$TIMEOUT" ]]; then exec timeout "$TIMEOUT" "$@"; else exec "$@"; fi
  ) >"$LOGS/process$i.log" 2>&1 &
  pids+=($!)
done
echo "launch_local.sh: $NPROC processes, coordinator 127.0.0.1:$PORT, logs in $LOGS" >&2
tail -n +1 -f "$LOGS/process0.log" --pid "${pids[0]}" &
tailer=$!

status=0
remaining=("${pids[@]}")
while [[ ${#remaining[@]} -gt 0 ]]; do
  if wait -n "${remaining[@]}"; then rc=0; else rc=$?; fi
  still=()
  for p in "${remaining[@]}"; do kill -0 "$p" 2>/dev/null && still+=("$p"); done
  remaining=("${still[@]+"${still[@]}"}")
  if [[ $rc -ne 0 && $status -eq 0 ]]; then
    status=$rc
    echo "launch_local.sh: a process exited with status $rc; stopping the others (logs in $LOGS)" >&2
    cleanup
  fi
done
wait "$tailer" 2>/dev/null || true
exit $status
