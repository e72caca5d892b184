"""The VLM request prompts: the template skeleton, the sample context and the user turn."""

from __future__ import annotations

from collections.abc import Sequence

from aether_data import params as P
from aether_data.annotate.base import SYSTEM_PROMPT_VERSION, VLM_PROMPT_PARTS
from aether_data.annotate.template import (
    Annotation,
    AnnotationRequest,
)
from aether_data.contract import (
    INACTIVE_TEXT,
    RETOUCH_SEQUENCE,
    end_tag,
    load_prompt_template,
    start_tag,
)

_GROUP_WORDS = {"light": "light", "globalcolor": "global colour", "specificcolor": "specific colour"}


def _plain(text: object, limit: int = 200) -> str:
    """Free text (preset names, descriptions) made safe for a prompt: one line, no angle brackets."""
    out = " ".join(str(text).replace("<", " ").replace(">", " ").replace("{", "(").replace("}", ")").split())
    return out[:limit]


def describe_parameters(request: AnnotationRequest) -> str:
    """One line per group: every adjustment the sample really got, with its direction word."""
    described = request.described()
    lines = []
    for g in P.GROUPS:
        vals = described[g]
        if not vals:
            lines.append(f"- {P.GROUP_TITLES[g]}: not adjusted")
            continue
        items = [
            f"{P.SPECS[n].label} ({n}) {v:+.3f} = {'increase' if v > 0 else 'decrease'}"
            for n, v in vals.items()
        ]
        lines.append(f"- {P.GROUP_TITLES[g]}: " + "; ".join(items))
    return "\n".join(lines)


def build_skeleton(request: AnnotationRequest) -> str:
    """The exact answer lines: inactive sections pre-filled, active ones a bracketed placeholder."""
    described = request.described()
    lines: list[str] = []
    if request.workflow == "auto":
        lines.append(
            "Key elements: [one line naming the subject, the scene, the lighting and the overall look]"
        )
        for g in P.GROUPS:
            sec = "problem_" + g
            body = (
                f"[the {_GROUP_WORDS[g]} problems that the {_GROUP_WORDS[g]} corrections fix]"
                if described[g]
                else INACTIVE_TEXT
            )
            lines.append(f"{start_tag(sec)}{body}{end_tag(sec)}")
    for g in P.GROUPS:
        sec = "plan_" + g
        if described[g]:
            names = ", ".join(f"{n} {'increase' if v > 0 else 'decrease'}" for n, v in described[g].items())
            body = f"[the {_GROUP_WORDS[g]} plan, naming each of: {names}]"
        else:
            body = INACTIVE_TEXT
        lines.append(f"{start_tag(sec)}{body}{end_tag(sec)}")
    lines.append(RETOUCH_SEQUENCE)
    return "\n".join(lines)


_STAT_KEYS = (
    ("mean_luminance", "mean luminance"),
    ("contrast", "contrast"),
    ("saturation", "saturation"),
    ("colorfulness", "colourfulness"),
    ("skin", "skin fraction"),
    ("sky", "sky fraction"),
    ("foliage", "foliage fraction"),
)


def _context(request: AnnotationRequest) -> str:
    """Measured statistics, preset facts and scene notes (the VLM sees what was really done)."""
    lines = []
    stats = request.image_stats or {}
    measured = [
        f"{label} {float(stats[k]):.2f}"
        for k, label in _STAT_KEYS
        if isinstance(stats.get(k), (int, float)) and not isinstance(stats.get(k), bool)
    ]
    cast = stats.get("color_cast", stats.get("cast"))
    if isinstance(cast, str) and cast.strip():
        measured.append(f"colour cast {_plain(cast, 40)}")
    if measured:
        lines.append("Measured on the photo shown: " + ", ".join(measured) + ".")
    preset = request.preset or {}
    if request.workflow == "style" and preset:
        facts = [
            f"{label}: {_plain(preset[k], 120)}"
            for k, label in (("name", "preset"), ("primary", "style family"), ("fine", "style category"))
            if preset.get(k)
        ]
        if preset.get("summary"):
            facts.append(f"what it does: {_plain(preset['summary'], 300)}")
        effects = preset.get("effects")
        if isinstance(effects, Sequence) and not isinstance(effects, str) and effects:
            facts.append("effects: " + "; ".join(_plain(e, 80) for e in list(effects)[:8]))
        if facts:
            lines.append("The adjustments come from a Lightroom preset (" + "; ".join(facts) + ").")
    if request.category_description:
        lines.append(f"Scene notes: {_plain(request.category_description, 300)}.")
    return "\n".join(lines)


def build_vlm_prompt(request: AnnotationRequest, template: Annotation, n_variants: int) -> tuple[str, str]:
    """(system, user) texts of the VLM request for one sample, from the versioned prompt files.

    `template` is the template annotation of the same request: its first instruction is the user
    request the plans (and style variants) are about.
    """
    system = load_prompt_template(SYSTEM_PROMPT_VERSION)
    parts = VLM_PROMPT_PARTS[request.workflow]
    fields = {
        "parameters": describe_parameters(request),
        "context": _context(request),
        "skeleton": build_skeleton(request),
    }
    if request.workflow == "auto":
        return system, load_prompt_template(parts[0]).format(**fields)
    # the param prompt's instruction may be the official parameter dict: ask about a plain-text one
    plain = [i for i in template.instructions if not i.startswith("{")] or template.instructions
    base = _plain(plain[0], 600)
    if request.workflow == "param":
        task = f'The user asked: "{base}"'
    else:
        task = f'The user asked for a style: "{base}"'
    plans = load_prompt_template(parts[0]).format(task=task, **fields)
    variants = load_prompt_template(parts[1]).format(n=n_variants, instruction=base)
    return system, f"{plans}\n{variants}"
