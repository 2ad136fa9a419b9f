#!/usr/bin/env bash
# The GPU check (docs/design.md, "Where the numbers come from"): on a machine with a CUDA GPU and
# losslines installed, one command that finishes within 8 minutes on an H200-class GPU:
#   1. the gpu-marked tests (the compiled Triton kernels against their torch references, vmap and
#      the compiled strategy on CUDA), at most GPU_CHECK_TESTS_S seconds;
#   2. the GPU benchmark (bench/gpu_bench.py: ResNet-20 at the paper's size, 4,000 + 1,000 + 128
#      CIFAR-shaped samples, 167 points; loop, vmap, compiled if registered,
#      the original-style baseline, the forward bound, vmap+Triton; ratios, MFU), at most
#      GPU_CHECK_BENCH_S seconds,
# and write gpu_check.json (figures) and gpu_check_tests.log to $OUT (if set) or the current
# directory; `python bench/report.py "$OUT"/gpu_check.json` prints the table.
#
#   bash bench/gpu_check.sh                       # from anywhere; PYTHON=... picks the interpreter
#   GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh   # no GPU needed: the same steps on CPU at tiny sizes
#
# The dry run collects the gpu-marked tests instead of running them (on CPU they skip) and runs
# the benchmark with --dry-run (CPU, tiny sizes), so every step but CUDA itself is exercised.
# GPU_CHECK_METHODS (comma-separated) narrows the benchmark's methods.
#
# Time: 140 s + 290 s hard limits, each followed by at most 10 s to die, plus interpreter
# starts: under 8 minutes. Exit status: 0 when the tests passed and the benchmark completed; 1
# when the tests failed (the benchmark still runs and its JSON records the failure); the
# benchmark's own status otherwise (124 = its time limit). Without a CUDA GPU (and without
# GPU_CHECK_DRY_RUN) it writes a JSON saying so and exits 0.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${OUT:-$PWD}"
PY="${PYTHON:-python}"
DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
TESTS_LIMIT_S="${GPU_CHECK_TESTS_S:-140}"   # hard limit of the gpu-marked tests
BENCH_LIMIT_S="${GPU_CHECK_BENCH_S:-290}"   # hard limit of the benchmark (it starts no method after BENCH_LIMIT_S-60 s)
mkdir -p "$DEST"
JSON="$DEST/gpu_check.json"
LOG="$DEST/gpu_check_tests.log"
cd "$REPO"

bench_args=(--out "$JSON" --budget-s "$((BENCH_LIMIT_S - 60))")
tests_args=(-m gpu -q -p no:cacheprovider tests/)
if [ "$DRY_RUN" = "1" ]; then
    echo "gpu_check: DRY RUN on CPU (GPU_CHECK_DRY_RUN=1): tests collected, not run; benchmark at tiny sizes"
    bench_args+=(--dry-run)
    tests_args+=(--collect-only)
elif ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA GPU is visible to torch on $(hostname); nothing to check here (the GPU figures stay open)." >&2
    "$PY" -c 'import json, sys; json.dump({"status": "no_cuda", "message": "no CUDA GPU visible to torch"}, open(sys.argv[1], "w"), indent=2)' "$JSON"
    echo "gpu_check: wrote $JSON" >&2
    exit 0
else
    echo "gpu_check: $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__)')"
fi
if [ -n "${GPU_CHECK_METHODS:-}" ]; then
    bench_args+=(--methods "$GPU_CHECK_METHODS")
fi

echo "gpu_check: gpu-marked tests (limit ${TESTS_LIMIT_S} s) ..."
tests_rc=0
timeout --kill-after=10 "$TESTS_LIMIT_S" "$PY" -m pytest "${tests_args[@]}" >"$LOG" 2>&1 || tests_rc=$?
tail -n 15 "$LOG"
echo "gpu_check: tests exit status $tests_rc"

echo "gpu_check: benchmark (limit ${BENCH_LIMIT_S} s) ..."
bench_rc=0
timeout --kill-after=10 "$BENCH_LIMIT_S" "$PY" bench/gpu_bench.py "${bench_args[@]}" \
    --tests-rc "$tests_rc" --tests-log "$LOG" || bench_rc=$?
echo "gpu_check: benchmark exit status $bench_rc; results in $JSON"
"$PY" bench/report.py "$JSON" || true

if [ "$bench_rc" -ne 0 ]; then
    exit "$bench_rc"
fi
if [ "$tests_rc" -ne 0 ]; then
    exit 1
fi
exit 0
