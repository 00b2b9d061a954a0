"""Result stores: PostgreSQL (``postgresql://…``) and SQLite (``sqlite:///path``).

Both share one schema (:mod:`ceredis.stores.schema`), created and migrated on first
use. The parent calls :func:`prepare_store` before any work — an unreachable database
is a clear error then, not a thousand failed learners later — and each worker opens
its own connection with :meth:`StoreSpec.open` in the pool initializer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ceredis.config import NOT_A_URL, redact_url
from ceredis.errors import ConfigError

__all__ = [
    "ProfileRow",
    "ResultRow",
    "ResultStore",
    "RunRow",
    "StoreSpec",
    "StoredResult",
    "prepare_store",
]


@dataclass(frozen=True)
class ResultRow:
    """One learner's result as stored; ``content_hash`` is its ledger record's hash."""

    run_id: str
    agent_id: str
    position: int
    status: str
    ceredis_score: Decimal | None
    band_level: str | None
    cecrl_level: str | None
    domain_scores: str | None  # canonical JSON
    competencies: str | None  # canonical JSON
    result: str  # canonical JSON of the whole §10 object
    error: str | None
    content_hash: str


@dataclass(frozen=True)
class StoredResult:
    """What :meth:`ResultStore.iter_results` reads back of a stored learner (no JSON)."""

    run_id: str
    agent_id: str
    position: int
    status: str
    ceredis_score: Decimal | None
    band_level: str | None
    cecrl_level: str | None
    error: str | None
    content_hash: str


@dataclass(frozen=True)
class ProfileRow:
    """A learner's latest profile (``ceredis_profile``): what the institution reads."""

    agent_id: str
    run_id: str
    run_started_at: str
    ceredis_score: Decimal | None
    band_level: str | None
    cecrl_level: str | None
    domain_scores: str | None  # JSON text
    content_hash: str


@dataclass(frozen=True)
class RunRow:
    """One batch run."""

    run_id: str
    started_at: str
    engine_version: str
    referential_version: str
    referential_hash: str
    workers: int
    ledger_path: str
    finished_at: str | None = None
    total: int | None = None
    ok: int | None = None
    skipped: int | None = None
    failed: int | None = None
    results_root: str | None = None
    checkpoint: str | None = None  # the signed checkpoint text, when the run has one


class ResultStore(Protocol):
    """What the engine needs from a store; a worker holds one, the parent one at a time."""

    def write_results(self, rows: Sequence[ResultRow], run_started_at: str) -> dict[str, str]:
        """Store rows idempotently in one transaction; return ``{agent_id: error}`` for
        rows that could not be stored (a conflicting hash, a database error)."""
        ...

    def start_run(self, run: RunRow) -> None:
        """Record a new run, or accept an existing one with the same id (resume)."""
        ...

    def finish_run(self, run: RunRow) -> None:
        """Record a run's counts, finish time, ledger path and Merkle root."""
        ...

    def get_run(self, run_id: str) -> RunRow | None: ...

    def iter_results(self, run_id: str) -> Iterator[StoredResult]:
        """The run's rows, ordered by position."""
        ...

    def iter_result_json(self, run_id: str) -> Iterator[str]:
        """The run's whole result objects (JSON text), ordered by position."""
        ...

    def iter_rows(self, run_id: str) -> Iterator[ResultRow]:
        """The run's rows in full, JSON columns as the database's text, by position."""
        ...

    def iter_profiles(self, run_id: str) -> Iterator[ProfileRow]:
        """The profile rows that name this run, by learner."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoreSpec:
    """A checked store URL, picklable: what a worker needs to connect."""

    url: str
    kind: str  # "sqlite" | "postgresql"

    @property
    def display(self) -> str:
        """The URL reduced to scheme, user, host, port and database (no secret)."""
        return redact_url(self.url)

    def open(self) -> ResultStore:
        """Connect in this process (call it in the worker, after fork)."""
        if self.kind == "sqlite":
            from ceredis.stores.sqlite import SqliteStore

            return SqliteStore(sqlite_path(self.url))
        from ceredis.stores.postgres import PostgresStore

        return PostgresStore(self.url)

    def describe(self) -> dict[str, Any]:
        """What the ledger header records about the store (no secrets); ``reduced`` says the
        URL held more (a password, options), which a resume must be given again."""
        return {"kind": self.kind, "url": self.display, "reduced": self.display != self.url}


def prepare_store(url: str) -> StoreSpec:
    """Check *url*, connect once, create or migrate the schema; raise a clear error."""
    spec = parse_store_url(url)
    store = spec.open()  # connects and migrates; raises StoreError if unreachable
    store.close()
    return spec


def parse_store_url(url: str) -> StoreSpec:
    """A StoreSpec for *url*, checked for form only."""
    if redact_url(url) == NOT_A_URL:
        raise ConfigError(
            "the database setting is not a URL (a key=value connection string is not accepted "
            "and is not shown: it may hold a password): write postgresql://user@host:port/db "
            "or sqlite:///path/to/file.sqlite"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        sqlite_path(url)
        return StoreSpec(url, "sqlite")
    if scheme in ("postgresql", "postgres"):
        return StoreSpec(url, "postgresql")
    raise ConfigError(
        f"unknown database URL {redact_url(url)!r}: use postgresql://user@host/db or "
        "sqlite:///path/to/file.sqlite"
    )


def sqlite_path(url: str) -> Path:
    """The file named by ``sqlite:///relative`` or ``sqlite:////absolute``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
        raise ConfigError(
            f"bad SQLite URL {redact_url(url)!r}: write sqlite:///relative/path.sqlite or "
            "sqlite:////absolute/path.sqlite"
        )
    return Path(parts.path[1:])
