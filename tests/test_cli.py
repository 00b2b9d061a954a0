"""The command line, called in-process through ``main(argv)`` as a user would type it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from ceredis.cli import main
from ceredis.scoring import evaluate
from ceredis.sources import prepare_source
from ledger.canonical import canonical
from tests.builders import every_competency, record
from tests.test_files import write_jsonl

NINE = [
    ("A", {"D1": 90, "D2": 90, "D3": 90, "D4": 90, "D5": 90}, "540.00", "C1", "C1"),
    ("C", {"D1": 95, "D2": 95, "D3": 95, "D4": 95, "D5": 62}, "530.40", "C1", "B2"),
    ("F", {"D1": 100, "D2": 100, "D3": 100, "D4": 100, "D5": 55}, "546.00", "C1", "B1"),
]


@pytest.fixture
def nine(tmp_path, referential):
    """The §9 learners in one JSON Lines export."""
    records = [r for name, scores, *_ in NINE for r in every_competency(referential, scores, name)]
    records.append(record("1.1", "P1", 100, agent="single"))
    return write_jsonl(tmp_path / "nine.jsonl", records)


@pytest.mark.parametrize(
    ("agent", "score", "band", "granted"),
    [(n, s, b, g) for n, _, s, b, g in NINE] + [("single", "0.00", "PRE_A2", "PRE_A2")],
)
def test_evaluate_json_reproduces_section_9(nine, capsysbinary, agent, score, band, granted):
    """`evaluate --json` gives exactly the §9 score, band and granted level."""
    assert main(["evaluate", "--agent", agent, "--source", str(nine), "--json"]) == 0
    out = capsysbinary.readouterr().out
    result = json.loads(out, parse_float=Decimal)
    assert (f"{result['ceredisScore']:.2f}", result["bandLevel"], result["cecrlLevel"]) == (
        score,
        band,
        granted,
    )
    assert f'"ceredisScore":{score},'.encode() in out  # two decimals on the wire


def test_evaluate_json_is_exactly_the_result_object(nine, capsysbinary, referential):
    """`--json` prints the canonical bytes of the §10 result object and nothing else."""
    main(["evaluate", "--agent", "C", "--source", str(nine), "--json"])
    source = prepare_source(str(nine)).open()
    expected = canonical(evaluate("C", source.fetch("C"), referential)) + b"\n"
    assert capsysbinary.readouterr().out == expected


def test_evaluate_explains_for_a_teacher(nine, capsys, monkeypatch):
    """The explanation shows competencies, domains, the score and each rule checked."""
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["evaluate", "--agent", "C", "--source", str(nine)]) == 0
    out = capsys.readouterr().out
    for text in (
        "Competencies",
        "Domains",
        "CEREDIS score 530.40 / 600 → band C1",
        "C1     refused",
        "✗ domainMinimum: D5 62.00 < 70",
        "✓ requiredEvidenceTypes: P3, P4",
        "B2     granted",
        "Granted level: B2",
    ):
        assert text in out


def test_evaluate_error_learner_lists_reasons_and_exits_1(tmp_path, capsys):
    """A learner with invalid evidence is explained as ERROR with each reason; exit 1."""
    path = write_jsonl(tmp_path / "e.jsonl", [record("1.1", "P9", 50), record("1.2", "P1", 500)])
    assert main(["evaluate", "--agent", "L1", "--source", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: 2 invalid evidence records" in out
    assert "unknown evidenceType 'P9'" in out and "rawScore 500 is outside 0–100" in out


def test_evaluate_bundled_cohort_by_default(capsys):
    """Without --source, evaluate reads the bundled cohort."""
    assert main(["evaluate", "--agent", "L00001", "--json"]) == 0
    assert '"agentId":"L00001"' in capsys.readouterr().out


def test_usage_errors_exit_2(capsys):
    """A missing option or a bad source exits 2 with a message."""
    with pytest.raises(SystemExit) as caught:
        main(["evaluate"])
    assert caught.value.code == 2
    assert main(["evaluate", "--agent", "x", "--source", "nope.jsonl"]) == 2
    assert "evidence file nope.jsonl does not exist" in capsys.readouterr().err


def test_sample_is_deterministic_for_a_seed(tmp_path, capsys):
    """The same seed writes the same bytes; another seed writes others."""
    digests = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        assert (
            main(
                [
                    "sample",
                    "--agents",
                    "50",
                    "--seed",
                    str(seed),
                    "--out",
                    str(tmp_path / f"{name}.jsonl"),
                ]
            )
            == 0
        )
        digests.append(hashlib.sha256((tmp_path / f"{name}.jsonl").read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]
    assert "roster (2 without evidence)" in capsys.readouterr().out
    assert len((tmp_path / "a.agents.txt").read_text().split()) == 50


def test_sample_of_1000_yields_all_five_levels(tmp_path, referential):
    """`sample --agents 1000` gives learners at every level, some D5-refused, some skipped."""
    out = tmp_path / "cohort.jsonl"
    assert main(["sample", "--agents", "1000", "--seed", "0", "--out", str(out)]) == 0
    source = prepare_source(str(out)).open()
    levels, statuses, refused = Counter(), Counter(), 0
    for agent in (tmp_path / "cohort.agents.txt").read_text().split():
        result = evaluate(agent, source.fetch(agent), referential)
        statuses[result["status"]] += 1
        if result["status"] == "OK":
            levels[result["cecrlLevel"]] += 1
            refused += result["cecrlLevel"] != result["bandLevel"]
    assert set(levels) == {"PRE_A2", "A2", "B1", "B2", "C1"}
    assert statuses["SKIPPED"] > 0 and refused > 20


def test_module_entry_point_and_console_script_agree():
    """`python -m ceredis --version` runs as a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "ceredis", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("ceredis ")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--workers", "0"], {}, "--workers: the worker count must be a whole number ≥ 1, not 0"),
        ([], {"CEREDIS_MAX_WORKERS": "many"}, "CEREDIS_MAX_WORKERS: the worker count must be"),
        (["--database", "mysql://x/y"], {}, "unknown database URL 'mysql://x/y'"),
        (["--source", "x.jsonl", "--all", "--agent", "L1"], {}, "not allowed with argument"),
        (["--source", "missing.jsonl", "--all"], {}, "evidence file missing.jsonl does not exist"),
        (["--resume", "nowhere.jsonl"], {}, "nowhere.jsonl: cannot read"),
    ],
)
def test_batch_configuration_errors_exit_2(capsys, monkeypatch, argv, env, message):
    """A bad option, URL or environment variable exits 2 with a message naming it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(["batch", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
