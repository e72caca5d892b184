"""Quality gates of a pair: visible change, structure kept, no new clipping, auto target not worse.

Every measure runs on integer-factor box thumbnails (short edge 128–255 px; CIEDE2000 on a 64–127 px
copy) in float32 (OpenCV colour conversion and Sobel, the mean CIEDE2000 compiled in
`color_difference`): a few milliseconds a pair, and a sample's redraws prepare the original photo's
half once (`PairMeasurer`). The measures:

- ``delta_e``: mean CIEDE2000 between input and target (Lab from OpenCV's sRGB → CIELAB, D65);
- ``rgb_diff``: mean |RGB| difference in 8-bit levels;
- ``grad_corr``: Pearson correlation of the luma-gradient magnitudes (Sobel) of input and target:
  1 when the edit keeps every edge, low when clipping or a flattening tone curve wipes structure;
- ``new_clipped``: share of pixels clipped (a channel ≥ 254, or all ≤ 1) in the edited image that
  are not clipped in the original photo (for auto, the degraded input against the target photo).

`failed_gate` compares them with a workflow's `QualitySpec` thresholds. Texture edits (presets
with clarity, texture, grain or dehaze) mean to change local structure: their pairs are flagged
``texture_edit`` and exempt from the structure gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import cv2
import numpy as np

from aether_data.color_difference import ciede2000, mean_ciede2000
from aether_data.io.errors import SourceError
from aether_data.io.imaging import box_shrink

if TYPE_CHECKING:
    from aether_data.config import GateSpec

__all__ = [
    "GATES",
    "TEXTURE_KEYS",
    "PairMeasurer",
    "QualityRejected",
    "ciede2000",
    "failed_gate",
    "failed_spec_gate",
    "lab_thumb",
    "measure_pair",
    "redraw_seed",
]

GATES = ("visible", "structure", "clipping", "aesthetic")
"""Gate names, in the order they are checked (a rejected sample's reason is ``quality:<gate>``)."""

TEXTURE_KEYS = ("Clarity2012", "Texture", "GrainAmount", "Dehaze")
"""Preset settings that mean to change texture: such pairs are exempt from the structure gate."""

THUMB_SHORT = 128


class QualityRejected(SourceError):
    """A sample whose every draft failed a gate: skipped with reason ``quality:<gate>``."""

    def __init__(self, gate: str, path: str | None = None, detail: str = "") -> None:
        super().__init__(f"quality:{gate}", path, detail)
        self.gate = gate


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of redraw ``attempt`` (≥ 1) of a sample: a SeedSequence child of its own seed."""
    seq = np.random.SeedSequence(int(seed), spawn_key=(int(attempt),))
    return int(seq.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _thumb(img: np.ndarray) -> np.ndarray:
    """Float32 [0, 1] box thumbnail with a short edge of 128–255 px (8-bit box means when uint8)."""
    arr = np.asarray(img)
    small = box_shrink(arr, max(1, min(arr.shape[:2]) // THUMB_SHORT))
    if small.dtype == np.uint8:
        return small.astype(np.float32) * np.float32(1 / 255)
    return np.clip(small, 0.0, 1.0).astype(np.float32, copy=False)


def _lab(rgb01: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb01, dtype=np.float32), cv2.COLOR_RGB2Lab)


def lab_thumb(rgb01: np.ndarray) -> np.ndarray:
    """CIELAB of a float [0, 1] thumbnail, 2×2-box-shrunk first (the scale ``delta_e`` is taken at)."""
    return _lab(box_shrink(rgb01, 2))


def _grad_mag(luma: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x = x.ravel().astype(np.float64)
    y = y.ravel().astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    if den < 1e-12:  # a flat image: nothing to lose, or everything lost
        return 1.0 if float((x * x).sum()) < 1e-12 else 0.0
    return float((x * y).sum() / den)


def _clipped(rgb01: np.ndarray) -> np.ndarray:
    # np.maximum over the channels: numpy's length-3 reduce along the last axis is ~10× slower
    mx = np.maximum(np.maximum(rgb01[..., 0], rgb01[..., 1]), rgb01[..., 2])
    return (mx >= 254 / 255) | (mx <= 1 / 255)


_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _rgb_diff(a: np.ndarray, b: np.ndarray) -> float:
    return round(float(cv2.absdiff(a, b).mean()) * 255.0, 4)


class PairMeasurer:
    """`measure_pair` with the original's half prepared once: a sample's redraws all compare
    against the same photo, so its thumbnail, Lab copy, gradient and clipping mask are reused."""

    def __init__(self, original: np.ndarray) -> None:
        self.a = _thumb(original)
        self._lab_a = lab_thumb(self.a)
        self._grad_a = _grad_mag(self.a @ _LUMA)
        self._clip_a = _clipped(self.a)

    def rgb_diff(self, edited: np.ndarray) -> float:
        """Just ``rgb_diff`` (the cheapest measure: a redraw that fails it needs no other)."""
        b = _thumb(edited)
        h, w = min(self.a.shape[0], b.shape[0]), min(self.a.shape[1], b.shape[1])
        return _rgb_diff(self.a[:h, :w], b[:h, :w])

    def measure(self, edited: np.ndarray) -> dict[str, float]:
        """The gate measures of (original, ``edited``): see `measure_pair`."""
        a, b = self.a, _thumb(edited)
        lab_a, grad_a, clip_a = self._lab_a, self._grad_a, self._clip_a
        if a.shape != b.shape:  # a pair whose sides differ by a pixel: compare the common part
            h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
            a, b = np.ascontiguousarray(a[:h, :w]), np.ascontiguousarray(b[:h, :w])
            lab_a, grad_a, clip_a = lab_thumb(a), _grad_mag(a @ _LUMA), _clipped(a)
        # CIEDE2000 is trigonometry-heavy: its mean is taken on a further 2×2-shrunk copy (64–127 px)
        clip_b = _clipped(b)
        return {
            "delta_e": round(mean_ciede2000(lab_a, lab_thumb(b)), 4),
            "rgb_diff": _rgb_diff(a, b),
            "grad_corr": round(_corr(grad_a, _grad_mag(b @ _LUMA)), 4),
            "new_clipped": round(float((clip_b & ~clip_a).mean()), 5),
        }


def measure_pair(original: np.ndarray, edited: np.ndarray) -> dict[str, float]:
    """The gate measures of a pair: ``original`` is the untouched photo (param/style input, auto
    target), ``edited`` the other image. Symmetric except ``new_clipped`` (clipped in ``edited``
    only)."""
    return PairMeasurer(original).measure(edited)


def failed_gate(
    measures: Mapping[str, float],
    *,
    min_delta_e: float,
    min_rgb_diff: float,
    min_grad_corr: float,
    max_new_clipped: float,
    texture: bool = False,
    scores: Mapping[str, float] | None = None,
    target_not_worse: bool = False,
) -> str | None:
    """The first gate a pair fails (see `GATES`), or None when it passes them all."""
    if measures["delta_e"] < min_delta_e or measures["rgb_diff"] < min_rgb_diff:
        return "visible"
    if not texture and measures["grad_corr"] < min_grad_corr:
        return "structure"
    if measures["new_clipped"] > max_new_clipped:
        return "clipping"
    if target_not_worse and scores is not None:
        if scores["aesthetic_target"] < scores["aesthetic_input"]:
            return "aesthetic"
    return None


def failed_spec_gate(
    gates: GateSpec,
    measures: Mapping[str, float],
    *,
    protocol: str | None = None,
    texture: bool = False,
    scores: Mapping[str, float] | None = None,
) -> str | None:
    """`failed_gate` with one workflow's thresholds (``quality.<workflow>`` of the spec)."""
    return failed_gate(
        measures,
        min_delta_e=gates.delta_e_floor(protocol),
        min_rgb_diff=gates.min_rgb_diff,
        min_grad_corr=gates.min_grad_corr,
        max_new_clipped=gates.max_new_clipped,
        texture=texture,
        scores=scores,
        target_not_worse=gates.target_not_worse,
    )
