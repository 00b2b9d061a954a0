"""``ceredis verify``: integrity plus replay, each finding naming its line and learner."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import pytest

from ceredis.cli import main
from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential, parse_referential
from ceredis.sample import write_cohort
from ledger import LedgerWriter, read_ledger


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A finished 40-learner run: (ledger, database URL)."""
    folder = tmp_path_factory.mktemp("verify")
    files = write_cohort(folder / "c.jsonl", bundled_referential(), 40, seed=3)
    database = f"sqlite:///{folder / 'db.sqlite'}"
    plan = plan_batch(
        agents_file=files.roster,
        source=str(files.evidence),
        workers=2,
        database=database,
        ledger=folder / "run.jsonl",
    )
    run_batch(plan)
    return plan.ledger, database


def reseal(source: Path, target: Path, edit_header=None, edit_record=None) -> None:
    """Rewrite a ledger through the ledger writer, so every hash, the chain and the Merkle
    root are valid again: only a replay can tell the edit."""
    lines = list(read_ledger(source))
    header = copy.deepcopy(lines[0].body["meta"])
    if edit_header:
        edit_header(header)
    with LedgerWriter.create(target, header) as writer:
        for index, line in enumerate(lines[1:-1]):
            body = copy.deepcopy(line.body)
            if edit_record:
                edit_record(index, body)
            writer.append(body)
        writer.finish(lines[-1].body["meta"])


