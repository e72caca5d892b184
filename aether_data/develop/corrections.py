"""Lightroom local corrections: read from a preset's raw containers, rendered on top of the global edit.

Presets carry local corrections in three containers (``LOCAL_CONTAINERS``): ``GradientBasedCorrections``
(graduated filters), ``CircularGradientBasedCorrections`` (radial filters) and, from Lightroom 11,
``MaskGroupBasedCorrections`` (one correction, several mask components). Each is a list of
corrections; a correction is a dict (already unwrapped from XMP or Lua by the preset readers) with
``CorrectionAmount``, ``CorrectionActive``, the local sliders and ``CorrectionMasks`` (a list of mask
components, see ``masks``), and before Lightroom 11 optionally a ``CorrectionRangeMask`` that
intersects the whole correction with a luminance or colour range.

Local slider scales (verified against the Lightroom notes and Camera Raw-measured readers): XMP stores
each slider as a fraction of its range, so ``LocalContrast2012 = 0.35`` is Contrast +35 and
``LocalExposure2012 = 0.25`` is +1 EV (the local exposure slider spans ±4 EV). ``CorrectionAmount``
(0…1, up to 2) scales every slider of the correction.

Rendering (``apply_corrections``), for each active correction in order, with ``m`` its combined mask:

- exposure multiplies linear light by ``2^(EV·m)`` per pixel (with the global engine's highlight
  shoulder), temperature/tint apply the engine's white-balance gains raised to the power ``m``: exact
  fractional strength where the mask is partial;
- contrast, highlights, shadows, whites, blacks, saturation (the core engine) and clarity, texture,
  dehaze (the spatial operations) render at full strength and blend in by ``m``.

What a correction holds that is not rendered (AI subject/sky masks, brushes, local sharpness, noise,
moiré, hue, toning, local curves) is listed in ``LocalCorrection.unrendered`` and reported with the
preset's unsupported keys; a correction whose mask cannot be evaluated is not rendered at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .color import linear_to_srgb, srgb_to_linear
from .masks import MaskLeaf, combine

LOCAL_CONTAINERS: tuple[str, ...] = (
    "GradientBasedCorrections",
    "CircularGradientBasedCorrections",
    "MaskGroupBasedCorrections",
)

LOCAL_SLIDERS: dict[str, tuple[str, float]] = {
    "LocalExposure2012": ("Exposure", 4.0),
    "LocalContrast2012": ("Contrast", 100.0),
    "LocalHighlights2012": ("Highlights", 100.0),
    "LocalShadows2012": ("Shadows", 100.0),
    "LocalWhites2012": ("Whites", 100.0),
    "LocalBlacks2012": ("Blacks", 100.0),
    "LocalTemperature": ("Temperature", 100.0),
    "LocalTint": ("Tint", 100.0),
    "LocalSaturation": ("Saturation", 100.0),
    "LocalClarity2012": ("Clarity", 100.0),
    "LocalTexture": ("Texture", 100.0),
    "LocalDehaze": ("Dehaze", 100.0),
}
"""Stored key → (our slider name, slider units per stored unit). Exposure in EV, the rest −100…100."""
SLIDER_KEY: dict[str, str] = {name: key for key, (name, _) in LOCAL_SLIDERS.items()}
SLIDER_RANGE: dict[str, float] = {"Exposure": 4.0}
"""|max| per slider (100 unless listed)."""

_CORE_OF = {
    "Contrast": "Contrast2012",
    "Highlights": "Highlights2012",
    "Shadows": "Shadows2012",
    "Whites": "Whites2012",
    "Blacks": "Blacks2012",
    "Saturation": "Saturation",
}
_STRUCTURE_KEYS = frozenset(
    {"What", "CorrectionAmount", "CorrectionActive", "CorrectionMasks", "CorrectionName"}
)
_RANGE_KEYS = frozenset({"CorrectionRangeMask", "RangeMask"})


def _num(value: Any, default: float = 0.0) -> float:
    if value is None or isinstance(value, (dict, list)):
        return default
    if isinstance(value, bool):
        return float(value)
    try:
        v = float(str(value).strip())
    except ValueError:
        return default
    return v if np.isfinite(v) else default


def _flag(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def _fmt(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


@dataclass
class LocalCorrection:
    """One local correction: sliders (slider units), amount, mask components, where it came from."""

    sliders: dict[str, float]
    masks: list[MaskLeaf]
    amount: float = 1.0
    active: bool = True
    container: str = "MaskGroupBasedCorrections"
    name: str | None = None
    unrendered: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def renderable(self) -> bool:
        return self.active and bool(self.masks) and any(v for v in self.sliders.values())

    def to_raw(self) -> dict[str, Any]:
        """The correction as a raw container item (strings, lists, dicts), as the XMP writer wants."""
        out: dict[str, Any] = {"What": "Correction"}
        if self.name:
            out["CorrectionName"] = self.name
        out["CorrectionAmount"] = _fmt(self.amount)
        out["CorrectionActive"] = "true" if self.active else "false"
        for name, value in sorted(self.sliders.items()):
            key = SLIDER_KEY[name]
            out[key] = _fmt(value / LOCAL_SLIDERS[key][1])
        for k, v in self.extra.items():
            out.setdefault(k, v)
        out["CorrectionMasks"] = [leaf_to_raw(leaf) for leaf in self.masks]
        return out


def leaf_to_raw(leaf: MaskLeaf) -> dict[str, Any]:
    """A mask component as a raw ``CorrectionMasks`` item."""
    p = leaf.params
    out: dict[str, Any] = {}
    if leaf.kind == "gradient":
        out["What"] = "Mask/Gradient"
        for k in ("ZeroX", "ZeroY", "FullX", "FullY"):
            out[k] = _fmt(p[k])
    elif leaf.kind == "radial":
        out["What"] = "Mask/CircularGradient"
        for k in ("Top", "Left", "Bottom", "Right"):
            out[k] = _fmt(p[k])
        out["Angle"] = _fmt(p.get("Angle", 0.0))
        out["Midpoint"] = _fmt(p.get("Midpoint", 50.0))
        out["Roundness"] = _fmt(p.get("Roundness", 0.0))
        out["Feather"] = _fmt(p.get("Feather", 50.0))
        out["Flipped"] = "false" if p.get("outside", False) else "true"
    elif leaf.kind == "luminance":
        out["What"] = "Mask/RangeMask"
        out["CorrectionRangeMask"] = {
            "Version": "3",
            "Type": "2",
            "LumRange": " ".join(f"{float(v):.6f}" for v in p["LumRange"]),
        }
    elif leaf.kind == "colour":
        out["What"] = "Mask/RangeMask"
        out["CorrectionRangeMask"] = {
            "Version": "3",
            "Type": "1",
            "ColorAmount": _fmt(p.get("ColorAmount", 0.5)),
            "SampleColors": [" ".join(f"{float(c):.6f}" for c in s) for s in p["Samples"]],
        }
    else:
        out["What"] = "Mask/All"
    out["MaskValue"] = _fmt(leaf.value)
    out["MaskBlendMode"] = str(("add", "subtract", "intersect").index(leaf.mode))
    out["MaskInverted"] = "true" if leaf.inverted else "false"
    return out


def _range_leaf(rng: Mapping[str, Any], problems: list[str]) -> MaskLeaf | None:
    kind = int(_num(rng.get("Type"), 0))
    if kind == 2:
        text = rng.get("LumRange")
        if isinstance(text, str) and len(text.split()) == 4:
            vals = [min(max(_num(v), 0.0), 1.0) for v in text.split()]
        else:  # Lightroom 7-10 spelling: LumMin/LumMax and a feather
            lo, hi = _num(rng.get("LumMin"), 0.0), _num(rng.get("LumMax"), 1.0)
            f = min(max(_num(rng.get("LumFeather"), 0.5), 0.0), 1.0) * 0.2
            vals = [max(lo - f, 0.0), lo, hi, min(hi + f, 1.0)]
        return MaskLeaf("luminance", {"LumRange": tuple(vals)})
    if kind == 1:
        samples = rng.get("SampleColors")
        if isinstance(samples, list) and samples:
            pts = []
            for s in samples:
                parts = str(s).split()
                if len(parts) == 3:
                    pts.append(tuple(min(max(_num(v), 0.0), 1.0) for v in parts))
            if pts:
                return MaskLeaf("colour", {"Samples": pts, "ColorAmount": _num(rng.get("ColorAmount"), 0.5)})
        problems.append("colour range mask without SampleColors (Lightroom PointModels are not read)")
        return None
    if kind == 0:
        return None
    problems.append(f"range mask type {kind} (depth) needs depth data")
    return None


def parse_leaf(raw: Mapping[str, Any], problems: list[str]) -> MaskLeaf | None:
    """One ``CorrectionMasks`` item → MaskLeaf, or None (reason appended to ``problems``)."""
    what = str(raw.get("What", ""))
    mode_code = int(_num(raw.get("MaskBlendMode"), 0))
    mode = {0: "add", 1: "subtract", 2: "intersect"}.get(mode_code)
    if mode is None:
        problems.append(f"unknown MaskBlendMode {mode_code}")
        return None
    value = min(max(_num(raw.get("MaskValue"), 1.0), 0.0), 1.0)
    inverted = _flag(raw.get("MaskInverted"))
    if what == "Mask/Gradient":
        params = {k: _num(raw.get(k), 0.5) for k in ("ZeroX", "ZeroY", "FullX", "FullY")}
        return MaskLeaf("gradient", params, mode, value, inverted)
    if what == "Mask/CircularGradient":
        params: dict[str, Any] = {
            k: _num(raw.get(k), d)
            for k, d in (("Top", 0.25), ("Left", 0.25), ("Bottom", 0.75), ("Right", 0.75))
        }
        params["Feather"] = min(max(_num(raw.get("Feather"), 50.0), 0.0), 100.0)
        params["Angle"] = _num(raw.get("Angle"), 0.0)
        params["Midpoint"] = _num(raw.get("Midpoint"), 50.0)
        params["Roundness"] = _num(raw.get("Roundness"), 0.0)
        params["outside"] = not _flag(raw.get("Flipped"))
        if params["Midpoint"] != 50.0 or params["Roundness"] != 0.0:
            problems.append("radial Midpoint/Roundness other than 50/0 rendered as 50/0")
        return MaskLeaf("radial", params, mode, value, inverted)
    if what == "Mask/RangeMask":
        inner = raw.get("CorrectionRangeMask")
        leaf = _range_leaf(inner if isinstance(inner, Mapping) else raw, problems)
        if leaf is None:
            return None
        return MaskLeaf(leaf.kind, leaf.params, mode, value, inverted)
    if what in ("Mask/All", "Mask/Entire"):
        return MaskLeaf("all", {}, mode, value, inverted)
    if what == "Mask/Image":
        sub = int(_num(raw.get("MaskSubType"), -1))
        label = {1: "subject", 2: "sky", 3: "people", 4: "object", 6: "background"}.get(sub, "AI")
        problems.append(f"{label} mask (Mask/Image) needs a segmentation model")
        return None
    problems.append(f"{what or 'unnamed'} mask (brush dabs and other shapes are not rendered)")
    return None


def parse_correction(raw: Mapping[str, Any], container: str) -> LocalCorrection:
    """One raw correction dict → LocalCorrection (never raises; problems go to ``unrendered``)."""
    problems: list[str] = []
    sliders: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key in LOCAL_SLIDERS:
            name, scale = LOCAL_SLIDERS[key]
            v = _num(value) * scale
            lim = SLIDER_RANGE.get(name, 100.0)
            if v:
                sliders[name] = float(min(max(v, -lim), lim))
        elif key.startswith("Local") and not isinstance(value, (dict, list)):
            if _num(value) != 0.0:
                problems.append(f"{key} (not rendered locally)")
            extra[key] = value
        elif key in _STRUCTURE_KEYS or key in _RANGE_KEYS:
            continue
        elif not isinstance(value, (dict, list)):
            extra[key] = value
        elif key.endswith("Curve") and value not in ([], ["0, 0", "255, 255"]):
            problems.append(f"{key} (local curves are not rendered)")
    leaves: list[MaskLeaf] = []
    broken = False
    items = raw.get("CorrectionMasks")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or not _flag(item.get("MaskActive"), True):
            continue
        leaf = parse_leaf(item, problems)
        if leaf is None:
            broken = True
            continue
        leaves.append(leaf)
    for key in _RANGE_KEYS:
        rng = raw.get(key)
        if isinstance(rng, Mapping):
            leaf = _range_leaf(rng, problems)
            if leaf is not None:
                leaves.append(MaskLeaf(leaf.kind, leaf.params, "intersect"))
    name = raw.get("CorrectionName")
    return LocalCorrection(
        sliders=sliders,
        masks=[] if broken else leaves,
        amount=min(max(_num(raw.get("CorrectionAmount"), 1.0), 0.0), 2.0),
        active=_flag(raw.get("CorrectionActive"), True),
        container=container,
        name=str(name) if name else None,
        unrendered=problems,
        extra=extra,
    )


def parse_corrections(raw: Mapping[str, Any]) -> list[LocalCorrection]:
    """All corrections of the containers present in a raw settings mapping, in container order."""
    out: list[LocalCorrection] = []
    for container in LOCAL_CONTAINERS:
        items = raw.get(container)
        if isinstance(items, Mapping):  # a Lua table with one keyed correction
            items = [items]
        if not isinstance(items, list):
            continue
        out.extend(parse_correction(c, container) for c in items if isinstance(c, Mapping))
    return out


def corrections_to_raw(corrections: Sequence[LocalCorrection]) -> dict[str, list[dict[str, Any]]]:
    """Corrections → raw containers (each correction back in the container it came from)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in corrections:
        out.setdefault(c.container, []).append(c.to_raw())
    return out


