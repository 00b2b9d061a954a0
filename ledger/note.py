"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys: keys, signing, verifying.

A signed note is a text ending in a newline, a blank line, then one or more signature lines
``— <key name> <base64(4-byte key id || signature)>``. Keys are written as in
golang.org/x/mod/sumdb/note, so its tools read ours and ours read theirs:

    verifier key   <name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>
    signer key     PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>   (secret)

Ed25519 comes from the optional ``cryptography`` package, imported only when a key signs or
verifies; parsing needs nothing but the standard library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import ModuleType
from typing import Any

from ledger.errors import SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Note",
    "Signature",
    "SignerKey",
    "VerifiedNote",
    "VerifierKey",
    "check_key_name",
    "check_note_text",
    "decode_base64",
    "generate_key",
    "key_id",
    "open_note",
    "parse_note",
    "read_signer_key",
    "read_verifier_key",
    "sign_note",
]

ALG_ED25519 = 0x01
# The spec asks verifiers to accept at least 16; golang.org/x/mod/sumdb/note refuses over 100.
MAX_SIGNATURES = 100
_DASH = "\u2014 "  # em dash and space: how every signature line starts
_PRIVATE = "PRIVATE+KEY+"
_HEX_ID = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
# Unicode White_Space, what Go's unicode.IsSpace tests: never part of a key name.
_WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_INSTALL_HINT = (
    "Ed25519 signatures need the 'cryptography' package: "
    "pip install 'ceredis[sign]' (or pip install cryptography)"
)


def _ed25519() -> ModuleType:
    """The ``cryptography`` Ed25519 module, or a SignatureError saying what to install."""
    try:
        return importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")
    except ImportError:
        raise SignatureError(_INSTALL_HINT) from None


def check_key_name(name: str) -> None:
    """Refuse a key name the spec forbids: empty, or with a Unicode space, ``+`` or control."""
    if not isinstance(name, str) or not name:
        raise SignatureError("a key name must be a non-empty string")
    bad = next((c for c in name if c in _WHITE_SPACE or c == "+" or c < " "), None)
    if bad is not None:
        raise SignatureError(
            f"a key name must not contain U+{ord(bad):04X} (no spaces, no +, no controls)"
        )
    _utf8(name, "a key name")


def check_note_text(text: str) -> None:
    """Refuse a note text that cannot be signed: not ending in newline, or with a control."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise SignatureError("malformed note: the text must end in a newline (U+000A)")
    _utf8(text, "the note text")
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise SignatureError(
            f"malformed note: control character U+{ord(bad.group()):04X} on line {line}; "
            "only newline is allowed"
        )


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise SignatureError(f"{what} is not valid Unicode (position {e.start})") from None


def decode_base64(text: str, what: str) -> bytes:
    """Decode standard base64 (RFC 4648 §4) in its one canonical spelling, or raise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SignatureError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise SignatureError(f"{what} is not canonical base64 (padding or trailing bits)")
    return raw


def key_id(name: str, public_key: bytes) -> int:
    """C2SP key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || key)[:4], big-endian."""
    check_key_name(name)
    if len(public_key) != 32:
        raise SignatureError(f"an Ed25519 public key is 32 bytes, not {len(public_key)}")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _split_key(text: str, parts: int, what: str) -> list[str]:
    """Split ``a+b+…+base64`` into *parts* fields (the base64 may hold ``+``), or raise."""
    if not isinstance(text, str):
        raise SignatureError(f"{what} must be text")
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        raise SignatureError(f"{what} does not have the form {'+'.join(['…'] * parts)}")
    return fields


def _key_material(name: str, hex_id: str, b64: str, what: str) -> tuple[int, bytes]:
    """Check the name, id and ``0x01 || 32 bytes`` of a key string; return (id, 32 bytes)."""
    check_key_name(name)
    if not _HEX_ID.fullmatch(hex_id):
        raise SignatureError(f"{what}: the key id must be 8 lowercase hex digits")
    raw = decode_base64(b64, f"{what}: the key data")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise SignatureError(f"{what}: the key data must be 0x01 (Ed25519) and 32 bytes")
    return int(hex_id, 16), raw[1:]


