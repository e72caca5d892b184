"""What a preset actually does, in words: its visible effects, measured.

Effects are *measured*, not read off slider names: the preset's per-pixel function is run on a
small probe (`measure`) and the changes are turned into phrases ("faded blacks", "teal shadows",
"desaturated greens", "strong contrast", "black and white"). Spatial effects (clarity, dehaze,
vignette, grain) come from their sliders. So a preset that lifts blacks through a point curve,
through Blacks2012 or through the parametric curve is described the same way: by what happens to
the picture. Instructions and plans built from these effects are in `wording`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.develop.color import HSL_CENTRES
from aether_data.develop.settings import PresetSettings, coerce_settings
from aether_data.presets.measure import (
    RAMP,
    Measurement,
    colour_word,
    hue_degrees,
    luma,
    measure,
    opponent,
    relative_tint,
    tint,
)

__all__ = ["Effect", "effects", "join_phrases", "summary"]


@dataclass(frozen=True)
class Effect:
    """One visible effect: a noun phrase ("teal shadows"), an adjective ("cooler"), its plan group
    (light / globalcolor / specificcolor) and a strength used to rank effects."""

    key: str
    phrase: str
    adjective: str
    group: str
    strength: float


_Add = Callable[[str, str, str, str, float], None]
_BandDelta = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]


def effects(
    settings: PresetSettings | Mapping[str, Any], probe_out: np.ndarray | None = None
) -> list[Effect]:
    """Every visible effect of a preset, strongest first (``probe_out``: see `measure`)."""
    s = coerce_settings(settings)
    m = measure(s, probe_out)
    out: list[Effect] = []

    def add(key: str, phrase: str, adjective: str, group: str, strength: float) -> None:
        out.append(Effect(key, phrase, adjective, group, float(strength)))

    _light_effects(s, m, add)
    _colour_effects(s, m, add, out)
    out.sort(key=lambda e: -e.strength)
    return out


def _light_effects(s: PresetSettings, m: Measurement, add: _Add) -> None:
    """Exposure, contrast, black and white points, local contrast, vignette, grain, sharpness."""
    ramp_l = luma(m.ramp_out)
    bright = float((ramp_l - RAMP).mean())
    if bright > 0.03:
        add(
            "brighter",
            "a brighter exposure" if bright < 0.1 else "a bright, airy exposure",
            "brighter",
            "light",
            bright * 6,
        )
    elif bright < -0.03:
        add("darker", "a darker, moodier exposure", "darker and moodier", "light", -bright * 6)
    i25, i75 = 8, 24
    slope = float((ramp_l[i75] - ramp_l[i25]) / (RAMP[i75] - RAMP[i25]))
    if slope > 1.06:
        add(
            "contrast+",
            "strong contrast" if slope > 1.18 else "punchier contrast",
            "punchier",
            "light",
            (slope - 1) * 5,
        )
    elif slope < 0.94:
        add("contrast-", "soft contrast", "softer in contrast", "light", (1 - slope) * 5)
    black, white = float(ramp_l[0]), float(ramp_l[-1])
    if black > 0.06:
        add(
            "faded",
            "faded blacks" if black < 0.16 else "heavily faded, matte blacks",
            "faded",
            "light",
            black * 8,
        )
    elif float(ramp_l[3]) < RAMP[3] - 0.035:
        add("crushed", "deep, crushed blacks", "inkier in the shadows", "light", (RAMP[3] - ramp_l[3]) * 10)
    lift = float(ramp_l[6] - RAMP[6])
    if lift > 0.05 and black <= 0.06:
        add("lifted-shadows", "lifted shadows", "more open in the shadows", "light", lift * 6)
    if white < 0.93:
        add(
            "soft-highlights",
            "soft, rolled-off highlights",
            "gentler in the highlights",
            "light",
            (1 - white) * 6,
        )
    clarity, texture, dehaze = s.num("Clarity2012"), s.num("Texture"), s.num("Dehaze")
    if clarity > 12:
        add("clarity+", "crisp local contrast", "crisper", "light", clarity / 40)
    elif clarity < -12:
        add("glow", "a soft, dreamy glow", "softer and dreamier", "light", -clarity / 40)
    if texture < -10:
        add("smooth", "smoothed fine texture", "smoother", "light", -texture / 60)
    if dehaze > 10:
        add("dehaze", "clear, haze-free air", "clearer", "light", dehaze / 40)
    elif dehaze < -10:
        add("haze", "a hazy atmosphere", "hazier", "light", -dehaze / 40)
    vig = s.num("PostCropVignetteAmount")
    if vig < -8:
        add(
            "vignette",
            "a dark vignette" if vig > -25 else "a heavy dark vignette",
            "vignetted",
            "light",
            -vig / 40,
        )
    elif vig > 8:
        add("white-vignette", "a soft white vignette", "lighter at the edges", "light", vig / 40)
    grain = s.num("GrainAmount")
    if grain > 8:
        add("grain", "fine film grain" if grain < 25 else "heavy film grain", "grainier", "light", grain / 40)
    if s.num("Sharpness") >= 40 or texture > 12:
        add("sharp", "crisp detail", "sharper", "light", max(s.num("Sharpness") / 150, texture / 60))


def _colour_effects(s: PresetSettings, m: Measurement, add: _Add, out: list[Effect]) -> None:
    """White balance, tint, split tones, mono toning, saturation, then the per-band effects."""
    mono = bool(s.value("ConvertToGrayscale"))
    if mono:
        add("bw", "black and white", "black and white", "globalcolor", 3.0)
    mid = m.ramp_out[12:21]
    warmth = float((mid[:, 0] - mid[:, 2]).mean())
    green = float((mid[:, 1] - 0.5 * (mid[:, 0] + mid[:, 2])).mean())
    # shadow / highlight tints relative to the mid-tone cast (a white-balance shift is "warm tones",
    # not "orange shadows and orange highlights")
    shadow_c, shadow_h = relative_tint(m.ramp_out[3:10], mid)
    high_c, high_h = relative_tint(m.ramp_out[23:30], mid)
    if mono:
        tone_c, tone_h = tint(m.ramp_out[4:29])
        if tone_c > 0.01:
            word = {
                "orange": "sepia",
                "golden": "sepia",
                "red": "brown",
                "purple": "selenium",
                "pink": "selenium",
            }.get(colour_word(tone_h), colour_word(tone_h))
            add("toned", f"a {word}-toned print", f"{word}-toned", "globalcolor", tone_c * 20)
    else:
        if abs(warmth) > 0.02:
            add(
                "warm" if warmth > 0 else "cool",
                "warm tones" if warmth > 0 else "cool tones",
                "warmer" if warmth > 0 else "cooler",
                "globalcolor",
                abs(warmth) * 12,
            )
        if abs(green) > 0.02:
            add(
                "tint",
                "a green tint" if green > 0 else "a magenta tint",
                "greener" if green > 0 else "more magenta",
                "globalcolor",
                abs(green) * 10,
            )
    if not mono or abs(shadow_h - high_h) > 40:
        if shadow_c > 0.02:
            w = colour_word(shadow_h)
            add("shadow-tint", f"{w} shadows", f"{w} in the shadows", "globalcolor", shadow_c * 15)
        if high_c > 0.02:
            w = colour_word(high_h)
            add("highlight-tint", f"{w} highlights", f"{w} in the highlights", "globalcolor", high_c * 15)
    if not mono:
        a_in, b_in = opponent(m.patch_in)
        a_out, b_out = opponent(m.patch_out)
        c_in, c_out = np.hypot(a_in, b_in), np.hypot(a_out, b_out)
        ratio = float(c_out.mean() / c_in.mean())
        if ratio > 1.12:
            add(
                "vivid",
                "vivid colour" if ratio < 1.35 else "rich, saturated colour",
                "more vivid",
                "globalcolor",
                (ratio - 1) * 3,
            )
        elif ratio < 0.88:
            phrase = "desaturated colour" if ratio < 0.65 else "muted colour"
            add(
                "muted",
                phrase,
                "desaturated" if ratio < 0.65 else "more muted",
                "globalcolor",
                (1 - ratio) * 3,
            )
        out.extend(_band_effects(s, m, ratio))
    else:
        out.extend(_mono_band_effects(m))


_BAND_NOUNS = {
    "Red": "reds",
    "Orange": "oranges",
    "Yellow": "yellows",
    "Green": "greens",
    "Aqua": "aquas",
    "Blue": "blues",
    "Purple": "purples",
    "Magenta": "magentas",
}


def _band_effects(s: PresetSettings, m: Measurement, global_ratio: float) -> list[Effect]:
    out = []
    a_in, b_in = opponent(m.patch_in)
    a_out, b_out = opponent(m.patch_out)
    c_in, c_out = np.hypot(a_in, b_in), np.hypot(a_out, b_out)
    h_in = hue_degrees(a_in, b_in)
    h_out = hue_degrees(a_out, b_out)
    l_in, l_out = luma(m.patch_in), luma(m.patch_out)
    n = len(HSL_CENTRES)
    calibrated = any(s.num(f"{c}{kind}") for c in ("Red", "Green", "Blue") for kind in ("Hue", "Saturation"))

    def touched(k: int) -> bool:
        """Band effects are only reported for bands the preset's colour mixer (or calibration)
        works on; hue drift from a white-balance change is described as warm/cool instead."""
        if calibrated:
            return True
        near = (P.HSL_BANDS[(k - 1) % n], P.HSL_BANDS[k], P.HSL_BANDS[(k + 1) % n])
        return any(s.num(f"{kind}Adjustment{b}") for b in near for kind in ("Hue", "Saturation", "Luminance"))

    delta: _BandDelta = (c_in, c_out, h_in, h_out, l_in, l_out, global_ratio)
    for k, band in enumerate(P.HSL_BANDS):
        if touched(k):
            _one_band_effects(k, band, delta, out)
    if touched(0) or touched(1) or s.num("Vibrance"):
        _skin_effects(m, l_in, l_out, global_ratio, out)
    return out


def _skin_effects(
    m: Measurement, l_in: np.ndarray, l_out: np.ndarray, global_ratio: float, out: list[Effect]
) -> None:
    """Skin chroma and luma change relative to the average colour patch."""
    a_si, b_si = opponent(m.skin_in)
    a_so, b_so = opponent(m.skin_out)
    skin_ratio = float((np.hypot(a_so, b_so) / np.hypot(a_si, b_si)).mean()) / max(global_ratio, 1e-3)
    skin_l = float((luma(m.skin_out) - luma(m.skin_in)).mean()) - float((l_out - l_in).mean())
    if skin_ratio > 1.08 or (skin_l > 0.025 and skin_ratio > 0.97):
        out.append(
            Effect(
                "warm-skin",
                "warm, glowing skin tones",
                "warmer in the skin tones",
                "specificcolor",
                max(skin_ratio - 1, skin_l * 4) * 4,
            )
        )
    elif skin_ratio < 0.88:
        out.append(
            Effect(
                "soft-skin",
                "soft, pale skin tones",
                "paler in the skin tones",
                "specificcolor",
                (1 - skin_ratio) * 4,
            )
        )


def _one_band_effects(k: int, band: str, d: _BandDelta, out: list[Effect]) -> None:
    """Hue, saturation and luminance effects of one HSL band (its two patches)."""
    n = len(HSL_CENTRES)
    c_in, c_out, h_in, h_out, l_in, l_out, global_ratio = d
    idx = [k, k + n]
    sat = float((c_out[idx] / c_in[idx]).mean()) / max(global_ratio, 1e-3)
    dh = float(np.mean([((h_out[i] - h_in[i] + 180) % 360) - 180 for i in idx]))
    dl = float((l_out[idx] - l_in[idx]).mean()) - float((l_out - l_in).mean())
    noun = _BAND_NOUNS[band]
    if band == "Green" and dh < -8:
        out.append(
            Effect("olive", "olive-toned greens", "more olive in the greens", "specificcolor", -dh / 15)
        )
    elif band == "Green" and dh > 8:
        out.append(
            Effect("emerald", "emerald greens", "more emerald in the greens", "specificcolor", dh / 15)
        )
    elif band == "Yellow" and dh < -6:
        out.append(
            Effect(
                "golden-yellows",
                "golden yellows",
                "more golden in the yellows",
                "specificcolor",
                -dh / 12,
            )
        )
    elif band in ("Blue", "Aqua") and dh < -8:
        out.append(
            Effect("teal-blues", "teal-leaning blues", "more teal in the blues", "specificcolor", -dh / 15)
        )
    elif abs(dh) > 12:
        towards = P.HSL_BANDS[(k + (1 if dh > 0 else -1)) % n].lower()
        out.append(
            Effect(
                f"hue-{band}",
                f"{noun} shifted towards {towards}",
                f"{towards}-leaning in the {noun}",
                "specificcolor",
                abs(dh) / 15,
            )
        )
    if sat < 0.8:
        out.append(
            Effect(
                f"sat-{band}",
                f"desaturated {noun}",
                f"quieter in the {noun}",
                "specificcolor",
                (1 - sat) * 2.5,
            )
        )
    elif sat > 1.15:
        word = {
            "Green": "lush greens",
            "Blue": "deep, saturated blues",
            "Red": "rich reds",
            "Orange": "glowing oranges",
        }.get(band, f"richer {noun}")
        out.append(Effect(f"sat-{band}", word, f"richer in the {noun}", "specificcolor", (sat - 1) * 2.5))
    if band == "Blue" and dl < -0.04:
        out.append(
            Effect("deep-blues", "deeper blue skies", "deeper in the blues", "specificcolor", -dl * 10)
        )
    elif abs(dl) > 0.04:
        out.append(
            Effect(
                f"lum-{band}",
                f"{'brighter' if dl > 0 else 'darker'} {noun}",
                f"{'lighter' if dl > 0 else 'deeper'} in the {noun}",
                "specificcolor",
                abs(dl) * 10,
            )
        )


def _mono_band_effects(m: Measurement) -> list[Effect]:
    out = []
    l_in, l_out = luma(m.patch_in), luma(m.patch_out)
    n = len(HSL_CENTRES)
    d = [(float((l_out[[k, k + n]] - l_in[[k, k + n]]).mean()), band) for k, band in enumerate(P.HSL_BANDS)]
    base = float(np.mean([x for x, _ in d]))
    blue = next(x for x, b in d if b == "Blue") - base
    green = next(x for x, b in d if b == "Green") - base
    red = next(x for x, b in d if b == "Red") - base
    if blue < -0.03:
        out.append(
            Effect(
                "bw-dark-sky",
                "darkened skies in the mono mix",
                "darker in the skies",
                "specificcolor",
                -blue * 10,
            )
        )
    elif blue > 0.03:
        out.append(
            Effect(
                "bw-pale-sky", "pale skies in the mono mix", "paler in the skies", "specificcolor", blue * 10
            )
        )
    if green > 0.03:
        out.append(
            Effect(
                "bw-foliage",
                "luminous foliage in the mono mix",
                "brighter in the foliage",
                "specificcolor",
                green * 10,
            )
        )
    if red > 0.03:
        out.append(
            Effect(
                "bw-skin",
                "bright, smooth skin in the mono mix",
                "lighter in the skin",
                "specificcolor",
                red * 10,
            )
        )
    return out


def join_phrases(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def summary(settings: PresetSettings | Mapping[str, Any], k: int = 4) -> str:
    """One short line: the strongest effects ("warm tones, faded blacks and teal shadows")."""
    return join_phrases([e.phrase for e in effects(settings)[:k]])
