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
from typing import Any

from rich.console import Console
from rich.text import Text

from ceredis import __version__
from ceredis.errors import CeredisError, ConfigError, ReferentialError, ReplayError
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

    batch = commands.add_parser(
        "batch",
        help="score a cohort in parallel into a store, a ledger and a report",
        description="Score learners on a process pool. With nothing configured, scores the "
        "bundled cohort into SQLite under the user data directory (the embedded default).",
        epilog="Exit codes: 0 every learner OK or SKIPPED, 1 some learner failed, 2 usage or "
        "configuration error (nothing scored).",
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
        "--chunksize", type=int, metavar="K", help="learners per task (default: automatic)"
    )
    batch.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
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


def _batch(args: argparse.Namespace) -> int:
    from ceredis.engine import run_batch
    from ceredis.plan import plan_batch, plan_resume
    from ceredis.progress import BatchConsole

    if args.resume:
        if args.agent or args.file or args.all or args.source or args.ledger:
            raise ConfigError(
                "--resume continues a recorded run: its learners, source and ledger come "
                "from the ledger; give only --database, --workers or --report"
            )
        plan = plan_resume(
            args.resume, database=args.database, workers=args.workers, report=args.report
        )
    else:
        plan = plan_batch(
            agents=args.agent,
            agents_file=args.file,
            all_agents=args.all,
            source=args.source,
            database=args.database,
            workers=args.workers,
            ledger=args.ledger,
            report=args.report,
            chunksize=args.chunksize,
        )
    console = BatchConsole(Console(), quiet=args.quiet)
    report = run_batch(plan, console)
    if report.completed:
        Console().print(
            f"{plan.ledger} was already finished: the run row (and any missing learner rows) "
            f"in {plan.store.display} were completed from the ledger",
            highlight=False,
            soft_wrap=True,
        )
    console.summary(report)
    return report.return_code


def _verify(args: argparse.Namespace) -> int:
    from ceredis.audit import audit_ledger

    try:
        audit = audit_ledger(args.ledger, args.database)
        audit.findings.extend(_anchor_findings(args, audit))
        audit.findings.extend(_run_row_findings(args))
    except (ReplayError, LedgerError, OSError) as exc:
        Console(stderr=True).print(
            Text.assemble(("unreadable: ", "bold red"), str(exc)), soft_wrap=True
        )
        return EXIT_USAGE
    if args.json:
        sys.stdout.buffer.write(canonical(audit.to_json()) + b"\n")
    else:
        from ceredis.render import audit_view

        Console().print(audit_view(audit), soft_wrap=True)
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

        Console().print(result_view(result, referential))
    return EXIT_FAILED if result["status"] == Status.ERROR else EXIT_OK


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


def _keygen(args: argparse.Namespace) -> int:
    from ceredis.proofs import write_key_pair

    private, public, verifier = write_key_pair(args.name, args.out)
    Console().print(
        f"wrote the private key {private} (secret: point CEREDIS_SIGNING_KEY at it) and the "
        f"verifier key {public}: {verifier.encode()}",
        highlight=False,
        soft_wrap=True,
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
    Console().print(
        f"wrote the proof of {args.agent} (record {inclusion.index + 1} of {inclusion.size}, "
        f"root {inclusion.root}, {checkpoint}) to {out}",
        highlight=False,
        soft_wrap=True,
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
    Console().print(checked.summary(), highlight=False, soft_wrap=True)
    return EXIT_OK


def _refused(exc: Exception) -> None:
    Console(stderr=True).print(
        Text.assemble(("refused: ", "bold red"), str(exc)), highlight=False, soft_wrap=True
    )


def _anchor_findings(args: argparse.Namespace, audit: Any) -> list[Any]:
    """Findings of the external anchors given on the command line (checkpoint, size, root)."""
    from ceredis.anchors import check_anchors

    if args.checkpoint is None and args.size is None and args.root is None:
        return []
    return check_anchors(
        audit.records,
        audit.results_root,
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
    from ceredis.restore import restore_run
    from ceredis.stores import prepare_store

    spec = prepare_store(args.database)
    restored = restore_run(args.ledger, spec)
    state = "finished" if restored.finished else "unfinished (no footer yet)"
    Console().print(
        f"restored run {restored.run_id} into {spec.display}: {restored.rows} learner rows "
        f"written or already there, run row {state}",
        highlight=False,
        soft_wrap=True,
    )
    for agent, error in restored.conflicts.items():
        _refused(Exception(f"{agent}: {error}"))
    return EXIT_FAILED if restored.conflicts else EXIT_OK
