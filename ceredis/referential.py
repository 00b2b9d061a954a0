"""The competency referential: domains, competencies, weights and level rules, as data.

A referential is a JSON document (the shipped one is ``ceredis/data/ceredis-1.1.json``,
scoring.md §8 and referential.md). :func:`parse_referential` checks every rule and
reports *all* the problems at once, each naming the field; the engine only knows the
rule kinds, so an institution can publish a new referential without touching code.
Its hash is the SHA-256 of its canonical bytes (``ledger.canonical``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ceredis.errors import ReferentialError
from ceredis.exactjson import JSONError, loads
from ledger.canonical import canonical_hash

__all__ = [
    "RULE_KINDS",
    "Band",
    "Competency",
    "Domain",
    "EvidenceType",
    "LevelRule",
    "Referential",
    "bundled_referential",
    "load_referential",
    "parse_referential",
    "show_number",
]

BUNDLED = "ceredis-1.1.json"
RULE_KINDS = ("minScore", "requiredEvidenceTypes", "domainMinimum")
_COMPETENCY_ID = re.compile(r"^[0-9]+\.[0-9]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CECRL = "(?:A1|A2|B1|B2|C1|C2)"
_LEVEL = re.compile(rf"^{_CECRL}(?:[–-]{_CECRL})?$")
_LEVEL_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_CASS_COMPETENCY_TYPE = re.compile(r"^schema\.cassproject\.org\.0\.[0-9]+\.Competency$")


@dataclass(frozen=True)
class EvidenceType:
    """An evidence type (P1…P4): its weight in a competency score and its cap, in percent."""

    id: str
    name: str
    weight: Fraction
    cap: Fraction


@dataclass(frozen=True)
class Competency:
    """A competency ``X.Y``, the domain it belongs to and its relative weight there."""

    id: str
    name: str
    level: str
    description: str
    cass_uuid: str
    required: tuple[str, ...]
    domain: str
    weight: Fraction


@dataclass(frozen=True)
class Domain:
    """A domain D1…D5: its weight in the global score and its competencies, in order."""

    id: str
    name: str
    weight: Fraction
    cass_uuid: str
    competencies: tuple[str, ...]


@dataclass(frozen=True)
class Band:
    """A CECRL band: global scores from ``min`` up to the next band's ``min``."""

    level: str
    min: Fraction


@dataclass(frozen=True)
class LevelRule:
    """A strict rule a level carries (scoring.md §7); ``kind`` is one of RULE_KINDS."""

    kind: str
    value: Fraction | None = None
    types: tuple[str, ...] = ()
    domain: str | None = None


