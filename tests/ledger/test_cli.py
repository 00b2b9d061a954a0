"""``python -m ledger``: verify, prove, check-proof, consistency; exit codes 0 / 1 / 2, output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import LedgerWriter, verify_ledger
from ledger.cli import main
from ledger.errors import ProofError
from ledger.merkle import verify_consistency
from tests.ledger.helpers import FOOTER, body, lines_of, write_ledger

GOLDEN = Path(__file__).parent / "golden"
OK = GOLDEN / "ok.jsonl"


def run(*argv: str | Path) -> tuple[int, str]:
    """Run main() in-process; returns (exit code, stdout)."""
    out = io.StringIO()
    code = main([str(a) for a in argv], out)
    return code, out.getvalue()


def test_verify_good_ledger() -> None:
    """A good ledger: exit 0 and one line naming the count and the root."""
    code, out = run("verify", OK)
    root = verify_ledger(OK).root
    assert code == 0
    assert out == f"{OK}: ok: 5 records, complete, root {root}\n"


def test_verify_tampered_ledger_lists_every_problem() -> None:
    """Tampering: exit 1, a FAILED line, then one line per problem with line and kind."""
    code, out = run("verify", GOLDEN / "deleted-line.jsonl")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("FAILED: 4 problems in 6 lines")
    assert [line.split(":")[0:2] for line in lines[1:]] == [
        ["  line 4", " chain"],
        ["  line 4", " deleted"],
        ["  line 6", " footer-count"],
        ["  line 6", " footer-root"],
    ]


def test_verify_incomplete_ledger() -> None:
    """No footer: exit 1 and the word 'incomplete', not a list of problems."""
    code, out = run("verify", GOLDEN / "unfinished.jsonl")
    assert code == 1
    assert "incomplete: 5 records verified, no footer" in out and "FAILED" not in out


def test_verify_json() -> None:
    """--json prints the machine-readable report."""
    code, out = run("verify", "--json", GOLDEN / "reordered-lines.jsonl")
    report = json.loads(out)
    assert code == 1 and report["status"] == "failed" and report["count"] == 5
    assert {"line": 4, "kind": "reordered", "message": report["problems"][2]["message"]} in report[
        "problems"
    ]


def test_verify_with_anchor() -> None:
    """--size/--root: the right anchor passes, a wrong root or a truncation fails."""
    good = verify_ledger(OK)
    assert run("verify", OK, "--size", "5", "--root", good.root)[0] == 0
    assert run("verify", OK, "--size", "5", "--root", "ab" * 32)[0] == 1
    code, out = run("verify", GOLDEN / "unfinished.jsonl", "--size", "5", "--root", good.root)
    assert code == 1 and "anchor" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["verify"],
        ["verify", "x.jsonl", "--size", "5"],
        ["verify", "x.jsonl", "--size", "-1", "--root", "ab" * 32],
        ["verify", "x.jsonl", "--size", "1", "--root", "xyz"],
        ["prove", "x.jsonl", "one"],
        ["check-proof", "p.json"],
        ["frobnicate"],
        [],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad usage exits 2 with a message on stderr."""
    assert main(argv, io.StringIO()) == 2
    assert capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and lists the three commands and the exit codes."""
    assert main(["--help"], io.StringIO()) == 0
    help_text = capsys.readouterr().out
    assert all(word in help_text for word in ("verify", "prove", "check-proof", "exit codes"))


def test_unreadable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing ledger: exit 2 and one 'error:' line on stderr (the single error boundary)."""
    assert run("verify", tmp_path / "missing.jsonl")[0] == 2
    assert capsys.readouterr().err.startswith("error: ")


def prove_to(tmp_path: Path, index: int) -> Path:
    """Run prove and store its output as a proof file."""
    code, out = run("prove", OK, str(index))
    assert code == 0
    path = tmp_path / f"proof-{index}.json"
    path.write_text(out)
    return path


def test_prove_prints_a_proof() -> None:
    """prove prints index, size, root, the audit path and the record's content hash."""
    code, out = run("prove", OK, "2")
    proof = json.loads(out)
    assert code == 0
    assert set(proof) == {"contentHash", "format", "index", "path", "root", "size"}
    assert (proof["index"], proof["size"], proof["root"]) == (2, 5, verify_ledger(OK).root)
    assert proof["contentHash"] in lines_of(OK)[3].decode()
    assert len(proof["path"]) == 3


def test_prove_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """An index out of range exits 2; a ledger that fails verification exits 1."""
    assert run("prove", OK, "5")[0] == 2
    assert "outside 0..4" in capsys.readouterr().err
    assert run("prove", GOLDEN / "tampered-body.jsonl", "0")[0] == 1
    assert "fails verification" in capsys.readouterr().err


@pytest.mark.parametrize("index", range(5))
def test_check_proof_with_the_stored_line(tmp_path: Path, index: int) -> None:
    """Each record line, exactly as stored, checks against its proof: exit 0."""
    proof = prove_to(tmp_path, index)
    record = tmp_path / "record.jsonl"
    record.write_bytes(lines_of(OK)[index + 1])
    code, out = run("check-proof", proof, "--record", record)
    assert code == 0 and out.startswith(f"included: record {index} of 5")


def test_check_proof_with_a_reformatted_body(tmp_path: Path) -> None:
    """The body alone, even pretty-printed by hand, checks too (its canonical bytes are hashed)."""
    proof = prove_to(tmp_path, 1)
    line = lines_of(OK)[2].decode()
    body_text = line[len('{"body":') : line.index(',"hash":"')]
    record = tmp_path / "body.json"
    record.write_text(json.dumps(json.loads(body_text), indent=4, ensure_ascii=True) + "\n")
    assert run("check-proof", proof, "--record", record)[0] == 0


