"""Rewrite the golden ledgers: ``python -m tests.ledger.golden.regenerate`` (from the repo root).

``ok.jsonl`` is what the writer produces for the fixed inputs of ``tests.ledger.helpers``
(test_golden checks it still does, byte for byte); every other file is ``ok.jsonl`` with
one defect, named for it, and ``expected.json`` lists what verification must report.
Only rerun this after a deliberate format change, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from tests.ledger.helpers import body, write_ledger

HERE = Path(__file__).parent


def _rehash_body(line: bytes, new_body: bytes) -> bytes:
    """The line with its body replaced and its content hash recomputed (prev kept)."""
    head, tail = line.split(b',"hash":"', 1)
    old = head[len(b'{"body":') :]
    assert old
    digest = hashlib.sha256(new_body).hexdigest().encode()
    return b'{"body":' + new_body + b',"hash":"' + digest + tail[64:]


def defects(lines: list[bytes]) -> dict[str, tuple[list[bytes], str, list[tuple[int, str]]]]:
    """name -> (lines, expected status, expected [(line, kind)])."""
    tampered = lines[2].replace(b'"score":0.37', b'"score":9.37')
    assert tampered != lines[2]
    footer_body = lines[6][len(b'{"body":') : lines[6].index(b',"hash":"')]
    spaced = footer_body.replace(b'"meta":', b'"meta": ')
    return {
        "ok": (lines, "ok", []),
        "unfinished": (lines[:6], "incomplete", []),
        "torn-last-line": ([*lines[:6], lines[6][:40]], "failed", [(7, "torn-tail")]),
        "tampered-body": (
            [*lines[:2], tampered, *lines[3:]],
            "failed",
            [(3, "content-hash"), (4, "chain"), (7, "footer-root")],
        ),
        "rehashed-body": (
            [*lines[:2], _rehash_body(lines[2], b'{"agentId":"agent-0001"}'), *lines[3:]],
            "failed",
            [(4, "chain"), (7, "footer-root")],
        ),
        "deleted-line": (
            [*lines[:3], *lines[4:]],
            "failed",
            [(4, "chain"), (4, "deleted"), (6, "footer-count"), (6, "footer-root")],
        ),
        "reordered-lines": (
            [*lines[:2], lines[3], lines[2], *lines[4:]],
            "failed",
            [(3, "chain"), (4, "chain"), (4, "reordered"), (5, "chain"), (7, "footer-root")],
        ),
        "duplicated-line": (
            [*lines[:4], lines[3], *lines[4:]],
            "failed",
            [(5, "chain"), (5, "duplicated"), (8, "footer-count"), (8, "footer-root")],
        ),
        "line-after-footer": (
            [*lines, lines[2]],
            "failed",
            [(8, "chain"), (8, "duplicated"), (8, "structure")],
        ),
        "missing-header": (
            lines[1:],
            "failed",
            [(1, "chain"), (1, "structure"), (1, "deleted")],
        ),
        "malformed-line": (
            [*lines[:2], b"this is not a ledger line\n", *lines[3:]],
            "failed",
            [(3, "malformed"), (4, "chain"), (7, "footer-count"), (7, "footer-root")],
        ),
        "reformatted-footer": (
            [*lines[:6], _rehash_body(lines[6], spaced)],
            "failed",
            [(7, "non-canonical")],
        ),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ok = write_ledger(Path(tmp) / "ok.jsonl", [body(i) for i in range(5)])
        lines = ok.read_bytes().splitlines(keepends=True)
    expected = {}
    for name, (content, status, problems) in defects(lines).items():
        (HERE / f"{name}.jsonl").write_bytes(b"".join(content))
        expected[name] = {"status": status, "problems": problems}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":
    main()
