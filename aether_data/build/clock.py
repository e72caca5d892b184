"""Per-stage timing of a shard (run.json, `aether bench`)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["STAGES", "StageClock"]


STAGES = ("decode", "synthesis", "scoring", "quality", "annotation", "encode", "record", "write")
"""Stages timed per shard (seconds summed over its samples; `aether bench`, run.json)."""


class StageClock:
    """Per-stage seconds of one shard: one clock read per mark (≤ 1 µs), negligible next to a sample.

    Wall time by default (run.json); `aether bench` passes ``time.thread_time`` to count CPU
    seconds, which a machine shared with other jobs does not inflate.
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._t = timer()

    def start(self) -> None:
        self._t = self.timer()

    def mark(self, stage: str) -> None:
        now = self.timer()
        self.seconds[stage] += now - self._t
        self._t = now

    def reset(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.start()
