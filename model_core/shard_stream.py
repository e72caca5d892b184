"""Streaming one task's shard list: split by rank and DataLoader worker, shuffled, resampled.

- **Splitting.** In epoch e every worker of every rank sees the same permutation of the shard list;
  global worker g = rank · workers + worker takes shards g, g + W, … (W = world · workers), so the
  parts are disjoint and cover the epoch. With fewer shards than W, every worker reads every shard
  and keeps samples g, g + W, … instead (still disjoint, costs I/O; only for tiny datasets).
- **Resampling.** The stream never ends: epoch e + 1 starts with a new permutation, so `max_steps`
  alone bounds training and no rank runs dry before another (which would hang DDP).
- **Memory.** Only the shuffle buffer's samples (still JPEG bytes) are held. `ShardStream.stats`
  records the high-water mark (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from model_core.shards import read_tar_samples


def epoch_assignment(
    shards: Sequence[str],
    *,
    epoch: int,
    seed: int,
    rank: int,
    world: int,
    worker: int,
    num_workers: int,
    shuffle: bool = True,
) -> tuple[list[str], int, int]:
    """(shards to read, sample stride, sample offset) of one worker in one epoch.

    Every worker computes the same epoch permutation, then takes its slice. A stride of 1 means
    "all samples of my shards"; stride W > 1 (fewer shards than workers) means "read all shards, keep
    the samples whose epoch-stream index ≡ offset mod W".
    """
    if not (0 <= rank < world and 0 <= worker < num_workers):
        raise ValueError(f"bad rank/worker {rank}/{world}, {worker}/{num_workers}")
    order = list(shards)
    if order and shuffle:
        perm = np.random.default_rng([seed, epoch]).permutation(len(order))
        order = [order[i] for i in perm]
    total = world * num_workers
    gid = rank * num_workers + worker
    if len(order) >= total:
        return order[gid::total], 1, 0
    return order, total, gid


class ShuffleBuffer:
    """A bounded random-replacement buffer: holds at most `size` items, ever (`high_water`)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = max(1, int(size))
        self.rng = rng
        self.items: list[Any] = []
        self.high_water = 0

    def push(self, item: Any) -> Any | None:
        """Add an item; when full, first take a random one out and return it (else None)."""
        out = None
        if len(self.items) >= self.size:
            i = int(self.rng.integers(len(self.items)))
            out, self.items[i] = self.items[i], self.items[-1]
            self.items.pop()
        self.items.append(item)
        self.high_water = max(self.high_water, len(self.items))
        return out

    def drain(self) -> Iterator[Any]:
        """Yield the remaining items in random order."""
        while self.items:
            i = int(self.rng.integers(len(self.items)))
            self.items[i], self.items[-1] = self.items[-1], self.items[i]
            yield self.items.pop()


@dataclass
class StreamStats:
    """Counters of one stream (per process)."""

    read: int = 0
    yielded: int = 0
    epochs: int = 0
    max_buffered: int = 0
    max_in_flight: int = 0
    """max over time of (read − handed out): samples the stream holds (≤ the shuffle buffer)."""
    epoch_shards: list[str] = field(default_factory=list)
    """Shards this worker reads in the current epoch."""


class ShardStream(IterableDataset):
    """Raw samples of one shard list: split by rank and DataLoader worker, shuffled, resampled.

    `rank` / `world` are the data-parallel coordinates (simulated in tests); the DataLoader worker
    is read from `torch.utils.data.get_worker_info()` unless `worker` / `num_workers` are given.
    `epochs=None` streams forever (a new permutation per epoch).
    """

    def __init__(
        self,
        shards: Sequence[str],
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 1000,
        shuffle_shards: bool = True,
        epochs: int | None = None,
        worker: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        if not shards:
            raise ValueError("empty shard list")
        self.shards = list(shards)
        self.seed = int(seed)
        self.rank, self.world = int(rank), int(world)
        self.shuffle_buffer = int(shuffle_buffer)
        self.shuffle_shards = shuffle_shards
        self.epochs = epochs
        self.worker, self.num_workers = worker, num_workers
        self.stats = StreamStats()

    def _worker(self) -> tuple[int, int]:
        if self.worker is not None:
            return int(self.worker), int(self.num_workers or 1)
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, nw = self._worker()
        rng = np.random.default_rng([self.seed, self.rank, worker, 7])
        buf = ShuffleBuffer(self.shuffle_buffer, rng)
        st = self.stats
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            paths, stride, offset = epoch_assignment(
                self.shards,
                epoch=epoch,
                seed=self.seed,
                rank=self.rank,
                world=self.world,
                worker=worker,
                num_workers=nw,
                shuffle=self.shuffle_shards,
            )
            st.epoch_shards = list(paths)
            got = 0
            for i, sample in enumerate(read_tar_samples(paths)):
                if stride > 1 and i % stride != offset:
                    continue
                got += 1
                st.read += 1
                out = buf.push(sample)
                st.max_buffered = max(st.max_buffered, buf.high_water)
                if out is not None:
                    st.yielded += 1
                st.max_in_flight = max(st.max_in_flight, st.read - st.yielded)
                if out is not None:
                    yield out
            epoch += 1
            st.epochs = epoch
            if got == 0 and self.epochs is None:
                raise RuntimeError(
                    f"rank {self.rank} worker {worker}: its part of {len(self.shards)} shards is empty"
                )
        for out in buf.drain():
            st.yielded += 1
            yield out
