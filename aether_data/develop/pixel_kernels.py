"""Compiled per-pixel passes (numba) of the spatial preset operations (``local_ops``).

Why: each spatial operation ends in a per-pixel combination of the image with a full-resolution
map (a luma delta, a transmission, a gain). In numpy that is several passes over HxWx3 float32
with broadcasting and temporaries (~1 ms each at 512×768); here it is one pass. Same formulas as
the numpy expressions they replace, in float32; compiled on first use and cached next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _add_luma_at(pixels: np.ndarray, i: int, d: float, out: np.ndarray) -> None:
    """``out[i] = pixels[i] + d`` on R, G and B alike (a luma change that keeps chroma offsets)."""
    out[i, 0] = pixels[i, 0] + d
    out[i, 1] = pixels[i, 1] + d
    out[i, 2] = pixels[i, 2] + d


@njit(cache=True, nogil=True, inline="always")
def _luma_at(pixels: np.ndarray, i: int, weights: np.ndarray) -> float:
    """Rec.709 luma of pixel i (``weights`` = the three luma weights)."""
    return weights[0] * pixels[i, 0] + weights[1] * pixels[i, 1] + weights[2] * pixels[i, 2]


@njit(cache=True, nogil=True, inline="always")
def _midtones(y: float) -> float:
    """clip(4y(1 − y), 0, 1): 1 at mid-grey, 0 at black and white."""
    return min(max(np.float32(4.0) * y * (np.float32(1.0) - y), np.float32(0.0)), np.float32(1.0))


@njit(cache=True, nogil=True)
def add_to_channels(pixels: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:
    """``out[i, c] = pixels[i, c] + delta[i]``: a luma change applied to R, G and B alike."""
    for i in range(pixels.shape[0]):
        _add_luma_at(pixels, i, delta[i], out)


@njit(cache=True, nogil=True)
def detail_pass(
    pixels: np.ndarray,
    luma: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    strength: float,
    midtones: bool,
    out: np.ndarray,
) -> None:
    """Clarity / texture: base = a·y + b (guided-filter coefficients), delta = strength·(y − base),
    weighted by 0.25 + 0.75·clip(4y(1 − y), 0, 1) when ``midtones``, added to every channel."""
    k = np.float32(strength)
    for i in range(pixels.shape[0]):
        y = luma[i]
        d = k * (y - (a[i] * y + b[i]))
        if midtones:
            d = d * (np.float32(0.25) + np.float32(0.75) * _midtones(y))
        _add_luma_at(pixels, i, d, out)


@njit(cache=True, nogil=True)
def grain_pass(
    pixels: np.ndarray,
    coarse: np.ndarray,
    fine_codes: np.ndarray,
    fine_table: np.ndarray,
    coarse_weight: float,
    fine_weight: float,
    strength: float,
    luma_weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """Film grain: noise = a·coarse + b·table[code], scaled by strength and a mid-tone weight
    0.35 + 0.65·clip(4y(1 − y), 0, 1) of the pixel's luma y, added to every channel."""
    a = np.float32(coarse_weight)
    b = np.float32(fine_weight)
    k = np.float32(strength)
    for i in range(pixels.shape[0]):
        m = _midtones(_luma_at(pixels, i, luma_weights))
        d = k * (a * coarse[i] + b * fine_table[fine_codes[i]]) * (np.float32(0.35) + np.float32(0.65) * m)
        _add_luma_at(pixels, i, d, out)


@njit(cache=True, nogil=True)
def haze_pass(
    pixels: np.ndarray,
    luma: np.ndarray,
    coef_a: np.ndarray,
    coef_b: np.ndarray,
    atmos: np.ndarray,
    amount: float,
    t_min: float,
    add: float,
    out: np.ndarray,
) -> None:
    """Dehaze recombination with atmospheric light A and transmission t = clip(a·y + b, 0, 1)
    (the guided filter's output from its coefficients and the luma y, computed here rather than
    in three full-size numpy passes). amount > 0: (I − A) / max(1 − amount·(1 − t), t_min) + A;
    amount < 0: I·(1 − w) + A·w with w = −add·amount·(0.5 + 0.5·(1 − t))."""
    am = np.float32(amount)
    floor = np.float32(t_min)
    gain = np.float32(-add) * am
    zero = np.float32(0.0)
    one = np.float32(1.0)
    half = np.float32(0.5)
    for i in range(pixels.shape[0]):
        t = min(max(coef_a[i] * luma[i] + coef_b[i], zero), one)
        if am > 0:
            tt = max(one - am * (one - t), floor)
            for c in range(3):
                out[i, c] = (pixels[i, c] - atmos[c]) / tt + atmos[c]
        else:
            w = gain * (half + half * (one - t))
            for c in range(3):
                out[i, c] = pixels[i, c] * (one - w) + atmos[c] * w


