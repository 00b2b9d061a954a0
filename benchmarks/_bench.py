"""Shared machinery of the batch benchmarks (batch_scaling, parent_memory, sizing).

Not a benchmark itself. It provides:

* throwaway PostgreSQL databases (``fresh_database``), one per run;
* cached synthetic cohorts (``cohort``, and ``seed_cohort`` for the seed comparison),
  written with :func:`ceredis.sample.write_cohort`;
* the least CPU of a few rounds of in-process work (``best_cpu_ms``);
* the engine's parent in a process of its own (``run_engine``): the benchmark process
  starts ``python benchmarks/_bench.py engine SPEC`` and, while it runs, samples
  ``pg_stat_activity`` and the CPU time of every process group on the machine; the
  child runs ``plan_batch`` + ``run_batch`` with a sampling :class:`~ceredis.engine.ProgressHooks`
  hook (peak memory of the parent and of each worker, per-learner times);
* the calibration (``calibrate``, also in a process of its own): the model's terms
  measured one by one on the same code paths as the engine — fetch, score, encode +
  hash, the DB write, dispatch through ``Pool.imap``, the parent's ledger and report
  cost — and the DB write capacity with parallel writers;
* the CaSS double in a process of its own (``DoubleProcess``), so that its CPU is
  measured apart and its GIL is not the engine parent's;
* the throughput bound X* of anchors.md §E (``bound``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ceredis.engine import ProgressHooks  # noqa: E402 - after the path above
from ceredis.pool import CHUNK_SECONDS, MAX_CHUNK, REFILLS_PER_CHUNK  # noqa: E402

ADMIN_DSN = os.environ.get("CEREDIS_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
CLK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
UNLIMITED_RATE = 1e6  # CEREDIS_SOURCE_RATE when no rate limit is wanted: never binds


# -- small utilities ---------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank on sorted values; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def vm_kb(pid: int | str, key: str = "VmHWM") -> int | None:
    """A memory figure (kB) of /proc/<pid>/status: VmHWM is the peak resident set."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_queue_wait(pid: int | str) -> float | None:
    """Seconds a process has waited on a run queue for a core (/proc/<pid>/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _stat(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].decode().split()
    except OSError:
        return None


def proc_cpu(pid: int | str, children: bool = False) -> float:
    """CPU seconds (user + system) of a process, plus its reaped children's if asked."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def postgres_cpu() -> float:
    """CPU seconds used so far by the PostgreSQL server: every live server process, plus
    the backends that already exited (reaped by the postmaster, so in its cutime)."""
    pids = [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) == "postgres"]
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        is_postmaster = _comm(fields[1]) != "postgres"
        total += proc_cpu(pid, children=is_postmaster)
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK, total / CLK


def wait_quiet(max_busy: float = 0.3, timeout: float = 30.0, window: float = 0.5) -> float:
    """Wait (up to *timeout* s) until the machine is nearly idle — other people's jobs
    share these cores — and return the busy cores seen in the last *window*."""
    deadline = time.monotonic() + timeout
    while True:
        before = machine_busy()[0]
        time.sleep(window)
        busy = (machine_busy()[0] - before) / window
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    from ceredis import __version__

    info: dict[str, Any] = {
        "cores": CORES,
        "memoryGiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "ceredis": __version__,
    }
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            info["synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()[0]
    return info


# -- PostgreSQL ----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(prefix: str = "ceredis_bench") -> Iterator[str]:
    """A new, empty database on the benchmark server; dropped afterwards. Yields its DSN."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class Sampler:
    """A thread of the benchmark process that counts, every *period* seconds while a run
    goes on, the connections to the run's database (pg_stat_activity)."""

    def __init__(self, dbname: str | None, period: float = 0.2):
        self.dbname = dbname
        self.period = period
        self.connections: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        if self.dbname is None:
            return
        import psycopg

        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            while not self._stop.wait(self.period):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
                ).fetchone()
                self.connections.append(row[0])


# -- cohorts -------------------------------------------------------------------------------


