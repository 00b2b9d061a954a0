"""Fixtures for the CaSS tests: the engine key, the golden samples, doubles and records."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ceredis.sources.cass import CassSource
from ceredis.sources.kbac import EngineKey
from ceredis.sources.ratelimit import RateLimiter
from doubles.cass_double import CassDouble
from doubles.kbac import generate_key
from tests.builders import settings_from

SAMPLES = Path(__file__).parent / "samples"

#: No retries and short timeouts: a failure shows at once instead of after backoff.
FAST_FAIL = {
    "CEREDIS_SOURCE_RETRIES": "0",
    "CEREDIS_SOURCE_CONNECT_TIMEOUT": "2",
    "CEREDIS_SOURCE_READ_TIMEOUT": "5",
    "CEREDIS_SOURCE_DEADLINE": "10",
}
#: Retries with the policy defaults but short timeouts.
QUICK = {
    "CEREDIS_SOURCE_RETRIES": "5",
    "CEREDIS_SOURCE_CONNECT_TIMEOUT": "2",
    "CEREDIS_SOURCE_READ_TIMEOUT": "5",
    "CEREDIS_SOURCE_DEADLINE": "20",
}


@pytest.fixture(scope="session")
def engine_key() -> EngineKey:
    """The engine's RSA key (generated once per session: generation is slow)."""
    return generate_key()


@pytest.fixture(scope="session")
def engine_key_file(engine_key: EngineKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The engine key as a PEM file, as CEREDIS_CASS_KEY names it."""
    path = tmp_path_factory.mktemp("keys") / "engine.pem"
    path.write_text(engine_key.private_pem(), encoding="ascii")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def competencies(referential: Any) -> dict[str, str]:
    """``X.Y`` → CaSS uuid, from the bundled referential."""
    return {cid: c.cass_uuid for cid, c in referential.competencies.items()}


def record(agent: str, n: int, *, competency: str = "5.3", **extra: Any) -> dict[str, Any]:
    """An evidence record (scoring.md §1) for *agent*, number *n*."""
    out: dict[str, Any] = {
        "evidenceId": f"{agent}-ev-{n:03d}",
        "agentId": agent,
        "competencyId": competency,
        "evidenceType": "P2",
        "rawScore": Decimal("72.10"),
        "timestamp": "2026-03-01T10:00:00+02:00",
        "context": "La Bohème",
        "validator": "teacher:ana",
    }
    out.update(extra)
    return out


def records(agent: str, count: int, **extra: Any) -> list[dict[str, Any]]:
    """*count* records for *agent*."""
    return [record(agent, i, **extra) for i in range(count)]


@pytest.fixture
def open_source(
    engine_key_file: Path,
) -> Iterator[Callable[..., CassSource]]:
    """Open CassSources against a double; every one is closed after the test."""
    opened: list[CassSource] = []

    def _open(
        double: CassDouble,
        *,
        env: Mapping[str, str] | None = None,
        key: bool = True,
        uri: str | None = None,
        limiter: RateLimiter | None = None,
    ) -> CassSource:
        full_env = dict(FAST_FAIL)
        if key:
            full_env["CEREDIS_CASS_KEY"] = str(engine_key_file)
        full_env.update(env or {})
        source = CassSource.from_uri(
            uri or double.source_uri,
            settings=settings_from(full_env),
            limiter=limiter or RateLimiter(10_000, burst=1000),
        )
        opened.append(source)
        return source

    yield _open
    for source in opened:
        source.close()


@pytest.fixture
def cass_factory(engine_key: EngineKey) -> Iterator[Callable[..., CassDouble]]:
    """Start doubles loaded with records (encrypted for the engine key by default)."""
    started: list[CassDouble] = []

    def _make(recs: list[dict[str, Any]] | None = None, **options: Any) -> CassDouble:
        options.setdefault("engine_key", engine_key)
        double = CassDouble.from_evidence(recs or [], **options)
        started.append(double.start())
        return double

    yield _make
    for double in started:
        double.stop()
