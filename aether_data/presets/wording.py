"""Words for a style sample: user instructions and retouching plans grounded in the measured effects.

Every instruction names effects the preset really has (`describe.effects`), and every plan names
the sliders it really moves, grouped like VeraRetouch's plan sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.develop.settings import CALIBRATION_KEYS, PresetSettings, coerce_settings
from aether_data.presets.describe import Effect, effects, join_phrases
from aether_data.presets.measure import colour_word

__all__ = ["style_instructions", "style_plans"]


_TEMPLATES_FULL: tuple[str, ...] = (
    "Give this photo {a_fine} look: {phrases}.",
    "Edit this in {a_fine} style with {phrases}.",
    "I'd like {a_fine} feel here, with {phrases}.",
    "Apply {a_primary} style ({fine}): {phrases}.",
    "Retouch it like {a_fine} preset, with {phrases}.",
    "Can you give the picture {a_fine} grade? Think {phrases}.",
    "Go for {a_fine} mood: {phrases}.",
)
_TEMPLATES_ADJ: tuple[str, ...] = (
    "Make the photo {adjs}.",
    "Could you make this image {adjs}?",
    "I want this shot {adjs}, in {a_primary} style.",
    "Make it {adjs} - {a_fine} kind of look.",
)
_TEMPLATES_SHORT: tuple[str, ...] = (
    "Give this photo the {fine} look.",
    "Apply {a_fine} style to this picture.",
    "Edit this photo with {a_primary} preset.",
    "Style this like {fine}.",
    "Retouch this image in {a_primary} mood.",
)
_TEMPLATES_SCENE: tuple[str, ...] = (
    "{description_cap} Apply that to this photo.",
    "Use {a_fine} preset on this: {description}",
)


def _article(words: str) -> str:
    """ "a Kodak look" / "an Ilford look" (by the first letter; good enough for category names)."""
    return ("an " if words.strip()[:1].lower() in "aeiou" else "a ") + words


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def style_instructions(preset: Mapping[str, Any], rng: np.random.Generator, n: int = 3) -> list[str]:
    """``n`` (≥ 3) distinct user instructions for a style sample, deterministic given ``rng``.

    ``preset`` needs ``name``/``fine``/``primary`` and either ``settings`` (PresetSettings or a dict)
    or precomputed ``effects``; ``description`` (the category's) is used when present. Phrases come
    from the measured effects, so every instruction names things the edit really does.
    """
    n = max(3, int(n))
    fine = str(preset.get("fine") or preset.get("name") or "custom")
    primary = str(preset.get("primary") or fine)
    desc = str(preset.get("description") or "").strip()
    effs = preset.get("effects")
    if effs is None:
        effs = effects(preset["settings"]) if preset.get("settings") is not None else []
    effs = [e if isinstance(e, Effect) else Effect(**e) for e in effs]
    pool: list[str] = []
    top = effs[:6]
    phrase_sets: list[list[str]] = []
    if top:
        for _ in range(4):
            k = int(rng.integers(1, min(3, len(top)) + 1))
            idx = sorted(rng.choice(len(top), size=k, replace=False).tolist())
            phrase_sets.append([top[i].phrase for i in idx])
        phrase_sets.insert(0, [e.phrase for e in top[:3]])
    prim = primary.lower() if primary != fine else primary
    fields = {"fine": fine, "primary": prim, "a_fine": _article(fine), "a_primary": _article(prim)}
    order = rng.permutation(len(_TEMPLATES_FULL)).tolist()
    for j, ps in enumerate(phrase_sets):
        tmpl = _TEMPLATES_FULL[order[j % len(order)]]
        pool.append(tmpl.format(phrases=join_phrases(ps), **fields))
    if top:
        adjs = [e.adjective for e in top[:3]]
        k = int(rng.integers(1, len(adjs) + 1))
        for tmpl in rng.permutation(_TEMPLATES_ADJ).tolist()[:2]:
            pool.append(tmpl.format(adjs=join_phrases(adjs[:k]), **fields))
    if desc:
        tmpl = _TEMPLATES_SCENE[int(rng.integers(len(_TEMPLATES_SCENE)))]
        d = desc.rstrip(".") + "."
        pool.append(tmpl.format(description=d[:1].lower() + d[1:], description_cap=d, **fields))
    for tmpl in rng.permutation(_TEMPLATES_SHORT).tolist():
        pool.append(tmpl.format(**fields))
    # first the two most grounded, then a seeded mix of the rest; distinct texts only
    head, tail = pool[:1], pool[1:]
    tail = [tail[i] for i in rng.permutation(len(tail)).tolist()]
    out: list[str] = []
    for text in head + tail:
        text = _cap(text.strip())
        if text not in out:
            out.append(text)
        if len(out) >= n:
            break
    return out


def _fmt(v: float, unit: str = "") -> str:
    return f"{v:+.2f}{unit}" if unit == " EV" else f"{v:+.0f}"


def _light_plan(s: PresetSettings) -> list[str]:
    """Steps on the tone and light sliders, in the order an editor works."""
    out: list[str] = []
    ev = s.num("Exposure2012")
    if abs(ev) >= 0.05:
        out.append(f"{'raise' if ev > 0 else 'lower'} exposure by {_fmt(ev, ' EV')}")
    for key, word in (
        ("Contrast2012", "contrast"),
        ("Highlights2012", "highlights"),
        ("Shadows2012", "shadows"),
        ("Whites2012", "whites"),
        ("Blacks2012", "blacks"),
    ):
        v = s.num(key)
        if abs(v) >= 3:
            out.append(f"set {word} to {_fmt(v)}")
    para = [
        (k, s.num(k))
        for k in ("ParametricShadows", "ParametricDarks", "ParametricLights", "ParametricHighlights")
    ]
    if any(abs(v) >= 3 for _, v in para):
        parts = [f"{k[len('Parametric') :].lower()} {_fmt(v)}" for k, v in para if abs(v) >= 3]
        out.append("shape the parametric curve (" + ", ".join(parts) + ")")
    curve = s.curve("ToneCurvePV2012")
    if curve is not None:
        name = s.get("ToneCurveName2012")
        if name in ("Medium Contrast", "Strong Contrast") and "ToneCurvePV2012" not in s:
            out.append(f"use the {name.lower()} point curve")
        else:
            x0, y0 = curve[0]
            x1, y1 = curve[-1]
            bits = []
            if y0 > x0 + 4:
                bits.append(f"lifts the black point to {y0}/255")
            if y1 < x1 - 4:
                bits.append(f"pulls the white point down to {y1}/255")
            if not bits:
                bits.append("reshapes the mid-tones")
            out.append("draw a point curve that " + join_phrases(bits))
    for key, word in (("Clarity2012", "clarity"), ("Texture", "texture"), ("Dehaze", "dehaze")):
        v = s.num(key)
        if abs(v) >= 3:
            out.append(f"{word} {_fmt(v)}")
    vig = s.num("PostCropVignetteAmount")
    if abs(vig) >= 3:
        out.append(
            f"add a post-crop vignette ({_fmt(vig)}, midpoint {s.num('PostCropVignetteMidpoint'):.0f})"
        )
    if s.num("GrainAmount") > 0:
        out.append(f"add grain (amount {s.num('GrainAmount'):.0f}, size {s.num('GrainSize'):.0f})")
    if s.num("Sharpness") > 0:
        out.append(f"sharpen ({s.num('Sharpness'):.0f} at radius {s.num('SharpenRadius'):.1f})")
    return out


def _global_plan(s: PresetSettings) -> list[str]:
    """Steps on white balance, saturation, colour grading, channel curves and calibration."""
    out: list[str] = []
    if bool(s.value("ConvertToGrayscale")):
        out.append("convert to black and white")
    for key, word in (
        ("IncrementalTemperature", "temperature"),
        ("IncrementalTint", "tint"),
        ("Vibrance", "vibrance"),
        ("Saturation", "saturation"),
    ):
        v = s.num(key)
        if abs(v) >= 3:
            out.append(f"{word} {_fmt(v)}")
    from aether_data.develop.preset_ops import grade_values

    for part, (hue, sat, lum) in grade_values(s).items():
        if sat >= 0.03:
            out.append(
                f"grade the {part if part == 'global' else part + 's'} towards {colour_word(hue)} (hue {hue:.0f}°, saturation {sat * 100:.0f})"
            )
        if abs(lum) >= 0.03:
            out.append(
                f"{'brighten' if lum > 0 else 'darken'} the {part}{'' if part == 'global' else 's'} in the colour grade ({_fmt(lum * 100)})"
            )
    for ch in ("Red", "Green", "Blue"):
        c = s.curve(f"ToneCurvePV2012{ch}")
        if c is not None:
            out.append(f"bend the {ch.lower()} channel curve ({c[0][1]} at black, {c[-1][1]} at white)")
    calib = [(k, s.num(k)) for k in CALIBRATION_KEYS]
    if any(abs(v) >= 3 for _, v in calib):
        out.append(
            "calibrate the primaries (" + ", ".join(f"{k} {_fmt(v)}" for k, v in calib if abs(v) >= 3) + ")"
        )
    return out


def _specific_plan(s: PresetSettings) -> list[str]:
    """Steps in the colour mixer (or the gray mix of a black-and-white preset)."""
    out: list[str] = []
    mono = bool(s.value("ConvertToGrayscale"))
    for band in P.HSL_BANDS:
        if mono:
            v = s.num(f"GrayMixer{band}")
            if abs(v) >= 3:
                out.append(f"{band.lower()} {_fmt(v)} in the gray mix")
            continue
        parts = []
        for kind in ("Hue", "Saturation", "Luminance"):
            v = s.num(f"{kind}Adjustment{band}")
            if abs(v) >= 3:
                parts.append(f"{kind.lower()} {_fmt(v)}")
        if parts:
            out.append(f"{band.lower()} {', '.join(parts)}")
    return out


def style_plans(
    settings: PresetSettings | Mapping[str, Any], effs: list[Effect] | None = None
) -> dict[str, str]:
    """Retouching plans grounded in the settings, grouped like VeraRetouch's plan sections
    (``effs``: the settings' `effects`, when the caller has them already)."""
    s = coerce_settings(settings)
    effs = effects(s) if effs is None else effs
    light, glob, spec = _light_plan(s), _global_plan(s), _specific_plan(s)
    mono = bool(s.value("ConvertToGrayscale"))

    def why(group: str) -> str:
        phrases = [e.phrase for e in effs if e.group == group][:3]
        return f" for {join_phrases(phrases)}" if phrases else ""

    plans = {
        "light": (_cap(join_phrases(light)) + why("light") + ".")
        if light
        else "Keep exposure and tone as they are.",
        "globalcolor": (_cap(join_phrases(glob)) + why("globalcolor") + ".")
        if glob
        else "Keep the overall colour balance as it is.",
        "specificcolor": (
            ("In the colour mixer: " if not mono else "In the black-and-white mix: ")
            + "; ".join(spec)
            + why("specificcolor")
            + "."
        )
        if spec
        else "Leave the individual colours unchanged.",
    }
    return plans
