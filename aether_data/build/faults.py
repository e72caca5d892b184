"""Deliberate faults for the reliability tests (`AETHER_FAULTS`); inert in production."""

from __future__ import annotations

import os
from pathlib import Path

from aether_data.io.atomic import atomic_write_bytes

__all__ = ["FaultPlan"]


class FaultPlan:
    """Deliberate faults for reliability tests, from `AETHER_FAULTS` (comma-separated).

    `raise:KEY` raises inside that sample; `exit:SHARD` kills the worker process the first time
    it starts that shard (a marker in OUT/.faults makes it once per output directory). Unset in
    production; documented so that anyone can rerun the fault-injection tests against a build.
    """

    def __init__(self, spec_text: str | None, out_dir: Path) -> None:
        self.raise_keys: set[str] = set()
        self.exit_shards: set[str] = set()
        self.marker_dir = out_dir / ".faults"
        for item in filter(None, (spec_text or "").split(",")):
            kind, _, target = item.strip().partition(":")
            if kind == "raise":
                self.raise_keys.add(target)
            elif kind == "exit":
                self.exit_shards.add(target)

    def before_sample(self, key: str) -> None:
        if key in self.raise_keys:
            raise RuntimeError(f"injected fault in sample {key}")

    def before_shard(self, shard: str) -> None:
        if shard not in self.exit_shards:
            return
        marker = self.marker_dir / shard
        if marker.exists():
            return
        atomic_write_bytes(marker, b"")
        os._exit(17)  # a worker dying mid-shard, as an OOM kill would
