"""``python -m ceredis``: a thin command line over the Python API.

Each command parses its options, makes one library call, renders the answer with rich
and returns an exit code. Exit codes: 0 success; 1 the work was done and found
failures (a learner in ERROR, a ledger mismatch, an invalid referential); 2 usage or
configuration error (nothing was done); 4 an outage outlasted the budget (the batch
stopped, resumable); 70 internal error (a bug: one line on stderr, the traceback in a
private file under the cache directory); 128 + the signal number when stopped by a signal
(130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ceredis import __version__
from ceredis.errors import (
    CeredisError,
    ConfigError,
    OutageError,
    ReferentialError,
    ReplayError,
)
from ledger.canonical import canonical
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ceredis.interrupt import Interrupted
    from ceredis.plan import BatchPlan
    from ceredis.progress import StepMeter

__all__ = ["main", "run"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130
_UNWRAPPED = 10_000  # a console width no line reaches: text to a file is never wrapped
EXIT_OUTAGE = 4  # an outage outlasted the budget: the batch stopped, resumable


def run() -> NoReturn:
    """The ``ceredis`` command: :func:`main`, then exit without the interpreter's last
    collections, which would only walk what exiting frees anyway (~50 ms of every run)."""
    code = main()
    gc.freeze()
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the one error boundary)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except OutageError as exc:
        _console(stderr=True).print(_labelled("outage: ", str(exc)), soft_wrap=True)
        return EXIT_OUTAGE
    except (CeredisError, LedgerError) as exc:
        _console(stderr=True).print(_labelled("error: ", str(exc)), soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        from rich.text import Text

        _console(stderr=True).print(Text("interrupted", style="bold red"))
        return EXIT_INTERRUPTED
    except Exception as exc:  # the boundary: a bug becomes one line, never a traceback
        details = _save_traceback(exc)
        _console(stderr=True).print(
            _labelled(
                "internal error: ",
                f"{type(exc).__name__}: {_first_line(exc)} — this is a bug; {details}",
            ),
            soft_wrap=True,
        )
        return EXIT_INTERNAL


def _console(**options: Any) -> Console:
    """A rich console, imported on first use: --help, --version and a usage error need none."""
    from rich.console import Console

    return Console(**options)


def _labelled(label: str, message: str) -> Text:
    """*label* in bold red, then *message*: how an error, a refusal or a stop is said."""
    from rich.text import Text

    return Text.assemble((label, "bold red"), message)


def _save_traceback(exc: Exception) -> str:
    """Write *exc*'s traceback to a private (0600) file in the cache directory."""
    from ceredis.config import cache_dir

    text = "".join(traceback.format_exception(exc))
    try:
        folder = cache_dir() / "errors"
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="internal-error-", suffix=".txt", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    except (OSError, CeredisError) as saving:
        return f"the details could not be saved ({saving})"
    return f"details in {path}"


