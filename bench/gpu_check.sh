#!/usr/bin/env bash
# The checks that need a CUDA device, in one go (CI has none): the CUDA tests, the offline
# training benchmark in fp32 and bf16, and the online learner's per-frame timing.
#
# Usage, from the repository root on a GPU machine whose python3 has torch (the ROS wheels are
# not needed; rosbags and its dependencies are):
#     PYTHONPATH=src/devbot:src/world_model_node:src/toroidal_sim bash bench/gpu_check.sh [OUT_DIR]
# Logs and JSON reports go to OUT_DIR (default saved/reports/gpu_check_<time>).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-saved/reports/gpu_check_$(date +%Y%m%d_%H%M%S)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0

step() {   # step NAME TIMEOUT_S COMMAND...: run, log to OUT/NAME.log, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date +%T))"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "=== $name: exit $rc"
    [ $rc -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' \
    >>"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

step offline_fp32 240 $PY bench/bench_offline_train.py --device cuda --threads 4 --batch-sizes 1,32,128 \
    --steps 5 --online-frames 30 --closed --out "$OUT"
step offline_bf16 240 $PY bench/bench_offline_train.py --device cuda --threads 4 --batch-sizes 32,128,256 \
    --steps 5 --online-frames 10 --precision bf16 --out "$OUT"
step online_timing 180 $PY bench/bench_world_model.py --device cuda --threads 4 --timing-only --timing-frames 50 \
    --out "$OUT"
step cuda_tests 420 $PY -m pytest -q -p no:cacheprovider -m cuda src/world_model_node/test/test_cuda.py
exit $status
