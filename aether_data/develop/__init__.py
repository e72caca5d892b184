"""Lightroom-style develop engine for the 38 core parameters (numpy, torch, 3D LUT, .cube).

- ``render(image, params)``: numpy, HxWx3 float32 sRGB in [0, 1], slider-scale dict.
- ``render_torch(image, params)``: differentiable, (B, 3, H, W) and normalised (B, 38) params.
- ``bake_lut`` / ``apply_lut`` / ``render_fast``: the engine is per-pixel, so it bakes to a 3D LUT;
  ``render_lut8`` / ``apply_lut_u8`` apply it in 8 bits (compiled tetrahedral kernel), the dataset build's fast path;
  ``bake_lut_for`` bakes only the vertices one image reads.
- ``write_cube`` / ``read_cube``: Adobe .cube files.

``render_torch`` is imported lazily so that numpy-only users do not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .lut import (
    apply_lut,
    apply_lut8,
    apply_lut_u8,
    bake_lut,
    bake_lut_for,
    read_cube,
    render_fast,
    render_lut8,
    write_cube,
)
from .render_np import render

if TYPE_CHECKING:
    from .engine_torch import render_torch


def warm_up_kernels() -> None:
    """Compile or load the compiled (numba) kernels now, once per process: a build calls this
    before its first sample, so no sample's time includes it (first run on a machine ~2 s, later
    runs load the cache next to the modules in milliseconds)."""
    from . import lut_kernel, pixel_kernels

    lut_kernel.warm_up()
    pixel_kernels.warm_up()


__all__ = [
    "apply_lut",
    "apply_lut8",
    "apply_lut_u8",
    "bake_lut",
    "bake_lut_for",
    "read_cube",
    "render",
    "render_fast",
    "render_lut8",
    "render_torch",
    "warm_up_kernels",
    "write_cube",
]


def __getattr__(name: str) -> Any:
    if name == "render_torch":
        from .engine_torch import render_torch

        return render_torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
