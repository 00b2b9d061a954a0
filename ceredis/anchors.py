"""External anchors of a ledger: a signed checkpoint, and a published size and root.

A resealed ledger passes every internal check; only something kept outside it — the
run's checkpoint signed with the engine's key, or a (size, root) published elsewhere —
shows it is not the ledger that was finished. ``ceredis verify`` compares both here.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from ceredis.audit import Finding
from ledger import LedgerError
from ledger.checkpoint import open_checkpoint
from ledger.note import read_verifier_key

__all__ = ["check_anchors"]


def check_anchors(
    size: int,
    root: str | None,
    *,
    checkpoint: str | PathLike[str] | None = None,
    key: str | PathLike[str] | None = None,
    expected_size: int | None = None,
    expected_root: str | None = None,
) -> list[Finding]:
    """Findings where the ledger's (record count *size*, resultsRoot *root*) differs from
    the checkpoint (its signature checked with *key*) or from *expected_size*/*_root*."""
    findings: list[Finding] = []
    if expected_size is not None and expected_size != size:
        findings.append(_finding(f"--size {expected_size}, the ledger holds {size} records"))
    if expected_root is not None and expected_root.lower() != root:
        findings.append(_finding(f"--root {expected_root.lower()}, the ledger's is {root}"))
    if checkpoint is not None:
        findings.extend(_check_checkpoint(checkpoint, key, size, root))
    return findings


def _check_checkpoint(
    path: str | PathLike[str], key: str | PathLike[str] | None, size: int, root: str | None
) -> list[Finding]:
    """The checkpoint's signature verifies with *key* and it names this ledger's tree."""
    if key is None:
        return [_finding("--checkpoint needs --key PUBFILE: an unchecked signature proves nothing")]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        return [_finding(f"cannot read the checkpoint {path}: {exc}")]
    try:
        signed = open_checkpoint(text, [read_verifier_key(key)])
    except LedgerError as exc:
        return [_finding(f"the checkpoint {path} does not verify with {key}: {exc}")]
    if (signed.size, signed.root_hex) != (size, root):
        return [
            _finding(
                f"the checkpoint {path} signs {signed.size} records, root {signed.root_hex}; "
                f"the ledger holds {size}, root {root}"
            )
        ]
    return []


def _finding(message: str) -> Finding:
    return Finding(None, None, "anchor mismatch", message)
