"""Merkle proofs over a ledger's records: inclusion of one record, consistency of two ledgers.

An inclusion proof (format ``ledger-proof/1``) names a record by its index among the
records and its content hash, and carries the RFC 6962 audit path to the ledger's root
(``resultsRoot``):

    {"contentHash":"<hex>","format":"ledger-proof/1","index":i,"path":["<hex>",...],
     "root":"<hex>","size":n}

Whoever holds their own record line (or its body) and a proof can check it against a
published root, without seeing any other record (RFC 9162 §2.1.3.2).

A consistency proof (format ``ledger-consistency/1``) shows that the records of an older
ledger (*oldSize*, *oldRoot*) are the first records of a newer one (*newSize*, *newRoot*),
so a root published earlier still holds (RFC 9162 §2.1.4.2):

    {"format":"ledger-consistency/1","newRoot":"<hex>","newSize":m,"oldRoot":"<hex>",
     "oldSize":n,"path":["<hex>",...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from os import PathLike
from typing import Any

from ledger.canonical import canonical
from ledger.decode import parse
from ledger.errors import CanonicalError, LedgerFormatError, ProofError
from ledger.line import RECORD, parse_line, sha256_hex
from ledger.merkle import (
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    range_hashes,
    verify_consistency,
    verify_inclusion,
)
from ledger.report import VerifyReport
from ledger.scanner import Scanner, scan
from ledger.verify import verify_ledger

__all__ = [
    "CONSISTENCY_FORMAT",
    "PROOF_FORMAT",
    "ConsistencyProof",
    "InclusionProof",
    "prove",
    "prove_consistency",
    "record_hash",
]

PROOF_FORMAT = "ledger-proof/1"
CONSISTENCY_FORMAT = "ledger-consistency/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class InclusionProof:
    """Record *index* (content hash *content_hash*) is in the tree (*size*, *root*)."""

    index: int
    size: int
    root: str
    path: tuple[str, ...]
    content_hash: str

    def to_json(self) -> dict[str, Any]:
        """The proof as a JSON object (what ``python -m ledger prove`` prints)."""
        return {
            "contentHash": self.content_hash,
            "format": PROOF_FORMAT,
            "index": self.index,
            "path": list(self.path),
            "root": self.root,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        """Read a proof object, refusing anything but the exact ``ledger-proof/1`` shape."""
        keys = {"contentHash", "format", "index", "path", "root", "size"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise ProofError(f"a proof is a JSON object with exactly the keys {sorted(keys)}")
        if data["format"] != PROOF_FORMAT:
            raise ProofError(f"proof format is {data['format']!r}, expected {PROOF_FORMAT!r}")
        for name in ("index", "size"):
            if type(data[name]) is not int or data[name] < 0:
                raise ProofError(f"proof {name} must be a non-negative integer")
        hashes = [data["contentHash"], data["root"]]
        if not isinstance(data["path"], list):
            raise ProofError("proof path must be a list of hex hashes")
        for value in [*hashes, *data["path"]]:
            if not isinstance(value, str) or not _HEX64.fullmatch(value):
                raise ProofError(f"not a lowercase SHA-256 hex hash: {value!r}")
        return cls(data["index"], data["size"], data["root"], tuple(data["path"]), hashes[0])

    def verify(self, content_hash: str) -> None:
        """Check that a record with *content_hash* is included as this proof says, or raise."""
        if content_hash != self.content_hash:
            raise ProofError(
                f"the record hashes to {content_hash}, the proof is for {self.content_hash}"
            )
        verify_inclusion(
            leaf_hash(bytes.fromhex(content_hash)),
            self.index,
            self.size,
            [bytes.fromhex(h) for h in self.path],
            bytes.fromhex(self.root),
        )


def prove(path: str | PathLike[str], index: int) -> InclusionProof:
    """The inclusion proof of record *index* (0-based) in a ledger that verifies."""
    # (1) the ledger must verify; its size and root are those of every record it holds
    report = verify_ledger(path)
    if not report.ok:
        raise LedgerFormatError(f"{path}: fails verification: {report.problems[0]}")
    return prove_verified(path, index, report)


def prove_verified(path: str | PathLike[str], index: int, report: VerifyReport) -> InclusionProof:
    """:func:`prove`, for a ledger whose :func:`verify_ledger` *report* is ok."""
    size, root = report.count, report.root
    if not 0 <= index < size:
        raise ProofError(f"record index {index} is outside 0..{size - 1} ({size} records)")
    # (2) one more pass: the audit path's subtree roots, in O(log n) memory
    target: list[str] = []
    with closing(_leaves(path, index, target)) as leaves:
        path_hashes = range_hashes(leaves, inclusion_ranges(index, size))
        if not target:  # the path lies left of the record: read on up to it
            next(leaves)
    proof = InclusionProof(index, size, root, tuple(h.hex() for h in path_hashes), target[0])
    # (3) the proof checks out against what was verified
    proof.verify(target[0])
    return proof


def _leaves(
    path: str | PathLike[str], index: int = -1, target: list[str] | None = None
) -> Iterator[bytes]:
    # Leaf hashes of the records, in order, checked again as they are read (the file may
    # have changed since it was verified); appends the content hash of record *index*.
    scanner = Scanner()
    for _, line in scan(path, scanner):
        if scanner.problems:
            raise LedgerFormatError(f"{path}: changed since it was verified: {scanner.problems[0]}")
        if line is not None and line.kind == RECORD:
            if scanner.count - 1 == index and target is not None:
                target.append(line.hash)
            yield leaf_hash(bytes.fromhex(line.hash))


@dataclass(frozen=True)
class ConsistencyProof:
    """The *old_size* records under *old_root* are the first of (*new_size*, *new_root*)."""

    old_size: int
    old_root: str
    new_size: int
    new_root: str
    path: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The proof as a JSON object (what ``python -m ledger consistency`` prints)."""
        return {
            "format": CONSISTENCY_FORMAT,
            "newRoot": self.new_root,
            "newSize": self.new_size,
            "oldRoot": self.old_root,
            "oldSize": self.old_size,
            "path": list(self.path),
        }

    def verify(self) -> None:
        """Check the proof against its two roots (RFC 9162 §2.1.4.2), or raise ProofError."""
        verify_consistency(
            self.old_size,
            self.new_size,
            [bytes.fromhex(h) for h in self.path],
            bytes.fromhex(self.old_root),
            bytes.fromhex(self.new_root),
        )


