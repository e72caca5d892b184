"""The develop engine as the encoder/renderer's teacher.

Training and evaluation only need "apply this 38-parameter edit to this batch of images"; this module
is the single place that calls the engine, so the trainer and the evaluator can never disagree on
how a ground-truth target was made.
"""

from __future__ import annotations

import numpy as np
import torch

from aether_data.develop import render_torch


@torch.no_grad()
def teacher_edit(images: torch.Tensor, vectors: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Apply normalised 38-parameter edits (B, 38) to images (B,3,H,W) in [0,1] with the torch engine."""
    vec = (
        torch.as_tensor(np.asarray(vectors, dtype=np.float32)) if isinstance(vectors, np.ndarray) else vectors
    )
    vec = vec.to(images.dtype)
    if vec.ndim != 2 or vec.shape != (images.shape[0], 38):
        raise ValueError(f"expected params of shape ({images.shape[0]}, 38), got {tuple(vec.shape)}")
    return render_torch(images, vec).clamp(0.0, 1.0)
