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
# Pico 2 (firmware/COST.md, "Cost model", lists the rules, their sources and where the model
# can be wrong). The firmware calls `cost_checkpoint` right before and after each
# generator step; the plugin snapshots its counters there, so the figures cover the forward
# passes and sampling only (not the UART output between tokens).
#
# Run 3 does the same for two cores: the `an521` board (QEMU mps2-an521, two Cortex-M33, the
# split pass of runtime::workers) under the plugin's two-core rules (per-core pipelines, one XIP
# cache and QSPI link, SRAM banks, messages between the cores: firmware/COST.md, "Two
# cores"); its text must equal run 1's byte for byte. COST_DUAL=0 skips it.
#
# The last line of output is one JSON object (instructions_per_mac,
# modelled_cycles_per_decode_token = core_cycles_per_decode_token +
# flash_stall_cycles_per_decode_token, modelled_tokens_per_s, ..., and from run 3
# dual_core_tokens_per_s and its breakdown). Needs qemu-system-arm, gcc and defmt-print.
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
BOARD=qemu QEMU_KEEP="$work" DEFMT_QUIET=1 "$here/run-qemu.sh" "$model" "$prompt" "$tokens" 1 0 >"$work/text.txt"
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

# Run 3: the two-core twin, its text checked against run 1's, then the cost model with the
# two-core rules (the plugin needs the addresses of the message marks and the RAM base).
if [[ "${COST_DUAL:-1}" == 1 ]]; then
  mkdir -p "$work/dual"
  BOARD=an521 QEMU_KEEP="$work/dual" DEFMT_QUIET=1 "$here/run-qemu.sh" "$model" "$prompt" "$tokens" 1 0 >"$work/dual/text.txt"
  cmp -s "$work/text.txt" "$work/dual/text.txt" || {
    echo "cost.sh: the two-core twin's text differs from the one-core firmware's" >&2; exit 1; }
  sym() { nm "$work/dual/firmware.elf" | awk -v s="$1" '$3 == s { print $1 }'; }
  marks="mark=0x$(sym cost_checkpoint),sent=0x$(sym cost_sent),wait=0x$(sym cost_wait),woken=0x$(sym cost_woken)"
  [[ "$marks" != *"=0x,"* && "$marks" != *"=0x" ]] || { echo "cost.sh: a cost mark is missing from the an521 ELF" >&2; exit 1; }
  (cd "$work/dual" && timeout 1800 qemu-system-arm -machine mps2-an521 -global sse-200.CPU0_DSP=on \
    -global sse-200.CPU0_FPU=on -nographic -monitor none -icount shift=7 \
    -semihosting-config enable=on,target=native \
    -plugin "$plugin,$marks,sram=0x38000000${PROFILE:+,profile=1}" -d plugin -D cost.log -kernel firmware.elf >/dev/null)
  if [[ -n "${PROFILE:-}" ]]; then
    echo "two cores, core 0:"
    python3 "$here/cost-model/profile.py" "$work/dual/firmware.elf" "$work/dual/cost.log" "$PROFILE"
    echo "two cores, core 1:"
    PROFILE_CORE=1 python3 "$here/cost-model/profile.py" "$work/dual/firmware.elf" "$work/dual/cost.log" "$PROFILE"
  fi
  dual_log="$work/dual/cost.log"
else
  dual_log=/dev/null
fi

