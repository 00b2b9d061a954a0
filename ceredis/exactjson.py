"""Exact, strict JSON decoding: the one JSON reader of every input the engine accepts.

Pure: no I/O. Numbers keep their decimal text (``72.1`` is ``Decimal("72.1")``), NaN and
infinities become Decimals for the caller to refuse; duplicate keys, nesting deeper
than :data:`MAX_DEPTH`, numbers longer than :data:`MAX_DIGITS` digits, lone surrogates
and invalid UTF-8 are errors naming what and where. With ``mark=True`` a number too
long or a value too deep is replaced by an :func:`unreadable` marker instead, so that a
record holding one is refused as an invalid record naming its field. A whole document
(an HTTP body) is read faster by :func:`loads_document`, to the same values and errors.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import msgspec
import orjson

from ceredis.errors import CeredisError

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "JSONError",
    "decode_typed",
    "loads",
    "loads_document",
    "loads_each",
    "number",
    "plain_number",
    "typed_decoder",
    "unreadable",
    "utf8_text",
]

#: The deepest nesting of arrays and objects read (the engine's documents nest < 10).
MAX_DEPTH = 100
#: The most digits a number may have written in fixed point (a score has at most 5).
MAX_DIGITS = 100
_MARK = "$unreadable"
_BRACKETS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BOM = "\ufeff"


class JSONError(CeredisError, ValueError):
    """Text that is not exact, strict JSON: ``reason`` says what, ``offset`` the byte."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__(reason, offset)
        self.reason, self.offset = reason, offset

    def line_column(self, text: str) -> str:
        """Where the error is in *text*, as ``line L column C`` (both from 1)."""
        before = text.encode("utf-8", "surrogatepass")[: self.offset or 0]
        line = before.count(b"\n") + 1
        column = len(before.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")) + 1
        return f"line {line} column {column}"

    def __str__(self) -> str:
        return self.reason if self.offset is None else f"{self.reason} at byte {self.offset}"


class _TooLong(Exception):
    """Raised by the number hooks when not marking; the caller locates the number."""


def loads(data: str | bytes, *, mark: bool = False) -> Any:
    """Decode one JSON document exactly and strictly; raise :class:`JSONError`.

    Bytes must be UTF-8 (a leading byte-order mark is skipped); offsets in errors are
    byte offsets into the UTF-8 text.
    """
    if isinstance(data, bytes):
        skip = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        try:
            return loads(utf8_text(data[skip:]), mark=mark)
        except JSONError as exc:
            raise JSONError(exc.reason, None if exc.offset is None else exc.offset + skip) from None
    text = data
    if text.startswith(_BOM):
        raise JSONError("a byte-order mark (U+FEFF) where JSON was expected", 0)
    try:
        value = _PLAIN.decode(text)
    except (ValueError, RecursionError):  # not JSON, a duplicate key, too deep…: said below
        return _strict(text, mark)
    if not _within_limits(value):
        return _strict(text, mark)
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value, "$")
    return value


