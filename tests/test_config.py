"""Settings: one definition, read in one module, flag > environment > config file > default."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from ceredis.config import SETTINGS, Settings, load_settings, settings_table
from ceredis.errors import ConfigError

ROOT = Path(__file__).parents[1]


def _leaves(cls: type, prefix: str = "") -> set[str]:
    """Every leaf field of a settings dataclass, dotted (``http.retries``)."""
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= _leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def _env(tmp_path: Path, text: str = "", **env: str) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return {"CEREDIS_CONFIG": str(config), **env}


def test_no_module_but_config_reads_the_environment():
    """Product code gets settings handed in; only ceredis/config.py reads os.environ."""
    readers = []
    for package in ("ceredis", "ledger"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "ceredis/config.py":
                continue
            if re.search(r"\bos\.environ\b|\bgetenv\b|\benviron\[", path.read_text("utf-8")):
                readers.append(relative)
    assert readers == []


def test_every_setting_is_defined_once_and_documented_in_the_readme():
    """Each field of Settings has one row in SETTINGS, and the README shows the table."""
    assert {s.attr for s in SETTINGS} == _leaves(Settings)
    names = [n for s in SETTINGS for n in s.env]
    keys = [s.key for s in SETTINGS if s.key]
    assert len(names) == len(set(names)) and len(keys) == len(set(keys))
    assert settings_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    text = "max_workers = 3\nsource_rate = 7\nsource_retries = 1\n"
    assert load_settings(env=_env(tmp_path)).max_workers == 4
    assert load_settings(env=_env(tmp_path, text)).max_workers == 3
    from_env = load_settings(env=_env(tmp_path, text, CEREDIS_MAX_WORKERS="5"))
    assert from_env.max_workers == 5 and from_env.rate.rate == 7 and from_env.http.retries == 1
    flagged = load_settings({"max_workers": 6}, env=_env(tmp_path, text, CEREDIS_MAX_WORKERS="5"))
    assert flagged.max_workers == 6
    rate = load_settings(env=_env(tmp_path, text, CEREDIS_SOURCE_RATE="9"))
    assert rate.rate.rate == 9


def test_every_setting_can_come_from_the_config_file(tmp_path):
    """The config file takes every key; a nested group reads it like the environment."""
    text = (
        'cass_framework = "f-1"\ncass_page_size = 7\nxapi_username = "reader"\n'
        'source_read_timeout = 9\ndata_dir = "/srv/ceredis"\n'
    )
    settings = load_settings(env=_env(tmp_path, text))
    assert settings.cass.framework == "f-1" and settings.cass.page_size == 7
    assert settings.xapi.username == "reader" and settings.http.read_timeout == 9
    assert settings.paths.data_dir == Path("/srv/ceredis")
    assert settings.paths.config_file == tmp_path / "config.toml"
    with pytest.raises(ConfigError, match="unknown key cass_secret"):
        load_settings(env=_env(tmp_path, "cass_secret = 1\n"))


def test_bad_values_name_where_they_came_from(tmp_path):
    with pytest.raises(ConfigError, match="CEREDIS_SOURCE_DEADLINE='soon' is not a number"):
        load_settings(env=_env(tmp_path, CEREDIS_SOURCE_DEADLINE="soon"))
    with pytest.raises(ConfigError, match="key source_connect_timeout=0 must be a positive"):
        load_settings(env=_env(tmp_path, "source_connect_timeout = 0\n"))
    with pytest.raises(ConfigError, match="CEREDIS_CASS_PAGE_SIZE=0 is out of range"):
        load_settings(env=_env(tmp_path, CEREDIS_CASS_PAGE_SIZE="0"))


def test_secrets_are_not_shown(tmp_path):
    """Credentials stay out of repr and str, and out of the messages about bad values."""
    secrets = {
        "CEREDIS_XAPI_PASSWORD": "pw-9f2e-secret",
        "CEREDIS_CASS_AUTHORIZATION": "Bearer tok-77aa-secret",
        "CEREDIS_DATABASE_URL": "postgresql://u:db-5c1d-secret@h/db",
    }
    settings = load_settings(env=_env(tmp_path, **secrets))
    assert settings.xapi.password == secrets["CEREDIS_XAPI_PASSWORD"]
    for shown in (repr(settings), str(settings)):
        assert "secret" not in shown
    with pytest.raises(ConfigError) as caught:
        load_settings(env=_env(tmp_path, "xapi_password = 12345678\n"))
    assert "12345678" not in str(caught.value)
