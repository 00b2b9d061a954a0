"""``python -m ceredis``: a thin command line over the Python API.

Each command parses its options, makes one library call, renders the answer with rich
and returns an exit code. Exit codes: 0 success; 1 the work was done and found
failures (a learner in ERROR, a ledger mismatch, an invalid referential); 2 usage or
configuration error (nothing was done); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from ceredis import __version__
from ceredis.errors import CeredisError, ReferentialError
from ledger.canonical import canonical
from ledger.errors import LedgerError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the one error boundary)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    err = Console(stderr=True)
    try:
        return args.handler(args)
    except (CeredisError, LedgerError) as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print(Text("interrupted", style="bold red"))
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceredis",
        description="CEREDIS engine: evidence to CEREDIS scores and CECRL levels.",
        epilog="Exit codes: 0 success, 1 failures found, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"ceredis {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    evaluate = commands.add_parser(
        "evaluate",
        help="score one learner and explain the result",
        description="Score one learner and explain every step: competencies, domains, "
        "the global score and each level rule checked.",
    )
    evaluate.add_argument("--agent", required=True, metavar="ID", help="the learner's id")
    _source_option(evaluate)
    _referential_option(evaluate)
    evaluate.add_argument(
        "--json", action="store_true", help="print exactly the result object (scoring.md §10)"
    )
    evaluate.set_defaults(handler=_evaluate)

    sample = commands.add_parser(
        "sample",
        help="write a synthetic cohort (JSON Lines) and its roster",
        description="Write a synthetic but realistic cohort, deterministic for a seed, and "
        "a roster <stem>.agents.txt listing every learner (with or without evidence).",
    )
    sample.add_argument("--agents", required=True, type=int, metavar="N", help="learners")
    sample.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    sample.add_argument(
        "--evidence-per-learner",
        type=int,
        metavar="K",
        help="aim at K records per learner on average (default: about 75)",
    )
    sample.add_argument("--out", required=True, type=Path, metavar="FILE", help="output .jsonl")
    _referential_option(sample)
    sample.set_defaults(handler=_sample)

    referential = commands.add_parser(
        "referential", help="show the rules in force or validate a referential file"
    )
    ref_commands = referential.add_subparsers(title="actions", metavar="ACTION", required=True)
    show = ref_commands.add_parser("show", help="print the referential as tables")
    show.add_argument("file", nargs="?", type=Path, help="a referential file (default: bundled)")
    show.add_argument("--json", action="store_true", help="print its canonical JSON")
    show.set_defaults(handler=_referential_show)
    check = ref_commands.add_parser(
        "validate", help="check a candidate referential; exit 1 with the reasons if invalid"
    )
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_referential_validate)
    return parser


def _source_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        metavar="URI",
        help="evidence source: a .jsonl/.csv file, cass+https://host/ or "
        "xapi+https://host/xAPI/ (default: CEREDIS_SOURCE, then the bundled cohort)",
    )


def _referential_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--referential", type=Path, metavar="FILE", help="a referential file (default: bundled)"
    )


def _evaluate(args: argparse.Namespace) -> int:
    from ceredis.config import load_settings
    from ceredis.engine import evaluate_agent
    from ceredis.referential import load_referential

    referential = load_referential(args.referential)
    source = load_settings({"source": args.source}).source
    result = evaluate_agent(args.agent, source, referential)
    if args.json:
        sys.stdout.buffer.write(canonical(result) + b"\n")
    else:
        from ceredis.render import result_view

        Console().print(result_view(result, referential))
    return EXIT_FAILED if result["status"] == "ERROR" else EXIT_OK


def _sample(args: argparse.Namespace) -> int:
    from ceredis.referential import load_referential
    from ceredis.sample import write_cohort

    written = write_cohort(
        args.out,
        load_referential(args.referential),
        args.agents,
        args.seed,
        args.evidence_per_learner,
    )
    Console().print(
        f"wrote {written.records:,} evidence records for {written.learners:,} learners to "
        f"{written.evidence}; roster ({written.without_evidence} without evidence) in "
        f"{written.roster}",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _referential_show(args: argparse.Namespace) -> int:
    from ceredis.referential import load_referential
    from ceredis.render import referential_tables

    referential = load_referential(args.file)
    if args.json:
        sys.stdout.buffer.write(canonical(referential.document) + b"\n")
    else:
        Console().print(referential_tables(referential))
    return EXIT_OK


def _referential_validate(args: argparse.Namespace) -> int:
    from ceredis.referential import load_referential

    try:
        referential = load_referential(args.file)
    except ReferentialError as exc:
        Console(stderr=True).print(Text(str(exc), style="red"), soft_wrap=True)
        return EXIT_FAILED
    Console().print(
        f"{args.file}: valid referential {referential.id} (version {referential.version}), "
        f"sha256 {referential.hash}",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK
