"""Parent peak memory: the engine's parent must not grow with the number of learners.

    python benchmarks/parent_memory.py [--quick] [--sizes N,N] [--workers W] [--dir DIR]

The engine scores ``--file`` rosters of 100,000 and 1,000,000 ids (--quick: 10,000 and
100,000) with 2 workers, from a small JSONL cohort (1,000 learners, ~20 evidence each)
into a fresh result store per run. Most ids are unknown to the source, so those
learners are SKIPPED quickly — the parent still plans, feeds, receives, chains into the
ledger and reports every one of them, which is what is measured.

The store is a fresh PostgreSQL database per run (``--store sqlite``: a fresh SQLite
file); the parent's memory is the same with either store.

The parent runs in a process of its own (``_bench.py engine``) and reads its own peak
resident set at the end (``getrusage(RUSAGE_SELF).ru_maxrss``: the parent only, not its
workers). Figures are printed with bounds from the same run: the parent's own resident
set just before ``run_batch`` (interpreter + imports + plan: the floor), the growth above
it, and the ratio of the largest roster's peak to the smallest's (1.0 = independent of
the cohort size).

Target (project issue 4): parent peak < 300 MB for 1,000,000 ids.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import (
    EngineSpec,
    bench_arguments,
    bench_env,
    cohort,
    environment,
    fresh_database,
    run_engine,
    scratch_ledger,
    wait_quiet,
    work_dir,
)

TARGET_MIB = 300
KNOWN = 1_000  # learners with evidence in the source; the rest of each roster is unknown


def roster(directory: Path, known: Path, size: int) -> Path:
    """*size* ids: the cohort's learners first, then ids the source does not know."""
    out = directory / f"roster-{size}.txt"
    if not out.exists():
        head = known.read_text().split()[:size]
        with open(out.with_suffix(".tmp"), "w", encoding="utf-8") as f:
            f.write("\n".join(head) + "\n")
            for i in range(size - len(head)):
                f.write(f"U{i:08d}\n")
        out.with_suffix(".tmp").replace(out)
    return out


@contextlib.contextmanager
def store_url(kind: str, directory: Path) -> Iterator[str]:
    """A fresh PostgreSQL database, or a fresh SQLite file; yields its URL."""
    if kind == "postgresql":
        with fresh_database() as dsn:
            yield dsn
        return
    path = directory / f"memory-{time.time_ns()}.sqlite"
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> int:
    parser = bench_arguments(__doc__, quick="10,000 and 100,000 ids")
    parser.add_argument("--sizes", help="comma-separated roster sizes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--store",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="the result store, a fresh one per run (the parent's memory does not depend on it)",
    )
    args = parser.parse_args()
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    directory = work_dir(args.dir)
    env = bench_env(directory)
    evidence, known = cohort(directory, KNOWN, 20)

    runs = {}
    for size in sizes:
        ids = roster(directory, known, size)
        wait_quiet()
        with (
            store_url(args.store, directory) as dsn,
            scratch_ledger(directory, f"memory-{size}") as ledger,
        ):
            spec = EngineSpec(
                source=str(evidence),
                roster=str(ids),
                database=dsn,
                workers=args.workers,
                ledger=str(ledger),
                env=env,
                timings=False,
            )
            runs[size] = run_engine(spec)
            runs[size]["ledgerMiB"] = ledger.stat().st_size / 2**20

    info = environment()
    print(
        f"parent memory: --file rosters of {', '.join(f'{s:,}' for s in sizes)} ids "
        f"({KNOWN:,} known to the source, the rest SKIPPED), {args.workers} workers, "
        f"file source -> {args.store}, "
        f"python {info['python']}"
    )
    for size, run in runs.items():
        peak, floor = run["parentPeakMiB"], run["parentRssBeforeRunMiB"]
        verdict = "[target met]" if peak < TARGET_MIB else "[ABOVE target]"
        print(
            f"{size:>9,} ids: parent peak {peak:6.1f} MB (ru_maxrss) | floor before run_batch "
            f"{floor:5.1f} MB, growth {peak - floor:+5.1f} MB | target < {TARGET_MIB} MB "
            f"{verdict}"
        )
        print(
            f"           {run['learners']:,} learners ({run['ok']:,} ok, {run['skipped']:,} "
            f"skipped, {run['failed']} failed) in {run['seconds']:.0f} s = "
            f"{run['rate']:,.0f}/s; worker peak {max(run['workerPeakMiB'], default=0):.0f} MB; "
            f"ledger {run['ledgerMiB']:,.0f} MB on disk; {run['maxConnections']} DB connections"
        )
    small, large = runs[sizes[0]], runs[sizes[-1]]
    growth = large["parentPeakMiB"] / small["parentPeakMiB"]
    print(
        f"peak({sizes[-1]:,}) / peak({sizes[0]:,}) = {growth:.3f} for {sizes[-1] / sizes[0]:.0f}x "
        f"the ids (1.000 = independent of the cohort size)"
    )
    if args.json:
        args.json.write_text(json.dumps({"environment": info, "runs": runs}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
