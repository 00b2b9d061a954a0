"""What operators and teachers see: the batch's story, --json, progress, --dry-run, learners,
--help; each driven through the real command line in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from ceredis.cli import _parser
from ceredis.config import SETTINGS
from ceredis.referential import bundled_referential
from ceredis.report import BatchReport
from ceredis.sample import write_cohort
from ceredis.sources.files import bundled_cohort
from ledger import read_ledger

ROOT = Path(__file__).parents[1]
BOX = set("┏┓┗┛┃━│─└┘┌┐┡┩╇╈┳┻┼")
BAD = 25  # learners whose only record is invalid: more than the 20 the summary names


def ceredis(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``python -m ceredis`` as a real process, stdout and stderr captured (no TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "ceredis", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """12 sampled learners, then BAD learners whose evidence is invalid (they fail)."""
    path = tmp_path_factory.mktemp("ux") / "cohort.jsonl"
    write_cohort(path, bundled_referential(), 12, seed=3)
    bad = (
        {
            "agentId": f"ZBAD{i:02d}",
            "competencyId": "1.1",
            "evidenceId": f"bad-{i}",
            "evidenceType": "P1",
            "rawScore": 150,
            "timestamp": "2026-10-20T10:48:00+02:00",
        }
        for i in range(BAD)
    )
    with path.open("a", encoding="utf-8") as out:
        out.writelines(json.dumps(record) + "\n" for record in bad)
    return path


@pytest.fixture(scope="module")
def json_run(cohort, tmp_path_factory):
    """One ``batch --all --json`` of the cohort, stdout not a terminal; (process, ledger)."""
    where = tmp_path_factory.mktemp("run")
    ledger = where / "run.jsonl"
    done = ceredis(
        "batch", "--json", "--all", "--source", str(cohort), "--workers", "2",
        "--database", f"sqlite:///{where / 'r.sqlite'}", "--ledger", str(ledger),
        env={"CEREDIS_PROGRESS_INTERVAL": "0.001"},
    )  # fmt: skip
    return done, ledger


def ledger_facts(ledger: Path) -> tuple[list[dict], dict]:
    """The ledger's record bodies and its footer body."""
    records = list(read_ledger(ledger))
    return [r.body for r in records if r.kind == "record"], records[-1].body


def test_batch_json_is_one_document_that_agrees_with_the_ledger(json_run):
    """stdout holds exactly one JSON object; its counts, levels, failures and resultsRoot
    are the ledger's."""
    done, ledger = json_run
    assert done.returncode == 1, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.endswith("}\n")
    summary = json.loads(done.stdout)
    bodies, footer = ledger_facts(ledger)
    statuses = Counter(b["result"]["status"] for b in bodies)
    levels = Counter(b["result"]["cecrlLevel"] for b in bodies if b["result"]["status"] == "OK")
    held = sum(
        b["result"]["cecrlLevel"] != b["result"]["bandLevel"]
        for b in bodies
        if b["result"]["status"] == "OK"
    )
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (
        statuses["OK"],
        statuses["SKIPPED"],
        statuses["ERROR"],
    )
    assert summary["total"] == len(bodies) == footer["meta"]["counts"]["total"]
    assert summary["failed"] == BAD and summary["exitCode"] == done.returncode
    assert summary["levels"] == dict(levels) and summary["heldBelowBand"] == held
    assert summary["resultsRoot"] == footer["ledger"]["resultsRoot"]
    failed = [
        (b["agentId"], b["result"]["error"]) for b in bodies if b["result"]["status"] == "ERROR"
    ]
    assert [(f["agentId"], f["error"]) for f in summary["failures"]] == failed[:20]
    assert summary["failuresNotShown"] == BAD - 20
    assert summary["ledger"] == str(ledger) and Path(summary["report"]).is_file()
    assert summary["checkpoint"] is None and summary["runId"] and summary["elapsedSeconds"] > 0


