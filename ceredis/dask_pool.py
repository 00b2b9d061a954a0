"""The Dask executor (``batch --executor dask``): chunks of learners scored on a Dask
distributed cluster, results back in input order, the parent still the ledger's writer.

Each Dask worker opens its evidence source and result store once, lazily in its task
thread (an SQLite connection cannot cross threads), through the pool's own per-chunk
logic (:class:`ceredis.pool._Worker`); a worker plugin closes them on teardown. The
parent keeps a window of chunks in flight, takes them back with ``as_completed``,
reorders them and releases each future once written. Dask reruns the chunk of a lost
worker elsewhere; a chunk that kills workers (``allowed-failures``) is split into one
learner per task, and a learner that kills its worker twice is recorded as ``ERROR``.
Secrets never travel in tasks: workers take them from their own environment or
configuration (a LocalCluster's from the environment its processes are started with).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

from ceredis.config import SETTINGS, Settings, load_settings, redact_url
from ceredis.errors import CeredisError, ConfigError, OutageError
from ceredis.outcome import Outcome
from ceredis.plan import BatchPlan
from ceredis.pool import Task, WorkerContext, _Worker
from ceredis.referential import Referential
from ceredis.sources import SourceSpec
from ceredis.stores import parse_store_url

_NEED_EXTRA = (
    "--executor dask needs Dask distributed, which is not installed: pip install 'ceredis[dask]'"
)
try:
    import dask
    from distributed import (
        Client,
        KilledWorker,
        LocalCluster,
        WorkerPlugin,
        as_completed,
        get_worker,
    )
except ImportError:  # the optional extra: say which one
    raise ConfigError(_NEED_EXTRA) from None

__all__ = ["WorkerRecipe", "insecure_scheduler", "scored"]

CHUNK_SECONDS = 1.0  # a Dask task costs ~17-37 ms here: chunks of about 1 s hide it
MAX_CHUNK = 1024
FIRST_CHUNK = 4  # until a learner's scoring time is known
ALLOWED_FAILURES = 1  # a task in flight on two dying workers is KilledWorker: split it
DIED_TWICE = 2  # Task.deaths that make the pool's worker record the learner as ERROR
#: Settings that are secrets: blanked in what is sent; each worker reads its own.
SECRET_SETTINGS = ("database", "signing_key", "cass.authorization", "xapi.password")


@dataclass(frozen=True)
class WorkerRecipe:
    """What every Dask worker needs to score the run's learners; no secret."""

    run_id: str
    started_at: str
    referential: Referential
    source: SourceSpec  # its settings without secrets
    store_url: str  # redacted; a worker uses its own URL (password) when it names this one
    outage_budget: float
    rate: float | None  # the cluster-wide request rate; None for a file source
    burst: int  # the rate limit's burst: how late a reserved slot may still be used
    in_flight: int  # requests in flight per Dask worker (its fetch threads); 0: inline

    @classmethod
    def of(cls, plan: BatchPlan) -> WorkerRecipe:
        remote = plan.source.kind != "file"
        return cls(
            plan.run_id,
            plan.started_at,
            plan.referential,
            replace(plan.source, settings=_public(plan.source.settings)),
            plan.store.display,
            plan.outage_budget,
            plan.source.settings.rate.rate if remote else None,
            plan.source.settings.rate.burst,
            -(-plan.source.settings.in_flight // plan.workers) if remote else 0,
        )


def _public(settings: Settings) -> Settings:
    """*settings* with every secret blanked."""
    for attr in SECRET_SETTINGS:
        settings = _set(settings, attr, None)
    return settings


def _with_secrets(public: Settings, own: Settings) -> Settings:
    """The recipe's settings with this worker's own secrets."""
    for attr in SECRET_SETTINGS:
        public = _set(public, attr, _get(own, attr))
    return public


def _get(settings: Any, attr: str) -> Any:
    for part in attr.split("."):
        settings = getattr(settings, part)
    return settings


def _set(settings: Any, attr: str, value: Any) -> Any:
    head, _, rest = attr.partition(".")
    inner = _set(getattr(settings, head), rest, value) if rest else value
    return replace(settings, **{head: inner})


def _store_url(own: str | None, batch: str) -> str:
    """This worker's own database URL (with its password) when it names the batch's
    database, else the batch's reduced URL: never a database the batch did not choose."""
    return own if own and redact_url(own) == batch else batch


def secret_environment(plan: BatchPlan) -> dict[str, str]:
    """The secrets of *plan* as environment variables, for the LocalCluster's processes
    (handed over when they start, never through the scheduler)."""
    settings = replace(plan.source.settings, database=plan.store.url)
    names = {s.attr: s.env[0] for s in SETTINGS}
    env = {names[attr]: _get(settings, attr) for attr in SECRET_SETTINGS}
    return {name: str(value) for name, value in env.items() if value is not None}


def insecure_scheduler(address: str | None) -> str | None:
    """A warning when *address* is a plain ``tcp://`` scheduler beyond this machine."""
    if not address:
        return None
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or _loopback(parts.hostname or ""):
        return None
    return (
        f"the Dask scheduler {address} is reached over plain tcp:// without TLS: learners' "
        "ids and results cross the network unencrypted; use tls:// with Dask's security "
        "settings (see docs/distributed.md)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Session(WorkerPlugin):
    """A Dask worker plugin: the run's per-thread scoring state, opened lazily in the task
    thread and closed on teardown (in the same thread, through the worker's executor)."""

    def __init__(self, recipe: WorkerRecipe) -> None:
        self.recipe = recipe
        self.name = f"ceredis-{recipe.run_id}"

    def setup(self, worker: Any) -> None:
        self.dask_worker = worker
        self.local = threading.local()
        self.opened: list[_Worker] = []

    def scorer(self) -> _Worker:
        scorer = getattr(self.local, "scorer", None)
        if scorer is None:
            scorer = self.local.scorer = self._open()
            self.opened.append(scorer)
        return scorer

    def _open(self) -> _Worker:
        recipe = self.recipe
        own = load_settings()
        source = replace(recipe.source, settings=_with_secrets(recipe.source.settings, own))
        limiter = None
        if recipe.rate is not None:
            from ceredis.dask_rate import ClusterLimiter, scheduler_caller

            limiter = ClusterLimiter(
                recipe.run_id,
                recipe.rate,
                recipe.burst,
                scheduler_caller(self.dask_worker),
                recipe.in_flight,
            )
        context = WorkerContext(
            run_id=recipe.run_id,
            run_started_at=recipe.started_at,
            referential=recipe.referential,
            source=source,
            store=parse_store_url(_store_url(own.database, recipe.store_url)),
            slots=[0, -1],  # this worker's (pid, learner): no parent watches it
            slot_counter=None,
            parent_pid=0,
            limiter=limiter,
            outage_budget=recipe.outage_budget,
            fetch_threads=recipe.in_flight,
        )
        return _Worker(context)

    async def teardown(self, worker: Any) -> None:
        await worker.loop.run_in_executor(worker.executor, self._close)
        self._close()  # any left (another thread's): closed best-effort

    def _close(self) -> None:
        while self.opened:
            self.opened.pop().close()


def _score_chunk(session_name: str, chunk: Sequence[Task]) -> list[Outcome]:
    """A Dask task: score *chunk* with this worker's session of the run."""
    return get_worker().plugins[session_name].scorer().run(chunk)


@dataclass
class _Slot:
    """One chunk of the window: its futures (one, or one per learner once split)."""

    chunk: list[Task]
    futures: list[Any]
    results: list[list[Outcome] | None] = field(default_factory=list)

    def done(self) -> bool:
        return all(r is not None for r in self.results)


class _Stream:
    """Submits chunks through a bounded window and yields outcomes in input order."""

    def __init__(
        self, client: Any, plan: BatchPlan, session: str, tasks: Iterator[Task], in_flight: int
    ):
        self.client = client
        self.plan = plan
        self.session = session
        self.tasks = tasks
        self.window = 2 * max(plan.workers, sum(client.nthreads().values())) + 2
        self.token = uuid.uuid4().hex[:12]  # task keys unique to this stream
        self.completed = as_completed()
        self.slots: dict[int, _Slot] = {}
        self.owner: dict[str, tuple[int, int]] = {}  # future key -> (slot, part)
        self.submitted = self.written = 0
        self.seconds_per_learner = 0.0
        self.least = min(MAX_CHUNK, 2 * in_flight)

    def __iter__(self) -> Iterator[Outcome]:
        while True:
            self._fill()
            if self.written not in self.slots:
                return
            slot = self.slots[self.written]
            while not slot.done():
                self._take(next(self.completed))
            del self.slots[self.written]
            self.written += 1
            outcomes = [o for part in slot.results for o in part or ()]
            self._learn(outcomes)
            yield from outcomes

    def _fill(self) -> None:
        while len(self.slots) < self.window:
            chunk = list(islice(self.tasks, self._size()))
            if not chunk:
                return
            number = self.submitted
            self.submitted += 1
            self.slots[number] = _Slot(chunk, [], [None])
            self._submit(number, 0, chunk, f"{number}")

    def _submit(self, number: int, part: int, chunk: list[Task], label: str) -> None:
        key = f"ceredis-{self.token}-{label}"  # explicit: no de-duplication
        future = self.client.submit(_score_chunk, self.session, chunk, key=key, pure=False)
        slot = self.slots[number]
        if part < len(slot.futures):
            slot.futures[part] = future
        else:
            slot.futures.append(future)
        self.owner[future.key] = (number, part)
        self.completed.add(future)

    def _take(self, future: Any) -> None:
        if future.status not in ("finished", "error", "cancelled"):
            self.completed.add(future)  # its result was on a lost worker: it is being rerun
            return
        number, part = self.owner.pop(future.key)
        slot = self.slots[number]
        if future.status == "finished":
            slot.results[part] = future.result()
        else:
            try:
                error = future.exception()
            except Exception as exc:  # cancelled: the scheduler lost it
                error = exc
            self._failed(number, part, error)
        future.release()

    def _failed(self, number: int, part: int, error: BaseException) -> None:
        slot = self.slots[number]
        if isinstance(error, OutageError):
            raise error
        if not isinstance(error, KilledWorker):
            raise CeredisError(f"a Dask task failed: {type(error).__name__}: {error}")
        learners = slot.chunk if len(slot.futures) == 1 else [slot.chunk[part]]
        if len(learners) > 1:  # a chunk that kills workers: one learner per task
            slot.futures, slot.results = [], [None] * len(learners)
            for i, task in enumerate(learners):
                self._submit(number, i, [task], f"{number}.{i}")
        else:
            task = learners[0]._replace(deaths=DIED_TWICE)  # recorded as ERROR
            self._submit(number, part, [task], f"{number}.{part}.died")

    def _size(self) -> int:
        if self.plan.chunksize:
            return self.plan.chunksize
        least = self.least  # enough learners to keep a worker's fetch threads busy
        if self.seconds_per_learner <= 0:
            return max(FIRST_CHUNK, least)
        return max(least, min(MAX_CHUNK, int(CHUNK_SECONDS / self.seconds_per_learner)))

    def _learn(self, outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            current = sum(o.duration_ms for o in outcomes) / len(outcomes) / 1000
            previous = self.seconds_per_learner
            self.seconds_per_learner = current if not previous else 0.7 * previous + 0.3 * current


def scored(
    plan: BatchPlan,
    tasks: Iterator[Task],
    limiter: Any = None,
    waiting: Callable[[str, float], None] | None = None,
) -> Iterator[Outcome]:
    """Score *tasks* on Dask, in input order (the pool's ``scored``, on a cluster)."""
    del limiter, waiting  # the cluster has its own limit; workers wait out outages alone
    with _client(plan) as client:
        yield from _scored_on(client, plan, tasks)


def _scored_on(client: Any, plan: BatchPlan, tasks: Iterator[Task]) -> Iterator[Outcome]:
    from ceredis.dask_rate import install_desk, remove_desk

    recipe = WorkerRecipe.of(plan)
    session = _Session(recipe)
    client.register_plugin(session, name=session.name)
    if recipe.rate is not None:
        client.run_on_scheduler(install_desk, run_id=plan.run_id, rate=recipe.rate)
    try:
        yield from _Stream(client, plan, session.name, tasks, recipe.in_flight)
    finally:
        with contextlib.suppress(Exception):  # the cluster may be gone: nothing to undo
            client.unregister_worker_plugin(session.name)
            if recipe.rate is not None:
                client.run_on_scheduler(remove_desk, run_id=plan.run_id)


@contextlib.contextmanager
def _client(plan: BatchPlan) -> Iterator[Any]:
    """A client of the planned scheduler, or of a LocalCluster started (and stopped) here."""
    # Dask keeps its last messages per connection (1,000 by default, each holding a chunk
    # of learners): a few keep the parent's memory flat.
    with dask.config.set({"distributed.admin.low-level-log-length": 16}):
        if plan.scheduler:
            with _remote_client(plan.scheduler) as client:
                yield client
            return
        with dask.config.set(_LOCAL_CLUSTER):
            cluster = LocalCluster(
                n_workers=plan.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",  # its HTTP server: loopback, any free port
                silence_logs=logging.ERROR,
                env=secret_environment(plan),
            )
            with cluster, Client(cluster) as client:
                yield client


_LOCAL_CLUSTER = {  # a worker holds only the task it runs: a death blames that one
    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    "distributed.scheduler.worker-saturation": 1.0,
}


def _remote_client(address: str) -> Any:
    """A client of the scheduler at *address*, or a clear ConfigError."""
    try:
        return Client(address, timeout="20s")
    except Exception as exc:  # refused, timed out, or not a Dask scheduler at all
        raise ConfigError(
            f"cannot reach the Dask scheduler {address} ({exc or type(exc).__name__}); "
            "start it with `dask scheduler` and check --scheduler / CEREDIS_DASK_SCHEDULER"
        ) from None
