"""HTTP/1.1 over keep-alive connections to one origin, for one process's fetch threads.

Only what a client of an evidence source needs: one request at a time per connection;
answers framed by ``Content-Length``, ``chunked`` or the end of the connection; interim
``1xx`` answers skipped; ``gzip`` and ``deflate`` bodies undone. The pool keeps idle
connections for the next request and drops those the server has closed meanwhile. It is
lean on purpose: a learner's evidence costs one or two requests, and a general client's
layers (URL re-parsing, retry objects, header parsing through :mod:`email`) cost several
times the exchange itself (issue 12).
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "Answer",
    "Closed",
    "Connection",
    "ConnectionPool",
    "ProtocolError",
    "decoder",
    "request_head",
]

#: The most bytes of a status line and headers read before the answer is refused.
MAX_HEAD = 64 * 1024
_READ = 65536
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NO_BODY = frozenset({204, 304})


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


class Closed(Exception):
    """The connection ended; ``answered`` says whether any byte of an answer came."""

    def __init__(self, detail: str, answered: bool) -> None:
        super().__init__(detail)
        self.answered = answered


@dataclass(frozen=True)
class Answer:
    """An answer's status line and headers (names in lower case, repeats joined by ", ")."""

    status: int
    headers: Mapping[str, str]
    will_close: bool
    chunked: bool
    length: int | None  # None: until the connection ends (unless chunked or no body)


class Connection:
    """One connection to the server and the bytes read past the last answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def close(self) -> None:
        self.sock.close()

    def dropped(self) -> bool:
        """Whether the idle connection was closed by the server (or has stray bytes)."""
        if self._buffer:
            return True
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True

    def send(self, head: bytes, body: bytes | None) -> None:
        """Send a request, head and body (``OSError`` if the connection fails)."""
        self.sock.sendall(head + body if body else head)

    def answer(self, method: str) -> Answer:
        """The next final answer's head (interim ``1xx`` answers skipped)."""
        while True:
            head = self._head()
            status, headers, version = _parse_head(head)
            if not 100 <= status < 200 or status == 101:
                break
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if method == "HEAD" or status in _NO_BODY or status < 200:
            return Answer(status, headers, will_close, False, 0)
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.rsplit(",", 1)[-1].strip().lower() != "chunked":
                return Answer(status, headers, True, False, None)
            return Answer(status, headers, will_close, True, None)
        length = headers.get("content-length")
        if length is None:
            return Answer(status, headers, True, False, None)
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not (size := values.pop()).isdigit():
            raise ProtocolError(f"Content-Length {length!r} is not a length")
        return Answer(status, headers, will_close, False, int(size))

    def body(self, answer: Answer, take: Callable[[bytes], None]) -> None:
        """Pass the answer's body to *take* piece by piece, as it arrives."""
        if answer.chunked:
            self._chunked(take)
        elif answer.length is None:
            self._until_closed(take)
        else:
            self._exactly(answer.length, take)

    # -- reading -----------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False when the connection has ended."""
        chunk = self.sock.recv(_READ)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _head(self) -> bytes:
        searched = 0
        while True:
            found = _BLANK_LINE.search(self._buffer, max(0, searched - 3))
            if found:
                head = bytes(self._buffer[: found.start()])
                del self._buffer[: found.end()]
                return head
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError(f"the status line and headers pass {MAX_HEAD} bytes")
            searched = len(self._buffer)
            if not self._fill():
                raise Closed("the server closed the connection", answered=bool(self._buffer))

    def _exactly(self, length: int, take: Callable[[bytes], None]) -> None:
        if self._buffer:
            part = bytes(self._buffer[:length])
            del self._buffer[:length]
            length -= len(part)
            take(part)
        while length > 0:
            chunk = self.sock.recv(min(_READ, length))
            if not chunk:
                raise Closed(f"the connection ended {length} bytes short", answered=True)
            length -= len(chunk)
            take(chunk)

    def _until_closed(self, take: Callable[[bytes], None]) -> None:
        if self._buffer:
            take(bytes(self._buffer))
            self._buffer.clear()
        while chunk := self.sock.recv(_READ):
            take(chunk)

    def _chunked(self, take: Callable[[bytes], None]) -> None:
        while True:
            line = self._line()
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"chunk size {size_text[:20]!r} is not hexadecimal") from None
            if size == 0:
                while self._line():  # trailers, up to the blank line
                    pass
                return
            while len(self._buffer) < size + 2:
                if not self._fill():
                    raise Closed("the connection ended inside a chunk", answered=True)
            if self._buffer[size : size + 2] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            take(bytes(self._buffer[:size]))
            del self._buffer[: size + 2]

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError(f"a chunk line passes {MAX_HEAD} bytes")
            if not self._fill():
                raise Closed("the connection ended inside the chunked body", answered=True)
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[: end + 1]
        return line


def _parse_head(head: bytes) -> tuple[int, dict[str, str], str]:
    """``(status, headers, version)`` of an answer's head."""
    lines = [line.rstrip("\r") for line in head.decode("iso-8859-1").split("\n")]
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and name:  # an obsolete folded continuation
            headers[name] = f"{headers[name]} {line.strip()}"
            continue
        field, colon, value = line.partition(":")
        if not colon or not field or field != field.strip():
            raise ProtocolError(f"not a header line: {line[:40]!r}")
        name, value = field.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), headers, version


def request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """A request's head; ``ValueError`` if a header would break the message (CR, LF)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or not name.isascii() or ":" in name:
            raise ValueError(f"the {name!r} header cannot be sent (a line break or a colon)")
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1")


class ConnectionPool:
    """Connections to ``scheme://host:port``; at most *maxsize* idle ones are kept."""

    def __init__(self, scheme: str, host: str, port: int | None, *, maxsize: int) -> None:
        self.host = host
        self.port = port or (443 if scheme == "https" else 80)
        self.maxsize = maxsize
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._context = ssl.create_default_context() if scheme == "https" else None

    def idle(self) -> Connection | None:
        """An idle connection the server has not closed, if one is kept."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.dropped():
                    return conn
                conn.close()
        return None

    def connect(self, timeout: float) -> Connection:
        """A new connection (``OSError`` if it cannot be made within *timeout*)."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def give_back(self, conn: Connection) -> None:
        """Keep *conn* for the next request (closed if the pool is full or closed)."""
        with self._lock:
            if not self._closed and len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Decoder:
    """Undoes a ``Content-Encoding`` piece by piece (``zlib.error`` if the body is bad)."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._zlib = zlib.decompressobj(wbits)
        self._first = True

    def decode(self, chunk: bytes) -> bytes:
        try:
            out = self._zlib.decompress(chunk)
        except zlib.error:
            if not (self._first and self._wbits == zlib.MAX_WBITS):
                raise
            # "deflate" is sent raw by some servers, without the zlib header.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(chunk)
        self._first = False
        return out

    def flush(self) -> bytes:
        """The rest of the body; ``zlib.error`` if the compressed stream was cut short."""
        out = self._zlib.flush()
        if not self._zlib.eof:
            raise zlib.error("the compressed body ends before its end mark")
        return out


def decoder(content_encoding: str | None) -> Decoder | None:
    """The decoder of a body sent with *content_encoding* (gzip or deflate), or None."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return Decoder(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return Decoder(zlib.MAX_WBITS)
    return None
