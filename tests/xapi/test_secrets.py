"""The LRS password never shows: not in errors, reprs, logs or the server's log."""

from __future__ import annotations

import base64
import logging
import pickle
import socket
from collections.abc import Callable

import pytest

from ceredis.errors import CeredisError
from ceredis.sources.xapi import XapiSource, check_uri
from doubles.ralph import RalphLRS
from tests.xapi.conftest import PASSWORD, USERNAME, credentials

Open = Callable[..., XapiSource]


def test_password_is_in_no_message_repr_or_log(
    ralph: RalphLRS, open_source: Open, caplog: pytest.LogCaptureFixture
) -> None:
    """Every error, repr and log line produced around a configured password omits it."""
    caplog.set_level(logging.DEBUG)
    token = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    texts: list[str] = []

    good = open_source(ralph)
    good.ping()
    good.fetch("nobody")
    list(good.agents())
    texts += [repr(good), good.name, repr(good._http), str(good.stats())]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    failing = [
        open_source(ralph, env=credentials(password=PASSWORD + "-wrong")),
        open_source(ralph, env=credentials(username="nobody")),
        open_source(f"xapi+http://127.0.0.1:{closed_port}/xAPI/"),
        open_source("xapi+" + ralph.origin + "/not-xapi/"),
    ]
    errors: list[CeredisError] = []
    for source in failing:
        texts.append(repr(source))
        for call in (source.ping, lambda s=source: s.fetch("learner-1"), source.agents):
            with pytest.raises(CeredisError) as caught:
                result = call()
                if result is not None:
                    list(result)
            errors.append(caught.value)
    for uri in (
        f"xapi+https://{USERNAME}:{PASSWORD}@lrs.example.org/xAPI/",
        f"xapi+https://{PASSWORD}@lrs.example.org/xAPI/",
        f"xapi+https://lrs.example.org:{PASSWORD}/xAPI/",
    ):
        with pytest.raises(CeredisError) as caught:
            check_uri(uri)
        errors.append(caught.value)

    texts += [str(e) for e in errors]
    texts += [repr(pickle.loads(pickle.dumps(e))) for e in errors]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(ralph), ralph.log_tail(1000)]
    assert len(errors) == 15
    for text in texts:
        assert PASSWORD not in text
        assert token not in text
