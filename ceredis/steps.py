"""The long steps of a command that a person watches, and the callback that hears them.

Library functions (the audit, a cohort's reading, a resume's check) take a
:data:`StepProgress` and call it every :data:`EVERY` items (the integrity check about
once per MiB), so that it costs nothing per record; :class:`ceredis.progress.StepMeter`
shows it as a bar on a terminal, else as plain lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import TypeVar

__all__ = ["EVERY", "Step", "StepProgress", "counted", "integrity_progress"]

EVERY = 32  # items between two calls of a StepProgress

T = TypeVar("T")


class Step(Enum):
    """A step: what a person reads (``checking integrity``) and what it counts."""

    INTEGRITY = ("checking integrity", "bytes")
    REPLAY = ("replaying", "records")
    DATABASE = ("checking the database", "rows")
    READ = ("reading results", "records")
    RESUME = ("checking the ledger", "learners")
    RESTORE = ("writing the recorded learners", "learners")

    def __init__(self, label: str, unit: str) -> None:
        self.label = label
        self.unit = unit


#: ``progress(step, done, total)``: *done* of the step's *total* items so far.
StepProgress = Callable[[Step, int, int], None]


def counted(
    items: Iterable[T], step: Step, total: int, progress: StepProgress | None
) -> Iterator[T]:
    """Yield *items*, telling *progress* how many were taken: at the start (the step's
    clock starts), every EVERY, and at the end."""
    if progress is None:
        yield from items
        return
    done = 0
    progress(step, done, total)
    for done, item in enumerate(items, start=1):
        yield item
        if done % EVERY == 0:
            progress(step, done, max(total, done))
    progress(step, done, max(total, done))


def integrity_progress(progress: StepProgress | None) -> Callable[[int, int], None] | None:
    """The byte callback :func:`ledger.verify_ledger` takes, as an INTEGRITY step."""
    if progress is None:
        return None
    return lambda done, total: progress(Step.INTEGRITY, done, total)
