#!/usr/bin/env bash
# Executed instructions per token under QEMU (mps2-an505, Cortex-M33), for prefill and for
# decode, and what that would mean on a 150 MHz Cortex-M33.
#
#   firmware/insn-per-token.sh MODEL [PROMPT [TOKENS]]      (defaults: "ROMEO:" 64)
#   FUNC=ternary_matvec firmware/insn-per-token.sh MODEL     # also count inside one function
#
# The firmware reads SysTick, which QEMU's `-icount shift=7` turns into an instruction
# counter (2.56 ticks per instruction), around each generator step and logs the sums
# through defmt; a second run with the TCG plugin in ../shared/tools/qemu-insncount counts
# every executed instruction (a cross-check) and, with FUNC, those inside the function
# whose demangled name matches FUNC (an extended regex on `nm -C` output).
#
# Instructions are not cycles. QEMU models no pipeline, no flash wait states or XIP cache
# and no bus contention; on a Cortex-M33 most ALU instructions take 1 cycle, loads 1-2,
# taken branches 2-4. The tokens/s below divide 150e6 by instructions per token, i.e. they
# assume one instruction per cycle: an upper bound, not a measurement.
#
# Needs qemu-system-arm, gcc (for the plugin) and defmt-print.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 1 && $# -le 3 ]] || { echo "usage: $0 MODEL [PROMPT [TOKENS]]" >&2; exit 125; }
model="$1" prompt="${2:-ROMEO:}" tokens="${3:-64}"
command -v defmt-print >/dev/null || {
  echo "insn-per-token.sh: needs defmt-print (cargo install defmt-print --locked)" >&2; exit 125; }

target_dir="${CARGO_TARGET_DIR:-$here/target}"
plugin="$target_dir/libinsncount.so"
plugin_src="${INSNCOUNT_SRC:-$here/../../shared/tools/qemu-insncount/insncount.c}"
mkdir -p "$target_dir"
if [[ ! -f "$plugin" || "$plugin_src" -nt "$plugin" ]]; then
  gcc -O2 -shared -fPIC -o "$plugin" "$plugin_src"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Run 1: build, generate with -icount, keep the ELF and the defmt log.
QEMU_KEEP="$work" DEFMT_QUIET=1 "$here/run-qemu.sh" "$model" "$prompt" "$tokens" 1 >"$work/text.txt"
defmt-print -e "$work/firmware.elf" <"$work/defmt.bin" >"$work/log.txt"

field() { sed -nE "s#.*$1.*#\\1#p" "$work/log.txt" | head -1; }
d=$(field 'model: .* d ([0-9]+),') ; layers=$(field 'layers ([0-9]+),')
heads=$(field 'heads ([0-9]+)/') ; kv_heads=$(field 'heads [0-9]+/([0-9]+),') ; ffn=$(field 'ffn ([0-9]+),')
vocab=$(field 'vocab ([0-9]+),')
pre_tok=$(field 'prefill ([0-9]+) tokens') ; pre_per=$(field 'prefill .*\(([0-9]+) per token\); decode')
dec_tok=$(field 'decode ([0-9]+) tokens') ; dec_per=$(field 'decode [0-9]+ tokens [0-9]+ instructions \(([0-9]+) per token\)')
[[ -n "$dec_per" && -n "$d" ]] || { echo "insn-per-token.sh: no cost line in the firmware log:" >&2; cat "$work/log.txt" >&2; exit 1; }

# Ternary multiply-accumulates per token: q, o [d x d]; k, v [kv_dim x d]; up, down [F x d].
kv_dim=$(( d * kv_heads / heads ))
macs=$(( layers * (2 * d * d + 2 * kv_dim * d + 2 * ffn * d) ))

# Run 2: the plugin, over the same ELF.
range=""
if [[ -n "${FUNC:-}" ]]; then
  line="$(nm -S -C "$work/firmware.elf" | grep -E " [tTwW] .*${FUNC}" | sort -k2 -r | head -1 || true)"
  [[ -n "$line" ]] || { echo "insn-per-token.sh: no function matching '$FUNC' (inlined?)" >&2; exit 1; }
  lo=$((16#$(awk '{print $1}' <<<"$line"))) size=$((16#$(awk '{print $2}' <<<"$line")))
  lo=$(( lo & ~1 ))
  range=",lo=$lo,hi=$(( lo + size ))"
  fname="$(cut -d' ' -f4- <<<"$line")"
fi
(cd "$work" && timeout 600 qemu-system-arm -machine mps2-an505 -cpu cortex-m33 -nographic -monitor none \
  -semihosting-config enable=on,target=native -icount shift=7 \
  -plugin "$plugin$range" -d plugin -D plugin.log -kernel firmware.elf >/dev/null)
total=$(sed -nE 's/insns total ([0-9]+),.*/\1/p' "$work/plugin.log")
in_range=$(sed -nE 's/.*\) ([0-9]+)$/\1/p' "$work/plugin.log")

rate() { awk -v n="$1" 'BEGIN { printf "%.1f", 150e6 / n }'; }
echo "model: $model (vocab $vocab, d $d, $layers layers, heads $heads/$kv_heads, ffn $ffn): $macs ternary MACs per token"
echo "prefill: $pre_per instructions per token ($pre_tok prompt tokens)"
echo "decode:  $dec_per instructions per token ($dec_tok tokens; forward + sampling)"
echo "decode:  $(awk -v n="$dec_per" -v m="$macs" 'BEGIN { printf "%.2f", n / m }') instructions per ternary MAC, all work included"
echo "estimate at 150 MHz, if one instruction took one cycle: prefill $(rate "$pre_per") tokens/s, decode $(rate "$dec_per") tokens/s"
echo "  (instructions are not cycles: no pipeline, wait states or XIP cache in QEMU; treat as an upper bound)"
echo "whole run (plugin): $total instructions"
if [[ -n "${FUNC:-}" ]]; then
  forwards=$(( pre_tok + dec_tok ))
  awk -v f="$fname" -v n="$in_range" -v t="$total" -v fw="$forwards" -v m="$macs" 'BEGIN {
    printf "in %s: %d instructions, %.1f%% of the run, %.0f per forward", f, n, 100 * n / t, n / fw
    if (f ~ /ternary_matvec/) printf ", %.2f per ternary MAC", n / fw / m
    printf "\n" }'
fi
