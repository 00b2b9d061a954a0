"""Evidence sources: where a learner's evidence records come from.

A source is named by a URI (``evidence.jsonl``, ``evidence.csv``, ``bundled:``,
``cass+https://host/``, ``xapi+https://host/xAPI/``). The parent process parses the
URI with :func:`source_spec` (so a bad URI fails before any work); each worker process
then calls :func:`open_source` once, in the pool initializer, so that no socket or file
handle is ever inherited through fork.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from ceredis.evidence import RawEvidence

__all__ = ["EvidenceSource"]


class EvidenceSource(Protocol):
    """What the engine needs from a source; one instance per worker process."""

    #: A display name for messages and reports; never contains a secret.
    name: str

    def fetch(self, agent_id: str) -> list[RawEvidence]:
        """Every evidence record the source holds for *agent_id*, as received.

        Records are returned unvalidated (the scoring core validates them) and in a
        deterministic order. Raises :class:`~ceredis.errors.SourceError` when the
        source cannot answer (after its own retries).
        """
        ...

    def agents(self) -> Iterator[str]:
        """Every learner the source knows, in a deterministic (sorted) order."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...
