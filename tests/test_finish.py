"""Finishing is idempotent, the ledger rebuilds the database, checkpoints anchor a run,
and everything written is private and free of secrets (issue 10, items 3, 5 and 7)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ceredis.cli import main
from ceredis.stores import parse_store_url
from ceredis.stores.sqlite import SqliteStore
from ledger.reader import read_ledger

AGENTS = ["--agent", "L00001", "--agent", "L00002", "--agent", "L00003", "--agent", "L00004"]


def _batch(tmp_path: Path, url: str, name: str = "run", *extra: str) -> Path:
    ledger = tmp_path / f"{name}.jsonl"
    assert main(["batch", *AGENTS, "--database", url, "--ledger", str(ledger), "--quiet",
                 "--workers", "2", *extra]) in (0, 1)  # fmt: skip
    return ledger


def _rows(url: str, table: str) -> list[tuple]:
    store = parse_store_url(url).open()
    try:
        return sorted(map(tuple, store._execute(f"SELECT * FROM {table}")))
    finally:
        store.close()


def _unfinish(url: str) -> None:
    """The state a kill between the ledger's footer and finish_run leaves."""
    store = parse_store_url(url).open()
    try:
        store._execute(
            "UPDATE ceredis_run SET finished_at = NULL, total = NULL, ok = NULL, "
            "skipped = NULL, failed = NULL, results_root = NULL"
        )
    finally:
        store.close()


