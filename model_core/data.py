"""Streaming our WebDataset shards into the VeraRetouch trainer.

Why streaming: a million-pair dataset does not fit in memory, and every rank of a multi-node job
must read a different part of it. The pipeline per task (param / style / auto) is::

    shard list ─► epoch permutation (seed, epoch) ─► this rank's / worker's part ─► tar reader
    (webdataset) ─► shuffle buffer (compressed bytes, bounded) ─► decode + prompt + tokenize

- **Splitting.** In epoch e every worker of every rank sees the same permutation of the shard list;
  global worker g = rank · workers + worker takes shards g, g + W, … (W = world · workers), so the
  parts are disjoint and cover the epoch. With fewer shards than W, every worker reads every shard
  and keeps samples g, g + W, … instead (still disjoint, costs I/O; only for tiny datasets).
- **Resampling.** The stream never ends: epoch e + 1 starts with a new permutation, so `max_steps`
  alone bounds training and no rank runs dry before another (which would hang DDP).
- **Memory.** Only the shuffle buffer's samples (still JPEG bytes) are held; decoding happens as a
  sample leaves the buffer. `ShardStream.stats` records the high-water mark (tested).
- **Prompts.** Official qwen_2 chat turns: system, user (``<image>`` placeholder expanded to the
  vision tower's token count, then the task prompt; the *param* prompt carries no image: the
  parameters alone determine the edit), assistant = the tagged completion + ``<|im_end|>``. Labels
  are -100 everywhere but the assistant turn.
- **Task sampling.** RSFT draws each sample's task with equal probability among the tasks present
  (paper Sec. 3.3); DAPO asks for whole single-task batches.
"""

from __future__ import annotations

import glob
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from aether_data.contract import TASK_TOKENS, WORKFLOWS, build_prompt

TASK_OF_TOKEN: dict[str, str] = {v: k for k, v in TASK_TOKENS.items()}
SHARD_RE = re.compile(r"^(param|style|auto)-\d+\.tar$")
IMAGE_PLACEHOLDER = "<image>"


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


# --------------------------------------------------------------------------------------------------
# shard discovery and splitting


def shard_task(path: str) -> str:
    """Task of a shard from its file name ``{workflow}-{shard:06d}.tar``."""
    name = path.rsplit("/", 1)[-1]
    m = SHARD_RE.match(name)
    if not m:
        raise ValueError(f"{path}: shard names must be '{{workflow}}-NNNNNN.tar' (workflow in {WORKFLOWS})")
    return m.group(1)


def discover_shards(data_dirs: Sequence[str | Path]) -> dict[str, list[str]]:
    """Shards per task under dataset dirs (``DIR/shards/*.tar``), plain dirs of tars, or tar paths /
    URLs (``pipe:…``, ``s3://…`` are passed to webdataset untouched). Sorted, so every rank agrees."""
    found: dict[str, list[str]] = {}
    for entry in data_dirs:
        s = str(entry)
        if "://" in s or s.startswith("pipe:") or s.endswith(".tar"):
            paths = [s] if ("://" in s or s.startswith("pipe:")) else sorted(glob.glob(s))
            if not paths:
                raise FileNotFoundError(f"{s}: no such shard")
        else:
            p = Path(s)
            base = p / "shards" if (p / "shards").is_dir() else p
            if not base.is_dir():
                raise FileNotFoundError(f"{p}: not a dataset dir (no shards/) nor a dir of shards")
            paths = sorted(str(x) for x in base.glob("*.tar") if SHARD_RE.match(x.name))
            if not paths:
                raise FileNotFoundError(f"{base}: no '{{workflow}}-NNNNNN.tar' shards")
        for path in paths:
            found.setdefault(shard_task(path), []).append(path)
    return {t: sorted(set(v)) for t, v in sorted(found.items())}


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


