"""Multi-worker training through Ray Train's `TorchTrainer` (DDP).

Each Ray Train worker runs `model_core.train.common.run_stage` with its world rank: it streams its
own disjoint part of the shards (`model_core.data` splits by rank and DataLoader worker), wraps the
model in `DistributedDataParallel` (gloo on CPU, NCCL on GPU; every trainable parameter takes part
in every pass of every stage, so no unused-parameter search), and rank 0 alone writes checkpoints,
the model dir and ``metrics.csv``. DAPO keeps ranks in lockstep: the task of a step is drawn from
the same seed on every rank, each update does one synchronised backward (micro-batches before it
run under `no_sync`), and a rank whose groups were all dropped still runs the update with zero
advantages. The per-rank batch size is `data.batch_size`, so the global batch is
`num_workers × batch_size`. Joining a cluster: set ``RAY_ADDRESS`` (or run inside ``ray start``) and
use a shared filesystem (or fsspec URI) for ``out_dir`` and the shards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from aether_data.io.atomic import atomic_write_text

SUMMARY = "summary.json"


def _worker_loop(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from model_core.train.common import run_stage
    from model_core.train.config import TrainConfig

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    cfg = TrainConfig.model_validate(config["cfg"])

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        if world <= 1 or not any(p.requires_grad for p in module.parameters()):
            return module
        ids = [device.index] if device.type == "cuda" else None
        return DDP(module, device_ids=ids)

    res = run_stage(
        config["stage"],
        cfg,
        config["data_dirs"],
        config["out_dir"],
        config["max_steps"],
        config["resume"],
        config["seed"],
        config["init_from"],
        rank=rank,
        world=world,
        device=device,
        wrap=wrap,
        log=print if rank == 0 else None,
    )
    if rank == 0:
        summary = {k: v for k, v in res.items() if k != "history"}
        summary["world"] = world
        atomic_write_text(Path(config["out_dir"], SUMMARY), json.dumps(summary, indent=1))
    ray.train.report({"step": res["step"], "last_loss": res["losses"][-1] if res["losses"] else float("nan")})


def run_distributed(
    stage: str,
    cfg: Any,
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    max_steps: int | None,
    resume: bool,
    seed: int,
    init_from: str | Path | None,
    num_workers: int,
    use_gpu: bool,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run `stage` on `num_workers` Ray Train workers; returns rank 0's summary (no per-step history:
    read ``metrics.csv``)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from model_core.train.metrics_log import read_metrics

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level="WARNING")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "stage": stage,
            "cfg": cfg.model_dump(),
            "data_dirs": [str(Path(d).resolve()) if "://" not in str(d) else str(d) for d in data_dirs],
            "out_dir": str(out),
            "max_steps": max_steps,
            "resume": resume,
            "seed": seed,
            "init_from": str(Path(init_from).resolve()) if init_from else None,
        },
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(name=f"aether-{stage}", storage_path=str(out / "ray")),
    )
    trainer.fit()
    summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    rows = read_metrics(out)
    summary["history"] = rows
    if log:
        log(f"[{stage}] {num_workers} workers: step {summary['step']}, model {summary['model']}")
    return summary
