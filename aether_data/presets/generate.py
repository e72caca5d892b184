"""The generated preset library: every fine category's prototype at seeded intensities.

Each fine category's prototype is the composition of its taxonomy traits (traits.py); each preset is
the prototype at a seeded intensity, with seeded per-slider jitter, hue jitter and sometimes one
accent trait. ``python -m aether_data.presets.generate [OUT]`` (or ``aether presets generate``)
rewrites the stored library byte for byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.develop.settings import KEYS, PresetSettings
from aether_data.presets.store import (
    DEFAULT_LIBRARY_PATH,
    LIBRARY_SEED,
    LIBRARY_SIZE,
    Preset,
    write_library,
)
from aether_data.presets.taxonomy import FineCategory, Taxonomy, load_taxonomy
from aether_data.presets.traits import ACCENTS, compose

_SHAPE_KEYS = {
    "PostCropVignetteMidpoint": 6.0,
    "PostCropVignetteFeather": 8.0,
    "PostCropVignetteRoundness": 10.0,
    "GrainSize": 5.0,
    "GrainFrequency": 6.0,
    "SharpenRadius": 0.15,
    "SharpenDetail": 6.0,
}


def _round(key: str, v: float) -> float:
    spec = KEYS[key]
    v = min(max(v, spec.minimum), spec.maximum)
    if key == "Exposure2012":
        return round(v, 2)
    if key == "SharpenRadius":
        return round(v, 1)
    return float(round(v))


def _curve_variant(
    points: list[tuple[int, int]], alpha: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Blend a curve with the diagonal by ``alpha`` and nudge interior outputs by a few levels
    (a monotone curve stays monotone)."""
    ys = [float(x + alpha * (y - x)) for x, y in points]
    ys = [y + (rng.normal(0.0, 2.0) if 0 < i < len(ys) - 1 else 0.0) for i, y in enumerate(ys)]
    out = [int(min(max(round(y), 0), 255)) for y in ys]
    if all(b[1] >= a[1] for a, b in itertools.pairwise(points)):
        out = np.maximum.accumulate(out).tolist()
    return [(int(x), int(y)) for (x, _), y in zip(points, out)]


def make_variant(proto: Mapping[str, Any], rng: np.random.Generator, alpha: float) -> dict[str, Any]:
    """One seeded variation of a prototype: intensity ``alpha``, slider and hue jitter."""
    out: dict[str, Any] = {}
    for key, value in proto.items():
        spec = KEYS[key]
        if spec.kind in ("bool", "str", "int"):
            out[key] = value
        elif spec.kind == "curve":
            out[key] = _curve_variant(list(value), alpha, rng)
        elif key.endswith("Hue") and (key.startswith("SplitToning") or key.startswith("ColorGrade")):
            out[key] = float(round(float(value) + rng.normal(0.0, 6.0)) % 360)
        elif key in _SHAPE_KEYS:
            out[key] = _round(key, float(value) + rng.normal(0.0, _SHAPE_KEYS[key]))
        else:
            base = float(spec.default)
            noise = rng.normal(0.0, 0.05 if key == "Exposure2012" else 0.06 * abs(float(value) - base) + 1.5)
            out[key] = _round(key, base + alpha * (float(value) - base) + noise)
    return {
        k: v
        for k, v in out.items()
        if not (isinstance(v, float) and v == KEYS[k].default and KEYS[k].kind == "float")
    }


def category_prototype(fine: FineCategory) -> dict[str, Any]:
    """The prototype settings of a fine category (its traits composed)."""
    return compose(fine.traits)


def _variant_word(alpha: float) -> str:
    return "Subtle" if alpha < 0.8 else ("Classic" if alpha < 1.1 else "Bold")


def generate_library(
    taxonomy: Taxonomy | None = None, total: int = LIBRARY_SIZE, seed: int = LIBRARY_SEED
) -> list[Preset]:
    """Generate the library deterministically: ``total`` presets spread over all fine categories."""
    tax = taxonomy or load_taxonomy()
    fines = tax.fine
    base, extra = divmod(total, len(fines))
    stride = max(1, len(fines) // max(extra, 1))
    bonus = {i * stride for i in range(extra)}
    out: list[Preset] = []
    for ci, fine in enumerate(fines):
        proto = category_prototype(fine)
        mono = bool(proto.get("ConvertToGrayscale"))
        count = base + (1 if ci in bonus else 0)
        for k in range(count):
            rng = np.random.default_rng(np.random.SeedSequence([seed, ci, k]))
            alpha = float(rng.uniform(0.65, 1.35))
            settings = make_variant(proto, rng, alpha)
            if rng.random() < 0.4:
                accents = [a for a in ACCENTS if not (mono and a in ("vivid-light", "warm", "cool"))]
                accent = accents[int(rng.integers(len(accents)))]
                extra_settings = make_variant(compose([accent]), rng, float(rng.uniform(0.3, 0.6)))
                for key, v in extra_settings.items():
                    if key not in settings:
                        settings[key] = v
                    elif KEYS[key].kind == "float" and key not in _SHAPE_KEYS and not key.endswith("Hue"):
                        settings[key] = _round(key, float(settings[key]) + float(v))
            ps = PresetSettings.from_raw(settings)
            if ps.issues or ps.unsupported:
                raise AssertionError(
                    f"generated settings for {fine.name} need fixing: {ps.issues} {ps.unsupported}"
                )
            pid = f"{fine.slug}-{k + 1:02d}"
            name = f"{fine.name} - {_variant_word(alpha)} {k + 1:02d}"
            out.append(Preset.from_settings(pid, name, fine.primary, fine.name, ps, "library"))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m aether_data.presets.generate [OUT]``: regenerate the stored library."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_LIBRARY_PATH
    presets = generate_library()
    write_library(presets, out)
    print(f"wrote {len(presets)} presets to {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
