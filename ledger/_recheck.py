"""The second process of ``verify_ledger(jobs=2)``: step (3) on delegated record lines.

Run as ``python -m ledger._recheck PATH``; prints one JSON ``[line, message]`` per
non-canonical record body. A plain subprocess rather than multiprocessing, so it works
whatever the caller's ``__main__`` is (a notebook, ``python -c``, stdin).
"""

from __future__ import annotations

import json
import sys

from ledger.verify import record_canonical_problems

__all__ = ["main"]


def main() -> int:
    """Check the file named by the first argument; write the findings to stdout."""
    out = sys.stdout
    for problem in record_canonical_problems(sys.argv[1]):
        out.write(json.dumps([problem.line_no, problem.message]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
