"""Progress that says something, seen through the real command line: a bar per step on a
pseudo-terminal (batch, resume's check, verify, export, report, ceredis-ledger verify),
plain ``progress:`` lines on stderr without one, and never a byte of it on a --json stdout."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest
from rich.console import Console

from ceredis.progress import StepMeter
from ceredis.steps import Step
from ledger import read_ledger

LEARNERS = 2000  # a few thousand records: several MiB of ledger, seconds of replay
BAR = "━"
ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RICH_ENV = ("FORCE_TERMINAL", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "TERM")


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without what would make rich decide for itself."""
    env = {k: v for k, v in os.environ.items() if k not in RICH_ENV}
    return {**env, **(extra or {})}


def on_terminal(
    *argv: str, module: str = "ceredis", stdout_too: bool = False, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``python -m MODULE`` with stderr (and with *stdout_too* stdout) on a 200-column
    pseudo-terminal; returns (exit code, stdout if a pipe, what the terminal received)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", module, *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        env=environment({"TERM": "xterm-256color", **(env or {})}),
    )
    os.close(slave)
    shown: list[bytes] = []

    def drain() -> None:  # the terminal must be read as it is written, or the child blocks
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                return
            if not chunk:
                return
            shown.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = process.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(master)
    text = b"".join(shown).decode("utf-8", "replace")
    return process.returncode, (out or b"").decode("utf-8"), text


def piped(*argv: str, module: str = "ceredis", env: dict[str, str] | None = None):
    """Run ``python -m MODULE`` with stdout and stderr captured: no terminal anywhere."""
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        env=environment(env),
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def screen_lines(terminal: str) -> list[str]:
    """Each state of the terminal's lines, escape codes removed."""
    return [line for line in ESCAPE.sub("", terminal).replace("\r", "\n").split("\n") if line]


def bar_of(terminal: str, label: str) -> list[str]:
    """The drawn states of the bar labelled *label*."""
    return [line for line in screen_lines(terminal) if line.startswith(label) and BAR in line]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """A finished run of LEARNERS sampled learners: (its ledger, its SQLite store's URL)."""
    where = tmp_path_factory.mktemp("progress")
    cohort, ledger, store = where / "cohort.jsonl", where / "run.jsonl", where / "r.sqlite"
    sample = piped("sample", "--agents", str(LEARNERS), "--evidence-per-learner", "10",
                   "--out", str(cohort))  # fmt: skip
    assert sample.returncode == 0, sample.stderr
    batch = piped("batch", "--all", "--quiet", "--source", str(cohort), "--workers", "2",
                  "--database", f"sqlite:///{store}", "--ledger", str(ledger))  # fmt: skip
    assert batch.returncode == 0, batch.stderr
    assert ledger.stat().st_size > 4 << 20  # several integrity updates, one a MiB
    return ledger, f"sqlite:///{store}"


def records_of(ledger: Path) -> tuple[list[dict], dict]:
    """The ledger's record bodies and its footer's own part."""
    lines = list(read_ledger(ledger))
    return [r.body for r in lines if r.kind == "record"], lines[-1].body["ledger"]


def test_verify_draws_a_bar_per_step_on_a_terminal_and_stdout_is_the_json_alone(run):
    """On a terminal: integrity in MB, replay in records, the database in rows, each with a
    rate and labelled times; stdout holds exactly the JSON audit, which agrees with the ledger."""
    ledger, store = run
    code, out, terminal = on_terminal("verify", str(ledger), "--database", store, "--json")
    assert code == 0, terminal
    records, footer = records_of(ledger)
    n = len(records)
    integrity = bar_of(terminal, "checking integrity")
    replay = bar_of(terminal, "replaying")
    database = bar_of(terminal, "checking the database")
    assert integrity and replay and database, screen_lines(terminal)
    size = f"{ledger.stat().st_size / 1e6:.1f} MB"
    assert any(f"/{size}" in line and "MB/s" in line for line in integrity)
    assert any(f"{n:,}/{n:,} records" in line for line in replay)
    assert any(f"/{n:,} rows" in line and "rows/s" in line for line in database)
    for line in integrity + replay + database:
        assert " elapsed " in line and " remaining " in line
    assert any(re.search(r"[0-9.,]+ records/s", line) for line in replay)
    assert out.count("\n") == 1 and "\x1b" not in out and "records/s" not in out
    audit = json.loads(out)
    assert audit["ok"] and audit["records"] == audit["identical"] == n
    assert audit["resultsRoot"] == footer["resultsRoot"] and audit["databaseRows"] == n


def test_export_and_report_draw_their_bars_on_a_terminal(run, tmp_path):
    """export: integrity, replay, then reading the results; the CSV is the ledger's rows;
    report: the same steps before the page is written."""
    ledger, _ = run
    out_csv = tmp_path / "results.csv"
    code, out, terminal = on_terminal("export", str(ledger), "--out", str(out_csv))
    assert code == 0, terminal
    records, _ = records_of(ledger)
    n = len(records)
    for label in ("checking integrity", "replaying", "reading results"):
        assert bar_of(terminal, label), (label, screen_lines(terminal))
    assert any(f"{n:,}/{n:,} records" in line for line in bar_of(terminal, "reading results"))
    assert (
        out == f"wrote {n:,} learners of {ledger} (verified: intact, complete and "
        f"reproducible ({n:,} of {n:,} records replayed)) to {out_csv}\n"
    )
    with out_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["agentId"], r["status"]) for r in rows] == [
        (b["agentId"], b["result"]["status"]) for b in records
    ]
    code, _, terminal = on_terminal("report", str(ledger), "--html", str(tmp_path / "r.html"))
    assert code == 0 and bar_of(terminal, "replaying") and bar_of(terminal, "reading results")


