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
    trans: np.ndarray,
    atmos: np.ndarray,
    amount: float,
    t_min: float,
    add: float,
    out: np.ndarray,
) -> None:
    """Dehaze recombination with transmission t and atmospheric light A. amount > 0:
    (I − A) / max(1 − amount·(1 − t), t_min) + A; amount < 0: I·(1 − w) + A·w with
    w = −add·amount·(0.5 + 0.5·(1 − t))."""
    am = np.float32(amount)
    floor = np.float32(t_min)
    gain = np.float32(-add) * am
    one = np.float32(1.0)
    half = np.float32(0.5)
    for i in range(pixels.shape[0]):
        t = trans[i]
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


@njit(cache=True, nogil=True)
def vignette_pass(
    pixels: np.ndarray,
    width_px: int,
    big_u: np.ndarray,
    big_v: np.ndarray,
    power: float,
    corner: float,
    centre: float,
    width: float,
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
    """Post-crop vignette, mask and style in one pass (``local_ops.vignette``).

    Mask m = smoothstep((d − (centre − width/2)) / width), d = (U[x] + V[y])^(1/p) / corner.
    Style 3: blend towards white (amount > 0) or black by |amount|·m. Otherwise stops =
    max_stops·amount·m; style 1 multiplies the linear-light channels by 2^stops (sRGB decode and
    encode tabulated), protecting highlights by (1 − 0.6·hc·smoothstep((y − 0.6)/0.4)) when
    darkening; style 2 moves every channel by the luma change clip(y·2^(0.8·stops)) − y.
    2^x is tabulated on [−exp2_range, exp2_range] (a libm exp2 per pixel cost more than the rest).
    """
    to_unit = np.float32(0.5 / exp2_range)
    inv_p = np.float32(1.0 / power)
    square = power == 2.0
    inv_corner = np.float32(1.0 / corner)
    onset = np.float32(centre - 0.5 * width)
    inv_width = np.float32(1.0 / width)
    am = np.float32(amount)
    stops_per_m = np.float32(max_stops * amount)
    hc = np.float32(highlight_contrast)
    target = np.float32(1.0) if am > 0 else np.float32(0.0)
    one = np.float32(1.0)
    row = 0
    col = 0
    for i in range(pixels.shape[0]):
        if col == width_px:  # row by row without a division per pixel
            col = 0
            row += 1
        r2 = big_u[col] + big_v[row]
        col += 1
        d = (np.sqrt(r2) if square else r2**inv_p) * inv_corner
        m = _smoothstep((d - onset) * inv_width)
        r = pixels[i, 0]
        g = pixels[i, 1]
        b = pixels[i, 2]
        if style == 3:
            k = abs(am) * m
            out[i, 0] = r * (one - k) + target * k
            out[i, 1] = g * (one - k) + target * k
            out[i, 2] = b * (one - k) + target * k
            continue
        stops = stops_per_m * m
        y = _luma_at(pixels, i, luma_weights)
        if style == 1:
            if am < 0:
                stops = stops * (
                    one - np.float32(0.6) * hc * _smoothstep((y - np.float32(0.6)) / np.float32(0.4))
                )
            gain = _table(stops * to_unit + np.float32(0.5), exp2_table)
            out[i, 0] = _table(_table(r, to_linear) * gain, to_srgb)
            out[i, 1] = _table(_table(g, to_linear) * gain, to_srgb)
            out[i, 2] = _table(_table(b, to_linear) * gain, to_srgb)
        else:
            gain = _table(np.float32(0.8) * stops * to_unit + np.float32(0.5), exp2_table)
            _add_luma_at(pixels, i, min(max(y * gain, np.float32(0.0)), one) - y, out)


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
    haze_pass(px, row, np.zeros(3, np.float32), 0.5, 0.2, 0.55, out)
    for style in (1, 2, 3):
        vignette_pass(
            px,
            2,
            row,
            row,
            2.0,
            1.0,
            0.5,
            0.5,
            style,
            -0.5,
            1.6,
            0.5,
            row[:3],
            table2,
            table2,
            table2,
            2.0,
            out,
        )
