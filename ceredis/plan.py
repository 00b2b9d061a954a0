"""Planning a batch: every setting resolved and checked before any work starts.

A plan names the run (id, start time), the rules (the referential), where evidence
comes from, where results go, which learners in which order, and the ledger and report
paths. ``plan_resume`` rebuilds the plan of a killed run from its ledger's header.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceredis import __version__
from ceredis.capacity import bounded_workers
from ceredis.config import load_settings
from ceredis.errors import ConfigError, ReplayError
from ceredis.referential import Referential, bundled_referential, parse_referential
from ceredis.selection import (
    Agents,
    Bundled,
    EverySourceLearner,
    Roster,
    Selection,
    selection_from_json,
)
from ceredis.sources import SourceSpec, prepare_source
from ceredis.sources.files import BUNDLED_URI, bundled_roster
from ceredis.stores import StoreSpec, parse_store_url, prepare_store, sqlite_path
from ledger import read_ledger

__all__ = [
    "LEDGER_KIND",
    "BatchPlan",
    "plan_batch",
    "plan_resume",
    "utc_now",
]

LEDGER_KIND = "ceredis-batch/1"


@dataclass(frozen=True)
class BatchPlan:
    """Everything a run needs, checked before any work starts."""

    run_id: str
    started_at: str
    referential: Referential
    source: SourceSpec
    store: StoreSpec
    selection: Selection
    workers: int
    ledger: Path
    report: Path
    chunksize: int | None = None
    resume: bool = False  # continue plan.ledger (written by an earlier, killed run)
    embedded: bool = False  # nothing configured: bundled cohort into the embedded SQLite
    outage_budget: float = 120.0  # seconds an outage is waited out before the batch stops
    pin_workers: bool = True  # each pool worker on one CPU (CEREDIS_PIN_WORKERS)
    repairs: dict[str, str] | None = None  # the run whose ERROR learners this one rescores
    signing_key: Path | None = None  # signs the finished run's checkpoint (CEREDIS_SIGNING_KEY)
    executor: str = "local"  # "local": the process pool; "dask": a Dask cluster
    scheduler: str | None = None  # the Dask scheduler's address (None: a LocalCluster)

    def header(self) -> dict[str, Any]:
        """The ledger header: everything needed to replay or resume, and no secret."""
        return {
            "kind": LEDGER_KIND,
            "runId": self.run_id,
            "startedAt": self.started_at,
            "engineVersion": __version__,
            "referentialId": self.referential.id,
            "referentialHash": self.referential.hash,
            "referential": self.referential.document,
            "source": self.source.describe(),
            "store": self.store.describe(),
            "selection": self.selection.to_json(),
            "workers": self.workers,
            **({"repairs": self.repairs} if self.repairs else {}),
        }


def plan_batch(
    *,
    agents: Sequence[str] = (),
    agents_file: Path | None = None,
    all_agents: bool = False,
    source: str | None = None,
    database: str | None = None,
    workers: int | None = None,
    in_flight: int | None = None,
    ledger: Path | None = None,
    report: Path | None = None,
    chunksize: int | None = None,
    referential: Referential | None = None,
    allow_empty: bool = False,
    check_store: bool = True,
    executor: str | None = None,
    scheduler: str | None = None,
) -> BatchPlan:
    """Resolve settings (flag > environment > config file > default) and check them all.

    With nothing configured this is the embedded default: the bundled cohort, scored
    into SQLite under the user data directory. ``check_store=False`` (a dry run) parses
    the store URL without connecting, so that nothing is created.
    """
    settings = load_settings(
        {
            "max_workers": workers,
            "in_flight": in_flight,
            "source": source,
            "database": database,
            "executor": executor,
            "scheduler": scheduler,
        }
    )
    chosen = [bool(agents), agents_file is not None, all_agents]
    if sum(chosen) > 1:
        raise ConfigError("choose the learners with one of --agent, --file or --all")
    if chunksize is not None and chunksize < 1:
        raise ConfigError(f"--chunksize must be at least 1, not {chunksize}")
    spec = prepare_source(settings.source, settings)
    if agents:
        selection: Selection = Agents(tuple(_agent_id(a, "--agent") for a in agents))
    elif agents_file is not None:
        selection = Roster.of(agents_file)
    elif all_agents:
        selection = EverySourceLearner()
    elif settings.source in (None, BUNDLED_URI):
        selection = Bundled.of(bundled_roster())
    else:
        raise ConfigError(
            "no learners chosen: give --agent ID (repeatable), --file agents.txt or --all"
        )
    home = settings.paths.data_dir
    store_url = settings.database or f"sqlite:///{home / 'ceredis.sqlite'}"
    store = prepare_store(store_url) if check_store else parse_store_url(store_url)
    run_id = str(uuid.uuid4())
    ledger_dir = settings.paths.ledger_dir or home / "ledgers"
    ledger_path = Path(ledger) if ledger else ledger_dir / f"{run_id}.jsonl"
    if ledger_path.exists():
        raise ConfigError(f"ledger {ledger_path} already exists; use --resume to continue it")
    report_path = Path(report) if report else ledger_path.with_suffix(".report.json")
    if check_store:  # a dry run writes nothing, not even a probe
        check_outputs(ledger_path, report_path, store)
    learners = selection.count()
    if learners == 0 and not allow_empty:
        raise ConfigError(
            "the learner list is empty: nothing to score (give --allow-empty to record "
            "an empty run anyway)"
        )
    return BatchPlan(
        run_id=run_id,
        started_at=utc_now(),
        referential=referential or bundled_referential(),
        source=spec,
        store=store,
        selection=selection,
        workers=bounded_workers(settings.max_workers, learners, store if check_store else None),
        ledger=ledger_path,
        report=report_path,
        chunksize=chunksize,
        embedded=settings.source is None and settings.database is None,
        outage_budget=settings.outage_budget,
        pin_workers=settings.pin_workers,
        signing_key=settings.signing_key,
        executor=settings.executor,
        scheduler=settings.scheduler,
    )


def plan_resume(
    ledger: Path,
    *,
    database: str | None = None,
    workers: int | None = None,
    in_flight: int | None = None,
    report: Path | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
) -> BatchPlan:
    """A plan that finishes the run recorded in an unfinished ledger (``--resume``).

    The run id, referential, source and learner selection come from the ledger header;
    the learners already recorded are checked against the selection and skipped.
    """
    ledger = Path(ledger)
    with closing(read_ledger(ledger)) as records:
        header = _ledger_header(records, ledger)
    settings = load_settings(
        {
            "max_workers": workers,
            "in_flight": in_flight,
            "database": database,
            "executor": executor,
            "scheduler": scheduler,
        }
    )
    referential = parse_referential(header["referential"], f"{ledger} header")
    source = header["source"]
    spec = prepare_source(source["uri"], settings)
    if spec.sha256 != source.get("sha256"):
        raise ConfigError(
            f"the evidence file {source['uri']} changed since the run started (sha256 "
            f"{spec.sha256[:12]}… instead of {source.get('sha256', '?')[:12]}…); resuming "
            "would mix two versions of the evidence"
        )
    selection = selection_from_json(header["selection"])
    if isinstance(selection, Roster):
        selection.check_unchanged()
    store_url = settings.database or header["store"]["url"]
    if settings.database is None and (header["store"].get("reduced") or "***" in store_url):
        raise ConfigError(
            f"the run's database URL ({header['store']['url']}) held a password or options, "
            "which the ledger never keeps: give the whole URL again with --database or "
            "CEREDIS_DATABASE_URL"
        )
    store = prepare_store(store_url)
    report_path = Path(report) if report else ledger.with_suffix(".report.json")
    check_outputs(ledger, report_path, store)
    return BatchPlan(
        run_id=header["runId"],
        started_at=header["startedAt"],
        referential=referential,
        source=spec,
        store=store,
        selection=selection,
        workers=bounded_workers(settings.max_workers, selection.count(), store),
        ledger=ledger,
        report=report_path,
        resume=True,
        outage_budget=settings.outage_budget,
        pin_workers=settings.pin_workers,
        signing_key=settings.signing_key,
        executor=settings.executor,
        scheduler=settings.scheduler,
    )


def check_outputs(ledger: Path, report: Path, store: StoreSpec) -> None:
    """Check that every file the batch writes can be written, before any learner is scored:
    the ledger, its checkpoint (``<ledger stem>.checkpoint``), the report, an SQLite store."""
    if report.is_dir():
        raise ConfigError(f"--report {report} is a directory: give the path of a file to write")
    targets = [("--ledger", ledger), ("checkpoint", ledger.with_suffix(".checkpoint"))]
    targets.append(("--report", report))
    if store.kind == "sqlite":
        targets.append(("--database", sqlite_path(store.url)))
    for option, path in targets:
        _check_writable(option, Path(path))


def _check_writable(option: str, path: Path) -> None:
    """ConfigError unless a file can be created in *path*'s directory (made if missing)."""
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory: give the path of a file to write")
    folder = path.parent
    try:
        for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
            missing.mkdir(mode=0o700)  # private, as the engine creates every directory
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ceredis-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "a part of this path is a file, not a directory"
        raise ConfigError(
            f"{option} {path}: cannot write in the directory {folder} ({reason}); choose a "
            "path in a writable directory"
        ) from None


def _ledger_header(records: Iterable[Any], path: Path) -> dict[str, Any]:
    for record in records:
        header = record.body.get("meta") if record.kind == "header" else None
        if header is None or header.get("kind") != LEDGER_KIND:
            raise ReplayError(f"{path} is not a CEREDIS batch ledger (no {LEDGER_KIND} header)")
        return header
    raise ReplayError(f"{path} is empty: nothing to resume")


def _agent_id(text: str, where: str) -> str:
    agent = text.strip()
    if not agent:
        raise ConfigError(f"{where}: an empty learner id")
    return agent


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
