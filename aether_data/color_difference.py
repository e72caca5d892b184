"""CIEDE2000 colour difference: the vectorised reference and a compiled mean for the gates.

Why two: ``ciede2000`` (numpy, float64) is the readable formula the tests check against Sharma,
Wu & Dalal's data; but the quality gates and the strength calibration only need the *mean* over a
thumbnail, several times per sample, and numpy's ~60 temporary arrays make that ~2 ms for 6k
pixels. ``mean_ciede2000`` is the same formula, per pixel, compiled (numba): ~20× faster, and equal
to ``ciede2000(...).mean()`` to ~1e-12 (tests/test_quality.py). No fast-math: same bytes every run.
Compiled on first use and cached next to this file, like the LUT kernels (``warm_up``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["ciede2000", "mean_ciede2000", "warm_up"]

_POW25_7 = 25.0**7


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (kL = kC = kH = 1) of two Lab arrays (..., 3), vectorised.

    Sharma, Wu & Dalal (2005); checked against their test data (tests/test_quality.py).
    """
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    c7 = c_bar**7
    g = 0.5 * (1 - np.sqrt(c7 / (c7 + _POW25_7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp = L2 - L1
    dCp = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2)
    Lbp = (L1 + L2) / 2
    Cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    hbp = np.where(
        np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2
    )
    hbp = np.where(c1p * c2p == 0, hsum, hbp)
    t = (
        1
        - 0.17 * np.cos(np.radians(hbp - 30))
        + 0.24 * np.cos(np.radians(2 * hbp))
        + 0.32 * np.cos(np.radians(3 * hbp + 6))
        - 0.20 * np.cos(np.radians(4 * hbp - 63))
    )
    d_theta = 30 * np.exp(-(((hbp - 275) / 25) ** 2))
    cb7 = Cbp**7
    rc = 2 * np.sqrt(cb7 / (cb7 + _POW25_7))
    sl = 1 + 0.015 * (Lbp - 50) ** 2 / np.sqrt(20 + (Lbp - 50) ** 2)
    sc = 1 + 0.045 * Cbp
    sh = 1 + 0.015 * Cbp * t
    rt = -np.sin(np.radians(2 * d_theta)) * rc
    return np.sqrt((dLp / sl) ** 2 + (dCp / sc) ** 2 + (dHp / sh) ** 2 + rt * (dCp / sc) * (dHp / sh))


_D2R = math.pi / 180.0
# cos/sin of the constant phase shifts in T (30°, 6°, 63°): T from one cos and one sin of h̄'
_C30, _S30 = math.cos(30 * _D2R), math.sin(30 * _D2R)
_C6, _S6 = math.cos(6 * _D2R), math.sin(6 * _D2R)
_C63, _S63 = math.cos(63 * _D2R), math.sin(63 * _D2R)


@njit(cache=True, nogil=True)
def _pixel_de(L1: float, a1: float, b1: float, L2: float, a2: float, b2: float) -> float:
    """One pixel of ``ciede2000``: the same steps and branches in float64, with T's four cosines
    from one cos/sin pair (multiple-angle identities) and integer powers as products."""
    c_bar = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    c2 = c_bar * c_bar
    c7 = c2 * c2 * c2 * c_bar
    g = 0.5 * (1 - math.sqrt(c7 / (c7 + _POW25_7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = math.hypot(a1p, b1), math.hypot(a2p, b2)
    h1p = math.degrees(math.atan2(b1, a1p)) % 360
    h2p = math.degrees(math.atan2(b2, a2p)) % 360
    dh = h2p - h1p
    if dh > 180:
        dh -= 360
    elif dh < -180:
        dh += 360
    zero = c1p * c2p == 0
    if zero:
        dh = 0.0
    dHp = 2 * math.sqrt(c1p * c2p) * math.sin(dh * _D2R / 2)
    Lbp = (L1 + L2) / 2
    Cbp = (c1p + c2p) / 2
    hsum = h1p + h2p
    if zero:
        hbp = hsum
    elif abs(h1p - h2p) > 180:
        hbp = (hsum + 360) / 2 if hsum < 360 else (hsum - 360) / 2
    else:
        hbp = hsum / 2
    ch, sh1 = math.cos(hbp * _D2R), math.sin(hbp * _D2R)
    c2h, s2h = 2 * ch * ch - 1, 2 * sh1 * ch
    c3h, s3h = ch * (4 * ch * ch - 3), sh1 * (3 - 4 * sh1 * sh1)
    c4h, s4h = 2 * c2h * c2h - 1, 2 * s2h * c2h
    t = (
        1
        - 0.17 * (ch * _C30 + sh1 * _S30)
        + 0.24 * c2h
        + 0.32 * (c3h * _C6 - s3h * _S6)
        - 0.20 * (c4h * _C63 + s4h * _S63)
    )
    u = (hbp - 275) / 25
    d_theta = 30 * math.exp(-(u * u))
    cb2 = Cbp * Cbp
    cb7 = cb2 * cb2 * cb2 * Cbp
    rc = 2 * math.sqrt(cb7 / (cb7 + _POW25_7))
    dl50 = (Lbp - 50) * (Lbp - 50)
    sl = 1 + 0.015 * dl50 / math.sqrt(20 + dl50)
    sc = 1 + 0.045 * Cbp
    sh = 1 + 0.015 * Cbp * t
    rt = -math.sin(2 * d_theta * _D2R) * rc
    dl, dc, dhh = (L2 - L1) / sl, (c2p - c1p) / sc, dHp / sh
    return math.sqrt(dl * dl + dc * dc + dhh * dhh + rt * dc * dhh)


@njit(cache=True, nogil=True)
def _mean_de(lab1: np.ndarray, lab2: np.ndarray) -> float:
    total = 0.0
    for i in range(lab1.shape[0]):
        total += _pixel_de(lab1[i, 0], lab1[i, 1], lab1[i, 2], lab2[i, 0], lab2[i, 1], lab2[i, 2])
    return total / max(lab1.shape[0], 1)


def mean_ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> float:
    """``ciede2000(lab1, lab2).mean()``, compiled: what the gates and the calibration measure."""
    # float64 like the reference: numba would keep float32 inputs in float32 arithmetic
    a = np.ascontiguousarray(lab1, dtype=np.float64).reshape(-1, 3)
    b = np.ascontiguousarray(lab2, dtype=np.float64).reshape(-1, 3)
    if a.shape != b.shape:
        raise ValueError(f"Lab arrays differ in shape: {lab1.shape} vs {lab2.shape}")
    return float(_mean_de(a, b))


def warm_up() -> None:
    """Compile (first run on a machine) or load the kernel from its cache before the first sample."""
    mean_ciede2000(np.zeros((1, 3)), np.ones((1, 3)))
