"""The batch engine: a process pool that scores a cohort into a store and a ledger.

Flow (design.md): the parent plans the learners, feeds them in chunks through a
bounded window to ``Pool.imap`` (results come back in input order), and is the single
writer of the ledger and the report. Each worker opens its own evidence source and
store connection in the pool initializer (never inherited through fork), scores a
chunk, writes it in one transaction, and returns canonical ledger records.

``Pool.imap`` blocks forever when a worker is killed (CPython gh-66587), so the parent
watches the workers' pids: when one dies, the pool is replaced, the unfinished chunks
are fed again, and the learner that was in flight is retried once, then recorded as
``ERROR``. Results are identical whatever the worker count, chunking or restarts.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

from ceredis import __version__
from ceredis.config import data_dir, load_settings
from ceredis.errors import CeredisError, ConfigError, ReplayError
from ceredis.evidence import submitted
from ceredis.record import learner_record, score_learner
from ceredis.referential import Referential, bundled_referential, parse_referential
from ceredis.report import BatchReport, ReportFile
from ceredis.scoring import error_result, evaluate
from ceredis.sources import SourceSpec, prepare_source
from ceredis.sources.files import BUNDLED_URI, bundled_roster, file_sha256
from ceredis.stores import ResultRow, RunRow, StoreSpec, prepare_store
from ledger import LedgerWriter, read_ledger
from ledger.canonical import Fragment, canonical

__all__ = ["BatchPlan", "Progress", "evaluate_agent", "plan_batch", "plan_resume", "run_batch"]

LEDGER_KIND = "ceredis-batch/1"
MAX_CHUNK = 64
CHUNK_SECONDS = 0.25  # aim for chunks of about this duration (dispatch cost ≪ work)
_POLL = 0.25  # seconds between dead-worker checks while the head of the queue waits
_FORK = mp.get_context("fork")  # workers inherit the plan; nothing is opened before fork


def evaluate_agent(
    agent_id: str, source: str | None = None, referential: Referential | None = None
) -> dict[str, Any]:
    """Fetch one learner's evidence from *source* (default: the bundled cohort) and score it."""
    referential = referential or bundled_referential()
    client = prepare_source(source).open()
    try:
        return evaluate(agent_id, client.fetch(agent_id), referential)
    finally:
        client.close()


# -- planning (parent, before any work) -------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    """Everything a run needs, checked before any work starts."""

    run_id: str
    started_at: str
    referential: Referential
    source: SourceSpec
    store: StoreSpec
    selection: dict[str, Any]
    workers: int
    ledger: Path
    report: Path
    chunksize: int | None = None
    source_rate: float | None = None
    resume: bool = False  # continue plan.ledger (written by an earlier, killed run)
    embedded: bool = False  # nothing configured: bundled cohort into the embedded SQLite

    def header(self) -> dict[str, Any]:
        """The ledger header: everything needed to replay or resume, and no secret."""
        return {
            "kind": LEDGER_KIND,
            "runId": self.run_id,
            "startedAt": self.started_at,
            "engineVersion": __version__,
            "referentialId": self.referential.id,
            "referentialHash": self.referential.hash,
            "referential": self.referential.document,
            "source": self.source.describe(),
            "store": self.store.describe(),
            "selection": self.selection,
            "workers": self.workers,
        }


