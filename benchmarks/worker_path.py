"""CPU per learner of each stage of the worker's exact path, on a sample cohort.

    python benchmarks/worker_path.py [--learners N] [--seed S] [--dir DIR]

The stages a pool worker runs for one learner of an evidence file, measured one by one
(process CPU time, best of 5 rounds over the same learners): fetch (the index rows,
decoded), validation and scoring with the normalised inputs (``score_delivered``: plainly
valid records in one pass, any other through ``submitted``), and the canonical ledger
record with its SHA-256 (``encode_record``). No database and no pool: the figures are the
scoring path's own cost, to compare before and after a change of it in one run (issue
12: the lean path).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._bench import best_cpu_ms, cohort
from ceredis import __version__
from ceredis.record import encode_record, score_delivered
from ceredis.referential import bundled_referential
from ceredis.sources.files import FileSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--learners", type=int, default=200, help="learners measured (200)")
    parser.add_argument("--seed", type=int, default=1, help="sample seed (1)")
    parser.add_argument("--dir", type=Path, help="cohort directory (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.dir or Path(scratch)
        evidence, roster = cohort(directory, 2000, 75, args.seed)
        ids = roster.read_text(encoding="utf-8").split()[: args.learners]
        source = FileSource(evidence)
        referential = bundled_referential()
        raws = {a: source.fetch(a) for a in ids}
        scored = {
            a: score_delivered(a, raws[a], referential, engine_version=__version__) for a in ids
        }
        stages = {
            "fetch (index rows, decoded)": lambda: [source.fetch(a) for a in ids],
            "score_delivered (validate, score, inputs)": lambda: [
                score_delivered(a, raws[a], referential, engine_version=__version__) for a in ids
            ],
            "encode_record (canonical record, SHA-256)": lambda: [
                encode_record(a, *scored[a]) for a in ids
            ],
        }
        records = sum(len(r) for r in raws.values())
        print(f"{len(ids)} learners, {records / len(ids):.0f} evidence each; CPU ms/learner:")
        total = 0.0
        for name, work in stages.items():
            ms = best_cpu_ms(work, len(ids))
            total += ms
            print(f"  {name:44s} {ms:6.3f}")
        print(f"  {'worker path, total':44s} {total:6.3f}")
        source.close()


if __name__ == "__main__":
    main()
