"""Configuration of the VeraRetouch model: the VLM backbone (`ModelConfig`), the attached renderer
(`RendererSpec`) and decoding defaults (`GenerationSpec`). Stored in checkpoints and model dirs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_core.er_config import ERConfig, get_config


class ModelConfig(BaseModel):
    """The VLM side: backbone, tokenizer, image preprocessing, adaptor width."""

    model_config = ConfigDict(extra="forbid")

    architecture: str = "fast_vlm"
    """transformers model type of the backbone; only ``fast_vlm`` can be built without `pretrained`."""
    pretrained: str | None = None
    """Local directory of an HF image-text-to-text checkpoint (e.g. FastVLM-0.5B); None = random init
    from `vision` / `text` (never downloads)."""
    vision: dict[str, Any] = Field(default_factory=dict)
    """TimmWrapperConfig kwargs of the vision tower (random-init builds only)."""
    text: dict[str, Any] = Field(default_factory=dict)
    """Qwen2Config kwargs of the LLM (random-init builds only; vocab_size is set from the tokenizer)."""
    tokenizer: str = "pretrained"
    """``pretrained`` (from `pretrained`), a tokenizer dir, or a built-in one for random models:
    ``bytes`` (byte-level) or ``template-bpe`` (1k-token BPE fitted on template-annotator text)."""
    image_token: str = "<image>"
    image_tokens: int | None = None
    """Visual tokens per image; None = probe the vision tower once at build time."""
    image_size: int = 1024
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    system_prompt: str = "You are a helpful assistant."
    max_length: int = 4096
    """Longest prompt+completion in tokens; longer samples are skipped (never truncated: the retouch
    tokens are at the end)."""
    adaptor_bottleneck: int | None = None
    """Middle width of the adaptor; None = 3·hidden/2 (1344 for FastVLM-0.5B)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str | None = "sdpa"
    recipe: Literal["aether", "official"] = "aether"
    """Inference recipe. ``aether``: greedy decoding, masks from the completion's plans, float
    pad-and-resize vision input, a baked LUT for large photos. ``official`` (set when the official
    release folder is loaded, `model_core.official_vlm`): what the official ``inference.py`` does:
    sampling (T 0.2, top-p 0.8), masks all on for auto/style and from the parameters for param, the
    photo's short edge resized to 512 (LANCZOS) before the square pad, a per-pixel render at full
    resolution."""


class RendererSpec(BaseModel):
    """Which Retouch Renderer to attach and at what size images are rendered during training."""

    model_config = ConfigDict(extra="forbid")

    er_config: str | dict[str, Any] = "paper"
    """ERConfig preset name (paper / cpu / tiny) or a dict of ERConfig fields."""
    checkpoint: str | None = None
    """E/R safetensors (from `aether train --stage er`); None = random init (tests only)."""
    render_size: int = 256
    """Side of the (input, target) pair used by the L1 image loss and rewards (per-pixel model: small
    images carry the colour mapping)."""

    def resolve(self) -> ERConfig:
        """The ERConfig this spec names."""
        if isinstance(self.er_config, dict):
            return ERConfig.from_dict(self.er_config)
        return get_config(self.er_config)


class GenerationSpec(BaseModel):
    """Decoding defaults for inference / evaluation."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = 1024
    temperature: float = 0.0
    """0 = greedy."""
    top_p: float = 1.0
