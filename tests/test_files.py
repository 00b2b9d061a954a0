"""Local evidence exports: JSON Lines and CSV readers, the index, and their errors."""

from __future__ import annotations

import csv
from decimal import Decimal

import pytest

from ceredis.errors import ConfigError, EvidenceFileError
from ceredis.evidence import FIELDS
from ceredis.scoring import evaluate
from ceredis.sources import prepare_source
from ledger.canonical import canonical
from tests.builders import every_competency, record


def write_jsonl(path, records, extra_lines=()):
    lines = [canonical(r).decode() for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path, records):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, "") for k in FIELDS})
    return path


def test_jsonl_and_csv_exports_give_the_same_result(tmp_path, referential):
    """The same cohort exported as JSON Lines or CSV scores identically."""
    records = every_competency(referential, {"D1": 95, "D2": 95, "D3": 95, "D4": 95, "D5": 62})
    results = []
    for path in (
        write_jsonl(tmp_path / "e.jsonl", records),
        write_csv(tmp_path / "e.csv", records),
    ):
        source = prepare_source(str(path)).open()
        results.append(canonical(evaluate("L1", source.fetch("L1"), referential)))
        source.close()
    assert results[0] == results[1]
    assert b'"ceredisScore":530.40' in results[0]


def test_decimal_text_survives_the_file(tmp_path, referential):
    """72.1 in a file is exactly 72.1 (JSON Lines) — and 72.10 keeps its value."""
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [],
        [
            '{"evidenceId":"a","agentId":"L1","competencyId":"5.1","evidenceType":'
            '"P2","rawScore":72.1,"timestamp":"2026-10-01T09:30:00Z"}'
        ],
    )
    source = prepare_source(str(path)).open()
    (only,) = source.fetch("L1")
    assert only.fields["rawScore"] == Decimal("72.1") and only.where == "line 1"
    assert str(evaluate("L1", [only], referential)["competencies"]["5.1"]["score"]) == "21.63"


def test_nan_and_text_scores_reach_validation(tmp_path, referential):
    """NaN in JSON Lines and a word in CSV are reported by validation, not lost."""
    jsonl = write_jsonl(
        tmp_path / "e.jsonl",
        [],
        [
            '{"evidenceId":"a","agentId":"L1","competencyId":"5.1","evidenceType":'
            '"P2","rawScore":NaN,"timestamp":"2026-10-01T09:30:00Z"}'
        ],
    )
    result = evaluate("L1", prepare_source(str(jsonl)).open().fetch("L1"), referential)
    assert "evidence a (line 1): rawScore must be a finite number, found NaN" in result["error"]

    rows = [record("5.1", "P2", "seventy", eid="b")]
    result = evaluate(
        "L1",
        prepare_source(str(write_csv(tmp_path / "e.csv", rows))).open().fetch("L1"),
        referential,
    )
    assert (
        "evidence b (line 2): rawScore must be a number, found the string 'seventy'"
        in (result["error"])
    )


def test_unattributable_lines_stop_the_run_before_any_work(tmp_path):
    """Lines that cannot be attributed to a learner are all listed, with line numbers."""
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [record("5.1", "P2", 50)],
        ["{not json", "[1, 2]", '{"evidenceId": "x"}'],
    )
    with pytest.raises(EvidenceFileError) as caught:
        prepare_source(str(path))
    message = str(caught.value)
    assert "3 lines cannot be read, so no learner is scored from this file" in message
    assert "line 2: not valid JSON" in message
    assert "line 3: expected a JSON object, found list" in message
    assert "line 4: no agentId, so the record cannot be attributed to a learner" in message


def test_csv_header_is_checked(tmp_path):
    """A CSV without the key columns is refused, naming them."""
    path = tmp_path / "e.csv"
    path.write_text("id,score\n1,2\n")
    with pytest.raises(EvidenceFileError, match="lacks columns evidenceId, agentId, rawScore"):
        prepare_source(str(path))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("missing.jsonl", "evidence file missing.jsonl does not exist"),
        ("http://user:secret@host/x", "unknown evidence source 'http://user@host/x'"),
    ],
)
def test_bad_source_uris(uri, message):
    """A missing file or an unknown scheme is a configuration error; no secret is echoed."""
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")) as caught:
        prepare_source(uri)
    assert "secret" not in str(caught.value)


def test_unknown_file_type(tmp_path):
    """Only .jsonl and .csv exports are read."""
    path = tmp_path / "e.xml"
    path.write_text("<x/>")
    with pytest.raises(EvidenceFileError, match=r"unknown evidence file type '\.xml'"):
        prepare_source(str(path))


def test_agents_are_listed_sorted_and_the_index_is_reused(tmp_path):
    """`agents()` lists every learner once, sorted; a second prepare reuses the index."""
    records = [
        record("5.1", "P2", 50, agent=a, eid=f"{a}-{i}")
        for i, a in enumerate(["L3", "L1", "L2", "L1"])
    ]
    path = write_jsonl(tmp_path / "e.jsonl", records)
    first = prepare_source(str(path))
    assert list(first.open().agents()) == ["L1", "L2", "L3"]
    again = prepare_source(str(path))
    assert again.index == first.index and again.sha256 == first.sha256
