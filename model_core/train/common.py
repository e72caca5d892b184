"""The trainer's step loop (`run_stage`) and the `Stage` interface the stages implement.

One loop serves the three VLM stages (align, rsft, dapo); a stage module only says which modules
train, which tasks it reads and what one optimizer step does (`Stage`). Single process by default;
`num_workers > 1` runs the same loop on every Ray Train worker (`model_core.train.distributed`);
`model_core.train.stage.train_stage` (the CLI's entry) chooses between the two.

Files in ``out_dir``:

- ``last.safetensors``: resumable state (all weights, AdamW moments, step, config).
  No pickle: optimizer state is flattened to tensors + JSON metadata.
- ``model/``: the latest weights as a self-contained model dir (`model_core.model_io.load_model`), the
  input of the next stage (``init_from``), of `aether retouch` and of `aether eval`.
- ``metrics.csv``: one row per logged step (losses, rewards, lr, elapsed seconds).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_core.data import make_loader
from model_core.encoding import TokenSpec
from model_core.model_build import build_model
from model_core.model_io import resolve_model_dir, save_model
from model_core.shards import discover_shards
from model_core.train.checkpoint import load_init, load_train_state, save_train_state
from model_core.train.config import STAGES, OptimSpec, TrainConfig
from model_core.train.metrics_log import DAPO_COLUMNS, METRICS, SFT_COLUMNS, CsvLog
from model_core.vlm import VeraRetouch

LAST = "last.safetensors"
MODEL_DIR = "model"


@dataclass
class StepContext:
    """What a stage's `train_step` gets: the (possibly DDP-wrapped) model and its optimizer."""

    model: torch.nn.Module
    """Call this for passes that produce gradients (DDP-wrapped when distributed)."""
    module: VeraRetouch
    """The unwrapped model (generation, tokenizer, ids)."""
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    cfg: TrainConfig
    spec: Any
    device: torch.device
    step: int = 0
    next_batch: Callable[[str | None], dict[str, Any]] = lambda task=None: {}
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    extra: dict[str, Any] = field(default_factory=dict)

    def optimizer_step(self, loss: torch.Tensor) -> float:
        """backward, clip, step, zero; returns the gradient norm before clipping."""
        loss.backward()
        return self.apply_gradients()

    def apply_gradients(self) -> float:
        """clip, step, zero (after the caller's own backward passes); returns the gradient norm."""
        clip = float(self.spec.grad_clip)
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip if clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)


@dataclass(frozen=True)
class Stage:
    """A training stage: trainable roles, tasks, batching, and one optimizer step."""

    name: str
    roles: Callable[[Any], list[str]]
    tasks: Callable[[Any, Sequence[str]], list[str]]
    train_step: Callable[[StepContext, dict[str, Any]], dict[str, float]]
    per_task_batches: bool = False
    """True: one loader per task and every step's batch is single-task (DAPO)."""
    reset_prefixes: Callable[[Any], list[str]] = lambda spec: []
    """State-dict prefixes NOT taken from `init_from` (kept at their fresh/pre-trained values)."""


def get_stage(name: str) -> Stage:
    """The Stage object of align / rsft / dapo."""
    if name not in ("align", "rsft", "dapo"):
        raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
    return importlib.import_module(f"model_core.train.{name}").STAGE


def lr_at(step: int, spec: OptimSpec) -> float:
    """Linear warmup to `lr`, then cosine decay to lr·min_lr_frac at `spec.max_steps`."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    span = max(1, spec.max_steps - spec.warmup_steps)
    t = min(1.0, (step - spec.warmup_steps) / span)
    return spec.lr * (spec.min_lr_frac + (1.0 - spec.min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * t)))


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the batch's tensors (non-blocking); lists stay."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _init_module(
    cfg: TrainConfig,
    st: Stage,
    spec: OptimSpec,
    seed: int,
    init_from: str | Path | None,
    say: Callable[[str], None],
) -> VeraRetouch:
    """The model of a stage: random or pre-trained per config, then the previous stage's weights."""
    # the token ids of the init checkpoint must be the ones its embeddings were trained with
    init_tok = resolve_model_dir(init_from) / "tokenizer" if init_from else None
    module = build_model(cfg.model, cfg.renderer, seed, _tokenizer_dir=init_tok)
    if init_from:
        counts = load_init(module, init_from, st.reset_prefixes(spec))
        say(f"init from {init_from}: {counts}")
    return module


