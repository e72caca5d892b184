"""Streaming our WebDataset shards into the VeraRetouch trainer.

Why streaming: a million-pair dataset does not fit in memory, and every rank of a multi-node job
must read a different part of it. The pipeline per task (param / style / auto) is::

    shard list ─► epoch permutation (seed, epoch) ─► this rank's / worker's part ─► tar reader
    (webdataset) ─► shuffle buffer (compressed bytes, bounded) ─► decode + prompt + tokenize

- **Splitting, resampling, memory**: `model_core.shard_stream` (disjoint parts per rank and
  worker, a never-ending stream of epoch permutations, a bounded buffer of still-encoded samples).
- **Prompts.** Official qwen_2 chat turns: system, user (``<image>`` placeholder expanded to the
  vision tower's token count, then the task prompt; the *param* prompt carries no image: the
  parameters alone determine the edit), assistant = the tagged completion + ``<|im_end|>``. Labels
  are -100 everywhere but the assistant turn.
- **Task sampling.** RSFT draws each sample's task with equal probability among the tasks present
  (paper Sec. 3.3); DAPO asks for whole single-task batches.

The parts live in their own modules: `model_core.shards` (the shards a dataset's manifest lists),
`model_core.shard_stream` (splitting, shuffling, resampling), `model_core.encoding` (prompt, tokens,
batches); this module joins them into the trainer's loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from aether_data.contract import WORKFLOWS
from model_core.encoding import Collate, TokenSpec, encode_sample
from model_core.shard_stream import ShardStream
from model_core.shards import discover_shards


class DataSpec(BaseModel):
    """Streaming / batching settings (per rank)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = 8
    """Samples (SFT) or prompts (DAPO) per optimizer step and rank."""
    shuffle_buffer: int = 1000
    """Samples held for shuffling (compressed bytes); the memory bound of the stream."""
    loader_workers: int = 2
    """DataLoader worker processes per rank (0 = in-process)."""
    shuffle_shards: bool = True
    style_instruction: Literal["random", "first"] = "random"
    """Which style instruction becomes the prompt: ``random`` (one of the variants) or ``first``."""
    param_instruction: Literal["official", "random"] = "official"
    """Param prompt: the official parameter list, or ``random``: any of the record's instructions
    (the official text or one of its natural-language variants)."""
    fixed_batch: bool = False
    """Debug / smoke runs: repeat the first batch every step (a stage then must overfit it)."""


class TaskSampleStream(IterableDataset):
    """Encoded samples from per-task shard streams, each sample's task drawn uniformly among `tasks`
    (RSFT's equal ratio, whatever the tasks' sizes). With one task it is that task's stream, which
    is how DAPO gets single-task batches (one loader per task)."""

    def __init__(
        self,
        shards: Mapping[str, Sequence[str]],
        spec: TokenSpec,
        *,
        tasks: Sequence[str] | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        shuffle_buffer: int = 1000,
        shuffle_shards: bool = True,
        style_instruction: str = "random",
        param_instruction: str = "official",
    ) -> None:
        super().__init__()
        wanted = list(tasks) if tasks is not None else list(shards)
        self.tasks = [t for t in wanted if shards.get(t)]
        if not self.tasks:
            raise ValueError(
                f"no shards for tasks {wanted} (found {sorted(k for k, v in shards.items() if v)})"
            )
        self.spec = spec
        self.seed, self.rank = int(seed), int(rank)
        self.style_instruction, self.param_instruction = style_instruction, param_instruction
        self.streams = {
            t: ShardStream(
                shards[t],
                seed=self.seed + 1000 * WORKFLOWS.index(t),
                rank=rank,
                world=world,
                shuffle_buffer=shuffle_buffer,
                shuffle_shards=shuffle_shards,
            )
            for t in self.tasks
        }
        self.skipped_too_long = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.rank, worker, 11])
        iters = {t: iter(s) for t, s in self.streams.items()}
        while True:
            task = self.tasks[int(rng.integers(len(self.tasks)))]
            feat = encode_sample(
                next(iters[task]), self.spec, rng, self.style_instruction, self.param_instruction
            )
            if feat is not None:
                yield feat
                continue
            self.skipped_too_long += 1
            if self.skipped_too_long in (1, 100, 10000):
                print(f"[data] skipped {self.skipped_too_long} samples longer than max_length")


def make_loader(
    data_dirs: Sequence[str | Path],
    spec: TokenSpec,
    data: DataSpec,
    *,
    tasks: Sequence[str] | None,
    seed: int,
    rank: int = 0,
    world: int = 1,
) -> Iterator[dict[str, Any]]:
    """Endless iterator of collated batches for one rank (fixed_batch: the first batch forever)."""
    shards = discover_shards(data_dirs)
    ds = TaskSampleStream(
        shards,
        spec,
        tasks=tasks,
        seed=seed,
        rank=rank,
        world=world,
        shuffle_buffer=data.shuffle_buffer,
        shuffle_shards=data.shuffle_shards,
        style_instruction=data.style_instruction,
        param_instruction=data.param_instruction,
    )
    pad = spec.pad_id
    collate_fn: Callable[[Sequence[dict[str, Any]]], dict[str, Any]] = Collate(pad)
    loader = DataLoader(
        ds,
        batch_size=data.batch_size,
        collate_fn=collate_fn,
        num_workers=data.loader_workers,
        persistent_workers=data.loader_workers > 0,
    )
    if data.fixed_batch:
        first = next(iter(loader))

        def repeat() -> Iterator[dict[str, Any]]:
            while True:
                yield first

        return repeat()
    return iter(loader)