def test_resume_completes_a_finished_ledger_whose_run_row_is_not(tmp_path, capsys):
    """Killed after the footer: --resume finishes the run row, verify says how to fix it."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ledger = _batch(tmp_path, url)
    finished = _rows(url, "ceredis_run")
    _unfinish(url)
    capsys.readouterr()
    assert main(["verify", str(ledger), "--database", url]) == 1
    assert f"ceredis batch --resume {ledger}" in capsys.readouterr().out.replace("\n", "")
    assert main(["batch", "--resume", str(ledger), "--database", url, "--quiet"]) == 0
    assert "was already finished" in capsys.readouterr().out
    assert _rows(url, "ceredis_run") == finished
    assert main(["verify", str(ledger), "--database", url]) == 0


def test_resume_into_another_database_writes_the_recorded_learners(tmp_path):
    """An unfinished ledger resumed into an empty database leaves one row per learner."""
    first = f"sqlite:///{tmp_path / 'a.sqlite'}"
    ledger = _batch(tmp_path, first)
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:3]))
    other = f"sqlite:///{tmp_path / 'b.sqlite'}"
    assert main(["batch", "--resume", str(partial), "--database", other, "--quiet"]) == 0
    assert len(_rows(other, "ceredis_result")) == 4
    assert main(["verify", str(partial), "--database", other]) == 0


def test_restore_rebuilds_a_runs_rows_idempotently(tmp_path, capsys):
    """restore writes the same run, result and profile rows as the batch did; twice is once."""
    original = f"sqlite:///{tmp_path / 'a.sqlite'}"
    ledger = _batch(tmp_path, original)
    rebuilt = f"sqlite:///{tmp_path / 'b.sqlite'}"
    for _ in range(2):
        assert main(["restore", str(ledger), "--database", rebuilt]) == 0
        for table in ("ceredis_run", "ceredis_result", "ceredis_profile"):
            assert _rows(rebuilt, table) == _rows(original, table)
    assert "4 learner rows" in capsys.readouterr().out


def test_restore_refuses_a_damaged_ledger(tmp_path):
    ledger = _batch(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}")
    ledger.write_bytes(ledger.read_bytes().replace(b'"L00002"', b'"L00009"', 1))
    assert main(["restore", str(ledger), "--database", f"sqlite:///{tmp_path / 'b.db'}"]) == 2


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["keygen", "example.org/ceredis", "--out", str(tmp_path / "keys" / "k")]) == 0
    return tmp_path / "keys" / "k.key", tmp_path / "keys" / "k.pub"


def test_a_signed_batch_writes_and_records_its_checkpoint(tmp_path, monkeypatch, capsys):
    """With CEREDIS_SIGNING_KEY a batch writes <stem>.checkpoint, records it, and verify
    checks the ledger against it and against --size/--root."""
    (tmp_path / "keys").mkdir()
    private, public = _keys(tmp_path)
    monkeypatch.setenv("CEREDIS_SIGNING_KEY", str(private))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    ledger = _batch(tmp_path, url)
    checkpoint = tmp_path / "run.checkpoint"
    assert _rows(url, "ceredis_run")[0][-1] == checkpoint.read_text(encoding="utf-8")
    footer = next(r for r in read_ledger(ledger) if r.kind == "footer").body["ledger"]
    root, size = footer["resultsRoot"], footer["count"]
    good = ["verify", str(ledger), "--checkpoint", str(checkpoint), "--key", str(public)]
    assert main([*good, "--size", str(size), "--root", root]) == 0
    assert main([*good, "--size", str(size + 1)]) == 1
    assert main([*good, "--root", "0" * 64]) == 1
    checkpoint.write_text(checkpoint.read_text().replace(f"\n{size}\n", f"\n{size - 1}\n"))
    assert main(good) == 1
    assert "does not verify" in capsys.readouterr().out.replace("\n", "")


def _modes(*roots: Path) -> dict[str, str]:
    """Every path under *roots* (included) whose mode is not 0600 (file) / 0700 (dir)."""
    wrong = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != (0o700 if path.is_dir() else 0o600):
                wrong[str(path)] = oct(mode)
    return wrong


@pytest.mark.parametrize("signed", [False, True])
def test_every_created_file_is_private_under_umask_022(tmp_path, signed):
    """A default batch (bundled cohort, embedded SQLite) as a real process under umask 022."""
    env = {**os.environ, "CEREDIS_DATA_DIR": str(tmp_path / "data"),
           "CEREDIS_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    if signed:
        (tmp_path / "keys").mkdir()
        env["CEREDIS_SIGNING_KEY"] = str(_keys(tmp_path)[0])
    done = subprocess.run(
        [sys.executable, "-m", "ceredis", "batch", "--quiet", "--workers", "2"],
        env=env, preexec_fn=lambda: os.umask(0o022), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert _modes(tmp_path / "data", tmp_path / "cache") == {}
    created = {p.suffix for p in (tmp_path / "data").rglob("*")}
    assert {".sqlite", ".jsonl", ".json"} <= created
    assert (".checkpoint" in created) == signed


def test_sqlite_wal_and_shm_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "new" / "db.sqlite")
        names = {p.name for p in (tmp_path / "new").iterdir()}
        assert {"db.sqlite", "db.sqlite-wal", "db.sqlite-shm"} <= names
        assert _modes(tmp_path / "new") == {}
        store.close()
    finally:
        os.umask(old)


SECRET = "Sekr3tPw"
DSN_FORMS = {
    "userinfo": "postgresql://postgres:{s}@{host}/{db}",
    "password query": "postgresql://postgres@{host}/{db}?password={s}",
    "percent-encoded": "postgresql://postgres:Sekr%33tPw@{host}/{db}",
    "sslpassword": "postgresql://postgres@{host}/{db}?sslpassword={s}&connect_timeout=5",
    "passfile": "postgresql://postgres@{host}/{db}?passfile=/nonexistent/{s}",
}


@pytest.mark.postgres
@pytest.mark.parametrize("form", sorted(DSN_FORMS))
def test_no_secret_in_any_output(tmp_path, pg_url, form):
    """Stdout, stderr, ledger, checkpoint, report, rows, data and cache never hold it."""
    from urllib.parse import urlsplit

    parts = urlsplit(pg_url)
    url = DSN_FORMS[form].format(s=SECRET, host=parts.netloc.rpartition("@")[2],
                                 db=parts.path[1:])  # fmt: skip
    (tmp_path / "keys").mkdir()
    env = {**os.environ, "CEREDIS_DATA_DIR": str(tmp_path / "data"),
           "CEREDIS_CACHE_DIR": str(tmp_path / "cache"),
           "CEREDIS_SIGNING_KEY": str(_keys(tmp_path)[0])}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "ceredis", "batch", *AGENTS, "--database", url],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    outputs = [done.stdout, done.stderr]
    files = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "keys" not in p.parts]
    rows = [repr(_rows(pg_url, t)) for t in ("ceredis_run", "ceredis_result", "ceredis_profile")]
    everything = "\n".join([*outputs, *rows]).encode() + b"".join(files)
    assert any(p.suffix == ".checkpoint" for p in tmp_path.rglob("*"))
    assert SECRET.encode() not in everything and b"Sekr%33tPw" not in everything


@pytest.mark.parametrize(
    "url",
    [
        f"host=127.0.0.1 user=postgres password='{SECRET} x' dbname=postgres",
        f"postgresql://postgres@127.0.0.1:1/postgres?password={SECRET}&connect_timeout=2",
        f"postgresql://postgres:{SECRET}@127.0.0.1:1/postgres",
    ],
)
def test_refused_or_failed_database_urls_are_not_echoed(tmp_path, url, capsys):
    """A key=value DSN is refused and a connection failure shown without the secret."""
    assert main(["batch", *AGENTS, "--database", url, "--ledger", str(tmp_path / "l")]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "error" in captured.err


def test_resume_asks_for_a_reduced_url_again(tmp_path, pg_url, capsys):
    """The ledger keeps no password: a resume without --database says to give it again."""
    ledger = _batch(tmp_path, f"{pg_url}?password={SECRET}")
    partial = tmp_path / "partial.jsonl"
    partial.write_bytes(b"".join(ledger.read_bytes().splitlines(keepends=True)[:3]))
    assert main(["batch", "--resume", str(partial), "--quiet"]) == 2
    assert "give the whole URL again" in capsys.readouterr().err.replace("\n", "")


@pytest.mark.postgres
def test_restore_into_postgresql_passes_verify_database(tmp_path, pg_url):
    """Rows rebuilt in another kind of store are the run's rows as verify checks them."""
    ledger = _batch(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}")
    assert main(["restore", str(ledger), "--database", pg_url]) == 0
    assert len(_rows(pg_url, "ceredis_result")) == 4
    assert main(["verify", str(ledger), "--database", pg_url]) == 0


def test_restore_refuses_a_checkpoint_of_another_run(tmp_path, monkeypatch):
    """A checkpoint beside the ledger that signs another tree is never recorded."""
    (tmp_path / "keys").mkdir()
    monkeypatch.setenv("CEREDIS_SIGNING_KEY", str(_keys(tmp_path)[0]))
    ledger = _batch(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}")
    other = _batch(tmp_path, f"sqlite:///{tmp_path / 'a.sqlite'}", "other", "--agent", "L00005")
    (tmp_path / "run.checkpoint").write_bytes((tmp_path / "other.checkpoint").read_bytes())
    assert other.exists()
    assert main(["restore", str(ledger), "--database", f"sqlite:///{tmp_path / 'b.db'}"]) == 2
