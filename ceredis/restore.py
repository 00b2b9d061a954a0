"""Rebuilding a run's rows from its ledger: the ledger is the source of truth.

``ceredis restore LEDGER --database URL`` (disaster recovery), a resume into a database
that lacks the learners already recorded, and a resume of a run killed between its
footer and its run row all use :func:`write_recorded` and :func:`finished_row`. Every
row is re-encoded from its verified record and must hash to it; writes are the workers'
idempotent ones, so restoring twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

from ceredis.errors import ReplayError
from ceredis.plan import LEDGER_KIND
from ceredis.pool import Task, _row
from ceredis.record import encode_record
from ceredis.steps import Step, StepProgress, counted
from ceredis.stores import ResultRow, ResultStore, RunRow, StoreSpec
from ledger import LedgerError, VerifyReport, read_ledger, verify_ledger
from ledger.checkpoint import Checkpoint
from ledger.note import parse_note

__all__ = [
    "Restored",
    "finished_row",
    "restore_run",
    "unfinished_run",
    "verified_run",
    "write_recorded",
]

_BATCH = 500
_NOT_STORED = "result store:"  # a learner the run's store refused: it has no row there


@dataclass
class Restored:
    """What a restore wrote: rows sent (each stored once), and the learners refused."""

    run_id: str
    rows: int = 0
    conflicts: dict[str, str] = field(default_factory=dict)
    finished: bool = False


def verified_run(ledger: str | PathLike[str]) -> VerifyReport:
    """The integrity report of a CEREDIS batch ledger that verifies, or a ReplayError."""
    report = verify_ledger(ledger)
    if not report.ok:
        raise ReplayError(
            f"{ledger} fails integrity ({report.problems[0]}): nothing is restored from a "
            "damaged ledger; run `ceredis verify` on it"
        )
    if not report.header or report.header.get("kind") != LEDGER_KIND:
        raise ReplayError(f"{ledger} is not a CEREDIS batch ledger (no {LEDGER_KIND} header)")
    return report


def run_row(header: Mapping[str, Any], ledger: str | PathLike[str]) -> RunRow:
    """The run row a ledger's header describes (not finished)."""
    return RunRow(
        run_id=header["runId"],
        started_at=header["startedAt"],
        engine_version=header["engineVersion"],
        referential_version=header["referentialId"],
        referential_hash=header["referentialHash"],
        workers=header["workers"],
        ledger_path=str(ledger),
    )


def finished_row(report: VerifyReport, checkpoint: str | None = None) -> RunRow:
    """The finished run row of a complete, verified ledger: counts and root from its footer."""
    assert report.header is not None and report.footer is not None
    counts = report.footer.get("counts", {})
    return replace(
        run_row(report.header, report.path),
        finished_at=report.footer.get("finishedAt"),
        total=counts.get("total", report.count),
        ok=counts.get("ok"),
        skipped=counts.get("skipped"),
        failed=counts.get("failed"),
        results_root=report.root,
        checkpoint=checkpoint,
    )


def _rows(ledger: str | PathLike[str], run_id: str) -> Iterator[ResultRow]:
    """Each stored learner's row, re-encoded from its record and checked against its hash."""
    for record in read_ledger(ledger):
        if record.kind != "record" or record.index is None:
            continue
        body = record.body
        result = body["result"]
        if str(result.get("error") or "").startswith(_NOT_STORED):
            continue
        encoded = encode_record(body["agentId"], result, body["inputs"])
        if encoded.content_hash != record.content_hash:
            raise ReplayError(
                f"{ledger} line {record.line_no}, learner {body['agentId']}: the record does "
                "not re-encode to its own bytes; cannot rebuild its row"
            )
        yield _row(run_id, Task(record.index, body["agentId"]), result, encoded)


def write_recorded(
    ledger: str | PathLike[str],
    store: ResultStore,
    run_id: str,
    started_at: str,
    progress: StepProgress | None = None,
    total: int = 0,
) -> Restored:
    """Write every recorded learner's row (and OK profile) of the ledger; idempotent.
    *progress* hears how many of the *total* recorded learners were read."""
    restored = Restored(run_id)
    batch: list[ResultRow] = []
    for row in counted(_rows(ledger, run_id), Step.RESTORE, total, progress):
        batch.append(row)
        if len(batch) >= _BATCH:
            restored.conflicts.update(store.write_results(batch, started_at))
            restored.rows += len(batch)
            batch = []
    restored.conflicts.update(store.write_results(batch, started_at))
    restored.rows += len(batch)
    return restored


def restore_run(ledger: str | PathLike[str], spec: StoreSpec) -> Restored:
    """Rebuild a run's rows in *spec*'s database from its verified ledger.

    The run row is created from the header and, when the ledger is finished, completed
    from its footer (with the checkpoint beside the ledger, if any).
    """
    from ceredis.proofs import checkpoint_path

    report = verified_run(ledger)
    assert report.header is not None
    header = report.header
    store = spec.open()
    try:
        store.start_run(run_row(header, ledger))
        restored = write_recorded(ledger, store, header["runId"], header["startedAt"])
        if report.complete:
            checkpoint = _checkpoint_of(checkpoint_path(ledger), report)
            store.finish_run(finished_row(report, checkpoint))
            restored.finished = True
    finally:
        store.close()
    return restored


def _checkpoint_of(path: Path, report: VerifyReport) -> str | None:
    """The checkpoint text beside the ledger (None if absent), refused unless it names
    the ledger's tree: a run row never records another run's checkpoint."""
    try:
        text = path.read_text(encoding="utf-8")
        checkpoint = Checkpoint.parse(parse_note(text).text)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError, LedgerError) as exc:
        raise ReplayError(f"cannot use the checkpoint {path}: {exc}") from None
    if (checkpoint.size, checkpoint.root_hex) != (report.count, report.root):
        raise ReplayError(
            f"the checkpoint {path} signs {checkpoint.size} records, root "
            f"{checkpoint.root_hex}; the ledger holds {report.count}, root {report.root}"
        )
    return text


def unfinished_run(ledger: str | PathLike[str], url: str) -> str | None:
    """Why *url*'s run row is not finished although the ledger is, and how to fix it; or None."""
    from ceredis.stores import parse_store_url

    report = verify_ledger(ledger)
    if not (report.ok and report.complete and report.header):
        return None
    spec = parse_store_url(url)
    store = spec.open()
    try:
        run = store.get_run(report.header.get("runId", ""))
    finally:
        store.close()
    if run is None or run.finished_at is not None:
        return None
    return (
        f"the ledger is finished but the run row of {run.run_id} is not (the batch stopped "
        f"between its footer and its run row): complete it with `ceredis batch --resume "
        f"{ledger} --database {spec.display}` (or `ceredis restore {ledger} --database …`)"
    )
