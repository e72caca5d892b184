"""Load the official VeraRetouch release folder (LLaVA-FastViTHD layout) as our `VeraRetouch`.

Why: users hold the official weights (``Gyh68/VeraRetouch``, the ``--model-path`` of the official
``inference.py``), and ``aether retouch --model DIR`` should run them without the official code.
The folder is a Hugging Face ``from_pretrained`` folder of ``VeraRetouchForCausalLLM_Unified``
(``config.json`` with ``model_type`` ``llava_qwen2``, ``model.safetensors`` or shards with
``model.safetensors.index.json``, slow Qwen2 tokenizer files). Its parts map onto ours by renaming
keys only:

========================================================  ==================================================
official key                                              ours
========================================================  ==================================================
model.vision_tower.vision_tower.model.* (FastViTHD MCi)   vlm.model.vision_tower.timm_model.* (`_vision_key`)
model.mm_projector.{0,2}.* (mlp2x_gelu)                   vlm.model.multi_modal_projector.linear_{1,2}.*
model.* (Qwen2 decoder), lm_head.weight                   vlm.model.language_model.*, vlm.lm_head.weight
retouch_head.{0,1,3,4,6}.*                                adaptor.net.{0,1,3,4,6}.*
retouch_decoder.* (ConditionalMLPDecoder)                 renderer.* (the ``decoder.*`` rules of `official`)
========================================================  ==================================================

The vision tower is timm's ``fastvit_mci3`` built with ``inference_mode=True`` (FastViTHD's
reparameterised geometry; the stage sizes are read from the tensors), so Apple's MCi code is not
needed. Dropped: the unused ``head.proj`` of the MobileCLIP image head and old ``rotary_emb.inv_freq``
buffers. When the folder has no ``retouch_decoder.*`` the renderer comes from the official
``encoder_renderer.pth`` in the folder or beside it (the official README puts both in
``./checkpoints``). The loaded model uses the ``official`` inference recipe (`ModelConfig.recipe`).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from aether_data.official import organised_dict
from model_core.er_config import PAPER, ERConfig
from model_core.official import OfficialMappingError, load_official_state_dict, map_official_keys
from model_core.vlm import VeraRetouch
from model_core.vlm_config import ModelConfig, RendererSpec

OFFICIAL_TEMPERATURE = 0.2
OFFICIAL_TOP_P = 0.8
OFFICIAL_MAX_NEW_TOKENS = 4096
"""Decoding settings of the official ``inference.py`` (sampling, since the temperature is > 0)."""
OFFICIAL_SHORT_EDGE = 512
"""The official ``resize2_512p``: the photo's short edge before the VLM's square pad and resize."""

VISION_PREFIX = "model.vision_tower.vision_tower.model."
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
RENDERER_FILE = "encoder_renderer.pth"
QWEN2_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size", "rms_norm_eps", "rope_theta", "rope_scaling",
    "max_position_embeddings", "tie_word_embeddings", "hidden_act", "sliding_window",
    "use_sliding_window", "max_window_layers", "attention_dropout", "bos_token_id", "eos_token_id",
)  # fmt: skip
"""Fields of the official ``config.json`` (a Qwen2Config subclass) that describe the LLM."""

_STAGE_OF_NETWORK = (0, 1, 1, 2, 2, 3, 3, 3, 4, 4, 4)
"""FastViTHD's ``network.{k}`` → timm stage: stage, PatchEmbed, stage, PatchEmbed, stage, PatchEmbed,
RepCPE, stage, PatchEmbed, RepCPE, stage (the same for any block counts and widths)."""
_STAGE_INDICES = (0, 2, 4, 7, 10)
_DROP = ""


def read_official_config(directory: Path) -> dict[str, Any] | None:
    """The folder's ``config.json`` when it describes an official (LLaVA) model, else None."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(cfg, dict):
        return None
    return cfg if "mm_vision_tower" in cfg or cfg.get("model_type") == "llava_qwen2" else None


def is_official_model_dir(directory: str | Path) -> bool:
    """True for a folder whose ``config.json`` is the official LLaVA-style one (aether's own model
    dirs keep their HF config in ``vlm/``)."""
    return read_official_config(Path(directory)) is not None


