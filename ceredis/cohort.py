"""A finished run's learners as one value, and the figures a cohort report shows.

``ceredis export`` and ``ceredis report`` both start here: a :class:`Cohort` is read from a
ledger that is verified first (:func:`ceredis.audit.audit_ledger`: integrity and replay;
refused if it fails, unless the caller opts out) or from a store's rows for one run.
:func:`summarize` counts what the HTML report shows; it is pure.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from decimal import Decimal
from os import PathLike
from pathlib import Path
from typing import Any

from ceredis.errors import CeredisError, ConfigError, ReplayError
from ceredis.proofs import checkpoint_path
from ceredis.referential import Referential, bundled_referential, parse_referential
from ceredis.report import plural
from ceredis.steps import Step, StepProgress, counted, integrity_progress
from ledger import VerifyReport, salvage_records, verify_ledger
from ledger.decode import parse

__all__ = [
    "Cohort",
    "CohortRefused",
    "CohortSummary",
    "Learner",
    "cohort_from_ledger",
    "cohort_from_store",
    "open_cohort",
    "summarize",
]

SHOWN_FINDINGS = 3  # findings named in a refusal; `ceredis verify` lists them all
HISTOGRAM_STEP = 50  # width of a bin of the global-score histogram (0–600)


class CohortRefused(CeredisError):
    """The ledger fails verification: nothing is exported from it (exit 1)."""


@dataclass(frozen=True)
class Learner:
    """What an export or a report needs of one §10 result; the rest stays in the ledger.

    A parsed result holds ~18 kB (its competencies' reasons, the level checks): a
    100,000-learner cohort is held as these instead.
    """

    agent_id: str
    status: str
    score: Decimal | None
    band: str | None
    level: str | None
    domains: Mapping[str, Decimal]  # empty when not scored
    competencies: Mapping[str, str]  # competency id -> status; empty when not scored
    error: str | None
    reasons: tuple[str, ...]  # every level refused on the way down, as the result says

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> Learner:
        """Keep the fields a cohort shows (statuses interned: they repeat in every row)."""
        return cls(
            agent_id=str(result.get("agentId")),
            status=sys.intern(str(result.get("status"))),
            score=result.get("ceredisScore"),
            band=result.get("bandLevel"),
            level=result.get("cecrlLevel"),
            domains=result.get("domainScores") or {},
            competencies={
                cid: sys.intern(str(c.get("status")))
                for cid, c in (result.get("competencies") or {}).items()
            },
            error=result.get("error"),
            reasons=tuple(
                reason for step in result.get("levelDecision") or () for reason in step["reasons"]
            ),
        )

    @property
    def held(self) -> bool:
        """Scored OK, and granted a level below the band its score reaches (strict rules)."""
        return self.status == "OK" and self.level != self.band


@dataclass(frozen=True)
class Cohort:
    """One run's learners in run order, the referential they were scored with, and facts."""

    run_id: str | None
    referential: Referential
    learners: tuple[Learner, ...]
    origin: str  # where the results were read from (a ledger path or a redacted URL)
    verification: str  # what was checked, in words
    started_at: str | None = None
    finished_at: str | None = None
    results_root: str | None = None
    engine_version: str | None = None
    source: str | None = None
    store: str | None = None
    checkpoint: str | None = None  # the text of <ledger stem>.checkpoint, if there is one


def open_cohort(
    ledger: Path | None,
    database: str | None,
    run_id: str | None,
    *,
    verify: bool = True,
    progress: StepProgress | None = None,
) -> Cohort:
    """The cohort of a ledger, or of ``--database URL --run ID``: exactly one of the two."""
    if ledger is not None and (database or run_id):
        raise ConfigError("give a LEDGER or --database URL --run ID, not both")
    if ledger is not None:
        return cohort_from_ledger(ledger, verify=verify, progress=progress)
    if not (database and run_id):
        raise ConfigError("give a LEDGER, or --database URL with --run ID")
    if not verify:
        raise ConfigError("--unverified applies to a ledger; database rows are read as stored")
    return cohort_from_store(database, run_id)


def cohort_from_ledger(
    path: str | PathLike[str], *, verify: bool = True, progress: StepProgress | None = None
) -> Cohort:
    """The ledger's results, after :func:`audit_ledger` passes (CohortRefused otherwise).

    With ``verify=False`` whatever records still parse are read, and the cohort says so.
    *progress* hears the verification's steps, then the results read.
    """
    path = Path(path)
    if verify:
        verification, integrity = _verified(path, progress)
    else:
        verification = "NOT verified (--unverified): the records are read as they are"
        integrity = verify_ledger(path, progress=integrity_progress(progress))
    header = integrity.header
    if not isinstance(header, dict) or header.get("kind") != "ceredis-batch/1":
        raise ReplayError(f"{path}: not a CEREDIS batch ledger (its header is not ceredis-batch/1)")
    try:
        referential = parse_referential(header["referential"], f"{path} header referential")
    except (CeredisError, KeyError) as exc:
        raise ReplayError(f"{path}: the header's referential cannot be used: {exc}") from None
    footer = integrity.footer if isinstance(integrity.footer, dict) else {}
    checkpoint = checkpoint_path(path)
    records = counted(salvage_records(path), Step.READ, integrity.count, progress)
    return Cohort(
        run_id=header.get("runId"),
        referential=referential,
        learners=tuple(Learner.from_result(r.body.get("result") or {}) for r in records),
        origin=str(path),
        verification=verification,
        started_at=header.get("startedAt"),
        finished_at=footer.get("finishedAt"),
        results_root=integrity.root if integrity.complete else None,
        engine_version=header.get("engineVersion"),
        source=_describe(header.get("source"), "uri"),
        store=_describe(header.get("store"), "url"),
        checkpoint=checkpoint.read_text("utf-8") if checkpoint.is_file() else None,
    )


def _verified(path: Path, progress: StepProgress | None) -> tuple[str, VerifyReport]:
    """Audit the ledger; refuse it naming its first findings, or say what was checked (and
    return the audit's integrity check, which the cohort reads the header and footer of)."""
    from ceredis.audit import audit_ledger

    audit = audit_ledger(path, progress=progress)
    if not audit.ok:
        problems = [str(f) for f in audit.findings] or audit.notes
        shown = "; ".join(problems[:SHOWN_FINDINGS])
        more = len(problems) - SHOWN_FINDINGS
        raise CohortRefused(
            f"{path} fails verification: {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + f". Run `ceredis verify {path}` for every finding, or pass --unverified to "
            "export it anyway"
        )
    assert audit.integrity is not None  # audit_ledger always makes check 1
    return (
        f"verified: intact, complete and reproducible ({audit.replayed:,} of "
        f"{plural(audit.records, 'record')} replayed)"
    ), audit.integrity


def _describe(part: Any, key: str) -> str | None:
    """A header's source or store, in one line (the store URL is redacted in the header)."""
    if not isinstance(part, dict):
        return None
    name, value = part.get("name"), part.get(key)
    return f"{name} ({value})" if name and value else (value or name)


def cohort_from_store(url: str, run_id: str) -> Cohort:
    """The run's rows in *url*, in position order, as stored (no ledger to verify them)."""
    from ceredis.stores import parse_store_url

    spec = parse_store_url(url)
    store = spec.open()
    try:
        run = store.get_run(run_id)
        if run is None:
            raise ConfigError(f"run {run_id} is not in {spec.display}: check --run")
        with closing(store.iter_result_json(run_id)) as texts:
            learners = tuple(Learner.from_result(parse(text.encode("utf-8"))) for text in texts)
    finally:
        store.close()
    referential = bundled_referential()
    if run.referential_hash != referential.hash:
        raise ConfigError(
            f"run {run_id} was scored with referential {run.referential_version} "
            f"({run.referential_hash[:12]}…), not the installed {referential.id}: export it "
            f"from its ledger ({run.ledger_path}), which records its referential"
        )
    return Cohort(
        run_id=run_id,
        referential=referential,
        learners=learners,
        origin=spec.display,
        verification="database rows as stored, not verified: run `ceredis verify LEDGER "
        "--database URL` to check them against the run's ledger",
        started_at=run.started_at,
        finished_at=run.finished_at,
        results_root=run.results_root,
        engine_version=run.engine_version,
        store=spec.display,
    )


@dataclass(frozen=True)
class CohortSummary:
    """What a cohort report shows: counts per status and level, a histogram, averages."""

    statuses: dict[str, int]  # "ok", "skipped", "failed", "learners"
    levels: tuple[str, ...]  # the referential's levels, lowest first
    bands: dict[str, int]  # OK learners per band (by score alone)
    granted: dict[str, int]  # OK learners per granted level
    held: dict[str, int]  # OK learners per band held below it by the strict rules
    histogram: tuple[tuple[int, int, int], ...]  # (low, high, OK learners in [low, high))
    domains: dict[str, Decimal]  # mean domain score of the OK learners, two decimals
    refusals: tuple[Learner, ...]  # the held learners, in run order
    failures: tuple[Learner, ...]  # every ERROR learner, in run order


def summarize(cohort: Cohort) -> CohortSummary:
    """Count the cohort's statuses, levels, scores and domains (OK learners for levels)."""
    learners = cohort.learners
    scored = [lr for lr in learners if lr.status == "OK"]
    held = tuple(lr for lr in scored if lr.held)
    levels = tuple(band.level for band in cohort.referential.bands)
    statuses = Counter(lr.status for lr in learners)
    return CohortSummary(
        statuses={
            "learners": len(learners),
            "ok": statuses["OK"],
            "skipped": statuses["SKIPPED"],
            "failed": len(learners) - statuses["OK"] - statuses["SKIPPED"],
        },
        levels=levels,
        bands=_per_level(levels, (lr.band for lr in scored)),
        granted=_per_level(levels, (lr.level for lr in scored)),
        held=_per_level(levels, (lr.band for lr in held)),
        histogram=_histogram(scored, int(cohort.referential.global_scale)),
        domains=_domain_means(scored, [d.id for d in cohort.referential.domains]),
        refusals=held,
        failures=tuple(lr for lr in learners if lr.status not in ("OK", "SKIPPED")),
    )


def _per_level(levels: tuple[str, ...], values: Iterable[str | None]) -> dict[str, int]:
    counted = Counter(values)
    return {level: counted[level] for level in levels}


def _histogram(scored: list[Learner], scale: int) -> tuple[tuple[int, int, int], ...]:
    """Bins of HISTOGRAM_STEP over [0, scale]; the top score falls in the last bin."""
    bins = max(1, -(-scale // HISTOGRAM_STEP))
    counts = [0] * bins
    for learner in scored:
        counts[min(bins - 1, int(learner.score or 0) // HISTOGRAM_STEP)] += 1
    return tuple(
        (i * HISTOGRAM_STEP, min(scale, (i + 1) * HISTOGRAM_STEP), n) for i, n in enumerate(counts)
    )


def _domain_means(scored: list[Learner], domains: list[str]) -> dict[str, Decimal]:
    if not scored:
        return {d: Decimal("0.00") for d in domains}
    return {
        d: (sum(Decimal(lr.domains[d]) for lr in scored) / len(scored)).quantize(Decimal("0.01"))
        for d in domains
    }
