"""The referential: the shipped ceredis-1.1 data, and every rule its loader enforces."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from ceredis.cli import main
from ceredis.errors import ReferentialError
from ceredis.referential import load_referential, parse_referential
from ledger.canonical import canonical

SCORING_8 = {
    "D1": (20, {"1.1": 1, "1.2": 1, "1.3": 1}),
    "D2": (20, {"2.1": 1, "2.2": 1, "2.3": 1}),
    "D3": (25, {"3.1": 1, "3.2": 1, "3.3": 1}),
    "D4": (15, {"4.1": 1, "4.2": 1, "4.3": 1}),
    "D5": (20, {"5.1": 10, "5.2": 15, "5.3": 20, "5.4": 15, "5.5": 20, "5.6": 10, "5.7": 10}),
}
REQUIRED = {
    "1.1": "P1 P2", "1.2": "P2 P3", "1.3": "P2 P3 P4", "2.1": "P1 P2", "2.2": "P2 P3 P4",
    "2.3": "P3 P4", "3.1": "P2 P3", "3.2": "P2 P3 P4", "3.3": "P3 P4", "4.1": "P2 P3",
    "4.2": "P2 P3 P4", "4.3": "P3 P4", "5.1": "P2", "5.2": "P2", "5.3": "P2 P3 P4",
    "5.4": "P2 P3 P4", "5.5": "P3 P4", "5.6": "P4", "5.7": "P3 P4",
}  # fmt: skip


def test_bundled_referential_is_scoring_md_section_8(referential):
    """Domain weights, relative weights and required types are exactly scoring.md §8."""
    assert referential.id == "ceredis-1.1"
    for domain in referential.domains:
        weight, members = SCORING_8[domain.id]
        assert domain.weight == weight
        assert {c: referential.competencies[c].weight for c in domain.competencies} == members
    assert {c: " ".join(x.required) for c, x in referential.competencies.items()} == REQUIRED
    assert {t.id: (t.weight, t.cap) for t in referential.evidence_types.values()} == {
        "P1": (15, 40),
        "P2": (30, 60),
        "P3": (35, 70),
        "P4": (20, 50),
    }
    assert [(b.level, b.min) for b in referential.bands] == [
        ("PRE_A2", 0),
        ("A2", 200),
        ("B1", 300),
        ("B2", 400),
        ("C1", 500),
    ]
    assert (referential.acquis, referential.partiel, referential.global_scale) == (75, 50, 600)


def test_bundled_referential_names_and_uuids(referential):
    """Names, levels and CaSS uuids follow referential.md."""
    c53 = referential.competencies["5.3"]
    assert c53.name == "Analyser la valeur sémantique d’un mode ou d’un temps verbal"
    assert (c53.level, c53.cass_uuid) == ("B2", "32144434-c455-4f52-ae20-aaa759e4448e")
    assert referential.competencies["2.1"].level == "A2–B1"
    assert referential.domains[4].cass_uuid == "a5d0bc76-c455-411b-b038-3940ef0f5eb5"


def test_hash_is_sha256_of_canonical_bytes(referential):
    """The referential's hash is the SHA-256 of its canonical bytes, whatever the layout."""
    import hashlib

    assert referential.hash == hashlib.sha256(canonical(referential.document)).hexdigest()
    again = parse_referential(
        json.loads(json.dumps(referential.document, indent=4), parse_float=Decimal)
    )
    assert again.hash == referential.hash


def edit(path: str, value: object) -> Callable[[dict], None]:
    """A mutation setting the value at a dotted path (list indexes as numbers)."""

    def apply(doc: dict) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


DELETE = object()

