"""Domain-align pre-training (paper Sec. 3.3): the retouch tokens' hidden states learn to speak the
renderer's latent language.

Param data only (the prompt lists the parameters and carries no image), vision tower frozen, the
LLM + adaptor (+ renderer, optionally) train on L = α·CE(completion tokens) + L1(R(input; z), target)
(Eq. 3). The L1 term back-propagates through the renderer and adaptor into the hidden states that
predict the three retouch tokens; this is what aligns them. `sft_step` is shared with RSFT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from model_core.train.common import Stage, StepContext
from model_core.train.config import AlignSpec


def sft_loss(ctx: StepContext, batch: dict[str, Any], alpha: float) -> tuple[torch.Tensor, dict[str, float]]:
    """α·CE over the assistant tokens + L1 between the rendered input and the target."""
    labels = batch["labels"]
    nxt = labels[:, 1:]
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = nxt != -100
    with ctx.autocast():
        out = ctx.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            logit_positions=positions,
            masks=batch["masks"],
            render_in=batch["render_in"],
        )
    ce = F.cross_entropy(out.logits.float(), nxt[nxt != -100])
    l1 = (out.rendered.float() - batch["render_tgt"].float()).abs().mean()
    loss = alpha * ce + l1
    return loss, {
        "loss": float(loss.detach()),
        "ce": float(ce.detach()),
        "l1": float(l1.detach()),
        "tokens": int(positions.sum()),
    }


def sft_step(ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
    """One optimizer step of the align / RSFT objective."""
    loss, stats = sft_loss(ctx, batch, float(ctx.spec.alpha))
    stats["grad_norm"] = ctx.optimizer_step(loss)
    return stats


def _roles(spec: AlignSpec) -> list[str]:
    # the projector only sees images, and align's param prompts have none: it stays frozen too
    return ["llm", "adaptor", *(["renderer"] if spec.train_renderer else [])]


def _tasks(spec: AlignSpec, available: Sequence[str]) -> list[str]:
    tasks = [t for t in spec.tasks if t in available]
    if not tasks:
        raise ValueError(f"align trains on {spec.tasks} data; the given data has only {list(available)}")
    return tasks


STAGE = Stage(name="align", roles=_roles, tasks=_tasks, train_step=sft_step)