def verify(path: Path, capsys, *extra: str) -> tuple[int, dict]:
    code = main(["verify", str(path), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_untouched_ledger_verifies(batch, capsys):
    """An untouched ledger: exit 0, every record replayed, the database agrees."""
    ledger, database = batch
    code, out = verify(ledger, capsys, "--database", database)
    assert code == 0 and out["ok"] and out["findings"] == []
    assert out["replayed"] == out["records"] == 40 and out["databaseRows"] == 40


def test_human_output(batch, capsys):
    """Without --json verify says OK and how much was replayed."""
    ledger, _ = batch
    assert main(["verify", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "is intact and reproducible" in out and "40 replayed identically" in out
    assert "resultsRoot recorded in the footer:" in out and "recomputed" not in out


def test_edited_score_is_found_by_integrity(batch, tmp_path, capsys):
    """A score edited in place breaks the content hash of its line."""
    ledger, _ = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"ceredisScore":5' in line)
    lines[target] = lines[target].replace(b'"ceredisScore":5', b'"ceredisScore":6', 1)
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join(lines))
    code, out = verify(edited, capsys)
    assert code == 1
    assert any(f["line"] == target + 1 for f in out["findings"])


def test_edited_score_resealed_is_found_by_replay(batch, tmp_path, capsys):
    """A score edited and re-hashed everywhere still fails: the replay names line and learner."""
    ledger, _ = batch

    def raise_score(index, body):
        if index == 6 and body["status"] == "OK":
            body["result"]["ceredisScore"] += Decimal("10.00")

    reseal(ledger, tmp_path / "resealed.jsonl", edit_record=raise_score)
    code, out = verify(tmp_path / "resealed.jsonl", capsys)
    assert code == 1
    (finding,) = out["findings"]
    assert (finding["line"], finding["kind"]) == (8, "replay mismatch")
    assert finding["agentId"] == "L00007"
    assert finding["message"].startswith("result.ceredisScore: recorded ")


def test_edited_input_is_found_by_replay(batch, tmp_path, capsys):
    """An evidence score edited in the recorded inputs no longer yields the recorded result."""
    ledger, _ = batch

    def lower_input(index, body):
        if index == 2:
            body["inputs"]["evidence"][0]["rawScore"] = Decimal("0")

    reseal(ledger, tmp_path / "input.jsonl", edit_record=lower_input)
    code, out = verify(tmp_path / "input.jsonl", capsys)
    assert code == 1
    assert [(f["line"], f["kind"], f["agentId"]) for f in out["findings"]] == [
        (4, "replay mismatch", "L00003")
    ]


def test_different_referential_in_header_is_reported(batch, tmp_path, capsys):
    """A header carrying another referential: each record fails against it, named by line."""
    ledger, _ = batch

    def stricter(header):
        header["referential"]["levelRules"]["C1"][2]["value"] = 95
        header["referentialHash"] = parse_referential(header["referential"]).hash

    reseal(ledger, tmp_path / "ref.jsonl", edit_header=stricter)
    code, out = verify(tmp_path / "ref.jsonl", capsys)
    assert code == 1
    assert {f["kind"] for f in out["findings"]} >= {"referential mismatch"}
    assert {f["line"] for f in out["findings"]} == set(range(2, 42))
    assert any("differs from the installed" in note for note in out["notes"])


def test_deleted_line_is_found(batch, tmp_path, capsys):
    """A record line removed from the middle is reported at that line."""
    ledger, database = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    del lines[10]
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join(lines))
    code, out = verify(cut, capsys, "--database", database)
    assert code == 1
    assert any(f["line"] == 11 for f in out["findings"])


def test_incomplete_ledger_is_reported_as_such(batch, tmp_path, capsys):
    """A ledger without its footer is incomplete (exit 1), not tampered with."""
    ledger, _ = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join(lines[:-1]))
    code, out = verify(partial, capsys)
    assert code == 1 and out["findings"] == [] and not out["complete"]
    assert "incomplete run" in out["notes"][0]


def test_unreadable_ledger_exits_2(tmp_path, capsys):
    """A file that is not a ledger, or no file at all, exits 2."""
    (tmp_path / "x.jsonl").write_text("hello\n")
    assert main(["verify", str(tmp_path / "x.jsonl")]) == 2
    assert main(["verify", str(tmp_path / "missing.jsonl")]) == 2


def test_database_row_tampering_is_found(batch, tmp_path, capsys):
    """A database row whose hash differs from the ledger is named with its learner."""
    import shutil
    import sqlite3

    ledger, database = batch
    copy_db = tmp_path / "db.sqlite"
    shutil.copy(database.removeprefix("sqlite:///"), copy_db)
    with sqlite3.connect(copy_db) as db:
        db.execute("UPDATE ceredis_result SET content_hash = 'x' WHERE agent_id = 'L00005'")
        db.execute("DELETE FROM ceredis_result WHERE agent_id = 'L00009'")
    code, out = verify(ledger, capsys, "--database", f"sqlite:///{copy_db}")
    assert code == 1
    assert sorted((f["agentId"], f["kind"]) for f in out["findings"]) == [
        ("L00005", "database: result mismatch"),
        ("L00009", "database: row missing"),
    ]


def test_summary_counts_what_differed_and_labels_both_roots(batch, tmp_path, capsys):
    """One resealed edit: 39 identical, 1 differed (not "40 byte for byte")."""
    ledger, _ = batch

    def raise_score(index, body):
        if index == 6:
            body["result"]["ceredisScore"] += Decimal("10.00")

    reseal(ledger, tmp_path / "resealed.jsonl", edit_record=raise_score)
    code, out = verify(tmp_path / "resealed.jsonl", capsys)
    assert (code, out["identical"], out["differed"], out["replayed"]) == (1, 39, 1, 40)
    assert main(["verify", str(tmp_path / "resealed.jsonl")]) == 1
    text = capsys.readouterr().out
    assert "39 replayed identically, 1 differed" in text and "byte for byte" not in text


def test_a_deleted_line_shows_the_recorded_and_the_recomputed_root(batch, tmp_path, capsys):
    """The footer's root is printed as recorded, and the records' own root beside it."""
    ledger, _ = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    recorded = json.loads(lines[-1])["body"]["ledger"]["resultsRoot"]
    del lines[10]
    (tmp_path / "cut.jsonl").write_bytes(b"".join(lines))
    _, out = verify(tmp_path / "cut.jsonl", capsys)
    assert out["resultsRoot"] == recorded and out["recomputedRoot"] not in (None, recorded)
    main(["verify", str(tmp_path / "cut.jsonl")])
    text = capsys.readouterr().out
    assert f"resultsRoot recorded in the footer:   {recorded}" in text
    assert f"resultsRoot recomputed from records: {out['recomputedRoot']}" in text


def test_integrity_findings_name_the_learner_and_mark_consequences(batch, tmp_path, capsys):
    """A byte changed on a record line: that line's finding names its learner; the chain
    break on the next line names its own learner and is marked as a consequence."""
    ledger, _ = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    target = 5  # 0-based: line 6, learner L00005
    lines[target] = lines[target].replace(b'"status":"', b'"status":"X', 1)
    (tmp_path / "flip.jsonl").write_bytes(b"".join(lines))
    code, out = verify(tmp_path / "flip.jsonl", capsys)
    assert code == 1
    by_line = {}
    for f in out["findings"]:
        by_line.setdefault(f["line"], []).append(f)
    assert all(f["agentId"] == "L00005" for f in by_line[6])
    assert [(f["kind"], f["agentId"], f["consequenceOf"]) for f in by_line[7]] == [
        ("chain", "L00006", 6)
    ]
    main(["verify", str(tmp_path / "flip.jsonl")])
    assert "line 7, learner L00006: chain:" in capsys.readouterr().out


def test_a_line_that_no_longer_parses_still_names_its_learner(batch, tmp_path, capsys):
    """A record line cut in its middle (not JSON any more) is named from its bytes."""
    ledger, _ = batch
    lines = ledger.read_bytes().splitlines(keepends=True)
    lines[8] = lines[8][:300] + b"\n"
    (tmp_path / "torn.jsonl").write_bytes(b"".join(lines))
    code, out = verify(tmp_path / "torn.jsonl", capsys)
    assert code == 1
    assert [f["agentId"] for f in out["findings"] if f["line"] == 9][:1] == ["L00008"]
