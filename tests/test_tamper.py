"""Tamper campaign (issue 10): over 1,000 random mutations of a 2,000-learner ledger and of
its database rows, every one found by ``verify``, each by a finding naming line and learner.

One batch per database is made for the module; mutations are applied to copies in tmp,
fifteen at a time at disjoint places of one copy (~130 lines apart, a truncation last),
and each mutation must be named by a finding of its own: its line (as the copy numbers
it, or as the intact ledger did for a learner removed) and its learner. Most audits run
through ``audit_ledger`` with a replay memo (replay is pure: only changed bytes are
replayed again); a sample runs through the CLI. Run with ``-s`` to see the table.
"""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ceredis.audit import Audit, audit_ledger
from ceredis.cli import main
from ceredis.engine import run_batch
from ceredis.plan import plan_batch
from ceredis.referential import bundled_referential, parse_referential
from ceredis.sample import write_cohort
from ledger import canonical, decode
from tests.resealer import read_parts, renamed, reseal

LEARNERS = 2000
PER_COPY = 15
SEED = 20261201
TABLE: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind -> [tried, named]


def _small_referential():
    """The bundled rules cut to one domain and one competency: records of ~1 kB, so the
    campaign's hundred-odd audits of 2,000 learners fit the suite's budget."""
    doc = copy.deepcopy(bundled_referential().document)
    doc["domains"] = [
        dict(doc["domains"][4], weight=100, competencies=[{"id": "5.1", "weight": 1}])
    ]
    doc["competencies"] = [
        dict(c, requiredEvidenceTypes=["P1"]) for c in doc["competencies"] if c["id"] == "5.1"
    ]
    return parse_referential(doc)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tamper")
    referential = _small_referential()
    files = write_cohort(folder / "c.jsonl", referential, LEARNERS, 11, 2)
    return folder, files, referential


def _batch(cohort, database: str, name: str) -> Path:
    folder, files, referential = cohort
    plan = plan_batch(
        agents_file=files.roster,
        source=str(files.evidence),
        workers=2,
        database=database,
        ledger=folder / f"{name}.jsonl",
        referential=referential,
    )
    run_batch(plan)
    return plan.ledger


@pytest.fixture(scope="module")
def sqlite_run(cohort):
    database = cohort[0] / "db.sqlite"
    return _batch(cohort, f"sqlite:///{database}", "sqlite"), database


@pytest.fixture(scope="module")
def postgres_run(cohort, pg_dsn):
    import psycopg
    from psycopg import sql

    name = f"ceredis_tamper_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(pg_dsn)._replace(path=f"/{name}"))
    yield _batch(cohort, url, "postgres"), url
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def memo() -> dict:
    return {}


# -- the bookkeeping: a mutation is named when one finding has its line and learner ------


class Entry:
    """One line of a copy being mutated, remembering the line it had in the intact ledger."""

    def __init__(self, intact: int, data: bytes) -> None:
        self.intact = intact
        self.data = data


class Expect:
    """A mutation and the (line, learner) pairs one of which a finding must name."""

    def __init__(self, kind: str, entry: Entry | None, agent: str | None, *, intact: bool = False):
        self.kind, self.entry, self.agent, self.intact = kind, entry, agent, intact

    def wanted(self, final: dict[int, int]) -> set[tuple[int, str | None]]:
        line = self.entry.intact if self.intact else final[id(self.entry)]
        return {(line, self.agent)}


def _score(audit: Audit, expects: list[Expect], final: dict[int, int], lines: int) -> None:
    """Count each mutation named, and fail on the first that is not."""
    assert not audit.ok
    found = {(f.line, f.agent_id) for f in audit.findings}
    for f in audit.findings:
        if f.line is not None and 1 < f.line < lines:
            assert f.agent_id, f"a finding on record line {f.line} names no learner: {f}"
    for expect in expects:
        TABLE[expect.kind][0] += 1
        wanted = expect.wanted(final)
        if expect.agent is None:  # a byte flip may change the id itself: any learner
            hit = any(line == next(iter(wanted))[0] and who for line, who in found)
        else:
            hit = bool(wanted & found)
        assert hit, f"{expect.kind} not named as {wanted}: {[str(f) for f in audit.findings]}"
        TABLE[expect.kind][1] += 1


