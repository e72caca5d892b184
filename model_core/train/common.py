"""Shared trainer machinery: configs, the step loop (`run_stage`), checkpoints, logs.

One loop serves the three VLM stages (align, rsft, dapo); a stage module only says which modules
train, which tasks it reads and what one optimizer step does (`Stage`). Single process by default;
`num_workers > 1` runs the same loop on every Ray Train worker (`model_core.train.distributed`);
`model_core.train.stage.train_stage` (the CLI's entry) chooses between the two.

Files in ``out_dir``:

- ``last.safetensors``: resumable state (all weights, AdamW moments, step, config).
  No pickle: optimizer state is flattened to tensors + JSON metadata.
- ``model/``: the latest weights as a self-contained model dir (`model_core.vlm.load_model`), the
  input of the next stage (``init_from``), of `aether retouch` and of `aether eval`.
- ``metrics.csv``: one row per logged step (losses, rewards, lr, elapsed seconds).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from aether_data.config import deep_merge
from model_core.data import DataSpec, TokenSpec, discover_shards, make_loader
from model_core.train.optim_state import load_optimizer_state, optimizer_tensors
from model_core.vlm import (
    GenerationSpec,
    ModelConfig,
    RendererSpec,
    VeraRetouch,
    atomic_save_file,
    build_model,
    read_tensors,
    resolve_model_dir,
    save_model,
    state_tensors,
)

STAGES: tuple[str, ...] = ("er", "align", "rsft", "dapo")
TRAIN_FORMAT = "aether-veraretouch-train/1"
LAST = "last.safetensors"
MODEL_DIR = "model"
METRICS = "metrics.csv"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


# --------------------------------------------------------------------------------------------------
# configuration


class OptimSpec(BaseModel):
    """Optimiser and schedule of one stage (AdamW, linear warmup, cosine to lr·min_lr_frac)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 10_000
    """Schedule length, and the stop when `train_stage(max_steps=None)`."""
    min_lr_frac: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 10


class AlignSpec(OptimSpec):
    """Domain align: vision frozen, Param data, loss α·CE + L1 (paper Eq. 3)."""

    alpha: float = 1.0
    """Weight of the text cross-entropy (not published; 1.0 keeps CE and L1 on comparable scales)."""
    train_renderer: bool = False
    """The paper trains "the remaining components"; the renderer stays frozen by default so the
    latent space the E/R stage (and the auto data) defined does not drift. True follows the text."""
    tasks: list[str] = Field(default_factory=lambda: ["param"])


class RSFTSpec(OptimSpec):
    """Reasoning SFT: only the LLM trains, equal task ratio, same loss as align."""

    alpha: float = 1.0
    reset_llm: bool = True
    """Re-initialise the LLM from its pre-trained weights (paper: avoids align's probability shift);
    the adaptor, projector and renderer come from the align checkpoint (`init_from`)."""
    tasks: list[str] | None = None
    """None = every task present in the data."""


class DAPOSpec(OptimSpec):
    """DAPO-AE: clip-higher, dynamic sampling, token-level loss, no KL term (Yu et al. 2025)."""

    group_size: int = 8
    eps_low: float = 0.2
    eps_high: float = 0.28
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    updates_per_batch: int = 1
    """Gradient steps on each rollout batch (the first is on-policy, ratio 1)."""
    micro_batch: int = 8
    """Sequences per forward/backward (gradients accumulate over a batch's micro-batches)."""
    max_resample_rounds: int = 3
    """Extra rollouts per step to refill groups dropped by dynamic sampling."""
    equal_tol: float = 1e-6
    """Groups whose rewards span ≤ this are 'all equal' (zero advantage) and dropped."""
    w_format: float = 1.0
    w_similarity: float = 1.0
    w_aesthetic: float = 1.0
    psnr_range: tuple[float, float] = (10.0, 40.0)
    """PSNR (dB) mapped linearly to the similarity reward's [0, 1]."""
    aesthetic_scorer: str = "heuristic"
    """Scorer of R_a (`aether_data.scoring.registry`: heuristic | laion | qalign | liqe), mapped from
    its own scale to [0, 1]. The weight-free heuristic is the default."""
    aesthetic_model: str | None = None
    """laion: open_clip ``ARCH:/weights`` or folder; qalign: model folder; liqe: checkpoint (local)."""
    aesthetic_head: str | None = None
    """laion: the MLP head on the CLIP embedding (.pth / .safetensors)."""
    tasks: list[str] | None = None


class TrainConfig(BaseModel):
    """Everything a run needs; stored in checkpoints and model dirs."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"
    model: ModelConfig = Field(default_factory=ModelConfig)
    renderer: RendererSpec = Field(default_factory=RendererSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    align: AlignSpec = Field(default_factory=AlignSpec)
    rsft: RSFTSpec = Field(default_factory=RSFTSpec)
    dapo: DAPOSpec = Field(default_factory=DAPOSpec)
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 = autocast on CUDA (weights and optimizer stay fp32)."""
    num_threads: int | None = None
    """torch CPU threads per process (None = torch's default)."""


