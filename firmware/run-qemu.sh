#!/usr/bin/env bash
# Builds the `qemu` board of the firmware for one model and one set of generation
# settings, runs it on QEMU mps2-an505 (Cortex-M33) under `timeout`, and prints exactly
# the text it writes (prompt + continuation) on stdout.
#
#   firmware/run-qemu.sh MODEL PROMPT TOKENS SEED [TEMPERATURE [TOP_K]]
#
# Exit status: 0 on success; the firmware's own status on failure (1 application error
# such as a rejected model, 2 HardFault, 3 stack overflow, 101 panic); 124 if it hung
# (QEMU_TIMEOUT seconds, default 300); 125 for a usage or build error.
# A failure's one-line reason ("firmware: ...") comes on the UART, i.e. stdout, after any
# text, as on the Pico 2. stderr: build errors, a summary line on failure, and the defmt log
# decoded by `defmt-print` when that is installed (`cargo install defmt-print --locked`).
#
# Environment: QEMU_TIMEOUT (seconds), QEMU_ICOUNT=0 (drop `-icount shift=7`, which makes
# virtual time, and so the instruction counts in the log, deterministic at ~35% more run
# time), QEMU_KEEP=DIR (keep the ELF and defmt.bin there),
# DEFMT_QUIET=1 (do not print the defmt log), FIRMWARE_SELFTEST (see build.rs).
set -uo pipefail

usage() {
  echo "usage: $0 MODEL PROMPT TOKENS SEED [TEMPERATURE [TOP_K]]" >&2
  exit 125
}
[[ $# -ge 4 && $# -le 6 ]] || usage

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
model="$1"
[[ -f "$model" ]] || { echo "run-qemu.sh: model file not found: $model" >&2; exit 125; }
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")"

command -v qemu-system-arm >/dev/null || {
  echo "run-qemu.sh: qemu-system-arm not found (Debian/Ubuntu: apt-get install qemu-system-arm)" >&2
  exit 125
}

export FIRMWARE_MODEL="$model" FIRMWARE_PROMPT="$2" FIRMWARE_TOKENS="$3" FIRMWARE_SEED="$4"
# TEMPERATURE defaults to 0.8, as in `tools generate` and the firmware's build: one default everywhere.
export FIRMWARE_TEMPERATURE="${5:-0.8}" FIRMWARE_TOP_K="${6:-0}"

work="$(mktemp -d)"
if [[ -n "${QEMU_KEEP:-}" ]]; then mkdir -p "$QEMU_KEEP" && work="$(cd "$QEMU_KEEP" && pwd)"; fi
cleanup() { [[ -n "${QEMU_KEEP:-}" ]] || rm -rf "$work"; }
trap cleanup EXIT

target_dir="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$target_dir"
build() {
  (cd "$here" && cargo build --release --quiet --no-default-features --features qemu) &&
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

# QEMU runs in $work so that the firmware's semihosting file defmt.bin lands there.
(cd "$work" && timeout --kill-after=5 "${QEMU_TIMEOUT:-300}" qemu-system-arm \
  -machine mps2-an505 -cpu cortex-m33 -nographic -monitor none \
  -semihosting-config enable=on,target=native "${icount[@]}" ${QEMU_EXTRA_ARGS:-} \
  -kernel firmware.elf)
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
