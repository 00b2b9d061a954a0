"""The project against a faithful Node.js port of the engine it replaces (issue 12).

Runs the project (``python -m ceredis batch``) and the seed port
(``benchmarks/vs_seed/seed``: ``runWithConcurrency`` over one event loop, each learner
fetch → score → upsert) alternately, A B A B, each on a fresh PostgreSQL database,
fed by the same static xAPI upstream (``xapi_static.py``) with added latency L, or by
the same JSONL file. First it checks that both give every learner the same status,
scores and levels; it refuses to print a comparison otherwise.

    .venv/bin/python benchmarks/vs_seed/compare.py [--quick] [--points xapi:0:4,file:2]
        [--rounds 2] [--learners 2000] [--tune | --no-tune] [--json FILE]

Exit codes: 0 compared, 1 the engines disagree (nothing compared) or a run failed,
2 usage or setup error. ``docs/benchmarks.md`` explains every column.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _bench import (  # noqa: E402  (the path above makes the shared machinery importable)
    ADMIN_DSN,
    CORES,
    bench_env,
    environment,
    fresh_database,
    machine_busy,
    proc_cpu,
    seed_cohort,
    wait_quiet,
    work_dir,
)

SEED_DIR = HERE / "seed"
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_PERIOD = 0.1  # seconds between /proc samples of a process tree
TUNING_LEARNERS = 500  # the sample each candidate setting is tuned on
TUNING_PASSES = 3  # runs of each candidate, in turn; the median one counts
RSS_LIMIT = 1.5  # the bound on the project tree's peak RSS, against the port's
LATENCIES, CONCURRENCIES, FILE_CONCURRENCIES = (0, 20, 50), (1, 4, 16), (1, 2, 4)


class BenchError(Exception):
    """A setup problem (npm, node, the upstream, a run that failed), said plainly."""


# -- points and settings ---------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One comparison point: the source, the added latency (xAPI only) and N."""

    source: str  # "xapi" or "file"
    latency_ms: int
    n: int

    @property
    def label(self) -> str:
        if self.source == "file":
            return f"file N={self.n}"
        return f"xAPI L={self.latency_ms} N={self.n}"

    @classmethod
    def parse(cls, text: str) -> Point:
        """``xapi:L:N`` or ``file:N``."""
        parts = text.strip().split(":")
        try:
            if parts[0] == "xapi" and len(parts) == 3:
                point = cls("xapi", int(parts[1]), int(parts[2]))
            elif parts[0] == "file" and len(parts) == 2:
                point = cls("file", 0, int(parts[1]))
            else:
                raise ValueError
        except ValueError:
            raise BenchError(f"--points: {text!r} is neither xapi:L:N nor file:N") from None
        if point.n < 1 or point.latency_ms < 0:
            raise BenchError(f"--points: {text!r} needs N >= 1 and L >= 0")
        return point


FULL_POINTS = tuple(Point("xapi", lat, n) for lat in LATENCIES for n in CONCURRENCIES) + tuple(
    Point("file", 0, n) for n in FILE_CONCURRENCIES
)
QUICK_POINTS = (
    Point("xapi", 0, 1),
    Point("xapi", 0, 4),
    Point("xapi", 50, 16),
    Point("file", 0, 1),
    Point("file", 0, 2),
)


@dataclass(frozen=True)
class Setting:
    """The project's setting at a point: worker processes, and requests in flight
    (``--in-flight``; None when the project has no such flag: then one per worker)."""

    workers: int
    in_flight: int | None = None

    @property
    def label(self) -> str:
        return f"w{self.workers}" + (f"/m{self.in_flight}" if self.in_flight else "")


def candidate_settings(point: Point, has_in_flight: bool) -> list[Setting]:
    """Every setting the tuning tries: at most N processes, at most N requests in flight.

    A file source waits for nothing, so its best setting is as many processes as cores
    (at most N): tuning it on a short sample only measured the start-up, which one
    process pays as fast as two, and picked one process for N = 2."""
    if point.source == "file":
        return [default_setting(point, has_in_flight)]
    # One more process than cores too: while one waits (fetches, writes), another runs.
    workers = sorted({w for w in (1, 2, CORES + 1, 4, 8, 16) if w <= point.n})
    if point.n not in workers:
        workers.append(point.n)
    in_flight = point.n if has_in_flight and point.source == "xapi" else None
    return [Setting(w, in_flight) for w in workers]