def _first_line(exc: Exception) -> str:
    lines = str(exc).splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= 200 else text[:200] + "…"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ceredis",
        description="CEREDIS engine: evidence to CEREDIS scores and CECRL levels.",
        epilog="Exit codes: 0 success, 1 failures found, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"ceredis {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    batch = commands.add_parser(
        "batch",
        help="score a cohort in parallel into a store, a ledger and a report",
        description="Score learners on a process pool. With nothing configured, scores the "
        "bundled cohort into SQLite under the user data directory (the embedded default).",
        epilog="Exit codes: 0 every learner OK or SKIPPED, 1 some learner failed, 2 usage or "
        "configuration error (nothing scored), 4 a database or source outage outlasted "
        "CEREDIS_OUTAGE_BUDGET (stopped; --resume finishes it), 70 internal error, "
        "130/143/129 stopped by SIGINT/SIGTERM/SIGHUP (the ledger is resumable).",
    )
    who = batch.add_mutually_exclusive_group()
    who.add_argument(
        "--agent", action="append", default=[], metavar="ID", help="a learner (repeatable)"
    )
    who.add_argument("--file", type=Path, metavar="FILE", help="learner ids, one per line")
    who.add_argument("--all", action="store_true", help="every learner the source knows")
    batch.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: CEREDIS_MAX_WORKERS, config file, then 4)",
    )
    batch.add_argument(
        "--in-flight",
        type=int,
        metavar="M",
        help="requests to a remote source in flight at once, all workers together; each "
        "worker fetches the next learners while it scores (default: CEREDIS_IN_FLIGHT, "
        "config file, then 16)",
    )
    batch.add_argument(
        "--executor",
        choices=("local", "dask"),
        help="score on local worker processes (default) or on a Dask cluster (the dask extra)",
    )
    batch.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --executor dask: an existing cluster's scheduler, tcp://host:8786 or "
        "tls://… (default: a LocalCluster of --workers processes)",
    )
    _source_option(batch)
    batch.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://… or sqlite:///path (default: CEREDIS_DATABASE_URL, then an "
        "embedded SQLite file in the user data directory)",
    )
    batch.add_argument("--ledger", type=Path, metavar="PATH", help="the ledger to write")
    batch.add_argument("--report", type=Path, metavar="PATH", help="the JSON report to write")
    batch.add_argument(
        "--resume",
        type=Path,
        metavar="LEDGER",
        help="finish the run recorded in an unfinished ledger (after a crash or a kill)",
    )
    batch.add_argument(
        "--retry-failed",
        type=Path,
        metavar="LEDGER",
        help="score the ERROR learners of a finished run again, as a new run that repairs it",
    )
    batch.add_argument(
        "--chunksize", type=int, metavar="K", help="learners per task (default: automatic)"
    )
    batch.add_argument("--quiet", action="store_true", help="no progress, summary only")
    batch.add_argument(
        "--json",
        action="store_true",
        help="print one JSON summary object on stdout at the end, nothing else (progress on "
        "stderr)",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (learners, source, store, ledger, workers, rate) and exit, "
        "writing nothing",
    )
    batch.add_argument(
        "--allow-empty",
        action="store_true",
        help="record a run even when the learner list is empty (else exit 2)",
    )
    batch.set_defaults(handler=_batch)

    verify = commands.add_parser(
        "verify",
        help="check a ledger's integrity and replay every result",
        description="Check every hash, the chain and the Merkle root, then recompute every "
        "result from its recorded inputs with the recorded referential.",
        epilog="Exit codes: 0 all good, 1 any mismatch or an incomplete run, 2 unreadable.",
    )
    verify.add_argument("ledger", type=Path, metavar="LEDGER")
    verify.add_argument(
        "--database", metavar="URL", help="also check the run's rows in this database"
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE", help="the run's checkpoint")
    verify.add_argument("--key", type=Path, metavar="PUBFILE", help="its verifier key")
    verify.add_argument("--size", type=int, metavar="N", help="the published record count")
    verify.add_argument("--root", metavar="HEX", help="the published resultsRoot")
    verify.set_defaults(handler=_verify)

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

    learners = commands.add_parser(
        "learners",
        help="list the learner ids a source knows",
        description="Print every learner id the evidence source knows, one a line, in the "
        "order `batch --all` scores them (with no --source: the bundled cohort).",
    )
    _source_option(learners)
    learners.set_defaults(handler=_learners)

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
    sample.add_argument(
        "--force", action="store_true", help="replace FILE and its roster if they exist"
    )
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

    keygen = commands.add_parser(
        "keygen",
        help="write an Ed25519 key pair for signing checkpoints",
        description="Write PREFIX.key (the private signer key, 0600; CEREDIS_SIGNING_KEY "
        "names it) and PREFIX.pub (the C2SP verifier key line NAME+<key id>+<base64>).",
        epilog="Exit codes: 0 written, 2 a file exists or cannot be written (never overwritten).",
    )
    keygen.add_argument("name", metavar="NAME", help="the key's name, e.g. example.org/ceredis")
    keygen.add_argument("--out", required=True, metavar="PREFIX", help="PREFIX.key, PREFIX.pub")
    keygen.set_defaults(handler=_keygen)

    prove = commands.add_parser(
        "prove",
        help="write one learner's proof of their result, to check without the ledger",
        description="Bundle the learner's record line, its RFC 6962 inclusion proof and the "
        "run's checkpoint (<ledger stem>.checkpoint, when there is one) into a private file.",
        epilog="Exit codes: 0 written, 1 the ledger fails integrity or is unfinished, "
        "2 unreadable ledger or the learner is not in it.",
    )
    prove.add_argument("ledger", type=Path, metavar="LEDGER")
    prove.add_argument("--agent", required=True, metavar="ID", help="the learner's id")
    prove.add_argument("--out", required=True, type=Path, metavar="FILE", help="the proof file")
    prove.set_defaults(handler=_prove)

    check_proof = commands.add_parser(
        "check-proof",
        help="check a learner's proof offline and print their result",
        description="Check the record line against the proof's content hash, its audit path "
        "up to the root, the root against --root, and the checkpoint's signature with --key.",
        epilog="Exit codes: 0 verified, 1 refused (the message names what failed), "
        "2 unreadable proof or key file.",
    )
    check_proof.add_argument("proof", type=Path, metavar="FILE")
    check_proof.add_argument("--key", type=Path, metavar="PUBFILE", help="the verifier key")
    check_proof.add_argument("--root", metavar="HEX", help="the published resultsRoot")
    check_proof.set_defaults(handler=_check_proof)

    export = commands.add_parser(
        "export",
        help="write a run's per-learner results as CSV (from a verified ledger or a store)",
        description="One row per learner: agentId, status, ceredisScore, bandLevel, "
        "cecrlLevel, D1…D5, one column per competency status, error (RFC 4180, UTF-8). "
        "A ledger is verified first (integrity and replay) and refused if it fails.",
        epilog="Exit codes: 0 written, 1 the ledger fails verification, 2 unreadable ledger, "
        "unknown run or usage error.",
    )
    export.add_argument(
        "ledger", nargs="?", type=Path, metavar="LEDGER", help="the run's ledger (.jsonl)"
    )
    export.add_argument(
        "--database", metavar="URL", help="read the run's rows from this store (with --run)"
    )
    export.add_argument("--run", metavar="ID", help="the run id, with --database")
    export.add_argument("--format", choices=["csv"], default="csv", help="csv (the default)")
    export.add_argument("--out", required=True, type=Path, metavar="FILE", help="output file")
    export.add_argument("--bom", action="store_true", help="start with a UTF-8 BOM (Excel)")
    _unverified_option(export)
    export.set_defaults(handler=_export)

    report = commands.add_parser(
        "report",
        help="write a self-contained HTML cohort report of a verified ledger",
        description="One page with no external resources: the run's facts, granted levels "
        "against bands, a histogram of global scores, average domain scores, the strict-rule "
        "refusals and the failed learners. The ledger is verified first.",
        epilog="Exit codes: 0 written, 1 the ledger fails verification, 2 unreadable ledger "
        "or usage error.",
    )
    report.add_argument("ledger", type=Path, metavar="LEDGER", help="the run's ledger (.jsonl)")
    report.add_argument("--html", required=True, type=Path, metavar="FILE", help="the page")
    _unverified_option(report)
    report.set_defaults(handler=_report)

    restore = commands.add_parser(
        "restore",
        help="rebuild a run's rows in a database from its verified ledger",
        description="Disaster recovery: write the run row, every learner's result row and "
        "the profiles of OK results from the ledger (verified first). Idempotent.",
        epilog="Exit codes: 0 restored, 1 some row conflicts with a different stored result, "
        "2 unreadable or damaged ledger, or an unusable database.",
    )
    restore.add_argument("ledger", type=Path, metavar="LEDGER")
    restore.add_argument("--database", required=True, metavar="URL", help="the database")
    restore.set_defaults(handler=_restore)
    _add_epilogs(commands.choices)
    return parser


#: Per command: the settings it reads (``Setting.attr`` prefixes) and two examples.
_HELP: dict[str, tuple[tuple[str, ...], tuple[str, str]]] = {
    "batch": (
        ("",),
        (
            "ceredis batch --source cohort.jsonl --all --workers 8",
            "ceredis batch --file agents.txt --database postgresql://host/db --json",
        ),
    ),
    "verify": (
        ("database", "progress_interval", "paths.config_file"),
        ("ceredis verify run.jsonl", "ceredis verify run.jsonl --database sqlite:///r.sqlite"),
    ),
    "evaluate": (
        ("source", "paths.cache_dir", "paths.config_file", "rate", "http", "cass", "xapi"),
        ("ceredis evaluate --agent L0001", "ceredis evaluate --agent L7 --source cohort.jsonl"),
    ),
    "learners": (
        ("source", "paths.cache_dir", "paths.config_file", "rate", "http", "cass", "xapi"),
        ("ceredis learners", "ceredis learners --source cohort.jsonl | head"),
    ),
    "sample": (
        (),
        ("ceredis sample --agents 1000 --out cohort.jsonl", "ceredis sample --agents 20 "
         "--seed 7 --evidence-per-learner 30 --out small.jsonl"),
    ),
    "referential": (
        (),
        ("ceredis referential show", "ceredis referential validate candidate.json"),
    ),
    "keygen": (
        (),
        ("ceredis keygen example.org/ceredis --out signer",
         "ceredis keygen school.example/ceredis-2027 --out keys/ceredis-2027"),
    ),
    "prove": (
        (),
        ("ceredis prove run.jsonl --agent L0001 --out L0001.proof",
         "ceredis prove ~/ledgers/run.jsonl --agent L7 --out /tmp/L7.proof"),
    ),
    "check-proof": (
        (),
        ("ceredis check-proof L0001.proof --root HEX",
         "ceredis check-proof L0001.proof --key signer.pub"),
    ),
    "export": (
        ("database", "progress_interval", "paths.config_file"),
        ("ceredis export run.jsonl --out results.csv --bom",
         "ceredis export --database postgresql://host/db --run RUN_ID --out results.csv"),
    ),
    "restore": (
        ("paths.config_file",),
        ("ceredis restore run.jsonl --database postgresql://host/db",
         "ceredis restore ~/ledgers/run.jsonl --database sqlite:///restored.sqlite"),
    ),
    "report": (
        ("progress_interval", "paths.config_file"),
        ("ceredis report run.jsonl --html cohort.html",
         "ceredis report ~/ledgers/run.jsonl --html /tmp/cohort.html"),
    ),
}  # fmt: skip


class _Formatter(argparse.HelpFormatter):
    """Wraps prose, but keeps the lines of an epilog that start indented."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            line
            if line.startswith("  ")
            else super(_Formatter, self)._fill_text(line, width, indent)
            for line in text.splitlines()
        )


def _add_epilogs(commands: dict[str, argparse.ArgumentParser]) -> None:
    """End every command's help with its environment variables, the config file, examples."""
    from ceredis.config import default_config_file, settings_help

    for name, sub in commands.items():
        if name not in _HELP:  # a new command: tests/test_ux.py asks for its entry
            continue
        groups, examples = _HELP[name]
        environment = settings_help(groups) if groups else "  none"
        sub.formatter_class = _Formatter
        sub.epilog = "\n".join(
            [
                *([sub.epilog, ""] if sub.epilog else []),
                "environment:",
                environment,
                "",
                f"config file: {default_config_file()} (CEREDIS_CONFIG names another)",
                "",
                "examples:",
                *(f"  {example}" for example in examples),
            ]
        )


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


def _batch(args: argparse.Namespace) -> int:
    from ceredis.interrupt import Interrupted, interruptible

    plan = None
    try:
        with interruptible():
            plan = _plan(args)
            return _run_planned(plan, args)
    except Interrupted as stop:
        _interrupted(stop, plan)
        return stop.exit_code


def _run_planned(plan: BatchPlan, args: argparse.Namespace) -> int:
    from ceredis.config import load_settings
    from ceredis.engine import run_batch
    from ceredis.progress import BatchConsole, source_total

    if args.dry_run:
        from ceredis.render import plan_view

        total = plan.selection.count()
        total = source_total(plan) if total is None else total
        _say(plan_view(plan, total))
        return EXIT_OK
    if plan.executor == "dask":
        from ceredis.dask_pool import insecure_scheduler

        if warning := insecure_scheduler(plan.scheduler):
            _console(stderr=True).print(f"warning: {warning}", highlight=False, soft_wrap=True)
    interval = load_settings().progress_interval
    out = _console(stderr=True) if args.json else _console()
    console = BatchConsole(out, quiet=args.quiet, interval=interval)
    report = run_batch(plan, console)
    if report.completed:
        out.print(
            f"{plan.ledger} was already finished: the run row (and any missing learner rows) "
            f"in {plan.store.display} were completed from the ledger",
            highlight=False,
            soft_wrap=True,
        )
    if args.json:
        from ceredis.proofs import checkpoint_path

        checkpoint = checkpoint_path(plan.ledger)
        summary = report.to_json(checkpoint if checkpoint.exists() else None)
        sys.stdout.buffer.write(canonical(summary) + b"\n")
    else:
        console.summary(report)
    return report.return_code


def _plan(args: argparse.Namespace) -> BatchPlan:
    """The batch's plan from its options: a new run, or the resumed one."""
    from ceredis.plan import plan_batch, plan_resume

    if args.resume:
        if args.dry_run:
            raise ConfigError("--dry-run plans a new run; it does not combine with --resume")
        if args.agent or args.file or args.all or args.source or args.ledger:
            raise ConfigError(
                "--resume continues a recorded run: its learners, source and ledger come "
                "from the ledger; give only --database, --workers, --in-flight or --report"
            )
        if args.retry_failed:
            raise ConfigError("give either --resume or --retry-failed, not both")
        return plan_resume(
            args.resume,
            database=args.database,
            workers=args.workers,
            in_flight=args.in_flight,
            report=args.report,
            executor=args.executor,
            scheduler=args.scheduler,
        )
    if args.retry_failed:
        return _retry_failed_plan(args)
    return plan_batch(
        agents=args.agent,
        agents_file=args.file,
        all_agents=args.all,
        source=args.source,
        database=args.database,
        workers=args.workers,
        in_flight=args.in_flight,
        ledger=args.ledger,
        report=args.report,
        chunksize=args.chunksize,
        allow_empty=args.allow_empty,
        check_store=not args.dry_run,
        executor=args.executor,
        scheduler=args.scheduler,
    )


def _learners(args: argparse.Namespace) -> int:
    from ceredis.config import load_settings
    from ceredis.report import plural
    from ceredis.sources import prepare_source

    settings = load_settings({"source": args.source})
    spec = prepare_source(settings.source, settings)
    client = spec.open()
    count = 0
    try:
        for agent in client.agents():
            sys.stdout.write(agent + "\n")
            count += 1
    finally:
        client.close()
    sys.stdout.flush()
    _console(stderr=True).print(
        f"{plural(count, 'learner')} in {spec.name}", highlight=False, soft_wrap=True
    )
    return EXIT_OK


def _interrupted(stop: Interrupted, plan: BatchPlan | None) -> None:
    """Say what a stop signal left behind, and the exact command that finishes the run."""
    if plan is None or not plan.ledger.exists():
        after = "before any learner was scored; nothing to resume"
    else:
        from ceredis.engine import resume_command

        after = (
            f"the ledger {plan.ledger} is incomplete but resumable; finish the run with: "
            f"{resume_command(plan)}"
        )
    _console(stderr=True).print(
        _labelled(f"interrupted by {stop.name}: ", after), highlight=False, soft_wrap=True
    )


def _retry_failed_plan(args: argparse.Namespace) -> BatchPlan:
    """The plan of ``batch --retry-failed LEDGER``: a new run of the run's ERROR learners."""
    from ceredis.repair import plan_retry_failed

    if args.agent or args.file or args.all:
        raise ConfigError(
            "--retry-failed scores the ERROR learners recorded in the ledger: do not choose "
            "learners with --agent, --file or --all"
        )
    return plan_retry_failed(
        args.retry_failed,
        source=args.source,
        database=args.database,
        workers=args.workers,
        in_flight=args.in_flight,
        new_ledger=args.ledger,
        report=args.report,
        chunksize=args.chunksize,
        executor=args.executor,
        scheduler=args.scheduler,
    )


def _verify(args: argparse.Namespace) -> int:
    from ceredis.audit import audit_ledger

    try:
        with _meter() as meter:
            audit = audit_ledger(args.ledger, args.database, progress=meter)
        audit.findings.extend(_anchor_findings(args, audit))
        audit.findings.extend(_run_row_findings(args))
    except (ReplayError, LedgerError, OSError) as exc:
        _console(stderr=True).print(_labelled("unreadable: ", str(exc)), soft_wrap=True)
        return EXIT_USAGE
    if args.json:
        sys.stdout.buffer.write(canonical(audit.to_json()) + b"\n")
    else:
        from ceredis.render import audit_view

        _console().print(audit_view(audit), soft_wrap=True)
    return EXIT_OK if audit.ok else EXIT_FAILED


def _evaluate(args: argparse.Namespace) -> int:
    from ceredis.config import load_settings
    from ceredis.engine import evaluate_agent
    from ceredis.outcome import Status
    from ceredis.referential import load_referential

    referential = load_referential(args.referential)
    source = load_settings({"source": args.source}).source
    result = evaluate_agent(args.agent, source, referential)
    if args.json:
        sys.stdout.buffer.write(canonical(result) + b"\n")
    else:
        from ceredis.render import result_view

        console = _console()
        if console.is_terminal:
            console.print(result_view(result, referential))
        else:  # cron mail, a pipe, a file: plain text, unwrapped
            _console(width=_UNWRAPPED).print(result_view(result, referential, plain=True))
    return EXIT_FAILED if result["status"] == Status.ERROR else EXIT_OK


def _sample(args: argparse.Namespace) -> int:
    from ceredis.interrupt import Interrupted, interruptible
    from ceredis.referential import load_referential
    from ceredis.report import plural
    from ceredis.sample import write_cohort

    try:
        with interruptible():
            written = write_cohort(
                args.out,
                load_referential(args.referential),
                args.agents,
                args.seed,
                args.evidence_per_learner,
                force=args.force,
            )
    except Interrupted as stop:
        _console(stderr=True).print(
            _labelled(f"interrupted by {stop.name}: ", "nothing written"), highlight=False
        )
        return stop.exit_code
    _say(
        f"wrote {plural(written.records, 'evidence record')} for "
        f"{plural(written.learners, 'learner')} to "
        f"{written.evidence}; roster ({written.without_evidence} without evidence) in "
        f"{written.roster}",
    )
    return EXIT_OK


def _referential_show(args: argparse.Namespace) -> int:
    from ceredis.referential import load_referential
    from ceredis.render import referential_tables

    referential = load_referential(args.file)
    if args.json:
        sys.stdout.buffer.write(canonical(referential.document) + b"\n")
    else:
        _console().print(referential_tables(referential))
    return EXIT_OK


def _referential_validate(args: argparse.Namespace) -> int:
    from ceredis.referential import load_referential

    try:
        referential = load_referential(args.file)
    except ReferentialError as exc:
        from rich.text import Text

        _console(stderr=True).print(Text(str(exc), style="red"), soft_wrap=True)
        return EXIT_FAILED
    _say(
        f"{args.file}: valid referential {referential.id} (version {referential.version}), "
        f"sha256 {referential.hash}",
    )
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from ceredis.proofs import write_key_pair

    private, public, verifier = write_key_pair(args.name, args.out)
    _say(
        f"wrote the private key {private} (secret: point CEREDIS_SIGNING_KEY at it) and the "
        f"verifier key {public}: {verifier.encode()}",
    )
    return EXIT_OK


def _prove(args: argparse.Namespace) -> int:
    from ceredis.proofs import ProofRefused, prove_agent, write_proof

    try:
        proof = prove_agent(args.ledger, args.agent)
    except ProofRefused as exc:
        _refused(exc)
        return EXIT_FAILED
    out = write_proof(proof, args.out)
    inclusion = proof.inclusion
    checkpoint = "with the run's checkpoint" if proof.checkpoint else "no checkpoint"
    _say(
        f"wrote the proof of {args.agent} (record {inclusion.index + 1} of {inclusion.size}, "
        f"root {inclusion.root}, {checkpoint}) to {out}",
    )
    return EXIT_OK


def _check_proof(args: argparse.Namespace) -> int:
    from ceredis.proofs import ProofRefused, check_proof, read_proof_file
    from ledger.note import read_verifier_key

    data = read_proof_file(args.proof)
    key = read_verifier_key(args.key) if args.key else None
    try:
        checked = check_proof(data, key=key, root=args.root)
    except ProofRefused as exc:
        _refused(exc)
        return EXIT_FAILED
    _say(checked.summary())
    return EXIT_OK


def _refused(exc: Exception) -> None:
    _console(stderr=True).print(_labelled("refused: ", str(exc)), highlight=False, soft_wrap=True)


def _unverified_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unverified",
        action="store_true",
        help="use a ledger that fails verification anyway (the output says so)",
    )


