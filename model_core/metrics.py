"""Image metrics of the paper's evaluation (Sec. 4): PSNR, SSIM, LPIPS, histogram intersections.

Images are float HxWx3 RGB arrays in [0, 1]. The histogram intersections compare the *distributions*
of three per-pixel quantities between output and target, as MonetGPT's protocol does: luminance
(Rec. 601 luma), contrast (local RMS contrast: std of luma in a 5×5 window) and saturation (HSV S).
Each is Σ min(p, q) over 64-bin normalised histograms, so 1.0 = identical distributions. LPIPS is
reported only when the `lpips` package and its weights are available locally (never downloaded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import cv2
import numpy as np

HIST_BINS = 64
CONTRAST_WINDOW = 5
HIST_RANGES: dict[str, tuple[float, float]] = {
    "luminance": (0.0, 1.0),
    "contrast": (0.0, 0.5),
    "saturation": (0.0, 1.0),
}


def _f32(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


def psnr(out: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak 1.0; capped at 100 dB for identical images)."""
    mse = float(np.mean((_f32(out).astype(np.float64) - _f32(target)) ** 2))
    return 100.0 if mse <= 1e-10 else float(10.0 * np.log10(1.0 / mse))


def ssim(out: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (scikit-image, Gaussian-weighted 7×7 windows, over RGB)."""
    from skimage.metrics import structural_similarity

    a, b = _f32(out), _f32(target)
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"image too small for SSIM: {a.shape}")
    return float(
        structural_similarity(
            a,
            b,
            channel_axis=2,
            data_range=1.0,
            win_size=win,
            gaussian_weights=win == 7,
            use_sample_covariance=False,
        )
    )


def luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma."""
    return _f32(img) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def local_contrast(img: np.ndarray, window: int = CONTRAST_WINDOW) -> np.ndarray:
    """Per-pixel RMS contrast: standard deviation of luma in a window × window box."""
    y = luminance(img)
    mean = cv2.blur(y, (window, window), borderType=cv2.BORDER_REFLECT)
    sq = cv2.blur(y * y, (window, window), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.clip(sq - mean * mean, 0.0, None))


def saturation(img: np.ndarray) -> np.ndarray:
    """HSV saturation (max − min) / max (0 for black)."""
    a = _f32(img)
    mx, mn = a.max(axis=2), a.min(axis=2)
    return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)


def hist_intersection(
    x: np.ndarray, y: np.ndarray, value_range: tuple[float, float], bins: int = HIST_BINS
) -> float:
    """Σ min(p, q) of the normalised histograms of two value arrays (1 = same distribution)."""
    hx, _ = np.histogram(np.ravel(x), bins=bins, range=value_range)
    hy, _ = np.histogram(np.ravel(y), bins=bins, range=value_range)
    px = hx / max(1, hx.sum())
    py = hy / max(1, hy.sum())
    return float(np.minimum(px, py).sum())


def histogram_intersections(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Luminance / contrast / saturation histogram intersections."""
    fns = {"luminance": luminance, "contrast": local_contrast, "saturation": saturation}
    return {f"hist_{k}": hist_intersection(fn(out), fn(target), HIST_RANGES[k]) for k, fn in fns.items()}


@cache
def _lpips_model() -> Any | None:
    try:
        import lpips  # type: ignore[import-not-found]

        return lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception:  # not installed, or weights not available offline
        return None


def lpips_available() -> bool:
    """True when LPIPS can be computed here (package and weights present)."""
    return _lpips_model() is not None


def lpips_distance(out: np.ndarray, target: np.ndarray) -> float | None:
    """LPIPS (AlexNet) distance, or None when unavailable."""
    model = _lpips_model()
    if model is None:
        return None
    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(_f32(a).transpose(2, 0, 1)).unsqueeze(0) * 2.0 - 1.0

    with torch.no_grad():
        return float(model(t(out), t(target)).mean())


def image_metrics(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """All metrics of one (output, target) pair."""
    m = {"psnr": psnr(out, target), "ssim": ssim(out, target), **histogram_intersections(out, target)}
    lp = lpips_distance(out, target)
    if lp is not None:
        m["lpips"] = lp
    return m


def aggregate(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over rows (keys missing in some rows average over the others)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in rows:
        for k, v in r.items():
            if v is None or not np.isfinite(v):
                continue
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
