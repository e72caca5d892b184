"""Full-reference image metrics of the paper's Tables 1–2 (Sec. 4.1, "Metrics").

Images are HxWx3 float RGB arrays in [0, 1] (uint8 is accepted and divided by 255). Every function
compares a prediction with one reference; the benchmark protocols (best of five experts, pooled
expert histograms) live in `aether_data.evaluation`.

- ``l1``    mean absolute error over pixels and channels (the L_1 column).
- ``psnr``  10·log10(1 / MSE), peak 1.0 (capped at 100 dB for identical images).
- ``ssim``  scikit-image ``structural_similarity`` with Wang et al.'s settings: Gaussian σ = 1.5
  11×11 window, population covariance, over RGB channels, data range 1.
- ``hist_l`` / ``hist_c`` / ``hist_s`` / ``hist_m``: MonetGPT's histogram intersections Σ min(p, q)
  of 64-bin normalised histograms of luminance (Rec. 601 luma), contrast (RMS contrast: std of luma
  in a 5×5 window) and saturation (HSV S); Hist-M is their mean (Table 1 rows satisfy
  Hist-M = (L + C + S) / 3, e.g. RSFNet (82.00 + 72.08 + 79.05) / 3 = 77.71). Reported as fractions;
  the paper prints percentages.
- ``gmsd``  Gradient Magnitude Similarity Deviation (Xue et al. 2013), piq's implementation.
- ``td``    texture distortion: the mean absolute difference between the high-frequency luma
  components (luma − Gaussian(σ = 2) blur of luma) of prediction and reference, × 100. Dong et al.
  (2024, MovingColor) name the metric; their exact formula was not available to us offline, so this
  is our documented reading of "texture distortion", not a verified reproduction.
- ``lpips`` / ``dists``: VGG16-based deep metrics from piq (LPIPS is piq's VGG variant). They need
  the torchvision VGG16 weights plus the metric's own head; both are read from local files only (see
  `aether_data.scoring.weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aether_data.scoring.weights import find_weight

HIST_BINS = 64
CONTRAST_WINDOW = 5
TD_SIGMA = 2.0
HIST_FEATURES = ("luminance", "contrast", "saturation")
HIST_RANGES: dict[str, tuple[float, float]] = {
    "luminance": (0.0, 1.0),
    "contrast": (0.0, 0.5),
    "saturation": (0.0, 1.0),
}


def as_float(img: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in [0, 1] (uint8 divided by 255)."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    return np.clip(arr.astype(np.float32, copy=False), 0.0, 1.0)


def _pair(out: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_float(out), as_float(ref)
    if a.shape != b.shape:
        raise ValueError(f"prediction {a.shape} and reference {b.shape} differ in size")
    return a, b


def l1(out: np.ndarray, ref: np.ndarray) -> float:
    a, b = _pair(out, ref)
    return float(np.mean(np.abs(a.astype(np.float64) - b)))


def psnr(out: np.ndarray, ref: np.ndarray) -> float:
    a, b = _pair(out, ref)
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 100.0 if mse <= 1e-10 else float(10.0 * np.log10(1.0 / mse))


def ssim(out: np.ndarray, ref: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    a, b = _pair(out, ref)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"image too small for SSIM (11×11 window): {a.shape}")
    return float(
        structural_similarity(
            a.astype(np.float64),
            b.astype(np.float64),
            channel_axis=2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma."""
    return as_float(img) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def local_contrast(img: np.ndarray, window: int = CONTRAST_WINDOW) -> np.ndarray:
    """RMS contrast: std of luma in a window × window box (reflected borders)."""
    y = luminance(img)
    mean = cv2.blur(y, (window, window), borderType=cv2.BORDER_REFLECT)
    sq = cv2.blur(y * y, (window, window), borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.clip(sq - mean * mean, 0.0, None))


def saturation(img: np.ndarray) -> np.ndarray:
    """HSV saturation (max − min) / max (0 for black)."""
    a = as_float(img)
    mx, mn = a.max(axis=2), a.min(axis=2)
    return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)


HIST_FNS = {"luminance": luminance, "contrast": local_contrast, "saturation": saturation}


