"""Malformed evidence files through the command line: never a traceback, never a subset.

A seeded generator writes at least 1,000 malformed JSON Lines and CSV files (invalid
bytes, huge numbers, deep nesting, NUL, BOM, CR/CRLF, duplicate keys, truncated lines,
every field wrong in every way) each holding two learners, and runs ``batch`` and
``evaluate`` on each through ``ceredis.cli.main`` in-process, and a sample through real
``python -m ceredis`` processes. A learner is either scored on every one of its records
or not scored at all; some classes must be refused (exit 2), some must be an ERROR.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ceredis.cli import main
from ceredis.evidence import FIELDS

SEED = 11
JSONL_CASES = 660
CSV_CASES = 340
SUBPROCESS_SAMPLE = 50
EXIT_CODES = {0, 1, 2}  # the documented codes a malformed file may give (never 70)
LEARNERS = ("A1", "A2")
REQUIRED = ("evidenceId", "agentId", "competencyId", "evidenceType", "rawScore", "timestamp")

#: Values each field refuses: a record holding one is invalid, so its learner is ERROR
#: (or, for agentId, the line cannot be attributed and the file is refused).
_NOT_TEXT = [None, 0, -1, 1.5, True, False, [], {}, ["A1"], {"a": 1}]
_BAD_TEXT = ["", " ", "\n", "A\n1", "A1\x00", "\x00", "A\x7f", "A\x851", "A\x1b1", "A1\u2028"]
WRONG = {
    "evidenceId": _NOT_TEXT + _BAD_TEXT,
    "agentId": _NOT_TEXT + _BAD_TEXT,
    "competencyId": _NOT_TEXT + _BAD_TEXT + ["9.9", "1.1.1", "NaN"],
    "evidenceType": _NOT_TEXT + _BAD_TEXT + ["P5", "p1", "P1 "],
    "rawScore": [None, "", True, False, [], {}, "seventy", "72", 100.01, -0.01, -1, 1e400],
    "timestamp": _NOT_TEXT
    + _BAD_TEXT
    + [
        "2026-10-01T09:30:00",
        "yesterday",
        "2026-13-45T99:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "2026-10-01T09:30:00Z\n",
    ],
}
HUGE_NUMBERS = [
    "9" * 4301,
    "9" * 20000,
    "-" + "1" * 5000,
    "1e999999999",
    "1E+999999999999999999",
    "1e-999999999",
    "0." + "0" * 5000 + "1",
    "1" + "0" * 200 + ".5",
]


@dataclass
class Case:
    """One malformed file and what must come of it."""

    name: str
    suffix: str
    data: bytes
    ids: dict[str, list[str]]  # learner -> evidenceIds written for it
    mutated: str | None = None  # the learner whose record was broken
    expect: str = "any"  # "refused" (exit 2) | "error" (mutated learner ERROR) | "any"
    classes: list[str] = field(default_factory=list)


def _records(rng: random.Random) -> list[dict[str, object]]:
    out = []
    for agent in LEARNERS:
        for i in range(rng.randint(1, 3)):
            out.append(
                {
                    "evidenceId": f"{agent}-e{i}",
                    "agentId": agent,
                    "competencyId": rng.choice(["1.1", "2.1", "3.1", "4.1", "5.1"]),
                    "evidenceType": rng.choice(["P1", "P2", "P3", "P4"]),
                    "rawScore": rng.choice([0, 50, 72.5, 100, 88]),
                    "timestamp": "2026-10-01T09:30:00+02:00",
                    "context": "Dernière danse",
                }
            )
    return out


def _ids(records: list[dict[str, object]]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {a: [] for a in LEARNERS}
    for r in records:
        ids[str(r["agentId"])].append(str(r["evidenceId"]))
    return ids


def _line(r: dict[str, object]) -> str:
    return json.dumps(r, ensure_ascii=False)


def _with(text: str, key: str, raw: str) -> str:
    """A JSON object line with *key*'s value replaced by the raw JSON text *raw*."""
    value = json.loads(text)
    value[key] = "\x00MARK\x00"
    return json.dumps(value, ensure_ascii=False).replace('"\\u0000MARK\\u0000"', raw)


