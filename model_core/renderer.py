"""Retouch Renderer R: a per-pixel MLP conditioned additively on the latent z.

For a fixed z, R is a pure RGB → RGB function (no spatial context), so it can be sampled on a
lattice once and applied to any resolution as a 3D LUT: that is how full-resolution photos are
retouched fast. Each hidden layer is Linear → ReLU → LayerNorm (the released order; configurable)
plus an additive ``Linear(3·d, h)(ReLU(z))`` injection (optionally leaky); the output is a sigmoid in [0, 1].
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_core.er_config import ERConfig

LOGIT_EPS = 1e-3
"""Input clamp before logit() in the residual form (keeps the skip finite at pure black/white)."""


class RendererLayer(nn.Module):
    """One hidden layer: pixel transform, normalisation and the latent injection."""

    def __init__(self, cin: int, cout: int, total_latent: int, norm_before_act: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.norm = nn.LayerNorm(cout)
        self.inject = nn.Linear(total_latent, cout)
        self.norm_before_act = norm_before_act

    def forward(self, x: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        h = torch.relu(self.norm(h)) if self.norm_before_act else self.norm(torch.relu(h))
        return h + injection


class RetouchRenderer(nn.Module):
    """R(image; z): (B,3,H,W) in [0,1] and z (B, 3·d) → (B,3,H,W) in [0,1]."""

    def __init__(self, config: ERConfig) -> None:
        super().__init__()
        self.config = config
        dims = (3, *config.renderer_hidden)
        self.layers = nn.ModuleList(
            RendererLayer(a, b, config.total_latent, config.norm_before_act)
            for a, b in itertools.pairwise(dims)
        )
        self.out = nn.Linear(dims[-1], 3)
        if config.residual_logit:
            # start from the identity map: the residual logit is zero until training moves it
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def injections(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer additive terms (B, 1, h): computed once per z, shared by every pixel."""
        slope = self.config.latent_negative_slope
        zr = F.leaky_relu(z, slope) if slope > 0 else torch.relu(z)
        return [layer.inject(zr).unsqueeze(1) for layer in self.layers]

    def mlp(self, rgb: torch.Tensor, injections: list[torch.Tensor]) -> torch.Tensor:
        """Colour map of pixels (B, N, 3) in [0,1] given precomputed injections."""
        x = rgb * 2.0 - 1.0 if self.config.signed_input else rgb
        for layer, inj in zip(self.layers, injections, strict=True):
            x = layer(x, inj)
        logits = self.out(x)
        if self.config.residual_logit:
            logits = logits + torch.logit(rgb.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS))
        return torch.sigmoid(logits)

    def forward(self, image: torch.Tensor, z: torch.Tensor, chunk_pixels: int | None = None) -> torch.Tensor:
        """Render (B,3,H,W); pixels are processed in chunks of `chunk_pixels` (default from config)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B,3,H,W), got {tuple(image.shape)}")
        if z.shape != (image.shape[0], self.config.total_latent):
            raise ValueError(
                f"z must be ({image.shape[0]}, {self.config.total_latent}), got {tuple(z.shape)}"
            )
        b, _, h, w = image.shape
        pixels = image.reshape(b, 3, h * w).transpose(1, 2)
        inj = self.injections(z)
        chunk = chunk_pixels or self.config.chunk_pixels
        if chunk <= 0 or h * w <= chunk:
            out = self.mlp(pixels, inj)
        else:
            out = torch.cat([self.mlp(pixels[:, s : s + chunk], inj) for s in range(0, h * w, chunk)], dim=1)
        return out.transpose(1, 2).reshape(b, 3, h, w)

    @torch.no_grad()
    def render_points(self, rgb: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """R(·; z) on (M, 3) colours in [0, 1] → (M, 3): a LUT's lattice points, or any subset."""
        z2 = z.reshape(1, -1).to(next(self.parameters()).dtype)
        points = rgb.reshape(1, -1, 3).to(z2.dtype)
        inj = self.injections(z2)
        chunk = self.config.chunk_pixels
        out = torch.cat(
            [self.mlp(points[:, s : s + chunk], inj) for s in range(0, points.shape[1], chunk)], dim=1
        )
        return out.reshape(-1, 3)

    @torch.no_grad()
    def bake_lut(self, z: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Sample R(·; z) on a size³ lattice → LUT (size, size, size, 3) indexed lut[r, g, b].

        `z` is (3·d,) or (1, 3·d). The lattice is evaluated in chunks, so size 65 is fine on CPU.
        """
        size = int(size or self.config.lut_size)
        if size < 2:
            raise ValueError("LUT size must be at least 2")
        dtype = next(self.parameters()).dtype
        axis = torch.linspace(0.0, 1.0, size, dtype=dtype, device=z.device)
        r, g, b = torch.meshgrid(axis, axis, axis, indexing="ij")
        lattice = torch.stack([r, g, b], dim=-1).reshape(-1, 3)
        return self.render_points(lattice, z).reshape(size, size, size, 3)


def apply_lut_torch(image: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Trilinear LUT lookup for (B,3,H,W) in [0,1] with a lut[r, g, b] → rgb table (grid_sample)."""
    if lut.ndim != 4 or lut.shape[-1] != 3 or not (lut.shape[0] == lut.shape[1] == lut.shape[2]):
        raise ValueError(f"lut must be (N,N,N,3), got {tuple(lut.shape)}")
    b, _, h, w = image.shape
    # grid_sample's volume is (C, D, H, W) = (3, r, g, b); its grid coordinates are (x, y, z) = (b, g, r).
    volume = lut.permute(3, 0, 1, 2).unsqueeze(0).to(image.dtype)
    grid = image.clamp(0.0, 1.0).permute(0, 2, 3, 1).flip(-1) * 2.0 - 1.0
    out = F.grid_sample(
        volume.expand(b, -1, -1, -1, -1),
        grid.reshape(b, 1, h, w, 3),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return out.reshape(b, 3, h, w)


def apply_lut_numpy(image: np.ndarray, lut: np.ndarray | torch.Tensor) -> np.ndarray:
    """Trilinear LUT lookup for an HxWx3 float image in [0,1] (returns float32 HxWx3)."""
    lut_t = torch.as_tensor(np.asarray(lut, dtype=np.float32))
    img = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return apply_lut_torch(img, lut_t)[0].permute(1, 2, 0).numpy()


def render_lut(
    renderer: RetouchRenderer, image: np.ndarray, z: torch.Tensor, size: int | None = None
) -> np.ndarray:
    """Full-resolution retouch of an HxWx3 float image in [0,1]: bake R(·; z) once, then look up."""
    lut = renderer.bake_lut(z, size)
    return apply_lut_numpy(image, lut)