def loads_each(texts: Iterable[str]) -> list[Any]:
    """:func:`loads` of each text, with less overhead per text (the rows of an index):
    the C scanner itself, and :func:`loads` for any text it does not fully accept."""
    values = []
    for text in texts:
        try:
            value, end = _PLAIN.scan_once(text, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end == len(text) and _within_limits(value) and not _SURROGATE_ESCAPE.search(text):
            values.append(value)
        else:
            values.append(loads(text))
    return values


def loads_document(data: bytes) -> Any:
    """:func:`loads` of one whole document's bytes (an HTTP body), faster on large ones:
    no Python call per object; whatever :func:`_fast` cannot vouch for, loads decides."""
    value = _fast(data) if len(data) > _SMALL and _DEPTH_CHECKED else None
    return loads(data) if value is None else value


def typed_decoder(shape: Any) -> msgspec.json.Decoder:
    """A decoder of *shape* (shallow structs that forbid unknown fields) for
    :func:`decode_typed`: numbers where *shape* says ``Any`` are read as loads reads
    them (``int``, ``Decimal(text)``); type them nowhere else (msgspec takes a string
    for a Decimal)."""
    return msgspec.json.Decoder(shape, float_hook=_WITHIN_DIGITS.create_decimal)


def decode_typed(data: bytes, decoder: msgspec.json.Decoder) -> Any:
    """*data* decoded by a :func:`typed_decoder`, or ``None`` for :func:`loads` to decide.

    ``None`` when the text does not fit the type, or holds what the decoder could read
    otherwise than loads: an escaped colon or surrogate, or a duplicate key (the decoder
    keeps the last; re-encoding then gives fewer colons, as in :func:`_fast`). Numbers
    are the caller's to check with :func:`plain_number`.
    """
    if b"\\" in data and (_COLON_ESCAPE.search(data) or _SURROGATE_BYTES.search(data)):
        return None
    try:
        value = decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, decimal.DecimalException):
        return None  # not of the type, nested too deep, a number too long
    if _TYPED.encode(value).count(b":") != data.count(b":"):
        return None
    return value


def plain_number(value: int | Decimal) -> bool:
    """Whether loads reads *value* as it stands: within MAX_DIGITS, no exponent."""
    if type(value) is int:
        return -_LONGEST < value < _LONGEST
    shown = str(value)
    return len(shown) <= MAX_DIGITS and "E" not in shown


def _fast(data: bytes) -> Any:
    """The value *data* holds, exactly as :func:`loads` gives it, or ``None`` for loads
    to decide (a ``null`` document included).

    The value comes from msgspec's decoder (numbers ``int`` and ``Decimal(text)``, from
    the number's own text: as fast as orjson, which reads floats), which keeps the last
    of duplicate keys and reads no NaN (left to loads); re-encoding the value with orjson
    (inside :data:`_WRAP` lists) then checks at C speed what loads' duplicate-key hook and
    :func:`_within_limits` check:

    * nesting deeper than MAX_DEPTH: orjson refuses to nest deeper than _ORJSON_DEPTH;
    * a duplicate key: a key is followed by a colon in the text and in orjson's text, and
      the other colons are those of the strings, the same in both unless escaped
      (``\\u003a``): a key dropped as a duplicate leaves orjson's text fewer colons;
    * a lone surrogate, an integer beyond 64 bits: orjson refuses them;
    * a number with a fraction or an exponent and more than MAX_DIGITS digits: it is read
      in :data:`_WITHIN_DIGITS`, which raises (another integer is beyond 64 bits).
    """
    if b"\\" in data and _COLON_ESCAPE.search(data):
        return None
    try:
        value = _FAST.decode(data)
    except (ValueError, RecursionError, decimal.DecimalException):  # loads names the error
        return None
    wrapped: Any = value
    for _ in range(_WRAP):
        wrapped = [wrapped]
    try:
        encoded = orjson.dumps(wrapped, default=str)
    except orjson.JSONEncodeError:  # too deep, a lone surrogate, a big number
        return None
    if encoded.count(b":") != data.count(b":"):
        return None
    return value


def _strict(text: str, mark: bool) -> Any:
    """Decode *text* checking depth and every number's digits as it goes."""
    if text.count("[") + text.count("{") > MAX_DEPTH:
        text = _bound_depth(text, mark)
    try:
        value = _STRICT[mark].decode(text)
    except json.JSONDecodeError as exc:
        raise JSONError(f"not valid JSON ({exc.msg})", _byte(text, exc.pos)) from None
    except _TooLong:
        _raise_marked(loads(text, mark=True))
    if _SURROGATE_ESCAPE.search(text):
        _check_surrogates(value, "$")
    return value