@njit(cache=True, nogil=True, inline="always")
def _table(x: float, table: np.ndarray) -> float:
    """A 1-D function on [0, 1] tabulated at n + 1 points, interpolated linearly (x clipped);
    ``table[k] = (value at k/n, increment to the next)``: one cache line per look-up."""
    n = table.shape[0]
    pos = min(max(x, np.float32(0.0)), np.float32(1.0)) * np.float32(n)
    k = min(int(pos), n - 1)
    return table[k, 0] + table[k, 1] * (pos - np.float32(k))


@njit(cache=True, nogil=True, inline="always")
def _smoothstep(z: float) -> float:
    z = min(max(z, np.float32(0.0)), np.float32(1.0))
    return z * z * (np.float32(3.0) - np.float32(2.0) * z)


SRGB_KNEE = 0.04045
"""Encoded value where the sRGB curve leaves its linear toe for the 2.4 power segment."""


@njit(cache=True, nogil=True, inline="always")
def _exposure_srgb(x: float, gain: float, slope: float, to_linear: np.ndarray, to_srgb: np.ndarray) -> float:
    """sRGB-encoded x with its linear light multiplied by ``gain`` (clipped to [0, 1]).

    On the power segment of the sRGB curve, enc(gain·dec(x)) = (x + 0.055)·gain^(1/2.4) − 0.055
    exactly (``slope`` = gain^(1/2.4)): one multiply-add instead of two table look-ups (the
    look-ups' dependent chain made this the vignette's whole cost). Where x or the result lies
    on the linear toe, the tabulated decode and encode as before."""
    knee = np.float32(SRGB_KNEE)
    offset = np.float32(0.055)
    y = (x + offset) * slope - offset
    if x > knee and y > knee:
        return min(y, np.float32(1.0))
    return _table(_table(x, to_linear) * gain, to_srgb)


@njit(cache=True, nogil=True)
def vignette_quarter(
    big_u: np.ndarray,
    big_v: np.ndarray,
    power: float,
    corner: float,
    centre: float,
    width: float,
    stops_per_m: float,
    gain_stops: float,
    exp2_table: np.ndarray,
    exp2_range: float,
    out: np.ndarray,
) -> None:
    """The vignette's position-only terms on the top-left quarter of the frame (the mask is
    mirror-symmetric: ``big_u`` / ``big_v`` are), ``out`` (3, h/2, w/2):

    m = smoothstep((d − (centre − width/2)) / width), d = (U[x] + V[y])^(1/p) / corner;
    2^(gain_stops·stops) and 2^(stops/2.4) with stops = stops_per_m·m (2^x tabulated on
    [−exp2_range, exp2_range]: a libm exp2 per pixel cost more than the rest)."""
    to_unit = np.float32(0.5 / exp2_range)
    inv_p = np.float32(1.0 / power)
    square = power == 2.0
    inv_corner = np.float32(1.0 / corner)
    onset = np.float32(centre - 0.5 * width)
    inv_width = np.float32(1.0 / width)
    k = np.float32(stops_per_m)
    g = np.float32(gain_stops)
    s_unit = to_unit / np.float32(2.4)
    half = np.float32(0.5)
    for row in range(out.shape[1]):
        for col in range(out.shape[2]):
            r2 = big_u[col] + big_v[row]
            d = (np.sqrt(r2) if square else r2**inv_p) * inv_corner
            m = _smoothstep((d - onset) * inv_width)
            stops = k * m
            out[0, row, col] = m
            out[1, row, col] = _table(g * stops * to_unit + half, exp2_table)
            out[2, row, col] = _table(stops * s_unit + half, exp2_table)


