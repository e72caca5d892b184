"""One registry of every metric of the paper's Tables 1–2 and of the no-reference scorers.

`METRICS` maps a metric name to a `MetricSpec`: its table label, kind (``full`` = compares with one
reference, ``hist`` = histogram intersection, ``noref`` = scores the prediction alone), whether
higher is better and whether the FiveK protocol takes the best over the expert retouches (PSNR,
SSIM, LPIPS, DISTS as MonetGPT/the paper say; we also take the best for L1, GMSD and TD, which the
paper does not specify). `make_scorer` builds a no-reference scorer by name; it serves `aether eval`,
the auto workflow's source filter (``auto.scorer`` / ``auto.min_source_score``) and the DAPO
aesthetic reward (``dapo.aesthetic_scorer``).

Each scorer has a ``scale`` (lo, hi) so callers can normalise: ``heuristic`` is our weight-free
blend on its own 0–10 scale (not LAION's), ``laion`` ~0–10, ``qalign`` and ``liqe`` 1–5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

import aether_data.scoring.fullref as F

Kind = Literal["full", "hist", "noref"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str
    kind: Kind
    higher_is_better: bool
    best_of_experts: bool = False
    fn: Callable[..., float] | None = None
    needs_weights: bool = False

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("l1", "L1", "full", False, True, F.l1),
        MetricSpec("psnr", "PSNR", "full", True, True, F.psnr),
        MetricSpec("ssim", "SSIM", "full", True, True, F.ssim),
        MetricSpec("lpips", "LPIPS", "full", False, True, F.lpips, needs_weights=True),
        MetricSpec("hist_l", "Hist-L", "hist", True),
        MetricSpec("hist_c", "Hist-C", "hist", True),
        MetricSpec("hist_s", "Hist-S", "hist", True),
        MetricSpec("hist_m", "Hist-M", "hist", True),
        MetricSpec("laion", "LAION", "noref", True, needs_weights=True),
        MetricSpec("qalign", "Q-Align", "noref", True, needs_weights=True),
        MetricSpec("liqe", "LIQE", "noref", True, needs_weights=True),
        MetricSpec("dists", "DISTS", "full", False, True, F.dists, needs_weights=True),
        MetricSpec("gmsd", "GMSD", "full", False, True, F.gmsd),
        MetricSpec("td", "TD", "full", False, True, F.texture_distortion),
    )
}

# The columns of the paper's tables, in order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "fivek": (
        "psnr", "ssim", "lpips", "hist_l", "hist_c", "hist_s", "hist_m",
        "laion", "qalign", "liqe", "dists", "gmsd", "td",
    ),
    "auto": ("hist_m", "laion", "qalign", "liqe", "dists", "gmsd", "td"),
    "style": ("l1", "psnr", "ssim", "lpips", "dists", "gmsd", "td"),
    "param": ("l1", "psnr", "ssim", "lpips", "dists", "gmsd", "td"),
}  # fmt: skip

SCORERS = ("heuristic", "laion", "qalign", "liqe")


def full_reference(name: str, out: np.ndarray, ref: np.ndarray, weights_dir: str | None = None) -> float:
    spec = METRICS[name]
    if spec.kind != "full" or spec.fn is None:
        raise ValueError(f"{name} is not a full-reference metric")
    if spec.needs_weights:
        return float(spec.fn(out, ref, weights_dir=weights_dir))
    return float(spec.fn(out, ref))


def make_scorer(
    name: str,
    model: str | None = None,
    head: str | None = None,
    device: str = "cpu",
    batch_size: int = 16,
    **options: Any,
) -> Any:
    """A no-reference scorer (``score_batch(images) -> list[float]``, ``name``, ``scale``).

    heuristic: no weights. laion: `model` = open_clip ``ARCH:/path`` or folder, `head` = LAION MLP
    (any open_clip arch + a head of matching width: a generic CLIP-feature scorer). qalign: `model` =
    local model folder (``task`` option). liqe: `model` = local checkpoint.
    """
    from aether_data.scoring.laion import HeuristicScorer, LaionScorer

    if name == "heuristic":
        return HeuristicScorer()
    if name == "laion":
        if not model or not head:
            raise ValueError(
                "the laion scorer needs scorer_model ('ViT-L-14:/path/to/open_clip weights' or a local "
                "open_clip folder) and scorer_head (the LAION aesthetic MLP .pth/.safetensors)"
            )
        return LaionScorer(model, head, device=device, batch_size=batch_size)
    if name == "qalign":
        from aether_data.scoring.noref import QAlignScorer

        return QAlignScorer(model, task=str(options.get("task", "quality")), device=device)
    if name == "liqe":
        from aether_data.scoring.noref import LiqeScorer

        return LiqeScorer(model, device=device)
    raise ValueError(f"unknown scorer {name!r}; expected one of {', '.join(SCORERS)}")


def scorer_scale(scorer: Any) -> tuple[float, float]:
    return tuple(getattr(scorer, "scale", (0.0, 10.0)))  # type: ignore[return-value]


def normalised(scorer: Any, images: list[np.ndarray]) -> list[float]:
    """Scores mapped linearly from the scorer's scale to [0, 1] (clipped)."""
    lo, hi = scorer_scale(scorer)
    return [float(np.clip((s - lo) / (hi - lo), 0.0, 1.0)) for s in scorer.score_batch(images)]
