"""VPS sizing: the real engine over a sweep of workers x upstream latency x evidence size.

    python benchmarks/sizing.py [--quick] [--latency-ms L] [--rate R] [--seconds T]
                                [--dir DIR] [--json FILE] [--html FILE]

Every point runs the real engine — its parent in a process of its own, ``Pool`` workers,
ledger and report — reading from the CaSS double (plain assertions, a process of its
own on 127.0.0.1, ``Fault``-free, every answer delayed by L) and writing into a fresh
PostgreSQL database. The sweep: workers 1, 2, 4, 8, 16 x latency 0, 20, 50, 100 ms x
~20 and ~200 evidence records per learner, plus a baseline (one worker, chunks of 1).
``--quick`` (under two minutes): workers 1, 2, 8 x latency 0, 50 ms x ~20 evidence.

Per point: learners/s X (steady: between the 10th and 90th percentile of completions;
and end to end), the bound X* of anchors.md §E with every term measured in this run
(calibration: c, s, w, o, a and the upstream's CPU u, one at a time on the engine's own
code paths; f from the double's journal of the point itself; N; C; R when --rate is
given) and the term that binds, X/X*, p50/p95 worker time per learner, parent and
worker peak memory (VmHWM), the database connections seen in pg_stat_activity, the
upstream request rate, and the CPU other processes took meanwhile (the machine may be
shared).

Outputs: a rich table, a JSON file, an HTML page with inline SVG charts, and a
recommendation for this machine at latency --latency-ms (default 50).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import (
    CORES,
    CalibrationSpec,
    DoubleProcess,
    EngineSpec,
    bench_arguments,
    bench_env,
    bound,
    calibrate,
    cohort,
    environment,
    fresh_database,
    roster_head,
    run_engine,
    scratch_ledger,
    upstream_figures,
    wait_quiet,
    work_dir,
)
from _chart import render
from rich.console import Console
from rich.table import Table

FULL = {"workers": [1, 2, 4, 8, 16], "latencies": [0, 20, 50, 100], "evidence": [20, 200]}
QUICK = {"workers": [1, 2, 8], "latencies": [0, 50], "evidence": [20]}
#: cohort size per evidence size: enough learners for the fastest point of the sweep
COHORT = {20: 5000, 200: 900}
QUICK_COHORT = {20: 1500, 200: 300}
TARGET_LATENCY, TARGET_CPU = 0.90, 0.80


def point_learners(x_star: float, seconds: float, workers: int, cohort_size: int) -> int:
    """Learners for a point: about *seconds* at the predicted rate, at least a few chunks
    per worker, at most the cohort."""
    return int(min(cohort_size, max(40, 8 * workers, x_star * seconds)))


def run_point(
    double: DoubleProcess,
    directory: Path,
    roster: Path,
    n: int,
    workers: int,
    env: dict[str, str],
    chunksize: int | None,
    quiet_timeout: float,
) -> dict[str, Any]:
    wait_quiet(timeout=quiet_timeout)
    double.journal()  # forget the previous point's requests
    with fresh_database() as dsn, scratch_ledger(directory, "sizing") as ledger:
        spec = EngineSpec(
            source=double.uri,
            roster=str(roster_head(directory, roster, n)),
            database=dsn,
            workers=workers,
            ledger=str(ledger),
            env=env,
            chunksize=chunksize,
            upstream_pid=double.pid,
        )
        run = run_engine(spec)
    run["upstream"] = upstream_figures(double.journal(), run["learners"])
    run.pop("arrivals", None)  # big; the figures derived from it are kept
    return run


def calibration(
    double: DoubleProcess, sample: list[str], env: dict[str, str], quiet_timeout: float
) -> tuple[dict[str, Any], float]:
    """The model's terms, measured against the double at L = 0, and f from its journal."""
    double.set_latency(0.0)
    wait_quiet(timeout=quiet_timeout)
    double.journal()
    with fresh_database() as dsn:
        cal = calibrate(CalibrationSpec(double.uri, dsn, sample, env, double_pid=double.pid))
    journal = double.journal()
    # every round fetches the sample, after 10 warm-up learners
    searches = sum(1 for route in journal["routes"] if route == "search")
    fetches = searches / (cal["rounds"] * len(sample) + 10)
    cal["fetchesPerLearner"] = fetches
    return cal, fetches


