"""Local evidence exports: JSON Lines and CSV readers, the index, and their errors."""

from __future__ import annotations

import csv
from decimal import Decimal

import orjson
import pytest

from ceredis.errors import ConfigError, EvidenceFileError
from ceredis.evidence import FIELDS, RawEvidence, submitted
from ceredis.exactjson import loads
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
    exact = submitted(only)["fields"]["rawScore"]  # a float is read through its shortest text
    assert exact.as_tuple() == Decimal("72.1").as_tuple() and only.where == "line 1"
    assert str(evaluate("L1", [only], referential)["competencies"]["5.1"]["score"]) == "21.63"


NUMBERS = [
    "72.1",
    "72.10",
    "51",
    "1E+2",
    "1.5e-7",
    "0.1000000000000000055511151231257827",
    "123456789.123456789",
    "-0.0",
    "-0",
    "9007199254740993",
    "1" + "0" * 99,
    "0." + "0" * 98 + "1",
    '"72.1"',
    '{"a":[1.50]}',
]


@pytest.mark.parametrize("together", [True, False], ids=["one learner", "each alone"])
def test_records_read_back_exactly_whichever_decoder_reads_them(tmp_path, together):
    """orjson reads the index rows it reads as the engine sees them, the exact decoder
    the others (trailing zeros, long fractions, large integers, nested values): the same
    submitted forms, with the same digits, mixed in one learner or each learner alone."""
    lines = [
        f'{{"agentId":"{"L1" if together else f"L{i}"}","rawScore":{text},"context":{text}}}'
        for i, text in enumerate(NUMBERS)
    ]
    path = write_jsonl(tmp_path / "e.jsonl", [], lines)
    source = prepare_source(str(path)).open()
    fetched = [
        r.fields
        for a in (["L1"] if together else [f"L{i}" for i in range(len(NUMBERS))])
        for r in source.fetch(a)
    ]
    source.close()
    expected = [loads(line) for line in lines]
    forms = [submitted(RawEvidence(f))["fields"] for f in (*fetched, *expected)]
    assert [canonical(f) for f in forms[: len(lines)]] == [
        canonical(f) for f in forms[len(lines) :]
    ]


@pytest.mark.parametrize("score", ["50", "50.10"], ids=["plain", "exact"])
def test_line_breaks_inside_records_survive_the_index(tmp_path, score):
    """The index keeps a learner's records one per line of its row: a line break inside a
    value (escaped in JSON) stays inside its record, in JSON Lines and in CSV."""
    contexts = ["a\nb", "c\r\nd", "e\u2028f"]
    lines = [
        orjson.dumps({"agentId": "L1", "evidenceId": f"e{i}", "context": c}).decode()[:-1]
        + f',"rawScore":{score}}}'
        for i, c in enumerate(contexts)
    ]
    source = prepare_source(str(write_jsonl(tmp_path / "e.jsonl", [], lines))).open()
    assert [r.fields["context"] for r in source.fetch("L1")] == contexts
    assert [r.where for r in source.fetch("L1")] == ["line 1", "line 2", "line 3"]
    rows = [record("5.1", "P2", score, eid=f"e{i}", context=c) for i, c in enumerate(contexts)]
    source = prepare_source(str(write_csv(tmp_path / "e.csv", rows))).open()
    assert [r.fields["context"] for r in source.fetch("L1")] == contexts


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
    assert "line 2 (byte 141): not valid JSON (Expecting property name enclosed in" in message
    assert "line 3: expected a JSON object, found list" in message
    assert "line 4: no agentId, so the record cannot be attributed to a learner" in message


VALID = (
    '{"evidenceId":"a","agentId":"L1","competencyId":"5.1","evidenceType":"P2",'
    '"rawScore":50,"timestamp":"2026-10-01T09:30:00Z"}'
)


def refusal(tmp_path, data: bytes, suffix: str = ".jsonl") -> str:
    """The message of the file error a file with *data* gives (exit 2 at the CLI)."""
    path = tmp_path / f"e{suffix}"
    path.write_bytes(data)
    with pytest.raises(EvidenceFileError) as caught:
        prepare_source(str(path))
    return str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            VALID.encode() + b"\n" + VALID.replace("a", "\xe9").encode("latin-1"),
            "line 2 (byte 139): invalid UTF-8 byte 0xe9; the file must be UTF-8",
        ),
        (
            b"\n\n" + VALID.encode()[:20] + b"\xff" + b"\n",
            "line 3 (byte 22): invalid UTF-8 byte 0xff",
        ),
        (
            VALID.encode() + b"\n\xef\xbb\xbf" + VALID.encode(),
            "line 2 (byte 124): a byte-order mark",
        ),
        (
            VALID.replace('"a"', '"a\x00"').encode(),
            "line 1 (byte 16): not valid JSON (Invalid control",
        ),
        (VALID[:-1].encode() + b',"agentId":"L2"}', "line 1: the key 'agentId' appears twice"),
        (VALID[:-1].encode() + b',"rawScore":100}', "line 1: the key 'rawScore' appears twice"),
        (VALID[:40].encode(), "line 1 (byte 33): not valid JSON (Unterminated string"),
        (VALID.replace('"L1"', '"L1\\u0000"').encode(), "agentId 'L1\\x00' holds the control"),
        (VALID.replace('"L1"', '"L1\\n"').encode(), "holds the control character U+000A"),
        (VALID.replace('"a"', '"\\ud800"').encode(), "line 1: $.evidenceId: a lone surrogate"),
        (VALID.replace("50", "[" * 5000).encode(), "line 1 (byte 184): arrays or objects nested"),
        (b"\x1c\n" + VALID.encode(), "line 1 (byte 0): not valid JSON (Expecting value)"),
    ],
    ids=[
        "latin1",
        "byte",
        "bom",
        "nul",
        "dup-agent",
        "dup-score",
        "truncated",
        "nul-id",
        "newline-id",
        "surrogate",
        "deep-open",
        "file-separator",
    ],
)
def test_undecodable_lines_are_named_with_line_and_byte(tmp_path, data, message):
    """Invalid UTF-8, a stray BOM, NUL, duplicate keys: the file is refused, naming where."""
    text = refusal(tmp_path, data)
    assert "so no learner is scored from this file" in text
    assert message in text


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_line_ends_and_a_leading_bom_are_read(tmp_path, ending):
    """LF, CRLF and CR all end lines, and a BOM opening the file is skipped."""
    second = VALID.replace('"a"', '"b"').replace("50", "70")
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode() + ending + second.encode() + ending)
    records = prepare_source(str(path)).open().fetch("L1")
    assert [(r.where, r.fields["rawScore"]) for r in records] == [("line 1", 50), ("line 2", 70)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("9" * 5000, "rawScore holds a number of 5,000 digits (at most 100 are read)"),
        ("1e999999999", "rawScore holds a number of 1,000,000,000 digits"),
        ("[" * 1000 + "]" * 1000, "rawScore holds arrays or objects nested deeper than 100"),
    ],
)
def test_huge_or_deep_values_are_invalid_records(tmp_path, referential, raw, message):
    """A number too long or a value too deep makes the record invalid, naming the field."""
    path = write_jsonl(tmp_path / "e.jsonl", [], [VALID.replace("50", raw)])
    result = evaluate("L1", prepare_source(str(path)).open().fetch("L1"), referential)
    assert result["status"] == "ERROR"
    assert f"evidence a (line 1): {message}" in result["error"]


def test_huge_number_in_a_csv_is_an_invalid_record(tmp_path, referential):
    """The CSV reader applies the same number limits."""
    rows = [record("5.1", "P2", "9" * 5000, eid="b")]
    source = prepare_source(str(write_csv(tmp_path / "e.csv", rows))).open()
    result = evaluate("L1", source.fetch("L1"), referential)
    assert "evidence b (line 2): rawScore holds a number of 5,000 digits" in result["error"]


def test_csv_header_is_checked(tmp_path):
    """A CSV without the required columns is one error listing the expected header."""
    message = refusal(tmp_path, b"id,score\n1,2\n", ".csv")
    assert "lacks the columns evidenceId, agentId, competencyId, evidenceType, rawScore" in message
    assert "expected the header evidenceId,agentId,competencyId,evidenceType," in message


def test_csv_without_timestamp_is_one_header_error(tmp_path):
    """A missing timestamp column refuses the file instead of failing every learner."""
    header = ",".join(f for f in FIELDS if f != "timestamp")
    message = refusal(tmp_path, f"{header}\na,L1,5.1,P2,50,,\n".encode(), ".csv")
    assert "the CSV header lacks the column timestamp; expected the header" in message


def test_csv_duplicate_column_is_an_error(tmp_path):
    """A doubled column would silently pick one of two values: refused, naming it."""
    header = ",".join([*FIELDS, "agentId"])
    message = refusal(tmp_path, f"{header}\na,L1,5.1,P2,50,{TS},,,L2\n".encode(), ".csv")
    assert "the CSV header has the column agentId twice" in message


def test_csv_undecodable_row_and_control_character_agent(tmp_path):
    """A CSV row with invalid UTF-8, or an agentId with NUL, is named with its line."""
    header = ",".join(FIELDS).encode()
    row = f"a,L1,5.1,P2,50,{TS},,".encode()
    message = refusal(tmp_path, header + b"\r\n" + row + b"\r\nb,L1,5.1,P2,\xe9,", ".csv")
    assert f"line 3 (byte {len(header) + len(row) + 16}): invalid UTF-8 byte 0xe9" in message
    message = refusal(tmp_path, header + b"\n" + row.replace(b"L1", b"L1\x00"), ".csv")
    assert "line 2: agentId 'L1\\x00' holds the control character U+0000" in message


TS = "2026-10-01T09:30:00Z"


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


def test_indexing_removes_what_an_older_version_left(tmp_path):
    """An index an older engine built for the same file goes when the file is indexed
    again; another file's index stays."""
    path = write_jsonl(tmp_path / "e.jsonl", [record("5.1", "P2", 50)])
    folder = prepare_source(str(path)).index.parent
    digest = prepare_source(str(path)).sha256
    older, other = folder / f"{digest}-v1.jsonl.sqlite", folder / f"{'0' * 64}-v1.jsonl.sqlite"
    older.write_bytes(b"old")
    other.write_bytes(b"other")
    prepare_source(str(path)).index.unlink()  # the current index is built again
    assert prepare_source(str(path)).index.exists()
    assert not older.exists() and other.exists()


def test_prechecked_learners_score_as_their_records_do(tmp_path, referential):
    """A learner scored from the index's prechecked evidence gets the very result and
    ledger record its records give through the one-pass check; a competency the
    referential does not know, an invalid record or a conflicting duplicate sends the
    learner to its records."""
    from ceredis import __version__
    from ceredis.record import encode_record, score_delivered

    rows = [
        record("1.1", "P1", 100, agent="L1", eid="a"),
        record("1.2", "P2", Decimal("72.50"), agent="L1", eid="b"),
        record("1.2", "P2", Decimal("72.50"), agent="L1", eid="b"),  # the same twice: one
        record("2.1", "P3", 0, agent="L1", eid="c", timestamp="2026-10-01T23:30:00-05:00"),
        record("1.1", "P1", 50, agent="L2", eid="a"),
        record("9.9", "P1", 50, agent="L2", eid="b"),  # prechecked; the referential refuses
        record("1.1", "P1", 101, agent="L3", eid="a"),  # invalid: never prechecked
        record("1.1", "P1", 50, agent="L4", eid="a"),
        record("1.1", "P1", 51, agent="L4", eid="a"),  # the same id, other content
    ]
    source = prepare_source(str(write_jsonl(tmp_path / "e.jsonl", rows))).open()
    prechecked = {}
    for agent in ("L1", "L2", "L3", "L4"):
        delivered = source.fetch(agent)
        prechecked[agent] = getattr(delivered, "prechecked", None) is not None
        fast = score_delivered(agent, delivered, referential, engine_version=__version__)
        plain = score_delivered(agent, list(delivered), referential, engine_version=__version__)
        assert encode_record(agent, *fast) == encode_record(agent, *plain)
    source.close()
    assert prechecked == {"L1": True, "L2": True, "L3": False, "L4": False}
