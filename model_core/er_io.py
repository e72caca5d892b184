"""Safetensors I/O for the encoder/renderer pair (no pickle anywhere).

A weights file holds ``encoder.*`` and ``renderer.*`` tensors; its metadata holds the `ERConfig`
JSON under ``config`` (plus free-form training facts), so `load_er_checkpoint` can rebuild the
modules without any other file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from aether_data.io.atomic import AtomicFile
from model_core.encoder import RetouchEncoder
from model_core.er_config import ERConfig
from model_core.renderer import RetouchRenderer

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "er-cpu.safetensors"
WEIGHTS_FORMAT = "aether-er-weights/1"


def model_tensors(encoder: RetouchEncoder, renderer: RetouchRenderer) -> dict[str, torch.Tensor]:
    """Flat ``encoder.*`` / ``renderer.*`` dict of contiguous CPU tensors (safetensors-ready)."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module in (("encoder.", encoder), ("renderer.", renderer)):
        for k, v in module.state_dict().items():
            out[prefix + k] = v.detach().to("cpu").contiguous().clone()
    return out


def atomic_save(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> Path:
    """Write a safetensors file via a temp file + rename, so a crash never leaves a torn checkpoint."""
    p = Path(path)
    with AtomicFile(p) as f:
        save_file(dict(tensors), str(f.path), metadata=dict(metadata))
    return p


def save_er_weights(
    path: str | Path,
    encoder: RetouchEncoder,
    renderer: RetouchRenderer,
    config: ERConfig,
    extra_metadata: Mapping[str, object] | None = None,
) -> Path:
    """Save weights only (what ships): tensors + config JSON + optional JSON-encoded facts."""
    meta = {"format": WEIGHTS_FORMAT, "config": config.to_json()}
    for k, v in (extra_metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return atomic_save(model_tensors(encoder, renderer), path, meta)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def split_prefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Sub-dict of keys starting with `prefix`, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def build_er(config: ERConfig) -> tuple[RetouchEncoder, RetouchRenderer]:
    """Fresh modules for a config."""
    return RetouchEncoder(config), RetouchRenderer(config)


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict) with an error that lists every missing / unexpected / mis-shaped key."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what}: state dict does not match the model.\n"
            f"  missing ({len(missing)}): {missing}\n  unexpected ({len(unexpected)}): {unexpected}\n"
            f"  shape mismatches ({len(shapes)}): {shapes}"
        )
    module.load_state_dict(dict(state), strict=True)


def load_er_checkpoint(
    path: str | Path | None = None, config: ERConfig | None = None
) -> tuple[RetouchEncoder, RetouchRenderer, ERConfig]:
    """Load (encoder, renderer, config) in eval mode.

    `path=None` loads the shipped CPU checkpoint. A ``.safetensors`` file carries its own config
    (weights files and full training checkpoints both work). A ``.pth``/``.pt`` file is treated as
    the official VeraRetouch ``encoder_renderer.pth`` and mapped with `model_core.official`
    (paper config unless `config` is given).
    """
    p = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    if p.suffix in (".pth", ".pt", ".bin"):
        from model_core.er_config import PAPER
        from model_core.official import load_official_state_dict

        cfg = config or PAPER
        if cfg.pair_stats_dim:
            raise ValueError(
                f"{p}: official weights have no pair-statistics branch; pass a config with"
                f" pair_stats_dim=0 (got {cfg.name!r} with pair_stats_dim={cfg.pair_stats_dim})"
            )
        state = load_official_state_dict(p)
    else:
        state, meta = read_safetensors(p)
        if "config" not in meta and config is None:
            raise ValueError(f"{p}: no 'config' in safetensors metadata; pass config=")
        cfg = config or ERConfig.from_json(meta["config"], strict=False)
    encoder, renderer = build_er(cfg)
    load_state_strict(encoder, split_prefixed(state, "encoder."), f"{p} (encoder)")
    load_state_strict(renderer, split_prefixed(state, "renderer."), f"{p} (renderer)")
    encoder.eval()
    renderer.eval()
    return encoder, renderer, cfg
