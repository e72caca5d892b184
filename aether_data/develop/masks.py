"""Parametric masks of Lightroom's local corrections, evaluated on an image grid.

A mask is a list of components (``MaskLeaf``), each a shape in normalised image coordinates
(x = fraction of the width, y = fraction of the height, origin top-left, pixel centres at
``(i + 0.5) / size``) combined in order, as Lightroom's mask groups do:

- ``add`` (``crs:MaskBlendMode`` 0): ``m ← m + (v − m)·c`` with ``v`` = ``crs:MaskValue`` (default 1);
- ``subtract`` (mode 1): ``m ← m·(1 − c)`` (the same rule with ``v = 0``);
- ``intersect`` (mode 2): ``m ← m·c`` (= subtracting the inverted component);

where ``c`` is the component's own value in [0, 1], inverted first when ``crs:MaskInverted`` is set.

Shapes:

- **gradient** (``Mask/Gradient``): 0 on the ``ZeroX, ZeroY`` side, 1 on the ``FullX, FullY`` side,
  a smoothstep ramp in between along the line joining the two points (pixel space, so the ramp is
  perpendicular on non-square images too).
- **radial** (``Mask/CircularGradient``): the ellipse bounded by ``Top/Left/Bottom/Right`` and turned by
  ``Angle`` degrees; ``Feather`` (0…100) is the fraction of the radius that ramps: 1 for normalised
  radius ρ ≤ 1 − f, 0 for ρ ≥ 1, smoothstep between. Lightroom's radial filter acts *outside* the
  ellipse unless ``crs:Flipped`` is true (Camera Raw's convention, as other Lightroom readers
  measured it); ``outside`` records that, and the shape's value is inverted for it.
- **luminance** (``Mask/RangeMask`` type 2): the trapezoid ``LumRange = "a b c d"`` over the encoded
  luma of the image the correction applies to: 0 below a, smoothstep up to 1 at b, 1 until c,
  smoothstep down to 0 at d.
- **colour** (``Mask/RangeMask`` type 1): distance in the opponent chroma plane to the nearest sampled
  colour, 1 within a tolerance that grows with ``ColorAmount`` and fading over as much again.
- **all**: the whole image (a correction without a mask list, or Lightroom's "entire photo").

Constants marked ≈ are choices; tests check the behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .color import luminance, smoothstep, to_opponent

MASK_KINDS = ("gradient", "radial", "luminance", "colour", "all")
BLEND_MODES = ("add", "subtract", "intersect")

COLOUR_TOL_MIN = 0.03
"""≈ Colour range: chroma distance (opponent units, encoded) fully inside at ColorAmount 0."""
COLOUR_TOL_SPAN = 0.2
"""≈ ... growing by this much at ColorAmount 1; the fade is as wide as the tolerance."""


@dataclass
class MaskLeaf:
    """One mask component: its shape parameters, how it combines and whether it is inverted."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "add"
    value: float = 1.0
    inverted: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.kind!r}; expected one of {MASK_KINDS}")
        if self.mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {self.mode!r}; expected one of {BLEND_MODES}")


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    return ys, xs


def gradient_mask(h: int, w: int, zero: tuple[float, float], full: tuple[float, float]) -> np.ndarray:
    """Linear gradient: 0 at/behind the zero line, 1 at/beyond the full line (points as (x, y))."""
    ys, xs = _grid(h, w)
    zx, zy = zero[0] * w, zero[1] * h
    fx, fy = full[0] * w, full[1] * h
    dx, dy = fx - zx, fy - zy
    n2 = dx * dx + dy * dy
    if n2 < 1e-12:
        return np.ones((h, w), np.float32)
    t = ((xs * w - zx) * dx + (ys * h - zy) * dy) / n2
    return smoothstep(t).astype(np.float32)