def _jsonl_case(rng: random.Random, n: int) -> Case:
    records = _records(rng)
    ids = _ids(records)
    lines = [_line(r) for r in records]
    k = rng.randrange(len(lines))
    victim = str(records[k]["agentId"])
    kind = rng.choice(
        [
            "byte",
            "latin1",
            "huge",
            "deep",
            "nul",
            "bom",
            "newlines",
            "dup",
            "truncated",
            "field",
            "field",
            "field",
            "garbage",
            "surrogate",
            "empty",
        ]
    )
    expect, mutated = "any", victim
    text = "\n".join(lines) + "\n"
    if kind == "byte":
        data = bytearray(text.encode())
        ascii_at = [i for i, b in enumerate(data) if b < 0x80 and b != 0x0A]
        data[rng.choice(ascii_at)] = rng.randrange(0x80, 0x100)
        return Case(f"{n}-byte", ".jsonl", bytes(data), ids, victim, "refused", [kind])
    if kind == "latin1":
        data = "\n".join(lines).encode("latin-1", "replace") + b"\n"
        return Case(f"{n}-latin1", ".jsonl", data, ids, None, "refused", [kind])
    if kind == "huge":
        key = rng.choice(["rawScore", "context", "extra"])
        lines[k] = _with(lines[k], key, rng.choice(HUGE_NUMBERS))
        expect = "error"
    elif kind == "deep":
        depth = rng.choice([101, 500, 1000, 5000, 20000])
        key = rng.choice(["context", "extra", "rawScore"])
        closed = rng.random() < 0.8
        opener = rng.choice(["[", '{"a":'])
        closer = "]" if opener == "[" else "}"
        raw = opener * depth + ("1" + closer * depth if closed else "")
        lines[k] = _with(lines[k], key, raw)
        expect = "error" if closed else "refused"
    elif kind == "nul":
        where = rng.choice(["raw", "evidenceId", "agentId"])
        if where == "raw":
            pos = rng.randrange(len(lines[k]) + 1)
            lines[k] = lines[k][:pos] + "\x00" + lines[k][pos:]
            expect = "refused"
        else:
            lines[k] = _with(lines[k], where, json.dumps(f"A{rng.choice(['', '1'])}\x00"))
            expect = "refused" if where == "agentId" else "error"
    elif kind == "bom":
        if rng.random() < 0.5:
            return Case(f"{n}-bom", ".jsonl", b"\xef\xbb\xbf" + text.encode(), ids, None, "ok")
        lines[k] = "\ufeff" + lines[k]
        expect = "refused" if k else "ok"  # a BOM opening the file is skipped
    elif kind == "newlines":
        ending = rng.choice(["\r\n", "\r"])
        return Case(f"{n}-eol", ".jsonl", (ending.join(lines) + ending).encode(), ids, None, "ok")
    elif kind == "dup":
        key = rng.choice(REQUIRED)
        other = rng.choice(['"A2"', '"A1"', "99", '"x"', "null"])
        lines[k] = lines[k][:-1] + f', "{key}": {other}' + "}"
        expect = "refused"
    elif kind == "truncated":
        lines[k] = lines[k][: rng.randrange(1, len(lines[k]) - 1)]
        expect = "refused"
    elif kind == "field":
        key = rng.choice(REQUIRED)
        value = rng.choice(WRONG[key] + ["<missing>"])
        record = dict(records[k])
        if value == "<missing>":
            del record[key]
            raw_line = _line(record)
        else:
            record[key] = value
            raw_line = _dumps_loose(record)
        lines[k] = raw_line
        expect = "any" if key == "agentId" else "error"
    elif kind == "garbage":
        lines.insert(k, rng.choice(["{", "}", "[1,2]", '"x"', "nul", "{'a': 1}", "\x1c", "1"]))
        expect, mutated = "refused", None
    elif kind == "surrogate":
        lines[k] = _with(lines[k], rng.choice(["evidenceId", "context"]), '"\\ud800x"')
        expect = "any"
    elif kind == "empty":
        data = rng.choice([b"", b"\n\n", b"\xef\xbb\xbf", b"   \n"])
        return Case(f"{n}-empty", ".jsonl", data, {a: [] for a in LEARNERS}, None, "any")
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    return Case(f"{n}-{kind}", ".jsonl", data, ids, mutated, expect, [kind])


def _dumps_loose(record: dict[str, object]) -> str:
    """JSON with NaN/Infinity and lone surrogates as a file might hold them."""
    return json.dumps(record, ensure_ascii=True, allow_nan=True).replace("Infinity", "1e400")


