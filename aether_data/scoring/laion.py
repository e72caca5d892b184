"""The `laion` aesthetic scorer: open_clip image embedding + the LAION aesthetic MLP head.

The public LAION "improved aesthetic predictor" (``sac+logos+ava1-l14-linearMSE.pth``) is an MLP on
L2-normalised CLIP ViT-L/14 image embeddings::

    layers = Sequential(Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
                        Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))

(no activations; that is how it was trained). `AestheticHead` has the same module indices, so the
published state dict (``layers.0.weight`` … ``layers.7.bias``) loads as is. Both files are local:
``scorer_model`` is an open_clip ``ARCH:/path/to/weights`` (e.g. ``ViT-L-14:/models/open_clip_vit_l14.bin``)
or a folder with ``open_clip_config.json`` + weights; the head is a ``.pth`` read with
``torch.load(weights_only=True)`` (no pickle code runs) or a ``.safetensors`` file. Nothing is ever
downloaded. Images are preprocessed with the model's own open_clip transform and scored in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aether_data.io.imaging import to_pil_rgb
from aether_data.scoring.heuristic import heuristic_score

HEAD_KEYS: tuple[str, ...] = tuple(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))


class Scorer(Protocol):
    """Anything that scores a batch of HxWx3 float images in [0, 1] (higher = better, on `scale`)."""

    name: str
    scale: tuple[float, float]

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]: ...


class HeuristicScorer:
    """The weight-free default (`aether_data.scoring.heuristic`), behind the batch interface.

    Its 0–10 scale is its own (a blend of exposure, contrast, colour, sharpness); it is not LAION.
    """

    name = "heuristic"
    scale = (0.0, 10.0)

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        return [heuristic_score(img) for img in images]


def _head_module(in_dim: int) -> Any:
    from torch import nn

    class AestheticHead(nn.Module):
        """The LAION aesthetic MLP (768→1024→128→64→16→1; dropout only active in training)."""

        def __init__(self, d: int) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(d, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x: Any) -> Any:
            return self.layers(x)

    return AestheticHead(in_dim)


def _strip(state: dict[str, Any]) -> dict[str, Any]:
    """Accept the head wrapped as {"state_dict": …} or saved from a module ("module." / "model.")."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        out[k] = v
    return out


def load_aesthetic_head(path: str | Path, device: str = "cpu") -> Any:
    """The LAION MLP head from a local ``.pth``/``.pt`` (weights_only) or ``.safetensors`` file, eval mode."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"aesthetic head not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p), device="cpu")
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickle with code in it, or not a torch file at all
            raise ValueError(
                f"{p}: not a weights-only torch state dict ({type(exc).__name__}: {exc})"
            ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(state).__name__}")
    state = _strip(state)
    missing = [k for k in HEAD_KEYS if k not in state]
    if missing:
        raise ValueError(
            f"{p}: not a LAION aesthetic head (missing {missing}); expected the 768→1024→128→64→16→1 MLP"
        )
    head = _head_module(int(state["layers.0.weight"].shape[1]))
    head.load_state_dict({k: state[k] for k in HEAD_KEYS}, strict=True)
    return head.to(device).eval()


class LaionScorer:
    """open_clip image embedding (L2-normalised) → LAION aesthetic head; batched, local files only."""

    name = "laion"
    scale = (0.0, 10.0)

    def __init__(self, clip_model: str, head: str | Path, device: str = "cpu", batch_size: int = 16) -> None:
        import open_clip

        from aether_data.presets.matching import _split_model_spec

        arch, ckpt = _split_model_spec(clip_model)
        if ckpt is not None and not Path(ckpt).is_file():
            raise FileNotFoundError(f"open_clip checkpoint not found: {ckpt}")
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=ckpt, device=device)
        self.model = model.eval()
        self.preprocess = preprocess
        self.head = load_aesthetic_head(head, device)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        dim = int(self.head.layers[0].weight.shape[1])
        probe = self.embed([np.zeros((32, 32, 3), np.float32)])
        if probe.shape[1] != dim:
            raise ValueError(
                f"aesthetic head expects {dim}-d embeddings but {arch} gives {probe.shape[1]}-d "
                "(the LAION head was trained on ViT-L/14, 768-d)"
            )

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 L2-normalised image embeddings."""
        import torch

        out = []
        for s in range(0, len(images), self.batch_size):
            batch = [self.preprocess(to_pil_rgb(im)) for im in images[s : s + self.batch_size]]
            with torch.no_grad():
                feats = self.model.encode_image(torch.stack(batch).to(self.device)).float()
            out.append((feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-6)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def score_embeddings(self, emb: np.ndarray) -> list[float]:
        """Head scores for precomputed normalised embeddings."""
        import torch

        with torch.no_grad():
            s = self.head(torch.as_tensor(emb, dtype=torch.float32, device=self.device))[:, 0]
        return [round(float(v), 4) for v in s.cpu()]

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        if not images:
            return []
        return self.score_embeddings(self.embed(images))
