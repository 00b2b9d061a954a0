"""The fast decoder of HTTP bodies, :func:`exactjson.loads_document`, is ``loads`` to the
digit: same values with the same Decimal forms, or the same refusal at the same byte, on
documents made to be awkward (duplicate keys, escaped quotes and colons, keys that look
like numbers, nesting around MAX_DEPTH, long numbers, exponents, trailing zeros, unicode
and surrogate escapes, big integers, BOM, invalid UTF-8, cut text)."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from ceredis import exactjson
from ceredis.exactjson import MAX_DEPTH, MAX_DIGITS, JSONError

_SPACE = st.sampled_from(["", "", " ", "\n", "\t ", "\r\n  "])

number_texts = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),  # 1E+2, 0E-7, -0.00…
    st.tuples(st.integers(0, 999), st.integers(0, 999), st.integers(0, 3)).map(
        lambda t: f"{t[0]}.{t[1]}{'0' * t[2]}"  # trailing zeros: 72.10, 0.460
    ),
    st.tuples(
        st.sampled_from(["1", "-2.5", "0.0", "72.10"]),
        st.sampled_from(["e", "E"]),
        st.sampled_from(["", "+", "-"]),
        st.integers(0, 120),
    ).map(lambda t: f"{t[0]}{t[1]}{t[2]}{t[3]}"),
    st.sampled_from(
        [
            "-0",
            "-0.0",
            "0.0000001",
            "1e400",
            "1e-400",
            "18446744073709551615",  # the largest 64-bit unsigned integer
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "123456789012345678901234567890",
            "NaN",
            "Infinity",
            "-Infinity",
        ]
    ),
    st.integers(95, 105).map(lambda n: "9" * n),
    st.integers(95, 105).map(lambda n: "0." + "0" * n + "1"),
    st.integers(95, 105).map(lambda n: "1" + "0" * n + ".5"),
)
string_texts = st.one_of(
    st.tuples(st.text(max_size=8), st.booleans()).map(
        lambda t: json.dumps(t[0], ensure_ascii=t[1])  # \u escapes, surrogate pairs
    ),
    st.sampled_from(
        [
            '"a\\"b"',
            '"\\\\"',
            '"\\\\\\""',
            '"\\u003a"',
            '"x\\u003Ay"',
            '"\\ud83d\\ude00"',
            '"\\ud800"',
            '"\\udc00x"',
            '"\\/"',
            '"1.50"',
            '"x:1.5"',
            '"[[{"',
            '"]}"',
            '"caf\\u00e9"',
            '"Derni\u00e8re danse"',
            '"\u2028"',
        ]
    ),
)
#: Few keys, so that objects often repeat one; some look like numbers or hold a colon.
keys = st.sampled_from(
    ['"a"', '"b"', '"\u00e9"', '"1.5"', '"1.50"', '"a:b"', '"a\\u003ab"', '"\\"q"', '""']
)


def _array(items: list[str], space: str) -> str:
    return "[" + space + ("," + space).join(items) + space + "]"


def _object(pairs: list[tuple[str, str]], space: str) -> str:
    return "{" + ",".join(f"{space}{k}{space}:{space}{v}" for k, v in pairs) + "}"


def _nest(depth: int, inner: str, kind: str) -> str:
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"k":' * depth + inner + "}" * depth


json_texts = st.recursive(
    st.one_of(number_texts, string_texts, st.sampled_from(["true", "false", "null"])),
    lambda inner: st.one_of(
        st.builds(_array, st.lists(inner, max_size=4), _SPACE),
        st.builds(_object, st.lists(st.tuples(keys, inner), max_size=4), _SPACE),
        st.builds(_nest, st.integers(MAX_DEPTH - 4, MAX_DEPTH + 4), inner, st.sampled_from("[{")),
    ),
    max_leaves=14,
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A JSON text as an HTTP body, sometimes with a BOM, a bad byte, or cut short."""
    data = (draw(_SPACE) + draw(json_texts) + draw(_SPACE)).encode("utf-8")
    change = draw(st.sampled_from(["none"] * 6 + ["bom", "byte", "cut", "surrogate"]))
    if change == "bom":
        data = b"\xef\xbb\xbf" + data
    elif change in ("byte", "surrogate", "cut"):
        at = draw(st.integers(0, len(data)))
        bad = {"byte": b"\xff", "surrogate": b"\xed\xa0\x80", "cut": b""}[change]
        data = data[:at] + bad + (data[at:] if change != "cut" else b"")
    return data


def shape(value: Any) -> Any:
    """*value* with every type and Decimal form shown: ``72.10`` differs from ``72.1``."""
    kind = type(value)
    if kind is dict:
        return ("dict", tuple((key, shape(item)) for key, item in value.items()))
    if kind is list:
        return ("list", tuple(shape(item) for item in value))
    if kind is Decimal:
        return ("Decimal", value.as_tuple())
    return (kind.__name__, value)


def outcome(decoder: Any, data: bytes) -> Any:
    """What *decoder* makes of *data*: the value's shape, or the refusal and its byte."""
    try:
        return shape(decoder(data))
    except JSONError as exc:
        return ("refused", exc.reason, exc.offset)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
