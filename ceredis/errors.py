"""Errors of the ceredis package.

    CeredisError
    ├── ConfigError            a bad option, URL, environment variable or config file
    ├── ReferentialError       a referential breaks a rule (each problem listed)
    ├── EvidenceFileError      an evidence export cannot be read (line numbers given)
    ├── SourceError            an evidence source failed for one learner or at start
    │   └── NotInSource        a source that lists all its learners does not know this id
    │   └── SourceUnavailable  the source is down (after its own retries): an outage
    ├── StoreError             the result store failed (connection, schema, conflict)
    │   └── StoreUnavailable   the database is down (refused, shutting down, disk full…)
    ├── OutageError            an outage outlasted the budget: the batch stopped, resumable
    └── ReplayError            a ledger cannot be replayed (unknown format, bad header)

Every error is built from one message string, so it pickles across the worker pool
(an exception that cannot be unpickled hangs ``multiprocessing.Pool``). Messages say
what is wrong, where, and what to do; they never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "CeredisError",
    "ConfigError",
    "EvidenceFileError",
    "NotInSource",
    "OutageError",
    "ReferentialError",
    "ReplayError",
    "SourceError",
    "SourceUnavailable",
    "StoreError",
    "StoreUnavailable",
]


class CeredisError(Exception):
    """Root of every error raised by the ceredis package."""


class ConfigError(CeredisError, ValueError):
    """A command-line option, URL, environment variable or config file is invalid."""


class ReferentialError(CeredisError, ValueError):
    """A referential is malformed or breaks a rule; the message lists every problem."""


class EvidenceFileError(CeredisError, ValueError):
    """An evidence export cannot be read; the message names the file and line."""


class SourceError(CeredisError):
    """An evidence source could not deliver a learner's evidence (or could not start)."""


class NotInSource(SourceError):
    """The learner is unknown to a source that lists every learner it has (the bundled
    cohort): an ERROR of that learner, not a SKIPPED "no evidence", and not an outage."""


class StoreError(CeredisError):
    """The result store failed: unreachable, bad schema, or a conflicting write."""


class ReplayError(CeredisError):
    """A ledger cannot be replayed: unknown format or a header without a referential."""


class SourceUnavailable(SourceError):
    """The evidence source is down (connection, timeout, 5xx, 429 after every retry)."""


class StoreUnavailable(StoreError):
    """The result store is down: the connection, not a row, failed."""


class OutageError(CeredisError):
    """A store or source outage lasted beyond the outage budget; the batch stopped."""
