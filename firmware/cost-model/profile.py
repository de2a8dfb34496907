#!/usr/bin/env python3
"""Sums the cost model's per-block totals (plugin option profile=1) by function.

    profile.py ELF COST_LOG [N]     # prints the N (default 20) most expensive functions

A block is charged to the function whose `nm` symbol contains its first instruction; with LTO
most of the runtime is inlined into a few functions, so read the names as "code of".
"""
import bisect
import subprocess
import sys


def main():
    elf, log = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    syms = []
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", elf], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            syms.append((int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    totals = {}
    grand = [0, 0, 0]
    with open(log) as f:
        for line in f:
            if not line.startswith("block "):
                continue
            w = line.split()
            pc, insns, core, stall = int(w[1], 16), int(w[3]), int(w[5]), int(w[7])
            i = bisect.bisect_right(starts, pc) - 1
            name = "?"
            if i >= 0 and pc < syms[i][0] + max(syms[i][1], 2):
                name = syms[i][2]
            t = totals.setdefault(name, [0, 0, 0])
            for k, v in enumerate((insns, core, stall)):
                t[k] += v
                grand[k] += v
    total_cycles = grand[1] + grand[2]
    print(f"{'cycles':>12} {'%':>5} {'core':>12} {'stall':>12} {'insns':>12}  function (whole run)")
    for name, (insns, core, stall) in sorted(totals.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))[:top]:
        print(f"{core + stall:12d} {100 * (core + stall) / max(total_cycles, 1):5.1f} {core:12d} {stall:12d} {insns:12d}  {name[:90]}")


if __name__ == "__main__":
    main()
