"""The deterministic template annotator: reasoning and instructions grounded in the known parameters.

It is the default annotator and the fallback of the VLM annotators, so it must never fail on a valid
request and never state anything the parameters do not support. Everything a sample says is derived
from the slider values actually applied (param/style) or the corrective values input→target (auto):

- plans name every active parameter of an active group exactly once as
  `<adverb> increase|decrease <label> (<crs name>) by <signed normalised value>`; the words
  "increase"/"decrease" carry the sign, the adverb (slightly / moderately / strongly) the magnitude;
- auto problems describe the defect each corrective value implies (a +exposure correction means the
  input is underexposed), strongest first, and the plans follow the same order;
- the seed only picks wording (openers, synonyms, clause order), never content, and the same request
  always gives the same text.

A group is described when its mask is 1 and it has a parameter with |normalised| ≥ MASK_EPS; the
mask is authoritative (the renderer zeroes a masked group), so parameters of a masked-off group are
ignored. Every other section holds INACTIVE_TEXT.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aether_data import params as P
from aether_data.annotate.content import describe_content
from aether_data.contract import (
    PROMPT_VERSIONS,
    TASK_TOKENS,
    WORKFLOWS,
    build_completion,
    build_prompt,
    parse_completion,
)
from aether_data.official import param_instruction

DEFAULT_PARAM_TEXT_SHARE = 0.2
"""Share of param samples whose prompt instruction is a plain-text description instead of the
official parameter dict (the official param prompt allows both); AnnotatorSpec.param_text_share."""

MAGNITUDE_THRESHOLDS: tuple[float, float] = (0.1, 0.3)
"""|normalised| below the first is slight, below the second moderate, else strong."""

COMPACT_AFTER = 8
"""A group with more active parameters than this gets terse plan clauses (length limits)."""

MAX_PROBLEMS = 6
"""At most this many defects are spelled out per problem section; the rest are counted."""

PLAN_ADVERBS = ("slightly", "moderately", "strongly")
PROBLEM_SEVERITY = ("slight", "noticeable", "strong")
AMOUNT_WORDS = (
    ("slightly", "a little", "a touch"),
    ("moderately", "noticeably", "a fair bit"),
    ("strongly", "a lot", "substantially"),
)
"""Adverbs for verb phrases ("boost the contrast a little"), per magnitude."""
COMPARATIVE_WORDS = (
    ("slightly", "a little", "a touch"),
    ("noticeably", "somewhat", "a fair bit"),
    ("much", "far", "a lot"),
)
"""Adverbs for comparatives ("make the colours much warmer"), per magnitude."""

_BANDS = [b.lower() for b in P.HSL_BANDS]


def magnitude(value: float) -> int:
    """0 = slight, 1 = moderate, 2 = strong, from a normalised value."""
    a = abs(value)
    return 0 if a < MAGNITUDE_THRESHOLDS[0] else 1 if a < MAGNITUDE_THRESHOLDS[1] else 2


def _signed(v: float) -> str:
    s = f"{v:+.3f}"
    return s if float(s) != 0.0 else f"{v:+.4f}"


def _hsl(name: str) -> tuple[str, str] | None:
    """`SaturationAdjustmentBlue` → ("Saturation", "blue"); None for non-HSL parameters."""
    if "Adjustment" not in name:
        return None
    kind, band = name.split("Adjustment")
    return kind, band.lower()


def _neighbour(band: str, step: int) -> str:
    return _BANDS[(_BANDS.index(band) + step) % len(_BANDS)]


def _plural(band: str) -> str:
    return band + "s"


def _sentence(clauses: list[str], end: str = ".") -> str:
    text = "; ".join(clauses)
    return text[:1].upper() + text[1:] + end


def _clean(text: object) -> str:
    """Free text from presets/stats made safe for a completion: one line, no angle brackets."""
    return " ".join(str(text).replace("<", " ").replace(">", " ").replace("_", " ").split())


# --------------------------------------------------------------------------------------------------
# request / result


@dataclass
class AnnotationRequest:
    """What an annotator needs to know about one sample.

    `params` are slider-scale values (missing keys = 0) of the parameters actually applied; for
    auto they are the corrective parameters input→target. `masks` are [light, globalcolor,
    specificcolor]. `preset` = {id, name, primary, fine, and optionally summary/settings};
    `image_stats` = any of mean_luminance/brightness, contrast, saturation/colorfulness,
    color_cast/cast, skin/sky/foliage fractions, subject/scene (unknown keys are ignored).
    """

    workflow: str
    params: dict[str, float]
    masks: list[int]
    seed: int
    preset: dict[str, Any] | None = None
    image_stats: dict[str, Any] | None = None
    category_description: str | None = None
    regions: list[dict[str, Any]] | None = None
    """Region workflow: the edited regions (name, label, params, masks), see annotate/region.py."""

    def __post_init__(self) -> None:
        if self.workflow not in WORKFLOWS:
            raise ValueError(f"unknown workflow {self.workflow!r}; expected one of {WORKFLOWS}")
        self.params = P.validate(self.params)
        if len(self.masks) != 3 or any(m not in (0, 1) for m in self.masks):
            raise ValueError(f"masks must be three 0/1 values, got {self.masks!r}")
        self.masks = [int(m) for m in self.masks]
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def described(self) -> dict[str, dict[str, float]]:
        """Per group, the normalised values that the annotation talks about (mask-filtered)."""
        out: dict[str, dict[str, float]] = {}
        for g, m in zip(P.GROUPS, self.masks, strict=True):
            vals = {n: P.normalise(n, self.params.get(n, 0.0)) for n in P.GROUP_PARAMS[g]} if m else {}
            out[g] = {n: v for n, v in vals.items() if abs(v) >= P.MASK_EPS}
        return out


@dataclass
class Annotation:
    """One sample's text: instructions[0] is the one used in `prompt` (= task token + instruction)."""

    instructions: list[str]
    completion: str
    reasoning: dict[str, Any]
    prompt: str
    annotator: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the record's field names."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# plans


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


