"""The server's and the writer's side of CaSS KBAC, which the read-only engine never needs.

* :func:`encrypt_value` writes an ``EncryptedValue`` as the official library does, and
  :func:`wrap_secret` wraps one AES secret for one recipient (the fixture builders);
* :func:`verify_entry` checks a signature-sheet entry (the CaSS double's ``strict`` mode);
* :func:`generate_key` makes a fresh RSA key (engine keys for tests and benchmarks).

The engine's side (decryption, signing sheets) is :mod:`ceredis.sources.kbac`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ceredis.errors import ConfigError
from ceredis.sources.kbac import (
    KBAC_CONTEXT,
    EngineKey,
    load_public_key,
    normalize_pem,
    oaep_sha1,
    signed_message,
)

__all__ = ["encrypt_value", "generate_key", "verify_entry", "wrap_secret"]


def generate_key(bits: int = 2048) -> EngineKey:
    """A new random RSA key (slow: about 0.1 s for 2048 bits)."""
    return EngineKey(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def verify_entry(entry: Mapping[str, Any]) -> bool:
    """Whether an entry's ``@signatureSha256`` (or SHA-1 ``@signature``) verifies."""
    owner = entry.get("@owner", entry.get("owner"))
    if not isinstance(owner, str):
        return False
    try:
        public = load_public_key(owner)
    except ConfigError:
        return False
    if not isinstance(public, rsa.RSAPublicKey):
        return False
    for field, digest in (("@signatureSha256", hashes.SHA256()), ("@signature", hashes.SHA1())):
        sig = entry.get(field)
        if not isinstance(sig, str):
            continue
        try:
            public.verify(base64.b64decode(sig), signed_message(entry), padding.PKCS1v15(), digest)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
    return False


def encrypt_value(
    plaintext: str,
    owner_pems: Sequence[str],
    reader_pems: Sequence[str] = (),
    *,
    object_id: str | None = None,
    aes_key: bytes | None = None,
    wrapped: Mapping[str, str] | None = None,
    iv: bytes | None = None,
) -> dict[str, Any]:
    """An ``EncryptedValue`` as the official library writes it (cass-api.md §3.3).

    A fresh 16-byte AES key is drawn unless *aes_key* is given; *wrapped* may map
    each recipient PEM to its already wrapped secret for that key, so one object's
    fields (or a fixture's many objects) reuse one RSA operation per recipient, as the
    library does for 20 s.
    """
    aes_key = os.urandom(16) if aes_key is None else aes_key
    iv = os.urandom(16) if iv is None else iv
    owner_pems = [normalize_pem(p) for p in owner_pems]
    reader_pems = [normalize_pem(p) for p in reader_pems]
    secrets = [
        wrapped[pem] if wrapped is not None and pem in wrapped else wrap_secret(aes_key, pem)
        for pem in [*owner_pems, *reader_pems]
    ]
    value: dict[str, Any] = {"@context": KBAC_CONTEXT}
    if object_id is not None:
        value["@id"] = object_id
    value["@type"] = "EncryptedValue"
    value["iv"] = base64.b64encode(iv).decode("ascii")
    value["owner"] = owner_pems
    value["payload"] = base64.b64encode(_aes_ctr(aes_key, iv, plaintext.encode("utf-8"))).decode(
        "ascii"
    )
    if reader_pems:
        value["reader"] = reader_pems
    value["secret"] = secrets
    return value


def wrap_secret(aes_key: bytes, recipient_pem: str) -> str:
    """RSA-OAEP-SHA1 wrap of ``{"v":null,"s":<key>}`` for one recipient (base64)."""
    secret_plain = json.dumps(
        {"v": None, "s": base64.b64encode(aes_key).decode("ascii")}, separators=(",", ":")
    ).encode("utf-8")
    public = load_public_key(recipient_pem)
    if not isinstance(public, rsa.RSAPublicKey):
        raise ConfigError("a CaSS recipient key must be RSA")
    return base64.b64encode(public.encrypt(secret_plain, oaep_sha1())).decode("ascii")


def _aes_ctr(key: bytes, counter: bytes, data: bytes) -> bytes:
    ctx = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return ctx.update(data) + ctx.finalize()
