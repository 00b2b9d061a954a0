"""Remote source URIs (``cass+https://…``, ``xapi+https://…``): the checks they share.

No network. A user:password in a source URI is refused, because the URI is shown in
progress lines, reports and the ledger header; credentials come from the settings
(environment or config file).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from ceredis.errors import ConfigError

__all__ = ["SourceURI", "parse_source_uri"]


@dataclass(frozen=True)
class SourceURI:
    """A checked remote source URI, split into what its adapter needs."""

    scheme: str  # "http" or "https": what the adapter speaks
    netloc: str  # host[:port], IPv6 hosts bracketed; never user:password
    path: str  # as given ("" when none)
    options: dict[str, str]  # the query string, each known option at most once

    def display(self, kind: str, path: str) -> str:
        """The URI as shown to people, with the adapter's canonical *path*."""
        return f"{kind}+{self.scheme}://{self.netloc}{path}"


def parse_source_uri(
    uri: str, kind: str, label: str, known: Sequence[str], credentials_hint: str
) -> SourceURI:
    """Check ``{kind}+https://host[:port]/path?option=…`` and split it; or ConfigError.

    *label* names the source in messages (``CaSS``, ``xAPI``); *credentials_hint* says
    where credentials go instead of the URI.
    """
    if not isinstance(uri, str):
        raise ConfigError(f"{label} source URI must be a string, got {type(uri).__name__}")
    try:
        parts = urllib.parse.urlsplit(uri.strip())
        port = parts.port
    except ValueError:
        # The exception text would quote the URI's parts, which may hold a secret.
        raise ConfigError(
            f"{label} source URI is malformed (check the host, and the port: a number up to 65535)"
        ) from None
    if parts.scheme not in (f"{kind}+https", f"{kind}+http"):
        raise ConfigError(
            f"not a {label} source URI: it must start with {kind}+https:// (or {kind}+http:// "
            f"for tests), got {parts.scheme or 'no scheme'}://…"
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"{label} source URI must not contain user:password (credentials in the source "
            f"URI would end up in logs and ledgers); {credentials_hint}"
        )
    if not parts.hostname:
        raise ConfigError(f"{label} source URI has no host; e.g. {kind}+https://host/")
    if parts.fragment:
        raise ConfigError(f"{label} source URI must not have a #fragment")
    options: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key not in known:
            raise ConfigError(
                f"{label} source URI: unknown option {key!r} (known: {', '.join(known)})"
            )
        if key in options:
            raise ConfigError(f"{label} source URI: option {key!r} is given twice")
        options[key] = value
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port is not None else "")
    return SourceURI(parts.scheme.removeprefix(f"{kind}+"), netloc, parts.path, options)
