"""``ceredis export``: one CSV row per learner, and private files written atomically.

The CSV is RFC 4180 (``csv`` module, CRLF line ends), UTF-8, optionally with a BOM for
spreadsheet programs. The header uses the result's own field names (scoring.md §10):
``agentId``, ``status``, ``ceredisScore``, ``bandLevel``, ``cecrlLevel``, one column per
domain score (``D1``…), one per competency status named by its id (referential order),
then ``error``. An absent value (a SKIPPED or ERROR learner's score) is an empty cell.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ceredis.cohort import Cohort, Learner
from ceredis.errors import ConfigError
from ceredis.referential import Referential

__all__ = ["FIELDS", "check_writable", "cohort_csv", "csv_header", "csv_row"]

FIELDS = ("agentId", "status", "ceredisScore", "bandLevel", "cecrlLevel")
BOM = "\ufeff"


def csv_header(referential: Referential) -> list[str]:
    """The column names: the result's fields, domains, competencies, then ``error``."""
    return [*FIELDS, *(d.id for d in referential.domains), *referential.competencies, "error"]


def csv_row(learner: Learner, referential: Referential) -> list[str]:
    """One learner's cells, in :func:`csv_header`'s order (scores as recorded: ``60.75``)."""
    return [
        learner.agent_id,
        learner.status,
        *map(_cell, (learner.score, learner.band, learner.level)),
        *(_cell(learner.domains.get(d.id)) for d in referential.domains),
        *(_cell(learner.competencies.get(cid)) for cid in referential.competencies),
        _cell(learner.error),
    ]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def cohort_csv(cohort: Cohort, *, bom: bool = False) -> bytes:
    """The whole cohort as CSV bytes: the header, then one row per learner in run order."""
    text = io.StringIO(newline="")
    if bom:
        text.write(BOM)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(csv_header(cohort.referential))
    writer.writerows(csv_row(learner, cohort.referential) for learner in cohort.learners)
    return text.getvalue().encode("utf-8")


def check_writable(path: Path) -> None:
    """Refuse an output whose folder is missing now, not after a long verification."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {path}: the folder {folder} does not exist")
    if Path(path).is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder; name a file")
