"""``ceredis report --html``: the cohort page, rendered in a real headless Chromium.

One real 303-learner run with a signed checkpoint; the page is rendered by Chromium and
every count it shows is read back from the rendered DOM (``data-count``) and compared
with counts made here from the ledger's records; a screenshot is taken for a person to
look at. Chromium is required in CI (``.ci/run`` installs it): there it fails, not skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ceredis.proofs import checkpoint_path, write_checkpoint
from ledger.note import read_signer_key
from tests.cohort_run import SCRIPT_ID, CohortRun, ceredis, make_run, tamper

LEVELS = ["PRE_A2", "A2", "B1", "B2", "C1"]
DOMAINS = ["D1", "D2", "D3", "D4", "D5"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("no chromium on this machine (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CohortRun:
    """The run, with a checkpoint signed by a key from ``ceredis keygen`` beside its ledger."""
    old = os.umask(0o022)
    try:
        run = make_run(tmp_path_factory.mktemp("report"))
        keygen = ceredis("keygen", "ceredis.example/runs", "--out", run.dir / "signer")
        assert keygen.returncode == 0, keygen.stderr
        write_checkpoint(run.ledger, read_signer_key(run.dir / "signer.key"))
        page = run.dir / "report.html"
        done = ceredis("report", run.ledger, "--html", page)
        assert done.returncode == 0, done.stderr
        assert page.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    return run


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with everything that could reach a network turned off."""
    return subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip


