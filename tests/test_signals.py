"""Stop signals to a real ``python -m ceredis batch``: a clean stop with the resume command,
then ``--resume`` (reporting the torn tail it cut) reproduces the uninterrupted root;
``sample`` neither overwrites nor leaves a truncated cohort."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ceredis.cli import main
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort
from ledger import verify_ledger

LEARNERS = 400


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cohort")
    files = write_cohort(
        folder / "cohort.jsonl", bundled_referential(), LEARNERS, seed=3, evidence_per_learner=30
    )
    return files.evidence, files.roster


@pytest.fixture(scope="module")
def expected_root(cohort, tmp_path_factory) -> str:
    """The root of an uninterrupted run of the cohort."""
    folder = tmp_path_factory.mktemp("reference")
    evidence, roster = cohort
    ledger = folder / "reference.jsonl"
    argv = ["batch", "--quiet", "--source", str(evidence), "--file", str(roster)]
    database = f"sqlite:///{folder / 'reference.sqlite'}"
    assert main([*argv, "--ledger", str(ledger), "--database", database, "--workers", "1"]) == 0
    return verify_ledger(ledger).root


def interrupted_batch(
    tmp_path: Path, cohort, signum: int, group: bool = False
) -> tuple[Path, str, str]:
    """Start a real batch, send *signum* (to its whole process group with *group*, as
    systemd and Kubernetes do) once some learners are recorded; its stderr."""
    evidence, roster = cohort
    ledger = tmp_path / "run.jsonl"
    database = f"sqlite:///{tmp_path / 'run.sqlite'}"
    command = [sys.executable, "-m", "ceredis", "batch", "--quiet", "--workers", "2"]
    command += ["--source", str(evidence), "--file", str(roster), "--ledger", str(ledger)]
    with subprocess.Popen(
        [*command, "--database", database],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=group,
    ) as child:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if ledger.exists() and ledger.read_bytes().count(b"\n") > 50:
                if group:
                    os.killpg(child.pid, signum)
                else:
                    child.send_signal(signum)
                break
            time.sleep(0.005)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signum, err
    return ledger, database, err.decode()


@pytest.mark.parametrize(
    ("signum", "group"),
    [
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),
        (signal.SIGINT, False),
        (signal.SIGTERM, True),
        (signal.SIGINT, True),
    ],
)
def test_a_stop_signal_leaves_a_resumable_ledger_and_says_how(
    tmp_path, cohort, expected_root, capsys, signum, group
):
    """SIGTERM, SIGHUP and SIGINT, to the batch or its process group (workers included):
    exit 128+N, the exact resume command, and the resumed run has the uninterrupted root."""
    ledger, database, err = interrupted_batch(tmp_path, cohort, signum, group)
    name = signal.Signals(signum).name
    assert f"interrupted by {name}:" in err and "Traceback" not in err
    assert f"python -m ceredis batch --resume {ledger}" in err
    assert not verify_ledger(ledger).complete
    code = main(["batch", "--quiet", "--resume", str(ledger), "--database", database])
    out = capsys.readouterr().out
    assert code == 0
    assert "checked the" in out and "recorded learners" in out
    assert "wrote to the database the" in out  # progress of writing them, then one line
    audit = verify_ledger(ledger)
    assert audit.complete and audit.root == expected_root


def test_resume_reports_the_torn_tail_it_cut(tmp_path, cohort, expected_root, capsys):
    """A half-written last line is cut on resume, and the message names its line and bytes."""
    ledger, database, _ = interrupted_batch(tmp_path, cohort, signal.SIGTERM)
    lines = ledger.read_bytes().count(b"\n")
    with open(ledger, "ab") as torn:
        torn.write(b'{"kind":"record","bo')
    size = ledger.stat().st_size
    assert main(["batch", "--quiet", "--resume", str(ledger), "--database", database]) == 0
    out = capsys.readouterr().out
    assert f"cut 20 bytes of line {lines + 1} at offset {size - 20}" in out
    assert verify_ledger(ledger).root == expected_root


def test_resume_accepts_a_regenerated_roster_that_lists_the_same_learners(
    tmp_path, cohort, expected_root
):
    """The header binds the learner list itself: a roster rewritten with the same ids in the
    same order (a comment added, CRLF line ends) resumes, with the uninterrupted root."""
    ledger, database, _ = interrupted_batch(tmp_path, cohort, signal.SIGTERM)
    roster = cohort[1]
    original = roster.read_bytes()
    roster.write_bytes(b"# regenerated\r\n" + original.replace(b"\n", b"\r\n"))
    try:
        assert main(["batch", "--quiet", "--resume", str(ledger), "--database", database]) == 0
    finally:
        roster.write_bytes(original)
    assert verify_ledger(ledger).root == expected_root


def test_resume_names_a_changed_roster_and_its_digest(tmp_path, cohort, capsys):
    """A roster regenerated since the run started: a precise refusal, not a mixed run."""
    evidence, roster = cohort
    copy = tmp_path / "roster.txt"
    copy.write_bytes(roster.read_bytes())
    ledger = tmp_path / "run.jsonl"
    database = f"sqlite:///{tmp_path / 'run.sqlite'}"
    argv = ["batch", "--quiet", "--source", str(evidence), "--file", str(copy)]
    assert main([*argv, "--ledger", str(ledger), "--database", database]) == 0
    copy.write_text("L00001\n")
    assert main(["batch", "--resume", str(ledger), "--database", database]) == 2
    err = capsys.readouterr().err
    assert "changed since the run started (sha256" in err and "put back the file" in err


def test_sample_refuses_to_overwrite_without_force(tmp_path, capsys):
    """An existing evidence file or roster is kept unless --force."""
    out = tmp_path / "c.jsonl"
    roster = tmp_path / "c.agents.txt"
    roster.write_text("precious\n")
    assert main(["sample", "--agents", "5", "--out", str(out)]) == 2
    assert f"{roster} already exists: give --force" in capsys.readouterr().err
    assert roster.read_text() == "precious\n" and not out.exists()
    assert main(["sample", "--agents", "5", "--out", str(out), "--force"]) == 0
    assert len(roster.read_text().split()) == 5 and out.stat().st_size > 0


def test_an_interrupted_sample_leaves_no_cohort(tmp_path):
    """SIGTERM in the middle of a long `sample`: neither file appears, no temp file stays."""
    out = tmp_path / "big.jsonl"
    command = [sys.executable, "-m", "ceredis", "sample", "--agents", "200000", "--out", str(out)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as child:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(tmp_path.glob(".big.jsonl.*")):
            time.sleep(0.01)
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err
    assert b"interrupted by SIGTERM: nothing written" in err
    assert os.listdir(tmp_path) == []
