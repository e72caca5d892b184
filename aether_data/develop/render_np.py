"""The numpy render of the develop engine: the closed form of `engine_np`, evaluated fast.

Linear, tone and hue parts each depend on one per-pixel number, so they are evaluated on dense
grids once per parameter set and gathered per pixel, in cache-sized blocks. `render_exact` runs the
closed form pixel by pixel (the reference the fast path is tested against).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from aether_data import params as P

from .color import (
    NUMPY,
    luminance,
)
from .engine_np import (
    HueTerms,
    Params,
    colour_active,
    colour_analysis,
    colour_apply,
    develop,
    hue_terms,
    linear_stage,
    tone_active,
    tone_apply,
    tone_curve,
)

LINEAR_TABLE_SIZE = 4096
TONE_TABLE_SIZE = 4096
HUE_TABLE_SIZE = 1440
"""Grid intervals of the numpy fast path. Each of these parts is a function of ONE per-pixel number
(a channel value, the luma, the hue), so numpy evaluates the closed form above on a dense grid and
interpolates linearly (a gather is far cheaper than dozens of elementwise passes). The deviation
from the per-pixel closed form (``develop``, which torch runs) is < 1e-4, tested."""
CHUNK_PIXELS = 32768
"""Pixels per block in the numpy fast path: blocks keep the ~40 temporaries in cache (the engine
is memory-bound otherwise, ~3× slower on a 512×768 image)."""


def _grid(lo: float, hi: float, size: int) -> np.ndarray:
    return np.linspace(lo, hi, size + 1, dtype=np.float64).astype(np.float32)


class _Table:
    """A 1-D function sampled uniformly on [lo, hi]: start values and per-interval increments."""

    def __init__(self, values: Any) -> None:
        values = np.asarray(values, dtype=np.float32)
        self.base = np.ascontiguousarray(values[:-1])
        self.step = np.diff(values).astype(np.float32)


class _Index:
    """Interval index and fraction of x on a uniform grid (computed once, used by several tables)."""

    def __init__(self, x: np.ndarray, lo: float, hi: float, size: int) -> None:
        pos = (x - np.float32(lo)) * np.float32(size / (hi - lo))
        np.clip(pos, 0.0, size, out=pos)
        idx = pos.astype(np.intp)
        np.clip(idx, 0, size - 1, out=idx)  # also keeps NaN pixels (garbage in) in bounds
        pos -= idx
        self.idx, self.frac = idx, pos

    def __call__(self, table: _Table) -> np.ndarray:
        out = table.base.take(self.idx)
        out += table.step.take(self.idx) * self.frac
        return out


class FastPlan:
    """Tables for one parameter set; ``run`` develops a block of pixels (numpy fast path).

    Same formulas as ``develop``: the linear stage, the tone curve and the hue terms are evaluated
    by the shared stage functions on grids; everything 2-D/3-D (chroma, saturation, vibrance,
    rebuilding RGB) runs per pixel exactly as in ``develop``.
    """

    def __init__(self, p: Params) -> None:
        xp = NUMPY
        self.p = p
        self.linear: list[_Table] | None = None
        if not xp.is_zero(p["IncrementalTemperature"], p["IncrementalTint"], p["Exposure2012"]):
            grid = _grid(0.0, 1.0, LINEAR_TABLE_SIZE)
            self.linear = [_Table(c) for c in linear_stage(grid, grid, grid, p, xp)]
        self.tone: tuple[_Table, _Table] | None = None
        if tone_active(p, xp):
            curve, slope = tone_curve(_grid(0.0, 1.0, TONE_TABLE_SIZE), p, xp)
            self.tone = (_Table(curve), _Table(slope))
        self.hue: list[_Table | None] | None = None
        if colour_active(p, xp):
            grid = _grid(-180.0, 180.0, HUE_TABLE_SIZE)
            terms = hue_terms(grid, np.where(grid < 0.0, grid + 360.0, grid), p, xp)
            self.hue = [None if t is None else _Table(t) for t in terms]

    def run(self, r: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Develop one block of encoded channels (1-D arrays); output clipped to [0, 1]."""
        xp, p = NUMPY, self.p
        r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
        if self.linear is not None:
            r, g, b = (
                _Index(c, 0.0, 1.0, LINEAR_TABLE_SIZE)(t) for c, t in zip((r, g, b), self.linear, strict=True)
            )
        if self.tone is not None:
            t = luminance(r, g, b)
            look = _Index(t, 0.0, 1.0, TONE_TABLE_SIZE)
            r, g, b = tone_apply(r, g, b, t, look(self.tone[0]), look(self.tone[1]), xp)
            r, g, b = (np.clip(c, 0.0, 1.0) for c in (r, g, b))
        if self.hue is not None:
            luma, a, bb, s, hue_s = colour_analysis(r, g, b, xp)
            look = _Index(hue_s, -180.0, 180.0, HUE_TABLE_SIZE)
            terms = HueTerms(*(None if t is None else look(t) for t in self.hue))
            r, g, b = colour_apply(luma, a, bb, s, terms, p, xp)
        return np.clip(r, 0.0, 1.0), np.clip(g, 0.0, 1.0), np.clip(b, 0.0, 1.0)

    def render_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 3) float32 → (N, 3) float32, block by block."""
        out = np.empty_like(pixels)
        for start in range(0, pixels.shape[0], CHUNK_PIXELS):
            block = pixels[start : start + CHUNK_PIXELS]
            dst = out[start : start + CHUNK_PIXELS]
            dst[:, 0], dst[:, 1], dst[:, 2] = self.run(block[:, 0], block[:, 1], block[:, 2])
        return out


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def normalised_params(params: Mapping[str, float]) -> dict[str, np.float32]:
    """Validate slider-scale params (missing = 0) → normalised float32 scalars for all 38 keys."""
    vec = P.to_vector(params)
    return {n: np.float32(v) for n, v in zip(P.PARAM_NAMES, vec, strict=True)}


def render(image: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """Develop an HxWx3 float sRGB image in [0, 1] with slider-scale ``params`` (missing keys = 0).

    Returns float32 HxWx3 in [0, 1]. All-zero params return the input unchanged. Stages whose
    parameters are all zero are skipped (they are exact identities), and the 1-D parts are
    tabulated (``FastPlan``), which keeps a 512×768 render at a few tens of ms.
    """
    arr = _check_image(image)
    p = normalised_params(params)
    if all(v == 0 for v in p.values()):
        return arr.copy()
    pixels = np.ascontiguousarray(arr).reshape(-1, 3)
    return _plan(tuple(float(v) for v in p.values())).render_pixels(pixels).reshape(arr.shape)


@functools.lru_cache(maxsize=4)
def _plan(values: tuple[float, ...]) -> FastPlan:
    """The tables of one parameter set, kept for the next few renders: the build renders a draw's
    LUT twice (its preview on the gates' thumbnail, then at full size), and building the tables
    costs as much as evaluating a thumbnail's lattice. Read-only once built."""
    return FastPlan({n: np.float32(v) for n, v in zip(P.PARAM_NAMES, values, strict=True)})


def render_exact(image: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """Like ``render`` but fully per-pixel closed form (no tables): the reference for tests."""
    arr = _check_image(image)
    p = normalised_params(params)
    planar = np.ascontiguousarray(np.moveaxis(arr, -1, 0))
    r, g, b = develop(planar[0], planar[1], planar[2], p, NUMPY)
    return np.stack([r, g, b], axis=-1)
