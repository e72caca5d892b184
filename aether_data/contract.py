"""The record and completion contract that aether_data and model_core share.

One module, imported by both the data engine and the trainer, so the two can never disagree:
the workflows and their task tokens, the tagged completion format, and the user-turn prompts.

A completion (the assistant turn) is, in this order::

    Regions: <name>: <edit>; <name>: <edit>                    (region only, see REGIONS_PREFIX)
    Key elements: <one line>                                   (auto only)
    <problem_light_start>…<problem_light_end>                  (auto only)
    <problem_globalcolor_start>…<problem_globalcolor_end>      (auto only)
    <problem_specificcolor_start>…<problem_specificcolor_end>  (auto only)
    <plan_light_start>…<plan_light_end>
    <plan_globalcolor_start>…<plan_globalcolor_end>
    <plan_specificcolor_start>…<plan_specificcolor_end>
    <retouch_light><retouch_color&temp><retouch_colormixer>

Parts are separated by one newline. Every section is always present: the section of an inactive
group (mask 0) holds exactly INACTIVE_TEXT ("No change needed."), for problems and plans alike, so
the model always emits the same skeleton and a reader (or a format reward) can tell an inactive
group from a forgotten one. The three retouch tokens come last, exactly once each, in this order:
their hidden states are what the adaptor turns into the renderer's latents.

`parse_completion` is deliberately strict because it is the validator of VLM annotators' output: a
completion that fails it is retried and finally replaced by the template annotator's. Failures raise
CompletionFormatError whose `reason` is one of: "empty", "too-long", "retouch-tokens",
"missing:<section>", "duplicate:<section>", "unexpected:<section>", "missing:elements", "order",
"tag-in-text", "stray-text", "empty-section:<section>" (section names such as "plan_light").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from aether_data import params as P
from aether_data.official import param_instruction
from aether_data.resources import data_path

WORKFLOWS: tuple[str, ...] = ("param", "style", "auto", "region")

TASK_TOKENS: dict[str, str] = {
    "auto": "<Auto_Retouch_Task>",
    "style": "<Style_Retouch_Task>",
    "param": "<Professional_Retouch_Task>",
    "region": "<Region_Retouch_Task>",
}

RETOUCH_TOKENS: tuple[str, str, str] = ("<retouch_light>", "<retouch_color&temp>", "<retouch_colormixer>")
"""One per latent group, in model order (light, global colour, specific colour)."""
RETOUCH_SEQUENCE = "".join(RETOUCH_TOKENS)

ELEMENTS_PREFIX = "Key elements:"
REGIONS_PREFIX = "Regions:"
"""Region extension: a region completion starts with one line ``Regions: <name>: <edit>; …`` naming
the edited regions, then the param/style layout (plan sections + retouch tokens). The three global
workflows never carry it, so their completions are unchanged."""
INACTIVE_TEXT = "No change needed."
"""The fixed text of every problem/plan section whose group is inactive."""

PROBLEM_SECTIONS: tuple[str, ...] = tuple(f"problem_{g}" for g in P.GROUPS)
PLAN_SECTIONS: tuple[str, ...] = tuple(f"plan_{g}" for g in P.GROUPS)
ALL_SECTIONS: tuple[str, ...] = PROBLEM_SECTIONS + PLAN_SECTIONS


def start_tag(section: str) -> str:
    """`plan_light` → `<plan_light_start>`."""
    return f"<{section}_start>"


def end_tag(section: str) -> str:
    """`plan_light` → `<plan_light_end>`."""
    return f"<{section}_end>"


SPECIAL_TOKENS: tuple[str, ...] = (
    *TASK_TOKENS.values(),
    *(t for s in ALL_SECTIONS for t in (start_tag(s), end_tag(s))),
    *RETOUCH_TOKENS,
)
"""Every token of the vocabulary, for registering them with a tokenizer."""

_TAG_RE = re.compile(r"<\|[^<>|\s]*\|>|</?[A-Za-z][A-Za-z0-9_&]*>")
"""Anything tag-shaped: our tokens, chat-template specials like <|im_end|>, HTML-ish <b>."""


def sections_for(workflow: str) -> tuple[str, ...]:
    """The sections a completion of `workflow` must contain, in order."""
    _check_workflow(workflow)
    return ALL_SECTIONS if workflow == "auto" else PLAN_SECTIONS


def _check_workflow(workflow: str) -> None:
    if workflow not in WORKFLOWS:
        raise ValueError(f"unknown workflow {workflow!r}; expected one of {WORKFLOWS}")


@dataclass(frozen=True)
class FormatLimits:
    """Length limits of a completion (characters).

    The defaults fit the template annotator's worst case (all 38 sliders active) with a margin while
    still catching run-away generations; VLM annotators may pass tighter limits.
    """

    max_section_chars: int = 1500
    max_elements_chars: int = 400
    max_total_chars: int = 6000


DEFAULT_LIMITS = FormatLimits()


class CompletionFormatError(ValueError):
    """A completion that does not follow the tagged format; `reason` is a short machine code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason + (f": {detail}" if detail else ""))


