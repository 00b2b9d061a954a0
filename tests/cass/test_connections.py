"""The HTTP client's own transport against a plain server on 127.0.0.1: bodies as servers
send them (gzip, deflate, chunked, until close), connections kept alive and dropped."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import zlib
from collections.abc import Iterator
from typing import ClassVar

import pytest

from ceredis.errors import SourceError
from ceredis.sources.http import HttpClient, RetryPolicy, Timeouts

DOCUMENT = {"statements": [{"id": f"s{i}", "raw": "7.50"} for i in range(300)], "more": ""}
BODY = json.dumps(DOCUMENT).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers ``/<how>`` with DOCUMENT sent that way."""

    protocol_version = "HTTP/1.1"
    connections: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        how = self.path.lstrip("/").split("?")[0]
        type(self).connections.append(id(self.connection))
        body, headers = BODY, {}
        if how == "gzip":
            body, headers = gzip.compress(BODY), {"Content-Encoding": "gzip"}
        elif how == "deflate":
            body, headers = zlib.compress(BODY), {"Content-Encoding": "Deflate"}
        elif how == "raw-deflate":
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            body = packer.compress(BODY) + packer.flush()
            headers = {"Content-Encoding": "deflate"}
        elif how == "bad-gzip":
            body, headers = gzip.compress(BODY)[:-30], {"Content-Encoding": "gzip"}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Seen", "a")
        self.send_header("X-Seen", "b")
        for name, value in headers.items():
            self.send_header(name, value)
        if how == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 1000):
                part = body[start : start + 1000]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif how == "until-close":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            # "drop": the server closes an idle keep-alive connection without saying so.
            self.close_connection = how == "drop"

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.connections = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def client(url: str, retries: int = 3) -> HttpClient:
    return HttpClient(
        url,
        name="plain",
        policy=RetryPolicy(retries=retries, backoff_base=0.01, backoff_max=0.05),
        timeouts=Timeouts(connect=2, read=2, deadline=10),
    )


WAYS = ["plain", "gzip", "deflate", "raw-deflate", "chunked", "until-close"]


@pytest.mark.parametrize("how", WAYS)
def test_every_way_of_sending_a_body_gives_the_document(server: str, how: str) -> None:
    with client(server) as http:
        for _ in range(3):
            assert http.get_json(how) == DOCUMENT
        assert http.stats()["retries"] == 0


def test_a_connection_is_kept_alive_between_requests(server: str) -> None:
    with client(server) as http:
        for _ in range(5):
            http.get("plain")
    assert len(set(Handler.connections)) == 1


def test_a_connection_the_server_closed_is_replaced_without_a_failed_attempt(server: str) -> None:
    with client(server) as http:
        for _ in range(4):
            assert http.get_json("drop") == DOCUMENT
        assert http.stats() == {**http.stats(), "requests": 4, "retries": 0}
    assert len(set(Handler.connections)) == 4


def test_repeated_headers_are_joined(server: str) -> None:
    with client(server) as http:
        assert http.get("plain").headers["x-seen"] == "a, b"


def test_a_body_that_cannot_be_decompressed_is_retried_then_reported(server: str) -> None:
    with client(server, retries=1) as http, pytest.raises(SourceError, match="cut short"):
        http.get("bad-gzip")
    assert len(Handler.connections) == 2


def test_a_path_with_spaces_and_accents_is_sent_percent_encoded(server: str) -> None:
    with client(server) as http:
        assert http.get_json("plain?next=été 2026") == DOCUMENT
