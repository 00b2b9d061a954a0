"""Canonical JSON (ledger-canon/1): golden bytes, every refusal, and the decoder's inverse."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import CANON_ID, MAX_SAFE_INTEGER, canonical, canonical_hash
from ledger.decode import check_canonical, decode, is_fast_canonical, parse
from ledger.errors import CanonicalError

# (value, exact canonical bytes). Written by hand from the rules in ledger/canonical.py and
# docs/ledger.md; a change to any of these bytes changes every ledger hash.
GOLDEN: list[tuple[str, Any, bytes]] = [
    ("empty object", {}, b"{}"),
    ("empty array", [], b"[]"),
    ("literals", [True, False, None], b"[true,false,null]"),
    ("keys sorted", {"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ("uppercase before lowercase", {"b": 1, "B": 2, "a": 3}, b'{"B":2,"a":3,"b":1}'),
    ("empty and space keys", {" ": 2, "": 1}, b'{"":1," ":2}'),
    # code point order (UTF-8 byte order), not JCS's UTF-16 order: U+FB01 < U+1F600
    ("fi ligature before emoji", {"😀": 1, "ﬁ": 2}, '{"ﬁ":2,"😀":1}'.encode()),
    ("accents after ascii", {"é": 1, "z": 2, "e": 3}, '{"e":3,"z":2,"é":1}'.encode()),
    ("short escapes", '"\\\b\f\n\r\t', b'"\\"\\\\\\b\\f\\n\\r\\t"'),
    ("other controls as \\u00xx", "\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
    ("DEL and slash are not escaped", "\x7f/", b'"\x7f/"'),
    ("non-ascii as UTF-8", "é€日本", '"é€日本"'.encode()),
    ("astral as UTF-8, not surrogates", "😀𝄞", b'"\xf0\x9f\x98\x80\xf0\x9d\x84\x9e"'),
    ("line separators raw", "\u2028\u2029", '"\u2028\u2029"'.encode()),
    ("decimal keeps its digits", Decimal("540.00"), b"540.00"),
    ("decimal exponent written out", Decimal("1E+2"), b"100"),
    ("negative fraction", Decimal("-0.5"), b"-0.5"),
    ("small exponent written out", Decimal("1.23E-5"), b"0.0000123"),
    ("decimal zero with digits", Decimal("0.000"), b"0.000"),
    ("decimal negative zero", Decimal("-0"), b"-0"),
    ("integers", [0, -1, 42], b"[0,-1,42]"),
    ("largest safe integer", MAX_SAFE_INTEGER, b"9007199254740991"),
    ("smallest safe integer", -MAX_SAFE_INTEGER, b"-9007199254740991"),
    ("tuple is an array", (1, "a"), b'[1,"a"]'),
    (
        "nested",
        {"z": [1, {"b": [], "a": {}}], "a": [[], [[]]], "m": {"y": None, "x": Decimal("60.75")}},
        b'{"a":[[],[[]]],"m":{"x":60.75,"y":null},"z":[1,{"a":{},"b":[]}]}',
    ),
]

REFUSED: list[tuple[str, Any, str]] = [
    ("binary float", 1.0, "binary float"),
    ("float NaN", float("nan"), "binary float"),
    ("float infinity", float("inf"), "binary float"),
    ("Decimal NaN", Decimal("NaN"), "not a finite number"),
    ("Decimal sNaN", Decimal("sNaN"), "not a finite number"),
    ("Decimal +Infinity", Decimal("Infinity"), "not a finite number"),
    ("Decimal -Infinity", Decimal("-Infinity"), "not a finite number"),
    ("int key", {1: "a"}, "not a string"),
    ("None key", {None: 1}, "not a string"),
    ("2**53", 2**53, "outside"),
    ("-2**53", -(2**53), "outside"),
    ("lone surrogate", "a\ud800b", "lone surrogate"),
    ("lone surrogate key", {"\udfff": 1}, "lone surrogate"),
    ("set", {1, 2}, "set is not a JSON value"),
    ("bytes", b"x", "bytes is not a JSON value"),
    ("object", object(), "object is not a JSON value"),
    ("nested float", {"a": [1, {"b": 2.5}]}, "$.a[1].b"),
]


@pytest.mark.parametrize(("value", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden_bytes(value: Any, expected: bytes) -> None:
    """Each golden value encodes to exactly its pinned bytes."""
    assert canonical(value) == expected


@pytest.mark.parametrize(("value", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden_bytes_decode_back(value: Any, expected: bytes) -> None:
    """Each golden encoding is accepted by the decoder and re-encodes to itself."""
    assert canonical(decode(expected)) == expected


def test_canonical_hash_and_id() -> None:
    """canonical_hash is SHA-256 of the canonical bytes, and the encoding has a fixed id."""
    assert canonical_hash({"b": 1, "a": 2}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert CANON_ID == "ledger-canon/1"


@pytest.mark.parametrize(("value", "match"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refusals(value: Any, match: str) -> None:
    """Values without a canonical encoding raise CanonicalError naming the problem."""
    with pytest.raises(CanonicalError, match=match.replace("$", r"\$").replace("[", r"\[")):
        canonical(value)


def test_refusal_is_a_value_error() -> None:
    """CanonicalError is also a ValueError, for callers that catch that."""
    with pytest.raises(ValueError, match="binary float"):
        canonical(0.5)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"b":1,"a":2}', "not canonical at byte 2"),
        (b'{"a": 1}', "not canonical at byte 5"),
        (b'{"a":1} ', "not canonical at byte 7"),
        (b'{"a":1,"a":1}', "duplicate object key 'a'"),
        (b'{"a":"\\u0041"}', "not canonical at byte 6"),
        (b'{"a":"\\/"}', "not canonical"),
        (b'{"a":"\\u001F"}', "not canonical"),
        (b'["\\ud83d\\ude00"]', "not canonical"),
        (b'["\\ud800"]', "lone surrogate"),
        (b"[1e5]", "exponent"),
        (b"[1E+16]", "exponent"),
        (b"[NaN]", "NaN is not a JSON number"),
        (b"[-Infinity]", "-Infinity is not a JSON number"),
        (b"[1.0", "not JSON"),
        (b'["\xff"]', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting is too deep"),
    ],
)
def test_decode_refuses_non_canonical(data: bytes, match: str) -> None:
    """decode() accepts only exact canonical bytes and says where they differ."""
    with pytest.raises(CanonicalError, match=match):
        decode(data)
    with pytest.raises(CanonicalError):
        check_canonical(data)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"540.00", Decimal("540.00")),
        (b"-0", Decimal("-0")),
        (b"-0.0", Decimal("-0.0")),
        (b"9007199254740991", MAX_SAFE_INTEGER),
        (b"9007199254740992", Decimal("9007199254740992")),
        (b"123456789012345678901234567890", Decimal("123456789012345678901234567890")),
        (b"-15", -15),
    ],
)
def test_decode_numbers_keep_their_text(data: bytes, value: Any) -> None:
    """Numbers decode to the value whose canonical text is the stored text."""
    decoded = decode(data)
    assert decoded == value and type(decoded) is type(value)
    assert canonical(decoded) == data


def test_decode_keeps_decimal_digits_in_objects() -> None:
    """A body with fixed two-decimal scores round-trips byte for byte through decode."""
    data = b'{"scores":[60.75,540.00,0.10],"total":100.00}'
    body = decode(data)
    assert body["scores"][1] == Decimal("540.00") and str(body["total"]) == "100.00"
    assert canonical(body) == data


def test_parse_is_lenient_about_layout() -> None:
    """parse() reads any JSON layout into canonical values (used for bodies given by hand)."""
    assert canonical(parse(b'{ "b" : 1.50,\n "a" : [ ] }')) == b'{"a":[],"b":1.50}'


# Values the canonical encoder takes: the property tests draw from these.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=2, max_value=10**9, min_value=-(10**9)
    )
    | st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: abs(d.adjusted()) < 40)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decode_inverts_canonical(value: Any) -> None:
    """decode(canonical(v)) re-encodes to the same bytes, which any JSON parser reads."""
    data = canonical(value)
    assert canonical(decode(data)) == data
    assert decode(data) == json.loads(data, parse_float=Decimal)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=8), st.randoms())
def test_key_order_does_not_matter(obj: dict[str, int], rnd: Any) -> None:
    """Insertion order of keys never changes the bytes."""
    items = list(obj.items())
    rnd.shuffle(items)
    assert canonical(dict(items)) == canonical(obj)


@settings(max_examples=400, deadline=None)
@given(json_values, st.data())
def test_fast_path_never_accepts_what_the_slow_path_refuses(
    value: Any, data: st.DataObject
) -> None:
    """Any byte edit of a canonical document: if the fast path says canonical, it is."""
    doc = bytearray(canonical(value))
    position = data.draw(st.integers(0, len(doc)))
    edit = data.draw(st.sampled_from(["insert", "replace", "delete"]))
    byte = data.draw(st.sampled_from(b' \t\n"\\,:{}[]0123456789.+-eEabtrufnl\x00\xc3\xa9'))
    if edit == "insert":
        doc.insert(position, byte)
    elif position < len(doc):
        if edit == "replace":
            doc[position] = byte
        else:
            del doc[position]
    mutated = bytes(doc)
    if is_fast_canonical(mutated):
        assert canonical(parse(mutated)) == mutated


@pytest.mark.parametrize(
    "data",
    [
        b'{"D2":1,"D1":1}',  # keys differing only in digits, swapped
        b'{"10":1,"1":1}',
        b'{"1.2":60.75,"1.1":60.75}',
        b'{"a":1,"a":2}',  # duplicate keys
        b'{"a":[1e+16]}',  # an exponent written the way orjson writes it
        b'{"a":1.5e+300}',
        b'{"a":1e-7}',
        b'{"a": 1}',
    ],
)
def test_fast_path_refuses_tricky_documents(data: bytes) -> None:
    """Swapped digit-only keys, duplicates, orjson-style exponents are never 'fast canonical'."""
    assert not is_fast_canonical(data)
    with pytest.raises(CanonicalError):
        check_canonical(data)


def test_fast_path_takes_typical_bodies() -> None:
    """A typical result body (two-decimal scores, text, nesting) is decided by the fast path."""
    body = {
        "agentId": "agent-0001",
        "scores": {"1.1": Decimal("60.70"), "1.10": Decimal("100.00")},
        "reasons": ["tous les domaines ≥ 50", "e-learning"],
        "n": 12,
    }
    assert is_fast_canonical(canonical(body))


def test_a_fragment_is_embedded_as_is() -> None:
    """A part encoded earlier and wrapped in Fragment gives the same bytes as encoding all."""
    from ledger.canonical import Fragment

    part = {"b": [1, Decimal("2.50")], "a": "é"}
    whole = {"z": part, "y": None}
    assert canonical({**whole, "z": Fragment(canonical(part))}) == canonical(whole)
