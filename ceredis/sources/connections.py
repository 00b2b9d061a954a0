"""Keep-alive HTTP/1.1 connections to one origin, shared by one process's fetch threads.

The standard library's :mod:`http.client` speaks the protocol (status line, headers,
length-delimited and chunked bodies, keep-alive); this pool keeps idle connections for
the next request and drops those the server has closed meanwhile. It is lean on
purpose: a learner's evidence costs one or two requests, and a general client's
per-request layers (URL re-parsing, retry objects, header dictionaries) cost about as
much CPU as the exchange itself (issue 12).
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import zlib

__all__ = ["ConnectionPool", "Decoder", "decoder"]


class ConnectionPool:
    """Connections to ``scheme://host:port``; at most *maxsize* idle ones are kept."""

    def __init__(self, scheme: str, host: str, port: int | None, *, maxsize: int) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.maxsize = maxsize
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._context = ssl.create_default_context() if scheme == "https" else None

    def take(self, connect_timeout: float) -> http.client.HTTPConnection:
        """An open idle connection, or a new one, not connected yet (``sock is None``)."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not _dropped(conn):
                    return conn
                conn.close()
        return self.take_new(connect_timeout)

    def take_new(self, connect_timeout: float) -> http.client.HTTPConnection:
        """A new connection, not connected yet."""
        if self._context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=connect_timeout, context=self._context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        """Keep *conn* for the next request (closed if the pool is full or closed)."""
        with self._lock:
            if not self._closed and conn.sock is not None and len(self._idle) < self.maxsize:
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


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (or has unread bytes: unusable)."""
    sock = conn.sock
    if sock is None:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


class Decoder:
    """Undoes a ``Content-Encoding`` chunk by chunk (``zlib.error`` if the body is bad)."""

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
