"""The batch engine: a planned cohort scored on the pool into a store, a ledger and a report.

Flow (design.md): the parent plans the learners (``ceredis.plan``), feeds them to the
worker pool (``ceredis.pool``), and is the single writer of the ledger and the report;
each result is appended in input order, so results are identical whatever the worker
count, the chunking or the restarts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ceredis import __version__
from ceredis.errors import ReplayError
from ceredis.plan import BatchPlan, count_selection, iter_selection, utc_now
from ceredis.pool import Outcome, Task, scored
from ceredis.referential import Referential, bundled_referential
from ceredis.report import BatchReport, ReportFile
from ceredis.scoring import evaluate
from ceredis.sources import prepare_source
from ceredis.sources.ratelimit import limiter_for
from ceredis.stores import RunRow
from ledger import LedgerWriter, read_ledger

__all__ = ["Progress", "evaluate_agent", "run_batch"]


def evaluate_agent(
    agent_id: str, source: str | None = None, referential: Referential | None = None
) -> dict[str, Any]:
    """Fetch one learner's evidence from *source* (default: the bundled cohort) and score it."""
    referential = referential or bundled_referential()
    client = prepare_source(source).open()
    try:
        return evaluate(agent_id, client.fetch(agent_id), referential)
    finally:
        client.close()


class Progress:
    """Progress callbacks for a batch; this base class does nothing (library use)."""

    def start(self, plan: BatchPlan, total: int | None, done: int) -> None: ...

    def advance(self, outcome: Outcome) -> None: ...

    def stop(self) -> None: ...


def run_batch(plan: BatchPlan, progress: Progress | None = None) -> BatchReport:
    """Run a planned batch to the end; return its report (see BatchReport.return_code)."""
    progress = progress or Progress()
    started = time.monotonic()
    store = plan.store.open()
    try:
        store.start_run(_run_row(plan))
    finally:
        store.close()  # the parent holds no connection while workers run

    if plan.resume:
        writer = LedgerWriter.open(plan.ledger, repair=True)
        done = writer.count
    else:
        plan.ledger.parent.mkdir(parents=True, exist_ok=True)
        writer = LedgerWriter.create(plan.ledger, plan.header())
        done = 0
    report = BatchReport(
        concurrency=plan.workers,
        started_at=plan.started_at,
        ledger=plan.ledger,
        report=plan.report,
        run_id=plan.run_id,
    )
    report_file = ReportFile(plan.report)
    finished = False
    try:
        limiter = limiter_for(plan.source)
        tasks = _tasks(plan, report, report_file, done, limiter)
        progress.start(plan, count_selection(plan.selection, plan.source), done)
        for outcome in scored(plan, tasks, limiter):
            # Workers encode records with ledger.canonical: the serial parent need not
            # re-parse them (verify checks every line's canonical form anyway).
            writer.append_canonical(outcome.record, check=False)
            report.add(outcome.status)
            report_file.detail(
                outcome.agent_id,
                outcome.status,
                outcome.score,
                outcome.level,
                outcome.worker,
                outcome.duration_ms,
                outcome.error,
            )
            progress.advance(outcome)
        report.finished_at = utc_now()
        footer = writer.finish(
            {
                "finishedAt": report.finished_at,
                "counts": {
                    "total": report.total,
                    "ok": report.ok,
                    "skipped": report.skipped,
                    "failed": report.failed,
                },
            }
        )
        report.results_root = footer["ledger"]["resultsRoot"]
        finished = True
    finally:
        progress.stop()
        if not finished:
            writer.close()
            report_file.abandon()
    report.elapsed = time.monotonic() - started
    report_file.finish(report)
    store = plan.store.open()
    try:
        store.finish_run(
            replace(
                _run_row(plan),
                finished_at=report.finished_at,
                total=report.total,
                ok=report.ok,
                skipped=report.skipped,
                failed=report.failed,
                results_root=report.results_root,
            )
        )
    finally:
        store.close()
    return report


def _tasks(
    plan: BatchPlan, report: BatchReport, report_file: ReportFile, done: int, limiter: Any
) -> Iterator[Task]:
    """The run's tasks after the *done* already in the ledger, which are checked (now,
    before any work) to be the run's first learners and counted into the report."""
    ids = iter_selection(plan.selection, plan.source, limiter)
    if done:
        recorded = (r for r in read_ledger(plan.ledger) if r.kind == "record")
        for index, record in enumerate(recorded):
            agent = next(ids, None)
            if record.body["agentId"] != agent:
                raise ReplayError(
                    f"{plan.ledger}: record {index} is learner {record.body['agentId']!r} but "
                    f"the run's learner list has {agent!r} there; cannot resume"
                )
            result = record.body["result"]
            report.add(result["status"])
            report_file.detail(
                agent,
                result["status"],
                result["ceredisScore"],
                result["cecrlLevel"],
                None,
                None,
                result.get("error"),
            )
    return (Task(index, agent) for index, agent in enumerate(ids, start=done))


def _run_row(plan: BatchPlan) -> RunRow:
    return RunRow(
        run_id=plan.run_id,
        started_at=plan.started_at,
        engine_version=__version__,
        referential_version=plan.referential.id,
        referential_hash=plan.referential.hash,
        workers=plan.workers,
        ledger_path=str(plan.ledger),
    )
