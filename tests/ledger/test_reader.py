"""The streaming reader: records as stored, bodies that re-encode exactly, errors at once."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import LedgerFormatError, canonical, read_ledger
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
