"""A fast static xAPI upstream for the seed comparison: pre-encoded statements, added latency.

Serves ``GET <prefix>statements?agent=…&limit=…`` (and the ``more`` links it hands
out) from a cohort's JSONL file, each record made a statement by
:func:`doubles.xapi_fixtures.evidence_to_statement`, so the project's xAPI source reads
back exactly the file's evidence. Built to be cheap in CPU (its CPU competes with the
engines on the same cores): one asyncio process, a hand-written HTTP/1.1 keep-alive
loop, statements encoded once, every answer cached by request target. Every answer is
delayed by the latency L (``/_control/set?latency_ms=``). It counts requests.

    python benchmarks/vs_seed/xapi_static.py --cohort cohort.jsonl [--port 0]

prints ``listening <port>`` once ready. Control (not counted): ``/_control/stats``,
``/_control/reset``, ``/_control/set?latency_ms=L``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import pickle
import sys
import time
import urllib.parse
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PREFIX = "/xAPI/"
_CACHE_VERSION = 1


def encode_statements(cohort: Path) -> dict[str, list[bytes]]:
    """Each learner's statements (canonical JSON bytes), in file order; cached on disk."""
    cache = cohort.with_name(f"{cohort.name}.xapi-statements.v{_CACHE_VERSION}.pickle")
    stat = cohort.stat()
    key = (stat.st_size, stat.st_mtime_ns)
    if cache.exists():
        with open(cache, "rb") as f:
            cached_key, statements = pickle.load(f)
        if cached_key == key:
            return statements
    from doubles.xapi_fixtures import evidence_to_statement
    from ledger.canonical import canonical

    statements: dict[str, list[bytes]] = defaultdict(list)
    with open(cohort, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line, parse_float=Decimal)
            statements[record["agentId"]].append(canonical(evidence_to_statement(record)))
    statements = dict(statements)
    tmp = cache.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump((key, statements), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(cache)
    return statements


class Upstream:
    """The statements, the answers already built, the latency and the counters."""

    def __init__(self, statements: dict[str, list[bytes]]):
        self.statements = statements
        self.agents = list(statements)
        self.answers: dict[bytes, bytes] = {}
        self.latency = 0.0
        self.reset()

    def reset(self) -> None:
        self.requests = self.first_pages = 0
        self.first = self.last = None

    def answer(self, target: bytes) -> bytes:
        """The whole HTTP response to a GET of *target* (built once, then cached)."""
        cached = self.answers.get(target)
        if cached is None:
            cached = self.answers[target] = _response(200, self._body(target.decode("latin-1")))
        return cached

    def _body(self, target: str) -> bytes:
        parts = urllib.parse.urlsplit(target)
        if parts.path != PREFIX + "statements":
            return b'{"error":"not found"}'
        query = dict(urllib.parse.parse_qsl(parts.query))
        limit = max(1, int(query.get("limit", "100")))
        if "more" in query:
            name, _, start = query["more"].rpartition(":")
            return self._page(name, int(start), limit)
        if "agent" in query:
            agent = json.loads(query["agent"])
            name = (agent.get("account") or {}).get("name") or agent.get("mbox") or ""
        else:  # no filter (a ping): the first learner's statements stand for the LRS's
            name = self.agents[0] if self.agents else ""
        return self._page(name, 0, limit)

    def _page(self, name: str, start: int, limit: int) -> bytes:
        statements = self.statements.get(name, [])
        end = start + limit
        more = ""
        if end < len(statements):
            more = (
                PREFIX
                + "statements?"
                + urllib.parse.urlencode({"more": f"{name}:{end}", "limit": limit})
            )
        return (
            b'{"more":'
            + json.dumps(more).encode()
            + b',"statements":['
            + b",".join(statements[start:end])
            + b"]}"
        )

    def control(self, target: str) -> bytes:
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.path.endswith("/set") and "latency_ms" in query:
            self.latency = float(query["latency_ms"]) / 1000
        elif parts.path.endswith("/reset"):
            self.reset()
        stats = {
            "requests": self.requests,
            "firstPages": self.first_pages,
            "first": self.first,
            "last": self.last,
            "latencyMs": self.latency * 1000,
            "learners": len(self.statements),
        }
        return _response(200, json.dumps(stats).encode())


def _response(status: int, body: bytes) -> bytes:
    reason = b"OK" if status == 200 else b"Not Found"
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
        b"X-Experience-API-Version: 1.0.3\r\nContent-Length: %d\r\n\r\n"
    )
    return head % (status, reason, len(body)) + body


class Connection(asyncio.Protocol):
    """One keep-alive connection: requests parsed from the buffer, answers after L."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self._request(head)

    def _request(self, head: bytes) -> None:
        line, _, headers = head.partition(b"\r\n")
        try:
            _, target, _ = line.split(b" ", 2)
        except ValueError:
            self.transport.close()
            return
        close = b"connection: close" in headers.lower()
        up = self.upstream
        if target.startswith(b"/_control/"):
            self._send(up.control(target.decode("latin-1")), close)
            return
        up.requests += 1
        up.first_pages += b"more=" not in target
        now = time.time()
        up.first = up.first or now
        up.last = now
        response = up.answer(target)
        if up.latency > 0:
            self.loop.call_later(up.latency, self._send, response, close)
        else:
            self._send(response, close)

    def _send(self, response: bytes, close: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)
            if close:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(statements: dict[str, list[bytes]], host: str, port: int) -> None:
    upstream = Upstream(statements)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(upstream), host, port, backlog=256)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, type=Path, help="the cohort's JSONL file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args(argv)
    statements = encode_statements(args.cohort)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(statements, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
