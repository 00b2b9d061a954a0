"""CaSS key-based access control (KBAC): signature sheets and ``EncryptedValue`` fields.

What a read-only CaSS client needs (cass-api.md §3):

* :class:`SignatureSheets` signs time-limited signature sheets with the engine's RSA
  key (RSASSA-PKCS1-v1_5 SHA-256 in ``@signatureSha256``) and re-signs them before
  they expire; the server then releases the objects the key owns or reads.
* :func:`decrypt_value` opens an ``EncryptedValue``: RSA-OAEP-SHA1 unwraps the AES
  secret (``secret[i]`` belongs to ``owner[i]``, then to the readers), AES-128-CTR
  decrypts the payload.
* :func:`fingerprint` is a key's CaSS fingerprint (md5 of the OpenSSH public-key blob),
  the GUID of the key's ``schema.org/Person``.

``cryptography`` is an optional dependency (``pip install 'ceredis[cass]'``), imported
inside the functions that use it; without it a :class:`~ceredis.errors.ConfigError` says
so. Private keys are never printed: :class:`EngineKey` has no revealing ``repr``.
Encryption, signature checks and key generation serve only the test doubles and stay
outside the product.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceredis.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.padding import OAEP
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "KBAC_CONTEXT",
    "DecryptionError",
    "EngineKey",
    "SignatureSheets",
    "decrypt_value",
    "fingerprint",
    "is_encrypted",
    "load_public_key",
    "normalize_pem",
    "oaep_sha1",
    "owners",
    "public_key_pem",
    "readers",
    "sign_entry",
    "signed_message",
]

KBAC_CONTEXT = "https://schema.cassproject.org/kbac/0.4"
SIGNATURE_TYPE = "TimeLimitedSignature"
#: How long a signature sheet is valid, as the official client does (5 minutes).
SHEET_LIFETIME_MS = 300_000
#: A sheet is re-signed when less than this is left before its expiry.
SHEET_RENEW_MARGIN_MS = 60_000

_INSTALL_HINT = "install the CaSS extra: pip install 'ceredis[cass]'"
_PEM_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)


class DecryptionError(SourceError):
    """An ``EncryptedValue`` cannot be opened with the engine's key."""


# -- cryptography, imported lazily -----------------------------------------------------


def _require_cryptography() -> None:
    """Raise a ConfigError naming the ``cass`` extra when ``cryptography`` is missing.

    Called first by every function that can run before a key object exists; the others
    (methods of a loaded key) import ``cryptography`` directly.
    """
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"CaSS signatures and encrypted fields need the 'cryptography' package; {_INSTALL_HINT}"
        ) from None


def oaep_sha1() -> OAEP:
    """RSA-OAEP with SHA-1 and MGF1-SHA-1, as CaSS wraps ``EncryptedValue`` secrets."""
    _require_cryptography()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
    )


# -- PEM handling ----------------------------------------------------------------------


def normalize_pem(pem: str) -> str:
    """A PEM in CaSS's one-line form (newlines stripped), as stored and searched."""
    m = _PEM_RE.search(pem)
    if not m:
        raise ConfigError("not a PEM key (no -----BEGIN …----- / -----END …----- block)")
    body = "".join(m.group(2).split())
    return f"-----BEGIN {m.group(1)}-----{body}-----END {m.group(1)}-----"


def _multiline_pem(pem: str) -> bytes:
    """A PEM with standard 64-column lines, as ``cryptography`` expects."""
    m = _PEM_RE.search(pem)
    if not m:
        raise ConfigError("not a PEM key (no -----BEGIN …----- / -----END …----- block)")
    body = "".join(m.group(2).split())
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        f"-----BEGIN {m.group(1)}-----\n" + "\n".join(lines) + f"\n-----END {m.group(1)}-----\n"
    ).encode("ascii")


@functools.lru_cache(maxsize=4096)
def load_public_key(pem: str) -> PublicKeyTypes:
    """The public key of a PEM in any line layout (cached: the same keys recur)."""
    _require_cryptography()
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_public_key(_multiline_pem(pem))
    except ValueError:
        # PKCS#1 "RSA PUBLIC KEY" blocks load the same way; anything else is unusable.
        raise ConfigError("cannot read a CaSS public key (expected an RSA PEM)") from None


def public_key_pem(public_key: PublicKeyTypes) -> str:
    """A public key as CaSS stores it: SubjectPublicKeyInfo PEM on one line."""
    from cryptography.hazmat.primitives import serialization

    data = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return normalize_pem(data.decode("ascii"))


