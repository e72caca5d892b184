"""Configuration of the Retouch Encoder / Renderer and their training run.

One dataclass holds both the architecture and the training recipe, so that a checkpoint's
safetensors metadata (a JSON copy of this object) is enough to rebuild and evaluate it.
Two presets exist: ``paper`` (the published sizes: 512² encoder input, 3 × 896 latents, renderer
widths 128/256/512) and ``cpu`` (a small model that reaches the acceptance bar on 2 CPU cores).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

GROUP_SHORT: tuple[str, str, str] = ("L", "GC", "SC")
"""Short names of the three latent blocks [light, color&temp, colormixer] (paper Table 6)."""


@dataclass(frozen=True)
class ERConfig:
    """Architecture + training recipe of the encoder/renderer pair.

    Architecture fields must match a checkpoint to load it; training fields only matter to
    `model_core.train.er.train_er`.
    """

    name: str = "paper"
    # --- encoder (ResNet-18 topology with CBAM, 6-channel before‖after input) ---
    latent_dim: int = 896
    """Size of each of the three latent blocks (total = 3 × latent_dim)."""
    enc_width: int = 64
    """Channels of the first ResNet stage (64 in ResNet-18; stages use w, 2w, 4w, 8w)."""
    enc_input_size: int = 512
    """Square side the reference pair is resized to before E sees it."""
    cbam_reduction: int = 16
    pair_stats_dim: int = 0
    """Width of the colour-transfer statistics branch (`model_core.pair_stats`) concatenated to the
    pooled CNN features before E's head; 0 = off (the paper and the released encoder)."""
    # --- renderer (per-pixel conditional MLP) ---
    renderer_hidden: tuple[int, ...] = (128, 256, 512)
    norm_before_act: bool = False
    """False = Linear → ReLU → LayerNorm (the official VeraRetouch order); True = Linear → LayerNorm → ReLU."""
    signed_input: bool = True
    """Feed the renderer pixels as 2x-1 (the official inference scales the input image to [-1, 1])."""
    latent_negative_slope: float = 0.0
    """Slope of the activation on z before the injections: 0 = ReLU (the released renderer). A small
    leak keeps a whole latent block from dying: with ReLU, once every unit of a block is negative
    the block gets no gradient ever again (seen with 64-wide blocks: the colour block went dead)."""
    residual_logit: bool = False
    """Add logit(input) to the sigmoid's pre-activation, so a zero residual is the identity map.
    Off in the paper config (the released renderer has no skip); on in the CPU config, where the
    small renderer otherwise spends its capacity re-learning the identity to 40 dB."""
    chunk_pixels: int = 262_144
    """Pixels per renderer chunk for large images (bounds activation memory)."""
    lut_size: int = 33
    # --- training ---
    batch_size: int = 16
    render_size: int = 48
    """Side of the B crop that R renders during training (per-pixel model: small crops suffice)."""
    source_short_edge: int = 256
    """Training photos are downscaled once to this short edge and cached in memory."""
    min_crop_frac: float = 0.5
    """Random crops cover between this fraction and all of the short edge."""
    lr: float = 2e-3
    min_lr_frac: float = 0.02
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    max_steps: int = 6000
    grad_clip: float = 1.0
    mask_keep_prob: float = 0.75
    """Each latent block is kept with this probability; a dropped block zeroes that group's params in R's target."""
    chroma_loss_weight: float = 0.0
    """0 = plain L1 on RGB (the paper). >0 = L1 on an opponent transform of the error, luma term
    weight 1 and the two chroma terms this weight: colour errors then get their own gradient sign
    instead of being drowned by the (larger) luma errors of light edits, so colour edits are learnt
    early rather than after the light ones."""
    oracle_steps: int = 0
    """Two-stage recipe (see model_core.train.er): first this many steps train R from a latent
    computed from the true parameters (no encoder), then E learns to produce that latent. 0 = plain
    end-to-end training (the paper)."""
    latent_match_weight: float = 1.0
    """Encoder stage: weight of the MSE between E's latent and the oracle latent."""
    oracle_path_weight: float = 1.0
    """Encoder stage: weight of R's loss on the oracle latent (keeps R faithful while E catches up)."""
    checkpoint_every: int = 500
    log_every: int = 50
    num_threads: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_latent(self) -> int:
        """Width of the concatenated latent z = [z_l, z_gc, z_sc]."""
        return 3 * self.latent_dim

    def to_json(self) -> str:
        """Compact JSON (stored in safetensors metadata, which only holds strings)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = True) -> ERConfig:
        """Build from a dict. Unknown keys are an error (a typo must never silently fall back to a
        default) unless `strict=False`, used when loading weights written by another version:
        then they are dropped with a warning (only training fields ever come and go)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown and strict:
            raise ValueError(f"unknown ERConfig keys: {unknown}")
        if unknown:
            warnings.warn(f"ignoring unknown ERConfig keys {unknown}", stacklevel=2)
        clean = {k: v for k, v in data.items() if k in known}
        if "renderer_hidden" in clean:
            clean["renderer_hidden"] = tuple(int(h) for h in clean["renderer_hidden"])
        return cls(**clean)

    @classmethod
    def from_json(cls, text: str, strict: bool = True) -> ERConfig:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text), strict=strict)

    def with_(self, **changes: Any) -> ERConfig:
        """Copy with some fields changed (frozen dataclass)."""
        return replace(self, **changes)


PAPER = ERConfig()
"""The published configuration (docs/design.md section 6, the paper's sizes); meant for GPUs."""

CPU = ERConfig(
    name="cpu",
    latent_dim=64,
    enc_width=16,
    enc_input_size=64,
    cbam_reduction=8,
    pair_stats_dim=128,
    renderer_hidden=(64, 128, 128),
    residual_logit=True,
    latent_negative_slope=0.1,
    chroma_loss_weight=3.0,
    batch_size=32,
    render_size=16,
    source_short_edge=192,
    lr=2e-3,
    warmup_steps=300,
    oracle_steps=5000,
    max_steps=20000,
    lut_size=25,
    checkpoint_every=500,
    log_every=100,
    num_threads=1,
)
"""Small configuration trained on this machine's CPU for the shipped checkpoint."""

TINY = ERConfig(
    name="tiny",
    latent_dim=8,
    enc_width=4,
    enc_input_size=32,
    cbam_reduction=2,
    renderer_hidden=(16, 16, 16),
    batch_size=4,
    render_size=16,
    source_short_edge=64,
    lr=3e-3,
    warmup_steps=2,
    max_steps=20,
    checkpoint_every=10,
    log_every=5,
    num_threads=1,
)
"""Test-sized configuration (a training step takes milliseconds)."""

PRESETS: dict[str, ERConfig] = {"paper": PAPER, "cpu": CPU, "tiny": TINY}


def get_config(name_or_config: str | ERConfig) -> ERConfig:
    """Resolve a preset name (paper / cpu / tiny) or pass a config through."""
    if isinstance(name_or_config, ERConfig):
        return name_or_config
    try:
        return PRESETS[name_or_config]
    except KeyError:
        raise ValueError(f"unknown ER config {name_or_config!r}; expected one of {sorted(PRESETS)}") from None
