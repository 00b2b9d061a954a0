"""A domain-free, append-only, hash-chained and Merkle-rooted JSON Lines ledger.

Quick start::

    from ledger import LedgerWriter, verify_ledger, read_ledger

    with LedgerWriter.create("run.jsonl", {"run": "2026-11-28"}) as w:
        w.append({"id": 1, "score": Decimal("72.50")})
        w.finish({"finishedAt": "2026-11-28T03:00:00Z"})
    report = verify_ledger("run.jsonl")      # report.ok, report.complete, report.problems
    for rec in read_ledger("run.jsonl"):     # header, records, footer, checked as read
        ...

``python -m ledger verify|prove|check-proof|consistency`` does the same from a shell
(docs/ledger.md).
"""

from ledger.canonical import CANON_ID, canonical, canonical_hash
from ledger.decode import decode
from ledger.errors import CanonicalError, LedgerError, LedgerFormatError, ProofError, WriteError
from ledger.line import FOOTER, FORMAT_ID
from ledger.proof import InclusionProof, prove, record_hash
from ledger.reader import Record, last_line, read_ledger, salvage_records
from ledger.report import Problem, ProblemKind, VerifyReport
from ledger.verify import verify_ledger
from ledger.writer import LedgerWriter, Repair

__all__ = [
    "CANON_ID",
    "FOOTER",
    "FORMAT_ID",
    "CanonicalError",
    "InclusionProof",
    "LedgerError",
    "LedgerFormatError",
    "LedgerWriter",
    "Problem",
    "ProblemKind",
    "ProofError",
    "Record",
    "Repair",
    "VerifyReport",
    "WriteError",
    "canonical",
    "canonical_hash",
    "decode",
    "last_line",
    "prove",
    "read_ledger",
    "record_hash",
    "salvage_records",
    "verify_ledger",
]
