#!/usr/bin/env python3
"""Plots the validation curves of ablation runs as one SVG (standard library only).

    python3 docs/ablations/plot.py OUT.svg LABEL=RUN_DIR [LABEL=RUN_DIR ...]

Each RUN_DIR is a trainer run directory; its metrics.csv holds `val_loss_q_fixed_batches`
(the quantized loss on the trainer's fixed validation batches) every `--eval-every` steps; the
x axis is training tokens, so runs with other batch sizes line up.
"""
import csv
import sys

COLORS = ["#000000", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
W, H, L, R, T, B = 900, 540, 70, 220, 40, 50


def curve(run_dir):
    pts = []
    with open(f"{run_dir}/metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            v = row.get("val_loss_q_fixed_batches", "")
            if v:
                pts.append((int(row["tokens"]) / 1e6, float(v)))
    return pts


def main():
    out, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
    curves = [(label, curve(d)) for label, d in runs]
    xmax = max(p[0] for _, c in curves for p in c)
    ymin, ymax = 1.45, 1.80
    sx = lambda x: L + (W - L - R) * x / xmax
    sy = lambda y: T + (H - T - B) * (ymax - min(max(y, ymin), ymax)) / (ymax - ymin)
    svg = [f'<svg width="{W}" height="{H}" viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           f'<text x="{W/2}" y="24" text-anchor="middle" font-family="sans-serif" font-size="15">'
           'mcu ablations: quantized validation loss on the fixed batches (nats/char)</text>']
    for i in range(8):
        y = ymin + (ymax - ymin) * i / 7
        svg.append(f'<line x1="{L}" x2="{W-R}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{L-6}" y="{sy(y)+4:.1f}" text-anchor="end" font-family="sans-serif" font-size="11">{y:.2f}</text>')
    for i in range(5):
        x = xmax * i / 4
        svg.append(f'<text x="{sx(x):.1f}" y="{H-B+16}" text-anchor="middle" font-family="sans-serif" font-size="11">{x:.1f}</text>')
    svg.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle" font-family="sans-serif" font-size="12">training tokens (millions)</text>')
    for k, (label, c) in enumerate(curves):
        col = COLORS[k % len(COLORS)]
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in c)
        svg.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.5" points="{pts}"/>')
        last = c[-1][1] if c else float("nan")
        svg.append(f'<text x="{W-R+10}" y="{T+18*k+10}" font-family="sans-serif" font-size="12" fill="{col}">{label} ({last:.3f})</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
