"""Architecture rules: a pure core, picklable errors, a domain-free ledger."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import ceredis.errors
import ledger.errors

IO_MODULES = [
    "sqlite3",
    "psycopg",
    "urllib3",
    "rich",
    "multiprocessing",
    "socket",
    "http",
    "platformdirs",
    "ceredis.sources",
    "ceredis.stores",
    "ceredis.engine",
]


def imported_by(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running *statement*."""
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_scoring_core_imports_no_io():
    """Importing the scoring core loads no database, HTTP, terminal or process module."""
    loaded = imported_by("import ceredis.scoring, ceredis.evidence, ceredis.referential")
    assert not {m for m in loaded for io in IO_MODULES if m == io or m.startswith(io + ".")}


def test_ledger_knows_nothing_of_ceredis():
    """The ledger package imports nothing from ceredis."""
    loaded = imported_by("import ledger, ledger.canonical")
    assert not {m for m in loaded if m.startswith("ceredis")}


def error_classes(module):
    return [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == module.__name__
    ]


@pytest.mark.parametrize(
    "cls", error_classes(ceredis.errors) + error_classes(ledger.errors), ids=lambda c: c.__name__
)
def test_every_error_pickles(cls):
    """Errors cross the worker pool: each survives a pickle round trip with its message."""
    error = cls("learner L1: something went wrong")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error)


def test_one_root_per_package():
    """Every ceredis error is a CeredisError; every ledger error a LedgerError."""
    assert all(issubclass(c, ceredis.errors.CeredisError) for c in error_classes(ceredis.errors))
    assert all(issubclass(c, ledger.errors.LedgerError) for c in error_classes(ledger.errors))