@dataclass(frozen=True)
class Completion:
    """A parsed completion: the reasoning parts as plain text (tags removed, stripped)."""

    workflow: str
    elements: str | None
    problems: dict[str, str] | None
    plans: dict[str, str] = field(default_factory=dict)
    regions: str | None = None

    def active_groups(self) -> list[str]:
        """Groups whose plan is not INACTIVE_TEXT."""
        return [g for g in P.GROUPS if self.plans[g] != INACTIVE_TEXT]

    def reasoning(self) -> dict[str, object]:
        """The `reasoning` object of the sample record (problems all None outside auto)."""
        problems = self.problems or {g: None for g in P.GROUPS}
        return {"elements": self.elements, "problems": dict(problems), "plans": dict(self.plans)}


def _section_text(value: str | None) -> str:
    text = (value or "").strip()
    return text if text else INACTIVE_TEXT


def build_completion(
    elements: str | None,
    problems: Mapping[str, str | None] | None,
    plans: Mapping[str, str | None],
    *,
    limits: FormatLimits = DEFAULT_LIMITS,
    regions: str | None = None,
) -> str:
    """Assemble a completion; elements+problems given ⇒ auto layout, both None ⇒ param/style layout;
    ``regions`` (one line) ⇒ the region layout (REGIONS_PREFIX line, then the param/style layout).

    A missing, None or blank section becomes INACTIVE_TEXT. The result is checked with
    parse_completion, so this never returns text the validator would refuse.
    """
    if (elements is None) != (problems is None):
        raise ValueError("elements and problems go together: both for auto, neither for param/style")
    unknown = set(plans) - set(P.GROUPS) | (set(problems or {}) - set(P.GROUPS))
    if unknown:
        raise ValueError(f"unknown groups {sorted(unknown)}; expected {P.GROUPS}")
    lines: list[str] = []
    if regions is not None:
        if elements is not None:
            raise ValueError("a region completion has no key elements or problems")
        lines.append(f"{REGIONS_PREFIX} {' '.join(regions.split())}")
    if elements is not None and problems is not None:
        lines.append(f"{ELEMENTS_PREFIX} {' '.join(elements.split())}")
        for g in P.GROUPS:
            lines.append(
                f"{start_tag('problem_' + g)}{_section_text(problems.get(g))}{end_tag('problem_' + g)}"
            )
        workflow = "auto"
    else:
        workflow = "region" if regions is not None else "param"  # param and style share the layout
    for g in P.GROUPS:
        lines.append(f"{start_tag('plan_' + g)}{_section_text(plans.get(g))}{end_tag('plan_' + g)}")
    lines.append(RETOUCH_SEQUENCE)
    text = "\n".join(lines)
    parse_completion(text, workflow, limits=limits)
    return text


