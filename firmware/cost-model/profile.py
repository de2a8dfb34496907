#!/usr/bin/env python3
"""Sums the cost model's per-block totals (plugin option profile=1) by function.

    profile.py ELF COST_LOG [N]     # prints the N (default 20) most expensive functions
    PROFILE_CORE=1 profile.py ...   # core 1's blocks (a two-core run) instead of core 0's

The plugin counts decode steps only (every generator step after the one that runs the
prompt); the figures are per decoded token. A block is charged to the function whose `nm`
symbol contains its first instruction; with LTO much of the runtime is inlined into a few
functions, so read the names as "code of".
"""
import bisect
import os
import subprocess
import sys


def main():
    elf, log = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    syms = []
    out = subprocess.run(["nm", "-S", "-C", "--defined-only", elf], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tTwWdD":
            syms.append((int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    syms.sort()
    starts = [s[0] for s in syms]
    totals = {}
    grand = [0, 0, 0]
    prefix = "block1 " if os.environ.get("PROFILE_CORE") == "1" else "block "
    steps = 1
    with open(log) as f:
        for line in f:
            if line.startswith("profile: decode steps "):
                steps = max(int(line.split()[-1]), 1)
            if not line.startswith(prefix):
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
    print(f"per decoded token (mean of {steps}): {total_cycles / steps:.0f} cycles = "
          f"{grand[1] / steps:.0f} core + {grand[2] / steps:.0f} flash stall, {grand[0] / steps:.0f} instructions")
    print(f"{'cycles':>9} {'%':>5} {'core':>9} {'stall':>8} {'insns':>9}  function")
    rows = sorted(totals.items(), key=lambda kv: -(kv[1][1] + kv[1][2]))
    for name, (insns, core, stall) in rows[:top]:
        print(f"{(core + stall) / steps:9.0f} {100 * (core + stall) / max(total_cycles, 1):5.1f} "
              f"{core / steps:9.0f} {stall / steps:8.0f} {insns / steps:9.0f}  {name[:90]}")
    rest = rows[top:]
    if rest:
        core = sum(r[1][1] for r in rest)
        stall = sum(r[1][2] for r in rest)
        insns = sum(r[1][0] for r in rest)
        print(f"{(core + stall) / steps:9.0f} {100 * (core + stall) / max(total_cycles, 1):5.1f} "
              f"{core / steps:9.0f} {stall / steps:8.0f} {insns / steps:9.0f}  ({len(rest)} other functions)")


if __name__ == "__main__":
    main()