TINY: dict[str, Any] = {
    "name": "tiny",
    "model": {
        "architecture": "fast_vlm",
        "tokenizer": "template-bpe",
        "vision": {
            "architecture": "fastvit_t8",
            "hidden_size": 128,
            "model_args": {"layers": [1, 1, 1, 1], "embed_dims": [8, 16, 32, 64]},
        },
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
        },
        "image_size": 64,
        "max_length": 1024,
    },
    "renderer": {"er_config": "tiny", "checkpoint": None, "render_size": 32},
    "generation": {"max_new_tokens": 64, "temperature": 0.0},
    "data": {"batch_size": 2, "shuffle_buffer": 16, "loader_workers": 0},
    "align": {
        "lr": 3e-3,
        "warmup_steps": 2,
        "max_steps": 30,
        "min_lr_frac": 1.0,
        "checkpoint_every": 10,
        "log_every": 1,
    },
    "rsft": {
        "lr": 3e-3,
        "warmup_steps": 2,
        "max_steps": 30,
        "min_lr_frac": 1.0,
        "checkpoint_every": 10,
        "log_every": 1,
    },
    "dapo": {
        "lr": 1e-3,
        "warmup_steps": 0,
        "max_steps": 30,
        "min_lr_frac": 1.0,
        "checkpoint_every": 10,
        "log_every": 1,
        "group_size": 4,
        "max_new_tokens": 24,
        "updates_per_batch": 2,
        "max_resample_rounds": 1,
        "micro_batch": 8,
    },
    "precision": "fp32",
    "num_threads": 1,
}
"""The built-in random tiny config (the paper's architecture with a shrunken FastViT): CPU seconds per stage.
`configs/tiny.yaml` is the same config written out (a test keeps them equal)."""


def _raw_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, Mapping):
        raw = dict(config)
    elif str(config) == "tiny":
        return dict(TINY)
    else:
        p = Path(config)
        if not p.exists() and (CONFIG_DIR / f"{config}.yaml").exists():
            p = CONFIG_DIR / f"{config}.yaml"
        if not p.is_file():
            raise FileNotFoundError(f"config {config!r}: not 'tiny', a file, or a name in {CONFIG_DIR}")
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{p}: a config must be a YAML mapping")
    base = raw.pop("base", None)
    return deep_merge(_raw_config(base), raw) if base else raw


def load_config(config: str | Path | Mapping[str, Any] | TrainConfig) -> TrainConfig:
    """'tiny', a config name in model_core/configs, a YAML path, a dict or a TrainConfig.

    A YAML/dict may say ``base: tiny`` (or another config) and override only some keys.
    """
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.model_validate(_raw_config(config))


# --------------------------------------------------------------------------------------------------
# stage plumbing


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


# --------------------------------------------------------------------------------------------------
# checkpoints


def save_train_state(
    path: Path,
    module: VeraRetouch,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    stage: str,
    step: int,
    seed: int,
) -> Path:
    """Everything needed to continue: weights, optimizer, step (one safetensors file).

    Random streams (sampling, data order) are re-seeded from (seed, rank, step) on resume, so a
    resumed run is reproducible, though not bit-identical to an uninterrupted one.
    """
    tensors = {f"model.{k}": v for k, v in state_tensors(module).items()}
    opt_t, groups = optimizer_tensors(opt)
    tensors.update(opt_t)
    meta = {
        "format": TRAIN_FORMAT,
        "stage": stage,
        "step": str(step),
        "seed": str(seed),
        "config": cfg.model_dump_json(),
        "optim.param_groups": groups,
    }
    return atomic_save_file(tensors, path, meta)


def load_train_state(
    path: Path, module: VeraRetouch, opt: torch.optim.Optimizer, cfg: TrainConfig, stage: str
) -> int:
    """Restore a `save_train_state` file; refuses another stage or a different config."""
    tensors, meta = read_tensors(path)
    if meta.get("format") != TRAIN_FORMAT or meta.get("stage") != stage:
        raise ValueError(f"{path}: not a {stage} training state (stage {meta.get('stage')!r})")
    saved = TrainConfig.model_validate_json(meta["config"])
    spec_now = getattr(cfg, stage).model_dump(exclude={"max_steps"})
    if saved.model != cfg.model or getattr(saved, stage).model_dump(exclude={"max_steps"}) != spec_now:
        raise ValueError(f"{path}: saved config differs from the requested one; refusing to resume")
    model_t = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    module.load_state_dict(model_t, strict=True)
    load_optimizer_state(opt, tensors, meta["optim.param_groups"])
    return int(meta["step"])


def load_init(module: VeraRetouch, path: str | Path, skip_prefixes: Sequence[str] = ()) -> dict[str, int]:
    """Initialise from a previous stage's model dir (or out dir); `skip_prefixes` keep fresh values.

    Shapes must match (same model config); returns counts of loaded / kept tensors.
    """
    from model_core.vlm import WEIGHTS_FILE

    d = resolve_model_dir(path)
    tensors, _ = read_tensors(d / WEIGHTS_FILE)
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise ValueError(f"{d}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    take = {k: v for k, v in tensors.items() if k in own and not any(k.startswith(p) for p in skip_prefixes)}
    bad = [k for k, v in take.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{d}: shape mismatch for {bad[:5]} (different model config?)")
    module.load_state_dict(take, strict=False)
    return {"loaded": len(take), "kept": len(own) - len(take)}


class CsvLog:
    """Append-only metrics CSV (header written once; a resumed run appends)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            with path.open(newline="", encoding="utf-8") as fh:
                self.columns = next(csv.reader(fh), list(columns))
        else:
            self.columns = list(columns)
            with path.open("w", newline="", encoding="utf-8") as fh:
                csv.writer(fh).writerow(self.columns)

    def write(self, row: Mapping[str, Any]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def read_metrics(out_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv``."""
    with (Path(out_dir) / METRICS).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------------------------------
# the loop


SFT_COLUMNS = ("step", "loss", "ce", "l1", "lr", "grad_norm", "tokens", "elapsed_s")
DAPO_COLUMNS = (
    "step", "task", "loss", "loss_first", "loss_last", "reward", "r_format", "r_similarity",
    "r_aesthetic", "kept_groups", "dropped_groups", "rounds", "clip_frac", "resp_tokens", "lr",
    "grad_norm", "elapsed_s",
)  # fmt: skip


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
