"""The result stores: one contract, run against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace
from decimal import Decimal

import pytest

from ceredis.config import redact_url
from ceredis.errors import ConfigError, StoreError
from ceredis.stores import ResultRow, RunRow, parse_store_url, prepare_store
from ceredis.stores.schema import SCHEMA_VERSION

RUN = RunRow("run-1", "2026-11-01T00:00:00.000Z", "0.1.0", "ceredis-1.1", "h" * 64, 2, "/l.jsonl")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    spec = prepare_store(store_url)
    opened = spec.open()
    opened.start_run(RUN)
    yield opened
    opened.close()


def row(agent: str, status: str = "OK", content_hash: str = "a" * 64, **changes) -> ResultRow:
    base = ResultRow(
        run_id=RUN.run_id, agent_id=agent, position=int(agent.strip("L") or 0), status=status,
        ceredis_score=Decimal("540.00") if status == "OK" else None,
        band_level="C1" if status == "OK" else None, cecrl_level="C1" if status == "OK" else None,
        domain_scores='{"D1":90.00}' if status == "OK" else None,
        competencies="{}" if status == "OK" else None, result='{"status":"OK"}',
        error=None if status == "OK" else "boom", content_hash=content_hash,
    )  # fmt: skip
    return replace(base, **changes)


def count(store, table: str) -> int:
    return store._execute(f"SELECT count(*) FROM {table}")[0][0]


def test_schema_is_created_once_and_migrations_are_idempotent(store_url):
    """Opening a store twice leaves one schema version row and the three tables."""
    for _ in range(2):
        opened = prepare_store(store_url).open()
        assert opened.schema_version() == SCHEMA_VERSION == 2
        assert count(opened, "ceredis_schema") == SCHEMA_VERSION
        for table in ("ceredis_run", "ceredis_result", "ceredis_profile"):
            assert count(opened, table) == 0
        opened.close()


def _open(url: str) -> None:
    parse_store_url(url).open().close()


def test_concurrent_first_opens_migrate_once(store_url):
    """Four processes opening a new store at once still migrate it exactly once."""
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_open, [store_url] * 8)
    opened = parse_store_url(store_url).open()
    assert count(opened, "ceredis_schema") == SCHEMA_VERSION
    opened.close()


def test_writes_are_idempotent(store):
    """Writing the same rows twice (a resume, a retry) stores each once and reports nothing."""
    rows = [row("L1"), row("L2", "SKIPPED"), row("L3", "ERROR")]
    assert store.write_results(rows, RUN.started_at) == {}
    assert store.write_results(rows, RUN.started_at) == {}
    assert count(store, "ceredis_result") == 3
    stored = list(store.iter_results(RUN.run_id))
    assert [(r.agent_id, r.status, r.ceredis_score) for r in stored] == [
        ("L1", "OK", Decimal("540.00")),
        ("L2", "SKIPPED", None),
        ("L3", "ERROR", None),
    ]


def test_a_different_hash_is_reported_never_overwritten(store):
    """Another hash for the same run and learner is an error; the first row stays."""
    store.write_results([row("L1", content_hash="a" * 64)], RUN.started_at)
    errors = store.write_results([row("L1", content_hash="b" * 64), row("L2")], RUN.started_at)
    assert list(errors) == ["L1"]
    assert "a different result is already stored for run run-1" in errors["L1"]
    assert [r.content_hash for r in store.iter_results(RUN.run_id)] == ["a" * 64, "a" * 64]


def test_latest_profile_is_updated_only_by_ok_results_of_newer_runs(store):
    """The profile follows OK results; an ERROR or an older run never replaces it."""
    store.write_results([row("L1")], RUN.started_at)
    newer = replace(RUN, run_id="run-2", started_at="2026-11-02T00:00:00.000Z")
    store.start_run(newer)
    store.write_results([row("L1", "ERROR", run_id="run-2")], newer.started_at)
    assert store._execute("SELECT run_id FROM ceredis_profile")[0][0] == "run-1"
    newest = replace(RUN, run_id="run-3", started_at="2026-11-03T00:00:00.000Z")
    store.start_run(newest)
    store.write_results([row("L1", run_id="run-3", cecrl_level="B2")], newest.started_at)
    older = replace(RUN, run_id="run-0", started_at="2026-10-01T00:00:00.000Z")
    store.start_run(older)
    store.write_results([row("L1", run_id="run-0", cecrl_level="A2")], older.started_at)
    assert store._execute("SELECT run_id, cecrl_level FROM ceredis_profile")[0] == ("run-3", "B2")


def test_a_database_error_fails_only_that_learner(store):
    """A row the database refuses makes only its learner fail; the others are stored."""
    rows = [row("L1"), row("L2", position=None), row("L3")]
    errors = store.write_results(rows, RUN.started_at)
    assert list(errors) == ["L2"] and errors["L2"].startswith("database error: ")
    assert sorted(r.agent_id for r in store.iter_results(RUN.run_id)) == ["L1", "L3"]


def test_runs_are_recorded_and_finished(store):
    """A run row gets its counts, ledger path and Merkle root when finished."""
    store.start_run(RUN)  # a resume starts the same run again: accepted
    store.finish_run(
        replace(RUN, finished_at="x", total=3, ok=1, skipped=1, failed=1, results_root="f" * 64)
    )
    assert store.get_run("run-1").results_root == "f" * 64
    assert store.get_run("nope") is None


@pytest.mark.postgres
def test_unreachable_postgresql_is_a_clear_error_without_the_password():
    """A server that does not answer is reported at once, naming the URL minus its password."""
    with pytest.raises(StoreError) as caught:
        prepare_store("postgresql://ceredis:s3cret-pw@127.0.0.1:1/ceredis")
    message = str(caught.value)
    assert "cannot connect to PostgreSQL at postgresql://ceredis@127.0.0.1:1/ceredis:" in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unknown database URL 'mysql://x/y'"),
        ("sqlite://relative.db", "bad SQLite URL"),
        ("postgres://u:pw@h/db", None),
    ],
)
def test_store_urls_are_checked(url, message):
    """Unknown schemes and malformed SQLite URLs are refused before connecting."""
    if message is None:
        assert parse_store_url(url).kind == "postgresql"
        assert redact_url(url) == "postgres://u@h/db"
    else:
        with pytest.raises(ConfigError, match=message):
            parse_store_url(url)


@pytest.mark.postgres
def test_a_dropped_postgresql_connection_is_reopened(pg_url, pg_dsn):
    """When the server drops a worker's connection (restart, failover), the write that
    meets the dropped socket is an outage (StoreUnavailable, no learner's error); the next
    write reconnects and stores the chunk."""
    import psycopg

    from ceredis.errors import StoreUnavailable

    store = prepare_store(pg_url).open()
    store.start_run(RUN)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store.backend_pid,))
    with pytest.raises(StoreUnavailable, match="database unavailable"):
        store.write_results([row("L1")], RUN.started_at)
    assert store.write_results([row("L1"), row("L2")], RUN.started_at) == {}
    assert {"L1", "L2"} <= {r.agent_id for r in store.iter_results(RUN.run_id)}
    store.close()


@pytest.mark.postgres
def test_postgresql_compresses_results_with_lz4(pg_url):
    """A result large enough for the server to compress is compressed with lz4, not the
    server's default pglz: about a fifth of the server's CPU a learner, for ~25 % more disk."""
    store = prepare_store(pg_url).open()
    store.start_run(RUN)
    document = '{"evidence":"' + "P1 72.5 " * 800 + '"}'
    assert store.write_results([row("L1", result=document)], RUN.started_at) == {}
    compression = store._execute("SELECT pg_column_compression(result) FROM ceredis_result")
    assert compression == [("lz4",)]
    store.close()
