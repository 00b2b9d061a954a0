"""The append-only writer: format, durability, refusals, failures, resume and repair."""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import (
    CanonicalError,
    LedgerFormatError,
    LedgerWriter,
    WriteError,
    canonical,
    verify_ledger,
)
from ledger.merkle import leaf_hash, merkle_root
from tests.ledger.helpers import FOOTER, HEADER, body, line_hash, lines_of, write_ledger

GENESIS = "0" * 64


def fd_of(path: Path) -> int:
    """The descriptor this process holds open on *path*, found through /proc."""
    target = os.path.realpath(path)
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == target:
                return int(name)
        except OSError:
            continue
    raise AssertionError(f"{path} is not open")


def test_header_line_bytes(tmp_path: Path) -> None:
    """Line 1 is the canonical envelope of {"ledger": ids, "meta": header}, prev = 64 zeros."""
    path = tmp_path / "l.jsonl"
    with LedgerWriter.create(path, {"run": "r1", "n": Decimal("1.50")}):
        pass
    content = (
        b'{"ledger":{"canon":"ledger-canon/1","format":"ledger/1"},"meta":{"n":1.50,"run":"r1"}}'
    )
    digest = hashlib.sha256(content).hexdigest()
    expected = (
        b'{"body":'
        + content
        + b',"hash":"'
        + digest.encode()
        + b'","kind":"header","prev":"'
        + GENESIS.encode()
        + b'","seq":1}\n'
    )
    assert path.read_bytes() == expected


def test_header_property_is_the_application_part(tmp_path: Path) -> None:
    """w.header returns the application header as stored (Decimals kept), not the ledger ids."""
    with LedgerWriter.create(tmp_path / "l.jsonl", {"n": Decimal("1.50"), "t": (1, 2)}) as w:
        assert w.header == {"n": Decimal("1.50"), "t": [1, 2]}


def test_records_chain_and_footer_root(tmp_path: Path) -> None:
    """Each line's prev is the previous line's hash, seq its number; the footer holds the root."""
    path = tmp_path / "l.jsonl"
    with LedgerWriter.create(path, HEADER) as w:
        hashes = [w.append(body(i)) for i in range(5)]
        footer = w.finish(FOOTER)
    lines = lines_of(path)
    assert len(lines) == 7
    prev = GENESIS
    for seq, line in enumerate(lines, 1):
        assert f'"prev":"{prev}","seq":{seq}}}\n'.encode() in line
        prev = line_hash(line)
    assert hashes == [hashlib.sha256(canonical(body(i))).hexdigest() for i in range(5)]
    root = merkle_root(leaf_hash(bytes.fromhex(h)) for h in hashes).hex()
    assert footer == {"ledger": {"count": 5, "resultsRoot": root}, "meta": FOOTER}
    assert b'"kind":"footer"' in lines[-1] and root.encode() in lines[-1]


def test_append_canonical_matches_append(tmp_path: Path) -> None:
    """The fast path with worker-made bytes writes the very same ledger as append(dict)."""
    write_ledger(tmp_path / "a.jsonl", [body(i) for i in range(6)])
    with LedgerWriter.create(tmp_path / "b.jsonl", HEADER) as w:
        for i in range(6):
            assert (
                w.append_canonical(canonical(body(i)))
                == hashlib.sha256(canonical(body(i))).hexdigest()
            )
        w.finish(FOOTER)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        b'{"b":1,"a":2}',
        b'{"a":1}\n{"b":2}',
        b'{"a":1.5e+16}',
        b"[1]",
        b'"text"',
        b"",
        b'{"a":NaN}',
    ],
)
def test_append_canonical_refuses_other_bytes(tmp_path: Path, data: bytes) -> None:
    """Bytes that are not a canonical object are refused before anything is written."""
    path = tmp_path / "l.jsonl"
    with LedgerWriter.create(path, HEADER) as w:
        before = path.read_bytes()
        with pytest.raises((CanonicalError, LedgerFormatError)):
            w.append_canonical(data)
        assert path.read_bytes() == before and w.count == 0


def test_create_refuses_an_existing_file(tmp_path: Path) -> None:
    """create never overwrites: an existing file (ledger or not) is left untouched."""
    path = tmp_path / "l.jsonl"
    path.write_bytes(b"precious\n")
    with pytest.raises(LedgerFormatError, match="already exists"):
        LedgerWriter.create(path, HEADER)
    assert path.read_bytes() == b"precious\n"


def test_create_refuses_a_bad_header_before_creating(tmp_path: Path) -> None:
    """A header with a float is refused and no file is created."""
    with pytest.raises(CanonicalError, match="binary float"):
        LedgerWriter.create(tmp_path / "l.jsonl", {"x": 0.5})
    assert not (tmp_path / "l.jsonl").exists()


