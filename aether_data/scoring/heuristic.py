"""The default aesthetic scorer: a documented blend of exposure, contrast, colour and sharpness.

It needs no weights and runs anywhere, so the embedded default pipeline can filter and rank
photos. It is not a learned aesthetic model: it rewards well-exposed, contrasty, colourful, sharp,
unclipped images, which is what the auto workflow's degradations take away. Score range 0–10 on
its own scale, higher is better: it is not the LAION aesthetic predictor and its numbers are not
comparable with LAION's (use the ``laion`` scorer for that).

    score = 10 · (0.30·exposure + 0.25·contrast + 0.20·colourfulness + 0.15·sharpness + 0.10·unclipped)

- exposure      1 − |mean L* / 100 − 0.5| / 0.4, clipped to [0, 1]  (L* = CIE lightness)
- contrast      1 − |std(L*) / 100 − 0.22| / 0.2, clipped
- colourfulness Hasler & Süsstrunk (2003) metric on 8-bit values, / 60, clipped
- sharpness     log10(1 + variance of the Laplacian of 8-bit luma) / 3, clipped
- unclipped     1 − 10 · (fraction of pixels with L* < 2 or > 98), clipped
"""

from __future__ import annotations

import cv2
import numpy as np

from aether_data.io.imaging import box_shrink

WEIGHTS = {"exposure": 0.30, "contrast": 0.25, "colourfulness": 0.20, "sharpness": 0.15, "unclipped": 0.10}


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _analysis_size(image: np.ndarray, short_edge: int = 256) -> np.ndarray:
    """Box-average by the integer factor k = ⌊short side / short_edge⌋ (short edge in [256, 512)).

    An integer factor is an exact k×k mean and keeps the score independent of the output size up
    to that factor.
    """
    return box_shrink(image, min(image.shape[:2]) // short_edge)


def analysis_image(image: np.ndarray) -> np.ndarray:
    """The uint8 thumbnail (short edge 256–511) the score is computed on.

    A uint8 image is shrunk in 8 bits and a float one rounded to 8 bits after shrinking, so every
    statistic below runs on 8-bit data (OpenCV's tabulated 8-bit Lab conversion is ~5× faster than
    the float one; L* is then quantised to 100/255, far below what the score can resolve).
    """
    arr = np.asarray(image)
    small = _analysis_size(arr if arr.dtype == np.uint8 else arr.astype(np.float32, copy=False))
    if small.dtype == np.uint8:
        return np.ascontiguousarray(small)
    return np.rint(np.clip(small, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)


def heuristic_components(image: np.ndarray) -> dict[str, float]:
    """The five terms of the score, each in [0, 1], for an HxWx3 sRGB image (float in [0, 1] or uint8)."""
    img = analysis_image(image)
    # every statistic from contiguous 8-bit / float32 planes with OpenCV's double-accumulating mean
    # and standard deviation (no strided numpy passes over the thumbnail)
    lab_l = cv2.extractChannel(cv2.cvtColor(img, cv2.COLOR_RGB2Lab), 0)  # L* · 255/100
    l_mean, l_std = (float(v[0, 0]) / 255.0 for v in cv2.meanStdDev(lab_l))
    # opponent planes R − G and 2·(½(R + G) − B), exact in int16
    red, green, blue = cv2.split(img)
    rg = cv2.subtract(red, green, dtype=cv2.CV_16S)
    yb2 = cv2.subtract(cv2.add(red, green, dtype=cv2.CV_16S), cv2.add(blue, blue, dtype=cv2.CV_16S))
    rg_mean, rg_std = (float(v[0, 0]) for v in cv2.meanStdDev(rg))
    yb_mean, yb_std = (float(v[0, 0]) / 2.0 for v in cv2.meanStdDev(yb2))
    colourful = np.hypot(rg_std, yb_std) + 0.3 * np.hypot(rg_mean, yb_mean)
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    lap_var = float(cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_32F))[1][0, 0]) ** 2
    # L* < 2 or > 98, i.e. 8-bit L ≤ 5 or ≥ 250 (0.02·255 = 5.1, 0.98·255 = 249.9)
    clipped = 1.0 - cv2.countNonZero(cv2.inRange(lab_l, 6, 249)) / lab_l.size
    return {
        "exposure": _clip01(1 - abs(l_mean - 0.5) / 0.4),
        "contrast": _clip01(1 - abs(l_std - 0.22) / 0.2),
        "colourfulness": _clip01(float(colourful) / 60.0),
        "sharpness": _clip01(np.log10(1 + lap_var) / 3.0),
        "unclipped": _clip01(1 - 10 * clipped),
    }


def heuristic_score(image: np.ndarray) -> float:
    """Heuristic score in [0, 10], its own scale, not LAION's (formula in the module docstring)."""
    comps = heuristic_components(image)
    return round(10.0 * sum(WEIGHTS[k] * v for k, v in comps.items()), 4)
