"""C2SP signed notes: golang.org/x/mod/sumdb/note vectors, malformed notes, keys, mutations."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, SignatureError
from ledger.note import (
    MAX_SIGNATURES,
    Note,
    Signature,
    SignerKey,
    VerifierKey,
    generate_key,
    key_id,
    open_note,
    parse_note,
    read_signer_key,
    read_verifier_key,
    sign_note,
)

# golang.org/x/mod/sumdb/note, note_test.go (TestNewSigner, TestSign, TestOpen)
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
ENOCH_B64 = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
PETER_SIG = f"— PeterNeumann {PETER_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_B64}\n"
# c2sp.org/signed-note, the example at the top of the spec (its key is not published)
C2SP_NOTE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore "
    "NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)

PETER = VerifierKey.parse(PETER_VKEY)
ENOCH = VerifierKey.parse(ENOCH_VKEY)
SIGNER = SignerKey("example.com/signer", hashlib.sha256(b"test key").digest())


# -- the reference implementation's vectors --------------------------------------------


def test_the_reference_signer_key_signs_the_reference_note_byte_for_byte() -> None:
    signer = SignerKey.parse(PETER_SKEY)
    assert signer.verifier() == PETER
    assert signer.key_id == 0xC74F20A3
    assert sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG


def test_keys_encode_back_to_the_reference_strings() -> None:
    assert PETER.encode() == PETER_VKEY
    assert ENOCH.encode() == ENOCH_VKEY
    assert SignerKey.parse(PETER_SKEY).encode() == PETER_SKEY
    assert key_id("PeterNeumann", PETER.public_key) == 0xC74F20A3


def test_one_known_signature_verifies_and_the_unknown_one_is_kept_apart() -> None:
    note = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert note.text == TEXT
    assert [s.key_label() for s in note.verified] == ["PeterNeumann+c74f20a3"]
    assert [s.key_label() for s in note.unverified] == ["EnochRoot+af0cfe78"]
    both = open_note((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode(), [PETER, ENOCH])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()


def test_a_note_with_no_known_signature_is_refused_naming_the_keys() -> None:
    with pytest.raises(SignatureError, match=r"no signature by a known key .*EnochRoot\+af0cfe78"):
        open_note(TEXT + "\n" + ENOCH_SIG, [PETER])
    with pytest.raises(SignatureError, match="known: none"):
        open_note(TEXT + "\n" + PETER_SIG, [])


def test_a_bad_signature_by_a_known_key_refuses_the_whole_note() -> None:
    forged = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(forged, [PETER])
    # A valid signature does not excuse a second, bad one by the same key (the spec's MUST).
    bad_second = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError, match="invalid signature"):
        open_note(TEXT + "\n" + PETER_SIG + bad_second, [PETER])


def test_repeated_signatures_count_once_as_in_the_reference() -> None:
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    note = open_note(msg, [PETER])
    assert len(note.verified) == 1
    assert [s.line() for s in note.unverified] == [ENOCH_SIG, enoch_abcd]


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (TEXT, "no blank line"),
        (TEXT + "\n", "signature block must end"),
        (TEXT + "\n" + PETER_SIG[:-1], "signature block must end"),
        ("\x01" + TEXT + "\n" + PETER_SIG, "control character U\\+0001 on line 1"),
        (b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), "not valid UTF-8 at byte 0"),
        (TEXT + "\n— Bad Name " + PETER_B64 + "\n", "line 4: the signature is"),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "line 5 is not a signature line"),
        (TEXT + "\n- PeterNeumann " + PETER_B64 + "\n", "line 4 is not a signature line"),
        (TEXT + "\n— PeterNeumann\n", "no space between"),
        (TEXT + "\n— a+b " + PETER_B64 + "\n", "U\\+002B"),
        (TEXT + "\n—  " + PETER_B64 + "\n", "non-empty"),
        (TEXT + "\n— PeterNeumann AAAAAA==\n", "4 bytes, a key id and more"),
        (TEXT + "\n— PeterNeumann " + PETER_B64[:-1] + "\n", "not standard base64"),
        (TEXT + "\n— PeterNeumann " + PETER_B64[:-2] + "N=\n", "not canonical base64"),
        (TEXT + "\n— PeterNeumann\t" + PETER_B64 + "\n", "control character"),
        ("no newline at the end\n\n" + PETER_SIG + "\r\n", "control character"),
    ],
)
def test_malformed_notes_are_refused_precisely(message: str | bytes, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        open_note(message, [PETER])


def test_too_many_signatures_are_refused_but_the_maximum_is_read() -> None:
    assert len(open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [PETER]).verified) == 1
    with pytest.raises(SignatureError, match=f"{MAX_SIGNATURES + 1} signatures"):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [PETER])


def test_the_spec_example_parses_and_carries_no_weight_without_its_key() -> None:
    note = parse_note(C2SP_NOTE)
    assert note.text.endswith("\n\ned è subito sera.\n")  # the text may hold empty lines
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    assert len(note.signatures[0].signature) == 64
    assert note.encode() == C2SP_NOTE
    with pytest.raises(SignatureError, match="no signature by a known key"):
        open_note(C2SP_NOTE, [PETER])


def test_a_known_name_with_another_id_or_another_name_is_ignored() -> None:
    other = generate_key("PeterNeumann").verifier()  # same name, another key: another id
    with pytest.raises(SignatureError, match="no signature by a known key"):
        open_note(TEXT + "\n" + PETER_SIG, [other])
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(SignatureError, match="no signature by a known key"):
        open_note(TEXT + "\n" + renamed, [PETER])


def test_two_known_keys_with_the_same_name_and_id_are_ambiguous() -> None:
    seen: dict[int, bytes] = {}
    i = 0
    while True:  # a birthday collision of 32-bit ids: about 2**16 tries
        public = hashlib.sha256(i.to_bytes(8, "big")).digest()
        found = seen.setdefault(key_id("x", public), public)
        if found != public:
            break
        i += 1
    a, b = VerifierKey("x", found), VerifierKey("x", public)
    line = Signature("x", a.key_id, bytes(64)).line()
    with pytest.raises(SignatureError, match=f"ambiguous key x\\+{a.key_id:08x}"):
        open_note("t\n\n" + line, [a, b])


# -- keys -------------------------------------------------------------------------------


def _manglings(text: str) -> list[str]:
    """Every proper substring and every one-byte increment, as note_test.go tries."""
    raw = text.encode()
    subs = {raw[i:j] for i in range(len(raw) + 1) for j in range(i + 1, len(raw) + 1)}
    bumps = {raw[:i] + bytes([(raw[i] + 1) % 256]) + raw[i + 1 :] for i in range(len(raw))}
    return [m.decode("utf-8", "replace") for m in (subs | bumps) - {raw}]


def test_every_mangled_verifier_key_is_refused() -> None:
    for bad in [
        *_manglings(PETER_VKEY),
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]:
        with pytest.raises(SignatureError):
            VerifierKey.parse(bad)


def test_every_mangled_signer_key_is_refused_without_echoing_it() -> None:
    secret = PETER_SKEY.rsplit("+", 1)[1]
    for bad in _manglings(PETER_SKEY):
        with pytest.raises(SignatureError) as caught:
            SignerKey.parse(bad)
        assert secret[4:20] not in str(caught.value)


def test_a_verifier_key_whose_id_is_not_its_own_is_refused() -> None:
    with pytest.raises(SignatureError, match="the id is not the id of its key"):
        VerifierKey.parse(PETER_VKEY.replace("c74f20a3", "c74f20a4"))


def test_generated_keys_round_trip_and_sign() -> None:
    signer = generate_key("example.com/log")
    assert SignerKey.parse(signer.encode()) == signer
    verifier = VerifierKey.parse(signer.verifier().encode())
    assert verifier == signer.verifier()
    assert open_note(sign_note("hi\n", signer), [verifier]).text == "hi\n"
    assert generate_key("example.com/log") != signer
    assert signer.seed.hex() not in repr(signer)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "a\x7fb\x01"])
def test_key_names_the_spec_forbids_are_refused(name: str) -> None:
    with pytest.raises(SignatureError):
        generate_key(name)


def test_key_files_are_read_and_their_faults_named(tmp_path: os.PathLike[str]) -> None:
    key, pub = os.path.join(tmp_path, "k.key"), os.path.join(tmp_path, "k.pub")
    with open(key, "w") as f:
        f.write(PETER_SKEY + "\n")
    with open(pub, "w") as f:
        f.write(PETER_VKEY)
    assert read_signer_key(key) == SignerKey.parse(PETER_SKEY)
    assert read_verifier_key(pub) == PETER
    with pytest.raises(SignatureError, match="cannot read the signing key file"):
        read_signer_key(os.path.join(tmp_path, "missing.key"))
    with open(key, "w") as f:
        f.write(PETER_SKEY + "\n" + PETER_SKEY + "\n")
    with pytest.raises(SignatureError, match="exactly one key line") as caught:
        read_signer_key(key)
    assert "AYEKFALV" not in str(caught.value)
    with pytest.raises(SignatureError, match=r"k\.pub: .*the id is not the id of its key"):
        with open(pub, "w") as f:
            f.write(PETER_VKEY.replace("c74f20a3", "c74f20a4"))
        read_verifier_key(pub)


# -- signing and its laws ----------------------------------------------------------------

note_texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, range(32))))
    | st.just("\n"),
    max_size=80,
).map(lambda t: t + "\n")


@settings(max_examples=200, deadline=None)
@given(note_texts)
def test_signed_notes_open_to_their_text(text: str) -> None:
    message = sign_note(text, SIGNER)
    assert parse_note(message).encode() == message
    assert open_note(message, [SIGNER.verifier()]).text == text


@settings(max_examples=300, deadline=None)
@given(note_texts, st.data())
def test_any_one_byte_change_is_refused_or_changes_the_text(text: str, data: st.DataObject) -> None:
    message = sign_note(text, SIGNER).encode()
    at = data.draw(st.integers(0, len(message) - 1))
    byte = data.draw(st.integers(0, 255))
    changed = data.draw(
        st.sampled_from(
            [
                message[:at] + bytes([byte]) + message[at + 1 :],
                message[:at] + message[at + 1 :],
                message[:at] + bytes([byte]) + message[at:],
            ]
        )
    )
    if changed == message:
        return
    try:
        opened = open_note(changed, [SIGNER.verifier()])
    except SignatureError:
        return
    assert opened.text != text


@pytest.mark.parametrize("text", ["", "no final newline", "tab\tin text\n", "\ud800\n"])
def test_texts_that_cannot_be_signed_are_refused(text: str) -> None:
    with pytest.raises(SignatureError, match=r"malformed note|not valid Unicode"):
        sign_note(text, SIGNER)


def test_signing_needs_a_signer() -> None:
    with pytest.raises(SignatureError, match="at least one signer"):
        sign_note(TEXT)


def test_note_round_trips_its_signatures() -> None:
    note = Note(TEXT, (Signature("PeterNeumann", 0xC74F20A3, b"\x01" * 64),))
    assert parse_note(note.encode()) == note


# -- the optional dependency ---------------------------------------------------------------


def test_without_cryptography_signing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    for action in (
        lambda: generate_key("x"),
        lambda: sign_note(TEXT, SIGNER),
        lambda: open_note(TEXT + "\n" + PETER_SIG, [PETER]),
    ):
        with pytest.raises(SignatureError, match=r"pip install 'ceredis\[sign\]'"):
            action()
    assert parse_note(TEXT + "\n" + PETER_SIG).signatures[0].name == "PeterNeumann"


def test_signature_errors_are_ledger_errors_and_pickle() -> None:
    error = SignatureError("invalid signature for key x+00000000")
    assert isinstance(error, LedgerError)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
