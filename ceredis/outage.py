"""Outages: which errors mean "the database or the source is down", and how long to wait.

An outage is a failure of the service, not of one learner: a refused or reset connection,
a server shutting down or starting up, too many connections, a full disk, a locked
database. The pool waits those out (``Patience``) instead of recording learners as
``ERROR``; a constraint violation or bad evidence stays that learner's error. Pure: no
I/O, the clock and the random draw are arguments.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

__all__ = ["Patience", "store_outage"]

# PostgreSQL SQLSTATEs of a server that cannot serve anyone right now (Appendix A).
_PG_CLASSES = ("08", "53")  # connection exception; insufficient resources (53100 disk full,
# 53200 out of memory, 53300 too many connections, 53400 configuration limit exceeded)
_PG_STATES = ("57P01", "57P02", "57P03")  # admin shutdown, crash shutdown, cannot connect now
# libpq reports a refused login without a SQLSTATE: the server's FATAL text tells an outage
# (the same conditions as above) from a wrong role, password or database name.
_PG_FATAL_OUTAGES = ("too many connections", "too many clients", "connection slots are reserved",
                     "starting up", "shutting down", "in recovery mode", "not yet accepting",
                     "terminating connection", "out of memory", "could not fork")  # fmt: skip
# SQLite primary result codes of a file that cannot be written right now.
_SQLITE_CODES = {5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 10: "SQLITE_IOERR", 13: "SQLITE_FULL",
                 15: "SQLITE_PROTOCOL"}  # fmt: skip
_SQLITE_MESSAGES = ("database is locked", "database table is locked", "disk i/o error",
                    "database or disk is full")  # fmt: skip


def store_outage(exc: BaseException) -> bool:
    """Whether a database driver's error means the database is down, not this row wrong."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_CODES
        return any(text in str(exc).lower() for text in _SQLITE_MESSAGES)
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # raised by libpq itself: refused, reset, closed, timed out, refused login
        if not isinstance(exc, psycopg.OperationalError):
            return False
        text = str(exc)
        return "FATAL:" not in text or any(part in text for part in _PG_FATAL_OUTAGES)
    return state[:2] in _PG_CLASSES or state in _PG_STATES


@dataclass
class Patience:
    """Waits through one outage: capped, jittered exponential backoff within a budget.

    ``delay`` returns how long to sleep before the next try, or ``None`` once the outage
    has lasted *budget* seconds (the batch then stops); ``reset`` ends the outage.
    """

    budget: float
    base: float = 0.25
    cap: float = 5.0
    since: float | None = None
    attempts: int = field(default=0)

    def delay(self, now: float, rand: float) -> float | None:
        """The next wait in seconds (``rand`` in [0, 1) spreads the workers), or None."""
        if self.since is None:
            self.since = now
        waited = now - self.since
        if waited >= self.budget:
            return None
        self.attempts += 1
        backoff = min(self.cap, self.base * 2 ** (self.attempts - 1)) * (0.5 + rand / 2)
        return min(backoff, self.budget - waited)

    def waited(self, now: float) -> float:
        """Seconds since the outage began (0 when there is none)."""
        return 0.0 if self.since is None else now - self.since

    def reset(self) -> None:
        """The service answered: the next failure starts a new outage."""
        self.since, self.attempts = None, 0