def parse_completion(text: str, workflow: str, *, limits: FormatLimits = DEFAULT_LIMITS) -> Completion:
    """Parse a completion strictly (see the module docstring); raise CompletionFormatError.

    Kept whole: it is the format's grammar checked in reading order, each check naming its reason;
    split, the order of the checks (which reason a bad answer gets) would be spread across helpers.
    """
    _check_workflow(workflow)
    if not isinstance(text, str) or not text.strip():
        raise CompletionFormatError("empty")
    if len(text) > limits.max_total_chars:
        raise CompletionFormatError("too-long", f"{len(text)} > {limits.max_total_chars} characters")
    body = text.strip()
    for tok in RETOUCH_TOKENS:
        n = body.count(tok)
        if n != 1:
            raise CompletionFormatError("retouch-tokens", f"{tok} appears {n} times")
    if not body.endswith(RETOUCH_SEQUENCE):
        raise CompletionFormatError("retouch-tokens", f"the completion must end with {RETOUCH_SEQUENCE}")
    body = body[: -len(RETOUCH_SEQUENCE)]

    expected = sections_for(workflow)
    for name in ALL_SECTIONS:
        n_start, n_end = body.count(start_tag(name)), body.count(end_tag(name))
        if name not in expected:
            if n_start or n_end:
                raise CompletionFormatError(f"unexpected:{name}")
        elif n_start == 0 or n_end == 0:
            raise CompletionFormatError(f"missing:{name}")
        elif n_start > 1 or n_end > 1:
            raise CompletionFormatError(f"duplicate:{name}")

    structural = {start_tag(s): ("start", s) for s in expected} | {end_tag(s): ("end", s) for s in expected}
    texts: dict[str, str] = {}
    prefix = ""
    pos, idx, open_section = 0, 0, None
    for m in _TAG_RE.finditer(body):
        kind = structural.get(m.group())
        if kind is None:
            continue  # not structural: reported below as tag-in-text / stray-text
        if open_section is None:
            if kind != ("start", expected[idx]):
                raise CompletionFormatError("order", f"expected {start_tag(expected[idx])}, got {m.group()}")
            gap = body[pos : m.start()]
            if idx == 0:
                prefix = gap
            elif gap.strip():
                raise CompletionFormatError("stray-text", f"text before {m.group()}")
            open_section = expected[idx]
        else:
            if kind != ("end", open_section):
                raise CompletionFormatError("tag-in-text", f"{m.group()} inside {open_section}")
            texts[open_section] = body[pos : m.start()].strip()
            open_section = None
            idx += 1
        pos = m.end()
    if body[pos:].strip():
        raise CompletionFormatError("stray-text", "text between the last section and the retouch tokens")

    prefix = prefix.strip()
    if _TAG_RE.search(prefix):
        raise CompletionFormatError("tag-in-text", "tag before the first section")
    elements: str | None = None
    regions: str | None = None
    if workflow == "auto":
        if not prefix.startswith(ELEMENTS_PREFIX) or not prefix[len(ELEMENTS_PREFIX) :].strip():
            raise CompletionFormatError("missing:elements")
        elements = prefix[len(ELEMENTS_PREFIX) :].strip()
        if "\n" in elements:
            raise CompletionFormatError("stray-text", "the key elements must fit on one line")
        if len(elements) > limits.max_elements_chars:
            raise CompletionFormatError("too-long", f"elements: {len(elements)} characters")
    elif workflow == "region":
        if not prefix.startswith(REGIONS_PREFIX) or not prefix[len(REGIONS_PREFIX) :].strip():
            raise CompletionFormatError("missing:regions")
        regions = prefix[len(REGIONS_PREFIX) :].strip()
        if "\n" in regions:
            raise CompletionFormatError("stray-text", "the regions line must fit on one line")
        if len(regions) > limits.max_elements_chars:
            raise CompletionFormatError("too-long", f"regions: {len(regions)} characters")
    elif prefix:
        raise CompletionFormatError("stray-text", "text before the first section")

    for name in expected:
        section = texts[name]
        if not section:
            raise CompletionFormatError(f"empty-section:{name}")
        if _TAG_RE.search(section):
            raise CompletionFormatError("tag-in-text", f"inside {name}")
        if len(section) > limits.max_section_chars:
            raise CompletionFormatError("too-long", f"{name}: {len(section)} > {limits.max_section_chars}")

    plans = {g: texts[f"plan_{g}"] for g in P.GROUPS}
    problems = {g: texts[f"problem_{g}"] for g in P.GROUPS} if workflow == "auto" else None
    return Completion(workflow=workflow, elements=elements, problems=problems, plans=plans, regions=regions)