def _csv_case(rng: random.Random, n: int) -> Case:
    records = _records(rng)
    ids = _ids(records)
    header = list(FIELDS)
    rows = [[_cell(r.get(f)) for f in header] for r in records]
    k = rng.randrange(len(rows))
    victim = str(records[k]["agentId"])
    kind = rng.choice(
        ["byte", "huge", "nul", "bom", "newlines", "dup", "missing", "truncated", "field", "cells"]
    )
    expect, mutated, ending = "any", victim, "\r\n"
    if kind == "huge":
        rows[k][header.index("rawScore")] = rng.choice(HUGE_NUMBERS)
        expect = "error"
    elif kind == "nul":
        column = rng.choice(["evidenceId", "agentId", "context"])
        rows[k][header.index(column)] += "\x00"
        expect = {"evidenceId": "error", "agentId": "refused", "context": "any"}[column]
    elif kind == "dup":
        column = rng.choice(REQUIRED)
        header.append(column)
        for row in rows:
            row.append("A2" if column == "agentId" else "x")
        expect, mutated = "refused", None
    elif kind == "missing":
        column = rng.choice(REQUIRED)
        drop = header.index(column)
        header.pop(drop)
        for row in rows:
            row.pop(drop)
        expect, mutated = "refused", None
    elif kind == "field":
        column = rng.choice([c for c in REQUIRED if c != "agentId"])
        wrong = ["", " ", "\n", "A\x7f", "A\x85", "x" if column != "evidenceId" else "\x1b"]
        wrong += ["seventy", "100.5", "-1", "NaN", "Infinity"] if column == "rawScore" else []
        wrong += ["0001-01-01T00:00:00+14:00", "yesterday"] if column == "timestamp" else []
        rows[k][header.index(column)] = rng.choice(wrong)
        expect = "error"
    elif kind == "cells":
        if rng.random() < 0.5:
            rows[k].append("extra")
            expect = "refused"
        else:
            rows[k] = rows[k][: rng.randrange(2, len(REQUIRED))]
            expect = "error"
    elif kind == "newlines":
        ending = rng.choice(["\n", "\r"])
        expect, mutated = "ok", None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=ending)
    writer.writerow(header)
    writer.writerows(rows)
    data = out.getvalue().encode("utf-8")
    if kind == "byte":
        body = data.index(b"\n") + 1
        data = bytearray(data)
        ascii_at = [i for i in range(body, len(data)) if data[i] < 0x80 and data[i] not in b"\r\n"]
        data[rng.choice(ascii_at)] = rng.randrange(0x80, 0x100)
        data, expect = bytes(data), "refused"
    elif kind == "bom":
        data, expect, mutated = b"\xef\xbb\xbf" + data, "ok", None
    elif kind == "truncated":
        data = data + b'"A1,unterminated'
        expect, mutated = "refused", None
    return Case(f"{n}-csv-{kind}", ".csv", data, ids, mutated, expect, [kind])


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def cases() -> Iterator[Case]:
    """The malformed files of one run, deterministic for SEED."""
    rng = random.Random(SEED)
    for n in range(JSONL_CASES):
        yield _jsonl_case(rng, n)
    for n in range(CSV_CASES):
        yield _csv_case(rng, n)


def _evidence_ids(ledger: Path) -> dict[str, tuple[str, list[str]]]:
    """learner -> (status, evidenceIds scored) from a ledger's records."""
    out = {}
    for line in ledger.read_text(encoding="utf-8").split("\n")[:-1]:
        body = json.loads(line)["body"]
        if "result" in body:
            evidence = (body.get("inputs") or {}).get("evidence", [])
            ids = [e["evidenceId"] for e in evidence]
            out[body["agentId"]] = (body["result"]["status"], ids)
    return out


def check_outcome(case: Case, code: int, output: str, ledger: Path | None) -> list[str]:
    """What is wrong with one run's outcome (empty when it held)."""
    problems = []
    if "Traceback" in output or "internal error" in output:
        problems.append(f"traceback or internal error:\n{output[-2000:]}")
    if code not in EXIT_CODES:
        problems.append(f"exit {code} not in {sorted(EXIT_CODES)}")
    if case.expect == "refused" and code != 2:
        problems.append(f"expected a refusal (exit 2), got {code}")
    if case.expect == "ok" and code != 0:
        problems.append(f"expected every learner OK (exit 0), got {code}")
    if ledger is None or code == 2:
        return problems
    scored = _evidence_ids(ledger)
    for agent, written in case.ids.items():
        status, ids = scored.get(agent, ("absent", []))
        if status == "OK" and sorted(ids) != sorted(written):
            problems.append(f"{agent} scored on {sorted(ids)} of {sorted(written)}")
        if status != "ERROR" and case.expect == "error" and agent == case.mutated:
            problems.append(f"{agent} should be ERROR, is {status}")
        if agent != case.mutated and written and status != "OK" and case.expect != "any":
            problems.append(f"{agent}'s records are all valid, yet it is {status}")
    return problems


