"""The command line's error boundary: a bug is one line and exit 70, never a traceback."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import ceredis.referential
from ceredis.cli import main
from ceredis.config import cache_dir

LINE = re.compile(r"internal error: ZeroDivisionError: boom — this is a bug; details in (\S+)")


def explode(*args: object) -> None:
    """A stand-in for a bug deep in a command."""
    raise ZeroDivisionError("boom")


def test_unexpected_exception_is_one_line_and_a_private_file(monkeypatch, capsys):
    """The traceback goes to a 0600 file in the cache directory; stderr gets one line."""
    monkeypatch.setattr(ceredis.referential, "load_referential", explode)
    assert main(["referential", "show"]) == 70
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    assert len(out.err.strip().splitlines()) == 1
    path = Path(LINE.search(" ".join(out.err.split())).group(1))
    assert path.parent == cache_dir() / "errors"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    details = path.read_text(encoding="utf-8")
    assert "Traceback" in details and "ZeroDivisionError: boom" in details and "explode" in details


def test_unexpected_exception_in_a_real_process(tmp_path):
    """Through a real interpreter: exit 70, one line on stderr, nothing on stdout."""
    code = (
        "import sys, ceredis.referential as r\n"
        "def explode(*a): raise ZeroDivisionError('boom')\n"
        "r.load_referential = explode\n"
        "from ceredis.cli import main\n"
        "sys.exit(main(['referential', 'show']))\n"
    )
    env = {**os.environ, "CEREDIS_CACHE_DIR": str(tmp_path), "COLUMNS": "300"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 70 and done.stdout == ""
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert LINE.search(done.stderr)
    (saved,) = (tmp_path / "errors").iterdir()
    assert "ZeroDivisionError: boom" in saved.read_text(encoding="utf-8")
