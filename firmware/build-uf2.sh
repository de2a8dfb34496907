#!/usr/bin/env bash
# Builds the Pico 2 firmware and writes the UF2 files a Pico 2 owner copies onto the board in
# BOOTSEL mode (no debug probe needed):
#
#   firmware/build-uf2.sh [MODEL.bin [OUT_DIR]]
#
#   OUT_DIR/bitnet-mcu-pico2.uf2   the firmware (interactive chat on USB serial and UART0),
#                                  flash 0x10000000.., no model inside
#   OUT_DIR/<model>.uf2            the model (default models/shakespeare-mcu.bin) for the model
#                                  partition at 0x10100000
#
# OUT_DIR defaults to target/uf2 in the repository. The firmware is built with cargo from this
# folder (target dir: FIRMWARE_TARGET_DIR, else $CARGO_TARGET_DIR/firmware, else
# firmware/target), the UF2 files are written by `tools uf2` (family RP2350 Arm Secure).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
model="${1:-$repo/models/shakespeare-mcu.bin}"
out="${2:-$repo/target/uf2}"
[[ -f "$model" ]] || { echo "build-uf2.sh: model file not found: $model" >&2; exit 125; }
if [[ -n "${FIRMWARE_TARGET_DIR:-}" ]]; then fw_target="$FIRMWARE_TARGET_DIR"
elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then fw_target="$CARGO_TARGET_DIR/firmware"
else fw_target="$here/target"; fi
mkdir -p "$out"

# The interactive firmware with no embedded model: it reads the model partition at boot.
(cd "$here" && env -u FIRMWARE_MODEL -u FIRMWARE_PROMPT -u FIRMWARE_CTX -u FIRMWARE_SELFTEST \
  CARGO_TARGET_DIR="$fw_target" cargo build --release --quiet)
elf="$fw_target/thumbv8m.main-none-eabihf/release/firmware"

tools() { (cd "$repo" && cargo run --quiet -p tools -- "$@"); }
tools uf2 "$elf" --out "$out/bitnet-mcu-pico2.uf2"
name="$(basename "$model")"
tools uf2 "$model" --out "$out/${name%.*}.uf2"