def terms_line(cal: dict[str, Any], fetches: float) -> str:
    return (
        f"terms per learner (median of {cal['rounds']} rounds): fetch "
        f"{cal['fetchWall'] * 1e3:.2f} ms wall / {cal['fetchCpu'] * 1e3:.2f} ms CPU "
        f"(f = {fetches:.2f} requests), score {cal['scoreCpu'] * 1e3:.2f}, serialize+hash "
        f"{cal['serializeCpu'] * 1e3:.2f}, DB write {cal['writeWall64'] * 1e3:.2f} ms wall "
        f"in chunks of 64, {cal['writeWall1'] * 1e3:.2f} in chunks of 1 (server CPU "
        f"{cal['dbCpu64'] * 1e3:.2f} / {cal['dbCpu1'] * 1e3:.2f}), dispatch "
        f"{cal['dispatch64'] * 1e6:.0f} / {cal['dispatch1'] * 1e6:.0f} us, parent "
        f"{cal['parentCost'] * 1e6:.0f} us, upstream CPU {cal['upstreamCpu'] * 1e3:.2f} ms; "
        f"DB capacity {cal['dbCapacity']:,.0f} rows/s ({cal['dbWriters']} writers)"
    )


def recommend(points: list[dict[str, Any]], latency_ms: float, rate: float | None) -> list[str]:
    """One sentence per evidence size: the smallest worker count within 10% of the best
    throughput measured at *latency_ms*, and what bounds the run beyond it."""
    out = []
    latencies = sorted({p["latencyMs"] for p in points})
    at = min(latencies, key=lambda v: abs(v - latency_ms))
    for evidence in sorted({p["evidence"] for p in points}):
        mine = sorted(
            (p for p in points if p["evidence"] == evidence and p["latencyMs"] == at),
            key=lambda p: p["workers"],
        )
        if not mine:
            continue
        best = max(p["steadyRate"] for p in mine)
        pick = next(p for p in mine if p["steadyRate"] >= 0.9 * best)
        memory = pick["parentPeakMiB"] + sum(pick["workerPeakMiB"])
        last = mine[-1]
        if last["binding"] == "workers":
            per = last["perLearner"]
            needed = last["nextBound"] * (per["fL"] + per["t0"])
            beyond = (
                f"worker concurrency still binds at N={last['workers']} "
                f"(X* {last['bound']:,.0f}/s): more workers would still help, up to the next "
                f"bound, {describe(last['nextBinding'], rate)} at {last['nextBound']:,.0f} "
                f"learners/s, reached near N ≈ {needed:,.0f} (Little's law: X·(f·L + t0))"
            )
        else:
            beyond = (
                f"the bound is {describe(last['binding'], rate)} at about "
                f"{last['bound']:,.0f} learners/s (X* at N={last['workers']}), so more "
                f"workers add nothing"
            )
        out.append(
            f"~{evidence} evidence/learner, upstream latency {at:g} ms: "
            f"CEREDIS_MAX_WORKERS={pick['workers']} → about {pick['steadyRate']:,.0f} "
            f"learners/s, memory about {memory:,.0f} MB (parent + workers, peak RSS), "
            f"{pick['maxConnections']} DB connections, upstream about "
            f"{pick['upstream'].get('reqPerS') or 0:,.0f} req/s; beyond this {beyond}."
        )
    return out


def describe(term: str, rate: float | None) -> str:
    return {
        "cpu": f"CPU ({CORES} cores shared by workers, parent, PostgreSQL and the local double)",
        "upstream": "the upstream server's capacity (the CaSS double: one Python process)",
        "workers": "worker concurrency (N / (f·L + t0))",
        "db": "the database write capacity",
        "parent": "the serial parent (ledger + report + imap results)",
        "rate": f"the rate limit R = {rate} req/s",
    }.get(term, term)


