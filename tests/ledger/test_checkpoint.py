"""C2SP tlog checkpoints: reference vectors, strict parsing, and an independent verifier.

The independent verifier below is written from the two C2SP texts alone, with
``cryptography``'s Ed25519 and the standard library: none of the project's code, so that
"a standard verifier accepts our checkpoints" is checked, not assumed.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import MAX_TREE_SIZE, Checkpoint, open_checkpoint, sign_checkpoint
from ledger.errors import SignatureError
from ledger.merkle import EMPTY_ROOT, leaf_hash, merkle_root
from ledger.note import SignerKey, VerifierKey, generate_key, parse_note

# sum.golang.org's published key (cmd/go/internal/modfetch/key.go)
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB = VerifierKey.parse(SUMDB_VKEY)
# A checkpoint signed by sum.golang.org, 2024-09-23, from sigsum-go pkg/checkpoint tests
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "30055305\n"
    "mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n"
    "\n"
    "— sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucFcAAlWF"
    "JJYle3EJlDCrQ+y3A8=\n"
)
# c2sp.org/tlog-checkpoint, the spec's example. Its signature is sum.golang.org's (key id
# 033de0ae) over the same size and root with the origin "go.sum database tree": the example
# renamed a real checkpoint. Restoring the two names makes it verify.
C2SP_EXAMPLE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhc"
    "yv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
# sigsum-go pkg/checkpoint TestCheckpointSigned: Ed25519 seed 0x11 || 0x00*31, origin from
# the public key, tree size 10, root 1c0e47 || zeros
SIGSUM_ORIGIN = (
    "sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69"
)
SIGSUM_CHECKPOINT = (
    f"{SIGSUM_ORIGIN}\n"
    "10\n"
    "HA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    "\n"
    f"— {SIGSUM_ORIGIN} gJ2ho0n8F8olcerUF1FFdv235A/5as/coWrpLrtE7ovMeP5whgwouYExowG/lTznxu6OUGjjt"
    "5yJQ6bXtTcf718MqAQ=\n"
)
# golang.org/x/mod/sumdb/tlog note_test.go TestFormatTree: RecordHash("hello world")
TLOG_TREE = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"

SIGNER = SignerKey("example.org/ledger", hashlib.sha256(b"checkpoint test key").digest())


# -- an independent verifier, from c2sp.org/signed-note and c2sp.org/tlog-checkpoint -------


def independent_verify(message: bytes, vkey: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint signed by *vkey*, or AssertionError."""
    name, hex_id, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    assert raw[0] == 0x01 and len(raw) == 33, "an Ed25519 verifier key"
    wanted_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert wanted_id.hex() == hex_id, "key id = SHA-256(name || 0x0A || 0x01 || key)[:4]"
    message.decode("utf-8")
    assert not any(b < 0x20 and b != 0x0A for b in message), "no control characters"
    split = message.rindex(b"\n\n")
    text, sigs = message[: split + 1], message[split + 2 :]
    assert sigs.endswith(b"\n")
    good = 0
    for line in sigs[:-1].split(b"\n"):
        assert line.startswith("— ".encode())
        sig_name, sig_b64 = line[len("— ".encode()) :].split(b" ", 1)
        sig = base64.b64decode(sig_b64, validate=True)
        if sig_name.decode() == name and sig[:4] == wanted_id:
            try:
                Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text)
            except InvalidSignature:
                raise AssertionError("bad signature by the known key") from None
            good += 1
    assert good, "signed by the known key"
    origin, size, root, *_extensions = text.decode().split("\n")
    assert origin and (size == "0" or (size.isascii() and size.isdigit() and size[0] != "0"))
    return origin, int(size), base64.b64decode(root, validate=True)


