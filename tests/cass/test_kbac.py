"""KBAC against the official CaSS library's golden samples (cass-api.md §3)."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ceredis.errors import ConfigError, SourceError
from ceredis.sources import kbac
from ceredis.sources.kbac import DecryptionError, EngineKey
from doubles.kbac import encrypt_value, verify_entry

from .conftest import SAMPLES

EVIDENCE_TEXT = '{"evidenceId":"ev-1","evidenceType":"P2","rawScore":85}'


def _json(name: str):
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def learner() -> EngineKey:
    return EngineKey.from_file(SAMPLES / "learner.TEST-ONLY.private.pem")


@pytest.fixture(scope="module")
def validator() -> EngineKey:
    return EngineKey.from_file(SAMPLES / "validator.TEST-ONLY.private.pem")


@pytest.fixture(scope="module")
def assertion():
    return _json("assertion.encrypted.json")


def _recipe_decrypt(value: dict, private_pem: str, index: int) -> str:
    """The documented recipe, written independently of kbac: OAEP-SHA1, then AES-CTR."""
    body = private_pem.split("-----")[2].replace("\n", "")
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    header = private_pem.split("-----")[1]
    pem = f"-----{header}-----\n{lines}\n-----END {header.split(' ', 1)[1]}-----\n"
    key = serialization.load_pem_private_key(pem.encode(), None)
    oaep = padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None)
    secret = json.loads(key.decrypt(base64.b64decode(value["secret"][index]), oaep))
    iv = base64.b64decode(value.get("iv") or secret["v"])
    cipher = Cipher(algorithms.AES(base64.b64decode(secret["s"])), modes.CTR(iv)).decryptor()
    return (cipher.update(base64.b64decode(value["payload"])) + cipher.finalize()).decode()


def test_every_field_of_the_golden_assertion_decrypts_for_the_learner(learner, assertion):
    person = _json("person.json")
    expected = {
        "subject": person["owner"][0],
        "agent": assertion["owner"][0],
        "assertionDate": "1700000000000",
        "negative": "false",
    }
    for field, plaintext in expected.items():
        assert kbac.decrypt_value(assertion[field], learner) == plaintext, field
    assert kbac.decrypt_value(assertion["evidence"][0], learner) == EVIDENCE_TEXT


def test_the_owner_decrypts_with_secret_zero(validator, assertion):
    # secret[i] belongs to owner[i] first, then to the readers.
    assert kbac.decrypt_value(assertion["evidence"][0], validator) == EVIDENCE_TEXT
    assert kbac.decrypt_value(assertion["negative"], validator) == "false"


def test_a_key_that_is_no_recipient_gets_a_clear_error(engine_key, assertion):
    with pytest.raises(DecryptionError, match="not encrypted for the engine's key"):
        kbac.decrypt_value(assertion["subject"], engine_key)


def test_no_key_gets_a_clear_error(assertion):
    with pytest.raises(DecryptionError, match="CEREDIS_CASS_KEY"):
        kbac.decrypt_value(assertion["subject"], None)


def test_a_tampered_secret_or_payload_fails_cleanly(learner, assertion):
    value = dict(assertion["subject"])
    value["secret"] = [value["secret"][0], base64.b64encode(b"x" * 256).decode()]
    with pytest.raises(DecryptionError, match="cannot unwrap"):
        kbac.decrypt_value(value, learner)
    value = dict(assertion["evidence"][0], payload="not base64!")
    with pytest.raises(DecryptionError, match="not base64"):
        kbac.decrypt_value(value, learner)


def test_the_sample_signature_sheet_verifies():
    sheet = _json("signature-sheet.json")
    assert verify_entry(sheet[0])
    forged = dict(sheet[0], expiry=sheet[0]["expiry"] + 1)
    assert not verify_entry(forged)


def test_the_signed_message_is_sorted_compact_json_of_five_fields():
    entry = _json("signature-sheet.json")[0]
    message = kbac.signed_message(entry).decode()
    assert message.startswith('{"@context":"https://schema.cassproject.org/kbac/0.4","@owner":')
    assert message.endswith(
        f'"@type":"TimeLimitedSignature","expiry":{entry["expiry"]},'
        f'"server":"http://127.0.0.1:8080/api/"}}'
    )
    assert ", " not in message and ": " not in message


def test_our_sheet_verifies_like_the_library_one(validator):
    entry = kbac.sign_entry(validator, server="http://127.0.0.1:8080/api/", expiry_ms=1795891770727)
    sample = _json("signature-sheet.json")[0]
    assert set(entry) == set(sample)
    assert entry["@owner"] == sample["@owner"]
    # PKCS#1 v1.5 is deterministic: same key and message, same signature as the library.
    assert entry["@signatureSha256"] == sample["@signatureSha256"]
    assert verify_entry(entry)


def test_sheets_are_reused_then_resigned_before_expiry(engine_key):
    now = [1_000_000]
    sheets = kbac.SignatureSheets(engine_key, "http://h/api/", clock_ms=lambda: now[0])
    first = sheets.sheet()
    entry = json.loads(first)[0]
    assert entry["expiry"] == 1_000_000 + 300_000
    now[0] += 200_000
    assert sheets.sheet() == first  # two minutes left: reused
    now[0] += 50_000
    second = sheets.sheet()  # less than a minute left: re-signed
    assert second != first and json.loads(second)[0]["expiry"] == 1_250_000 + 300_000
    assert sheets.signed == 2
    sheets.set_server_time(5_000_000)  # the server is ahead: expiry follows its clock
    assert json.loads(sheets.sheet())[0]["expiry"] == 5_000_000 + 300_000
    assert kbac.SignatureSheets(None, "http://h/api/").sheet() == "[]"


def test_person_guid_is_md5_of_the_openssh_blob(learner):
    person = _json("person.json")
    guid = person["@id"].split("/")[-2]
    assert kbac.fingerprint(person["owner"][0]) == guid
    assert learner.fingerprint == guid
    openssh = serialization.load_pem_public_key(
        kbac._multiline_pem(person["owner"][0])
    ).public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert hashlib.md5(base64.b64decode(openssh.split()[1])).hexdigest() == guid


def test_encryption_round_trips_and_matches_the_documented_recipe(engine_key, learner, validator):
    text = '{"evidenceId":"é-1","rawScore":72.10}'
    value = encrypt_value(
        text, [validator.public_pem], [learner.public_pem, engine_key.public_pem], object_id="x"
    )
    assert value["@type"] == "EncryptedValue" and len(value["secret"]) == 3
    for key in (validator, learner, engine_key):
        assert kbac.decrypt_value(value, key) == text
    # Independently of kbac: the reader at position 2 (owner, learner, engine).
    assert _recipe_decrypt(value, engine_key.private_pem(), 2) == text
    assert (
        _recipe_decrypt(value, (SAMPLES / "learner.TEST-ONLY.private.pem").read_text(), 1) == text
    )


def test_the_recipe_also_opens_the_golden_sample(assertion):
    private = (SAMPLES / "learner.TEST-ONLY.private.pem").read_text()
    assert _recipe_decrypt(assertion["evidence"][0], private, 1) == EVIDENCE_TEXT


def test_legacy_at_owner_spelling_is_accepted(learner, assertion):
    value = dict(assertion["evidence"][0])
    value["@owner"] = value.pop("owner")
    value["@reader"] = value.pop("reader")
    assert kbac.decrypt_value(value, learner) == EVIDENCE_TEXT


def test_a_server_released_secret_needs_no_key(learner, assertion):
    value = dict(assertion["negative"])
    released = learner.unwrap_secret(value["secret"][1]).decode()
    value["decryptedSecret"] = released
    assert kbac.decrypt_value(value, None) == "false"


def test_key_files_are_reported_by_path_never_by_content(tmp_path):
    bad = tmp_path / "engine.pem"
    bad.write_text(
        "-----BEGIN RSA PRIVATE KEY-----c2VjcmV0LWtleS1ieXRlcw==-----END RSA PRIVATE KEY-----"
    )
    with pytest.raises(ConfigError) as err:
        EngineKey.from_file(bad)
    assert str(bad) in str(err.value) and "c2VjcmV0" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        EngineKey.from_file(tmp_path / "missing.pem")


def test_engine_key_repr_and_pickle_hide_nothing_they_should_not(engine_key):
    assert "PRIVATE" not in repr(engine_key)
    clone = pickle.loads(pickle.dumps(engine_key))
    assert clone.public_pem == engine_key.public_pem


def test_exception_classes_pickle():
    for exc in (DecryptionError("the field is not encrypted for the engine's key"),):
        clone = pickle.loads(pickle.dumps(exc))
        assert type(clone) is type(exc) and str(clone) == str(exc)
        assert isinstance(clone, SourceError)


def test_without_cryptography_a_config_error_says_how_to_install():
    private = (SAMPLES / "learner.TEST-ONLY.private.pem").read_text()
    public = _json("person.json")["owner"][0]
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from ceredis.sources import kbac\n"
        "from ceredis.errors import ConfigError\n"
        f"for attempt in (lambda: kbac.EngineKey.from_pem({private!r}),\n"
        f"                lambda: kbac.fingerprint({public!r})):\n"
        "    try:\n"
        "        attempt()\n"
        "    except ConfigError as e:\n"
        "        print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all("pip install 'ceredis[cass]'" in line for line in lines), lines