def _export(args: argparse.Namespace) -> int:
    from ceredis.cohort import CohortRefused, open_cohort
    from ceredis.export import check_writable, cohort_csv
    from ceredis.private import write_replacing
    from ceredis.report import plural

    check_writable(args.out)
    try:
        with _meter() as meter:
            cohort = open_cohort(
                args.ledger, args.database, args.run, verify=not args.unverified, progress=meter
            )
    except CohortRefused as exc:
        _refused(exc)
        return EXIT_FAILED
    out = write_replacing(args.out, cohort_csv(cohort, bom=args.bom))
    _written(plural(len(cohort.learners), "learner"), cohort.origin, cohort.verification, out)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from ceredis.cohort import CohortRefused, cohort_from_ledger
    from ceredis.export import check_writable
    from ceredis.html_report import render_report
    from ceredis.private import write_replacing

    check_writable(args.html)
    try:
        with _meter() as meter:
            cohort = cohort_from_ledger(args.ledger, verify=not args.unverified, progress=meter)
    except CohortRefused as exc:
        _refused(exc)
        return EXIT_FAILED
    out = write_replacing(args.html, render_report(cohort).encode("utf-8"))
    _written("the cohort report", cohort.origin, cohort.verification, out)
    return EXIT_OK


def _meter() -> StepMeter:
    """Progress of a verification, an export or a report, on stderr: a bar on a terminal,
    else a plain line every CEREDIS_PROGRESS_INTERVAL seconds."""
    from ceredis.config import load_settings
    from ceredis.progress import StepMeter

    return StepMeter(_console(stderr=True), interval=load_settings().progress_interval)


