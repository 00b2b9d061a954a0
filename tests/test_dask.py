"""The Dask executor: the same ledger and root as the local pool, worker loss survived,
one rate limit across Dask workers, no secret in what is submitted."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceredis.dask_pool import insecure_scheduler
from ceredis.dask_rate import SlotCalendar
from doubles.cass_double import CassDouble, Fault
from tests.test_remote_batch import (
    ARRIVAL_JITTER,
    SECRETS,
    batch,
    cohort,
    ledger_results,
    max_in_window,
)

RATE, BURST = 60.0, 2
DB_PASSWORD = "db-Pw-5e0c7d31"


@pytest.fixture(scope="module")
def competencies() -> dict[str, str]:
    from ceredis.referential import bundled_referential

    return {cid: c.cass_uuid for cid, c in bundled_referential().competencies.items()}


@pytest.fixture(scope="module")
def engine_key():
    from doubles.kbac import generate_key

    return generate_key()


def ledger_bytes(path: Path) -> list[bytes]:
    from ledger.reader import read_ledger

    return [r.body_bytes for r in read_ledger(path) if r.kind == "record"]


def test_the_same_ledger_records_and_root_as_the_local_pool(tmp_path):
    """JSONL source: --executor dask with 1 and 2 workers writes the local pool's records."""
    files, _ = cohort(tmp_path, 120, seed=12, per_learner=8)
    local, local_plan = batch(tmp_path, "local", str(files.evidence), files.roster)
    for workers in (1, 2):
        name = f"dask{workers}"
        report, plan = batch(
            tmp_path, name, str(files.evidence), files.roster, workers=workers, executor="dask"
        )
        assert report.results_root == local.results_root
        assert ledger_bytes(plan.ledger) == ledger_bytes(local_plan.ledger)
    assert local.failed == 0 and local.total == 120


@pytest.mark.postgres
def test_cass_on_dask_one_rate_limit_and_no_secret_submitted(
    tmp_path, monkeypatch, pg_url, competencies, engine_key
):
    """CaSS on 2 Dask workers: the file source's root; request starts never above
    rate·W + burst in any window of the double's journal; nothing submitted to the cluster
    holds a secret (the workers read theirs from their own environment)."""
    files, records = cohort(tmp_path, 60, seed=5)
    from_file, _ = batch(tmp_path, "file", str(files.evidence), files.roster)
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", str(RATE))
    monkeypatch.setenv("CEREDIS_SOURCE_BURST", str(BURST))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    submitted = _spy_on_submissions(monkeypatch)
    database = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)  # trust: accepted
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, encrypted=False, seed=2
    ) as cass:
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        report, _ = batch(
            tmp_path, "cass", cass.source_uri, files.roster, executor="dask", database=database
        )
        times = sorted(e.t for e in cass.journal)
    assert report.results_root == from_file.results_root
    assert len(times) > 2 * 60
    for window in (0.25, 0.5, 1.0, 2.0):  # one limiter per worker would give 33 > 20
        assert max_in_window(times, window) <= RATE * (window + ARRIVAL_JITTER) + BURST
    assert submitted and b"_score_chunk" in b"".join(submitted)
    for secret in [DB_PASSWORD, *SECRETS.values()]:
        assert not any(secret.encode() in blob for blob in submitted), secret


def _spy_on_submissions(monkeypatch) -> list[bytes]:
    """Record the pickled arguments of everything the client sends to the cluster."""
    blobs: list[bytes] = []
    for method in ("submit", "register_plugin", "run_on_scheduler"):
        original = getattr(distributed.Client, method)

        def spy(self, *args, _original=original, **kwargs):
            import cloudpickle

            blobs.append(cloudpickle.dumps((args, kwargs)))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(distributed.Client, method, spy)
    return blobs


def test_a_learner_that_kills_its_dask_worker_twice_is_error(
    tmp_path, monkeypatch, competencies, engine_key
):
    """The Dask worker fetching the victim is SIGKILLed each time: its chunk dies twice and
    is split, its own task dies twice: the victim is ERROR, every other learner is scored
    once, in order."""
    files, records = cohort(tmp_path, 6, seed=8)
    victim = "L00003"
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", "500")
    with CassDouble.from_evidence(
        records, competencies=competencies, engine_key=engine_key, encrypted=False, seed=3
    ) as cass:
        cass.add_fault(Fault.latency(0.3))
        for name, value in cass.source_env(tmp_path / "engine.pem").items():
            monkeypatch.setenv(name, value)
        stop = threading.Event()
        killer = threading.Thread(target=_kill_when_fetched, args=(cass, victim, stop))
        killer.start()
        try:
            report, plan = batch(
                tmp_path,
                "poison",
                cass.source_uri,
                files.roster,
                workers=1,
                chunksize=2,
                executor="dask",
            )
        finally:
            stop.set()
            killer.join()
    results = ledger_results(plan.ledger)
    assert [r["agentId"] for r in results] == files.roster.read_text().split()
    by_agent = {r["agentId"]: r for r in results}
    assert by_agent[victim]["result"]["error"] == (
        "worker process died while scoring this learner (twice); not retried"
    )
    assert report.failed == 1 and report.total == 6