# --------------------------------------------------------------------------------------------------
# auto: problems and key elements

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


# --------------------------------------------------------------------------------------------------
# natural-language renderings of parameters (param instructions)

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


def _ev_words(ev: float) -> str:
    """|EV| to the nearest third of a stop, in words ("two thirds of a stop", "1 and a third stops")."""
    thirds = round(abs(ev) * 3)
    if thirds == 0:
        return "a touch"
    whole, rem = divmod(thirds, 3)
    frac = ("", "a third", "two thirds")[rem]
    if whole == 0:
        return f"{frac} of a stop"
    if rem == 0:
        return "one stop" if whole == 1 else f"{whole} stops"
    return f"{'one' if whole == 1 else whole} and {frac} stops"


def _nl_phrase(name: str, v: float, rng: random.Random) -> str:
    amt = rng.choice(AMOUNT_WORDS[magnitude(v)])
    cmp = rng.choice(COMPARATIVE_WORDS[magnitude(v)])
    hsl = _hsl(name)
    if hsl is None:
        template = rng.choice(_NL[name][0 if v > 0 else 1])
        return template.format(amt=amt, cmp=cmp, ev=_ev_words(v * P.SPECS[name].scale))
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


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


# --------------------------------------------------------------------------------------------------
# style instructions


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


# --------------------------------------------------------------------------------------------------
# annotator


class TemplateAnnotator:
    """Deterministic, parameter-grounded annotator (the default, and the VLM annotators' fallback)."""

    name = "template"

    def __init__(self, param_text_share: float = DEFAULT_PARAM_TEXT_SHARE) -> None:
        if not 0.0 <= float(param_text_share) <= 1.0:
            raise ValueError(f"param_text_share must be in [0, 1], got {param_text_share!r}")
        self.param_text_share = float(param_text_share)

    def annotate(self, sample: AnnotationRequest) -> Annotation:
        """Instructions, prompt and tagged completion for one sample (same request → same text)."""
        wf = sample.workflow
        if wf == "region":
            from aether_data.annotate.region import annotate_region

            return Annotation(**annotate_region(sample.regions or [], sample.seed, self.name))
        described = sample.described()

        def rng(stream: str) -> random.Random:
            return random.Random(f"aether-template:{sample.seed}:{stream}")

        if wf == "auto":
            # strongest correction first, so the analysis leads with the main defect
            described = {g: dict(sorted(d.items(), key=lambda kv: -abs(kv[1]))) for g, d in described.items()}

        # instructions and prompt
        if wf == "param":
            # the official dict of all applied values (as the official code builds it from param.json);
            # in a seeded share of samples a plain-text description is the prompt's instruction instead
            variants = _param_variants(described, rng("instructions"))
            as_text = bool(variants) and rng("param-form").random() < self.param_text_share
            on = dict(zip(P.GROUPS, sample.masks, strict=True))  # the mask is authoritative
            official = param_instruction({n: v for n, v in sample.params.items() if on[P.SPECS[n].group]})
            instructions = [variants[0], official, *variants[1:]] if as_text else [official, *variants]
            prompt = build_prompt("param", instruction=instructions[0])
        elif wf == "style":
            # the preset engine describes everything a preset does (curves, grading, effects),
            # not only its 38 core sliders: prefer its variants when it gives enough of them
            given = [_clean(i) for i in (sample.preset or {}).get("instructions") or [] if str(i).strip()]
            given = list(dict.fromkeys(i for i in given if i))
            instructions = (
                given if len(given) >= 3 else _style_variants(sample, described, rng("instructions"))
            )
            prompt = build_prompt("style", instruction=instructions[0])
        else:
            prompt = build_prompt("auto")
            instructions = [prompt[len(TASK_TOKENS["auto"]) :].strip()]  # the fixed official request
        instructions = list(dict.fromkeys(instructions))

        # plans (and problems/elements for auto)
        opener = rng("plan").choice(_PLAN_OPENERS[wf])
        if wf == "style":
            preset = sample.preset or {}
            style = _clean(preset.get("name") or preset.get("fine") or "")[:60] or "requested"
            opener = opener.format(style=style)
        plans = {g: _plan(described[g], opener) for g in P.GROUPS}
        preset_plans = (sample.preset or {}).get("plans") if wf == "style" else None
        if isinstance(preset_plans, dict):
            for g in P.GROUPS:
                text = _clean(preset_plans.get(g) or "").rstrip(".")
                plans[g] = f"{opener}{text}." if text else None
        elements = problems = None
        if wf == "auto":
            elements = _elements(sample.image_stats, sample.category_description)
            problem_opener = rng("problem").choice(_PROBLEM_OPENERS)
            problems = {g: _problem(g, described[g], sample.image_stats, problem_opener) for g in P.GROUPS}
        completion = build_completion(elements, problems, plans)
        reasoning = parse_completion(completion, wf).reasoning()
        return Annotation(
            instructions=instructions,
            completion=completion,
            reasoning=reasoning,
            prompt=prompt,
            annotator={
                "name": self.name,
                "model": None,
                "prompt_version": PROMPT_VERSIONS[wf],
                "attempts": 0,
                "fallback_reason": None,
            },
        )
