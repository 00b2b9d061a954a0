"""The README says what the code does: commands, the API example, the exported names."""

from __future__ import annotations

import re
from pathlib import Path

import ceredis
from ceredis.cli import _parser
from ceredis.referential import bundled_referential
from ceredis.sample import write_cohort

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_is_documented_and_has_help():
    """Each subcommand of `python -m ceredis` appears in the README and has help text."""
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse's public-enough map
    for name, sub in commands.items():
        assert f"`{name}" in README, f"README does not mention `{name}`"
        assert sub.description or sub.format_help()


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    """The README's Python example runs as written and says what it says."""
    block = re.search(r"## Python API\s+```python\n(.*?)```", README, re.S).group(1)
    write_cohort(tmp_path / "cohort.jsonl", bundled_referential(), 12, seed=1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert str(scope["result"]["competencies"]["5.3"]["score"]) == "24.00"
    assert scope["report"].return_code == 0


def test_exported_names_resolve():
    """Every name in ceredis.__all__ resolves, and nothing else is offered."""
    for name in ceredis.__all__:
        assert getattr(ceredis, name) is not None
    assert sorted(ceredis.__all__) == ceredis.__all__
