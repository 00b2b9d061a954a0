"""CaSS fixtures from evidence records: Persons, a Framework, Competencies, Assertions.

The mapping is the one the CaSS source reads back (docs/cass.md, cass-api.md §5.5):

* one ``schema.org/Person`` per learner: ``identifier`` = the ``agentId``, ``owner[0]``
  = the learner's public key, GUID = the key's fingerprint;
* one ``Assertion`` per record: ``subject`` = the learner's key, ``agent`` = the
  validator's key, ``competency`` = the competency's CaSS URL (``X.Y`` and UUIDs are
  mapped through the referential; anything else is kept verbatim, so an invalid record
  stays invalid), ``assertionDate`` = the timestamp in ms, ``negative`` =
  ``rawScore/100 <= 0.7``, ``confidence`` = ``rawScore/100``, and ``evidence[0]`` =
  the record's own fields as JSON text (everything but ``agentId``/``competencyId``,
  numbers written with their exact decimal text);
* encrypted mode (the default) writes ``subject``, ``agent``, ``assertionDate``,
  ``negative`` and ``evidence[]`` as ``EncryptedValue`` objects owned by the validator
  and readable by the learner and the engine; plain mode writes them as plain values.

Keys: learners and validators only need *public* keys here (the engine never acts as
them), so by default they are synthetic: distinct random 2048-bit moduli, generated in
microseconds from a seeded RNG (deterministic fixtures). Only the engine key is a real
RSA key, needed to decrypt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from ceredis.sources import kbac
from doubles.kbac import encrypt_value, wrap_secret

__all__ = [
    "ASSERTION_CONTEXT",
    "CassFixtures",
    "KeyFactory",
    "build_fixtures",
    "dumps_exact",
]

ASSERTION_CONTEXT = "https://schema.cassproject.org/0.4"
PERSON_CONTEXT = "http://schema.org/"
#: CaSS's xAPI adapter threshold: a score at or below 70 % is a negative assertion.
NEGATIVE_THRESHOLD = Decimal("0.7")
VERSION_BASE_MS = 1_700_000_000_000


def dumps_exact(value: Any) -> str:
    """JSON text keeping ``Decimal`` numbers' decimal text (``72.10`` stays ``72.10``)."""
    import json

    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{dumps_exact(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps_exact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


class KeyFactory:
    """Public keys for fixture identities: synthetic (fast) unless real ones are asked.

    A synthetic key is a valid RSA public key (a random odd 2048-bit modulus, e=65537)
    whose private half does not exist; it serves as an identity and an encryption
    recipient, which is all a learner or validator is to the engine.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._by_name: dict[str, str] = {}

    def public_pem(self, name: str) -> str:
        """The (cached) one-line public PEM for an identity name."""
        pem = self._by_name.get(name)
        if pem is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            n = self._rng.getrandbits(2048) | (1 << 2047) | 1
            pem = kbac.public_key_pem(rsa.RSAPublicNumbers(65537, n).public_key())
            self._by_name[name] = pem
        return pem


@dataclass
class CassFixtures:
    """What :func:`build_fixtures` produced; ``objects`` are ready to load."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    framework_id: str = ""
    persons: dict[str, str] = field(default_factory=dict)  # agentId -> learner PEM
    skipped: list[str] = field(default_factory=list)  # records that could not be loaded

    @property
    def framework_guid(self) -> str:
        """The framework's GUID (the ``framework=`` value of a source URI)."""
        return self.framework_id.rstrip("/").split("/")[-1]


def _short_id(kind: str, guid: str, id_base: str) -> str:
    return f"{id_base}data/{kind}/{guid}"


def _guid(*parts: str) -> str:
    h = hashlib.md5("\x00".join(parts).encode("utf-8")).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _timestamp_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp() * 1000)


def _score_fraction(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        return None
    number = Decimal(str(value))
    if not number.is_finite() or not 0 <= number <= 100:
        return None
    return number / 100


def build_fixtures(
    records: Iterable[Mapping[str, Any]],
    *,
    id_base: str,
    competencies: Mapping[str, str] | None = None,
    engine_pem: str | None = None,
    encrypted: bool = True,
    seed: int = 0,
    keys: KeyFactory | None = None,
    framework_name: str = "CEREDIS – Français par la chanson (CECRL enrichi)",
    framework_guid: str | None = None,
    version_base: int = VERSION_BASE_MS,
) -> CassFixtures:
    """CaSS objects holding *records* (scoring.md §1 dicts, numbers int/Decimal).

    *competencies* maps the referential's ``X.Y`` ids to CaSS UUIDs; *engine_pem*
    (required when *encrypted*) is the engine's public key, added as a reader of every
    encrypted field. *id_base* is the ``…/api/`` URL used in ``@id``s.
    """
    if encrypted and not engine_pem:
        raise ValueError("encrypted fixtures need the engine's public key (engine_pem)")
    if not id_base.endswith("/"):
        id_base += "/"
    keys = keys or KeyFactory(seed)
    engine_pem = kbac.normalize_pem(engine_pem) if engine_pem else None
    out = CassFixtures()
    version = version_base

    def next_version() -> int:
        nonlocal version
        version += 1
        return version

    # Framework and competencies.
    comp_url: dict[str, str] = {}
    fw_owner = keys.public_pem("framework-owner")
    comp_ids = []
    for code, uuid in (competencies or {}).items():
        short = _short_id("schema.cassproject.org.0.4.Competency", uuid, id_base)
        comp_url[code] = short
        comp_url[uuid] = short
        comp_ids.append(short)
        out.objects.append(
            {
                "@context": ASSERTION_CONTEXT,
                "@id": f"{short}/{next_version()}",
                "@type": "Competency",
                "name": code,
                "owner": [fw_owner],
            }
        )
    fw_guid = framework_guid or _guid("framework", framework_name)
    fw_short = _short_id("schema.cassproject.org.0.4.Framework", fw_guid, id_base)
    out.framework_id = fw_short
    out.objects.append(
        {
            "@context": ASSERTION_CONTEXT,
            "@id": f"{fw_short}/{next_version()}",
            "@type": "Framework",
            "competency": comp_ids,
            "name": framework_name,
            "owner": [fw_owner],
        }
    )

    wrapped: dict[str, dict[str, str]] = {}  # learner -> recipient PEM -> wrapped secret
    aes_keys: dict[str, bytes] = {}
    occurrences: dict[tuple[str, str], int] = {}
    rng = random.Random(seed + 1)
    for index, record in enumerate(records):
        agent = record.get("agentId")
        if not isinstance(agent, str) or not agent:
            out.skipped.append(f"record #{index + 1}: no agentId, cannot be attributed")
            continue
        learner_pem = out.persons.get(agent)
        if learner_pem is None:
            learner_pem = keys.public_pem("learner:" + agent)
            out.persons[agent] = learner_pem
            fp = kbac.fingerprint(learner_pem)
            out.objects.append(
                {
                    "@context": PERSON_CONTEXT,
                    "@id": f"{id_base}data/schema.org.Person/{fp}/{next_version()}",
                    "@type": "Person",
                    "identifier": agent,
                    "name": agent,
                    "owner": [learner_pem],
                }
            )
        validator = record.get("validator")
        validator_pem = keys.public_pem(
            "validator:" + (validator if isinstance(validator, str) else "")
        )
        evidence_id = record.get("evidenceId")
        key = (agent, str(evidence_id))
        occurrences[key] = occurrences.get(key, 0) + 1
        guid = _guid(agent, str(evidence_id), str(occurrences[key]))
        at_id = (
            f"{_short_id('schema.cassproject.org.0.4.Assertion', guid, id_base)}/{next_version()}"
        )
        competency = record.get("competencyId")
        competency_value = (
            comp_url.get(competency, competency) if isinstance(competency, str) else competency
        )
        payload = {k: v for k, v in record.items() if k not in ("agentId", "competencyId")}
        payload_text = dumps_exact(payload)
        fraction = _score_fraction(record.get("rawScore"))
        ms = _timestamp_ms(record.get("timestamp"))

        assertion: dict[str, Any] = {
            "@context": ASSERTION_CONTEXT,
            "@id": at_id,
            "@type": "Assertion",
        }
        plain_fields: dict[str, Any] = {"subject": learner_pem, "agent": validator_pem}
        if ms is not None:
            plain_fields["assertionDate"] = ms
        if fraction is not None:
            plain_fields["negative"] = fraction <= NEGATIVE_THRESHOLD
            assertion["confidence"] = float(fraction)
        if competency_value is not None:
            assertion["competency"] = competency_value
        assertion["framework"] = fw_short
        assertion["owner"] = [validator_pem]
        if encrypted:
            assert engine_pem is not None
            aes = aes_keys.get(agent)
            if aes is None:
                aes = aes_keys[agent] = rng.randbytes(16)
            cache = wrapped.setdefault(agent, {})
            readers = [learner_pem, engine_pem]
            for pem in [validator_pem, *readers]:
                if pem not in cache:
                    cache[pem] = wrap_secret(aes, pem)

            owner_list = [validator_pem]
            ivs = rng.randbytes
            for name, value in plain_fields.items():
                text = (
                    value
                    if isinstance(value, str)
                    else (("true" if value else "false") if isinstance(value, bool) else str(value))
                )
                assertion[name] = encrypt_value(
                    text,
                    owner_list,
                    readers,
                    object_id=at_id,
                    aes_key=aes,
                    wrapped=cache,
                    iv=ivs(16),
                )
            assertion["evidence"] = [
                encrypt_value(
                    payload_text,
                    owner_list,
                    readers,
                    object_id=at_id,
                    aes_key=aes,
                    wrapped=cache,
                    iv=ivs(16),
                )
            ]
        else:
            assertion.update(plain_fields)
            assertion["evidence"] = [payload_text]
        out.objects.append(assertion)
    return out