def fingerprint(public_pem: str) -> str:
    """CaSS key fingerprint: md5 hex of the OpenSSH public-key blob (a Person's GUID)."""
    key = load_public_key(public_pem)
    from cryptography.hazmat.primitives import serialization

    openssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(openssh.split()[1])
    return hashlib.md5(blob).hexdigest()


# -- the engine's key ------------------------------------------------------------------


class EngineKey:
    """An RSA private key (the engine's, or a fixture's). Never printed or pickled in
    clear text by accident: ``repr`` shows only the fingerprint. (Holding a key object
    means ``cryptography`` is installed: the methods import it directly.)"""

    def __init__(self, private_key: RSAPrivateKey) -> None:
        self._key = private_key
        self.public_pem = public_key_pem(private_key.public_key())
        self._fingerprint: str | None = None
        self._secret_cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem: str | bytes, *, where: str = "the private key") -> EngineKey:
        """Load a PKCS#1 or PKCS#8 PEM (one-line CaSS form accepted, no passphrase)."""
        _require_cryptography()
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        try:
            key = serialization.load_pem_private_key(_multiline_pem(text), password=None)
        except ConfigError:
            raise ConfigError(f"{where} is not a PEM private key") from None
        except (ValueError, TypeError):
            raise ConfigError(
                f"{where} cannot be read as an unencrypted RSA private key (PKCS#1 or PKCS#8)"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{where} is not an RSA key; CaSS uses RSA-2048 keys")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> EngineKey:
        """Load the PEM at *path*; the message names the file, never its content."""
        where = f"the key file {os.fspath(path)!r}"
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from None
        return cls.from_pem(data, where=where)

    @property
    def fingerprint(self) -> str:
        """md5 of the OpenSSH public-key blob (the key's CaSS Person GUID)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.public_pem)
        return self._fingerprint

    def private_pem(self) -> str:
        """The private key as a PKCS#8 PEM (for writing fixtures; handle with care)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def sign(self, message: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def unwrap_secret(self, secret_b64: str) -> bytes:
        """RSA-OAEP-SHA1 decrypt one ``secret[i]`` (cached: objects share secrets)."""
        with self._cache_lock:
            hit = self._secret_cache.get(secret_b64)
            if hit is not None:
                self._secret_cache.move_to_end(secret_b64)
                return hit
        plain = self._key.decrypt(base64.b64decode(secret_b64, validate=True), oaep_sha1())
        with self._cache_lock:
            self._secret_cache[secret_b64] = plain
            while len(self._secret_cache) > 4096:
                self._secret_cache.popitem(last=False)
        return plain

    def __repr__(self) -> str:
        fp = self._fingerprint or "…"
        return f"EngineKey(fingerprint={fp})"

    def __reduce__(self) -> Any:
        # Keys travel to spawned workers as PEM text inside the pickle stream only.
        return (EngineKey.from_pem, (self.private_pem(),))


# -- signature sheets ------------------------------------------------------------------


def signed_message(entry: Mapping[str, Any]) -> bytes:
    """The bytes a signature-sheet entry signs: sorted-key, no-whitespace JSON of
    ``@context``, ``@owner``, ``@type``, ``expiry``, ``server``."""
    message = {
        "@context": entry.get("@context", entry.get("context")),
        "@owner": entry.get("@owner", entry.get("owner")),
        "@type": entry.get("@type", entry.get("type")),
        "expiry": entry.get("expiry"),
        "server": entry.get("server"),
    }
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def sign_entry(key: EngineKey, *, server: str, expiry_ms: int) -> dict[str, Any]:
    """One signature-sheet entry in the wire form the official library sends."""
    entry: dict[str, Any] = {
        "type": SIGNATURE_TYPE,
        "context": KBAC_CONTEXT,
        "expiry": int(expiry_ms),
        "server": server,
        "@owner": key.public_pem,
    }
    entry["@signatureSha256"] = base64.b64encode(key.sign(signed_message(entry))).decode("ascii")
    return entry


class SignatureSheets:
    """Signature sheets for one key and server, re-signed before they expire.

    *clock_ms* gives the server's idea of now in ms (local time plus the offset learnt
    from ``/api/ping``); a sheet is reused until less than a minute of it is left.
    """

    def __init__(
        self,
        key: EngineKey | None,
        server: str,
        *,
        clock_ms: Callable[[], int] | None = None,
        lifetime_ms: int = SHEET_LIFETIME_MS,
        renew_margin_ms: int = SHEET_RENEW_MARGIN_MS,
    ) -> None:
        import time

        self.key = key
        self.server = server
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.offset_ms = 0
        self.lifetime_ms = lifetime_ms
        self.renew_margin_ms = renew_margin_ms
        self._cached: tuple[int, str] | None = None
        self.signed = 0  # how many sheets were signed (for tests and stats)

    def sheet(self) -> str:
        """The JSON text of a valid sheet (``"[]"`` when anonymous)."""
        if self.key is None:
            return "[]"
        now = self._clock_ms() + self.offset_ms
        cached = self._cached
        if cached is not None and cached[0] - now > self.renew_margin_ms:
            return cached[1]
        expiry = now + self.lifetime_ms
        text = json.dumps([sign_entry(self.key, server=self.server, expiry_ms=expiry)])
        self._cached = (expiry, text)
        self.signed += 1
        return text

    def set_server_time(self, server_ms: int) -> None:
        """Adopt the server clock seen in ``/api/ping`` (as the official client does)."""
        self.offset_ms = int(server_ms) - self._clock_ms()
        self._cached = None


# -- EncryptedValue --------------------------------------------------------------------


def is_encrypted(value: Any) -> bool:
    """Whether *value* is an ``EncryptedValue`` object (any context version)."""
    return isinstance(value, Mapping) and value.get("@type") in (
        "EncryptedValue",
        f"{KBAC_CONTEXT}/EncryptedValue",
    )


def _pem_list(obj: Mapping[str, Any], name: str) -> list[str]:
    value = obj.get(name)
    if value is None:
        value = obj.get("@" + name)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def owners(obj: Mapping[str, Any]) -> list[str]:
    """The ``owner`` PEMs of an object, accepting the legacy ``@owner`` spelling."""
    return _pem_list(obj, "owner")


def readers(obj: Mapping[str, Any]) -> list[str]:
    """The ``reader`` PEMs of an object, accepting the legacy ``@reader`` spelling."""
    return _pem_list(obj, "reader")


def _aes_ctr_decrypt(key: bytes, counter: bytes, data: bytes) -> bytes:
    _require_cryptography()
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    ctx = Cipher(algorithms.AES(key), modes.CTR(counter)).decryptor()
    return ctx.update(data) + ctx.finalize()


def decrypt_value(value: Mapping[str, Any], key: EngineKey | None) -> str:
    """The plaintext of an ``EncryptedValue`` (UTF-8 text), opened with *key*.

    Raises :class:`DecryptionError` naming the step that failed (no key, not a
    recipient, bad secret, bad payload); the message holds no key material.
    """
    if not is_encrypted(value):
        raise DecryptionError("not an EncryptedValue")
    released = value.get("decryptedSecret")
    if key is None and not isinstance(released, str):
        raise DecryptionError(
            "the field is encrypted and no engine key is configured (CEREDIS_CASS_KEY)"
        )
    try:
        if isinstance(released, str):
            secret_json = released.encode("utf-8")
        else:
            assert key is not None
            recipients = owners(value) + readers(value)
            if key.public_pem not in recipients:  # slow path: PEMs with line breaks
                recipients = [normalize_pem(p) for p in recipients]
            try:
                index = recipients.index(key.public_pem)
            except ValueError:
                raise DecryptionError(
                    f"the field is not encrypted for the engine's key "
                    f"(fingerprint {key.fingerprint}); add it as a reader"
                ) from None
            secrets = value.get("secret")
            if not isinstance(secrets, list) or index >= len(secrets):
                raise DecryptionError(
                    f"the field has no secret for recipient #{index} (the engine's key)"
                )
            try:
                secret_json = key.unwrap_secret(secrets[index])
            except (ValueError, TypeError, binascii.Error):
                raise DecryptionError(
                    "the engine's key cannot unwrap the field's secret (RSA-OAEP-SHA1 failed)"
                ) from None
        try:
            secret = json.loads(secret_json)
            aes_key = base64.b64decode(secret["s"], validate=True)
            iv_text = value.get("iv") or secret.get("v")
            counter = base64.b64decode(iv_text, validate=True)
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
            raise DecryptionError("the field's unwrapped secret is malformed") from None
        if len(aes_key) not in (16, 24, 32) or len(counter) != 16:
            raise DecryptionError(
                f"the field's AES key or counter has a wrong size "
                f"({len(aes_key)} and {len(counter)} bytes)"
            )
        payload = value.get("payload")
        if not isinstance(payload, str):
            raise DecryptionError("the field has no payload")
        try:
            data = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error):
            raise DecryptionError("the field's payload is not base64") from None
        try:
            return _aes_ctr_decrypt(aes_key, counter, data).decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError(
                "the field decrypts to bytes that are not UTF-8 text (wrong secret?)"
            ) from None
    except ConfigError as exc:
        raise DecryptionError(str(exc)) from None
