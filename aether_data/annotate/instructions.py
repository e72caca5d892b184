"""The template's user instructions: natural-language, slider and per-group renderings of the
applied parameters (param), and preset-grounded variants (style)."""

from __future__ import annotations

import random

from aether_data import params as P
from aether_data.annotate.phrasing import (
    AMOUNT_WORDS,
    COMPARATIVE_WORDS,
    _clean,
    _ev_words,
    _hsl,
    _join,
    _neighbour,
    _plural,
    magnitude,
)
from aether_data.annotate.request import AnnotationRequest

_NL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Exposure2012": (
        (
            "brighten the photo by about {ev}",
            "raise the exposure by about {ev}",
            "lift the overall brightness by roughly {ev}",
        ),
        (
            "darken the photo by about {ev}",
            "lower the exposure by about {ev}",
            "bring the overall brightness down by roughly {ev}",
        ),
    ),
    "Contrast2012": (
        ("add {cmp} more contrast", "boost the contrast {amt}", "make it {cmp} punchier"),
        ("reduce the contrast {amt}", "flatten the contrast {amt}", "soften the contrast {amt}"),
    ),
    "Highlights2012": (
        ("lift the highlights {amt}", "brighten the highlights {amt}"),
        ("pull the highlights down {amt}", "recover the highlights {amt}", "tone down the highlights {amt}"),
    ),
    "Shadows2012": (
        ("open up the shadows {amt}", "lift the shadows {amt}"),
        ("deepen the shadows {amt}", "darken the shadows {amt}"),
    ),
    "Whites2012": (
        ("brighten the whites {amt}", "push the whites up {amt}"),
        ("tone down the whites {amt}", "pull the whites down {amt}"),
    ),
    "Blacks2012": (
        ("lift the blacks {amt}", "raise the black point {amt}"),
        ("deepen the blacks {amt}", "crush the blacks {amt}"),
    ),
    "IncrementalTemperature": (
        ("warm it up {amt}", "make the colours {cmp} warmer", "shift the white balance {amt} towards warm"),
        ("cool it down {amt}", "make the colours {cmp} cooler", "shift the white balance {amt} towards blue"),
    ),
    "IncrementalTint": (
        ("shift the tint {amt} towards magenta", "add {cmp} more magenta to the tint"),
        ("shift the tint {amt} towards green", "add {cmp} more green to the tint"),
    ),
    "Vibrance": (
        ("boost the vibrance {amt}", "make the muted colours {cmp} more vivid"),
        ("reduce the vibrance {amt}", "calm the colours down {amt}"),
    ),
    "Saturation": (
        ("increase the saturation {amt}", "make the colours {cmp} richer"),
        ("desaturate it {amt}", "mute the colours {amt}"),
    ),
}
for _name, _region in (
    ("ParametricShadows", "deep shadows"),
    ("ParametricDarks", "darks"),
    ("ParametricLights", "lights"),
    ("ParametricHighlights", "highlight range"),
):
    _NL[_name] = (
        (f"raise the {_region} on the tone curve {{amt}}", f"lift the tone curve in the {_region} {{amt}}"),
        (
            f"lower the {_region} on the tone curve {{amt}}",
            f"pull the tone curve down in the {_region} {{amt}}",
        ),
    )

_NL_SMALL_EXPOSURE: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("brighten the photo {amt}", "raise the exposure {amt}", "lift the overall brightness {amt}"),
    ("darken the photo {amt}", "lower the exposure {amt}", "bring the overall brightness down {amt}"),
)
"""Exposure changes under a sixth of a stop: no stop count, an amount word ("a touch")."""

_DISPLAY: dict[str, str] = {
    "Exposure2012": "Exposure",
    "Contrast2012": "Contrast",
    "Highlights2012": "Highlights",
    "Shadows2012": "Shadows",
    "Whites2012": "Whites",
    "Blacks2012": "Blacks",
    "ParametricShadows": "Curve Shadows",
    "ParametricDarks": "Curve Darks",
    "ParametricLights": "Curve Lights",
    "ParametricHighlights": "Curve Highlights",
    "IncrementalTemperature": "Temperature",
    "IncrementalTint": "Tint",
    "Vibrance": "Vibrance",
    "Saturation": "Saturation",
}


