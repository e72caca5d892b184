"""The preset settings model: typed `crs:` develop settings with ranges, clamping and reporting.

A preset file (XMP or .lrtemplate) is a bag of `crs:` keys. This module decides, once, what every
key means here:

- **rendered** keys (``KEYS``): the 38 core sliders plus curves, splits, split toning / colour
  grading, grayscale, calibration, clarity/texture/dehaze, vignette, grain and sharpening. Each has a
  kind (number, integer, bool, text, curve), a range and a neutral default.
- **metadata** keys (``META_KEYS``: Name, Group, UUID, ...): kept and written back, never rendered.
- **legacy** process-2010 keys (``LEGACY_MAP``): mapped onto their 2012 equivalents when the 2012 key
  is absent (recorded in ``issues``), otherwise reported.
- local corrections (``GradientBasedCorrections``, ``CircularGradientBasedCorrections``,
  ``MaskGroupBasedCorrections``) are kept verbatim with the unsupported keys and rendered from there
  (``PresetSettings.corrections``, ``develop.corrections``); only their unrendered parts are reported.
- everything else (crop, lens corrections, brushes, camera profiles, noise reduction, ...) is
  **unsupported**: kept verbatim (so a round trip loses nothing) and reported per preset.

Value rule (documented in presets/README.md): a number outside its range is clamped to the range
and reported; a non-finite (NaN/inf) or unparseable value is dropped (the key falls back to its
neutral default) and reported; a malformed curve is dropped and reported. None of these fail the
preset: only an unreadable file does (see ``presets.errors.PresetFormatError``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aether_data import params as P

Curve = list[tuple[int, int]]
"""A point curve: (input, output) pairs on Lightroom's 0..255 scale, inputs strictly increasing."""


@dataclass(frozen=True)
class KeySpec:
    """One rendered `crs:` key: value kind, range and neutral default."""

    name: str
    kind: str  # "float" | "int" | "bool" | "str" | "curve"
    minimum: float = 0.0
    maximum: float = 0.0
    default: Any = 0.0
    choices: tuple[str, ...] = ()

    @property
    def signed(self) -> bool:
        """Lightroom writes a leading "+" on positive values of two-sided sliders."""
        return self.kind in ("float", "int") and self.minimum < 0


CALIBRATION_KEYS = (
    "RedHue",
    "RedSaturation",
    "GreenHue",
    "GreenSaturation",
    "BlueHue",
    "BlueSaturation",
    "ShadowTint",
)
"""Lightroom's camera-calibration sliders (primaries' hue and saturation, shadow tint)."""


def _build_keys() -> dict[str, KeySpec]:
    keys: dict[str, KeySpec] = {}

    def add(name: str, kind: str, lo: float = 0.0, hi: float = 0.0, default: Any = 0.0, choices=()) -> None:
        keys[name] = KeySpec(name, kind, lo, hi, default, tuple(choices))

    for spec in P.PARAMS:
        add(spec.name, "float", spec.minimum, spec.maximum, 0.0)
    for name, default in (
        ("ParametricShadowSplit", 25.0),
        ("ParametricMidtoneSplit", 50.0),
        ("ParametricHighlightSplit", 75.0),
    ):
        add(name, "float", 0.0, 100.0, default)
    for name in ("ToneCurvePV2012", "ToneCurvePV2012Red", "ToneCurvePV2012Green", "ToneCurvePV2012Blue"):
        add(name, "curve", 0, 255, None)
    add("ToneCurveName2012", "str", default="Linear")
    for part in ("Shadow", "Highlight"):
        add(f"SplitToning{part}Hue", "float", 0.0, 360.0)
        add(f"SplitToning{part}Saturation", "float", 0.0, 100.0)
    add("SplitToningBalance", "float", -100.0, 100.0)
    for part in ("Shadow", "Midtone", "Highlight", "Global"):
        add(f"ColorGrade{part}Hue", "float", 0.0, 360.0)
        add(f"ColorGrade{part}Sat", "float", 0.0, 100.0)
        add(f"ColorGrade{part}Lum", "float", -100.0, 100.0)
    add("ColorGradeBlending", "float", 0.0, 100.0, 50.0)
    add("ColorGradeBalance", "float", -100.0, 100.0)
    add("ConvertToGrayscale", "bool", default=False)
    for band in P.HSL_BANDS:
        add(f"GrayMixer{band}", "float", -100.0, 100.0)
    for key in CALIBRATION_KEYS:
        add(key, "float", -100.0, 100.0)
    for name in ("Texture", "Clarity2012", "Dehaze"):
        add(name, "float", -100.0, 100.0)
    add("PostCropVignetteAmount", "float", -100.0, 100.0)
    add("PostCropVignetteMidpoint", "float", 0.0, 100.0, 50.0)
    add("PostCropVignetteFeather", "float", 0.0, 100.0, 50.0)
    add("PostCropVignetteRoundness", "float", -100.0, 100.0)
    add("PostCropVignetteStyle", "int", 1, 3, 1)
    add("PostCropVignetteHighlightContrast", "float", 0.0, 100.0)
    add("GrainAmount", "float", 0.0, 100.0)
    add("GrainSize", "float", 0.0, 100.0, 25.0)
    add("GrainFrequency", "float", 0.0, 100.0, 50.0)
    add("GrainSeed", "int", 0, 2**31 - 1, 0)
    add("Sharpness", "float", 0.0, 150.0)
    add("SharpenRadius", "float", 0.5, 3.0, 1.0)
    add("SharpenDetail", "float", 0.0, 100.0, 25.0)
    add("SharpenEdgeMasking", "float", 0.0, 100.0)
    add("WhiteBalance", "str", default="As Shot", choices=("As Shot", "Custom"))
    return keys


