"""Batch scaling: learners/s with 1 and 2 workers, file source into PostgreSQL.

    python benchmarks/batch_scaling.py [--quick] [--learners N] [--evidence K] [--dir DIR]

A synthetic cohort (10,000 learners, ~20 evidence records each; --quick: 5,000) is scored
from its JSONL file into a fresh PostgreSQL database per run, by the real engine (the
parent in a process of its own, ``Pool`` workers, ledger and report), with 1 and then 2
workers. Each figure is printed with bounds measured in the same run:

* the single-process rate r1: one process doing a worker's whole job per learner
  (fetch from the file index, score, serialize + hash, write in chunks) with no pool;
  ``min(N, cores) × r1`` is the CPU bound the issue asks for;
* the anchors §E bound X* (CPU of every process on the machine, dispatch, parent, DB)
  with the term that binds;
* where the CPU went during each run: the parent, the workers, the PostgreSQL server
  (per learner), and how many of the machine's cores were busy.

Target (project issue 4): 2-worker / 1-worker >= 1.7 on a 2-core machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import (
    CORES,
    CalibrationSpec,
    EngineSpec,
    bench_arguments,
    bench_env,
    bound,
    calibrate,
    cohort,
    environment,
    fresh_database,
    run_engine,
    scratch_ledger,
    wait_quiet,
    work_dir,
)

TARGET_RATIO = 1.7


def main() -> int:
    parser = bench_arguments(__doc__, quick="5,000 learners")
    parser.add_argument("--learners", type=int, help="cohort size (default 10,000)")
    parser.add_argument("--evidence", type=int, default=20, help="records per learner (~20)")
    args = parser.parse_args()
    # A run must last long enough that the pool's start, the first chunks (4 learners
    # each until a time per learner is known) and the tail are a small part of it.
    learners = args.learners or (5_000 if args.quick else 10_000)
    directory = work_dir(args.dir)
    env = bench_env(directory)

    t0 = time.monotonic()
    evidence, roster = cohort(directory, learners, args.evidence)
    ids = [line.strip() for line in roster.read_text().splitlines()]
    sample = ids[:: max(1, len(ids) // (300 if args.quick else 1000))]
    with fresh_database() as dsn:
        cal = calibrate(CalibrationSpec(str(evidence), dsn, sample, env))
    r1 = 1 / (cal["fetchWall"] + cal["scoreCpu"] + cal["serializeCpu"] + cal["writeWall64"])

    runs = {}
    for workers in (1, 2):
        wait_quiet()
        with fresh_database() as dsn, scratch_ledger(directory, f"scaling-{workers}w") as ledger:
            spec = EngineSpec(
                source=str(evidence),
                roster=str(roster),
                database=dsn,
                workers=workers,
                ledger=str(ledger),
                env=env,
            )
            runs[workers] = run_engine(spec)

    info = environment()
    print(
        f"batch scaling: {learners:,} learners x ~{args.evidence} evidence, file source -> "
        f"PostgreSQL {info.get('postgresql', '?')} (fresh database per run), "
        f"{CORES} cores, python {info['python']}"
    )
    print(
        f"single-process rate r1 (fetch {cal['fetchWall'] * 1e3:.2f} + score "
        f"{cal['scoreCpu'] * 1e3:.2f} + serialize/hash {cal['serializeCpu'] * 1e3:.2f} + "
        f"DB write {cal['writeWall64'] * 1e3:.2f} ms/learner, chunks of 64): {r1:,.0f} learners/s"
    )
    print(
        f"per learner, measured apart: PostgreSQL server CPU {cal['dbCpu64'] * 1e3:.2f} ms, "
        f"parent ledger+report {cal['parentCost'] * 1e6:.0f} us, dispatch "
        f"{cal['dispatch64'] * 1e6:.0f} us; DB capacity with {cal['dbWriters']} writers "
        f"{cal['dbCapacity']:,.0f} rows/s"
    )
    figures = {"environment": info, "learners": learners, "calibration": cal, "r1": r1}
    for workers, run in runs.items():
        n = run["learners"]
        cpu_bound = min(workers, CORES) * r1
        model = bound(cal, workers=workers, latency=0.0, fetches=1, upstream_local=False)
        print(
            f"{workers} worker{'s' if workers > 1 else ' '}: {run['rate']:7,.0f} learners/s "
            f"({n:,} in {run['seconds']:.1f} s; steady {run['steadyRate']:,.0f}/s) | "
            f"bound min(N,C)*r1 {cpu_bound:6,.0f}/s ratio {run['rate'] / cpu_bound:4.2f} | "
            f"X* {model.value:6,.0f}/s ({model.binding}) ratio {run['rate'] / model.value:4.2f}"
        )
        print(
            f"    CPU per learner: parent {run['parentCpu'] / n * 1e3:.2f} ms, workers "
            f"{run['workersCpu'] / n * 1e3:.2f} ms, PostgreSQL {run['pgCpu'] / n * 1e3:.2f} ms; "
            f"machine busy {run['busyCores']:.2f} of {CORES} cores (other processes "
            f"{run['otherCores']:.2f}); "
            f"parent peak {run['parentPeakMiB']:.0f} MB, worker peak "
            f"{max(run['workerPeakMiB'], default=0):.0f} MB, {run['maxConnections']} DB "
            f"connections"
        )
        figures[f"workers{workers}"] = {
            **run,
            "cpuBound": cpu_bound,
            "modelBound": model.value,
            "binding": model.binding,
            "terms": model.terms,
        }
    ratio = runs[2]["rate"] / runs[1]["rate"]
    steady = runs[2]["steadyRate"] / runs[1]["steadyRate"]
    verdict = "[target met]" if ratio >= TARGET_RATIO else "[BELOW target]"
    print(
        f"2-worker / 1-worker: {ratio:.2f} end to end (target >= {TARGET_RATIO}) {verdict}; "
        f"{steady:.2f} steady (10th-90th percentile of completions)"
    )
    if runs[1]["resultsRoot"] != runs[2]["resultsRoot"]:
        print("WARNING: the two runs gave different results roots")
    two = runs[2]
    cpu2 = (two["parentCpu"] + two["workersCpu"] + two["pgCpu"]) / two["learners"]
    ceiling = CORES / cpu2 / runs[1]["rate"]
    print(
        f"ceiling of the ratio on this machine: {CORES} cores / {cpu2 * 1e3:.2f} ms of CPU per "
        f"learner (parent + workers + PostgreSQL, 2-worker run) / the 1-worker rate = "
        f"{ceiling:.2f}; the ratio reaches {ratio / ceiling:.2f} of it"
    )
    one = runs[1]
    busy1 = one["busyCores"]
    print(
        f"why: with 1 worker the machine is {busy1:.2f} cores busy — the worker waits for "
        f"PostgreSQL (server {one['pgCpu'] / one['learners'] * 1e3:.2f} ms/learner) and the "
        f"parent works in parallel, so a second worker fills the idle time; "
        f"elapsed {time.monotonic() - t0:.0f} s"
    )
    figures["ratio"] = ratio
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
