#!/usr/bin/env bash
# What a token costs on the Cortex-M33: executed instructions (QEMU, exact) and modelled
# RP2350 cycles (cost model, approximate), for prefill and decode, with tokens/s at 150 MHz.
#
#   firmware/cost.sh MODEL [PROMPT [TOKENS]]      (defaults: "ROMEO:" 100; greedy, seed 1)
#   PROFILE=20 firmware/cost.sh MODEL              # also the 20 costliest functions of one decode token
#
# Run 1 builds the `qemu` board for MODEL and runs it with `-icount` (the firmware's defmt log
# gives the model's shape, the prompt's length and its own SysTick instruction counts).
# Run 2 runs the same ELF under the TCG plugin firmware/cost-model/rp2350.c (built here with
# gcc), which decodes every executed Thumb instruction, issues it through a Cortex-M33 pipeline
# with the timings measured on RP2350 silicon, and models the XIP cache and QSPI flash of a
# Pico 2 (firmware/README.md, "Cost model", lists the rules, their sources and where the model
# can be wrong). The firmware calls `cost_checkpoint` right before and after each
# generator step; the plugin snapshots its counters there, so the figures cover the forward
# passes and sampling only (not the UART output between tokens).
#
# The last line of output is one JSON object (instructions_per_mac,
# modelled_cycles_per_decode_token = core_cycles_per_decode_token +
# flash_stall_cycles_per_decode_token, modelled_tokens_per_s, ...). Needs qemu-system-arm, gcc
# and defmt-print.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 1 && $# -le 3 ]] || { echo "usage: $0 MODEL [PROMPT [TOKENS]]" >&2; exit 125; }
model="$1" prompt="${2:-ROMEO:}" tokens="${3:-100}"
for tool in qemu-system-arm gcc defmt-print; do
  command -v "$tool" >/dev/null || {
    echo "cost.sh: needs $tool (defmt-print: cargo install defmt-print --locked)" >&2; exit 125; }
done

target_dir="${CARGO_TARGET_DIR:-$here/target}"
plugin="$target_dir/librp2350.so"
plugin_src="$here/cost-model/rp2350.c"
mkdir -p "$target_dir"
if [[ ! -f "$plugin" || "$plugin_src" -nt "$plugin" ]]; then
  gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$plugin" "$plugin_src"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Run 1: build, generate (greedy) with -icount, keep the ELF and the defmt log.
QEMU_KEEP="$work" DEFMT_QUIET=1 "$here/run-qemu.sh" "$model" "$prompt" "$tokens" 1 0 >"$work/text.txt"
defmt-print -e "$work/firmware.elf" <"$work/defmt.bin" >"$work/log.txt"

field() { sed -nE "s#.*$1.*#\\1#p" "$work/log.txt" | head -1; }
d=$(field 'model: .* d ([0-9]+),') ; layers=$(field 'layers ([0-9]+),')
heads=$(field 'heads ([0-9]+)/') ; kv_heads=$(field 'heads [0-9]+/([0-9]+),') ; ffn=$(field 'ffn ([0-9]+)( gated)?,')
ffn_mats=2 gated=""
if [[ -n "$(field 'ffn [0-9]+ (gated),')" ]]; then ffn_mats=3 gated=" gated"; fi
vocab=$(field 'vocab ([0-9]+),')
pre_tok=$(field 'prefill ([0-9]+) tokens')
dec_icount=$(field 'decode [0-9]+ tokens [0-9]+ instructions \(([0-9]+) per token\)')
[[ -n "$d" && -n "$pre_tok" ]] || { echo "cost.sh: no model or cost line in the firmware log:" >&2; cat "$work/log.txt" >&2; exit 1; }

# Ternary multiply-accumulates per token: q, o [d x d]; k, v [kv_dim x d]; up, down (and the
# gate of a gated FFN) [F x d].
kv_dim=$(( d * kv_heads / heads ))
macs=$(( layers * (2 * d * d + 2 * kv_dim * d + ffn_mats * ffn * d) ))

# Run 2: the cost model over the same ELF (no -icount needed: the plugin counts itself).
mark="$(nm "$work/firmware.elf" | awk '$3 == "cost_checkpoint" { print $1 }')"
[[ -n "$mark" ]] || { echo "cost.sh: cost_checkpoint not found in the ELF" >&2; exit 1; }
(cd "$work" && timeout 900 qemu-system-arm -machine mps2-an505 -cpu cortex-m33 -nographic -monitor none \
  -semihosting-config enable=on,target=native \
  -plugin "$plugin,mark=0x$mark${PROFILE:+,profile=1}" -d plugin -D cost.log -kernel firmware.elf >/dev/null)

