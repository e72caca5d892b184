"""Building a VeraRetouch model from its config (no download: a tiny config is built from scratch,
``pretrained`` backbones are read from a local directory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_core.renderer import RetouchRenderer
from model_core.tokenizer import add_special_tokens, byte_tokenizer, template_corpus
from model_core.vlm import VeraRetouch
from model_core.vlm_config import ModelConfig, RendererSpec


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _build_backbone(
    cfg: ModelConfig, tokenizer: Any, hf_config_dir: Path | None, hf_config: Any = None
) -> nn.Module:
    """The HF backbone: from an HF config (object, or saved in a model dir), a local checkpoint, or a
    fresh config."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    kwargs: dict[str, Any] = {}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if hf_config is None and hf_config_dir is not None:
        hf_config = AutoConfig.from_pretrained(str(hf_config_dir))
    if hf_config is not None:
        return AutoModelForImageTextToText.from_config(hf_config, **kwargs)
    if cfg.pretrained:
        return AutoModelForImageTextToText.from_pretrained(
            cfg.pretrained, dtype=_torch_dtype(cfg.dtype), local_files_only=True, **kwargs
        )
    if cfg.architecture != "fast_vlm":
        raise ValueError(f"architecture {cfg.architecture!r} needs `pretrained` (a local checkpoint dir)")
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration, Qwen2Config, TimmWrapperConfig

    vision = {"architecture": "fastvit_mci3", "do_pooling": True, "global_pool": "avg", **cfg.vision}
    text = {**cfg.text, "vocab_size": len(tokenizer)}
    hf_cfg = FastVlmConfig(
        vision_config=TimmWrapperConfig(**vision),
        text_config=Qwen2Config(**text),
        image_token_index=int(tokenizer.convert_tokens_to_ids(cfg.image_token)),
        **kwargs,
    )
    return FastVlmForConditionalGeneration(hf_cfg)


def _load_tokenizer(cfg: ModelConfig, tokenizer_dir: Path | None) -> Any:
    from transformers import AutoTokenizer

    if tokenizer_dir is not None:
        return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    if cfg.tokenizer == "bytes":
        return byte_tokenizer()
    if cfg.tokenizer == "template-bpe":
        return byte_tokenizer(template_corpus())
    source = cfg.pretrained if cfg.tokenizer == "pretrained" else cfg.tokenizer
    if not source:
        raise ValueError("tokenizer: 'pretrained' needs model.pretrained; use 'bytes' or a directory")
    return AutoTokenizer.from_pretrained(source, local_files_only=True)


def _probe_image_tokens(model: VeraRetouch, size: int) -> int:
    with torch.no_grad():
        dev = next(model.parameters()).device
        dummy = torch.zeros(1, 3, size, size, device=dev, dtype=model.vlm.dtype)
        return int(model.image_features(dummy).shape[1])


def build_model(
    cfg: ModelConfig,
    renderer_spec: RendererSpec,
    seed: int = 0,
    *,
    _hf_config_dir: Path | None = None,
    _tokenizer_dir: Path | None = None,
    _load_renderer: bool = True,
    _hf_config: Any = None,
) -> VeraRetouch:
    """A fresh VeraRetouch: backbone (random or `pretrained`), tokens added, new adaptor, renderer
    (from `renderer_spec.checkpoint` when given). `seed` fixes every random initialisation.
    `_hf_config` (an HF config object) or `_hf_config_dir` fix the backbone's architecture."""
    torch.manual_seed(seed)
    tokenizer = _load_tokenizer(cfg, _tokenizer_dir)
    add_special_tokens(tokenizer, cfg.image_token)
    vlm = _build_backbone(cfg, tokenizer, _hf_config_dir, _hf_config)
    vocab = vlm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > vocab:
        vlm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if _hf_config is not None or (_hf_config_dir is None and cfg.pretrained):
        image_id = int(tokenizer.convert_tokens_to_ids(cfg.image_token))
        vlm.config.image_token_id = image_id
    er_cfg = renderer_spec.resolve()
    if _load_renderer and renderer_spec.checkpoint:
        from model_core.er_io import load_er_checkpoint

        _, renderer, loaded_cfg = load_er_checkpoint(renderer_spec.checkpoint)
        if loaded_cfg.total_latent != er_cfg.total_latent:
            raise ValueError(
                f"renderer checkpoint latent {loaded_cfg.total_latent} != config {er_cfg.total_latent}"
            )
    else:
        renderer = RetouchRenderer(er_cfg)
    model = VeraRetouch(vlm, tokenizer, renderer, cfg, renderer_spec, image_tokens=cfg.image_tokens or 0)
    if not cfg.image_tokens:
        model.image_tokens = _probe_image_tokens(model, cfg.image_size)
    return model.float() if cfg.dtype == "float32" else model