def test_the_independent_verifier_accepts_the_reference_and_refuses_a_forgery() -> None:
    origin, size, root = independent_verify(SUMDB_CHECKPOINT.encode(), SUMDB_VKEY)
    assert (origin, size, root.hex()[:8]) == ("go.sum database tree", 30055305, "9977e045")
    with pytest.raises(AssertionError):
        independent_verify(SUMDB_CHECKPOINT.replace("30055305", "30055306").encode(), SUMDB_VKEY)
    with pytest.raises(AssertionError):
        independent_verify(SUMDB_CHECKPOINT.encode(), SIGNER.verifier().encode())


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2000),
    st.lists(st.text("abcdefghij=;:/ ", min_size=1, max_size=12), max_size=2),
)
def test_checkpoints_we_sign_pass_the_independent_verifier(
    size: int, extensions: list[str]
) -> None:
    root = merkle_root(leaf_hash(i.to_bytes(4, "big")) for i in range(size)) if size else EMPTY_ROOT
    ours = Checkpoint("example.org/ledger", size, root, tuple(extensions))
    signed = sign_checkpoint(ours, SIGNER)
    assert independent_verify(signed.encode(), SIGNER.verifier().encode()) == (
        "example.org/ledger",
        size,
        root,
    )


def test_a_generated_key_signs_checkpoints_the_independent_verifier_accepts() -> None:
    signer = generate_key("example.org/run-2026-11-28")
    cp = Checkpoint(signer.name, 200, hashlib.sha256(b"root").digest())
    signed = sign_checkpoint(cp, signer)
    assert independent_verify(signed.encode(), signer.verifier().encode())[1:] == (200, cp.root)


# -- reference vectors --------------------------------------------------------------------


def test_a_checkpoint_signed_by_sum_golang_org_opens() -> None:
    cp = open_checkpoint(SUMDB_CHECKPOINT, [SUMDB])
    assert cp.origin == "go.sum database tree"
    assert cp.size == 30055305
    assert cp.root == base64.b64decode("mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=")
    assert cp.root_hex == cp.root.hex()
    assert cp.extensions == ()
    assert cp.text() == SUMDB_CHECKPOINT.split("\n\n")[0] + "\n"


def test_the_spec_example_verifies_under_the_names_it_was_signed_with() -> None:
    body = parse_note(C2SP_EXAMPLE).text
    cp = Checkpoint.parse(body)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    with pytest.raises(SignatureError, match="no signature by a known key"):
        open_checkpoint(C2SP_EXAMPLE, [SUMDB])
    restored = C2SP_EXAMPLE.replace("example.com/behind-the-sofa\n", "go.sum database tree\n")
    restored = restored.replace("— example.com/behind-the-sofa ", "— sum.golang.org ")
    assert open_checkpoint(restored, [SUMDB]).size == 20852163


def test_our_signature_equals_sigsums_byte_for_byte() -> None:
    seed = bytes([17]) + bytes(31)
    public = SignerKey("x", seed).verifier().public_key
    assert "sigsum.org/v1/tree/" + hashlib.sha256(public).hexdigest() == SIGSUM_ORIGIN
    cp = Checkpoint(SIGSUM_ORIGIN, 10, bytes([28, 14, 71]) + bytes(29))
    assert sign_checkpoint(cp, SignerKey(SIGSUM_ORIGIN, seed)) == SIGSUM_CHECKPOINT
    assert open_checkpoint(SIGSUM_CHECKPOINT.encode(), [VerifierKey(SIGSUM_ORIGIN, public)]) == cp


def test_the_tlog_tree_vector_formats_and_parses() -> None:
    cp = Checkpoint("go.sum database tree", 123456789012, leaf_hash(b"hello world"))
    assert cp.text() == TLOG_TREE
    assert Checkpoint.parse(TLOG_TREE) == cp
    assert Checkpoint.parse(TLOG_TREE + "JOE\n").extensions == ("JOE",)


# -- strict parsing -----------------------------------------------------------------------

