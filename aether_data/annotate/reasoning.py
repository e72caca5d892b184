"""The template's reasoning: plans naming every applied slider, and for auto the problems each
correction implies and the key-elements line measured from the photo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aether_data import params as P
from aether_data.annotate.content import describe_content
from aether_data.annotate.phrasing import (
    COMPACT_AFTER,
    MAX_PROBLEMS,
    PLAN_ADVERBS,
    PROBLEM_SEVERITY,
    _clean,
    _hsl,
    _neighbour,
    _plural,
    _sentence,
    _signed,
    magnitude,
)


def _plan_clause(name: str, v: float, compact: bool) -> str:
    direction = "increase" if v > 0 else "decrease"
    if compact:
        return f"{direction} {name} by {_signed(v)}"
    clause = f"{PLAN_ADVERBS[magnitude(v)]} {direction} {P.SPECS[name].label} ({name}) by {_signed(v)}"
    if name == "Exposure2012":
        clause += f" (≈ {v * P.SPECS[name].scale:+.2f} EV)"
    hsl = _hsl(name)
    if hsl and hsl[0] == "Hue":
        clause += f" (towards {_neighbour(hsl[1], 1 if v > 0 else -1)})"
    return clause


_PLAN_OPENERS = {
    "param": ("As requested, ", "Following the given parameters, ", "Per the instruction, "),
    "style": ("For the {style} look, ", "To build the {style} style, ", "To match {style}, "),
    "auto": ("To fix this, ", "To correct it, ", "To compensate, "),
}


def _plan(values: Mapping[str, float], opener: str) -> str | None:
    if not values:
        return None
    compact = len(values) > COMPACT_AFTER
    clauses = [_plan_clause(n, v, compact) for n, v in values.items()]
    return opener + "; ".join(clauses) + "."


# corrective parameter → (defect when the correction is positive, when negative); {sev} = adjective
_DEFECTS: dict[str, tuple[str, str]] = {
    "Exposure2012": (
        "{sev} underexposure (the midtones look dull and dark)",
        "{sev} overexposure (the midtones look washed out)",
    ),
    "Contrast2012": (
        "{sev} lack of contrast (the tones look flat and muddy)",
        "{sev} excess contrast (the tones look harsh)",
    ),
    "Highlights2012": (
        "{sev} dullness in the highlights (they lack sparkle)",
        "{sev} highlight overexposure (bright areas are close to clipping)",
    ),
    "Shadows2012": (
        "{sev} blocking of the shadows (dark areas hide detail)",
        "{sev} over-opening of the shadows (the image looks flat)",
    ),
    "Whites2012": (
        "{sev} lack of a white point (whites look grey)",
        "{sev} excess in the whites (they look too hot)",
    ),
    "Blacks2012": ("{sev} crushing of the blacks", "{sev} lift in the blacks (the image looks hazy)"),
    "IncrementalTemperature": ("{sev} cool, bluish cast", "{sev} warm, yellow-orange cast"),
    "IncrementalTint": ("{sev} green tint", "{sev} magenta tint"),
    "Vibrance": (
        "{sev} lack of vibrance (colours look muted)",
        "{sev} excess vibrance (colours look garish)",
    ),
    "Saturation": ("{sev} undersaturation", "{sev} oversaturation"),
}
for _name, _region in (
    ("ParametricShadows", "deepest"),
    ("ParametricDarks", "dark"),
    ("ParametricLights", "light"),
    ("ParametricHighlights", "brightest"),
):
    _DEFECTS[_name] = (
        f"{{sev}} excess darkness in the {_region} tones",
        f"{{sev}} excess brightness in the {_region} tones",
    )


def _defect(name: str, v: float) -> str:
    sev = PROBLEM_SEVERITY[magnitude(v)]
    hsl = _hsl(name)
    if hsl is None:
        return _DEFECTS[name][0 if v > 0 else 1].format(sev=sev)
    kind, band = hsl
    bands = _plural(band)
    if kind == "Hue":  # a positive correction moves the hue towards the next band
        return f"{sev} hue shift of the {bands} towards {_neighbour(band, -1 if v > 0 else 1)}"
    if kind == "Saturation":
        return f"{sev} lack of saturation in the {bands}" if v > 0 else f"{sev} oversaturation of the {bands}"
    return f"{sev} darkness of the {bands}" if v > 0 else f"{sev} excess brightness of the {bands}"


def _num(stats: Mapping[str, Any] | None, *keys: str) -> float | None:
    for k in keys:
        v = (stats or {}).get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            return float(v)
    return None


def _cast_text(stats: Mapping[str, Any] | None) -> str | None:
    cast = (stats or {}).get("color_cast", (stats or {}).get("cast"))
    if isinstance(cast, str) and cast.strip() and cast.strip().lower() not in ("none", "neutral"):
        return f"{_clean(cast)[:40]} cast"
    return None


def _measured(group: str, stats: Mapping[str, Any] | None) -> str | None:
    """A short "measured: …" note for the light / global colour problem sections."""
    parts = []
    if group == "light":
        lum = _num(stats, "mean_luminance", "luminance", "brightness")
        con = _num(stats, "contrast", "rms_contrast", "std_luminance")
        if lum is not None:
            parts.append(f"mean luminance {lum:.2f}")
        if con is not None:
            parts.append(f"contrast {con:.2f}")
    elif group == "globalcolor":
        sat = _num(stats, "saturation", "mean_saturation", "colorfulness")
        if sat is not None:
            parts.append(f"saturation {sat:.2f}")
        cast = _cast_text(stats)
        if cast:
            parts.append(cast)
    return f"Measured: {', '.join(parts)}." if parts else None


_PROBLEM_OPENERS = ("", "the photo shows ", "there is ")


def _problem(
    group: str, values: Mapping[str, float], stats: Mapping[str, Any] | None, opener: str
) -> str | None:
    if not values:
        return None
    shown = list(values.items())[:MAX_PROBLEMS]
    clauses = [_defect(n, v) for n, v in shown]
    rest = len(values) - len(shown)
    if rest:
        clauses.append(f"{rest} smaller issue{'s' if rest > 1 else ''} of the same kind")
    text = _sentence([opener + clauses[0], *clauses[1:]])
    note = _measured(group, stats)
    return f"{text} {note}" if note else text


def _elements(stats: Mapping[str, Any] | None, category: str | None) -> str:
    subject = category or (stats or {}).get("subject") or (stats or {}).get("scene")
    measured = describe_content(stats)  # hues, sky/skin/foliage shares, zones, subject position
    head = (
        [_clean(subject)[:160]]
        if subject
        else ([] if measured else ["the main subject and its surroundings"])
    )
    tone = []
    lum = _num(stats, "mean_luminance", "luminance", "brightness")
    if lum is not None:
        tone.append(
            "dark overall"
            if lum < 0.3
            else "somewhat dark"
            if lum < 0.45
            else "mid-toned"
            if lum < 0.6
            else "bright"
            if lum < 0.75
            else "very bright"
        )
    con = _num(stats, "contrast", "rms_contrast", "std_luminance")
    if con is not None:
        tone.append("low contrast" if con < 0.15 else "normal contrast" if con < 0.3 else "high contrast")
    sat = _num(stats, "saturation", "mean_saturation", "colorfulness")
    if sat is not None:
        tone.append("muted colours" if sat < 0.2 else "moderate colours" if sat < 0.45 else "vivid colours")
    cast = _cast_text(stats)
    if cast:
        tone.append(cast)
    tail = ", ".join(tone) if tone else "tones and colours judged from the whole frame"
    while True:  # the measured phrases give way (last first) to the elements length limit
        text = "; ".join([*head, *measured, tail]) + "."
        if len(text) <= 380 or not measured:
            return text
        measured.pop()