def feature_histogram(img: np.ndarray, feature: str, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised histogram (sums to 1) of one per-pixel feature."""
    h, _ = np.histogram(np.ravel(HIST_FNS[feature](img)), bins=bins, range=HIST_RANGES[feature])
    return h / max(1, int(h.sum()))


def pooled_histogram(images: Sequence[np.ndarray], feature: str, bins: int = HIST_BINS) -> np.ndarray:
    """Histogram of the aggregate distribution: all pixels of all images counted together."""
    total = np.zeros(bins, np.int64)
    for img in images:
        h, _ = np.histogram(np.ravel(HIST_FNS[feature](img)), bins=bins, range=HIST_RANGES[feature])
        total += h
    return total / max(1, int(total.sum()))


def intersection(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.minimum(p, q).sum())


def hist_scores(out: np.ndarray, refs: np.ndarray | Sequence[np.ndarray]) -> dict[str, float]:
    """hist_l / hist_c / hist_s / hist_m of a prediction against one reference or the pooled
    distribution of several (MonetGPT's FiveK protocol)."""
    refs_list = [refs] if isinstance(refs, np.ndarray) else list(refs)
    keys = {"luminance": "hist_l", "contrast": "hist_c", "saturation": "hist_s"}
    res = {
        keys[f]: intersection(feature_histogram(out, f), pooled_histogram(refs_list, f))
        for f in HIST_FEATURES
    }
    res["hist_m"] = (res["hist_l"] + res["hist_c"] + res["hist_s"]) / 3.0
    return res


def _nchw(img: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(as_float(img).transpose(2, 0, 1))).unsqueeze(0)


def gmsd(out: np.ndarray, ref: np.ndarray) -> float:
    import piq
    import torch

    a, b = _pair(out, ref)
    with torch.no_grad():
        return float(piq.gmsd(_nchw(a), _nchw(b), data_range=1.0))


def texture_distortion(out: np.ndarray, ref: np.ndarray, sigma: float = TD_SIGMA) -> float:
    a, b = _pair(out, ref)

    def hf(x: np.ndarray) -> np.ndarray:
        y = luminance(x)
        return y - cv2.GaussianBlur(y, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    return float(100.0 * np.mean(np.abs(hf(a).astype(np.float64) - hf(b))))


# ---- VGG16 deep metrics (piq) with local weights --------------------------------------------------

VGG16_FILE = "vgg16-397923af.pth"
DISTS_FILE = "dists_weights.pt"
LPIPS_FILE = "lpips_weights.pt"
_DEEP_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]


def vgg16_features(state: dict[str, Any] | None = None) -> Any:
    """torchvision VGG16 ``features`` (random init unless a state dict is given; keys with or
    without the ``features.`` prefix)."""
    from torchvision.models import vgg16

    feats = vgg16(weights=None).features
    if state is not None:
        sub = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")} or state
        feats.load_state_dict(sub, strict=True)
    return feats.eval()


def _load(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def build_dists(features: Any, head: dict[str, Any]) -> Any:
    """piq.DISTS on the given VGG16 features and alpha/beta head, without piq's downloads."""
    import torch
    from piq.perceptual import DISTS, VGG16_LAYERS, ContentLoss

    channels = [3, 64, 128, 256, 512, 512]
    weights = list(torch.split(head["alpha"], channels, dim=1)) + list(
        torch.split(head["beta"], channels, dim=1)
    )
    m = DISTS.__new__(DISTS)
    ContentLoss.__init__(
        m,
        features,
        layers=[VGG16_LAYERS[x] for x in _DEEP_LAYERS],
        weights=weights,
        replace_pooling=True,
        normalize_features=False,
        allow_layers_weights_mismatch=True,
    )
    return m.eval()


def build_lpips(features: Any, head: Sequence[Any]) -> Any:
    """piq.LPIPS (VGG16) on the given features and per-layer linear weights, without downloads."""
    from piq.perceptual import LPIPS, VGG16_LAYERS, ContentLoss

    m = LPIPS.__new__(LPIPS)
    ContentLoss.__init__(
        m,
        features,
        layers=[VGG16_LAYERS[x] for x in _DEEP_LAYERS],
        weights=list(head),
        replace_pooling=False,
        distance="mse",
        normalize_features=True,
    )
    return m.eval()


@cache
def _deep_metric(name: str, weights_dir: str | None) -> Any:
    vgg = _load(find_weight(VGG16_FILE, f"{name.upper()} (torchvision VGG16)", weights_dir))
    feats = vgg16_features(vgg)
    if name == "dists":
        return build_dists(feats, _load(find_weight(DISTS_FILE, "DISTS (piq alpha/beta head)", weights_dir)))
    return build_lpips(feats, _load(find_weight(LPIPS_FILE, "LPIPS (piq VGG linear head)", weights_dir)))


def deep_distance(model: Any, out: np.ndarray, ref: np.ndarray) -> float:
    import torch

    a, b = _pair(out, ref)
    with torch.no_grad():
        return float(model(_nchw(a), _nchw(b)))


def dists(out: np.ndarray, ref: np.ndarray, weights_dir: str | None = None) -> float:
    return deep_distance(_deep_metric("dists", weights_dir), out, ref)


def lpips(out: np.ndarray, ref: np.ndarray, weights_dir: str | None = None) -> float:
    return deep_distance(_deep_metric("lpips", weights_dir), out, ref)
