"""One learner's proof of their result: a record line, its inclusion proof, the checkpoint.

A learner (or whoever they hand it to) checks the bundle offline, without the ledger and
without seeing anyone else's record. The bundle, format ``ceredis-proof/1``, is one
canonical JSON object (``ledger.canonical``) and a newline:

    {"checkpoint":<the run's signed checkpoint text, or null>,"checksum":"<sha256 hex>",
     "format":"ceredis-proof/1","proof":<ledger-proof/1 object>,"record":"<record line>"}

``record`` is the learner's ledger line exactly as stored, without its newline; ``proof``
its RFC 6962 audit path to the run's ``resultsRoot`` (``ledger.proof``). ``checksum`` is
the SHA-256 of the bundle's canonical bytes without it: it catches damage to the one part
no root covers, the line's chain link ``prev``; it is no defence against a deliberate
edit, which only a trusted root (``--root``) or the checkpoint's signature (``--key``)
gives. The checkpoint (``<ledger stem>.checkpoint``, C2SP ``tlog-checkpoint``) is what a
batch with a signing key writes beside its ledger (:func:`write_checkpoint`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from ceredis.errors import CeredisError, ConfigError
from ceredis.private import write_new, write_replacing
from ledger import LedgerError, canonical, decode, read_ledger, record_hash, verify_ledger
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.merkle import inclusion_proof, leaf_hash, merkle_root
from ledger.note import SignerKey, VerifierKey, generate_key, parse_note
from ledger.proof import InclusionProof

__all__ = [
    "BUNDLE_FORMAT",
    "CheckedProof",
    "LearnerProof",
    "ProofRefused",
    "check_proof",
    "checkpoint_path",
    "prove_agent",
    "prove_agents",
    "read_proof_file",
    "write_checkpoint",
    "write_key_pair",
    "write_proof",
]

BUNDLE_FORMAT = "ceredis-proof/1"
_KEYS = frozenset({"checkpoint", "checksum", "format", "proof", "record"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIRST_RECORD_LINE = 2  # line 1 is the header: record i is line i + 2


class ProofRefused(CeredisError):
    """A learner's proof, or the ledger it is made from, does not verify (exit 1)."""


@dataclass(frozen=True)
class LearnerProof:
    """One learner's record line (as stored, no newline), its inclusion proof, checkpoint."""

    record: bytes
    inclusion: InclusionProof
    checkpoint: str | None

    def encode(self) -> bytes:
        """The bundle file's bytes: canonical JSON with its checksum, and a newline."""
        bundle: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "format": BUNDLE_FORMAT,
            "proof": self.inclusion.to_json(),
            "record": self.record.decode("utf-8"),
        }
        bundle["checksum"] = _checksum(bundle)
        return canonical(bundle) + b"\n"


@dataclass(frozen=True)
class CheckedProof:
    """What a verified proof says: the learner's result and what it was checked against."""

    agent_id: str
    status: str
    score: Any
    level: str | None
    run_id: str | None
    root: str
    size: int
    trusted_root: bool  # the root was compared with one given by the caller
    signer: str | None  # the key whose checkpoint signature verified

    def summary(self) -> str:
        """The result and the check in one line a person can read."""
        run = f", run {self.run_id}" if self.run_id else ""
        result = (
            f"{self.agent_id}: status {self.status}, CEREDIS score {_or_none(self.score)}, "
            f"granted CECRL level {_or_none(self.level)}{run}"
        )
        if self.signer is None and not self.trusted_root:
            return (
                f"{result} — only internal consistency was checked (the record, its audit path "
                f"and root {self.root} agree); nothing ties that root to the run: give "
                "--root HEX (the published resultsRoot) or --key PUBFILE"
            )
        how = f"signed by {self.signer}" if self.signer else "unsigned"
        return f"{result} — verified against root {self.root} ({how})"


def _or_none(value: Any) -> str:
    """A result field as printed: ``none`` for a learner without a score or level."""
    return "none" if value is None else str(value)


