"""The worker pool: ``Pool.imap`` over chunks of learners, fed through a bounded window,
that survives killed workers.

Each worker opens its own evidence source and result store in the pool initializer
(never inherited through fork), scores a chunk, writes it in transactions of a few
learners (on a writer thread, each while the next learners are scored) and returns
canonical ledger records; results come back in input order. ``Pool.imap`` blocks forever
when a worker is killed (CPython gh-66587), so the parent watches the workers' pids:
when one dies, the pool is replaced, the unfinished chunks are fed again, and the learner
that was in flight is retried once, then recorded as ``ERROR``.

With a remote source each worker also keeps a few fetch threads: they fetch the evidence
of the chunk's next learners while the current one is scored, so a few processes keep
many requests in flight. The batch-wide bound on requests in flight is the shared
limiter's semaphore (``--in-flight``), held around every request; a file source is read
inline, without threads. Once a chunk's last fetch has started, the worker takes its
next chunk from the pool's queue if one waits there (``ceredis.readahead``) and starts
fetching it, so its fetch threads do not idle through the chunk's end. A worker death is
charged to the learner at the head of its chunk (the one being scored or waited for), as
without prefetching; the chunk it took early is fed again with the other unfinished ones.

An outage of the database or the evidence source (``ceredis.outage``) is waited out
where it happens, in the worker: it keeps its chunk, reconnects and retries with capped,
jittered exponential backoff, so no learner becomes ``ERROR`` for it and the parent's
input order is untouched. The worker publishes "waiting since" in a shared array for the
parent's progress line; past the outage budget it raises :class:`OutageError` for the
chunk, and the parent stops the batch with the ledger incomplete and resumable.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple, TypeVar

from ceredis import __version__
from ceredis.errors import CeredisError, OutageError, SourceUnavailable, StoreUnavailable
from ceredis.outage import Patience
from ceredis.outcome import Outcome
from ceredis.plan import BatchPlan
from ceredis.readahead import ReadAheadPool, take_next
from ceredis.record import EncodedRecord, encode_record, score_delivered
from ceredis.referential import Referential
from ceredis.scoring import error_result
from ceredis.sources import SourceSpec
from ceredis.sources.ratelimit import RateLimiter
from ceredis.stores import ResultRow, StoreSpec

__all__ = ["Task", "scored"]

MAX_CHUNK = 64
WRITE_PART = 16  # learners per transaction: a part is written while the next is scored
CHUNK_SECONDS = 0.25  # aim for chunks of about this duration (dispatch cost ≪ work)
REFILLS_PER_CHUNK = 10  # and at least this many times a chunk's head's wait (see _Pace)
_POLL = 0.25  # seconds between dead-worker checks while the head of the queue waits
_FORK = mp.get_context("fork")  # workers inherit the plan; nothing is opened before fork
_WAITING_FOR = {1: "the database", 2: "the evidence source"}  # codes in WorkerContext.waits
_T = TypeVar("_T")


class Task(NamedTuple):
    """One learner to score: its position in the run, and how often a worker died on it."""

    index: int
    agent_id: str
    deaths: int = 0


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
    waits: Any = None  # shared array: (what code, monotonic start) of each slot's outage
    outage_budget: float = 120.0
    fetch_threads: int = 0  # threads prefetching a chunk's evidence (0: fetch inline)
    cpus: tuple[int, ...] = ()  # worker n runs on cpus[n % len(cpus)] (empty: not pinned)


class _Worker:
    """Per-process state: the source client and store connection, opened after fork."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.pid = os.getpid()
        self.slot = 0
        if context.slot_counter is not None:  # None: one worker, no shared slots (Dask)
            with context.slot_counter.get_lock():
                self.slot = context.slot_counter.value % (len(context.slots) // 2)
                context.slot_counter.value += 1
        context.slots[2 * self.slot] = self.pid
        context.slots[2 * self.slot + 1] = -1
        if context.cpus:
            _pin(context.cpus[self.slot % len(context.cpus)])
        self.source: Any = None
        self.store: Any = None
        self.source_error = self.store_error = None
        self._random = random.Random()
        self._fetcher: ThreadPoolExecutor | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._early: dict[int, Future] = {}  # the next chunk's fetches, started early
        with contextlib.suppress(SourceUnavailable, StoreUnavailable):
            self._connect()  # an outage at start: run() waits for it

    def _connect(self) -> None:
        """Open what is not open; an outage raises (to be waited out), other errors are
        recorded for the learners."""
        if self.source is None:
            try:
                self.source = self.context.source.open(limiter=self.context.limiter)
            except SourceUnavailable:
                raise
            except CeredisError as exc:
                self.source_error = f"evidence source unavailable in this worker: {exc}"
        if self.store is None:
            try:
                self.store = self.context.store.open()
            except StoreUnavailable:
                raise
            except CeredisError as exc:
                self.store_error = f"result store unavailable in this worker: {exc}"

    def run(self, chunk: Sequence[Task]) -> list[Outcome]:
        """Score *chunk* in order and write it in transactions of a few learners: its
        outcomes, in order, once every part is written.

        A part is written on the writer thread while the next part is scored, so the
        database's commit overlaps the work instead of adding to it (a write is
        idempotent: a part written before a worker died is found identical on the retry).
        A learner's time is what this thread spent on it (waiting for its evidence,
        scoring), so with prefetching the times add up to the chunk's wall time.
        """
        self._patiently(self._connect)
        slots = self.context.slots
        fetching = self._prefetch(chunk)
        last = next(reversed(fetching.values()), None)
        writes: list[Future[list[Outcome]]] = []
        try:
            for start in range(0, len(chunk), WRITE_PART):
                scored = []
                for task in chunk[start : start + WRITE_PART]:
                    if last is not None and (last.running() or last.done()):
                        last = None if self._read_ahead() else last
                    slots[2 * self.slot + 1] = task.index
                    began = time.perf_counter()
                    result, inputs = self._patiently(
                        lambda task=task: self._score(task, fetching.pop(task.index, None))
                    )
                    encoded = encode_record(task.agent_id, result, inputs)
                    scored.append((task, result, encoded, (time.perf_counter() - began) * 1000))
                writes.append(self._writing().submit(self._patiently, partial(self._store, scored)))
        finally:
            for pending in fetching.values():  # an outage stopped the chunk: drop the rest
                pending.cancel()
        outcomes = [outcome for write in writes for outcome in write.result()]
        slots[2 * self.slot + 1] = -1
        return outcomes

    def close(self) -> None:
        """Stop the fetch and write threads, close the source and the store (teardown:
        what is already broken is left as it is)."""
        for threads in (self._fetcher, self._writer):
            if threads is not None:
                threads.shutdown(wait=False, cancel_futures=True)
        for part in (self.source, self.store):
            with contextlib.suppress(Exception):
                if part is not None:
                    part.close()

    def _writing(self) -> ThreadPoolExecutor:
        """The thread that writes each part of a chunk, in order."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="ceredis-write")
        return self._writer

    def _read_ahead(self) -> bool:
        """Take this worker's next chunk from the pool's queue, if one waits there, and
        start fetching it: this chunk's fetches have all started, and the fetch threads
        would otherwise idle until this chunk's end. False if nothing was taken."""
        call = take_next()
        if call is None:
            return False
        function, args = call
        if function is _score_chunk:
            self._early = self._prefetch(args[0])
        return True

    def _prefetch(self, chunk: Sequence[Task]) -> dict[int, Future]:
        """Start fetching the chunk's evidence on the fetch threads, in order (remote
        sources only; a learner whose worker died twice is not fetched again), unless
        :meth:`_read_ahead` started it."""
        early, self._early = self._early, {}
        if early:
            return early
        threads = self.context.fetch_threads
        if threads == 0 or self.source is None:
            return {}
        if self._fetcher is None:
            self._fetcher = ThreadPoolExecutor(threads, thread_name_prefix="ceredis-fetch")
        fetch = self.source.fetch
        return {t.index: self._fetcher.submit(fetch, t.agent_id) for t in chunk if t.deaths < 2}

    def _patiently(self, call: Callable[[], _T]) -> _T:
        """*call*, retried through a store or source outage until the outage budget."""
        patience = Patience(self.context.outage_budget)
        while True:
            try:
                value = call()
            except (StoreUnavailable, SourceUnavailable) as exc:
                now = time.monotonic()
                delay = patience.delay(now, self._random.random())
                what = 1 if isinstance(exc, StoreUnavailable) else 2
                if delay is None:
                    self._publish(0, 0.0)
                    raise OutageError(
                        f"{_WAITING_FOR[what]} was unavailable for {patience.waited(now):.0f} s, "
                        f"beyond the outage budget of {patience.budget:g} s "
                        f"(CEREDIS_OUTAGE_BUDGET): {exc}"
                    ) from None
                self._publish(what, patience.since or now)
                time.sleep(delay)
                continue
            if patience.since is not None:
                self._publish(0, 0.0)
            return value

    def _publish(self, what: int, since: float) -> None:
        """Tell the parent this worker waits for *what* since *since* (0: it does not)."""
        waits = self.context.waits
        if waits is not None:
            waits[2 * self.slot], waits[2 * self.slot + 1] = what, since

    def _score(self, task: Task, fetching: Future | None = None) -> tuple[dict[str, Any], Any]:
        """The learner's result and ledger inputs (a dict, canonical bytes, or ``None``);
        *fetching* is its prefetched evidence, if any (a retry after an outage fetches
        again, inline)."""
        referential = self.context.referential
        if task.deaths >= 2:
            message = "worker process died while scoring this learner (twice); not retried"
            return error_result(task.agent_id, referential, message), None
        if self.source is None:
            return error_result(task.agent_id, referential, self.source_error), None
        try:
            if fetching is not None:
                records = fetching.result()
            else:
                records = self.source.fetch(task.agent_id)
        except SourceUnavailable:
            raise  # an outage, not this learner's evidence: waited out by run()
        except CeredisError as exc:
            return error_result(task.agent_id, referential, f"evidence source: {exc}"), None
        except Exception as exc:  # a bug for one learner must not stop the batch: record it
            message = f"internal error in the evidence source: {type(exc).__name__}: {exc}"
            return error_result(task.agent_id, referential, message), None
        try:
            return score_delivered(task.agent_id, records, referential, engine_version=__version__)
        except Exception as exc:  # a bug for one learner must not stop the batch: record it
            message = f"internal error while scoring: {type(exc).__name__}: {exc}"
            return error_result(task.agent_id, referential, message), None

    def _store(self, scored: list[tuple[Task, dict, EncodedRecord, float]]) -> list[Outcome]:
        """Write a part of a chunk in one transaction; a learner the store refuses
        becomes ERROR."""
        run_id = self.context.run_id
        started = time.perf_counter()
        rows = [_row(run_id, task, result, encoded) for task, result, encoded, _ in scored]
        if self.store is None:
            errors = {row.agent_id: self.store_error for row in rows}
        else:
            try:
                errors = self.store.write_results(rows, self.context.run_started_at)
            except StoreUnavailable:
                raise  # the database is down, not these learners' rows: waited out by run()
            except Exception as exc:  # recorded for each learner of the chunk, not raised
                message = f"internal error in the result store: {type(exc).__name__}: {exc}"
                errors = {row.agent_id: message for row in rows}
        write_ms = (time.perf_counter() - started) * 1000 / len(scored)
        outcomes = []
        for task, result, encoded, duration in scored:
            record = encoded.record
            if task.agent_id in errors:
                message = f"result store: {errors[task.agent_id]}"
                result = error_result(task.agent_id, self.context.referential, message)
                record = encode_record(task.agent_id, result, None).record
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
                    result["bandLevel"],
                    result["domainScores"],
                )
            )
        return outcomes


