"""Canonical JSON bytes for hashing.

The encoding (identifier :data:`CANON_ID`) is fixed by this module alone, never by a
JSON library's formatting choices, so no dependency upgrade can change a hash:

* objects: keys must be ``str``, sorted by Unicode code point, no duplicates;
* no insignificant whitespace; output is UTF-8 (non-ASCII characters written as is);
* strings: only ``"``, ``\\`` and control characters below U+0020 are escaped
  (``\\b \\f \\n \\r \\t``, others as lowercase ``\\u00xx``); lone surrogates are refused;
* ``True``/``False``/``None`` as ``true``/``false``/``null``; tuples as arrays;
* integers must lie within ±(2**53 − 1) (the I-JSON range every JSON reader keeps
  exactly); larger ones are refused: encode them as strings;
* exact decimals are :class:`decimal.Decimal` values written in fixed-point with their
  own digits (``Decimal("540.00")`` → ``540.00``; ``Decimal("1E+2")`` → ``100``);
  NaN and infinities are refused;
* binary floats are refused: their text depends on the formatter (orjson changed it
  in 3.11.7), and ``72.1`` is not exactly 72.1. Convert them at the boundary.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from json.encoder import encode_basestring  # C implementation, no ASCII escaping
from typing import Any

from ledger.errors import CanonicalError

__all__ = [
    "CANON_ID",
    "MAX_SAFE_INTEGER",
    "Fragment",
    "canonical",
    "canonical_hash",
    "fast_canonical",
]

CANON_ID = "ledger-canon/1"
MAX_SAFE_INTEGER = 2**53 - 1


class Fragment(bytes):
    """Bytes that ``canonical`` produced earlier, embedded in a larger value as they are.

    Lets a caller encode a part once and reuse it (as orjson's ``Fragment`` does); the
    bytes are trusted here, and a ledger writer re-checks what it appends anyway.
    """

    __slots__ = ()


def canonical(value: Any) -> bytes:
    """Return the canonical UTF-8 bytes of a JSON-like value, or raise CanonicalError."""
    parts: list[str] = []
    _encode(value, parts, "$")
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"string contains a lone surrogate ({exc.reason})") from None


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical bytes of *value*."""
    return hashlib.sha256(canonical(value)).hexdigest()


def fast_canonical(value: Any) -> bytes:
    """:func:`canonical`, faster on the plain values records are made of (exact ``str``,
    ``dict``, ``list``, ``int``, ``bool``, ``None``, finite ``Decimal``, ``Fragment``);
    anything else, or anything refused, goes through :func:`canonical` itself."""
    try:
        text = _text(value)
    except _NotPlain:
        return canonical(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return canonical(value)  # raises the refusal of a lone surrogate


class _NotPlain(Exception):
    """A value the fast encoder leaves to the general one."""


def _text(value: Any) -> str:
    """The canonical text of a plain value; strings are encoded in place, not recursed."""
    kind = type(value)
    if kind is dict:
        return _object(value) if value else "{}"
    if kind is str:
        return _string(value)
    if kind is list or kind is tuple:
        return "[" + ",".join([_string(v) if type(v) is str else _text(v) for v in value]) + "]"
    if kind is Decimal:
        if not value.is_finite():
            raise _NotPlain
        return format(value, "f")
    if kind is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise _NotPlain
        return int.__repr__(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is Fragment:
        return value.decode("utf-8")
    if isinstance(value, str):  # a str subclass (an enum's value)
        return _string(value)
    raise _NotPlain


def _object(value: dict[Any, Any]) -> str:
    """A dict's text; its keys' order and encoding are worked out once per set of keys
    (records repeat a few shapes: evidence, competency, level decision)."""
    shape = tuple(value)
    members = _SHAPES.get(shape)
    if members is None:
        if any(type(key) is not str for key in shape):
            raise _NotPlain
        members = tuple((key, _string(key) + ":") for key in sorted(shape))
        if len(_SHAPES) < _MAX_SHAPES:
            _SHAPES[shape] = members
    return (
        "{"
        + ",".join(
            [
                prefix + (_string(item) if type(item := value[key]) is str else _text(item))
                for key, prefix in members
            ]
        )
        + "}"
    )


_string = encode_basestring
_SHAPES: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_MAX_SHAPES = 1024


def _encode(value: Any, out: list[str], path: str) -> None:
    # Order of checks matters: bool is an int subclass.
    if isinstance(value, Fragment):
        out.append(value.decode("utf-8"))
    elif isinstance(value, str):
        out.append(encode_basestring(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            out.append(int.__repr__(value))
        else:
            raise CanonicalError(
                f"{path}: integer {value} is outside ±(2**53 − 1); write it as a string"
            )
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalError(f"{path}: {value} is not a finite number")
        out.append(format(value, "f"))
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object key {key!r} is not a string")
        out.append("{")
        first = True
        for key in sorted(value):
            if not first:
                out.append(",")
            first = False
            out.append(encode_basestring(key))
            out.append(":")
            _encode(value[key], out, f"{path}.{key}")
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, f"{path}[{i}]")
        out.append("]")
    elif isinstance(value, float):
        raise CanonicalError(
            f"{path}: binary float {value!r} is not accepted; pass a Decimal or an int"
        )
    else:
        raise CanonicalError(f"{path}: {type(value).__name__} is not a JSON value")
