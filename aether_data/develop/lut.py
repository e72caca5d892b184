"""3D LUTs: bake the (purely per-pixel) develop engine, apply it fast, read/write Adobe .cube.

LUT layout everywhere: ``lut[r, g, b] = (R, G, B)``, float32, shape (N, N, N, 3), grid over
[0, 1]^3 in sRGB. Baking 33³ points costs about as much as rendering a 190×190 image; applying is
a fixed cost per pixel whatever the parameters, and the same LUT can be exported as .cube.

Accuracy of bake + apply against ``render`` (PSNR on real photos, measured for tests/test_develop.py):
at size 33 ≥ 49 dB for moderate random parameters (σ = 0.3 of the slider range), ≈ 44-46 dB worst
case for strong ones (σ = 0.6); slider extremes (±100 everywhere) can drop to ≈ 34 dB at 33 and
≈ 43 dB at 65, because clipping creates kinks that no grid resolves. Tetrahedral is ~1-2 dB better
than trilinear and faster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from aether_data.io.atomic import atomic_write_text
from aether_data.io.imaging import quantise_u8

from .render_np import render

DEFAULT_LUT_SIZE = 33


class CubeError(ValueError):
    """A .cube file that cannot be read (malformed, wrong size, 1D LUT, unsupported domain)."""


def identity_lut(size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
    """The identity LUT: lut[i, j, k] = (i, j, k) / (size − 1) (a fresh array the caller may modify)."""
    if size < 2:
        raise ValueError(f"LUT size must be at least 2, got {size}")
    return _identity(int(size)).copy()


@lru_cache(maxsize=8)
def _identity(size: int) -> np.ndarray:
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    rr, gg, bb = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack([rr, gg, bb], axis=-1)


def bake_lut(params: Mapping[str, float], size: int = DEFAULT_LUT_SIZE) -> np.ndarray:
    """Render the identity grid through the engine → (size, size, size, 3) float32 LUT indexed [r, g, b]."""
    grid = identity_lut(size)
    out = render(grid.reshape(size * size, size, 3), params)
    return out.reshape(size, size, size, 3).astype(np.float32, copy=False)


def _check_lut(lut: np.ndarray) -> np.ndarray:
    arr = np.asarray(lut, dtype=np.float32)
    if (
        arr.ndim != 4
        or arr.shape[-1] != 3
        or not arr.shape[0] == arr.shape[1] == arr.shape[2]
        or arr.shape[0] < 2
    ):
        raise ValueError(f"expected a (N, N, N, 3) LUT with N ≥ 2, got shape {arr.shape}")
    return arr


APPLY_CHUNK = 32768
"""Pixels per block in ``apply_lut`` (keeps the temporaries in cache)."""


def _apply_block(pix: np.ndarray, flat: np.ndarray, n: int, method: str) -> np.ndarray:
    pos = np.clip(pix, 0.0, 1.0) * np.float32(n - 1)
    base = pos.astype(np.intp)
    np.clip(base, 0, n - 2, out=base)  # also keeps NaN pixels (garbage in) in bounds
    pos -= base
    fr, fg, fb = pos[:, 0:1], pos[:, 1:2], pos[:, 2:3]
    sr, sg = n * n, n
    idx0 = base[:, 0] * sr + base[:, 1] * sg + base[:, 2]
    if method == "trilinear":
        out = np.zeros_like(pix)
        for dr in (0, 1):
            wr = fr if dr else 1.0 - fr
            for dg in (0, 1):
                wrg = wr * (fg if dg else 1.0 - fg)
                for db in (0, 1):
                    wb = fb if db else 1.0 - fb
                    out += (wrg * wb) * flat.take(idx0 + (dr * sr + dg * sg + db), axis=0)
        return out
    # tetrahedral: f1 ≥ f2 ≥ f3; vertices c000, c000 + e(max), c111 − e(min), c111
    f1 = np.maximum(np.maximum(fr, fg), fb)
    f3 = np.minimum(np.minimum(fr, fg), fb)
    f2 = fr + fg + fb - f1 - f3
    r_max = (fr >= fg) & (fr >= fb)
    g_max = ~r_max & (fg >= fb)
    step_max = np.where(r_max[:, 0], sr, np.where(g_max[:, 0], sg, 1))
    b_min = (fb <= fg) & (fb <= fr)
    g_min = ~b_min & (fg <= fr)
    step_min = np.where(b_min[:, 0], 1, np.where(g_min[:, 0], sg, sr))
    corner = sr + sg + 1
    out = (1.0 - f1) * flat.take(idx0, axis=0)
    out += (f1 - f2) * flat.take(idx0 + step_max, axis=0)
    out += (f2 - f3) * flat.take(idx0 + (corner - step_min), axis=0)
    out += f3 * flat.take(idx0 + corner, axis=0)
    return out


def apply_lut(image: np.ndarray, lut: np.ndarray, method: str = "trilinear") -> np.ndarray:
    """Apply a 3D LUT to an (..., 3) image in [0, 1] (values outside are clamped to the grid).

    ``trilinear``: 8-corner interpolation. ``tetrahedral``: the cell is split into the standard 6
    tetrahedra along its main diagonal; sorting the three fractions f1 ≥ f2 ≥ f3 picks the
    tetrahedron, whose vertices are c000, c000 + e(f1), c111 − e(f3), c111 with weights 1 − f1,
    f1 − f2, f2 − f3, f3. Tetrahedral needs 4 look-ups instead of 8 and keeps the grey axis exact.
    """
    if method not in ("trilinear", "tetrahedral"):
        raise ValueError(f"unknown interpolation {method!r}; use 'trilinear' or 'tetrahedral'")
    lut = _check_lut(lut)
    img = np.asarray(image, dtype=np.float32)
    if img.shape[-1] != 3:
        raise ValueError(f"expected an (..., 3) image, got shape {img.shape}")
    n = lut.shape[0]
    flat = np.ascontiguousarray(lut.reshape(-1, 3))
    pix = img.reshape(-1, 3)
    out = np.empty_like(pix)
    for start in range(0, pix.shape[0], APPLY_CHUNK):
        sl = slice(start, start + APPLY_CHUNK)
        out[sl] = _apply_block(pix[sl], flat, n, method)
    return out.reshape(img.shape)


def render_fast(
    image: np.ndarray, params: Mapping[str, float], lut_size: int = DEFAULT_LUT_SIZE
) -> np.ndarray:
    """Bake the params into a LUT and apply it (tetrahedral): the pipeline's path for large images."""
    arr = np.asarray(image, dtype=np.float32)
    return np.clip(apply_lut(arr, bake_lut(params, lut_size), "tetrahedral"), 0.0, 1.0)


