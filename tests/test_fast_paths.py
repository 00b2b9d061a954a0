"""The lean exact paths agree with the general ones they stand for: integer scoring with
the Fraction scoring it replaced, the fast canonical encoder with ``ledger.canonical``."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceredis import evidence as evidence_module
from ceredis import exactjson
from ceredis.evidence import Evidence
from ceredis.exactjson import JSONError
from ceredis.outcome import Status
from ceredis.referential import Referential, bundled_referential
from ceredis.scoring import score
from ledger.canonical import Fragment, canonical, fast_canonical
from ledger.errors import CanonicalError
from tests.reference_scoring import reference_scores

REFERENTIAL = bundled_referential()
TYPES = sorted(REFERENTIAL.evidence_types)
COMPETENCIES = sorted(REFERENTIAL.competencies)


@st.composite
def raw_scores(draw: st.DrawFn) -> Decimal:
    """0–100 with 0 to 40 decimals (exact text, as a JSON number is read)."""
    places = draw(st.integers(0, 40))
    units = draw(st.integers(0, 100 * 10**places))
    return Decimal(f"{units}E-{places}")


@st.composite
def evidence_lists(draw: st.DrawFn) -> list[Evidence]:
    items = draw(
        st.lists(st.tuples(st.sampled_from(COMPETENCIES), st.sampled_from(TYPES), raw_scores()))
    )
    return [
        Evidence(f"e{i}", "L1", cid, etype, value, "2026-01-01T00:00:00Z")
        for i, (cid, etype, value) in enumerate(items)
    ]


weights = st.fractions(min_value=Fraction(1, 997), max_value=100, max_denominator=997)


@st.composite
def referentials(draw: st.DrawFn) -> Referential:
    """The bundled referential, or one with arbitrary positive rational weights."""
    if draw(st.booleans()):
        return REFERENTIAL
    shares = [draw(weights) for _ in TYPES]
    types = {
        t: dataclasses.replace(kind, weight=share * 100 / sum(shares))
        for (t, kind), share in zip(REFERENTIAL.evidence_types.items(), shares, strict=True)
    }
    competencies = {
        cid: dataclasses.replace(c, weight=draw(weights))
        for cid, c in REFERENTIAL.competencies.items()
    }
    domains = tuple(dataclasses.replace(d, weight=draw(weights)) for d in REFERENTIAL.domains)
    return dataclasses.replace(
        REFERENTIAL,
        evidence_types=types,
        competencies=competencies,
        domains=domains,
        global_scale=draw(weights) * 6,
    )


def shown(value: object) -> object:
    """Decimals by their text, so ``21.0`` and ``21.00`` differ."""
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    return str(value) if isinstance(value, Decimal) else value


@settings(max_examples=300, deadline=None)
@given(evidence_lists(), referentials())
def test_integer_scoring_equals_fraction_scoring(evidence, referential):
    """Scores, statuses, domain and global scores: digit for digit those of Fractions."""
    fast = score(evidence, referential)
    expected = reference_scores(evidence, referential)
    assert shown(fast["ceredisScore"]) == shown(expected["ceredisScore"])
    assert shown(fast["domainScores"]) == shown(expected["domainScores"])
    assert {
        cid: {"score": str(c["score"]), "status": c["status"]}
        for cid, c in fast["competencies"].items()
    } == shown(expected["competencies"])


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(),
    st.text(),
    st.sampled_from([Status.OK, Status.ERROR]),
    st.builds(Fragment, st.sampled_from([b"{}", b"[1,2]", b'"\xc3\xa9"', b"60.75"])),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), inner, max_size=3),
    ),
    max_leaves=30,
)


def encoded(encoder, value: object) -> bytes | str:
    """The bytes, or the refusal's message."""
    try:
        return encoder(value)
    except CanonicalError as exc:
        return f"refused: {exc}"


@settings(max_examples=500, deadline=None)
@given(json_like)
def test_fast_encoder_equals_general_encoder(value):
    """Every value: the same bytes, or the same refusal."""
    assert encoded(fast_canonical, value) == encoded(canonical, value)


@settings(max_examples=100, deadline=None)
@given(evidence_lists())
def test_fast_encoder_on_record_shapes(evidence):
    """The shape the engine emits most: a record whose inputs are normalised evidence."""
    result = score(evidence, REFERENTIAL)
    record = {
        "agentId": "L1",
        "status": Status.OK,
        "inputs": {"evidence": [e.to_json() for e in evidence]},
        "result": result,
    }
    assert fast_canonical(record) == canonical(record)