_worker: _Worker | None = None


def _die_with_parent(libc: Any, parent: int) -> None:
    """Ask Linux to kill this worker if the parent dies (a killed batch leaves no orphans)."""
    try:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except AttributeError:  # not Linux: orphans exit when their queue closes
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _one_malloc_arena(libc: Any) -> None:
    """Keep the worker's threads on one malloc arena (glibc gives each thread its own):
    under the GIL more arenas buy no speed, and each holds memory of its own."""
    with contextlib.suppress(AttributeError):  # not glibc
        libc.mallopt(-8, 1)  # M_ARENA_MAX


def _init_worker(context: WorkerContext) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    with contextlib.suppress(OSError):  # no C library to load: neither tweak applies
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _die_with_parent(libc, context.parent_pid)
        _one_malloc_arena(libc)
    _worker = _Worker(context)
    gc.freeze()  # what it inherited and opened lives as long as it: out of every collection


def _score_chunk(chunk: Sequence[Task]) -> list[Outcome]:
    assert _worker is not None, "the pool initializer did not run"
    return _worker.run(chunk)


def _row(run_id: str, task: Task, result: dict[str, Any], encoded: EncodedRecord) -> ResultRow:
    """The result store's row of one learner."""
    return ResultRow(
        run_id=run_id,
        agent_id=task.agent_id,
        position=task.index,
        status=result["status"],
        ceredis_score=result["ceredisScore"],
        band_level=result["bandLevel"],
        cecrl_level=result["cecrlLevel"],
        domain_scores=encoded.domain_scores,
        competencies=encoded.competencies,
        result=encoded.result,
        error=result.get("error"),
        content_hash=encoded.content_hash,
    )


