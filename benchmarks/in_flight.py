"""Requests in flight decoupled from processes: learners/s and process-tree CPU of a CaSS
batch with added latency, at fixed workers, over a few ``--in-flight`` values.

    python benchmarks/in_flight.py [--learners 500] [--workers 2] [--latency-ms 20]
                                   [--in-flight 2 16] [--dir DIR] [--json FILE]

Each point runs ``python -m ceredis batch`` as a process of its own (its tree: the parent
and its pool workers, CPU from ``wait4``) against the CaSS double in another process
(every answer delayed by L), into SQLite, alternately (A B A B) for ``--rounds`` rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import DoubleProcess, bench_arguments, bench_env, cohort, work_dir


def run_point(
    uri: str, roster: Path, env: dict[str, str], directory: Path, workers: int, in_flight: int
) -> dict[str, float]:
    """One batch: its wall time, learners/s and the CPU of its process tree."""
    ledger = directory / f"inflight-{time.time_ns()}.jsonl"
    command = [
        sys.executable,
        "-m",
        "ceredis",
        "batch",
        "--source",
        uri,
        "--file",
        str(roster),
        "--workers",
        str(workers),
        "--in-flight",
        str(in_flight),
        "--quiet",
        "--ledger",
        str(ledger),
        "--database",
        f"sqlite:///{ledger.with_suffix('.db')}",
    ]
    started = time.monotonic()
    child = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the batch failed (exit {os.waitstatus_to_exitcode(status)})")
    for path in (
        ledger,
        ledger.with_suffix(".db"),
        ledger.with_suffix(".report.json"),
        ledger.with_suffix(".checkpoint"),
    ):
        path.unlink(missing_ok=True)
    learners = sum(1 for _ in roster.open(encoding="utf-8"))
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "rate": learners / wall, "cpuMsPerLearner": cpu / learners * 1000}


def main() -> int:
    parser = bench_arguments(__doc__, quick="100 learners, one round")
    parser.add_argument("--learners", type=int, default=500)
    parser.add_argument("--evidence", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    learners, rounds = (100, 1) if args.quick else (args.learners, args.rounds)
    directory = work_dir(args.dir)
    evidence, roster = cohort(directory, learners, args.evidence)
    env = bench_env(directory)
    points: dict[int, list[dict[str, float]]] = {m: [] for m in args.in_flight}
    with DoubleProcess(evidence) as double:
        double.set_latency(args.latency_ms / 1000)
        for _ in range(rounds):
            for in_flight in args.in_flight:
                load = os.getloadavg()[0]
                point = run_point(double.uri, roster, env, directory, args.workers, in_flight)
                points[in_flight].append({**point, "loadBefore": load})
    summary = []
    for in_flight, runs in points.items():
        row = {
            "workers": args.workers,
            "inFlight": in_flight,
            "latencyMs": args.latency_ms,
            "learners": learners,
            "learnersPerSecond": median(r["rate"] for r in runs),
            "cpuMsPerLearner": median(r["cpuMsPerLearner"] for r in runs),
            "runs": runs,
        }
        summary.append(row)
        print(
            f"N={args.workers} M={in_flight:>3} L={args.latency_ms:g} ms: "
            f"{row['learnersPerSecond']:7.1f} learners/s, "
            f"tree CPU {row['cpuMsPerLearner']:.2f} ms/learner (median of {len(runs)}; "
            f"load before {', '.join(format(r['loadBefore'], '.1f') for r in runs)})"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