@njit(cache=True, nogil=True)
def vignette_pass(
    pixels: np.ndarray,
    width_px: int,
    quarter: np.ndarray,
    style: int,
    amount: float,
    max_stops: float,
    highlight_contrast: float,
    luma_weights: np.ndarray,
    to_linear: np.ndarray,
    to_srgb: np.ndarray,
    exp2_table: np.ndarray,
    exp2_range: float,
    out: np.ndarray,
) -> None:
    """Post-crop vignette (``local_ops.vignette``): the style per pixel, from the mask m and the
    gains that `vignette_quarter` computed once per quarter of the frame (mirrored here).

    Style 3: blend towards white (amount > 0) or black by |amount|·m. Otherwise stops =
    max_stops·amount·m; style 1 multiplies the linear-light channels by 2^stops (closed form on the
    sRGB power segment, tabulated decode and encode on its toe: `_exposure_srgb`), protecting
    highlights by (1 − 0.6·hc·smoothstep((y − 0.6)/0.4)) when darkening (then the gains depend on
    the pixel and are looked up here); style 2 moves every channel by the luma change
    clip(y·2^(0.8·stops)) − y.
    """
    to_unit = np.float32(0.5 / exp2_range)
    am = np.float32(amount)
    stops_per_m = np.float32(max_stops * amount)
    hc = np.float32(highlight_contrast)
    per_pixel = style == 1 and am < 0 and hc != 0
    target = np.float32(1.0) if am > 0 else np.float32(0.0)
    one = np.float32(1.0)
    half = np.float32(0.5)
    height = pixels.shape[0] // width_px
    for row in range(height):
        qr = min(row, height - 1 - row)
        for col in range(width_px):
            qc = min(col, width_px - 1 - col)
            i = row * width_px + col
            m = quarter[0, qr, qc]
            r = pixels[i, 0]
            g = pixels[i, 1]
            b = pixels[i, 2]
            if style == 3:
                k = abs(am) * m
                out[i, 0] = r * (one - k) + target * k
                out[i, 1] = g * (one - k) + target * k
                out[i, 2] = b * (one - k) + target * k
            elif style == 1:
                gain = quarter[1, qr, qc]
                slope = quarter[2, qr, qc]
                if per_pixel:
                    y = _luma_at(pixels, i, luma_weights)
                    stops = (stops_per_m * m) * (
                        one - np.float32(0.6) * hc * _smoothstep((y - np.float32(0.6)) / np.float32(0.4))
                    )
                    gain = _table(stops * to_unit + half, exp2_table)
                    slope = _table(stops * (to_unit / np.float32(2.4)) + half, exp2_table)
                out[i, 0] = _exposure_srgb(r, gain, slope, to_linear, to_srgb)
                out[i, 1] = _exposure_srgb(g, gain, slope, to_linear, to_srgb)
                out[i, 2] = _exposure_srgb(b, gain, slope, to_linear, to_srgb)
            else:
                y = _luma_at(pixels, i, luma_weights)
                _add_luma_at(pixels, i, min(max(y * quarter[1, qr, qc], np.float32(0.0)), one) - y, out)


def warm_up() -> None:
    """Compile or load every kernel on tiny inputs (see `lut_kernel.warm_up`)."""
    px = np.zeros((4, 3), np.float32)
    out = np.empty_like(px)
    row = np.zeros(4, np.float32)
    table = np.zeros(8, np.float32)
    table2 = np.zeros((8, 2), np.float32)
    add_to_channels(px, row, out)
    detail_pass(px, row, row, row, 0.5, True, out)
    grain_pass(px, row, np.zeros(4, np.uint8), table, 0.5, 0.5, 0.5, np.zeros(3, np.float32), out)
    haze_pass(px, row, row, row, np.zeros(3, np.float32), 0.5, 0.2, 0.55, out)
    quarter = np.zeros((3, 1, 1), np.float32)
    vignette_quarter(row, row, 2.0, 1.0, 0.5, 0.5, -0.8, 1.0, table2, 2.0, quarter)
    for style in (1, 2, 3):
        vignette_pass(px, 2, quarter, style, -0.5, 1.6, 0.5, row[:3], table2, table2, table2, 2.0, out)