def _nl_phrase(name: str, v: float, rng: random.Random) -> str:
    amt = rng.choice(AMOUNT_WORDS[magnitude(v)])
    cmp = rng.choice(COMPARATIVE_WORDS[magnitude(v)])
    hsl = _hsl(name)
    if hsl is None:
        ev = _ev_words(v * P.SPECS[name].scale) if name == "Exposure2012" else None
        table = _NL_SMALL_EXPOSURE if name == "Exposure2012" and ev is None else _NL[name]
        template = rng.choice(table[0 if v > 0 else 1])
        return template.format(amt=amt, cmp=cmp, ev=ev)
    kind, band = hsl
    bands = _plural(band)
    if kind == "Hue":
        return f"shift the {bands} {amt} towards {_neighbour(band, 1 if v > 0 else -1)}"
    if kind == "Saturation":
        options = (
            (f"make the {bands} {cmp} more saturated", f"boost the {band} saturation {amt}")
            if v > 0
            else (f"desaturate the {bands} {amt}", f"mute the {bands} {amt}")
        )
    else:
        options = (
            (f"brighten the {bands} {amt}", f"lighten the {bands} {amt}")
            if v > 0
            else (f"darken the {bands} {amt}", f"deepen the {bands} {amt}")
        )
    return rng.choice(options)


def _slider_text(name: str, v: float) -> tuple[str, str]:
    hsl = _hsl(name)
    label = _DISPLAY[name] if hsl is None else f"{hsl[1].capitalize()} {hsl[0]}"
    slider = P.denormalise(name, v)
    if name == "Exposure2012":
        return label, f"{slider:+.2f} EV"
    return label, (f"{round(slider):+d}" if abs(round(slider)) >= 1 else f"{slider:+.1f}")


def _param_variants(described: dict[str, dict[str, float]], rng: random.Random) -> list[str]:
    """Three natural-language renderings of the parameters: casual, slider values, per group."""
    flat = [(n, v) for g in P.GROUPS for n, v in described[g].items()]
    if not flat:
        return ["Leave the photo unchanged.", "Keep this image exactly as it is.", "No adjustments, please."]
    # casual: one sentence, clauses in random order
    order = flat[:]
    rng.shuffle(order)
    opener, end = rng.choice((("", "."), ("please ", "."), ("could you ", "?"), ("I'd like you to ", ".")))
    casual = opener + _join([_nl_phrase(n, v, rng) for n, v in order]) + end
    casual = casual[:1].upper() + casual[1:]
    # Lightroom slider values
    pairs = [_slider_text(n, v) for n, v in flat]
    if rng.random() < 0.5:
        sliders = "Set " + _join([f"{label} to {val}" for label, val in pairs]) + "."
    else:
        sliders = (
            rng.choice(("Lightroom settings: ", "Slider values: "))
            + ", ".join(f"{label} {val}" for label, val in pairs)
            + "."
        )
    # grouped by adjustment group
    titles = {
        "light": ("Light", "Tone"),
        "globalcolor": ("Color", "White balance and color"),
        "specificcolor": ("Color mixer", "HSL"),
    }
    blocks = []
    for g in P.GROUPS:
        if described[g]:
            phrases = [_nl_phrase(n, v, rng) for n, v in described[g].items()]
            blocks.append(f"{rng.choice(titles[g])}: {_join(phrases)}.")
    grouped = " ".join(blocks)
    return [casual, sliders, grouped]