@dataclass(frozen=True)
class Referential:
    """A validated referential; ``document`` is the JSON it was read from, as hashed."""

    id: str
    version: str
    name: str
    document: Mapping[str, Any] = field(repr=False)
    hash: str
    evidence_types: Mapping[str, EvidenceType] = field(repr=False)
    domains: tuple[Domain, ...] = field(repr=False)
    competencies: Mapping[str, Competency] = field(repr=False)
    acquis: Fraction = field(repr=False)
    partiel: Fraction = field(repr=False)
    global_scale: Fraction = field(repr=False)
    bands: tuple[Band, ...] = field(repr=False)
    level_rules: Mapping[str, tuple[LevelRule, ...]] = field(repr=False)
    _by_uuid: Mapping[str, str] = field(repr=False, compare=False)

    def resolve_competency(self, ref: str) -> str | None:
        """The ``X.Y`` id of a competency named by id, CaSS uuid or CaSS URL; else None."""
        if ref in self.competencies:
            return ref
        text = ref.strip().lower()
        if _UUID.match(text):
            return self._by_uuid.get(text)
        parts = urlsplit(ref.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None
        segments = [s for s in parts.path.split("/") if s]
        for i, segment in enumerate(segments[:-1]):
            if _CASS_COMPETENCY_TYPE.match(segment):
                rest = segments[i + 1 :]
                if len(rest) == 1 or (len(rest) == 2 and rest[1].isdigit()):
                    return self._by_uuid.get(rest[0].lower())
        return None


def bundled_referential() -> Referential:
    """The referential shipped with the engine (``ceredis-1.1``)."""
    return _bundled()


@cache
def _bundled() -> Referential:
    text = resources.files("ceredis.data").joinpath(BUNDLED).read_text(encoding="utf-8")
    return parse_referential(_parse_json(text, BUNDLED), BUNDLED)


def load_referential(path: str | Path | None = None) -> Referential:
    """Read and validate a referential file; ``None`` means the bundled one."""
    if path is None:
        return bundled_referential()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReferentialError(f"{path}: cannot read the referential ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ReferentialError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_referential(_parse_json(text, str(path)), str(path))


def _parse_json(text: str, where: str) -> Any:
    try:
        return loads(text)
    except JSONError as exc:
        place = "" if exc.offset is None else f" at {exc.line_column(text)}"
        raise ReferentialError(f"{where}: {exc.reason}{place}") from None


def parse_referential(document: Any, where: str = "referential") -> Referential:
    """Validate a referential document; raise ReferentialError listing every problem."""
    return _Checker(where).build(document)


class _Checker:
    """Collects every problem with a field path, then raises them all at once."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # -- typed getters: report and return None when the field is unusable ------------

    def obj(
        self, value: Any, path: str, required: set[str], optional: Set[str] = frozenset()
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, found {_kind(value)}")
            return None
        for key in sorted(required - value.keys()):
            self.fail(f"{path}.{key}", "missing")
        for key in sorted(value.keys() - required - optional):
            self.fail(f"{path}.{key}", "unknown field")
        return value

    def text(self, parent: Mapping[str, Any] | None, key: str, path: str) -> str | None:
        if parent is None or key not in parent:
            return None
        value = parent[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{path}.{key}", f"expected a non-empty string, found {_kind(value)}")
            return None
        return value

    def number(
        self, parent: Mapping[str, Any] | None, key: str, path: str, low: int, high: int
    ) -> Fraction | None:
        if parent is None or key not in parent:
            return None
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(f"{path}.{key}", f"expected a number, found {_kind(value)}")
            return None
        if isinstance(value, Decimal) and not value.is_finite():
            self.fail(f"{path}.{key}", f"expected a finite number, found {value}")
            return None
        number = Fraction(value)
        if not low <= number <= high:
            self.fail(f"{path}.{key}", f"{value} is out of range {low}–{high}")
            return None
        return number

    def items(self, parent: Mapping[str, Any] | None, key: str, path: str) -> list[Any]:
        if parent is None or key not in parent:
            return []
        value = parent[key]
        if not isinstance(value, list) or not value:
            self.fail(f"{path}.{key}", f"expected a non-empty array, found {_kind(value)}")
            return []
        return value

    def unique(self, seen: dict[str, str], value: str | None, path: str, what: str) -> None:
        if value is None:
            return
        if value in seen:
            self.fail(path, f"duplicate {what} {value!r} (also at {seen[value]})")
        else:
            seen[value] = path

    # -- the document ----------------------------------------------------------------

    def build(self, doc: Any) -> Referential:
        top = self.obj(
            doc,
            "$",
            {
                "id",
                "version",
                "name",
                "evidenceTypes",
                "domains",
                "competencies",
                "statusThresholds",
                "globalScale",
                "bands",
                "levelRules",
            },
            {"cass", "description"},
        )
        ref_id = self.text(top, "id", "$")
        version = self.text(top, "version", "$")
        name = self.text(top, "name", "$")
        types = self.evidence_types(top)
        competencies, by_uuid = self.competencies(top, types)
        domains, membership = self.domains(top, competencies, by_uuid)
        acquis, partiel = self.thresholds(top)
        scale = self.number(top, "globalScale", "$", 1, 10**6)
        bands = self.bands(top, scale)
        rules = self.level_rules(top, types, domains, bands)

        for cid, path in competencies.items():
            if cid not in membership:
                self.fail(path, f"competency {cid} belongs to no domain")
        if self.problems:
            lines = "\n  ".join(self.problems)
            raise ReferentialError(
                f"{self.where}: invalid referential ({len(self.problems)} problem"
                f"{'s' if len(self.problems) > 1 else ''}):\n  {lines}"
            )

        built = {
            cid: Competency(
                id=cid,
                name=c["name"],
                level=c["level"],
                description=c["description"],
                cass_uuid=c["cassUuid"].lower(),
                required=tuple(c["requiredEvidenceTypes"]),
                domain=membership[cid][0],
                weight=membership[cid][1],
            )
            for cid, c in ((c["id"], c) for c in doc["competencies"])
        }
        return Referential(
            id=ref_id,
            version=version,
            name=name,
            document=doc,
            hash=canonical_hash(doc),
            evidence_types=types,
            domains=tuple(domains),
            competencies=built,
            acquis=acquis,
            partiel=partiel,
            global_scale=scale,
            bands=tuple(bands),
            level_rules=rules,
            _by_uuid={c.cass_uuid: cid for cid, c in built.items()},
        )

    def evidence_types(self, top: Mapping[str, Any] | None) -> dict[str, EvidenceType]:
        types: dict[str, EvidenceType] = {}
        seen: dict[str, str] = {}
        total = Fraction(0)
        for i, item in enumerate(self.items(top, "evidenceTypes", "$")):
            path = f"$.evidenceTypes[{i}]"
            t = self.obj(item, path, {"id", "name", "weight", "cap"}, {"examples"})
            tid = self.text(t, "id", path)
            self.unique(seen, tid, f"{path}.id", "evidence type")
            name = self.text(t, "name", path)
            weight = self.number(t, "weight", path, 0, 100)
            cap = self.number(t, "cap", path, 0, 100)
            if weight is not None and cap is not None and weight > cap:
                self.fail(
                    f"{path}.weight",
                    f"{tid}: weight {show_number(weight)} exceeds its cap {show_number(cap)}",
                )
            if weight is not None:
                total += weight
            if tid and name and weight is not None and cap is not None:
                types[tid] = EvidenceType(tid, name, weight, cap)
        if top is not None and "evidenceTypes" in top and total != 100:
            self.fail("$.evidenceTypes", f"weights sum to {show_number(total)}, not 100")
        return types

    def competencies(
        self, top: Mapping[str, Any] | None, types: Mapping[str, EvidenceType]
    ) -> tuple[dict[str, str], dict[str, str]]:
        paths: dict[str, str] = {}
        by_uuid: dict[str, str] = {}
        for i, item in enumerate(self.items(top, "competencies", "$")):
            path = f"$.competencies[{i}]"
            c = self.obj(
                item,
                path,
                {"id", "name", "level", "description", "cassUuid", "requiredEvidenceTypes"},
                {"typicalEvidence"},
            )
            cid = self.text(c, "id", path)
            if cid is not None and not _COMPETENCY_ID.match(cid):
                self.fail(f"{path}.id", f"{cid!r} is not of the form X.Y")
            elif cid is not None:
                self.unique(paths, cid, f"{path}.id", "competency id")
            self.text(c, "name", path)
            self.text(c, "description", path)
            level = self.text(c, "level", path)
            if level is not None and not _LEVEL.match(level):
                self.fail(f"{path}.level", f"{level!r} is not a CECRL level or range (A2, A2–B1)")
            uuid = self.text(c, "cassUuid", path)
            if uuid is not None:
                if not _UUID.match(uuid.lower()):
                    self.fail(f"{path}.cassUuid", f"{uuid!r} is not a UUID")
                else:
                    self.unique(by_uuid, uuid.lower(), f"{path}.cassUuid", "CaSS uuid")
            for j, tid in enumerate(self.items(c, "requiredEvidenceTypes", path)):
                if tid not in types:
                    self.fail(
                        f"{path}.requiredEvidenceTypes[{j}]", f"unknown evidence type {tid!r}"
                    )
        return paths, by_uuid

    def domains(
        self, top: Mapping[str, Any] | None, competencies: Mapping[str, str], uuids: dict[str, str]
    ) -> tuple[list[Domain], dict[str, tuple[str, Fraction]]]:
        domains: list[Domain] = []
        membership: dict[str, tuple[str, Fraction]] = {}
        seen: dict[str, str] = {}
        total = Fraction(0)
        for i, item in enumerate(self.items(top, "domains", "$")):
            path = f"$.domains[{i}]"
            d = self.obj(item, path, {"id", "name", "weight", "cassUuid", "competencies"})
            did = self.text(d, "id", path)
            self.unique(seen, did, f"{path}.id", "domain id")
            name = self.text(d, "name", path)
            weight = self.number(d, "weight", path, 0, 100)
            total += weight or 0
            uuid = self.text(d, "cassUuid", path)
            if uuid is not None:
                if not _UUID.match(uuid.lower()):
                    self.fail(f"{path}.cassUuid", f"{uuid!r} is not a UUID")
                else:
                    self.unique(uuids, uuid.lower(), f"{path}.cassUuid", "CaSS uuid")
            members: list[str] = []
            for j, member in enumerate(self.items(d, "competencies", path)):
                mpath = f"{path}.competencies[{j}]"
                m = self.obj(member, mpath, {"id", "weight"})
                cid = self.text(m, "id", mpath)
                v = self.number(m, "weight", mpath, 0, 10**6)
                if v is not None and v <= 0:
                    self.fail(f"{mpath}.weight", "a relative weight must be positive")
                if cid is None:
                    continue
                if cid not in competencies:
                    self.fail(f"{mpath}.id", f"unknown competency {cid!r}")
                elif cid in membership:
                    self.fail(
                        f"{mpath}.id",
                        f"competency {cid} is already in domain {membership[cid][0]}",
                    )
                elif did is not None and v is not None:
                    membership[cid] = (did, v)
                members.append(cid)
            if did and name and weight is not None and uuid:
                domains.append(Domain(did, name, weight, uuid.lower(), tuple(members)))
        if top is not None and "domains" in top and total != 100:
            self.fail("$.domains", f"weights sum to {show_number(total)}, not 100")
        return domains, membership

    def thresholds(self, top: Mapping[str, Any] | None) -> tuple[Fraction, Fraction]:
        t = None
        if top is not None and "statusThresholds" in top:
            t = self.obj(top["statusThresholds"], "$.statusThresholds", {"acquis", "partiel"})
        acquis = self.number(t, "acquis", "$.statusThresholds", 0, 100)
        partiel = self.number(t, "partiel", "$.statusThresholds", 0, 100)
        if acquis is not None and partiel is not None and not partiel < acquis:
            self.fail(
                "$.statusThresholds",
                f"partiel ({show_number(partiel)}) must be below acquis ({show_number(acquis)})",
            )
        return acquis, partiel

    def bands(self, top: Mapping[str, Any] | None, scale: Fraction | None) -> list[Band]:
        bands: list[Band] = []
        seen: dict[str, str] = {}
        for i, item in enumerate(self.items(top, "bands", "$")):
            path = f"$.bands[{i}]"
            b = self.obj(item, path, {"level", "min"})
            level = self.text(b, "level", path)
            if level is not None and not _LEVEL_NAME.match(level):
                self.fail(f"{path}.level", f"{level!r} is not a level name (e.g. B2, PRE_A2)")
            self.unique(seen, level, f"{path}.level", "band level")
            low = self.number(b, "min", path, 0, 10**6)
            if low is None or level is None:
                continue
            if i == 0 and low != 0:
                self.fail(f"{path}.min", f"the first band must start at 0, not {show_number(low)}")
            if bands and low <= bands[-1].min:
                self.fail(
                    f"{path}.min",
                    f"bands out of order: {level} starts at {show_number(low)}, not above "
                    f"{bands[-1].level} ({show_number(bands[-1].min)})",
                )
            if scale is not None and low > scale:
                self.fail(
                    f"{path}.min", f"{show_number(low)} is above globalScale {show_number(scale)}"
                )
            bands.append(Band(level, low))
        return bands

    def level_rules(
        self,
        top: Mapping[str, Any] | None,
        types: Mapping[str, EvidenceType],
        domains: list[Domain],
        bands: list[Band],
    ) -> dict[str, tuple[LevelRule, ...]]:
        if top is None or "levelRules" not in top:
            return {}
        table = top["levelRules"]
        if not isinstance(table, dict):
            self.fail("$.levelRules", f"expected an object, found {_kind(table)}")
            return {}
        levels = {b.level for b in bands}
        domain_ids = {d.id for d in domains}
        rules: dict[str, tuple[LevelRule, ...]] = {}
        for level, items in table.items():
            path = f"$.levelRules.{level}"
            if level not in levels:
                self.fail(path, f"unknown level {level!r} (not a band)")
            elif bands and level == bands[0].level and items:
                self.fail(path, "the lowest band cannot carry rules (the cascade must grant)")
            if not isinstance(items, list):
                self.fail(path, f"expected an array of rules, found {_kind(items)}")
                continue
            built: list[LevelRule] = []
            for i, item in enumerate(items):
                rule = self.rule(item, f"{path}[{i}]", types, domain_ids)
                if rule is not None:
                    built.append(rule)
            rules[level] = tuple(built)
        return rules

    def rule(
        self, item: Any, path: str, types: Mapping[str, EvidenceType], domain_ids: set[str]
    ) -> LevelRule | None:
        if not isinstance(item, dict):
            self.fail(path, f"expected an object, found {_kind(item)}")
            return None
        kind = item.get("kind")
        if kind == "minScore":
            r = self.obj(item, path, {"kind", "value"})
            value = self.number(r, "value", path, 0, 10**6)
            return LevelRule(kind, value=value) if value is not None else None
        if kind == "domainMinimum":
            r = self.obj(item, path, {"kind", "domain", "value"})
            domain = self.text(r, "domain", path)
            if domain is not None and domain not in domain_ids:
                self.fail(f"{path}.domain", f"unknown domain {domain!r}")
            value = self.number(r, "value", path, 0, 100)
            ok = domain in domain_ids and value is not None
            return LevelRule(kind, value=value, domain=domain) if ok else None
        if kind == "requiredEvidenceTypes":
            r = self.obj(item, path, {"kind", "types"})
            listed = self.items(r, "types", path)
            for j, tid in enumerate(listed):
                if tid not in types:
                    self.fail(f"{path}.types[{j}]", f"unknown evidence type {tid!r}")
            if all(t in types for t in listed) and listed:
                return LevelRule(kind, types=tuple(listed))
            return None
        self.fail(f"{path}.kind", f"unknown rule kind {kind!r} (known: {', '.join(RULE_KINDS)})")
        return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, int | Decimal | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def show_number(value: Fraction) -> str:
    """A weight or threshold as exact text: ``70``, ``62.5``, or ``1/3`` if not decimal."""
    if value.denominator == 1:
        return str(value.numerator)
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    return f"{Decimal(value.numerator) / Decimal(value.denominator):f}"
