"""The typed fast lane of the xAPI source (``ceredis.sources.xapi_typed``) delivers what
the general decoder and mapping deliver, page for page: the same records, Decimal forms
and order, and it never takes a page the strict decoder would refuse or read otherwise."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ceredis.exactjson import JSONError, loads_document
from ceredis.sources import xapi_typed
from ceredis.sources.xapi import pages_evidence
from ceredis.sources.xapi_mapping import (
    COMPETENCY,
    CONTEXT,
    EVIDENCE_ID,
    EVIDENCE_TYPE,
    RAW_SCORE_TEXT,
    VALIDATOR,
)
from doubles.xapi_fixtures import SCORED
from ledger.canonical import CanonicalError, canonical
from tests.xapi.test_mapping_fast import HOME, VOIDED, agents, outcome, statements, texts

#: Statements mostly of the common shape, each field sometimes odd.
common_scores = st.fixed_dictionaries(
    {
        "raw": st.one_of(
            st.integers(-5, 150),
            st.decimals(-1, 101, places=2, allow_nan=False),
            st.sampled_from(["72.10", True, None, [Decimal("1.50")]]),
        )
    },
    optional={
        "min": st.sampled_from([0, 0, Decimal("0.0"), 20, -1, False, "0"]),
        "max": st.sampled_from([100, 100, Decimal("100.0"), 0, 50, "100"]),
        "scaled": st.decimals(0, 1, places=4, allow_nan=False),
    },
)
common_results = st.fixed_dictionaries(
    {"score": common_scores},
    optional={
        "extensions": st.fixed_dictionaries({}, optional={RAW_SCORE_TEXT: texts}),
        "success": st.booleans(),
    },
)
common_extensions = st.fixed_dictionaries(
    {},
    optional={
        EVIDENCE_ID: st.sampled_from(["e1", "e2", ""]),
        EVIDENCE_TYPE: st.sampled_from(["P1", "P4"]),
        COMPETENCY: st.sampled_from(["1.1", "5.3", ""]),
        CONTEXT: st.just("La Bohème"),
        VALIDATOR: st.just("teacher:chloe"),
        "https://example.org/other": st.just("x"),
    },
)
common_timestamps = st.sampled_from(
    [
        "2026-10-01T09:30:00+02:00",
        "2026-10-01T07:30:00Z",
        "2026-10-01T03:30:00-04:00",
        "2026-10-01T07:30:00.250+00:00",
        "2026-13-45T99:00:00Z",
    ]
)
common_statements = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["s1", "s2", "s3", "s4"]),
        "actor": st.one_of(
            st.fixed_dictionaries(
                {
                    "objectType": st.just("Agent"),
                    "account": st.fixed_dictionaries(
                        {"homePage": st.sampled_from([HOME, "https://other.example/"])},
                        optional={"name": st.sampled_from(["L1", ""])},
                    ),
                }
            ),
            agents,
        ),
        "verb": st.sampled_from([SCORED, SCORED, VOIDED]),
        "timestamp": common_timestamps,
    },
    optional={
        "object": st.fixed_dictionaries(
            {"id": st.sampled_from(["https://ceredis.net/c/1.1", ""])},
            optional={"objectType": st.sampled_from(["Activity", "StatementRef"])},
        ),
        "result": common_results,
        "context": st.fixed_dictionaries(
            {},
            optional={"extensions": common_extensions, "registration": st.just("reg-1")},
        ),
        "stored": st.just("2026-10-02T00:00:00Z"),
        "version": st.just("1.0.3"),
    },
)
pages = st.lists(
    st.lists(st.one_of(common_statements, common_statements, statements), max_size=5),
    min_size=1,
    max_size=3,
)


def plain(value: Any) -> Any:
    """*value* with mappings as dicts and binary floats as their shortest Decimal."""
    if isinstance(value, dict | MappingProxyType):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return Decimal(repr(value)) if type(value) is float else value


def page_bytes(found: list[Any], more: str | None = None) -> bytes:
    """A StatementResult holding *found*, as an LRS would send it."""
    body: dict[str, Any] = {"statements": plain(found)}
    if more is not None:
        body["more"] = more
    try:
        return canonical(body)
    except CanonicalError:  # NaN, infinities: no JSON text holds them
        assume(False)
        raise


def forms(value: Any) -> Any:
    """*value* with types and Decimal forms shown, whatever the order of keys."""
    if isinstance(value, dict):
        return sorted((k, forms(v)) for k, v in value.items())
    if isinstance(value, list):
        return [forms(v) for v in value]
    return (type(value).__name__, value.as_tuple() if type(value) is Decimal else value)


def general(data: bytes) -> Any:
    """The page as the general decoder reads it, or the error it raises."""
    try:
        return loads_document(data)
    except JSONError as exc:
        return exc


def read(data: bytes) -> Any:
    """The page as the source reads it: typed when common, else the general way."""
    return xapi_typed.decode_page(data) or general(data)


@settings(max_examples=1500, deadline=None)
@given(pages)
def test_typed_pages_deliver_what_the_general_way_delivers(found):
    """Per learner: every page typed, or some typed and some not, or none; the same
    records in the same order as the general decoder and mapping give."""
    encoded = [page_bytes(page) for page in found]
    general_pages = [general(data) for data in encoded]
    assume(not any(isinstance(page, JSONError) for page in general_pages))
    expected = outcome(pages_evidence, general_pages, HOME)
    assert outcome(pages_evidence, [read(data) for data in encoded], HOME) == expected


@settings(max_examples=2000, deadline=None)
@given(common_statements)
def test_each_common_statement_maps_as_the_general_way(statement):
    """One statement alone, where the fast lane's field rules are tried hardest."""
    data = page_bytes([statement])
    expected = outcome(pages_evidence, [general(data)], HOME)
    assert outcome(pages_evidence, [read(data)], HOME) == expected


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.one_of(common_statements, statements), max_size=5))
def test_a_typed_page_holds_what_the_general_decoder_reads(found):
    """Typed, a page's statements are the general decoder's, key for key and Decimal
    form for form; a page the general decoder refuses is never typed."""
    data = page_bytes(found, more="/xAPI/statements?page=2")
    page = xapi_typed.decode_page(data)
    if page is not None:
        body = loads_document(data)
        assert forms(xapi_typed.as_general(page)) == forms(body["statements"])
        assert page.more == body["more"]


