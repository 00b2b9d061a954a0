"""CPU of one xAPI page in the worker: the HTTP exchange and the exact decode, each
against a bound measured in the same run.

    python benchmarks/xapi_page.py [--learners N] [--seed S] [--dir DIR]

The static xAPI upstream of the seed comparison (``vs_seed/xapi_static.py``, its own
process) serves the first page of each of N learners' statements (~86 a learner, about
69 KB). Measured in this process, best of 5 rounds over the same pages:

* the exchange through the engine's :class:`~ceredis.sources.http.HttpClient`, against
  the same requests written and read on a bare socket (the bound: no parsing at all);
* the exact decode (``exactjson.loads_document``: numbers with a fraction as
  ``Decimal(text)``, duplicate keys refused), against ``orjson.loads`` (floats, duplicate
  keys kept: fast but not exact) and the json C scanner with ``parse_float=Decimal``
  (exact numbers, but no duplicate check).

No database and no pool: the figures are the page's own cost (issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._bench import best_cpu_ms, seed_cohort  # noqa: E402
from ceredis.config import load_settings  # noqa: E402
from ceredis.sources.http import parse_json  # noqa: E402
from ceredis.sources.xapi import XAPI_VERSION, XapiSource  # noqa: E402


def each(work: Callable[[bytes], object], items: list[bytes]) -> None:
    """*work* on every item, each result dropped at once (as a worker drops a page once
    mapped: kept alive, 200 decoded pages would make the cyclic GC the larger cost)."""
    for item in items:
        work(item)


def bare_exchange(sock: socket.socket, request: bytes) -> bytes:
    """One request on a kept-alive socket, its answer read by Content-Length."""
    sock.sendall(request)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    parts = [body]
    while (got := sum(map(len, parts))) < length:
        parts.append(sock.recv(min(65536, length - got)))
    return b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=200, help="pages measured (200)")
    parser.add_argument("--seed", type=int, default=1, help="sample seed (1)")
    parser.add_argument(
        "--dir", type=Path, help="cohort directory (default $TMPDIR/ceredis-bench/vs_seed)"
    )
    args = parser.parse_args()
    os.environ["CEREDIS_SOURCE_RATE"] = "1e6"  # the shared rate limit never binds
    directory = args.dir or Path(tempfile.gettempdir()) / "ceredis-bench" / "vs_seed"
    evidence, roster = seed_cohort(directory, 2000, args.seed)
    ids = roster.read_text(encoding="utf-8").split()[: args.learners]
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "vs_seed" / "xapi_static.py"), "--cohort", str(evidence)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int((upstream.stdout.readline() if upstream.stdout else "0 0").split()[1])
        measure(port, ids)
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)


def measure(port: int, ids: list[str]) -> None:
    source = XapiSource.from_uri(f"xapi+http://127.0.0.1:{port}/xAPI/", settings=load_settings())
    client = source._http
    headers = {"X-Experience-API-Version": XAPI_VERSION, "Accept": "application/json"}
    queries = [
        {
            "agent": json.dumps(source._agent_filter(a), sort_keys=True, separators=(",", ":")),
            "limit": str(source.page_size),
        }
        for a in ids
    ]
    requests = [
        f"GET /xAPI/statements?{urllib.parse.urlencode(q)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAccept-Encoding: gzip\r\n"
        f"X-Experience-API-Version: {XAPI_VERSION}\r\nAccept: application/json\r\n\r\n".encode()
        for q in queries
    ]
    bodies = [client.request("GET", "statements", fields=q, headers=headers).body for q in queries]
    size = sum(map(len, bodies)) / len(bodies)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        exchange = {
            "HttpClient.request": lambda: [
                client.request("GET", "statements", fields=q, headers=headers) for q in queries
            ],
            "bare socket (the bound)": lambda: [bare_exchange(sock, r) for r in requests],
        }
        http = {name: best_cpu_ms(work, len(ids)) for name, work in exchange.items()}
    decoders = {
        "exactjson.loads_document (exact, strict)": parse_json,
        "json C scanner, parse_float=Decimal": lambda b: json.loads(b, parse_float=Decimal),
        "orjson.loads (floats, duplicates kept)": orjson.loads,
    }
    decode = {
        name: best_cpu_ms(lambda f=f: each(f, bodies), len(bodies)) for name, f in decoders.items()
    }
    client.close()
    print(f"{len(ids)} first pages of ~{size / 1024:.0f} KB; CPU ms per page:")
    bound = http["bare socket (the bound)"]
    for name, ms in http.items():
        print(f"  exchange  {name:42s} {ms:6.3f}  ({ms / bound:4.1f}× the bare socket)")
    peer = decode["orjson.loads (floats, duplicates kept)"]
    for name, ms in decode.items():
        print(f"  decode    {name:42s} {ms:6.3f}  ({ms / peer:4.1f}× orjson)")


if __name__ == "__main__":
    main()
