"""Images and teacher edits for encoder/renderer training and evaluation.

Training pairs are synthesised on the fly: the develop engine is the teacher, so the only data the
trainer needs is a folder of photos. Photos are decoded once, downscaled to a working short edge
and cached; every step draws random crops and flips from that cache with the trainer's numpy
generator (whose state is checkpointed, so a resumed run sees the same crops).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from aether_data.io.sources import PHOTOS_DIR
from aether_data.params import GROUP_PARAMS, GROUPS, PARAM_NAMES, to_vector

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

GROUP_INDEX: dict[str, np.ndarray] = {
    g: np.array([PARAM_NAMES.index(n) for n in GROUP_PARAMS[g]], dtype=np.int64) for g in GROUPS
}
"""Positions of each group's parameters in the 38-vector."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (sorted, non-recursive)."""
    p = Path(folder)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: not a directory")
    return sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def default_photos() -> list[Path]:
    """The bundled photos (aether_data/data/photos)."""
    return list_images(PHOTOS_DIR) if PHOTOS_DIR.is_dir() else []


def split_photos(paths: Sequence[Path], holdout_every: int = 3) -> tuple[list[Path], list[Path]]:
    """Deterministic train / held-out split: every `holdout_every`-th photo (sorted by name) is held out.

    Held-out photos are never seen in training, so evaluation measures generalisation to new
    content, not memorisation of the training photos' colours.
    """
    ordered = sorted(Path(p) for p in paths)
    held = [p for i, p in enumerate(ordered) if i % holdout_every == holdout_every - 1]
    train = [p for p in ordered if p not in held]
    return train, held


def load_image(path: str | Path, short_edge: int | None = None) -> np.ndarray:
    """Decode to float32 HxWx3 in [0,1], optionally downscaled (area filter) to `short_edge`."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return resize_short_edge(arr, short_edge) if short_edge else arr


def resize_short_edge(img: np.ndarray, short_edge: int) -> np.ndarray:
    """Downscale so the short edge equals `short_edge` (never upscales)."""
    h, w = img.shape[:2]
    s = short_edge / min(h, w)
    if s >= 1.0:
        return np.ascontiguousarray(img, dtype=np.float32)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def resize_square(img: np.ndarray, side: int) -> np.ndarray:
    """Resize to side×side (aspect not kept, as the released encoder preprocessing does)."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) >= side else cv2.INTER_LINEAR
    return np.clip(cv2.resize(img, (side, side), interpolation=interp), 0.0, 1.0).astype(np.float32)


class ImagePool:
    """In-memory cache of downscaled photos with seeded random crops and flips."""

    def __init__(self, images: Sequence[np.ndarray | str | Path], short_edge: int) -> None:
        self.images: list[np.ndarray] = []
        for item in images:
            arr = (
                load_image(item, short_edge)
                if isinstance(item, (str, Path))
                else resize_short_edge(item, short_edge)
            )
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"expected HxWx3 images, got shape {arr.shape}")
            self.images.append(arr)
        if not self.images:
            raise ValueError("ImagePool needs at least one image")

    def __len__(self) -> int:
        return len(self.images)

    def crop(self, rng: np.random.Generator, index: int, out_size: int, min_frac: float) -> np.ndarray:
        """Random square crop (side in [min_frac, 1] × short edge), resized to out_size², random h-flip."""
        img = self.images[index]
        h, w = img.shape[:2]
        short = min(h, w)
        side = max(1, round(short * rng.uniform(min_frac, 1.0)))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        patch = resize_square(img[y : y + side, x : x + side], out_size)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch)

    def two_indices(self, rng: np.random.Generator) -> tuple[int, int]:
        """Two different photos (A for the encoder, B for the renderer); same photo if only one exists."""
        n = len(self.images)
        if n == 1:
            return 0, 0
        a = int(rng.integers(n))
        b = int(rng.integers(n - 1))
        return a, b + (b >= a)


def to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """List of HxWx3 arrays → (B,3,H,W) float32 tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def masked_vector(vec: np.ndarray, masks: Sequence[int]) -> np.ndarray:
    """Zero the parameters of groups whose mask is 0 (the edit a masked latent must reproduce)."""
    out = np.array(vec, dtype=np.float32, copy=True)
    for g, m in zip(GROUPS, masks, strict=True):
        if not m:
            out[GROUP_INDEX[g]] = 0.0
    return out


def param_vector(params: dict[str, float]) -> np.ndarray:
    """Slider-scale dict → normalised 38-vector (float32)."""
    return to_vector(params)