COMMON = (
    b'{"statements":[{"id":"s1","actor":{"objectType":"Agent","account":{"homePage":'
    b'"https://ceredis.net/learners","name":"L1"}},"verb":{"id":'
    b'"http://adlnet.gov/expapi/verbs/scored"},"timestamp":"2026-10-01T07:30:00Z",'
    b'"result":{"score":{"raw":72.10,"min":0,"max":100}},"context":{"extensions":'
    b'{"https://ceredis.net/xapi/extensions/evidence-type":"P1"}}}],"more":""}'
)


def test_the_common_page_is_typed():
    """The shape every test below alters is taken by the fast lane, as it stands."""
    page = xapi_typed.decode_page(COMMON)
    assert page is not None
    assert pages_evidence([page], HOME)[0].fields["rawScore"].as_tuple() == (0, (7, 2, 1, 0), -2)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"timestamp":', b'"timestamp":"2026-10-01T07:31:00Z","timestamp":'),
        (b'"raw":72.10', b'"raw":72.10,"raw":73'),
        (b'{"id":"s1"', b'{"id":"s0","id":"s1"'),
        (b'"more":""', b'"more":"","more":"x"'),
    ],
    ids=["timestamp", "raw", "id", "more"],
)
def test_a_duplicate_key_is_never_typed(old, new):
    """The decoder keeps the last of duplicate keys; the strict one refuses them."""
    data = COMMON.replace(old, new, 1)
    assert data != COMMON
    assert xapi_typed.decode_page(data) is None
    assert isinstance(general(data), JSONError)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"raw":72.10', b'"raw":1e2'),  # 1E+2: the strict decoder's to read
        (b'"raw":72.10', b'"raw":' + b"1" * 101),  # too many digits: refused
        (b'"name":"L1"', b'"name":"L\\u003a1"'),  # an escaped colon
        (b'"name":"L1"', b'"name":"L\\ud83d\\ude00"'),  # a surrogate pair
        (b'"verb":{', b'"verb":{"display":{"en":"a","en":"b"},'),  # duplicate, nested
        (b'"verb":{', b'"attachments":[],"verb":{'),  # a field outside the shape
        (b'"raw":72.10', b'"raw":"72.10"'),  # a value of another type
        (b'"max":100', b'"max":100.0'),  # another spelling of the usual scale
        (b'"raw":72.10', b'"raw":' + b"[" * 5000 + b"]" * 5000),  # deeper than msgspec goes
    ],
)
def test_what_the_fast_lane_cannot_vouch_for_goes_the_general_way(old, new):
    data = COMMON.replace(old, new, 1)
    assert data != COMMON
    assert xapi_typed.decode_page(data) is None


#: Bytes a mutation may write: JSON's punctuation, digits, escapes, invalid UTF-8.
FRAGMENTS = [b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"\\u003a", b"\\ud800", b"0",
             b"1e400", b"-", b".", b"null", b"true", b"\xff", b"\xc3", b" ", b'"x":1']  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(COMMON)), st.integers(0, 3), st.sampled_from(FRAGMENTS)),
        min_size=1,
        max_size=4,
    )
)
def test_mangled_pages_never_raise_and_typed_ones_read_as_the_strict_decoder_reads(edits):
    """Fuzz: bytes a server could send. The fast lane answers a page or None, never an
    exception; a page it takes (about 1 in 20 here) is one the strict decoder accepts,
    with the same values."""
    data = COMMON
    for at, cut, fragment in edits:
        data = data[:at] + fragment + data[at + cut :]
    page = xapi_typed.decode_page(data)
    if page is not None:
        body = general(data)
        assert not isinstance(body, JSONError)
        assert forms(xapi_typed.as_general(page)) == forms(body["statements"])
