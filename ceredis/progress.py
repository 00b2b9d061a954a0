"""What a person sees while a batch runs: a first line, a progress bar, a summary table."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ceredis.engine import ProgressHooks
from ceredis.outcome import Outcome, Status
from ceredis.plan import BatchPlan
from ceredis.report import BatchReport

__all__ = ["BatchConsole"]


class BatchConsole(ProgressHooks):
    """Rich progress for :func:`ceredis.engine.run_batch`; quiet (or not a terminal): only the
    first line and the summary."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet or not console.is_terminal  # cron logs get no bar, only lines
        self._bar: Progress | None = None
        self._task = None
        self._failed = 0
        self._waited: float | None = None  # seconds of the outage last shown, if one lasts

    def start(self, plan: BatchPlan, total: int | None, done: int) -> None:
        what = f"{total:,} learners" if total is not None else "every learner of the source"
        if plan.embedded:
            first = (
                f"Nothing configured: embedded default — {what} of the {plan.source.name} into "
                f"SQLite {plan.store.display.removeprefix('sqlite:///')}; ledger and report "
                f"in {plan.ledger.parent}"
            )
        else:
            first = (
                f"CEREDIS batch: {what} from {plan.source.name} into {plan.store.display}, "
                f"{plan.workers} workers; ledger {plan.ledger}"
            )
        if plan.resume:
            first += f" (resuming run {plan.run_id}: {done:,} already recorded)"
        self.console.print(first, highlight=False, soft_wrap=True)
        if self.quiet:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("scoring", total=total, completed=done, failed=0)

    def advance(self, outcome: Outcome) -> None:
        if self._waited is not None:
            self._waited = None
            if self._bar is not None:
                self._bar.update(self._task, description="scoring")
            else:
                self.console.print("the service is back: scoring again", highlight=False)
        if self._bar is not None:
            self._failed += outcome.status == Status.ERROR
            self._bar.update(self._task, advance=1, failed=self._failed)

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
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def summary(self, report: BatchReport) -> None:
        """The final table: total / ok / skipped / failed / concurrency / elapsed / rate."""
        table = Table(title=f"Run {report.run_id}", title_justify="left")
        for column in ("total", "ok", "skipped", "failed", "concurrency", "elapsed", "learners/s"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{report.total:,}",
            Text(f"{report.ok:,}", style="green"),
            Text(f"{report.skipped:,}", style="yellow"),
            Text(f"{report.failed:,}", style="bold red" if report.failed else ""),
            str(report.concurrency),
            f"{report.elapsed:.1f} s",
            f"{report.rate:,.1f}",
        )
        self.console.print(table)
        self.console.print(
            f"ledger {report.ledger} (resultsRoot {report.results_root})\nreport {report.report}",
            highlight=False,
            soft_wrap=True,
        )
