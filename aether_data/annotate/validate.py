"""Validation of VLM answers: the strict tagged format plus grounding checks, and instruction variants.

A VLM answer is `[Instructions:\\n1. …\\n2. …\\n3. …\\n\\n]<tagged completion>`: the numbered list is
there for param/style samples only. The completion part goes through `parse_completion` (strict: a
failure is retried and finally replaced by the template) and then through a grounding check that
`parse_completion` cannot do alone because it does not know the request: a section must say
INACTIVE_TEXT exactly when its group was not adjusted, so a VLM cannot describe edits that were not
made nor skip ones that were. Variants are parsed leniently: bad lines are dropped, and fewer than
asked for means the template's variants are used instead (the reasoning is still the VLM's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aether_data import params as P
from aether_data.annotate.template import AnnotationRequest
from aether_data.contract import (
    _TAG_RE,
    DEFAULT_LIMITS,
    ELEMENTS_PREFIX,
    INACTIVE_TEXT,
    Completion,
    CompletionFormatError,
    FormatLimits,
    build_completion,
    parse_completion,
    start_tag,
)

MAX_VARIANT_CHARS = 400
"""A longer "instruction" is a run-away generation, not a request a user would type."""
MIN_VARIANT_CHARS = 8

_NUMBERED_RE = re.compile(r"^\s*(?:[-*]\s*)?\(?(\d{1,2})[.):]\s+(.*\S)\s*$")


@dataclass(frozen=True)
class ParsedAnswer:
    """A validated VLM answer: the canonical completion text, its parts and the usable variants."""

    completion: Completion
    text: str
    variants: list[str]


def split_answer(text: str, workflow: str) -> tuple[str, str]:
    """(preamble, completion part): the completion starts at its first required element.

    For auto that is the "Key elements:" line; for param/style the first plan tag. Without such a
    marker everything is the completion part, so the strict parser reports what is missing.
    """
    marker = ELEMENTS_PREFIX if workflow == "auto" else start_tag("plan_light")
    if workflow == "auto":
        # the key-elements line must start a line; an earlier mention inside a sentence is not it
        m = re.search(r"(?m)^[ \t]*" + re.escape(marker), text or "")
        pos = m.start() if m else -1
    else:
        pos = (text or "").find(marker)
    if pos < 0:
        return "", text or ""
    return text[:pos], text[pos:]


def check_grounding(completion: Completion, request: AnnotationRequest) -> None:
    """Raise CompletionFormatError("activity:<section>") when a section's activity contradicts the request."""
    described = request.described()
    for g in P.GROUPS:
        active = bool(described[g])
        sections = [("plan_" + g, completion.plans[g])]
        if completion.problems is not None:
            sections.insert(0, ("problem_" + g, completion.problems[g]))
        for name, text in sections:
            if (text == INACTIVE_TEXT) == active:
                state = "adjusted" if active else "not adjusted"
                raise CompletionFormatError(f"activity:{name}", f"group {g} was {state}")


def parse_variants(preamble: str, n: int) -> list[str]:
    """Up to `n` clean instructions from a numbered list (lines `1. …`, `2) …`); bad lines are dropped."""
    out: list[str] = []
    for line in preamble.splitlines():
        m = _NUMBERED_RE.match(line)
        if not m:
            continue
        text = " ".join(m.group(2).split()).strip().strip("\"'“”").strip()
        if not (MIN_VARIANT_CHARS <= len(text) <= MAX_VARIANT_CHARS) or _TAG_RE.search(text) or "<" in text:
            continue
        if text.lower() in (v.lower() for v in out):
            continue
        out.append(text)
        if len(out) == n:
            break
    return out


def parse_answer(
    text: str,
    request: AnnotationRequest,
    *,
    n_variants: int = 0,
    limits: FormatLimits = DEFAULT_LIMITS,
) -> ParsedAnswer:
    """Validate a VLM answer for `request`; raise CompletionFormatError (reason without prefix).

    The returned text is rebuilt with `build_completion`, so every stored completion has the same
    canonical layout (one newline between parts) whoever wrote it.
    """
    if not isinstance(text, str) or not text.strip():
        raise CompletionFormatError("empty")
    preamble, body = split_answer(text, request.workflow)
    if request.workflow == "auto" and preamble.strip():
        raise CompletionFormatError("stray-text", "text before the key elements")
    completion = parse_completion(body, request.workflow, limits=limits)
    check_grounding(completion, request)
    canonical = build_completion(completion.elements, completion.problems, completion.plans, limits=limits)
    variants = parse_variants(preamble, n_variants) if n_variants > 0 else []
    return ParsedAnswer(completion=completion, text=canonical, variants=variants)
