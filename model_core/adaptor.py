"""Retouch Adaptor: the MLP that maps the LLM's retouch-token hidden states to renderer latents.

Paper Sec. 3.3 ("domain align"): hidden states of an LLM live in a different space than the control
latents the Retouch Encoder produced, so feeding them to the renderer directly gives broken images.
A small bottleneck MLP bridges the two. With FastVLM-0.5B (Qwen2 hidden size 896) and the paper
renderer (3 × 896 latents) the shape is 2688 → 1344 → 1344 → 2688: the three hidden states are
concatenated ([light, color&temp, colormixer] order), halved, kept, and expanded to the three latent
blocks. Every hidden layer is Linear → LayerNorm → GELU; the last layer is linear so latents can take
any sign (the renderer applies ReLU to z itself).
"""

from __future__ import annotations

import torch
from torch import nn

NUM_GROUPS = 3
"""Latent groups / retouch tokens: light, color&temp (global colour), colormixer (specific colour)."""


class RetouchAdaptor(nn.Module):
    """(B, 3, H) hidden states (or (B, 3H)) → (B, 3·d) latents.

    `hidden_size` is the LLM width H, `latent_dim` the renderer's per-group latent d, `bottleneck`
    the middle width (default 3H / 2, i.e. 1344 for H = 896).
    """

    def __init__(self, hidden_size: int, latent_dim: int, bottleneck: int | None = None) -> None:
        super().__init__()
        d_in = NUM_GROUPS * hidden_size
        mid = int(bottleneck or d_in // 2)
        self.hidden_size = hidden_size
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.Linear(d_in, mid),
            nn.LayerNorm(mid),
            nn.GELU(),
            nn.Linear(mid, mid),
            nn.LayerNorm(mid),
            nn.GELU(),
            nn.Linear(mid, NUM_GROUPS * latent_dim),
        )

    @property
    def dims(self) -> tuple[int, ...]:
        """Widths of the MLP, input to output (for docs and tests)."""
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        return (linears[0].in_features, *(m.out_features for m in linears))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.ndim == 3:
            if hidden.shape[1] != NUM_GROUPS:
                raise ValueError(f"expected (B, {NUM_GROUPS}, H) hidden states, got {tuple(hidden.shape)}")
            hidden = hidden.reshape(hidden.shape[0], -1)
        if hidden.ndim != 2 or hidden.shape[1] != NUM_GROUPS * self.hidden_size:
            raise ValueError(f"expected (B, {NUM_GROUPS * self.hidden_size}), got {tuple(hidden.shape)}")
        return self.net(hidden)
