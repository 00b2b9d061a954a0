"""A learner checks their own result by id: keygen, prove --agent, check-proof, offline.

One real 200-learner run (sample + batch on two workers into SQLite), a checkpoint signed
with keys written by ``ceredis keygen``, and every learner's proof checked; one-byte
changes anywhere in a proof file are refused; files are created private under umask 022.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ceredis.cli import main
from ceredis.proofs import (
    LearnerProof,
    ProofRefused,
    check_proof,
    checkpoint_path,
    prove_agent,
    prove_agents,
    write_checkpoint,
)
from ledger import read_ledger
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.note import SignerKey, VerifierKey, read_signer_key, read_verifier_key

KEY_NAME = "ceredis.example/runs"


@pytest.fixture(scope="module", autouse=True)
def umask_022() -> Iterator[None]:
    """Every file of these tests is created under the usual umask, 022."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@dataclass(frozen=True)
class Run:
    """A finished 200-learner run with a signed checkpoint beside its ledger."""

    dir: Path
    ledger: Path
    agents: list[str]
    records: dict[str, dict[str, Any]]  # agent id -> record body
    size: int
    root: str
    signer: SignerKey
    pub: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, umask_022: None) -> Run:
    """``sample --agents 200``, ``batch --workers 2``, ``keygen`` and a signed checkpoint."""
    home = tmp_path_factory.mktemp("proofs")
    cohort, ledger = home / "cohort.jsonl", home / "run.jsonl"
    assert main(["sample", "--agents", "200", "--seed", "7", "--out", str(cohort)]) == 0
    batch = ["batch", "--source", str(cohort), "--file", str(home / "cohort.agents.txt")]
    batch += ["--workers", "2", "--database", f"sqlite:///{home / 'r.db'}", "--quiet"]
    assert main([*batch, "--ledger", str(ledger)]) == 0
    assert main(["keygen", KEY_NAME, "--out", str(home / "signer")]) == 0
    lines = list(read_ledger(ledger))
    footer = lines[-1].body["ledger"]
    signer = read_signer_key(home / "signer.key")
    checkpoint = Checkpoint(KEY_NAME, footer["count"], bytes.fromhex(footer["resultsRoot"]))
    _write_private(checkpoint_path(ledger), sign_checkpoint(checkpoint, signer).encode())
    records = {r.body["agentId"]: r.body for r in lines if r.kind == "record"}
    return Run(
        home,
        ledger,
        list(records),
        records,
        footer["count"],
        footer["resultsRoot"],
        signer,
        home / "signer.pub",
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _ceredis(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "ceredis", *map(str, args)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def proofs(run: Run) -> dict[str, LearnerProof]:
    """Every learner's proof, built through the Python API in one call."""
    return dict(zip(run.agents, prove_agents(run.ledger, run.agents), strict=True))


def test_the_run_has_200_learners_and_a_signed_checkpoint(run: Run):
    """The fixture is what the tests below rely on: 200 records, a checkpoint that verifies."""
    assert run.size == len(run.agents) == 200
    text = checkpoint_path(run.ledger).read_text()
    checkpoint = open_checkpoint(text, [read_verifier_key(run.pub)])
    assert (checkpoint.size, checkpoint.root_hex) == (200, run.root)


def test_every_learner_of_the_run_proves_and_checks(run: Run, proofs: dict[str, LearnerProof]):
    """Each of the 200 proofs verifies against the footer's root and the signed checkpoint,
    and says exactly what the learner's ledger record says."""
    key = read_verifier_key(run.pub)
    for agent, proof in proofs.items():
        checked = check_proof(proof.encode(), key=key, root=run.root)
        result = run.records[agent]["result"]
        assert checked.agent_id == agent
        assert (checked.status, checked.score, checked.level) == (
            result["status"],
            result.get("ceredisScore"),
            result.get("cecrlLevel"),
        )
        assert (checked.root, checked.size, checked.signer) == (run.root, 200, KEY_NAME)
        assert checked.trusted_root
    assert {p.inclusion.index for p in proofs.values()} == set(range(200))


def test_one_proof_is_the_same_through_either_call(run: Run, proofs: dict[str, LearnerProof]):
    """prove_agent gives the very bytes prove_agents gave for the same learner."""
    agent = run.agents[117]
    assert prove_agent(run.ledger, agent).encode() == proofs[agent].encode()


def test_a_proof_holds_no_one_elses_record(run: Run, proofs: dict[str, LearnerProof]):
    """A learner's proof names only them: no other learner's id appears in its bytes."""
    for agent in run.agents[::40]:
        data = proofs[agent].encode()
        assert agent.encode() in data
        assert not [a for a in run.agents if a != agent and a.encode() in data]


@pytest.mark.parametrize("position", [0, 99, 199])
def test_prove_and_check_proof_through_the_command_line(run: Run, position: int, tmp_path: Path):
    """The real CLI: prove writes a private proof; check-proof prints the learner's result,
    signed by the key's name; with no anchor it says only consistency was checked."""
    agent, out = run.agents[position], tmp_path / "proof.json"
    done = _ceredis("prove", run.ledger, "--agent", agent, "--out", out)
    assert done.returncode == 0, done.stderr
    assert _mode(out) == 0o600
    assert out.read_bytes() == prove_agent(run.ledger, agent).encode()
    done = _ceredis("check-proof", out, "--key", run.pub, "--root", run.root)
    assert done.returncode == 0, done.stderr
    result = run.records[agent]["result"]
    line = done.stdout.strip()
    assert line.startswith(f"{agent}: status {result['status']}, ")
    assert f"CEREDIS score {result['ceredisScore']}" in line
    assert f"granted CECRL level {result['cecrlLevel']}" in line
    assert line.endswith(f"verified against root {run.root} (signed by {KEY_NAME})")
    done = _ceredis("check-proof", out, "--root", run.root)
    assert done.returncode == 0 and done.stdout.strip().endswith("(unsigned)")
    done = _ceredis("check-proof", out)
    assert done.returncode == 0 and "only internal consistency was checked" in done.stdout


def _changed(data: bytes, position: int, rng: random.Random) -> bytes:
    """*data* with the byte at *position* replaced by a different byte."""
    new = (data[position] + rng.randrange(1, 256)) % 256
    return data[:position] + bytes([new]) + data[position + 1 :]


def _positions(data: bytes, rng: random.Random, inside: int) -> list[int]:
    """Every position outside the record line's text, and *inside* positions within it."""
    start = data.index(b'"record":"') + len(b'"record":"')
    end = len(data) - len(b'"}\n')
    outside = [*range(start), *range(end, len(data))]
    return outside + rng.sample(range(start, end), inside)


@pytest.mark.parametrize("position", [0, 128, 199])
def test_a_proof_with_any_byte_changed_is_refused(
    run: Run, proofs: dict[str, LearnerProof], position: int
):
    """Each one-byte change is refused, with the key and root given and with neither."""
    rng = random.Random(position)
    key = read_verifier_key(run.pub)
    data = proofs[run.agents[position]].encode()
    for at in _positions(data, rng, inside=150):
        changed = _changed(data, at, rng)
        with pytest.raises(ProofRefused):
            check_proof(changed, key=key, root=run.root)
        with pytest.raises(ProofRefused):
            check_proof(changed)


def test_the_prev_link_no_root_covers_is_still_refused(run: Run, proofs: dict[str, LearnerProof]):
    """A change to the record line's chain link is caught by the checksum, and said so."""
    data = proofs[run.agents[5]].encode()
    at = data.index(b'\\"prev\\":\\"') + len(b'\\"prev\\":\\"')
    changed = data[:at] + (b"0" if data[at : at + 1] != b"0" else b"1") + data[at + 1 :]
    with pytest.raises(ProofRefused, match="checksum"):
        check_proof(changed, key=read_verifier_key(run.pub), root=run.root)


@pytest.mark.parametrize(
    "old, new, message",
    [
        (b'\\"agentId\\":\\"', b'\\"agentId\\":\\"X', "record line hashes to"),
        (b'"index":3,', b'"index":4,', "record 4 is line 6"),
        (b'"size":200}', b'"size":201}', "the checkpoint is for 200 records"),
        (b"ceredis.example/runs\\n2", b"ceredis.example/rung\\n2", "checkpoint does not verify"),
    ],
)
def test_a_changed_proof_is_refused_by_the_cli_naming_what_failed(
    run: Run, proofs: dict[str, LearnerProof], tmp_path: Path, old: bytes, new: bytes, message: str
):
    """check-proof exits 1 with a message that says which check failed."""
    data = proofs[run.agents[3]].encode()
    assert old in data
    (tmp_path / "p.json").write_bytes(data.replace(old, new, 1))
    done = _ceredis("check-proof", tmp_path / "p.json", "--key", run.pub, "--root", run.root)
    assert done.returncode == 1
    assert "refused:" in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_audit_path_that_leads_elsewhere_is_refused(run: Run, proofs: dict[str, LearnerProof]):
    """Two hashes of the path swapped: the path no longer leads to the root."""
    proof = proofs[run.agents[50]]
    path = proof.inclusion.path
    swapped = replace(proof.inclusion, path=(path[1], path[0], *path[2:]))
    data = replace(proof, inclusion=swapped).encode()
    with pytest.raises(ProofRefused, match="audit path does not lead to the proof's root"):
        check_proof(data)


def test_a_wrong_key_or_root_is_refused(
    run: Run, proofs: dict[str, LearnerProof], tmp_path: Path, capsys
):
    """Another key of the same name, or another root, does not verify the proof."""
    (tmp_path / "p.json").write_bytes(proofs[run.agents[0]].encode())
    assert main(["keygen", KEY_NAME, "--out", str(tmp_path / "other")]) == 0
    capsys.readouterr()
    assert (
        main(["check-proof", str(tmp_path / "p.json"), "--key", str(tmp_path / "other.pub")]) == 1
    )
    assert "no signature by a known key" in capsys.readouterr().err
    other_root = "0" * 64
    assert main(["check-proof", str(tmp_path / "p.json"), "--root", other_root]) == 1
    assert f"not the root {other_root}" in capsys.readouterr().err


def test_key_needs_a_bundled_checkpoint(run: Run, tmp_path: Path, capsys):
    """From a ledger with no checkpoint the proof holds none, and --key says so (exit 1)."""
    ledger = tmp_path / "bare.jsonl"
    shutil.copyfile(run.ledger, ledger)
    out = tmp_path / "p.json"
    assert main(["prove", str(ledger), "--agent", run.agents[9], "--out", str(out)]) == 0
    assert "no checkpoint" in capsys.readouterr().out
    assert main(["check-proof", str(out), "--root", run.root]) == 0
    assert main(["check-proof", str(out), "--key", str(run.pub)]) == 1
    assert "holds no checkpoint" in capsys.readouterr().err


def _copy_run(run: Run, tmp_path: Path, lines: list[bytes] | None = None) -> Path:
    ledger = tmp_path / "copy.jsonl"
    if lines is None:
        shutil.copyfile(run.ledger, ledger)
    else:
        ledger.write_bytes(b"".join(lines))
    return ledger


def test_prove_refuses_a_damaged_or_unfinished_ledger(run: Run, tmp_path: Path, capsys):
    """Exit 1 and no proof from a ledger that fails integrity or has no footer."""
    lines = run.ledger.read_bytes().splitlines(keepends=True)
    damaged = [*lines[:5], lines[5].replace(b'"agentId":"', b'"agentId":"X', 1), *lines[6:]]
    assert damaged != lines
    for kept, message in ((damaged, "fails integrity"), (lines[:-1], "has no footer")):
        ledger = _copy_run(run, tmp_path, kept)
        out = tmp_path / "p.json"
        assert main(["prove", str(ledger), "--agent", run.agents[0], "--out", str(out)]) == 1
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_prove_refuses_a_checkpoint_of_another_tree(run: Run, tmp_path: Path, capsys):
    """A checkpoint beside the ledger that names another size or root is not bundled."""
    ledger = _copy_run(run, tmp_path)
    other = Checkpoint(KEY_NAME, run.size - 1, bytes.fromhex(run.root))
    _write_private(checkpoint_path(ledger), sign_checkpoint(other, run.signer).encode())
    out = tmp_path / "p.json"
    assert main(["prove", str(ledger), "--agent", run.agents[0], "--out", str(out)]) == 1
    assert "it is not this run's" in capsys.readouterr().err


def test_usage_errors_exit_2(run: Run, tmp_path: Path, capsys):
    """A learner not in the run, an unreadable proof or key file, a malformed root: exit 2."""
    out = tmp_path / "p.json"
    assert main(["prove", str(run.ledger), "--agent", "NOBODY", "--out", str(out)]) == 2
    assert "learner NOBODY has no record in" in capsys.readouterr().err
    assert main(["check-proof", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the proof file" in capsys.readouterr().err
    out.write_bytes(prove_agent(run.ledger, run.agents[1]).encode())
    assert main(["check-proof", str(out), "--key", str(tmp_path / "none.pub")]) == 2
    assert main(["check-proof", str(out), "--root", "abc"]) == 2
    assert "--root must be 64 hex digits" in capsys.readouterr().err


def test_keygen_writes_a_private_key_and_a_c2sp_verifier_key(tmp_path: Path, capsys):
    """PREFIX.key and PREFIX.pub are 0600 from creation; .pub is NAME+<8 hex>+<base64>."""
    assert main(["keygen", "example.org/ceredis", "--out", str(tmp_path / "k")]) == 0
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    assert (_mode(key), _mode(pub)) == (0o600, 0o600)
    line = pub.read_text()
    assert re.fullmatch(r"example\.org/ceredis\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}\n", line)
    assert VerifierKey.parse(line.strip()) == read_signer_key(key).verifier()
    assert line.strip() in capsys.readouterr().out
    assert key.read_text().startswith("PRIVATE+KEY+example.org/ceredis+")


def test_keygen_never_overwrites(tmp_path: Path, capsys):
    """An existing .key or .pub is refused (exit 2), left as it was, and nothing is written."""
    (tmp_path / "k.pub").write_text("mine\n")
    assert main(["keygen", "n", "--out", str(tmp_path / "k")]) == 2
    assert "k.pub exists" in capsys.readouterr().err
    assert (tmp_path / "k.pub").read_text() == "mine\n"
    assert not (tmp_path / "k.key").exists()
    assert main(["keygen", "n", "--out", str(tmp_path / "j")]) == 0
    before = (tmp_path / "j.key").read_bytes()
    assert main(["keygen", "n", "--out", str(tmp_path / "j")]) == 2
    assert (tmp_path / "j.key").read_bytes() == before


def test_write_checkpoint_signs_the_verified_footer(run: Run, tmp_path: Path):
    """What the batch will call: the footer's count and root signed by the key, 0600,
    byte for byte what sign_checkpoint gives (Ed25519 is deterministic)."""
    ledger = _copy_run(run, tmp_path)
    written = write_checkpoint(ledger, run.signer)
    assert written == tmp_path / "copy.checkpoint" and _mode(written) == 0o600
    assert written.read_bytes() == checkpoint_path(run.ledger).read_bytes()
    checkpoint = open_checkpoint(written.read_text(), [run.signer.verifier()])
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hex) == (KEY_NAME, 200, run.root)
    written.write_text("stale\n")
    written.chmod(0o644)
    write_checkpoint(ledger, run.signer)  # replaced, and private again
    assert _mode(written) == 0o600 and written.read_text().startswith(KEY_NAME + "\n200\n")


def test_write_checkpoint_refuses_a_damaged_ledger(run: Run, tmp_path: Path):
    """No checkpoint is signed for a ledger that fails integrity."""
    lines = run.ledger.read_bytes().splitlines(keepends=True)
    ledger = _copy_run(run, tmp_path, [*lines[:3], *lines[4:]])
    with pytest.raises(ProofRefused, match="fails integrity"):
        write_checkpoint(ledger, run.signer)
    assert not checkpoint_path(ledger).exists()


def test_proof_files_replace_an_old_file_privately(run: Run, tmp_path: Path):
    """An existing world-readable file at --out ends up 0600 with the new proof."""
    out = tmp_path / "p.json"
    out.write_text("old")
    assert _mode(out) == 0o644
    assert main(["prove", str(run.ledger), "--agent", run.agents[2], "--out", str(out)]) == 0
    assert _mode(out) == 0o600 and out.read_bytes().endswith(b"}\n")
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
