"""Verification: golden defects, every problem kind, anchors, and tamper detection at 100 %."""

from __future__ import annotations

import importlib
import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import LedgerWriter, ProblemKind, VerifyReport, verify_ledger
from ledger.errors import LedgerFormatError
from ledger.line import MAX_LINE, encode_line, sha256_hex
from ledger.merkle import EMPTY_ROOT
from tests.ledger.helpers import FOOTER, HEADER, body, lines_of, write_ledger

GOLDEN = Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
decoding = importlib.import_module("ledger.decode")  # the module; ledger.decode is its function
scanning = importlib.import_module("ledger.scanner")


def test_writer_reproduces_the_golden_ledger(tmp_path: Path) -> None:
    """The writer still produces golden/ok.jsonl byte for byte: the line format is pinned."""
    path = write_ledger(tmp_path / "ok.jsonl", [body(i) for i in range(5)])
    assert path.read_bytes() == (GOLDEN / "ok.jsonl").read_bytes()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_golden_defects(name: str) -> None:
    """Each golden file reports exactly the expected (line, kind) problems and status."""
    report = verify_ledger(GOLDEN / f"{name}.jsonl")
    assert [[p.line_no, str(p.kind)] for p in report.problems] == EXPECTED[name]["problems"]
    assert report.status == EXPECTED[name]["status"]


def test_report_of_a_good_ledger() -> None:
    """A good ledger: ok, complete, counts, root, and the application header and footer."""
    report = verify_ledger(GOLDEN / "ok.jsonl")
    assert (report.ok, report.complete, report.count, report.lines) == (True, True, 5, 7)
    assert report.header == HEADER
    assert report.footer == FOOTER
    assert report.root in (GOLDEN / "ok.jsonl").read_text()
    assert report.to_json()["status"] == "ok" and report.to_json()["problems"] == []


def test_problem_messages_name_expected_and_found() -> None:
    """Messages carry both hashes in hex, and a Problem prints as 'line N: kind: message'."""
    report = verify_ledger(GOLDEN / "tampered-body.jsonl")
    first = report.problems[0]
    assert str(first).startswith("line 3: content-hash: record hash says ")
    assert first.message.count("hash") == 2 and len(first.message.split()[-1]) == 64
    chain = report.problems[1]
    assert "prev is " in chain.message and ", expected " in chain.message


def test_incomplete_is_not_tampering() -> None:
    """Without a footer the status is 'incomplete': ok (nothing wrong) but not complete."""
    report = verify_ledger(GOLDEN / "unfinished.jsonl")
    assert (report.status, report.ok, report.complete, report.footer) == (
        "incomplete",
        True,
        False,
        None,
    )


def test_anchor_detects_truncation_and_replacement(tmp_path: Path) -> None:
    """(size, root) kept elsewhere: the right ledger passes; truncated or replaced ones fail."""
    good = verify_ledger(GOLDEN / "ok.jsonl")
    anchor = (good.count, good.root)
    assert verify_ledger(GOLDEN / "ok.jsonl", anchor).status == "ok"
    truncated = verify_ledger(GOLDEN / "unfinished.jsonl", anchor)
    assert [str(p.kind) for p in truncated.problems] == ["anchor"]
    shorter = tmp_path / "short.jsonl"
    shorter.write_bytes(b"".join(lines_of(GOLDEN / "ok.jsonl")[:4]))
    assert "holds 3: truncated" in verify_ledger(shorter, anchor).problems[0].message
    replaced = write_ledger(tmp_path / "other.jsonl", [body(i + 1) for i in range(5)])
    assert verify_ledger(replaced).status == "ok"
    report = verify_ledger(replaced, anchor)
    assert [(p.line_no, str(p.kind)) for p in report.problems] == [(6, "anchor")]
    assert good.root in report.problems[0].message


