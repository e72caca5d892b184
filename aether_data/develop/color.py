"""Shared colour maths for the develop engine, written once for numpy and torch.

Every function here takes an ``xp`` argument, a tiny namespace of array operations (``NUMPY`` below,
``engine_torch.TORCH`` for tensors). The numpy and torch engines therefore run literally the same
formulas, which is what keeps ``render`` and ``render_torch`` within float rounding of each other.
Only elementwise operators and the few functions on the namespace may be used in shared code.

Conventions: channels are separate arrays (numpy ``(H, W)`` or torch ``(B, H, W)``); parameter
values are scalars (numpy ``float32``) or tensors shaped to broadcast against a channel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

Array = Any
"""A numpy array or a torch tensor (shared code only uses operators and the ``xp`` namespace)."""

LUMA_WEIGHTS: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)
"""Rec.709 / sRGB luminance weights (used for linear luminance and for encoded luma)."""

SQRT3_2 = math.sqrt(3.0) / 2.0

HSL_CENTRES: tuple[float, ...] = (0.0, 30.0, 60.0, 120.0, 180.0, 240.0, 280.0, 320.0)
"""Hue centres (degrees) of the 8 HSL bands in ``params.HSL_BANDS`` order."""

SKIN_HUE = 35.0
SKIN_HUE_HALF_WIDTH = 25.0
SKIN_SAT = 0.35
SKIN_SAT_WIDTH = 0.2
"""Skin tones: hue within 35° ± 25° (orange), HSV-like saturation around 0.35 ± 0.2."""


class NumpyOps:
    """The ``xp`` namespace for numpy (float32 stays float32 when scalars are float32/python)."""

    name = "numpy"
    where = staticmethod(np.where)
    exp2 = staticmethod(np.exp2)
    tanh = staticmethod(np.tanh)
    sqrt = staticmethod(np.sqrt)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    atan2 = staticmethod(np.arctan2)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def clip(x: Array, lo: float | None = None, hi: float | None = None) -> Array:
        return np.clip(x, lo, hi)

    @staticmethod
    def relu(x: Array) -> Array:
        return np.maximum(x, 0)

    @staticmethod
    def is_zero(*values: Any) -> bool:
        """True when every value is exactly 0, so a stage can be skipped (numpy only: speed)."""
        return all(float(v) == 0.0 for v in values)

    @staticmethod
    def is_nonpositive(value: Any) -> bool:
        """True when a scalar parameter is ≤ 0 (numpy only: lets exposure skip its shoulder)."""
        return float(value) <= 0.0


NUMPY = NumpyOps()


def srgb_to_linear(x: Array, xp: Any = NUMPY) -> Array:
    """sRGB-encoded [0, 1] → linear light (IEC 61966-2-1 piecewise curve)."""
    powered = ((xp.clip(x, 0.04045, None) + 0.055) / 1.055) ** 2.4
    return xp.where(x <= 0.04045, x / 12.92, powered)


def linear_to_srgb(y: Array, xp: Any = NUMPY) -> Array:
    """Linear light (≥ 0) → sRGB encoding; the pow branch is clamped so torch grads stay finite."""
    powered = 1.055 * xp.clip(y, 0.0031308, None) ** (1.0 / 2.4) - 0.055
    return xp.where(y <= 0.0031308, y * 12.92, powered)


def srgb_encode_scalar(y: float) -> float:
    """Python-float version of ``linear_to_srgb`` (for constants such as the mid-grey pivot)."""
    return 12.92 * y if y <= 0.0031308 else 1.055 * y ** (1.0 / 2.4) - 0.055


def luminance(r: Array, g: Array, b: Array) -> Array:
    """Rec.709 weighted sum: luminance on linear channels, luma on encoded ones."""
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def to_opponent(r: Array, g: Array, b: Array) -> tuple[Array, Array, Array]:
    """RGB → (mean, a, b) with a = r − (g+b)/2, b = √3/2 (g − b).

    (a, b) is the projection onto the plane orthogonal to the grey axis: its angle is the hue
    (red 0°, yellow 60°, green 120°, cyan 180°, blue 240°, magenta 300°, like HSV at the primaries
    and secondaries) and its length the chroma, 1 for fully saturated primaries and secondaries.
    Rotating/scaling (a, b) changes hue/chroma and leaves greys (a = b = 0) alone.
    """
    mean = (r + g + b) * (1.0 / 3.0)
    a = r - 0.5 * (g + b)
    bb = SQRT3_2 * (g - b)
    return mean, a, bb


def from_opponent(mean: Array, a: Array, bb: Array) -> tuple[Array, Array, Array]:
    """Inverse of ``to_opponent``."""
    third = a * (1.0 / 3.0)
    half_diff = bb * (1.0 / math.sqrt(3.0))
    return mean + 2.0 * third, mean - third + half_diff, mean - third - half_diff


def hue_signed(a: Array, bb: Array, xp: Any = NUMPY) -> Array:
    """Hue angle in (-180, 180] degrees of an opponent vector; greys get 0° (their chroma is 0).

    ``a`` is replaced by 1 for greys before ``atan2`` so torch's gradient never sees atan2(0, 0).
    """
    grey = (a * a + bb * bb) <= 1e-12
    safe_a = xp.where(grey, 1.0, a)
    return xp.atan2(bb, safe_a) * (180.0 / math.pi)


def hue_degrees(a: Array, bb: Array, xp: Any = NUMPY) -> Array:
    """Hue angle in [0, 360) degrees (see ``hue_signed``)."""
    hs = hue_signed(a, bb, xp)
    return xp.where(hs < 0.0, hs + 360.0, hs)


def chroma_and_saturation(
    r: Array, g: Array, b: Array, a: Array, bb: Array, xp: Any = NUMPY
) -> tuple[Array, Array]:
    """Opponent chroma (0 for greys, ≤ 1) and an HSV-like saturation chroma / max(r, g, b) in [0, 1].

    ``sqrt(c² + 1e-12) − 1e-6`` keeps the gradient finite at greys while giving them exactly 0.
    """
    chroma = xp.sqrt(a * a + bb * bb + 1e-12) - 1e-6
    top = xp.maximum(xp.maximum(r, g), b)
    sat = xp.clip(chroma / xp.clip(top, 1e-6, None), 0.0, 1.0)
    return chroma, sat


def smoothstep(z: Array, xp: Any = NUMPY) -> Array:
    """C¹ ramp 3z² − 2z³ on z clipped to [0, 1]; S(z) + S(1 − z) = 1 (partition of unity)."""
    z = xp.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


def ipow(x: Array, n: int) -> Array:
    """x**n for a small integer n ≥ 1 by multiplication (numpy's pow is ~10× slower)."""
    result = None
    base = x
    while n:
        if n & 1:
            result = base if result is None else result * base
        n >>= 1
        if n:
            base = base * base
    if result is None:
        raise ValueError("ipow needs n >= 1")
    return result


def band_support(band: int, centres: tuple[float, ...] = HSL_CENTRES) -> tuple[float, float, float, bool]:
    """(start, centre, end, signed) of an HSL band's hue support, in signed hue (−180..180] when
    ``signed`` else in [0, 360): whichever representation does not cut the support at its seam."""
    n = len(centres)
    centre = centres[band] % 360.0
    start = centre - (centre - centres[band - 1]) % 360.0
    end = centre + (centres[(band + 1) % n] - centre) % 360.0
    if 0.0 <= start and end <= 360.0:
        return start, centre, end, False
    shift = -360.0 if centre >= 180.0 else 0.0
    start, centre, end = start + shift, centre + shift, end + shift
    if not (-180.0 <= start and end <= 180.0):
        raise ValueError(f"band {band}: support {start}..{end} too wide")
    return start, centre, end, True


def tent_weight(hue: Array, start: float, centre: float, end: float, xp: Any = NUMPY) -> Array:
    """Smoothstep of the tent that is 0 at start/end and 1 at centre (hue in the support's frame)."""
    rise = (hue - start) * (1.0 / (centre - start))
    fall = (end - hue) * (1.0 / (end - centre))
    return smoothstep(xp.minimum(rise, fall), xp)


def band_weight(
    hue_s: Array,
    band: int,
    xp: Any = NUMPY,
    centres: tuple[float, ...] = HSL_CENTRES,
    hue_360: Array | None = None,
) -> Array:
    """Weight of HSL band ``band``; ``hue_s`` is signed hue (−180..180], ``hue_360`` optionally [0, 360).

    Between two neighbouring centres the weights are S(1 − u) and S(u) (smoothstep of the fraction
    u of the way), so each band rises from the previous centre to its own and falls to the next,
    and the 8 weights sum to exactly 1 around the whole circle: shifting every band by the same
    amount is a uniform hue rotation. Non-uniform spacing (purple 280°, magenta 320°) is allowed.
    """
    start, centre, end, signed = band_support(band, centres)
    if signed:
        hue = hue_s
    else:
        hue = hue_360 if hue_360 is not None else xp.where(hue_s < 0.0, hue_s + 360.0, hue_s)
    return tent_weight(hue, start, centre, end, xp)


def skin_hue_weight(hue_s: Array, xp: Any = NUMPY) -> Array:
    """Hue part of the skin-tone weight: smooth window 35° ± 25° (signed hue in degrees)."""
    return tent_weight(hue_s, SKIN_HUE - SKIN_HUE_HALF_WIDTH, SKIN_HUE, SKIN_HUE + SKIN_HUE_HALF_WIDTH, xp)


def skin_sat_weight(sat: Array, xp: Any = NUMPY) -> Array:
    """Saturation part of the skin-tone weight: exp(−((s − 0.35)/0.2)²)."""
    z = (sat - SKIN_SAT) * (1.0 / SKIN_SAT_WIDTH)
    return xp.exp2(-1.4426950408889634 * z * z)  # exp(-z²) via exp2


def skin_weight(hue_s: Array, sat: Array, xp: Any = NUMPY) -> Array:
    """How skin-like a colour is (0..1): hue window around 35° times a saturation bump around 0.35."""
    return skin_hue_weight(hue_s, xp) * skin_sat_weight(sat, xp)
