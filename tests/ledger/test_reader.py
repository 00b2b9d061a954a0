"""The streaming reader: records as stored, bodies that re-encode exactly, errors at once."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import LedgerFormatError, canonical, last_line, read_ledger, salvage_records
from tests.ledger.helpers import FOOTER, HEADER, body, write_ledger

GOLDEN = Path(__file__).parent / "golden"


def test_reads_header_records_footer() -> None:
    """Every line comes back in order, with its kind, record index and content hash."""
    records = list(read_ledger(GOLDEN / "ok.jsonl"))
    assert [r.kind for r in records] == ["header"] + ["record"] * 5 + ["footer"]
    assert [r.line_no for r in records] == list(range(1, 8))
    assert [r.index for r in records] == [None, 0, 1, 2, 3, 4, None]
    assert records[0].body["meta"] == HEADER
    assert records[-1].body["meta"] == FOOTER
    for i, r in enumerate(records[1:-1]):
        assert r.body == body(i)
        assert r.content_hash == hashlib.sha256(r.body_bytes).hexdigest()


def test_bodies_re_encode_to_the_stored_bytes() -> None:
    """rec.body re-canonicalises to rec.body_bytes exactly (Decimals keep their digits)."""
    for r in read_ledger(GOLDEN / "ok.jsonl"):
        assert canonical(r.body) == r.body_bytes


def test_decimal_scores_come_back_as_decimals(tmp_path: Path) -> None:
    """A score written as Decimal('540.00') is read back as Decimal('540.00'), not a float."""
    path = write_ledger(tmp_path / "l.jsonl", [{"score": Decimal("540.00")}])
    score = next(r for r in read_ledger(path) if r.kind == "record").body["score"]
    assert type(score) is Decimal and str(score) == "540.00"


@pytest.mark.parametrize(
    ("name", "read", "match"),
    [
        ("tampered-body", 2, "line 3: content-hash"),
        ("deleted-line", 3, "line 4: chain"),
        ("torn-last-line", 6, "line 7: torn-tail"),
        ("missing-header", 0, "line 1: chain"),
    ],
)
def test_stops_at_the_first_bad_line(name: str, read: int, match: str) -> None:
    """Lines before the first problem are yielded; then LedgerFormatError names the line."""
    got = []
    with pytest.raises(LedgerFormatError, match=match):
        for r in read_ledger(GOLDEN / f"{name}.jsonl"):
            got.append(r)
    assert len(got) == read


def test_unfinished_ledger_reads_fine() -> None:
    """A ledger without its footer is read up to its last record without error."""
    assert [r.kind for r in read_ledger(GOLDEN / "unfinished.jsonl")][-1] == "record"


def test_missing_and_empty_files(tmp_path: Path) -> None:
    """A missing file or an empty one raises LedgerFormatError."""
    with pytest.raises(LedgerFormatError, match="cannot read"):
        list(read_ledger(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(LedgerFormatError, match="empty file"):
        list(read_ledger(tmp_path / "empty.jsonl"))


def test_salvage_keeps_every_record_line_that_still_parses(tmp_path: Path) -> None:
    """In a damaged ledger, salvage yields the surviving records (with their own hashes)."""
    lines = (GOLDEN / "ok.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = b"garbage\n"  # record 1 destroyed
    cut = lines[4].index(b'"prev":"') + 8
    flipped = b"1" if lines[4][cut : cut + 1] == b"0" else b"0"
    lines[4] = lines[4][:cut] + flipped + lines[4][cut + 1 :]  # record 3: chain broken only
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_bytes(b"".join(lines))
    salvaged = list(salvage_records(damaged))
    assert [r.line_no for r in salvaged] == [2, 4, 5, 6]
    assert [r.body for r in salvaged] == [body(0), body(2), body(3), body(4)]
    assert all(r.content_hash == hashlib.sha256(r.body_bytes).hexdigest() for r in salvaged)
    with pytest.raises(LedgerFormatError):
        list(read_ledger(damaged))


def test_last_line_is_read_from_the_end(tmp_path: Path) -> None:
    """last_line: the footer of a finished ledger, a record of an unfinished one, None for
    a torn tail, an empty file or garbage; a last line longer than a read-back block."""
    finished = write_ledger(tmp_path / "f.jsonl", [body(i) for i in range(3)])
    assert last_line(finished).kind == "footer"
    unfinished = write_ledger(tmp_path / "u.jsonl", [body(i) for i in range(3)], finish=False)
    line = last_line(unfinished)
    assert (line.kind, line.seq) == ("record", 4)
    (tmp_path / "torn.jsonl").write_bytes(finished.read_bytes()[:-5])
    assert last_line(tmp_path / "torn.jsonl") is None
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert last_line(tmp_path / "empty.jsonl") is None
    (tmp_path / "junk.jsonl").write_bytes(b"junk\n" * 3)
    assert last_line(tmp_path / "junk.jsonl") is None
    big = write_ledger(tmp_path / "big.jsonl", [{"text": "x" * 200_000}], finish=False)
    assert last_line(big).kind == "record" and len(last_line(big).body) > 200_000
    one = write_ledger(tmp_path / "one.jsonl", [], finish=False)
    assert last_line(one).kind == "header"
    with pytest.raises(LedgerFormatError, match="cannot read"):
        last_line(tmp_path / "missing.jsonl")
