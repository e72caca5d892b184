"""Histogram features: what "a photo with a similar tonal and colour distribution" means.

Retrieval (paper Sec. 3.2) matches a high-aesthetic source to expert pairs whose *target* looks
alike in global tone and colour, so that the inverse edit of that pair is plausible for the source.
The feature is five normalised histograms, concatenated:

    luminance (Rec. 709 luma of sRGB values)   LUMA_BINS bins over [0, 1]
    R, G, B                                      RGB_BINS bins each over [0, 1]
    saturation (HSV: (max - min) / max)          SAT_BINS bins over [0, 1]

Each histogram sums to 1, computed on an area-downscaled copy (ANALYSIS_SIDE long edge): the
feature is a global statistic, and downscaling makes it cheap and resolution independent.

Distances. ``l2`` is the Euclidean distance between feature vectors. ``hellinger`` is the
Hellinger distance averaged over the five histograms, H(p, q)^2 = 1/2 ||sqrt p - sqrt q||^2, so
it equals a Euclidean distance between square-root features scaled by 1/sqrt(2 * 5): retrieval
with either distance is the same exact L2 search on transformed vectors (``embed``).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from aether_data.io.imaging import as_float01

LUMA_BINS = 32
RGB_BINS = 32
SAT_BINS = 16
ANALYSIS_SIDE = 128
FEATURE_DIM = LUMA_BINS + 3 * RGB_BINS + SAT_BINS
N_HISTOGRAMS = 5
SLICES: dict[str, slice] = {
    "luma": slice(0, LUMA_BINS),
    "r": slice(LUMA_BINS, LUMA_BINS + RGB_BINS),
    "g": slice(LUMA_BINS + RGB_BINS, LUMA_BINS + 2 * RGB_BINS),
    "b": slice(LUMA_BINS + 2 * RGB_BINS, LUMA_BINS + 3 * RGB_BINS),
    "sat": slice(LUMA_BINS + 3 * RGB_BINS, FEATURE_DIM),
}
Distance = Literal["hellinger", "l2"]
DISTANCES: tuple[str, ...] = ("hellinger", "l2")
FEATURE_VERSION = "hist-v1"
"""Stored in every DB: a DB built with other bins or analysis size is refused, not silently misused."""


def _small(image: np.ndarray) -> np.ndarray:
    img = as_float01(image)
    h, w = img.shape[:2]
    s = ANALYSIS_SIDE / max(h, w)
    if s < 1:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.clip(img, 0.0, 1.0)


def _hist(values: np.ndarray, bins: int) -> np.ndarray:
    idx = np.minimum((values.ravel() * bins).astype(np.int64), bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)


def histogram_features(image: np.ndarray) -> np.ndarray:
    """Feature vector (FEATURE_DIM,) float32 of an HxWx3 image, float in [0, 1] or uint8 (see module doc)."""
    img = _small(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {img.shape}")
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    luma = 0.2126 * r + 0.7152 * g + 0.0722 * b
    mx = np.maximum(np.maximum(r, g), b)  # same values as img.max(axis=2), ~10× faster
    mn = np.minimum(np.minimum(r, g), b)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    return np.concatenate(
        [
            _hist(luma, LUMA_BINS),
            _hist(r, RGB_BINS),
            _hist(g, RGB_BINS),
            _hist(b, RGB_BINS),
            _hist(sat, SAT_BINS),
        ]
    ).astype(np.float32)


def embed(features: np.ndarray, distance: Distance) -> np.ndarray:
    """Map features to vectors whose Euclidean distance *is* the chosen distance (float32)."""
    f = np.asarray(features, dtype=np.float32)
    if distance == "l2":
        return f
    if distance == "hellinger":
        return np.sqrt(np.maximum(f, 0.0)) / np.float32(np.sqrt(2.0 * N_HISTOGRAMS))
    raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")


def feature_distance(a: np.ndarray, b: np.ndarray, distance: Distance) -> float:
    """Distance between two feature vectors (the reference the index must agree with)."""
    ea, eb = embed(a, distance).astype(np.float64), embed(b, distance).astype(np.float64)
    return float(np.sqrt(np.sum((ea - eb) ** 2)))
