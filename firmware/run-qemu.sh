#!/usr/bin/env bash
# Builds the `qemu` board of the firmware and runs it on QEMU mps2-an505 (Cortex-M33), or with
# BOARD=an521 the `an521` board on mps2-an521 (two Cortex-M33: the two-core twin of the Pico 2).
#
#   firmware/run-qemu.sh MODEL PROMPT TOKENS SEED [TEMPERATURE [TOP_K]]
#   firmware/run-qemu.sh --serial MODEL|none
#
# One-shot mode (the first form): the model is embedded and the settings are fixed at build
# time; it prints on stdout exactly the text the firmware writes (prompt + continuation),
# under `timeout`. TEMPERATURE defaults to 0.8 and TOP_K to 0, as in `tools generate`.
#
# Serial mode (`--serial`): the interactive chat protocol (`runtime::chat`, the same as on the
# Pico 2 and in `tools chat`) with the UART on stdin/stdout. The firmware is built without a
# model and reads it, as the board does, from the model partition at 0x10100000, where QEMU's
# generic loader places MODEL (`none`: leave the partition empty). On a terminal, type at it
# (Ctrl-C stops a generation, Ctrl-D quits); from a pipe, it exits when stdin ends (the script
# then sends Ctrl-D). The firmware echoes what it reads and ends lines with CRLF, as a serial
# terminal expects.
#
# Exit status: 0 on success; the firmware's own status on failure (1 application error
# such as a rejected model, 2 HardFault, 3 stack overflow, 101 panic); 124 if it hung
# (QEMU_TIMEOUT seconds, default 300; not applied to a serial session on a terminal);
# 125 for a usage or build error (a --serial MODEL larger than the 3 MiB partition included).
# A failure's one-line reason ("firmware: ...") comes on the UART, i.e. stdout, after any
# text, as on the Pico 2. stderr: build errors, a summary line on failure, and the defmt log
# decoded by `defmt-print` when that is installed (`cargo install defmt-print --locked`).
#
# Environment: BOARD (qemu: mps2-an505, the default; an521: mps2-an521, two cores),
# QEMU_TIMEOUT (seconds), QEMU_ICOUNT=0 (drop `-icount shift=7`, which makes virtual time,
# and so the instruction counts in the log, deterministic at ~35% more run time),
# QEMU_KEEP=DIR (keep the ELF and defmt.bin there),
# DEFMT_QUIET=1 (do not print the defmt log), FIRMWARE_SELFTEST (see build.rs).
set -uo pipefail

