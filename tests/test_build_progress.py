"""Per-sample build progress: a terminal capture of a 64-sample build shows the sample count
rising, a rate and an ETA; nothing from Ray lands on the console; the closing summary is prose
with the next commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from aether_data.build.cli import BuildProgress, format_seconds

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_progress_counts_running_shards_and_settles_on_results():
    bar = BuildProgress(Console(file=open(os.devnull, "w"), force_terminal=False))
    bar.start(total_shards=4, reused=0, todo=2, todo_samples=32)
    bar.running({"param-000000": 5, "param-000001": 3})
    assert bar.processed() == 8
    bar.update({"name": "param-000000", "ok": True, "samples": 15, "skipped": 1})
    bar.running({"param-000000": 16, "param-000001": 9})
    assert bar.processed() == 25 and bar.skipped == 1 and bar.shards_done == 1
    assert "shards 1/2" in bar._stats() and "ETA" in bar._stats()
    bar.stop()
    assert format_seconds(3725.4) == "1:02:05" and format_seconds(0.2) == "0:00:00"


def test_a_build_under_a_second_closes_with_its_rate():
    """A live rate waits for a second of samples (it would jump about); the closing line does not,
    so a small build ends with its rate, and an unknown rate reads "–", never "0.0 samples/s"."""
    bar = BuildProgress(Console(file=open(os.devnull, "w"), force_terminal=False))
    bar.start(total_shards=1, reused=0, todo=1, todo_samples=32)
    assert bar._stats().startswith("– samples/s · ETA –")
    bar.running({"param-000000": 4})
    time.sleep(0.05)
    bar.running({"param-000000": 20})
    assert bar._stats().startswith("– samples/s")  # under a second: no live rate yet
    bar.update({"name": "param-000000", "ok": True, "samples": 32, "skipped": 0})
    closing = bar._stats(final=True)
    rate = float(closing.split(" samples/s")[0])
    assert 28 / 5 < rate < 28 / 0.05, closing  # 28 samples since the first seen, in 0.05 s to 5 s
    bar.stop()


def test_terminal_capture_of_a_64_sample_build(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "COLUMNS": "160",
        "FORCE_COLOR": "1",  # rich draws its live bar as on a terminal
    }
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "aether_data.cli", "build", "--workflow", "style", "-n", "64",
         "--samples-per-shard", "16", "--image-size", "384", "--workers", "1", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=500, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = ANSI.sub("", proc.stderr)
    counts = [int(n) for n in re.findall(r"\b(\d+)/64\b", text)]
    assert counts == sorted(counts), "the sample count went backwards"
    between = {n for n in counts if 0 < n < 64}
    assert len(between) >= 2, f"no per-sample progress: {sorted(set(counts))}"
    rates = [float(r) for r in re.findall(r"([\d.]+) samples/s · ETA \d+:\d\d:\d\d", text)]
    assert rates and max(rates) > 0, "no rate and ETA while building"
    assert "logging.cc" not in text and "Set ray log level" not in text
    assert "{'" not in text, "a raw dict in the summary"
    for cmd in ("audit", "report", "inspect"):
        assert f"aether {cmd} {out}" in text
    assert "per workflow: style 64" in text