def _within_limits(value: Any) -> bool:
    """Whether *value* nests at most MAX_DEPTH deep and holds no number the strict
    decoder would refuse or mark (a Decimal written with an exponent is left to it too).

    One pass over the containers, level by level: cheaper than scanning the text.
    """
    level = [value]
    for depth in range(1, MAX_DEPTH + 2):  # the items of level *depth*
        deeper = []
        for item in level:
            kind = type(item)
            if kind is dict or kind is list:
                if depth > MAX_DEPTH:
                    return False
                deeper.extend(item.values() if kind is dict else item)
            elif kind is Decimal:  # plain_number's rule, inline: the hot loop
                shown = str(item)
                if len(shown) > MAX_DIGITS or "E" in shown:
                    return False
            elif kind is int and not -_LONGEST < item < _LONGEST:
                return False
        level = [v for v in deeper if type(v) is not str]
        if not level:
            return True
    return False


def number(text: str, *, mark: bool = False) -> int | Decimal | dict[str, str] | None:
    """A JSON number's text (or NaN/Infinity) as an exact value; ``None`` if not a number."""
    if text in ("NaN", "Infinity", "-Infinity"):
        return Decimal(text)
    if not _NUMBER.fullmatch(text):
        return None
    hook = _int_hook(mark) if _INTEGER.fullmatch(text) else _float_hook(mark)
    try:
        return hook(text)
    except _TooLong:
        raise JSONError(f"a number of {_digits(Decimal(text)):,} digits ({_limit()})") from None


_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)")


def unreadable(value: Any) -> str | None:
    """Why *value* (or something inside it) could not be read, or ``None``."""
    if isinstance(value, dict):
        if set(value) == {_MARK} and isinstance(value[_MARK], str):
            return value[_MARK]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if why := unreadable(item):
                return why
    return None


def utf8_text(data: bytes) -> str:
    """Bytes as UTF-8 text; :class:`JSONError` names the first invalid byte and its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError(f"invalid UTF-8 byte 0x{data[exc.start]:02x}", exc.start) from None


def _int_hook(mark: bool) -> Any:
    def parse(text: str) -> int | dict[str, str]:
        if len(text) - text.startswith("-") > MAX_DIGITS:
            return _marker(f"a number of {len(text.lstrip('-')):,} digits ({_limit()})", mark)
        return int(text)

    return parse


def _float_hook(mark: bool) -> Any:
    def parse(text: str) -> Decimal | dict[str, str]:
        value = Decimal(text)
        if _digits(value) > MAX_DIGITS:
            return _marker(f"a number of {_digits(value):,} digits ({_limit()})", mark)
        return value

    return parse


def _digits(value: Decimal) -> int:
    """How many digits *value* has written in fixed point (what the ledger writes)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        return len(digits) + exponent
    return max(len(digits), -exponent + 1)


def _limit() -> str:
    return f"at most {MAX_DIGITS} are read"


_LONGEST = 10**MAX_DIGITS  # the least integer with more than MAX_DIGITS digits


