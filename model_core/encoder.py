"""Retouch Encoder E: a ResNet-18 with CBAM attention over the (before ‖ after) pair.

E reads the 6-channel concatenation of a reference pair in [-1, 1] and emits three latent blocks
[light, color&temp, colormixer] (paper Sec. 3.1, Eq. 1). The topology follows the released
VeraRetouch encoder ("Resnet18Encoder_InputCatMixedCBAM") so that its weights can be loaded
(`model_core.official`):

- stem: 7×7/2 conv (with bias) → BN → ReLU → 3×3/2 max-pool;
- 8 basic blocks (2 per stage, widths w, 2w, 4w, 8w); each block is
  conv3×3 → BN → ReLU → conv3×3 → BN → ReLU, plus a shortcut (identity, or 1×1/2 conv → BN → ReLU
  at the first block of stages 2–4), then an optional attention module, then ReLU;
- attention placement: spatial attention after blocks 0 and 1, CBAM (channel then spatial) after
  blocks 2 and 4, channel attention after block 6;
- global average pool → Linear(8w, 3 × latent_dim).

Optional (``ERConfig.pair_stats_dim > 0``, CPU config only): colour-transfer statistics of the pair
(`model_core.pair_stats`) go through a small MLP and are concatenated to the pooled features before
the head.

Channel attention uses average pooling only (as the released model does), not CBAM's avg+max.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model_core.er_config import ERConfig
from model_core.pair_stats import PairStatsBranch

ATTENTION_LAYOUT: tuple[str, ...] = ("spatial", "spatial", "cbam", "none", "cbam", "none", "channel", "none")
"""Attention module after each of the 8 residual blocks."""


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: per-channel weights from the globally pooled features."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """Per-position gate from the channel-wise max and mean maps (7×7 conv)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate followed by spatial gate."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


def _attention(kind: str, channels: int, reduction: int) -> nn.Module:
    if kind == "spatial":
        return SpatialAttention()
    if kind == "cbam":
        return CBAM(channels, reduction)
    if kind == "channel":
        return ChannelAttention(channels, reduction)
    return nn.Identity()


class Shortcut(nn.Module):
    """Projection shortcut of a down-sampling block (1×1/2 conv → BN → ReLU, as released)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """Basic ResNet block with the released model's ReLU placement and an attention slot."""

    def __init__(self, cin: int, cout: int, stride: int, attention: str, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            Shortcut(cin, cout, stride) if (stride != 1 or cin != cout) else nn.Identity()
        )
        self.attn = _attention(attention, cout, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.attn(y + self.shortcut(x)))


class Stem(nn.Module):
    """7×7/2 conv → BN → ReLU → 3×3/2 max-pool."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(cout)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.bn(self.conv(x))))


class RetouchEncoder(nn.Module):
    """E(before, after) → z = [z_l, z_gc, z_sc], shape (B, 3 × latent_dim)."""

    def __init__(self, config: ERConfig) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = config.latent_dim
        w = config.enc_width
        widths = (w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w)
        strides = (1, 1, 2, 1, 2, 1, 2, 1)
        self.stem = Stem(6, w)
        blocks = []
        cin = w
        for cout, stride, attn in zip(widths, strides, ATTENTION_LAYOUT, strict=True):
            blocks.append(ResidualBlock(cin, cout, stride, attn, config.cbam_reduction))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.stats: PairStatsBranch | None = (
            PairStatsBranch(config.pair_stats_dim) if config.pair_stats_dim > 0 else None
        )
        self.head = nn.Linear(8 * w + config.pair_stats_dim, 3 * config.latent_dim)

    def forward(self, before: torch.Tensor, after: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a pair. Either two (B,3,H,W) tensors in [-1, 1] or one (B,6,H,W) tensor."""
        x = before if after is None else torch.cat([before, after], dim=1)
        if x.shape[1] != 6:
            raise ValueError(f"encoder expects 6 input channels (before ‖ after), got {x.shape[1]}")
        pooled = self.stem(x)
        for block in self.blocks:
            pooled = block(pooled)
        feats = pooled.mean(dim=(2, 3))
        if self.stats is not None:
            feats = torch.cat([feats, self.stats(x[:, :3], x[:, 3:])], dim=1)
        return self.head(feats)

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split z into (z_l, z_gc, z_sc)."""
        d = self.latent_dim
        return z[:, :d], z[:, d : 2 * d], z[:, 2 * d :]


def mask_tensor(
    masks: Sequence[float] | torch.Tensor, batch: int, device: torch.device | None = None
) -> torch.Tensor:
    """Normalise masks to a float (B, 3) tensor: one triple for all, or one per sample."""
    m = torch.as_tensor(masks, dtype=torch.float32, device=device)
    if m.ndim == 1:
        m = m.unsqueeze(0).expand(batch, -1)
    if m.shape != (batch, 3):
        raise ValueError(f"masks must have shape (3,) or ({batch}, 3), got {tuple(m.shape)}")
    return m


def apply_masks(z: torch.Tensor, masks: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Eq. 2: multiply each latent block by its binary mask (masks (3,) or (B, 3))."""
    if z.ndim != 2 or z.shape[1] % 3:
        raise ValueError(f"z must have shape (B, 3·d), got {tuple(z.shape)}")
    d = z.shape[1] // 3
    m = mask_tensor(masks, z.shape[0], z.device).to(z.dtype)
    return z * m.repeat_interleave(d, dim=1)
