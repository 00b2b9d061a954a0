"""The sizing chart: one HTML page with inline SVG (no dependency), for a person to read.

For each evidence size, a panel plots learners/s against the worker count (log scale),
one colour per upstream latency: the measured throughput as a solid line with dots, the
bound X* as a dashed line of the same colour. A second panel per evidence size shows the
efficiency X/X* with the target lines (0.90 when latency >= 20 ms, 0.80 CPU-bound).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

COLOURS = ["#1b6ca8", "#d1495b", "#2e933c", "#8f5bb5", "#e07a1f", "#555555"]
W, H = 520, 330
LEFT, RIGHT, TOP, BOTTOM = 62, 16, 34, 46


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _ticks(top: float) -> list[float]:
    steps = 6 if round(top * 10) % 6 == 0 and top < 10 else 5
    return [top * i / steps for i in range(steps + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 or v == 0 else f"{v:.2f}".rstrip("0").rstrip(".")


def _panel(
    title: str,
    workers: Sequence[int],
    series: list[tuple[str, str, list[tuple[int, float]], list[tuple[int, float]]]],
    y_label: str,
    y_max: float | None = None,
    guides: Sequence[tuple[float, str]] = (),
    legend_bottom: bool = False,
) -> str:
    """One SVG chart: series are (label, colour, solid points, dashed points)."""
    values = [y for _, _, a, b in series for _, y in a + b]
    top = y_max or _nice_max(max(values, default=1) * 1.05)
    xs = sorted(set(workers))
    lo, hi = math.log2(xs[0]), math.log2(xs[-1]) if len(xs) > 1 else math.log2(xs[0]) + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(n: int) -> float:
        return LEFT + (math.log2(n) - lo) / (hi - lo or 1) * pw

    def py(v: float) -> float:
        return TOP + ph - min(v, top) / top * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
        f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">'
        f"{html.escape(title)}</text>",
    ]
    for t in _ticks(top):
        y = py(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for n in xs:
        x = px(n)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle">{n}</text>')
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 8}" text-anchor="middle">worker processes (N)</text>'
    )
    out.append(
        f'<text x="14" y="{TOP + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + ph / 2})">{html.escape(y_label)}</text>'
    )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    for value, label in guides:
        y = py(value)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#999" '
            f'stroke-dasharray="2 3"/><text x="{W - RIGHT - 4}" y="{y + 12:.1f}" '
            f'text-anchor="end" fill="#666">{html.escape(label)}</text>'
        )
    for label, colour, solid, dashed in series:
        if dashed:
            path = " ".join(f"{px(n):.1f},{py(v):.1f}" for n, v in sorted(dashed))
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5" '
                f'stroke-dasharray="6 4" opacity="0.8"/>'
            )
        if solid:
            path = " ".join(f"{px(n):.1f},{py(v):.1f}" for n, v in sorted(solid))
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"/>'
            )
            for n, v in solid:
                out.append(
                    f'<circle cx="{px(n):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}">'
                    f"<title>{html.escape(label)}, N={n}: {v:,.2f}</title></circle>"
                )
    # legend
    lx = LEFT + 8
    ly = TOP + ph - 8 - 15 * len(series) if legend_bottom else TOP + 8
    for i, (label, colour, _, _) in enumerate(series):
        y = ly + i * 15
        out.append(
            f'<rect x="{lx - 4}" y="{y - 2}" width="104" height="15" fill="white" opacity="0.8"/>'
            f'<line x1="{lx}" x2="{lx + 18}" y1="{y + 5}" y2="{y + 5}" stroke="{colour}" '
            f'stroke-width="2.2"/><text x="{lx + 24}" y="{y + 9}">{html.escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def render(result: dict[str, Any]) -> str:
    """The whole page for a sizing result (the JSON that sizing.py writes)."""
    points = [p for p in result["points"] if not p.get("baseline")]
    workers = sorted({p["workers"] for p in points})
    latencies = sorted({p["latencyMs"] for p in points})
    sections = []
    for evidence in sorted({p["evidence"] for p in points}):
        mine = [p for p in points if p["evidence"] == evidence]
        rate_series, eff_series = [], []
        for i, latency in enumerate(latencies):
            at = [p for p in mine if p["latencyMs"] == latency]
            if not at:
                continue
            colour = COLOURS[i % len(COLOURS)]
            label = f"L = {latency:g} ms"
            rate_series.append(
                (
                    label,
                    colour,
                    [(p["workers"], p["steadyRate"]) for p in at],
                    [(p["workers"], p["bound"]) for p in at],
                )
            )
            eff_series.append((label, colour, [(p["workers"], p["efficiency"]) for p in at], []))
        evidence_label = f"~{evidence} evidence/learner"
        sections.append(
            '<div class="row">'
            + _panel(
                f"Learners/s, {evidence_label} (dashed: X*)",
                workers,
                rate_series,
                "learners per second",
            )
            + _panel(
                f"Efficiency X/X*, {evidence_label}",
                workers,
                eff_series,
                "X / X*",
                y_max=1.2,
                guides=[(0.9, "0.90 target (L ≥ 20 ms)"), (0.8, "0.80 target (L = 0)")],
                legend_bottom=True,
            )
            + "</div>"
        )
    rows = []
    for p in result["points"]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    p["evidence"],
                    p["latencyMs"],
                    p["workers"],
                    "1 (baseline)" if p.get("baseline") else "auto",
                    f"{p['steadyRate']:,.1f}",
                    f"{p['rate']:,.1f}",
                    f"{p['bound']:,.1f}",
                    p["binding"],
                    f"{p['efficiency']:.2f}",
                    f"{p['p50Ms']:.1f} / {p['p95Ms']:.1f}",
                    f"{p['parentPeakMiB']:.0f} / {max(p['workerPeakMiB'], default=0):.0f}",
                    p["maxConnections"],
                    f"{p['upstream'].get('reqPerS') or 0:,.0f}",
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "evidence",
            "L ms",
            "N",
            "chunk",
            "X steady /s",
            "X end-to-end /s",
            "X* /s",
            "binds",
            "X/X*",
            "p50 / p95 ms",
            "parent / worker MB",
            "DB conns",
            "upstream req/s",
        )
    )
    env = result["environment"]
    recs = "".join(f"<li>{html.escape(r)}</li>" for r in result.get("recommendations", []))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CEREDIS sizing</title>
<style>
body {{ font-family: DejaVu Sans, Arial, sans-serif; margin: 18px; color: #222; }}
.row {{ display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 8px; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
th {{ background: #f3f3f3; }}
</style></head><body>
<h2>CEREDIS batch sizing — {env.get("cores")} cores, {env.get("memoryGiB")} GiB,
PostgreSQL {html.escape(str(env.get("postgresql", "?")).split(" ")[0])},
Python {env.get("python")}</h2>
<p>Real engine (parent, Pool workers, ledger, report) over the CaSS double (its own process,
on this machine) into a fresh PostgreSQL database per point. X steady: learners/s between
the 10th and 90th percentile of completions; X*: the anchors §E bound with terms measured
in the same run; binds: the smallest term.</p>
<h3>Recommendation</h3><ul>{recs}</ul>
{"".join(sections)}
<h3>Every point</h3>
<table><tr>{head}</tr>{"".join(rows)}</table>
</body></html>
"""
