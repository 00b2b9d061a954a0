"""The wheel ships the engine and the ledger, never the test doubles or their fixtures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a checkout holds that is no part of the source a wheel is built from.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
#: Names that only the doubles, the fixture builders or the Ralph harness define or use.
DOUBLE_CODE = re.compile(
    r"\bdoubles\b\.|import doubles|ceredis\.testing|cass_double|CassDouble|\bralph\b|RalphLRS"
    r"|encrypt_value|\bwrap_secret|def verify_entry|build_fixtures"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel ``pip wheel`` builds from a copy of the checkout (no stale ``build/``)."""
    source = tmp_path_factory.mktemp("source") / "ceredis"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", out]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("ceredis-*.whl")
    return zipfile.ZipFile(built)


@pytest.mark.slow
def test_the_wheel_holds_the_engine_and_the_ledger(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {"ceredis/engine.py", "ceredis/sources/kbac.py", "ledger/writer.py"} <= names
    assert "ceredis/data/cohort.jsonl" in names


@pytest.mark.slow
def test_the_wheel_holds_no_double_fixture_or_ralph_code(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"ceredis", "ledger"}, tops
    for name in wheel.namelist():
        assert not re.search(r"testing|double|fixture|ralph", name), name
        if name.endswith(".py"):
            found = DOUBLE_CODE.findall(wheel.read(name).decode("utf-8"))
            assert not found, f"{name} ships test-double code: {sorted(set(found))}"
