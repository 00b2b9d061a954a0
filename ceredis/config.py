"""Configuration: every setting, read once: command-line flag > environment > config file > default.

The config file is ``config.toml`` in the platform's user config directory (found with
platformdirs; ``CEREDIS_CONFIG`` names another file). Its keys are the ``key`` column
of :data:`SETTINGS` (``max_workers = 4``, ``database = "postgresql://…"``). This is the
only module that reads the process environment; everything else is handed a
:class:`Settings`. Ledgers, reports and the embedded SQLite database live in the user
data directory unless told otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import platformdirs

from ceredis.errors import ConfigError

__all__ = [
    "SETTINGS",
    "CassSettings",
    "HttpSettings",
    "PathSettings",
    "RateSettings",
    "Setting",
    "Settings",
    "XapiSettings",
    "cache_dir",
    "data_dir",
    "default_config_file",
    "load_settings",
    "redact_url",
    "scrub",
    "settings_help",
    "settings_table",
    "url_secrets",
    "whole_number",
]

APP = "ceredis"
ENV_CONFIG = "CEREDIS_CONFIG"
DEFAULT_WORKERS = 4
DEFAULT_IN_FLIGHT = 16  # upstream requests in flight, whole batch (README "Tuning")
DEFAULT_PROGRESS_INTERVAL = 30.0


# -- the settings object ---------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """Timeouts (s) and retries of every request to a remote source."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    deadline: float = 120.0  # one logical request, retries and waits included
    retries: int = 5
    retry_after_cap: float = 60.0  # a longer Retry-After fails the request at once


@dataclass(frozen=True)
class RateSettings:
    """The request-rate limit shared by every worker of a remote-source batch."""

    rate: float = 20.0  # requests per second, all workers together
    burst: int = 5  # requests allowed back to back


@dataclass(frozen=True)
class CassSettings:
    """The CaSS source; ``None`` means the URI's option or the adapter's default."""

    key: Path | None = None  # the engine's private key (PEM)
    framework: str | None = None
    authorization: str | None = field(default=None, repr=False)
    agent_field: str | None = None
    page_size: int | None = None
    result_window: int | None = None


@dataclass(frozen=True)
class XapiSettings:
    """The xAPI source's Basic-auth credentials and learners' account home page."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    home_page: str | None = None


@dataclass(frozen=True)
class PathSettings:
    """Where files go; ``config_file`` is the file read (``None`` if absent or empty)."""

    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP)))
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP)))
    ledger_dir: Path | None = None  # None: ledgers/ under data_dir
    config_file: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Every resolved setting; ``None`` means "not configured" (the embedded default)."""

    max_workers: int = DEFAULT_WORKERS
    in_flight: int = DEFAULT_IN_FLIGHT  # requests to a remote source at once, all workers
    pin_workers: bool = True  # each worker process on one CPU of those the engine may use
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL  # s between non-TTY progress lines
    outage_budget: float = 120.0  # seconds a store or source outage is waited out
    source: str | None = None
    database: str | None = field(default=None, repr=False)  # a URL may hold a password
    signing_key: Path | None = None  # the private key signing each finished run's checkpoint
    executor: str = "local"  # "local" (the process pool) or "dask" (a Dask cluster)
    scheduler: str | None = None  # a Dask scheduler's address; None: a LocalCluster
    http: HttpSettings = HttpSettings()
    rate: RateSettings = RateSettings()
    cass: CassSettings = CassSettings()
    xapi: XapiSettings = XapiSettings()
    paths: PathSettings = field(default_factory=PathSettings)


# -- the parsers: (value from a flag, the environment or TOML, where it came from) -----


def _text(value: Any, origin: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}: expected a non-empty string")
    return value.strip()