def _agent(data: bytes) -> str:
    return json.loads(data)["body"]["agentId"]


def _slots(rng: random.Random, records: int, count: int) -> list[int]:
    """*count* record indexes (0-based) at least ~records/count/2 apart."""
    width = (records - 20) // count
    return [slot * width + 5 + rng.randrange(width - 10) for slot in range(count)]


# -- mutations of the file's bytes -----------------------------------------------------


def _flip(rng, entries, i) -> Expect:
    entry = entries[i]
    data = bytearray(entry.data)
    at = rng.randrange(len(data) - 1)  # never the newline: that one is a merge, below
    data[at] ^= rng.randrange(1, 256)
    entry.data = bytes(data)
    return Expect("byte flip", entry, None)


def _merge(rng, entries, i) -> Expect:
    entry = entries[i]
    entry.data = entry.data[:-1] + bytes([rng.randrange(32, 127)])  # the newline flipped
    return Expect("byte flip (newline)", entry, None)


def _delete(rng, entries, i) -> Expect:
    entry = entries.pop(i)
    return Expect("line deletion", entry, _agent(entry.data), intact=True)


def _duplicate(rng, entries, i) -> Expect:
    copied = Entry(entries[i].intact, entries[i].data)
    entries.insert(i + 1 + rng.randrange(3), copied)
    return Expect("line duplication", copied, _agent(copied.data))


def _swap(rng, entries, i) -> Expect:
    j = i + 1 + rng.randrange(5)
    entries[i], entries[j] = entries[j], entries[i]
    return Expect("line swap", entries[j], _agent(entries[j].data))


RAW: list[tuple[Callable[..., Expect], int]] = [
    (_flip, 5),
    (_merge, 1),
    (_delete, 2),
    (_duplicate, 2),
    (_swap, 2),
]


def _truncate(rng, entries) -> Expect:
    """Cut the copy inside one of its last few record lines (a torn tail)."""
    i = len(entries) - 2 - rng.randrange(5)
    entry = entries[i]
    entry.data = entry.data[: 1 + rng.randrange(len(entry.data) - 2)]
    del entries[i + 1 :]
    return Expect("truncation", entry, None)


def _write(entries: list[Entry], target: Path) -> tuple[dict[int, int], int]:
    """Write the copy; return the line each entry starts on (a flipped newline joins two)
    and the number of lines."""
    target.write_bytes(b"".join(e.data for e in entries))
    final, line = {}, 1
    for entry in entries:
        final[id(entry)] = line
        line += entry.data.count(b"\n")
    return final, line - 1 + (not entries[-1].data.endswith(b"\n"))


def test_byte_mutations_are_all_named(sqlite_run, memo, tmp_path):
    """Flips, merges, deletions, duplications, swaps and truncations of the file."""
    ledger, _ = sqlite_run
    intact = [Entry(n, data) for n, data in enumerate(ledger.read_bytes().splitlines(True), 1)]
    rng = random.Random(SEED)
    kinds = [kind for kind, weight in RAW for _ in range(weight)]
    for copy_no in range(40):
        entries = [Entry(e.intact, e.data) for e in intact]
        expects = []
        for i in sorted(_slots(rng, LEARNERS, PER_COPY), reverse=True):
            expects.append(rng.choice(kinds)(rng, entries, i + 1))
        if copy_no % 2:
            expects.append(_truncate(rng, entries))
        target = tmp_path / f"raw{copy_no}.jsonl"
        final, lines = _write(entries, target)
        _score(audit_ledger(target, memo=memo), expects, final, lines)
        target.unlink()


# -- resealed rewrites: every hash, chain, count, list and root valid again ---------------


def _edit_score(rng, bodies, i) -> Expect:
    body = decode(bodies[i].data)
    score = body["result"].get("ceredisScore") or Decimal("0.00")
    body["result"]["ceredisScore"] = score + Decimal(rng.randrange(1, 5000)) / 100
    bodies[i].data = canonical(body)
    return Expect("resealed score edit", bodies[i], body["agentId"])


