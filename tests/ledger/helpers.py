"""Builders shared by the ledger tests: deterministic bodies and whole ledgers."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger import LedgerWriter

HEADER = {"run": "run-0001", "engine": "0.1.0", "referentialHash": "ab" * 32}
FOOTER = {"finishedAt": "2026-11-28T03:00:00Z", "ok": 3, "errors": 0}


def body(i: int) -> dict[str, Any]:
    """A small result-like record body, a function of its index only."""
    return {
        "agentId": f"agent-{i:04d}",
        "status": "OK" if i % 5 else "ERROR",
        "score": Decimal(i * 37 % 10000) / 100,
        "levels": ["A2", "B1"][: 1 + i % 2],
        "note": 'é 😀 "quoted"\n' if i % 3 == 0 else "plain",
    }


def write_ledger(
    path: Path,
    bodies: list[dict[str, Any]],
    *,
    finish: bool = True,
    header: dict[str, Any] | None = None,
) -> Path:
    """Write a ledger with the given record bodies (and a footer unless finish=False)."""
    with LedgerWriter.create(path, HEADER if header is None else header) as writer:
        for b in bodies:
            writer.append(b)
        if finish:
            writer.finish(FOOTER)
    return path


def lines_of(path: Path) -> list[bytes]:
    """The ledger's lines, newlines kept."""
    return path.read_bytes().splitlines(keepends=True)


def line_hash(line: bytes) -> str:
    """SHA-256 hex of a stored line without its newline (what the next line's prev holds)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()
