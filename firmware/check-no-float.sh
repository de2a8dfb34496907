#!/usr/bin/env bash
# Proves the integer-only contract on a core without an FPU: builds the `m0` app (the
# runtime's whole generation path on thumbv6m-none-eabi, Cortex-M0+) and fails if any
# soft-float routine is linked into it (__aeabi_f*, __aeabi_d*, __*sf3, __*df3 and the
# float conversions __float*sf/df, __fix*sf/df, __extendsfdf2, __truncdfsf2, ...).
#
#   firmware/check-no-float.sh [ELF...]   # default: build and check the m0 app
#
# Needs an `nm` that reads 32-bit Arm ELF files: llvm-nm from the llvm-tools component,
# arm-none-eabi-nm (binutils-arm-none-eabi), or GNU nm (reads them as elf32-little).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

nm_tool=""
llvm_nm="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-nm"
for candidate in "$llvm_nm" arm-none-eabi-nm nm; do
  if command -v "$candidate" >/dev/null 2>&1; then nm_tool="$candidate"; break; fi
done
[[ -n "$nm_tool" ]] || { echo "check-no-float.sh: no nm found" >&2; exit 2; }

if [[ $# -eq 0 ]]; then
  (cd "$here" && cargo build --release --quiet -p m0 --target thumbv6m-none-eabi)
  set -- "${CARGO_TARGET_DIR:-$here/target}/thumbv6m-none-eabi/release/m0"
fi

status=0
for elf in "$@"; do
  symbols="$("$nm_tool" "$elf")" || { echo "check-no-float.sh: $nm_tool cannot read $elf" >&2; exit 2; }
  # A link that lost the runtime would pass vacuously: its code must be there.
  if [[ "$elf" == */m0 ]] && ! grep -q "7runtime" <<<"$symbols"; then
    echo "check-no-float.sh: $elf contains no code of the runtime crate" >&2
    status=1
  fi
  float_syms="$(awk '{print $NF}' <<<"$symbols" |
    grep -E '^__(aeabi_[fd][a-z0-9]*|[a-z]+[sd]f3|(float|fix)[a-z]*[sd]f[a-z]*|extendsfdf2|truncdfsf2|(eq|ne|lt|le|gt|ge|un)[sd]f2)$' |
    sort -u || true)"
  if [[ -n "$float_syms" ]]; then
    echo "check-no-float.sh: soft-float routines linked into $elf:" >&2
    sed 's/^/  /' <<<"$float_syms" >&2
    status=1
  else
    echo "no soft-float routines in $elf ($(wc -l <<<"$symbols") symbols checked with $(basename "$nm_tool"))"
  fi
done
exit $status
