"""The SQLite result store: the embedded default, one connection per process.

WAL mode lets the workers write concurrently with readers; each write is one
``BEGIN IMMEDIATE`` transaction, and a busy timeout absorbs the brief write lock.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

from ceredis.errors import StoreError, StoreUnavailable
from ceredis.outage import store_outage
from ceredis.private import create_private, private_dir
from ceredis.stores.sql import Dialect, SqlStore

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    """Results in an SQLite file; created with its folder when missing."""

    dialect: ClassVar[Dialect] = Dialect(
        placeholder="?",
        column_types={"JSON": "text", "SCORE": "text"},
        score_param=lambda score: f"{score:f}",  # exact text: SQLite has no decimal type
    )
    driver_error: ClassVar[type[Exception]] = sqlite3.Error

    def __init__(self, path: Path, *, busy_timeout: float = 60.0) -> None:
        self.path = Path(path)
        try:
            _create_private_db(self.path)
            # A worker writes on its writer thread: one thread at a time, never two.
            self.conn = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._use_wal(time.monotonic() + busy_timeout)
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            kind = StoreUnavailable if store_outage(exc) else StoreError
            raise kind(f"cannot open the SQLite database {self.path}: {exc}") from None

    def _use_wal(self, deadline: float) -> None:
        # Switching a new file to WAL can fail with "database is locked" at once, without
        # the busy timeout, while another process creates the same file: retry until due.
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, params)

    def _insert_returning(self, sql: str, params: Sequence[Sequence[Any]]) -> set[str]:
        # sqlite3's executemany drops RETURNING rows; one execute per row is in-process.
        inserted: set[str] = set()
        for row in params:
            inserted.update(agent for (agent,) in self.conn.execute(sql, row))
        return inserted

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        yield from self.conn.execute(sql, params)

    def close(self) -> None:
        self.conn.close()


def _create_private_db(path: Path) -> None:
    """Create the database file 0600 (in a 0700 folder) before SQLite opens it: SQLite
    gives its -wal and -shm files the database file's mode."""
    private_dir(path.parent)
    with suppress(FileExistsError):  # an existing database, or one another process just made
        os.close(create_private(path))
