#!/usr/bin/env bash
# The GPU check (docs/design.md, "Where the numbers come from"): on a machine with a CUDA GPU and losslines installed, run the
# gpu-marked tests (the compiled Triton kernels against their torch references, vmap vs loop on
# CUDA) and the GPU benchmark (bench/gpu_bench.py: ResNet-20, 4,000 CIFAR-shaped samples, 167
# points; loop vs vmap vs vmap+Triton), all within 8 minutes, and write gpu_check.json to $OUT
# (if set) or the current directory.
#
#   bash bench/gpu_check.sh            # from anywhere; PYTHON=... picks the interpreter
#
# Exit status: 0 when the tests passed and the benchmark completed; 1 when the tests failed (the
# benchmark still runs and its JSON records the failure); the benchmark's own status otherwise
# (124 = its time limit). Without a CUDA GPU it writes a JSON saying so and exits 0.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${OUT:-$PWD}"
PY="${PYTHON:-python}"
TESTS_LIMIT_S="${GPU_CHECK_TESTS_S:-180}"   # hard limit of the gpu-marked tests
BENCH_LIMIT_S="${GPU_CHECK_BENCH_S:-240}"   # hard limit of the benchmark (it starts no method after BENCH_LIMIT_S-60 s)
mkdir -p "$DEST"
JSON="$DEST/gpu_check.json"
LOG="$DEST/gpu_check_tests.log"
cd "$REPO"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU is visible to torch on $(hostname); nothing to check here (the GPU figures stay open)." >&2
    "$PY" -c 'import json, sys; json.dump({"status": "no_cuda", "message": "no CUDA GPU visible to torch"}, open(sys.argv[1], "w"), indent=2)' "$JSON"
    echo "gpu_check: wrote $JSON" >&2
    exit 0
fi

echo "gpu_check: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__)')"
echo "gpu_check: gpu-marked tests (limit ${TESTS_LIMIT_S} s) ..."
tests_rc=0
timeout --kill-after=10 "$TESTS_LIMIT_S" "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/ >"$LOG" 2>&1 || tests_rc=$?
tail -n 15 "$LOG"
echo "gpu_check: tests exit status $tests_rc"

echo "gpu_check: benchmark (limit ${BENCH_LIMIT_S} s) ..."
bench_rc=0
timeout --kill-after=10 "$BENCH_LIMIT_S" "$PY" bench/gpu_bench.py --out "$JSON" --budget-s "$((BENCH_LIMIT_S - 60))" \
    --tests-rc "$tests_rc" --tests-log "$LOG" || bench_rc=$?
echo "gpu_check: benchmark exit status $bench_rc; results in $JSON"

if [ "$bench_rc" -ne 0 ]; then
    exit "$bench_rc"
fi
if [ "$tests_rc" -ne 0 ]; then
    exit 1
fi
exit 0