# Marks 2i and 2i+1 bracket generator step i: step 0 runs the prompt (prefill) and samples,
# each later step forwards one token and samples (decode).
awk -v pre_tok="$pre_tok" -v macs="$macs" -v dec_icount="${dec_icount:-0}" \
    -v model="$model" -v vocab="$vocab" -v d="$d" -v layers="$layers" -v heads="$heads" \
    -v kv_heads="$kv_heads" -v ffn="$ffn" -v gated="$gated" '
  FNR == 1 { file++ }
  file == 1 && /^rp2350:/ { fetch_misses = $11; load_misses = $13; chained = $15 }
  file == 1 && /^mark / { i = $2; n[i] = $4; c[i] = $6; f[i] = $8; l[i] = $10; marks = i + 1 }
  file == 2 && /^mark / {
    i = $2; zn[i] = $4; zc[i] = $6; zs[i] = $8 + $10; zb[i] = $12; zi[i] = $14; zk[i] = $16
    yn[i] = $19; yc[i] = $21; ys[i] = $23 + $25; yb[i] = $27; yi[i] = $29; dmarks = i + 1
  }
  file == 2 && /^rp2350 core [01]:/ { link_wait += $19; syncs = $21 }
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
    printf "modelled RP2350 cycles (cost model, approximate; see firmware/COST.md):\n"
    printf "  prefill: %.0f cycles per token = %.0f core + %.0f flash stall\n", cyc_pre, pc / pre_tok, (pf + pl) / pre_tok
    printf "  decode:  %.0f cycles per token = %.0f core + %.0f flash stall (%.0f instruction fetch, %.0f data loads)\n",
      cyc_dec, c_dec, f_dec + l_dec, f_dec, l_dec
    printf "  decode:  %.2f core cycles per instruction; whole run: %d XIP misses on fetch, %d on loads, %d chained\n",
      c_dec / n_dec, fetch_misses, load_misses, chained
    printf "modelled at 150 MHz: prefill %.1f tokens/s, decode %.1f tokens/s\n", 150e6 / cyc_pre, 150e6 / cyc_dec
    dual = ""
    if (int(dmarks / 2) == steps) {
      for (s = 0; s < steps; s++) {
        a = 2 * s; b = a + 1
        if (s == 0) { dpk = zk[b] - zk[a]; continue }
        tk += zk[b] - zk[a]; tn0 += zn[b] - zn[a]; tc0 += zc[b] - zc[a]; ts0 += zs[b] - zs[a]
        tb0 += zb[b] - zb[a]; ti0 += zi[b] - zi[a]
        tn1 += yn[b] - yn[a]; tc1 += yc[b] - yc[a]; ts1 += ys[b] - ys[a]; tb1 += yb[b] - yb[a]
      }
      d_cyc = tk / k; d_pre = dpk / pre_tok
      printf "two cores (mps2-an521 twin under the two-core rules; modelled):\n"
      printf "  decode:  %.0f cycles per token (core 0 time); core 0: %.0f instructions, %.0f core + %.0f flash stall + %.0f bank + %.0f waiting for core 1\n",
        d_cyc, tn0 / k, tc0 / k, ts0 / k, tb0 / k, ti0 / k
      printf "           core 1: %.0f instructions, %.0f core + %.0f flash stall + %.0f bank (busy %.0f%% of the token)\n",
        tn1 / k, tc1 / k, ts1 / k, tb1 / k, 100 * (tc1 + ts1 + tb1) / tk
      printf "  prefill: %.0f cycles per token; whole run: %d cycles of flash transfers waiting for the other core'"'"'s, %d messages\n", d_pre, link_wait, syncs
      printf "modelled at 150 MHz with two cores: prefill %.1f tokens/s, decode %.1f tokens/s (%.2fx one core)\n",
        150e6 / d_pre, 150e6 / d_cyc, cyc_dec / d_cyc
      dual = sprintf(",\"dual_core_cycles_per_decode_token\":%.0f,\"dual_core_cycles_per_prefill_token\":%.0f,", d_cyc, d_pre)
      dual = dual sprintf("\"dual_core0_core_cycles_per_decode_token\":%.0f,\"dual_core0_flash_stall_cycles_per_decode_token\":%.0f,", tc0 / k, ts0 / k)
      dual = dual sprintf("\"dual_core0_bank_stall_cycles_per_decode_token\":%.0f,\"dual_core0_wait_cycles_per_decode_token\":%.0f,", tb0 / k, ti0 / k)
      dual = dual sprintf("\"dual_core1_core_cycles_per_decode_token\":%.0f,\"dual_core1_flash_stall_cycles_per_decode_token\":%.0f,", tc1 / k, ts1 / k)
      dual = dual sprintf("\"dual_core1_bank_stall_cycles_per_decode_token\":%.0f,", tb1 / k)
      dual = dual sprintf("\"dual_core0_instructions_per_decode_token\":%.0f,\"dual_core1_instructions_per_decode_token\":%.0f,", tn0 / k, tn1 / k)
      dual = dual sprintf("\"dual_core_prefill_tokens_per_s\":%.2f,\"dual_core_tokens_per_s\":%.2f", 150e6 / d_pre, 150e6 / d_cyc)
    } else if (dmarks > 0) {
      print "cost.sh: the two-core run recorded " dmarks " marks, the one-core run " marks > "/dev/stderr"; exit 1
    }
    printf "{\"model\":\"%s\",\"macs_per_token\":%d,\"prompt_tokens\":%d,\"decode_tokens\":%d,", model, macs, pre_tok, k
    printf "\"instructions_per_prefill_token\":%.0f,\"instructions_per_decode_token\":%.0f,\"instructions_per_mac\":%.3f,",
      n_pre, n_dec, n_dec / macs
    printf "\"modelled_cycles_per_prefill_token\":%.0f,\"modelled_cycles_per_decode_token\":%.0f,", cyc_pre, cyc_dec
    printf "\"core_cycles_per_decode_token\":%.0f,\"flash_stall_cycles_per_decode_token\":%.0f,", c_dec, f_dec + l_dec
    printf "\"fetch_stall_cycles_per_decode_token\":%.0f,\"load_stall_cycles_per_decode_token\":%.0f,", f_dec, l_dec
    printf "\"modelled_prefill_tokens_per_s\":%.2f,\"modelled_tokens_per_s\":%.2f%s}\n", 150e6 / cyc_pre, 150e6 / cyc_dec, dual
  }' "$work/cost.log" "$dual_log"