ROOT64 = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0="


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not-" + TLOG_TREE[:-1], "end in a newline"),
        ("o\n12\n", "3 lines or more"),
        (f"\n12\n{ROOT64}\n", "origin must be one non-empty line"),
        (f"o\n12\n{ROOT64}\n\n", "extension line 4 must be one non-empty line"),
        (f"o\n12\n{ROOT64}\next\n\nmore\n", "extension line 5"),
        (f"o\n0xabcdef\n{ROOT64}\n", "not a tree size"),
        (f"o\n012\n{ROOT64}\n", "not a tree size"),
        (f"o\n00\n{ROOT64}\n", "not a tree size"),
        (f"o\n-1\n{ROOT64}\n", "not a tree size"),
        (f"o\n+1\n{ROOT64}\n", "not a tree size"),
        (f"o\n 1\n{ROOT64}\n", "not a tree size"),
        (f"o\n1_000\n{ROOT64}\n", "not a tree size"),
        (f"o\n\u0661\n{ROOT64}\n", "not a tree size"),
        (f"o\n\n{ROOT64}\n", "not a tree size"),
        (f"o\n{MAX_TREE_SIZE + 1}\n{ROOT64}\n", "exceeds"),
        ("o\n12\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n", "not canonical base64"),
        ("o\n12\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n", "not standard base64"),
        ("o\n12\nTszzRgjTG6xce-z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n", "not standard base64"),
        (f"o\n12\n{ROOT64[:-2]}1=\n", "not canonical base64"),
        (f"o\n12\n{base64.b64encode(bytes(31)).decode()}\n", "bytes, not 32"),
        (f"o\n12\n{base64.b64encode(bytes(33)).decode()}\n", "bytes, not 32"),
        (f"o\n12\n{ROOT64.encode().hex()}\n", "66 bytes, not 32"),  # hex is not base64
        (f"o\tx\n12\n{ROOT64}\n", "control character"),
    ],
)
def test_malformed_checkpoints_are_refused_precisely(text: str, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, bytes(32), ()),
        ("two\nlines", 1, bytes(32), ()),
        ("o", -1, bytes(32), ()),
        ("o", True, bytes(32), ()),
        ("o", MAX_TREE_SIZE + 1, bytes(32), ()),
        ("o", 1, bytes(31), ()),
        ("o", 1, "00" * 32, ()),
        ("o", 1, bytes(32), ("",)),
        ("o", 1, bytes(32), ("a\x00b",)),
        ("o\ud800", 1, bytes(32), ()),
    ],
)
def test_checkpoints_that_cannot_be_written_are_refused(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(SignatureError, match="checkpoint"):
        Checkpoint(origin, size, root, extensions)


origins = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30
)  # spaces and + are allowed in an origin ("go.sum database tree")
checkpoints = st.builds(
    Checkpoint,
    origins,
    st.integers(0, MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(origins, max_size=3).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(checkpoints)
def test_checkpoints_round_trip(cp: Checkpoint) -> None:
    assert Checkpoint.parse(cp.text()) == cp
    assert open_checkpoint(sign_checkpoint(cp, SIGNER), [SIGNER.verifier()]) == cp


@settings(max_examples=300, deadline=None)
@given(checkpoints, st.data())
def test_any_one_byte_change_of_a_signed_checkpoint_is_refused(
    cp: Checkpoint, data: st.DataObject
) -> None:
    signed = sign_checkpoint(cp, SIGNER).encode()
    at = data.draw(st.integers(0, len(signed) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != signed[at]))
    for changed in (
        signed[:at] + bytes([byte]) + signed[at + 1 :],
        signed[:at] + signed[at + 1 :],
        signed[:at] + bytes([byte]) + signed[at:],
    ):
        with pytest.raises(SignatureError):
            open_checkpoint(changed, [SIGNER.verifier()])


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    signed = sign_checkpoint(Checkpoint("o", 1, bytes(32)), generate_key("o"))
    with pytest.raises(SignatureError, match=r"no signature by a known key \(signed by o\+"):
        open_checkpoint(signed, [SIGNER.verifier()])


def test_a_cosigned_checkpoint_opens_with_either_key() -> None:
    witness = generate_key("witness.example")
    signed = sign_checkpoint(Checkpoint("o", 5, bytes(32)), SIGNER, witness)
    assert open_checkpoint(signed, [witness.verifier()]).size == 5
    assert open_checkpoint(signed, [SIGNER.verifier(), witness.verifier()]).size == 5
    assert independent_verify(signed.encode(), witness.verifier().encode())[1] == 5