def main() -> int:
    parser = bench_arguments(
        __doc__,
        quick="a small sweep (< 2 minutes)",
        json_help="JSON output (default benchmarks/out/...)",
    )
    parser.add_argument(
        "--latency-ms", type=float, default=50, help="the upstream latency to recommend for"
    )
    parser.add_argument("--rate", type=float, help="CEREDIS_SOURCE_RATE (default: none binds)")
    parser.add_argument("--seconds", type=float, help="target seconds per point (8; quick 2.5)")
    parser.add_argument("--html", type=Path, help="HTML chart (default benchmarks/out/...)")
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    sizes = QUICK_COHORT if args.quick else COHORT
    seconds = args.seconds or (2.5 if args.quick else 8.0)
    quiet_timeout = 3.0 if args.quick else 20.0
    directory = work_dir(args.dir)
    out_dir = Path(__file__).resolve().parent / "out"
    name = "sizing-quick" if args.quick else "sizing"
    json_path = args.json or out_dir / f"{name}.json"
    html_path = args.html or out_dir / f"{name}.html"
    env = bench_env(directory, args.rate)
    console = Console(width=None if sys.stdout.isatty() else 200)
    started = time.monotonic()
    points: list[dict[str, Any]] = []
    calibrations: dict[str, Any] = {}

    for evidence in grid["evidence"]:
        evidence_path, roster = cohort(directory, sizes[evidence], evidence)
        ids = roster.read_text().split()
        with DoubleProcess(evidence_path) as double:
            console.print(
                f"~{evidence} evidence/learner: {len(ids):,} learners in the double "
                f"(loaded in {double.load_seconds:.1f} s, {double.rss_mib:,.0f} MB)"
            )
            sample = ids[: (60 if evidence >= 100 else 200) if not args.quick else 60]
            for latency_ms in grid["latencies"]:
                # The terms are measured at L = 0 just before each latency's points, so a
                # host whose speed drifts (a shared VM) drifts little between the two.
                cal, fetches = calibration(double, sample, env, quiet_timeout)
                calibrations[f"{evidence}/{latency_ms}"] = cal
                console.print(f"  L={latency_ms} ms — {terms_line(cal, fetches)}", highlight=False)
                double.set_latency(latency_ms / 1000)
                plan = [(w, None, False) for w in grid["workers"]]
                if evidence == grid["evidence"][0] and latency_ms in (0, 50):
                    plan.append((1, 1, True))  # the baseline: one worker, chunks of 1
                for workers, chunksize, baseline in plan:
                    at_point = functools.partial(
                        bound,
                        cal,
                        workers=workers,
                        latency=latency_ms / 1000,
                        rate=args.rate,
                        chunk=chunksize,
                    )
                    predicted = at_point(fetches=fetches)
                    n = point_learners(predicted.value, seconds, workers, len(ids))
                    run = run_point(
                        double, directory, roster, n, workers, env, chunksize, quiet_timeout
                    )
                    f_run = run["upstream"]["fetchesPerLearner"] or fetches
                    model = at_point(fetches=f_run)
                    others = {k: v for k, v in model.terms.items() if v and k != "workers"}
                    nxt = min(others, key=others.get)
                    point = {
                        **run,
                        "evidence": evidence,
                        "latencyMs": latency_ms,
                        "workers": workers,
                        "baseline": baseline,
                        "bound": model.value,
                        "binding": model.binding,
                        "terms": model.terms,
                        "perLearner": model.per_learner,
                        "nextBinding": nxt,
                        "nextBound": others[nxt],
                        "efficiency": run["steadyRate"] / model.value,
                        "efficiencyEndToEnd": run["rate"] / model.value,
                        # time a learner's worker spent waiting for a core, on average
                        "runQueueMs": run["workersRunQueueWait"] / run["learners"] * 1e3,
                        # every process on the machine, measured during the run
                        "cpuPerLearnerMs": run["machineCpu"] / run["learners"] * 1e3,
                    }
                    points.append(point)
                    console.print(
                        f"  L={latency_ms:>3} ms N={workers:>2}"
                        f"{' chunk 1' if baseline else '        '}: {run['learners']:>5} "
                        f"learners, X {run['steadyRate']:8.1f}/s (end-to-end "
                        f"{run['rate']:7.1f}), X* {model.value:8.1f} ({model.binding:8s}) "
                        f"X/X* {point['efficiency']:.2f}; other load "
                        f"{run['otherCores']:.2f} cores",
                        highlight=False,
                    )

    result = {
        "environment": environment(),
        "quick": args.quick,
        "rate": args.rate,
        "calibration": calibrations,
        "points": points,
        "elapsedSeconds": time.monotonic() - started,
    }
    result["recommendations"] = recommend(
        [p for p in points if not p["baseline"]], args.latency_ms, args.rate
    )
    result["targets"] = check_targets(points)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, default=str))
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render(result), encoding="utf-8")

    console.print(table(points))
    for line in result["targets"]:
        console.print(line, highlight=False)
    console.print("[bold]Recommendation for this machine[/bold]")
    for line in result["recommendations"]:
        console.print(f"  {line}", highlight=False)
    console.print(
        f"JSON {json_path}\nchart {html_path}\nelapsed {result['elapsedSeconds']:.0f} s",
        highlight=False,
    )
    return 0


