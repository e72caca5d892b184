"""Colour-transfer statistics of a (before, after) pair: an optional second input to the encoder.

Every edit the encoder must recover is (close to) a global colour map, and the quantities that
identify it are histogram statistics: how each tone band's luma and chroma move (exposure, contrast,
highlights/shadows/whites/blacks, temperature, tint) and how each hue band's colour moves (the HSL
mixer, saturation, vibrance). A small CNN trained from scratch on a CPU budget learns the tonal part
quickly but the colour part only weakly (model_core/checkpoints/MODEL_CARD.md); handing it these
statistics directly lets the CPU-sized encoder read the colour parameters. The paper config leaves
the branch off (``ERConfig.pair_stats_dim = 0``), so official weights load unchanged.

All statistics are soft-binned means over pixels, so they do not depend on image size and are
cheap (a few elementwise passes over the encoder's 64² input).
"""

from __future__ import annotations

import math

import torch
from torch import nn

TONE_BINS = 8
"""Soft bins over the before image's luma (tone-curve shape, per-tone colour casts)."""
HUE_BINS = 12
"""Soft bins over the before image's HSV hue, 30° apart (covers Lightroom's 8 HSL bands)."""
QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
"""Luma quantiles compared between before and after (robust exposure / contrast / clipping cues)."""

NUM_FEATURES = 4 * TONE_BINS + 6 * HUE_BINS + 2 * len(QUANTILES) + 6 + 2
"""Length of the vector `pair_statistics` returns."""


def _opponent(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(luma, red–blue, green–magenta) of (B,3,N) pixels in [0,1]."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return (r + g + b) / 3.0, (r - b) / 2.0, (2.0 * g - r - b) / 4.0


def _hsv_hue_chroma(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HSV hue in radians [0, 2π) and chroma (max − min) of (B,3,N) pixels."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    c = mx - mn
    safe = c.clamp_min(1e-6)
    h = torch.where(
        mx == r,
        torch.remainder((g - b) / safe, 6.0),
        torch.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    return h * (math.pi / 3.0), c


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Σ w·v / Σ w over pixels for (B,N) values and (B,K,N) weights → (B,K)."""
    return torch.einsum("bkn,bn->bk", weights, values) / total


@torch.no_grad()
def pair_statistics(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(B, NUM_FEATURES) colour-transfer statistics of two (B,3,H,W) images in [0, 1]."""
    if before.shape != after.shape or before.ndim != 4 or before.shape[1] != 3:
        raise ValueError(f"expected two (B,3,H,W) images, got {tuple(before.shape)} and {tuple(after.shape)}")
    bsz = before.shape[0]
    x0 = before.reshape(bsz, 3, -1).float().clamp(0.0, 1.0)
    x1 = after.reshape(bsz, 3, -1).float().clamp(0.0, 1.0)
    y0, u0, v0 = _opponent(x0)
    y1, u1, v1 = _opponent(x1)
    dy, du, dv = y1 - y0, u1 - u0, v1 - v0

    # Tone bins: triangular weights over the before luma.
    centres = torch.linspace(0.0, 1.0, TONE_BINS, device=x0.device)
    wt = (1.0 - (y0[:, None, :] - centres[None, :, None]).abs() * (TONE_BINS - 1)).clamp_min(0.0)
    nt = wt.sum(dim=2) + 1e-3
    tone = [wt.mean(dim=2)] + [_weighted_mean(d, wt, nt) for d in (dy, du, dv)]

    # Hue bins: triangular weights over the circular HSV hue, scaled by the before chroma.
    hue, chroma0 = _hsv_hue_chroma(x0)
    _, chroma1 = _hsv_hue_chroma(x1)
    phis = torch.arange(HUE_BINS, device=x0.device) * (2.0 * math.pi / HUE_BINS)
    diff = torch.remainder(hue[:, None, :] - phis[None, :, None] + math.pi, 2.0 * math.pi) - math.pi
    wh = (1.0 - diff.abs() * (HUE_BINS / (2.0 * math.pi))).clamp_min(0.0) * chroma0[:, None, :]
    nh = wh.sum(dim=2) + 1e-3
    c0 = _weighted_mean(chroma0, wh, nh)
    c1 = _weighted_mean(chroma1, wh, nh)
    hue_feats = [
        wh.mean(dim=2),
        *(_weighted_mean(d, wh, nh) for d in (dy, du, dv)),
        c0,
        torch.log((c1 + 1e-3) / (c0 + 1e-3)),
    ]

    q = torch.tensor(QUANTILES, device=x0.device)
    q0 = torch.quantile(y0, q, dim=1).T
    q1 = torch.quantile(y1, q, dim=1).T
    means = torch.cat([x0.mean(dim=2), x1.mean(dim=2) - x0.mean(dim=2)], dim=1)
    spread = torch.stack([y0.std(dim=1), torch.log((y1.std(dim=1) + 1e-3) / (y0.std(dim=1) + 1e-3))], dim=1)
    out = torch.cat([*tone, *hue_feats, q0, q1 - q0, means, spread], dim=1)
    assert out.shape[1] == NUM_FEATURES
    return out


class PairStatsBranch(nn.Module):
    """Statistics → BatchNorm (features differ in scale by orders of magnitude) → 2-layer MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(NUM_FEATURES)
        self.fc1 = nn.Linear(NUM_FEATURES, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """(B, width) features of two (B,3,H,W) images in [-1, 1]."""
        stats = pair_statistics((before + 1.0) * 0.5, (after + 1.0) * 0.5)
        return torch.relu(self.fc2(torch.relu(self.fc1(self.norm(stats)))))
