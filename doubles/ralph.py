"""A real Ralph LRS (openfun/ralph, FS backend) on 127.0.0.1, for tests and benchmarks.

Ralph runs in its own virtual environment, never the project's: its pins (fastapi,
pydantic, uvicorn…) must not leak into ours. The venv is provisioned once with pip
(``ralph-malph[lrs]`` plus ``requests``, which that extra forgets) and reused while its
marker file names the same pinned requirements. Statements are seeded by writing
``fs_lrs.jsonl`` directly: the FS backend accepts only one POST per data file
(``cass-api.md`` §6.3).

    with RalphLRS(statements, "ceredis", "s3cret") as lrs:
        lrs.base_url   # "http://127.0.0.1:PORT/xAPI/"
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ledger.canonical import canonical

__all__ = [
    "RALPH_REQUIREMENTS",
    "RalphError",
    "RalphLRS",
    "default_venv_dir",
    "provision",
]

#: What the Ralph venv holds; changing this list re-provisions it.
RALPH_REQUIREMENTS = ("ralph-malph[lrs]==5.1.0", "requests")

#: Environment variable naming the Ralph venv directory (default: ``<repo>/.cache``).
VENV_ENV = "CEREDIS_RALPH_VENV"

_MARKER = "ceredis-ralph.json"
_PROVISION_TIMEOUT = 600.0
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 10.0
# Low bcrypt cost: the hash only guards a throwaway test LRS, and Ralph re-checks it
# whenever its credentials cache misses.
_BCRYPT_ROUNDS = 4
_HASH_SCRIPT = (
    "import bcrypt, sys; "
    "print(bcrypt.hashpw(sys.stdin.buffer.read(), bcrypt.gensalt(rounds=int(sys.argv[1])))"
    ".decode())"
)
# Stand-in for "the LRS stored this now"; fixed, so a seeded file is reproducible.
_STORED = "2026-01-01T00:00:00+00:00"


class RalphError(RuntimeError):
    """The Ralph LRS could not be provisioned, started or seeded."""


def default_venv_dir() -> Path:
    """``$CEREDIS_RALPH_VENV``, else ``<repo>/.cache/ralph-venv`` (gitignored)."""
    configured = os.environ.get(VENV_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parents[1] / ".cache" / "ralph-venv"


def provision(venv_dir: Path | None = None) -> Path:
    """Create (or reuse) Ralph's virtual environment and return its python executable.

    Safe to call from several processes at once: a file lock serialises them, and the
    marker file is written last, so a half-built venv is rebuilt, never reused.
    """
    venv_dir = venv_dir or default_venv_dir()
    python = venv_dir / "bin" / "python"
    # The venv's python is a link to this interpreter: a new Python needs a new venv.
    expected = {"python": platform.python_version(), "requirements": list(RALPH_REQUIREMENTS)}
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv_dir.with_name(venv_dir.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read_marker(venv_dir) == expected and python.exists():
            return python
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        _run([sys.executable, "-m", "venv", str(venv_dir)], "create the Ralph venv")
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *RALPH_REQUIREMENTS,
            ],
            f"pip install {' '.join(RALPH_REQUIREMENTS)} into {venv_dir} "
            "(it needs PyPI: check the pip configuration and network)",
        )
        _run(
            [str(python), "-c", "import bcrypt, fastapi, ralph, requests, uvicorn"],
            "import Ralph in its venv",
        )
        (venv_dir / _MARKER).write_text(json.dumps(expected) + "\n")
        return python


def _read_marker(venv_dir: Path) -> Any:
    try:
        return json.loads((venv_dir / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def _run(argv: list[str], what: str, stdin: bytes | None = None) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=_PROVISION_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise RalphError(f"could not {what}: no answer after {_PROVISION_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise RalphError(f"could not {what} (exit {done.returncode}):\n" + "\n".join(tail))
    return done.stdout.decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RalphLRS:
    """A Ralph LRS subprocess serving *statements* to one Basic-auth user.

    Statements are dicts whose numbers are ``int`` or ``decimal.Decimal`` (written with
    their own digits). Missing ``id``, ``stored``, ``timestamp`` or ``authority`` are
    filled in as Ralph does on write. ``max_page_size`` sets Ralph's
    ``RUNSERVER_MAX_SEARCH_HITS_COUNT`` (the largest ``limit`` it honours).
    """

    def __init__(
        self,
        statements: Iterable[Mapping[str, Any]] = (),
        username: str = "ceredis",
        password: str = "ceredis-test-password",
        *,
        max_page_size: int = 100,
        venv_dir: Path | None = None,
    ) -> None:
        self._statements = list(statements)
        self._username = username
        self._password = password
        self._max_page_size = max_page_size
        self._venv_dir = venv_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None
        self._data_file: Path | None = None
        self.origin = ""
        self.base_url = ""

    def __repr__(self) -> str:
        return f"RalphLRS({self.base_url or 'not started'}, user {self._username!r})"

    @property
    def authority(self) -> dict[str, str]:
        """The Agent Ralph records as ``authority`` for this LRS's user."""
        # An account, not an mbox: Ralph's email validation refuses reserved domains.
        return {
            "objectType": "Agent",
            "account": {"homePage": "http://127.0.0.1/ralph-users", "name": self._username},
        }

    def __enter__(self) -> RalphLRS:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Provision the venv if needed, seed the data file, start uvicorn and wait."""
        python = provision(self._venv_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="ceredis-ralph-")
        root = Path(self._tmp.name)
        app_dir, data_dir = root / "app", root / "lrs"
        app_dir.mkdir()
        data_dir.mkdir()
        self._write_auth(python, app_dir / "auth.json")
        self._data_file = data_dir / "fs_lrs.jsonl"
        self._data_file.touch()
        self.add(self._statements)
        port = _free_port()
        self._launch(python, root, self._server_env(app_dir, data_dir), port)
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.origin}/xAPI/"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _server_env(self, app_dir: Path, data_dir: Path) -> dict[str, str]:
        """This process's environment without Ralph's or Python's settings, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RALPH_", "PYTHON"))}
        env.update(
            {
                "RALPH_APP_DIR": str(app_dir),
                "RALPH_AUTH_FILE": str(app_dir / "auth.json"),
                "RALPH_HISTORY_FILE": str(app_dir / "history.json"),
                "RALPH_RUNSERVER_BACKEND": "fs",
                "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(data_dir),
                "RALPH_RUNSERVER_MAX_SEARCH_HITS_COUNT": str(self._max_page_size),
            }
        )
        return env

    def _launch(self, python: Path, root: Path, env: dict[str, str], port: int) -> None:
        """Start one uvicorn worker serving Ralph on *port*, logging to uvicorn.log."""
        self._log = root / "uvicorn.log"
        command = [str(python), "-m", "uvicorn", "ralph.api:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def add(self, statements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append *statements* to the data file (Ralph re-reads it on every GET).

        Returns the statements as stored, with the fields Ralph adds on write.
        """
        if self._data_file is None:
            raise RalphError("RalphLRS.add() before start(): use it inside the with block")
        stored = [self._complete(s) for s in statements]
        with open(self._data_file, "ab") as out:
            for statement in stored:
                out.write(canonical(statement) + b"\n")
        return stored

    def add_raw_line(self, line: str) -> None:
        """Append one raw line to the data file (for malformed-data tests)."""
        if self._data_file is None:
            raise RalphError("RalphLRS.add_raw_line() before start()")
        with open(self._data_file, "a", encoding="utf-8") as out:
            out.write(line.rstrip("\n") + "\n")

    def _complete(self, statement: Mapping[str, Any]) -> dict[str, Any]:
        full = dict(statement)
        full.setdefault("id", str(uuid.uuid5(uuid.NAMESPACE_URL, canonical(full).decode())))
        full.setdefault("stored", _STORED)
        full.setdefault("timestamp", full["stored"])
        full.setdefault("authority", self.authority)
        return full

    def _write_auth(self, python: Path, path: Path) -> None:
        hashed = _run(
            [str(python), "-c", _HASH_SCRIPT, str(_BCRYPT_ROUNDS)],
            "hash the LRS password with bcrypt",
            stdin=self._password.encode(),
        ).strip()
        users = [
            {
                "username": self._username,
                "hash": hashed,
                "scopes": ["statements/read", "statements/write"],
                "agent": self.authority,
            }
        ]
        path.write_text(json.dumps(users, indent=2) + "\n")

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RalphError(
                    f"Ralph exited with code {self._process.returncode} at start-up:\n"
                    + self.log_tail()
                )
            url = f"{self.origin}/__heartbeat__"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise RalphError(
            f"Ralph did not answer {self.origin}/__heartbeat__ within "
            f"{_START_TIMEOUT:.0f} s:\n" + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log (for failure messages)."""
        if self._log is None or not self._log.exists():
            return "(no log)"
        text = self._log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        """Stop the server (terminate, then kill) and delete its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(_STOP_TIMEOUT)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._data_file = None
