"""Training checkpoints: the resumable state of a stage (``last.safetensors``: weights, AdamW
moments, step, config; no pickle) and initialising a stage from the previous stage's model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from model_core.model_io import (
    WEIGHTS_FILE,
    atomic_save_file,
    read_tensors,
    resolve_model_dir,
    state_tensors,
)
from model_core.train.config import TrainConfig
from model_core.train.optim_state import load_optimizer_state, optimizer_tensors
from model_core.vlm import VeraRetouch

TRAIN_FORMAT = "aether-veraretouch-train/1"


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