def _secret(value: Any, origin: str) -> str:
    """A credential, kept as given (never quoted back in a message)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{origin}: expected a non-empty string")
    return value


def _path(value: Any, origin: str) -> Path:
    return Path(_text(value, origin))


def _workers(value: Any, origin: str) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip() or number < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: the worker count must be a whole number ≥ 1, not {value!r}"
        ) from None
    return number


def _in_flight(value: Any, origin: str) -> int:
    return whole_number(value, origin, 1, 1024, hint="; set it to e.g. 16")


def _rate(value: Any, origin: str) -> float:
    try:
        text = value.strip().removesuffix("/s") if isinstance(value, str) else value
        rate = float(text)
        if isinstance(value, bool) or not rate > 0 or rate == math.inf:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(
            f"{origin}: the source rate must be a positive number of requests per second, "
            f"not {value!r}"
        ) from None
    return rate


def _burst(value: Any, origin: str) -> int:
    return whole_number(value, origin, 1, 1_000_000, hint="; set it to e.g. 5")


def _count(value: Any, origin: str) -> int:
    return whole_number(value, origin, 1, 1_000_000)


def _retries(value: Any, origin: str) -> int:
    return whole_number(value, f"source HTTP settings: {origin}", 0, 1_000)


def _seconds(value: Any, origin: str, *, positive: bool = False) -> float:
    where = f"source HTTP settings: {origin}={value!r}"
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
        if isinstance(value, bool):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{where} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{where} must be a {kind} number")
    return seconds


def _timeout(value: Any, origin: str) -> float:
    return _seconds(value, origin, positive=True)


def _interval(value: Any, origin: str) -> float:
    return _duration(value, origin, "the progress interval", positive=True)


def _executor(value: Any, origin: str) -> str:
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in ("local", "dask"):
        raise ConfigError(f"{origin}: the executor must be local or dask, not {value!r}")
    return name


_SWITCH = dict.fromkeys(("1", "true", "on", "yes"), True) | dict.fromkeys(
    ("0", "false", "off", "no"), False
)


def _switch(value: Any, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    choice = _SWITCH.get(value.strip().lower()) if isinstance(value, str) else None
    if choice is None:
        raise ConfigError(f"{origin}: expected on or off (true/false, 1/0), not {value!r}")
    return choice


def _budget(value: Any, origin: str) -> float:
    return _duration(value, origin, "the outage budget", positive=False)


def _duration(value: Any, origin: str, what: str, *, positive: bool) -> float:
    """A finite number of seconds (> 0 when *positive*, else ≥ 0), or a ConfigError."""
    try:
        seconds = float(value.strip() if isinstance(value, str) else value)
        if isinstance(value, bool) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError
        if positive and seconds == 0:
            raise ValueError
    except (TypeError, ValueError):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(
            f"{origin}: {what} must be a {kind} number of seconds, not {value!r}"
        ) from None
    return seconds


def whole_number(value: Any, what: str, low: int, high: int, *, hint: str = "") -> int:
    """*value* (an int, or its decimal text) within [*low*, *high*]; or a ConfigError."""
    try:
        number = int(value.strip() if isinstance(value, str) else value)
        if isinstance(value, bool | float):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={value!r} is not an integer{hint}") from None
    if not low <= number <= high:
        raise ConfigError(f"{what}={number} is out of range [{low}, {high}]{hint}")
    return number


# -- the definition: one row per setting -----------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One knob: where it lives in :class:`Settings`, the names that set it, its parser."""

    attr: str  # "max_workers" or "group.field"
    key: str | None  # config-file key (None: cannot be set in the file)
    env: tuple[str, ...]  # environment variables, in order of precedence
    parse: Callable[[Any, str], Any] = field(repr=False)
    default: str  # as documented
    doc: str
    flag: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("max_workers", "max_workers", ("CEREDIS_MAX_WORKERS",), _workers, "4",
            "worker processes", "--workers"),
    Setting("in_flight", "in_flight", ("CEREDIS_IN_FLIGHT",), _in_flight, "16",
            "requests to a remote source in flight at once, all workers together",
            "--in-flight"),
    Setting("pin_workers", "pin_workers", ("CEREDIS_PIN_WORKERS",), _switch, "on",
            "each worker process on one CPU, in turn (`off`: where the system puts it)"),
    Setting("progress_interval", "progress_interval", ("CEREDIS_PROGRESS_INTERVAL",),
            _interval, "30", "seconds between plain progress lines on stderr when no terminal "
            "shows the bar (batch, verify, export, report)"),
    Setting("outage_budget", "outage_budget", ("CEREDIS_OUTAGE_BUDGET",), _budget, "120",
            "longest database or source outage waited out before the batch stops (s)"),
    Setting("source", "source", ("CEREDIS_SOURCE", "CASS_URL"), _text, "the bundled cohort",
            "evidence source URI", "--source"),
    Setting("database", "database", ("CEREDIS_DATABASE_URL", "DATABASE_URL"), _text,
            "SQLite in the data directory", "result store URL", "--database"),
    Setting("signing_key", "signing_key", ("CEREDIS_SIGNING_KEY",), _path, "none (unsigned)",
            "private key file (`ceredis keygen`) signing each run's checkpoint (secret)"),
    Setting("executor", "executor", ("CEREDIS_EXECUTOR",), _executor, "local",
            "where learners are scored: `local` processes or a `dask` cluster", "--executor"),
    Setting("scheduler", "scheduler", ("CEREDIS_DASK_SCHEDULER",), _text,
            "a LocalCluster of `--workers` processes",
            "Dask scheduler address (`tcp://host:8786`, `tls://…`)", "--scheduler"),
    Setting("paths.ledger_dir", "ledger_dir", ("CEREDIS_LEDGER_DIR",), _path,
            "`ledgers/` in the data directory", "ledger directory"),
    Setting("paths.data_dir", "data_dir", ("CEREDIS_DATA_DIR",), _path,
            "platformdirs' user data dir", "data directory"),
    Setting("paths.cache_dir", "cache_dir", ("CEREDIS_CACHE_DIR",), _path,
            "platformdirs' user cache dir", "cache directory (evidence-file indexes)"),
    Setting("paths.config_file", None, (ENV_CONFIG,), _path,
            "`config.toml` in platformdirs' user config dir", "config file"),
    Setting("rate.rate", "source_rate", ("CEREDIS_SOURCE_RATE",), _rate, "20",
            "requests/s to a remote source, all workers together"),
    Setting("rate.burst", "source_burst", ("CEREDIS_SOURCE_BURST",), _burst, "5",
            "requests allowed back to back"),
    Setting("http.connect_timeout", "source_connect_timeout",
            ("CEREDIS_SOURCE_CONNECT_TIMEOUT",), _timeout, "5", "connect timeout (s)"),
    Setting("http.read_timeout", "source_read_timeout", ("CEREDIS_SOURCE_READ_TIMEOUT",),
            _timeout, "60", "read timeout between bytes (s)"),
    Setting("http.deadline", "source_deadline", ("CEREDIS_SOURCE_DEADLINE",), _timeout,
            "120", "deadline of one request, retries included (s)"),
    Setting("http.retries", "source_retries", ("CEREDIS_SOURCE_RETRIES",), _retries, "5",
            "retries of a failed request"),
    Setting("http.retry_after_cap", "source_retry_after_cap",
            ("CEREDIS_SOURCE_RETRY_AFTER_CAP",), _seconds, "60",
            "longest Retry-After waited for (s)"),
    Setting("cass.key", "cass_key", ("CEREDIS_CASS_KEY",), _path, "none (anonymous)",
            "path to the engine's private key (PEM; secret)"),
    Setting("cass.framework", "cass_framework", ("CEREDIS_CASS_FRAMEWORK",), _text, "none",
            "CaSS framework (GUID or URL) when the URI has no `?framework=`"),
    Setting("cass.authorization", "cass_authorization", ("CEREDIS_CASS_AUTHORIZATION",),
            _text, "none", "CaSS `Authorization` header value (secret)"),
    Setting("cass.agent_field", "cass_agent_field", ("CEREDIS_CASS_AGENT_FIELD",), _text,
            "`identifier`", "Person property holding the learner id"),
    Setting("cass.page_size", "cass_page_size", ("CEREDIS_CASS_PAGE_SIZE",), _count, "100",
            "CaSS search page size"),
    Setting("cass.result_window", "cass_result_window", ("CEREDIS_CASS_RESULT_WINDOW",),
            _count, "10000", "CaSS search result window"),
    Setting("xapi.username", "xapi_username", ("CEREDIS_XAPI_USERNAME",), _secret, "none",
            "LRS Basic-auth user"),
    Setting("xapi.password", "xapi_password", ("CEREDIS_XAPI_PASSWORD",), _secret, "none",
            "LRS Basic-auth password (secret)"),
    Setting("xapi.home_page", "xapi_homepage", ("CEREDIS_XAPI_HOMEPAGE",), _text,
            "`https://ceredis.net/learners`", "learners' `account.homePage`"),
)  # fmt: skip
_FILE_KEYS = {s.key: s for s in SETTINGS if s.key}
_GROUPS: Mapping[str, type] = {
    "http": HttpSettings,
    "rate": RateSettings,
    "cass": CassSettings,
    "xapi": XapiSettings,
    "paths": PathSettings,
}


