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
from model_core.model_build import build_model
from model_core.vlm import VeraRetouch
from model_core.vlm_config import ModelConfig, RendererSpec

MODEL_FORMAT = "aether-veraretouch/1"
WEIGHTS_FILE = "model.safetensors"


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
