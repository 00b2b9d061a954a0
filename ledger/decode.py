"""Canonical bytes back to values, and the check that bytes are exactly canonical.

The inverse of :func:`ledger.canonical.canonical`: ``canonical(decode(b)) == b`` for every
``b`` that :func:`decode` accepts, and it accepts nothing else. Numbers come back as the
value that re-encodes to the same text: an integer within ±(2**53 − 1) as ``int``; any
other integer, ``-0``, and every number with a fraction as :class:`decimal.Decimal` with its
own digits (``540.00`` stays ``Decimal("540.00")``). Exponents are refused: the canonical
form never writes one, and ``1e999999999`` would expand to a billion digits.

The check has two paths. The slow one parses, re-encodes and compares (about 40 µs for a
1 KB object). The fast one, taken when orjson is installed and the bytes hold no backslash,
decides "canonical" with C-speed steps; whenever it cannot, the slow path decides.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ledger.canonical import MAX_SAFE_INTEGER, canonical
from ledger.errors import CanonicalError

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    orjson = None  # type: ignore[assignment]

__all__ = ["check_canonical", "decode", "parse"]


def decode(data: bytes) -> Any:
    """Parse canonical JSON bytes; raise CanonicalError if they are not exactly canonical."""
    if is_fast_canonical(data):
        return parse(data)
    value = parse(data)
    _compare(canonical(value), data)
    return value


def check_canonical(data: bytes) -> None:
    """Raise CanonicalError, naming the first differing byte, unless *data* is canonical."""
    if not is_fast_canonical(data):
        _compare(canonical(parse(data)), data)


def parse(data: bytes) -> Any:
    """Parse JSON bytes into the values canonical() takes (Decimal numbers, strict keys)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise CanonicalError(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise CanonicalError("not canonical: nesting is too deep to check") from None


def _parse_int(text: str) -> int | Decimal:
    if len(text) < 16 and text != "-0":  # at most 15 digits: always a safe integer
        return int(text)
    number = Decimal(text)
    if text != "-0" and -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return int(number)
    return number


def _parse_float(text: str) -> Decimal:
    if "e" in text or "E" in text:
        raise CanonicalError(f"number {text} has an exponent; canonical numbers are fixed-point")
    return Decimal(text)


def _parse_constant(name: str) -> Any:
    raise CanonicalError(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise CanonicalError(f"duplicate object key {key!r}")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_parse_float,
    parse_int=_parse_int,
    parse_constant=_parse_constant,
    object_pairs_hook=_object,
)


def _compare(expected: bytes, found: bytes) -> None:
    if expected == found:
        return
    i = next((i for i, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b), None)
    if i is None:
        i = min(len(expected), len(found))
    raise CanonicalError(
        f"not canonical at byte {i}: expected {expected[i : i + 24]!r}, found {found[i : i + 24]!r}"
    )


# The fast path. T is canonical iff T == canonical(parse(T)). With orjson, for T free of
# backslashes (so every string is raw, as canonical() writes it): V = loads(T) and
# S = dumps(V, sorted keys), orjson's re-encoding, with sorted keys and no whitespace.
#   (1) T == S and S writes no float with an exponent: T is canonical, since any JSON
#       number without an exponent is the canonical text of the value parse() gives it.
#       This is the common case, one parse and one dump.
#   (2) Otherwise (T writes 540.00, which S writes 540.0): D = dumps(V) in T's key order;
#       (a) D == S                    -> T's keys are sorted at every level;
#       (b) D writes no exponent, and
#       (c) T == D once the bytes 0-9 . + - are deleted from both
#                                     -> no whitespace, no duplicate key, no exponent in T
#                                        (each would leave bytes in T that D lacks),
#       so T differs from canonical(parse(T)) nowhere.
# Anything else: "don't know", and the slow path decides.
_NUMBER_BYTES = b"0123456789.+-"
_DIGITS = frozenset(_NUMBER_BYTES[:10])


def _exponent_signed() -> bool:
    # Exponents are found by looking for "e+"/"e-" after a digit: orjson must always sign them.
    assert orjson is not None
    probes = (1e16, 1e22, 1.5e300, 1.2345678901234568e17, 1e-5, 1e-7, 5e-324)
    return all(b"e+" in out or b"e-" in out or b"e" not in out for out in map(orjson.dumps, probes))


_FAST = orjson is not None and _exponent_signed()


def _has_exponent(doc: bytes) -> bool:
    # An exponent as orjson writes it: a digit, "e", then "+" or "-". Signs are visited one
    # by one (memchr) while they are rare; where they are common (dates and ids hold many
    # hyphens), searching for the pair "e+" / "e-" costs less, about 1 ns a byte.
    visits = 8 + (len(doc) >> 9)  # a visit costs about as much as searching 100 bytes
    return _signed_exponent(doc, b"+", visits) or _signed_exponent(doc, b"-", visits)


def _signed_exponent(doc: bytes, sign: bytes, visits: int) -> bool:
    i = doc.find(sign, 2)
    while i > 0 and visits:
        if doc[i - 1] == 0x65 and doc[i - 2] in _DIGITS:  # 0x65: "e"
            return True
        i, visits = doc.find(sign, i + 1), visits - 1
    if i < 0:
        return False
    mark = b"e" + sign
    i = doc.find(mark, i - 1)
    while i > 0:
        if doc[i - 1] in _DIGITS:
            return True
        i = doc.find(mark, i + 2)
    return False


def is_plain(text: bytes) -> bool:
    """True when *text* holds no backslash and no exponent: the fast check of every body
    inside it may then skip its own searches (see :func:`is_fast_canonical`)."""
    return b"\\" not in text and not _has_exponent(text)


def is_fast_canonical(data: bytes, plain: bool = False) -> bool:
    """True when the fast path proves *data* canonical; False means "use the slow path".

    *plain* says the caller has already found no backslash and no exponent in *data*
    (:func:`is_plain`, run once over a block of lines)."""
    if not _FAST or not (plain or b"\\" not in data):
        return False
    try:
        value = _loads(data)
        ordered = _dumps(value, option=_SORT_KEYS)
        if ordered == data:  # (1)
            return plain or not _has_exponent(ordered)
        doc = _dumps(value)  # (2)
    except (_DecodeError, _EncodeError):  # invalid, or nested too deep
        return False
    # With *plain*, (b) follows from (c): an exponent in doc leaves an "e" that data lacks.
    return (
        doc == ordered
        and (plain or not _has_exponent(doc))
        and data.translate(None, _NUMBER_BYTES) == doc.translate(None, _NUMBER_BYTES)
    )


if _FAST:
    _loads, _dumps, _SORT_KEYS = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
    _DecodeError, _EncodeError = orjson.JSONDecodeError, orjson.JSONEncodeError