def _checksum(bundle: Mapping[str, Any]) -> str:
    """SHA-256 of the bundle's canonical bytes without its ``checksum`` member."""
    rest = {k: v for k, v in bundle.items() if k != "checksum"}
    return hashlib.sha256(canonical(rest)).hexdigest()


def checkpoint_path(ledger_path: str | PathLike[str]) -> Path:
    """Where a run's checkpoint lives: ``<ledger stem>.checkpoint`` beside the ledger."""
    path = Path(ledger_path)
    return path.with_name(path.stem + ".checkpoint")


def _verified_footer(ledger_path: str | PathLike[str]) -> tuple[int, str]:
    """The record count and root of a ledger that verifies and is complete, or refuse."""
    report = verify_ledger(ledger_path)
    if not report.ok:
        raise ProofRefused(
            f"{ledger_path} fails integrity ({report.problems[0]}); run "
            "`ceredis verify` on it: no proof or checkpoint is made from a damaged ledger"
        )
    if not report.complete:
        raise ProofRefused(
            f"{ledger_path} has no footer (the run has not finished): finish it with "
            "`ceredis batch --resume` first; its resultsRoot is what a proof is checked against"
        )
    return report.count, report.root


def write_checkpoint(ledger_path: str | PathLike[str], signer: SignerKey) -> Path:
    """Sign the verified ledger's (count, resultsRoot) as a C2SP checkpoint beside it (0600).

    The origin is the key's name, as the spec asks. An existing checkpoint is replaced.
    """
    size, root = _verified_footer(ledger_path)
    text = sign_checkpoint(Checkpoint(signer.name, size, bytes.fromhex(root)), signer)
    out = checkpoint_path(ledger_path)
    write_replacing(out, text.encode("utf-8"))
    return out


