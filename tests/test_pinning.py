"""Each pool worker runs on one CPU, in turn over those the engine may use
(``CEREDIS_PIN_WORKERS``, on by default), seen from outside on the real processes."""

from __future__ import annotations

import os
import threading

import pytest

from ceredis.config import load_settings
from ceredis.errors import ConfigError
from ceredis.referential import bundled_referential
from doubles.kbac import generate_key
from tests.test_in_flight import serve
from tests.test_remote_batch import _children, batch, cohort

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux's"
)


def _affinities(switch: str | None, tmp_path, monkeypatch) -> dict[int, set[int]]:
    """The CPUs each worker of a 2-worker batch (CaSS double, 40 ms a request) may run on."""
    if switch is not None:
        monkeypatch.setenv("CEREDIS_PIN_WORKERS", switch)
    monkeypatch.setenv("CEREDIS_SOURCE_RATE", "1000")
    uuids = {cid: c.cass_uuid for cid, c in bundled_referential().competencies.items()}
    files, records = cohort(tmp_path, 16, seed=31)
    seen: dict[int, set[int]] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for pid in _children():
                try:
                    seen[pid] = os.sched_getaffinity(pid)
                except OSError:  # it exited meanwhile
                    continue
            stop.wait(0.005)

    with serve(records, uuids, generate_key(), tmp_path, monkeypatch, latency_s=0.04) as cass:
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            report, _ = batch(tmp_path, "pinned", cass.source_uri, files.roster, 2, in_flight=2)
        finally:
            stop.set()
            watcher.join()
    assert report.ok + report.skipped == 16 and report.failed == 0
    return seen


def test_each_worker_runs_on_one_cpu_in_turn(tmp_path, monkeypatch):
    """Two workers, each on a CPU of its own (one CPU of a single-CPU machine); the parent
    keeps every CPU it had."""
    mine = os.sched_getaffinity(0)
    seen = _affinities(None, tmp_path, monkeypatch)
    assert len(seen) == 2
    assert all(len(cpus) == 1 and cpus <= mine for cpus in seen.values())
    assert len(set.union(*seen.values())) == min(2, len(mine))
    assert os.sched_getaffinity(0) == mine


def test_pinning_can_be_turned_off(tmp_path, monkeypatch):
    """CEREDIS_PIN_WORKERS=off leaves the workers on every CPU the parent may use."""
    mine = os.sched_getaffinity(0)
    seen = _affinities("off", tmp_path, monkeypatch)
    assert len(seen) == 2
    assert all(cpus == mine for cpus in seen.values())


def test_pin_workers_comes_from_the_environment_or_the_config_file(tmp_path):
    """CEREDIS_PIN_WORKERS > pin_workers in the config file > on; a word that is not a
    switch is refused, naming where it came from."""
    config = tmp_path / "config.toml"
    config.write_text("pin_workers = false\n", encoding="utf-8")
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    env = {"CEREDIS_CONFIG": str(config)}
    assert load_settings({}, {"CEREDIS_CONFIG": str(tmp_path / "empty.toml")}).pin_workers
    assert not load_settings({}, env).pin_workers
    for word, value in (("on", True), ("1", True), ("YES", True), ("off", False), ("0", False)):
        assert load_settings({}, {**env, "CEREDIS_PIN_WORKERS": word}).pin_workers is value
    with pytest.raises(ConfigError, match=r"CEREDIS_PIN_WORKERS.*expected on or off.*'maybe'"):
        load_settings({}, {**env, "CEREDIS_PIN_WORKERS": "maybe"})
