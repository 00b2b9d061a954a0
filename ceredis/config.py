"""Configuration: command-line flag > environment > config file > default.

The config file is ``config.toml`` in the platform's user config directory (found with
platformdirs; ``CEREDIS_CONFIG`` names another file). Its keys are the settings below,
in snake case (``max_workers = 4``, ``database = "postgresql://…"``). Ledgers, reports
and the embedded SQLite database live in the user data directory unless told otherwise.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from ceredis.errors import ConfigError

__all__ = ["Settings", "cache_dir", "data_dir", "load_settings", "redact_url", "scrub"]

APP = "ceredis"

#: setting -> environment variables that may carry it, in order of precedence
ENVIRONMENT: Mapping[str, tuple[str, ...]] = {
    "max_workers": ("CEREDIS_MAX_WORKERS",),
    "source": ("CEREDIS_SOURCE", "CASS_URL"),
    "database": ("CEREDIS_DATABASE_URL", "DATABASE_URL"),
    "ledger_dir": ("CEREDIS_LEDGER_DIR",),
    "source_rate": ("CEREDIS_SOURCE_RATE",),
}
DEFAULT_WORKERS = 4
_FLAGS = {"max_workers": "--workers"}  # settings whose command-line flag has another name


@dataclass(frozen=True)
class Settings:
    """Resolved settings; ``None`` means "not configured" (the embedded default applies)."""

    max_workers: int = DEFAULT_WORKERS
    source: str | None = None
    database: str | None = None
    ledger_dir: Path | None = None
    source_rate: float | None = None
    config_file: Path | None = None


def data_dir() -> Path:
    """Where ledgers, reports and the embedded database go by default."""
    return Path(os.environ.get("CEREDIS_DATA_DIR") or platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Where rebuildable files go (evidence-file indexes)."""
    return Path(os.environ.get("CEREDIS_CACHE_DIR") or platformdirs.user_cache_dir(APP))


def load_settings(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Resolve every setting from *flags* (None values ignored), *env* and the file."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    path = (
        Path(env["CEREDIS_CONFIG"])
        if env.get("CEREDIS_CONFIG")
        else (Path(platformdirs.user_config_dir(APP)) / "config.toml")
    )
    from_file = _read_file(path, explicit=bool(env.get("CEREDIS_CONFIG")))

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, names in ENVIRONMENT.items():
        if name in flags:
            values[name], origin[name] = flags[name], _FLAGS.get(name, f"--{name}")
            continue
        found = next((n for n in names if env.get(n)), None)
        if found:
            values[name], origin[name] = env[found], found
        elif name in from_file:
            values[name], origin[name] = from_file[name], f"{path} key {name}"

    return Settings(
        max_workers=_positive_int(
            values.get("max_workers", DEFAULT_WORKERS), origin.get("max_workers", "default")
        ),
        source=_text(values.get("source"), origin.get("source")),
        database=_text(values.get("database"), origin.get("database")),
        ledger_dir=Path(values["ledger_dir"]) if values.get("ledger_dir") else None,
        source_rate=_rate(values.get("source_rate"), origin.get("source_rate")),
        config_file=path if from_file else None,
    )


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} (CEREDIS_CONFIG) does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(ENVIRONMENT))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (known: {', '.join(ENVIRONMENT)})"
        )
    return data


def _positive_int(value: Any, origin: str) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip() or number < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: the worker count must be a whole number ≥ 1, not {value!r}"
        ) from None
    return number


def _rate(value: Any, origin: str | None) -> float | None:
    if value is None:
        return None
    try:
        rate = float(value)
        if isinstance(value, bool) or not rate > 0 or rate == float("inf"):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: the source rate must be a positive number of requests per second, "
            f"not {value!r}"
        ) from None
    return rate


def _text(value: Any, origin: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}: expected a non-empty string")
    return value.strip()


def redact_url(url: str) -> str:
    """*url* with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def scrub(message: str, secrets: Mapping[str, str | None] | Sequence[str | None]) -> str:
    """*message* with every secret value replaced by ``***``."""
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    for secret in values:
        if secret:
            message = message.replace(secret, "***")
    return message