def radial_mask(
    h: int,
    w: int,
    top: float,
    left: float,
    bottom: float,
    right: float,
    feather: float = 50.0,
    angle: float = 0.0,
) -> np.ndarray:
    """Elliptical mask: 1 inside (ρ ≤ 1 − feather/100), 0 outside the ellipse (ρ ≥ 1)."""
    ys, xs = _grid(h, w)
    cx, cy = (left + right) * 0.5 * w, (top + bottom) * 0.5 * h
    rx = max(abs(right - left) * 0.5 * w, 1e-6)
    ry = max(abs(bottom - top) * 0.5 * h, 1e-6)
    th = math.radians(angle)
    u = xs * w - cx
    v = ys * h - cy
    ur = u * math.cos(th) + v * math.sin(th)
    vr = -u * math.sin(th) + v * math.cos(th)
    rho = np.sqrt((ur / rx) ** 2 + (vr / ry) ** 2)
    f = min(max(feather / 100.0, 0.0), 1.0)
    if f <= 1e-6:
        return (rho <= 1.0).astype(np.float32)
    return (1.0 - smoothstep((rho - (1.0 - f)) / f)).astype(np.float32)


def trapezoid(x: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """0 below a, smoothstep to 1 at b, 1 to c, smoothstep to 0 at d (a step where a == b / c == d)."""
    up = np.where(x >= b, 1.0, 0.0) if b - a <= 1e-6 else smoothstep((x - a) / (b - a))
    down = np.where(x <= c, 1.0, 0.0) if d - c <= 1e-6 else 1.0 - smoothstep((x - c) / (d - c))
    return (up * down).astype(np.float32)


def luminance_mask(image: np.ndarray, lum_range: tuple[float, float, float, float]) -> np.ndarray:
    """Luminance range mask on the encoded luma of ``image`` (HxWx3 float in [0, 1])."""
    y = np.clip(luminance(image[..., 0], image[..., 1], image[..., 2]), 0.0, 1.0)
    a, b, c, d = sorted(float(v) for v in lum_range)  # a ≤ b ≤ c ≤ d
    return trapezoid(y, a, b, c, d)


def colour_mask(image: np.ndarray, samples: list[tuple[float, float, float]], amount: float) -> np.ndarray:
    """Colour range mask: 1 near any sampled sRGB colour (opponent chroma distance), 0 far away."""
    _, a, bb = to_opponent(image[..., 0], image[..., 1], image[..., 2])
    tol = COLOUR_TOL_MIN + COLOUR_TOL_SPAN * min(max(amount, 0.0), 1.0)
    out = np.zeros(image.shape[:2], np.float32)
    for r, g, b in samples:
        _, sa, sb = to_opponent(np.float32(r), np.float32(g), np.float32(b))
        d = np.sqrt((a - sa) ** 2 + (bb - sb) ** 2)
        out = np.maximum(out, 1.0 - smoothstep((d - tol) / tol))
    return out.astype(np.float32)


def leaf_value(leaf: MaskLeaf, image: np.ndarray) -> np.ndarray:
    """A component's own mask (before inversion and combination), HxW float32 in [0, 1]."""
    h, w = image.shape[:2]
    p = leaf.params
    if leaf.kind == "all":
        return np.ones((h, w), np.float32)
    if leaf.kind == "gradient":
        return gradient_mask(h, w, (p["ZeroX"], p["ZeroY"]), (p["FullX"], p["FullY"]))
    if leaf.kind == "radial":
        m = radial_mask(
            h,
            w,
            p["Top"],
            p["Left"],
            p["Bottom"],
            p["Right"],
            p.get("Feather", 50.0),
            p.get("Angle", 0.0),
        )
        return 1.0 - m if p.get("outside", False) else m
    if leaf.kind == "luminance":
        return luminance_mask(image, tuple(p["LumRange"]))
    return colour_mask(image, [tuple(s) for s in p["Samples"]], p.get("ColorAmount", 0.5))


def combine(leaves: list[MaskLeaf], image: np.ndarray) -> np.ndarray:
    """Evaluate and combine the components in order (module docstring); the first always adds."""
    h, w = image.shape[:2]
    m = np.zeros((h, w), np.float32)
    for i, leaf in enumerate(leaves):
        c = leaf_value(leaf, image)
        if leaf.inverted:
            c = 1.0 - c
        mode = "add" if i == 0 else leaf.mode
        if mode == "add":
            m = m + (np.float32(leaf.value) - m) * c
        elif mode == "subtract":
            m = m * (1.0 - c)
        else:
            m = m * c
    return np.clip(m, 0.0, 1.0).astype(np.float32)


__all__ = [
    "BLEND_MODES",
    "MASK_KINDS",
    "MaskLeaf",
    "colour_mask",
    "combine",
    "gradient_mask",
    "leaf_value",
    "luminance_mask",
    "radial_mask",
    "trapezoid",
]
