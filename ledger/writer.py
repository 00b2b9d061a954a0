"""The append-only writer: a header, records, a footer; durable in groups, fatal on failure.

* The file is opened ``O_APPEND`` and only ever written at its end; no earlier byte is
  rewritten. One ``write`` per line (looping on short writes) flushes every record to the
  kernel; ``fdatasync`` makes them durable every *fsync_every* records or *fsync_interval*
  seconds (checked on append) and at close.
* A failed write or fsync raises :class:`WriteError` and stops the writer for good. It is
  never retried: after a failed fsync Linux may drop the dirty pages, so a retry can
  "succeed" with the data gone (PostgreSQL's fsyncgate, anchors §A.7).
* :meth:`LedgerWriter.open` continues an unfinished ledger: it verifies it in one streaming
  pass and restores the chain, the count and the Merkle compact range. A torn tail (a crash
  during a write) is refused unless ``repair=True``, which cuts it and says what was cut.
* One writer at a time: an exclusive ``flock`` is held while the writer is open.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from types import TracebackType
from typing import Any

from ledger.canonical import CANON_ID, canonical
from ledger.decode import check_canonical, decode
from ledger.errors import LedgerFormatError, WriteError
from ledger.line import FOOTER, FORMAT_ID, GENESIS, HEADER, RECORD, encode_line
from ledger.merkle import CompactRange, leaf_hash
from ledger.report import ProblemKind
from ledger.scanner import Scanner, scan_file

__all__ = ["LedgerWriter", "Repair"]

_sync = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True)
class Repair:
    """What ``LedgerWriter.open(repair=True)`` cut from a torn tail."""

    line_no: int
    offset: int  # the file was truncated to this size
    cut: int  # bytes removed
    reason: str

    def __str__(self) -> str:
        return f"cut {self.cut} bytes of line {self.line_no} at offset {self.offset}: {self.reason}"


class LedgerWriter:
    """Append records to a ledger; build one with :meth:`create` or :meth:`open`."""

    def __init__(
        self,
        path: str,
        fd: int,
        header: dict[str, Any],
        *,
        prev: str,
        seq: int,
        tree: CompactRange,
        fsync_every: int,
        fsync_interval: float,
        repaired: Repair | None = None,
    ) -> None:
        self.path = path
        self._fd: int | None = fd
        self._header = header
        self._prev = prev
        self._seq = seq  # of the next line
        self._tree = tree
        self._every = fsync_every
        self._interval = fsync_interval
        self._pending = 0
        self._last_sync = time.monotonic()
        self._synced = tree.size
        self._failure: str | None = None
        self.repaired = repaired

    @classmethod
    def create(
        cls,
        path: str | PathLike[str],
        header: Mapping[str, Any],
        *,
        fsync_every: int = 100,
        fsync_interval: float = 0.05,
    ) -> LedgerWriter:
        """Start a new ledger at *path* (which must not exist) with an application header."""
        _check_settings(fsync_every, fsync_interval)
        path = os.fspath(path)
        body = canonical({"ledger": {"canon": CANON_ID, "format": FORMAT_ID}, "meta": dict(header)})
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o600)  # private: records hold personal data
        except FileExistsError:
            raise LedgerFormatError(
                f"{path}: already exists; a ledger is never overwritten"
            ) from None
        except OSError as exc:
            raise LedgerFormatError(f"{path}: cannot create: {exc.strerror}") from exc
        try:
            _lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        writer = cls(
            path,
            fd,
            decode(body)["meta"],
            prev=GENESIS,
            seq=1,
            tree=CompactRange(),
            fsync_every=fsync_every,
            fsync_interval=fsync_interval,
        )
        writer._append(body, HEADER)
        writer.sync()
        try:
            _sync_directory(path)
        except OSError as exc:
            raise writer._fail("fsync of the directory", exc) from exc
        return writer

    @classmethod
    def open(
        cls,
        path: str | PathLike[str],
        *,
        repair: bool = False,
        fsync_every: int = 100,
        fsync_interval: float = 0.05,
    ) -> LedgerWriter:
        """Continue an unfinished ledger, after verifying what it holds."""
        _check_settings(fsync_every, fsync_interval)
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as exc:
            raise LedgerFormatError(f"{path}: cannot open: {exc.strerror}") from exc
        try:
            _lock(fd, path)
            scan = scan_file(path)
            repaired = _check_resumable(path, fd, scan, repair)
        except BaseException:
            os.close(fd)
            raise
        assert scan.header is not None
        return cls(
            path,
            fd,
            scan.header,
            prev=scan.prev,
            seq=scan.max_seq + 1,
            tree=scan.tree,
            fsync_every=fsync_every,
            fsync_interval=fsync_interval,
            repaired=repaired,
        )

    @property
    def header(self) -> dict[str, Any]:
        """The application header, as stored."""
        return self._header

    @property
    def count(self) -> int:
        """Records appended so far (including those found by :meth:`open`)."""
        return self._tree.size

    @property
    def synced(self) -> int:
        """Records known to be durable (fsynced)."""
        return self._synced

    @property
    def root(self) -> str:
        """RFC 6962 root over the records so far, hex."""
        return self._tree.root().hex()

    @property
    def closed(self) -> bool:
        """True once :meth:`finish` or :meth:`close` has run (or a write failed)."""
        return self._fd is None

    def append(self, body: Mapping[str, Any]) -> str:
        """Append one record; returns the SHA-256 (hex) of its canonical bytes."""
        return self._append(canonical(dict(body)), RECORD)

    def append_canonical(self, body_bytes: bytes, *, check: bool = True) -> str:
        """Append one record given as canonical bytes; the hash is recomputed here.

        The bytes are re-checked as canonical unless *check* is false, for a caller that
        got them from :func:`ledger.canonical` itself (in another process, say) and whose
        single writer is the bottleneck; ``verify_ledger`` checks every line regardless.
        """
        if body_bytes[:1] != b"{" or body_bytes[-1:] != b"}" or b"\n" in body_bytes:
            raise LedgerFormatError("a record body must be a canonical JSON object on one line")
        if check:
            check_canonical(body_bytes)
        return self._append(body_bytes, RECORD)

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the footer (count, resultsRoot, the application's *extra*), fsync, close.

        Returns the footer body as written: ``{"ledger": {...}, "meta": extra}``.
        """
        footer = {
            "ledger": {"count": self.count, "resultsRoot": self.root},
            "meta": dict(extra or {}),
        }
        body = canonical(footer)
        self._append(body, FOOTER)
        self.close()
        return decode(body)

    def sync(self) -> None:
        """Make every line written so far durable now."""
        fd = self._check_open()
        try:
            _sync(fd)
        except OSError as exc:
            raise self._fail("fsync", exc) from exc
        self._synced = self._tree.size
        self._pending = 0
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Fsync and close, without a footer (the ledger stays incomplete, resumable)."""
        if self._fd is None:
            return
        try:
            if self._pending:
                self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<LedgerWriter {self.path!r} {state}, {self.count} records>"

    def _check_open(self) -> int:
        if self._failure is not None:
            raise WriteError(f"{self.path}: writer stopped after a failure: {self._failure}")
        if self._fd is None:
            raise LedgerFormatError(f"{self.path}: writer is closed")
        return self._fd

    def _fail(self, what: str, exc: OSError) -> WriteError:
        # A failed write or fsync ends the writer: close the fd, remember why, never retry.
        self._failure = f"{what} failed: {exc.strerror or exc}"
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return WriteError(f"{self.path}: {self._failure}; records not fsynced may be lost")

    def _append(self, body: bytes, kind: str) -> str:
        fd = self._check_open()
        digest = hashlib.sha256(body).digest()
        content_hash = digest.hex()
        line = encode_line(body, content_hash, kind, self._prev, self._seq)
        try:
            _write_all(fd, line)
        except OSError as exc:
            raise self._fail(f"write of line {self._seq}", exc) from exc
        self._prev = hashlib.sha256(memoryview(line)[:-1]).hexdigest()
        self._seq += 1
        if kind == RECORD:
            self._tree.append(leaf_hash(digest))
        self._pending += 1
        if self._pending >= self._every or time.monotonic() - self._last_sync >= self._interval:
            self.sync()
        return content_hash


def _check_settings(fsync_every: int, fsync_interval: float) -> None:
    if fsync_every < 1 or fsync_interval < 0:
        raise ValueError(
            f"fsync_every must be >= 1 and fsync_interval >= 0, "
            f"found {fsync_every} and {fsync_interval}"
        )


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written < len(data):  # a short write: go on from there (O_APPEND: at the end)
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def _sync_directory(path: str) -> None:
    # A new file's directory entry is durable only once its directory is fsynced.
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise LedgerFormatError(f"{path}: another writer has this ledger open") from None


def _check_resumable(path: str, fd: int, scan: Scanner, repair: bool) -> Repair | None:
    """Raise unless the scanned ledger can be continued; cut a torn tail if asked to."""
    others = [p for p in scan.problems if p.kind is not ProblemKind.TORN_TAIL]
    if others:
        raise LedgerFormatError(
            f"{path}: cannot continue, the ledger fails verification: {others[0]}"
            f"{f' (and {len(others) - 1} more)' if len(others) > 1 else ''}"
        )
    if scan.footer is not None:
        raise LedgerFormatError(
            f"{path}: finished (footer on line {scan.footer_line}); nothing to append"
        )
    if scan.torn is None:
        return None
    line_no, offset, length = scan.torn
    reason = next(p.message for p in scan.problems if p.kind is ProblemKind.TORN_TAIL)
    if scan.header is None:
        raise LedgerFormatError(f"{path}: the header itself is torn; nothing to continue")
    if not repair:
        raise LedgerFormatError(
            f"{path}: torn tail on line {line_no} ({length} bytes at offset {offset}): {reason}; "
            "open with repair=True to cut it"
        )
    try:
        os.ftruncate(fd, offset)
        _sync(fd)
    except OSError as exc:
        raise WriteError(f"{path}: cannot cut the torn tail: {exc.strerror}") from exc
    return Repair(line_no, offset, length, reason)
