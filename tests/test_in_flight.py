"""Requests in flight decoupled from processes (``--in-flight``), measured at a real server:
the CaSS double journals each request's arrival and answer times."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from ceredis.outcome import Outcome
from ceredis.pool import CHUNK_SECONDS, MAX_CHUNK, _Pace, _prefetching
from ceredis.referential import bundled_referential
from ceredis.sources.kbac import EngineKey
from ceredis.sources.ratelimit import RateLimiter
from doubles.cass_double import CassDouble
from doubles.kbac import generate_key
from doubles.ralph import RalphLRS
from doubles.xapi_fixtures import evidence_to_statements
from tests.test_remote_batch import _children, batch, cohort, ledger_results

LATENCY = 0.03  # s the double waits before each answer: requests overlap when allowed


@pytest.fixture(scope="module")
def uuids() -> dict[str, str]:
    return {cid: c.cass_uuid for cid, c in bundled_referential().competencies.items()}


@pytest.fixture(scope="module")
def key() -> EngineKey:
    return generate_key()


@pytest.fixture
def fast_rate(monkeypatch):
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", "1000")
    monkeypatch.setenv("CEREDIS_SOURCE_BURST", "20")


def serve(records, uuids, key, tmp_path, monkeypatch, **options) -> CassDouble:
    """A CaSS double holding *records*, the environment pointing at it."""
    cass = CassDouble.from_evidence(
        records, competencies=uuids, engine_key=key, encrypted=False, seed=4, **options
    )
    for name, value in cass.source_env(tmp_path / "engine.pem").items():
        monkeypatch.setenv(name, value)
    return cass


@pytest.mark.parametrize(("in_flight", "workers"), [(3, 2), (1, 2), (5, 1)])
def test_the_bound_on_requests_in_flight_holds_across_workers(
    tmp_path, monkeypatch, uuids, key, fast_rate, in_flight, workers
):
    """The server never handles more than --in-flight requests at once, whatever the number
    of workers (fewer than workers included: 1 is sequential), and reaches the bound."""
    files, records = cohort(tmp_path, 30, seed=11)
    with serve(records, uuids, key, tmp_path, monkeypatch, latency_s=LATENCY) as cass:
        report, _ = batch(
            tmp_path, "bound", cass.source_uri, files.roster, workers=workers, in_flight=in_flight
        )
        most = cass.most_in_flight()
    assert report.failed == 0 and report.ok + report.skipped == 30
    assert most == in_flight


def test_the_results_root_does_not_depend_on_in_flight_or_workers(
    tmp_path, monkeypatch, uuids, key, fast_rate
):
    """CaSS with --in-flight 1 and 8 and --workers 1 and 2, and a real Ralph LRS with
    prefetching, give the file source's resultsRoot."""
    files, records = cohort(tmp_path, 24, seed=12)
    from_file, _ = batch(tmp_path, "file", str(files.evidence), files.roster)
    roots = {}
    with serve(records, uuids, key, tmp_path, monkeypatch, latency_s=0.005) as cass:
        for in_flight in (1, 8):
            for workers in (1, 2):
                name = f"cass-{in_flight}-{workers}"
                report, _ = batch(
                    tmp_path, name, cass.source_uri, files.roster, workers, in_flight=in_flight
                )
                roots[name] = report.results_root
    monkeypatch.setenv("CEREDIS_XAPI_USERNAME", "reader")
    monkeypatch.setenv("CEREDIS_XAPI_PASSWORD", "reader-Pw-33")
    with RalphLRS(evidence_to_statements(records), "reader", "reader-Pw-33") as lrs:
        report, _ = batch(tmp_path, "ralph", "xapi+" + lrs.base_url, files.roster, in_flight=8)
        roots["ralph-8-2"] = report.results_root
    assert from_file.failed == 0 and from_file.ok > 20
    assert roots == dict.fromkeys(roots, from_file.results_root)


@pytest.mark.parametrize(
    ("chunksize", "overlap", "seen"),
    [
        (16, 3, "the worker was never seen with several requests in flight"),
        (4, 6, "the worker never fetched its next chunk while ending this one"),
    ],
    ids=["prefetching", "holding-the-chunk-it-took-early"],
)
def test_a_killed_worker_loses_nothing(
    tmp_path, monkeypatch, uuids, key, fast_rate, chunksize, overlap, seen
):
    """SIGKILL on the only worker once the double holds *overlap* unanswered requests:
    with chunks of 16, several of its chunk's requests; with chunks of 4, more than a
    chunk's, so it was fetching the next chunk, taken early, while ending this one. Every
    learner is recorded once, in order, none ERROR, with the file source's resultsRoot."""
    files, records = cohort(tmp_path, 16, seed=13)
    from_file, _ = batch(tmp_path, "file", str(files.evidence), files.roster)
    with serve(records, uuids, key, tmp_path, monkeypatch, latency_s=0.15) as cass:
        stop, killed = threading.Event(), []
        killer = threading.Thread(target=_kill_when_overlapping, args=(cass, stop, killed, overlap))
        killer.start()
        try:
            report, plan = batch(
                tmp_path,
                "killed",
                cass.source_uri,
                files.roster,
                1,
                in_flight=8,
                chunksize=chunksize,
            )
        finally:
            stop.set()
            killer.join()
    assert killed, seen
    results = ledger_results(plan.ledger)
    assert [r["agentId"] for r in results] == files.roster.read_text().split()
    assert report.failed == 0
    assert report.results_root == from_file.results_root


