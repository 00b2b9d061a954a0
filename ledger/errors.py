"""Errors of the ledger package.

    LedgerError
    ├── CanonicalError        a value has no canonical encoding (float, NaN, big int, …)
    ├── LedgerFormatError     a file is not a ledger, or cannot continue (torn tail, footer)
    ├── ProofError            a Merkle proof is malformed or does not verify
    ├── SignatureError        a signed note, key or checkpoint is malformed or does not verify
    └── WriteError            a write or fsync failed; the writer is unusable (never retried)

Every error takes a single message argument, so it pickles across process boundaries.
"""

from __future__ import annotations

__all__ = [
    "CanonicalError",
    "LedgerError",
    "LedgerFormatError",
    "ProofError",
    "SignatureError",
    "WriteError",
]


class LedgerError(Exception):
    """Root of every error raised by the ledger package."""


class CanonicalError(LedgerError, ValueError):
    """A value cannot be encoded canonically."""


class LedgerFormatError(LedgerError):
    """A ledger file cannot be read or continued as asked."""


class ProofError(LedgerError):
    """A Merkle proof is malformed or does not verify."""


class SignatureError(LedgerError):
    """A signed note, a key or a checkpoint is malformed, unsigned by a known key or forged.

    Also raised when the optional ``cryptography`` package, needed for Ed25519, is missing.
    """


class WriteError(LedgerError):
    """A write or fsync of the ledger failed; the data may be lost, so the writer stops."""
