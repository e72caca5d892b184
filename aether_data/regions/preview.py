"""A region sample's label map as a picture: each label tinted over the input (inspect, report)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PALETTE = np.array(
    [
        (128, 128, 128),
        (66, 135, 245),
        (245, 166, 35),
        (80, 200, 120),
        (220, 70, 90),
        (170, 100, 220),
        (40, 200, 210),
        (240, 220, 60),
        (150, 90, 50),
    ],
    dtype=np.float32,
)


def mask_overlay(input_bytes: bytes, masks_png: bytes, alpha: float = 0.55) -> Image.Image:
    """The input with label k tinted PALETTE[k] (label 0, "the rest", in grey)."""
    with Image.open(io.BytesIO(input_bytes)) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    with Image.open(io.BytesIO(masks_png)) as im:
        labels = np.asarray(im.convert("L"))
    tint = PALETTE[labels % len(PALETTE)]
    out = (1 - alpha) * rgb + alpha * tint
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


__all__ = ["PALETTE", "mask_overlay"]
