"""Which learners a run scores, in which order: named ids, a roster file, or every learner.

A selection is recorded in the ledger header (``to_json``) so that a killed run resumes
with the same learners (``selection_from_json``). Its ids are streamed: a roster of a
million lines, or a source's whole cohort, is never held in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceredis.errors import CeredisError, ConfigError
from ceredis.report import plural
from ceredis.sources import SourceSpec
from ceredis.sources.files import file_sha256

__all__ = [
    "Agents",
    "Bundled",
    "EverySourceLearner",
    "LearnerList",
    "LearnerTally",
    "Roster",
    "Selection",
    "selection_from_json",
]


@dataclass(frozen=True)
class LearnerList:
    """A learner list bound by its length and hash (SHA-256 of each id and a newline, in
    order): what a ledger records so that verify can tell a forged, lost or copied learner."""

    count: int
    sha256: str

    @classmethod
    def of(cls, ids: Iterable[str]) -> LearnerList:
        tally = LearnerTally()
        for agent in ids:
            tally.add(agent)
        return tally.digest()

    @classmethod
    def from_json(cls, data: Any) -> LearnerList | None:
        """The list a header or footer records, or None when it records none (older ledger)."""
        if isinstance(data, Mapping) and isinstance(data.get("count"), int):
            return cls(data["count"], str(data.get("sha256")))
        return None

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "sha256": self.sha256}


class LearnerTally:
    """A :class:`LearnerList` built one id at a time (as a run records its learners)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0

    def add(self, agent: str) -> None:
        self._hash.update(agent.encode("utf-8") + b"\n")
        self.count += 1

    def digest(self) -> LearnerList:
        return LearnerList(self.count, self._hash.hexdigest())


@dataclass(frozen=True)
class Agents:
    """Learners named one by one (``--agent``)."""

    agents: tuple[str, ...]

    def ids(self, source: SourceSpec, limiter: Any = None) -> Iterator[str]:
        """The learner ids, in their deterministic order, streamed."""
        yield from self.agents

    def count(self) -> int:
        """How many learners the run has (for the progress bar)."""
        return len(self.agents)

    def to_json(self) -> dict[str, Any]:
        """What the ledger header records: the ids, and the list they make (bound)."""
        return {"agents": list(self.agents), "learners": LearnerList.of(self.agents).to_json()}


@dataclass(frozen=True)
class Roster:
    """Learners listed in a file, one id a line (``#`` comments and blank lines skipped),
    with the file's digest so that a resumed run can tell it changed."""

    file: str
    sha256: str
    learners: LearnerList | None = field(default=None, compare=False)  # as the header binds

    @classmethod
    def of(cls, path: Path) -> Roster:
        """The roster at *path* (``--file``); a clear error when it cannot be read."""
        return cls(str(Path(path).resolve()), _roster_digest(Path(path)))

    def ids(self, source: SourceSpec, limiter: Any = None) -> Iterator[str]:
        return self._read()

    def count(self) -> int:
        return sum(1 for _ in self._read())

    def _read(self) -> Iterator[str]:
        with open(self.file, encoding="utf-8-sig") as lines:
            for line in lines:
                agent = line.strip()
                if agent and not agent.startswith("#"):
                    yield agent

    def check_unchanged(self) -> None:
        """Raise ConfigError unless the file still lists the run's learners (on resume).

        A file rewritten with the same ids in the same order (regenerated, comments or line
        ends changed) still resumes: the header binds the list itself, not only the bytes.
        """
        now = _roster_digest(Path(self.file))
        if now == self.sha256:
            return
        listed = LearnerList.of(self._read())
        if self.learners is not None and listed == self.learners:
            return
        recorded = (
            f"the run's {plural(self.learners.count, 'learner')}"
            if self.learners is not None
            else "only the file's digest"
        )
        raise ConfigError(
            f"the learner list {self.file} changed since the run started (sha256 "
            f"{now[:12]}… instead of {self.sha256[:12]}…; it lists "
            f"{plural(listed.count, 'learner')} and the ledger records {recorded}): put back "
            "the file the run started with, then resume"
        )

    def to_json(self) -> dict[str, Any]:
        """The file, its digest, and the learner list it holds (bound even without it)."""
        learners = LearnerList.of(self._read()).to_json()
        return {"file": self.file, "sha256": self.sha256, "learners": learners}


@dataclass(frozen=True)
class Bundled(Roster):
    """The roster shipped with the bundled cohort (the embedded default)."""

    @classmethod
    def of(cls, path: Path) -> Bundled:
        return cls(str(path), file_sha256(path))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "bundled": True}


@dataclass(frozen=True)
class EverySourceLearner:
    """Every learner the evidence source lists (``--all``), in the source's order."""

    def ids(self, source: SourceSpec, limiter: Any = None) -> Iterator[str]:
        client = source.open(limiter=limiter)
        try:
            yield from client.agents()
        finally:
            client.close()

    def count(self) -> None:
        """Unknown until the source has listed them all."""
        return None

    def to_json(self) -> dict[str, Any]:
        """Only ``all``: the list is known once the run is over (the footer records it)."""
        return {"all": True}


Selection = Agents | Roster | EverySourceLearner | Bundled


def selection_from_json(data: Mapping[str, Any]) -> Selection:
    """The selection a ledger header records (the inverse of ``to_json``)."""
    if "agents" in data:
        return Agents(tuple(data["agents"]))
    if "file" in data:
        kind = Bundled if data.get("bundled") else Roster
        return kind(data["file"], data["sha256"], LearnerList.from_json(data.get("learners")))
    return EverySourceLearner()


def _roster_digest(path: Path) -> str:
    try:
        return file_sha256(path)
    except CeredisError:
        raise ConfigError(f"cannot read the learner list {path}") from None
