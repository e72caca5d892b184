"""DAPO-AE post-training (paper Sec. 3.3; DAPO: Yu et al. 2025).

Per step, for one task (single-task batches):

1. **Group sampling**: each prompt gets `group_size` sampled completions (temperature, top-p).
   Generation stops at ``<retouch_colormixer>``; a completion missing the retouch tokens gets them
   appended (forced tokens are not actions: no loss on them) so every sample renders an image.
2. **Rewards**, each in [0, 1]: format R_f (1 iff `is_valid_completion`), image similarity R_s (PSNR
   of R(input; z) against the target, mapped linearly from `psnr_range`), aesthetic R_a on *auto*
   only: the scorer named by ``dapo.aesthetic_scorer`` (`aether_data.scoring.registry`; default the
   weight-free heuristic, 0–10 on its own scale), mapped from the scorer's scale to [0, 1]. Total =
   weighted sum.
3. **Dynamic sampling**: groups whose rewards are all equal carry no signal (zero advantage) and are
   dropped; more prompts of the same task are rolled out (`max_resample_rounds`) to refill.
4. **Clip-higher, token-level loss**: advantage A = (r − mean) / (std + ε) per group; every
   response token t contributes min(ρ_t A, clip(ρ_t, 1 − ε_low, 1 + ε_high) A) and the sum is divided
   by the number of response tokens in the whole batch (long answers are not down-weighted). No KL
   term, no reference model.

Only the LLM trains. RL does not touch the adaptor/renderer: the image rewards steer which
reasoning (and hence which hidden states) the policy produces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aether_data.contract import is_valid_completion
from aether_data.scoring.registry import make_scorer, normalised
from model_core.completions import completion_text, force_retouch, masks_from_completion
from model_core.train.common import Stage, StepContext
from model_core.train.config import DAPOSpec
from model_core.vlm import VeraRetouch

ADV_EPS = 1e-6

# --------------------------------------------------------------------------------------------------
# rewards


def format_reward(text: str, workflow: str) -> float:
    """1.0 iff the completion follows the tagged format of its task exactly, else 0.0."""
    return 1.0 if is_valid_completion(text, workflow) else 0.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1] (capped at 100 for identical images)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 100.0 if mse <= 1e-10 else float(10.0 * np.log10(1.0 / mse))


def similarity_reward(
    out: np.ndarray, target: np.ndarray, psnr_range: Sequence[float] = (10.0, 40.0)
) -> float:
    """PSNR(out, target) mapped linearly from `psnr_range` dB to [0, 1] (clipped)."""
    lo, hi = float(psnr_range[0]), float(psnr_range[1])
    return float(np.clip((psnr(out, target) - lo) / (hi - lo), 0.0, 1.0))


_SCORERS: dict[tuple[str, str | None, str | None, str], Any] = {}


def aesthetic_scorer(spec: DAPOSpec | None = None, device: str = "cpu") -> Any:
    """The configured R_a scorer (built once per process and configuration)."""
    key = (
        spec.aesthetic_scorer if spec else "heuristic",
        spec.aesthetic_model if spec else None,
        spec.aesthetic_head if spec else None,
        device,
    )
    if key not in _SCORERS:
        _SCORERS[key] = make_scorer(key[0], key[1], key[2], device=device)
    return _SCORERS[key]


def aesthetic_reward(out: np.ndarray, scorer: Any = None) -> float:
    """R_a: the scorer's score (default: the heuristic) mapped from its scale to [0, 1]."""
    img = np.clip(out, 0.0, 1.0).astype(np.float32)
    return normalised(scorer if scorer is not None else aesthetic_scorer(), [img])[0]


def total_reward(parts: dict[str, float], spec: DAPOSpec) -> float:
    """Weighted sum of the rewards present (aesthetic only exists for auto)."""
    weights = {"format": spec.w_format, "similarity": spec.w_similarity, "aesthetic": spec.w_aesthetic}
    return float(sum(weights[k] * v for k, v in parts.items()))


# --------------------------------------------------------------------------------------------------
# DAPO pieces


