"""Reference retouching: transfer the edit between a before/after pair onto any photo.

E reads the reference pair at its small square input size; the resulting latent turns R into a
fixed colour map, which is baked into a 3D LUT and applied to the input at full resolution (a
24-megapixel photo costs one LUT bake plus one trilinear lookup per pixel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from model_core.encoder import RetouchEncoder, apply_masks
from model_core.er_config import ERConfig
from model_core.er_data import resize_square
from model_core.er_io import load_er_checkpoint
from model_core.renderer import RetouchRenderer, apply_lut_numpy

_CACHE: dict[str, tuple[RetouchEncoder, RetouchRenderer, ERConfig]] = {}


def as_float_image(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float HxWx3 (or HxWx4, alpha dropped) → float32 HxWx3 in [0,1]."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


@torch.no_grad()
def encode_reference(
    encoder: RetouchEncoder, ref_before: np.ndarray, ref_after: np.ndarray, masks: Sequence[float] = (1, 1, 1)
) -> torch.Tensor:
    """Masked latent z (1, 3·d) of a reference pair (any sizes; each is resized to the encoder input)."""
    size = encoder.config.enc_input_size

    def prep(img: np.ndarray) -> torch.Tensor:
        arr = resize_square(as_float_image(img), size)
        return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2.0 - 1.0

    encoder.eval()
    return apply_masks(encoder(prep(ref_before), prep(ref_after)), masks)


def reference_retouch(
    input_img: np.ndarray,
    ref_before: np.ndarray,
    ref_after: np.ndarray,
    masks: Sequence[float] = (1, 1, 1),
    checkpoint: str | None = None,
    lut_size: int | None = None,
    models: tuple[RetouchEncoder, RetouchRenderer, ERConfig] | None = None,
) -> np.ndarray:
    """Apply the before→after edit of a reference pair to `input_img` at full resolution.

    Images are HxWx3 arrays (uint8, uint16 or float in [0,1]); returns float32 HxWx3 in [0,1].
    `masks` keeps/drops the [light, color&temp, colormixer] latents. Single-reference mode: pass
    `ref_before=input_img`. `models` overrides the checkpoint (default: the shipped CPU one).
    """
    if models is None:
        key = str(checkpoint)
        if key not in _CACHE:
            _CACHE[key] = load_er_checkpoint(checkpoint)
        models = _CACHE[key]
    encoder, renderer, config = models
    z = encode_reference(encoder, ref_before, ref_after, masks)
    renderer.eval()
    lut = renderer.bake_lut(z[0], lut_size or config.lut_size)
    return apply_lut_numpy(as_float_image(input_img), lut)