def test_never_rewrites_an_earlier_byte(tmp_path: Path) -> None:
    """After every operation the previous file content is a prefix of the new one."""
    path = tmp_path / "l.jsonl"
    snapshots = []
    with LedgerWriter.create(path, HEADER, fsync_every=2) as w:
        snapshots.append(path.read_bytes())
        for i in range(5):
            w.append(body(i))
            snapshots.append(path.read_bytes())
    with LedgerWriter.open(path) as w:
        w.append(body(5))
        snapshots.append(path.read_bytes())
        w.finish(FOOTER)
    snapshots.append(path.read_bytes())
    for before, after in itertools.pairwise(snapshots):
        assert after.startswith(before) and len(after) > len(before)


def test_writes_go_to_the_end_of_the_file(tmp_path: Path) -> None:
    """O_APPEND: bytes added by someone else are never overwritten by the next record."""
    path = tmp_path / "l.jsonl"
    with LedgerWriter.create(path, HEADER) as w:
        w.append(body(0))
        with open(path, "ab") as intruder:
            intruder.write(b"INTRUDER\n")
        w.append(body(1))
    lines = lines_of(path)
    assert lines[2] == b"INTRUDER\n" and b"agent-0001" in lines[3]
    assert [p.kind for p in verify_ledger(path).problems] == ["malformed", "chain"]


def test_fsync_every_n_records(tmp_path: Path) -> None:
    """With fsync_every=3 records become durable three at a time, and all at close."""
    w = LedgerWriter.create(tmp_path / "l.jsonl", HEADER, fsync_every=3, fsync_interval=3600)
    synced = []
    for i in range(7):
        w.append(body(i))
        synced.append(w.synced)
    assert synced == [0, 0, 3, 3, 3, 6, 6]
    w.close()
    assert w.synced == 7 and w.closed


def test_fsync_after_an_interval(tmp_path: Path) -> None:
    """With a large group, an append after fsync_interval seconds fsyncs the group."""
    with LedgerWriter.create(
        tmp_path / "l.jsonl", HEADER, fsync_every=10**6, fsync_interval=0.02
    ) as w:
        w.append(body(0))
        assert w.synced == 0
        time.sleep(0.03)
        w.append(body(1))
        assert w.synced == 2


def test_close_leaves_an_incomplete_ledger(tmp_path: Path) -> None:
    """close() without finish() leaves a verifiable, incomplete ledger (an aborted run)."""
    path = write_ledger(tmp_path / "l.jsonl", [body(i) for i in range(3)], finish=False)
    report = verify_ledger(path)
    assert (report.ok, report.complete, report.status, report.count) == (
        True,
        False,
        "incomplete",
        3,
    )


def test_closed_and_finished_writers_refuse_appends(tmp_path: Path) -> None:
    """Appending after finish() or close() raises; close() twice is harmless."""
    w = LedgerWriter.create(tmp_path / "l.jsonl", HEADER)
    w.finish({})
    with pytest.raises(LedgerFormatError, match="closed"):
        w.append(body(0))
    w.close()
    w.close()


def test_failed_fsync_is_fatal_and_never_retried(tmp_path: Path) -> None:
    """fdatasync failing (a pipe swapped in for the file: EINVAL) stops the writer for good."""
    path = tmp_path / "l.jsonl"
    w = LedgerWriter.create(path, HEADER, fsync_every=2, fsync_interval=3600)
    w.append(body(0))
    read_end, write_end = os.pipe()
    try:
        os.dup2(write_end, fd_of(path))
        with pytest.raises(WriteError, match="fsync failed"):
            w.append(body(1))
        assert w.closed
        with pytest.raises(WriteError, match="stopped after a failure"):
            w.append(body(2))
        with pytest.raises(WriteError, match="stopped after a failure"):
            w.sync()
        w.close()  # no retry, no error
    finally:
        os.close(read_end)
        os.close(write_end)


def test_failed_write_is_fatal(tmp_path: Path) -> None:
    """A write failing (ENOSPC from /dev/full swapped in) raises WriteError and stops the writer."""
    path = tmp_path / "l.jsonl"
    w = LedgerWriter.create(path, HEADER)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, fd_of(path))
        with pytest.raises(WriteError, match="write of line 2 failed"):
            w.append(body(0))
        with pytest.raises(WriteError):
            w.append(body(1))
    finally:
        os.close(full)
    w.close()