def test_anchor_of_a_prefix(tmp_path: Path) -> None:
    """An anchor taken earlier (fewer records) checks that prefix of a longer ledger."""
    path = write_ledger(tmp_path / "l.jsonl", [body(i) for i in range(3)], finish=False)
    early = verify_ledger(path)
    with LedgerWriter.open(path) as w:
        w.append(body(3))
        w.finish(FOOTER)
    assert verify_ledger(path, (early.count, early.root)).status == "ok"
    assert verify_ledger(path, (0, EMPTY_ROOT.hex())).status == "ok"
    assert not verify_ledger(path, (early.count, "0" * 64)).ok


def test_bad_anchor_is_a_usage_error() -> None:
    """A negative size or a root that is not 64 hex digits is refused."""
    for bad in ((-1, "0" * 64), (1, "xyz"), (1, "0" * 63)):
        with pytest.raises(ValueError, match="expected must be"):
            verify_ledger(GOLDEN / "ok.jsonl", bad)


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        (b"", [(1, "structure")]),
        (b"\n", [(1, "torn-tail")]),
        (b"hello\nworld\n", [(1, "malformed"), (2, "torn-tail")]),
        (b'{"body":{}}\n', [(1, "torn-tail")]),
    ],
)
def test_files_that_are_not_ledgers(tmp_path: Path, content: bytes, problems: list[Any]) -> None:
    """Empty files and arbitrary text are reported, never accepted."""
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    report = verify_ledger(path)
    assert [(p.line_no, str(p.kind)) for p in report.problems] == problems
    assert report.status == "failed"


def test_unreadable_file_raises(tmp_path: Path) -> None:
    """A path that cannot be read raises LedgerFormatError (the CLI's exit 2)."""
    with pytest.raises(LedgerFormatError, match="cannot read"):
        verify_ledger(tmp_path / "missing.jsonl")
    with pytest.raises(LedgerFormatError, match="cannot read"):
        verify_ledger(tmp_path)


def test_unknown_format_and_bad_footer(tmp_path: Path) -> None:
    """A header of another format, or a footer without ledger fields, is a structure problem."""
    lines = lines_of(GOLDEN / "ok.jsonl")
    other = tmp_path / "other.jsonl"
    other.write_bytes(lines[0].replace(b"ledger/1", b"ledger/9"))
    report = verify_ledger(other)
    assert [str(p.kind) for p in report.problems] == ["content-hash", "structure"]
    assert "'ledger/9'" in report.problems[1].message
    footer = b'{"ledger":{"count":0},"meta":{}}'
    bad_footer = tmp_path / "f.jsonl"
    bad_footer.write_bytes(
        lines[0] + encode_line(footer, sha256_hex(footer), "footer", sha256_hex(lines[0][:-1]), 2)
    )
    problems = verify_ledger(bad_footer).problems
    assert [(p.line_no, str(p.kind)) for p in problems] == [(2, "structure")]


def test_oversized_line_stops_reading(tmp_path: Path) -> None:
    """A line longer than MAX_LINE is reported and reading stops (bounded memory)."""
    path = write_ledger(tmp_path / "l.jsonl", [body(0)], finish=False)
    with open(path, "ab") as f:
        f.write(b"x" * (MAX_LINE + 10) + b"\n")
        f.write(b"more\n")
    report = verify_ledger(path)
    assert [(p.line_no, str(p.kind)) for p in report.problems] == [(3, "malformed")]
    assert report.lines == 3
    blocks_agree(path, sizes=(1 << 20, 1 << 24))
    path.write_bytes(path.read_bytes()[: -len(b"more\n") - 1])  # no newline: a torn tail
    blocks_agree(path, sizes=(1 << 20, 1 << 24))


# --- tamper detection, on random ledgers -------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.decimals(places=2, min_value=-1000, max_value=1000)
    | st.text(max_size=8)
)
bodies = st.dictionaries(
    st.text(max_size=5),
    st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=4),
    max_size=4,
)
ledgers = st.tuples(
    st.lists(bodies, min_size=0, max_size=4),
    st.dictionaries(st.text(max_size=4), scalars, max_size=2),
    st.dictionaries(st.text(max_size=4), scalars, max_size=2),
)