number_texts = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e400", "1E2", "-0.5", "72.10", "0.000", "NaN", "-Infinity", "1.5e-3"]),
    st.integers(95, 105).map(lambda n: "9" * n),
    st.integers(95, 105).map(lambda n: "0." + "0" * n + "1"),
)
string_texts = st.one_of(
    st.text(max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(['"\\ud800"', '"[[[{"', '"\\"]"', '"3e4f"']),
)
json_texts = st.recursive(
    st.one_of(number_texts, string_texts, st.sampled_from(["true", "false", "null"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(["a", "b", "c", "é"]), inner), max_size=4).map(
            lambda pairs: "{" + ",".join(f'"{k}": {v}' for k, v in pairs) + "}"
        ),
        st.tuples(st.integers(95, 105), inner).map(lambda d: "[" * d[0] + d[1] + "]" * d[0]),
        inner.map(lambda text: text[: len(text) // 2]),  # cut: not JSON
    ),
    max_leaves=12,
)


def decoded(decoder, text: str, mark: bool) -> str:
    """The value's repr (Decimal digits and types shown), or the refusal and its offset."""
    try:
        return repr(decoder(text, mark=mark))
    except JSONError as exc:
        return f"refused: {exc.reason} at {exc.offset}"


@settings(max_examples=600, deadline=None)
@given(json_texts, st.booleans())
def test_fast_decoder_equals_strict_decoder(text, mark):
    """Same values to the digit, or the same refusal at the same byte: duplicate keys,
    nesting past MAX_DEPTH, numbers past MAX_DIGITS, NaN, lone surrogates, cut text."""
    assert decoded(exactjson.loads, text, mark) == decoded(strict_loads, text, mark)
    if not mark:
        each = decoded(lambda t, mark: exactjson.loads_each([t, t])[1], text, mark)
        assert each == decoded(strict_loads, text, mark)


def strict_loads(text: str, *, mark: bool) -> object:
    return exactjson._strict(text, mark)


field_values = {
    "evidenceId": st.one_of(st.text(max_size=6), st.just("e1"), st.none(), st.integers()),
    "agentId": st.sampled_from(["L1", "L2", " ", "", "L1\u200b", "Lé", None, 1]),
    "competencyId": st.one_of(st.sampled_from([*COMPETENCIES[:3], "9.9", " 1.1", ""]), st.none()),
    "evidenceType": st.sampled_from([*TYPES, "P9", None, 1]),
    "rawScore": st.one_of(
        raw_scores(),
        st.integers(-5, 105),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.sampled_from(["72", {"$number": "NaN"}]),
    ),
    "timestamp": st.sampled_from(
        ["2026-10-01T09:30:00+02:00", "2026-10-01T09:30:00.250Z", "2026-10-01", "x", None, 5]
    ),
    "context": st.one_of(st.none(), st.text(max_size=4), st.integers()),
    "validator": st.one_of(st.none(), st.text(max_size=4), st.just({"$unreadable": "deep"})),
    "extra": st.one_of(st.text(max_size=3), st.just({"$unreadable": "a number of 300 digits"})),
}


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    """A valid record with a few fields changed to odd values or left out."""
    fields: dict[str, object] = {
        "evidenceId": "e1",
        "agentId": "L1",
        "competencyId": COMPETENCIES[0],
        "evidenceType": TYPES[0],
        "rawScore": draw(raw_scores()),
        "timestamp": "2026-10-01T09:30:00+02:00",
    }
    for name in draw(st.lists(st.sampled_from(sorted(field_values)), max_size=3)):
        if draw(st.booleans()):
            fields[name] = draw(field_values[name])
        else:
            fields.pop(name, None)
    return fields


@settings(max_examples=500, deadline=None)
@given(records())
def test_plainly_valid_records_are_those_the_full_check_accepts(fields):
    """The quick check accepts only what the full check accepts, and builds the same evidence."""
    quick = evidence_module._plainly_valid("L1", fields, REFERENTIAL)
    if quick is not None:
        assert evidence_module._check("L1", fields, REFERENTIAL) == (quick, [])


def reference_timestamp(value: str) -> str:
    """The UTC text the validator first wrote, through strftime."""
    utc = datetime.fromisoformat(value).astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)), offsets)
def test_timestamps_in_utc_as_strftime_wrote_them(moment, offset):
    """Every instant, every offset, years below 1000 included: the same UTC text."""
    text = moment.replace(tzinfo=offset).isoformat()
    assert evidence_module._timestamp(text) == (reference_timestamp(text), None)


def _quick_and_full_timestamps(text: str) -> None:
    assert evidence_module._utc_text(text) == evidence_module._timestamp(text)[0]


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([*range(-23, 24), None]),
    st.integers(0, 59),
)
def test_whole_hour_offsets_take_the_cached_hour(moment, hours, minute):
    """The shortcut for ``…T HH:MM:SS`` with ``Z`` or a whole-hour offset writes what the
    full conversion writes (dates and hours crossing, years below 1000 included)."""
    text = moment.replace(microsecond=0, minute=minute).isoformat()
    text += "Z" if hours is None else f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    _quick_and_full_timestamps(text)
    _quick_and_full_timestamps(text)  # the second time from the cache


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789-+:TZ. x٣", min_size=18, max_size=27))
def test_the_timestamp_shortcut_never_accepts_what_the_full_check_refuses(text):
    """Odd texts near the common form (leap seconds, hour 24, other digits, spaces…)."""
    _quick_and_full_timestamps(text)


