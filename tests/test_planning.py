"""Planning refuses what would fail later: unwritable paths, an empty learner list, more
workers than the learners, the memory or the database can hold (through the real CLI)."""

from __future__ import annotations

import json
import re

import psycopg
import pytest

from ceredis.capacity import WORKER_MEMORY, available_memory, free_connections
from ceredis.cli import main
from ceredis.stores import parse_store_url
from ledger.reader import read_ledger

AGENTS = ["--agent", "L00001", "--agent", "L00002"]


def batch(capsys, tmp_path, *argv: str, database: str | None = None) -> tuple[int, str]:
    database = database or f"sqlite:///{tmp_path / 'store.sqlite'}"
    code = main(["batch", "--quiet", "--database", database, *argv])
    return code, capsys.readouterr().err


def nothing_scored(tmp_path) -> bool:
    return not any(p.suffix == ".jsonl" for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("option", "target", "message"),
    [
        ("--ledger", "file/sub/run.jsonl", "a part of this path is a file"),
        ("--report", "file/run.report.json", "a part of this path is a file"),
        ("--ledger", "/proc/ceredis/run.jsonl", "cannot write in the directory /proc/ceredis"),
        ("--report", "/proc/run.report.json", "cannot write in the directory /proc"),
        ("--report", "folder", "is a directory: give the path of a file"),
    ],
)
def test_an_unwritable_path_is_exit_2_before_any_learner(capsys, tmp_path, option, target, message):
    """A ledger or report path that cannot be written names itself; nothing is scored."""
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "folder").mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    argv = [option, path]
    if option == "--report":
        argv += ["--ledger", str(tmp_path / "run.jsonl")]
    code, err = batch(capsys, tmp_path, *AGENTS, *argv)
    assert code == 2, err
    assert message in err and path in err
    assert nothing_scored(tmp_path)


def test_an_empty_roster_is_exit_2_unless_allowed(capsys, tmp_path):
    """An empty learner list is refused; --allow-empty records an empty, finished run."""
    roster = tmp_path / "empty.txt"
    roster.write_text("# nobody\n\n")
    ledger = tmp_path / "run.jsonl"
    code, err = batch(capsys, tmp_path, "--file", str(roster), "--ledger", str(ledger))
    assert code == 2 and "the learner list is empty" in err and "--allow-empty" in err
    assert not ledger.exists()
    code, err = batch(
        capsys, tmp_path, "--file", str(roster), "--ledger", str(ledger), "--allow-empty"
    )
    assert code == 0, err
    assert [r.kind for r in read_ledger(ledger)] == ["header", "footer"]


def test_workers_are_capped_at_the_learner_count(capsys, tmp_path):
    """--workers 200 for two learners starts two workers (the header records 2)."""
    ledger = tmp_path / "run.jsonl"
    code, err = batch(capsys, tmp_path, *AGENTS, "--workers", "200", "--ledger", str(ledger))
    assert code == 0, err
    header = next(iter(read_ledger(ledger))).body["meta"]
    assert header["workers"] == 2
    report = json.loads(ledger.with_suffix(".report.json").read_text())
    assert report["concurrency"] == 2


def test_workers_beyond_the_memory_are_refused(capsys, tmp_path):
    """More workers than the available memory holds: both numbers and the largest fit."""
    memory = available_memory()
    assert memory is not None
    fits = memory // WORKER_MEMORY
    roster = tmp_path / "many.txt"
    roster.write_text("".join(f"L{i:06d}\n" for i in range(fits + 10)))
    code, err = batch(
        capsys, tmp_path, "--file", str(roster), "--workers", str(fits + 5), "--ledger",
        str(tmp_path / "run.jsonl"),
    )  # fmt: skip
    assert code == 2, err
    found = re.search(r"has ([\d,]+) MiB available: use --workers (\d+) or fewer", err)
    assert found, err  # memory moves between two readings: compare within 5 %
    assert abs(int(found[1].replace(",", "")) - (memory >> 20)) < memory / 20 / 2**20
    assert abs(int(found[2]) - fits) < fits / 20
    assert f"--workers {fits + 5} needs about" in err
    assert nothing_scored(tmp_path)


def test_workers_beyond_free_postgres_connections_are_refused(capsys, tmp_path, pg_url):
    """More workers than PostgreSQL's free connections: max_connections, in use, what fits."""
    with psycopg.connect(pg_url) as conn:
        limit = conn.execute("SHOW max_connections").fetchone()[0]
    free, counted = free_connections(parse_store_url(pg_url))
    assert counted == int(limit) and 0 < free <= counted
    roster = tmp_path / "many.txt"
    roster.write_text("".join(f"L{i:06d}\n" for i in range(free + 50)))
    workers = free + 20
    if workers * WORKER_MEMORY > (available_memory() or 0):
        pytest.fail("the test machine cannot hold the workers that would exceed the server")
    code, err = batch(
        capsys, tmp_path, "--file", str(roster), "--workers", str(workers), "--ledger",
        str(tmp_path / "run.jsonl"), database=pg_url,
    )  # fmt: skip
    assert code == 2, err
    assert f"max_connections {limit}" in err and "free" in err
    assert "use --workers" in err
    assert nothing_scored(tmp_path)