@dataclass
class _Pace:
    """How long a learner takes in a worker, and how long a chunk's first learner waits,
    both smoothed over chunks; they size the automatic chunks.

    With prefetching, a worker that finds no chunk waiting when it reads ahead starts
    fetching its next chunk only when it receives it, so that chunk's first learner
    waits a whole fetch (the refill) while the fetch threads stood idle. A chunk of at
    least ``REFILLS_PER_CHUNK`` refills keeps that gap under a tenth; otherwise chunks
    last about ``CHUNK_SECONDS``.
    """

    per_learner: float = 0.0
    refill: float = 0.0

    def observe(self, chunk: Sequence[Outcome]) -> None:
        if not chunk:
            return
        mean = sum(o.duration_ms for o in chunk) / len(chunk) / 1000
        self.per_learner = _smoothed(self.per_learner, mean)
        self.refill = _smoothed(self.refill, chunk[0].duration_ms / 1000)

    def chunk_size(self, least: int) -> int:
        """Learners in the next automatic chunk, between *least* and ``MAX_CHUNK``."""
        if self.per_learner <= 0:
            return max(4, least)
        seconds = max(CHUNK_SECONDS, REFILLS_PER_CHUNK * self.refill)
        return max(least, min(MAX_CHUNK, int(seconds / self.per_learner)))


