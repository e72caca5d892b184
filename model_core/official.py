"""Load the official VeraRetouch ``encoder_renderer.pth`` onto `RetouchEncoder` / `RetouchRenderer`.

Assumed official layout (from the public VeraRetouch release: ``RetouchRenderer`` with encoder
``Resnet18Encoder_InputCatMixedCBAM`` and decoder ``ConditionalMLPDecoder``, hidden dims
[128, 256, 512], latent 896, ``cond_method="add"``, sigmoid output). The file is a dict whose
``"model_state_dict"`` entry holds (``module.`` prefixes from DDP are tolerated):

======================================================  =============================================
official key                                            ours
======================================================  =============================================
encoder.model0.0.* (7×7 conv, 6→64)                     encoder.stem.conv.*
encoder.model0.1.* (BatchNorm)                          encoder.stem.bn.*
encoder.model{k}.{0,1,3,4}.*  k = 1..8                  encoder.blocks.{k-1}.{conv1,bn1,conv2,bn2}.*
encoder.en{j}.{0,1}.*  j = 1..3 (projection shortcut)   encoder.blocks.{2j}.shortcut.{conv,bn}.*
encoder.attn_spatial{1,2}.conv.*                        encoder.blocks.{0,1}.attn.conv.*
encoder.attn_mid{1,2}.channel_att.{1,3}.* (1×1 convs)   encoder.blocks.{2,4}.attn.channel.{fc1,fc2}.* (reshaped to Linear)
encoder.attn_mid{1,2}.spatial_att.0.*                   encoder.blocks.{2,4}.attn.spatial.conv.*
encoder.attn_deep.fc.{0,2}.*                            encoder.blocks.6.attn.{fc1,fc2}.*
encoder.fc.* (512 → 3·896)                              encoder.head.*
decoder.layers.{i}.*                                    renderer.layers.{i}.linear.*
decoder.layer_norms.{i}.*                               renderer.layers.{i}.norm.*
decoder.z_projs.{i}.*                                   renderer.layers.{i}.inject.*
decoder.out_layer.*                                     renderer.out.*
======================================================  =============================================

The released decoder computes Linear → ReLU → LayerNorm → + inject (our default order) and its
inference script feeds the renderer the input image scaled to [-1, 1] (our ``signed_input``) and
the reference pair resized to 512² in [-1, 1] (our `encode_pair`). Note: that script reads the
reference pair with OpenCV and does not convert BGR → RGB; if official weights give channel-swapped
results on reference retouching, feed the references in BGR order.

Files are read with ``torch.load(..., weights_only=True)``: no arbitrary pickle code runs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from model_core.er_config import PAPER, ERConfig

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str], bool]


def _rule(pattern: str, target: Callable[[re.Match[str]], str], to_linear: bool = False) -> Rule:
    return re.compile(pattern), target, to_linear


_ATTN_BLOCK = {"attn_spatial1": 0, "attn_spatial2": 1, "attn_mid1": 2, "attn_mid2": 4}

RULES: tuple[Rule, ...] = (
    _rule(r"^encoder\.model0\.0\.(weight|bias)$", lambda m: f"encoder.stem.conv.{m[1]}"),
    _rule(r"^encoder\.model0\.1\.(\w+)$", lambda m: f"encoder.stem.bn.{m[1]}"),
    _rule(
        r"^encoder\.model([1-8])\.([0134])\.(\w+)$",
        lambda m: (
            f"encoder.blocks.{int(m[1]) - 1}.{ {'0': 'conv1', '1': 'bn1', '3': 'conv2', '4': 'bn2'}[m[2]] }.{m[3]}"
        ),
    ),
    _rule(
        r"^encoder\.en([1-3])\.([01])\.(\w+)$",
        lambda m: f"encoder.blocks.{2 * int(m[1])}.shortcut.{'conv' if m[2] == '0' else 'bn'}.{m[3]}",
    ),
    _rule(
        r"^encoder\.(attn_spatial[12])\.conv\.(weight|bias)$",
        lambda m: f"encoder.blocks.{_ATTN_BLOCK[m[1]]}.attn.conv.{m[2]}",
    ),
    _rule(
        r"^encoder\.(attn_mid[12])\.channel_att\.([13])\.(weight|bias)$",
        lambda m: f"encoder.blocks.{_ATTN_BLOCK[m[1]]}.attn.channel.{'fc1' if m[2] == '1' else 'fc2'}.{m[3]}",
        to_linear=True,
    ),
    _rule(
        r"^encoder\.(attn_mid[12])\.spatial_att\.0\.(weight|bias)$",
        lambda m: f"encoder.blocks.{_ATTN_BLOCK[m[1]]}.attn.spatial.conv.{m[2]}",
    ),
    _rule(
        r"^encoder\.attn_deep\.fc\.([02])\.(weight|bias)$",
        lambda m: f"encoder.blocks.6.attn.{'fc1' if m[1] == '0' else 'fc2'}.{m[2]}",
    ),
    _rule(r"^encoder\.fc\.(weight|bias)$", lambda m: f"encoder.head.{m[1]}"),
    _rule(r"^decoder\.layers\.(\d+)\.(weight|bias)$", lambda m: f"renderer.layers.{m[1]}.linear.{m[2]}"),
    _rule(r"^decoder\.layer_norms\.(\d+)\.(weight|bias)$", lambda m: f"renderer.layers.{m[1]}.norm.{m[2]}"),
    _rule(r"^decoder\.z_projs\.(\d+)\.(weight|bias)$", lambda m: f"renderer.layers.{m[1]}.inject.{m[2]}"),
    _rule(r"^decoder\.out_layer\.(weight|bias)$", lambda m: f"renderer.out.{m[1]}"),
)


class OfficialMappingError(ValueError):
    """An official state dict with keys the mapping does not know, or missing keys."""


def _unwrap(obj: object) -> Mapping[str, torch.Tensor]:
    """Find the tensor dict inside a loaded checkpoint ({"model_state_dict": ...} or a bare dict)."""
    if isinstance(obj, Mapping):
        for key in ("model_state_dict", "state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return _unwrap(inner)
        if all(torch.is_tensor(v) for v in obj.values()):
            return obj  # type: ignore[return-value]
    raise OfficialMappingError(
        "checkpoint holds no tensor state dict (looked for model_state_dict / state_dict / model)"
    )


def map_official_keys(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official keys to ours (1×1-conv attention weights become Linear weights).

    Raises `OfficialMappingError` listing every key no rule recognises.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for raw_key, value in official.items():
        key = raw_key[len("module.") :] if raw_key.startswith("module.") else raw_key
        for pattern, target, to_linear in RULES:
            m = pattern.match(key)
            if m:
                t = value
                if to_linear and t.ndim == 4:
                    t = t.reshape(t.shape[0], t.shape[1])
                out[target(m)] = t
                break
        else:
            unknown.append(raw_key)
    if unknown:
        raise OfficialMappingError(f"{len(unknown)} official keys have no mapping: {sorted(unknown)}")
    return out


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``encoder_renderer.pth`` safely and return it under our key names.

    Load the result with `model_core.er_io.load_er_checkpoint(path)` (which also reports missing
    keys and shape mismatches by name).
    """
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    return map_official_keys(_unwrap(obj))