def dynamic_sampling_mask(rewards: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """(groups, G) rewards → (groups,) bool: keep groups whose rewards are not all equal."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) > tol


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(groups, G) → (groups, G): (r − group mean) / (group std + ε)."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + ADV_EPS)


def clipped_objective(
    ratio: torch.Tensor, adv: torch.Tensor, eps_low: float, eps_high: float
) -> torch.Tensor:
    """Per-token min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)A): decoupled ("clip-higher") bounds."""
    return torch.minimum(ratio * adv, ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv)


def token_level_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    eps_low: float,
    eps_high: float,
    n_tokens: int | None = None,
) -> tuple[torch.Tensor, int]:
    """−Σ_tokens objective / n_tokens over flat (N,) response tokens (n_tokens defaults to N; pass the
    whole batch's count for a micro-batch). Returns (loss, number of clipped tokens)."""
    ratio = torch.exp(logp - old_logp)
    obj = clipped_objective(ratio, adv, eps_low, eps_high)
    clipped = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
    denom = n_tokens if n_tokens is not None else obj.numel()
    return -obj.sum() / max(1, denom), int(clipped.sum())


# --------------------------------------------------------------------------------------------------
# rollouts


@dataclass
class Row:
    """One sampled sequence: prompt + completion (+ forced retouch tokens) and what scoring needs."""

    seq: list[int]
    prompt_len: int
    resp_len: int
    """Sampled (policy) tokens; forced tokens, if any, come after them and carry no loss."""
    masks: list[int]
    text: str
    pixel_values: torch.Tensor | None
    render_in: torch.Tensor


@dataclass
class Group:
    """One prompt's G rows and their rewards."""

    task: str
    rows: list[Row]
    rewards: torch.Tensor
    parts: list[dict[str, float]]


def _chunks(rows: Sequence[Row], size: int) -> list[list[Row]]:
    size = max(1, int(size))
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def _row_tensors(module: VeraRetouch, rows: Sequence[Row], device: torch.device) -> dict[str, Any]:
    """Right-padded (N, T) tensors of some rows, with the response-token selection."""
    width = max(len(r.seq) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), module.pad_id, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    resp = torch.zeros((n, width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r.seq)] = torch.tensor(r.seq)
        att[i, : len(r.seq)] = 1
        resp[i, r.prompt_len : r.prompt_len + r.resp_len] = True
    pix = [r.pixel_values for r in rows if r.pixel_values is not None]
    positions = torch.zeros_like(resp)
    positions[:, :-1] = resp[:, 1:]
    return {
        "input_ids": ids.to(device),
        "attention_mask": att.to(device),
        "pixel_values": torch.stack(pix).to(device) if pix else None,
        "positions": positions.to(device),
        "targets": ids[:, 1:][resp[:, 1:]].to(device),
        "row_of_token": torch.nonzero(positions)[:, 0].to(device),
        "masks": torch.tensor([r.masks for r in rows], dtype=torch.float32, device=device),
        "render_in": torch.stack([r.render_in for r in rows]).to(device),
    }


def token_logprobs(model: torch.nn.Module, t: dict[str, Any], temperature: float) -> torch.Tensor:
    """Log-probabilities (at the sampling temperature) of the response tokens, flat in row order."""
    out = model(
        input_ids=t["input_ids"],
        attention_mask=t["attention_mask"],
        pixel_values=t["pixel_values"],
        logit_positions=t["positions"],
        with_latents=False,
    )
    logits = out.logits.float() / max(temperature, 1e-6)
    return torch.log_softmax(logits, dim=-1).gather(1, t["targets"].unsqueeze(1)).squeeze(1)


@torch.no_grad()
def rollout(ctx: StepContext, batch: dict[str, Any]) -> list[Group]:
    """Sample G completions per prompt of a single-task batch, render them, score them."""
    spec: DAPOSpec = ctx.spec
    module = ctx.module
    tasks = set(batch["tasks"])
    if len(tasks) != 1:
        raise ValueError(f"DAPO batches must be single-task, got {sorted(tasks)}")
    task = batch["tasks"][0]
    G = int(spec.group_size)
    with ctx.autocast():
        comps = module.generate_ids(
            batch["prompt_ids"],
            batch["pixel_values"],
            max_new_tokens=spec.max_new_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            num_return_sequences=G,
        )
    pix_rows = batch["image_rows"]
    groups: list[Group] = []
    for i, prompt in enumerate(batch["prompt_ids"]):
        pixel = batch["pixel_values"][pix_rows.index(i)] if i in pix_rows else None
        rows = []
        for g in range(G):
            raw = comps[i * G + g]
            text = completion_text(module, raw)
            full, forced = force_retouch(module, raw)
            rows.append(
                Row(
                    seq=list(prompt) + full,
                    prompt_len=len(prompt),
                    resp_len=len(full) - forced,
                    masks=masks_from_completion(text, task),
                    text=text,
                    pixel_values=pixel,
                    render_in=batch["render_in"][i],
                )
            )
        groups.append(Group(task, rows, torch.zeros(G), []))
    # teacher-forced passes (micro-batched) for the latents → rendered images
    flat = [r for grp in groups for r in grp.rows]
    rendered = []
    for chunk in _chunks(flat, spec.micro_batch):
        t = _row_tensors(module, chunk, ctx.device)
        with ctx.autocast():
            out = module(
                input_ids=t["input_ids"],
                attention_mask=t["attention_mask"],
                pixel_values=t["pixel_values"],
                masks=t["masks"],
                render_in=t["render_in"],
            )
        rendered.append(out.rendered.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
    images = np.concatenate(rendered)
    scorer = aesthetic_scorer(spec, str(ctx.device)) if task == "auto" else None
    k = 0
    for i, grp in enumerate(groups):
        target = batch["render_tgt"][i].float().permute(1, 2, 0).cpu().numpy()
        for g, row in enumerate(grp.rows):
            parts = {
                "format": format_reward(row.text, task),
                "similarity": similarity_reward(images[k], target, spec.psnr_range),
            }
            if task == "auto":
                parts["aesthetic"] = aesthetic_reward(images[k], scorer)
            grp.parts.append(parts)
            grp.rewards[g] = total_reward(parts, spec)
            k += 1
    return groups


def dapo_step(ctx: StepContext, batch: dict[str, Any]) -> dict[str, float]:
    """Roll out (with dynamic-sampling refills), then `updates_per_batch` clipped token-level steps.

    Sequences go through the model in micro-batches of `micro_batch`; each micro-batch's loss is
    its objective sum divided by the response-token count of the *whole* batch, so accumulated
    gradients equal those of the token-level loss over the batch.
    """
    spec: DAPOSpec = ctx.spec
    task = batch["tasks"][0]
    want = len(batch["prompt_ids"])
    kept: list[Group] = []
    seen: list[Group] = []
    dropped = rounds = 0
    while True:
        groups = rollout(ctx, batch)
        rounds += 1
        seen.extend(groups)
        keep = dynamic_sampling_mask(torch.stack([g.rewards for g in groups]), spec.equal_tol)
        kept.extend(g for g, k in zip(groups, keep.tolist()) if k)
        dropped += int((~keep).sum())
        if len(kept) >= want or rounds > spec.max_resample_rounds:
            break
        batch = ctx.next_batch(task)
    scale = 1.0
    if not kept:
        # nothing to learn this step; still run the update (×0) so DDP ranks stay in lockstep
        kept, scale = seen[:want], 0.0
    kept = kept[:want]
    adv = (group_advantages(torch.stack([g.rewards for g in kept])) * scale).reshape(-1)
    rows = [r for g in kept for r in g.rows]
    chunks = _chunks(rows, spec.micro_batch)
    adv_chunks, offset = [], 0
    for c in chunks:
        adv_chunks.append(adv[offset : offset + len(c)])
        offset += len(c)
    tensors = [_row_tensors(ctx.module, c, ctx.device) for c in chunks]
    n_tokens = max(1, sum(int(t["positions"].sum()) for t in tensors))
    with torch.no_grad(), ctx.autocast():
        old = [token_logprobs(ctx.module, t, spec.temperature) for t in tensors]
    losses, clipped, norms = [], [], []
    for _ in range(max(1, spec.updates_per_batch)):
        total, n_clipped = 0.0, 0
        for j, (t, a, old_j) in enumerate(zip(tensors, adv_chunks, old)):
            sync = contextlib.nullcontext() if j == len(tensors) - 1 else _no_sync(ctx.model)
            with sync:
                with ctx.autocast():
                    logp = token_logprobs(ctx.model, t, spec.temperature)
                a_tok = a.to(ctx.device)[t["row_of_token"]]
                loss, n_clip = token_level_loss(logp, old_j, a_tok, spec.eps_low, spec.eps_high, n_tokens)
                loss.backward()
            total += float(loss.detach())
            n_clipped += n_clip
        norms.append(ctx.apply_gradients())
        losses.append(total)
        clipped.append(n_clipped / n_tokens)
    parts = [p for g in seen for p in g.parts]

    def mean_part(name: str) -> float:
        vals = [p[name] for p in parts if name in p]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "task": task,
        "loss": float(np.mean(losses)),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "reward": float(torch.cat([g.rewards for g in seen]).mean()),
        "r_format": mean_part("format"),
        "r_similarity": mean_part("similarity"),
        "r_aesthetic": mean_part("aesthetic"),
        "kept_groups": len(kept) if scale else 0,
        "dropped_groups": dropped,
        "rounds": rounds,
        "clip_frac": float(np.mean(clipped)),
        "resp_tokens": n_tokens,
        "grad_norm": float(np.mean(norms)),
    }


def _no_sync(model: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
    """DDP's no_sync (gradient all-reduce only on the last micro-batch); a no-op otherwise."""
    fn = getattr(model, "no_sync", None)
    return fn() if callable(fn) else contextlib.nullcontext()


def _roles(spec: DAPOSpec) -> list[str]:
    return ["llm"]


def _tasks(spec: DAPOSpec, available: Sequence[str]) -> list[str]:
    tasks = [t for t in (spec.tasks or available) if t in available]
    if not tasks:
        raise ValueError(f"dapo: no data for tasks {spec.tasks}; found {list(available)}")
    return tasks


STAGE = Stage(name="dapo", roles=_roles, tasks=_tasks, train_step=dapo_step, per_task_batches=True)
