"""``python -m ledger``: verify a ledger, prove one record, check a proof, prove that an
older ledger is a prefix of a newer one.

Exit codes (every command):

    0  good: the ledger verifies and is complete / the proof was printed / the record is
       included / the consistency proof was printed and checks out
    1  a problem was found: tampering, a torn tail, an incomplete ledger (no footer), a
       ledger that fails verification (prove, consistency), a record not included
       (check-proof), an older ledger that is not a prefix of the newer (consistency)
    2  unreadable input or bad usage: no such file, not a ledger, a malformed proof
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from ledger.errors import LedgerError, ProofError
from ledger.proof import InclusionProof, prove_consistency, prove_verified, record_hash
from ledger.report import VerifyReport
from ledger.verify import Progress, verify_ledger

__all__ = ["main"]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; returns the exit code."""
    out = out or sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "verify":
            if (args.size is None) != (args.root is None):
                parser.print_usage(sys.stderr)
                print("ledger verify: --size and --root go together", file=sys.stderr)
                return 2
            return _verify(args, out)
        if args.command == "prove":
            return _prove(args, out)
        if args.command == "consistency":
            return _consistency(args, out)
        return _check_proof(args, out)
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceredis-ledger",
        description="Verify an append-only, hash-chained, Merkle-rooted JSON Lines ledger.",
        epilog="exit codes: 0 good, 1 problem found, 2 unreadable input or bad usage",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify", help="check every line, the chain, the footer and its Merkle root"
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--json", action="store_true", help="print a JSON report")
    verify.add_argument(
        "--size", type=_non_negative, metavar="N", help="anchor: record count kept elsewhere"
    )
    verify.add_argument("--root", type=_hex64, metavar="HEX", help="anchor: root kept elsewhere")
    prove_ = commands.add_parser("prove", help="print the inclusion proof of one record")
    prove_.add_argument("file", metavar="FILE")
    prove_.add_argument("index", type=_non_negative, metavar="INDEX", help="0-based record index")
    check = commands.add_parser(
        "check-proof", help="check one record against a proof, without the ledger"
    )
    check.add_argument("proof", metavar="PROOF", help="a JSON file printed by prove")
    check.add_argument(
        "--record",
        required=True,
        metavar="RECORD",
        help="a file holding the record's line as stored in the ledger, or its body",
    )
    check.add_argument("--root", type=_hex64, metavar="HEX", help="the root you trust")
    consistency = commands.add_parser(
        "consistency",
        help="print and check the proof that an older ledger's records begin a newer one's",
    )
    consistency.add_argument("old", metavar="OLD", help="the older ledger (finished or not)")
    consistency.add_argument("new", metavar="NEW", help="the newer ledger (finished or not)")
    return parser


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a non-negative integer: {text!r}")
    return int(text)


def _hex64(text: str) -> str:
    if not _HEX64.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a 64-digit hex SHA-256: {text!r}")
    return text.lower()


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    expected = None if args.size is None else (args.size, args.root)
    with _bar() as progress:
        report = verify_ledger(args.file, expected, progress)
    if args.json:
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    else:
        out.write(_render(report, expected))
    return 0 if report.status == "ok" else 1


@contextmanager
def _bar() -> Iterator[Progress | None]:
    """A transient byte bar on stderr when it is a terminal (rich is imported only then);
    else no progress at all (stdout stays the report alone)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("[bold]verifying"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("remaining"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("verifying", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _render(report: VerifyReport, expected: tuple[int, str] | None) -> str:
    records = _plural(report.count, "record")
    anchored = f", matches the anchor ({_plural(expected[0], 'record')})" if expected else ""
    if report.status == "ok":
        head = f"ok: {records}, complete, root {report.root}{anchored}"
    elif report.status == "incomplete":
        head = (
            f"incomplete: {records} verified, no footer (a run that has not finished or "
            f"crashed); nothing wrong found{anchored}"
        )
    else:
        n = len(report.problems)
        head = f"FAILED: {_plural(n, 'problem')} in {_plural(report.lines, 'line')}"
    lines = [f"{report.path}: {head}"]
    lines += [f"  line {p.line_no}: {p.kind}: {p.message}" for p in report.problems]
    return "\n".join(lines) + "\n"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _prove(args: argparse.Namespace, out: TextIO) -> int:
    report = verify_ledger(args.file)
    if not report.ok:
        print(f"{args.file}: fails verification, no proof: {report.problems[0]}", file=sys.stderr)
        return 1
    proof = prove_verified(args.file, args.index, report)
    json.dump(proof.to_json(), out, indent=2)
    out.write("\n")
    return 0


def _consistency(args: argparse.Namespace, out: TextIO) -> int:
    reports = verify_ledger(args.old), verify_ledger(args.new)
    for report in reports:
        if not report.ok:
            print(
                f"{report.path}: fails verification, no proof: {report.problems[0]}",
                file=sys.stderr,
            )
            return 1
    try:
        proof = prove_consistency(*reports)
    except ProofError as exc:
        out.write(f"NOT a prefix: {args.old} of {args.new}: {exc}\n")
        return 1
    json.dump(proof.to_json(), out, indent=2)
    out.write("\n")
    return 0


def _check_proof(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open(args.proof, "rb") as stream:
            data = json.loads(stream.read())
        with open(args.record, "rb") as stream:
            record = stream.read()
    except (OSError, ValueError) as exc:
        print(f"error: cannot read: {exc}", file=sys.stderr)
        return 2
    proof = InclusionProof.from_json(data)  # a malformed proof is exit 2
    try:
        content_hash = record_hash(record)
        if args.root is not None and args.root != proof.root:
            raise ProofError(f"the proof is for root {proof.root}, you trust {args.root}")
        proof.verify(content_hash)
    except ProofError as exc:
        out.write(f"NOT included: {exc}\n")
        return 1
    out.write(
        f"included: record {proof.index} of {proof.size} (content hash {content_hash}) "
        f"under root {proof.root}\n"
    )
    return 0
