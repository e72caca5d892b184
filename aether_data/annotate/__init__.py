"""Annotators: the tagged completion format, the user-turn prompts and the annotator backends.

The template annotator is the deterministic default; VLM annotators (transformers Qwen-VL,
OpenAI-compatible servers) validate their output with `parse_completion` and fall back to it.
`make_annotator(spec)` (``factory``) builds the backend named by an AnnotatorSpec; every backend has the
non-blocking `submit(request, image, key) -> Future[Annotation]` interface (`base.Annotator`).
The openai and qwen-vl backends are imported lazily (by make_annotator) to keep imports light.
"""

from aether_data.annotate.base import Annotator, TemplateBackend, vlm_prompt_version
from aether_data.annotate.cache import AnnotationCache, default_cache_dir
from aether_data.annotate.factory import annotator_manifest, make_annotator
from aether_data.annotate.template import Annotation, AnnotationRequest, TemplateAnnotator
from aether_data.contract import (
    PROMPT_VERSIONS,
    Completion,
    CompletionFormatError,
    FormatLimits,
    build_completion,
    build_prompt,
    is_valid_completion,
    parse_completion,
)

__all__ = [
    "PROMPT_VERSIONS",
    "Annotation",
    "AnnotationCache",
    "AnnotationRequest",
    "Annotator",
    "Completion",
    "CompletionFormatError",
    "FormatLimits",
    "TemplateAnnotator",
    "TemplateBackend",
    "annotator_manifest",
    "build_completion",
    "build_prompt",
    "default_cache_dir",
    "is_valid_completion",
    "make_annotator",
    "parse_completion",
    "vlm_prompt_version",
]