def test_open_continues_to_the_same_bytes(tmp_path: Path) -> None:
    """Resume: close after 3 records, open, append 4 more, finish = one uninterrupted run."""
    write_ledger(tmp_path / "once.jsonl", [body(i) for i in range(7)])
    path = write_ledger(tmp_path / "twice.jsonl", [body(i) for i in range(3)], finish=False)
    with LedgerWriter.open(path) as w:
        assert (w.count, w.header, w.repaired) == (3, HEADER, None)
        for i in range(3, 7):
            w.append(body(i))
        w.finish(FOOTER)
    assert path.read_bytes() == (tmp_path / "once.jsonl").read_bytes()


def test_open_refuses_a_finished_ledger(tmp_path: Path) -> None:
    """A ledger with a footer is never appended to."""
    path = write_ledger(tmp_path / "l.jsonl", [body(0)])
    with pytest.raises(LedgerFormatError, match=r"finished \(footer on line 3\)"):
        LedgerWriter.open(path, repair=True)


def test_open_refuses_a_torn_tail_unless_repairing(tmp_path: Path) -> None:
    """A last line cut short is refused (file untouched); repair=True cuts it and says what."""
    path = write_ledger(tmp_path / "l.jsonl", [body(i) for i in range(4)], finish=False)
    whole = path.read_bytes()
    keep = len(whole) - len(lines_of(path)[-1])
    path.write_bytes(whole[:-30])
    with pytest.raises(LedgerFormatError, match=r"torn tail on line 5 \(.* bytes at offset"):
        LedgerWriter.open(path)
    assert path.read_bytes() == whole[:-30]
    with LedgerWriter.open(path, repair=True) as w:
        assert w.repaired is not None
        assert (w.repaired.line_no, w.repaired.offset) == (5, keep)
        assert w.repaired.cut == len(whole) - 30 - keep
        assert "no newline" in str(w.repaired)
        assert w.count == 3
        w.append(body(3))
        w.finish(FOOTER)
    assert (
        path.read_bytes()
        == write_ledger(tmp_path / "ref.jsonl", [body(i) for i in range(4)]).read_bytes()
    )


def test_open_repairs_an_unreadable_last_line(tmp_path: Path) -> None:
    """A newline-terminated but unreadable last line is a torn tail too; repair cuts it."""
    path = write_ledger(tmp_path / "l.jsonl", [body(0)], finish=False)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'{"body":{"agentId":"ag\x00\x00\x00\n')
    with LedgerWriter.open(path, repair=True) as w:
        assert w.repaired is not None and w.repaired.offset == size
        assert "unreadable" in w.repaired.reason
    assert path.stat().st_size == size


def test_open_refuses_a_corrupt_middle_even_when_repairing(tmp_path: Path) -> None:
    """A damaged line before the last is tampering or corruption: never cut, never continued."""
    path = write_ledger(tmp_path / "l.jsonl", [body(i) for i in range(3)], finish=False)
    data = bytearray(path.read_bytes())
    data[data.index(b"agent-0001") + 6] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerFormatError, match="fails verification: line 3: content-hash"):
        LedgerWriter.open(path, repair=True)
    assert path.read_bytes() == bytes(data)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot open"),
        (b"", "empty file"),
        (b'{"body":{"ledger":{"canon"', "header itself is torn"),
        (b"hello\nworld\n", "fails verification"),
    ],
)
def test_open_refuses_what_is_not_a_ledger(
    tmp_path: Path, content: bytes | None, match: str
) -> None:
    """A missing file, an empty file, a torn header or any other file cannot be continued."""
    path = tmp_path / "l.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LedgerFormatError, match=match):
        LedgerWriter.open(path, repair=True)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    """While one writer holds the ledger, a second open() is refused; afterwards it works."""
    path = tmp_path / "l.jsonl"
    first = LedgerWriter.create(path, HEADER)
    with pytest.raises(LedgerFormatError, match="another writer"):
        LedgerWriter.open(path)
    first.close()
    with LedgerWriter.open(path) as second:
        assert second.count == 0


def test_bad_fsync_settings(tmp_path: Path) -> None:
    """fsync_every below 1 or a negative interval is a usage error."""
    with pytest.raises(ValueError, match="fsync_every"):
        LedgerWriter.create(tmp_path / "l.jsonl", HEADER, fsync_every=0)


def test_unchecked_append_still_keeps_one_line_per_record(tmp_path: Path) -> None:
    """check=False skips the canonical-form check, never the framing; verify still sees it."""
    path = tmp_path / "l.jsonl"
    with LedgerWriter.create(path, HEADER) as w:
        with pytest.raises(LedgerFormatError, match="on one line"):
            w.append_canonical(b'{"a":1}\n{"b":2}', check=False)
        w.append_canonical(b'{"b":1,"a":2}', check=False)
        w.finish()
    assert [str(p.kind) for p in verify_ledger(path).problems] == ["non-canonical"]