def plan_batch(
    *,
    agents: Sequence[str] = (),
    agents_file: Path | None = None,
    all_agents: bool = False,
    source: str | None = None,
    database: str | None = None,
    workers: int | None = None,
    ledger: Path | None = None,
    report: Path | None = None,
    chunksize: int | None = None,
    referential: Referential | None = None,
    env: dict[str, str] | None = None,
) -> BatchPlan:
    """Resolve settings (flag > environment > config file > default) and check them all.

    With nothing configured this is the embedded default: the bundled cohort, scored
    into SQLite under the user data directory.
    """
    settings = load_settings(
        {"max_workers": workers, "source": source, "database": database}, env=env
    )
    chosen = [bool(agents), agents_file is not None, all_agents]
    if sum(chosen) > 1:
        raise ConfigError("choose the learners with one of --agent, --file or --all")
    if chunksize is not None and chunksize < 1:
        raise ConfigError(f"--chunksize must be at least 1, not {chunksize}")
    spec = prepare_source(settings.source)
    if agents:
        selection: dict[str, Any] = {"agents": [_agent_id(a, "--agent") for a in agents]}
    elif agents_file is not None:
        selection = {
            "file": str(Path(agents_file).resolve()),
            "sha256": _roster_digest(agents_file),
        }
    elif all_agents:
        selection = {"all": True}
    elif settings.source in (None, BUNDLED_URI):
        roster = bundled_roster()
        selection = {"file": str(roster), "sha256": file_sha256(roster), "bundled": True}
    else:
        raise ConfigError(
            "no learners chosen: give --agent ID (repeatable), --file agents.txt or --all"
        )
    home = data_dir()
    store_url = settings.database or f"sqlite:///{home / 'ceredis.sqlite'}"
    store = prepare_store(store_url)
    run_id = str(uuid.uuid4())
    ledger_dir = settings.ledger_dir or home / "ledgers"
    ledger_path = Path(ledger) if ledger else ledger_dir / f"{run_id}.jsonl"
    if ledger_path.exists():
        raise ConfigError(f"ledger {ledger_path} already exists; use --resume to continue it")
    return BatchPlan(
        run_id=run_id,
        started_at=_now(),
        referential=referential or bundled_referential(),
        source=spec,
        store=store,
        selection=selection,
        workers=settings.max_workers,
        ledger=ledger_path,
        report=Path(report) if report else ledger_path.with_suffix(".report.json"),
        chunksize=chunksize,
        source_rate=settings.source_rate,
        embedded=settings.source is None and settings.database is None,
    )


def plan_resume(
    ledger: Path,
    *,
    database: str | None = None,
    workers: int | None = None,
    report: Path | None = None,
    env: dict[str, str] | None = None,
) -> BatchPlan:
    """A plan that finishes the run recorded in an unfinished ledger (``--resume``).

    The run id, referential, source and learner selection come from the ledger header;
    the learners already recorded are checked against the selection and skipped.
    """
    ledger = Path(ledger)
    with closing(read_ledger(ledger)) as records:
        header = _ledger_header(records, ledger)
    settings = load_settings({"max_workers": workers, "database": database}, env=env)
    referential = parse_referential(header["referential"], f"{ledger} header")
    source = header["source"]
    spec = prepare_source(source["uri"])
    if spec.sha256 != source.get("sha256"):
        raise ConfigError(
            f"the evidence file {source['uri']} changed since the run started (sha256 "
            f"{spec.sha256[:12]}… instead of {source.get('sha256', '?')[:12]}…); resuming "
            "would mix two versions of the evidence"
        )
    selection = header["selection"]
    if "file" in selection and _roster_digest(Path(selection["file"])) != selection["sha256"]:
        raise ConfigError(f"the learner list {selection['file']} changed since the run started")
    store_url = settings.database or header["store"]["url"]
    if "***" in store_url:
        raise ConfigError(
            "the run's database URL holds a password, which the ledger does not keep: "
            "give it again with --database or CEREDIS_DATABASE_URL"
        )
    return BatchPlan(
        run_id=header["runId"],
        started_at=header["startedAt"],
        referential=referential,
        source=spec,
        store=prepare_store(store_url),
        selection=selection,
        workers=settings.max_workers,
        ledger=ledger,
        report=Path(report) if report else ledger.with_suffix(".report.json"),
        source_rate=settings.source_rate,
        resume=True,
    )


def _ledger_header(records: Iterable[Any], path: Path) -> dict[str, Any]:
    for record in records:
        header = record.body.get("meta") if record.kind == "header" else None
        if header is None or header.get("kind") != LEDGER_KIND:
            raise ReplayError(f"{path} is not a CEREDIS batch ledger (no {LEDGER_KIND} header)")
        return header
    raise ReplayError(f"{path} is empty: nothing to resume")


