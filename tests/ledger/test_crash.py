"""Crash safety with real processes: a writer killed at random points loses nothing fsynced.

Each trial runs ``tests.ledger.writer_child`` in its own interpreter, which reports every
fsync point through a pipe, and ends it: with SIGKILL at a random moment, or with a file-size
limit that makes the kernel cut a write short at a random byte (the next write then fails
with EFBIG, and the writer must stop with WriteError, not retry). Afterwards:

* the verified prefix holds every record reported durable, and nothing else is wrong
  (at most a torn tail, always on the last line);
* ``LedgerWriter.open(repair=True)`` cuts the torn tail and says what it cut; continuing
  and finishing gives a ledger that verifies, with exactly the expected records.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import LedgerWriter, canonical_hash, read_ledger, verify_ledger
from tests.ledger.writer_child import crash_body

ROOT = Path(__file__).parents[2]
SIGKILL_TRIALS = 24
CUT_TRIALS = 8


def run_child(path: Path, rnd: random.Random, limit: int | None) -> tuple[int, int, str]:
    """Start a writer, let it run, end it; returns (records reported durable, exit, stderr)."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-m", "tests.ledger.writer_child", str(path), str(write_end)]
    if limit is not None:
        argv.append(str(limit))
    child = subprocess.Popen(
        argv, pass_fds=[write_end], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reports:
        if limit is None:
            reports.readline()  # the header and a first group are durable: now kill it
            time.sleep(rnd.uniform(0, 0.04))
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
        durable = [int(n) for n in reports.read().split()]
    return max(durable, default=0), child.returncode, err


def check_trial(path: Path, durable: int) -> bool:
    """The properties every killed ledger must have; returns whether its tail was torn."""
    report = verify_ledger(path)
    assert {str(p.kind) for p in report.problems} <= {"torn-tail"}, report.problems
    assert report.count >= durable, f"{report.count} records kept, {durable} were fsynced"
    torn = bool(report.problems)
    if torn:
        assert [p.line_no for p in report.problems] == [report.lines]
    with LedgerWriter.open(path, repair=True) as writer:
        if torn:
            assert writer.repaired is not None and writer.repaired.cut > 0
            assert writer.repaired.line_no == report.lines
        else:
            assert writer.repaired is None
        assert writer.count == report.count
        for i in range(report.count, report.count + 2):
            writer.append(crash_body(i))
        writer.finish({"resumed": True})
    final = verify_ledger(path)
    assert final.status == "ok" and final.count == report.count + 2
    hashes = [r.content_hash for r in read_ledger(path) if r.kind == "record"]
    assert hashes == [canonical_hash(crash_body(i)) for i in range(final.count)]
    return torn


@pytest.mark.slow
def test_sigkill_at_random_points(tmp_path: Path) -> None:
    """24 writers SIGKILLed at random moments: fsynced records survive, repair continues."""
    rnd = random.Random(20261128)
    outcomes = []
    for trial in range(SIGKILL_TRIALS):
        path = tmp_path / f"kill-{trial}.jsonl"
        durable, code, _ = run_child(path, rnd, None)
        assert code == -signal.SIGKILL
        outcomes.append(check_trial(path, durable))
        path.unlink()
    print(f"{sum(outcomes)} of {SIGKILL_TRIALS} SIGKILL trials left a torn tail")


@pytest.mark.slow
def test_write_cut_short_at_random_bytes(tmp_path: Path) -> None:
    """8 writers whose file the kernel cuts at a random byte: WriteError, a torn tail, repair."""
    rnd = random.Random(6962)
    torn = 0
    for trial in range(CUT_TRIALS):
        path = tmp_path / f"cut-{trial}.jsonl"
        limit = rnd.randrange(300, 3 << 20)
        durable, code, err = run_child(path, rnd, limit)
        assert code == 1 and "ledger.errors.WriteError" in err and "File too large" in err
        assert path.stat().st_size == limit
        torn += check_trial(path, durable)
        path.unlink()
    assert torn >= CUT_TRIALS - 1  # only a limit landing exactly on a line end is clean
