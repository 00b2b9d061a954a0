"""Shared fixtures: an isolated home for every test run, and builders of evidence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