def test_the_report_json_says_band_domains_levels_and_the_run(json_run, cohort):
    """The report file gains the band, domain scores, per-level counts, referential, source,
    store and engine version, and they agree with the ledger."""
    done, ledger = json_run
    summary = json.loads(done.stdout)
    report = json.loads(Path(summary["report"]).read_text(encoding="utf-8"), parse_float=Decimal)
    bodies, _ = ledger_facts(ledger)
    for detail, body in zip(report["details"], bodies, strict=True):
        assert detail["bandLevel"] == body["result"]["bandLevel"]
        assert detail["domainScores"] == body["result"]["domainScores"]
    assert report["levels"] == summary["levels"]
    assert report["heldBelowBand"] == summary["heldBelowBand"]
    referential = bundled_referential()
    assert (report["referentialId"], report["referentialHash"]) == (
        referential.id,
        referential.hash,
    )
    assert report["source"]["uri"] == str(cohort.resolve())
    assert report["store"]["kind"] == "sqlite" and report["engineVersion"]


def test_progress_lines_go_to_stderr_when_stdout_is_not_a_terminal(json_run):
    """A cron log shows life: labelled plain lines with a real total for --all."""
    done, _ = json_run
    lines = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    total = 12 + BAD
    assert lines, done.stderr
    assert f"/{total} learners, ok " in lines[-1]
    assert all("learners/s" in line and "elapsed" in line for line in lines)
    assert "remaining" in lines[0] and "failed" in lines[0]
    assert f"CEREDIS batch: {total} learners from cohort.jsonl" in done.stderr


def test_quiet_prints_no_progress(cohort, tmp_path):
    """--quiet: no progress lines, however short the interval."""
    done = ceredis(
        "batch", "--quiet", "--agent", "L00001", "--source", str(cohort),
        "--database", f"sqlite:///{tmp_path / 'r.sqlite'}", "--ledger", str(tmp_path / "l.jsonl"),
        env={"CEREDIS_PROGRESS_INTERVAL": "0.001"},
    )  # fmt: skip
    assert done.returncode == 0 and "progress: " not in done.stderr


def test_the_summary_tells_the_story(cohort, tmp_path):
    """After the table: levels granted, how many were held below their band, the first 20
    failed learners with their reason, then where the rest are; plurals agree."""
    done = ceredis(
        "batch", "--all", "--source", str(cohort), "--workers", "1",
        "--database", f"sqlite:///{tmp_path / 'r.sqlite'}", "--ledger", str(tmp_path / "s.jsonl"),
    )  # fmt: skip
    assert done.returncode == 1
    out = done.stdout
    assert "1 worker;" in out and "1 worker " in out and "1 workers" not in out
    assert "Levels granted: " in out and "held below their band by the strict level rules" in out
    assert f"Failed: {BAD} learners" in out
    named = [line for line in out.splitlines() if line.startswith("  • ZBAD")]
    assert len(named) == 20 and "rawScore 150 is outside 0–100" in named[0]
    assert f"… and {BAD - 20} more: see {tmp_path / 's.report.json'}" in out


def test_plurals_agree():
    report = BatchReport(concurrency=1)
    report.counts.add("OK")
    assert str(report).startswith("1 learner: ") and "(1 worker," in str(report)


ONE_MANY = re.compile(r"(?<![\d,.])1 (learners|workers|records|rows|problems|lines)\b")


