"""No-reference quality / aesthetic scorers beyond LAION: Q-Align and LIQE, local weights only.

- ``qalign``: Q-Align (Wu et al. 2023), the official Hugging Face remote-code model (e.g. a local
  copy of ``q-future/one-align``), loaded with ``local_files_only=True``; its ``score(images,
  task_=…, input_="image")`` returns the expected rating on the 1–5 scale. Task ``quality`` or
  ``aesthetic``.
- ``liqe``: LIQE (Zhang et al. 2023), pyiqa's implementation (``pip install pyiqa``) with the
  checkpoint given as a local file (``pretrained_model_path``); pyiqa also needs its CLIP backbone in
  its cache. Scale 1–5.

Both raise `MissingWeights` (one line) when the weights are not on this machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aether_data.scoring.weights import MissingWeights, require_path


class QAlignScorer:
    name = "qalign"
    scale = (1.0, 5.0)

    def __init__(self, model_dir: str | None, task: str = "quality", device: str = "cpu") -> None:
        path = require_path(model_dir, "Q-Align", "--qalign-model DIR (a local q-future/one-align copy)")
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(
            str(path), trust_remote_code=True, local_files_only=True
        ).to(device)
        self.model.eval()
        self.task = task

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        from aether_data.io.imaging import to_pil_rgb

        if not images:
            return []
        out = self.model.score([to_pil_rgb(im) for im in images], task_=self.task, input_="image")
        return [float(v) for v in np.asarray(out.detach().cpu() if hasattr(out, "detach") else out).ravel()]


class LiqeScorer:
    name = "liqe"
    scale = (1.0, 5.0)

    def __init__(self, checkpoint: str | None, device: str = "cpu") -> None:
        path = require_path(checkpoint, "LIQE", "--liqe-model FILE (pyiqa's LIQE checkpoint)")
        try:
            import pyiqa
        except ImportError:
            raise MissingWeights("LIQE needs pyiqa: pip install pyiqa (weights stay local)") from None
        self.metric: Any = pyiqa.create_metric("liqe", pretrained_model_path=str(path), device=device)

    def score_batch(self, images: Sequence[np.ndarray]) -> list[float]:
        import torch

        from aether_data.scoring.fullref import as_float

        res = []
        for im in images:
            t = torch.from_numpy(np.ascontiguousarray(as_float(im).transpose(2, 0, 1))).unsqueeze(0)
            with torch.no_grad():
                res.append(float(self.metric(t)))
        return res
