"""Semantic segmentation behind one interface: ``segment(image) → Segmentation(labels, names)``.

- ``ClassicalSegmenter`` (the default, no weights): SLIC superpixels (scikit-image) on a ~128 px
  thumbnail; a superpixel is **sky** when it lies in the upper part of the frame and is blue or
  bright and nearly neutral, **skin** when its mean colour falls in the skin hue/saturation window
  the engine's vibrance already uses (``develop.color.skin_weight``, i.e. by chroma); the rest is
  merged by colour (region adjacency graph, mean Lab colour, threshold cut) and named by what the
  merged colour looks like (foliage, water/blue, warm, dark, bright, ...).
- ``TransformersSegmenter``: a universal-segmentation checkpoint from a **local folder** (OneFormer
  or Mask2Former through ``AutoModelForUniversalSegmentation``; semantic post-processing, names
  from ``config.id2label``). Never downloads (``local_files_only``).

Labels are a uint8 map (0..n-1) at the image's size; ``names[k]`` names label k. Results are
cached per image content (sha1 of the pixels) in a small LRU, so samples drawn from the same crop
of a source reuse its segmentation.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from aether_data.develop.color import hue_signed, skin_weight, to_opponent
from aether_data.io.imaging import as_float01

THUMB_SHORT = 128
"""≈ Classical segmentation runs on a thumbnail with this short edge (labels resized back, nearest)."""
SLIC_SEGMENTS = 80
MERGE_THRESHOLD = 18.0
"""≈ Adjacent superpixels whose mean Lab colours differ by less than this merge."""
MIN_AREA = 0.02
"""Segments below this fraction of the image are merged into their most similar neighbour region."""


@dataclass
class Segmentation:
    """A label map (uint8, HxW, values 0..n-1) and one name per label."""

    labels: np.ndarray
    names: list[str]

    def areas(self) -> list[float]:
        counts = np.bincount(self.labels.reshape(-1), minlength=len(self.names))
        return [float(c) / self.labels.size for c in counts[: len(self.names)]]


class Segmenter(Protocol):
    name: str

    def segment(self, image: np.ndarray) -> Segmentation: ...


class _Cached:
    """LRU cache of segmentations keyed by the pixels' sha1."""

    def __init__(self, capacity: int = 32) -> None:
        self._items: OrderedDict[str, Segmentation] = OrderedDict()
        self.capacity = capacity

    def segment(self, image: np.ndarray) -> Segmentation:
        arr = np.ascontiguousarray(image)
        key = hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        seg = self._segment(arr)
        self._items[key] = seg
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return seg

    def _segment(self, image: np.ndarray) -> Segmentation:
        raise NotImplementedError


def _colour_name(lab: np.ndarray, rgb: np.ndarray) -> str:
    """A plain name for a merged region from its mean colour (Lab and sRGB in [0, 1])."""
    lum, a, b = (float(v) for v in lab)
    chroma = float(np.hypot(a, b))
    if chroma > 12:
        _, oa, ob = to_opponent(*(np.float32(c) for c in rgb))
        hue = float(np.degrees(np.arctan2(ob, oa))) % 360
        if 80 <= hue < 170:
            return "foliage"
        if 170 <= hue < 260:
            return "the blue areas"
        if hue < 20 or hue >= 330:
            return "the red areas"
        return "the warm areas"
    if lum < 30:
        return "the shadows"
    if lum > 75:
        return "the bright areas"
    return "the midtones"