def apply_lut_u8(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """8-bit RGB (HxWx3 uint8) through a 3D LUT, tetrahedral, with a compiled kernel (``lut_kernel``).

    Why: the build renders targets from decoded JPEG pixels (8-bit already) and stores 8-bit JPEGs,
    so an 8-bit LUT pass loses nothing that matters (≥ 50 dB against ``render`` at size 33,
    rounding included, on the bench photos) and is several times faster than the float paths
    (and ~3× faster than Pillow's ``Color3DLUT``).
    """
    from .lut_kernel import apply_tetrahedral_u8  # numba: imported on first use, not with the package

    lut = _check_lut(lut)
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {img.shape}")
    return apply_tetrahedral_u8(img, lut)


def to_u8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] → uint8 with the encoders' rounding (exact for decoded 8-bit pixels); uint8 as is."""
    return quantise_u8(image)


def apply_lut8(image: np.ndarray, lut: np.ndarray | None, dtype: type = np.float32) -> np.ndarray:
    """Float [0, 1] (or uint8) image through ``lut`` in 8 bits (``apply_lut_u8``); float32 out, or
    the 8-bit result itself with ``dtype=np.uint8`` (what an encoder needs: no float round trip).

    Input values are rounded to 8 bits first (exact for decoded JPEG/PNG pixels); the output is a
    multiple of 1/255, so encoding it to 8 bits again is exact. ``lut=None`` is the identity.
    """
    u8 = to_u8(image)
    out = u8 if lut is None else apply_lut_u8(u8, lut)
    if np.dtype(dtype) == np.uint8:
        return out
    return np.divide(out, np.float32(255.0), dtype=np.float32)