def prove_consistency(old: VerifyReport, new: VerifyReport) -> ConsistencyProof:
    """The proof that the records of the verified ledger *old* begin the verified *new*.

    Raises ProofError when they do not: *old* holds more records, its header differs, or
    the proof built from *new* does not reproduce *old*'s root.
    """
    if old.count > new.count:
        raise ProofError(f"the older ledger holds {old.count} records, the newer {new.count}")
    if old.header != new.header:
        raise ProofError("the two ledgers have different headers: not the same run")
    with closing(_leaves(new.path)) as leaves:
        hashes = range_hashes(leaves, consistency_ranges(old.count, new.count))
    path = tuple(h.hex() for h in hashes)
    proof = ConsistencyProof(old.count, old.root, new.count, new.root, path)
    proof.verify()
    return proof


def record_hash(data: bytes) -> str:
    """The content hash of a record given as its stored line or as its body (any JSON)."""
    text = data[:-1] if data.endswith(b"\n") else data
    try:
        line = parse_line(text)
    except LedgerFormatError:
        line = None
    if line is not None and sha256_hex(line.body) == line.hash:
        if line.kind != RECORD:
            raise ProofError(f"the line is a {line.kind}, not a record")
        return line.hash
    try:
        body = parse(data.strip())
        if not isinstance(body, dict):
            raise CanonicalError("a record body is a JSON object")
        return sha256_hex(canonical(body))
    except CanonicalError as exc:
        raise LedgerFormatError(f"not a ledger record line nor a record body: {exc}") from exc