def work_dir(given: str | None) -> Path:
    """Where cohorts, indexes, ledgers and reports go (kept between runs as a cache)."""
    path = Path(given) if given else Path(tempfile.gettempdir()) / "ceredis-bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cohort(directory: Path, learners: int, evidence: int, seed: int = 1) -> tuple[Path, Path]:
    """A synthetic cohort (evidence JSONL, roster), written once and reused."""
    from ceredis.referential import bundled_referential
    from ceredis.sample import write_cohort

    out = directory / f"cohort-{learners}x{evidence}-s{seed}.jsonl"
    roster = out.with_name(f"{out.stem}.agents.txt")
    if not (out.exists() and roster.exists()):
        write_cohort(out.with_suffix(".tmp.jsonl"), bundled_referential(), learners, seed, evidence)
        out.with_suffix(".tmp.jsonl").replace(out)
        out.with_name(f"{out.stem}.tmp.agents.txt").replace(roster)
    return out, roster


def seed_cohort(directory: Path, learners: int, seed: int = 1) -> tuple[Path, Path]:
    """``ceredis sample --agents <learners> --seed S`` (default evidence, ~86 records a
    learner): the seed comparison's cohort, written once."""
    from ceredis.referential import bundled_referential
    from ceredis.sample import write_cohort

    out = directory / f"seed-cohort-{learners}-s{seed}.jsonl"
    roster = out.with_name(f"{out.stem}.agents.txt")
    if not (out.exists() and roster.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        write_cohort(out, bundled_referential(), learners, seed, force=True)
    return out, roster


def best_cpu_ms(work: Callable[[], object], per: int, rounds: int = 5) -> float:
    """The least process CPU time of *rounds* runs of *work*, in ms per item of *per*."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return min(times) * 1000 / per


def roster_head(directory: Path, roster: Path, n: int) -> Path:
    """A roster of the first *n* learners of *roster*."""
    out = directory / f"{roster.stem}.first{n}.txt"
    if not out.exists():
        with open(roster, encoding="utf-8") as src:
            head = [next(src) for _ in range(n)]
        out.write_text("".join(head), encoding="utf-8")
    return out


def bench_env(directory: Path, rate: float | None = None) -> dict[str, str]:
    """The environment of an engine run: its own data and cache directories, no config
    file, and the source rate limit (*rate*, else one that never binds)."""
    env = {
        "CEREDIS_DATA_DIR": str(directory / "data"),
        "CEREDIS_CACHE_DIR": str(directory / "cache"),
        "CEREDIS_CONFIG": "",
        "CEREDIS_SOURCE_RATE": str(rate if rate else UNLIMITED_RATE),
        "CEREDIS_SOURCE_BURST": "5",
    }
    return env


# -- the CaSS double, in a process of its own -----------------------------------------------


def _serve_double(conn: Any, evidence: str, seed: int) -> None:
    from ceredis.referential import bundled_referential
    from ceredis.sources.files import read_evidence_file
    from doubles.cass_double import CassDouble

    referential = bundled_referential()
    uuids = {cid: c.cass_uuid for cid, c in referential.competencies.items()}
    records = [dict(r.fields) for _, agent, r in read_evidence_file(Path(evidence)) if agent]
    double = CassDouble.from_evidence(records, competencies=uuids, encrypted=False, seed=seed)
    del records
    double.start()
    conn.send({"uri": double.source_uri, "pid": os.getpid(), "rssKiB": vm_kb("self", "VmRSS")})
    while True:
        command, argument = conn.recv()
        if command == "latency":
            double.latency_s = argument
            double.clear_journal()
            conn.send(None)
        elif command == "journal":
            entries = double.requests()
            conn.send(
                {
                    "t": [e.t for e in entries],
                    "routes": [e.route for e in entries],
                    "bad": sum(1 for e in entries if e.status != 200),
                }
            )
            double.clear_journal()
        else:
            double.stop()
            conn.send(None)
            return


class DoubleProcess:
    """The CaSS double (plain assertions) serving *evidence*, in a child process."""

    def __init__(self, evidence: Path, seed: int = 1) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_double, args=(child, str(evidence), seed))
        started = time.monotonic()
        self.process.start()
        info = self._conn.recv()
        self.load_seconds = time.monotonic() - started
        self.uri: str = info["uri"]
        self.pid: int = info["pid"]
        self.rss_mib = info["rssKiB"] / 1024

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by *seconds* from now on (and forget the journal)."""
        self._conn.send(("latency", seconds))
        self._conn.recv()

    def journal(self) -> dict[str, Any]:
        """Arrival times and routes of the requests since the last call."""
        self._conn.send(("journal", None))
        return self._conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._conn.send(("stop", None))
            self._conn.recv()
        self.process.join(10)

    def __enter__(self) -> DoubleProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upstream_figures(journal: dict[str, Any], learners: int) -> dict[str, Any]:
    """Fetches per learner f and request rates from a journal of the double."""
    times = sorted(journal["t"])
    n = len(times)
    searches = sum(1 for route in journal["routes"] if route == "search")
    out: dict[str, Any] = {
        "requests": n,
        # a learner's fetches are searches; planning adds a ping and a framework read
        "fetchesPerLearner": searches / learners if learners else 0,
    }
    if n > 1:
        span = times[-1] - times[0]
        out["reqPerS"] = n / span if span > 0 else None
        buckets: dict[int, int] = {}
        for t in times:
            buckets[int(t)] = buckets.get(int(t), 0) + 1
        out["peakReqPerS"] = max(buckets.values())
    out["nonOk"] = journal["bad"]
    return out


# -- the engine's parent in a process of its own ----------------------------------------------


@dataclass
class EngineSpec:
    """One engine run (what ``_bench.py engine`` needs)."""

    source: str
    roster: str
    database: str
    workers: int
    ledger: str
    env: dict[str, str]
    chunksize: int | None = None
    timings: bool = True  # keep each learner's time and completion time (not for 1M ids)
    upstream_pid: int | None = None  # the CaSS double's process, for its CPU time
    out: str = ""


class SamplingProgress(ProgressHooks):
    """Progress hooks that measure: run in the engine's parent, once per learner.

    Every 0.25 s (checked with one clock read per learner) the parent's and each worker's
    VmHWM (peak resident set) are read from /proc. Worker pids come from
    ``outcome.worker``. With *timings*, each learner's worker-side time and the time it
    reached the parent are kept (8 bytes each: fine for sizing runs, off for 1M ids).
    """

    def __init__(self, timings: bool) -> None:
        from array import array

        self.timings = timings
        self.durations = array("d")
        self.arrivals = array("d")
        self.workers: dict[int, int] = {}
        self.waits: dict[int, float] = {}  # run-queue wait per worker, last seen
        self.parent_hwm = 0
        self.count = 0
        self.first = self.last = 0.0
        self._next_sample = 0.0

    def start(self, plan: Any, total: int | None, done: int) -> None:
        self.started = time.monotonic()

    def advance(self, outcome: Any) -> None:
        now = time.monotonic()
        self.count += 1
        if self.count == 1:
            self.first = now
        self.last = now
        if self.timings:
            self.durations.append(outcome.duration_ms)
            self.arrivals.append(now)
        if outcome.worker not in self.workers:
            self.workers[outcome.worker] = 0
            self._next_sample = 0.0
        if now >= self._next_sample:
            self._next_sample = now + 0.25
            self.sample()

    def sample(self) -> None:
        self.parent_hwm = max(self.parent_hwm, vm_kb("self") or 0)
        for pid in self.workers:
            self.workers[pid] = max(self.workers[pid], vm_kb(pid) or 0)
            wait = run_queue_wait(pid)
            if wait is not None:
                self.waits[pid] = wait

    def stop(self) -> None:
        self.sample()


def steady_rate(arrivals: Sequence[float], gap: float = 0.002) -> float | None:
    """Learners/s between the 10th and the 90th percentile of completion times.

    Results reach the parent a chunk at a time, in bursts (one learner every ~0.1 ms),
    (arrivals closer than *gap* belong to one burst): the rate is the learners of the
    bursts after the first one up to the last one, over the time between those two.
    """
    n = len(arrivals)
    if n < 20:
        return None

    def burst_end(i: int) -> int:
        while i + 1 < n and arrivals[i + 1] - arrivals[i] < gap:
            i += 1
        return i

    lo, hi = burst_end(n // 10), burst_end((9 * n) // 10)
    if hi <= lo or arrivals[hi] <= arrivals[lo]:
        return None
    return (hi - lo) / (arrivals[hi] - arrivals[lo])


def _upstream_cpu(pid: int | None) -> float:
    return proc_cpu(pid) if pid else 0.0


def _engine_main(spec: EngineSpec) -> dict[str, Any]:
    os.environ.update(spec.env)
    from ceredis.engine import run_batch
    from ceredis.plan import plan_batch

    planned = time.monotonic()
    plan = plan_batch(
        agents_file=Path(spec.roster),
        source=spec.source,
        database=spec.database,
        workers=spec.workers,
        ledger=Path(spec.ledger),
        chunksize=spec.chunksize,
    )
    progress = SamplingProgress(spec.timings)
    rss_before = (vm_kb("self", "VmRSS") or 0) / 1024
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    pg0, (busy0, _), up0 = postgres_cpu(), machine_busy(), _upstream_cpu(spec.upstream_pid)
    started = time.monotonic()
    report = run_batch(plan, progress)
    wall = time.monotonic() - started
    pg, (busy, _), up = postgres_cpu(), machine_busy(), _upstream_cpu(spec.upstream_pid)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out: dict[str, Any] = {
        "learners": report.total,
        "ok": report.ok,
        "skipped": report.skipped,
        "failed": report.failed,
        "planSeconds": started - planned,
        "seconds": wall,
        "rate": report.total / wall if wall else None,
        "firstResultSeconds": progress.first - started if progress.count else None,
        "parentCpu": (ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "workersCpu": children.ru_utime + children.ru_stime,
        "pgCpu": pg - pg0,
        "upstreamCpu": up - up0,
        "machineCpu": busy - busy0,
        "busyCores": (busy - busy0) / wall if wall else None,
        "otherCores": None,  # filled below: CPU used by processes that are not the run's
        "parentPeakMiB": ru.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "parentPeakBeforeRunMiB": ru0.ru_maxrss / 1024,
        "parentRssBeforeRunMiB": rss_before,
        "parentHwmSampledMiB": progress.parent_hwm / 1024,
        "workerPeakMiB": sorted(v / 1024 for v in progress.workers.values()),
        "workerPids": len(progress.workers),
        "workersRunQueueWait": sum(progress.waits.values()),
        "parentRunQueueWait": run_queue_wait("self"),
        "resultsRoot": report.results_root,
        "monotonicStart": started,
        "monotonicEnd": started + wall,
    }
    ours = out["parentCpu"] + out["workersCpu"] + out["pgCpu"] + out["upstreamCpu"]
    out["otherCores"] = max(0.0, out["machineCpu"] - ours) / wall if wall else None
    if spec.timings and progress.durations:
        durations = list(progress.durations)
        out["p50Ms"] = percentile(durations, 50)
        out["p95Ms"] = percentile(durations, 95)
        out["steadyRate"] = steady_rate(list(progress.arrivals)) or out["rate"]
        out["arrivals"] = [round(t - started, 4) for t in progress.arrivals]
    return out


def _in_child(
    command: str, spec: EngineSpec | CalibrationSpec, around: contextlib.AbstractContextManager[Any]
) -> dict[str, Any]:
    """Run ``python benchmarks/_bench.py COMMAND SPEC`` inside *around*; its JSON figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        spec.out = f.name
        json.dump(asdict(spec), f)
    try:
        with around:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), command, spec.out],
                capture_output=True,
                text=True,
            )
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(Path(spec.out).read_text())
    finally:
        Path(spec.out).unlink(missing_ok=True)


def run_engine(spec: EngineSpec) -> dict[str, Any]:
    """Run the engine's parent as ``python benchmarks/_bench.py engine`` and return its
    figures, with the connections (of a PostgreSQL store) and CPU sampled from here."""
    sqlite = spec.database.startswith("sqlite:")
    sampler = Sampler(None if sqlite else spec.database.rsplit("/", 1)[1])
    result = _in_child("engine", spec, sampler)
    result["maxConnections"] = max(sampler.connections, default=None)
    return result


@contextlib.contextmanager
def scratch_ledger(directory: Path, prefix: str) -> Iterator[Path]:
    """A new ledger path in *directory*; the ledger and its report are deleted afterwards."""
    ledger = directory / f"{prefix}-{time.time_ns()}.jsonl"
    try:
        yield ledger
    finally:
        ledger.unlink(missing_ok=True)
        ledger.with_suffix(".report.json").unlink(missing_ok=True)


def bench_arguments(
    doc: str, *, quick: str, json_help: str = "also write the figures to this JSON file"
) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--dir`` and ``--json``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--dir", help="work directory (cohorts and rosters are cached there)")
    parser.add_argument("--json", type=Path, help=json_help)
    return parser


# -- calibration: the model's terms, one at a time --------------------------------------------


@dataclass
class CalibrationSpec:
    source: str
    database: str
    agents: list[str]
    env: dict[str, str]
    double_pid: int | None = None
    writers: int = 2  # parallel writers for the DB capacity
    rounds: int = 3  # each term is the median of this many rounds (the host is shared)
    out: str = ""


_DISPATCH_PAYLOAD: list[Any] = []


def _echo_chunk(chunk: list[int]) -> list[Any]:
    payload = _DISPATCH_PAYLOAD
    return [payload[i % len(payload)] for i in chunk]


def dispatch_cost(payload: list[Any], chunk: int, n: int) -> float:
    """Seconds per learner through ``Pool.imap`` with no work: one worker returns ready
    outcomes in chunks of *chunk*; the parent consumes them (the dispatch term o)."""
    _DISPATCH_PAYLOAD[:] = payload
    ctx = mp.get_context("fork")
    chunks = [list(range(i, min(n, i + chunk))) for i in range(0, n, chunk)]
    with ctx.Pool(1) as pool:
        list(pool.imap(_echo_chunk, chunks[:4], chunksize=1))  # warm up
        started = time.perf_counter()
        for _ in pool.imap(_echo_chunk, chunks, chunksize=1):
            pass
        return (time.perf_counter() - started) / n


def _parallel_writer(
    store_spec: Any, rows: list[Any], started_at: str, chunk: int, barrier: Any, q: Any
) -> None:
    store = store_spec.open()
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(0, len(rows), chunk):
        store.write_results(rows[i : i + chunk], started_at)
    q.put((t0, time.perf_counter()))
    store.close()


def _calibrate_main(spec: CalibrationSpec) -> dict[str, Any]:
    os.environ.update(spec.env)
    from dataclasses import replace

    from ceredis import __version__
    from ceredis.evidence import submitted
    from ceredis.outcome import Outcome
    from ceredis.pool import Task, _row
    from ceredis.record import encode_record, score_learner
    from ceredis.referential import bundled_referential
    from ceredis.report import BatchReport, ReportFile
    from ceredis.sources import prepare_source
    from ceredis.stores import RunRow, prepare_store
    from ledger.writer import LedgerWriter

    referential = bundled_referential()
    source = prepare_source(spec.source).open()
    store_spec = prepare_store(spec.database)
    store = store_spec.open()
    run_id = str(uuid.uuid4())
    started_at = "2026-01-01T00:00:00.000Z"
    store.start_run(
        RunRow(run_id, started_at, __version__, referential.id, referential.hash, 1, "calibration")
    )
    backend = getattr(store, "backend_pid", None)

    def cpu() -> float:
        return time.process_time()

    agents = spec.agents
    for agent in agents[:10]:  # warm up: imports, caches, connections
        score_learner(
            agent,
            [submitted(r) for r in source.fetch(agent)],
            referential,
            engine_version=__version__,
        )
    seen: dict[str, list[float]] = {}

    def keep(**values: float) -> None:
        for key, value in values.items():
            seen.setdefault(key, []).append(value)

    for _ in range(spec.rounds):
        fetch_wall = fetch_cpu = score_cpu = ser_cpu = 0.0
        double0 = proc_cpu(spec.double_pid) if spec.double_pid else 0.0
        scored = []
        for index, agent in enumerate(agents):
            w0, c0 = time.perf_counter(), cpu()
            records = [submitted(r) for r in source.fetch(agent)]
            w1, c1 = time.perf_counter(), cpu()
            result, inputs = score_learner(agent, records, referential, engine_version=__version__)
            c2 = cpu()
            encoded = encode_record(agent, result, inputs)
            record, row = encoded.record, _row(run_id, Task(index, agent), result, encoded)
            c3 = cpu()
            fetch_wall += w1 - w0
            fetch_cpu += c1 - c0
            score_cpu += c2 - c1
            ser_cpu += c3 - c2
            scored.append((agent, result, record, row, (w1 - w0) * 1000))
        upstream_cpu = (proc_cpu(spec.double_pid) - double0) if spec.double_pid else 0.0
        keep(
            fetchWall=fetch_wall,
            fetchCpu=fetch_cpu,
            scoreCpu=score_cpu,
            serializeCpu=ser_cpu,
            upstreamCpu=upstream_cpu,
        )
    n = len(agents)

    rows = [s[3] for s in scored]

    def write(batch: list[Any], chunk: int) -> tuple[float, float, float]:
        """Seconds per row: wall, client CPU, server CPU, writing in chunks of *chunk*."""
        db0 = proc_cpu(backend) if backend else 0.0
        w0, c0 = time.perf_counter(), cpu()
        for i in range(0, len(batch), chunk):
            store.write_results(batch[i : i + chunk], started_at)
        wall, client = time.perf_counter() - w0, cpu() - c0
        server = (proc_cpu(backend) - db0) if backend else 0.0
        return wall / len(batch), client / len(batch), server / len(batch)

    # w = RTT/B + t_row: the same rows written in chunks of 64 and of 1 (one transaction
    # per learner), other agent ids for the second set; w(k) is interpolated in 1/k.
    for r in range(spec.rounds):
        write64 = write([replace(x, agent_id=f"{x.agent_id}-r{r}") for x in rows], MAX_CHUNK)
        write1 = write([replace(x, agent_id=f"{x.agent_id}-k1-r{r}") for x in rows[:300]], 1)
        keep(
            writeWall64=write64[0],
            writeCpu64=write64[1],
            dbCpu64=write64[2],
            writeWall1=write1[0],
            writeCpu1=write1[1],
            dbCpu1=write1[2],
        )

    # The DB's write capacity: `writers` processes writing chunks at once, each its rows.
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(spec.writers), ctx.Queue()
    per_writer = max(n, 1000)
    batches = [
        [
            replace(rows[i % n], agent_id=f"{rows[i % n].agent_id}-w{w}-{i}")
            for i in range(per_writer)
        ]
        for w in range(spec.writers)
    ]
    store.close()  # no connection of ours crosses the fork
    writers = [
        ctx.Process(
            target=_parallel_writer,
            args=(store_spec, batches[w], started_at, MAX_CHUNK, barrier, q),
        )
        for w in range(spec.writers)
    ]
    for p in writers:
        p.start()
    spans = [q.get() for _ in writers]
    for p in writers:
        p.join()
    db_capacity = spec.writers * per_writer / (max(e for _, e in spans) - min(s for s, _ in spans))

    outcomes = [
        Outcome(
            i,
            a,
            res["status"],
            res["ceredisScore"],
            res["cecrlLevel"],
            rec,
            4242,
            ms,
            None,
            res["bandLevel"],
            res["domainScores"],
        )
        for i, (a, res, rec, _, ms) in enumerate(scored)
    ]
    # The parent's cost per record: ledger append (group fsync) + report count + detail.
    with tempfile.TemporaryDirectory() as tmp:
        writer = LedgerWriter.create(Path(tmp) / "l.jsonl", {"calibration": True})
        report, report_file = BatchReport(), ReportFile(Path(tmp) / "r.json")
        repeat = max(1, 2000 // n)
        for _ in range(spec.rounds):
            t0 = time.perf_counter()
            for _ in range(repeat):
                for o in outcomes:
                    writer.append_canonical(o.record)
                    report.counts.add(o.status)
                    report_file.detail(o)
            keep(parentCost=(time.perf_counter() - t0) / (repeat * n))
        writer.finish({})
        report_file.finish(report)
    pickled = len(pickle.dumps(outcomes)) / n
    t0 = time.perf_counter()
    for _ in range(5):
        pickle.loads(pickle.dumps(outcomes))
    pickle_cost = (time.perf_counter() - t0) / (5 * n)
    source.close()
    for _ in range(spec.rounds):
        keep(
            dispatch64=dispatch_cost(outcomes, MAX_CHUNK, 64 * 40),
            dispatch1=dispatch_cost(outcomes, 1, 2000),
        )
    per_learner = ("fetchWall", "fetchCpu", "scoreCpu", "serializeCpu", "upstreamCpu")
    return {
        "learners": n,
        "rounds": spec.rounds,
        **{k: statistics.median(v) / (n if k in per_learner else 1) for k, v in seen.items()},
        "dbCapacity": db_capacity,
        "dbWriters": spec.writers,
        "outcomeBytes": pickled,
        "pickleCost": pickle_cost,
    }


def calibrate(spec: CalibrationSpec) -> dict[str, Any]:
    """Measure the model's terms in a fresh process (see ``_calibrate_main``)."""
    return _in_child("calibrate", spec, contextlib.nullcontext())


# -- the model: anchors.md §E ----------------------------------------------------------------


@dataclass
class Bound:
    """X* and its terms (learners/s); ``binding`` names the smallest."""

    terms: dict[str, float | None]
    per_learner: dict[str, float] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return min(v for v in self.terms.values() if v is not None)

    @property
    def binding(self) -> str:
        return min((v, k) for k, v in self.terms.items() if v is not None)[1]


def per_chunk(cal: dict[str, Any], name: str, k: int) -> float:
    """A chunk-dependent cost per learner at chunk size *k*: ``x_item + x_chunk / k``,
    fitted through the values measured at k = 64 and k = 1."""
    at64, at1 = cal[f"{name}64"], cal[f"{name}1"]
    per_chunk_cost = max(0.0, (at1 - at64) / (1 - 1 / MAX_CHUNK))
    return at1 - per_chunk_cost + per_chunk_cost / k


def auto_chunk(cal: dict[str, Any], latency: float, fetches: float) -> int:
    """The engine's automatic chunk size (``ceredis.pool._Pace``) for a synchronous
    worker: learners in about 0.25 s of worker-side time (what ``outcome.duration_ms``
    measures: fetch, score and the learner's share of the chunk's write), and at least
    ten times a chunk's first learner, who here waits like any other; at most 64."""
    seconds = fetches * latency + cal["fetchWall"] + cal["scoreCpu"] + cal["writeWall64"]
    chunk_seconds = max(CHUNK_SECONDS, REFILLS_PER_CHUNK * seconds)
    return max(1, min(MAX_CHUNK, int(chunk_seconds / seconds)))


def bound(
    cal: dict[str, Any],
    *,
    workers: int,
    latency: float,
    fetches: float,
    rate: float | None = None,
    cores: int = CORES,
    chunk: int | None = None,
    upstream_local: bool = True,
) -> Bound:
    """X* = min(CPU, rate, upstream, worker concurrency, DB, parent) for one point.

    Per learner (seconds): c = fetch CPU + scoring CPU (worker), s = serialize + hash,
    w(k) = DB write at chunk size k (wall in the worker; its CPU split into client and
    server), o(k) = dispatch through imap, a = the parent's ledger and report cost,
    u = the upstream server's CPU (the CaSS double, when it runs here). k is *chunk*, or
    the engine's automatic size for this latency.

    * CPU: C / (all CPU spent on this machine per learner: c + s + w_client + w_server
      + o + a + u) — the parent, PostgreSQL and the double share the same C cores;
    * rate: R / f, when a rate limit is set;
    * upstream: 1 / u — the double is one Python process (one core at most, GIL);
    * worker concurrency (synchronous workers, q = 1): N / (f·L + t0), with t0 the
      worker's wall time per learner at L = 0 (fetch incl. the upstream's service time,
      score, serialize, write, return);
    * DB: the write capacity (rows/s) measured with parallel writers in chunks of 64,
      scaled by w(64)/w(k) for smaller chunks;
    * parent: 1 / (a + o) (one serial parent: imap results + ledger + report).
    """
    k = chunk or auto_chunk(cal, latency, fetches)
    o = per_chunk(cal, "dispatch", k)
    w = per_chunk(cal, "writeWall", k)
    w_client = per_chunk(cal, "writeCpu", k)
    w_server = per_chunk(cal, "dbCpu", k)
    c = cal["fetchCpu"] + cal["scoreCpu"]
    s = cal["serializeCpu"]
    u = cal["upstreamCpu"]
    a = cal["parentCost"]
    machine_cpu = c + s + w_client + w_server + o + a + (u if upstream_local else 0)
    t0 = cal["fetchWall"] + cal["scoreCpu"] + s + w + cal["pickleCost"]
    terms: dict[str, float | None] = {
        "cpu": cores / machine_cpu,
        "rate": rate / fetches if rate and fetches else None,
        "upstream": 1 / u if u > 0 else None,
        "workers": workers / (fetches * latency + t0),
        "db": cal["dbCapacity"] * cal["writeWall64"] / w,
        "parent": 1 / (a + o),
    }
    per = {
        "k": k,
        "c": c,
        "s": s,
        "w": w,
        "wServer": w_server,
        "o": o,
        "a": a,
        "u": u,
        "t0": t0,
        "machineCpu": machine_cpu,
        "fL": fetches * latency,
    }
    return Bound(terms, per)


# -- entry point for the child processes -------------------------------------------------------


def _main(argv: list[str]) -> int:
    command, path = argv[1], argv[2]
    data = json.loads(Path(path).read_text())
    if command == "engine":
        result = _engine_main(EngineSpec(**data))
    elif command == "calibrate":
        result = _calibrate_main(CalibrationSpec(**data))
    else:
        raise SystemExit(f"unknown command {command!r}")
    Path(path).write_text(json.dumps(result, default=str))
    return 0


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv))
