"""SIGINT, SIGTERM and SIGHUP stop a batch the same way: as an :class:`Interrupted` raised
in the parent, so that the pool is shut down and the ledger closed resumable.

Exit codes follow the shell's convention, 128 + the signal number: 130 (SIGINT, Ctrl-C),
143 (SIGTERM: cron, systemd, ``timeout``, Kubernetes), 129 (SIGHUP: the terminal closed).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["SIGNALS", "Interrupted", "interruptible"]

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal reached the batch (a KeyboardInterrupt, so ``except Exception``
    blocks do not swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def interruptible() -> Iterator[None]:
    """Raise Interrupted on the first stop signal; later ones are ignored while the batch
    cleans up. A forked worker that inherited the handler dies of the signal instead."""
    owner = os.getpid()
    received: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a worker forked under this handler: default behaviour
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
