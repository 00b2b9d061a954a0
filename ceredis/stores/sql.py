"""What both SQL stores share: the write algorithm, the run and result queries.

A subclass supplies the driver (how to connect, open a transaction, run a statement) and
its :class:`Dialect` (how its SQL spells what differs). Writes are idempotent: a row
already stored with the same content hash is a no-op (a resumed or retried learner); a
different hash for the same ``(run_id, agent_id)`` is reported for that learner and the
stored row is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from ceredis.errors import StoreError, StoreUnavailable
from ceredis.outage import store_outage
from ceredis.outcome import Status
from ceredis.stores import ProfileRow, ResultRow, RunRow, StoredResult
from ceredis.stores.schema import MIGRATIONS, SCHEMA_VERSION, migration_sql

__all__ = ["Dialect", "SqlStore"]


@dataclass(frozen=True)
class Dialect:
    """What one SQL database spells its own way: parameters, JSON and score columns."""

    placeholder: str  # a statement parameter: "%s" or "?"
    column_types: dict[str, str]  # the schema's {JSON} and {SCORE} column types
    score_param: Callable[[Decimal], Any]  # a two-decimal score as the driver binds it
    json_text: str = "{}"  # a JSON column read back as text: "{}::text" or "{}"

    def params(self, count: int) -> str:
        """*count* placeholders, comma-separated."""
        return ", ".join([self.placeholder] * count)

    def score(self, value: Decimal | None) -> Any:
        return None if value is None else self.score_param(value)


_RESULT_COLUMNS = (
    "run_id, agent_id, position, status, ceredis_score, band_level, cecrl_level, "
    "domain_scores, competencies, result, error, content_hash"
)
_RUN_COLUMNS = (
    "run_id, started_at, engine_version, referential_version, referential_hash, workers, "
    "ledger_path, finished_at, total, ok, skipped, failed, results_root, checkpoint"
)


class SqlStore:
    """An SQL result store; subclasses bind it to a driver."""

    dialect: ClassVar[Dialect]
    driver_error: ClassVar[type[Exception]]

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

    def _drop_connection(self) -> None:
        """Forget a connection an outage left in an unknown state (reopened on next use)."""

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
                for statement in migration_sql(version, self.dialect.column_types):
                    self._execute(statement)
                self._execute(
                    f"INSERT INTO ceredis_schema VALUES ({self.dialect.params(2)})",
                    (version, f"ceredis schema {version}"),
                )

    def schema_version(self) -> int:
        """The highest migration applied."""
        return self._execute("SELECT max(version) FROM ceredis_schema")[0][0]

    # -- runs -------------------------------------------------------------------------

    def start_run(self, run: RunRow) -> None:
        with self._transaction():
            self._execute(
                f"INSERT INTO ceredis_run ({_RUN_COLUMNS}) VALUES "
                f"({self.dialect.params(14)}) ON CONFLICT (run_id) DO NOTHING",
                _run_params(run),
            )

    def finish_run(self, run: RunRow) -> None:
        columns = ("finished_at", "total", "ok", "skipped", "failed", "ledger_path")
        param = self.dialect.placeholder
        assignments = ", ".join(
            f"{column} = {param}" for column in (*columns, "results_root", "checkpoint")
        )
        with self._transaction():
            self._execute(
                f"UPDATE ceredis_run SET {assignments} WHERE run_id = {param}",
                (
                    run.finished_at,
                    run.total,
                    run.ok,
                    run.skipped,
                    run.failed,
                    run.ledger_path,
                    run.results_root,
                    run.checkpoint,
                    run.run_id,
                ),
            )

    def get_run(self, run_id: str) -> RunRow | None:
        rows = self._execute(
            f"SELECT {_RUN_COLUMNS} FROM ceredis_run WHERE run_id = {self.dialect.placeholder}",
            (run_id,),
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
            if store_outage(exc):  # the database is down: no learner's fault, wait it out
                self._drop_connection()
                raise StoreUnavailable(f"database unavailable: {self._error(exc)}") from None
            if len(rows) == 1:
                return {rows[0].agent_id: f"database error: {self._error(exc)}"}
        # Isolate the failure: one transaction per learner, so only the culprit fails.
        errors: dict[str, str] = {}
        for row in rows:
            errors.update(self.write_results([row], run_started_at))
        return errors

    def _write(self, rows: Sequence[ResultRow], run_started_at: str) -> dict[str, str]:
        inserted = self._insert_results(rows)
        again = [r.agent_id for r in rows if r.agent_id not in inserted]
        stored = self._stored_hashes(rows[0].run_id, again)
        conflicts = {
            r.agent_id: (
                f"a different result is already stored for run {r.run_id} (stored content "
                f"hash {stored[r.agent_id][:16]}…, this one {r.content_hash[:16]}…); the "
                "stored row was kept"
            )
            for r in rows
            if r.agent_id not in inserted and stored.get(r.agent_id) != r.content_hash
        }
        self._update_profiles(
            [r for r in rows if r.status == Status.OK and r.agent_id not in conflicts],
            run_started_at,
        )
        return conflicts

    def _insert_results(self, rows: Sequence[ResultRow]) -> set[str]:
        """Insert the rows not stored yet; return the agent ids inserted."""
        dialect = self.dialect
        return self._insert_returning(
            f"INSERT INTO ceredis_result ({_RESULT_COLUMNS}) VALUES ({dialect.params(12)}) "
            "ON CONFLICT (run_id, agent_id) DO NOTHING RETURNING agent_id",
            [_result_params(r, dialect) for r in rows],
        )

    def _stored_hashes(self, run_id: str, agents: Sequence[str]) -> dict[str, str]:
        """The content hashes stored for *agents* of the run (a retry, a resume): read by
        primary key, so a write costs the same at row 10 and at row 10 million."""
        param = self.dialect.placeholder
        stored: dict[str, str] = {}
        for start in range(0, len(agents), 500):
            part = agents[start : start + 500]
            stored.update(
                self._execute(
                    f"SELECT agent_id, content_hash FROM ceredis_result WHERE run_id = {param} "
                    f"AND agent_id IN ({self.dialect.params(len(part))})",
                    (run_id, *part),
                )
            )
        return stored

    def _update_profiles(self, rows: Sequence[ResultRow], run_started_at: str) -> None:
        """Make these OK results each learner's latest profile, unless a newer run's is."""
        if not rows:
            return
        dialect = self.dialect
        self._executemany(
            "INSERT INTO ceredis_profile (agent_id, run_id, run_started_at, ceredis_score, "
            f"band_level, cecrl_level, domain_scores, content_hash) VALUES ({dialect.params(8)}) "
            "ON CONFLICT (agent_id) DO UPDATE "
            "SET run_id = excluded.run_id, run_started_at = excluded.run_started_at, "
            "ceredis_score = excluded.ceredis_score, band_level = excluded.band_level, "
            "cecrl_level = excluded.cecrl_level, domain_scores = excluded.domain_scores, "
            "content_hash = excluded.content_hash "
            "WHERE ceredis_profile.run_started_at <= excluded.run_started_at",
            [
                (
                    r.agent_id,
                    r.run_id,
                    run_started_at,
                    dialect.score(r.ceredis_score),
                    r.band_level,
                    r.cecrl_level,
                    r.domain_scores,
                    r.content_hash,
                )
                for r in rows
            ],
        )

    def iter_results(self, run_id: str) -> Iterator[StoredResult]:
        rows = self._stream(
            f"SELECT run_id, agent_id, position, status, ceredis_score, band_level, cecrl_level, "
            f"error, content_hash FROM ceredis_result WHERE run_id = {self.dialect.placeholder} "
            "ORDER BY position",
            (run_id,),
        )
        for row in rows:
            yield StoredResult(*row[:4], _decimal(row[4]), *row[5:])

    def iter_rows(self, run_id: str) -> Iterator[ResultRow]:
        as_text = self.dialect.json_text.format
        rows = self._stream(
            "SELECT run_id, agent_id, position, status, ceredis_score, band_level, cecrl_level, "
            f"{as_text('domain_scores')}, {as_text('competencies')}, {as_text('result')}, error, "
            f"content_hash FROM ceredis_result WHERE run_id = {self.dialect.placeholder} "
            "ORDER BY position",
            (run_id,),
        )
        for row in rows:
            yield ResultRow(*row[:4], _decimal(row[4]), *row[5:])

    def iter_profiles(self, run_id: str) -> Iterator[ProfileRow]:
        rows = self._stream(
            "SELECT agent_id, run_id, run_started_at, ceredis_score, band_level, cecrl_level, "
            f"{self.dialect.json_text.format('domain_scores')}, content_hash FROM "
            f"ceredis_profile WHERE run_id = {self.dialect.placeholder} ORDER BY agent_id",
            (run_id,),
        )
        for row in rows:
            yield ProfileRow(*row[:3], _decimal(row[3]), *row[4:])

    def iter_result_json(self, run_id: str) -> Iterator[str]:
        """Each row's whole result object as JSON text, numbers exact, ordered by position."""
        column = self.dialect.json_text.format("result")
        sql = (
            f"SELECT {column} FROM ceredis_result WHERE run_id = {self.dialect.placeholder} "
            "ORDER BY position"
        )
        for (text,) in self._stream(sql, (run_id,)):
            yield text


def _decimal(score: Any) -> Any:
    """A stored score as a Decimal (SQLite keeps it as text, PostgreSQL as numeric); text
    that is no number is returned as it is, for an audit to show."""
    if score is None:
        return None
    try:
        return Decimal(score)
    except (InvalidOperation, TypeError, ValueError):
        return score


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
        run.checkpoint,
    )


def _result_params(r: ResultRow, dialect: Dialect) -> tuple[Any, ...]:
    return (
        r.run_id,
        r.agent_id,
        r.position,
        r.status,
        dialect.score(r.ceredis_score),
        r.band_level,
        r.cecrl_level,
        r.domain_scores,
        r.competencies,
        r.result,
        r.error,
        r.content_hash,
    )