def is_valid_completion(text: str, workflow: str, *, limits: FormatLimits = DEFAULT_LIMITS) -> bool:
    """True when parse_completion accepts the text (for rewards and quick filters)."""
    try:
        parse_completion(text, workflow, limits=limits)
    except CompletionFormatError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# user-turn prompts

PROMPTS_DIR = data_path("prompts")
PROMPT_VERSIONS: dict[str, str] = {"param": "param_v2", "style": "style_v2", "auto": "auto_v2"}
"""Current prompt template per workflow (files in data/prompts/; a new wording gets a new file). The
v2 files are the official VeraRetouch prompts byte for byte (see aether_data/official.py)."""
REGION_PROMPT_VERSION = "region_v1"
"""The region workflow's prompt template: kept out of PROMPT_VERSIONS, which every manifest lists,
so the manifests of the three global workflows stay byte-identical."""

NONE_TEXT = "None"
"""How the param prompt writes a group without active parameters (the three groups always appear)."""


@cache
def load_prompt_template(version: str) -> str:
    """The template text of a prompt version, '#' comment lines removed."""
    path = PROMPTS_DIR / f"{version}.txt"
    if not path.is_file():
        raise ValueError(f"unknown prompt version {version!r} (no {path.name} in {PROMPTS_DIR})")
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")]
    return "\n".join(lines).strip()


def format_parameters(params: Mapping[str, float]) -> str:
    """Slider-scale params → "Light Adjustment: Exposure2012: 0.120, …; Color and …: None; …".

    Values are normalised and rounded to 3 decimals; only parameters with |normalised| ≥ MASK_EPS
    are listed, in PARAM_NAMES order; a group with none is written "None" so the three group titles
    always appear in the same order.
    """
    clean = P.validate(params)
    parts = []
    for g in P.GROUPS:
        items = []
        for name in P.GROUP_PARAMS[g]:
            v = P.normalise(name, clean.get(name, 0.0))
            if abs(v) >= P.MASK_EPS:
                items.append(f"{name}: {round(v, 3) + 0.0:.3f}")
        parts.append(f"{P.GROUP_TITLES[g]}: {', '.join(items) if items else NONE_TEXT}")
    return "; ".join(parts) + "."


def _clean_instruction(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("empty instruction")
    if _TAG_RE.search(text):
        raise ValueError(f"instruction contains a tag: {text!r}")
    return text


def build_prompt(
    workflow: str,
    *,
    params: Mapping[str, float] | None = None,
    instruction: str | None = None,
    version: str | None = None,
) -> str:
    """The user turn (text part) for a task: the official prompt, from the versioned template.

    param: `params` (slider scale) become the official parameter dict (official.param_instruction);
    alternatively `instruction` is a plain-text description (or an already printed dict). style:
    `instruction` is required. auto: the fixed request, no arguments.
    """
    _check_workflow(workflow)
    token = TASK_TOKENS[workflow]
    if workflow == "param":
        if (params is None) == (instruction is None):
            raise ValueError("param prompt: give exactly one of params= or instruction=")
        template = load_prompt_template(version or PROMPT_VERSIONS["param"])
        if instruction is None:
            instruction = param_instruction(params or {})
        return template.format(task_token=token, instruction=_clean_instruction(instruction))
    if params is not None:
        raise ValueError(f"{workflow} prompt takes no params")
    if workflow in ("style", "region"):
        if instruction is None:
            raise ValueError(f"{workflow} prompt: instruction= is required")
        default = REGION_PROMPT_VERSION if workflow == "region" else PROMPT_VERSIONS["style"]
        template = load_prompt_template(version or default)
        return template.format(task_token=token, instruction=_clean_instruction(instruction))
    if instruction is not None:
        raise ValueError("auto prompt is fixed; it takes no instruction")
    return load_prompt_template(version or PROMPT_VERSIONS["auto"]).format(task_token=token)