def _kill_when_fetched(cass: CassDouble, agent: str, stop: threading.Event) -> None:
    """Each time the double sees a new request for *agent*, SIGKILL the Dask worker
    processes (this process's spawned children), at most four times."""
    seen = kills = 0
    while not stop.is_set() and kills < 4:
        hits = [e for e in list(cass.journal) if agent in repr(e.params)]
        if len(hits) > seen:
            seen = len(hits)
            for pid in _spawned_children():
                os.kill(pid, signal.SIGKILL)
            kills += 1
            time.sleep(1.0)  # the next request for the agent comes from the rerun
        time.sleep(0.01)


def _spawned_children() -> list[int]:
    me, found = os.getpid(), []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == me and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.postgres
def test_two_machines_one_lost_mid_batch(tmp_path, pg_url):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1; one worker is
    SIGKILLed mid-batch: the batch finishes on the other with the local pool's ledger,
    and the surviving worker holds no database connection of the run afterwards."""
    files, _ = cohort(tmp_path, 400, seed=14, per_learner=6)
    _, local_plan = batch(tmp_path, "local", str(files.evidence), files.roster)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    }
    dask = str(Path(sys.executable).parent / "dask")
    processes = [_start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                         "--no-dashboard"], env, tmp_path / "scheduler.log")]  # fmt: skip
    try:
        for i in range(2):
            worker = [dask, "worker", address, "--nthreads", "1", "--no-nanny",
                      "--no-dashboard", "--host", "127.0.0.1"]  # fmt: skip
            processes.append(_start(worker, env, tmp_path / f"worker{i}.log"))
        ledger = tmp_path / "two.jsonl"
        run = subprocess.Popen(
            [sys.executable, "-m", "ceredis", "batch", "--executor", "dask", "--scheduler",
             address, "--source", str(files.evidence), "--file", str(files.roster),
             "--ledger", str(ledger), "--chunksize", "4", "--quiet",
             "--database", pg_url],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        killed = _kill_after(ledger, 100, processes[1], run)
        _, err = run.communicate(timeout=120)
        left = _connections(pg_url)  # the surviving worker still runs
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert run.returncode == 0, err
    assert "Traceback" not in err
    assert killed, "the worker was not killed mid-batch"
    assert ledger_bytes(ledger) == ledger_bytes(local_plan.ledger)
    assert left == 0


def _connections(url: str) -> int:
    """Sessions open on *url*'s database, other than this one."""
    import psycopg

    with psycopg.connect(url) as conn:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        return conn.execute(query + " AND pid <> pg_backend_pid()").fetchone()[0]


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as errors:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _kill_after(ledger: Path, lines: int, worker: subprocess.Popen, run: subprocess.Popen):
    """SIGKILL *worker* once *ledger* has *lines* lines; whether it happened mid-run."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and run.poll() is None:
        if ledger.exists() and ledger.read_bytes().count(b"\n") >= lines:
            worker.kill()
            return run.poll() is None
        time.sleep(0.005)
    return False


def test_the_missing_extra_is_named(tmp_path):
    """Without Dask distributed, --executor dask is exit 2 naming the extra to install."""
    code = (
        "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None\n"
        "from ceredis.cli import main; raise SystemExit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "batch", "--executor", "dask", "--agent", "L00001",
         "--ledger", str(tmp_path / "x.jsonl"), "--database", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'ceredis[dask]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("tcp://10.0.0.5:8786", True),
        ("203.0.113.9:8786", True),
        ("tcp://sched.example.org:8786", True),
        ("tls://10.0.0.5:8786", False),
        ("tcp://127.0.0.1:8786", False),
        ("tcp://localhost:8786", False),
        (None, False),
    ],
)
def test_a_plain_tcp_scheduler_off_this_machine_is_warned_about(address, warns):
    assert (insecure_scheduler(address) is not None) == warns


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([5.0, 20.0, 300.0]),
    asks=st.lists(
        st.tuples(st.floats(0, 0.2), st.integers(1, 40), st.floats(0, 0.05)), max_size=60
    ),
)
def test_the_slot_calendar_never_exceeds_rate_times_window_plus_one(rate, asks):
    """Whatever the blocks asked for and when, any window of W s holds ≤ rate·W + 1 slots."""
    clock = [100.0]
    calendar = SlotCalendar(rate, clock=lambda: clock[0])
    starts = []
    for advance, count, spacing in asks:
        clock[0] += advance
        starts += [clock[0] + d for d in calendar.reserve(count, spacing)]
    starts.sort()
    for window in (1 / rate, 0.1, 1.0):
        assert max_in_window(starts, window) <= rate * window + 1 + 1e-9


def test_every_hidden_setting_is_kept_from_the_cluster():
    """Each setting hidden from repr (a credential) is one the executor blanks."""
    from dataclasses import fields, is_dataclass

    from ceredis.config import Settings
    from ceredis.dask_pool import SECRET_SETTINGS

    def hidden(cls, prefix=""):
        for f in fields(cls):
            kind = f.default_factory() if callable(f.default_factory) else f.default
            if is_dataclass(kind):
                yield from hidden(type(kind), f"{prefix}{f.name}.")
            elif not f.repr:
                yield prefix + f.name

    assert set(hidden(Settings)) <= set(SECRET_SETTINGS)
    assert "xapi.password" in set(hidden(Settings))