def _batches(
    st: Stage,
    spec: OptimSpec,
    cfg: TrainConfig,
    data_dirs: Sequence[str | Path],
    token_spec: TokenSpec,
    seed: int,
    step: int,
    rank: int,
    world: int,
    dev: torch.device,
) -> tuple[list[str], Callable[[str | None], dict[str, Any]]]:
    """The stage's tasks and its batch source: one stream per task (single-task steps) or one mixed."""
    shards = discover_shards(data_dirs)
    tasks = st.tasks(spec, list(shards))
    data_seed = seed + 104_729 * step
    if st.per_task_batches:
        loaders = {
            t: make_loader(data_dirs, token_spec, cfg.data, tasks=[t], seed=data_seed, rank=rank, world=world)
            for t in tasks
        }
    else:
        loaders = {
            "*": make_loader(
                data_dirs, token_spec, cfg.data, tasks=tasks, seed=data_seed, rank=rank, world=world
            )
        }
    task_rng = np.random.default_rng([seed, step, 3])

    def next_batch(task: str | None = None) -> dict[str, Any]:
        key = task if st.per_task_batches else "*"
        if key is None:
            key = tasks[int(task_rng.integers(len(tasks)))]
        return to_device(next(loaders[key]), dev)

    return tasks, next_batch


def run_stage(
    stage: str,
    cfg: TrainConfig,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    max_steps: int | None = None,
    resume: bool = True,
    seed: int = 0,
    init_from: str | Path | None = None,
    *,
    rank: int = 0,
    world: int = 1,
    device: str | torch.device = "cpu",
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    report: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train one stage in this process (one rank). Rank 0 writes checkpoints and logs.

    Kept whole on purpose (~100 lines, a third of them the signature): it is the order of a
    training run (model, optimizer, resume, seeds, data, step loop, checkpoints) read top to
    bottom; model set-up and the batch source are helpers of their own.
    """
    st = get_stage(stage)
    spec = getattr(cfg, stage)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    is_main = rank == 0
    say = log if (log and is_main) else (lambda _msg: None)

    module = _init_module(cfg, st, spec, seed, init_from, lambda msg: say(f"[{stage}] {msg}"))
    params = module.set_trainable(st.roles(spec))
    module.to(dev)
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=tuple(spec.betas))
    step = 0
    last = out / LAST
    if resume and last.exists():
        step = load_train_state(last, module, opt, cfg, stage)
        say(f"[{stage}] resumed from {last} at step {step}")
    torch.manual_seed(seed * 1_000_003 + rank * 7919 + step)
    stop = int(max_steps if max_steps is not None else spec.max_steps)
    start_step = step
    model = wrap(module) if wrap is not None else module

    tasks, next_batch = _batches(
        st, spec, cfg, data_dirs, TokenSpec.from_model(module), seed, step, rank, world, dev
    )

    use_amp = cfg.precision == "bf16" and dev.type == "cuda"

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(dev.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    ctx = StepContext(model, module, opt, params, cfg, spec, dev, step, next_batch, autocast)
    csv_log = CsvLog(out / METRICS, DAPO_COLUMNS if stage == "dapo" else SFT_COLUMNS) if is_main else None
    say(
        f"[{stage}] tasks {tasks} · trainable {sum(p.numel() for p in params):,} params "
        f"({', '.join(st.roles(spec))}) · steps {step}→{stop} · world {world}"
    )
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    module.train()
    while step < stop:
        lr = lr_at(step, spec)
        for g in opt.param_groups:
            g["lr"] = lr
        ctx.step = step
        batch = next_batch(None)
        stats = st.train_step(ctx, batch)
        step += 1
        loss = float(stats.get("loss", float("nan")))
        if not math.isfinite(loss):
            raise FloatingPointError(f"[{stage}] loss became {loss} at step {step}")
        row = {"step": step, "lr": lr, "elapsed_s": round(time.perf_counter() - t0, 2), **stats}
        history.append(row)
        if report is not None:
            report(row)
        if csv_log is not None and (step % spec.log_every == 0 or step == stop):
            csv_log.write(row)
            say(
                f"[{stage}] step {step}/{stop} "
                + " ".join(f"{k} {v:.4g}" for k, v in stats.items() if isinstance(v, float))
            )
        if is_main and (step % spec.checkpoint_every == 0 or step == stop):
            save_train_state(last, module, opt, cfg, stage, step, seed)
            save_model(
                module, out / MODEL_DIR, {"stage": stage, "step": step, "train_config": cfg.model_dump()}
            )
    if is_main and not (out / MODEL_DIR).exists():
        save_model(module, out / MODEL_DIR, {"stage": stage, "step": step, "train_config": cfg.model_dump()})
    losses = [float(r["loss"]) for r in history]
    return {
        "stage": stage,
        "step": step,
        "start_step": start_step,
        "losses": losses,
        "history": history,
        "wall_time_s": time.perf_counter() - t0,
        "checkpoint": str(last),
        "model": str(out / MODEL_DIR),
        "tasks": tasks,
    }
