"""The develop engine for the 38 core parameters: the stage maths numpy and torch share.

The stages below are written against the ``xp`` namespace of ``color.py`` so that the torch engine
(``engine_torch.py``) runs the very same formulas. All 38 operations are per-pixel, which is what
lets ``lut.py`` bake the whole engine into a 3D LUT. The fast numpy ``render`` is in
``render_np.py``.

Order (Lightroom's): sRGB → linear light → white balance (incremental temperature/tint gains) →
exposure (×2^EV with a soft highlight shoulder) → clip → sRGB encoding (the "perceptual" working
space of everything after) → tone curve (contrast, highlights, shadows, whites, blacks, parametric
curve; one monotone 1-D function of luma) → colour (HSL mixer, vibrance, saturation) → clip.

Numbers that no public source pins down (marked "≈" in the Lightroom notes) are constants here with
the reasoning next to them; tests/test_develop.py checks the behaviour they produce.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from aether_data import params as P

from .color import (
    HSL_CENTRES,
    NUMPY,
    Array,
    band_weight,
    chroma_and_saturation,
    from_opponent,
    hue_signed,
    ipow,
    linear_to_srgb,
    luminance,
    skin_hue_weight,
    skin_sat_weight,
    srgb_encode_scalar,
    srgb_to_linear,
    to_opponent,
)

# --- white balance and exposure (linear light) ---------------------------------------------------
EV_SCALE = 5.0
"""Exposure2012 slider maximum: normalised 1.0 = +5 EV."""
TEMP_STOPS = 0.4
"""≈ IncrementalTemperature +100: red gain +0.4 stop, blue −0.4 stop (R/B ratio ×1.74) before the
luminance renormalisation below; −100 is the mirror image (cooler)."""
TINT_G_STOPS = 0.3
TINT_RB_STOPS = 0.15
"""≈ IncrementalTint +100 (magenta): green −0.3 stop, red and blue +0.15 stop."""
SHOULDER_MIN_KNEE = 0.5
"""Exposure roll-off: for EV > 0 linear values above the knee 1 − 0.5·(1 − 2^−EV) are compressed
with a tanh shoulder that approaches 1; at EV ≤ 0 the knee is 1 (plain multiplication + clip), so
EV = 0 is exactly the identity and mid-tones scale by exactly 2^EV."""

# --- tone curve (sRGB-encoded luma) ---------------------------------------------------------------
PIVOT = srgb_encode_scalar(0.18)
"""Contrast pivot: encoded mid-grey (linear 0.18 → 0.461)."""
CONTRAST_GAMMA = 1.8
CONTRAST_AMOUNT = 0.7
"""Contrast2012: f = t + 0.7·c·(S(t) − t), S a fixed two-sided power S-curve through the pivot with
slope 1.8 there. Linear in c and monotone for |c| ≤ 1 (slope at pivot 1.56 at +100, 0.44 at −100)."""
HIGHLIGHTS_AMP = 0.15
SHADOWS_AMP = 0.15
"""Highlights2012/Shadows2012: bumps ∝ t⁵(1−t)² (peak at luma 0.71) and t²(1−t)⁵ (peak 0.29),
normalised to peak 1, times ±0.15: at most ±0.15 of luma, pure black and white stay put."""
WHITES_AMP = 0.12
BLACKS_AMP = 0.12
WB_POWER = 6
"""Whites2012/Blacks2012: ±0.12·t⁶ and ±0.12·(1−t)⁶: they move the white/black point itself
(+Whites clips, −Blacks crushes, +Blacks lifts black to 0.12) and fade out towards the mid-tones."""
PARAMETRIC_MAX_AMP = 0.15
PARAMETRIC_SLOPE_MARGIN = 0.9
DEFAULT_SPLITS: tuple[float, float, float] = (0.25, 0.5, 0.75)
"""Parametric curve: region centres are the mid-points between 0, the 3 splits and 1; each slider
is a sin² bump from the previous region centre to the next (the outer ones reach 0 / 1). Its
amplitude is min(0.15, 0.9·width/π), so each bump alone has slope ≥ 0.1; the four are applied as a
composition, so the curve is monotone for every combination of slider values."""
# Tone changes are computed on luma and added equally to R, G, B (hue-preserving), with the chroma
# (c − luma) scaled by T'(luma)^0.5: half-way (in log) between "chroma unchanged" and a per-channel
# curve, so Contrast adds some saturation as in Lightroom without hue shifts (see ``tone_apply``).

# --- colour (sRGB-encoded) ------------------------------------------------------------------------
HUE_MAX_DEGREES = 30.0
"""HueAdjustment±100 rotates hue by ±30° (positive = towards the next band: red→orange, blue→purple)."""
LUM_STOPS = 0.6
"""LuminanceAdjustment±100 multiplies the encoded RGB of a fully saturated pixel by 2^±0.6,
weighted by its saturation, so greys are untouched."""
SKIN_PROTECT = 0.8
"""Vibrance: chroma × (1 + v·(1 − s)²·(1 − 0.8·skin)) with s the HSV-like saturation and skin the
skin-tone weight (hue 10°–60°, s ≈ 0.35): low-saturation colours move most, skin is protected."""

Params = Mapping[str, Any]
"""Normalised parameter values keyed by crs name (scalars for numpy, (B,1,1) tensors for torch)."""


# ==================================================================================================
# Linear-light stage
# ==================================================================================================
def white_balance_gains(temperature: Any, tint: Any, xp: Any = NUMPY) -> tuple[Any, Any, Any]:
    """Per-channel linear gains for normalised IncrementalTemperature/Tint.

    Gains are normalised so that a neutral grey keeps its luminance (only the colour changes).
    """
    log_r = TEMP_STOPS * temperature + TINT_RB_STOPS * tint
    log_g = -TINT_G_STOPS * tint
    log_b = -TEMP_STOPS * temperature + TINT_RB_STOPS * tint
    gr, gg, gb = xp.exp2(log_r), xp.exp2(log_g), xp.exp2(log_b)
    norm = luminance(gr, gg, gb)
    return gr / norm, gg / norm, gb / norm


def exposure_shoulder(y: Array, ev: Any, xp: Any = NUMPY) -> Array:
    """Soft highlight roll-off after ×2^EV (``ev`` in stops), identity below the knee.

    ``knee + width·tanh((y − knee)/width)`` is C² at the knee and tends to 1; see SHOULDER_MIN_KNEE.
    """
    knee = 1.0 - (1.0 - SHOULDER_MIN_KNEE) * (1.0 - xp.exp2(-xp.relu(ev)))
    width = 1.0 - knee
    rolled = knee + width * xp.tanh((y - knee) / xp.clip(width, 1e-6, None))
    return xp.where(y > knee, rolled, y)


def linear_stage(r: Array, g: Array, b: Array, p: Params, xp: Any = NUMPY) -> tuple[Array, Array, Array]:
    """White balance and exposure in linear light; input and output are sRGB-encoded in [0, 1]."""
    temp, tint, ev_n = p["IncrementalTemperature"], p["IncrementalTint"], p["Exposure2012"]
    if xp.is_zero(temp, tint, ev_n):
        return r, g, b
    ev = EV_SCALE * ev_n
    gains = white_balance_gains(temp, tint, xp)
    scale = xp.exp2(ev)
    out = []
    for chan, gain in zip((r, g, b), gains, strict=True):
        y = srgb_to_linear(chan, xp) * (gain * scale)
        if not xp.is_nonpositive(ev):  # at EV ≤ 0 the shoulder is the clip below
            y = exposure_shoulder(y, ev, xp)
        y = xp.clip(y, 0.0, 1.0)
        out.append(linear_to_srgb(y, xp))
    return out[0], out[1], out[2]


# ==================================================================================================
# Tone curve: a monotone function T of encoded luma and its slope T'
# ==================================================================================================
def _contrast(x: Array, dx: Array, c: Any, xp: Any) -> tuple[Array, Array]:
    # S(t) = p·(t/p)^γ below the pivot, 1 − (1−p)·((1−t)/(1−p))^γ above; one pow for both halves
    below = x < PIVOT
    base = xp.where(below, x * (1.0 / PIVOT), (1.0 - x) * (1.0 / (1.0 - PIVOT)))
    base = xp.clip(base, 1e-6, 1.0)
    q = base ** (CONTRAST_GAMMA - 1.0)
    s = xp.where(below, PIVOT * base * q, 1.0 - (1.0 - PIVOT) * base * q)
    ds = CONTRAST_GAMMA * q
    amount = CONTRAST_AMOUNT * c
    return x + amount * (s - x), dx * (1.0 + amount * (ds - 1.0))


def _bernstein(xc: Array, a: int, b: int) -> tuple[Array, Array]:
    """t^a (1−t)^b normalised to peak 1, and its derivative (xc already clipped to [0, 1])."""
    peak_t = a / (a + b)
    norm = 1.0 / (peak_t**a * (1.0 - peak_t) ** b)
    u = 1.0 - xc
    common = ipow(xc, a - 1) * ipow(u, b - 1) * norm
    return common * xc * u, common * (a * u - b * xc)


def _bump_step(x: Array, dx: Array, amount: Any, bump: Any, xp: Any) -> tuple[Array, Array]:
    """x → x + amount·B(clip x): one monotone map of the composition (|amount·B'| < 1 by design)."""
    val, dval = bump(xp.clip(x, 0.0, 1.0))
    return x + amount * val, dx * (1.0 + amount * dval)


def _highlights_bump(xc: Array) -> tuple[Array, Array]:
    return _bernstein(xc, 5, 2)


def _shadows_bump(xc: Array) -> tuple[Array, Array]:
    return _bernstein(xc, 2, 5)


def _whites_bump(xc: Array) -> tuple[Array, Array]:
    x5 = ipow(xc, WB_POWER - 1)
    return x5 * xc, WB_POWER * x5


def _blacks_bump(xc: Array) -> tuple[Array, Array]:
    u = 1.0 - xc
    u5 = ipow(u, WB_POWER - 1)
    return u5 * u, -WB_POWER * u5


def parametric_regions(splits: Sequence[float] = DEFAULT_SPLITS) -> list[tuple[float, float, float]]:
    """(start, end, amplitude) of the shadows/darks/lights/highlights bumps for given splits (0..1)."""
    s1, s2, s3 = (float(s) for s in splits)
    if not 0.0 < s1 < s2 < s3 < 1.0:
        raise ValueError(f"parametric splits must satisfy 0 < s1 < s2 < s3 < 1, got {tuple(splits)}")
    c = [s1 / 2.0, (s1 + s2) / 2.0, (s2 + s3) / 2.0, (s3 + 1.0) / 2.0]
    spans = [(0.0, c[1]), (c[0], c[2]), (c[1], c[3]), (c[2], 1.0)]
    out = []
    for lo, hi in spans:
        amp = min(PARAMETRIC_MAX_AMP, PARAMETRIC_SLOPE_MARGIN * (hi - lo) / math.pi)
        out.append((lo, hi, amp))
    return out


def parametric_curve(
    x: Array,
    values: Sequence[Any],
    splits: Sequence[float] = DEFAULT_SPLITS,
    xp: Any = NUMPY,
    dx: Array | float = 1.0,
) -> tuple[Array, Array]:
    """Lightroom-style parametric tone curve on [0, 1] tone values.

    ``values`` = normalised (ParametricShadows, Darks, Lights, Highlights) in [-1, 1]; ``splits`` =
    (shadow, midtone, highlight) split points in (0, 1) (Lightroom default 25/50/75 → 0.25/0.5/0.75).
    Returns (curve(x), slope·dx). Monotone for any values in range and any valid splits;
    curve(0) = 0 and curve(1) = 1.
    """
    for (lo, hi, amp), v in zip(parametric_regions(splits), values, strict=True):
        if xp.is_zero(v):
            continue
        width = hi - lo

        def bump(xc: Array, lo: float = lo, width: float = width) -> tuple[Array, Array]:
            z = xp.clip((xc - lo) * (1.0 / width), 0.0, 1.0)
            sz = xp.sin(math.pi * z)
            return sz * sz, (math.pi / width) * xp.sin(2.0 * math.pi * z)

        x, dx = _bump_step(x, dx, amp * v, bump, xp)
    return x, dx


def tone_curve(
    t: Array, p: Params, xp: Any = NUMPY, splits: Sequence[float] = DEFAULT_SPLITS
) -> tuple[Array, Array]:
    """The Basic-panel tone sliders plus the parametric curve as one monotone map of luma t ∈ [0, 1].

    Order: Contrast, Highlights, Shadows, Whites, Blacks, parametric regions; each step is monotone,
    so the composition is. Returns (T(t), T'(t)).
    """
    x, dx = t, 1.0
    c = p["Contrast2012"]
    if not xp.is_zero(c):
        x, dx = _contrast(x, dx, c, xp)
    steps = (
        ("Highlights2012", HIGHLIGHTS_AMP, _highlights_bump),
        ("Shadows2012", SHADOWS_AMP, _shadows_bump),
        ("Whites2012", WHITES_AMP, _whites_bump),
        ("Blacks2012", BLACKS_AMP, _blacks_bump),
    )
    for name, amp, bump in steps:
        if not xp.is_zero(p[name]):
            x, dx = _bump_step(x, dx, amp * p[name], bump, xp)
    values = [
        p[n] for n in ("ParametricShadows", "ParametricDarks", "ParametricLights", "ParametricHighlights")
    ]
    return parametric_curve(x, values, splits, xp, dx)


TONE_KEYS = (
    "Contrast2012",
    "Highlights2012",
    "Shadows2012",
    "Whites2012",
    "Blacks2012",
    "ParametricShadows",
    "ParametricDarks",
    "ParametricLights",
    "ParametricHighlights",
)


def tone_apply(
    r: Array, g: Array, b: Array, t: Array, curve: Array, slope: Array, xp: Any = NUMPY
) -> tuple[Array, Array, Array]:
    """Add the luma change T(t) − t to every channel and scale the chroma (c − t) by T'(t)^0.5."""
    k = xp.sqrt(xp.clip(slope, 1e-8, None))
    return curve + k * (r - t), curve + k * (g - t), curve + k * (b - t)


def tone_active(p: Params, xp: Any = NUMPY) -> bool:
    """Whether any tone slider is set (always True in torch)."""
    return not xp.is_zero(*(p[k] for k in TONE_KEYS))


def tone_stage(r: Array, g: Array, b: Array, p: Params, xp: Any = NUMPY) -> tuple[Array, Array, Array]:
    """Apply the tone curve to luma (hue-preserving; see ``tone_apply``)."""
    if not tone_active(p, xp):
        return r, g, b
    t = luminance(r, g, b)
    curve, slope = tone_curve(t, p, xp)
    return tone_apply(r, g, b, t, curve, slope, xp)


# ==================================================================================================
# Colour stage: HSL mixer, vibrance, saturation (one analysis of hue/chroma, then one rebuild)
# ==================================================================================================
class HueTerms(NamedTuple):
    """Everything in the colour stage that depends on hue alone (None = inactive, numpy only)."""

    cos: Any
    sin: Any
    band_sat: Any
    lum_stops: Any
    skin_hue: Any


def _band_values(p: Params) -> tuple[list[Any], list[Any], list[Any]]:
    bands = P.HSL_BANDS
    return (
        [p[f"HueAdjustment{n}"] for n in bands],
        [p[f"SaturationAdjustment{n}"] for n in bands],
        [p[f"LuminanceAdjustment{n}"] for n in bands],
    )


def colour_active(p: Params, xp: Any = NUMPY) -> bool:
    """Whether any colour slider is set (always True in torch)."""
    hue_v, sat_v, lum_v = _band_values(p)
    return not xp.is_zero(p["Vibrance"], p["Saturation"], *hue_v, *sat_v, *lum_v)


def hue_terms(hue_s: Array, hue_360: Array, p: Params, xp: Any = NUMPY) -> HueTerms:
    """Band-weighted hue rotation (as cos/sin), band chroma factor, band luminance (stops) and
    the skin-hue weight, all as functions of hue (signed and [0, 360) forms of the same hue)."""
    hue_v, sat_v, lum_v = _band_values(p)
    d_hue = d_sat = d_lum = None
    band_sums = getattr(xp, "band_sums", None)
    if band_sums is not None:  # a backend with a vectorised form of the loop below (torch)
        d_hue, d_sat, d_lum = band_sums(hue_360, (hue_v, sat_v, lum_v))
    for k in range(len(hue_v) if band_sums is None else 0):
        if xp.is_zero(hue_v[k], sat_v[k], lum_v[k]):
            continue
        w = band_weight(hue_s, k, xp, HSL_CENTRES, hue_360)
        if not xp.is_zero(hue_v[k]):
            d_hue = w * hue_v[k] if d_hue is None else d_hue + w * hue_v[k]
        if not xp.is_zero(sat_v[k]):
            d_sat = w * sat_v[k] if d_sat is None else d_sat + w * sat_v[k]
        if not xp.is_zero(lum_v[k]):
            d_lum = w * lum_v[k] if d_lum is None else d_lum + w * lum_v[k]
    cos_t = sin_t = None
    if d_hue is not None:
        theta = d_hue * (HUE_MAX_DEGREES * math.pi / 180.0)
        cos_t, sin_t = xp.cos(theta), xp.sin(theta)
    return HueTerms(
        cos=cos_t,
        sin=sin_t,
        band_sat=None if d_sat is None else 1.0 + d_sat,
        lum_stops=None if d_lum is None else LUM_STOPS * d_lum,
        skin_hue=None if xp.is_zero(p["Vibrance"]) else skin_hue_weight(hue_s, xp),
    )


def colour_analysis(
    r: Array, g: Array, b: Array, xp: Any = NUMPY
) -> tuple[Array, Array, Array, Array, Array]:
    """(luma, a, b, saturation, signed hue) of encoded RGB, measured once for all colour sliders."""
    _, a, bb = to_opponent(r, g, b)
    _, s = chroma_and_saturation(r, g, b, a, bb, xp)
    return luminance(r, g, b), a, bb, s, hue_signed(a, bb, xp)


def colour_apply(
    luma: Array, a: Array, bb: Array, s: Array, terms: HueTerms, p: Params, xp: Any = NUMPY
) -> tuple[Array, Array, Array]:
    """Scale the chroma (band × vibrance × saturation), rotate the hue about the grey axis, rebuild
    RGB with the original luma, and apply the band luminance as a gain 2^(stops·s).

    Rebuilding: u = the zero-mean RGB with opponent coordinates (a', b'); RGB = u + (luma − luma(u)),
    i.e. the chroma vector is moved within the plane of constant luma, so Saturation −100 gives
    R = G = B = luma and hue/chroma changes keep the (encoded) luma of the pixel.
    """
    factor = 1.0 + p["Saturation"]
    if terms.band_sat is not None:
        factor = terms.band_sat * factor
    if terms.skin_hue is not None:
        one_minus = 1.0 - s
        skin = terms.skin_hue * skin_sat_weight(s, xp)
        factor = factor * (1.0 + p["Vibrance"] * (one_minus * one_minus * (1.0 - SKIN_PROTECT * skin)))
    if terms.cos is None:
        a2, b2 = a * factor, bb * factor
    else:
        a2 = (a * terms.cos - bb * terms.sin) * factor
        b2 = (a * terms.sin + bb * terms.cos) * factor
    ur, ug, ub = from_opponent(0.0, a2, b2)
    offset = luma - luminance(ur, ug, ub)
    r2, g2, b2_ = ur + offset, ug + offset, ub + offset
    if terms.lum_stops is not None:
        gain = xp.exp2(terms.lum_stops * s)
        r2, g2, b2_ = r2 * gain, g2 * gain, b2_ * gain
    return r2, g2, b2_


def colour_stage(r: Array, g: Array, b: Array, p: Params, xp: Any = NUMPY) -> tuple[Array, Array, Array]:
    """HSL mixer + Vibrance + Saturation on encoded RGB in [0, 1].

    Hue, chroma and saturation are measured once (on the tone-mapped pixel); every band/global
    chroma factor multiplies the opponent vector, the band hue shift rotates it about the grey axis
    (keeping the luma), and the band luminance multiplies RGB by 2^(0.6·L·s). Greys have zero
    chroma and s = 0, so nothing here changes them.
    """
    if not colour_active(p, xp):
        return r, g, b
    luma, a, bb, s, hue_s = colour_analysis(r, g, b, xp)
    hue_360 = xp.where(hue_s < 0.0, hue_s + 360.0, hue_s)
    return colour_apply(luma, a, bb, s, hue_terms(hue_s, hue_360, p, xp), p, xp)


# ==================================================================================================
# Whole pipeline
# ==================================================================================================
def develop(r: Array, g: Array, b: Array, p: Params, xp: Any = NUMPY) -> tuple[Array, Array, Array]:
    """Run all stages per pixel, in closed form, on encoded channels (any backend); clipped to [0, 1]."""
    r, g, b = (xp.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = linear_stage(r, g, b, p, xp)
    r, g, b = tone_stage(r, g, b, p, xp)
    r, g, b = (xp.clip(c, 0.0, 1.0) for c in (r, g, b))
    r, g, b = colour_stage(r, g, b, p, xp)
    return xp.clip(r, 0.0, 1.0), xp.clip(g, 0.0, 1.0), xp.clip(b, 0.0, 1.0)