def test_without_a_terminal_progress_is_plain_lines_on_stderr(run, tmp_path):
    """No terminal, a short CEREDIS_PROGRESS_INTERVAL: labelled plain lines on stderr, no
    escape code or bar glyph; stdout stays the JSON alone (verify) or the one line (export)."""
    ledger, store = run
    fast = {"CEREDIS_PROGRESS_INTERVAL": "0.001"}
    n = len(records_of(ledger)[0])
    done = piped("verify", str(ledger), "--database", store, "--json", env=fast)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] and done.stdout.count("\n") == 1
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("progress: ") for line in lines)
    assert "\x1b" not in done.stderr and BAR not in done.stderr
    steps = {line.split(" ")[1] for line in lines}
    assert steps == {"checking", "replaying"}, steps
    assert any(re.match(r"progress: checking integrity [\d.]+/[\d.]+ MB, [\d.]+ MB/s", x)
               for x in lines)  # fmt: skip
    replay = [line for line in lines if line.startswith("progress: replaying ")]
    assert any(f"/{n:,} records, " in line and "records/s, elapsed " in line for line in replay)
    assert any(", remaining ~" in line for line in replay)
    assert any(line.startswith("progress: checking the database ") for line in lines)
    export = piped("export", str(ledger), "--out", str(tmp_path / "x.csv"), env=fast)
    assert export.returncode == 0 and export.stdout.startswith(f"wrote {n:,} learners of ")
    assert any(line.startswith("progress: reading results ") for line in export.stderr.splitlines())


def test_the_interval_spaces_the_lines(run):
    """With the interval longer than the run, no progress line at all: it is honoured."""
    ledger, _ = run
    done = piped("verify", str(ledger), env={"CEREDIS_PROGRESS_INTERVAL": "3600"})
    assert done.returncode == 0 and "progress: " not in done.stderr + done.stdout


def test_ceredis_ledger_verify_draws_a_byte_bar_on_a_terminal_only(run):
    ledger, _ = run
    code, out, terminal = on_terminal("verify", str(ledger), module="ledger")
    assert code == 0 and out.startswith(f"{ledger}: ok: ")
    size = f"{ledger.stat().st_size / 1e6:.1f}"
    assert any(f"/{size} MB" in line for line in bar_of(terminal, "verifying")), terminal
    done = piped("verify", str(ledger), "--json", module="ledger")
    assert done.returncode == 0 and done.stderr == "" and json.loads(done.stdout)["ok"]


def test_batch_and_resume_draw_labelled_bars_on_a_terminal(run, tmp_path):
    """The batch's bar: scoring M/N with a real total for --all, ok / skipped / failed,
    learners/s, elapsed and remaining; a resume's check of the recorded learners has its own."""
    ledger, _ = run
    cohort = ledger.parent / "cohort.jsonl"
    small = tmp_path / "small.jsonl"
    with cohort.open(encoding="utf-8") as f:
        small.write_text("".join(line for line in f if '"L0000' in line), encoding="utf-8")
    code, _, terminal = on_terminal(
        "batch", "--all", "--source", str(small), "--workers", "1",
        "--database", f"sqlite:///{tmp_path / 'b.sqlite'}", "--ledger", str(tmp_path / "b.jsonl"),
        stdout_too=True,
    )  # fmt: skip
    assert code == 0, terminal
    scoring = bar_of(terminal, "scoring")
    assert scoring, screen_lines(terminal)
    final = scoring[-1]
    assert re.search(r" 9/9 learners ok \d · skipped \d · failed 0 ", final), final
    assert "learners/s" in final and " elapsed " in final and " remaining " in final
    unfinished = tmp_path / "unfinished.jsonl"
    unfinished.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:-1]))
    code, out, terminal = on_terminal(
        "batch", "--resume", str(unfinished), "--json",
        "--database", f"sqlite:///{tmp_path / 'resumed.sqlite'}",
    )  # fmt: skip
    assert code == 0, terminal
    n = len(records_of(ledger)[0])
    checks = bar_of(terminal, "checking the ledger")
    assert any(f"{n:,}/{n:,} learners" in line and "learners/s" in line for line in checks)
    assert json.loads(out)["resultsRoot"] == records_of(ledger)[1]["resultsRoot"]


class Clock:
    """A clock the test moves by hand (the one mock the rules allow)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_meter_without_a_terminal_prints_once_per_interval():
    """Calls between two intervals print nothing; the line says step, rate and times."""
    clock, text = Clock(), io.StringIO()
    meter = StepMeter(Console(file=text, width=200), interval=10, clock=clock)
    meter(Step.REPLAY, 0, 1000)  # a step starts when it is first heard of
    clock.now = 5
    meter(Step.REPLAY, 100, 1000)
    assert text.getvalue() == ""
    clock.now = 10
    meter(Step.REPLAY, 200, 1000)
    clock.now = 12
    meter(Step.REPLAY, 300, 1000)
    assert text.getvalue() == (
        "progress: replaying 200/1,000 records, 20.0 records/s, elapsed 0:00:10, "
        "remaining ~0:00:40\n"
    )
    clock.now = 20
    meter(Step.DATABASE, 50, 1000)  # a new step: its own elapsed time and rate
    clock.now = 30
    meter(Step.DATABASE, 500, 1000)
    assert text.getvalue().splitlines()[1:] == [
        "progress: checking the database 50/1,000 rows, 0.0 rows/s, elapsed 0:00:00",
        "progress: checking the database 500/1,000 rows, 50.0 rows/s, elapsed 0:00:10, "
        "remaining ~0:00:10",
    ]