def _bundled_checkpoint(ledger_path: str | PathLike[str], size: int, root: str) -> str | None:
    """The checkpoint text beside the ledger, if any, after checking it names this tree."""
    path = checkpoint_path(ledger_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ProofRefused(f"cannot read the checkpoint {path}: {exc}") from None
    try:
        checkpoint = Checkpoint.parse(parse_note(text).text)
    except LedgerError as exc:
        raise ProofRefused(f"the checkpoint {path} is malformed: {exc}") from None
    if (checkpoint.size, checkpoint.root_hex) != (size, root):
        raise ProofRefused(
            f"the checkpoint {path} is for {checkpoint.size} records, root "
            f"{checkpoint.root_hex}; the ledger holds {size}, root {root}: it is not this run's"
        )
    return text


def prove_agents(ledger_path: str | PathLike[str], agent_ids: Iterable[str]) -> list[LearnerProof]:
    """The proof of each learner's (first) record in a ledger that verifies, in order.

    Raises ProofRefused when the ledger fails integrity or is unfinished, ConfigError
    when a learner has no record in it.
    """
    wanted = list(agent_ids)
    size, root = _verified_footer(ledger_path)
    leaves, found = _scan_records(ledger_path, set(wanted))
    if len(leaves) != size or merkle_root(leaves).hex() != root:
        raise ProofRefused(f"{ledger_path} changed while it was read; try again")
    missing = [a for a in wanted if a not in found]
    if missing:
        raise ConfigError(
            f"learner {missing[0]} has no record in {ledger_path} "
            f"({len(missing)} of the learners asked for are not in the run)"
        )
    checkpoint = _bundled_checkpoint(ledger_path, size, root)
    return [_learner_proof(*found[a], leaves, root, checkpoint) for a in wanted]


def prove_agent(ledger_path: str | PathLike[str], agent_id: str) -> LearnerProof:
    """The proof of one learner's record (see :func:`prove_agents`)."""
    return prove_agents(ledger_path, [agent_id])[0]


def _scan_records(
    ledger_path: str | PathLike[str], wanted: set[str]
) -> tuple[list[bytes], dict[str, tuple[int, bytes, str]]]:
    """Every record's leaf hash, and (index, stored line, content hash) of each wanted one."""
    leaves: list[bytes] = []
    found: dict[str, tuple[int, bytes, str]] = {}
    try:
        raw_lines = open(ledger_path, "rb")  # noqa: SIM115 - read in step with the reader
    except OSError as exc:
        raise ConfigError(f"cannot read {ledger_path}: {exc.strerror}") from None
    with raw_lines:
        for rec in read_ledger(ledger_path):
            raw = raw_lines.readline()
            if rec.index is None:
                continue
            leaves.append(leaf_hash(bytes.fromhex(rec.content_hash)))
            agent = rec.body.get("agentId")
            if agent in wanted and agent not in found:
                found[agent] = (rec.index, raw.removesuffix(b"\n"), rec.content_hash)
    return leaves, found


def _learner_proof(
    index: int,
    line: bytes,
    content_hash: str,
    leaves: Sequence[bytes],
    root: str,
    checkpoint: str | None,
) -> LearnerProof:
    """Build one learner's proof and check it the way check-proof will."""
    path = tuple(h.hex() for h in inclusion_proof(leaves, index))
    inclusion = InclusionProof(index, len(leaves), root, path, content_hash)
    if record_hash(line) != content_hash:
        raise ProofRefused(f"record {index} changed while the ledger was read; try again")
    inclusion.verify(content_hash)
    return LearnerProof(line, inclusion, checkpoint)


def check_proof(
    data: bytes, *, key: VerifierKey | None = None, root: str | None = None
) -> CheckedProof:
    """Verify a proof file's bytes offline; raise ProofRefused naming what failed.

    Checked: the record line hashes to the proof's content hash, the audit path leads to
    the proof's root, the root equals *root* if given, and with *key* the bundled
    checkpoint's signature verifies and its size and root are the proof's.
    """
    if root is not None and not _HEX64.fullmatch(root.lower()):
        raise ConfigError(f"--root must be 64 hex digits (a SHA-256), not {root!r}")
    bundle = _read_bundle(data)
    inclusion = _inclusion(bundle["proof"])
    line = bundle["record"].encode("utf-8")
    body = _record_body(line, inclusion.index)
    content_hash = _content_hash(line)
    if content_hash != inclusion.content_hash:
        raise ProofRefused(
            f"the record line hashes to {content_hash}, the proof is for "
            f"{inclusion.content_hash}: the record was changed"
        )
    try:
        inclusion.verify(content_hash)
    except LedgerError as exc:
        raise ProofRefused(f"the audit path does not lead to the proof's root: {exc}") from None
    if root is not None and root.lower() != inclusion.root:
        raise ProofRefused(f"the proof is for root {inclusion.root}, not the root {root.lower()}")
    signer = _check_checkpoint(bundle["checkpoint"], inclusion, key)
    if bundle["checksum"] != _checksum(bundle):
        raise ProofRefused("the proof file's checksum does not match: its bytes were changed")
    return _checked(body, inclusion, trusted_root=root is not None, signer=signer)


def _read_bundle(data: bytes) -> dict[str, Any]:
    """The bundle object of a proof file, with exactly the expected members, or refuse."""
    if not data.endswith(b"\n"):
        raise ProofRefused("not a ceredis proof file: it does not end with a newline")
    try:
        bundle = decode(data[:-1])
    except (LedgerError, ValueError) as exc:
        raise ProofRefused(f"not a ceredis proof file (canonical JSON): {exc}") from None
    if not isinstance(bundle, dict) or set(bundle) != _KEYS:
        raise ProofRefused(f"a ceredis proof is a JSON object with the keys {sorted(_KEYS)}")
    if bundle["format"] != BUNDLE_FORMAT:
        raise ProofRefused(f"proof format is {bundle['format']!r}, expected {BUNDLE_FORMAT!r}")
    if not isinstance(bundle["record"], str) or not isinstance(bundle["checksum"], str):
        raise ProofRefused("the proof's record and checksum must be strings")
    if bundle["checkpoint"] is not None and not isinstance(bundle["checkpoint"], str):
        raise ProofRefused("the proof's checkpoint must be a signed checkpoint text or null")
    return bundle


def _inclusion(data: Any) -> InclusionProof:
    """The bundle's ``ledger-proof/1`` object, read strictly."""
    try:
        return InclusionProof.from_json(data)
    except LedgerError as exc:
        raise ProofRefused(f"the inclusion proof is malformed: {exc}") from None


def _content_hash(line: bytes) -> str:
    """The record's content hash recomputed from its line bytes, as the ledger does."""
    try:
        return record_hash(line)
    except LedgerError as exc:
        raise ProofRefused(f"the record line is not a ledger record: {exc}") from None


def _record_body(line: bytes, index: int) -> dict[str, Any]:
    """The body of a record line, checking that it is the record line the proof names."""
    try:
        envelope = decode(line)
    except (LedgerError, ValueError) as exc:
        raise ProofRefused(f"the record line is not canonical JSON: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("kind") != "record":
        raise ProofRefused("the record line is not a ledger record line")
    seq, expected = envelope.get("seq"), index + _FIRST_RECORD_LINE
    if seq != expected:
        raise ProofRefused(
            f"the record line is line {seq} of its ledger; record {index} is line {expected}"
        )
    body = envelope.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("agentId"), str):
        raise ProofRefused("the record line holds no learner record (agentId)")
    return body


def _check_checkpoint(
    text: str | None, inclusion: InclusionProof, key: VerifierKey | None
) -> str | None:
    """Check the bundled checkpoint names the proof's tree (and with *key*, its signature)."""
    if text is None:
        if key is not None:
            raise ProofRefused("the proof holds no checkpoint: --key has nothing to verify")
        return None
    try:
        if key is None:
            checkpoint = Checkpoint.parse(parse_note(text).text)
        else:
            checkpoint = open_checkpoint(text, [key])
    except LedgerError as exc:
        raise ProofRefused(f"the checkpoint does not verify: {exc}") from None
    if (checkpoint.size, checkpoint.root_hex) != (inclusion.size, inclusion.root):
        raise ProofRefused(
            f"the checkpoint is for {checkpoint.size} records, root {checkpoint.root_hex}; "
            f"the proof for {inclusion.size}, root {inclusion.root}"
        )
    return None if key is None else key.name


def _checked(
    body: Mapping[str, Any], inclusion: InclusionProof, *, trusted_root: bool, signer: str | None
) -> CheckedProof:
    """What the verified record says, and against what it was verified."""
    result = body.get("result") if isinstance(body.get("result"), Mapping) else {}
    return CheckedProof(
        agent_id=body["agentId"],
        status=str(result.get("status", body.get("status"))),
        score=result.get("ceredisScore"),
        level=result.get("cecrlLevel"),
        run_id=result.get("runId") or body.get("runId"),
        root=inclusion.root,
        size=inclusion.size,
        trusted_root=trusted_root,
        signer=signer,
    )


def read_proof_file(path: str | PathLike[str]) -> bytes:
    """The bytes of a proof file, or a ConfigError saying why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the proof file {path}: {exc.strerror or exc}") from None


def write_proof(proof: LearnerProof, out: str | PathLike[str]) -> Path:
    """Write a proof file, private (0600) from creation; an existing file is replaced."""
    path = Path(out)
    write_replacing(path, proof.encode())
    return path


def write_key_pair(name: str, prefix: str | PathLike[str]) -> tuple[Path, Path, VerifierKey]:
    """A new Ed25519 key named *name*: ``PREFIX.key`` (secret) and ``PREFIX.pub``, both 0600.

    Refuses to overwrite either file. Returns both paths and the verifier key.
    """
    signer = generate_key(name)
    verifier = signer.verifier()
    private, public = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} exists: keygen never overwrites a key; choose another --out")
    write_new(private, (signer.encode() + "\n").encode("ascii"))
    try:
        write_new(public, (verifier.encode() + "\n").encode("ascii"))
    except BaseException:
        private.unlink()
        raise
    return private, public, verifier