def _agent_id(text: str, where: str) -> str:
    agent = text.strip()
    if not agent:
        raise ConfigError(f"{where}: an empty learner id")
    return agent


def _roster_digest(path: Path) -> str:
    try:
        return file_sha256(Path(path))
    except CeredisError:
        raise ConfigError(f"cannot read the learner list {path}") from None


def iter_selection(
    selection: dict[str, Any], source: SourceSpec, limiter: Any = None
) -> Iterator[str]:
    """The learner ids of a run, in their deterministic order, streamed."""
    if "agents" in selection:
        yield from selection["agents"]
    elif "file" in selection:
        with open(selection["file"], encoding="utf-8-sig") as lines:
            for line in lines:
                agent = line.strip()
                if agent and not agent.startswith("#"):
                    yield agent
    else:
        client = source.open(limiter=limiter)
        try:
            yield from client.agents()
        finally:
            client.close()


def count_selection(selection: dict[str, Any], source: SourceSpec) -> int | None:
    """How many learners a run has, when it is cheap to know (for the progress bar)."""
    if "agents" in selection:
        return len(selection["agents"])
    if "file" in selection:
        return sum(1 for _ in iter_selection(selection, source))
    return None


# -- workers ------------------------------------------------------------------------------


class Task(NamedTuple):
    """One learner to score: its position in the run, and how often a worker died on it."""

    index: int
    agent_id: str
    deaths: int = 0


class Outcome(NamedTuple):
    """One scored learner, as a worker returns it to the parent."""

    index: int
    agent_id: str
    status: str
    score: Decimal | None
    level: str | None
    record: bytes  # canonical ledger record body
    worker: int
    duration_ms: float
    error: str | None


@dataclass(frozen=True)
class WorkerContext:
    """What every worker receives once, through the pool initializer."""

    run_id: str
    run_started_at: str
    referential: Referential
    source: SourceSpec
    store: StoreSpec
    slots: Any  # shared array: (pid, learner index) per worker slot
    slot_counter: Any
    parent_pid: int
    limiter: Any = None


