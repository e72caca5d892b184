"""What is measurable in a photo, for the "Key elements" line and the VLM's context.

Why: the template annotator's key-elements line used to be the same sentence on every sample ("the
main subject and its surroundings") unless a caller supplied a scene description. These cheap pixel
measures (on the 64–127 px thumbnail `workflows.base.image_stats` already makes) give each photo its
own grounded line: dominant hues, sky / skin / foliage shares, brightness zones and where the
visually distinct region (the likely subject) sits. They are heuristics, stated as shares and
positions, never as object names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

HUE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("red", 345.0, 15.0),
    ("orange", 15.0, 45.0),
    ("yellow", 45.0, 70.0),
    ("green", 70.0, 165.0),
    ("aqua", 165.0, 200.0),
    ("blue", 200.0, 260.0),
    ("purple", 260.0, 295.0),
    ("magenta", 295.0, 345.0),
)
"""Hue bands (degrees) named like Lightroom's HSL panel."""


def _hsv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    d = mx - mn
    safe = np.where(d > 1e-6, d, 1.0)
    h = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    h = np.where(d > 1e-6, h * 60.0, 0.0)
    s = np.where(mx > 1e-6, d / np.maximum(mx, 1e-6), 0.0)
    return h, s, mx


def content_stats(image: np.ndarray) -> dict[str, float]:
    """Float [0, 1] HxWx3 thumbnail → shares (0–1) and positions (0 = left/top, 1 = right/bottom).

    Keys: hue_<band> (share of coloured pixels per hue band), sky, skin, foliage (shares of the
    frame), shadows / highlights (luminance < 0.25 / > 0.75), subject_x / subject_y (centroid of
    the pixels that differ most from the frame's average tone and colour).
    """
    img = np.asarray(image, np.float32)
    h, s, v = _hsv(img)
    rows = np.linspace(0.0, 1.0, img.shape[0], dtype=np.float32)[:, None] * np.ones(
        (1, img.shape[1]), np.float32
    )
    cols = np.linspace(0.0, 1.0, img.shape[1], dtype=np.float32)[None, :] * np.ones(
        (img.shape[0], 1), np.float32
    )
    lum = 0.2126 * img[..., 0] + 0.7152 * img[..., 1] + 0.0722 * img[..., 2]
    coloured = (s > 0.15) & (v > 0.12)
    n_col = max(int(coloured.sum()), 1)
    out: dict[str, float] = {}
    for name, lo, hi in HUE_BANDS:
        band = (h >= lo) | (h < hi) if lo > hi else (h >= lo) & (h < hi)
        out[f"hue_{name}"] = float((band & coloured).sum() / n_col)
    out["sky"] = float(((h >= 190) & (h < 250) & (s > 0.12) & (v > 0.45) & (rows < 0.6)).mean())
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    out["skin"] = float(
        ((h >= 5) & (h < 45) & (s > 0.15) & (s < 0.65) & (v > 0.3) & (r > g) & (g > b)).mean()
    )
    out["foliage"] = float(((h >= 70) & (h < 165) & (s > 0.2) & (v > 0.08) & (v < 0.9)).mean())
    out["shadows"] = float((lum < 0.25).mean())
    out["highlights"] = float((lum > 0.75).mean())
    sal = np.abs(lum - lum.mean()) + np.abs(s - s.mean())
    weight = np.where(sal >= np.quantile(sal, 0.8), sal, 0.0)
    total = float(weight.sum())
    out["subject_x"] = float((weight * cols).sum() / total) if total > 1e-9 else 0.5
    out["subject_y"] = float((weight * rows).sum() / total) if total > 1e-9 else 0.5
    return out


def _num(stats: Mapping[str, Any], key: str) -> float | None:
    v = stats.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _pct(x: float) -> str:
    return f"{round(x * 20) * 5}%"


def _where(x: float, y: float) -> str:
    col = "left" if x < 0.4 else "right" if x > 0.6 else "centre"
    row = "upper" if y < 0.4 else "lower" if y > 0.6 else "middle"
    if col == "centre" and row == "middle":
        return "near the centre"
    if col == "centre":
        return f"in the {row} centre"
    return f"in the {row} {col}" if row != "middle" else f"on the {col}"


def describe_content(stats: Mapping[str, Any] | None) -> list[str]:
    """Phrases for the key-elements line from content_stats keys (missing keys are skipped)."""
    stats = stats or {}
    parts: list[str] = []
    hues = sorted(
        ((name, v) for name, *_ in HUE_BANDS if (v := _num(stats, f"hue_{name}")) is not None and v >= 0.12),
        key=lambda kv: -kv[1],
    )[:2]
    if hues:
        parts.append("dominant " + " and ".join(f"{n} ({_pct(v)})" for n, v in hues) + " hues")
    areas = [
        f"{word} about {_pct(v)}"
        for key, word in (("sky", "sky"), ("skin", "skin-like tones"), ("foliage", "foliage"))
        if (v := _num(stats, key)) is not None and v >= 0.05
    ]
    if areas:
        parts.append(", ".join(areas) + " of the frame")
    sh, hi = _num(stats, "shadows"), _num(stats, "highlights")
    if sh is not None and hi is not None:
        parts.append(f"shadows {_pct(sh)}, midtones {_pct(max(0.0, 1.0 - sh - hi))}, highlights {_pct(hi)}")
    x, y = _num(stats, "subject_x"), _num(stats, "subject_y")
    if x is not None and y is not None:
        parts.append(f"the most distinct region sits {_where(x, y)}")
    return parts
