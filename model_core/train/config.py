"""Trainer configuration: one `TrainConfig` per run (model, renderer, data, and each stage's
optimiser), the built-in `tiny` config, and loading configs from names, YAML files or dicts."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from aether_data.config import deep_merge
from model_core.data import DataSpec
from model_core.vlm_config import GenerationSpec, ModelConfig, RendererSpec

STAGES: tuple[str, ...] = ("er", "align", "rsft", "dapo")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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
        "lr": 3e-4,  # a third of RSFT's: at 1e-3, 30 steps undid RSFT's held-out gains (CE 3.82 → 6.79)
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