if [[ -n "${PROFILE:-}" ]]; then
  python3 "$here/cost-model/profile.py" "$work/firmware.elf" "$work/cost.log" "$PROFILE"
fi

# Marks 2i and 2i+1 bracket generator step i: step 0 runs the prompt (prefill) and samples,
# each later step forwards one token and samples (decode).
awk -v pre_tok="$pre_tok" -v macs="$macs" -v dec_icount="${dec_icount:-0}" \
    -v model="$model" -v vocab="$vocab" -v d="$d" -v layers="$layers" -v heads="$heads" \
    -v kv_heads="$kv_heads" -v ffn="$ffn" -v gated="$gated" '
  /^rp2350:/ { fetch_misses = $11; load_misses = $13; chained = $15 }
  /^mark / { i = $2; n[i] = $4; c[i] = $6; f[i] = $8; l[i] = $10; marks = i + 1 }
  END {
    steps = int(marks / 2)
    if (steps < 2) { print "cost.sh: fewer than two generator steps were recorded" > "/dev/stderr"; exit 1 }
    for (s = 0; s < steps; s++) {
      a = 2 * s; b = a + 1
      dn = n[b] - n[a]; dc = c[b] - c[a]; df = f[b] - f[a]; dl = l[b] - l[a]
      if (s == 0) { pn = dn; pc = dc; pf = df; pl = dl }
      else { tn += dn; tc += dc; tf += df; tl += dl }
    }
    k = steps - 1
    n_dec = tn / k; c_dec = tc / k; f_dec = tf / k; l_dec = tl / k
    cyc_dec = c_dec + f_dec + l_dec
    n_pre = pn / pre_tok; cyc_pre = (pc + pf + pl) / pre_tok
    printf "model: %s (vocab %d, d %d, %d layers, heads %d/%d, ffn %d%s): %d ternary MACs per token\n",
      model, vocab, d, layers, heads, kv_heads, ffn, gated, macs
    printf "instructions (QEMU, exact):\n"
    printf "  prefill: %.0f instructions per token (%d prompt tokens, one step)\n", n_pre, pre_tok
    printf "  decode:  %.0f instructions per token (mean of %d tokens; forward + sampling)", n_dec, k
    if (dec_icount > 0) printf "; firmware SysTick log: %d", dec_icount
    printf "\n  decode:  %.2f instructions per ternary MAC, all work included\n", n_dec / macs
    printf "modelled RP2350 cycles (cost model, approximate; see firmware/README.md):\n"
    printf "  prefill: %.0f cycles per token = %.0f core + %.0f flash stall\n", cyc_pre, pc / pre_tok, (pf + pl) / pre_tok
    printf "  decode:  %.0f cycles per token = %.0f core + %.0f flash stall (%.0f instruction fetch, %.0f data loads)\n",
      cyc_dec, c_dec, f_dec + l_dec, f_dec, l_dec
    printf "  decode:  %.2f core cycles per instruction; whole run: %d XIP misses on fetch, %d on loads, %d chained\n",
      c_dec / n_dec, fetch_misses, load_misses, chained
    printf "modelled at 150 MHz: prefill %.1f tokens/s, decode %.1f tokens/s\n", 150e6 / cyc_pre, 150e6 / cyc_dec
    printf "{\"model\":\"%s\",\"macs_per_token\":%d,\"prompt_tokens\":%d,\"decode_tokens\":%d,", model, macs, pre_tok, k
    printf "\"instructions_per_prefill_token\":%.0f,\"instructions_per_decode_token\":%.0f,\"instructions_per_mac\":%.3f,",
      n_pre, n_dec, n_dec / macs
    printf "\"modelled_cycles_per_prefill_token\":%.0f,\"modelled_cycles_per_decode_token\":%.0f,", cyc_pre, cyc_dec
    printf "\"core_cycles_per_decode_token\":%.0f,\"flash_stall_cycles_per_decode_token\":%.0f,", c_dec, f_dec + l_dec
    printf "\"fetch_stall_cycles_per_decode_token\":%.0f,\"load_stall_cycles_per_decode_token\":%.0f,", f_dec, l_dec
    printf "\"modelled_prefill_tokens_per_s\":%.2f,\"modelled_tokens_per_s\":%.2f}\n", 150e6 / cyc_pre, 150e6 / cyc_dec
  }' "$work/cost.log"
