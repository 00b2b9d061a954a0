"""The subset of Elasticsearch ``query_string`` syntax the CaSS double understands.

cass-api.md §5.2: ``*``, ``field:value``, ``field:"phrase"``, a bare ``"phrase"``
(any field), ``\\*field:`` (field-name suffix wildcard), ``@type:X`` (short type, full
context+type, or ``encryptedType``), ``AND``/``OR``/``NOT``/parentheses (juxtaposition
means OR), ``_exists_:``/``_missing_:`` and numeric ``field:>N`` (also ``>=``, ``<``,
``<=``). Anything else raises :class:`QuerySyntaxError`, which the double answers with
HTTP 400 like Elasticsearch, so the client and the double cannot drift apart silently.

Matching (documented deviations from a real analyzer): a string matches a term or
phrase when it is equal to it ignoring case, or, for short strings that are neither
URLs nor PEM keys, when it contains the phrase's words in sequence. URLs and PEMs only
match whole, which is how real clients query them (quoted, complete).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "NOT_INDEXED",
    "Node",
    "QuerySyntaxError",
    "fold",
    "is_whole_only",
    "parse_query",
    "short_types",
    "tokens",
    "walk",
]

#: Fields CaSS strips from its index documents (cass-api.md S16), plus ``evidence``
#: (free text nobody queries; leaving it out keeps big fixtures small): never searched.
NOT_INDEXED = frozenset(
    {
        "payload",
        "secret",
        "signature",
        "@signature",
        "@signatureSha256",
        "iv",
        "decryptedSecret",
        "evidence",
    }
)
#: Strings longer than this are matched whole only (as keyword-ish values).
TOKENIZE_MAX = 256

_TOKEN_RE = re.compile(r"[0-9a-z]+")


class QuerySyntaxError(ValueError):
    """The query uses syntax outside the supported subset."""


def fold(text: str) -> str:
    """Case-folded text for equality matching."""
    return text.casefold()


def tokens(text: str) -> list[str]:
    """Words of a string, lower-cased, as a standard analyzer would roughly split them."""
    return _TOKEN_RE.findall(text.lower())


def is_whole_only(text: str) -> bool:
    """URLs, PEM keys and long strings match only as a whole."""
    return len(text) > TOKENIZE_MAX or "://" in text or text.startswith("-----BEGIN")


def walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, scalar) pair of a JSON-LD object; list indices are dropped."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in NOT_INDEXED:
                continue
            path = f"{prefix}.{key}" if prefix else key
            yield from walk(value, path)
    elif isinstance(obj, list):
        for item in obj:
            yield from walk(item, prefix)
    elif obj is not None:
        yield prefix, obj


def short_types(obj: Any) -> set[str]:
    """The folded short type names an object answers to in ``@type:X``."""
    out: set[str] = set()
    if not isinstance(obj, dict):
        return out
    values: list[Any] = []
    for key in ("@type", "encryptedType"):
        value = obj.get(key)
        values.extend(value if isinstance(value, list) else [value])
    for value in values:
        if isinstance(value, str) and value:
            out.add(fold(value.rstrip("/").rsplit("/", 1)[-1]))
    return out


def _text_matches(value: Any, phrase: str, phrase_tokens: list[str]) -> bool:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        return False
    if fold(text) == fold(phrase):
        return True
    if not phrase_tokens or is_whole_only(text):
        return False
    words = tokens(text)
    n = len(phrase_tokens)
    return any(words[i : i + n] == phrase_tokens for i in range(len(words) - n + 1))


def _field_matches(path: str, field: str) -> bool:
    if field.startswith("*"):
        return path.endswith(field[1:])
    return path == field


# -- AST -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A query node. ``kind`` is one of: all, text, type, exists, missing, range, and,
    or, not. ``field`` is None for a bare text; ``value`` holds the text, type name,
    or (op, number) for a range; ``children`` for boolean nodes."""

    kind: str
    field: str | None = None
    value: Any = None
    children: tuple[Node, ...] = ()

    def matches(self, obj: dict[str, Any], version: int) -> bool:
        """Whether the object (with its index ``@version``) satisfies this node."""
        kind = self.kind
        if kind == "all":
            return True
        if kind == "and":
            return all(c.matches(obj, version) for c in self.children)
        if kind == "or":
            return any(c.matches(obj, version) for c in self.children)
        if kind == "not":
            return not self.children[0].matches(obj, version)
        if kind == "type":
            return self.value in short_types(obj)
        if kind == "exists":
            return self.field in obj or (self.field == "@version")
        if kind == "missing":
            return self.field not in obj and self.field != "@version"
        if kind == "range":
            op, bound = self.value
            if self.field == "@version":
                candidates: list[Any] = [version]
            else:
                candidates = [v for p, v in walk(obj) if _field_matches(p, self.field or "")]
            return any(_compare(v, op, bound) for v in candidates)
        if kind == "text":
            phrase = self.value
            phrase_tokens = tokens(phrase)
            for path, value in walk(obj):
                if self.field is not None and not _field_matches(path, self.field):
                    continue
                if _text_matches(value, phrase, phrase_tokens):
                    return True
            return False
        raise AssertionError(kind)


def _compare(value: Any, op: str, bound: Decimal) -> bool:
    if isinstance(value, bool):
        return False
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return False
    return {
        ">": number > bound,
        ">=": number >= bound,
        "<": number < bound,
        "<=": number <= bound,
    }[op]


# -- parser ----------------------------------------------------------------------------

_SPECIAL = set('()"')
_RESERVED_IN_TERM = set("[]{}~^?!&|/+")