def run_in_process(case: Case, tmp: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    path = tmp / f"evidence-{case.name}{case.suffix}"
    path.write_bytes(case.data)
    ledger = tmp / f"{case.name}.ledger.jsonl"
    agents = [x for a in LEARNERS for x in ("--agent", a)]
    code = main(
        [
            "batch",
            "--source",
            str(path),
            *agents,
            "--workers",
            "1",
            "--quiet",
            "--database",
            f"sqlite:///{tmp / 'fuzz.sqlite'}",
            "--ledger",
            str(ledger),
        ]
    )
    out = capsys.readouterr()
    problems = check_outcome(case, code, out.out + out.err, ledger if ledger.exists() else None)
    victim = case.mutated or LEARNERS[0]
    code = main(["evaluate", "--agent", victim, "--source", str(path), "--json"])
    out = capsys.readouterr()
    problems += [f"evaluate: {p}" for p in check_evaluate(case, victim, code, out.out, out.err)]
    return problems


def check_evaluate(case: Case, agent: str, code: int, out: str, err: str) -> list[str]:
    """evaluate --json: no traceback, a documented code, all of the learner or nothing."""
    problems = check_outcome(case, code, out + err, None)
    if code in (0, 1) and out.strip():
        result = json.loads(out)
        if result["status"] == "OK":
            counted = sum(c["evidenceCount"] for c in result["competencies"].values())
            if counted != len(case.ids[agent]):
                problems.append(f"{agent} scored on {counted} of {len(case.ids[agent])}")
        elif case.expect == "error" and agent == case.mutated and result["status"] != "ERROR":
            problems.append(f"{agent} should be ERROR, is {result['status']}")
    return problems


def test_generator_covers_every_class():
    """At least 1,000 files, JSON Lines and CSV, every class present."""
    all_cases = list(cases())
    assert len(all_cases) >= 1000
    kinds = Counter((c.suffix, c.name.split("-")[-1]) for c in all_cases)
    assert len({k for s, k in kinds if s == ".jsonl"}) >= 13
    assert len({k for s, k in kinds if s == ".csv"}) >= 10


def test_malformed_files_in_process(tmp_path, capsys):
    """Every malformed file: no traceback, a documented exit code, never a subset."""
    failures: dict[str, list[str]] = {}
    for case in cases():
        problems = run_in_process(case, tmp_path, capsys)
        if problems:
            failures[case.name] = problems
    shown = "\n".join(f"{name}: {p}" for name, ps in list(failures.items())[:15] for p in ps)
    by_class = Counter(name.split("-", 1)[1] for name in failures)
    assert not failures, f"{len(failures)} files failed, by class {dict(by_class)}:\n{shown}"


def test_malformed_files_through_real_processes(tmp_path):
    """A sample of 50 files through `python -m ceredis` (batch and evaluate, alternately)."""
    sample = random.Random(SEED).sample(list(cases()), SUBPROCESS_SAMPLE)
    with ThreadPoolExecutor(max_workers=2) as threads:
        outcomes = threads.map(lambda n: run_subprocess(sample[n], n, tmp_path), range(len(sample)))
        failures = {name: problems for name, problems in outcomes if problems}
    assert not failures, failures


def run_subprocess(case: Case, n: int, tmp: Path) -> tuple[str, list[str]]:
    """Run `batch` (even *n*) or `evaluate` (odd *n*) on *case* in a real interpreter."""
    path = tmp / f"evidence-{case.name}{case.suffix}"
    path.write_bytes(case.data)
    victim = case.mutated or LEARNERS[0]
    ledger = tmp / f"{case.name}.ledger.jsonl"
    if n % 2:
        command = ["evaluate", "--agent", victim, "--source", str(path), "--json"]
    else:
        command = ["batch", "--source", str(path), "--agent", "A1", "--agent", "A2", "--quiet"]
        command += ["--workers", "1", "--database", f"sqlite:///{tmp / f'{n}.sqlite'}"]
        command += ["--ledger", str(ledger)]
    done = subprocess.run(
        [sys.executable, "-m", "ceredis", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    if n % 2:
        return case.name, check_evaluate(case, victim, done.returncode, done.stdout, done.stderr)
    found = ledger if ledger.exists() else None
    return case.name, check_outcome(case, done.returncode, done.stdout + done.stderr, found)