def _kill_when_overlapping(
    cass: CassDouble, stop: threading.Event, killed: list[int], overlap: int
) -> None:
    """Kill the pool's worker once, the first time the double holds *overlap* unanswered
    requests."""
    while not stop.is_set() and not killed:
        if sum(e.done is None and e.status is None for e in list(cass.journal)) >= overlap:
            for pid in _children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.005)


def test_in_flight_comes_from_the_flag_the_environment_or_the_config_file(tmp_path):
    """--in-flight > CEREDIS_IN_FLIGHT > in_flight in the config file > 16; 0 is refused."""
    from ceredis.config import load_settings
    from ceredis.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text("in_flight = 4\n", encoding="utf-8")
    env = {"CEREDIS_CONFIG": str(config)}
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    assert load_settings({}, {"CEREDIS_CONFIG": str(tmp_path / "empty.toml")}).in_flight == 16
    assert load_settings({}, env).in_flight == 4
    assert load_settings({}, {**env, "CEREDIS_IN_FLIGHT": "8"}).in_flight == 8
    assert load_settings({"in_flight": 2}, {**env, "CEREDIS_IN_FLIGHT": "8"}).in_flight == 2
    with pytest.raises(ConfigError, match=r"--in-flight=0 is out of range \[1, 1024\]"):
        load_settings({"in_flight": 0}, env)


def test_a_dry_run_shows_the_bound_on_requests_in_flight(tmp_path, monkeypatch, capsys, uuids, key):
    """`batch --dry-run` against a remote source names the --in-flight bound; for a file it
    says there is none."""
    from ceredis.cli import main

    files, records = cohort(tmp_path, 3, seed=11)
    database = f"sqlite:///{tmp_path / 'dry.sqlite'}"
    plan = ["batch", "--dry-run", "--file", str(files.roster), "--database", database]
    with serve(records, uuids, key, tmp_path, monkeypatch) as cass:
        assert main([*plan, "--source", cass.source_uri, "--in-flight", "3"]) == 0
    remote = " ".join(capsys.readouterr().out.split())
    assert main([*plan, "--source", str(files.evidence)]) == 0
    local = " ".join(capsys.readouterr().out.split())
    assert "in flight at most 3 requests to the source at once, all workers together" in remote
    assert "in flight not bounded (a local file, read inline)" in local


def test_each_worker_fetches_on_as_many_threads_as_its_share_of_the_requests_in_flight():
    """M requests in flight over W workers: ceil(M / W) fetch threads a worker (a thread
    beyond its share would wait for a slot another worker holds, and cost CPU), at most
    MAX_CHUNK; chunks of at least twice the share. A file source is read inline."""
    for in_flight, workers, expected in [
        (16, 1, (16, 32)),
        (16, 2, (8, 16)),
        (16, 3, (6, 12)),
        (1, 4, (1, 2)),
        (500, 2, (MAX_CHUNK, MAX_CHUNK)),
    ]:
        assert _prefetching(RateLimiter(100.0, in_flight=in_flight), workers) == expected
    assert _prefetching(None, 2) == (0, 1)


def _chunk(*durations_ms: float) -> list[Outcome]:
    return [
        Outcome(i, f"a{i}", "OK", None, None, b"", 1, ms, None) for i, ms in enumerate(durations_ms)
    ]


def test_automatic_chunks_last_ten_refills_when_the_head_waits_for_its_fetch():
    """A chunk's first learner waits a whole fetch (the worker prefetches only the chunk it
    holds): the automatic size grows so that wait stays under a tenth of the chunk."""
    pace = _Pace()
    pace.observe(_chunk(80, *[2] * 31))  # 80 ms refill, ~4.4 ms a learner
    assert pace.chunk_size(16) == min(MAX_CHUNK, int(0.8 / pace.per_learner))
    assert pace.chunk_size(16) > int(CHUNK_SECONDS / pace.per_learner)


def test_automatic_chunks_last_a_quarter_second_when_nothing_waits():
    """From a file the head is like any learner: chunks of about CHUNK_SECONDS, floored."""
    pace = _Pace()
    assert pace.chunk_size(1) == 4  # nothing measured yet
    pace.observe(_chunk(*[10] * 8))
    assert pace.chunk_size(1) == 25
    assert pace.chunk_size(30) == 30
