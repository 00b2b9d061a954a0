"""The HTTP client's own transport against a plain server on 127.0.0.1: bodies as servers
send them (gzip, deflate, chunked, until close), connections kept alive and dropped."""

from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
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
        type(self).connections.append(self.client_address[1])  # one port per connection
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


# -- answers as raw bytes: what a server may send that http.server does not ----------------

SMALL = b'{"ok":1}'
RAW = {
    "interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + SMALL,
    "http10": b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + SMALL,
    "folded": b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 8\r\n\r\n" + SMALL,
    "trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;name=value\r\n" + SMALL[:3] + b"\r\n5\r\n" + SMALL[3:] + b"\r\n0\r\nX-Sum: 1\r\n\r\n"
    ),
    "lf-only": b"HTTP/1.1 200 OK\nContent-Length: 8\n\n" + SMALL,
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "bad-length": b"HTTP/1.1 200 OK\r\nContent-Length: 8, 9\r\n\r\n" + SMALL,
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.fixture
def raw_server() -> Iterator[str]:
    """Answers ``GET /<name>`` with RAW[name], then closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                request = conn.recv(65536)
                name = request.split(b" ", 2)[1].lstrip(b"/").decode()
                conn.sendall(RAW[name])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join()
    listener.close()


@pytest.mark.parametrize("name", ["interim", "http10", "folded", "trailers", "lf-only"])
def test_answers_servers_may_send_are_read(raw_server: str, name: str) -> None:
    with client(raw_server) as http:
        answer = http.get(name)
    assert (answer.status, answer.body) == (200, SMALL)
    if name == "folded":
        assert answer.headers["x-long"] == "a b"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("not-http", "not an HTTP/1.x status line"),
        ("bad-length", "is not a length"),
        ("bad-chunk", "is not hexadecimal"),
    ],
)
def test_answers_that_are_not_http_fail_with_what_was_wrong(
    raw_server: str, name: str, problem: str
) -> None:
    with client(raw_server, retries=0) as http, pytest.raises(SourceError, match=problem):
        http.get(name)


# -- TLS: a server whose certificate a test authority signed -----------------------------


def _certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A test authority (its certificate) and a certificate for 127.0.0.1 it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ceredis test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 and the authority that signed its certificate."""
    ca, cert, key = _certificate(tmp_path)
    Handler.connections = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/", ca
    httpd.shutdown()
    httpd.server_close()


def test_https_is_verified_and_kept_alive(
    tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = tls_server
    with client(url, retries=0) as http, pytest.raises(SourceError, match="CERTIFICATE_VERIFY"):
        http.get("plain")  # the machine's authorities do not know the test one
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with client(url) as http:
        for how in ("plain", "gzip", "chunked"):
            assert http.get_json(how) == DOCUMENT
        assert http.stats()["retries"] == 0
    assert len(set(Handler.connections)) == 1