def official_key_shapes(config: ERConfig = PAPER) -> dict[str, tuple[int, ...]]:
    """Every key (and shape) of the official state dict for `config`, written from the official
    module structure (not derived from our modules), so tests can check the mapping independently."""
    w, r, lat = config.enc_width, config.cbam_reduction, config.total_latent
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def bn(name: str, c: int) -> None:
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{p}"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    def linear(name: str, cout: int, cin: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin)
        shapes[f"{name}.bias"] = (cout,)

    conv("encoder.model0.0", w, 6, 7)
    bn("encoder.model0.1", w)
    io = [
        (w, w),
        (w, w),
        (w, 2 * w),
        (2 * w, 2 * w),
        (2 * w, 4 * w),
        (4 * w, 4 * w),
        (4 * w, 8 * w),
        (8 * w, 8 * w),
    ]
    for k, (cin, cout) in enumerate(io, start=1):
        conv(f"encoder.model{k}.0", cout, cin, 3)
        bn(f"encoder.model{k}.1", cout)
        conv(f"encoder.model{k}.3", cout, cout, 3)
        bn(f"encoder.model{k}.4", cout)
    for j, (cin, cout) in enumerate([(w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)], start=1):
        conv(f"encoder.en{j}.0", cout, cin, 1)
        bn(f"encoder.en{j}.1", cout)
    conv("encoder.attn_spatial1.conv", 1, 2, 7)
    conv("encoder.attn_spatial2.conv", 1, 2, 7)
    for name, c in (("attn_mid1", 2 * w), ("attn_mid2", 4 * w)):
        hidden = max(1, c // r)
        conv(f"encoder.{name}.channel_att.1", hidden, c, 1)
        conv(f"encoder.{name}.channel_att.3", c, hidden, 1)
        conv(f"encoder.{name}.spatial_att.0", 1, 2, 7)
    linear("encoder.attn_deep.fc.0", max(1, 8 * w // r), 8 * w)
    linear("encoder.attn_deep.fc.2", 8 * w, max(1, 8 * w // r))
    linear("encoder.fc", lat, 8 * w)
    dims = (3, *config.renderer_hidden)
    for i, (cin, cout) in enumerate(itertools.pairwise(dims)):
        linear(f"decoder.layers.{i}", cout, cin)
        shapes[f"decoder.layer_norms.{i}.weight"] = (cout,)
        shapes[f"decoder.layer_norms.{i}.bias"] = (cout,)
        linear(f"decoder.z_projs.{i}", cout, lat)
    linear("decoder.out_layer", 3, dims[-1])
    return shapes