def _lex(q: str) -> list[tuple[str, str]]:
    """Tokens: ('(' | ')' | 'phrase' | 'word', text). Words keep escapes resolved."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(q)
    while i < n:
        ch = q[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            out.append((ch, ch))
            i += 1
        elif ch == '"':
            j, buf = i + 1, []
            while j < n and q[j] != '"':
                if q[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(q[j])
                j += 1
            if j >= n:
                raise QuerySyntaxError(f"unterminated phrase starting at offset {i}")
            out.append(("phrase", "".join(buf)))
            i = j + 1
        else:
            j, buf = i, []
            while j < n and not q[j].isspace() and q[j] not in _SPECIAL:
                if q[j] == "\\" and j + 1 < n:
                    buf.append("\\" + q[j + 1])  # keep escapes until the field split
                    j += 2
                    continue
                buf.append(q[j])
                j += 1
                if buf[-1] == ":" and j < n and q[j] in '"(':
                    break
            out.append(("word", "".join(buf)))
            i = j
    return out


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _split_field(word: str) -> tuple[str | None, str]:
    """Split ``field:value`` at the first unescaped colon."""
    i = 0
    while i < len(word):
        if word[i] == "\\":
            i += 2
            continue
        if word[i] == ":":
            return _unescape(word[:i]), word[i + 1 :]
        i += 1
    return None, word


class _Parser:
    def __init__(self, q: str) -> None:
        self.q = q
        self.toks = _lex(q)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            return Node("all")
        node = self.or_expr()
        if self.peek() is not None:
            raise QuerySyntaxError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while True:
            tok = self.peek()
            if tok is None or tok[0] == ")":
                break
            if tok == ("word", "OR"):
                self.take()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Node("or", children=tuple(children))

    def and_expr(self) -> Node:
        children = [self.not_expr()]
        while self.peek() == ("word", "AND"):
            self.take()
            children.append(self.not_expr())
        return children[0] if len(children) == 1 else Node("and", children=tuple(children))

    def not_expr(self) -> Node:
        if self.peek() == ("word", "NOT"):
            self.take()
            return Node("not", children=(self.not_expr(),))
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError("the query ends where a term was expected")
        kind, text = self.take()
        if kind == "(":
            node = self.or_expr()
            if self.peek() != (")", ")"):
                raise QuerySyntaxError("missing closing parenthesis")
            self.take()
            return node
        if kind == ")":
            raise QuerySyntaxError("unexpected ')'")
        if kind == "phrase":
            return Node("text", None, text)
        if text in ("AND", "OR", "NOT"):
            raise QuerySyntaxError(f"operator {text} without an operand")
        if text.startswith(("-", "+", "!")) or text in ("&&", "||"):
            raise QuerySyntaxError(f"unsupported operator syntax in {text!r}; use AND/OR/NOT")
        field, rest = _split_field(text)
        if field is None:
            return self.bare_term(text)
        if not field:
            raise QuerySyntaxError(f"empty field name in {text!r}")
        if not rest:
            nxt = self.peek()
            if nxt is not None and nxt[0] == "phrase":
                self.take()
                return self.field_node(field, nxt[1], quoted=True)
            if nxt is not None and nxt[0] == "(":
                self.take()
                group = self.or_expr()
                if self.peek() != (")", ")"):
                    raise QuerySyntaxError("missing closing parenthesis")
                self.take()
                return _apply_field(group, field, self)
            raise QuerySyntaxError(f"field {field!r} has no value")
        return self.field_node(field, rest, quoted=False)

    def bare_term(self, word: str) -> Node:
        if word == "*":
            return Node("all")
        value = _unescape(word)
        self.check_term(word)
        return Node("text", None, value)

    def check_term(self, word: str) -> None:
        plain = re.sub(r"\\.", "", word)
        bad = (set(plain) & _RESERVED_IN_TERM) | ({"*"} if "*" in plain else set())
        if bad:
            raise QuerySyntaxError(
                f"unsupported syntax {''.join(sorted(bad))!r} in {_unescape(word)!r}"
            )

    def field_node(self, field: str, value: str, *, quoted: bool) -> Node:
        if field.endswith("*") or "*" in field[1:]:
            raise QuerySyntaxError(f"unsupported field pattern {field!r}")
        if field in ("_exists_", "_missing_"):
            name = _unescape(value)
            if quoted or not name:
                raise QuerySyntaxError(f"{field} needs a field name")
            return Node("exists" if field == "_exists_" else "missing", name)
        if not quoted:
            if value == "*":
                return Node("exists", field)
            m = re.fullmatch(r"(>=|<=|>|<)(-?\d+(?:\.\d+)?)", value)
            if m:
                return Node("range", field, (m.group(1), Decimal(m.group(2))))
            self.check_term(value)
            value = _unescape(value)
        if field == "@type":
            return Node("type", field, fold(value.rstrip("/").rsplit("/", 1)[-1]))
        return Node("text", field, value)


def _apply_field(group: Node, field: str, parser: _Parser) -> Node:
    """``field:(a OR b)`` distributes the field over the group's terms."""
    if group.kind == "text" and group.field is None:
        return parser.field_node(field, group.value, quoted=True)
    if group.kind in ("and", "or", "not"):
        return Node(
            group.kind, children=tuple(_apply_field(c, field, parser) for c in group.children)
        )
    raise QuerySyntaxError(f"unsupported nested field clause in {field}:( … )")


def parse_query(q: str) -> Node:
    """Parse *q*; raises :class:`QuerySyntaxError` for syntax outside the subset."""
    return _Parser(q).parse()