def check_targets(points: list[dict[str, Any]]) -> list[str]:
    """Each point against its target: X/X* >= 0.90 at L >= 20 ms, >= 0.80 at L = 0."""
    lines = []
    missed = []
    for p in points:
        target = TARGET_LATENCY if p["latencyMs"] >= 20 else TARGET_CPU
        if p["efficiency"] < target:
            missed.append(
                f"  MISSED: {p['evidence']} ev, L={p['latencyMs']} ms, N={p['workers']}"
                f"{' (baseline, chunks of 1)' if p['baseline'] else ''}: X/X* "
                f"{p['efficiency']:.2f} < {target:.2f} — binds {p['binding']}; busy "
                f"{p['busyCores']:.2f} cores (other processes {p['otherCores']:.2f}), "
                f"{p['cpuPerLearnerMs']:.2f} ms CPU/learner in the run vs "
                f"{p['perLearner']['machineCpu'] * 1e3:.2f} calibrated; "
                f"p50 {p['p50Ms']:.1f} ms vs t0+f·L "
                f"{(p['perLearner']['t0'] + p['perLearner']['fL']) * 1e3:.1f} ms, of which "
                f"{p['runQueueMs']:.1f} ms waiting for a core"
            )
    met = len(points) - len(missed)
    lines.append(
        f"targets (X/X* >= {TARGET_LATENCY} at L >= 20 ms, >= {TARGET_CPU} at L = 0): "
        f"{met} of {len(points)} points met"
    )
    return lines + missed


def table(points: list[dict[str, Any]]) -> Table:
    t = Table(title="CEREDIS sizing sweep", title_justify="left")
    for column in (
        "ev",
        "L ms",
        "N",
        "chunk",
        "learners",
        "X/s",
        "X e2e",
        "X*/s",
        "binds",
        "X/X*",
        "p50 ms",
        "p95 ms",
        "parent MB",
        "worker MB",
        "DB conns",
        "f",
        "req/s",
        "runq ms",
        "other",
    ):
        t.add_column(column, justify="right")
    for p in points:
        target = TARGET_LATENCY if p["latencyMs"] >= 20 else TARGET_CPU
        eff = f"{p['efficiency']:.2f}"
        t.add_row(
            str(p["evidence"]),
            str(p["latencyMs"]),
            str(p["workers"]),
            "1" if p["baseline"] else "auto",
            f"{p['learners']:,}",
            f"{p['steadyRate']:,.1f}",
            f"{p['rate']:,.1f}",
            f"{p['bound']:,.1f}",
            p["binding"],
            eff if p["efficiency"] >= target else f"[red]{eff}[/red]",
            f"{p['p50Ms']:.1f}",
            f"{p['p95Ms']:.1f}",
            f"{p['parentPeakMiB']:.0f}",
            f"{max(p['workerPeakMiB'], default=0):.0f}",
            str(p["maxConnections"]),
            f"{p['upstream']['fetchesPerLearner']:.2f}",
            f"{p['upstream'].get('reqPerS') or 0:,.0f}",
            f"{p['runQueueMs']:.1f}",
            f"{p['otherCores']:.2f}",
        )
    return t


if __name__ == "__main__":
    raise SystemExit(main())
