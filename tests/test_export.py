"""``ceredis export``: a verified run's learners as RFC 4180 CSV, one row each.

One real 303-learner run (through the command line, into SQLite); every cell of every
row is checked against the ledger's record, read as text; a tampered or unfinished
ledger is refused unless ``--unverified``; the store's rows give the same file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cohort_run import QUOTED_ID, SCRIPT_ID, CohortRun, ceredis, make_run, tamper

DOMAINS = ["D1", "D2", "D3", "D4", "D5"]
PER_DOMAIN = (3, 3, 3, 3, 7)  # competencies per domain, in referential order (scoring.md §8)
COMPETENCIES = [f"{d}.{c}" for d, n in enumerate(PER_DOMAIN, start=1) for c in range(1, n + 1)]
HEADER = ["agentId", "status", "ceredisScore", "bandLevel", "cecrlLevel", *DOMAINS]
HEADER += [*COMPETENCIES, "error"]


@pytest.fixture(scope="module", autouse=True)
def umask_022() -> Iterator[None]:
    """Files are created under the usual umask: the export must still be private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, umask_022: None) -> CohortRun:
    return make_run(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def exported(run: CohortRun) -> bytes:
    out = run.dir / "results.csv"
    done = ceredis("export", run.ledger, "--format", "csv", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout and str(out) in done.stdout
    return out.read_bytes()


def expected_row(result: dict[str, Any]) -> list[str]:
    """The row the spec asks for, built from the ledger's text (absent values empty)."""
    domains = result["domainScores"] or {}
    competencies = result["competencies"] or {}

    def text(value: Any) -> str:
        return "" if value is None else value

    return [
        result["agentId"],
        result["status"],
        text(result["ceredisScore"]),
        text(result["bandLevel"]),
        text(result["cecrlLevel"]),
        *(text(domains.get(d)) for d in DOMAINS),
        *(text((competencies.get(c) or {}).get("status")) for c in COMPETENCIES),
        text(result.get("error")),
    ]


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_every_row_matches_its_ledger_record_cell_by_cell(run: CohortRun, exported: bytes):
    rows = parse(exported)
    assert rows[0] == HEADER
    assert len(rows) == 1 + len(run.results) == 1 + 303
    for row, result in zip(rows[1:], run.results, strict=True):
        assert row == expected_row(result), result["agentId"]
    statuses = {row[1] for row in rows[1:]}
    assert statuses == {"OK", "SKIPPED", "ERROR"}  # every kind of row was checked


def test_the_file_is_rfc_4180_utf8_without_bom_and_private(run: CohortRun, exported: bytes):
    assert not exported.startswith(b"\xef\xbb\xbf")
    assert exported.endswith(b"\r\n")
    assert exported.count(b"\r\n") == 1 + len(run.results)
    assert exported.count(b"\n") == exported.count(b"\r\n")  # no bare LF line end
    quoted = '"Zoë, ""the <b>tester</b>"" & co"'.encode()
    assert quoted in exported  # a comma and quotes in a field: quoted, quotes doubled
    assert (run.dir / "results.csv").stat().st_mode & 0o777 == 0o600
    names = {row[0] for row in parse(exported)}
    assert {QUOTED_ID, SCRIPT_ID} <= names
    ok = next(r for r in run.results if r["status"] == "OK")
    assert ok["ceredisScore"].count(".") == 1 and len(ok["ceredisScore"].split(".")[1]) == 2


def test_bom_prepends_exactly_a_utf8_bom(run: CohortRun, exported: bytes, tmp_path: Path):
    out = tmp_path / "excel.csv"
    done = ceredis("export", run.ledger, "--out", out, "--bom")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"\xef\xbb\xbf" + exported


def test_a_tampered_ledger_is_refused_unless_unverified(run: CohortRun, tmp_path: Path):
    ledger, agent, changed = tamper(run, tmp_path / "tampered.jsonl")
    out = tmp_path / "out.csv"
    refused = ceredis("export", ledger, "--out", out)
    assert refused.returncode == 1
    line = 2 + [r["agentId"] for r in run.results].index(agent)  # line 1 is the header
    assert "fails verification" in refused.stderr and f"line {line}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.csv.*"))
    accepted = ceredis("export", ledger, "--out", out, "--unverified")
    assert accepted.returncode == 0, accepted.stderr
    assert "NOT verified" in accepted.stdout
    rows = {row[0]: row for row in parse(out.read_bytes())}
    assert rows[agent][2] == changed  # read as it is, the tampered score included


def test_an_unfinished_ledger_is_refused(run: CohortRun, tmp_path: Path):
    lines = run.ledger.read_bytes().splitlines(keepends=True)
    ledger = tmp_path / "unfinished.jsonl"
    ledger.write_bytes(b"".join(lines[:-1]))  # the footer is gone: an interrupted batch
    refused = ceredis("export", ledger, "--out", tmp_path / "out.csv")
    assert refused.returncode == 1
    assert "--resume" in refused.stderr


def test_the_store_rows_of_the_run_give_the_same_file(run: CohortRun, exported: bytes, tmp_path):
    out = tmp_path / "from-db.csv"
    done = ceredis("export", "--database", run.database, "--run", run.run_id, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "not verified" in done.stdout
    assert out.read_bytes() == exported


def test_a_postgresql_runs_rows_give_the_same_file_as_its_ledger(run: CohortRun, pg_url, tmp_path):
    ledger = tmp_path / "pg.jsonl"
    batch = ceredis(
        "batch", "--source", run.dir / "cohort.jsonl", "--file", run.dir / "cohort.agents.txt",
        "--workers", 2, "--database", pg_url, "--ledger", ledger, "--quiet",
    )  # fmt: skip
    assert batch.returncode == 1, batch.stderr
    run_id = json.loads(ledger.read_text("utf-8").splitlines()[0])["body"]["meta"]["runId"]
    from_ledger, from_db = tmp_path / "ledger.csv", tmp_path / "db.csv"
    assert ceredis("export", ledger, "--out", from_ledger).returncode == 0
    done = ceredis("export", "--database", pg_url, "--run", run_id, "--out", from_db)
    assert done.returncode == 0, done.stderr
    assert from_db.read_bytes() == from_ledger.read_bytes()
    assert len(parse(from_db.read_bytes())) == 1 + 303


def test_an_existing_file_is_replaced_privately_and_atomically(run: CohortRun, exported, tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("old")
    out.chmod(0o644)
    assert ceredis("export", run.ledger, "--out", out).returncode == 0
    assert out.read_bytes() == exported
    assert out.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left


@pytest.mark.parametrize(
    "args",
    [
        ["--out", "x.csv"],  # no source
        ["LEDGER", "--database", "DB", "--run", "RUN", "--out", "x.csv"],  # two sources
        ["--database", "DB", "--out", "x.csv"],  # no --run
        ["--database", "DB", "--run", "no-such-run", "--out", "x.csv"],
        ["--database", "DB", "--run", "RUN", "--unverified", "--out", "x.csv"],
        ["LEDGER", "--format", "xlsx", "--out", "x.csv"],
        ["LEDGER", "--out", "no-such-dir/x.csv"],
        ["cohort.jsonl", "--out", "x.csv"],  # not a ledger
        ["missing.jsonl", "--out", "x.csv"],
    ],
)
def test_usage_and_unreadable_input_exit_2(run: CohortRun, args: list[str]):
    names = {"LEDGER": str(run.ledger), "DB": run.database, "RUN": run.run_id}
    done = ceredis("export", *(names.get(a, a) for a in args), cwd=run.dir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip()
    assert not (run.dir / "x.csv").exists()
