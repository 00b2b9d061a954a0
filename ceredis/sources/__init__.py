"""Evidence sources: where a learner's evidence records come from.

A source is named by a URI (``evidence.jsonl``, ``evidence.csv``, ``bundled:``,
``cass+https://host/``, ``xapi+https://host/xAPI/``). The parent process checks the
URI with :func:`prepare_source` (so a bad URI or an unreachable server fails before any
work), which returns a small :class:`SourceSpec`; each worker process then calls
:meth:`SourceSpec.open` once, in the pool initializer, so that no socket or file
handle is ever inherited through fork.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from ceredis.config import Settings, load_settings, redact_url
from ceredis.errors import ConfigError
from ceredis.evidence import RawEvidence

if TYPE_CHECKING:
    from ceredis.sources.ratelimit import RateLimiter
    from ceredis.sources.remote import RemoteSource

__all__ = ["REMOTE", "EvidenceSource", "SourceSpec", "prepare_source"]


class EvidenceSource(Protocol):
    """What the engine needs from a source; one instance per worker process."""

    #: A display name for messages and reports; never contains a secret.
    name: str

    def fetch(self, agent_id: str) -> Sequence[RawEvidence]:
        """Every evidence record the source holds for *agent_id*, as received.

        Records are returned unvalidated (the scoring core validates them) and in a
        deterministic order; a source that judged them ahead (an evidence file's index)
        may attach that judgement as ``prechecked`` (:class:`~ceredis.record.Prechecked`).
        Raises :class:`~ceredis.errors.SourceError` when the source cannot answer (after
        its own retries).
        """
        ...

    def agents(self) -> Iterator[str]:
        """Every learner the source knows, in a deterministic (sorted) order."""
        ...

    def ping(self) -> Any:
        """Check that the source can answer; a clear SourceError (or ConfigError) if not."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def _adapter(module: str, name: str) -> Callable[[], type[RemoteSource]]:
    return lambda: getattr(import_module(f"ceredis.sources.{module}"), name)


#: Remote sources by URI scheme prefix (``cass+https://…``): the adapter, imported lazily.
REMOTE: Mapping[str, Callable[[], type[RemoteSource]]] = {
    "cass": _adapter("cass", "CassSource"),
    "xapi": _adapter("xapi", "XapiSource"),
}


@dataclass(frozen=True)
class SourceSpec:
    """A checked source, small and picklable: what a worker needs to open it."""

    uri: str  # what the ledger header records: "bundled:", an absolute path, a remote URI
    kind: str  # "file", or a key of REMOTE
    name: str  # for display; never holds a secret
    path: Path | None = None  # file sources: the export
    index: Path | None = None  # file sources: the prepared SQLite index
    sha256: str | None = None  # file sources: the file's digest, for the ledger header
    settings: Settings = field(default_factory=Settings, repr=False, compare=False)

    def open(self, *, limiter: RateLimiter | None = None) -> EvidenceSource:
        """Open the source in this process (call it in the worker, after fork)."""
        if self.kind == "file":
            from ceredis.sources.files import BUNDLED_URI, FileSource, bundled_learners

            known = bundled_learners() if self.uri == BUNDLED_URI else None
            return FileSource(self.path, self.index, known)
        return REMOTE[self.kind]().from_uri(self.uri, settings=self.settings, limiter=limiter)

    def describe(self) -> dict[str, Any]:
        """What the ledger header records about the source (no secrets)."""
        out: dict[str, Any] = {"uri": self.uri, "kind": self.kind, "name": self.name}
        if self.sha256:
            out["sha256"] = self.sha256
        return out


def prepare_source(
    uri: str | None, settings: Settings | None = None, *, ping: bool = True
) -> SourceSpec:
    """Check a source in the parent, before any work; ``None`` is the bundled cohort.

    A file is indexed (its unreadable lines reported). A remote source is checked for
    form, then pinged (unless *ping* is false) so that a wrong URL, a missing key or a
    server that is down is one clear error at start; the client is closed again before
    any worker forks. *settings* default to :func:`~ceredis.config.load_settings`.
    """
    from ceredis.sources import files

    settings = settings if settings is not None else load_settings()
    if uri is None or uri == files.BUNDLED_URI:
        path = files.bundled_cohort()
        index, digest = files.index_evidence_file(path)
        return SourceSpec(files.BUNDLED_URI, "file", "bundled cohort", path, index, digest)
    kind, _, transport = urlsplit(uri).scheme.lower().partition("+")
    if kind in REMOTE and transport in ("http", "https"):
        name = REMOTE[kind]().check_uri(uri, settings)
        spec = SourceSpec(uri, kind, name, settings=settings)
        if ping:
            client = spec.open()
            try:
                client.ping()
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