def test_the_timestamp_shortcut_on_texts_at_its_edges():
    for text in (
        "2026-10-20T10:48:60+02:00",
        "2026-10-20T10:60:00+02:00",
        "2026-10-20T24:00:00+02:00",
        "2026-10-20T10:48:00+24:00",
        "2026-10-20T10:48:00+02:30",
        "2026-10-20T10:48:00+0200",
        "2026-10-20 10:48:00+02:00",
        "0001-01-01T00:30:00+02:00",
        "9999-12-31T23:59:59-05:00",
        "2026-02-29T10:00:00Z",
        "2026-10-20T10:4\uff18:00+02:00",
    ):
        _quick_and_full_timestamps(text)


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)


@st.composite
def any_evidence(draw: st.DrawFn) -> Evidence:
    """Evidence with any text in its fields (controls, quotes, non-ASCII) and any score."""
    return Evidence(
        draw(texts),
        draw(texts),
        draw(st.sampled_from(COMPETENCIES)),
        draw(st.sampled_from(TYPES)),
        draw(raw_scores()).normalize(),
        draw(st.sampled_from(["2026-10-01T07:30:00Z", "0999-01-01T00:00:00.5Z"])),
        draw(st.one_of(st.none(), texts)),
        draw(st.one_of(st.none(), texts)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(any_evidence(), max_size=5))
def test_evidence_inputs_written_straight_are_the_canonical_ones(evidence):
    from ceredis.record import evidence_inputs

    expected = fast_canonical({"evidence": [e.to_json() for e in evidence]})
    assert canonical({"inputs": evidence_inputs(evidence)}) == b'{"inputs":' + expected + b"}"


def test_evidence_inputs_leave_a_lone_surrogate_to_the_general_encoder():
    from ceredis.record import evidence_inputs

    lone = Evidence("e1", "L1", COMPETENCIES[0], TYPES[0], Decimal(1), "t", "\ud800")
    with pytest.raises(CanonicalError):
        canonical(evidence_inputs([lone]))


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=4), st.booleans(), st.sampled_from(["L1", "Lé", " "]))
def test_records_as_delivered_score_as_their_submitted_forms(fields, again, learner):
    """The one-pass path gives the very result and ledger inputs of ``submitted`` →
    ``validate`` (or leaves the learner to it), duplicates, invalid records and learner
    ids that are not plain ASCII included."""
    from ceredis.evidence import RawEvidence, plain_evidence, submitted, validate
    from ceredis.record import encode_record, score_delivered, score_learner

    fields = [{**f, "agentId": learner} if f.get("agentId") == "L1" else f for f in fields]
    raws = [RawEvidence(f, f"line {i}") for i, f in enumerate(fields, start=1)]
    if again and raws:
        raws.append(raws[0])  # the same record twice is one piece of evidence
    forms = [submitted(r) for r in raws]
    plain = plain_evidence(learner, raws, REFERENTIAL)
    if plain is not None:
        assert (plain, []) == validate(learner, forms, REFERENTIAL)
    fast = score_delivered(learner, raws, REFERENTIAL, engine_version="t")
    full = score_learner(learner, forms, REFERENTIAL, engine_version="t")
    assert encode_record(learner, *fast) == encode_record(learner, *full)


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), max_size=4), st.booleans(), st.sampled_from(["L1", "Lé", " "]))
def test_prechecked_evidence_in_the_referential_is_plain_evidence(fields, again, learner):
    """Judging records once without the referential (an evidence index), then checking the
    referential (a run), keeps exactly what the one-pass check keeps."""
    from ceredis.evidence import RawEvidence, in_referential, plain_evidence, prechecked_evidence

    fields = [{**f, "agentId": learner} if f.get("agentId") == "L1" else f for f in fields]
    raws = [RawEvidence(f, f"line {i}") for i, f in enumerate(fields, start=1)]
    if again and raws:
        raws.append(raws[0])
    prechecked = prechecked_evidence(learner, raws)
    admitted = prechecked if prechecked and in_referential(prechecked, REFERENTIAL) else None
    assert admitted == plain_evidence(learner, raws, REFERENTIAL)


@settings(max_examples=300, deadline=None)
@given(st.lists(any_evidence(), max_size=5), st.sampled_from(["L1", "Lé"]))
def test_evidence_rows_read_back_digit_for_digit(evidence, learner):
    """The index's rows give back the evidence, each score with its own exponent."""
    import orjson

    from ceredis.evidence import evidence_from_rows, evidence_rows

    evidence = [e._replace(agent_id=learner) for e in evidence]
    back = evidence_from_rows(learner, orjson.loads(orjson.dumps(evidence_rows(evidence))))
    assert back == evidence
    assert [str(e.raw_score) for e in back] == [str(e.raw_score) for e in evidence]