def settings_with_corrections(settings: Any, corrections: Sequence[LocalCorrection]) -> Any:
    """A copy of ``settings`` (PresetSettings) whose local corrections are ``corrections``."""
    from .settings import PresetSettings, coerce_settings

    s = coerce_settings(settings)
    unsup = {k: v for k, v in s.unsupported.items() if k not in LOCAL_CONTAINERS}
    unsup.update(corrections_to_raw(corrections))
    return PresetSettings(dict(s), meta=s.meta, unsupported=unsup, issues=s.issues)


def unrendered_report(corrections: Sequence[LocalCorrection]) -> list[str]:
    """One line per thing a preset's corrections hold that the engine does not render."""
    lines = []
    counts: dict[str, int] = {}
    for c in corrections:
        i = counts.get(c.container, 0)
        counts[c.container] = i + 1
        for p in c.unrendered:
            lines.append(f"{c.container}[{i}]: {p}")
        if c.active and not c.masks and not c.unrendered:
            lines.append(f"{c.container}[{i}]: no mask")
    return lines


# --------------------------------------------------------------------------------------------------
# rendering
def _blend(out: np.ndarray, new: np.ndarray, m3: np.ndarray) -> np.ndarray:
    return out + (new - out) * m3


def apply_correction(image: np.ndarray, c: LocalCorrection, mask: np.ndarray | None = None) -> np.ndarray:
    """One correction on an HxWx3 float32 sRGB image in [0, 1]; ``mask`` overrides its own masks."""
    from . import local_ops as L
    from .engine_np import exposure_shoulder, white_balance_gains
    from .render_np import render

    out = np.asarray(image, dtype=np.float32)
    if not c.active:
        return out
    m = combine(c.masks, out) if mask is None else np.asarray(mask, np.float32)
    if not np.any(m > 0):
        return out
    s = {k: v * c.amount for k, v in c.sliders.items() if v}
    m3 = m[..., None]
    ev = s.get("Exposure", 0.0)
    temp, tint = s.get("Temperature", 0.0) / 100.0, s.get("Tint", 0.0) / 100.0
    if ev or temp or tint:
        lin = srgb_to_linear(np.clip(out, 0.0, 1.0))
        if temp or tint:
            gains = np.stack(white_balance_gains(np.float32(temp), np.float32(tint)), axis=-1).astype(
                np.float32
            )
            lin = lin * gains[None, None, :] ** m3
        if ev:
            ev_map = (ev * m3).astype(np.float32)
            lin = lin * np.exp2(ev_map)
            if ev > 0:
                lin = exposure_shoulder(lin, ev_map)
        out = linear_to_srgb(np.clip(lin, 0.0, 1.0)).astype(np.float32)
    core = {_CORE_OF[k]: v for k, v in s.items() if k in _CORE_OF}
    if core:
        out = _blend(out, render(out, core), m3)
    if s.get("Dehaze"):
        out = _blend(out, np.clip(L.dehaze(out, s["Dehaze"] / 100.0), 0.0, 1.0), m3)
    if s.get("Clarity"):
        new = L.local_contrast(out, s["Clarity"] / 100.0, L.CLARITY_RADIUS, L.CLARITY_GAIN, 1e-2, True)
        out = _blend(out, np.clip(new, 0.0, 1.0), m3)
    if s.get("Texture"):
        new = L.local_contrast(out, s["Texture"] / 100.0, L.TEXTURE_RADIUS, L.TEXTURE_GAIN, 4e-3, False)
        out = _blend(out, np.clip(new, 0.0, 1.0), m3)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def apply_corrections(image: np.ndarray, corrections: Sequence[LocalCorrection]) -> np.ndarray:
    """Every renderable correction in order (each sees the previous ones' result)."""
    out = np.asarray(image, dtype=np.float32)
    for c in corrections:
        if c.renderable:
            out = apply_correction(out, c)
    return out


__all__ = [
    "LOCAL_CONTAINERS",
    "LOCAL_SLIDERS",
    "LocalCorrection",
    "apply_correction",
    "apply_corrections",
    "corrections_to_raw",
    "leaf_to_raw",
    "parse_correction",
    "parse_corrections",
    "parse_leaf",
    "settings_with_corrections",
    "unrendered_report",
]