def _smoothed(previous: float, current: float) -> float:
    return current if previous == 0 else 0.7 * previous + 0.3 * current


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
    pace: _Pace
    least: int = 1  # the automatic size's floor: enough learners to keep the fetches busy
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
        size = self.fixed_chunk or self.pace.chunk_size(self.least)
        chunk = []
        for task in self.tasks:
            chunk.append(task)
            if len(chunk) >= size:
                break
        return chunk

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


def scored(
    plan: BatchPlan,
    tasks: Iterator[Task],
    limiter: RateLimiter | None,
    waiting: Callable[[str, float], None] | None = None,
) -> Iterator[Outcome]:
    """Score *tasks* on a pool, in order, surviving killed workers and waiting out outages
    (``waiting(what, seconds)`` is told while one lasts); raise OutageError past the budget."""
    ctx = _FORK
    pending: deque[list[Task]] = deque()
    deaths: dict[int, int] = {}
    pace = _Pace()
    threads, least = _prefetching(limiter, plan.workers)
    while True:
        if limiter is not None:
            limiter.renew_gate()  # a killed worker took the in-flight slots it held
        slots = ctx.Array("q", 2 * (2 * plan.workers + 8), lock=False)
        waits = ctx.Array("d", len(slots), lock=False)
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
            waits,
            plan.outage_budget,
            threads,
            _cpus() if plan.pin_workers else (),
        )
        window = 2 * plan.workers + 2
        feeder = _Feeder(pending, tasks, window, plan.chunksize, pace, least)
        pool = _QuietPool(plan.workers, _init_worker, (context,), context=ctx)
        try:
            results = pool.imap(_score_chunk, feeder, chunksize=1)
            while True:
                try:
                    chunk = results.next(timeout=_POLL)
                except StopIteration:
                    _close(pool)
                    return
                except mp.TimeoutError:
                    dead = _dead_slots(slots)
                    if dead is not None:
                        raise _WorkerDied(dead) from None
                    _tell_waiting(waits, waiting)
                    continue
                feeder.consumed()
                yield from chunk
                pace.observe(chunk)
        except _WorkerDied as died:
            for index in died.indexes:
                deaths[index] = deaths.get(index, 0) + 1
        finally:
            feeder.stop.set()
            _shutdown(pool)
        pending = deque(
            [[t._replace(deaths=deaths.get(t.index, 0)) for t in c] for c in feeder.leftover()]
        )