@example(b'{"a":1,"a":2,"b":"\\u003a"}')  # the duplicate hidden by an escaped colon
@example(b'{"a" : 72.10 , "b":[0.460, 1E+2, -0.0, 1e-7]}')
@example(b'{"a":"\\ud800"}')
@example(b'{"\\udc00":1}')
@example(b"[18446744073709551616]")
@example(("[" * MAX_DEPTH + "]" * MAX_DEPTH).encode())
@example(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())
@example(b"\xef\xbb\xbf\xef\xbb\xbf{}")
@example(b"[1e99, 1e100]")  # the most integer digits, and one more
@example(b"[0E+99, 0E+100]")
@example(b"[1e-99, 1e-100]")  # the most decimals, and one more
@example(b"[0E-99, 0E-100]")
def test_fast_decoder_is_loads(data):
    """Every body: the value loads gives, form for form, or loads's refusal; and the fast
    path, which loads_document takes on bodies longer than these, gives the same value
    whenever it takes a document."""
    expected = outcome(exactjson.loads, data)
    assert outcome(exactjson.loads_document, data) == expected
    fast = exactjson._fast(data)
    if fast is not None:
        assert shape(fast) == expected


@pytest.mark.parametrize(
    "wrong",
    [
        orjson.loads,  # binary floats, the last of two equal keys
        json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal).decode,  # no limits
    ],
    ids=["orjson", "json-without-checks"],
)
def test_the_property_tells_a_wrong_decoder(wrong):
    """The comparison above can fail: it finds a document two plausible decoders get wrong."""
    differs = find(
        documents(),
        lambda data: outcome(_quiet(wrong), data) != outcome(exactjson.loads, data),
        settings=settings(max_examples=2000, deadline=None, database=None),
    )
    assert outcome(_quiet(wrong), differs) != outcome(exactjson.loads, differs)


def _quiet(decoder: Any) -> Any:
    """*decoder* refusing as loads does: a JSONError (reason and offset ignored)."""

    def decode(data: bytes) -> Any:
        try:
            return decoder(data)
        except (ValueError, TypeError, RecursionError) as exc:
            raise JSONError(f"refused ({type(exc).__name__})") from None

    return decode


def test_real_pages_decode_fast_and_exactly():
    """An xAPI page as the benchmark's LRS serves it: the fast path takes it (no fallback),
    and the scores keep their digits."""
    page = (
        b'{"more":"","statements":[{"id":"s1","result":{"score":{"max":100,"min":0,'
        b'"raw":46.0,"scaled":0.460}},"timestamp":"2026-10-20T10:48:00+02:00"},'
        b'{"id":"s2","result":{"score":{"raw":46,"scaled":0.46}}}]}'
    )
    assert exactjson._fast(page) is not None
    scores = [s["result"]["score"] for s in exactjson.loads_document(page)["statements"]]
    assert [str(s["scaled"]) for s in scores] == ["0.460", "0.46"]
    assert [str(s["raw"]) for s in scores] == ["46.0", "46"]


def test_orjson_nests_as_the_depth_check_assumes():
    """The fast path relies on orjson refusing to nest deeper than 254 levels; an orjson
    that does not would leave every document to loads (correct, but slow: fail here)."""
    assert exactjson._DEPTH_CHECKED


@pytest.mark.parametrize(
    "data",
    [
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH).encode(),
        ('{"k":' * MAX_DEPTH + "0.10" + "}" * MAX_DEPTH).encode(),
        b'{"a":"x\\"y\\\\","b":"\\u00e9\\ud83d\\ude00\\/","c":[18446744073709551615,-0.0]}',
        b' {"a" :\n"09:30:00", "b:c":5, "d":[-7, 1.5e-3]}\r\n',
        b'{"n":' + b"1." + b"0" * (MAX_DIGITS - 2) + b"}",
        b"[1E+2, 0.0000001, 1e99, 1e-99, -0E-7]",
    ],
    ids=[
        "deepest-array",
        "deepest-object",
        "escapes",
        "spaces-colons",
        "longest-number",
        "exponents",
    ],
)
def test_the_fast_path_takes_what_needs_no_second_look(data):
    """No needless fallback to loads on what it accepts at once: the deepest nesting
    allowed, escapes other than a colon's, the longest numbers, exponents."""
    assert shape(exactjson._fast(data)) == shape(exactjson.loads(data))


def test_nan_and_infinity_are_left_to_loads_and_read_as_it_reads_them():
    """Not JSON, yet read as Decimals (the core refuses them by name): the fast decoder
    leaves them to loads."""
    data = b'{"a":NaN,"b":[-Infinity,Infinity]}'
    assert exactjson._fast(data) is None
    assert shape(exactjson.loads_document(data)) == shape(exactjson.loads(data))


number_parts = st.tuples(
    st.sampled_from(["", "-"]),
    st.text("0123456789", min_size=1, max_size=110).map(lambda d: d.lstrip("0") or "0"),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=110).map(lambda d: "." + d)),
    st.one_of(st.just(""), st.tuples(st.sampled_from(["e", "E+", "e-"]), st.integers(0, 250))),
)


@settings(max_examples=3000, deadline=None)
@given(number_parts)
@example(("", "9" * 50, "." + "9" * 50, ""))  # the most digits, each limit at its edge
@example(("-", "9" * 50, "." + "9" * 51, ""))
@example(("", "1", "." + "0" * 98, ("E+", 99)))
@example(("", "1", "", ("e-", 99)))
def test_the_digit_limit_context_reads_numbers_as_decimal_does(parts):
    """_WITHIN_DIGITS reads a number's text to Decimal(text), digit for digit, and raises
    exactly where that Decimal has more than MAX_DIGITS digits (the strict decoder's rule)."""
    sign, whole, fraction, exponent = parts
    text = sign + whole + fraction + ("" if not exponent else f"{exponent[0]}{exponent[1]}")
    expected = Decimal(text)
    try:
        read = exactjson._WITHIN_DIGITS.create_decimal(text)
    except decimal.DecimalException:
        assert exactjson._digits(expected) > MAX_DIGITS
    else:
        assert exactjson._digits(expected) <= MAX_DIGITS
        assert read.as_tuple() == expected.as_tuple()
