"""``verify --database`` compares what the rows hold, not only their hashes (issue 10, item 1)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from ceredis.audit import audit_ledger
from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort


def _run(folder: Path, database: str) -> Path:
    files = write_cohort(folder / "c.jsonl", bundled_referential(), 12, 4, 6)
    plan = plan_batch(
        agents_file=files.roster,
        source=str(files.evidence),
        workers=1,
        database=database,
        ledger=folder / "run.jsonl",
    )
    run_batch(plan)
    return plan.ledger


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory):
    """A finished 12-learner run into SQLite: (ledger, database file)."""
    folder = tmp_path_factory.mktemp("dbaudit")
    db = folder / "db.sqlite"
    return _run(folder, f"sqlite:///{db}"), db


@pytest.fixture
def tampered(sqlite_run, tmp_path):
    """A fresh copy of the run's database and a function to run SQL on it."""
    ledger, db = sqlite_run
    copy = tmp_path / "db.sqlite"
    shutil.copy(db, copy)

    def run(sql: str, *params) -> None:
        with sqlite3.connect(copy) as conn:
            assert conn.execute(sql, params).rowcount >= 1

    return ledger, f"sqlite:///{copy}", run


def _an_ok_learner(ledger: Path) -> tuple[int, str, str]:
    """The line, id and score of the first scored learner."""
    from ledger import salvage_records

    for record in salvage_records(ledger):
        if record.body["result"]["status"] == "OK":
            return (
                record.line_no,
                record.body["agentId"],
                str(record.body["result"]["ceredisScore"]),
            )
    raise AssertionError("no OK learner")


def test_untouched_rows_agree(sqlite_run):
    ledger, db = sqlite_run
    audit = audit_ledger(ledger, f"sqlite:///{db}")
    assert audit.ok, [str(f) for f in audit.findings]
    assert audit.database_rows == 12


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("ceredis_score", "499.99", "ceredisScore"),
        ("band_level", "Z9", "bandLevel"),
        ("cecrl_level", "Z9", "cecrlLevel"),
        ("status", "SKIPPED", "status"),
        ("domain_scores", '{"D1":100}', "domainScores"),
        ("competencies", "{}", "competencies"),
    ],
)
def test_an_edited_result_column_is_named(tampered, column, value, field):
    """One column changed, hash untouched: the finding names table, learner, field, values."""
    ledger, url, run = tampered
    line, agent, score = _an_ok_learner(ledger)
    run(f"UPDATE ceredis_result SET {column} = ? WHERE agent_id = ?", value, agent)
    audit = audit_ledger(ledger, url)
    assert not audit.ok
    messages = [f.message for f in audit.findings if f.agent_id == agent and f.line == line]
    assert any(re.match(rf"ceredis_result {agent}: {field}[ .]", m) for m in messages), messages
    if field == "ceredisScore":
        assert (
            f"ceredis_result {agent}: ceredisScore 499.99 in the database, {score} in the ledger"
            in messages
        )


def test_an_edited_result_json_is_named(tampered):
    """The stored §10 object is re-read and compared with the ledger's, path by path."""
    ledger, url, run = tampered
    line, agent, score = _an_ok_learner(ledger)
    run(
        "UPDATE ceredis_result SET result = replace(result, ?, ?) WHERE agent_id = ?",
        f'"ceredisScore":{score}',
        '"ceredisScore":499.99',
        agent,
    )
    audit = audit_ledger(ledger, url)
    assert [(f.line, f.agent_id, f.message) for f in audit.findings] == [
        (
            line,
            agent,
            f"ceredis_result {agent}: result.ceredisScore 499.99 in the database, "
            f"{score} in the ledger",
        )
    ]


@pytest.mark.parametrize(
    ("column", "value", "field"),
    [
        ("ceredis_score", "499.99", "ceredisScore"),
        ("cecrl_level", "Z9", "cecrlLevel"),
        ("band_level", "Z9", "bandLevel"),
        ("domain_scores", '{"D1":100}', "domainScores"),
        ("content_hash", "0" * 64, "contentHash"),
    ],
)
def test_an_edited_profile_is_named(tampered, column, value, field):
    """ceredis_profile, the table the institution reads, holds exactly this run's result."""
    ledger, url, run = tampered
    line, agent, _ = _an_ok_learner(ledger)
    run(f"UPDATE ceredis_profile SET {column} = ? WHERE agent_id = ?", value, agent)
    audit = audit_ledger(ledger, url)
    assert not audit.ok
    assert any(
        f.line == line
        and f.agent_id == agent
        and re.match(rf"ceredis_profile {agent}: {field}[ .]", f.message)
        for f in audit.findings
    ), [str(f) for f in audit.findings]


_JSON_COLUMNS = {
    "ceredis_result": ("domain_scores", "competencies", "result"),
    "ceredis_profile": ("domain_scores",),
}


def _json_types(conn) -> set[str]:
    return {
        row[0]
        for table, columns in _JSON_COLUMNS.items()
        for row in conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = %s "
            "AND column_name = ANY(%s)",
            (table, list(columns)),
        )
    }


@pytest.mark.parametrize("json_type", ["json", "jsonb"])
def test_postgres_rows_are_compared_too(pg_url, tmp_path, json_type):
    """The same content check on PostgreSQL, where scores are numeric and JSON columns
    are json (a new database: stored as written, cheaper for the server than jsonb) or
    jsonb (a database made before this engine version, or altered by its owner): both
    are written, read and audited alike."""
    import psycopg

    from ceredis.stores import parse_store_url

    parse_store_url(pg_url).open().close()  # a new database: the engine's own schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert _json_types(conn) == {"json"}
        for table, columns in _JSON_COLUMNS.items():
            for column in columns:
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {json_type}")
    ledger = _run(tmp_path, pg_url)
    assert audit_ledger(ledger, pg_url).ok
    line, agent, _ = _an_ok_learner(ledger)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert _json_types(conn) == {json_type}
        # The README's queries: ->> on either type, @> once cast to jsonb.
        level = conn.execute(
            "SELECT result->>'cecrlLevel' FROM ceredis_result WHERE agent_id = %s", (agent,)
        ).fetchone()[0]
        found = conn.execute(
            "SELECT agent_id FROM ceredis_result WHERE result::jsonb @> %s::jsonb",
            (f'{{"cecrlLevel": "{level}"}}',),
        ).fetchall()
        assert level and (agent,) in found
        conn.execute(
            "UPDATE ceredis_result SET result = jsonb_set(result::jsonb, '{ceredisScore}', "
            "'499.99') WHERE agent_id = %s",
            (agent,),
        )
        conn.execute("UPDATE ceredis_profile SET cecrl_level = 'Z9' WHERE agent_id = %s", (agent,))
    found = {
        (f.line, f.agent_id, f.message.split(" in the database")[0])
        for f in audit_ledger(ledger, pg_url).findings
    }
    assert (line, agent, f"ceredis_result {agent}: result.ceredisScore 499.99") in found
    assert any(m.startswith(f"ceredis_profile {agent}: cecrlLevel") for _, _, m in found)