def _written(what: str, origin: str, verification: str, out: Path) -> None:
    _console().print(
        f"wrote {what} of {origin} ({verification}) to {out}", highlight=False, soft_wrap=True
    )


def _anchor_findings(args: argparse.Namespace, audit: Any) -> list[Any]:
    """Findings of the external anchors given on the command line (checkpoint, size, root)."""
    from ceredis.anchors import check_anchors

    if args.checkpoint is None and args.size is None and args.root is None:
        return []
    return check_anchors(
        audit.records,
        audit.recorded_root,
        checkpoint=args.checkpoint,
        key=args.key,
        expected_size=args.size,
        expected_root=args.root,
    )


def _run_row_findings(args: argparse.Namespace) -> list[Any]:
    """A finding, with its fix, when the ledger is finished and the run row is not."""
    from ceredis.audit import Finding
    from ceredis.restore import unfinished_run

    why = unfinished_run(args.ledger, args.database) if args.database else None
    return [Finding(None, None, "database: run unfinished", why)] if why else []


def _restore(args: argparse.Namespace) -> int:
    from ceredis.report import plural
    from ceredis.restore import restore_run
    from ceredis.stores import prepare_store

    spec = prepare_store(args.database)
    restored = restore_run(args.ledger, spec)
    state = "finished" if restored.finished else "unfinished (no footer yet)"
    _say(
        f"restored run {restored.run_id} into {spec.display}: "
        f"{plural(restored.rows, 'learner row')} "
        f"written or already there, run row {state}",
    )
    for agent, error in restored.conflicts.items():
        _refused(Exception(f"{agent}: {error}"))
    return EXIT_FAILED if restored.conflicts else EXIT_OK


def _say(text: str) -> None:
    """One line (or a few) for a person on stdout: never wrapped, nothing highlighted."""
    _console().print(text, highlight=False, soft_wrap=True)
