"""Parametric fitting: the 38 develop sliders that best map one image onto another.

The auto workflow's encoder/renderer branch degrades a photo with a learned latent, so the
corrective edit (degraded input → target) is not known as parameters. It is estimated here by
gradient descent through the differentiable develop engine (`render_torch`), at low resolution
(the engine is per-pixel and the edit global, so a few thousand pixels determine it):

    minimise  mean |render(input; p) − target|  +  SPARSITY · Σ|p|      over p ∈ [-1, 1]^38

with Adam from p = 0, only over the parameters of the allowed groups (the renderer's active latent
groups). The L1 penalty keeps sliders the edit does not need at zero, so the annotation names the
real defect rather than a cloud of tiny compensating moves. The best iterate is kept, values below
DEAD_ZONE are zeroed, the rest rounded to slider precision, then sliders that barely matter are
pruned (`_prune`); if the result does not beat doing nothing, no parameters are returned at all
(an honest "no fit").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from aether_data import params as P

SPARSITY = 2e-3
DEAD_ZONE = 0.01
"""Normalised magnitude below which a fitted slider is dropped (an invisible move)."""
PRUNE_TOLERANCE = 0.03
"""Sliders are pruned while the L1 error stays within 3 % of the full fit's (see `_prune`)."""


@dataclass(frozen=True)
class FitResult:
    """Fitted corrective sliders (slider scale, active ones only) and how well they explain the pair."""

    params: dict[str, float]
    psnr_before: float
    psnr_after: float
    steps: int

    @property
    def improved(self) -> bool:
        return self.psnr_after > self.psnr_before


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    The tensors here are tiny (a few thousand pixels, one LUT), so extra threads only add
    synchronisation; on a shared machine 2 threads were 3-4x *slower* than 1. One thread also makes
    results independent of the caller's thread count (in-process vs a Ray actor: same bytes).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _small(img: np.ndarray, pixels: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(1.0, float(np.sqrt(pixels / (h * w))))
    if s >= 1.0:
        return np.ascontiguousarray(img, dtype=np.float32)
    size = (max(4, round(w * s)), max(4, round(h * s)))
    return cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 99.0 if mse <= 1e-12 else 10.0 * np.log10(1.0 / mse)


def _quantise(vec: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in zip(P.PARAM_NAMES, vec):
        if abs(float(v)) < DEAD_ZONE:
            continue
        spec = P.SPECS[name]
        slider = float(np.clip(P.denormalise(name, float(v)), spec.minimum, spec.maximum))
        slider = round(slider, 2) if name == "Exposure2012" else float(round(slider))
        if abs(P.normalise(name, slider)) >= P.MASK_EPS:
            out[name] = slider
    return out


def _prune(fitted: dict[str, float], x: Any, y: Any) -> dict[str, float]:
    """Drop sliders (smallest first) whose removal costs < PRUNE_TOLERANCE of the fit's L1 error.

    Gradient descent leaves many tiny compensating moves; each would become a sentence of the
    annotation. The tolerance is relative to the full fit, so all drops together stay within it.
    """
    import torch

    from aether_data.develop import render_torch

    def loss(p: dict[str, float]) -> float:
        with torch.no_grad():
            return float((render_torch(x, torch.from_numpy(P.to_vector(p))[None]) - y).abs().mean())

    limit = loss(fitted) * (1.0 + PRUNE_TOLERANCE) + 1e-6
    out = dict(fitted)
    for name in sorted(fitted, key=lambda n: abs(P.normalise(n, fitted[n]))):
        trial = {k: v for k, v in out.items() if k != name}
        if trial and loss(trial) <= limit:
            out = trial
    return out


def fit_params(
    input_img: np.ndarray,
    target_img: np.ndarray,
    groups: Sequence[int] = (1, 1, 1),
    steps: int = 40,
    pixels: int = 4096,
    lr: float = 0.05,
) -> FitResult:
    """Sliders p (slider scale) such that ``render(input_img, p) ≈ target_img`` (see module doc).

    Runs on one torch thread (see `single_thread`), so it is deterministic wherever it runs.
    """
    with single_thread():
        return _fit(input_img, target_img, groups, steps, pixels, lr)


def _fit(
    input_img: np.ndarray, target_img: np.ndarray, groups: Sequence[int], steps: int, pixels: int, lr: float
) -> FitResult:
    import torch

    from aether_data.develop import render_torch

    x_np, y_np = _small(input_img, pixels), _small(target_img, pixels)
    x = torch.from_numpy(x_np).permute(2, 0, 1)[None].contiguous()
    y = torch.from_numpy(y_np).permute(2, 0, 1)[None].contiguous()
    allowed = torch.zeros(1, len(P.PARAM_NAMES))
    for g, on in zip(P.GROUPS, groups):
        if on:
            for name in P.GROUP_PARAMS[g]:
                allowed[0, P.PARAM_NAMES.index(name)] = 1.0
    theta = torch.zeros(1, len(P.PARAM_NAMES), requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr)
    best_loss, best = float("inf"), torch.zeros_like(theta)
    for _ in range(max(0, steps)):
        p = theta * allowed
        loss = (render_torch(x, p) - y).abs().mean()
        value = float(loss.detach())
        if value < best_loss:
            best_loss, best = value, p.detach().clone()
        total = loss + SPARSITY * p.abs().sum()
        opt.zero_grad()
        total.backward()
        opt.step()
        with torch.no_grad():
            theta.clamp_(-1.0, 1.0)
    fitted = _prune(_quantise(best[0].numpy()), x, y)
    before = _psnr(x_np, y_np)
    if not fitted:
        return FitResult({}, before, before, steps)
    with torch.no_grad():
        vec = torch.from_numpy(P.to_vector(fitted))[None]
        after = _psnr(render_torch(x, vec)[0].permute(1, 2, 0).numpy(), y_np)
    if after <= before:
        return FitResult({}, before, before, steps)
    return FitResult(fitted, before, after, steps)