def bake_lut_for(
    image: np.ndarray,
    size: int,
    evaluate: Callable[[np.ndarray], np.ndarray],
    also: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """A size³ LUT for one uint8 image: only the vertices ``apply_lut_u8(image, ·)`` reads are baked.

    ``evaluate`` maps (M, 3) float32 lattice points to their (M, 3) colours (any per-pixel map:
    the develop engine, a preset, the retouch renderer). A photo touches 10-20 % of the lattice, so
    this costs a fraction of a full bake, and ``apply_lut_u8`` gives exactly what the full LUT
    gives. The other vertices hold the identity: the result is a LUT for this image (and the
    uint8 images in ``also``, e.g. its thumbnail) only, do not cache or export it.
    """
    from .lut_kernel import vertices_read_u8  # numba: imported on first use, not with the package

    lut = identity_lut(size).reshape(-1, 3)
    idx = vertices_read_u8(image, size)
    for other in also:
        idx = np.union1d(idx, vertices_read_u8(other, size))
    if idx.size:
        lut[idx] = np.asarray(evaluate(lut[idx]), dtype=np.float32).reshape(-1, 3)
    return lut.reshape(size, size, size, 3)


def render_lut8(
    image: np.ndarray, params: Mapping[str, float], lut_size: int = DEFAULT_LUT_SIZE, dtype: type = np.float32
) -> np.ndarray:
    """``render`` through a LUT applied in 8 bits (``apply_lut8``), baked only where this image reads
    it (``bake_lut_for``); all-zero params skip the bake."""
    if all(float(v) == 0.0 for v in params.values()):
        return apply_lut8(image, None, dtype)
    u8 = to_u8(image)
    lut = bake_lut_for(u8, lut_size, lambda points: render(points[None], params)[0])
    return apply_lut8(u8, lut, dtype)


# ==================================================================================================
# Adobe .cube
# ==================================================================================================
def write_cube(path: str | Path, lut: np.ndarray, title: str = "aether") -> None:
    """Write an Adobe .cube 3D LUT (TITLE, LUT_3D_SIZE, DOMAIN_MIN/MAX, N³ rows, red fastest)."""
    lut = _check_lut(lut)
    n = lut.shape[0]
    safe_title = re.sub(r"[\"\r\n]", "'", str(title))
    rows = lut.transpose(2, 1, 0, 3).reshape(-1, 3)  # [b, g, r] order → red changes fastest
    header = [
        f'TITLE "{safe_title}"',
        f"LUT_3D_SIZE {n}",
        "DOMAIN_MIN 0.0 0.0 0.0",
        "DOMAIN_MAX 1.0 1.0 1.0",
    ]
    body = "\n".join(f"{r:.7f} {g:.7f} {b:.7f}" for r, g, b in rows.tolist())
    atomic_write_text(path, "\n".join(header) + "\n" + body + "\n")


def read_cube(path: str | Path) -> np.ndarray:
    """Read an Adobe .cube 3D LUT → (N, N, N, 3) float32 indexed [r, g, b].

    Only the [0, 1] domain is supported (a LUT over another domain cannot be applied to sRGB
    images without knowing the intent), and 1D LUTs are rejected: both raise CubeError.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CubeError(f"{path}: cannot read: {exc}") from None
    size: int | None = None
    dmin, dmax = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    values: list[list[float]] = []
    for lineno, raw in enumerate(lines, 1):
        if raw.lstrip().upper().startswith("TITLE"):
            continue
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        key = head.upper()
        if key == "LUT_1D_SIZE":
            raise CubeError(f"{path}: 1D LUTs are not supported")
        if key == "LUT_3D_SIZE":
            try:
                size = int(rest.strip())
            except ValueError:
                raise CubeError(f"{path}:{lineno}: bad LUT_3D_SIZE {rest!r}") from None
            if size < 2:
                raise CubeError(f"{path}:{lineno}: LUT_3D_SIZE must be ≥ 2")
            continue
        if key in ("DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE"):
            try:
                nums = [float(v) for v in rest.split()]
            except ValueError:
                raise CubeError(f"{path}:{lineno}: bad {key} line") from None
            if key == "LUT_3D_INPUT_RANGE" and len(nums) == 2:
                dmin, dmax = [nums[0]] * 3, [nums[1]] * 3
            elif len(nums) == 3:
                if key == "DOMAIN_MIN":
                    dmin = nums
                else:
                    dmax = nums
            else:
                raise CubeError(f"{path}:{lineno}: bad {key} line")
            continue
        parts = line.split()
        if len(parts) != 3:
            raise CubeError(f"{path}:{lineno}: expected 'r g b', got {raw.strip()!r}")
        try:
            row = [float(v) for v in parts]
        except ValueError:
            raise CubeError(f"{path}:{lineno}: unknown keyword or bad number in {raw.strip()!r}") from None
        if not all(math.isfinite(v) for v in row):
            raise CubeError(f"{path}:{lineno}: non-finite value")
        values.append(row)
    if size is None:
        raise CubeError(f"{path}: missing LUT_3D_SIZE")
    if any(abs(v) > 1e-9 for v in dmin) or any(abs(v - 1.0) > 1e-9 for v in dmax):
        raise CubeError(f"{path}: only DOMAIN 0..1 is supported, got {dmin} .. {dmax}")
    if len(values) != size**3:
        raise CubeError(f"{path}: expected {size**3} rows for LUT_3D_SIZE {size}, got {len(values)}")
    data = np.asarray(values, dtype=np.float32).reshape(size, size, size, 3)  # [b, g, r]
    return np.ascontiguousarray(data.transpose(2, 1, 0, 3))
