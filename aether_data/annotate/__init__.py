"""Annotators: the tagged completion format, the user-turn prompts and the template annotator.

The template annotator is the deterministic default; VLM annotators (transformers Qwen-VL,
OpenAI-compatible servers) validate their output with `parse_completion` and fall back to it.
"""

from aether_data.annotate.format import (
    PROMPT_VERSIONS,
    Completion,
    CompletionFormatError,
    FormatLimits,
    build_completion,
    build_prompt,
    is_valid_completion,
    parse_completion,
)
from aether_data.annotate.template import Annotation, AnnotationRequest, TemplateAnnotator

__all__ = [
    "PROMPT_VERSIONS",
    "Annotation",
    "AnnotationRequest",
    "Completion",
    "CompletionFormatError",
    "FormatLimits",
    "TemplateAnnotator",
    "build_completion",
    "build_prompt",
    "is_valid_completion",
    "parse_completion",
]
