"""No credential, key or signature ever reaches a message, a log line or the journal;
every exception class of the CaSS stack pickles (the worker pool ships them)."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from ceredis.errors import CeredisError, ConfigError, SourceError
from ceredis.sources import kbac
from ceredis.sources.cass import CassSource, check_uri
from ceredis.sources.http import Failure, _AttemptFailed
from ceredis.sources.kbac import DecryptionError
from doubles.cass_double import Fault, _Reply
from doubles.cass_query import QuerySyntaxError
from doubles.kbac import generate_key
from tests.builders import settings_from

from .conftest import records

TOKEN = "Bearer tok-4b1d-NEVER-PRINT-ME-77"


def test_secrets_never_appear_in_errors_logs_or_the_journal(
    cass_factory, open_source, competencies, engine_key, engine_key_file, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG)
    cass = cass_factory(records("L0001", 3), competencies=competencies)
    env = {"CEREDIS_CASS_AUTHORIZATION": TOKEN}
    source = open_source(cass, env={**env, "CEREDIS_SOURCE_RETRIES": "1"})
    sheet = json.loads(source._sheets.sheet())[0]
    messages: list[str] = []

    def attempt(fn, *args):
        try:
            fn(*args)
        except CeredisError as exc:
            messages.append(str(exc))
            messages.append(repr(exc))
            messages.append(str(pickle.loads(pickle.dumps(exc))))

    # A server (or a proxy) that echoes the request back in its error page.
    echo = f"echo: Authorization: {TOKEN}; signatureSheet={json.dumps([sheet])}"
    cass.add_fault(Fault.http_status(500, echo, route="search", times=2))
    attempt(source.fetch, "L0001")
    cass.add_fault(Fault.cass_429(retry_after=900, route="search", times=1))
    attempt(source.fetch, "L0001")
    attempt(source.fetch, "L0001")  # every worker now waits out the 60 s cap: no slot
    anonymous = open_source(cass, key=False, env=env)
    attempt(anonymous.fetch, "L0001")
    stranger = generate_key()
    other = cass_factory(records("L0002", 1), competencies=competencies, engine_key=stranger)
    attempt(open_source(other, env=env).fetch, "L0002")
    bad_key = tmp_path / "broken.pem"
    bad_key.write_text(engine_key.private_pem().replace("MII", "XXX", 1))
    attempt(
        lambda: CassSource.from_uri(
            cass.source_uri, settings=settings_from({"CEREDIS_CASS_KEY": str(bad_key)})
        )
    )
    attempt(check_uri, "cass+https://reader:hunter2-secret@cass.example/")
    attempt(
        lambda: kbac.decrypt_value(
            next(o for o in other.objects() if o["@type"] == "Assertion")["subject"], engine_key
        )
    )
    assert len(messages) >= 15

    private_body = "".join(engine_key.private_pem().splitlines()[1:-1])
    forbidden = {
        "the Authorization value": TOKEN,
        "the token": "NEVER-PRINT-ME",
        "the signature": sheet["@signatureSha256"][:40],
        "the private key": private_body[100:140],
        "the URI password": "hunter2-secret",
    }
    haystacks = {
        "messages": "\n".join(messages),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "journal": repr(cass.journal) + repr(other.journal),
        "reprs": repr(source) + repr(source.config) + repr(engine_key) + source.name,
    }
    for where, text in haystacks.items():
        for what, secret in forbidden.items():
            assert secret not in text, f"{what} leaked into the {where}"
    assert "[redacted]" in haystacks["messages"]  # the echo was caught, not just absent
    assert any("Retry-After" in m for m in messages)


@pytest.mark.parametrize(
    "exc",
    [
        DecryptionError("the field is not encrypted for the engine's key (fingerprint ab)"),
        SourceError("cass+https://h/: POST /api/data failed: HTTP 400: bad query"),
        ConfigError("CEREDIS_CASS_KEY names '/x', which is not a readable file"),
        QuerySyntaxError("unsupported syntax '~' in 'a~2'"),
        _AttemptFailed(Failure("status", "busy", status=503, retry_after=1.0)),
        _Reply(429, "slow down", "text/plain", {"Retry-After": "1"}),
    ],
    ids=lambda e: type(e).__name__,
)
def test_exception_classes_pickle(exc):
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc) and str(clone) == str(exc)
    if isinstance(exc, _AttemptFailed):
        assert clone.failure == exc.failure
    if isinstance(exc, _Reply):
        assert (clone.status, clone.body, clone.headers) == (
            429,
            b"slow down",
            {"Retry-After": "1"},
        )