class _Worker:
    """Per-process state: the source client and store connection, opened after fork."""

    def __init__(self, context: WorkerContext) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
        _die_with_parent(context.parent_pid)
        self.context = context
        self.pid = os.getpid()
        with context.slot_counter.get_lock():
            self.slot = context.slot_counter.value % (len(context.slots) // 2)
            context.slot_counter.value += 1
        context.slots[2 * self.slot] = self.pid
        context.slots[2 * self.slot + 1] = -1
        self.source: Any = None
        self.store: Any = None
        self.source_error = self.store_error = None
        self._connect()

    def _connect(self) -> None:
        if self.source is None:
            try:
                self.source = self.context.source.open(limiter=self.context.limiter)
            except CeredisError as exc:
                self.source_error = f"evidence source unavailable in this worker: {exc}"
        if self.store is None:
            try:
                self.store = self.context.store.open()
            except CeredisError as exc:
                self.store_error = f"result store unavailable in this worker: {exc}"

    def run(self, chunk: Sequence[Task]) -> list[Outcome]:
        self._connect()
        slots = self.context.slots
        scored = []
        for task in chunk:
            slots[2 * self.slot + 1] = task.index
            started = time.perf_counter()
            result, inputs = self._score(task)
            scored.append((task, result, inputs, (time.perf_counter() - started) * 1000))
        outcomes = self._store(scored)
        slots[2 * self.slot + 1] = -1
        return outcomes

    def _score(self, task: Task) -> tuple[dict[str, Any], dict[str, Any] | None]:
        referential = self.context.referential
        if task.deaths >= 2:
            message = "worker process died while scoring this learner (twice); not retried"
            return error_result(task.agent_id, referential, message), None
        if self.source is None:
            return error_result(task.agent_id, referential, self.source_error), None
        try:
            records = [submitted(r) for r in self.source.fetch(task.agent_id)]
        except CeredisError as exc:
            return error_result(task.agent_id, referential, f"evidence source: {exc}"), None
        try:
            return score_learner(task.agent_id, records, referential, engine_version=__version__)
        except Exception as exc:  # a bug for one learner must not stop the batch: record it
            message = f"internal error while scoring: {type(exc).__name__}: {exc}"
            return error_result(task.agent_id, referential, message), None

    def _store(self, scored: list[tuple[Task, dict, dict | None, float]]) -> list[Outcome]:
        """Write the chunk in one transaction; a learner the store refuses becomes ERROR."""
        encoded = {
            task.index: _encode(self.context.run_id, task, result, inputs)
            for task, result, inputs, _ in scored
        }
        started = time.perf_counter()
        rows = [row for _, row in encoded.values()]
        if self.store is None:
            errors = {row.agent_id: self.store_error for row in rows}
        else:
            errors = self.store.write_results(rows, self.context.run_started_at)
        write_ms = (time.perf_counter() - started) * 1000 / len(scored)
        outcomes = []
        for task, result, _inputs, duration in scored:
            record = encoded[task.index][0]
            if task.agent_id in errors:
                message = f"result store: {errors[task.agent_id]}"
                result = error_result(task.agent_id, self.context.referential, message)
                record = _encode(self.context.run_id, task, result, None)[0]
            outcomes.append(
                Outcome(
                    task.index,
                    task.agent_id,
                    result["status"],
                    result["ceredisScore"],
                    result["cecrlLevel"],
                    record,
                    self.pid,
                    duration + write_ms,
                    result.get("error"),
                )
            )
        return outcomes


_worker: _Worker | None = None


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker if the parent dies (a killed batch leaves no orphans)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: orphans exit when their queue closes
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _init_worker(context: WorkerContext) -> None:
    global _worker
    _worker = _Worker(context)


def _score_chunk(chunk: Sequence[Task]) -> list[Outcome]:
    assert _worker is not None, "the pool initializer did not run"
    return _worker.run(chunk)


def _encode(
    run_id: str, task: Task, result: dict[str, Any], inputs: dict[str, Any] | None
) -> tuple[bytes, ResultRow]:
    """The learner's ledger record (canonical bytes) and database row, each part encoded
    once: the row's JSON columns are the very bytes embedded in the record."""
    ok = result["status"] == "OK"
    domains = Fragment(canonical(result["domainScores"])) if ok else None
    competencies = Fragment(canonical(result["competencies"])) if ok else None
    encoded = Fragment(
        canonical({**result, "domainScores": domains, "competencies": competencies})
        if ok
        else canonical(result)
    )
    record = canonical({**learner_record(task.agent_id, result, inputs), "result": encoded})
    row = ResultRow(
        run_id=run_id,
        agent_id=task.agent_id,
        position=task.index,
        status=result["status"],
        ceredis_score=result["ceredisScore"],
        band_level=result["bandLevel"],
        cecrl_level=result["cecrlLevel"],
        domain_scores=domains.decode() if domains is not None else None,
        competencies=competencies.decode() if competencies is not None else None,
        result=encoded.decode(),
        error=result.get("error"),
        content_hash=hashlib.sha256(record).hexdigest(),
    )
    return record, row


# -- the parent ---------------------------------------------------------------------------


class Progress:
    """Progress callbacks for a batch; this base class does nothing (library use)."""

    def start(self, plan: BatchPlan, total: int | None, done: int) -> None: ...

    def advance(self, outcome: Outcome) -> None: ...

    def stop(self) -> None: ...


@dataclass
class _Feeder:
    """Feeds chunks to ``imap`` through a bounded window, and remembers unconsumed ones.

    ``imap`` drains its input eagerly in a background thread; the semaphore makes that
    thread wait, so memory stays O(window) whatever the cohort size.
    """

    pending: deque[list[Task]]
    tasks: Iterator[Task]
    window: int
    fixed_chunk: int | None
    seconds_per_learner: float = 0.0
    inflight: deque[list[Task]] = field(default_factory=deque)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(self.window)
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[list[Task]]:
        while True:
            chunk = self.pending.popleft() if self.pending else self._next_chunk()
            if not chunk:
                return
            while not self._slots.acquire(timeout=0.1):
                if self.stop.is_set():
                    self.pending.appendleft(chunk)
                    return
            if self.stop.is_set():
                self.pending.appendleft(chunk)
                return
            with self._lock:
                self.inflight.append(chunk)
            yield chunk

    def _next_chunk(self) -> list[Task]:
        size = self.fixed_chunk or self._auto_size()
        chunk = []
        for task in self.tasks:
            chunk.append(task)
            if len(chunk) >= size:
                break
        return chunk

    def _auto_size(self) -> int:
        if self.seconds_per_learner <= 0:
            return 4
        return max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / self.seconds_per_learner)))

    def consumed(self) -> list[Task]:
        with self._lock:
            chunk = self.inflight.popleft()
        self._slots.release()
        return chunk

    def leftover(self) -> deque[list[Task]]:
        """Chunks not yet consumed, in order (call once the pool has stopped)."""
        return deque([*self.inflight, *self.pending])


