"""How many workers a batch may start: no more than its learners, the machine's memory
and the database's free connections can hold (checked in planning, before any fork)."""

from __future__ import annotations

import os
from contextlib import closing

from ceredis.errors import ConfigError, StoreError
from ceredis.stores import StoreSpec

__all__ = ["WORKER_MEMORY", "bounded_workers"]

#: Memory a worker costs. Measured: VmRSS of a worker scoring a 3,000-learner sample
#: into SQLite is 29.5 MB (22 MB of it anonymous; Linux, CPython 3.11); rounded up to
#: 40 MiB for psycopg's buffers and learners with many records.
WORKER_MEMORY = 40 * 1024 * 1024
_CONNECTIONS = (
    "SELECT current_setting('max_connections')::int, count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def bounded_workers(requested: int, learners: int | None, store: StoreSpec | None) -> int:
    """*requested*, capped at *learners* (when known); ConfigError above what fits in
    memory or in the free connections of *store* (not asked when None: a dry run)."""
    workers = min(requested, learners) if learners else requested
    memory = available_memory()
    if memory is not None and workers * WORKER_MEMORY > memory:
        fits = max(1, memory // WORKER_MEMORY)
        raise ConfigError(
            f"--workers {workers} needs about {workers * WORKER_MEMORY >> 20:,} MiB "
            f"({WORKER_MEMORY >> 20} MiB a worker) but the machine has "
            f"{memory >> 20:,} MiB available: use --workers {fits} or fewer"
        )
    if store is not None and store.kind == "postgresql":
        free, limit = free_connections(store)
        if workers > free:
            raise ConfigError(
                f"--workers {workers} needs {workers} database connections but "
                f"{store.display} has {free} free (max_connections {limit} less "
                f"{limit - free} in use): use --workers {max(1, free)} or fewer"
            )
    return workers


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def free_connections(store: StoreSpec) -> tuple[int, int]:
    """(connections free, max_connections) of the store's PostgreSQL server, now.

    The connection asking is not counted: it closes before the workers start.
    """
    import psycopg  # only a PostgreSQL store asks: SQLite runs never load the driver

    try:
        with closing(psycopg.connect(store.url, connect_timeout=10)) as conn:
            row = conn.execute(_CONNECTIONS).fetchone()
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot count the free connections of {store.display}: {exc}".strip()
        ) from None
    limit, used = row or (0, 0)
    return max(0, limit - used), limit
