"""The seed port of benchmarks/vs_seed agrees with the project, learner by learner.

The comparison is only worth printing if both engines score the same: this installs the
Node.js port (npm ci), serves a 100-learner cohort from the static xAPI upstream, runs
the project and the port (xAPI and file sources) into real PostgreSQL databases and
compares every learner's status, scores and levels.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "vs_seed"))

import compare  # noqa: E402  (benchmarks/ is not a package)

from ceredis.sample import write_cohort  # noqa: E402

pytestmark = pytest.mark.postgres
LEARNERS = 100


@contextlib.contextmanager
def database(pg_dsn: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    name = f"ceredis_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(pg_dsn)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run(command: list[str]) -> None:
    env = {**os.environ, "CEREDIS_SOURCE_RATE": "1000000"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_seed_port_scores_every_learner_as_the_project(tmp_path, pg_dsn, referential):
    """Same status, global/domain/competency scores, band and level for every learner,
    from the same requests to the upstream; the file source gives the same rows."""
    compare.ensure_port_installed()
    files = write_cohort(tmp_path / "cohort.jsonl", referential, LEARNERS, seed=1)
    ctx = compare.Context(tmp_path, files.evidence, files.roster, LEARNERS, None, False)
    xapi, on_file = compare.Point("xapi", 0, 4), compare.Point("file", 0, 4)
    with compare.Upstream(files.evidence) as upstream:
        ctx.upstream = upstream
        with database(pg_dsn) as project_db, database(pg_dsn) as port_db:
            setting = compare.Setting(2)
            run(compare.project_command(ctx, xapi, setting, project_db, tmp_path))
            project_requests = upstream.control("stats")["requests"]
            upstream.control("reset")
            run(compare.port_command(ctx, xapi, port_db, tmp_path))
            port_requests = upstream.control("stats")["requests"]
            project = compare.read_rows(project_db, "ceredis_result")
            port = compare.read_rows(port_db, "seed_result")
    with database(pg_dsn) as file_db:
        run(compare.port_command(ctx, on_file, file_db, tmp_path))
        port_file = compare.read_rows(file_db, "seed_result")

    assert len(project) == LEARNERS
    assert {r["status"] for r in project.values()} == {"OK", "SKIPPED"}
    assert compare.disagreements(project, port) == []
    assert compare.disagreements(project, port_file) == []
    assert port_requests > LEARNERS  # some learners need a second page
    assert 0 <= project_requests - port_requests <= 1  # the project may ping once first


def test_a_disagreement_is_found_and_named():
    """One competency score off by a cent is reported, naming the learner and field."""
    row = {"status": "OK", "ceredisScore": "310.20", "competencies": {"5.3": ["60.75", "partiel"]}}
    other = {**row, "competencies": {"5.3": ["60.74", "partiel"]}}
    assert compare.disagreements({"L1": row}, {"L1": other}) == ["L1: competencies"]
    assert compare.disagreements({"L1": row}, {}) == ["L1: missing on one side"]
