"""Throughput ratios of whichever aether is importable, at one fixed shard size: an A/B across commits.

`aether bench` changed with the code (its shard size, its module path), so comparing two commits'
own bench runs compares two benches. This script calls each commit's `measure_throughput` with the
same corpus size, shard size and seed, so only the pipeline differs:

    git worktree add /tmp/before 2a307ef && git worktree add /tmp/after 793acae
    cp benchmarks/layout_ab.py /tmp/
    (cd /tmp/before && PYTHONPATH=/tmp/before python /tmp/layout_ab.py /tmp/before-1.json)
    (cd /tmp/after && PYTHONPATH=/tmp/after python /tmp/layout_ab.py /tmp/after-1.json)  # alternate

(PYTHONPATH and the working directory pick the tree each run imports)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

SAMPLES = 288
SAMPLES_PER_SHARD = 32
WORKFLOWS = ("param", "style", "auto")


def main(out: str) -> None:
    try:  # after the layout refactor
        from aether_data.bench.config import BenchConfig
        from aether_data.bench.throughput import make_corpus, measure_throughput
    except ImportError:  # before it: one bench module
        from aether_data.bench import BenchConfig, make_corpus, measure_throughput  # type: ignore[no-redef]

    import aether_data

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = make_corpus(work / "corpus", SAMPLES)
        listing = work / "list.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        cfg = BenchConfig(samples=SAMPLES, samples_per_shard=SAMPLES_PER_SHARD)
        if hasattr(cfg, "gates"):  # the quality gates came later: measure without them, as before
            cfg = BenchConfig(samples=SAMPLES, samples_per_shard=SAMPLES_PER_SHARD, gates=False)
        result = measure_throughput(list(WORKFLOWS), str(listing), cfg, work)
    ratios = {wf: result[wf].get("ratio_to_transcode") for wf in WORKFLOWS}
    Path(out).write_text(
        json.dumps(
            {"package": str(Path(aether_data.__file__).parent), "ratios": ratios, "workflows": result},
            indent=1,
        )
    )
    print(ratios)


if __name__ == "__main__":
    main(sys.argv[1])
