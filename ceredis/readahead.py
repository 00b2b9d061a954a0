"""Pool workers that may take their next task early.

A worker of :class:`ReadAheadPool` runs :func:`serve`, CPython's worker loop
(``multiprocessing.pool.worker``) with one addition: while a task runs, it may call
:func:`take_next` to read the worker's next task from the pool's queue, if one waits
there now, and start on it (the pool's worker fetches its next chunk's evidence while it
scores the end of this one). The task so taken is the one the loop runs next; results
still go back one per task, so ``imap`` keeps its order.

:func:`take_next` never blocks: it reads only when the queue's read lock is free and a
task is already there. A worker blocked in a read holds that lock, and a worker killed
while holding it would leave every other worker, and ``Pool.terminate``, waiting.
"""

from __future__ import annotations

import multiprocessing.pool
from multiprocessing.reduction import ForkingPickler
from typing import Any

__all__ = ["ReadAheadPool", "serve", "take_next"]

_NOTHING: Any = object()  # no task taken early
_queue: Any = None  # this worker's end of the pool's task queue (set by serve)
_early: Any = _NOTHING  # the task take_next read, to run next; None: the pool's sentinel


class ReadAheadPool(multiprocessing.pool.Pool):
    """A pool whose workers run :func:`serve` (workers are not replaced after N tasks)."""

    def __init__(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: tuple = (),
        context: Any = None,
    ) -> None:
        super().__init__(processes, initializer, initargs, None, context)

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        return ctx.Process(*args, **{**kwds, "target": serve})


def serve(
    inqueue: Any,
    outqueue: Any,
    initializer: Any = None,
    initargs: tuple = (),
    maxtasks: int | None = None,
    wrap_exception: bool = False,
) -> None:
    """Run tasks until the pool's sentinel, as ``multiprocessing.pool.worker`` does
    (*maxtasks* is always None: :class:`ReadAheadPool` takes no ``maxtasksperchild``)."""
    global _queue
    inqueue._writer.close()
    outqueue._reader.close()
    if initializer is not None:
        initializer(*initargs)
    _queue = inqueue
    while (task := _next()) is not None:
        job, i, func, args, kwds = task
        try:
            result = (True, func(*args, **kwds))
        except Exception as exc:
            if wrap_exception and func is not multiprocessing.pool._helper_reraises_exception:
                exc = multiprocessing.pool.ExceptionWithTraceback(exc, exc.__traceback__)
            result = (False, exc)
        try:
            outqueue.put((job, i, result))
        except Exception as exc:
            wrapped = multiprocessing.pool.MaybeEncodingError(exc, result[1])
            outqueue.put((job, i, (False, wrapped)))
        task = result = func = args = kwds = None  # hold nothing between tasks


def take_next() -> tuple[Any, tuple] | None:
    """The function and arguments of this worker's next task if it waits in the queue now
    (it is then the task this worker runs next), else None; never blocks, never takes two."""
    global _early
    if _queue is None or _early is not _NOTHING or not _queue._rlock.acquire(False):
        return None
    try:
        if not _queue._reader.poll():
            return None
        _early = ForkingPickler.loads(_queue._reader.recv_bytes())
    except (EOFError, OSError):
        _early = None
    finally:
        _queue._rlock.release()
    return None if _early is None else (_early[2], _early[3])


def _next() -> Any:
    """The task taken early, else the next one from the queue (None: stop)."""
    global _early
    if _early is not _NOTHING:
        task, _early = _early, _NOTHING
        return task
    try:
        return _queue.get()
    except (EOFError, OSError):
        return None
