"""Throughput of the ledger: appends (group fsync, fsync per record) and verification.

    python benchmarks/ledger_bench.py [--records N] [--dir DIR]

Each figure is printed with a bound measured in the same run on the same disk, so the
ratio says how much of the machine the ledger code leaves on the table:

* appends are compared with a raw loop that writes the same lines with ``os.write`` and
  ``fdatasync`` at the same cadence (no hashing, no checks);
* verification is compared with reading the file and hashing each line once with SHA-256.

Targets (project issues 3 and 9): >= 50,000 records/s of ~1 KB appended with group fsync
through ``append_canonical``, >= 100,000 records/s verified in one process. On a shared
machine the absolute figures drop; the ratios to the bounds are the figures to compare.
The same ledger is verified a second time with two-decimal scores written with their
trailing zeros (``540.00``, as the engine writes them), which the canonical check's
quickest comparison cannot take.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger import LedgerWriter, canonical, verify_ledger
from ledger.decode import check_canonical

GROUP = 100  # fsync every GROUP records (the writer's default)
CENTS = Decimal("0.01")


def make_body(i: int, rnd: random.Random, fixed: bool = False) -> dict[str, object]:
    """A ~1 KB result-like object: ids, statuses, two-decimal scores, short texts; with
    *fixed*, every score keeps two decimals (``7.00``), otherwise its shortest (``7``)."""

    def score(high: int) -> Decimal:
        value = Decimal(rnd.randint(0, high)) / 100
        return value.quantize(CENTS) if fixed else value

    parts = {
        f"{c // 3 + 1}.{c % 3 + 1}": {
            "score": score(10000),
            "status": rnd.choice(["ACQUIRED", "IN_PROGRESS", "NOT_ACQUIRED"]),
            "evidenceCount": rnd.randint(1, 9),
            "evidenceTypes": ["P1", "P2"],
        }
        for c in range(6)
    }
    return {
        "agentId": f"agent-{i:07d}",
        "status": "OK",
        "total": score(60000),
        "level": rnd.choice(["A2", "B1", "B2", "C1"]),
        "domains": {f"D{j}": score(10000) for j in range(1, 6)},
        "parts": parts,
        "decision": [{"level": "B1", "passed": True, "reasons": ["every domain is at least 50"]}],
        "configHash": hashlib.sha256(b"config").hexdigest(),
        "version": "1.1.0",
    }


def best_of(repeat: int, fn: Callable[[int], object]) -> float:
    """The shortest of *repeat* timed runs (the machine may be shared: take its quietest)."""
    times = []
    for attempt in range(repeat):
        start = time.perf_counter()
        fn(attempt)
        times.append(time.perf_counter() - start)
    return min(times)


def raw_append(path: Path, lines: list[bytes], every: int) -> None:
    """The bound: the same bytes, one write per line, fdatasync every *every* lines."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
    try:
        for i, line in enumerate(lines, 1):
            os.write(fd, line)
            if i % every == 0:
                os.fdatasync(fd)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def ledger_append(
    path: Path, items: list, every: int, canonical_path: bool, check: bool = True
) -> None:
    with LedgerWriter.create(path, {"bench": True}, fsync_every=every) as writer:
        if canonical_path:

            def append(item: bytes) -> str:
                return writer.append_canonical(item, check=check)
        else:
            append = writer.append
        for item in items:
            append(item)
        writer.finish({})


def raw_hash(path: Path) -> None:
    """The bound for verification: read the file and SHA-256 every line once."""
    sha256 = hashlib.sha256
    with open(path, "rb") as stream:
        for line in stream:
            sha256(line).digest()


def report(name: str, n: int, seconds: float, bound: float, target: float | None) -> None:
    rate, bound_rate = n / seconds, n / bound
    verdict = "" if target is None else (" [target met]" if rate >= target else " [BELOW target]")
    print(
        f"{name:42s} {rate:9,.0f} rec/s {seconds / n * 1e6:6.1f} us/rec | "
        f"bound {bound_rate:9,.0f} rec/s | ratio {rate / bound_rate:4.2f}"
        + (f" | target {target:,.0f}{verdict}" if target else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    args = parser.parse_args()
    n, repeat = args.records, args.repeat
    n_sync = max(200, n // 25)  # fsync per record is ~100x slower: fewer records

    rnd = random.Random(6962)
    bodies = [make_body(i, rnd) for i in range(n)]
    blobs = [canonical(b) for b in bodies]
    rnd = random.Random(6962)
    fixed = [canonical(make_body(i, rnd, fixed=True)) for i in range(n)]
    size = sum(map(len, blobs)) / n

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)

        def fresh(name: str, attempt: int) -> Path:
            path = d / f"{name}-{attempt}.jsonl"
            if attempt:
                (d / f"{name}-{attempt - 1}.jsonl").unlink()
            return path

        good = d / "ledger.jsonl"
        ledger_append(good, blobs, GROUP, True)
        zeros = d / "zeros.jsonl"
        ledger_append(zeros, fixed, GROUP, True)
        lines = good.read_bytes().splitlines(keepends=True)
        line_size = sum(map(len, lines)) / len(lines)
        t_canon = best_of(repeat, lambda a: ledger_append(fresh("c", a), blobs, GROUP, True))
        t_trust = best_of(
            repeat, lambda a: ledger_append(fresh("t", a), blobs, GROUP, True, check=False)
        )
        t_raw = best_of(repeat, lambda a: raw_append(fresh("r", a), lines, GROUP))
        t_dict = best_of(repeat, lambda a: ledger_append(fresh("d", a), bodies, GROUP, False))
        t_one = best_of(repeat, lambda a: ledger_append(fresh("o", a), blobs[:n_sync], 1, True))
        t_raw_one = best_of(repeat, lambda a: raw_append(fresh("r1", a), lines[:n_sync], 1))
        t_verify = best_of(repeat, lambda a: verify_ledger(good))
        t_hash = best_of(repeat, lambda a: raw_hash(good))
        t_zeros = best_of(repeat, lambda a: verify_ledger(zeros))
        t_hash_zeros = best_of(repeat, lambda a: raw_hash(zeros))
        t_check = best_of(repeat, lambda a: [check_canonical(b) for b in blobs])
        assert verify_ledger(good).status == verify_ledger(zeros).status == "ok"

    print(f"ledger benchmark: {n:,} records, body {size:,.0f} B, line {line_size:,.0f} B")
    print(f"python {sys.version.split()[0]}, fsync group {GROUP} records, best of {repeat} runs")
    report("append_canonical, group fsync", n, t_canon, t_raw, 50_000)
    report("append_canonical(check=False) (the engine)", n, t_trust, t_raw, 50_000)
    report("append(dict), group fsync", n, t_dict, t_raw, None)
    report(f"append_canonical, fsync per record ({n_sync:,})", n_sync, t_one, t_raw_one, None)
    report("verify_ledger (one process)", n, t_verify, t_hash, 100_000)
    report("verify_ledger, scores as 7.00 (one process)", n, t_zeros, t_hash_zeros, None)
    print(
        f"  of which the canonical-form check of each body: {t_check / n * 1e6:.1f} us/rec; "
        "the verify target is a ratio of ~0.14 to the bound (100,000 against the ~700,000 "
        "rec/s of a quiet machine), the append target ~0.22 (50,000 against ~230,000)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
