"""A real finished run for the export and report tests, made through the command line.

``sample --agents 300`` plus three learners from untrusted input: one whose id is an HTML
script and whose evidence is invalid (ERROR), one scored OK whose id holds a comma,
quotes, ``<b>`` and ``&``, and one citing an unknown competency (ERROR); then ``batch``
on two workers into SQLite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT_ID = "<script>alert('x')</script>"
QUOTED_ID = 'Zoë, "the <b>tester</b>" & co'
UNKNOWN_ID = "L-unknown-competency"
LEARNERS = 303


@dataclass(frozen=True)
class CohortRun:
    """The run's files, and each record's result parsed with numbers kept as their text."""

    dir: Path
    ledger: Path
    database: str
    run_id: str
    results: list[dict[str, Any]]  # in ledger order; scores are the exact recorded strings


def ceredis(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "ceredis", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def make_run(home: Path) -> CohortRun:
    """Sample, add the three untrusted learners, batch; return the finished run."""
    cohort, roster, ledger = home / "cohort.jsonl", home / "cohort.agents.txt", home / "run.jsonl"
    sampled = ceredis("sample", "--agents", LEARNERS - 3, "--seed", 5, "--out", cohort)
    assert sampled.returncode == 0, sampled.stderr
    lines = cohort.read_text("utf-8").splitlines()
    first = json.loads(lines[0])["agentId"]
    copied = [json.loads(line) for line in lines if json.loads(line)["agentId"] == first]
    extra = [
        _evidence(SCRIPT_ID, "s1", "1.1", 150),
        *({**r, "agentId": QUOTED_ID, "evidenceId": "q-" + r["evidenceId"]} for r in copied),
        _evidence(UNKNOWN_ID, "u1", "9.9", 50),
    ]
    with cohort.open("a", encoding="utf-8") as stream:
        stream.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in extra)
    with roster.open("a", encoding="utf-8") as stream:
        stream.write(f"{SCRIPT_ID}\n{QUOTED_ID}\n{UNKNOWN_ID}\n")
    database = f"sqlite:///{home / 'results.db'}"
    batch = ceredis(
        "batch", "--source", cohort, "--file", roster, "--workers", 2,
        "--database", database, "--ledger", ledger, "--quiet",
    )  # fmt: skip
    assert batch.returncode == 1, batch.stdout + batch.stderr  # two learners fail
    records = [json.loads(line, parse_float=str) for line in ledger.read_text("utf-8").splitlines()]
    return CohortRun(
        home,
        ledger,
        database,
        records[0]["body"]["meta"]["runId"],
        [r["body"]["result"] for r in records if r["kind"] == "record"],
    )


def _evidence(agent: str, eid: str, competency: str, score: int) -> dict[str, Any]:
    return {
        "evidenceId": eid,
        "agentId": agent,
        "competencyId": competency,
        "evidenceType": "P1",
        "rawScore": score,
        "timestamp": "2026-10-01T09:30:00+02:00",
    }


def tamper(run: CohortRun, out: Path) -> tuple[Path, str, str]:
    """A copy of the ledger with the first OK learner's score changed in its last digit.

    Returns the copy, the learner's id and the score the copy now records.
    """
    lines = run.ledger.read_text("utf-8").splitlines(keepends=True)
    index, target = next((i, r) for i, r in enumerate(run.results) if r["status"] == "OK")
    score = target["ceredisScore"]
    changed = score[:-1] + ("1" if score[-1] != "1" else "2")
    old, new = f'"ceredisScore":{score},', f'"ceredisScore":{changed},'
    assert lines[index + 1].count(old) == 1
    lines[index + 1] = lines[index + 1].replace(old, new)
    out.write_text("".join(lines), "utf-8")
    return out, target["agentId"], changed