def weight_files(directory: Path) -> list[Path]:
    """The weight files of an HF folder: the shards an index lists, or the single file."""
    d = Path(directory)
    for name in INDEX_FILES:
        if (d / name).is_file():
            index = json.loads((d / name).read_text(encoding="utf-8"))
            return [d / f for f in sorted(set(index.get("weight_map", {}).values()))]
    return [d / n for n in SINGLE_FILES if (d / n).is_file()][:1]


def read_official_tensors(directory: Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Every tensor of the folder (safetensors, or ``.bin`` via ``torch.load(weights_only=True)``, so
    no pickled code runs); floating tensors are cast to `dtype` (bf16 releases run in float32 on CPU)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = weight_files(directory)
    if not files:
        raise FileNotFoundError(f"{directory}: no model.safetensors, shard index or pytorch_model.bin")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: weight shard listed in the index is missing")
        try:
            if f.suffix == ".safetensors":
                part = load_file(str(f))
            else:
                part = torch.load(f, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, SafetensorError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{f}: cannot read weights: {str(exc).splitlines()[0]}") from None
        out.update(part)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in out.items()}


def _vision_key(rel: str) -> str:
    """Official MCi FastViTHD key (relative to the tower) → timm ``fastvit`` key (the rename rules
    of transformers' ``convert_fastvlm_weights_to_hf.py``)."""
    parts = rel.split(".")
    if parts[-1] in ("layer_scale", "layer_scale_1", "layer_scale_2"):
        parts.append("gamma")
    if parts[0] == "patch_embed":
        parts[0] = "stem"
    elif parts[0] == "conv_exp":
        parts[0] = "final_conv"
    elif parts[0] == "network" and len(parts) > 2 and parts[1].isdigit():
        k = int(parts[1])
        stage = str(_STAGE_OF_NETWORK[k]) if k < len(_STAGE_OF_NETWORK) else parts[1]
        if parts[2].isdigit():
            parts[:3] = ["stages", stage, "blocks", parts[2]]
        elif parts[2] == "proj":
            parts[:2] = ["stages", stage, "downsample"]
        elif parts[2] == "reparam_conv":
            parts[:2] = ["stages", stage, "pos_emb"]
    renames = {"convffn": "mlp", "lkb_reparam": "reparam_conv"}
    key = ".".join(renames.get(p, p) for p in parts)
    return key.replace(".se.reduce.", ".se.fc1.").replace(".se.expand.", ".se.fc2.")


def _map_key(key: str) -> str | None:
    """Our name for one official key; `_DROP` for unused tensors, None when unknown."""
    if key.startswith(VISION_PREFIX):
        rel = key[len(VISION_PREFIX) :]
        return _DROP if rel == "head.proj" else "vlm.model.vision_tower.timm_model." + _vision_key(rel)
    if key.endswith("rotary_emb.inv_freq"):
        return _DROP
    if key.startswith("model.mm_projector."):
        idx, _, leaf = key[len("model.mm_projector.") :].partition(".")
        linear = {"0": "linear_1", "2": "linear_2"}.get(idx)
        return f"vlm.model.multi_modal_projector.{linear}.{leaf}" if linear else None
    if key.startswith(("model.vision_tower.", "model.image_newline")):
        return None
    if key.startswith("model."):
        return "vlm.model.language_model." + key[len("model.") :]
    if key == "lm_head.weight":
        return "vlm.lm_head.weight"
    if key.startswith("retouch_head."):
        return "adaptor.net." + key[len("retouch_head.") :]
    if key.startswith("retouch_decoder."):
        try:
            ((ours, _),) = map_official_keys(
                {"decoder." + key[len("retouch_decoder.") :]: torch.empty(0)}
            ).items()
        except OfficialMappingError:
            return None
        return ours
    return None


def map_official_vlm_keys(
    tensors: Mapping[str, torch.Tensor], tie_word_embeddings: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename official keys to ours → (tensors, our key → official key). `module.` prefixes are
    tolerated; an absent ``lm_head.weight`` is the embedding when the config ties them. Raises
    `OfficialMappingError` naming every key no rule knows."""
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unknown: list[str] = []
    for raw, value in tensors.items():
        ours = _map_key(raw[len("module.") :] if raw.startswith("module.") else raw)
        if ours is None:
            unknown.append(raw)
        elif ours != _DROP:
            out[ours], origin[ours] = value, raw
    if unknown:
        raise OfficialMappingError(f"{len(unknown)} official keys have no mapping: {sorted(unknown)[:8]}")
    embed = "vlm.model.language_model.embed_tokens.weight"
    if "vlm.lm_head.weight" not in out and tie_word_embeddings and embed in out:
        out["vlm.lm_head.weight"], origin["vlm.lm_head.weight"] = out[embed], origin[embed]
    return out, origin


def fastvit_geometry(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[Any, ...]]:
    """timm ``fastvit_mci3`` kwargs (layers, embed_dims, mlp_ratios) read from the official vision
    tensors, so any FastViTHD size loads (the release: (2, 12, 24, 4, 2) blocks, 96…1536 wide)."""
    blocks: dict[int, dict[int, torch.Size]] = {}
    for key, value in tensors.items():
        parts = key[len(VISION_PREFIX) :].split(".") if key.startswith(VISION_PREFIX) else []
        if len(parts) == 6 and parts[0] == "network" and parts[3:] == ["convffn", "fc1", "weight"]:
            blocks.setdefault(int(parts[1]), {})[int(parts[2])] = value.shape
    if tuple(sorted(blocks)) != _STAGE_INDICES:
        raise ValueError(
            f"vision tower: stage blocks at network indices {sorted(blocks)}, expected FastViTHD's {_STAGE_INDICES}"
        )
    shapes = [next(iter(blocks[i].values())) for i in _STAGE_INDICES]
    return {
        "layers": tuple(len(blocks[i]) for i in _STAGE_INDICES),
        "embed_dims": tuple(int(s[1]) for s in shapes),
        "mlp_ratios": tuple(float(s[0]) / float(s[1]) for s in shapes),
    }


def official_hf_config(cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> Any:
    """The transformers ``FastVlmConfig`` equivalent to the official ``config.json`` (the vision
    geometry from `tensors`); unsupported official options raise a ValueError naming the field."""
    from transformers import FastVlmConfig, Qwen2Config, TimmWrapperConfig

    proj = cfg.get("mm_projector_type", "mlp2x_gelu")
    if proj != "mlp2x_gelu":
        raise ValueError(f"config.json: mm_projector_type {proj!r} is not supported (only 'mlp2x_gelu')")
    if "unpad" in str(cfg.get("mm_patch_merge_type", "flat")):
        raise ValueError("config.json: mm_patch_merge_type 'unpad' is not supported (FastVLM uses 'flat')")
    geometry = fastvit_geometry(tensors)
    width = 2 * geometry["embed_dims"][-1]
    if int(cfg.get("mm_hidden_size", width)) != width:
        raise ValueError(f"config.json: mm_hidden_size {cfg['mm_hidden_size']} != vision tower width {width}")
    text = {k: cfg[k] for k in QWEN2_FIELDS if cfg.get(k) is not None}
    vision = TimmWrapperConfig(
        architecture="fastvit_mci3",
        model_args={"inference_mode": True, **geometry},
        hidden_size=width,
        do_pooling=False,
    )
    return FastVlmConfig(
        text_config=Qwen2Config(**text),
        vision_config=vision,
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )


def image_size_of(cfg: Mapping[str, Any]) -> int:
    """Input side of the vision tower: the official code reads it from the tower's name
    (``mobileclip_l_1024`` → 1024)."""
    name = str(cfg.get("mm_vision_tower", ""))
    size = name.rsplit("_", 1)[-1]
    if "mobileclip" not in name or not size.isdigit():
        raise ValueError(
            f"config.json: mm_vision_tower {name!r} is not a MobileCLIP tower ('mobileclip_l_1024')"
        )
    return int(size)


def find_renderer(directory: Path, renderer: str | Path | None = None) -> Path:
    """The ``encoder_renderer.pth`` to take the renderer from: `renderer`, else in or beside the folder."""
    candidates = (
        [Path(renderer)] if renderer else [directory / RENDERER_FILE, directory.parent / RENDERER_FILE]
    )
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"{directory}: the weights have no retouch_decoder.* and no {RENDERER_FILE} was found"
        f" ({', '.join(str(c) for c in candidates)})"
    )


def official_er_config(renderer: Mapping[str, torch.Tensor]) -> ERConfig:
    """The paper renderer with the widths and latent size of the given ``renderer.*`` tensors."""
    hidden: list[int] = []
    while f"renderer.layers.{len(hidden)}.linear.weight" in renderer:
        hidden.append(int(renderer[f"renderer.layers.{len(hidden)}.linear.weight"].shape[0]))
    if not hidden or "renderer.layers.0.inject.weight" not in renderer:
        raise ValueError("official weights: the renderer (retouch_decoder) has no layers")
    latent = int(renderer["renderer.layers.0.inject.weight"].shape[1]) // 3
    return PAPER.with_(name="official", latent_dim=latent, renderer_hidden=tuple(hidden))


def _load_strict(
    model: VeraRetouch, tensors: dict[str, torch.Tensor], origin: Mapping[str, str], where: str
) -> None:
    """Strict load; a one-line error names missing, unexpected (official names) and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(origin.get(k, k) for k in set(tensors) - set(own))
    bad = sorted(
        f"{origin.get(k, k)} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(tensors)
        if tuple(own[k].shape) != tuple(tensors[k].shape)
    )
    if missing or unexpected or bad:
        parts = [f"{name} {keys[:6]}" for name, keys in (("missing", missing), ("unexpected", unexpected),
                 ("shape mismatch", bad)) if keys]  # fmt: skip
        raise ValueError(f"{where}: official weights do not fit: " + "; ".join(parts))
    model.load_state_dict(tensors, strict=True)


def load_official_model(
    directory: str | Path, renderer: str | Path | None = None, device: str | torch.device = "cpu"
) -> VeraRetouch:
    """Build our model from the official release folder and load every tensor strictly (float32,
    eval mode, `ModelConfig.recipe` ``official``). `renderer` overrides where the renderer comes
    from when the folder has no ``retouch_decoder.*``."""
    from model_core.model_build import build_model

    d = Path(directory)
    cfg = read_official_config(d)
    if cfg is None:
        raise ValueError(f"{d}: not an official VeraRetouch folder (config.json without mm_vision_tower)")
    tensors = read_official_tensors(d)
    mapped, origin = map_official_vlm_keys(tensors, bool(cfg.get("tie_word_embeddings", False)))
    if not any(k.startswith("renderer.") for k in mapped):
        pth = find_renderer(d, renderer)
        for k, v in load_official_state_dict(pth).items():
            if k.startswith("renderer."):
                mapped[k], origin[k] = v.float(), f"{pth.name}:{k}"
    hf_config = official_hf_config(cfg, tensors)
    size = image_size_of(cfg)
    head = mapped.get("adaptor.net.0.weight")
    model_cfg = ModelConfig(
        tokenizer=str(d),
        image_size=size,
        image_tokens=(size // 64) ** 2,
        max_length=int(cfg.get("tokenizer_model_max_length") or 4096),
        adaptor_bottleneck=int(head.shape[0]) if head is not None else None,
        recipe="official",
    )
    spec = RendererSpec(er_config=asdict(official_er_config(mapped)))
    model = build_model(model_cfg, spec, _tokenizer_dir=d, _load_renderer=False, _hf_config=hf_config)
    _load_strict(model, mapped, origin, str(d))
    model.source_dir = d
    return model.to(device).eval()


def official_masks(workflow: str, params: Mapping[str, float] | None) -> list[int]:
    """Group masks of the official inference: all on for auto and style; for param a group is off
    when every value of its official organised dict (value / 100, 3 decimals) is within 1e-4 of 0
    (``get_mask_from_path``)."""
    if workflow != "param" or params is None:
        return [1, 1, 1]
    return [0 if all(abs(v) <= 1e-4 for v in g.values()) else 1 for g in organised_dict(params).values()]
