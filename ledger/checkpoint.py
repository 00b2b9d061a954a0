"""C2SP transparency-log checkpoints (c2sp.org/tlog-checkpoint): a signed tree head.

The checkpoint text is three or more non-empty lines, each ended by a newline:

    <origin>                  who issued it, e.g. ``example.com/log42``
    <tree size>               ASCII decimal, no leading zeros (``0`` for an empty tree)
    <base64 root hash>        the RFC 6962 root of the tree at that size, 32 bytes
    <extension lines>…        optional, opaque

and a signed checkpoint is that text as a signed note (``ledger.note``). The spec asks that
the signing key's name match the origin; ``sign_checkpoint`` leaves that to the caller.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ledger.errors import SignatureError
from ledger.note import SignerKey, VerifierKey, check_note_text, decode_base64, open_note, sign_note

__all__ = ["MAX_TREE_SIZE", "Checkpoint", "open_checkpoint", "sign_checkpoint"]

# Readers hold the size in 64 bits (golang.org/x/mod/sumdb/tlog, transparency-dev/formats).
MAX_TREE_SIZE = 2**63 - 1
_SIZE = re.compile(r"0|[1-9][0-9]*")  # [0-9], not \d: ASCII digits only


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: *origin*, tree *size*, 32-byte RFC 6962 *root*, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "the origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise SignatureError(f"checkpoint tree size must be an integer in 0..{MAX_TREE_SIZE}")
        if not isinstance(self.root, bytes):
            raise SignatureError("checkpoint root hash must be bytes")
        if len(self.root) != 32:
            raise SignatureError(f"checkpoint root hash is {len(self.root)} bytes, not 32")
        for n, line in enumerate(self.extensions, 4):
            _check_line(line, f"extension line {n}")

    @property
    def root_hex(self) -> str:
        """The root hash as lowercase hex, the ledger's own spelling of a root."""
        return self.root.hex()

    def text(self) -> str:
        """The checkpoint note text (what gets signed), final newline included."""
        root = base64.b64encode(self.root).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint note text, refusing anything the spec does not allow."""
        check_note_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise SignatureError(
                f"a checkpoint has 3 lines or more (origin, tree size, root hash), not {len(lines)}"
            )
        if not _SIZE.fullmatch(lines[1]):
            raise SignatureError(
                f"checkpoint line 2 is not a tree size (decimal, no leading zeros): {lines[1]!r}"
            )
        size = int(lines[1])
        if size > MAX_TREE_SIZE:
            raise SignatureError(f"checkpoint tree size {size} exceeds {MAX_TREE_SIZE}")
        root = decode_base64(lines[2], "checkpoint line 3 (root hash)")
        return cls(lines[0], size, root, tuple(lines[3:]))


def _check_line(line: str, what: str) -> None:
    """One non-empty checkpoint line: no newline, no control character."""
    if not isinstance(line, str) or not line or "\n" in line:
        raise SignatureError(f"checkpoint {what} must be one non-empty line")
    try:
        check_note_text(line + "\n")
    except SignatureError:
        raise SignatureError(
            f"checkpoint {what} holds a control character or is not valid Unicode"
        ) from None


def sign_checkpoint(checkpoint: Checkpoint, *signers: SignerKey) -> str:
    """The signed checkpoint: the checkpoint text as a note signed by every signer."""
    return sign_note(checkpoint.text(), *signers)


def open_checkpoint(message: bytes | str, known: Iterable[VerifierKey]) -> Checkpoint:
    """Verify a signed checkpoint with the known keys (see ``open_note``) and read it."""
    return Checkpoint.parse(open_note(message, known).text)
