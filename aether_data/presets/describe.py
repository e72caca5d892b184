"""What a preset actually does, in words: effects, instruction variants and retouching plans.

Effects are *measured*, not read off slider names: the preset's per-pixel function is run on a
small probe (a grey ramp, colour patches around the 8 HSL hue centres and a skin patch) and the
changes are turned into phrases ("faded blacks", "teal shadows", "desaturated greens", "strong
contrast", "black and white"). Spatial effects (clarity, dehaze, vignette, grain) come from their
sliders. So a preset that lifts blacks through a point curve, through Blacks2012 or through the
parametric curve is described the same way: by what happens to the picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.develop.color import HSL_CENTRES, from_opponent, hue_degrees, luminance, to_opponent
from aether_data.develop.settings import PresetSettings, coerce_settings


@dataclass(frozen=True)
class Effect:
    """One visible effect: a noun phrase ("teal shadows"), an adjective ("cooler"), its plan group
    (light / globalcolor / specificcolor) and a strength used to rank effects."""

    key: str
    phrase: str
    adjective: str
    group: str
    strength: float


# ==================================================================================================
# Probe
# ==================================================================================================
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


def _luma(rgb: np.ndarray) -> np.ndarray:
    return luminance(rgb[..., 0], rgb[..., 1], rgb[..., 2])


def _opp(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _relative_tint(rgb: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(chroma, hue°) of the mean opponent vector of ``rgb`` minus that of ``ref``."""
    a, b = _opp(rgb)
    ar, br = _opp(ref)
    am, bm = float(a.mean() - ar.mean()), float(b.mean() - br.mean())
    return math.hypot(am, bm), math.degrees(math.atan2(bm, am)) % 360.0


def _tint(rgb: np.ndarray) -> tuple[float, float]:
    """(chroma, hue°) of the mean opponent vector of some grey-input outputs."""
    a, b = _opp(rgb)
    am, bm = float(a.mean()), float(b.mean())
    return math.hypot(am, bm), math.degrees(math.atan2(bm, am)) % 360.0


# ==================================================================================================
# Effects
# ==================================================================================================
def effects(
    settings: PresetSettings | Mapping[str, Any], probe_out: np.ndarray | None = None
) -> list[Effect]:
    """Every visible effect of a preset, strongest first (``probe_out``: see `measure`)."""
    s = coerce_settings(settings)
    m = measure(s, probe_out)
    out: list[Effect] = []

    def add(key: str, phrase: str, adjective: str, group: str, strength: float) -> None:
        out.append(Effect(key, phrase, adjective, group, float(strength)))

    ramp_l = _luma(m.ramp_out)
    mono = bool(s.value("ConvertToGrayscale"))
    # --- light ---------------------------------------------------------------------------------
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
    # --- global colour -------------------------------------------------------------------------
    if mono:
        add("bw", "black and white", "black and white", "globalcolor", 3.0)
    mid = m.ramp_out[12:21]
    warmth = float((mid[:, 0] - mid[:, 2]).mean())
    green = float((mid[:, 1] - 0.5 * (mid[:, 0] + mid[:, 2])).mean())
    # shadow / highlight tints relative to the mid-tone cast (a white-balance shift is "warm tones",
    # not "orange shadows and orange highlights")
    shadow_c, shadow_h = _relative_tint(m.ramp_out[3:10], mid)
    high_c, high_h = _relative_tint(m.ramp_out[23:30], mid)
    if mono:
        tone_c, tone_h = _tint(m.ramp_out[4:29])
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
        a_in, b_in = _opp(m.patch_in)
        a_out, b_out = _opp(m.patch_out)
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
    out.sort(key=lambda e: -e.strength)
    return out


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
    a_in, b_in = _opp(m.patch_in)
    a_out, b_out = _opp(m.patch_out)
    c_in, c_out = np.hypot(a_in, b_in), np.hypot(a_out, b_out)
    h_in = hue_degrees(a_in, b_in)
    h_out = hue_degrees(a_out, b_out)
    l_in, l_out = _luma(m.patch_in), _luma(m.patch_out)
    n = len(HSL_CENTRES)
    calibrated = any(s.num(f"{c}{kind}") for c in ("Red", "Green", "Blue") for kind in ("Hue", "Saturation"))

    def touched(k: int) -> bool:
        """Band effects are only reported for bands the preset's colour mixer (or calibration)
        works on; hue drift from a white-balance change is described as warm/cool instead."""
        if calibrated:
            return True
        near = (P.HSL_BANDS[(k - 1) % n], P.HSL_BANDS[k], P.HSL_BANDS[(k + 1) % n])
        return any(s.num(f"{kind}Adjustment{b}") for b in near for kind in ("Hue", "Saturation", "Luminance"))

    for k, band in enumerate(P.HSL_BANDS):
        if not touched(k):
            continue
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
                Effect(
                    "teal-blues", "teal-leaning blues", "more teal in the blues", "specificcolor", -dh / 15
                )
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
    # skin: chroma and luma change relative to the average colour patch
    if not (touched(0) or touched(1) or s.num("Vibrance")):
        return out
    a_si, b_si = _opp(m.skin_in)
    a_so, b_so = _opp(m.skin_out)
    skin_ratio = float((np.hypot(a_so, b_so) / np.hypot(a_si, b_si)).mean()) / max(global_ratio, 1e-3)
    skin_l = float((_luma(m.skin_out) - _luma(m.skin_in)).mean()) - float((l_out - l_in).mean())
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
    return out