def test_check_proof_rejects_other_records_and_roots(tmp_path: Path) -> None:
    """Another record, a tampered path, or a root you do not trust: exit 1, 'NOT included'."""
    proof = prove_to(tmp_path, 1)
    other = tmp_path / "other.jsonl"
    other.write_bytes(lines_of(OK)[3])
    code, out = run("check-proof", proof, "--record", other)
    assert code == 1 and out.startswith("NOT included")
    mine = tmp_path / "mine.jsonl"
    mine.write_bytes(lines_of(OK)[2])
    assert run("check-proof", proof, "--record", mine, "--root", "ab" * 32)[0] == 1
    data = json.loads(proof.read_text())
    data["path"][0] = data["path"][0][::-1]
    proof.write_text(json.dumps(data))
    assert run("check-proof", proof, "--record", mine)[0] == 1


@pytest.mark.parametrize(
    "proof_text",
    [
        "not json",
        "[]",
        '{"format": "ledger-proof/1"}',
        '{"contentHash":"00","format":"ledger-proof/1","index":0,"path":[],"root":"00","size":1}',
    ],
)
def test_check_proof_malformed_proof_exits_2(tmp_path: Path, proof_text: str) -> None:
    """A proof file that is not a ledger-proof/1 object exits 2."""
    proof = tmp_path / "proof.json"
    proof.write_text(proof_text)
    record = tmp_path / "record.jsonl"
    record.write_bytes(lines_of(OK)[2])
    assert run("check-proof", proof, "--record", record)[0] == 2


def test_check_proof_refuses_a_header_line(tmp_path: Path) -> None:
    """Giving the header line instead of a record exits 1: it is not a record."""
    proof = prove_to(tmp_path, 0)
    record = tmp_path / "record.jsonl"
    record.write_bytes(lines_of(OK)[0])
    code, out = run("check-proof", proof, "--record", record)
    assert code == 1 and "not a record" in out


def test_python_dash_m_ledger(tmp_path: Path) -> None:
    """The real entry point: python -m ledger verify exits 0 on the golden ledger."""
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "verify", str(OK)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0 and ": ok: 5 records" in done.stdout


# --- consistency: the real entry point, python -m ledger consistency OLD NEW -------------


def cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ledger`` in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "ledger", *map(str, argv)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )


@pytest.fixture
def grown(tmp_path: Path) -> tuple[Path, Path]:
    """An unfinished ledger of 3 records kept aside, and the same run grown to 7, finished."""
    new = write_ledger(tmp_path / "new.jsonl", [body(i) for i in range(3)], finish=False)
    old = tmp_path / "old.jsonl"
    old.write_bytes(new.read_bytes())
    with LedgerWriter.open(new) as writer:
        for i in range(3, 7):
            writer.append(body(i))
        writer.finish(FOOTER)
    return old, new


def test_consistency_prints_a_proof_that_checks(grown: tuple[Path, Path]) -> None:
    """An older snapshot of a run: exit 0 and a proof that the RFC 9162 check accepts."""
    old, new = grown
    done = cli("consistency", old, new)
    assert done.returncode == 0, done.stderr
    proof = json.loads(done.stdout)
    assert proof["format"] == "ledger-consistency/1"
    assert (proof["oldSize"], proof["newSize"]) == (3, 7)
    assert (proof["oldRoot"], proof["newRoot"]) == (
        verify_ledger(old).root,
        verify_ledger(new).root,
    )
    hashes = [bytes.fromhex(h) for h in proof["path"]]
    roots = bytes.fromhex(proof["oldRoot"]), bytes.fromhex(proof["newRoot"])
    verify_consistency(3, 7, hashes, *roots)
    with pytest.raises(ProofError):
        verify_consistency(3, 7, hashes[::-1], *roots)


def test_consistency_of_a_ledger_with_itself(grown: tuple[Path, Path]) -> None:
    """A ledger is a prefix of itself: exit 0, an empty path."""
    _, new = grown
    done = cli("consistency", new, new)
    assert done.returncode == 0 and json.loads(done.stdout)["path"] == []


def test_consistency_refuses_what_is_not_a_prefix(grown: tuple[Path, Path], tmp_path: Path) -> None:
    """Other records, the ledgers swapped, another run's header: exit 1, 'NOT a prefix'."""
    old, new = grown
    other = write_ledger(tmp_path / "other.jsonl", [body(i + 1) for i in range(3)], finish=False)
    rerun = write_ledger(
        tmp_path / "rerun.jsonl", [body(i) for i in range(3)], finish=False, header={"run": "2"}
    )
    for older, newer, why in (
        (other, new, "mismatch"),
        (new, old, "holds 7 records, the newer 3"),
        (rerun, new, "different headers"),
    ):
        done = cli("consistency", older, newer)
        assert done.returncode == 1 and done.stdout.startswith("NOT a prefix: "), older.name
        assert why in done.stdout


def test_consistency_of_a_tampered_ledger_exits_1(grown: tuple[Path, Path]) -> None:
    """A newer ledger that fails verification gives no proof: exit 1, the problem on stderr."""
    old, _ = grown
    done = cli("consistency", old, GOLDEN / "tampered-body.jsonl")
    assert done.returncode == 1 and done.stdout == ""
    assert "fails verification, no proof: line 3: content-hash" in done.stderr


def test_consistency_usage_and_unreadable_exit_2(grown: tuple[Path, Path]) -> None:
    """One argument, or a missing file: exit 2; the verb is in the help."""
    old, _ = grown
    assert cli("consistency", old).returncode == 2
    missing = cli("consistency", old, old.parent / "missing.jsonl")
    assert missing.returncode == 2 and missing.stderr.startswith("error: ")
    assert "consistency" in cli("--help").stdout
