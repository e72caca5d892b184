"""Preset rendering: the full Lightroom develop settings that presets use, built on the core engine.

``render_preset`` applies, in Lightroom's order:

1. **pointwise part** (``pointwise_preset``; bakes into a 3D LUT with ``bake_preset_lut``):
   calibration (primary hue/saturation as a 3×3 matrix in linear light, shadow tint) → the core
   engine's white balance + exposure → the core tone sliders with the preset's parametric split
   points → point curves (master per channel, then Red/Green/Blue) → HSL mixer, vibrance,
   saturation (core engine) or, for black & white, the gray mixer → colour grading / split toning.
2. **local corrections** (``corrections.apply_corrections``): graduated, radial and mask-group
   corrections with their parametric masks, on the global result.
3. **spatial part** (``local_ops.apply_local``): dehaze, clarity, texture, sharpening, post-crop
   vignette, grain. These depend on neighbourhoods or position, so they cannot live in a LUT.

Clarity/texture/dehaze sit early in Lightroom's pipeline; running them after the pointwise part is
the approximation that makes the LUT split possible (documented in presets/README.md).

All constants marked ≈ are choices (no public source pins them); tests check the behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.develop.settings import CURVE_KEYS, PresetSettings, coerce_settings
from aether_data.io.imaging import as_float01

from .color import (
    NUMPY,
    band_weight,
    chroma_and_saturation,
    from_opponent,
    hue_degrees,
    linear_to_srgb,
    luminance,
    smoothstep,
    srgb_to_linear,
    to_opponent,
)
from .engine_np import TONE_KEYS, colour_stage, linear_stage, tone_curve
from .lut import apply_lut, apply_lut8, identity_lut, to_u8
from .render_np import normalised_params

DEFAULT_PRESET_LUT_SIZE = 33

CALIBRATION_HUE_DEGREES = 20.0
"""≈ Calibration {Red,Green,Blue}Hue ±100 rotates that primary by ±20° (+ = increasing hue angle:
red → orange, green → cyan, blue → purple, like Lightroom's slider gradients)."""
CALIBRATION_SAT = 0.5
"""≈ {Red,Green,Blue}Saturation ±100 scales the primary's chroma by 1 ± 0.5."""
SHADOW_TINT_AMOUNT = 0.06
"""≈ ShadowTint ±100 shifts the green–magenta axis of the shadows by 0.06 (encoded), fading with luma²."""
GRADE_CHROMA = 0.3
"""≈ Colour grading / split toning: saturation 100 adds an opponent chroma of 0.3 (encoded)."""
GRADE_LUM = 0.2
"""≈ Colour grading luminance ±100 moves its tonal range by up to ±0.2 (zero at pure black/white)."""
GRAY_MIX_STOPS = 1.0
"""≈ GrayMixer ±100 brightens/darkens a fully saturated colour of that band by ±1 stop in the mix."""
Channels = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Three encoded colour planes (r, g, b)."""

CURVE_TABLE = 4096
"""Point curves are evaluated through a 4096-entry table (max error ≪ 1/255)."""


# ==================================================================================================
# Point curves: Fritsch–Carlson monotone cubic
# ==================================================================================================
def monotone_tangents(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson tangents: a cubic Hermite spline through (x, y) that is monotone wherever the
    data are (no overshoot between points), so a curve never inverts tones it was not told to."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    h = np.diff(x)
    d = np.diff(y) / h
    n = len(x)
    m = np.zeros(n)
    if n == 2:
        m[:] = d[0]
        return m
    m[0], m[-1] = d[0], d[-1]
    for i in range(1, n - 1):
        if d[i - 1] * d[i] <= 0:
            m[i] = 0.0
        else:  # weighted harmonic mean (Fritsch–Butland), always inside the monotone region
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            m[i] = (w1 + w2) / (w1 / d[i - 1] + w2 / d[i])
    for i in range(n - 1):  # safety net for the end slopes: α, β ≥ 0 and α² + β² ≤ 9
        if d[i] == 0:
            m[i] = m[i + 1] = 0.0
            continue
        a, b = max(m[i] / d[i], 0.0), max(m[i + 1] / d[i], 0.0)
        s = a * a + b * b
        if s > 9.0:
            t = 3.0 / math.sqrt(s)
            a, b = t * a, t * b
        m[i], m[i + 1] = a * d[i], b * d[i]
    return m


def eval_monotone(points: list[tuple[int, int]] | np.ndarray, t: np.ndarray) -> np.ndarray:
    """Evaluate a 0..255 point curve at tones t ∈ [0, 1] (constant beyond the end points)."""
    pts = np.asarray(points, dtype=np.float64) / 255.0
    x, y = pts[:, 0], pts[:, 1]
    m = monotone_tangents(x, y)
    tt = np.clip(np.asarray(t, dtype=np.float64), x[0], x[-1])
    i = np.clip(np.searchsorted(x, tt, side="right") - 1, 0, len(x) - 2)
    h = x[i + 1] - x[i]
    s = (tt - x[i]) / h
    s2, s3 = s * s, s * s * s
    h00, h10, h01, h11 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s, -2 * s3 + 3 * s2, s3 - s2
    return h00 * y[i] + h10 * h * m[i] + h01 * y[i + 1] + h11 * h * m[i + 1]


_CURVE_GRID = np.linspace(0.0, 1.0, CURVE_TABLE, dtype=np.float32)
_CURVE_GRID.flags.writeable = False
"""The tones `_curve_table` tabulates a curve at, as `apply_curve` interpolates them (made once)."""


@lru_cache(maxsize=256)
def _curve_table(points: tuple[tuple[int, int], ...]) -> np.ndarray:
    grid = np.linspace(0.0, 1.0, CURVE_TABLE)
    return eval_monotone(list(points), grid).astype(np.float32)


def apply_curve(x: np.ndarray, points: list[tuple[int, int]] | None) -> np.ndarray:
    """Map encoded values through a point curve (identity when None or the identity diagonal)."""
    if points is None or [tuple(p) for p in points] == [(0, 0), (255, 255)]:
        return x
    table = _curve_table(tuple((int(a), int(b)) for a, b in points))
    return np.interp(np.clip(x, 0.0, 1.0), _CURVE_GRID, table).astype(np.float32)


# ==================================================================================================
# Calibration
# ==================================================================================================
def calibration_matrix(s: PresetSettings) -> np.ndarray | None:
    """3×3 linear-light matrix moving the camera primaries (hue/saturation), white kept white."""
    vals = [(s.num(f"{c}Hue") / 100.0, s.num(f"{c}Saturation") / 100.0) for c in ("Red", "Green", "Blue")]
    if all(h == 0 and sat == 0 for h, sat in vals):
        return None
    cols = []
    for k, (hue, sat) in enumerate(vals):
        e = np.zeros(3)
        e[k] = 1.0
        mean, a, b = to_opponent(*e)
        theta = math.radians(CALIBRATION_HUE_DEGREES * hue)
        scale = 1.0 + CALIBRATION_SAT * sat
        a2 = (a * math.cos(theta) - b * math.sin(theta)) * scale
        b2 = (a * math.sin(theta) + b * math.cos(theta)) * scale
        cols.append((mean, a2, b2))
    # the three primaries' chroma summed to zero before (white is grey); remove what is left over
    ra = sum(c[1] for c in cols) / 3.0
    rb = sum(c[2] for c in cols) / 3.0
    mat = np.zeros((3, 3))
    for k, (mean, a2, b2) in enumerate(cols):
        mat[:, k] = from_opponent(mean, a2 - ra, b2 - rb)
    return mat.astype(np.float32)


def calibration_stage(r: np.ndarray, g: np.ndarray, b: np.ndarray, s: PresetSettings) -> Channels:
    """Primary hue/saturation (linear light) and the shadow green–magenta tint."""
    mat = calibration_matrix(s)
    if mat is not None:
        lin = [srgb_to_linear(c) for c in (r, g, b)]
        out = [
            np.clip(mat[i, 0] * lin[0] + mat[i, 1] * lin[1] + mat[i, 2] * lin[2], 0.0, 1.0) for i in range(3)
        ]
        r, g, b = (linear_to_srgb(c) for c in out)
    tint = s.num("ShadowTint") / 100.0
    if tint:
        w = (1.0 - np.clip(luminance(r, g, b), 0.0, 1.0)) ** 2
        d = SHADOW_TINT_AMOUNT * tint * w
        r, g, b = r + 0.5 * d, g - d, b + 0.5 * d
    return r, g, b


# ==================================================================================================
# Tone: core sliders with the preset's split points, then point curves
# ==================================================================================================
def parametric_splits(s: PresetSettings) -> tuple[float, float, float]:
    """Split points in (0, 1), forced into 0.05 ≤ s1 < s2 < s3 ≤ 0.95 with gaps ≥ 0.05."""
    s1 = min(max(s.num("ParametricShadowSplit") / 100.0, 0.05), 0.85)
    s2 = min(max(s.num("ParametricMidtoneSplit") / 100.0, s1 + 0.05), 0.9)
    s3 = min(max(s.num("ParametricHighlightSplit") / 100.0, s2 + 0.05), 0.95)
    return s1, s2, s3


def tone_stage_with_splits(
    r: np.ndarray, g: np.ndarray, b: np.ndarray, p: Mapping[str, Any], splits: tuple[float, float, float]
) -> Channels:
    """The core engine's tone stage (luma curve, chroma × slope^0.5) with custom parametric splits."""
    if all(float(p[k]) == 0.0 for k in TONE_KEYS):
        return r, g, b
    t = luminance(r, g, b)
    curve, slope = tone_curve(t, p, NUMPY, splits)
    k = np.sqrt(np.clip(slope, 1e-8, None))
    return curve + k * (r - t), curve + k * (g - t), curve + k * (b - t)


def curve_stage(r: np.ndarray, g: np.ndarray, b: np.ndarray, s: PresetSettings) -> Channels:
    """Point curves: the master curve on each channel (Lightroom's RGB curve), then R, G, B."""
    master = s.curve("ToneCurvePV2012")
    if master is not None:
        r, g, b = apply_curve(r, master), apply_curve(g, master), apply_curve(b, master)
    r = apply_curve(r, s.curve("ToneCurvePV2012Red"))
    g = apply_curve(g, s.curve("ToneCurvePV2012Green"))
    b = apply_curve(b, s.curve("ToneCurvePV2012Blue"))
    return r, g, b


# ==================================================================================================
# Black & white
# ==================================================================================================
def grayscale_stage(r: np.ndarray, g: np.ndarray, b: np.ndarray, s: PresetSettings) -> Channels:
    """Gray mixer: luma, each colour band brightened/darkened by its slider (weighted by saturation)."""
    mix = [s.num(f"GrayMixer{band}") / 100.0 for band in P.HSL_BANDS]
    y = luminance(r, g, b)
    if any(mix):
        _, a, bb = to_opponent(r, g, b)
        _, sat = chroma_and_saturation(r, g, b, a, bb, NUMPY)
        hue = hue_degrees(a, bb, NUMPY)
        d = 0.0
        for k, m in enumerate(mix):
            if m:
                d = d + band_weight(hue, k, NUMPY) * m
        y = y * np.exp2(GRAY_MIX_STOPS * d * sat)
    y = np.clip(y, 0.0, 1.0).astype(np.float32)
    return y, y.copy(), y.copy()


# ==================================================================================================
# Colour grading / split toning
# ==================================================================================================
def grade_values(s: PresetSettings) -> dict[str, tuple[float, float, float]]:
    """(hue°, sat 0..1, lum −1..1) per range. Shadow/highlight hue and saturation come from
    ColorGrade* when set, else from the older SplitToning* keys (Lightroom stores the colour
    grading shadows/highlights wheels under the split-toning names); balance likewise."""

    def pick(new: str, old: str | None) -> float:
        if new in s:
            return s.num(new)
        return s.num(old) if old else 0.0

    out = {}
    for part, old in (
        ("Shadow", "SplitToningShadow"),
        ("Midtone", None),
        ("Highlight", "SplitToningHighlight"),
        ("Global", None),
    ):
        hue = pick(f"ColorGrade{part}Hue", f"{old}Hue" if old else None)
        sat = pick(f"ColorGrade{part}Sat", f"{old}Saturation" if old else None) / 100.0
        lum = s.num(f"ColorGrade{part}Lum") / 100.0
        out[part.lower()] = (hue, sat, lum)
    return out


def grade_balance(s: PresetSettings) -> float:
    """Balance −1..1 (ColorGradeBalance if set, else SplitToningBalance)."""
    key = "ColorGradeBalance" if "ColorGradeBalance" in s else "SplitToningBalance"
    return s.num(key) / 100.0


def range_weights(
    y: np.ndarray, balance: float, blending: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shadow / midtone / highlight weights of luma y (sum 1).

    Balance bends luma by a power (positive balance → more of the image counts as highlights);
    blending widens the smooth transitions around 1/3 and 2/3 (≈ half-width 0.08 … 0.33).
    """
    yb = np.clip(y, 0.0, 1.0) ** (2.0 ** (-balance))
    half = 0.08 + 0.25 * blending
    ws = 1.0 - smoothstep((yb - (1.0 / 3.0 - half)) / (2.0 * half))
    wh = smoothstep((yb - (2.0 / 3.0 - half)) / (2.0 * half))
    total = ws + wh
    over = np.maximum(total, 1.0)
    ws, wh = ws / over, wh / over
    return ws, np.clip(1.0 - ws - wh, 0.0, 1.0), wh


def colour_grade_stage(r: np.ndarray, g: np.ndarray, b: np.ndarray, s: PresetSettings) -> Channels:
    """Tint each tonal range towards its hue (opponent chroma, the RGB mean kept) and move its
    luminance; tints fade out at pure black and white so those stay neutral."""
    vals = grade_values(s)
    if all(sat == 0 and lum == 0 for _, sat, lum in vals.values()):
        return r, g, b
    y = np.clip(luminance(r, g, b), 0.0, 1.0)
    ws, wm, wh = range_weights(y, grade_balance(s), s.num("ColorGradeBlending") / 100.0)
    ends = smoothstep(y / 0.03) * smoothstep((1.0 - y) / 0.03)
    bell = 4.0 * y * (1.0 - y)
    da = 0.0
    db = 0.0
    dl = 0.0
    for name, w in (("shadow", ws), ("midtone", wm), ("highlight", wh), ("global", 1.0)):
        hue, sat, lum = vals[name]
        if sat:
            c = GRADE_CHROMA * sat * w * ends
            da = da + c * math.cos(math.radians(hue))
            db = db + c * math.sin(math.radians(hue))
        if lum:
            dl = dl + GRADE_LUM * lum * w * bell
    mean, a, bb = to_opponent(r, g, b)
    r, g, b = from_opponent(mean, a + da, bb + db)
    return r + dl, g + dl, b + dl


# ==================================================================================================
# The pointwise function, the LUT, the whole render
# ==================================================================================================
def pointwise_channels(r: np.ndarray, g: np.ndarray, b: np.ndarray, settings: PresetSettings) -> Channels:
    """All per-pixel operations of a preset on encoded channels in [0, 1] (output clipped)."""
    s = settings
    p = normalised_params(s.core_params())
    r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = calibration_stage(r, g, b, s)
    r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = linear_stage(r, g, b, p, NUMPY)
    r, g, b = tone_stage_with_splits(r, g, b, p, parametric_splits(s))
    r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = curve_stage(r, g, b, s)
    if bool(s.value("ConvertToGrayscale")):
        r, g, b = grayscale_stage(r, g, b, s)
    else:
        r, g, b = colour_stage(r, g, b, p, NUMPY)
        r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = colour_grade_stage(r, g, b, s)
    return tuple(np.clip(c, 0.0, 1.0).astype(np.float32) for c in (r, g, b))


def _check(image: np.ndarray) -> np.ndarray:
    arr = as_float01(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return arr


def pointwise_preset(image: np.ndarray, settings: PresetSettings | Mapping[str, Any]) -> np.ndarray:
    """Direct (un-baked) per-pixel part of a preset on an HxWx3 sRGB float image."""
    arr = _check(image)
    s = coerce_settings(settings)
    planar = np.moveaxis(arr, -1, 0)
    out = pointwise_channels(planar[0], planar[1], planar[2], s)
    return np.stack(out, axis=-1)


def bake_preset_lut(
    settings: PresetSettings | Mapping[str, Any], size: int = DEFAULT_PRESET_LUT_SIZE
) -> np.ndarray:
    """Bake the preset's per-pixel part into an (N, N, N, 3) LUT indexed [r, g, b] (``apply_lut``)."""
    grid = identity_lut(size)
    out = pointwise_preset(grid.reshape(size * size, size, 3), settings)
    return out.reshape(size, size, size, 3)


def has_pointwise(settings: PresetSettings) -> bool:
    """False when the preset changes nothing per pixel (the LUT would be the identity)."""
    return any(k not in _SPATIAL_KEYS and k not in ("WhiteBalance", "GrainSeed") for k in settings)


_SPATIAL_KEYS = frozenset(
    {
        "Texture",
        "Clarity2012",
        "Dehaze",
        "Sharpness",
        "SharpenRadius",
        "SharpenDetail",
        "SharpenEdgeMasking",
        "PostCropVignetteAmount",
        "PostCropVignetteMidpoint",
        "PostCropVignetteFeather",
        "PostCropVignetteRoundness",
        "PostCropVignetteStyle",
        "PostCropVignetteHighlightContrast",
        "GrainAmount",
        "GrainSize",
        "GrainFrequency",
        "GrainSeed",
    }
)
"""Keys handled by local_ops (not representable in a LUT)."""


def render_preset(
    image: np.ndarray,
    settings: PresetSettings | Mapping[str, Any],
    seed: int = 0,
    *,
    method: str = "direct",
    lut_size: int = DEFAULT_PRESET_LUT_SIZE,
    lut: np.ndarray | None = None,
    interpolation: str = "tetrahedral",
    dtype: type = np.float32,
) -> np.ndarray:
    """Render a whole preset on an HxWx3 sRGB image (float32 in [0, 1] or uint8).

    ``method="direct"`` evaluates the per-pixel part on every pixel; ``"lut"`` bakes it into a
    ``lut_size``³ LUT (or uses ``lut`` when given, e.g. a cached bake) and applies it with
    ``interpolation`` (``"tetrahedral"``, ``"trilinear"``, or ``"u8"``: input rounded to 8 bits,
    the compiled 8-bit tetrahedral kernel, output in multiples of 1/255; several times faster).
    The spatial part runs afterwards either way; ``seed`` drives the grain. The result is float32,
    or uint8 (the encoders' rounding) with ``dtype=np.uint8``: a preset without spatial operations
    then never leaves 8 bits. Unsupported keys are not rendered: read them from
    ``settings.unsupported_keys``.
    """
    from .local_ops import apply_local, has_local

    s = coerce_settings(settings)
    corrections = [c for c in s.corrections if c.renderable] if s.unsupported else []
    if method not in ("direct", "lut"):
        raise ValueError(f"unknown method {method!r}; use 'direct' or 'lut'")
    if method == "lut" and lut is None and has_pointwise(s):
        lut = bake_preset_lut(s, lut_size)
    if method == "lut" and interpolation == "u8":  # 8-bit tetrahedral kernel: the build's fast path
        shape = np.shape(image)
        if len(shape) != 3 or shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {shape}")
        out8 = apply_lut8(image, lut, np.uint8)
        if not has_local(s) and not corrections:
            return out8 if np.dtype(dtype) == np.uint8 else as_float01(out8)
        out = as_float01(out8)
    else:
        arr = _check(image)
        if method == "direct":
            out = pointwise_preset(arr, s) if has_pointwise(s) else np.clip(arr, 0.0, 1.0)
        elif lut is None:
            out = np.clip(arr, 0.0, 1.0)
        else:
            out = np.clip(apply_lut(arr, lut, interpolation), 0.0, 1.0)
    if corrections:  # local corrections: after the global tone and colour, before the effects
        from .corrections import apply_corrections

        out = apply_corrections(out, corrections)
    if np.dtype(dtype) == np.uint8:  # to_u8 saturates: the last operation's clip is not needed
        return to_u8(apply_local(out, s, seed, clip_last=False))
    return apply_local(out, s, seed)


__all__ = [
    "CURVE_KEYS",
    "DEFAULT_PRESET_LUT_SIZE",
    "apply_curve",
    "bake_preset_lut",
    "eval_monotone",
    "monotone_tangents",
    "pointwise_preset",
    "render_preset",
]