def default_setting(point: Point, has_in_flight: bool) -> Setting:
    """The setting used without tuning: as many processes as cores when requests in
    flight are decoupled (or nothing is waited for), else one process per request."""
    if point.source == "file":
        return Setting(min(point.n, CORES))
    if has_in_flight:
        return Setting(min(point.n, CORES), point.n)
    return Setting(point.n if point.latency_ms else min(point.n, CORES))


def project_has_in_flight() -> bool:
    """Does ``ceredis batch`` take ``--in-flight`` (issue 12)?"""
    done = subprocess.run(
        [sys.executable, "-m", "ceredis", "batch", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return "--in-flight" in done.stdout


# -- the seed port: npm and its command --------------------------------------------------


def ensure_port_installed() -> None:
    """``npm ci`` in the port's directory unless node_modules matches package-lock.json."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise BenchError("node and npm are needed for the seed port (Node.js 20 or later)")
    installed = SEED_DIR / "node_modules" / ".package-lock.json"
    lock = SEED_DIR / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SEED_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"npm ci failed in {SEED_DIR}:\n{done.stderr.strip()[-2000:]}")


# -- the upstream ----------------------------------------------------------------------


class Upstream:
    """``xapi_static.py`` in a process of its own (its CPU is counted apart)."""

    def __init__(self, cohort: Path):
        self.cohort = cohort
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Upstream:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "xapi_static.py"), "--cohort", str(self.cohort)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening "):
            self.__exit__()
            raise BenchError("the static xAPI upstream did not start (see its stderr above)")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/xAPI/"

    def control(self, action: str, **query: Any) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/_control/{action}"
        if query:
            url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.loads(answer.read())

    def cpu(self) -> float:
        return proc_cpu(self.process.pid) if self.process else 0.0


# -- one run, measured ---------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Every process's children, from one scan of /proc."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class TreeSampler:
    """A thread sampling a process tree while it runs: the sum of its members' RSS (the
    peak of that sum is the tree's peak), and the PostgreSQL backends serving the run's
    database (their CPU, and how many there were at once)."""

    def __init__(self, root: int, dbname: str | None):
        self.root = root
        self.dbname = dbname
        self.peak_rss = 0
        self.pids: set[int] = {root}
        self.backend_cpu: dict[int, float] = {}
        self.max_connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = None
        if self.dbname:
            import psycopg

            conn = psycopg.connect(ADMIN_DSN, autocommit=True)
        try:
            tick = 0
            while not self._stop.is_set():
                if tick % 3 == 0:
                    self._discover()
                self.peak_rss = max(self.peak_rss, sum(_rss(p) for p in self.pids))
                if conn is not None and tick % 2 == 0:
                    self._backends(conn)
                tick += 1
                self._stop.wait(SAMPLE_PERIOD)
        finally:
            if conn is not None:
                conn.close()

    def _discover(self) -> None:
        tree, todo, found = _children(), [self.root], set()
        while todo:
            pid = todo.pop()
            found.add(pid)
            todo.extend(tree.get(pid, ()))
        self.pids = found

    def _backends(self, conn: Any) -> None:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
            )
        ]
        self.max_connections = max(self.max_connections, len(pids))
        for pid in pids:
            self.backend_cpu[pid] = max(self.backend_cpu.get(pid, 0.0), proc_cpu(pid))


@dataclass
class Run:
    """One engine's run at one point, and what was measured around it."""

    engine: str  # "project" or "seed"
    point: Point
    setting: str
    learners: int
    exit_code: int
    wall: float
    cpu_tree: float
    peak_rss_mb: float
    upstream_cpu: float
    postgres_cpu: float
    driver_cpu: float
    busy_cores: float
    other_cores: float
    load1: float
    requests: int
    db_connections: int
    first_request_s: float | None = None  # from the start to the first upstream request
    disagreements: int | None = None
    stderr_tail: str = ""

    @property
    def rate(self) -> float:
        return self.learners / self.wall

    def per_learner_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.learners

    @property
    def fetches(self) -> float:
        return self.requests / self.learners


@dataclass
class Context:
    """What every run of a comparison shares."""

    directory: Path
    cohort: Path
    roster: Path
    learners: int
    upstream: Upstream | None
    has_in_flight: bool
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # the reference rows
    quiet_timeout: float = 10.0


def project_command(ctx: Context, point: Point, setting: Setting, dsn: str, tmp: Path) -> list[str]:
    source = str(ctx.cohort) if point.source == "file" else "xapi+" + ctx.upstream.base_url
    command = [sys.executable, "-m", "ceredis", "batch", "--file", str(ctx.roster)]
    command += ["--source", source, "--database", dsn, "--workers", str(setting.workers)]
    if setting.in_flight is not None:
        command += ["--in-flight", str(setting.in_flight)]
    command += ["--ledger", str(tmp / "ledger.jsonl"), "--report", str(tmp / "report.json")]
    return [*command, "--quiet", "--json"]


def port_command(ctx: Context, point: Point, dsn: str, tmp: Path) -> list[str]:
    if point.source == "file":
        source = ["--file", str(ctx.cohort)]
    else:
        source = ["--xapi", ctx.upstream.base_url]
    return [
        shutil.which("node") or "node",
        str(SEED_DIR / "src" / "index.js"),
        "--agents-file",
        str(ctx.roster),
        "--database",
        dsn,
        *source,
        "--concurrency",
        str(point.n),
        "--report-dir",
        str(tmp),
        "--json",
    ]


@dataclass
class Counters:
    """Cumulative CPU counters read just before and just after a run."""

    upstream: float
    busy: float
    driver: float
    clock: float

    @classmethod
    def now(cls, upstream: Upstream | None) -> Counters:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            upstream=upstream.cpu() if upstream else 0.0,
            busy=machine_busy()[0],
            driver=me.ru_utime + me.ru_stime,
            clock=time.monotonic(),
        )


def launch(command: list[str], env: Mapping[str, str], dbname: str, tmp: Path) -> tuple:
    """Run a command to its exit, sampling its tree: (exit code, CPU of the tree from
    wait4, the sampler, stderr)."""
    with open(tmp / "stdout", "wb") as out, open(tmp / "stderr", "wb") as err:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        with TreeSampler(process.pid, dbname) as sampler:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
    stderr = (tmp / "stderr").read_text(encoding="utf-8", errors="replace")
    return process.returncode, usage.ru_utime + usage.ru_stime, sampler, stderr


def measure(ctx: Context, engine: str, point: Point, setting: Setting | None) -> tuple[Run, dict]:
    """Run one engine once on a fresh database; return the figures and its rows."""
    wait_quiet(timeout=ctx.quiet_timeout)
    with fresh_database("ceredis_vs_seed") as dsn, tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        if engine == "project":
            command = project_command(ctx, point, setting, dsn, tmp)
            env = {**os.environ, **bench_env(ctx.directory)}
        else:
            command, env = port_command(ctx, point, dsn, tmp), dict(os.environ)
        if ctx.upstream is not None:
            ctx.upstream.control("reset")
        before, wall_clock = Counters.now(ctx.upstream), time.time()
        code, cpu_tree, sampler, stderr = launch(command, env, dsn.rsplit("/", 1)[1], tmp)
        after = Counters.now(ctx.upstream)
        stats = ctx.upstream.control("stats") if ctx.upstream else {"requests": 0}
        rows = read_rows(dsn, "ceredis_result" if engine == "project" else "seed_result")
    wall, busy = after.clock - before.clock, after.busy - before.busy
    postgres = sum(sampler.backend_cpu.values())
    upstream, driver = after.upstream - before.upstream, after.driver - before.driver
    with open("/proc/loadavg", encoding="ascii") as f:
        load1 = float(f.read().split()[0])
    run = Run(
        engine=engine,
        point=point,
        setting=setting.label if setting else f"concurrency {point.n}",
        learners=ctx.learners,
        exit_code=code,
        wall=wall,
        cpu_tree=cpu_tree,
        peak_rss_mb=sampler.peak_rss / 2**20,
        upstream_cpu=upstream,
        postgres_cpu=postgres,
        driver_cpu=driver,
        busy_cores=busy / wall,
        other_cores=max(0.0, busy - cpu_tree - upstream - postgres - driver) / wall,
        load1=load1,
        requests=stats["requests"],
        db_connections=sampler.max_connections,
        first_request_s=stats["first"] - wall_clock if stats.get("first") else None,
        stderr_tail=stderr.strip()[-600:] if code != 0 else "",
    )
    return run, rows


# -- agreement ------------------------------------------------------------------------


def _cents(value: Any) -> str | None:
    return None if value is None else f"{float(value):.2f}"


def read_rows(dsn: str, table: str) -> dict[str, dict[str, Any]]:
    """Each learner's status, scores and levels, as stored by either engine."""
    import psycopg

    query = (
        "SELECT agent_id, status, ceredis_score, band_level, cecrl_level, domain_scores, "
        f"competencies FROM {table}"
    )
    rows = {}
    with psycopg.connect(dsn) as conn:
        for agent, status, score, band, level, domains, competencies in conn.execute(query):
            rows[agent] = {
                "status": status,
                "ceredisScore": _cents(score),
                "bandLevel": band,
                "cecrlLevel": level,
                "domainScores": {k: _cents(v) for k, v in sorted((domains or {}).items())},
                "competencies": {
                    k: [_cents(v["score"]), v["status"]]
                    for k, v in sorted((competencies or {}).items())
                },
            }
    return rows


def disagreements(
    reference: Mapping[str, Mapping[str, Any]], other: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every learner whose row differs (or is missing on one side), described."""
    found = []
    for agent in sorted(set(reference) | set(other)):
        a, b = reference.get(agent), other.get(agent)
        if a != b:
            fields = sorted(k for k in (a or b) if (a or {}).get(k) != (b or {}).get(k))
            found.append(f"{agent}: {', '.join(fields) if a and b else 'missing on one side'}")
    return found


# -- the comparison ---------------------------------------------------------------------


def set_latency(ctx: Context, point: Point) -> None:
    if ctx.upstream is not None:
        ctx.upstream.control("set", latency_ms=point.latency_ms if point.source == "xapi" else 0)


def checked(ctx: Context, run: Run, rows: dict) -> Run:
    """Compare a run's rows with the reference; a failed run is a setup error."""
    if run.exit_code != 0:
        raise BenchError(
            f"{run.engine} at {run.point.label} exited with {run.exit_code}:\n{run.stderr_tail}"
        )
    run.disagreements = len(disagreements(ctx.rows, rows))
    return run


def check_agreement(ctx: Context, point: Point) -> dict[str, Any]:
    """Both engines on the same input: identical status, scores and levels, or stop."""
    set_latency(ctx, point)
    setting = default_setting(point, ctx.has_in_flight)
    project, reference = measure(ctx, "project", point, setting)
    seed, rows = measure(ctx, "seed", point, None)
    for run in (project, seed):
        if run.exit_code != 0:
            raise BenchError(f"{run.engine} failed during the agreement check:\n{run.stderr_tail}")
    differences = disagreements(reference, rows)
    ctx.rows = reference
    return {
        "point": point.label,
        "learners": len(reference),
        "identical": len(reference) - len(differences),
        "differences": differences[:20],
        "fields": "status, ceredisScore, bandLevel, cecrlLevel, 5 domain scores, "
        "19 competency scores and statuses",
    }


def tune(ctx: Context, point: Point, sample: Context) -> tuple[Setting, list[dict]]:
    """The project's best setting at *point*, by short runs of each candidate on the
    sample, every candidate once, then again, then a third time, each ranked by its
    median run: a slow moment of the machine spoils one run of a setting, not the
    setting, and a lucky one does not win it either (ranked by the faster of two runs,
    one CPU-bound worker at 20 ms N = 16 won on a run of 335/s whose twin ran 237/s).
    The rate counts from the first request (start-up left out, as it weighs ten times
    more on a sample than on the cohort). The port runs once first, on the whole cohort,
    for its memory: a setting whose tree peaks above RSS_LIMIT × the port's is left out
    (four workers won 20 ms N = 16 by 2 % at 1.53× the port's memory). The fastest wins;
    within 2 % of it, the fewest processes."""
    candidates = candidate_settings(point, ctx.has_in_flight)
    if len(candidates) == 1:
        return candidates[0], []
    port = checked(ctx, *measure(ctx, "seed", point, None))
    tried = [{"setting": "port", "peakRssMB": port.peak_rss_mb, "exit": 0}]
    for _ in range(TUNING_PASSES):
        for setting in candidates:
            run, _ = measure(sample, "project", point, setting)
            rate = run.rate
            if run.first_request_s is not None:
                rate = run.learners / (run.wall - run.first_request_s)
            tried.append(
                {
                    "setting": setting.label,
                    "rate": rate,
                    "peakRssMB": run.peak_rss_mb,
                    "exit": run.exit_code,
                }
            )
    return _best(candidates, tried, RSS_LIMIT * port.peak_rss_mb, point), tried


def _best(candidates: list[Setting], tried: list[dict], rss_cap: float, point: Point) -> Setting:
    """The fastest candidate by median rate among those whose median peak RSS is within
    *rss_cap* (all of them if none is); within 2 % of it, the fewest processes."""
    med = statistics.median
    runs = {s.label: [t for t in tried if t["setting"] == s.label] for s in candidates}
    runs = {label: ts for label, ts in runs.items() if all(t["exit"] == 0 for t in ts)}
    if not runs:
        raise BenchError(f"every project setting failed while tuning {point.label}")
    rates = {label: med(t["rate"] for t in ts) for label, ts in runs.items()}
    lean = {label for label, ts in runs.items() if med(t["peakRssMB"] for t in ts) <= rss_cap}
    rates = {label: rate for label, rate in rates.items() if label in lean} or rates
    # Within 2 % (the tuning runs cannot tell that apart), the fewest processes: each costs
    # memory and a database connection. Not 5 %: one worker at 20 ms, N = 16, is ~5 % slower
    # than two, and the 5 % rule took it there in one of the two full runs made with it.
    top = max(rates.values())
    best = next(label for label, rate in rates.items() if rate >= 0.98 * top)
    return next(s for s in candidates if s.label == best)


def t0_runs(ctx: Context, points: Sequence[Point], results: Mapping[Point, list[Run]]) -> dict:
    """t0 of each engine and source: its wall time per learner at N=1 and L=0, taken from
    the N=1 point's runs, else from one calibration run."""
    t0: dict[tuple[str, str], float] = {}
    for source in sorted({p.source for p in points}):
        base = Point(source, 0, 1)
        runs = results.get(base)
        if runs is None:
            set_latency(ctx, base)
            setting = Setting(1, 1 if ctx.has_in_flight and source == "xapi" else None)
            runs = [
                checked(ctx, *measure(ctx, "project", base, setting)),
                checked(ctx, *measure(ctx, "seed", base, None)),
            ]
        for engine in ("project", "seed"):
            walls = [r.wall / r.learners for r in runs if r.engine == engine]
            t0[(engine, source)] = statistics.median(walls)
    return t0


def bound(run: Run, t0: float) -> dict[str, float]:
    """X* = min(N / (f·L + t0), cores / c) and which term binds."""
    c = (run.cpu_tree + run.upstream_cpu + run.postgres_cpu) / run.learners
    latency = run.point.latency_ms / 1000 if run.point.source == "xapi" else 0.0
    terms = {
        "concurrency": run.point.n / (run.fetches * latency + t0),
        "cpu": CORES / c,
    }
    binds = min(terms, key=terms.get)
    return {"xStar": terms[binds], "binds": binds, "c_ms": 1000 * c, "t0_ms": 1000 * t0, **terms}


def summarize(point: Point, runs: list[Run], t0: Mapping, setting: Setting, tried: list) -> dict:
    """Medians over rounds of each engine's figures, and the median per-round ratio."""
    by = {e: [r for r in runs if r.engine == e] for e in ("project", "seed")}
    ratios = [p.rate / s.rate for p, s in zip(by["project"], by["seed"], strict=True)]
    med = statistics.median
    summary: dict[str, Any] = {
        "point": point.label,
        "source": point.source,
        "latencyMs": point.latency_ms,
        "n": point.n,
        "projectSetting": setting.label,
        "tuning": tried,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }
    for engine, engine_runs in by.items():
        bounds = [bound(r, t0[(engine, point.source)]) for r in engine_runs]
        summary[engine] = {
            "rate": med([r.rate for r in engine_runs]),
            "cpuMsPerLearner": med([r.per_learner_ms(r.cpu_tree) for r in engine_runs]),
            "peakRssMB": med([r.peak_rss_mb for r in engine_runs]),
            "fetchesPerLearner": med([r.fetches for r in engine_runs]),
            "upstreamCpuMsPerLearner": med([r.per_learner_ms(r.upstream_cpu) for r in engine_runs]),
            "postgresCpuMsPerLearner": med([r.per_learner_ms(r.postgres_cpu) for r in engine_runs]),
            "dbConnections": max(r.db_connections for r in engine_runs),
            "xStar": med([b["xStar"] for b in bounds]),
            "binds": bounds[0]["binds"],
            "efficiency": med(
                [r.rate / b["xStar"] for r, b in zip(engine_runs, bounds, strict=True)]
            ),
            "bounds": bounds,
            "busyCores": med([r.busy_cores for r in engine_runs]),
            "otherCores": med([r.other_cores for r in engine_runs]),
            "load1": max(r.load1 for r in engine_runs),
            "runs": [_run_json(r) for r in engine_runs],
        }
    return summary


def _run_json(run: Run) -> dict[str, Any]:
    data = asdict(run)
    data.pop("point")
    data["rate"] = run.rate
    if run.first_request_s is not None:  # the rate once started (start-up left out)
        data["rateFromFirstRequest"] = run.learners / (run.wall - run.first_request_s)
    return data


def compare(ctx: Context, points: Sequence[Point], rounds: int, tuning: Context | None) -> dict:
    """Every point, A B A B; the reference rows must already be set."""
    results: dict[Point, list[Run]] = {}
    settings: dict[Point, tuple[Setting, list]] = {}
    for point in points:
        set_latency(ctx, point)
        if tuning is not None:
            settings[point] = tune(ctx, point, tuning)
        else:
            settings[point] = (default_setting(point, ctx.has_in_flight), [])
        runs = []
        for _ in range(rounds):
            runs.append(checked(ctx, *measure(ctx, "project", point, settings[point][0])))
            runs.append(checked(ctx, *measure(ctx, "seed", point, None)))
        results[point] = runs
        print(f"  measured {point.label}", file=sys.stderr, flush=True)
    t0 = t0_runs(ctx, points, results)
    return {
        "points": [summarize(p, results[p], t0, *settings[p]) for p in points],
        "t0Ms": {f"{e}/{s}": 1000 * v for (e, s), v in t0.items()},
        "disagreeingRuns": [
            f"{r.engine} {r.point.label}"
            for runs in results.values()
            for r in runs
            if r.disagreements
        ],
    }


# -- output -----------------------------------------------------------------------------

COLUMNS = (
    "point",
    "project setting",
    "X proj /s",
    "X seed /s",
    "ratio",
    "CPU ms/l proj",
    "CPU ms/l seed",
    "RSS MB proj",
    "RSS MB seed",
    "f proj",
    "f seed",
    "X* proj (binds)",
    "X* seed (binds)",
    "X/X* proj",
    "X/X* seed",
    "DB conns",
    "upstream ms/l",
    "load",
    "other cores",
)


def table(points: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the summaries."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for s in points:
        p, q = s["project"], s["seed"]
        cells = [
            s["point"],
            s["projectSetting"],
            f"{p['rate']:.1f}",
            f"{q['rate']:.1f}",
            f"{s['ratio']:.2f}",
            f"{p['cpuMsPerLearner']:.2f}",
            f"{q['cpuMsPerLearner']:.2f}",
            f"{p['peakRssMB']:.0f}",
            f"{q['peakRssMB']:.0f}",
            f"{p['fetchesPerLearner']:.2f}",
            f"{q['fetchesPerLearner']:.2f}",
            f"{p['xStar']:.1f} ({p['binds']})",
            f"{q['xStar']:.1f} ({q['binds']})",
            f"{p['efficiency']:.2f}",
            f"{q['efficiency']:.2f}",
            f"{p['dbConnections']} / {q['dbConnections']}",
            f"{p['upstreamCpuMsPerLearner']:.2f} / {q['upstreamCpuMsPerLearner']:.2f}",
            f"{max(p['load1'], q['load1']):.1f}",
            f"{p['otherCores']:.2f} / {q['otherCores']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- setup and main -------------------------------------------------------------------------


def warm_up(ctx: Context) -> None:
    """Compile the project's modules to bytecode, as installing a package does (an
    editable install under PYTHONDONTWRITEBYTECODE has none, so every run would compile
    them again), and build its file index (cached), so no run pays for either."""
    for package in ("ceredis", "ledger"):
        compileall.compile_dir(ROOT / package, quiet=1)
    with fresh_database("ceredis_vs_seed") as dsn, tempfile.TemporaryDirectory() as scratch:
        first = ctx.roster.read_text(encoding="utf-8").split()[0]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ceredis",
                "batch",
                "--agent",
                first,
                "--source",
                str(ctx.cohort),
                "--database",
                dsn,
                "--workers",
                "1",
                "--quiet",
                "--ledger",
                f"{scratch}/l.jsonl",
                "--report",
                f"{scratch}/r.json",
            ],
            cwd=ROOT,
            env={**os.environ, **bench_env(ctx.directory)},
            capture_output=True,
            check=False,
        )


@contextlib.contextmanager
def upstream_for(cohort_path: Path, points: Sequence[Point]) -> Iterator[Upstream | None]:
    if not any(p.source == "xapi" for p in points):
        yield None
        return
    with Upstream(cohort_path) as upstream:
        yield upstream


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 points, 200 learners, 1 round")
    parser.add_argument("--points", help="comma-separated xapi:L:N and file:N (default: all 12)")
    parser.add_argument("--rounds", type=int, help="A B rounds per point (default 2; quick 1)")
    parser.add_argument("--learners", type=int, help="cohort size (default 2000; quick 200)")
    parser.add_argument(
        "--tune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="try each project setting on a short run first (default: on, off with --quick)",
    )
    parser.add_argument("--dir", help="work directory (default $TMPDIR/ceredis-bench)")
    parser.add_argument("--json", help="output file (default benchmarks/out/vs_seed[-quick].json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        return _main(args)
    except BenchError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    points = (
        [Point.parse(t) for t in args.points.split(",")]
        if args.points
        else list(QUICK_POINTS if args.quick else FULL_POINTS)
    )
    rounds = args.rounds or (1 if args.quick else 2)
    learners = args.learners or (200 if args.quick else 2000)
    tuning = args.tune if args.tune is not None else not args.quick
    directory = work_dir(args.dir) / "vs_seed"
    directory.mkdir(parents=True, exist_ok=True)
    ensure_port_installed()
    has_in_flight = project_has_in_flight()
    cohort_path, roster = seed_cohort(directory, learners)
    started = time.time()
    with upstream_for(cohort_path, points) as upstream:
        ctx = Context(
            directory,
            cohort_path,
            roster,
            learners,
            upstream,
            has_in_flight,
            quiet_timeout=3.0 if args.quick else 10.0,
        )
        warm_up(ctx)
        check_point = next((p for p in points if p.source == "xapi"), points[0])
        check_point = Point(check_point.source, 0, 4 if check_point.source == "xapi" else 2)
        agreement = check_agreement(ctx, check_point)
        print(
            f"agreement ({agreement['point']}): {agreement['identical']}/"
            f"{agreement['learners']} learners identical in {agreement['fields']}"
        )
        if agreement["differences"]:
            print("the engines disagree; no comparison printed. First differences:")
            print("\n".join("  " + d for d in agreement["differences"]))
            return 1
        sample = None
        if tuning:
            sample_size = min(learners, TUNING_LEARNERS)
            sample = Context(
                directory,
                cohort_path,
                _head(directory, roster, sample_size),
                sample_size,
                upstream,
                has_in_flight,
                quiet_timeout=3.0,
            )
        result = compare(ctx, points, rounds, sample)
    if result["disagreeingRuns"]:
        print("these runs gave other scores or levels than the reference; no comparison printed:")
        print("\n".join("  " + r for r in result["disagreeingRuns"]))
        return 1
    report = {
        "environment": environment(),
        "cores": CORES,
        "learners": learners,
        "rounds": rounds,
        "projectHasInFlight": has_in_flight,
        "tuned": tuning,
        "agreement": agreement,
        "seconds": time.time() - started,
        **result,
    }
    out = (
        Path(args.json)
        if args.json
        else ROOT / "benchmarks" / "out" / ("vs_seed-quick.json" if args.quick else "vs_seed.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(
        f"\n{learners} learners, {rounds} round(s), {CORES} cores, project --in-flight: "
        f"{'yes' if has_in_flight else 'no (in flight = workers)'}; "
        f"t0 (ms/learner at N=1, L=0): "
        + ", ".join(f"{k} {v:.2f}" for k, v in report["t0Ms"].items())
    )
    print(table(result["points"]))
    print(f"\n{time.time() - started:.0f} s; JSON: {out}")
    return 0


def _head(directory: Path, roster: Path, n: int) -> Path:
    out = directory / f"{roster.stem}.first{n}.txt"
    ids = roster.read_text(encoding="utf-8").split()[:n]
    out.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    sys.exit(main())