def _mono_band_effects(m: Measurement) -> list[Effect]:
    out = []
    l_in, l_out = _luma(m.patch_in), _luma(m.patch_out)
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


def signature(settings: PresetSettings | Mapping[str, Any]) -> np.ndarray:
    """A small numeric fingerprint of a preset's look (used to categorise imported presets)."""
    s = coerce_settings(settings)
    m = measure(s)
    ramp_l = _luma(m.ramp_out)
    sc, sh = _tint(m.ramp_out[3:10])
    hc, hh = _tint(m.ramp_out[23:30])
    mid = m.ramp_out[12:21]
    a_in, b_in = _opp(m.patch_in)
    a_out, b_out = _opp(m.patch_out)
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


# ==================================================================================================
# Instructions and plans
# ==================================================================================================
def _join(items: Sequence[str]) -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


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
        pool.append(tmpl.format(phrases=_join(ps), **fields))
    if top:
        adjs = [e.adjective for e in top[:3]]
        k = int(rng.integers(1, len(adjs) + 1))
        for tmpl in rng.permutation(_TEMPLATES_ADJ).tolist()[:2]:
            pool.append(tmpl.format(adjs=_join(adjs[:k]), **fields))
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


def style_plans(
    settings: PresetSettings | Mapping[str, Any], effs: list[Effect] | None = None
) -> dict[str, str]:
    """Retouching plans grounded in the settings, grouped like VeraRetouch's plan sections
    (``effs``: the settings' `effects`, when the caller has them already)."""
    s = coerce_settings(settings)
    effs = effects(s) if effs is None else effs
    light: list[str] = []
    glob: list[str] = []
    spec: list[str] = []
    # light ---------------------------------------------------------------------------------------
    ev = s.num("Exposure2012")
    if abs(ev) >= 0.05:
        light.append(f"{'raise' if ev > 0 else 'lower'} exposure by {_fmt(ev, ' EV')}")
    for key, word in (
        ("Contrast2012", "contrast"),
        ("Highlights2012", "highlights"),
        ("Shadows2012", "shadows"),
        ("Whites2012", "whites"),
        ("Blacks2012", "blacks"),
    ):
        v = s.num(key)
        if abs(v) >= 3:
            light.append(f"set {word} to {_fmt(v)}")
    para = [
        (k, s.num(k))
        for k in ("ParametricShadows", "ParametricDarks", "ParametricLights", "ParametricHighlights")
    ]
    if any(abs(v) >= 3 for _, v in para):
        parts = [f"{k[len('Parametric') :].lower()} {_fmt(v)}" for k, v in para if abs(v) >= 3]
        light.append("shape the parametric curve (" + ", ".join(parts) + ")")
    curve = s.curve("ToneCurvePV2012")
    if curve is not None:
        name = s.get("ToneCurveName2012")
        if name in ("Medium Contrast", "Strong Contrast") and "ToneCurvePV2012" not in s:
            light.append(f"use the {name.lower()} point curve")
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
            light.append("draw a point curve that " + _join(bits))
    for key, word in (("Clarity2012", "clarity"), ("Texture", "texture"), ("Dehaze", "dehaze")):
        v = s.num(key)
        if abs(v) >= 3:
            light.append(f"{word} {_fmt(v)}")
    vig = s.num("PostCropVignetteAmount")
    if abs(vig) >= 3:
        light.append(
            f"add a post-crop vignette ({_fmt(vig)}, midpoint {s.num('PostCropVignetteMidpoint'):.0f})"
        )
    if s.num("GrainAmount") > 0:
        light.append(f"add grain (amount {s.num('GrainAmount'):.0f}, size {s.num('GrainSize'):.0f})")
    if s.num("Sharpness") > 0:
        light.append(f"sharpen ({s.num('Sharpness'):.0f} at radius {s.num('SharpenRadius'):.1f})")
    # global colour -------------------------------------------------------------------------------
    if bool(s.value("ConvertToGrayscale")):
        glob.append("convert to black and white")
    for key, word in (
        ("IncrementalTemperature", "temperature"),
        ("IncrementalTint", "tint"),
        ("Vibrance", "vibrance"),
        ("Saturation", "saturation"),
    ):
        v = s.num(key)
        if abs(v) >= 3:
            glob.append(f"{word} {_fmt(v)}")
    from aether_data.develop.preset_ops import grade_values

    for part, (hue, sat, lum) in grade_values(s).items():
        if sat >= 0.03:
            glob.append(
                f"grade the {part if part == 'global' else part + 's'} towards {colour_word(hue)} (hue {hue:.0f}°, saturation {sat * 100:.0f})"
            )
        if abs(lum) >= 0.03:
            glob.append(
                f"{'brighten' if lum > 0 else 'darken'} the {part}{'' if part == 'global' else 's'} in the colour grade ({_fmt(lum * 100)})"
            )
    for ch in ("Red", "Green", "Blue"):
        c = s.curve(f"ToneCurvePV2012{ch}")
        if c is not None:
            glob.append(f"bend the {ch.lower()} channel curve ({c[0][1]} at black, {c[-1][1]} at white)")
    calib = [
        (k, s.num(k))
        for k in (
            "RedHue",
            "RedSaturation",
            "GreenHue",
            "GreenSaturation",
            "BlueHue",
            "BlueSaturation",
            "ShadowTint",
        )
    ]
    if any(abs(v) >= 3 for _, v in calib):
        glob.append(
            "calibrate the primaries (" + ", ".join(f"{k} {_fmt(v)}" for k, v in calib if abs(v) >= 3) + ")"
        )
    # specific colour -----------------------------------------------------------------------------
    mono = bool(s.value("ConvertToGrayscale"))
    for band in P.HSL_BANDS:
        if mono:
            v = s.num(f"GrayMixer{band}")
            if abs(v) >= 3:
                spec.append(f"{band.lower()} {_fmt(v)} in the gray mix")
            continue
        parts = []
        for kind in ("Hue", "Saturation", "Luminance"):
            v = s.num(f"{kind}Adjustment{band}")
            if abs(v) >= 3:
                parts.append(f"{kind.lower()} {_fmt(v)}")
        if parts:
            spec.append(f"{band.lower()} {', '.join(parts)}")

    def why(group: str) -> str:
        phrases = [e.phrase for e in effs if e.group == group][:3]
        return f" for {_join(phrases)}" if phrases else ""

    plans = {
        "light": (_cap(_join(light)) + why("light") + ".")
        if light
        else "Keep exposure and tone as they are.",
        "globalcolor": (_cap(_join(glob)) + why("globalcolor") + ".")
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


def summary(settings: PresetSettings | Mapping[str, Any], k: int = 4) -> str:
    """One short line: the strongest effects ("warm tones, faded blacks and teal shadows")."""
    return _join([e.phrase for e in effects(settings)[:k]])


__all__ = [
    "Effect",
    "colour_word",
    "effects",
    "measure",
    "signature",
    "style_instructions",
    "style_plans",
    "summary",
]
