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
import itertools
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


COMPETENCY = "schema.cassproject.org.0.4.Competency"
FRAMEWORK = "schema.cassproject.org.0.4.Framework"
ASSERTION = "schema.cassproject.org.0.4.Assertion"
PERSON = "schema.org.Person"


def _as_text(value: str | bool | int) -> str:
    """A plain field's value as the text an ``EncryptedValue`` holds (JSON booleans)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _private_fields(
    record: Mapping[str, Any], learner_pem: str, validator_pem: str, fraction: Decimal | None
) -> dict[str, Any]:
    """The assertion fields encrypted mode seals: who, about whom, when, whether negative."""
    fields: dict[str, Any] = {"subject": learner_pem, "agent": validator_pem}
    ms = _timestamp_ms(record.get("timestamp"))
    if ms is not None:
        fields["assertionDate"] = ms
    if fraction is not None:
        fields["negative"] = fraction <= NEGATIVE_THRESHOLD
    return fields


class _Sealer:
    """Encrypts assertion fields for their validator (owner), learner and the engine.

    One AES key per learner, wrapped once per recipient, as the official library reuses
    them; keys and IVs come from one seeded RNG, in record order (deterministic fixtures).
    """

    def __init__(self, engine_pem: str, seed: int) -> None:
        self._engine_pem = engine_pem
        self._rng = random.Random(seed + 1)
        self._aes: dict[str, bytes] = {}  # learner -> AES key
        self._wrapped: dict[str, dict[str, str]] = {}  # learner -> recipient -> wrapped key

    def seal(
        self,
        assertion: dict[str, Any],
        fields: Mapping[str, Any],
        payload_text: str,
        *,
        agent: str,
        learner_pem: str,
        validator_pem: str,
    ) -> None:
        """Write *fields* and the evidence *payload_text* into *assertion*, encrypted."""
        aes = self._aes.get(agent)
        if aes is None:
            aes = self._aes[agent] = self._rng.randbytes(16)
        cache = self._wrapped.setdefault(agent, {})
        readers = [learner_pem, self._engine_pem]
        for pem in [validator_pem, *readers]:
            if pem not in cache:
                cache[pem] = wrap_secret(aes, pem)

        def encrypted(text: str) -> dict[str, Any]:
            iv = self._rng.randbytes(16)
            return encrypt_value(
                text,
                [validator_pem],
                readers,
                object_id=assertion["@id"],
                aes_key=aes,
                wrapped=cache,
                iv=iv,
            )

        for name, value in fields.items():
            assertion[name] = encrypted(_as_text(value))
        assertion["evidence"] = [encrypted(payload_text)]


class _Builder:
    """One :func:`build_fixtures` run: the id base, keys, version counter and output."""

    def __init__(
        self, id_base: str, keys: KeyFactory, version_base: int, sealer: _Sealer | None
    ) -> None:
        self._id_base = id_base
        self._keys = keys
        self._versions = itertools.count(version_base + 1)
        self._sealer = sealer
        self._comp_url: dict[str, str] = {}  # X.Y id or UUID -> CaSS URL
        self._occurrences: dict[tuple[str, str], int] = {}  # (agent, evidenceId) -> count
        self.out = CassFixtures()

    def _short(self, kind: str, guid: str) -> str:
        return _short_id(kind, guid, self._id_base)

    def _add(self, context: str, short: str, type_: str, **fields: Any) -> None:
        """Append one object, its ``@id`` the next version of *short*."""
        at_id = f"{short}/{next(self._versions)}"
        self.out.objects.append({"@context": context, "@id": at_id, "@type": type_, **fields})

    def add_framework(self, competencies: Mapping[str, str], name: str, guid: str) -> None:
        """One Competency per ``X.Y`` id -> UUID, then the Framework listing them."""
        owner = self._keys.public_pem("framework-owner")
        comp_ids = []
        for code, uuid in competencies.items():
            short = self._short(COMPETENCY, uuid)
            self._comp_url[code] = short
            self._comp_url[uuid] = short
            comp_ids.append(short)
            self._add(ASSERTION_CONTEXT, short, "Competency", name=code, owner=[owner])
        self.out.framework_id = self._short(FRAMEWORK, guid)
        self._add(
            ASSERTION_CONTEXT,
            self.out.framework_id,
            "Framework",
            competency=comp_ids,
            name=name,
            owner=[owner],
        )

    def add_record(self, index: int, record: Mapping[str, Any]) -> None:
        """The record's Assertion (and its learner's Person, first time), or a skip note."""
        agent = record.get("agentId")
        if not isinstance(agent, str) or not agent:
            self.out.skipped.append(f"record #{index + 1}: no agentId, cannot be attributed")
            return
        learner_pem = self._learner(agent)
        validator = record.get("validator")
        validator_pem = self._keys.public_pem(
            "validator:" + (validator if isinstance(validator, str) else "")
        )
        self._add_assertion(record, agent, learner_pem, validator_pem)

    def _learner(self, agent: str) -> str:
        """The learner's public key, adding their Person the first time they appear."""
        pem = self.out.persons.get(agent)
        if pem is None:
            pem = self.out.persons[agent] = self._keys.public_pem("learner:" + agent)
            short = self._short(PERSON, kbac.fingerprint(pem))
            self._add(PERSON_CONTEXT, short, "Person", identifier=agent, name=agent, owner=[pem])
        return pem

    def _assertion_guid(self, agent: str, evidence_id: Any) -> str:
        """A GUID per (learner, evidenceId, occurrence): repeated evidence ids stay apart."""
        key = (agent, str(evidence_id))
        self._occurrences[key] = self._occurrences.get(key, 0) + 1
        return _guid(agent, str(evidence_id), str(self._occurrences[key]))

    def _add_assertion(
        self, record: Mapping[str, Any], agent: str, learner_pem: str, validator_pem: str
    ) -> None:
        guid = self._assertion_guid(agent, record.get("evidenceId"))
        short = self._short(ASSERTION, guid)
        assertion: dict[str, Any] = {
            "@context": ASSERTION_CONTEXT,
            "@id": f"{short}/{next(self._versions)}",
            "@type": "Assertion",
        }
        fraction = _score_fraction(record.get("rawScore"))
        if fraction is not None:
            assertion["confidence"] = float(fraction)
        competency = record.get("competencyId")
        if isinstance(competency, str):
            competency = self._comp_url.get(competency, competency)
        if competency is not None:
            assertion["competency"] = competency
        assertion["framework"] = self.out.framework_id
        assertion["owner"] = [validator_pem]
        fields = _private_fields(record, learner_pem, validator_pem, fraction)
        payload = {k: v for k, v in record.items() if k not in ("agentId", "competencyId")}
        payload_text = dumps_exact(payload)
        if self._sealer is None:
            assertion.update(fields)
            assertion["evidence"] = [payload_text]
        else:
            self._sealer.seal(
                assertion,
                fields,
                payload_text,
                agent=agent,
                learner_pem=learner_pem,
                validator_pem=validator_pem,
            )
        self.out.objects.append(assertion)


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
    sealer = _Sealer(kbac.normalize_pem(engine_pem), seed) if encrypted and engine_pem else None
    build = _Builder(id_base, keys or KeyFactory(seed), version_base, sealer)
    build.add_framework(
        competencies or {}, framework_name, framework_guid or _guid("framework", framework_name)
    )
    for index, record in enumerate(records):
        build.add_record(index, record)
    return build.out
