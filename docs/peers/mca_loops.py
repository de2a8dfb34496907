#!/usr/bin/env python3
"""Static cycle estimates of the ternary dot loops on CPUs not at hand (llvm-mca).

Disassembles SYMBOL in BINARY (objdump), finds its innermost loops that multiply bytes
(`vpmaddubsw`/`vpdpbusd`), writes each as an llvm-mca input and prints llvm-mca's cycles per
iteration and per multiply-accumulate for each CPU model (a `ymm` byte multiply does 32
multiply-accumulates, an `xmm` one 16, a `zmm` one 64). The main loop is the one with the most
multiplies; the others are remainders and sums of the activations. Estimates of the
steady-state loop only, from LLVM's scheduling models (no caches, no loop overhead outside it):
label them as such.

    python3 mca_loops.py BINARY SYMBOL [--cpus znver3,skylake,haswell]

Example (this repository's `tools`, ggml's CPU library, the I2_S harness):

    python3 docs/peers/mca_loops.py target/release/tools tiled_matvec_avx2
    python3 docs/peers/mca_loops.py $P/ggml/build-avx2/src/libggml-cpu.so ggml_vec_dot_tq2_0_q8_K
    python3 docs/peers/mca_loops.py $P/i2s_harness ggml_vec_dot_i2_i8_s_1x4_32W
"""
import argparse
import re
import subprocess
import tempfile

p = argparse.ArgumentParser()
p.add_argument("binary")
p.add_argument("symbol", help="a substring of the (mangled or demangled) symbol name")
p.add_argument("--cpus", default="znver3,znver2,skylake,haswell")
a = p.parse_args()

syms = subprocess.run(["nm", "-C", a.binary], capture_output=True, text=True).stdout.splitlines()
found = [s.split(maxsplit=2) for s in syms if a.symbol in s and re.match(r"[0-9a-f]+ [Tt] ", s)]
if not found:
    raise SystemExit(f"{a.symbol}: no such function in {a.binary}")
start = int(found[0][0], 16)
later = sorted(int(s.split()[0], 16) for s in syms if re.match(r"[0-9a-f]+ [Tt] ", s))
end = next((x for x in later if x > start), start + 0x4000)
dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                      f"--stop-address={end:#x}", a.binary], capture_output=True, text=True).stdout
ins = []
for line in dis.splitlines():
    m = re.match(r"\s*([0-9a-f]+):\s+(.*)", line)
    if m:
        text = re.sub(r"\s*<[^>]*>", "", re.sub(r"\s*#.*$", "", m.group(2).strip()))
        ins.append((int(m.group(1), 16), text))
at = {addr: i for i, (addr, _) in enumerate(ins)}
loops = []
for i, (addr, text) in enumerate(ins):
    m = re.match(r"j[a-z]+\s+([0-9a-f]+)$", text)
    if m and int(m.group(1), 16) < addr and int(m.group(1), 16) in at:
        body = ins[at[int(m.group(1), 16)]:i + 1]
        if any(("vpmaddubsw" in t or "vpdpbusd" in t) for _, t in body):
            loops.append(body)
# Innermost: no other multiplying loop inside.
inner = [b for b in loops if not any(o is not b and o[0][0] >= b[0][0] and o[-1][0] <= b[-1][0]
                                     and len(o) < len(b) for o in loops)]
for body in inner:
    asm = [".Lloop:"] + [re.sub(r"^(j[a-z]+)\s+\S+$", r"\1 .Lloop", t) for _, t in body]
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(asm) + "\n")
    mul = [t for _, t in body if "vpmaddubsw" in t or "vpdpbusd" in t]
    macs = sum(64 if "zmm" in t else 32 if "ymm" in t else 16 for t in mul)
    print(f"loop {body[0][0]:#x}-{body[-1][0]:#x}: {len(body)} instructions, "
          f"{len(mul)} byte multiplies ({macs} multiply-accumulates)")
    for cpu in a.cpus.split(","):
        out = subprocess.run(["llvm-mca", f"-mcpu={cpu}", "-iterations=1000", f.name],
                             capture_output=True, text=True).stdout
        cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 1000
        print(f"  {cpu:10} {cycles:.2f} cycles per iteration, {cycles / macs:.4f} per MAC")