class Dom(HTMLParser):
    """What a test reads from a rendered DOM: counts, domain means, tags, section texts."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.domains: dict[str, str] = {}
        self.tags: Counter[str] = Counter()
        self.sections: dict[str, str] = {}
        self._open: list[tuple[str, str]] = []  # (attribute=value, text so far)
        self._section: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        attr = dict(attrs)
        if tag == "section":
            self._section = attr.get("id")
        for key in ("data-count", "data-domain"):
            if attr.get(key):
                self._open.append((f"{key}={attr[key]}", ""))

    def handle_data(self, data: str) -> None:
        self._open = [(key, text + data) for key, text in self._open]
        if self._section:
            self.sections[self._section] = self.sections.get(self._section, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("b", "td", "span") and self._open:
            key, text = self._open.pop()
            kind, name = key.split("=", 1)
            if kind == "data-count":
                self.counts[name] = int(text.replace(",", ""))
            else:
                self.domains[name] = text


@pytest.fixture(scope="module")
def dom(run: CohortRun, chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Dom:
    profile = tmp_path_factory.mktemp("chromium")
    page = run.dir / "report.html"
    dumped = browse(chromium, profile, "--dump-dom", page.as_uri())
    assert dumped.returncode == 0, dumped.stderr
    parsed = Dom()
    parsed.feed(dumped.stdout)
    return parsed


def expected_counts(run: CohortRun) -> dict[str, int]:
    """Every count the page must show, counted here from the ledger's records."""
    ok = [r for r in run.results if r["status"] == "OK"]
    held = [r for r in ok if r["cecrlLevel"] != r["bandLevel"]]
    statuses = Counter(r["status"] for r in run.results)
    bins = Counter(min(11, int(Decimal(r["ceredisScore"])) // 50) for r in ok)
    counts = {
        "learners": len(run.results),
        "ok": statuses["OK"],
        "skipped": statuses["SKIPPED"],
        "failed": statuses["ERROR"],
        "held": len(held),
        "refusals": len(held),
        "failures": statuses["ERROR"],
    }
    for level in LEVELS:
        counts[f"band-{level}"] = sum(r["bandLevel"] == level for r in ok)
        counts[f"granted-{level}"] = sum(r["cecrlLevel"] == level for r in ok)
        counts[f"held-{level}"] = sum(r["bandLevel"] == level for r in held)
    counts.update({f"score-{50 * i}-{50 * i + 50}": bins[i] for i in range(12)})
    return counts


def test_the_rendered_counts_equal_the_ledgers(run: CohortRun, dom: Dom):
    expected = expected_counts(run)
    assert dom.counts == expected
    assert expected["failed"] == 2 and expected["held"] > 0 and expected["skipped"] > 0
    assert sum(expected[f"granted-{lv}"] for lv in LEVELS) == expected["ok"]


def test_the_domain_averages_are_the_ok_learners_means(run: CohortRun, dom: Dom):
    ok = [r for r in run.results if r["status"] == "OK"]
    for domain in DOMAINS:
        mean = sum(Decimal(r["domainScores"][domain]) for r in ok) / len(ok)
        assert dom.domains[domain] == str(mean.quantize(Decimal("0.01")))
    assert "D5 (strict rules)" in dom.sections["domains"]
    assert "B2 needs ≥ 60, C1 needs ≥ 70" in dom.sections["domains"]


def test_refusals_and_failures_carry_the_results_reasons(run: CohortRun, dom: Dom):
    for result in run.results:
        if result["status"] == "OK" and result["cecrlLevel"] != result["bandLevel"]:
            assert result["agentId"] in dom.sections["refusals"]
            for step in result["levelDecision"]:
                for reason in step["reasons"]:
                    assert reason in dom.sections["refusals"]
        if result["status"] == "ERROR":
            assert result["agentId"] in dom.sections["failures"]
            assert result["error"] in dom.sections["failures"]


def test_input_text_is_escaped_and_the_page_fetches_nothing(run: CohortRun, dom: Dom):
    assert SCRIPT_ID in dom.sections["failures"]  # shown as text ...
    assert dom.tags["script"] == 0  # ... never run as a script
    assert not {"link", "img", "iframe", "object", "embed"} & set(dom.tags)
    html = (run.dir / "report.html").read_text("utf-8")
    assert not re.search(r"\b(src|href|srcset)\s*=|url\(|@import", html, re.I)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "@media print" in html and dom.tags["svg"] == 3


def test_the_run_facts_and_checkpoint_are_shown(run: CohortRun, dom: Dom):
    facts = dom.sections["facts"]
    footer = run.ledger.read_text("utf-8").splitlines()[-1]
    root = re.search(r'"resultsRoot":"([0-9a-f]{64})"', footer).group(1)
    for fact in (run.run_id, root, "ceredis-1.1", "verified: intact, complete and reproducible"):
        assert fact in facts
    assert checkpoint_path(run.ledger).read_text("utf-8") in facts


def test_a_screenshot_of_the_page_and_a_printout(
    run: CohortRun, chromium: str, tmp_path: Path, record_property, capsys
):
    shot = tmp_path / "report.png"
    taken = browse(
        chromium,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        (run.dir / "report.html").as_uri(),
    )
    assert taken.returncode == 0, taken.stderr
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 50_000
    pdf = tmp_path / "report.pdf"
    printed = browse(
        chromium, tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
        (run.dir / "report.html").as_uri(),
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    pages = re.search(rb"/Type /Pages.*?/Count (\d+)", pdf.read_bytes(), re.S)
    assert pdf.read_bytes().startswith(b"%PDF") and int(pages.group(1)) >= 2
    record_property("screenshot", str(shot))
    with capsys.disabled():
        print(f"\nHTML report screenshot: {shot}")


def test_a_tampered_ledger_is_refused_unless_unverified(run: CohortRun, chromium, tmp_path):
    ledger, _, _ = tamper(run, tmp_path / "tampered.jsonl")
    page = tmp_path / "page.html"
    refused = ceredis("report", ledger, "--html", page)
    assert refused.returncode == 1 and "fails verification" in refused.stderr
    assert not page.exists()
    accepted = ceredis("report", ledger, "--html", page, "--unverified")
    assert accepted.returncode == 0, accepted.stderr
    dumped = browse(chromium, tmp_path / "profile", "--dump-dom", page.as_uri())
    parsed = Dom()
    parsed.feed(dumped.stdout)
    assert "NOT verified" in parsed.sections["facts"]
    assert "none beside the ledger" in parsed.sections["facts"]  # the copy has no checkpoint
    assert parsed.counts["learners"] == len(run.results)


def test_usage_and_unreadable_input_exit_2(run: CohortRun, tmp_path: Path):
    for args in (
        [run.ledger],  # no --html
        [tmp_path / "missing.jsonl", "--html", tmp_path / "p.html"],
        [run.dir / "cohort.jsonl", "--html", tmp_path / "p.html"],
        [run.ledger, "--html", tmp_path / "no-such-dir" / "p.html"],
    ):
        done = ceredis("report", *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "p.html").exists()
