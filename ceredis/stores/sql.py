"""What both SQL stores share: the write algorithm, the run and result queries.

A subclass supplies the driver: how to connect, open a transaction, run a statement,
and its placeholder style. Writes are idempotent: a row already stored with the same
content hash is a no-op (a resumed or retried learner); a different hash for the same
``(run_id, agent_id)`` is reported for that learner and the stored row is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, ClassVar

from ceredis.errors import StoreError
from ceredis.stores import ResultRow, RunRow
from ceredis.stores.schema import MIGRATIONS, SCHEMA_VERSION, migration_sql

__all__ = ["SqlStore"]

_RESULT_COLUMNS = (
    "run_id, agent_id, position, status, ceredis_score, band_level, cecrl_level, "
    "domain_scores, competencies, result, error, content_hash"
)
_RUN_COLUMNS = (
    "run_id, started_at, engine_version, referential_version, referential_hash, workers, "
    "ledger_path, finished_at, total, ok, skipped, failed, results_root"
)


class SqlStore:
    """An SQL result store; subclasses bind it to a driver."""

    dialect: ClassVar[str]
    driver_error: ClassVar[type[Exception]]
    #: SQL fragments: the placeholder and the cast applied to JSON parameters
    p: ClassVar[str]
    json: ClassVar[str]

    # -- driver primitives ------------------------------------------------------------

    def _transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Rows of a query without loading them all (default: loads them)."""
        yield from self._execute(sql, params)

    def _insert_returning(self, sql: str, params: Sequence[Sequence[Any]]) -> set[str]:
        """Run an ``INSERT … ON CONFLICT DO NOTHING RETURNING agent_id`` per row; return
        the agent ids actually inserted."""
        raise NotImplementedError

    def _lock_schema(self) -> None:
        """Serialize concurrent migrations (called inside the migration transaction)."""

    def _reconnect_if_lost(self) -> None:
        """Open a new connection if the server dropped this one (a restart, a failover)."""

    def _error(self, exc: Exception) -> str:
        """A one-line, secret-free description of a driver error."""
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def close(self) -> None:
        raise NotImplementedError

    # -- schema -----------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._transaction():
            self._lock_schema()
            self._execute(
                "CREATE TABLE IF NOT EXISTS ceredis_schema "
                "(version integer PRIMARY KEY, description text NOT NULL)"
            )
            applied = {row[0] for row in self._execute("SELECT version FROM ceredis_schema")}
            newer = [v for v in applied if v > SCHEMA_VERSION]
            if newer:
                raise StoreError(
                    f"the database schema is at version {max(newer)}, newer than this "
                    f"engine's {SCHEMA_VERSION}: upgrade ceredis"
                )
            for version, _ in MIGRATIONS:
                if version in applied:
                    continue
                for statement in migration_sql(self.dialect, version):
                    self._execute(statement)
                self._execute(
                    f"INSERT INTO ceredis_schema VALUES ({self.p}, {self.p})",
                    (version, f"ceredis schema {version}"),
                )

    def schema_version(self) -> int:
        """The highest migration applied."""
        return self._execute("SELECT max(version) FROM ceredis_schema")[0][0]

    # -- runs -------------------------------------------------------------------------

    def start_run(self, run: RunRow) -> None:
        p = self.p
        with self._transaction():
            self._execute(
                f"INSERT INTO ceredis_run ({_RUN_COLUMNS}) VALUES "
                f"({', '.join([p] * 13)}) ON CONFLICT (run_id) DO NOTHING",
                _run_params(run),
            )

    def finish_run(self, run: RunRow) -> None:
        p = self.p
        with self._transaction():
            self._execute(
                f"UPDATE ceredis_run SET finished_at = {p}, total = {p}, ok = {p}, "
                f"skipped = {p}, failed = {p}, ledger_path = {p}, results_root = {p} "
                f"WHERE run_id = {p}",
                (
                    run.finished_at,
                    run.total,
                    run.ok,
                    run.skipped,
                    run.failed,
                    run.ledger_path,
                    run.results_root,
                    run.run_id,
                ),
            )

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._execute(
            f"SELECT {_RUN_COLUMNS} FROM ceredis_run WHERE run_id = {self.p}", (run_id,)
        )
        return RunRow(*rows[0]) if rows else None

    # -- results ----------------------------------------------------------------------

    def write_results(self, rows: Sequence[ResultRow], run_started_at: str) -> dict[str, str]:
        if not rows:
            return {}
        try:
            self._reconnect_if_lost()
            with self._transaction():
                return self._write(rows, run_started_at)
        except self.driver_error as exc:
            if len(rows) == 1:
                return {rows[0].agent_id: f"database error: {self._error(exc)}"}
        # Isolate the failure: one transaction per learner, so only the culprit fails.
        errors: dict[str, str] = {}
        for row in rows:
            errors.update(self.write_results([row], run_started_at))
        return errors

    def _write(self, rows: Sequence[ResultRow], run_started_at: str) -> dict[str, str]:
        p, j = self.p, self.json
        inserted = self._insert_returning(
            f"INSERT INTO ceredis_result ({_RESULT_COLUMNS}) VALUES ({p}, {p}, {p}, {p}, {p}, "
            f"{p}, {p}, {p}{j}, {p}{j}, {p}{j}, {p}, {p}) "
            "ON CONFLICT (run_id, agent_id) DO NOTHING RETURNING agent_id",
            [_result_params(r, self.dialect) for r in rows],
        )
        # Rows already there (a retry, a resume) must hold the same hash; only they are read
        # back, by primary key, so a write costs the same at row 10 and at row 10 million.
        run_id = rows[0].run_id
        again = [r.agent_id for r in rows if r.agent_id not in inserted]
        stored: dict[str, str] = {}
        for start in range(0, len(again), 500):
            part = again[start : start + 500]
            stored.update(
                self._execute(
                    f"SELECT agent_id, content_hash FROM ceredis_result WHERE run_id = {p} "
                    f"AND agent_id IN ({', '.join([p] * len(part))})",
                    (run_id, *part),
                )
            )
        conflicts = {
            r.agent_id: (
                f"a different result is already stored for run {run_id} (stored content "
                f"hash {stored[r.agent_id][:16]}…, this one {r.content_hash[:16]}…); the "
                "stored row was kept"
            )
            for r in rows
            if r.agent_id not in inserted and stored.get(r.agent_id) != r.content_hash
        }
        profiles = [
            (
                r.agent_id,
                r.run_id,
                run_started_at,
                _score(r.ceredis_score, self.dialect),
                r.band_level,
                r.cecrl_level,
                r.domain_scores,
                r.content_hash,
            )
            for r in rows
            if r.status == "OK" and r.agent_id not in conflicts
        ]
        if profiles:
            self._executemany(
                "INSERT INTO ceredis_profile (agent_id, run_id, run_started_at, ceredis_score, "
                "band_level, cecrl_level, domain_scores, content_hash) VALUES "
                f"({p}, {p}, {p}, {p}, {p}, {p}, {p}{j}, {p}) ON CONFLICT (agent_id) DO UPDATE "
                "SET run_id = excluded.run_id, run_started_at = excluded.run_started_at, "
                "ceredis_score = excluded.ceredis_score, band_level = excluded.band_level, "
                "cecrl_level = excluded.cecrl_level, domain_scores = excluded.domain_scores, "
                "content_hash = excluded.content_hash "
                "WHERE ceredis_profile.run_started_at <= excluded.run_started_at",
                profiles,
            )
        return conflicts

    def iter_results(self, run_id: str) -> Iterator[ResultRow]:
        rows = self._stream(
            f"SELECT run_id, agent_id, position, status, ceredis_score, band_level, cecrl_level, "
            f"NULL, NULL, '', error, content_hash FROM ceredis_result WHERE run_id = {self.p} "
            "ORDER BY position",
            (run_id,),
        )
        for row in rows:
            score = row[4]
            yield ResultRow(*row[:4], Decimal(score) if score is not None else None, *row[5:])

    def iter_result_json(self, run_id: str) -> Iterator[str]:
        """Each row's whole result object as JSON text, numbers exact, ordered by position."""
        column = "result::text" if self.dialect == "postgresql" else "result"
        sql = f"SELECT {column} FROM ceredis_result WHERE run_id = {self.p} ORDER BY position"
        for (text,) in self._stream(sql, (run_id,)):
            yield text


def _run_params(run: RunRow) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.started_at,
        run.engine_version,
        run.referential_version,
        run.referential_hash,
        run.workers,
        run.ledger_path,
        run.finished_at,
        run.total,
        run.ok,
        run.skipped,
        run.failed,
        run.results_root,
    )


def _result_params(r: ResultRow, dialect: str) -> tuple[Any, ...]:
    return (
        r.run_id,
        r.agent_id,
        r.position,
        r.status,
        _score(r.ceredis_score, dialect),
        r.band_level,
        r.cecrl_level,
        r.domain_scores,
        r.competencies,
        r.result,
        r.error,
        r.content_hash,
    )


def _score(value: Decimal | None, dialect: str) -> Any:
    if value is None:
        return None
    return value if dialect == "postgresql" else f"{value:f}"
