"""Quality gates of a pair: visible change, structure kept, no new clipping, auto target not worse.

Every measure runs on integer-factor box thumbnails (short edge 128–255 px; CIEDE2000 on a 64–127 px
copy) in float32, vectorised (OpenCV colour conversion and Sobel, CIEDE2000 in numpy): a few
milliseconds a pair, next to the ~100 ms a sample's render and encodes cost. The measures:

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

import cv2
import numpy as np

from aether_data.io.errors import SourceError
from aether_data.io.imaging import box_shrink

__all__ = [
    "GATES",
    "TEXTURE_KEYS",
    "QualityRejected",
    "ciede2000",
    "failed_gate",
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


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) of two Lab arrays (..., 3), vectorised.

    Sharma, Wu & Dalal (2005); checked against their test data (tests/test_quality.py).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    c7 = c_bar**7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp = L2 - L1
    dCp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    Lbp = (L1 + L2) / 2
    Cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(
        np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2
    )
    hbp = np.where(c1p * c2p == 0, hsum, hbp)
    t = (
        1
        - 0.17 * np.cos(np.radians(hbp - 30))
        + 0.24 * np.cos(np.radians(2 * hbp))
        + 0.32 * np.cos(np.radians(3 * hbp + 6))
        - 0.20 * np.cos(np.radians(4 * hbp - 63))
    )
    d_theta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    cb7 = Cbp**7
    rc = 2 * np.sqrt(cb7 / (cb7 + 25.0**7))
    sl = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)
    sc = 1 + 0.045 * Cbp
    sh = 1 + 0.015 * Cbp * t
    rt = -np.sin(np.radians(2 * d_theta)) * rc
    return np.sqrt((dLp / sl) ** 2 + (dCp / sc) ** 2 + (dHp / sh) ** 2 + rt * (dCp / sc) * (dHp / sh))


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


def measure_pair(original: np.ndarray, edited: np.ndarray) -> dict[str, float]:
    """The gate measures of a pair: ``original`` is the untouched photo (param/style input, auto
    target), ``edited`` the other image. Symmetric except ``new_clipped`` (clipped in ``edited``
    only)."""
    a, b = _thumb(original), _thumb(edited)
    if a.shape != b.shape:
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        a, b = np.ascontiguousarray(a[:h, :w]), np.ascontiguousarray(b[:h, :w])
    # CIEDE2000 is trigonometry-heavy: its mean is taken on a further 2×2-shrunk copy (64–127 px)
    de = ciede2000(lab_thumb(a), lab_thumb(b))
    luma_a = a @ _LUMA
    luma_b = b @ _LUMA
    clip_a, clip_b = _clipped(a), _clipped(b)
    return {
        "delta_e": round(float(de.mean()), 4),
        "rgb_diff": round(float(cv2.absdiff(a, b).mean()) * 255.0, 4),
        "grad_corr": round(_corr(_grad_mag(luma_a), _grad_mag(luma_b)), 4),
        "new_clipped": round(float((clip_b & ~clip_a).mean()), 5),
    }


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