@dataclass(frozen=True)
class VerifierKey:
    """A named Ed25519 public key, written ``name+<8 hex id>+<base64(0x01 || key)>``."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        key_id(self.name, self.public_key)  # checks the name and the length

    @property
    def key_id(self) -> int:
        """The key's 4-byte id, as an unsigned 32-bit integer."""
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        """The verifier key text, as golang.org/x/mod/sumdb/note writes it."""
        data = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id:08x}+{data}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read a verifier key text, checking its key id against its name and key."""
        name, hex_id, b64 = _split_key(text, 3, "a verifier key")
        claimed, public = _key_material(name, hex_id, b64, "verifier key")
        key = cls(name, public)
        if key.key_id != claimed:
            raise SignatureError(
                f"verifier key {name}+{hex_id}: the id is not the id of its key ({key.key_id:08x})"
            )
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether *signature* is this key's Ed25519 signature of *message*."""
        ed = _ed25519()
        from cryptography.exceptions import InvalidSignature

        try:
            ed.Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SignerKey:
    """A named Ed25519 private key (its 32-byte seed); a secret, never printed."""

    name: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.seed) != 32:
            raise SignatureError(f"an Ed25519 private key seed is 32 bytes, not {len(self.seed)}")

    def _private(self) -> Any:
        return _ed25519().Ed25519PrivateKey.from_private_bytes(self.seed)

    def verifier(self) -> VerifierKey:
        """The public half, to hand to whoever verifies."""
        from cryptography.hazmat.primitives import serialization

        public = (
            self._private()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return VerifierKey(self.name, public)

    @property
    def key_id(self) -> int:
        """The key's 4-byte id (that of its public half)."""
        return self.verifier().key_id

    def encode(self) -> str:
        """The secret signer key text, as golang.org/x/mod/sumdb/note writes it."""
        data = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode("ascii")
        return f"{_PRIVATE}{self.name}+{self.key_id:08x}+{data}"

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        """Read a signer key text (never echoed in errors), checking its key id."""
        fields = _split_key(text, 5, "a signer key")
        if fields[0] != "PRIVATE" or fields[1] != "KEY":
            raise SignatureError(f"a signer key starts with {_PRIVATE!r}")
        claimed, seed = _key_material(*fields[2:], "signer key")
        key = cls(fields[2], seed)
        if key.key_id != claimed:
            raise SignatureError(
                f"signer key {fields[2]}+{fields[3]}: the id is not the id of its key"
            )
        return key

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of *message* (deterministic, RFC 8032)."""
        return self._private().sign(message)


def generate_key(name: str) -> SignerKey:
    """A new random Ed25519 signer key named *name* (``.verifier()`` gives the public key)."""
    check_key_name(name)
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return SignerKey(name, seed)


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key id, and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        data = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature)
        return f"{_DASH}{self.name} {data.decode('ascii')}\n"

    def key_label(self) -> str:
        """``name+<8 hex id>``, how errors and reports name the key."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class Note:
    """A parsed signed note: its text (final newline included) and its signatures."""

    text: str
    signatures: tuple[Signature, ...]

    def encode(self) -> str:
        """The signed note: text, blank line, signature lines."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose signatures by known keys all verified (at least one did)."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def sign_note(text: str, *signers: SignerKey) -> str:
    """The signed note of *text* by every signer, in order."""
    check_note_text(text)
    if not signers:
        raise SignatureError("a signed note needs at least one signer")
    payload = text.encode("utf-8")
    sigs = tuple(Signature(s.name, s.key_id, s.sign(payload)) for s in signers)
    return Note(text, sigs).encode()


def parse_note(message: bytes | str) -> Note:
    """Split a signed note into text and signatures, checking its syntax (not signatures)."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SignatureError(f"malformed note: not valid UTF-8 at byte {e.start}") from None
    split = message.rfind("\n\n")
    if split < 0:
        raise SignatureError("malformed note: no blank line between the text and the signatures")
    text, block = message[: split + 1], message[split + 2 :]
    check_note_text(text)
    if not block.endswith("\n"):
        raise SignatureError("malformed note: the signature block must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise SignatureError(f"malformed note: {len(lines)} signatures, at most {MAX_SIGNATURES}")
    first = text.count("\n") + 2
    return Note(text, tuple(_parse_signature(line, first + i) for i, line in enumerate(lines)))


def _parse_signature(line: str, number: int) -> Signature:
    where = f"malformed note: line {number}"
    if _CONTROL.search(line):
        raise SignatureError(f"{where} contains a control character")
    if not line.startswith(_DASH):
        raise SignatureError(f"{where} is not a signature line (em dash U+2014, space, name)")
    name, space, data = line[len(_DASH) :].partition(" ")
    if not space:
        raise SignatureError(f"{where}: no space between the key name and the signature")
    try:
        check_key_name(name)
    except SignatureError as e:
        raise SignatureError(f"{where}: {e}") from None
    raw = decode_base64(data, f"{where}: the signature")
    if len(raw) < 5:
        raise SignatureError(f"{where}: the signature is {len(raw)} bytes, a key id and more")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def open_note(message: bytes | str, known: Iterable[VerifierKey]) -> VerifiedNote:
    """Parse a signed note and verify it: every known key's signature must verify, and
    at least one must be there; signatures by unknown keys are ignored (kept apart)."""
    note = parse_note(message)
    keys: dict[tuple[str, int], set[VerifierKey]] = {}
    for key in known:
        keys.setdefault((key.name, key.key_id), set()).add(key)
    verified: list[Signature] = []
    unverified: list[Signature] = []
    payload = note.text.encode("utf-8")
    for sig in note.signatures:
        found = keys.get((sig.name, sig.key_id))
        if found is None:
            unverified += [] if sig in unverified else [sig]
            continue
        if len(found) > 1:
            raise SignatureError(f"ambiguous key {sig.key_label()}: several known keys match")
        if not next(iter(found)).verify(payload, sig.signature):
            raise SignatureError(f"invalid signature for key {sig.key_label()}")
        verified += [] if sig in verified else [sig]
    if not verified:
        signed = ", ".join(s.key_label() for s in unverified)
        expected = ", ".join(sorted(f"{n}+{i:08x}" for n, i in keys)) or "none"
        raise SignatureError(
            f"note has no signature by a known key (signed by {signed}; known: {expected})"
        )
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def _read_key_text(path: str | PathLike[str], what: str) -> str:
    """The one line of a key file (a final newline allowed), or a SignatureError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SignatureError(f"cannot read the {what} {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SignatureError(f"the {what} {path} is not UTF-8 text") from None
    line = text.removesuffix("\n")
    if "\n" in line or not line:
        raise SignatureError(f"the {what} {path} must hold exactly one key line")
    return line


def read_verifier_key(path: str | PathLike[str]) -> VerifierKey:
    """Read a ``.pub`` file holding one verifier key line."""
    text = _read_key_text(path, "verifier key file")
    try:
        return VerifierKey.parse(text)
    except SignatureError as e:
        raise SignatureError(f"{path}: {e}") from None


def read_signer_key(path: str | PathLike[str]) -> SignerKey:
    """Read a private key file holding one signer key line (its content is never echoed)."""
    text = _read_key_text(path, "signing key file")
    try:
        return SignerKey.parse(text)
    except SignatureError as e:
        raise SignatureError(f"{path}: {e}") from None
