"""The command line loads only what a run needs: start-up time is most of a small batch's.

Checked by the modules a fresh interpreter holds afterwards, not by timing: the command
line alone loads no rich, and a batch from a file into SQLite loads no PostgreSQL driver,
no HTTP client, no Dask, no cryptography and no progress bar (there is no terminal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("psycopg", "ceredis.sources.http", "dask", "distributed", "cryptography", "rich.progress")


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules loaded once *code* has run in a new interpreter (printed last, as JSON)."""
    code += "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_command_line_alone_loads_no_rich_and_no_driver() -> None:
    modules = loaded_after("import ceredis.cli")
    assert heavy(modules, ("rich", *HEAVY)) == []


def test_a_file_batch_into_sqlite_loads_nothing_it_does_not_use(tmp_path: Path) -> None:
    code = (
        "from ceredis.cli import main\n"
        f"code = main(['batch', '--agent', 'L00001', '--agent', 'L00002', '--workers', '1', "
        f"'--database', 'sqlite:///{tmp_path}/r.sqlite', '--ledger', '{tmp_path}/run.jsonl', "
        "'--quiet', '--json'])\n"
        "assert code == 0, code"
    )
    modules = loaded_after(code)
    assert "ceredis.engine" in modules and (tmp_path / "run.jsonl").exists()
    assert heavy(modules, HEAVY) == []
