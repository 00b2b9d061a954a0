"""Private files and directories: everything the engine writes holds personal data or secrets.

Files are created 0600 and directories 0700 from the start (``os.open`` / ``mkdir`` with
the mode, never a ``chmod`` afterwards), so no other local user can read them whatever
the umask. An existing directory is left as it is: it was the user's choice.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ceredis.errors import ConfigError

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "atomic_file",
    "create_private",
    "private_dir",
    "write_new",
    "write_replacing",
]

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """*path* as a directory, each missing component created 0700; return it."""
    path = Path(path)
    missing = []
    for parent in (path, *path.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise ConfigError(f"cannot create {directory}: a file is in the way") from None
        except OSError as exc:
            raise ConfigError(f"cannot create the directory {directory}: {exc.strerror}") from None
    return path


def create_private(path: str | os.PathLike[str], *, exclusive: bool = True) -> int:
    """Open *path* for writing, created 0600 (refusing an existing one when *exclusive*)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else 0)
    return os.open(path, flags, FILE_MODE)


def write_new(path: Path, data: bytes) -> None:
    """Create *path* with mode 0600 (refusing an existing one) and write *data*, synced."""
    try:
        fd = create_private(path)
    except FileExistsError:
        raise ConfigError(f"{path} exists: it is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


@contextmanager
def atomic_file(path: Path, what: str = "") -> Iterator[IO[bytes]]:
    """A 0600 file beside *path*, synced and renamed onto it only once complete: a reader
    (or an interrupted writer) never sees a part. *what* names the content in errors."""
    path = Path(path)
    named = f"{what} to {path}" if what else str(path)
    temp: str | None = None
    try:
        private_dir(path.parent)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as exc:
        raise ConfigError(f"cannot write {named}: {exc.strerror or exc}") from None
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)


def write_replacing(path: Path, data: bytes) -> Path:
    """Write *data* to a new 0600 file beside *path*, then rename it over *path* (atomic)."""
    with atomic_file(path) as stream:
        stream.write(data)
    return Path(path)