KEYS: dict[str, KeySpec] = _build_keys()
"""Every key the preset engine renders."""

META_KEYS: frozenset[str] = frozenset(
    {
        "Name",
        "ShortName",
        "SortName",
        "Group",
        "UUID",
        "Cluster",
        "PresetType",
        "Description",
        "SupportsAmount",
        "SupportsAmount2",
        "SupportsColor",
        "SupportsMonochrome",
        "SupportsHighDynamicRange",
        "SupportsNormalDynamicRange",
        "SupportsSceneReferred",
        "SupportsOutputReferred",
        "RequiresRGBTables",
        "CameraModelRestriction",
        "Copyright",
        "ContactInfo",
        "Version",
        "ProcessVersion",
        "HasSettings",
        "ShowInPresets",
        "ShowInQuickActions",
        "AutoGrayscaleMix",
        "PresetUUID",
        "Title",
    }
)
"""Descriptive keys: kept and written back, never rendered (AutoGrayscaleMix only records how the
explicit GrayMixer values were chosen, so it has no effect of its own)."""

CURVE_KEYS: tuple[str, ...] = (
    "ToneCurvePV2012",
    "ToneCurvePV2012Red",
    "ToneCurvePV2012Green",
    "ToneCurvePV2012Blue",
)

NAMED_CURVES: dict[str, Curve] = {
    "Linear": [(0, 0), (255, 255)],
    "Medium Contrast": [(0, 0), (32, 22), (64, 56), (128, 128), (192, 196), (255, 255)],
    "Strong Contrast": [(0, 0), (32, 16), (64, 50), (128, 128), (192, 202), (255, 255)],
}
"""Lightroom's named point curves (0..255), as listed in the Lightroom notes."""

