"""Per-region rendering: one parameter set per label, soft feathered weights, boundary perturbation.

The target of a region sample is ``Σ_k w_k · render(input, params_k)`` where the weights come from
the stored label map: one-hot per label, shifted by ``shift = (dy, dx)`` pixels (PerTouch's
parameter perturbation near boundaries: the parameter map no longer follows the mask exactly) and
blurred with a Gaussian of ``sigma`` pixels (feathered boundaries), then normalised to sum 1. Each
``render`` is the core engine through an 8-bit LUT (``render_lut8``), so the whole function is
deterministic: a reader holding ``{key}.masks.png``, the stored parameters and the boundary recipe
re-renders the target from the stored input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from aether_data.develop.lut import render_lut8, to_u8
from aether_data.io.imaging import as_float01


def region_weights(
    labels: np.ndarray, n: int, shift: tuple[int, int] = (0, 0), sigma: float = 0.0
) -> np.ndarray:
    """(n, H, W) float32 weights summing to 1 per pixel: one-hot labels, shifted, blurred."""
    lab = np.asarray(labels)
    h, w = lab.shape
    dy, dx = int(shift[0]), int(shift[1])
    if dy or dx:
        mat = np.float32([[1, 0, dx], [0, 1, dy]])
        lab = cv2.warpAffine(
            lab.astype(np.uint8), mat, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE
        )
    out = np.empty((n, h, w), np.float32)
    for k in range(n):
        m = (lab == k).astype(np.float32)
        if sigma > 0:
            m = cv2.GaussianBlur(
                m, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REPLICATE
            )
        out[k] = m
    total = out.sum(axis=0)
    empty = total <= 1e-6
    out /= np.where(empty, 1.0, total)[None]
    if np.any(empty):  # cannot happen for labels < n; kept for safety: unchanged pixels
        out[0][empty] = 1.0
    return out


def render_regions(
    image: np.ndarray,
    labels: np.ndarray,
    params: Sequence[Mapping[str, float]],
    shift: tuple[int, int] = (0, 0),
    sigma: float = 0.0,
) -> np.ndarray:
    """The region target (uint8 HxWx3): label k of ``labels`` developed with ``params[k]``."""
    u8 = to_u8(image) if np.asarray(image).dtype != np.uint8 else np.asarray(image)
    weights = region_weights(labels, len(params), shift, sigma)
    base = as_float01(u8)
    out = np.zeros(base.shape, np.float32)
    for k, p in enumerate(params):
        w = weights[k][..., None]
        if not np.any(w > 0):
            continue
        layer = base if not any(float(v) for v in p.values()) else render_lut8(u8, dict(p), dtype=np.float32)
        out += w * layer
    return to_u8(np.clip(out, 0.0, 1.0))


__all__ = ["region_weights", "render_regions"]
