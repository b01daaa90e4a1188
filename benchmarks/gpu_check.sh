#!/usr/bin/env bash
# GPU check of labelertok: CUDA-only notebook cells, the study's 2-labeler run (ViT-B-32, 224 px, bf16, 13 epochs),
# the seed-style loop, one ViT-L-14 epoch. See benchmarks/gpu_check.py for what each stage measures.
#
#   bash benchmarks/gpu_check.sh               on a GPU, < 8 min; appends a row to benchmarks/RESULTS.md and writes
#                                              benchmarks/gpu/{gpu_check.json,gpu_check.md,gpu_check.log,cuda_cells.log}
#   bash benchmarks/gpu_check.sh --cpu-smoke   a tiny version on the CPU (< 1 min), written to a temporary folder
#
# With OUT set, the result files (and the updated RESULTS.md) are copied into $OUT as well.
# PYTHON picks the interpreter (default: python3); GPU_CHECK_TIMEOUT is a hard outer limit in seconds (default 540).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY="${PYTHON:-python3}"
logs=()
case " $* " in
  *" --cpu-smoke "*) ;;
  *) mkdir -p benchmarks/gpu && logs+=(benchmarks/gpu/gpu_check.log) ;;
esac
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && logs+=("$OUT/gpu_check.log"); fi
timeout -k 15 "${GPU_CHECK_TIMEOUT:-540}" "$PY" benchmarks/gpu_check.py "$@" 2>&1 | tee "${logs[@]}"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "gpu_check: stopped by the outer ${GPU_CHECK_TIMEOUT:-540}s limit; partial results were written" >&2
exit "$rc"
