"""The comparison's tuner keeps within the issue's memory bound before it keeps the fastest.

Tuning picks the project's setting at each point of ``benchmarks/vs_seed/compare.py``; at
20 ms N = 16 it once took four workers, 2 % faster than two, at 1.53× the port's memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "vs_seed"))

import compare  # noqa: E402  (benchmarks/ is not a package)

POINT = compare.Point("xapi", 20, 16)
CANDIDATES = [compare.Setting(w, 16) for w in (1, 2, 3, 4)]


def tried(**settings: tuple[float, float]) -> list[dict]:
    """Three passes of each setting: {"w2": (rate, peak RSS MB)} → the tuner's records."""
    return [
        {"setting": f"{label}/m16", "rate": rate * k, "peakRssMB": rss, "exit": 0}
        for k in (0.99, 1.0, 1.01)
        for label, (rate, rss) in settings.items()
    ]


def best(records: list[dict], cap: float) -> str:
    return compare._best(CANDIDATES, records, cap, POINT).label


def test_a_faster_setting_above_the_memory_cap_is_left_out():
    records = tried(w1=(300, 95), w2=(360, 140), w3=(365, 175), w4=(380, 214))
    assert best(records, cap=1.5 * 137) == "w2/m16"  # w4 is fastest, w3 over the cap too
    assert best(records, cap=1.5 * 150) == "w4/m16"  # all within a wider cap


def test_within_two_percent_the_fewest_processes_win_under_the_cap():
    records = tried(w1=(300, 95), w2=(370, 140), w3=(375, 170), w4=(380, 214))
    assert best(records, cap=200) == "w2/m16"  # 370 is within 2 % of 375


def test_if_every_setting_is_above_the_cap_the_fastest_still_wins():
    records = tried(w1=(300, 250), w2=(360, 260), w3=(340, 270), w4=(330, 280))
    assert best(records, cap=100) == "w2/m16"


def test_a_setting_that_failed_once_is_never_kept():
    records = tried(w1=(300, 95), w2=(360, 140), w3=(340, 150), w4=(380, 160))
    records[-1]["exit"] = 1  # a w4 run
    assert best(records, cap=300) == "w2/m16"