def _marker(why: str, mark: bool) -> dict[str, str]:
    if not mark:
        raise _TooLong(why)
    return {_MARK: why}


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONError(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return value


def _bound_depth(text: str, mark: bool) -> str:
    """*text* with every container that holds one nested too deep marked (or an error).

    The marker replaces the container at depth MAX_DEPTH, so the result nests at most
    MAX_DEPTH deep and decodes again (the evidence index re-reads what it stored).
    """
    opens: list[int] = []
    parts: list[str] = []
    last, start, deep_at = 0, -1, 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            opens.append(match.start())
            if start >= 0:
                continue
            if len(opens) == MAX_DEPTH + 1 and start < 0:
                if not mark:
                    raise JSONError(_deep(), _byte(text, match.start()))
                start, deep_at = opens[MAX_DEPTH - 1], match.start()
        elif opens:
            opens.pop()
            if len(opens) == MAX_DEPTH - 1 and start >= 0:
                parts += [text[last:start], json.dumps(_marker(_deep(), mark))]
                last, start = match.end(), -1
    if start >= 0:
        raise JSONError(_deep(), _byte(text, deep_at))
    return "".join(parts) + text[last:]


def _deep() -> str:
    return f"arrays or objects nested deeper than {MAX_DEPTH} levels"


def _raise_marked(value: Any, path: str = "$") -> None:
    """Raise the JSONError of the first marker in *value*, naming its path."""
    if isinstance(value, dict):
        if set(value) == {_MARK}:
            raise JSONError(f"{path}: {value[_MARK]}")
        items: Any = value.items()
    else:
        items = enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        _raise_marked(item, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")


def _check_surrogates(value: Any, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONError(f"{path}: a lone surrogate (\\u escape) is not text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_surrogates(key, path)
            _check_surrogates(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_surrogates(item, f"{path}[{index}]")


def _byte(text: str, position: int) -> int:
    """The UTF-8 byte offset of character *position* of *text*."""
    return len(text[:position].encode("utf-8", "surrogatepass"))


#: The deepest nesting orjson writes: deeper, ``orjson.dumps`` raises "Recursion limit".
_ORJSON_DEPTH = 254
#: Lists around a value re-encoded by :func:`_fast`, so that orjson refuses exactly the
#: values that nest deeper than MAX_DEPTH.
_WRAP = _ORJSON_DEPTH - MAX_DEPTH
_COLON_ESCAPE = re.compile(rb"\\u003[aA]")
_SURROGATE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
#: Bytes up to which loads is cheaper than :func:`_fast` (whose checks cost about 8 µs).
_SMALL = 1024


def _nests_at_most(depth: int) -> bool:
    """Whether orjson writes *depth* nested arrays and objects but refuses one level more."""

    def nested(levels: int) -> Any:
        value: Any = None
        for level in range(levels):
            value = [value] if level % 2 else {"k": value}
        return value

    try:
        orjson.dumps(nested(depth))
    except orjson.JSONEncodeError:
        return False
    try:
        orjson.dumps(nested(depth + 1))
    except orjson.JSONEncodeError:
        return True
    return False


#: Whether the installed orjson nests as :func:`_fast` assumes (else loads decides alone).
_DEPTH_CHECKED = _nests_at_most(_ORJSON_DEPTH)


# Built once (a JSONDecoder per call was a tenth of the decoding time). Every decoder
# refuses duplicate keys; _PLAIN leaves numbers to C (int, Decimal), and its result is
# kept only when _within_limits finds nothing the strict ones would refuse or mark.
_PLAIN = json.JSONDecoder(parse_float=Decimal, parse_constant=Decimal, object_pairs_hook=_object)
_STRICT = {
    mark: json.JSONDecoder(
        parse_float=_float_hook(mark),
        parse_int=_int_hook(mark),
        parse_constant=Decimal,
        object_pairs_hook=_object,
    )
    for mark in (False, True)
}
#: Reads a number's text exactly as ``Decimal(text)`` does, but raises (Rounded, Overflow,
#: Clamped) where that Decimal has more than MAX_DIGITS digits in fixed point: more
#: coefficient digits than its precision, an adjusted exponent above Emax (too many
#: integer digits), an exponent below Etiny = Emin - prec + 1 (too many decimals).
_WITHIN_DIGITS = decimal.Context(
    prec=MAX_DIGITS,
    Emax=MAX_DIGITS - 1,
    Emin=0,
    traps=[decimal.Rounded, decimal.Overflow, decimal.Clamped],
)
#: A whole document's value at orjson's speed: numbers with a fraction or an exponent are
#: Decimal(text) within MAX_DIGITS, its other checks are :func:`_fast`'s.
_FAST = msgspec.json.Decoder(float_hook=_WITHIN_DIGITS.create_decimal)
_TYPED = msgspec.json.Encoder()
