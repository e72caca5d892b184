"""Measuring a preset: run its per-pixel function on a small probe and read off what changed.

The probe is a grey ramp, colour patches around the 8 HSL hue centres and two skin patches; a
preset's effects (`describe`) and its numeric signature (library categorisation) are computed from
what the preset does to those colours, not from slider names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from aether_data.develop.color import HSL_CENTRES, from_opponent, hue_degrees, luminance, to_opponent
from aether_data.develop.settings import PresetSettings, coerce_settings

__all__ = [
    "RAMP",
    "Measurement",
    "colour_word",
    "hue_degrees",
    "luma",
    "measure",
    "opponent",
    "probe_colours",
    "relative_tint",
    "signature",
    "tint",
]

RAMP = np.linspace(0.0, 1.0, 33, dtype=np.float32)
PATCH_CHROMA = 0.22
PATCH_MEANS = (0.35, 0.6)
SKIN = np.array([[0.82, 0.6, 0.48], [0.62, 0.42, 0.32]], dtype=np.float32)


@lru_cache(maxsize=1)
def _probe() -> np.ndarray:
    rows = [np.stack([RAMP, RAMP, RAMP], axis=-1)]
    patches = []
    for mean in PATCH_MEANS:
        for h in HSL_CENTRES:
            a, b = PATCH_CHROMA * math.cos(math.radians(h)), PATCH_CHROMA * math.sin(math.radians(h))
            patches.append(from_opponent(mean, a, b))
    rows.append(np.asarray(patches, dtype=np.float32))
    rows.append(SKIN)
    return np.concatenate(rows, axis=0)[None, :, :]


@dataclass(frozen=True)
class Measurement:
    """Probe results: ramp luma/chroma in and out, patch hue/chroma/luma in and out."""

    ramp_out: np.ndarray  # (33, 3)
    patch_in: np.ndarray  # (16, 3)
    patch_out: np.ndarray
    skin_in: np.ndarray
    skin_out: np.ndarray


def probe_colours() -> np.ndarray:
    """The (N, 3) colours `measure` runs through a preset (ramp, hue patches, skin tones)."""
    return _probe()[0]


def measure(settings: PresetSettings | Mapping[str, Any], probe_out: np.ndarray | None = None) -> Measurement:
    """Run the preset's per-pixel part on the probe; ``probe_out`` = results the caller already has
    for `probe_colours` (e.g. evaluated in the same call as a LUT's lattice points)."""
    from aether_data.develop.preset_ops import pointwise_preset

    probe = _probe()
    out = pointwise_preset(probe, coerce_settings(settings))[0] if probe_out is None else probe_out
    n_ramp, n_patch = len(RAMP), 8 * len(PATCH_MEANS)
    return Measurement(
        ramp_out=out[:n_ramp],
        patch_in=probe[0, n_ramp : n_ramp + n_patch],
        patch_out=out[n_ramp : n_ramp + n_patch],
        skin_in=probe[0, n_ramp + n_patch :],
        skin_out=out[n_ramp + n_patch :],
    )


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luminance of RGB rows."""
    return luminance(rgb[..., 0], rgb[..., 1], rgb[..., 2])


def opponent(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The opponent chroma axes (a, b) of RGB rows."""
    _, a, b = to_opponent(rgb[..., 0], rgb[..., 1], rgb[..., 2])
    return a, b


COLOUR_WORDS: tuple[tuple[float, str], ...] = (
    (15, "red"),
    (45, "orange"),
    (72, "golden"),
    (150, "green"),
    (200, "teal"),
    (255, "blue"),
    (290, "purple"),
    (345, "pink"),
    (360, "red"),
)


def colour_word(hue: float) -> str:
    """Hue in degrees (opponent hue: red 0°, yellow 60°, green 120°, cyan 180°, blue 240°) → word."""
    h = hue % 360.0
    for limit, word in COLOUR_WORDS:
        if h < limit:
            return word
    return "red"


def relative_tint(rgb: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(chroma, hue°) of the mean opponent vector of ``rgb`` minus that of ``ref``."""
    a, b = opponent(rgb)
    ar, br = opponent(ref)
    am, bm = float(a.mean() - ar.mean()), float(b.mean() - br.mean())
    return math.hypot(am, bm), math.degrees(math.atan2(bm, am)) % 360.0


def tint(rgb: np.ndarray) -> tuple[float, float]:
    """(chroma, hue°) of the mean opponent vector of some grey-input outputs."""
    a, b = opponent(rgb)
    am, bm = float(a.mean()), float(b.mean())
    return math.hypot(am, bm), math.degrees(math.atan2(bm, am)) % 360.0


def signature(settings: PresetSettings | Mapping[str, Any]) -> np.ndarray:
    """A small numeric fingerprint of a preset's look (used to categorise imported presets)."""
    s = coerce_settings(settings)
    m = measure(s)
    ramp_l = luma(m.ramp_out)
    sc, sh = tint(m.ramp_out[3:10])
    hc, hh = tint(m.ramp_out[23:30])
    mid = m.ramp_out[12:21]
    a_in, b_in = opponent(m.patch_in)
    a_out, b_out = opponent(m.patch_out)
    ratio = float(np.hypot(a_out, b_out).mean() / np.hypot(a_in, b_in).mean())
    vec = [
        3 * float((ramp_l - RAMP).mean()),
        float((ramp_l[24] - ramp_l[8]) / 0.5 - 1),
        3 * float(ramp_l[0]),
        2 * float(1 - ramp_l[-1]),
        6 * float((mid[:, 0] - mid[:, 2]).mean()),
        6 * float((mid[:, 1] - 0.5 * (mid[:, 0] + mid[:, 2])).mean()),
        8 * sc * math.cos(math.radians(sh)),
        8 * sc * math.sin(math.radians(sh)),
        8 * hc * math.cos(math.radians(hh)),
        8 * hc * math.sin(math.radians(hh)),
        ratio - 1,
        3.0 * float(bool(s.value("ConvertToGrayscale"))),
        s.num("Clarity2012") / 100,
        s.num("Dehaze") / 100,
        s.num("PostCropVignetteAmount") / 100,
        s.num("GrainAmount") / 100,
    ]
    return np.asarray(vec, dtype=np.float32)
