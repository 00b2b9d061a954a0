"""Shared fixtures: an isolated home for every test run, and builders of evidence."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ceredis.referential import Referential, bundled_referential


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Data, cache and config directories under a temporary folder, never the user's."""
    home = tmp_path_factory.mktemp("home")
    patch = pytest.MonkeyPatch()
    patch.setenv("CEREDIS_DATA_DIR", str(home / "data"))
    patch.setenv("CEREDIS_CACHE_DIR", str(home / "cache"))
    patch.setenv("CEREDIS_CONFIG", str(home / "config.toml"))
    (home / "config.toml").write_text("")
    for name in (
        "CEREDIS_MAX_WORKERS",
        "CEREDIS_SOURCE",
        "CEREDIS_DATABASE_URL",
        "DATABASE_URL",
        "CASS_URL",
        "CEREDIS_LEDGER_DIR",
        "CEREDIS_SOURCE_RATE",
    ):
        patch.delenv(name, raising=False)
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def referential() -> Referential:
    """The bundled ceredis-1.1 referential."""
    return bundled_referential()


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The PostgreSQL server for tests (CEREDIS_TEST_DSN); skipped only outside CI."""
    dsn = os.environ.get("CEREDIS_TEST_DSN")
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail("CI must set CEREDIS_TEST_DSN: PostgreSQL tests never skip in CI")
        pytest.skip("no PostgreSQL configured (set CEREDIS_TEST_DSN)")
    return dsn


@pytest.fixture
def pg_url(pg_dsn: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"ceredis_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(pg_dsn)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
