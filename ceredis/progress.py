"""What a person sees while a command runs: a batch's first line, progress and summary;
the steps of a verification, an export or a resume's check.

On a terminal the progress is a rich bar (labelled elapsed and remaining time, a rate,
ok / skipped / failed for a batch); with no terminal (cron, a pipe, a file), a plain line
goes to stderr every ``progress_interval`` seconds so that a long run's log shows life.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

from ceredis.config import DEFAULT_PROGRESS_INTERVAL
from ceredis.engine import ProgressHooks
from ceredis.outcome import Counts, Outcome
from ceredis.plan import BatchPlan
from ceredis.report import BatchReport, plural
from ceredis.steps import Step
from ledger import Repair

if TYPE_CHECKING:  # rich.progress is imported only when a bar is shown (a terminal)
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["BatchConsole", "StepMeter", "plan_line", "source_total"]


@cache
def _columns() -> tuple[type[Any], type[Any]]:
    """The bar's own columns, done/total and rate (defined once rich.progress is loaded)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Done(ProgressColumn):
        """Done of total, in the task's unit: ``1,234/2,900 records``, ``12.3/57.6 MB``, or
        ``1,234 learners`` when the total is not known."""

        def render(self, task: Task) -> Text:
            done, unit = int(task.completed), task.fields.get("unit", "learners")
            if task.total is None:
                return Text(plural(done, unit.removesuffix("s")))
            return Text(_done(done, int(task.total), unit))

    class Rate(ProgressColumn):
        """Items per second (a task's ``unit``, learners by default; bytes as MB/s), as rich
        estimates it over the last few seconds."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(_rate(speed, task.fields.get("unit", "learners")))

    return Done, Rate


def _bar(console: Console, *counts: str) -> Progress:
    """A transient bar: the description, the bar, done/total, the *counts* text columns,
    the rate, the elapsed and the remaining time."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    done, rate = _columns()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        done(),
        *(TextColumn(text) for text in counts),
        rate(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("remaining"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _rate(speed: float | None, unit: str) -> str:
    if unit == "bytes":
        from rich.filesize import decimal

        return "– MB/s" if speed is None else f"{decimal(int(speed))}/s"
    return f"– {unit}/s" if speed is None else f"{speed:,.1f} {unit}/s"


def _done(done: int, total: int, unit: str) -> str:
    if unit == "bytes":  # as rich's DownloadColumn: 12.3/57.6 MB
        from rich.filesize import pick_unit_and_suffix

        size, suffix = pick_unit_and_suffix(total, ["bytes", "kB", "MB", "GB", "TB"], 1000)
        digits = 0 if size == 1 else 1
        return f"{done / size:,.{digits}f}/{total / size:,.{digits}f} {suffix}"
    return f"{done:,}/{total:,} {unit.removesuffix('s') if total == 1 else unit}"


class StepMeter:
    """A :data:`ceredis.steps.StepProgress` for people: a bar per step on *console* if it is a
    terminal, else a plain line on *log* every *interval* seconds; close it before printing."""

    def __init__(
        self,
        console: Console,
        *,
        log: Console | None = None,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.log = log or console
        self.interval = interval
        self.quiet = quiet
        self.clock = clock
        self._bar: Progress | None = None
        self._step: Step | None = None
        self._task: TaskID | int = 0  # the current step's, once there is a bar
        self._started = self._last = clock()

    def __call__(self, step: Step, done: int, total: int) -> None:
        if self.quiet:
            return
        if step is not self._step:
            self._next(step, total)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
        elif self.clock() - self._last >= self.interval:
            self._last = self.clock()
            self.log.print(self.line(step, done, total), highlight=False, soft_wrap=True)

    def _next(self, step: Step, total: int) -> None:
        """Start showing *step*: a new bar under the finished ones, or its own lines."""
        self._step, self._started = step, self.clock()
        if not self.console.is_terminal:
            return
        if self._bar is None:
            self._bar = _bar(self.console)
            self._bar.start()
        else:
            self._bar.stop_task(self._task)
        self._task = self._bar.add_task(step.label, total=total, unit=step.unit)

    def line(self, step: Step, done: int, total: int) -> str:
        """One plain line: the step, done/total, rate, elapsed and remaining time."""
        elapsed = self.clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (
            f"progress: {step.label} {_done(done, total, step.unit)}, "
            f"{_rate(rate, step.unit)}, elapsed {_clock(elapsed)}"
        )
        if rate > 0:
            line += f", remaining ~{_clock(max(total - done, 0) / rate)}"
        return line

    def close(self) -> None:
        """Take the bars off the screen (they are transient): the outcome follows."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> StepMeter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class BatchConsole(ProgressHooks):
    """Progress for :func:`ceredis.engine.run_batch`: the first line and the summary on
    *console*; a bar when it is a terminal, else plain lines on *log* (unless quiet)."""

    def __init__(
        self,
        console: Console,
        *,
        quiet: bool = False,
        log: Console | None = None,
        interval: float = DEFAULT_PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.quiet = quiet
        if log is None:
            from rich.console import Console

            log = Console(stderr=True)
        self.log = log
        self.interval = interval
        self.clock = clock
        self.counts = Counts()  # this process's learners (not those a resume found)
        self._bar: Progress | None = None
        self._task = None
        self._total: int | None = None
        self._done = 0
        self._started = self._last = 0.0
        self._checks: StepMeter | None = None
        self._stepped: set[Step] = set()  # the resume's steps already finished
        self._waited: float | None = None  # seconds of the outage last shown, if one lasts

    def start(self, plan: BatchPlan, total: int | None, done: int) -> None:
        total = total if total is not None else source_total(plan)
        self._total, self._done = total, done
        self._started = self._last = self.clock()
        self.console.print(plan_line(plan, total, done), highlight=False, soft_wrap=True)
        if self.quiet or not self.console.is_terminal:
            return
        self._bar = _bar(
            self.console,
            "ok {task.fields[ok]:,} · skipped {task.fields[skipped]:,} · failed "
            "{task.fields[failed]:,}",
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "scoring", total=total, completed=done, ok=0, skipped=0, failed=0
        )

    def repaired(self, repair: Repair) -> None:
        self.console.print(
            f"The killed run's ledger ended in a torn line: {repair}",
            highlight=False,
            soft_wrap=True,
        )

    def step(self, step: Step, done: int, total: int) -> None:
        """Resume's check and writing of the recorded learners: a bar (or plain lines),
        then one line for each."""
        if step in self._stepped:
            return  # finished: a counted step may repeat its last count
        if self._checks is None:
            self._checks = StepMeter(
                self.console, log=self.log, interval=self.interval, quiet=self.quiet,
                clock=self.clock,
            )  # fmt: skip
        self._checks(step, done, total)
        if done == total:
            self._stepped.add(step)
            self._checks.close()
            self._checks = None
            if self.quiet or not self.console.is_terminal:
                said = "checked" if step is Step.RESUME else "wrote to the database"
                self.console.print(
                    f"{said} the {plural(total, 'recorded learner')}",
                    highlight=False,
                    soft_wrap=True,
                )

    def advance(self, outcome: Outcome) -> None:
        self.counts.add(outcome.status)
        if self._waited is not None:
            self._waited = None
            if self._bar is not None:
                self._bar.update(self._task, description="scoring")
            else:
                self.console.print("the service is back: scoring again", highlight=False)
        if self._bar is not None:
            fields = self.counts.by_status()
            self._bar.update(self._task, advance=1, **fields)  # type: ignore[arg-type]
        elif not self.quiet and self.clock() - self._last >= self.interval:
            self._last = self.clock()
            self.log.print(self.progress_line(), highlight=False, soft_wrap=True)

    def progress_line(self) -> str:
        """One plain line: done/total, counts, rate, elapsed and remaining time."""
        elapsed = self.clock() - self._started
        new = self.counts.total
        rate = new / elapsed if elapsed > 0 else 0.0
        done = self._done + new
        of = (
            f"{done:,}/{plural(self._total, 'learner')}"
            if self._total is not None
            else plural(done, "learner")
        )
        line = (
            f"progress: {of}, ok {self.counts.ok:,}, skipped "
            f"{self.counts.skipped:,}, failed {self.counts.failed:,}, {rate:,.1f} learners/s, "
            f"elapsed {_clock(elapsed)}"
        )
        if self._total is not None and rate > 0:
            line += f", remaining ~{_clock(max(self._total - done, 0) / rate)}"
        return line

    def waiting(self, what: str, seconds: float) -> None:
        """Show "waiting for the database (12 s)" on the bar; without a bar, a line every 10 s."""
        line = f"waiting for {what} ({seconds:.0f} s)"
        if self._bar is not None:
            self._bar.update(self._task, description=line)
        elif self._waited is None or seconds >= self._waited + 10:
            self.console.print(line, highlight=False)
        else:
            return
        self._waited = seconds

    def stop(self) -> None:
        if self._checks is not None:
            self._checks.close()
            self._checks = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def summary(self, report: BatchReport) -> None:
        """The final table, the levels granted and the failed learners."""
        from ceredis.render import batch_summary

        self.console.print(batch_summary(report), soft_wrap=True)


def plan_line(plan: BatchPlan, total: int | None, done: int = 0) -> str:
    """The first line of a batch: what is scored from where into where."""
    what = plural(total, "learner") if total is not None else "every learner of the source"
    if plan.embedded:
        first = (
            f"Nothing configured: embedded default — {what} of the {plan.source.name} into "
            f"SQLite {plan.store.display.removeprefix('sqlite:///')}; ledger and report "
            f"in {plan.ledger.parent}"
        )
    else:
        first = (
            f"CEREDIS batch: {what} from {plan.source.name} into {plan.store.display}, "
            f"{plural(plan.workers, 'worker')}; ledger {plan.ledger}"
        )
    if plan.resume:
        first += f" (resuming run {plan.run_id}: {done:,} already recorded)"
    return first


def source_total(plan: BatchPlan) -> int | None:
    """How many learners the source lists, when it can say cheaply (files); else None."""
    if plan.source.kind != "file":
        return None
    client = plan.source.open()
    try:
        count = getattr(client, "count", None)
        return count() if count is not None else None
    finally:
        client.close()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