def test_plurals_agree_for_one_learner_in_every_command(cohort, tmp_path):
    """One learner, one worker, one record, through the real commands: never "1 learners"."""
    one = tmp_path / "one.jsonl"
    with cohort.open(encoding="utf-8") as lines:
        one.write_text("".join(x for x in lines if '"L00001"' in x), encoding="utf-8")
    ledger, store = tmp_path / "one.ledger.jsonl", f"sqlite:///{tmp_path / 'r.sqlite'}"
    runs = {
        "sample": ceredis("sample", "--agents", "1", "--out", str(tmp_path / "s.jsonl")),
        "learners": ceredis("learners", "--source", str(one)),
        "batch": ceredis("batch", "--all", "--source", str(one), "--workers", "1",
                         "--database", store, "--ledger", str(ledger),
                         env={"CEREDIS_PROGRESS_INTERVAL": "0.001"}),
        "dry-run": ceredis("batch", "--dry-run", "--all", "--source", str(one), "--workers", "1",
                           "--database", store, "--ledger", str(tmp_path / "n.jsonl")),
    }  # fmt: skip
    runs |= {
        "verify": ceredis("verify", str(ledger), "--database", store),
        "export": ceredis("export", str(ledger), "--out", str(tmp_path / "one.csv")),
        "restore": ceredis("restore", str(ledger), "--database", f"sqlite:///{tmp_path / 'b'}"),
        "ceredis-ledger": subprocess.run(
            [sys.executable, "-m", "ledger", "verify", str(ledger)], capture_output=True, text=True
        ),
    }
    for name, done in runs.items():
        assert done.returncode == 0, (name, done.stderr)
        assert not ONE_MANY.search(done.stdout + done.stderr), (name, done.stdout + done.stderr)
    said = {name: done.stdout + done.stderr for name, done in runs.items()}
    assert "for 1 learner to" in said["sample"] and "1 learner in one.jsonl" in said["learners"]
    assert "CEREDIS batch: 1 learner from one.jsonl into" in said["batch"]
    assert "1 worker;" in said["batch"] and "1 worker\n" in said["dry-run"]
    assert "progress: 1/1 learner, ok 1," in said["batch"]
    assert ": 1 record: 1 replayed identically" in said["verify"]
    assert "database: 1 result row and 1 profile row checked" in said["verify"]
    assert "wrote 1 learner of" in said["export"] and "(1 of 1 record replayed)" in said["export"]
    assert ": 1 learner row written" in said["restore"]
    assert ": ok: 1 record, complete" in said["ceredis-ledger"]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    """The embedded default, planned: no data directory, ledger, database or report appears."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"CEREDIS_DATA_DIR": str(home / "data"), "CEREDIS_LEDGER_DIR": str(home / "ledgers")}
    before = tree(home)
    done = ceredis("batch", "--dry-run", env=env, cwd=home)
    assert done.returncode == 0, done.stderr
    assert tree(home) == before == []
    for label in ("learners", "source", "store", "ledger", "report", "workers", "rate"):
        assert f"\n  {label} " in done.stdout
    assert "120 learners" in done.stdout and "bundled cohort" in done.stdout
    assert "4 workers" in done.stdout and str(home / "ledgers") in done.stdout


def test_dry_run_does_not_combine_with_resume(tmp_path):
    done = ceredis("batch", "--dry-run", "--resume", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2 and "does not combine with --resume" in done.stderr


def test_learners_lists_the_bundled_cohort():
    """With no source, the bundled cohort's learner ids, one a line, sorted."""
    done = ceredis("learners")
    assert done.returncode == 0, done.stderr
    with bundled_cohort().open(encoding="utf-8") as lines:
        expected = sorted({json.loads(line)["agentId"] for line in lines if line.strip()})
    assert done.stdout.splitlines() == expected
    assert f"{len(expected)} learners in bundled cohort" in done.stderr


def test_learners_of_a_file_source(cohort):
    done = ceredis("learners", "--source", str(cohort))
    assert done.returncode == 0
    ids = done.stdout.splitlines()
    assert len(ids) == 12 + BAD and ids[-1] == f"ZBAD{BAD - 1:02d}" and ids == sorted(ids)


def test_every_command_help_ends_with_environment_config_and_examples():
    """`ceredis COMMAND --help`, run for real: generated from the settings table, batch
    names every variable, none drifts."""
    commands = _parser()._subparsers._group_actions[0].choices
    for name in commands:
        done = ceredis(name, "--help")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        environment, _, rest = text.partition("\nenvironment:\n")[2].partition("\n\nconfig file: ")
        assert environment, f"{name}: no environment section"
        # the config file's path wraps where the help's width says (a longer HOME, a
        # later break): compare its words
        assert "config.toml (CEREDIS_CONFIG names another)" in " ".join(rest.split())
        examples = rest.partition("\n\nexamples:\n")[2].splitlines()
        assert len(examples) == 2 and all(e.startswith("  ceredis") for e in examples), name
    batch = ceredis("batch", "--help").stdout
    for setting in SETTINGS:
        assert ", ".join(setting.env) in batch
    assert "CEREDIS_SOURCE, CASS_URL" in ceredis("evaluate", "--help").stdout
    for name in ("verify", "export", "report"):  # they draw progress, so the interval applies
        assert "CEREDIS_PROGRESS_INTERVAL" in ceredis(name, "--help").stdout


