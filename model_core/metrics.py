"""The per-sample metrics of `aether eval --data`: one (output, target) pair → a dict of numbers.

Every number comes from the one metric implementation the benchmarks use,
`aether_data.scoring.fullref` (PSNR, SSIM with Wang et al.'s settings, L1, MonetGPT's histogram
intersections of luminance / contrast / saturation), so a model scored on held-out shards and on a
benchmark is scored the same way. LPIPS (piq's VGG variant) is added only when its weights are on
local disk (`aether_data.scoring.weights`); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache

import numpy as np

from aether_data.scoring import fullref as F
from aether_data.scoring.weights import MissingWeights, find_weight

HIST_NAMES = {"hist_l": "hist_luminance", "hist_c": "hist_contrast", "hist_s": "hist_saturation"}
"""The registry's short histogram names → the longer keys `aether eval --data` has always reported."""


@cache
def lpips_available() -> bool:
    """True when LPIPS can be computed here (VGG16 and LPIPS-head weights on local disk)."""
    try:
        find_weight(F.VGG16_FILE, "LPIPS (torchvision VGG16)")
        find_weight(F.LPIPS_FILE, "LPIPS (piq VGG linear head)")
    except MissingWeights:
        return False
    return True


def image_metrics(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM, L1, the three histogram intersections and (when available) LPIPS of one pair."""
    hist = F.hist_scores(out, target)
    m = {
        "psnr": F.psnr(out, target),
        "ssim": F.ssim(out, target),
        "l1": F.l1(out, target),
        **{long: hist[short] for short, long in HIST_NAMES.items()},
    }
    if lpips_available():
        m["lpips"] = F.lpips(out, target)
    return m


def aggregate(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over rows (keys missing in some rows average over the others)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for r in rows:
        for k, v in r.items():
            if v is None or not np.isfinite(v):
                continue
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