LEGACY_MAP: dict[str, tuple[str, float, float]] = {
    "Exposure": ("Exposure2012", 1.0, 0.0),
    "Clarity": ("Clarity2012", 1.0, 0.0),
    "Contrast": ("Contrast2012", 1.0, -25.0),
    "FillLight": ("Shadows2012", 0.8, 0.0),
    "Recovery": ("Highlights2012", -1.0, 0.0),
    "HighlightRecovery": ("Highlights2012", -1.0, 0.0),
    "Shadows": ("Blacks2012", -1.0, -5.0),
    "ToneCurveName": ("ToneCurveName2012", 1.0, 0.0),
    "ToneCurve": ("ToneCurvePV2012", 1.0, 0.0),
    "ToneCurveRed": ("ToneCurvePV2012Red", 1.0, 0.0),
    "ToneCurveGreen": ("ToneCurvePV2012Green", 1.0, 0.0),
    "ToneCurveBlue": ("ToneCurvePV2012Blue", 1.0, 0.0),
}
"""Process-2010 key → (2012 key, scale, offset): new = scale·(old + offset). ≈ mappings: PV2010
Contrast defaults to 25 and Shadows (its black level) to 5, so those offsets make the defaults
neutral; FillLight lifted shadows a little harder than Shadows2012 (×0.8)."""

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(value: Any) -> float:
    """Lightroom numbers: "+5", "-0.35", "5.0", "nan" (→ nan, caller decides), or a Python number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got boolean {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if _NUMBER.match(text):
        return float(text)
    if text.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(text.lower().replace("infinity", "inf"))
    raise ValueError(f"not a number: {value!r}")


def parse_bool(value: Any) -> bool:
    """ "True"/"False" (any case), Lua true/false, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_curve(value: Any) -> Curve:
    """Curve points from XMP ("x, y" strings), a flat Lua list or a list of pairs → validated points.

    Points must lie in 0..255 with strictly increasing inputs and at least 2 points.
    """
    pts: list[tuple[float, float]] = []
    if isinstance(value, str):
        value = [v for v in re.split(r"[;\n]", value) if v.strip()]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ValueError("a curve must be a list of points")
    items = list(value)
    if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        if len(items) % 2:
            raise ValueError("a flat curve list needs an even number of values")
        pts = [(float(items[i]), float(items[i + 1])) for i in range(0, len(items), 2)]
    else:
        for item in items:
            if isinstance(item, str):
                parts = [t for t in re.split(r"[,\s]+", item.strip()) if t]
            elif isinstance(item, Sequence):
                parts = list(item)
            else:
                raise ValueError(f"bad curve point {item!r}")
            if len(parts) != 2:
                raise ValueError(f"bad curve point {item!r}")
            pts.append((parse_number(parts[0]), parse_number(parts[1])))
    if len(pts) < 2:
        raise ValueError("a curve needs at least 2 points")
    out: Curve = []
    for x, y in pts:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("non-finite curve point")
        if not (0 <= x <= 255 and 0 <= y <= 255):
            raise ValueError(f"curve point ({x:g}, {y:g}) outside 0..255")
        out.append((round(x), round(y)))
    if any(b[0] <= a[0] for a, b in itertools.pairwise(out)):
        raise ValueError("curve inputs must be strictly increasing")
    return out


def format_number(spec: KeySpec, value: float) -> str:
    """Lightroom's spelling: integers without decimals, a sign on two-sided sliders ("+5", "-0.35")."""
    v = float(value)
    if spec.name == "Exposure2012" or not v.is_integer():
        text = f"{v:.2f}" if round(v, 2) == v else repr(v)
    else:
        text = str(int(v))
    if spec.signed and v > 0:
        text = "+" + text
    return text