# -- resolving -------------------------------------------------------------------------


def load_settings(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Resolve every setting from *flags* (by key; None values ignored), *env*
    (default: the process environment) and the config file."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    explicit = _found(env, ENV_CONFIG)
    path = Path(explicit) if explicit else default_config_file()
    from_file = _read_file(path, explicit=bool(explicit))
    groups: dict[str, dict[str, Any]] = {"": {}}
    for setting in SETTINGS:
        found = _lookup(setting, flags, env, from_file, path)
        if found is not None:
            group, _, attr = setting.attr.rpartition(".")
            groups.setdefault(group, {})[attr] = setting.parse(*found)
    groups.setdefault("paths", {})["config_file"] = path if from_file else None
    nested = {name: _GROUPS[name](**values) for name, values in groups.items() if name}
    return Settings(**groups[""], **nested)


def _found(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value and value.strip() else None


def _lookup(
    setting: Setting,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    from_file: Mapping[str, Any],
    path: Path,
) -> tuple[Any, str] | None:
    """(the raw value, where it came from) by precedence, or None when unset."""
    if setting.key in flags:
        return flags[setting.key], setting.flag or f"--{setting.key}"
    for name in setting.env:
        if (value := _found(env, name)) is not None:
            return value, name
    if setting.key in from_file:
        return from_file[setting.key], f"{path} key {setting.key}"
    return None


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} ({ENV_CONFIG}) does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc})") from None
    import tomllib  # only when there is a file: most runs have none

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)} (known: {', '.join(_FILE_KEYS)})"
        )
    return data