BROKEN = {
    "weights do not sum to 100": (
        [edit("evidenceTypes.0.weight", 14)],
        "$.evidenceTypes: weights sum to 99, not 100",
    ),
    "domain weights do not sum to 100": (
        [edit("domains.4.weight", 25)],
        "$.domains: weights sum to 105, not 100",
    ),
    "weight above its cap": (
        [edit("evidenceTypes.0.weight", 45), edit("evidenceTypes.3.weight", -10)],
        "$.evidenceTypes[0].weight: P1: weight 45 exceeds its cap 40",
    ),
    "competency in two domains": (
        [lambda d: d["domains"][0]["competencies"].append({"id": "5.1", "weight": 1})],
        "$.domains[4].competencies[0].id: competency 5.1 is already in domain D1",
    ),
    "competency in no domain": (
        [lambda d: d["domains"][4]["competencies"].pop()],
        "$.competencies[18].id: competency 5.7 belongs to no domain",
    ),
    "duplicate competency id": (
        [edit("competencies.1.id", "1.1")],
        "$.competencies[1].id: duplicate competency id '1.1' (also at $.competencies[0].id)",
    ),
    "duplicate CaSS uuid": (
        [edit("competencies.1.cassUuid", "2e9062e5-c455-48e9-80a2-530108114e3d")],
        "$.competencies[1].cassUuid: duplicate CaSS uuid",
    ),
    "rule naming an unknown domain": (
        [edit("levelRules.C1.2.domain", "D6")],
        "$.levelRules.C1[2].domain: unknown domain 'D6'",
    ),
    "rule naming an unknown evidence type": (
        [edit("levelRules.B2.1.types", ["P3", "P7"])],
        "$.levelRules.B2[1].types[1]: unknown evidence type 'P7'",
    ),
    "required type unknown": (
        [edit("competencies.0.requiredEvidenceTypes", ["P1", "PX"])],
        "$.competencies[0].requiredEvidenceTypes[1]: unknown evidence type 'PX'",
    ),
    "bands out of order": (
        [edit("bands.3.min", 250)],
        "$.bands[3].min: bands out of order: B2 starts at 250, not above B1 (300)",
    ),
    "first band not at 0": (
        [edit("bands.0.min", 10)],
        "$.bands[0].min: the first band must start at 0",
    ),
    "thresholds out of range": (
        [edit("statusThresholds.acquis", 120)],
        "$.statusThresholds.acquis: 120 is out of range 0–100",
    ),
    "thresholds inverted": (
        [edit("statusThresholds.partiel", 80)],
        "$.statusThresholds: partiel (80) must be below acquis (75)",
    ),
    "unknown rule kind": (
        [edit("levelRules.B2.0.kind", "maxScore")],
        "$.levelRules.B2[0].kind: unknown rule kind 'maxScore' (known: minScore, ",
    ),
    "rule for an unknown level": (
        [edit("levelRules.C2", [])],
        "$.levelRules.C2: unknown level 'C2' (not a band)",
    ),
    "rules on the lowest band": (
        [edit("levelRules.PRE_A2", [{"kind": "minScore", "value": 0}])],
        "$.levelRules.PRE_A2: the lowest band cannot carry rules",
    ),
    "missing field": ([edit("domains.2.weight", DELETE)], "$.domains[2].weight: missing"),
    "unknown field": ([edit("levelRule", {})], "$.levelRule: unknown field"),
    "wrong type": (
        [edit("domains.0.weight", "20")],
        "$.domains[0].weight: expected a number, found the string '20'",
    ),
    "boolean as number": (
        [edit("globalScale", True)],
        "$.globalScale: expected a number, found a boolean",
    ),
    "bad competency id": (
        [edit("competencies.0.id", "1-1")],
        "$.competencies[0].id: '1-1' is not of the form X.Y",
    ),
    "bad level": (
        [edit("competencies.0.level", "D4")],
        "$.competencies[0].level: 'D4' is not a CECRL level",
    ),
    "bad uuid": (
        [edit("domains.0.cassUuid", "nope")],
        "$.domains[0].cassUuid: 'nope' is not a UUID",
    ),
    "unknown member": (
        [edit("domains.0.competencies.0.id", "9.9")],
        "$.domains[0].competencies[0].id: unknown competency '9.9'",
    ),
    "zero relative weight": (
        [edit("domains.4.competencies.0.weight", 0)],
        "$.domains[4].competencies[0].weight: a relative weight must be positive",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_referential_is_rejected_naming_the_field(referential, case):
    """Each kind of broken referential is rejected with a message naming field and rule."""
    mutations, expected = BROKEN[case]
    document = copy.deepcopy(dict(referential.document))
    for mutate in mutations:
        mutate(document)
    with pytest.raises(ReferentialError) as caught:
        parse_referential(document, "candidate.json")
    assert str(caught.value).startswith("candidate.json: invalid referential")
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once(referential):
    """Several problems are all listed, with their count."""
    document = copy.deepcopy(dict(referential.document))
    for mutate in BROKEN["bands out of order"][0] + BROKEN["unknown rule kind"][0]:
        mutate(document)
    with pytest.raises(ReferentialError, match=r"invalid referential \(2 problems\)"):
        parse_referential(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{",
            "not valid JSON (Expecting property name enclosed in double quotes) at line 1 column 2",
        ),
        ('{"id": 1, "id": 2}', "key 'id' appears twice"),
        ("[]", "$: expected an object, found an empty array"),
    ],
)
def test_unreadable_referential_files(tmp_path, text, expected):
    """A file that is not a JSON object is rejected with the file name and position."""
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(ReferentialError, match=re.escape(expected)) as caught:
        load_referential(path)
    assert str(path) in str(caught.value)


def write(tmp_path: Path, referential, mutations) -> Path:
    document = copy.deepcopy(dict(referential.document))
    for mutate in mutations:
        mutate(document)
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(document, default=str, ensure_ascii=False))
    return path


def test_cli_validate_rejects_with_reasons(tmp_path, referential, capsys):
    """`referential validate FILE` exits 1 and prints every reason for a broken file."""
    path = write(
        tmp_path, referential, BROKEN["bands out of order"][0] + BROKEN["unknown field"][0]
    )
    assert main(["referential", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "bands out of order" in err and "$.levelRule: unknown field" in err


def test_cli_validate_accepts_the_bundled_one(tmp_path, referential, capsys):
    """`referential validate FILE` exits 0 on a valid file and prints its hash."""
    path = write(tmp_path, referential, [])
    assert main(["referential", "validate", str(path)]) == 0
    assert referential.hash in capsys.readouterr().out


def test_cli_show_prints_the_tables(capsys, monkeypatch):
    """`referential show` prints the weights, the competencies and the level rules."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["referential", "show"]) == 0
    out = capsys.readouterr().out
    for text in ("Evidence types", "Métalinguistique", "5.7", "D5 ≥ 70", "evidence of P3 and P4"):
        assert text in out
