"""Building, saving and loading VeraRetouch models.

A trained model is a self-contained directory (`save_model` / `load_model`): safetensors weights, the
HF backbone config, the tokenizer, and our config, so nothing is fetched at inference. ``fast_vlm``
backbones are built from a config without any download (the ``tiny`` test config) or loaded from a
local checkpoint directory (``pretrained``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from aether_data.io.atomic import AtomicFile
from model_core.renderer import RetouchRenderer
from model_core.tokenizer import add_special_tokens, byte_tokenizer, template_corpus
from model_core.vlm import VeraRetouch
from model_core.vlm_config import ModelConfig, RendererSpec

MODEL_FORMAT = "aether-veraretouch/1"
WEIGHTS_FILE = "model.safetensors"


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


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of every tensor (tied weights are copied, so safetensors accepts them)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def atomic_save_file(tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> Path:
    """safetensors write via temp file + rename: a crash never leaves a torn file."""
    with AtomicFile(path) as f:
        save_file(dict(tensors), str(f.path), metadata=dict(metadata))
    return path


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and metadata of a safetensors file."""
    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out, meta


def save_model(model: VeraRetouch, directory: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a self-contained model dir: weights, HF backbone config, tokenizer, our config."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": MODEL_FORMAT,
        "model": model.config.model_dump_json(),
        "renderer": model.renderer_spec.model_dump_json(),
        "er_config": model.renderer.config.to_json(),
        "image_tokens": str(model.image_tokens),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    model.vlm.config.save_pretrained(str(d / "vlm"))
    model.tokenizer.save_pretrained(str(d / "tokenizer"))
    return atomic_save_file(state_tensors(model), d / WEIGHTS_FILE, meta)


def resolve_model_dir(path: str | Path) -> Path:
    """Accept a model dir, a training out dir (whose final model is in ``model/``), or the official
    VeraRetouch release folder (``config.json`` + single-file or sharded weights)."""
    from model_core.official_vlm import is_official_model_dir

    p = Path(path)
    for cand in (p, p / "model"):
        if (cand / WEIGHTS_FILE).is_file() or is_official_model_dir(cand):
            return cand
    raise FileNotFoundError(
        f"{p}: no {WEIGHTS_FILE} (expected a model dir, a training out dir or the official VeraRetouch folder)"
    )


def weights_stamp(directory: Path) -> float:
    """Latest modification time of a model dir's weights and config (a cache key: retrained or
    replaced weights are reloaded)."""
    names = (WEIGHTS_FILE, "config.json", "model.safetensors.index.json", "pytorch_model.bin")
    times = [(directory / n).stat().st_mtime for n in names if (directory / n).is_file()]
    return max(times, default=0.0)


def load_state_strict(model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict load with an error naming missing / unexpected / mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = sorted(k for k in set(own) & set(tensors) if tuple(own[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or bad:
        raise ValueError(
            f"{what}: missing {missing[:8]}, unexpected {unexpected[:8]}, shape mismatch {bad[:8]}"
        )
    model.load_state_dict(dict(tensors), strict=True)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VeraRetouch:
    """Rebuild a saved model (no network, no `pretrained` needed) in eval mode; the official release
    folder is loaded through `model_core.official_vlm`."""
    from model_core.official_vlm import is_official_model_dir, load_official_model

    d = resolve_model_dir(path)
    if is_official_model_dir(d):
        return load_official_model(d, device=device)
    tensors, meta = read_tensors(d / WEIGHTS_FILE)
    if meta.get("format") != MODEL_FORMAT:
        raise ValueError(f"{d}: not a VeraRetouch model (format {meta.get('format')!r})")
    cfg = ModelConfig.model_validate_json(meta["model"])
    spec = RendererSpec.model_validate_json(meta["renderer"])
    spec = spec.model_copy(update={"er_config": json.loads(meta["er_config"]), "checkpoint": None})
    cfg = cfg.model_copy(update={"image_tokens": int(meta["image_tokens"])})
    model = build_model(
        cfg, spec, _hf_config_dir=d / "vlm", _tokenizer_dir=d / "tokenizer", _load_renderer=False
    )
    load_state_strict(model, tensors, str(d / WEIGHTS_FILE))
    model.source_dir = d
    return model.to(device).eval()


def model_metadata(path: str | Path) -> dict[str, str]:
    """The safetensors metadata of a saved model (stage, step, config JSON, ...)."""
    d = resolve_model_dir(path)
    with safe_open(str(d / WEIGHTS_FILE), framework="pt", device="cpu") as f:
        return dict(f.metadata() or {})