def _forge(rng, bodies, i) -> Expect:
    forged = Entry(0, renamed(bodies[i].data, f"F{rng.randrange(10**5):05d}"))
    bodies.insert(i + 1, forged)
    return Expect("resealed forged learner", forged, decode(forged.data)["agentId"])


def _drop(rng, bodies, i) -> Expect:
    entry = bodies.pop(i)
    return Expect("resealed deleted learner", entry, decode(entry.data)["agentId"], intact=True)


def _copy(rng, bodies, i) -> Expect:
    copied = Entry(bodies[i].intact, bodies[i].data)
    bodies.insert(i + 1 + rng.randrange(3), copied)
    return Expect("resealed duplicated learner", copied, decode(copied.data)["agentId"])


SEALED = [_edit_score, _forge, _drop, _copy]


def test_resealed_rewrites_are_all_named(sqlite_run, memo, tmp_path):
    """Rewrites whose integrity is perfect: the replay and the bound learner list tell."""
    ledger, _ = sqlite_run
    header, bodies, footer = read_parts(ledger)
    intact = [Entry(n, body) for n, body in enumerate(bodies, start=2)]
    rng = random.Random(SEED + 1)
    for copy_no in range(15):
        entries = [Entry(e.intact, e.data) for e in intact]
        expects = [
            rng.choice(SEALED)(rng, entries, i)
            for i in sorted(_slots(rng, LEARNERS, PER_COPY), reverse=True)
        ]
        target = tmp_path / f"sealed{copy_no}.jsonl"
        reseal(target, header, [e.data for e in entries], footer)
        final = {id(e): n for n, e in enumerate(entries, start=2)}
        _score(audit_ledger(target, memo=memo), expects, final, len(entries) + 2)
        target.unlink()


# -- database rows ------------------------------------------------------------------------