class ClassicalSegmenter(_Cached):
    """Weight-free segmentation: sky by position and colour, skin by chroma, SLIC merged by colour."""

    name = "classical"

    def _segment(self, image: np.ndarray) -> Segmentation:
        from skimage import color, graph, segmentation

        u8 = (
            image
            if image.dtype == np.uint8
            else (np.clip(as_float01(image), 0, 1) * 255 + 0.5).astype(np.uint8)
        )
        h, w = u8.shape[:2]
        s = THUMB_SHORT / min(h, w)
        th, tw = max(8, round(h * s)), max(8, round(w * s))
        small = cv2.resize(u8, (tw, th), interpolation=cv2.INTER_AREA)
        f = small.astype(np.float32) / 255.0
        lab = color.rgb2lab(f)
        sp = segmentation.slic(f, n_segments=SLIC_SEGMENTS, compactness=10, start_label=0, channel_axis=-1)
        rag = graph.rag_mean_color(lab, sp, mode="distance")
        merged = graph.cut_threshold(sp, rag, MERGE_THRESHOLD)
        n = int(merged.max()) + 1
        ys = (np.arange(th, dtype=np.float32)[:, None] + 0.5) / th * np.ones((1, tw), np.float32)
        # per-pixel classical cues
        r, g, b = f[..., 0], f[..., 1], f[..., 2]
        _, oa, ob = to_opponent(r, g, b)
        chroma = np.sqrt(oa * oa + ob * ob)
        top = np.maximum(np.maximum(r, g), b)
        sat = np.clip(chroma / np.maximum(top, 1e-6), 0, 1)
        skin_px = skin_weight(hue_signed(oa, ob), sat) > 0.5
        bluish = (lab[..., 2] < -8) & (lab[..., 0] > 35)
        bright_neutral = (lab[..., 0] > 75) & (np.hypot(lab[..., 1], lab[..., 2]) < 12)
        names_of: dict[int, str] = {}
        for k in range(n):
            sel = merged == k
            if not np.any(sel):
                continue
            mean_y = float(ys[sel].mean())
            touches_top = bool(np.any(sel[: max(1, th // 10)]))
            if mean_y < 0.45 and touches_top and float((bluish | bright_neutral)[sel].mean()) > 0.6:
                names_of[k] = "sky"
            elif float(skin_px[sel].mean()) > 0.6:
                names_of[k] = "skin"
            else:
                names_of[k] = _colour_name(lab[sel].mean(axis=0), f[sel].mean(axis=0))
        # one label per name: segments with the same name join
        uniq = sorted(
            set(names_of.values()),
            key=lambda nm: -sum((merged == k).sum() for k, v in names_of.items() if v == nm),
        )
        index = {nm: i for i, nm in enumerate(uniq)}
        lut = np.zeros(n, np.uint8)
        for k, nm in names_of.items():
            lut[k] = index[nm]
        labels_small = lut[merged]
        labels_small, uniq = _drop_small(labels_small, uniq)
        labels = cv2.resize(labels_small, (w, h), interpolation=cv2.INTER_NEAREST)
        return Segmentation(labels.astype(np.uint8), uniq)


def _drop_small(labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Merge labels below MIN_AREA into the largest label, then renumber 0..n-1 by area."""
    counts = np.bincount(labels.reshape(-1), minlength=len(names)).astype(float) / labels.size
    order = [k for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    keep = [k for k in order if counts[k] >= MIN_AREA] or order[:1]
    remap = np.zeros(len(names), np.uint8)
    for new, k in enumerate(keep):
        remap[k] = new
    for k in order:
        if k not in keep:
            remap[k] = 0
    return remap[labels], [names[k] for k in keep]


class TransformersSegmenter(_Cached):
    """OneFormer / Mask2Former semantic segmentation from a local checkpoint folder (no download)."""

    name = "transformers"

    def __init__(
        self, path: str | Path, device: str = "cpu", model: Any = None, processor: Any = None
    ) -> None:
        super().__init__()
        from transformers import AutoImageProcessor, AutoModelForUniversalSegmentation

        self.path = str(path)
        self.device = device
        self.processor = processor or AutoImageProcessor.from_pretrained(self.path, local_files_only=True)
        self.model = model or AutoModelForUniversalSegmentation.from_pretrained(
            self.path, local_files_only=True
        )
        self.model.eval().to(device)
        self.id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        self.oneformer = "oneformer" in type(self.model).__name__.lower()

    def _segment(self, image: np.ndarray) -> Segmentation:
        import torch

        u8 = (
            image
            if image.dtype == np.uint8
            else (np.clip(as_float01(image), 0, 1) * 255 + 0.5).astype(np.uint8)
        )
        h, w = u8.shape[:2]
        kwargs: dict[str, Any] = {"images": u8, "return_tensors": "pt"}
        if self.oneformer:
            kwargs["task_inputs"] = ["semantic"]
        inputs = self.processor(**kwargs).to(self.device)
        with torch.no_grad():
            out = self.model(**inputs)
        sem = self.processor.post_process_semantic_segmentation(out, target_sizes=[(h, w)])[0]
        ids = sem.cpu().numpy().astype(np.int64)
        classes, inverse = np.unique(ids, return_inverse=True)
        names = [self.id2label.get(int(c), f"class {int(c)}").split(",")[0].strip() for c in classes]
        labels, names = _drop_small(inverse.reshape(h, w).astype(np.uint8), names)
        return Segmentation(labels, names)


def make_segmenter(model: str | None = None, device: str = "cpu") -> Segmenter:
    """``None`` / ``"classical"`` → ClassicalSegmenter; a folder path → TransformersSegmenter."""
    if model in (None, "", "classical"):
        return ClassicalSegmenter()
    if not Path(str(model)).is_dir():
        raise ValueError(f"segmentation model {model!r}: not a local folder (models load from disk only)")
    return TransformersSegmenter(model, device)


__all__ = ["ClassicalSegmenter", "Segmentation", "Segmenter", "TransformersSegmenter", "make_segmenter"]