class PresetSettings(Mapping[str, Any]):
    """Typed develop settings of one preset (rendered keys only) plus what was reported on reading.

    Acts as a read-only mapping of rendered keys → values (float / int / bool / str / curve).
    ``value(key)`` gives the neutral default for absent keys. ``meta`` holds descriptive keys,
    ``unsupported`` the keys the engine does not render (kept verbatim for writing back),
    ``issues`` one line per clamp / drop / legacy mapping.
    """

    __slots__ = ("_data", "issues", "meta", "unsupported")

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        unsupported: Mapping[str, Any] | None = None,
        issues: Sequence[str] = (),
    ) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self.meta: dict[str, Any] = dict(meta or {})
        self.unsupported: dict[str, Any] = dict(unsupported or {})
        self.issues: list[str] = list(issues)

    # mapping protocol --------------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"PresetSettings({self._data!r}, unsupported={sorted(self.unsupported)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PresetSettings):
            return self._data == other._data and self.unsupported == other.unsupported
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    # typed access -------------------------------------------------------------------------------
    def value(self, key: str) -> Any:
        """The key's value, or its neutral default when absent."""
        if key in self._data:
            return self._data[key]
        return KEYS[key].default

    def num(self, key: str) -> float:
        """Numeric value (default when absent) as float."""
        return float(self.value(key))

    @property
    def unsupported_keys(self) -> list[str]:
        """Sorted names of the keys this preset sets that the engine does not render. Local
        correction containers are rendered (``corrections``): only what they hold that is not
        rendered is listed, as ``Container[i]: reason`` lines."""
        from .corrections import LOCAL_CONTAINERS, unrendered_report

        plain = [k for k in self.unsupported if k not in LOCAL_CONTAINERS]
        return sorted(plain) + unrendered_report(self.corrections)

    @property
    def corrections(self) -> list[Any]:
        """The local corrections (``develop.corrections.LocalCorrection``) of the raw containers kept
        in ``unsupported`` (gradient, radial and mask-group corrections), in container order."""
        from .corrections import parse_corrections

        return parse_corrections(self.unsupported)

    def core_params(self) -> dict[str, float]:
        """The 38 core sliders (slider scale, absent = 0): what the Param engine and model understand."""
        return {n: float(self._data.get(n, 0.0)) for n in P.PARAM_NAMES}

    def curve(self, key: str) -> Curve | None:
        """A channel's effective point curve (the master falls back to ToneCurveName2012's points)."""
        pts = self._data.get(key)
        if pts is not None:
            return list(pts)
        if key == "ToneCurvePV2012":
            name = self._data.get("ToneCurveName2012")
            if name in NAMED_CURVES and name != "Linear":
                return list(NAMED_CURVES[name])
        return None

    def replace(self, **changes: Any) -> PresetSettings:
        """A copy with some rendered keys changed (validated) or removed (value None)."""
        data = dict(self._data)
        for k, v in changes.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return PresetSettings.from_raw(data, meta=self.meta, unsupported=self.unsupported)

    # conversions ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict of the rendered values (curves as [[x, y], ...])."""
        out: dict[str, Any] = {}
        for k in sorted(self._data):
            v = self._data[k]
            if KEYS[k].kind == "curve":
                out[k] = [[int(x), int(y)] for x, y in v]
            elif isinstance(v, float) and v.is_integer():
                out[k] = int(v)
            else:
                out[k] = v
        return out

    @classmethod
    def from_raw(
        cls,
        raw: Mapping[str, Any],
        *,
        meta: Mapping[str, Any] | None = None,
        unsupported: Mapping[str, Any] | None = None,
    ) -> PresetSettings:
        """Sort raw key/values (strings or Python values) into rendered / meta / unsupported.

        Applies the value rule of the module docstring; never raises for a bad value.
        """
        data: dict[str, Any] = {}
        meta_out: dict[str, Any] = dict(meta or {})
        unsup: dict[str, Any] = dict(unsupported or {})
        issues: list[str] = []
        legacy: dict[str, Any] = {}
        for key, value in raw.items():
            key = str(key)
            if key in KEYS:
                parsed, note = coerce_value(KEYS[key], value)
                if note:
                    issues.append(f"{key}: {note}")
                if parsed is not None:
                    if KEYS[key].choices and parsed not in KEYS[key].choices:
                        unsup[key] = value
                    else:
                        data[key] = parsed
            elif key in META_KEYS:
                meta_out[key] = value
            elif key in LEGACY_MAP:
                legacy[key] = value
            else:
                unsup[key] = value
        for key, value in legacy.items():
            target, scale, offset = LEGACY_MAP[key]
            if target in data or target in raw:
                unsup[key] = value
                continue
            spec = KEYS[target]
            if spec.kind == "float":
                try:
                    v = parse_number(value)
                except ValueError:
                    issues.append(f"{key}: unparseable process-2010 value {value!r} dropped")
                    continue
                value = scale * (v + offset)
            parsed, note = coerce_value(spec, value)
            if note:
                issues.append(f"{target} (from {key}): {note}")
            if parsed is not None:
                data[target] = parsed
                issues.append(f"{key}: process-2010 key mapped to {target}")
        return cls(data, meta=meta_out, unsupported=unsup, issues=issues)


def coerce_value(spec: KeySpec, value: Any) -> tuple[Any, str | None]:
    """(typed value or None when dropped, note or None) for one raw value under the value rule."""
    try:
        if spec.kind == "bool":
            return parse_bool(value), None
        if spec.kind == "str":
            text = value[0] if isinstance(value, list) and value else value
            return str(text).strip(), None
        if spec.kind == "curve":
            return parse_curve(value), None
        v = parse_number(value)
    except (ValueError, TypeError) as exc:
        return None, f"dropped ({exc})"
    if not math.isfinite(v):
        return None, f"non-finite value {value!r} dropped (neutral default used)"
    note = None
    if v < spec.minimum or v > spec.maximum:
        clamped = min(max(v, spec.minimum), spec.maximum)
        note = f"value {v:g} outside [{spec.minimum:g}, {spec.maximum:g}] clamped to {clamped:g}"
        v = clamped
    if spec.kind == "int":
        return round(v), note
    return float(v), note


def coerce_settings(settings: PresetSettings | Mapping[str, Any]) -> PresetSettings:
    """Accept a PresetSettings or a plain dict of crs keys (strings or numbers)."""
    if isinstance(settings, PresetSettings):
        return settings
    return PresetSettings.from_raw(settings)
