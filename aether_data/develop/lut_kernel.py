"""Compiled 8-bit 3D LUT kernel (numba): the per-pixel pass that every baked render ends in.

Why a kernel of our own: applying a LUT is the largest per-pixel cost of the param and style
workflows. Pillow's C ``Color3DLUT`` (trilinear, 16-bit fixed point) takes ~6 ms for a 512² image
on one core; this tetrahedral kernel takes ~1.8 ms and is ~1 dB closer to the engine (tetrahedral
keeps the grey axis exact and needs 4 look-ups instead of 8). Two choices make it fast:

* 8-bit input: the grid cell and the fraction of each of the 256 possible values are tabulated
  once per call, so a pixel costs three table reads instead of three multiplies and floors;
* branchless tetrahedron choice (min/max and integer arithmetic on the comparisons): photos pick
  the tetrahedron nearly at random from pixel to pixel, so a branch per pixel is mispredicted.

Compiled on first use and cached next to this file (``cache=True``), so later processes and Ray
workers load it in milliseconds. No fast-math: results are the same bytes on every run.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _cell_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each 8-bit value: the lower grid index and the fraction towards the next grid point."""
    scale = np.float32((n - 1) / 255.0)
    base = np.empty(256, np.int64)
    frac = np.empty(256, np.float32)
    for v in range(256):
        pos = np.float32(v) * scale
        b = min(int(pos), n - 2)
        base[v] = b
        frac[v] = pos - np.float32(b)
    return base, frac


@njit(cache=True, nogil=True, inline="always")
def _tetrahedron(
    fr: float, fg: float, fb: float, sr: int, sg: int
) -> tuple[int, int, float, float, float, float]:
    """Offsets of the two middle vertices (from c000) and the four weights of a cell's tetrahedron.

    The vertex after c000 steps along the largest fraction's axis; the one before c111 lacks the
    smallest fraction's axis (ties resolved in r, g, b order, as in develop.lut.apply_lut). Integer
    arithmetic, not `a if c else b`: LLVM turns those into mispredicted branches (2-3× slower).
    """
    f1 = max(max(fr, fg), fb)
    f3 = min(min(fr, fg), fb)
    f2 = fr + fg + fb - f1 - f3
    r_max = np.int64(fr >= fg) & np.int64(fr >= fb)
    g_max = (1 - r_max) & np.int64(fg >= fb)
    step_max = r_max * (sr - 1) + g_max * (sg - 1) + 1
    b_min = np.int64(fb <= fg) & np.int64(fb <= fr)
    g_min = (1 - b_min) & np.int64(fg <= fr)
    step_min = b_min + g_min * sg + (1 - b_min - g_min) * sr
    return step_max, sr + sg + 1 - step_min, np.float32(1.0) - f1, f1 - f2, f2 - f3, f3


@njit(cache=True, nogil=True)
def tetrahedral_u8(pixels: np.ndarray, table: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out[i] = LUT(pixels[i])`` for (P, 3) uint8 pixels; ``table`` is the (n³, 3) float32 LUT in
    0..255 units, indexed ``r·n² + g·n + b``. Rounded to nearest and clamped to 0..255."""
    base, frac = _cell_tables(n)
    sr = n * n
    sg = n
    corner = sr + sg + 1
    half = np.float32(0.5)
    lo = np.float32(0.0)
    hi = np.float32(255.0)
    for i in range(pixels.shape[0]):
        r = pixels[i, 0]
        g = pixels[i, 1]
        b = pixels[i, 2]
        i0 = base[r] * sr + base[g] * sg + base[b]
        o1, o2, w0, w1, w2, w3 = _tetrahedron(frac[r], frac[g], frac[b], sr, sg)
        v1 = i0 + o1
        v2 = i0 + o2
        v3 = i0 + corner
        for c in range(3):
            v = w0 * table[i0, c] + w1 * table[v1, c] + w2 * table[v2, c] + w3 * table[v3, c] + half
            out[i, c] = np.uint8(min(max(v, lo), hi))


@njit(cache=True, nogil=True)
def mark_cells_u8(pixels: np.ndarray, n: int, used: np.ndarray) -> None:
    """Mark in ``used`` (n³ bools, indexed by a cell's lowest corner) every cell these pixels fall in.

    One table look-up per channel and one store per pixel: ~4× cheaper than working out which
    tetrahedron each pixel reads, for ~1.5× more vertices baked.
    """
    base, _ = _cell_tables(n)
    sr = n * n
    for i in range(pixels.shape[0]):
        used[base[pixels[i, 0]] * sr + base[pixels[i, 1]] * n + base[pixels[i, 2]]] = True


def _pixels(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image, dtype=np.uint8).reshape(-1, 3)


def apply_tetrahedral_u8(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 image through an (N, N, N, 3) float LUT in [0, 1] → HxWx3 uint8."""
    n = lut.shape[0]
    table = np.multiply(lut.reshape(-1, 3), np.float32(255.0), dtype=np.float32)
    pixels = _pixels(image)
    out = np.empty_like(pixels)
    tetrahedral_u8(pixels, table, n, out)
    return out.reshape(image.shape)


def vertices_read_u8(image: np.ndarray, n: int) -> np.ndarray:
    """Flat indices (``r·n² + g·n + b``, ascending) of the corners of every lattice cell this uint8
    image falls in: all the vertices an n³ LUT lookup can read (typically 10-20 % of the lattice
    for a photo)."""
    cells = np.zeros(n * n * n, np.bool_)
    mark_cells_u8(_pixels(image), n, cells)
    used = cells.copy()
    for offset in (1, n, n + 1, n * n, n * n + 1, n * n + n, n * n + n + 1):
        used[offset:] |= cells[: cells.size - offset]  # cells never start on the top face: no wrap
    return np.flatnonzero(used)


def warm_up() -> None:
    """Compile (first run on a machine) or load from the cache every kernel signature the build
    uses, on tiny inputs, so that no sample pays for it. Decoded images arrive read-only (numba
    types them apart from writable arrays), so both kinds are warmed."""
    lut = np.zeros((2, 2, 2, 3), np.float32)
    for writable in (True, False):
        image = np.zeros((2, 2, 3), np.uint8)
        image.flags.writeable = writable
        apply_tetrahedral_u8(image, lut)
        vertices_read_u8(image, 2)
