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

from aether_data import params as P
from aether_data.annotate.instructions import _param_variants, _style_variants
from aether_data.annotate.phrasing import (
    AMOUNT_WORDS,
    COMPARATIVE_WORDS,
    MAGNITUDE_THRESHOLDS,
    PLAN_ADVERBS,
    PROBLEM_SEVERITY,
    _clean,
    _continue,
    magnitude,
)
from aether_data.annotate.reasoning import _PLAN_OPENERS, _PROBLEM_OPENERS, _elements, _plan, _problem
from aether_data.annotate.request import Annotation, AnnotationRequest
from aether_data.contract import (
    PROMPT_VERSIONS,
    TASK_TOKENS,
    build_completion,
    build_prompt,
    parse_completion,
)
from aether_data.official import param_instruction

__all__ = [
    "AMOUNT_WORDS",
    "COMPARATIVE_WORDS",
    "DEFAULT_PARAM_TEXT_SHARE",
    "MAGNITUDE_THRESHOLDS",
    "PLAN_ADVERBS",
    "PROBLEM_SEVERITY",
    "Annotation",
    "AnnotationRequest",
    "TemplateAnnotator",
    "magnitude",
]

DEFAULT_PARAM_TEXT_SHARE = 0.2
"""Share of param samples whose prompt instruction is a plain-text description instead of the
official parameter dict (the official param prompt allows both); AnnotatorSpec.param_text_share."""


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
                plans[g] = f"{opener}{_continue(text) if opener else text}." if text else None
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
