#!/usr/bin/env python3
"""Plot `dlock --json bench` output as an SVG: ops/s against concurrency, one line per path,
one panel per workload. Standard library only.

    target/release/dlock --json bench > docs/bench.json
    python3 scripts/plot-bench.py docs/bench.json docs/bench.svg
"""

import json
import math
import sys

COLORS = {"component": "#1f77b4", "native": "#2ca02c", "rslock": "#d62728", "plugin-host": "#9467bd", "plugin-composed": "#8c564b"}
PANEL_W, PANEL_H = 420, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 20, 40, 50


def nice_max(value):
    """A round number at or above `value` for the top of an axis."""
    if value <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def panel(cells, workload, x0):
    rows = [c for c in cells if c["workload"] == workload]
    if not rows:
        return []
    levels = sorted({c["concurrency"] for c in rows})
    top = nice_max(max(c["ops_per_sec"] for c in rows))
    inner_w = PANEL_W - MARGIN_L - MARGIN_R
    inner_h = PANEL_H - MARGIN_T - MARGIN_B

    def x(level):
        if len(levels) == 1:
            return x0 + MARGIN_L + inner_w / 2
        i = levels.index(level)
        return x0 + MARGIN_L + inner_w * i / (len(levels) - 1)

    def y(ops):
        return MARGIN_T + inner_h * (1 - ops / top)

    out = [
        f'<text x="{x0 + PANEL_W / 2}" y="22" text-anchor="middle" font-weight="bold">'
        f"{workload}</text>",
        f'<line x1="{x0 + MARGIN_L}" y1="{MARGIN_T + inner_h}" x2="{x0 + MARGIN_L + inner_w}" '
        f'y2="{MARGIN_T + inner_h}" stroke="black"/>',
        f'<line x1="{x0 + MARGIN_L}" y1="{MARGIN_T}" x2="{x0 + MARGIN_L}" '
        f'y2="{MARGIN_T + inner_h}" stroke="black"/>',
    ]
    for i in range(5):
        value = top * i / 4
        out.append(
            f'<text x="{x0 + MARGIN_L - 6}" y="{y(value) + 4}" text-anchor="end" '
            f'font-size="11">{value / 1000:.0f}k</text>'
        )
        out.append(
            f'<line x1="{x0 + MARGIN_L}" y1="{y(value)}" x2="{x0 + MARGIN_L + inner_w}" '
            f'y2="{y(value)}" stroke="#ddd"/>'
        )
    for level in levels:
        out.append(
            f'<text x="{x(level)}" y="{MARGIN_T + inner_h + 16}" text-anchor="middle" '
            f'font-size="11">{level}</text>'
        )
    out.append(
        f'<text x="{x0 + MARGIN_L + inner_w / 2}" y="{PANEL_H - 12}" text-anchor="middle" '
        f'font-size="12">concurrency</text>'
    )
    for path in sorted({c["path"] for c in rows}):
        points = sorted((c["concurrency"], c["ops_per_sec"]) for c in rows if c["path"] == path)
        color = COLORS.get(path, "black")
        coords = " ".join(f"{x(level):.1f},{y(ops):.1f}" for level, ops in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
        for level, ops in points:
            out.append(f'<circle cx="{x(level):.1f}" cy="{y(ops):.1f}" r="3" fill="{color}"/>')
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: plot-bench.py BENCH.json OUT.svg")
    with open(sys.argv[1]) as f:
        data = json.load(f)
    cells = data["cells"]
    workloads = [w for w in ("uncontended", "contended") if any(c["workload"] == w for c in cells)]
    width = PANEL_W * len(workloads)
    height = PANEL_H + 40
    body = []
    for i, workload in enumerate(workloads):
        body += panel(cells, workload, i * PANEL_W)
    legend_x = 20
    for path, color in COLORS.items():
        if any(c["path"] == path for c in cells):
            body.append(
                f'<rect x="{legend_x}" y="{PANEL_H + 12}" width="14" height="4" fill="{color}"/>'
            )
            body.append(
                f'<text x="{legend_x + 20}" y="{PANEL_H + 18}" font-size="12">{path}</text>'
            )
            legend_x += 110
    body.append(
        f'<text x="{width - 10}" y="{PANEL_H + 18}" text-anchor="end" font-size="11">'
        f'acquire+release ops/s; Redis {data.get("redis", "")[:60]}</text>'
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>\n"
    )
    with open(sys.argv[2], "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