def _style_descriptors(described: dict[str, dict[str, float]]) -> list[str]:
    """Up to three adjective phrases for what the preset's core settings do, strongest first."""
    v = {n: x for g in P.GROUPS for n, x in described[g].items()}

    def g(n: str) -> float:
        return v.get(n, 0.0)

    cands: list[tuple[float, str]] = []
    bright = 2 * g("Exposure2012") + 0.25 * (
        g("Shadows2012") + g("Whites2012") + g("ParametricDarks") + g("ParametricLights")
    )
    if abs(bright) > 0.1:
        cands.append((abs(bright), "brighter" if bright > 0 else "darker and moodier"))
    con = g("Contrast2012") + 0.5 * (g("Whites2012") - g("Blacks2012"))
    if abs(con) > 0.1:
        cands.append((abs(con), "punchier" if con > 0 else "softer in contrast"))
    fade = max(g("Blacks2012"), g("ParametricShadows"))
    if fade > 0.15:
        cands.append((fade, "faded in the blacks"))
    temp = g("IncrementalTemperature")
    if abs(temp) > 0.05:
        cands.append((3 * abs(temp), "warmer" if temp > 0 else "cooler"))
    tint = g("IncrementalTint")
    if abs(tint) > 0.05:
        cands.append((abs(tint), "magenta-tinted" if tint > 0 else "green-tinted"))
    colour = g("Vibrance") + g("Saturation")
    if colour < -0.6:
        cands.append((abs(colour), "nearly monochrome"))
    elif abs(colour) > 0.1:
        cands.append((abs(colour), "more vivid" if colour > 0 else "more muted"))
    hsl = [(abs(x), n, x) for n, x in v.items() if _hsl(n) and abs(x) > 0.15]
    if hsl:
        mag, name, x = max(hsl)
        kind, band = _hsl(name)  # type: ignore[misc]
        bands = _plural(band)
        word = {
            "Hue": f"with {bands} shifted towards {_neighbour(band, 1 if x > 0 else -1)}",
            "Saturation": f"richer in the {bands}" if x > 0 else f"softer in the {bands}",
            "Luminance": f"lighter in the {bands}" if x > 0 else f"deeper in the {bands}",
        }[kind]
        cands.append((mag, word))
    cands.sort(key=lambda c: -c[0])
    return [w for _, w in cands[:3]]


def _style_variants(
    req: AnnotationRequest, described: dict[str, dict[str, float]], rng: random.Random
) -> list[str]:
    preset = req.preset or {}
    name = _clean(preset.get("name") or "") or None
    fine = _clean(preset.get("fine") or "") or None
    primary = _clean(preset.get("primary") or "") or None
    summary = preset.get("summary")
    summary = _clean(summary)[:160] if isinstance(summary, str) and summary.strip() else None
    category = _clean(req.category_description)[:160] if req.category_description else None
    descs = _style_descriptors(described)
    desc = _join(descs) if descs else None
    fields = {
        "name": name,
        "fine": fine,
        "primary": primary,
        "desc": desc,
        "summary": summary,
        "cat": category,
    }
    pool = [
        "Give this photo the {name} look.",
        "Apply the {name} preset style to this picture.",
        "Retouch it like the {name} preset: {desc}.",
        "Edit this photo in a {fine} style.",
        "I want a {fine} feel for this image.",
        "Go for a {fine} mood, {desc}.",
        "Give it a {primary} style retouch.",
        "Make it {desc}.",
        "Could you make the picture {desc}?",
        "I'd like this photo {desc}, in a {primary} style.",
        "Apply this look: {summary}.",
        "Use a style that suits it: {cat}.",
    ]
    usable = []
    for t in pool:
        keys = [k for k in fields if "{" + k + "}" in t]
        if all(fields[k] for k in keys):
            usable.append(t.format(**{k: fields[k] for k in keys}))
    rng.shuffle(usable)
    chosen = list(dict.fromkeys(usable))[:4]
    generic = [
        "Retouch this photo with a stylish, polished look.",
        "Give this image a creative color grade.",
        "Make this photo look professionally edited.",
    ]
    for t in generic:
        if len(chosen) >= 3:
            break
        chosen.append(t)
    return [c[:1].upper() + c[1:] for c in chosen]
