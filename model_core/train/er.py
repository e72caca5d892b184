"""Training of the Retouch Encoder E and Renderer R from the develop engine (paper Sec. 3.1).

Each step, per sample: draw a protocol and Gaussian parameters (`aether_data.sampling`), pick two
different photos A and B (random crops, flips, colour augmentation), and apply the same edit with
the engine. E sees (A, edit(A)); R must reproduce edit'(B) from B, where edit' zeroes the
parameters of every group whose latent block was randomly masked. So a masked block must mean
"leave this group alone" and each block must carry only its own group: this is what makes the
latents disentangled (paper Table 6). Loss: L1. Optimiser: AdamW, linear warmup + cosine decay.

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

from aether_data.params import GROUPS, PARAM_NAMES, SPECS
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

TRAIN_FORMAT = "aether-er-train/1"
LAST = "last.safetensors"
FINAL = "model.safetensors"


def lr_at(step: int, config: ERConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_frac` at `config.max_steps`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    t = min(1.0, (step - config.warmup_steps) / span)
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


class ParamHead(nn.Module):
    """Training-only probe: block g of z → the normalised parameters of group g (linear)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.heads = nn.ModuleList(nn.Linear(latent_dim, len(GROUP_INDEX[g])) for g in GROUPS)
        order = np.concatenate([GROUP_INDEX[g] for g in GROUPS])
        self.register_buffer("order", torch.from_numpy(np.argsort(order)), persistent=False)
        # per-parameter spread of the sampler (std of the active value × sqrt(p_active)), so that
        # every parameter weighs the same in the probe loss instead of exposure dominating it
        stats = load_operator_stats()
        scale = [stats[n].std / SPECS[n].scale * math.sqrt(stats[n].p_active) for n in PARAM_NAMES]
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

    def loss(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Mean squared error in units of each parameter's sampling spread."""
        return torch.mean((self(z) - params / self.scale) ** 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        d = self.latent_dim
        parts = [head(z[:, i * d : (i + 1) * d]) for i, head in enumerate(self.heads)]
        return torch.cat(parts, dim=1)[:, self.order]


class PairSampler:
    """Draws a training batch: reference pairs for E, render crops and targets for R, masks."""

    def __init__(self, pool: ImagePool, config: ERConfig) -> None:
        self.pool = pool
        self.config = config
        self.stats = load_operator_stats()

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch (all randomness from `rng`)."""
        c = self.config
        a_imgs, b_imgs, full, target, masks = [], [], [], [], []
        for _ in range(c.batch_size):
            _, params = sample_params(rng, stats=self.stats)
            vec = param_vector(params)
            m = (rng.random(3) < c.mask_keep_prob).astype(np.int64)
            ia, ib = self.pool.two_indices(rng)
            a_imgs.append(augment_colours(rng, self.pool.crop(rng, ia, c.enc_input_size, c.min_crop_frac)))
            b_imgs.append(augment_colours(rng, self.pool.crop(rng, ib, c.render_size, c.min_crop_frac)))
            full.append(vec)
            target.append(masked_vector(vec, m))
            masks.append(m)
        a = to_tensor(a_imgs)
        b = to_tensor(b_imgs)
        return {
            "a": a,
            "a_edit": teacher_edit(a, np.stack(full)),
            "b": b,
            "b_edit": teacher_edit(b, np.stack(target)),
            "masks": torch.from_numpy(np.stack(masks).astype(np.float32)),
            "params": torch.from_numpy(np.stack(full)),
        }


OPPONENT = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.0, -0.5], [-0.25, 0.5, -0.25]])
"""Rows: luma (mean of R, G, B), red–blue and green–magenta opponent axes."""


LOG_MSE_EPS = 1e-5
"""Floor of the per-sample MSE in the log loss (≈ 50 dB: no gain from polishing beyond that)."""


def image_loss(
    out: torch.Tensor, target: torch.Tensor, chroma_weight: float, kind: str = "l1"
) -> torch.Tensor:
    """Image loss between (B,3,H,W) tensors.

    ``l1``: L1 on RGB, or (chroma_weight > 0) L1 on opponent channels with chroma weighted up.
    ``log_mse``: mean over samples of log(MSE_i + eps) on the same (weighted) channels.
    """
    diff = out - target
    if chroma_weight > 0:
        diff = torch.einsum("ij,bjhw->bihw", OPPONENT.to(out.dtype), diff)
        weights = (
            torch.tensor([1.0, chroma_weight, chroma_weight], dtype=out.dtype)
            * 3.0
            / (1.0 + 2.0 * chroma_weight)
        )
    else:
        weights = torch.ones(3, dtype=out.dtype)
    if kind == "l1":
        return (diff.abs().mean(dim=(0, 2, 3)) * weights).sum() / 3.0
    if kind == "log_mse":
        mse = (diff.pow(2).mean(dim=(2, 3)) * weights).sum(dim=1) / 3.0
        return torch.log(mse + LOG_MSE_EPS).mean()
    raise ValueError(f"unknown loss_kind {kind!r}")


def er_loss(
    encoder: RetouchEncoder,
    renderer: RetouchRenderer,
    batch: dict[str, torch.Tensor],
    aux: ParamHead | None = None,
    aux_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(total, image L1): L1 between R(B; mask ⊙ E(A, edit(A))) and the teacher's masked edit of B,
    plus `aux_weight` × the parameter probe's loss on the unmasked latent."""
    z = encoder(batch["a"] * 2.0 - 1.0, batch["a_edit"] * 2.0 - 1.0)
    out = renderer(batch["b"], apply_masks(z, batch["masks"]))
    image = image_loss(out, batch["b_edit"], encoder.config.chroma_loss_weight, encoder.config.loss_kind)
    if aux is None or aux_weight <= 0:
        return image, image
    return image + aux_weight * aux.loss(z, batch["params"]), image


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    """Optimizer state → flat tensors + JSON of the param groups (safetensors holds no objects)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for name, val in st.items():
            t = val if torch.is_tensor(val) else torch.tensor(val)
            tensors[f"optim.{idx}.{name}"] = t.detach().cpu().contiguous().clone()
    return tensors, json.dumps(sd["param_groups"])


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups_json: str) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, val in tensors.items():
        if not key.startswith("optim."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": json.loads(groups_json)})


def save_train_checkpoint(
    path: Path,
    encoder: RetouchEncoder,
    renderer: RetouchRenderer,
    opt: torch.optim.Optimizer,
    config: ERConfig,
    step: int,
    rng: np.random.Generator,
    seed: int,
    extra: dict[str, Any],
    aux: ParamHead | None = None,
) -> Path:
    """Full resumable state in one safetensors file: weights, optimiser, step, RNG states."""
    tensors = model_tensors(encoder, renderer)
    if aux is not None:
        tensors.update({"aux." + k: v.detach().contiguous().clone() for k, v in aux.state_dict().items()})
    opt_t, groups = _optimizer_tensors(opt)
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


def train_er(
    config: ERConfig | str = "cpu",
    images: Sequence[Path | str] | None = None,
    out_dir: str | Path = "runs/er",
    max_steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    log: Callable[[str], None] | None = print,
    image_arrays: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train E and R; returns {"step", "losses", "start_step", "wall_time_s", "checkpoint", "model"}.

    `config.max_steps` fixes the learning-rate schedule; `max_steps` (default: the same) is where this
    call stops, so a run can be split into pieces (`resume=True` continues from
    ``out_dir/last.safetensors``). `images=None` uses the training split of the bundled photos;
    `image_arrays` (HxWx3 float arrays) bypasses files, for tests.
    """
    cfg = get_config(config)
    stop = int(max_steps if max_steps is not None else cfg.max_steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(2, cfg.num_threads)))
    torch.manual_seed(seed)
    encoder, renderer = build_er(cfg)
    aux = ParamHead(cfg.latent_dim) if cfg.aux_param_weight > 0 else None
    params = list(encoder.parameters()) + list(renderer.parameters())
    if aux is not None:
        params += list(aux.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(seed)
    step = 0
    last = out / LAST
    if resume and last.exists():
        tensors, meta = read_safetensors(last)
        saved_cfg = ERConfig.from_json(meta["config"])
        if saved_cfg != cfg:
            raise ValueError(
                f"{last}: checkpoint config differs from the requested config; refusing to resume"
            )
        load_state_strict(encoder, split_prefixed(tensors, "encoder."), f"{last} (encoder)")
        load_state_strict(renderer, split_prefixed(tensors, "renderer."), f"{last} (renderer)")
        if aux is not None:
            load_state_strict(aux, split_prefixed(tensors, "aux."), f"{last} (aux)")
        _load_optimizer(opt, tensors, meta["optim.param_groups"])
        rng.bit_generator.state = json.loads(meta["rng.numpy"])
        torch.set_rng_state(tensors["rng.torch"])
        step = int(meta["step"])
        if log:
            log(f"resumed from {last} at step {step}")
    sources = list(image_arrays) if image_arrays is not None else _resolve_images(images)
    pool = ImagePool(sources, cfg.source_short_edge)
    sampler = PairSampler(pool, cfg)
    encoder.train()
    renderer.train()
    start_step = step
    losses: list[float] = []
    t0 = time.perf_counter()
    window: list[float] = []
    log_path = out / "train_log.jsonl"
    while step < stop:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = sampler.draw(rng)
        loss, image_loss = er_loss(encoder, renderer, batch, aux, cfg.aux_param_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        step += 1
        value = float(image_loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {step}")
        losses.append(value)
        window.append(value)
        if step % cfg.log_every == 0 or step == stop:
            elapsed = time.perf_counter() - t0
            rec = {"step": step, "loss": float(np.mean(window)), "lr": lr, "elapsed_s": round(elapsed, 1)}
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if log:
                log(f"step {step}/{stop} loss {rec['loss']:.5f} lr {lr:.2e} {elapsed:.0f}s")
            window = []
        if step % cfg.checkpoint_every == 0 or step == stop:
            save_train_checkpoint(
                last, encoder, renderer, opt, cfg, step, rng, seed, {"images": len(pool)}, aux
            )
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
