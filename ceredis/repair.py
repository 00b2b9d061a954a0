"""Repairing a finished run: its ERROR learners scored again as a new run (``--retry-failed``).

The repair is an ordinary run of exactly those learners (an ``Agents`` selection, in the
ledger's order), with the recorded referential, into the run's database unless told
otherwise; its header names the run it repairs (``repairs: {runId, ledgerSha256}``), so
the two ledgers together account for every learner, and the newer OK results become the
learners' profiles.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ceredis.errors import ConfigError
from ceredis.outcome import Status
from ceredis.plan import LEDGER_KIND, BatchPlan, plan_batch
from ceredis.referential import parse_referential
from ceredis.sources.files import file_sha256
from ledger import read_ledger

__all__ = ["plan_retry_failed"]


def plan_retry_failed(
    ledger: Path,
    *,
    source: str | None = None,
    database: str | None = None,
    workers: int | None = None,
    in_flight: int | None = None,
    new_ledger: Path | None = None,
    report: Path | None = None,
    chunksize: int | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
) -> BatchPlan:
    """A new run scoring the ERROR learners of the finished run in *ledger* again."""
    ledger = Path(ledger)
    header, failed = _failed_learners(ledger)
    store_url = database or header["store"]["url"]
    if "***" in store_url:
        raise ConfigError(
            "the run's database URL holds a password, which the ledger does not keep: "
            "give it again with --database or CEREDIS_DATABASE_URL"
        )
    plan = plan_batch(
        agents=failed,
        source=source or header["source"]["uri"],
        database=store_url,
        workers=workers,
        in_flight=in_flight,
        ledger=new_ledger,
        report=report,
        chunksize=chunksize,
        executor=executor,
        scheduler=scheduler,
        referential=parse_referential(header["referential"], f"{ledger} header"),
    )
    return replace(plan, repairs={"runId": header["runId"], "ledgerSha256": file_sha256(ledger)})


def _failed_learners(ledger: Path) -> tuple[dict[str, Any], list[str]]:
    """The finished run's header and its ERROR learners' ids, in order, each once."""
    header: dict[str, Any] | None = None
    failed: dict[str, None] = {}
    finished = False
    for record in read_ledger(ledger):
        if record.kind == "header":
            header = record.body.get("meta")
        elif record.kind == "record" and record.body["result"]["status"] == Status.ERROR:
            failed[record.body["agentId"]] = None
        finished = record.kind == "footer"
    if header is None or header.get("kind") != LEDGER_KIND:
        raise ConfigError(f"{ledger} is not a CEREDIS batch ledger (no {LEDGER_KIND} header)")
    if not finished:
        raise ConfigError(
            f"{ledger} is not finished: finish it first with "
            f"python -m ceredis batch --resume {ledger}"
        )
    if not failed:
        raise ConfigError(f"run {header['runId']} ({ledger}) has no ERROR learner to retry")
    return header, list(failed)
