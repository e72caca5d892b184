"""Training of the Retouch Encoder E and Renderer R from the develop engine (paper Sec. 3.1).

Each step, per sample: draw a protocol and Gaussian parameters (`aether_data.sampling`), pick two
different photos A and B (random crops, flips, colour augmentation), and apply the same edit with
the engine. E sees (A, edit(A)); R must reproduce edit'(B) from B, where edit' zeroes the
parameters of every group whose latent block was randomly masked. So a masked block must mean
"leave this group alone" and each block must carry only its own group: this is what makes the
latents disentangled (paper Table 6). Loss: L1. Optimiser: AdamW, linear warmup + cosine decay.

Optional two-stage recipe (``oracle_steps > 0``, used by the CPU config). Trained jointly from
scratch, E and R deadlock: R only uses what E already encodes and E only learns what R uses; on a
CPU budget this left every parameter but exposure unencoded after 12k steps. So:

1. *oracle stage* (``oracle_steps``): R learns from a latent computed from the true parameters by
   a block-diagonal linear embedding (light params → z_l, colour → z_gc, mixer → z_sc), no encoder;
2. *encoder stage* (the rest): E learns to produce that latent (MSE, ``latent_match_weight``)
   and, end to end, R(B; E(A, edit(A))) ≈ edit(B); R keeps training on both its oracle-latent
   and its encoder-latent renders.

Everything random comes from one numpy generator whose state is checkpointed together with the
model, the optimiser and the step, in a single safetensors file; a resumed run therefore
continues the uninterrupted run's loss trajectory exactly (same thread count).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aether_data.params import GROUPS
from aether_data.sampling import load_operator_stats, sample_params
from model_core.encoder import RetouchEncoder, apply_masks
from model_core.er_config import ERConfig, get_config
from model_core.er_data import (
    GROUP_INDEX,
    ImagePool,
    default_photos,
    masked_vector,
    param_vector,
    split_photos,
    to_tensor,
)
from model_core.er_io import (
    atomic_save,
    build_er,
    load_state_strict,
    model_tensors,
    read_safetensors,
    save_er_weights,
    split_prefixed,
)
from model_core.renderer import RetouchRenderer
from model_core.teacher import teacher_edit
from model_core.train.optim_state import load_optimizer_state, optimizer_tensors

TRAIN_FORMAT = "aether-er-train/2"
LAST = "last.safetensors"
FINAL = "model.safetensors"


def lr_at(step: int, config: ERConfig) -> float:
    """Linear warmup then cosine decay to `lr * min_lr_frac`, restarted at the encoder stage."""
    start, end = (
        (0, config.oracle_steps) if step < config.oracle_steps else (config.oracle_steps, config.max_steps)
    )
    local = step - start
    if local < config.warmup_steps:
        return config.lr * (local + 1) / config.warmup_steps
    span = max(1, end - start - config.warmup_steps)
    t = min(1.0, (local - config.warmup_steps) / span)
    return config.lr * (config.min_lr_frac + (1.0 - config.min_lr_frac) * 0.5 * (1.0 + math.cos(math.pi * t)))


def augment_colours(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Source-colour augmentation: RGB permutation, saturation and gamma jitter.

    The renderer is a colour map, so what it learns is bounded by the colours it sees; the
    bundled photos are few, and permuting channels turns orange retinas into blue skies.
    """
    out = img
    if rng.random() < 0.5:
        out = out[..., rng.permutation(3)]
    if rng.random() < 0.5:
        y = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        out = y[..., None] + (out - y[..., None]) * np.float32(rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        out = np.clip(out, 0.0, 1.0) ** np.float32(2.0 ** rng.uniform(-0.5, 0.5))
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


class ParamEmbedding(nn.Module):
    """Oracle latent: block-diagonal linear map params → z (group g's parameters → block g only).

    No bias, so a group whose parameters are all zero has a zero block, exactly like a masked one.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(len(GROUP_INDEX[g]), latent_dim, bias=False) for g in GROUPS)
        for g in GROUPS:
            self.register_buffer(f"index_{g}", torch.from_numpy(GROUP_INDEX[g]), persistent=False)

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        """(B, 38) normalised parameters → (B, 3·d)."""
        return torch.cat(
            [lin(params[:, getattr(self, f"index_{g}")]) for lin, g in zip(self.blocks, GROUPS, strict=True)],
            dim=1,
        )


class PairSampler:
    """Draws a training batch: reference pairs for E, render crops and targets for R, masks."""

    def __init__(self, pool: ImagePool, config: ERConfig) -> None:
        self.pool = pool
        self.config = config
        self.stats = load_operator_stats()

    def draw(
        self, rng: np.random.Generator, with_reference: bool = True, device: torch.device | None = None
    ) -> dict[str, torch.Tensor]:
        """One batch (all randomness from `rng`); `with_reference=False` skips E's pair (oracle stage).

        Crops are cut on the CPU; the teacher renders on `device` (the engine is plain torch), so a
        GPU run does not wait on CPU renders of 512² reference pairs."""
        c = self.config
        a_imgs, b_imgs, full, target, masks = [], [], [], [], []
        for _ in range(c.batch_size):
            _, params = sample_params(rng, stats=self.stats)
            vec = param_vector(params)
            m = (rng.random(3) < c.mask_keep_prob).astype(np.int64)
            ia, ib = self.pool.two_indices(rng)
            if with_reference:
                a_imgs.append(
                    augment_colours(rng, self.pool.crop(rng, ia, c.enc_input_size, c.min_crop_frac))
                )
            b_imgs.append(augment_colours(rng, self.pool.crop(rng, ib, c.render_size, c.min_crop_frac)))
            full.append(vec)
            target.append(masked_vector(vec, m))
            masks.append(m)
        dev = device or torch.device("cpu")
        b = to_tensor(b_imgs).to(dev)
        full_t = torch.from_numpy(np.stack(full)).to(dev)
        batch = {
            "b": b,
            "b_edit": teacher_edit(b, torch.from_numpy(np.stack(target)).to(dev)),
            "masks": torch.from_numpy(np.stack(masks).astype(np.float32)).to(dev),
            "params": full_t,
        }
        if with_reference:
            a = to_tensor(a_imgs).to(dev)
            batch["a"] = a
            batch["a_edit"] = teacher_edit(a, full_t)
        return batch


OPPONENT = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]])
"""Rows: luma (mean of R, G, B), red–blue and green–magenta opponent axes."""


def image_loss(out: torch.Tensor, target: torch.Tensor, chroma_weight: float = 0.0) -> torch.Tensor:
    """L1 on RGB, or (chroma_weight > 0) mean L1 on opponent channels (luma, red–blue, green–magenta)
    weighted 3/(1+2w), 3w/(1+2w), 3w/(1+2w): chroma errors count w times as much as luma errors."""
    diff = out - target
    if chroma_weight <= 0:
        return diff.abs().mean()
    per_channel = (
        torch.einsum("ij,bjhw->bihw", OPPONENT.to(dtype=out.dtype, device=out.device), diff)
        .abs()
        .mean(dim=(0, 2, 3))
    )
    return (
        (per_channel[0] + chroma_weight * (per_channel[1] + per_channel[2]))
        * 3.0
        / (1.0 + 2.0 * chroma_weight)
    )


def er_loss(
    encoder: RetouchEncoder,
    renderer: RetouchRenderer,
    batch: dict[str, torch.Tensor],
    oracle: ParamEmbedding | None = None,
    stage: str = "joint",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, image L1 of the encoder path, or of the oracle path in the oracle stage).

    ``joint``: L1(R(B; mask ⊙ E(A, edit(A))), edit'(B)) (the paper's objective).
    ``oracle``: L1(R(B; mask ⊙ emb(θ)), edit'(B)).
    ``encoder``: joint + oracle-path weight × oracle term + latent weight × ‖E(...) − emb(θ)‖².
    """
    cfg = renderer.config
    cw = cfg.chroma_loss_weight
    if stage == "oracle":
        assert oracle is not None
        z_star = apply_masks(oracle(batch["params"]), batch["masks"])
        loss = image_loss(renderer(batch["b"], z_star), batch["b_edit"], cw)
        return loss, loss
    z = encoder(batch["a"] * 2.0 - 1.0, batch["a_edit"] * 2.0 - 1.0)
    image = image_loss(renderer(batch["b"], apply_masks(z, batch["masks"])), batch["b_edit"], cw)
    if stage == "joint" or oracle is None:
        return image, image
    with torch.no_grad():
        target = oracle(batch["params"])
    total = image + cfg.latent_match_weight * torch.mean((z - target) ** 2)
    if cfg.oracle_path_weight > 0:
        oracle_out = renderer(batch["b"], apply_masks(target, batch["masks"]))
        total = total + cfg.oracle_path_weight * image_loss(oracle_out, batch["b_edit"], cw)
    return total, image


def save_train_checkpoint(
    path: Path,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    config: ERConfig,
    step: int,
    rng: np.random.Generator,
    seed: int,
    extra: dict[str, Any],
) -> Path:
    """Full resumable state in one safetensors file: weights, optimiser, step, RNG states."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().cpu().contiguous().clone()
    opt_t, groups = optimizer_tensors(opt)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state().clone()
    meta = {
        "format": TRAIN_FORMAT,
        "config": config.to_json(),
        "step": str(step),
        "seed": str(seed),
        "rng.numpy": json.dumps(rng.bit_generator.state),
        "optim.param_groups": groups,
        "extra": json.dumps(extra, sort_keys=True),
    }
    return atomic_save(tensors, path, meta)


def _resolve_images(images: Sequence[Path | str] | None) -> list[Path]:
    if images is None:
        train, _ = split_photos(default_photos())
        if not train:
            raise FileNotFoundError("no bundled photos found in aether_data/data/photos; pass images=")
        return train
    return [Path(p) for p in images]


def _resume(
    last: Path,
    cfg: ERConfig,
    modules: dict[str, nn.Module],
    opt: torch.optim.Optimizer,
    rng: np.random.Generator,
    log: Callable[[str], None] | None,
) -> int:
    """Restore weights, optimizer, RNGs from ``last``; returns its step (refuses another config)."""
    tensors, meta = read_safetensors(last)
    saved_cfg = ERConfig.from_json(meta["config"])
    if saved_cfg != cfg:
        raise ValueError(f"{last}: checkpoint config differs from the requested config; refusing to resume")
    for prefix, module in modules.items():
        load_state_strict(module, split_prefixed(tensors, prefix + "."), f"{last} ({prefix})")
    load_optimizer_state(opt, tensors, meta["optim.param_groups"])
    rng.bit_generator.state = json.loads(meta["rng.numpy"])
    torch.set_rng_state(tensors["rng.torch"])
    step = int(meta["step"])
    if log:
        log(f"resumed from {last} at step {step}")
    return step


def _train_step(
    encoder: nn.Module,
    renderer: nn.Module,
    oracle: ParamEmbedding | None,
    opt: torch.optim.Optimizer,
    params: list[nn.Parameter],
    sampler: PairSampler,
    rng: np.random.Generator,
    dev: torch.device,
    cfg: ERConfig,
    stage: str,
    lr: float,
) -> float:
    """One optimizer step at ``lr``; returns the image L1."""
    for g in opt.param_groups:
        g["lr"] = lr
    batch = sampler.draw(rng, with_reference=stage != "oracle", device=dev)
    loss, image = er_loss(encoder, renderer, batch, oracle, stage)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return float(image.detach())


def _log_window(
    log_path: Path,
    step: int,
    stop: int,
    stage: str,
    window: list[float],
    lr: float,
    elapsed: float,
    log: Callable[[str], None] | None,
) -> None:
    """Append the window's mean loss to train_log.jsonl (and print it)."""
    rec = {
        "step": step,
        "stage": stage,
        "loss": float(np.mean(window)),
        "lr": lr,
        "elapsed_s": round(elapsed, 1),
    }
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")
    if log:
        log(f"step {step}/{stop} [{stage}] loss {rec['loss']:.5f} lr {lr:.2e} {elapsed:.0f}s")


def train_er(
    config: ERConfig | str = "cpu",
    images: Sequence[Path | str] | None = None,
    out_dir: str | Path = "runs/er",
    max_steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    log: Callable[[str], None] | None = print,
    image_arrays: Sequence[np.ndarray] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train E and R; returns {"step", "losses", "start_step", "wall_time_s", "checkpoint", "model"}.

    `config.max_steps` fixes the learning-rate schedule; `max_steps` (default: the same) is where this
    call stops, so a run can be split into pieces (`resume=True` continues from
    ``out_dir/last.safetensors``). `images=None` uses the training split of the bundled photos;
    `image_arrays` (HxWx3 float arrays) bypasses files, for tests. ``losses`` are the per-step
    image L1 values (oracle path during the oracle stage, encoder path afterwards). `device`
    (default CPU) runs the models and the teacher there, e.g. ``"cuda"`` for the paper config;
    checkpoints are always written from CPU copies, so a GPU run resumes on a CPU and vice versa.
    """
    cfg = get_config(config)
    stop = int(max_steps if max_steps is not None else cfg.max_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, cfg.num_threads)))
    torch.manual_seed(seed)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    encoder, renderer = build_er(cfg)
    modules: dict[str, nn.Module] = {"encoder": encoder, "renderer": renderer}
    oracle = ParamEmbedding(cfg.latent_dim) if cfg.oracle_steps > 0 else None
    if oracle is not None:
        modules["oracle"] = oracle
    for m in modules.values():
        m.to(dev)
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    last = out / LAST
    step = _resume(last, cfg, modules, opt, rng, log) if resume and last.exists() else 0
    sources = list(image_arrays) if image_arrays is not None else _resolve_images(images)
    pool = ImagePool(sources, cfg.source_short_edge)
    sampler = PairSampler(pool, cfg)
    for m in modules.values():
        m.train()
    start_step = step
    losses: list[float] = []
    t0 = time.perf_counter()
    window: list[float] = []
    log_path = out / "train_log.jsonl"
    while step < stop:
        stage = "joint" if oracle is None else ("oracle" if step < cfg.oracle_steps else "encoder")
        lr = lr_at(step, cfg)
        value = _train_step(encoder, renderer, oracle, opt, params, sampler, rng, dev, cfg, stage, lr)
        step += 1
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step}")
        losses.append(value)
        window.append(value)
        if step % cfg.log_every == 0 or step == stop:
            _log_window(log_path, step, stop, stage, window, lr, time.perf_counter() - t0, log)
            window = []
        if step % cfg.checkpoint_every == 0 or step == stop:
            save_train_checkpoint(last, modules, opt, cfg, step, rng, seed, {"images": len(pool)})
    wall = time.perf_counter() - t0
    encoder.eval()
    renderer.eval()
    final = save_er_weights(
        out / FINAL, encoder, renderer, cfg, {"step": step, "seed": seed, "train_images": len(pool)}
    )
    return {
        "step": step,
        "start_step": start_step,
        "losses": losses,
        "wall_time_s": wall,
        "checkpoint": str(last),
        "model": str(final),
    }


__all__ = ["PairSampler", "ParamEmbedding", "er_loss", "image_loss", "lr_at", "model_tensors", "train_er"]
