"""Evidence sources: where a learner's evidence records come from.

A source is named by a URI (``evidence.jsonl``, ``evidence.csv``, ``bundled:``,
``cass+https://host/``, ``xapi+https://host/xAPI/``). The parent process parses the
URI with :func:`source_spec` (so a bad URI fails before any work); each worker process
then calls :func:`open_source` once, in the pool initializer, so that no socket or file
handle is ever inherited through fork.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ceredis.config import redact_url
from ceredis.errors import ConfigError
from ceredis.evidence import RawEvidence

__all__ = ["EvidenceSource", "SourceSpec", "prepare_source"]


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


@dataclass(frozen=True)
class SourceSpec:
    """A checked source URI, small and picklable: what a worker needs to open it."""

    uri: str  # what the ledger header records: "bundled:", an absolute path, a remote URI
    kind: str  # "file" | "cass" | "xapi"
    name: str  # for display; never holds a secret
    path: Path | None = None  # file sources: the export
    index: Path | None = None  # file sources: the prepared SQLite index
    sha256: str | None = None  # file sources: the file's digest, for the ledger header

    def open(self, *, limiter: Any = None, env: Mapping[str, str] | None = None) -> EvidenceSource:
        """Open the source in this process (call it in the worker, after fork)."""
        if self.kind == "file":
            from ceredis.sources.files import FileSource

            return FileSource(self.path, self.index)
        if self.kind == "cass":
            from ceredis.sources.cass import CassSource

            return CassSource.from_uri(self.uri, limiter=limiter, env=env)
        from ceredis.sources.xapi import XapiSource

        return XapiSource.from_uri(self.uri, limiter=limiter, env=env)

    def describe(self) -> dict[str, Any]:
        """What the ledger header records about the source (no secrets)."""
        out: dict[str, Any] = {"uri": self.uri, "kind": self.kind, "name": self.name}
        if self.sha256:
            out["sha256"] = self.sha256
        return out


def prepare_source(uri: str | None, *, ping: bool = True) -> SourceSpec:
    """Check a source in the parent, before any work; ``None`` is the bundled cohort.

    A file is indexed (its unreadable lines reported). A remote source is checked for
    form, then pinged (unless *ping* is false) so that a wrong URL, a missing key or a
    server that is down is one clear error at start; the client is closed again before
    any worker forks.
    """
    from ceredis.sources import files

    if uri is None or uri == files.BUNDLED_URI:
        path = files.bundled_cohort()
        index, digest = files.index_evidence_file(path)
        return SourceSpec(files.BUNDLED_URI, "file", "bundled cohort", path, index, digest)
    scheme = urlsplit(uri).scheme.lower()
    if scheme in ("cass+http", "cass+https", "xapi+http", "xapi+https"):
        kind = scheme.split("+")[0]
        if kind == "cass":
            from ceredis.sources.cass import check_uri
        else:
            from ceredis.sources.xapi import check_uri
        spec = SourceSpec(uri, kind, check_uri(uri))
        if ping:
            client = spec.open()
            try:
                client.ping()  # type: ignore[attr-defined]
            finally:
                client.close()
        return spec
    if "://" in uri:
        raise ConfigError(
            f"unknown evidence source {redact_url(uri)!r}: use a .jsonl or .csv file, "
            "cass+https://host/ or xapi+https://host/xAPI/"
        )
    path = Path(uri)
    if not path.is_file():
        raise ConfigError(f"evidence file {uri} does not exist")
    index, digest = files.index_evidence_file(path)
    return SourceSpec(str(path.resolve()), "file", path.name, path.resolve(), index, digest)
