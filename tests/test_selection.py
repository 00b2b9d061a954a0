"""The pipeline's nouns: learner selections, statuses, the tally and the encoded record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ceredis.errors import ConfigError
from ceredis.evidence import submitted
from ceredis.outcome import Counts, Status
from ceredis.plan import plan_batch
from ceredis.record import encode_record, score_learner
from ceredis.referential import bundled_referential
from ceredis.scoring import error_result
from ceredis.selection import (
    Agents,
    Bundled,
    EverySourceLearner,
    Roster,
    selection_from_json,
)
from ceredis.sources import prepare_source
from ceredis.sources.files import bundled_roster, file_sha256
from ledger.canonical import canonical


@pytest.fixture
def roster(tmp_path: Path) -> Path:
    path = tmp_path / "agents.txt"
    path.write_text("\ufeffL1\n# a comment\n\n  L2  \nL3\n", encoding="utf-8")
    return path


def test_each_selection_records_the_former_header_form_and_binds_its_learner_list(
    roster: Path,
) -> None:
    """The header's "selection" is the former dict plus the learner list it binds (count
    and hash); a former header still reads back (old ledgers resume)."""
    digest = file_sha256(roster)
    bundled = bundled_roster()
    bundled_ids = [line.strip() for line in bundled.read_text().splitlines() if line.strip()]
    cases = [
        (Agents(("L1", "L2")), {"agents": ["L1", "L2"]}, ["L1", "L2"]),
        (Roster.of(roster), {"file": str(roster.resolve()), "sha256": digest}, ["L1", "L2", "L3"]),
        (
            Bundled.of(bundled),
            {"file": str(bundled), "sha256": file_sha256(bundled), "bundled": True},
            [i for i in bundled_ids if not i.startswith("#")],
        ),
        (EverySourceLearner(), {"all": True}, None),
    ]
    for selection, former, ids in cases:
        bound = {} if ids is None else {"learners": _binding(ids)}
        assert canonical(selection.to_json()) == canonical({**former, **bound})
        assert selection_from_json(former) == selection  # resume reads it back
        assert selection_from_json(selection.to_json()) == selection


def _binding(ids: list[str]) -> dict[str, object]:
    """The learner list as the header binds it, computed independently."""
    digest = hashlib.sha256("".join(f"{i}\n" for i in ids).encode()).hexdigest()
    return {"count": len(ids), "sha256": digest}


def test_a_roster_streams_its_ids_skipping_comments_and_blank_lines(roster: Path) -> None:
    selection = Roster.of(roster)
    assert list(selection.ids(None)) == ["L1", "L2", "L3"]  # type: ignore[arg-type]
    assert selection.count() == 3
    assert Agents(("a", "b")).count() == 2
    assert EverySourceLearner().count() is None


def test_a_changed_roster_is_refused_on_resume(roster: Path) -> None:
    selection = Roster.of(roster)
    selection.check_unchanged()
    roster.write_text("L9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="changed since the run started"):
        selection.check_unchanged()


def test_an_unreadable_roster_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the learner list"):
        Roster.of(tmp_path / "missing.txt")


def test_the_embedded_default_plans_the_bundled_roster(tmp_path: Path) -> None:
    plan = plan_batch(ledger=tmp_path / "l.jsonl", database=f"sqlite:///{tmp_path}/s.sqlite")
    assert isinstance(plan.selection, Bundled)
    assert plan.header()["selection"]["bundled"] is True


def test_a_status_is_its_json_text() -> None:
    """A StrEnum: the JSON and the comparisons with strings read back are unchanged."""
    assert canonical({"status": Status.SKIPPED}) == b'{"status":"SKIPPED"}'
    assert Status.OK == "OK" and f"{Status.ERROR}" == "ERROR"


def test_counts_tally_every_status_and_count_the_unknown_as_failed() -> None:
    counts = Counts()
    for status in ["OK", Status.OK, "SKIPPED", "ERROR", None, "odd"]:
        counts.add(status)
    assert counts.to_json() == {"total": 6, "ok": 2, "skipped": 1, "failed": 3}
    assert counts.by_status() == {"ok": 2, "skipped": 1, "failed": 3}


def test_the_encoded_record_embeds_the_stored_json_and_hashes_the_record() -> None:
    """The stored JSON columns are the very bytes inside the hashed ledger record."""
    referential = bundled_referential()
    client = prepare_source(None).open()
    agent = next(iter(Bundled.of(bundled_roster()).ids(None)))  # type: ignore[arg-type]
    records = [submitted(r) for r in client.fetch(agent)]
    client.close()
    result, inputs = score_learner(agent, records, referential, engine_version="test")
    assert result["status"] == Status.OK
    encoded = encode_record(agent, result, inputs)
    assert encoded.content_hash == hashlib.sha256(encoded.record).hexdigest()
    assert b'"result":' + encoded.result.encode() in encoded.record
    for part in (encoded.domain_scores, encoded.competencies):
        assert part is not None and part.encode() in encoded.result.encode()
    failed = encode_record("L2", error_result("L2", referential, "source down"), None)
    assert failed.domain_scores is None and failed.competencies is None
    assert b'"inputs":null' in failed.record
