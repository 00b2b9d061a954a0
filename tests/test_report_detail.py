"""The report's per-learner lines, written from what each outcome carries (the band and
domain scores the worker had), are exactly those the exact decoder reads back from the
learner's record: same bytes, same digits (72.50)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ceredis.outcome import Outcome
from ceredis.report import BatchReport, ReportFile
from ledger.canonical import canonical
from ledger.decode import parse

STAMP = {"engineVersion": "0.1.0", "referentialVersion": "ceredis-1.1"}


def ok_result(agent: str, **extra: Any) -> dict[str, Any]:
    return {
        "agentId": agent,
        "bandLevel": "B1",
        "cecrlLevel": "A2",
        "ceredisScore": Decimal("301.50"),
        "competencies": {"1.1": {"score": Decimal("66.50"), "status": "validée"}},
        "domainScores": {"D1": Decimal("72.50"), "D2": Decimal("0.00"), "D3": None},
        "levelDecision": [{"checks": [], "level": "A2", "passed": True, "reasons": []}],
        "status": "OK",
        **STAMP,
        **extra,
    }


RESULTS = {
    "ok, exact digits": ok_result("L1"),
    "skipped: nulls": {
        **ok_result("L2"),
        "bandLevel": None,
        "cecrlLevel": None,
        "ceredisScore": None,
        "domainScores": None,
        "status": "SKIPPED",
    },
    "error": {"agentId": "L3", "bandLevel": None, "cecrlLevel": None, "ceredisScore": None,
              "domainScores": None, "error": "source down", "status": "ERROR", **STAMP},
    "nested look-alike keys": ok_result(
        "L4",
        competencies={
            "1.1": {"a": 1, "cecrlLevel": "C2", "domainScores": {"D1": Decimal("1.10")}}
        },
    ),
    "look-alike keys inside strings": ok_result(
        "L5",
        domainScores={'D","engineVersion":"x': Decimal("10.00"), "}{": Decimal("2.20")},
        reasons=[',"domainScores":{"D1":1.00},"cecrlLevel":"C2"'],
    ),
    "scores last, no other keys": {"agentId": "L6", "bandLevel": "A1", "cecrlLevel": "A1",
                                   "domainScores": {"D1": Decimal("5.50")}},
    "no band, no scores": {"agentId": "L7", "status": "OK"},
    "a band that is not a string": ok_result("L8", bandLevel=Decimal("1.50")),
    "an agent id with quotes": ok_result('L"9\\', bandLevel="A2"),
}  # fmt: skip


def outcome_of(index: int, result: dict[str, Any]) -> Outcome:
    body = {"agentId": result["agentId"], "inputs": [{"rawScore": Decimal("3.0")}],
            "result": result, "status": result.get("status", "OK")}  # fmt: skip
    score, level = result.get("ceredisScore"), result.get("cecrlLevel")
    return Outcome(index, result["agentId"], body["status"], score, level, canonical(body),
                   1234, 2.5, result.get("error"), result.get("bandLevel"),
                   result.get("domainScores"))  # fmt: skip


def expected_line(outcome: Outcome, result: dict[str, Any]) -> bytes:
    """The line as the exact decoder reads the result back from the record."""
    exact = parse(canonical(result))
    return canonical(
        {
            "agentId": outcome.agent_id,
            "status": outcome.status,
            "ceredisScore": outcome.score,
            "bandLevel": exact.get("bandLevel"),
            "cecrlLevel": outcome.level,
            "domainScores": exact.get("domainScores"),
            "workerId": outcome.worker,
            "durationMs": Decimal("2.500"),
            "error": outcome.error,
        }
    )


@pytest.mark.parametrize("case", list(RESULTS))
def test_detail_matches_the_exact_decoder(tmp_path: Path, case: str) -> None:
    result = RESULTS[case]
    outcome = outcome_of(0, result)
    report = ReportFile(tmp_path / "report.json")
    report.detail(outcome)
    report.finish(BatchReport())
    lines = (tmp_path / "report.json").read_bytes().split(b"\n")
    assert lines[1] == expected_line(outcome, result)


def test_digits_are_kept(tmp_path: Path) -> None:
    report = ReportFile(tmp_path / "report.json")
    report.detail(outcome_of(0, RESULTS["ok, exact digits"]))
    report.finish(BatchReport())
    text = (tmp_path / "report.json").read_text(encoding="utf-8")
    assert '"domainScores":{"D1":72.50,"D2":0.00,"D3":null}' in text
    detail = json.loads(text)["details"][0]
    assert detail["bandLevel"] == "B1"


def test_tally_counts_held_learners(tmp_path: Path) -> None:
    """The outcome's band feeds the held-below-band count."""
    report = ReportFile(tmp_path / "report.json")
    for index, case in enumerate(RESULTS):
        report.detail(outcome_of(index, RESULTS[case]))
    report.abandon()
    assert report.tally.held == 4  # L1, L4, L5 (band B1, granted A2) and L8 (band 1.50)
