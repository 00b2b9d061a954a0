"""``ceredis report --html``: a cohort on one self-contained page, for screens and paper.

No network: inline CSS, inline SVG charts, a Content-Security-Policy that forbids every
fetch, system fonts. Every text from the input (learner ids, errors, reasons) is escaped.
Every count shown carries ``data-count="<name>"`` so a test (or a script) reads it back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from ceredis.cohort import Cohort, CohortSummary, summarize

__all__ = ["render_report"]

_CSS = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --band: #9fb3c8;
  --granted: #1f5fa8; --marked: #c2410c; --bad: #b42318; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px;
  border-bottom: 2px solid var(--line); padding-bottom: 4px; }
.sub, .note { color: var(--muted); } .note { font-size: 13px; margin: 4px 0 10px; }
.tiles { display: flex; gap: 12px; flex-wrap: wrap; margin: 12px 0; }
.tile { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.tile b { display: block; font-size: 26px; } .tile.bad b { color: var(--bad); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; } code, pre { font: 13px ui-monospace,
  "SFMono-Regular", Menlo, Consolas, monospace; word-break: break-all; white-space: pre-wrap; }
pre { background: #f5f7fa; padding: 6px 8px; margin: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 10px; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.chart { flex: 1 1 520px; width: 100%; max-width: 760px; height: auto; display: block;
  margin: 6px 0; }
.chart text { font-size: 12px; fill: var(--ink); } .chart .axis { stroke: var(--muted); }
.chart .grid { stroke: var(--line); } .chart .v { font-size: 11px; fill: var(--muted); }
.band { fill: var(--band); } .granted { fill: var(--granted); } .alt { fill: #5b8fd1; }
.marked { fill: var(--marked); } .rule { stroke: var(--marked); stroke-dasharray: 4 3; }
.key { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; }
.twocol { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
@page { margin: 14mm; }
@media print {
  body { font-size: 11pt; max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; } tr, dl, .tiles, .chart { break-inside: avoid; }
  .chart { max-width: 17cm; }
}
"""
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'"


def render_report(cohort: Cohort) -> str:
    """The whole page for *cohort*, as one HTML string."""
    summary = summarize(cohort)
    run = escape(str(cohort.run_id or "unknown run"))
    body = "\n".join(
        (
            f"<header><h1>CEREDIS cohort report</h1><p class='sub'>run {run} · "
            f"{escape(cohort.referential.id)} · {escape(cohort.verification)}</p></header>",
            _facts(cohort, summary),
            _levels(summary),
            _scores(summary, cohort),
            _domains(summary, cohort),
            _refusals(summary),
            _failures(summary),
        )
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>CEREDIS cohort report — run {run}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _count(name: str, value: int, tag: str = "b") -> str:
    """A count a test can read back: ``<tag data-count=NAME>``; a ``td`` is right-aligned."""
    attrs = " class='n'" if tag == "td" else ""
    return f"<{tag}{attrs} data-count='{escape(name)}'>{value:,}</{tag}>"


def _facts(cohort: Cohort, summary: CohortSummary) -> str:
    s = summary.statuses
    tiles = [("learners", "learners"), ("ok", "OK"), ("skipped", "skipped"), ("failed", "failed")]
    shown = "".join(
        f"<div class='tile{' bad' if key == 'failed' and s[key] else ''}'>"
        f"{_count(key, s[key])}{label}</div>"
        for key, label in tiles
    )
    held = f"<div class='tile'>{_count('held', len(summary.refusals))}held below band</div>"
    ref = cohort.referential
    facts = [
        ("Run", cohort.run_id),
        ("Started", cohort.started_at),
        ("Finished", cohort.finished_at or "not finished (no footer)"),
        ("Referential", f"{ref.id} (version {ref.version})"),
        ("Referential hash", ref.hash),
        ("Engine version", cohort.engine_version),
        ("Source", cohort.source),
        ("Store", cohort.store),
        ("Read from", cohort.origin),
        ("Verification", cohort.verification),
        ("resultsRoot", cohort.results_root or "none (the ledger has no footer)"),
    ]
    rows = "".join(
        f"<dt>{escape(k)}</dt><dd><code>{escape(str(v))}</code></dd>"
        if k in ("Referential hash", "resultsRoot", "Run")
        else f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>"
        for k, v in facts
        if v is not None
    )
    checkpoint = (
        f"<pre id='checkpoint'>{escape(cohort.checkpoint)}</pre><span class='note'>its "
        "signature is not checked here: `ceredis check-proof --key` checks it</span>"
        if cohort.checkpoint
        else "<span id='checkpoint'>none beside the ledger (the run was not signed)</span>"
    )
    return (
        f"<section id='facts'><h2>The run</h2><div class='tiles'>{shown}{held}</div>"
        f"<dl>{rows}<dt>Checkpoint</dt><dd>{checkpoint}</dd></dl></section>"
    )


def _levels(summary: CohortSummary) -> str:
    levels = summary.levels
    chart = _bar_chart(
        levels,
        [
            ("band (by score alone)", ["band"] * len(levels), [summary.bands[lv] for lv in levels]),
            ("granted level", ["granted"] * len(levels), [summary.granted[lv] for lv in levels]),
        ],
        caption="OK learners per band and per granted level",
    )
    head = "<tr><th>level</th><th class='n'>band</th><th class='n'>granted</th>"
    head += "<th class='n'>held below this band</th></tr>"
    rows = "".join(
        f"<tr data-level='{escape(lv)}'><td>{escape(lv)}</td>"
        f"{_count('band-' + lv, summary.bands[lv], 'td')}"
        f"{_count('granted-' + lv, summary.granted[lv], 'td')}"
        f"{_count('held-' + lv, summary.held[lv], 'td')}</tr>"
        for lv in levels
    )
    return (
        "<section id='levels'><h2>Granted levels against bands</h2><p class='note'>The band "
        "is the level the global score alone reaches; the granted level is what the strict "
        f"rules allow. Counts of the {summary.statuses['ok']:,} OK learners.</p>"
        f"<div class='twocol'><table>{head}{rows}</table>{chart}</div></section>"
    )


def _scores(summary: CohortSummary, cohort: Cohort) -> str:
    bins = summary.histogram
    bands = cohort.referential.bands
    shade = {band.level: ("granted", "alt")[i % 2] for i, band in enumerate(bands)}
    classes = [shade[_band_of(low, bands)] for low, _, _ in bins]
    chart = _bar_chart(
        [str(low) for low, _, _ in bins],
        [("learners", classes, [n for _, _, n in bins])],
        caption="Histogram of global CEREDIS scores",
        edges=str(bins[-1][1]),
    )
    limits = " · ".join(f"{escape(b.level)} from {int(b.min)}" for b in bands)
    cells = "".join(
        f"<tr><td>{low}–{high}</td>{_count(f'score-{low}-{high}', n, 'td')}</tr>"
        for low, high, n in bins
    )
    return (
        f"<section id='scores'><h2>Global scores (0–{int(cohort.referential.global_scale)})"
        f"</h2><p class='note'>OK learners per {bins[0][1] - bins[0][0]}-point bin, shaded "
        f"by band: {limits}.</p><div class='twocol'>{chart}<table><tr><th>score</th>"
        f"<th class='n'>learners</th></tr>{cells}</table></div></section>"
    )


def _band_of(score: int, bands: Sequence[Any]) -> str:
    return [b.level for b in bands if b.min <= score][-1]


def _domains(summary: CohortSummary, cohort: Cohort) -> str:
    ref = cohort.referential
    rules = _domain_rules(cohort)
    rows = "".join(
        f"<tr{' class=marked-row' if d.id in rules else ''}><td>{escape(d.id)}</td>"
        f"<td>{escape(d.name)}</td><td class='n' data-domain='{escape(d.id)}'>"
        f"{summary.domains[d.id]}</td><td>{escape(_rules_text(rules.get(d.id, [])))}</td></tr>"
        for d in ref.domains
    )
    return (
        "<section id='domains'><h2>Average domain scores (0–100)</h2><p class='note'>Mean "
        "over the OK learners. Marked: the domain the strict level rules test (D5, "
        "metalinguistic and metacognitive), with its minimum per level.</p>"
        f"{_domain_chart(summary, cohort, rules)}<table><tr><th>domain</th><th>name</th>"
        f"<th class='n'>average</th><th>strict rule</th></tr>{rows}</table></section>"
    )


def _domain_rules(cohort: Cohort) -> dict[str, list[tuple[str, int]]]:
    """Per domain, the (level, minimum) of every ``domainMinimum`` rule that names it."""
    rules: dict[str, list[tuple[str, int]]] = {}
    for level, checks in cohort.referential.level_rules.items():
        for rule in checks:
            if rule.kind == "domainMinimum" and rule.domain and rule.value is not None:
                rules.setdefault(rule.domain, []).append((level, int(rule.value)))
    return rules


def _rules_text(rules: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{level} needs ≥ {value}" for level, value in rules)


def _refusals(summary: CohortSummary) -> str:
    rows = "".join(
        f"<tr><td>{escape(r.agent_id)}</td><td class='n'>{r.score}</td><td>{escape(str(r.band))}"
        f"</td><td>{escape(str(r.level))}</td><td>{escape('; '.join(r.reasons))}</td></tr>"
        for r in summary.refusals
    )
    table = (
        "<table><tr><th>learner</th><th class='n'>score</th><th>band</th><th>granted</th>"
        f"<th>reasons</th></tr>{rows}</table>"
        if rows
        else "<p>No learner was held below their band.</p>"
    )
    return (
        "<section id='refusals'><h2>Held below their band by the strict rules "
        f"({_count('refusals', len(summary.refusals), 'span')})</h2>{table}</section>"
    )


def _failures(summary: CohortSummary) -> str:
    rows = "".join(
        f"<tr><td>{escape(f.agent_id)}</td><td>{escape(f.error or '')}</td></tr>"
        for f in summary.failures
    )
    table = (
        f"<table><tr><th>learner</th><th>error</th></tr>{rows}</table>"
        if rows
        else "<p>No learner failed.</p>"
    )
    return (
        "<section id='failures'><h2>Failed learners "
        f"({_count('failures', len(summary.failures), 'span')})</h2>{table}</section>"
    )


_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 250, 46, 20, 24, 40


def _bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, list[str], list[int]]],
    caption: str,
    edges: str = "",
) -> str:
    """Vertical bars: one group per label, one bar per series (name, bar classes, values).

    With *edges* (the last bin's upper bound) the labels name bin edges, not groups.
    """
    top, step = _nice_scale(max((v for _, _, values in series for v in values), default=0))
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    group = width / len(labels)
    bar = group * 0.8 / len(series)
    out = [_svg_open(caption, _H), *_y_grid(top, step, height)]
    for i, label in enumerate(labels):
        x0 = _LEFT + i * group + group * 0.1
        for j, (name, classes, values) in enumerate(series):
            value, x = values[i], x0 + j * bar
            h = value / top * height
            y = _TOP + height - h
            out.append(
                f"<rect class='{classes[i]}' x='{x:.1f}' y='{y:.1f}' width='{bar - 1:.1f}' "
                f"height='{h:.1f}'><title>{escape(name)} {escape(label)}: {value}</title></rect>"
            )
            if value:
                out.append(
                    f"<text class='v' x='{x + bar / 2:.1f}' y='{y - 3:.1f}' "
                    f"text-anchor='middle'>{value}</text>"
                )
        centre = _LEFT + (i if edges else i + 0.5) * group
        out.append(
            f"<text x='{centre:.1f}' y='{_TOP + height + 16}' "
            f"text-anchor='middle'>{escape(label)}</text>"
        )
    if edges:
        out.append(
            f"<text x='{_LEFT + width:.1f}' y='{_TOP + height + 16}' "
            f"text-anchor='middle'>{escape(edges)}</text>"
        )
    if len(series) > 1:
        out.extend(_legend(series))
    out.append("</svg>")
    return "".join(out)


def _svg_open(caption: str, height: int) -> str:
    return (
        f"<svg class='chart' viewBox='0 0 {_W} {height}' role='img' "
        f"aria-label='{escape(caption)}'><title>{escape(caption)}</title>"
    )


def _y_grid(top: int, step: int, height: int) -> list[str]:
    """Horizontal grid lines with their counts, and the x axis."""
    lines = []
    for tick in range(0, top + 1, step):
        y = _TOP + height - tick / top * height
        lines.append(
            f"<line class='grid' x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{y:.1f}' y2='{y:.1f}'/>"
            f"<text x='{_LEFT - 6}' y='{y + 4:.1f}' text-anchor='end'>{tick}</text>"
        )
    base = _TOP + height
    lines.append(f"<line class='axis' x1='{_LEFT}' x2='{_W - _RIGHT}' y1='{base}' y2='{base}'/>")
    return lines


def _legend(series: Sequence[tuple[str, list[str], list[int]]]) -> list[str]:
    out, x = [], _LEFT
    for name, classes, _ in series:
        out.append(
            f"<rect class='{classes[0]}' x='{x}' y='4' width='12' height='12'/>"
            f"<text x='{x + 16}' y='14'>{escape(name)}</text>"
        )
        x += 24 + 8 * len(name)
    return out


def _nice_scale(value: int) -> tuple[int, int]:
    """(top, step) of a count axis: a step of 1, 2 or 5 × 10^k, at most four steps to top."""
    scale = 1
    while True:
        for unit in (1, 2, 5):
            step = unit * scale
            if 4 * step >= value:
                return max(step, -(-value // step) * step), step
        scale *= 10


_ROW, _LABEL = 36, 150


def _domain_chart(
    summary: CohortSummary, cohort: Cohort, rules: dict[str, list[tuple[str, int]]]
) -> str:
    """Horizontal bars 0–100, one per domain; marked domains with their rule minimums."""
    domains = cohort.referential.domains
    height = _TOP + _ROW * len(domains) + 24
    width = _W - _LABEL - _RIGHT - 40
    out = [_svg_open("Average domain scores", height)]
    for tick in range(0, 101, 20):
        x = _LABEL + tick / 100 * width
        out.append(
            f"<line class='grid' x1='{x:.1f}' x2='{x:.1f}' y1='{_TOP - 6}' "
            f"y2='{height - 20}'/><text x='{x:.1f}' y='{height - 6}' "
            f"text-anchor='middle'>{tick}</text>"
        )
    for i, domain in enumerate(domains):
        y, mean = _TOP + i * _ROW, summary.domains[domain.id]
        marked = domain.id in rules
        w = float(mean) / 100 * width
        label = f"{domain.id}{' (strict rules)' if marked else ''}"
        out.append(
            f"<text x='{_LABEL - 8}' y='{y + 17}' text-anchor='end'>{escape(label)}</text>"
            f"<rect class='{'marked' if marked else 'granted'}' x='{_LABEL}' y='{y}' "
            f"width='{w:.1f}' height='{_ROW - 12}'><title>{escape(domain.name)}: {mean}"
            f"</title></rect><text class='v' x='{_LABEL + w + 4:.1f}' y='{y + 16}'>{mean}</text>"
        )
        for k, (level, minimum) in enumerate(rules.get(domain.id, [])):
            x = _LABEL + minimum / 100 * width
            out.append(
                f"<line class='rule' x1='{x:.1f}' x2='{x:.1f}' y1='{y - 4}' y2='{y + _ROW - 8}'/>"
                f"<text class='v' x='{x + (2 if k % 2 else -2):.1f}' y='{y - 6 + _ROW}' "
                f"text-anchor='{'start' if k % 2 else 'end'}'>{escape(level)} ≥ {minimum}</text>"
            )
    out.append("</svg>")
    return "".join(out)
