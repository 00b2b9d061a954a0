"""Pinned workers against unpinned: the same engine, ``CEREDIS_PIN_WORKERS`` off then on.

    .venv/bin/python benchmarks/pinning.py [--rounds 4] [--learners 2000]
        [--points xapi:0:1:w1/m1,xapi:20:16:w2/m16,file:2:w2]

Each point is a point of the seed comparison (``vs_seed/compare.py``: the same static
xAPI upstream with added latency, or the same JSONL file, a fresh PostgreSQL database
per run) with the project setting its tuning picks there. The engine runs with its
workers left where the system puts them (off) and pinned one to a CPU (on), alternately
(off on off on, so a slow moment of the machine spoils one pair, not one side). Printed
per point: learners/s of each (medians), the median of the per-round ratios on / off,
and the CPU a learner of the whole process tree. Exit codes: 0 measured, 1 a run failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "vs_seed")]

from _bench import CORES, seed_cohort, work_dir  # noqa: E402
from compare import Context, Point, Setting, measure, set_latency, upstream_for  # noqa: E402

DEFAULT_POINTS = "xapi:0:1:w1/m1,xapi:0:4:w2/m4,xapi:20:16:w2/m16,xapi:50:16:w1/m16,file:2:w2"


def _point(text: str) -> tuple[Point, Setting]:
    """``xapi:L:N:wW/mM`` or ``file:N:wW``: a comparison point and the project's setting."""
    *where, setting = text.split(":")
    workers, _, in_flight = setting.removeprefix("w").partition("/m")
    bound = int(in_flight) if in_flight else None
    return Point.parse(":".join(where)), Setting(int(workers), bound)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default=DEFAULT_POINTS, help=f"default {DEFAULT_POINTS}")
    parser.add_argument("--rounds", type=int, default=4, help="off/on pairs per point (4)")
    parser.add_argument("--learners", type=int, default=2000, help="cohort size (2000)")
    args = parser.parse_args()
    points = [_point(t) for t in args.points.split(",")]
    directory = work_dir(None) / "vs_seed"
    directory.mkdir(parents=True, exist_ok=True)
    cohort, roster = seed_cohort(directory, args.learners)
    print(f"{args.learners} learners, {args.rounds} off/on pairs a point, {CORES} cores")
    print("| point | setting | off /s | on /s | on / off (rounds) | CPU ms/l off / on |")
    print("|---|---|---|---|---|---|")
    with upstream_for(cohort, [p for p, _ in points]) as upstream:
        ctx = Context(directory, cohort, roster, args.learners, upstream, True)
        for point, setting in points:
            set_latency(ctx, point)
            runs: dict[str, list] = {"off": [], "on": []}
            for _ in range(args.rounds):
                for switch in ("off", "on"):
                    os.environ["CEREDIS_PIN_WORKERS"] = switch
                    run, _ = measure(ctx, "project", point, setting)
                    if run.exit_code != 0:
                        print(f"{point.label} {switch}: exit {run.exit_code}: {run.stderr_tail}")
                        return 1
                    runs[switch].append(run)
            ratios = [on.rate / off.rate for off, on in zip(runs["off"], runs["on"], strict=True)]
            off, on = (statistics.median(r.rate for r in runs[s]) for s in ("off", "on"))
            cpu = [statistics.median(r.per_learner_ms(r.cpu_tree) for r in runs[s]) for s in runs]
            print(
                f"| {point.label} | {setting.label} | {off:.1f} | {on:.1f} | "
                f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | "
                f"{cpu[0]:.2f} / {cpu[1]:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
