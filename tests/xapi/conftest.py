"""Real Ralph LRS servers for the xAPI tests (one venv, provisioned once, reused)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from ceredis.sources.xapi import ENV_PASSWORD, ENV_USERNAME, XapiSource
from doubles.ralph import RalphLRS
from tests.builders import settings_from

USERNAME = "ceredis-reader"
PASSWORD = "Pw-7f3c91e0-not-in-any-message"
#: Ralph's page cap in the small-page server: every paging edge case in a few statements.
SMALL_PAGE = 3
#: No retries and short timeouts: a failure shows at once instead of after backoff.
FAST_FAIL = {
    "CEREDIS_SOURCE_RETRIES": "0",
    "CEREDIS_SOURCE_CONNECT_TIMEOUT": "2",
    "CEREDIS_SOURCE_READ_TIMEOUT": "10",
    "CEREDIS_SOURCE_DEADLINE": "15",
}


@pytest.fixture(scope="session")
def ralph() -> Iterator[RalphLRS]:
    """A Ralph LRS with the default page cap (100); tests add their own learners."""
    with RalphLRS([], USERNAME, PASSWORD) as lrs:
        yield lrs


@pytest.fixture(scope="session")
def ralph_small_pages() -> Iterator[RalphLRS]:
    """A Ralph LRS whose pages hold at most :data:`SMALL_PAGE` statements."""
    with RalphLRS([], USERNAME, PASSWORD, max_page_size=SMALL_PAGE) as lrs:
        yield lrs


def credentials(username: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    """The environment that gives the source its Basic-auth credentials."""
    return {ENV_USERNAME: username, ENV_PASSWORD: password, **FAST_FAIL}


@pytest.fixture
def open_source() -> Iterator[Callable[..., XapiSource]]:
    """``open_source(lrs_or_uri, env=…)``: an XapiSource closed after the test."""
    opened: list[XapiSource] = []

    def make(target: RalphLRS | str, env: Mapping[str, str] | None = None, **kw: Any) -> XapiSource:
        uri = target if isinstance(target, str) else "xapi+" + target.base_url
        settings = settings_from(credentials() if env is None else env)
        source = XapiSource.from_uri(uri, settings=settings, **kw)
        opened.append(source)
        return source

    yield make
    for source in opened:
        source.close()