def _read_tar_samples(paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Raw samples ({"__key__", "input.jpg", "json", "target.jpg", ...} bytes) via webdataset."""
    from webdataset.tariterators import tarfile_samples

    yield from tarfile_samples([{"url": p} for p in paths])


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
            for i, sample in enumerate(_read_tar_samples(paths)):
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


# --------------------------------------------------------------------------------------------------
# decoding, prompts, tokenisation


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes → float32 HxWx3 RGB in [0, 1]."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        from PIL import Image

        arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1]
    return np.ascontiguousarray(arr[..., ::-1], dtype=np.float32) / 255.0


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize (area filter when shrinking); the renderer is per-pixel, so aspect is free."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def vision_pixels(img: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """FastVLM input: pad to a square with the mean colour (LLaVA "pad" mode), resize, normalise."""
    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.empty((side, side, 3), dtype=np.float32)
    canvas[:] = np.asarray(mean, dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = img
    sq = resize(canvas, size)
    out = (sq - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def task_prompt(
    record: Mapping[str, Any],
    rng: np.random.Generator,
    style_instruction: str = "random",
    param_instruction: str = "official",
) -> str:
    """The official user prompt (task token + request) for a record."""
    workflow = str(record["workflow"])
    if workflow == "param":
        if param_instruction == "random" and len(record.get("instructions") or []) > 1:
            instructions = list(record["instructions"])
            return build_prompt("param", instruction=instructions[int(rng.integers(len(instructions)))])
        prompt = record.get("prompt")
        if prompt:
            return str(prompt)
        return build_prompt("param", instruction=str(record["instructions"][0]))
    if workflow == "style":
        instructions = list(record["instructions"])
        pick = (
            instructions[int(rng.integers(len(instructions)))]
            if style_instruction == "random"
            else instructions[0]
        )
        return build_prompt("style", instruction=pick)
    return str(record.get("prompt") or build_prompt("auto"))


def task_has_image(workflow: str) -> bool:
    """Param prompts carry no image: the parameters alone define the edit (align learns latents from
    them); auto and style need to see the photo."""
    return workflow != "param"


def chat_text(prompt: str, has_image: bool, system: str) -> str:
    """qwen_2 chat template up to the assistant's turn (generation prompt included)."""
    user = f"{IMAGE_PLACEHOLDER}\n{prompt}" if has_image else prompt
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


@dataclass
class TokenSpec:
    """What the encoder needs from the model (picklable for DataLoader workers)."""

    tokenizer: Any
    image_token_id: int
    image_tokens: int
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    render_size: int
    system_prompt: str
    max_length: int
    pad_id: int

    @classmethod
    def from_model(cls, model: Any) -> TokenSpec:
        c = model.config
        return cls(
            tokenizer=model.tokenizer,
            image_token_id=model.image_token_id,
            image_tokens=model.image_tokens,
            image_size=c.image_size,
            image_mean=tuple(c.image_mean),
            image_std=tuple(c.image_std),
            render_size=model.renderer_spec.render_size,
            system_prompt=c.system_prompt,
            max_length=c.max_length,
            pad_id=model.pad_id,
        )

    def prompt_ids(self, prompt: str, has_image: bool) -> list[int]:
        """Token ids of the chat prefix, the image placeholder expanded to `image_tokens` copies."""
        ids = self.tokenizer(chat_text(prompt, has_image, self.system_prompt), add_special_tokens=False)[
            "input_ids"
        ]
        out: list[int] = []
        for t in ids:
            out.extend([t] * self.image_tokens if t == self.image_token_id else [t])
        return out

    def completion_ids(self, completion: str) -> list[int]:
        # the official trainer (train_qwen.preprocess_qwen_2) labels the separator "<|im_end|>\n" too
        return self.tokenizer(completion + "<|im_end|>\n", add_special_tokens=False)["input_ids"]


def encode_sample(
    raw: Mapping[str, Any],
    spec: TokenSpec,
    rng: np.random.Generator,
    style_instruction: str = "random",
    param_instruction: str = "official",
) -> dict[str, Any] | None:
    """Raw shard sample → training features; None when the sequence exceeds `max_length`."""
    record = json.loads(raw["json"])
    workflow = str(record["workflow"])
    prompt = task_prompt(record, rng, style_instruction, param_instruction)
    has_image = task_has_image(workflow)
    p_ids = spec.prompt_ids(prompt, has_image)
    c_ids = spec.completion_ids(str(record["completion"]))
    if len(p_ids) + len(c_ids) > spec.max_length:
        return None
    inp = decode_image(raw["input.jpg"])
    tgt = decode_image(raw["target.jpg"])
    return {
        "key": str(raw.get("__key__", record.get("key"))),
        "task": workflow,
        "prompt": prompt,
        "completion": str(record["completion"]),
        "prompt_ids": p_ids,
        "input_ids": p_ids + c_ids,
        "labels": [-100] * len(p_ids) + c_ids,
        "pixel_values": vision_pixels(inp, spec.image_size, spec.image_mean, spec.image_std)
        if has_image
        else None,
        "render_in": to_chw(resize(inp, spec.render_size)),
        "render_tgt": to_chw(resize(tgt, spec.render_size)),
        "masks": torch.tensor([float(m) for m in record.get("masks", [1, 1, 1])], dtype=torch.float32),
    }


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch. `pixel_values` stacks only the rows with an image (`image_rows`), in row
    order, matching the order in which placeholders are filled."""
    width = max(len(f["input_ids"]) for f in features)
    n = len(features)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    for i, f in enumerate(features):
        L = len(f["input_ids"])
        ids[i, :L] = torch.tensor(f["input_ids"])
        labels[i, :L] = torch.tensor(f["labels"])
        att[i, :L] = 1
    rows = [i for i, f in enumerate(features) if f["pixel_values"] is not None]
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": att,
        "pixel_values": torch.stack([features[i]["pixel_values"] for i in rows]) if rows else None,
        "image_rows": rows,
        "render_in": torch.stack([f["render_in"] for f in features]),
        "render_tgt": torch.stack([f["render_tgt"] for f in features]),
        "masks": torch.stack([f["masks"] for f in features]),
        "tasks": [f["task"] for f in features],
        "keys": [f["key"] for f in features],
        "prompts": [f["prompt"] for f in features],
        "completions": [f["completion"] for f in features],
        "prompt_ids": [f["prompt_ids"] for f in features],
    }


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
    collate_fn: Callable[[Sequence[dict[str, Any]]], dict[str, Any]] = _Collate(pad)
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


class _Collate:
    """Picklable collate function bound to a pad id."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate(features, self.pad_id)


def iter_records(
    data_dirs: Sequence[str | Path], tasks: Sequence[str] | None = None, max_per_task: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Raw samples once, in shard order, task by task (evaluation): (task, raw sample)."""
    for task, paths in discover_shards(data_dirs).items():
        if tasks is not None and task not in tasks:
            continue
        for i, sample in enumerate(_read_tar_samples(paths)):
            if max_per_task is not None and i >= max_per_task:
                break
            yield task, sample