def build(
    directory: Path, spec: tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]
) -> bytes:
    """Write a ledger from (record bodies, header, footer extra) and return its bytes."""
    records, header, extra = spec
    path = directory / "ledger.jsonl"
    with LedgerWriter.create(path, header) as w:
        for b in records:
            w.append(b)
        w.finish(extra)
    data = path.read_bytes()
    path.unlink()
    return data


def detected(directory: Path, data: bytes, anchor: tuple[int, str] | None = None) -> bool:
    """True unless verification calls the tampered bytes 'ok and complete'."""
    path = directory / "tampered.jsonl"
    path.write_bytes(data)
    report = verify_ledger(path, anchor)
    return not (report.ok and report.complete)


HYPOTHESIS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(ledgers, st.integers(1, 255))
def test_every_single_byte_change_is_detected(spec: Any, delta: int) -> None:
    """Changing any one byte of a ledger (header and footer included) is always detected."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = build(d, spec)
        assert not detected(d, data)
        for i in range(len(data)):
            changed = bytearray(data)
            changed[i] = (changed[i] + delta) % 256
            assert detected(d, bytes(changed)), f"byte {i} + {delta} not detected"


@HYPOTHESIS
@given(ledgers)
def test_every_line_deletion_swap_and_duplication_is_detected(spec: Any) -> None:
    """Deleting any line, swapping any two, or inserting a copy of any line anywhere."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lines = build(d, spec).splitlines(keepends=True)
        n = len(lines)
        for i in range(n):
            assert detected(d, b"".join(lines[:i] + lines[i + 1 :])), f"deleted line {i + 1}"
            for j in range(n):
                if i < j:
                    swapped = list(lines)
                    swapped[i], swapped[j] = swapped[j], swapped[i]
                    assert detected(d, b"".join(swapped)), f"swapped {i + 1} and {j + 1}"
            for j in range(n + 1):
                copied = [*lines[:j], lines[i], *lines[j:]]
                assert detected(d, b"".join(copied)), f"copy of line {i + 1} at {j + 1}"


