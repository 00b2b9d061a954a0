"""The README says what the code does: commands, the API example, the exported names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ceredis
from ceredis.cli import _parser

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_is_documented_and_has_help():
    """Each subcommand of `python -m ceredis` appears in the README and has help text."""
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse's public-enough map
    for name, sub in commands.items():
        assert f"`{name}" in README, f"README does not mention `{name}`"
        assert sub.description or sub.format_help()


def test_the_python_api_example_runs(tmp_path):
    """The README's Python example runs as written, as a script in an empty directory, and
    says what it says."""
    block = re.search(r"## Python API\s+```python\n(.*?)```", README, re.S).group(1)
    checks = (
        '\nassert str(result["competencies"]["5.3"]["score"]) == "24.00"'
        "\nassert report.return_code == 0 and audit_ledger(report.ledger).ok"
        '\nprint("example ok")\n'
    )
    (tmp_path / "example.py").write_text(block + checks, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout == "example ok\n", done.stderr


def test_exported_names_resolve():
    """Every name in ceredis.__all__ resolves, and nothing else is offered."""
    for name in ceredis.__all__:
        assert getattr(ceredis, name) is not None
    assert sorted(ceredis.__all__) == ceredis.__all__
