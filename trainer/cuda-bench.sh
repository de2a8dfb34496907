#!/usr/bin/env bash
# Trains the `small` preset on a CUDA GPU within a time budget and reports its throughput.
#
#   trainer/cuda-bench.sh [DATA] [OUT]
#
# DATA defaults to ../shared/data/tinyshakespeare.txt (the trainer's default corpus path, a folder
# beside the checkout; the file is public at
# https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt),
# OUT to runs/cuda-bench. Its runs on one NVIDIA H200 (2026-11-26) are in trainer/README.md,
# "CUDA: measured on an H200".
# Environment:
#   TRAINER_BIN  a trainer built with `--features cuda` (default: build one with cargo)
#   TOOLS_BIN    a tools binary; when set (or cargo is there) the run is packed into OUT/small.bin
#   BUDGET_S     seconds for the main run (default 300); its step count is chosen from a probe run
#   STEPS        train exactly this many steps instead (no probe run)
#   TRAIN_ARGS   more trainer flags for the main run, e.g. "--dropout 0.1"
#
# Steps: show the GPU; find libnvrtc (burn-cuda compiles its kernels at run time); a 30-step
# probe run measures the steady-state step time (steps 10–30, after kernel compilation and
# autotuning); then the small preset trains for as many steps as fit in BUDGET_S (at most its
# preset's 5000), with the preset's full schedule compressed to that length; then pack.
set -euo pipefail

DATA=${1:-../shared/data/tinyshakespeare.txt}
OUT=${2:-runs/cuda-bench}
BUDGET_S=${BUDGET_S:-300}
mkdir -p "$OUT"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
    echo "no NVIDIA GPU answers (nvidia-smi failed)" >&2
    exit 1
}

if [[ -z "${TRAINER_BIN:-}" ]]; then
    echo "== build (cargo build --release -p trainer --features cuda)"
    cargo build --release -p trainer --features cuda
    TRAINER_BIN=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/trainer
fi

# cudarc loads libcuda (the driver) and libnvrtc (the toolkit's run-time compiler) with dlopen;
# put the folder of each on the library path when the loader does not already know it.
for lib in libcuda libnvrtc; do
    if ! ldconfig -p | grep -q "$lib\.so"; then
        f=$(find /usr/local /opt /usr/lib -name "$lib.so*" 2>/dev/null | sort | head -1 || true)
        if [[ -n $f ]]; then
            export LD_LIBRARY_PATH="$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            echo "$lib: $f"
        else
            echo "$lib: not found (the trainer will fall back to an error)" >&2
        fi
    fi
done

# Seconds per step between two steps of a run's metrics.csv (column 9 is wall_s).
step_time() { # file from to
    awk -F, -v a="$2" -v b="$3" '$1==a {wa=$9} $1==b {wb=$9} END {printf "%.6f", (wb-wa)/(b-a)}' "$1"
}

if [[ -z "${STEPS:-}" ]]; then
    echo "== probe: small preset, 30 steps"
    rm -rf "$OUT/probe"
    t0=$SECONDS
    "$TRAINER_BIN" --backend cuda --preset small --data "$DATA" --out "$OUT/probe" \
        --steps 30 --eval-every 1000 >/dev/null 2>"$OUT/probe.log" || {
        tail -20 "$OUT/probe.log"
        echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
        ldconfig -p | grep -E 'libcuda|libnvrtc' || true
        exit 1
    }
    grep -E 'backend' "$OUT/probe.log"
    probe_s=$(step_time "$OUT/probe/metrics.csv" 10 30)
    echo "probe: $((SECONDS - t0)) s wall (kernel compilation, autotune, final eval included)"
    echo "probe: steady step $probe_s s = $(awk -v s="$probe_s" 'BEGIN {printf "%.0f", 64 * 256 / s}') tok/s"

    # Leave a fifth of the budget for evaluation, export and the final quantized eval.
    steps=$(awk -v b="$BUDGET_S" -v s="$probe_s" 'BEGIN {printf "%d", b * 0.8 / s}')
    ((steps > 5000)) && steps=5000
    ((steps < 100)) && steps=100
else
    steps=$STEPS
fi
warmup=$((steps * 3 / 50)) # the preset's 300 of 5000
echo "== main run: small preset, $steps steps (budget ${BUDGET_S}s)"
rm -rf "$OUT/small"
t0=$SECONDS
"$TRAINER_BIN" --backend cuda --preset small --data "$DATA" --out "$OUT/small" \
    --steps "$steps" --warmup "$warmup" --checkpoint-every 100000 ${TRAIN_ARGS:-} >/dev/null 2>"$OUT/small.log" || {
    tail -20 "$OUT/small.log"
    exit 1
}
grep -E 'backend|params|val|done' "$OUT/small.log"
echo "main run: $((SECONDS - t0)) s wall"
echo "steady step (steps 50..$steps): $(step_time "$OUT/small/metrics.csv" 50 "$steps") s"
cat "$OUT/small/summary.json"

if [[ -z "${TOOLS_BIN:-}" ]] && command -v cargo >/dev/null; then
    cargo build --release -p tools
    TOOLS_BIN=$(dirname "$TRAINER_BIN")/tools
fi
if [[ -n "${TOOLS_BIN:-}" ]]; then
    echo "== pack"
    "$TOOLS_BIN" pack --run "$OUT/small" --out "$OUT/small.bin"
    "$TOOLS_BIN" inspect "$OUT/small.bin" | head -20
fi
