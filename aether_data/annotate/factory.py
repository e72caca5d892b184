"""Annotators by name: the one module that knows every backend.

Why a module of its own: the backends build on ``base``; if ``base`` also chose between them, base
and backends would import each other. The openai and qwen-vl backends are imported lazily here to
keep imports light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aether_data.annotate.base import (
    DEFAULT_VARIANTS,
    VLM_PROMPT_PARTS,
    Annotator,
    TemplateBackend,
    vlm_prompt_version,
)
from aether_data.config import AnnotatorSpec
from aether_data.contract import PROMPT_VERSIONS

__all__ = ["annotator_manifest", "make_annotator"]


def make_annotator(spec: AnnotatorSpec | None = None, *, n_variants: int = DEFAULT_VARIANTS) -> Annotator:
    """The backend named by `spec.backend` (template when spec is None).

    qwen-vl loads the model here: build it once per shard actor (ShardContext), not per shard.
    """
    spec = spec or AnnotatorSpec()
    if spec.backend == "template":
        return TemplateBackend(spec.param_text_share)
    if spec.backend == "openai":
        from aether_data.annotate.openai_backend import OpenAIAnnotator

        return OpenAIAnnotator(spec, n_variants=n_variants)
    if spec.backend == "qwen-vl":
        from aether_data.annotate.qwen_backend import QwenVLAnnotator

        return QwenVLAnnotator(spec, n_variants=n_variants)
    raise ValueError(f"unknown annotator backend {spec.backend!r}")


def annotator_manifest(spec: AnnotatorSpec) -> dict[str, Any]:
    """The manifest's `annotator` entry for a spec, without loading anything (never keys or URLs' secrets)."""
    if spec.backend == "template":
        return {"backend": "template", "model": None, "prompt_versions": dict(PROMPT_VERSIONS)}
    model = spec.model if spec.model else (Path(spec.model_path).name if spec.model_path else None)
    versions = {wf: vlm_prompt_version(wf) for wf in VLM_PROMPT_PARTS}
    return {
        "backend": spec.backend,
        "model": model,
        "prompt_versions": versions,
        "fallback_prompt_versions": dict(PROMPT_VERSIONS),
    }
