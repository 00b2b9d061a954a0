"""The result schema shared by PostgreSQL and SQLite, and its migrations.

Migrations are numbered and applied in order, each recorded in ``ceredis_schema``; a
store applies the missing ones on connect, under a lock, so running it twice or from
N workers at once changes nothing. Types differ by dialect only where they must:
JSON columns are ``json`` in PostgreSQL (databases made by earlier engines have
``jsonb``, which works as well) and canonical JSON text in SQLite; scores are
``numeric(6,2)`` and exact text respectively.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migration_sql"]

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE ceredis_run (
            run_id              text PRIMARY KEY,
            started_at          text NOT NULL,
            finished_at         text,
            engine_version      text NOT NULL,
            referential_version text NOT NULL,
            referential_hash    text NOT NULL,
            workers             integer NOT NULL,
            total               integer,
            ok                  integer,
            skipped             integer,
            failed              integer,
            ledger_path         text NOT NULL,
            results_root        text
        );
        CREATE TABLE ceredis_result (
            run_id        text NOT NULL REFERENCES ceredis_run (run_id),
            agent_id      text NOT NULL,
            position      integer NOT NULL,
            status        text NOT NULL,
            ceredis_score {SCORE},
            band_level    text,
            cecrl_level   text,
            domain_scores {JSON},
            competencies  {JSON},
            result        {JSON} NOT NULL,
            error         text,
            content_hash  text NOT NULL,
            PRIMARY KEY (run_id, agent_id)
        );
        CREATE INDEX ceredis_result_position ON ceredis_result (run_id, position);
        CREATE TABLE ceredis_profile (
            agent_id        text PRIMARY KEY,
            run_id          text NOT NULL REFERENCES ceredis_run (run_id),
            run_started_at  text NOT NULL,
            ceredis_score   {SCORE} NOT NULL,
            band_level      text NOT NULL,
            cecrl_level     text NOT NULL,
            domain_scores   {JSON} NOT NULL,
            content_hash    text NOT NULL
        );
        """,
    ),
    (
        2,
        # The signed checkpoint (C2SP tlog-checkpoint text) of a run finished with a key.
        "ALTER TABLE ceredis_run ADD COLUMN checkpoint text",
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migration_sql(version: int, column_types: Mapping[str, str]) -> list[str]:
    """The statements of one migration, with a dialect's ``{JSON}`` and ``{SCORE}`` types."""
    text = dict(MIGRATIONS)[version].format(**column_types)
    return [s.strip() for s in text.split(";") if s.strip()]