usage() {
  echo "usage: $0 MODEL PROMPT TOKENS SEED [TEMPERATURE [TOP_K]]" >&2
  echo "       $0 --serial MODEL|none" >&2
  exit 125
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Where serial mode puts the model, and its size: src/partition.rs (ADDRESS, BYTES).
partition=0x10100000
partition_bytes=$((0x10400000 - partition))
serial=0
if [[ "${1:-}" == "--serial" ]]; then
  [[ $# -eq 2 ]] || usage
  serial=1
  model="$2"
else
  [[ $# -ge 4 && $# -le 6 ]] || usage
  model="$1"
fi
if [[ $serial == 0 || "$model" != none ]]; then
  [[ -f "$model" ]] || { echo "run-qemu.sh: model file not found: $model" >&2; exit 125; }
  model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"
fi
if [[ $serial == 1 && "$model" != none ]]; then
  # QEMU's loader would place the rest past the partition (and the flash): refuse it here.
  size=$(wc -c < "$model")
  if (( size > partition_bytes )); then
    echo "run-qemu.sh: $model is $size bytes, more than the $partition_bytes bytes of the model partition at $partition" >&2
    exit 125
  fi
fi

command -v qemu-system-arm >/dev/null || {
  echo "run-qemu.sh: qemu-system-arm not found (Debian/Ubuntu: apt-get install qemu-system-arm)" >&2
  exit 125
}

if [[ $serial == 1 ]]; then
  # Interactive firmware, model from the partition, the chat's default settings.
  unset FIRMWARE_MODEL FIRMWARE_PROMPT FIRMWARE_CTX FIRMWARE_TOKENS FIRMWARE_SEED
  unset FIRMWARE_TEMPERATURE FIRMWARE_TOP_K FIRMWARE_SELFTEST
else
  export FIRMWARE_MODEL="$model" FIRMWARE_PROMPT="$2" FIRMWARE_TOKENS="$3" FIRMWARE_SEED="$4"
  # TEMPERATURE defaults to 0.8, as in `tools generate` and the firmware's build: one default everywhere.
  export FIRMWARE_TEMPERATURE="${5:-0.8}" FIRMWARE_TOP_K="${6:-0}"
fi

work="$(mktemp -d)"
if [[ -n "${QEMU_KEEP:-}" ]]; then mkdir -p "$QEMU_KEEP" && work="$(cd "$QEMU_KEEP" && pwd)"; fi
cleanup() { [[ -n "${QEMU_KEEP:-}" ]] || rm -rf "$work"; }
trap cleanup EXIT

board="${BOARD:-qemu}"
case "$board" in
  qemu) machine=(-machine mps2-an505 -cpu cortex-m33) ;;
  # The AN521's CPU0 has no DSP and no FPU (QEMU models the FPGA image); the RP2350's two
  # cores have both, and so must the twin.
  an521) machine=(-machine mps2-an521 -global sse-200.CPU0_DSP=on -global sse-200.CPU0_FPU=on) ;;
  *) echo "run-qemu.sh: BOARD must be qemu or an521, not $board" >&2; exit 125 ;;
esac

target_dir="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$target_dir"
build() {
  (cd "$here" && cargo build --release --quiet --no-default-features --features "$board") &&
    cp "$target_dir/thumbv8m.main-none-eabihf/release/firmware" "$work/firmware.elf"
}
# Build and copy under one lock: runs in parallel must not swap each other's ELF.
if command -v flock >/dev/null; then
  exec 9>"$target_dir/run-qemu.lock"
  flock 9
  build || { echo "run-qemu.sh: firmware build failed" >&2; exit 125; }
  exec 9>&-
else
  build || { echo "run-qemu.sh: firmware build failed" >&2; exit 125; }
fi

icount=()
[[ "${QEMU_ICOUNT:-1}" == 1 ]] && icount=(-icount shift=7)

qemu=(qemu-system-arm "${machine[@]}" -nographic -monitor none
  -semihosting-config enable=on,target=native "${icount[@]}")
# QEMU runs in $work so that the firmware's semihosting file defmt.bin lands there.
if [[ $serial == 0 ]]; then
  (cd "$work" && timeout --kill-after=5 "${QEMU_TIMEOUT:-300}" "${qemu[@]}" ${QEMU_EXTRA_ARGS:-} \
    -kernel firmware.elf)
else
  # signal=off: Ctrl-C reaches the firmware as byte 0x03 instead of killing QEMU.
  qemu+=(-chardev stdio,id=uart0,signal=off -serial chardev:uart0)
  [[ "$model" != none ]] && qemu+=(-device "loader,file=$model,addr=$partition,force-raw=on")
  if [[ -t 0 ]]; then
    (cd "$work" && "${qemu[@]}" ${QEMU_EXTRA_ARGS:-} -kernel firmware.elf)
  else
    # stdin is a pipe or a file: when it ends, Ctrl-D tells the firmware to exit.
    { cat; printf '\004'; } | (cd "$work" && timeout --kill-after=5 "${QEMU_TIMEOUT:-300}" \
      "${qemu[@]}" ${QEMU_EXTRA_ARGS:-} -kernel firmware.elf)
  fi
fi
status=$?

if [[ "${DEFMT_QUIET:-0}" != 1 && -s "$work/defmt.bin" ]]; then
  if command -v defmt-print >/dev/null; then
    defmt-print -e "$work/firmware.elf" < "$work/defmt.bin" >&2
  else
    echo "run-qemu.sh: install defmt-print to see the firmware's log (cargo install defmt-print --locked)" >&2
  fi
fi
case $status in
  0) ;;
  124 | 137) echo "run-qemu.sh: QEMU did not finish within ${QEMU_TIMEOUT:-300} s (hang?)" >&2; status=124 ;;
  *) echo "run-qemu.sh: firmware failed with exit status $status" >&2 ;;
esac
exit $status
