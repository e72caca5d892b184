"""Template annotation of region samples: instructions and a completion that name the regions.

The instruction is one sentence with one verb per region, from the region's strongest parameter
("Brighten the sky, cool the foliage and leave the rest as it is."); the completion is the region
layout of ``contract`` (``Regions: sky: brighten (exposure +0.42); foliage: …``, then one plan
per group that says, region by region, what changes, then the retouch tokens).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from aether_data import params as P
from aether_data.contract import (
    REGION_PROMPT_VERSION,
    TASK_TOKENS,
    build_completion,
    build_prompt,
    parse_completion,
)

_VERBS: dict[str, tuple[str, str]] = {
    "Exposure2012": ("brighten", "darken"),
    "Contrast2012": ("add contrast to", "soften the contrast of"),
    "Highlights2012": ("lift the highlights of", "recover the highlights of"),
    "Shadows2012": ("open up the shadows of", "deepen the shadows of"),
    "Whites2012": ("brighten the whites of", "tone down the whites of"),
    "Blacks2012": ("lift the blacks of", "deepen the blacks of"),
    "IncrementalTemperature": ("warm", "cool"),
    "IncrementalTint": ("add magenta to", "add green to"),
    "Vibrance": ("enrich the colours of", "mute the colours of"),
    "Saturation": ("saturate", "desaturate"),
}


def _strongest(params: Mapping[str, float]) -> tuple[str, float] | None:
    vals = {n: P.normalise(n, v) for n, v in params.items() if n in P.SPECS}
    vals = {n: v for n, v in vals.items() if abs(v) >= P.MASK_EPS}
    if not vals:
        return None
    name = max(vals, key=lambda n: (abs(vals[n]), n))
    return name, vals[name]


def verb_for(params: Mapping[str, float]) -> str:
    """The verb phrase of a region's strongest parameter ("brighten", "cool", "adjust the colours of")."""
    top = _strongest(params)
    if top is None:
        return "leave"
    name, v = top
    if name in _VERBS:
        return _VERBS[name][0 if v > 0 else 1]
    if name.startswith(("Hue", "Saturation", "Luminance")):
        return "adjust the colours of"
    return "adjust the tones of"


def _phrase(region: Mapping[str, Any]) -> str:
    verb = verb_for(region["params"])
    return f"{verb} {region['name']}" + (" as it is" if verb == "leave" else "")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def annotate_region(regions: list[Mapping[str, Any]], seed: int, name: str = "template") -> dict[str, Any]:
    """Instructions, prompt, completion and reasoning for one region sample (deterministic per seed)."""
    rng = random.Random(f"aether-region:{seed}")
    edited = [r for r in regions if r.get("label", 1) != 0]
    phrases = [_phrase(r) for r in edited]
    rest = [r for r in regions if r.get("label") == 0]
    tail = [f"leave {rest[0]['name']} as it is"] if rest else []
    main = _join(phrases + tail)
    instructions = [main[0].upper() + main[1:] + "."]
    reordered = phrases[::-1] + tail
    if len(reordered) > 1:
        alt = _join(reordered)
        instructions.append(alt[0].upper() + alt[1:] + ".")
    instructions.append(
        "Edit " + _join([r["name"] for r in edited]) + " separately: " + "; ".join(phrases) + "."
    )
    instructions = list(dict.fromkeys(instructions))
    prompt = build_prompt("region", instruction=instructions[0])
    summary = []
    for r in edited:
        top = _strongest(r["params"])
        detail = f" ({P.SPECS[top[0]].label} {top[1]:+.2f})" if top else ""
        summary.append(f"{r['name']}: {verb_for(r['params'])}{detail}")
    plans: dict[str, str | None] = {}
    opener = rng.choice(("Region by region, ", "Per region, ", "Within each region, "))
    for gi, g in enumerate(P.GROUPS):
        parts = []
        for r in edited:
            if not r["masks"][gi]:
                continue
            vals = [(n, P.normalise(n, r["params"].get(n, 0.0))) for n in P.GROUP_PARAMS[g]]
            vals = [(n, v) for n, v in vals if abs(v) >= P.MASK_EPS]
            if vals:
                clause = ", ".join(f"{P.SPECS[n].label} {v:+.2f}" for n, v in vals)
                parts.append(f"in {r['name']}: {clause}")
        plans[g] = (opener + "; ".join(parts) + ".") if parts else None
    completion = build_completion(None, None, plans, regions="; ".join(summary))
    reasoning = parse_completion(completion, "region").reasoning()
    return {
        "instructions": instructions,
        "completion": completion,
        "reasoning": reasoning,
        "prompt": prompt,
        "annotator": {
            "name": name,
            "model": None,
            "prompt_version": REGION_PROMPT_VERSION,
            "attempts": 0,
            "fallback_reason": None,
        },
    }


__all__ = ["TASK_TOKENS", "annotate_region", "verb_for"]
