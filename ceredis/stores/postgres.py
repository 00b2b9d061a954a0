"""The PostgreSQL result store (psycopg 3), one connection per process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, ClassVar

import psycopg

from ceredis.config import redact_url, scrub, url_secrets
from ceredis.errors import StoreError, StoreUnavailable
from ceredis.outage import store_outage
from ceredis.stores.sql import Dialect, SqlStore

__all__ = ["PostgresStore"]

_MIGRATION_LOCK = 0x6365726564  # "cered": serializes schema migrations across sessions


class PostgresStore(SqlStore):
    """Results in PostgreSQL; the connection is opened here, in the calling process."""

    dialect: ClassVar[Dialect] = Dialect(
        placeholder="%s",
        # json, not jsonb: kept as written, so the server does not parse and rebuild every
        # result (a third of its CPU per learner). A JSON parameter is bound untyped, so a
        # database made with jsonb columns (by an earlier engine, or by its owner) works unchanged.
        column_types={"JSON": "json", "SCORE": "numeric(6,2)"},
        score_param=Decimal,  # psycopg binds a Decimal as an exact numeric
        json_text="{}::text",  # as text, not parsed into floats
    )
    driver_error: ClassVar[type[Exception]] = psycopg.Error

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        self.url = url
        self._secrets = url_secrets(url)
        self._connect_timeout = connect_timeout
        try:
            self.conn = self._connect()
        except psycopg.Error as exc:
            kind = StoreUnavailable if store_outage(exc) else StoreError
            raise kind(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {self._error(exc)} — "
                "check the URL (--database or CEREDIS_DATABASE_URL) and that the server runs"
            ) from None
        try:
            self._migrate()
        except psycopg.Error as exc:
            self.conn.close()
            raise (StoreUnavailable if store_outage(exc) else StoreError)(
                f"cannot create or migrate the CEREDIS schema at {redact_url(url)}: "
                f"{self._error(exc)}"
            ) from None

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=self._connect_timeout,
            application_name="ceredis",
        )
        _prefer_lz4(conn)
        return conn

    def _reconnect_if_lost(self) -> None:
        if self.conn.broken or self.conn.closed:
            self.conn.close()
            self.conn = self._connect()

    def _drop_connection(self) -> None:
        self.conn.close()  # a failed pipeline can leave it busy without marking it broken

    @property
    def backend_pid(self) -> int:
        """The server process serving this connection (for connection accounting)."""
        return self.conn.info.backend_pid

    def _transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql, params)

    def _insert_returning(self, sql: str, params: Sequence[Sequence[Any]]) -> set[str]:
        inserted: set[str] = set()
        with self.conn.cursor() as cur:
            cur.executemany(sql, params, returning=True)
            while True:
                inserted.update(row[0] for row in cur.fetchall())
                if not cur.nextset():
                    return inserted

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        with self.conn.transaction(), self.conn.cursor(name="ceredis_stream") as cur:
            cur.itersize = 2000
            cur.execute(sql, params)
            yield from cur

    def _lock_schema(self) -> None:
        self._execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _error(self, exc: Exception) -> str:
        return scrub(super()._error(exc), self._secrets)

    def close(self) -> None:
        self.conn.close()


def _prefer_lz4(conn: psycopg.Connection[Any]) -> None:
    """Have the server compress this session's large results with lz4 rather than its
    default pglz: a fifth of its CPU a learner, for ~25 % more disk. A column the
    database's owner gave a compression keeps it; a server without lz4 keeps pglz."""
    if conn.info.server_version < 140000:  # no choice of compression before PostgreSQL 14
        return
    try:
        conn.execute("SET default_toast_compression = lz4")
    except psycopg.errors.InvalidParameterValue:  # built without lz4: pglz it is
        return
