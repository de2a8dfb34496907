#!/usr/bin/env python3
"""Host speed side by side with the peers (docs/host-speed.md): every command pinned to one core
and alternated A B A B ... for ROUNDS rounds; writes the rounds as JSON and prints medians
[min-max] and per-round ratios (the peer's time over ours: > 1 means this runtime is faster).

  python3 docs/peers/campaign.py --rounds 25 --tools target/release/tools \
      [--before OLD_TOOLS] --ggml GGML_DIR --i2s I2S_HARNESS --llama2c LLAMA2C_DIR [--core 1]

GGML_DIR holds build-avx2/bin/test-quantize-perf (and build-native/, if built); I2S_HARNESS is
the binary built from i2s_harness.cpp; LLAMA2C_DIR holds run_nobos, random128.bin and
tok65.bin (docs/peers/README.md says how to make them). A peer that is missing is left out.
"""
import argparse, json, os, re, statistics, subprocess, time

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=25)
p.add_argument("--tools", required=True)
p.add_argument("--before")
p.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "../../models/shakespeare-mcu.bin"))
p.add_argument("--levels", default="avx2,avx512vnni")
p.add_argument("--ggml")
p.add_argument("--i2s")
p.add_argument("--llama2c")
p.add_argument("--core", default="1")
p.add_argument("--out", default="campaign.json")
a = p.parse_args()
pin = ["taskset", "-c", a.core]


def run(cmd):
    r = subprocess.run(pin + cmd, capture_output=True, text=True)
    return r.stdout + r.stderr


def bench(tools, level):
    d = json.loads(subprocess.run(pin + [tools, "bench", "--model", a.model, "--rounds", "20", "--json",
                                         "--kernels", level], capture_output=True, text=True).stdout)
    return {"mv": d["matvec_tsc_cycles_per_mac"], "mv_min": d["matvec_tsc_cycles_per_mac_min"],
            "mv2048": d["matvec_large_tsc_cycles_per_mac"], "mv2048_min": d["matvec_large_tsc_cycles_per_mac_min"],
            "decode_us": d["decode_latency_median_us"], "prefill": d["prefill_tokens_per_s_median"]}


def ggml(build):
    out = run([f"{a.ggml}/{build}/bin/test-quantize-perf", "--op", "vec_dot_q", "--type", "tq2_0",
               "-i", "2000", "--size", "16384"])
    mn = float(re.search(r"min cycles/32 vals\s*:\s*([\d.]+)", out).group(1)) / 32
    av = float(re.search(r"avg cycles/32 vals\s*:\s*([\d.]+)", out).group(1)) / 32
    return {"min": mn, "avg": av}


def i2s():
    d = {}
    for line in run([a.i2s]).splitlines():
        m = re.match(r"\s*(\d+)x(\d+)\s+I2_S (\S+).*min ([\d.]+) median ([\d.]+)", line)
        if m:
            d[f"{m.group(1)}x{m.group(2)} {m.group(3)}"] = {"min": float(m.group(4)), "median": float(m.group(5))}
    return d


def llama():
    out = run([f"{a.llama2c}/run_nobos", f"{a.llama2c}/random128.bin", "-z", f"{a.llama2c}/tok65.bin",
               "-t", "0", "-n", "128"])
    return 1e6 / float(re.search(r"achieved tok/s: ([\d.]+)", out).group(1))


ours = {"after": a.tools, **({"before": a.before} if a.before else {})}
levels = a.levels.split(",")
builds = [b for b in ["build-avx2", "build-native"] if a.ggml and os.path.exists(f"{a.ggml}/{b}")]
rounds = []
for r in range(a.rounds):
    row = {}
    for tag, tools in ours.items():
        for lv in levels:
            row[f"{tag} {lv}"] = bench(tools, lv)
    for b in builds:
        row[f"ggml {b}"] = ggml(b)
    if a.i2s:
        row["i2s"] = i2s()
    if a.llama2c:
        row["llama2c_us"] = llama()
    rounds.append(row)
    print(f"round {r + 1}/{a.rounds} {time.strftime('%H:%M:%S')}", flush=True)
json.dump(rounds, open(a.out, "w"), indent=1)


def st(xs):
    return f"{statistics.median(xs):.4g} [{min(xs):.4g}-{max(xs):.4g}]"


def ratio(name, peer, us):
    print(f"  {name:58} {st([peer(x) / us(x) for x in rounds])}")


for tag in ours:
    for lv in levels:
        k = f"{tag} {lv}"
        g = lambda f: [x[k][f] for x in rounds]
        print(f"{k}: matvec 336x128 {st(g('mv'))} (fastest {st(g('mv_min'))}), 2048x2048 {st(g('mv2048'))} "
              f"(fastest {st(g('mv2048_min'))}) TSC cycles/MAC; decode {st(g('decode_us'))} us; prefill {st(g('prefill'))} tokens/s")
        for b in builds:
            ratio(f"336x128 vs ggml {b} (avg / median)", lambda x: x[f"ggml {b}"]["avg"], lambda x: x[k]["mv"])
            ratio(f"336x128 vs ggml {b} (min / fastest)", lambda x: x[f"ggml {b}"]["min"], lambda x: x[k]["mv_min"])
            ratio(f"2048x2048 vs ggml {b} (min / fastest)", lambda x: x[f"ggml {b}"]["min"], lambda x: x[k]["mv2048_min"])
        if a.i2s:
            for s in rounds[0]["i2s"]:
                f = "mv2048" if s.startswith("2048") else "mv"
                ratio(f"vs I2_S {s} (median / median)", lambda x: x["i2s"][s]["median"], lambda x: x[k][f])
                ratio(f"vs I2_S {s} (min / fastest)", lambda x: x["i2s"][s]["min"], lambda x: x[k][f + "_min"])
        if a.llama2c:
            ratio("decode vs llama2.c at equal MACs", lambda x: x["llama2c_us"], lambda x: x[k]["decode_us"])
for b in builds:
    print(f"ggml {b} TQ2_0 16384: min {st([x[f'ggml {b}']['min'] for x in rounds])} avg {st([x[f'ggml {b}']['avg'] for x in rounds])}")
if a.llama2c:
    print(f"llama2.c: {st([x['llama2c_us'] for x in rounds])} us per token")
