"""The 38 core Lightroom parameters: names, groups, slider scales, normalisation, param.json I/O.

Everything that talks about "parameters" (the develop engine, the samplers, the annotators, the
model) goes through this module so that names and scales are defined exactly once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aether_data.io.atomic import atomic_write_text

GROUPS: tuple[str, str, str] = ("light", "globalcolor", "specificcolor")
"""The three latent groups, in model order: z_l, z_gc, z_sc."""

GROUP_TITLES: dict[str, str] = {
    "light": "Light Adjustment",
    "globalcolor": "Color and Temperature Adjustment",
    "specificcolor": "Specific Color Adjustment",
}

HSL_BANDS: tuple[str, ...] = ("Red", "Orange", "Yellow", "Green", "Aqua", "Blue", "Purple", "Magenta")

MASK_EPS = 1e-4
"""A group whose normalised values are all below this magnitude is inactive (mask 0)."""


@dataclass(frozen=True)
class ParamSpec:
    """One slider: its `crs:` name, latent group, slider range and a human label."""

    name: str
    group: str
    minimum: float
    maximum: float
    label: str

    @property
    def scale(self) -> float:
        """Slider value that maps to normalised 1.0."""
        return max(abs(self.minimum), abs(self.maximum))


def _build() -> tuple[ParamSpec, ...]:
    light = [
        ("Exposure2012", -5.0, 5.0, "exposure"),
        ("Contrast2012", -100.0, 100.0, "contrast"),
        ("Highlights2012", -100.0, 100.0, "highlights"),
        ("Shadows2012", -100.0, 100.0, "shadows"),
        ("Whites2012", -100.0, 100.0, "whites"),
        ("Blacks2012", -100.0, 100.0, "blacks"),
        ("ParametricShadows", -100.0, 100.0, "parametric-curve shadows"),
        ("ParametricDarks", -100.0, 100.0, "parametric-curve darks"),
        ("ParametricLights", -100.0, 100.0, "parametric-curve lights"),
        ("ParametricHighlights", -100.0, 100.0, "parametric-curve highlights"),
    ]
    glob = [
        ("IncrementalTemperature", -100.0, 100.0, "temperature"),
        ("IncrementalTint", -100.0, 100.0, "tint"),
        ("Vibrance", -100.0, 100.0, "vibrance"),
        ("Saturation", -100.0, 100.0, "saturation"),
    ]
    specs = [ParamSpec(n, "light", lo, hi, lab) for n, lo, hi, lab in light]
    specs += [ParamSpec(n, "globalcolor", lo, hi, lab) for n, lo, hi, lab in glob]
    for kind in ("Hue", "Saturation", "Luminance"):
        for band in HSL_BANDS:
            specs.append(
                ParamSpec(
                    f"{kind}Adjustment{band}",
                    "specificcolor",
                    -100.0,
                    100.0,
                    f"{band.lower()} {kind.lower()}",
                )
            )
    return tuple(specs)


PARAMS: tuple[ParamSpec, ...] = _build()
PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in PARAMS)
SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
GROUP_PARAMS: dict[str, tuple[str, ...]] = {g: tuple(p.name for p in PARAMS if p.group == g) for g in GROUPS}
assert len(PARAMS) == 38


class ParamError(ValueError):
    """A parameter file or value that cannot be used (unknown key, non-finite, out of range)."""


def _spec(name: str) -> ParamSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ParamError(f"unknown parameter {name!r}; expected one of the 38 core parameters") from None


def normalise(name: str, slider: float) -> float:
    """Slider value → [-1, 1] (slider / slider maximum)."""
    return float(slider) / _spec(name).scale


def denormalise(name: str, value: float) -> float:
    """Normalised [-1, 1] → slider value."""
    return float(value) * _spec(name).scale


def validate(params: Mapping[str, float]) -> dict[str, float]:
    """Check names, finiteness and slider ranges; return a clean dict of floats (slider scale)."""
    out: dict[str, float] = {}
    for name, value in params.items():
        spec = _spec(name)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{name}: value {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ParamError(f"{name}: value {value!r} is not finite")
        if not spec.minimum - 1e-9 <= v <= spec.maximum + 1e-9:
            raise ParamError(f"{name}: value {v} outside slider range [{spec.minimum}, {spec.maximum}]")
        out[name] = v
    return out


def to_vector(params: Mapping[str, float]) -> np.ndarray:
    """Slider-scale dict (missing keys = 0) → normalised float32 vector of length 38 in PARAM_NAMES order."""
    clean = validate(params)
    return np.array([clean.get(n, 0.0) / SPECS[n].scale for n in PARAM_NAMES], dtype=np.float32)


def from_vector(vec: Iterable[float]) -> dict[str, float]:
    """Normalised 38-vector → slider-scale dict (all 38 keys)."""
    arr = np.asarray(list(vec), dtype=np.float64)
    if arr.shape != (len(PARAM_NAMES),):
        raise ParamError(f"expected a vector of {len(PARAM_NAMES)} values, got shape {arr.shape}")
    return {n: float(v) * SPECS[n].scale for n, v in zip(PARAM_NAMES, arr)}


def normalised_dict(params: Mapping[str, float], decimals: int | None = None) -> dict[str, float]:
    """Slider-scale dict → all 38 keys, normalised (optionally rounded)."""
    vec = to_vector(params)
    if decimals is None:
        return {n: float(v) for n, v in zip(PARAM_NAMES, vec)}
    return {n: round(float(v), decimals) + 0.0 for n, v in zip(PARAM_NAMES, vec)}


def masks(params: Mapping[str, float]) -> list[int]:
    """Per-group activity mask [light, globalcolor, specificcolor] from slider-scale values."""
    vec = to_vector(params)
    out = []
    for g in GROUPS:
        idx = [PARAM_NAMES.index(n) for n in GROUP_PARAMS[g]]
        out.append(int(bool(np.any(np.abs(vec[idx]) >= MASK_EPS))))
    return out


def active(params: Mapping[str, float]) -> dict[str, float]:
    """Only the parameters whose normalised magnitude is at least MASK_EPS."""
    return {n: float(v) for n, v in params.items() if abs(normalise(n, v)) >= MASK_EPS}


OFFICIAL_SCALE = 100.0
"""The official param.json (and get_organized_dict) put every slider on ±100: value = normalised × 100,
so Exposure2012 is 20 per EV on our ±5 EV slider (30 → +1.5 EV) and the others equal their slider."""


def official_from_normalised(normalised: Mapping[str, float]) -> dict[str, float]:
    """Normalised values (e.g. a record's `params`) → official ±100 values, for all 38 keys.

    Rounded to 4 decimals so files stay readable; the prompt's parameter dict is computed from these
    exact numbers, so the official get_organized_dict reads a file we write into the prompt's values.
    """
    out: dict[str, float] = {}
    for name in PARAM_NAMES:
        v = float(normalised.get(name, 0.0))
        if not math.isfinite(v):
            raise ParamError(f"{name}: value {v!r} is not finite")
        out[name] = round(v * OFFICIAL_SCALE, 4) + 0.0
    return out


def official_values(params: Mapping[str, float]) -> dict[str, float]:
    """Slider-scale dict → official ±100 values for all 38 keys (via the record's 6-decimal normalisation)."""
    return official_from_normalised(normalised_dict(params, decimals=6))


PARAM_JSON_SCALES = ("official", "slider")


def parse_param_json(obj: object, scale: str = "official") -> dict[str, float]:
    """Parse a VeraRetouch `param.json` object: `{"Exposure2012": {"value": 30}, ...}` → slider scale.

    scale "official" (the official format and data_samples/param.json): every value on ±100,
    normalised = value / 100, so Exposure2012 30 → +1.5 EV. scale "slider": values already on our
    slider scale (Exposure in EV), as aether wrote param.json before it followed the official scale.
    A bare number per key is accepted too.
    """
    if scale not in PARAM_JSON_SCALES:
        raise ValueError(f"unknown param.json scale {scale!r}; expected one of {PARAM_JSON_SCALES}")
    if not isinstance(obj, dict):
        raise ParamError("param.json must hold a JSON object mapping parameter names to {'value': number}")
    flat: dict[str, float] = {}
    for name, entry in obj.items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name}: expected a number under 'value', got {value!r}")
        v = float(value)
        if scale == "official":
            spec = _spec(str(name))
            if math.isfinite(v) and abs(v) > OFFICIAL_SCALE + 1e-9:
                raise ParamError(f"{name}: value {v} outside the official range [-100, 100]")
            v = v / OFFICIAL_SCALE * spec.scale
        flat[str(name)] = v
    return validate(flat)


def read_param_json(path: str | Path, scale: str = "official") -> dict[str, float]:
    """Read and validate a `param.json` file (official ±100 scale by default) → slider scale."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        obj = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParamError(f"{path}: not valid JSON: {exc}") from None
    return parse_param_json(obj, scale)


def format_param_json(params: Mapping[str, float], include_zero: bool = True) -> dict[str, dict[str, float]]:
    """Slider-scale dict → official `param.json` object: all 38 keys (like the official sample), ±100.

    All keys by default, so the official get_organized_dict reads exactly the dict our param prompt
    prints (a tiny value it would print as -0.0 is not dropped); integral values are written as ints.
    """
    out: dict[str, dict[str, float]] = {}
    for name, v in official_values(params).items():
        if not include_zero and abs(v / OFFICIAL_SCALE) < MASK_EPS:
            continue
        out[name] = {"value": int(v) if float(v).is_integer() else v}
    return out


def write_param_json(params: Mapping[str, float], path: str | Path, include_zero: bool = True) -> None:
    """Write an official `param.json` (±100 scale, all 38 keys unless include_zero is False)."""
    atomic_write_text(path, json.dumps(format_param_json(params, include_zero=include_zero), indent=2) + "\n")