class _WorkerDied(Exception):
    def __init__(self, indexes: list[int]) -> None:
        super().__init__(f"worker died while scoring {indexes}")
        self.indexes = indexes


def run_batch(
    plan: BatchPlan,
    progress: Progress | None = None,
    *,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> BatchReport:
    """Run a planned batch to the end; return its report (see BatchReport.return_code)."""
    progress = progress or Progress()
    started = time.monotonic()
    store = plan.store.open()
    try:
        store.start_run(_run_row(plan))
    finally:
        store.close()  # the parent holds no connection while workers run

    if plan.resume:
        writer = LedgerWriter.open(plan.ledger, repair=True)
        done = writer.count
    else:
        plan.ledger.parent.mkdir(parents=True, exist_ok=True)
        writer = LedgerWriter.create(plan.ledger, plan.header())
        done = 0
    report = BatchReport(
        concurrency=plan.workers,
        started_at=plan.started_at,
        ledger=plan.ledger,
        report=plan.report,
        run_id=plan.run_id,
    )
    report_file = ReportFile(plan.report)
    finished = False
    try:
        limiter = _limiter(plan)
        tasks = _tasks(plan, report, report_file, done, limiter)
        progress.start(plan, count_selection(plan.selection, plan.source), done)
        for outcome in _pooled(plan, tasks, limiter):
            # Workers encode records with ledger.canonical: the serial parent need not
            # re-parse them (verify checks every line's canonical form anyway).
            writer.append_canonical(outcome.record, check=False)
            report.add(outcome.status)
            report_file.detail(
                outcome.agent_id,
                outcome.status,
                outcome.score,
                outcome.level,
                outcome.worker,
                outcome.duration_ms,
                outcome.error,
            )
            progress.advance(outcome)
            if on_outcome:
                on_outcome(outcome)
        report.finished_at = _now()
        footer = writer.finish(
            {
                "finishedAt": report.finished_at,
                "counts": {
                    "total": report.total,
                    "ok": report.ok,
                    "skipped": report.skipped,
                    "failed": report.failed,
                },
            }
        )
        report.results_root = footer["ledger"]["resultsRoot"]
        finished = True
    finally:
        progress.stop()
        if not finished:
            writer.close()
            report_file.abandon()
    report.elapsed = time.monotonic() - started
    report_file.finish(report)
    store = plan.store.open()
    try:
        store.finish_run(
            replace(
                _run_row(plan),
                finished_at=report.finished_at,
                total=report.total,
                ok=report.ok,
                skipped=report.skipped,
                failed=report.failed,
                results_root=report.results_root,
            )
        )
    finally:
        store.close()
    return report


def _tasks(
    plan: BatchPlan, report: BatchReport, report_file: ReportFile, done: int, limiter: Any
) -> Iterator[Task]:
    """The run's tasks after the *done* already in the ledger, which are checked (now,
    before any work) to be the run's first learners and counted into the report."""
    ids = iter_selection(plan.selection, plan.source, limiter)
    if done:
        recorded = (r for r in read_ledger(plan.ledger) if r.kind == "record")
        for index, record in enumerate(recorded):
            agent = next(ids, None)
            if record.body["agentId"] != agent:
                raise ReplayError(
                    f"{plan.ledger}: record {index} is learner {record.body['agentId']!r} but "
                    f"the run's learner list has {agent!r} there; cannot resume"
                )
            result = record.body["result"]
            report.add(result["status"])
            report_file.detail(
                agent,
                result["status"],
                result["ceredisScore"],
                result["cecrlLevel"],
                None,
                None,
                result.get("error"),
            )
    return (Task(index, agent) for index, agent in enumerate(ids, start=done))


def _pooled(plan: BatchPlan, tasks: Iterator[Task], limiter: Any) -> Iterator[Outcome]:
    """Score *tasks* on a pool, in order, surviving killed workers."""
    ctx = _FORK
    pending: deque[list[Task]] = deque()
    deaths: dict[int, int] = {}
    seconds = 0.0
    while True:
        slots = ctx.Array("q", 2 * (2 * plan.workers + 8), lock=False)
        context = WorkerContext(
            plan.run_id,
            plan.started_at,
            plan.referential,
            plan.source,
            plan.store,
            slots,
            ctx.Value("i", 0),
            os.getpid(),
            limiter,
        )
        feeder = _Feeder(pending, tasks, 2 * plan.workers + 2, plan.chunksize, seconds)
        pool = ctx.Pool(plan.workers, initializer=_init_worker, initargs=(context,))
        try:
            results = pool.imap(_score_chunk, feeder, chunksize=1)
            while True:
                try:
                    chunk = results.next(timeout=_POLL)
                except StopIteration:
                    return
                except mp.TimeoutError:
                    dead = _dead_slots(slots)
                    if dead is not None:
                        raise _WorkerDied(dead) from None
                    continue
                feeder.consumed()
                yield from chunk
                feeder.seconds_per_learner = seconds = _mean_time(chunk, seconds)
        except _WorkerDied as died:
            for index in died.indexes:
                deaths[index] = deaths.get(index, 0) + 1
        finally:
            feeder.stop.set()
            _shutdown(pool)
        pending = deque(
            [[t._replace(deaths=deaths.get(t.index, 0)) for t in c] for c in feeder.leftover()]
        )


def _limiter(plan: BatchPlan) -> Any:
    """One request-rate limit shared by every process of a remote-source batch."""
    if plan.source.kind == "file":
        return None
    from ceredis.sources.ratelimit import RateLimiter

    limiter = RateLimiter.from_env(context=_FORK)  # default rate, CEREDIS_SOURCE_BURST
    if plan.source_rate is not None:
        limiter = RateLimiter(plan.source_rate, burst=limiter.burst, context=_FORK)
    return limiter


def _dead_slots(slots: Any) -> list[int] | None:
    """Learner indexes held by dead workers ([] if a dead worker held none), else None."""
    dead = None
    for i in range(0, len(slots), 2):
        pid, index = slots[i], slots[i + 1]
        if pid and not _alive(pid):
            dead = dead or []
            if index >= 0:
                dead.append(index)
            slots[i] = 0  # count each death once
    return dead


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except OSError:  # not Linux: fall back to a signal probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _shutdown(pool: Any) -> None:
    """Terminate a pool without risking the known terminate() hang (gh-78178)."""
    workers = list(getattr(pool, "_pool", []))
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(10)
    if stopper.is_alive():
        for process in workers:
            if process.is_alive():
                process.kill()
        stopper.join(5)


def _mean_time(chunk: Sequence[Outcome], previous: float) -> float:
    if not chunk:
        return previous
    current = sum(o.duration_ms for o in chunk) / len(chunk) / 1000
    return current if previous == 0 else 0.7 * previous + 0.3 * current


def _run_row(plan: BatchPlan) -> RunRow:
    return RunRow(
        run_id=plan.run_id,
        started_at=plan.started_at,
        engine_version=__version__,
        referential_version=plan.referential.id,
        referential_hash=plan.referential.hash,
        workers=plan.workers,
        ledger_path=str(plan.ledger),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
