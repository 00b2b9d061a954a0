"""The batch engine: a planned cohort scored on the pool into a store, a ledger and a report.

Flow (design.md): the parent plans the learners (``ceredis.plan``), feeds them to the
worker pool (``ceredis.pool``), and is the single writer of the ledger and the report;
each result is appended in input order, so results are identical whatever the worker
count, the chunking or the restarts.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ceredis import __version__
from ceredis.errors import OutageError, ReplayError, StoreError
from ceredis.outcome import Outcome
from ceredis.plan import BatchPlan, utc_now
from ceredis.pool import Task, scored
from ceredis.private import private_dir
from ceredis.referential import Referential, bundled_referential
from ceredis.report import BatchReport, ReportFile, run_facts
from ceredis.selection import LearnerTally
from ceredis.sources.ratelimit import limiter_for
from ceredis.steps import Step
from ceredis.stores import ResultStore, RunRow
from ledger import FOOTER, LedgerError, LedgerWriter, Repair, last_line, read_ledger

if TYPE_CHECKING:  # signing, resuming and one-learner runs import what they need on demand
    from ledger.note import SignerKey

__all__ = ["ProgressHooks", "evaluate_agent", "resume_command", "run_batch"]

_CHECK_STEP = 1000  # on resume, report progress every this many recorded learners checked


def evaluate_agent(
    agent_id: str, source: str | None = None, referential: Referential | None = None
) -> dict[str, Any]:
    """Fetch one learner's evidence from *source* (default: the bundled cohort) and score it."""
    from ceredis.scoring import evaluate
    from ceredis.sources import prepare_source

    referential = referential or bundled_referential()
    client = prepare_source(source).open()
    try:
        return evaluate(agent_id, client.fetch(agent_id), referential)
    finally:
        client.close()


class ProgressHooks:
    """Progress callbacks for a batch; this base class does nothing (library use)."""

    def start(self, plan: BatchPlan, total: int | None, done: int) -> None: ...

    def advance(self, outcome: Outcome) -> None: ...

    def waiting(self, what: str, seconds: float) -> None:
        """An outage of *what* ("the database") is being waited out, for *seconds* so far."""

    def stop(self) -> None: ...

    def repaired(self, repair: Repair) -> None:
        """On resume: the torn tail of the killed run's ledger was cut."""

    def step(self, step: Step, done: int, total: int) -> None:
        """On resume: *done* of the *total* recorded learners checked (``Step.RESUME``),
        or written to the store (``Step.RESTORE``), so far."""


def run_batch(plan: BatchPlan, progress: ProgressHooks | None = None) -> BatchReport:
    """Run a planned batch to the end; return its report (see BatchReport.return_code)."""
    progress = progress or ProgressHooks()
    started = time.monotonic()
    signer = _signer(plan)
    if plan.resume and _finished(plan):
        return _complete(plan, signer)
    _with_store(plan, lambda store: store.start_run(_run_row(plan)))
    writer = _open_ledger(plan)
    if writer.repaired is not None:
        progress.repaired(writer.repaired)
    if plan.resume:  # the store may lack the learners already recorded (another database)
        try:
            _with_store(plan, lambda store: _write_recorded(plan, store, progress, writer.count))
        except BaseException:
            writer.close()
            raise
    report = BatchReport(
        concurrency=plan.workers,
        started_at=plan.started_at,
        ledger=plan.ledger,
        report=plan.report,
        run_id=plan.run_id,
        facts=run_facts(plan),
    )
    report_file = ReportFile(plan.report)
    finished = False
    try:
        _record_all(plan, writer, report, report_file, progress)
        finished = True
    except OutageError as exc:
        raise OutageError(
            f"{exc}. The batch stopped; the ledger {plan.ledger} is incomplete and can be "
            f"finished once the service is back: {resume_command(plan)}"
        ) from None
    finally:
        progress.stop()
        if not finished:
            writer.close()
            report_file.abandon()
    report.elapsed = time.monotonic() - started
    report_file.finish(report)
    checkpoint = _sign(plan, signer)
    _with_store(plan, lambda store: store.finish_run(_finished_row(plan, report, checkpoint)))
    return report


def _signer(plan: BatchPlan) -> SignerKey | None:
    """The key that signs the run's checkpoint (CEREDIS_SIGNING_KEY), read before any work."""
    if plan.signing_key is None:
        return None
    from ledger.note import read_signer_key

    return read_signer_key(plan.signing_key)


def _sign(plan: BatchPlan, signer: SignerKey | None) -> str | None:
    """With a signing key, write the run's checkpoint beside its ledger; return its text."""
    if signer is None:
        return None
    from ceredis.proofs import write_checkpoint

    return write_checkpoint(plan.ledger, signer).read_text(encoding="utf-8")


def _finished(plan: BatchPlan) -> bool:
    """Whether the ledger to resume already ends in its footer (killed before the run row):
    its last line says so; completing the run verifies the whole ledger first."""
    try:
        line = last_line(plan.ledger)
    except LedgerError:
        return False  # unreadable: the resume's own opening says why
    return line is not None and line.kind == FOOTER


