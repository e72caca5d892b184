"""Compiled per-pixel passes (numba) of the spatial preset operations (``local_ops``).

Why: each spatial operation ends in a per-pixel combination of the image with a full-resolution
map (a luma delta, a transmission, a gain). In numpy that is several passes over HxWx3 float32
with broadcasting and temporaries (~1 ms each at 512×768); here it is one pass. Same formulas as
the numpy expressions they replace, in float32; compiled on first use and cached next to this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def add_to_channels(pixels: np.ndarray, delta: np.ndarray, out: np.ndarray) -> None:
    """``out[i, c] = pixels[i, c] + delta[i]``: a luma change applied to R, G and B alike."""
    for i in range(pixels.shape[0]):
        d = delta[i]
        out[i, 0] = pixels[i, 0] + d
        out[i, 1] = pixels[i, 1] + d
        out[i, 2] = pixels[i, 2] + d


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
            m = min(max(np.float32(4.0) * y * (np.float32(1.0) - y), np.float32(0.0)), np.float32(1.0))
            d = d * (np.float32(0.25) + np.float32(0.75) * m)
        out[i, 0] = pixels[i, 0] + d
        out[i, 1] = pixels[i, 1] + d
        out[i, 2] = pixels[i, 2] + d


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
    wr = luma_weights[0]
    wg = luma_weights[1]
    wb = luma_weights[2]
    for i in range(pixels.shape[0]):
        r = pixels[i, 0]
        g = pixels[i, 1]
        bl = pixels[i, 2]
        y = wr * r + wg * g + wb * bl
        m = min(max(np.float32(4.0) * y * (np.float32(1.0) - y), np.float32(0.0)), np.float32(1.0))
        d = k * (a * coarse[i] + b * fine_table[fine_codes[i]]) * (np.float32(0.35) + np.float32(0.65) * m)
        out[i, 0] = r + d
        out[i, 1] = g + d
        out[i, 2] = bl + d


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


@njit(cache=True, nogil=True)
def curve_gain_curve(
    pixels: np.ndarray,
    gain: np.ndarray,
    first: np.ndarray,
    first_step: np.ndarray,
    second: np.ndarray,
    second_step: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out = T2(clip(T1(clip(x)) · gain))`` per channel, for (P, 3) float32 pixels and (P,) gains.

    T1, T2 are 1-D functions on [0, 1] tabulated at n + 1 points (``first[i]`` the value at i/n,
    ``first_step[i]`` the increment to the next), interpolated linearly. One pass, tables in L1:
    an exposure-like change in linear light (sRGB decode, gain, encode) at ~10× numpy's cost.
    """
    n = first.shape[0]
    scale = np.float32(n)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for i in range(pixels.shape[0]):
        g = gain[i]
        for c in range(3):
            x = min(max(pixels[i, c], zero), one) * scale
            k = min(int(x), n - 1)
            y = (first[k] + first_step[k] * (x - np.float32(k))) * g
            y = min(max(y, zero), one) * scale
            k = min(int(y), n - 1)
            out[i, c] = second[k] + second_step[k] * (y - np.float32(k))


def warm_up() -> None:
    """Compile or load every kernel on tiny inputs (see `lut_kernel.warm_up`)."""
    px = np.zeros((4, 3), np.float32)
    out = np.empty_like(px)
    row = np.zeros(4, np.float32)
    table = np.zeros(8, np.float32)
    add_to_channels(px, row, out)
    detail_pass(px, row, row, row, 0.5, True, out)
    grain_pass(px, row, np.zeros(4, np.uint8), table, 0.5, 0.5, 0.5, np.zeros(3, np.float32), out)
    haze_pass(px, row, np.zeros(3, np.float32), 0.5, 0.2, 0.55, out)
    curve_gain_curve(px, row, table, table, table, table, out)