def test_evaluate_prints_plain_text_when_not_a_terminal():
    """No box drawing and no 80-column wrapping in cron mail: every rule is one line."""
    done = ceredis("evaluate", "--agent", "L00001")
    result = json.loads(ceredis("evaluate", "--agent", "L00001", "--json").stdout)
    assert done.returncode == 0 and not BOX & set(done.stdout)
    lines = done.stdout.splitlines()
    for step in result["levelDecision"]:
        for check in step["checks"]:
            assert any(line.endswith(f" {check['rule']}: {check['detail']}") for line in lines)
    assert any(len(line) > 80 for line in lines)


def test_the_ledger_script_is_ceredis_ledger():
    """The console script collides with nothing, is installed, and its help names itself."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["ceredis-ledger"] == "ledger.cli:main" and "ledger" not in scripts
    installed = Path(sys.executable).parent / "ceredis-ledger"
    for argv in ([sys.executable, "-m", "ledger", "--help"], [str(installed), "--help"]):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        assert done.stdout.startswith("usage: ceredis-ledger ")


def test_verify_json_is_one_document_that_agrees_with_the_ledger(json_run, tmp_path):
    """`verify --json`: stdout is the audit alone, its figures are the ledger's; a changed
    record gives exit 1 and a finding naming its line and learner."""
    _, ledger = json_run
    done = ceredis("verify", str(ledger), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1
    audit = json.loads(done.stdout)
    bodies, footer = ledger_facts(ledger)
    header = next(read_ledger(ledger)).body
    assert audit["ok"] and audit["complete"] and audit["findings"] == []
    assert audit["records"] == audit["identical"] == len(bodies) == 12 + BAD
    assert audit["resultsRoot"] == audit["recomputedRoot"] == footer["ledger"]["resultsRoot"]
    assert audit["runId"] == header["meta"]["runId"] and audit["ledger"] == str(ledger)
    lines = ledger.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"status":"OK"', b'"status":"ERROR"', 1)
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(b"".join(lines))
    done = ceredis("verify", str(changed), "--json")
    assert done.returncode == 1 and done.stdout.count("\n") == 1
    findings = json.loads(done.stdout)["findings"]
    assert findings[0]["line"] == 4 and findings[0]["agentId"] == bodies[2]["agentId"]


def test_batch_json_names_the_checkpoint_when_the_run_is_signed(cohort, tmp_path):
    """With CEREDIS_SIGNING_KEY (a key from `ceredis keygen`), the summary's checkpoint is
    the signed file beside the ledger, and it signs the summary's resultsRoot."""
    keygen = ceredis("keygen", "school.example/ceredis", "--out", str(tmp_path / "signer"))
    assert keygen.returncode == 0, keygen.stderr
    ledger = tmp_path / "signed.jsonl"
    done = ceredis(
        "batch", "--json", "--agent", "L00001", "--agent", "L00002", "--source", str(cohort),
        "--database", f"sqlite:///{tmp_path / 'r.sqlite'}", "--ledger", str(ledger),
        env={"CEREDIS_SIGNING_KEY": str(tmp_path / "signer.key")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    checkpoint = tmp_path / "signed.checkpoint"
    assert summary["checkpoint"] == str(checkpoint) and checkpoint.is_file()
    verified = ceredis(
        "verify", str(ledger), "--json", "--checkpoint", str(checkpoint),
        "--key", str(tmp_path / "signer.pub"), "--root", summary["resultsRoot"],
    )  # fmt: skip
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout
