"""A domain-free, append-only, hash-chained and Merkle-rooted JSON Lines ledger."""

from ledger.canonical import CANON_ID, canonical, canonical_hash
from ledger.errors import CanonicalError, LedgerError, LedgerFormatError, ProofError

__all__ = [
    "CANON_ID",
    "CanonicalError",
    "LedgerError",
    "LedgerFormatError",
    "ProofError",
    "canonical",
    "canonical_hash",
]
