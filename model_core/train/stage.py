"""`train_stage`: the entry behind ``aether train``, choosing the stage and where it runs.

Why a module of its own: the single-process loop (``common``) and the Ray Train launcher
(``distributed``) both build on the shared machinery; the choice between them lives above both, so
neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from aether_data.io.imaging import IMAGE_EXTENSIONS
from model_core.train.common import run_stage
from model_core.train.config import STAGES, TrainConfig, load_config
from model_core.train.distributed import run_distributed

__all__ = ["train_stage"]


def _er_config_for(config: str | Path | Mapping[str, Any] | TrainConfig) -> Any:
    """The ERConfig (or preset name) the ``er`` stage trains: a preset name passes through; a VeraRetouch
    config contributes its renderer's config."""
    from model_core.er_config import PRESETS

    if isinstance(config, str) and config in PRESETS:
        return config
    return load_config(config).renderer.resolve()


def _er_images(data_dirs: Sequence[str | Path]) -> list[Path] | None:
    """Photos for the ``er`` stage: image files given directly or found under folders."""
    exts = IMAGE_EXTENSIONS
    found: list[Path] = []
    for d in data_dirs:
        p = Path(d)
        if p.is_file() and p.suffix.lower() in exts:
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(x for x in p.rglob("*") if x.suffix.lower() in exts))
    return found or None


def train_stage(
    stage: str,
    data_dirs: Sequence[str | Path],
    config: str | Path | Mapping[str, Any] | TrainConfig = "tiny",
    max_steps: int | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    num_workers: int = 1,
    use_gpu: bool = False,
    seed: int = 0,
    init_from: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train one stage; the function behind ``aether train``.

    - ``er``: delegates to `model_core.train.er.train_er` (photos found under `data_dirs`, else the
      bundled ones; `config` is an ER preset name or a VeraRetouch config whose renderer it trains).
    - ``align`` / ``rsft`` / ``dapo``: stream shards from `data_dirs` (dataset dirs built by
      ``aether build``), start from `init_from` (the previous stage's out dir or model dir; the
      config's pre-trained / random weights when None), write ``out_dir/{last.safetensors, model/,
      metrics.csv}``. `resume=True` continues from ``out_dir/last.safetensors`` when present.
    - ``num_workers > 1``: Ray Train `TorchTrainer` with that many workers (DDP; `use_gpu` gives
      each one GPU); otherwise this process, on CUDA when `use_gpu`.

    Returns {"stage", "step", "start_step", "losses", "history", "wall_time_s", "checkpoint", "model"}.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    out = Path(out_dir) if out_dir is not None else Path("runs") / stage
    if stage == "er":
        from model_core.train.er import train_er

        return train_er(
            config=_er_config_for(config),
            images=_er_images(data_dirs),
            out_dir=out,
            max_steps=max_steps,
            seed=seed,
            resume=resume,
            log=log,
        )
    cfg = load_config(config)
    if not data_dirs:
        raise ValueError(f"stage {stage} needs --data (dataset dirs built by `aether build`)")
    if num_workers > 1:
        return run_distributed(
            stage, cfg, data_dirs, out, max_steps, resume, seed, init_from, num_workers, use_gpu, log=log
        )
    if use_gpu and not torch.cuda.is_available():
        raise RuntimeError("--use-gpu given but CUDA is not available")
    device = "cuda" if use_gpu else "cpu"
    return run_stage(stage, cfg, data_dirs, out, max_steps, resume, seed, init_from, device=device, log=log)
