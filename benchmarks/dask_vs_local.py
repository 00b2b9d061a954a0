"""The Dask executor against the local pool, at the same worker count.

    python benchmarks/dask_vs_local.py [--learners N] [--workers W] [--latency S] [--dir DIR]

A synthetic cohort (default 2,000 learners, ~10 evidence records each) is scored by the
real engine (plan_batch + run_batch, SQLite store) with ``--executor local`` and then
``--executor dask`` (a LocalCluster of W processes), first from its JSONL file (latency
≈ 0: the executor's own cost shows) and then from the CaSS double with ``--latency`` s
added to every request, for the first --remote-learners (a slow remote source, where the
work hides the cost). The xAPI source behaves like the CaSS one here: both are bound by
f × latency per learner.

Printed: elapsed time and learners/s of each run, the ratio dask/local, the Dask
start-up (batch start to the first learner recorded, minus the local pool's), the cost
per Dask task (N no-op tasks through the same bounded window), whether the two roots are
equal, and what the figures predict for k machines of W workers each. Run it on a quiet
machine; figures taken on a loaded one are only indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ceredis.engine import ProgressHooks, run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from ceredis.sources.files import read_evidence_file


class FirstLearner(ProgressHooks):
    """Records when the first learner was written."""

    def __init__(self) -> None:
        self.first: float | None = None

    def advance(self, outcome: object) -> None:
        if self.first is None:
            self.first = time.monotonic()


def run(folder: Path, name: str, source: str, roster: Path, workers: int, executor: str):
    plan = plan_batch(
        agents_file=roster,
        source=source,
        workers=workers,
        database=f"sqlite:///{folder / name}.sqlite",
        ledger=folder / f"{name}.jsonl",
        executor=executor,
    )
    hooks = FirstLearner()
    started = time.monotonic()
    report = run_batch(plan, hooks)
    elapsed = time.monotonic() - started
    first = (hooks.first or started) - started
    return {"elapsed": elapsed, "first": first, "root": report.results_root, "n": report.total}


def task_cost(workers: int, tasks: int = 400) -> float:
    """Seconds per no-op task through a window of 2W+2 on a LocalCluster of W processes."""
    from distributed import Client, LocalCluster, as_completed

    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cl,
        Client(cl) as client,
    ):
        client.submit(int, 0, pure=False).result()
        started = time.monotonic()
        window, sent = as_completed(), 0
        for _ in range(2 * workers + 2):
            window.add(client.submit(int, sent, key=f"noop-{sent}", pure=False))
            sent += 1
        for future in window:
            future.release()
            if sent < tasks:
                window.add(client.submit(int, sent, key=f"noop-{sent}", pure=False))
                sent += 1
        return (time.monotonic() - started) / tasks * workers


def compare(folder: Path, label: str, source: str, roster: Path, workers: int) -> dict:
    local = run(folder, f"{label}-local", source, roster, workers, "local")
    dask = run(folder, f"{label}-dask", source, roster, workers, "dask")
    steady_local = local["elapsed"] - local["first"]
    steady_dask = dask["elapsed"] - dask["first"]
    return {
        "source": label,
        "learners": local["n"],
        "local_s": round(local["elapsed"], 2),
        "dask_s": round(dask["elapsed"], 2),
        "local_per_s": round(local["n"] / local["elapsed"], 1),
        "dask_per_s": round(dask["n"] / dask["elapsed"], 1),
        "ratio_dask_over_local_steady": round(steady_dask / steady_local, 2),
        "dask_startup_s": round(dask["first"] - local["first"], 2),
        "same_root": local["root"] == dask["root"],
        "dask_steady_per_worker_per_s": local["n"] / steady_dask / workers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--remote-learners", type=int, default=300)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="ceredis-dask-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CEREDIS_SOURCE_RATE", "1000")
    files = write_cohort(
        folder / "cohort.jsonl", bundled_referential(), args.learners, seed=3,
        evidence_per_learner=10,
    )  # fmt: skip
    rows = [compare(folder, "file", str(files.evidence), files.roster, args.workers)]
    rows.append(remote(folder, files, args))
    per_task = task_cost(args.workers)
    print(f"{'source':<8} {'learners':>8} {'local s':>8} {'dask s':>8} {'local/s':>8} "
          f"{'dask/s':>8} {'steady ratio':>12} {'start-up s':>10} same root")  # fmt: skip
    for r in rows:
        print(f"{r['source']:<8} {r['learners']:>8} {r['local_s']:>8} {r['dask_s']:>8} "
              f"{r['local_per_s']:>8} {r['dask_per_s']:>8} "
              f"{r['ratio_dask_over_local_steady']:>12} {r['dask_startup_s']:>10} "
              f"{r['same_root']}")  # fmt: skip
    print(f"cost per Dask task (no-op, window 2W+2): {per_task * 1000:.1f} ms")
    per_worker = rows[1]["dask_steady_per_worker_per_s"]
    for k in (1, 2, 3, 5):
        print(
            f"k={k} machines × {args.workers} workers, source at {args.latency * 1000:.0f} ms: "
            f"≈ {k * args.workers * per_worker:.0f} learners/s until the source's rate "
            "limit, PostgreSQL or the parent binds"
        )
    print(json.dumps({"rows": rows, "task_cost_s": per_task}, default=str))
    return 0


def remote(folder: Path, files, args) -> dict:
    from doubles.cass_double import CassDouble, Fault
    from doubles.kbac import generate_key

    referential = bundled_referential()
    competencies = {cid: c.cass_uuid for cid, c in referential.competencies.items()}
    records = [dict(r.fields) for _, agent, r in read_evidence_file(files.evidence) if agent]
    key = generate_key()
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=key, encrypted=False, seed=1
    ) as cass:
        cass.add_fault(Fault.latency(args.latency))
        os.environ.update(cass.source_env(folder / "engine.pem"))
        roster = folder / "remote-roster.txt"
        ids = files.roster.read_text().split()[: args.remote_learners]
        roster.write_text("".join(f"{i}\n" for i in ids))
        return compare(folder, "cass", cass.source_uri, roster, args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