def _write_recorded(
    plan: BatchPlan, store: ResultStore, progress: ProgressHooks | None = None, total: int = 0
) -> None:
    """Write the ledger's learners into the store; a refused one is an error, not a gap."""
    from ceredis.restore import write_recorded

    hear = progress.step if progress is not None and total else None
    restored = write_recorded(plan.ledger, store, plan.run_id, plan.started_at, hear, total)
    if restored.conflicts:
        agent, error = next(iter(restored.conflicts.items()))
        raise StoreError(
            f"{len(restored.conflicts)} recorded learners cannot be written to "
            f"{plan.store.display} (first: {agent}: {error}); cannot resume into it"
        )


def _complete(plan: BatchPlan, signer: SignerKey | None) -> BatchReport:
    """Finish the run of a ledger killed after its footer: rows and run row from the ledger."""
    from ceredis.restore import finished_row, verified_run

    verified = verified_run(plan.ledger)
    footer = verified.footer or {}
    report = BatchReport(
        concurrency=plan.workers,
        started_at=plan.started_at,
        finished_at=footer.get("finishedAt"),
        ledger=plan.ledger,
        report=plan.report,
        results_root=verified.root,
        run_id=plan.run_id,
        completed=True,
    )
    report_file = None if plan.report.exists() else ReportFile(plan.report)
    for record in read_ledger(plan.ledger):
        if record.kind == "record" and record.index is not None:
            outcome = Outcome.recorded(record.index, record.body, record.body_bytes)
            report.counts.add(outcome.status)
            if report_file is not None:
                report_file.detail(outcome)
    if report_file is not None:
        report_file.finish(report)
    _with_store(plan, lambda store: store.start_run(_run_row(plan)))
    _with_store(plan, lambda store: _write_recorded(plan, store))
    checkpoint = _sign(plan, signer)
    _with_store(plan, lambda store: store.finish_run(finished_row(verified, checkpoint)))
    return report


def resume_command(plan: BatchPlan) -> str:
    """The exact command that finishes *plan*'s run from its ledger."""
    command = f"python -m ceredis batch --resume {shlex.quote(str(plan.ledger))}"
    if plan.store.describe()["reduced"]:  # the ledger does not keep the password
        command += " --database URL"
    return command


def _with_store(plan: BatchPlan, use: Callable[[ResultStore], None]) -> None:
    """Open the store for one call: the parent holds no connection while workers run."""
    store = plan.store.open()
    try:
        use(store)
    finally:
        store.close()


def _open_ledger(plan: BatchPlan) -> LedgerWriter:
    """A new ledger with the plan's header, or the killed run's, repaired (``--resume``)."""
    if plan.resume:
        return LedgerWriter.open(plan.ledger, repair=True)
    private_dir(plan.ledger.parent)
    return LedgerWriter.create(plan.ledger, plan.header())


def _record_all(
    plan: BatchPlan,
    writer: LedgerWriter,
    report: BatchReport,
    report_file: ReportFile,
    progress: ProgressHooks,
) -> None:
    """Score every learner not yet in the ledger, record each in order, then the footer."""
    done = writer.count
    limiter = limiter_for(plan.source)
    learners = LearnerTally()
    tasks = _tasks(plan, report, report_file, done, limiter, learners, progress)
    progress.start(plan, plan.selection.count(), done)
    score = scored
    if plan.executor == "dask":
        from ceredis.dask_pool import scored as score  # the optional extra, loaded on demand
    for outcome in score(plan, tasks, limiter, progress.waiting):
        # Workers encode records with ledger.canonical: the serial parent need not
        # re-parse them (verify checks every line's canonical form anyway).
        writer.append_canonical(outcome.record, check=False)
        report.counts.add(outcome.status)
        learners.add(outcome.agent_id)
        report_file.detail(outcome)
        progress.advance(outcome)
    report.finished_at = utc_now()
    footer = writer.finish(
        {
            "finishedAt": report.finished_at,
            "counts": report.counts.to_json(),
            "learners": learners.digest().to_json(),
        }
    )
    report.results_root = footer["ledger"]["resultsRoot"]


def _tasks(
    plan: BatchPlan,
    report: BatchReport,
    report_file: ReportFile,
    done: int,
    limiter: Any,
    learners: LearnerTally,
    progress: ProgressHooks,
) -> Iterator[Task]:
    """The run's tasks after the *done* already in the ledger, which are checked (now,
    before any work) to be the run's first learners and counted into the report (and
    into *learners*, the list the footer binds)."""
    ids = plan.selection.ids(plan.source, limiter)
    if done:
        recorded = (r for r in read_ledger(plan.ledger) if r.kind == "record")
        for index, record in enumerate(recorded):
            agent = next(ids, None)
            if record.body["agentId"] != agent:
                raise ReplayError(
                    f"{plan.ledger}: record {index} is learner {record.body['agentId']!r} but "
                    f"the run's learner list has {agent!r} there; cannot resume"
                )
            outcome = Outcome.recorded(index, record.body, record.body_bytes)
            report.counts.add(outcome.status)
            learners.add(outcome.agent_id)
            report_file.detail(outcome)
            if (index + 1) % _CHECK_STEP == 0 or index + 1 == done:
                progress.step(Step.RESUME, index + 1, done)
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


def _finished_row(plan: BatchPlan, report: BatchReport, checkpoint: str | None) -> RunRow:
    return replace(
        _run_row(plan),
        finished_at=report.finished_at,
        total=report.total,
        ok=report.ok,
        skipped=report.skipped,
        failed=report.failed,
        results_root=report.results_root,
        checkpoint=checkpoint,
    )
