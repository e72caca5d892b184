"""Edit strengths: what real experts do to a photo, measured, and the param sampler calibrated to it.

`aether stats strength --pairs DIR` measures every before/after pair of a FiveK / PPR10K / paired
folder (the expert DB readers) on box thumbnails: mean CIEDE2000 (``delta_e``), Δ mean luma,
Δ contrast (luma standard deviation), Δ saturation, all in [0, 1] units except ΔE; with XMP
sidecars (``--xmp-pairs``) also the per-slider distribution of the expert's moves. The file holds
101 quantiles per measure (an inverse CDF), so a build can draw from it.

Calibration (``param.strength_stats`` / ``aether build --strength-stats FILE``): the param sampler
still draws a protocol and a parameter direction from `operator_stats`, then draws a target ΔE
from the reference's quantiles (seeded) and scales the parameters so the rendered pair has that
ΔE (bisection on renders of the gates' 128 px thumbnail). A direction that cannot reach the
drawn ΔE within 10% (an HSL band the photo lacks, sliders at their limits) is drawn again, up to
`CALIBRATION_TRIES` times, keeping the closest, so the drawn strengths are not biased toward what
the first direction could do. The built ΔE distribution
then follows the reference's (KS distance measured in tests/test_strength.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aether_data.color_difference import mean_ciede2000
from aether_data.io.imaging import as_float01, box_shrink
from aether_data.quality import THUMB_SHORT, lab_thumb

__all__ = [
    "MEASURES",
    "StrengthStats",
    "edit_strengths",
    "ks_distance",
    "load_strength_stats",
    "scale_to_delta_e",
    "strength_doc",
]

MEASURES = ("delta_e", "d_luma", "d_contrast", "d_saturation")
QUANTILES = np.linspace(0.0, 1.0, 101)
SCALE_STEPS = 10
"""Bisection steps of the calibrated sampler (each one thumbnail render)."""
CALIBRATION_TRIES = 4
"""Parameter directions tried per calibrated sample (the closest to the drawn ΔE is kept)."""

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _small(img: np.ndarray, short: int = THUMB_SHORT) -> np.ndarray:
    arr = np.asarray(img)
    return as_float01(box_shrink(arr, max(1, min(arr.shape[:2]) // short)))


def _sat(rgb: np.ndarray) -> float:
    mx = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    mn = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    return float(np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0).mean())


def edit_strengths(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """The strength of one edit (uint8 or float [0, 1] images of the same picture), measured at the
    quality gates' scale (``delta_e`` equals `quality.measure_pair`'s)."""
    a, b = _small(before), _small(after)
    if a.shape != b.shape:
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        a, b = a[:h, :w], b[:h, :w]
    la, lb = a @ _LUMA, b @ _LUMA
    return {
        "delta_e": mean_ciede2000(lab_thumb(a), lab_thumb(b)),
        "d_luma": float(lb.mean() - la.mean()),
        "d_contrast": float(lb.std() - la.std()),
        "d_saturation": _sat(b) - _sat(a),
    }


def _summary(values: Iterable[float]) -> dict[str, Any]:
    v = np.asarray(list(values), dtype=np.float64)
    return {
        "n": int(v.size),
        "mean": round(float(v.mean()), 5),
        "std": round(float(v.std()), 5),
        "quantiles": [round(float(q), 5) for q in np.quantile(v, QUANTILES)],
    }


def strength_doc(
    measured: list[dict[str, float]],
    origin: str,
    sliders: Mapping[str, list[float]] | None = None,
    n_pairs: int | None = None,
) -> dict[str, Any]:
    """The strength-stats document (YAML): per measure n, mean, std and 101 quantiles; per slider
    (when XMP sidecars were read) the share of pairs that move it and the quantiles of its moves."""
    if not measured:
        raise ValueError("no pairs measured")
    doc: dict[str, Any] = {
        "version": 1,
        "origin": origin,
        "pairs": len(measured),
        "measures": {m: _summary(r[m] for r in measured) for m in MEASURES},
    }
    if sliders:
        total = n_pairs or max(len(v) for v in sliders.values())
        doc["sliders"] = {
            name: {"p_active": round(len(moves) / max(total, 1), 4), **_summary(moves)}
            for name, moves in sliders.items()
            if moves
        }
    return doc


class StrengthStats:
    """A loaded strength-stats file: inverse CDFs to draw target strengths from."""

    def __init__(self, doc: Mapping[str, Any], path: str = "") -> None:
        try:
            self.quantiles = {
                m: np.asarray(doc["measures"][m]["quantiles"], dtype=np.float64) for m in MEASURES
            }
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a strength-stats file (missing {exc})") from None
        self.origin = str(doc.get("origin", path))

    def draw(self, rng: np.random.Generator, measure: str = "delta_e", floor: float | None = None) -> float:
        """One value drawn from the measure's distribution (inverse CDF, linear between quantiles),
        above `floor` when given (the visible-change gate's: no draw is made only to be redrawn)."""
        q = self.quantiles[measure]
        p = np.linspace(0.0, 1.0, q.size)
        lo = float(np.interp(floor, q, p)) if floor is not None and floor > q[0] else 0.0
        return float(np.interp(lo + (1.0 - lo) * rng.random(), p, q))

    def values(self, measure: str = "delta_e") -> np.ndarray:
        return self.quantiles[measure]


def load_strength_stats(path: str | Path) -> StrengthStats:
    p = Path(path)
    doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a mapping")
    return StrengthStats(doc, str(p))


def scale_to_delta_e(
    thumb: np.ndarray,
    render: Callable[[float], np.ndarray],
    target: float,
    s_max: float = 8.0,
    steps: int = SCALE_STEPS,
) -> tuple[float, float]:
    """(scale s in [0, s_max], its ΔE): the render ``render(s)`` of the thumbnail closest to mean
    ΔE ``target`` (bracket by doubling, then bisection; ΔE grows with an edit's strength)."""
    base = lab_thumb(as_float01(thumb))

    def de(s: float) -> float:
        return mean_ciede2000(base, lab_thumb(as_float01(render(s))))

    lo, hi = 0.0, 1.0
    d_hi = de(hi)
    while d_hi < target and hi < s_max:  # grow the bracket: the draw is weaker than asked
        lo, hi = hi, min(hi * 2, s_max)
        d_hi = de(hi)
    if d_hi <= target:
        return hi, d_hi
    best, got = hi, d_hi
    for _ in range(steps):
        mid = (lo + hi) / 2
        d = de(mid)
        if abs(d - target) < abs(got - target):
            best, got = mid, d
        if abs(d - target) <= 0.02 * target:
            break
        if d < target:
            lo = mid
        else:
            hi = mid
    return best, got


def ks_distance(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sample Kolmogorov–Smirnov distance (max |F_a − F_b|)."""
    x, y = np.sort(np.asarray(list(a), float)), np.sort(np.asarray(list(b), float))
    grid = np.concatenate([x, y])
    fa = np.searchsorted(x, grid, side="right") / x.size
    fb = np.searchsorted(y, grid, side="right") / y.size
    return float(np.abs(fa - fb).max())