def default_config_file() -> Path:
    """The config file read when ``CEREDIS_CONFIG`` names none."""
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def settings_help(groups: Sequence[str]) -> str:
    """The settings whose ``attr`` starts with one of *groups*, for a ``--help`` epilog."""
    chosen = [s for s in SETTINGS if s.attr.startswith(tuple(groups))]
    names = [", ".join(s.env) for s in chosen]
    width = max(map(len, names), default=0)
    lines = [
        f"  {name:<{width}}  {s.doc.replace('`', '')} (default: {s.default.replace('`', '')})"
        for name, s in zip(names, chosen, strict=True)
    ]
    return "\n".join(lines)


def data_dir() -> Path:
    """Where ledgers, reports and the embedded database go by default."""
    return load_settings().paths.data_dir


def cache_dir() -> Path:
    """Where rebuildable files go (evidence-file indexes)."""
    return load_settings().paths.cache_dir


def settings_table() -> str:
    """The README's configuration table, generated from :data:`SETTINGS`."""
    rows = ["| setting | flag | environment | config key | default |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        env = ", ".join(f"`{name}`" for name in s.env)
        flag = f"`{s.flag}`" if s.flag else "—"
        key = f"`{s.key}`" if s.key else "—"
        rows.append(f"| {s.doc} | {flag} | {env} | {key} | {s.default} |")
    return "\n".join(rows) + "\n"


# -- showing values without their secrets ----------------------------------------------


NOT_A_URL = "<a connection string that is not a URL, not shown>"


def redact_url(url: str) -> str:
    """*url* reduced to scheme, user, host, port and database: what may be printed or recorded.

    No password and no query parameter (``password``, ``passfile``, ``sslpassword``, any)
    survives; text that is not a ``scheme://`` URL (a key=value DSN) is never shown.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return NOT_A_URL
    if not parts.scheme or not url.strip().lower().startswith(f"{parts.scheme.lower()}://"):
        return NOT_A_URL
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    netloc = f"{user}@{hosts}" if at and user else hosts
    return f"{parts.scheme}://{netloc}{parts.path}"


def url_secrets(url: str) -> list[str]:
    """Every value of *url* that :func:`redact_url` drops (password, query values), as
    written and percent-decoded: what a driver's error message must not repeat."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return [url]
    raw = [parts.netloc.rpartition("@")[0].partition(":")[2], *(v for _, v in pairs)]
    raw += [v for chunk in parts.query.split("&") for v in chunk.partition("=")[2:]]
    return sorted({s for v in raw for s in (v, unquote(v)) if s}, key=len, reverse=True)


def scrub(message: str, secrets: Mapping[str, str | None] | Sequence[str | None]) -> str:
    """*message* with every secret value replaced by ``***``."""
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    for secret in values:
        if secret:
            message = message.replace(secret, "***")
    return message
