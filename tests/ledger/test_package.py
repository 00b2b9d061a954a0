"""The package as a whole: its public names, its errors, its independence from ceredis."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import ledger
import ledger.errors

MODULES = sorted(
    p.stem for p in (Path(ledger.__file__).parent).glob("*.py") if p.stem != "__main__"
)


def test_all_lists_the_public_api() -> None:
    """__all__ is sorted, complete (every public name is exported) and importable."""
    isort_style = sorted(ledger.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert ledger.__all__ == isort_style  # CONSTANTS, Classes, functions
    public = {
        n
        for n, v in vars(ledger).items()
        if not n.startswith("_") and not isinstance(v, ModuleType)
    }
    assert set(ledger.__all__) == public
    for name in ("LedgerWriter", "verify_ledger", "read_ledger", "VerifyReport", "Problem"):
        assert name in ledger.__all__


@pytest.mark.parametrize("module", MODULES)
def test_every_module_declares_all_and_a_docstring(module: str) -> None:
    """Each module has a docstring and a deliberate __all__ of names it defines or re-exports."""
    mod = __import__(f"ledger.{module}", fromlist=["__all__"])
    assert mod.__doc__ and mod.__doc__.strip()
    assert all(hasattr(mod, name) for name in mod.__all__)


ERRORS = [
    c
    for c in vars(ledger.errors).values()
    if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == "ledger.errors"
]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_pickles(cls: type[Exception]) -> None:
    """Every ledger error survives pickling (they cross process pools) with its message."""
    error = cls("line 7: chain: prev is ab…, expected cd…")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error)
    assert issubclass(cls, ledger.errors.LedgerError)


def test_ledger_imports_nothing_from_ceredis() -> None:
    """Importing every ledger module (CLI included) loads no ceredis module."""
    code = "import sys; " + "; ".join(f"import ledger.{m}" for m in MODULES)
    code += "; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout.split()
    assert "ledger.cli" in loaded
    assert not [m for m in loaded if m == "ceredis" or m.startswith("ceredis.")]


def test_no_module_imports_ceredis_textually() -> None:
    """No ledger source file mentions an import of ceredis, even a lazy one."""
    for path in Path(ledger.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import ceredis" not in text and "from ceredis" not in text, path.name