@HYPOTHESIS
@given(ledgers)
def test_every_truncation_is_detected(spec: Any) -> None:
    """Cutting the file at any byte: a torn tail, or incomplete; with an anchor, a failure."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = build(d, spec)
        path = d / "full.jsonl"
        path.write_bytes(data)
        good = verify_ledger(path)
        anchor = (good.count, good.root)
        boundaries = {len(b"".join(data.splitlines(keepends=True)[:k])) for k in range(20)}
        for size in range(len(data)):
            path.write_bytes(data[:size])
            assert not verify_ledger(path, anchor).ok, f"cut to {size} bytes passes the anchor"
            if size in boundaries:  # whole lines: without the anchor, at least incomplete
                assert verify_ledger(path).status in ("incomplete", "failed")


def test_record_bodies_with_decimals_round_trip(tmp_path: Path) -> None:
    """Bodies with two-decimal scores verify and their digits survive (no float formatting)."""
    path = write_ledger(
        tmp_path / "l.jsonl", [{"score": Decimal("540.00")}, {"score": Decimal("0.10")}]
    )
    assert verify_ledger(path).status == "ok"
    assert b'"score":540.00' in path.read_bytes() and b'"score":0.10' in path.read_bytes()


def test_problem_kinds_are_documented() -> None:
    """Every problem kind appears in docs/ledger.md."""
    doc = (Path(__file__).parents[2] / "docs" / "ledger.md").read_text()
    missing = [k.value for k in ProblemKind if f"`{k.value}`" not in doc]
    assert not missing


def test_footer_count_must_be_an_integer(tmp_path: Path) -> None:
    """A footer saying "count": true for one record is wrong (JSON true is not 1)."""
    path = tmp_path / "l.jsonl"
    lines = lines_of(GOLDEN / "ok.jsonl")[:2]
    path.write_bytes(b"".join(lines))
    root = verify_ledger(path).root.encode()
    footer = b'{"ledger":{"count":true,"resultsRoot":"' + root + b'"},"meta":{}}'
    prev = sha256_hex(lines[1][:-1])
    path.write_bytes(b"".join(lines) + encode_line(footer, sha256_hex(footer), "footer", prev, 3))
    assert [str(p.kind) for p in verify_ledger(path).problems] == ["footer-count"]


@contextmanager
def general_checker_only() -> Iterator[None]:
    """Every canonical-form check takes the general path (parse, re-encode, compare)."""
    saved = decoding._FAST
    decoding._FAST = False
    try:
        yield
    finally:
        decoding._FAST = saved


def reports_agree(path: Path) -> VerifyReport:
    """The single pass reports exactly what it reports with the general checker alone, and
    what feeding the lines one by one finds, whatever the size of the blocks it reads."""
    fast = verify_ledger(path)
    with general_checker_only():
        general = verify_ledger(path)
    assert fast == general, path.name
    blocks_agree(path)
    return fast


def findings(scanner: Any) -> tuple[Any, ...]:
    """Everything a scan leaves behind that a reader, writer or verifier uses."""
    s = scanner
    return (s.problems, s.count, s.tree.root(), s.header, s.footer, s.footer_line, s.lines,
            s.torn, s.prev, s.max_seq)  # fmt: skip


@contextmanager
def block_size(size: int) -> Iterator[None]:
    """scan_file reads *size* bytes at a time."""
    saved = scanning._BLOCK
    scanning._BLOCK = size
    try:
        yield
    finally:
        scanning._BLOCK = saved


def blocks_agree(
    path: Path, expected: tuple[int, str] | None = None, sizes: tuple[int, ...] = (5, 333, 1 << 20)
) -> None:
    """scan_file (blocks, the quick path for regular records) finds exactly what feeding
    every line to Scanner.feed finds, for blocks cut inside lines and across many."""
    one_by_one = scanning.Scanner(expected)
    for _ in scanning.scan(path, one_by_one):
        pass
    for size in sizes:
        with block_size(size):
            assert findings(scanning.scan_file(path, expected)) == findings(one_by_one), size


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_block_reading_finds_what_line_reading_finds(name: str) -> None:
    """Each golden defect, with and without an anchor, at several block sizes."""
    blocks_agree(GOLDEN / f"{name}.jsonl")
    good = verify_ledger(GOLDEN / "ok.jsonl")
    for size in (0, 2, good.count, good.count + 1):
        blocks_agree(GOLDEN / f"{name}.jsonl", (size, good.root))


def test_fast_check_reports_what_the_general_checker_does(tmp_path: Path) -> None:
    """On every golden defect and on a ledger with non-canonical bodies among other damage,
    the fast canonical-form check gives the very same report, problem for problem."""
    lines = (GOLDEN / "ok.jsonl").read_bytes().splitlines(keepends=True)
    mixed = list(lines)
    mixed[1] = mixed[1].replace(b'"agentId":', b'"agentId": ', 1)  # a space: not canonical
    mixed[4] = mixed[4].replace(b'"agentId":', b'"agentId": ', 1)
    mixed[3] = mixed[3].replace(b'"hash":"', b'"hash":"0', 1)  # unreadable envelope
    mixed.insert(5, lines[2])  # a copy
    (tmp_path / "mixed.jsonl").write_bytes(b"".join(mixed))
    for path in [GOLDEN / f"{name}.jsonl" for name in sorted(EXPECTED)]:
        reports_agree(path)
    kinds = [str(p.kind) for p in reports_agree(tmp_path / "mixed.jsonl").problems]
    assert kinds.count("non-canonical") == 2


EDITS = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.integers(0, 10**6),
        st.sampled_from(["insert", "replace", "delete", "space", "number", "number"]),
        st.sampled_from(b' \t"\\,:{}[]0123456789.+-eEabtrufnl\x00\xc3\xa9'),
    ),
    min_size=1,
    max_size=3,
)
NUMBER = re.compile(rb"(?<=[:,\[])-?[0-9][0-9.]*")
SUFFIXES = (b"0", b".0", b"e0", b"E+1", b"e-2")  # a digit more, or an exponent
NUMBERS = (b"1e+16", b"5e-7", b"-0", b"1.0", b"-0.00")  # as orjson writes them, or odd ones


def damage(line: bytes, at: int, edit: str, byte: int) -> bytes:
    """One edit inside the body of a stored line (between {"body": and ,"hash":"): a byte
    inserted, replaced or deleted, a space between tokens, or a number spelt otherwise."""
    start, end = 8, line.rfind(b',"hash":"')
    body = bytearray(line[start:end])
    if edit == "space":  # after a separator or an opening bracket: still valid JSON
        places = [i + 1 for i, c in enumerate(body) if c in b":,{["] or [0]
        body.insert(places[at % len(places)], 0x20)
    elif edit == "number":
        numbers = [m.span() for m in NUMBER.finditer(body)] or [(0, 0)]
        first, last = numbers[at % len(numbers)]
        if byte % 2:
            body[last:last] = SUFFIXES[byte % len(SUFFIXES)]
        else:
            body[first:last] = NUMBERS[byte % len(NUMBERS)]
    else:
        at %= len(body) + 1
        if edit == "insert":
            body.insert(at, byte)
        elif at < len(body):
            if edit == "replace":
                body[at] = byte
            else:
                del body[at]
    return line[:start] + bytes(body) + line[end:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledgers, EDITS)
def test_fast_check_agrees_on_random_damage(spec: Any, edits: list[Any]) -> None:
    """Random edits of the bodies of random ledgers (whitespace, digits, exponents, quotes):
    the single pass reports the same problems as with the general checker alone."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lines = build(d, spec).splitlines(keepends=True)
        for which, at, edit, byte in edits:
            i = which % len(lines)
            lines[i] = damage(lines[i], at, edit, byte)
        path = d / "damaged.jsonl"
        path.write_bytes(b"".join(lines))
        reports_agree(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ledgers,
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "delete", "copy", "swap", "cut", "newline"]),
            st.integers(0, 10**6),
            st.integers(0, 10**6),
        ),
        max_size=3,
    ),
)
def test_block_reading_agrees_on_random_tampering(spec: Any, edits: list[Any]) -> None:
    """Bytes flipped, lines deleted, copied or swapped, the file cut or given a newline
    inside a line: scan_file finds what line-by-line feeding finds, at every block size."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = build(d, spec)
        (d / "good.jsonl").write_bytes(data)
        good = verify_ledger(d / "good.jsonl")
        for edit, a, b in edits:
            lines = data.splitlines(keepends=True)
            i, j = a % len(lines), b % len(lines)
            at = a % len(data)
            if edit == "flip":
                data = data[:at] + bytes([data[at] ^ (1 + b % 255)]) + data[at + 1 :]
            elif edit == "delete":
                data = b"".join(lines[:i] + lines[i + 1 :])
            elif edit == "copy":
                data = b"".join([*lines[:j], lines[i], *lines[j:]])
            elif edit == "swap":
                lines[i], lines[j] = lines[j], lines[i]
                data = b"".join(lines)
            elif edit == "cut":
                data = data[: a % (len(data) + 1)]
            else:
                data = data[:at] + b"\n" + data[at:]
            if not data:
                break
        path = d / "tampered.jsonl"
        path.write_bytes(data)
        blocks_agree(path)
        blocks_agree(path, (good.count, good.root))