class _QuietPool(ReadAheadPool):
    """A pool whose worker-handler thread wakes when a worker exits or the pool changes.

    CPython's handler also wakes whenever a result waits to be read, so it spins for as
    long as a chunk's result (~1 MB) takes to read: a third of the parent's CPU.
    """

    def _get_sentinels(self) -> list[Any]:
        return [self._change_notifier._reader]


def _prefetching(limiter: RateLimiter | None, workers: int) -> tuple[int, int]:
    """Fetch threads per worker: its share of the requests in flight (a thread beyond it
    would wait for a slot another worker holds, and compete for the CPU and the GIL); and
    the automatic chunk size's floor: twice that share, so its threads stay busy."""
    bound = limiter.in_flight if limiter is not None else None
    if not bound:
        return 0, 1  # a file source: read inline, no threads
    share = -(-bound // workers)
    return min(share, MAX_CHUNK), min(MAX_CHUNK, 2 * share)


def _cpus() -> tuple[int, ...]:
    """The CPUs this process may run on, to pin workers to in turn (none where the
    system cannot pin)."""
    if not hasattr(os, "sched_setaffinity"):
        return ()
    return tuple(sorted(os.sched_getaffinity(0)))


def _pin(cpu: int) -> None:
    """Run this worker on *cpu* only. Its threads (scoring, fetching, writing) take the
    GIL in turn: on one core each handover finds its caches warm, where across two it
    costs ~10 % of the worker's CPU (docs/benchmarks.md). A hint: a CPU taken away since
    (a changed cpuset) leaves the worker where the system puts it."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})


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


def _tell_waiting(waits: Any, waiting: Callable[[str, float], None] | None) -> None:
    """Tell *waiting* about the longest outage a worker is waiting out, if any."""
    longest = None
    for i in range(0, len(waits), 2):
        what, since = int(waits[i]), waits[i + 1]
        if what and (longest is None or since < longest[1]):
            longest = (what, since)
    if longest is not None and waiting is not None:
        waiting(_WAITING_FOR[longest[0]], time.monotonic() - longest[1])


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


def _close(pool: Any) -> None:
    """Every chunk is back: let the workers read their sentinels and exit on their own,
    before :func:`_shutdown` terminates what is left (``terminate`` alone at times hangs,
    gh-78178, until _shutdown's 10 s timeout); a close that hangs is left to it too."""
    closer = threading.Thread(target=lambda: (pool.close(), pool.join()), daemon=True)
    closer.start()
    closer.join(10)


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