class Rows:
    """SQL on the run's database, SQLite or PostgreSQL, with ``?`` parameters."""

    def __init__(self, url: str) -> None:
        self.pg = url.startswith("postgresql")
        if self.pg:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
        else:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)

    def run(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.pg:
            sql = sql.replace("?", "%s").replace("JSON(%s)", "%s::jsonb")
        else:
            sql = sql.replace("JSON(?)", "?")
        cursor = self.conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def text(self, column: str) -> str:
        return f"{column}::text" if self.pg else column


def _json_edit(edit: Callable[[Any], None]) -> Callable[..., None]:
    """Re-write a JSON column with one value changed inside it."""

    def apply(rows: Rows, table: str, column: str, agent: str) -> None:
        (text,) = rows.run(f"SELECT {rows.text(column)} FROM {table} WHERE agent_id = ?", agent)[0]
        value = json.loads(text, parse_float=Decimal)
        edit(value)
        rows.run(
            f"UPDATE {table} SET {column} = JSON(?) WHERE agent_id = ?",
            canonical(value).decode(),
            agent,
        )

    return apply


def _set(value: str) -> Callable[..., None]:
    def apply(rows: Rows, table: str, column: str, agent: str) -> None:
        rows.run(f"UPDATE {table} SET {column} = ? WHERE agent_id = ?", value, agent)

    return apply


def _put(key: str, value: Any) -> Callable[[Any], None]:
    return lambda document: document.__setitem__(key, value)


ROW_EDITS: list[tuple[str, str, str, Callable[..., None]]] = [
    ("result score", "ceredis_result", "ceredis_score", _set("599.99")),
    ("result level", "ceredis_result", "cecrl_level", _set("Z9")),
    ("result band", "ceredis_result", "band_level", _set("Z9")),
    ("result status", "ceredis_result", "status", _set("SKIPPED")),
    (
        "result JSON score",
        "ceredis_result",
        "result",
        _json_edit(_put("ceredisScore", Decimal("599.99"))),
    ),
    ("result JSON level", "ceredis_result", "result", _json_edit(_put("cecrlLevel", "Z9"))),
    (
        "result domain scores",
        "ceredis_result",
        "domain_scores",
        _json_edit(_put("D5", Decimal("100.01"))),
    ),
    ("result competencies", "ceredis_result", "competencies", _json_edit(_put("5.1", {}))),
    ("profile score", "ceredis_profile", "ceredis_score", _set("599.99")),
    ("profile level", "ceredis_profile", "cecrl_level", _set("Z9")),
    (
        "profile domain scores",
        "ceredis_profile",
        "domain_scores",
        _json_edit(_put("D5", Decimal("100.01"))),
    ),
    ("profile content hash", "ceredis_profile", "content_hash", _set("0" * 64)),
]
JSON_COLUMNS = {"result", "domain_scores", "competencies"}


def _ok_learners(ledger: Path) -> list[tuple[int, str]]:
    _, bodies, _ = read_parts(ledger)
    return [
        (line, body["agentId"])
        for line, body in ((n, decode(b)) for n, b in enumerate(bodies, start=2))
        if body["result"]["status"] == "OK"
    ]


class _RowExpect(Expect):
    def __init__(self, kind: str, line: int, agent: str) -> None:
        super().__init__(kind, None, agent)
        self.line = line

    def wanted(self, final: dict[int, int]) -> set[tuple[int, str | None]]:
        return {(self.line, self.agent)}


def _row_campaign(ledger: Path, url: str, memo: dict, label: str, audits: int) -> None:
    """*audits* rounds of edits on fifteen learners, each named, then put back."""
    rows = Rows(url)
    learners = _ok_learners(ledger)
    rng = random.Random(f"{SEED}{label}")
    try:
        for _ in range(audits):
            saved, expects = [], []
            for line, agent in rng.sample(learners, PER_COPY):
                kind, table, column, edit = rng.choice(ROW_EDITS)
                select = f"SELECT {rows.text(column)} FROM {table} WHERE agent_id = ?"
                saved.append((table, column, agent, rows.run(select, agent)[0][0]))
                edit(rows, table, column, agent)
                expects.append(_RowExpect(f"{label} {kind}", line, agent))
            _score(audit_ledger(ledger, url, memo=memo), expects, {}, LEARNERS + 2)
            for table, column, agent, value in saved:
                cast = "JSON(?)" if column in JSON_COLUMNS else "?"
                rows.run(f"UPDATE {table} SET {column} = {cast} WHERE agent_id = ?", value, agent)
        assert audit_ledger(ledger, url, memo=memo).ok
    finally:
        rows.conn.close()


def test_sqlite_row_edits_are_all_named(sqlite_run, memo):
    ledger, database = sqlite_run
    _row_campaign(ledger, f"sqlite:///{database}", memo, "sqlite", 11)


def test_postgres_row_edits_are_all_named(postgres_run, memo):
    ledger, url = postgres_run
    _row_campaign(ledger, url, memo, "postgres", 8)


# -- the real CLI on a sample, and the table ------------------------------------------------


def test_the_cli_finds_a_sample(sqlite_run, tmp_path, capsys):
    """``ceredis verify --json`` on a forged and a removed learner: exit 1, learner named;
    and ``--database`` on the intact run: exit 0."""
    ledger, database = sqlite_run
    header, bodies, footer = read_parts(ledger)
    rng = random.Random(SEED + 2)
    for n, mutate in enumerate((_forge, _drop)):
        entries = [Entry(i, b) for i, b in enumerate(bodies, start=2)]
        expect = mutate(rng, entries, 100 + n)
        reseal(tmp_path / f"cli{n}.jsonl", header, [e.data for e in entries], footer)
        assert main(["verify", str(tmp_path / f"cli{n}.jsonl"), "--json"]) == 1
        out = json.loads(capsys.readouterr().out)
        assert expect.agent in {f["agentId"] for f in out["findings"]}
    assert main(["verify", str(ledger), "--database", f"sqlite:///{database}"]) == 0
    capsys.readouterr()


def test_zz_detection_table(capsys):
    """Print the per-kind table (``pytest -s tests/test_tamper.py``); over 1,000 in all."""
    width = max(len(k) for k in TABLE)
    lines = [f"{'mutation':<{width}}  tried  named"]
    lines += [f"{kind:<{width}}  {t:5d}  {n:5d}" for kind, (t, n) in sorted(TABLE.items())]
    total = sum(t for t, _ in TABLE.values())
    lines.append(f"{'total':<{width}}  {total:5d}  {sum(n for _, n in TABLE.values()):5d}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert total >= 1000 and all(t == n for t, n in TABLE.values())
