"""A ledger writer run as a separate process by test_crash, to be killed mid-run.

    python -m tests.ledger.writer_child PATH REPORT_FD [FILE_SIZE_LIMIT]

Appends ``crash_body(0)``, ``crash_body(1)``, … forever, with small fsync groups, and after
every fsync that returns writes the number of durable records to REPORT_FD (a pipe). With a
FILE_SIZE_LIMIT the kernel cuts the ledger there: a short write, then EFBIG (Python ignores
SIGXFSZ), and the writer must stop with WriteError.
"""

from __future__ import annotations

import os
import resource
import sys
from typing import Any

from ledger import LedgerWriter


def crash_body(i: int) -> dict[str, Any]:
    """Record i: every fourth one is 1 MiB, so a kill often lands inside its write."""
    return {"i": i, "pad": "x" * ((1 << 20) if i % 4 == 1 else 64 + i % 50)}


def main() -> None:
    path, report = sys.argv[1], int(sys.argv[2])
    if len(sys.argv) > 3:
        limit = int(sys.argv[3])
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    writer = LedgerWriter.create(path, {"child": os.getpid()}, fsync_every=3, fsync_interval=0.002)
    synced = -1
    i = 0
    while True:
        writer.append(crash_body(i))
        i += 1
        if writer.synced != synced:
            synced = writer.synced
            os.write(report, b"%d\n" % synced)


if __name__ == "__main__":
    main()
