"""ReadAheadPool: a worker may take its next task early; results keep their order, a
pool still closes, and an error still reaches the caller (real processes)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from ceredis.readahead import ReadAheadPool, take_next

_FORK = mp.get_context("fork")
TIMEOUT = 10  # s: a pool that loses a task or blocks fails here instead of hanging


def _all(results, n: int) -> list:
    return [results.next(timeout=TIMEOUT) for _ in range(n)]


def _step(x: int) -> tuple[int, int, tuple | None]:
    """x, this worker's pid, and the arguments of the task it took early (if any)."""
    time.sleep(0.01)  # the pool's task thread fills the queue meanwhile
    taken = take_next()
    if taken is not None:  # (if None, a task may arrive now and be taken: that is allowed)
        assert take_next() is None, "a second task was taken while one is held"
    if x == 13:
        raise ValueError("thirteen")
    return x, os.getpid(), None if taken is None else taken[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_tasks_taken_early_run_next_in_the_same_worker_and_results_keep_their_order(workers):
    with ReadAheadPool(workers, context=_FORK) as pool:
        results = _all(pool.imap(_step, range(12), chunksize=1), 12)
    assert [x for x, _, _ in results] == list(range(12))
    taken = [(x, pid, args) for x, pid, args in results if args is not None]
    assert len(taken) >= 3, "no worker ever took a task early"
    by_value = {x: pid for x, pid, _ in results}
    for _, pid, (nxt,) in taken:
        assert by_value[nxt] == pid, "a task taken early ran in another worker"


def test_an_error_reaches_the_caller_and_the_pool_still_closes():
    pool = ReadAheadPool(2, context=_FORK)
    results = pool.imap(_step, range(20), chunksize=1)
    assert [x for x, _, _ in _all(results, 13)] == list(range(13))
    with pytest.raises(ValueError, match="thirteen"):
        results.next(timeout=TIMEOUT)
    assert [x for x, _, _ in _all(results, 6)] == list(range(14, 20))
    pool.close()
    started = time.monotonic()
    pool.join()  # every worker read its sentinel, taken early or not
    assert time.monotonic() - started < TIMEOUT


def test_take_next_does_not_wait_for_a_task():
    with ReadAheadPool(1, context=_FORK) as pool:
        ((x, _, taken),) = pool.map_async(_step, [0]).get(timeout=TIMEOUT)
    assert x == 0 and taken is None


def test_take_next_outside_a_pool_worker_takes_nothing():
    assert take_next() is None
