"""The annotator interface (submit → future), its counters, and the deterministic template backend."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from aether_data.annotate.template import (
    DEFAULT_PARAM_TEXT_SHARE,
    Annotation,
    AnnotationRequest,
    TemplateAnnotator,
)
from aether_data.contract import (
    PROMPT_VERSIONS,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


ImageInput = np.ndarray | bytes | None
"""What `submit` takes as the sample's image: HxWx3 float [0, 1] or uint8 pixels, or the encoded
JPEG/PNG bytes stored in the shard (cheapest: sent / decoded as they are), or None (text only).
`submit(..., target=...)` takes the retouched target the same way: VLMs are shown input then target."""


DEFAULT_VARIANTS = 3
"""Instruction variants asked of the VLM for param/style samples (the design asks for ≥ 3)."""


SYSTEM_PROMPT_VERSION = "vlm_system_v2"


VLM_PROMPT_PARTS: dict[str, tuple[str, ...]] = {
    "auto": ("vlm_auto_v2",),
    "param": ("vlm_plans_v2", "vlm_variants_param_v1"),
    "style": ("vlm_plans_v2", "vlm_variants_style_v1"),
}
"""User-turn prompt files per workflow; a new wording gets a new file (and so a new version string)."""


def vlm_prompt_version(workflow: str) -> str:
    """E.g. "vlm_system_v2+vlm_plans_v2+vlm_variants_param_v1": every prompt file a request is built from."""
    return "+".join((SYSTEM_PROMPT_VERSION, *VLM_PROMPT_PARTS[workflow]))


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (for the server's `seed`, torch sampling and backoff jitter)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@runtime_checkable
class Annotator(Protocol):
    """What the shard builder uses: submit per sample (non-blocking), collect futures, close once."""

    name: str
    model_id: str | None

    @property
    def prompt_versions(self) -> dict[str, str]:
        """Prompt version per workflow (recorded in the manifest)."""
        ...

    def submit(
        self,
        request: AnnotationRequest,
        image: ImageInput = None,
        key: str | None = None,
        target: ImageInput = None,
    ) -> Future[Annotation]:
        """Start annotating one sample; the future's result is its Annotation (never an exception)."""
        ...

    def flush(self) -> None:
        """Let queued work run now even if a batch is not full (a no-op for unbatched backends)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters: annotations, requests_sent, cache_hits, retries, fallbacks, fallback_reasons."""
        ...

    def close(self) -> None:
        """Release threads / models; pending futures are completed first."""
        ...


class AnnotatorStats:
    """Thread-safe counters shared by all backends (`stats()` returns a plain dict)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        """Increment counter `name`."""
        with self._lock:
            self._c[name] += n

    def fallback(self, reason: str) -> None:
        """Count one sample that fell back to the template, by reason."""
        with self._lock:
            self._c["fallbacks"] += 1
            self._reasons[reason] += 1

    def as_dict(self) -> dict[str, Any]:
        """A snapshot: every counter (0 when never incremented) and the reasons."""
        with self._lock:
            out: dict[str, Any] = {
                k: int(self._c[k])
                for k in (
                    "annotations",
                    "requests_sent",
                    "cache_hits",
                    "retries",
                    "fallbacks",
                    "variant_fallbacks",
                )
            }
            out["fallback_reasons"] = dict(sorted(self._reasons.items()))
            return out


class TemplateBackend:
    """The deterministic template annotator behind the Annotator interface (completed futures)."""

    name = "template"
    model_id: str | None = None

    def __init__(self, param_text_share: float | None = None) -> None:
        self._template = TemplateAnnotator(
            DEFAULT_PARAM_TEXT_SHARE if param_text_share is None else param_text_share
        )
        self._stats = AnnotatorStats()

    @property
    def prompt_versions(self) -> dict[str, str]:
        """The template's user-turn prompt versions."""
        return dict(PROMPT_VERSIONS)

    def annotate(self, request: AnnotationRequest) -> Annotation:
        """Synchronous annotation (tools and tests; a build submits and collects futures)."""
        ann = self._template.annotate(request)
        self._stats.add("annotations")
        return ann

    def submit(
        self,
        request: AnnotationRequest,
        image: ImageInput = None,
        key: str | None = None,
        target: ImageInput = None,
    ) -> Future[Annotation]:
        """A completed future (the template is fast and never waits on anything)."""
        fut: Future[Annotation] = Future()
        try:
            fut.set_result(self.annotate(request))
        except Exception as exc:  # an invalid request: surface it to the caller, like annotate() would
            fut.set_exception(exc)
        return fut

    def flush(self) -> None:
        """Nothing is ever queued."""

    def stats(self) -> dict[str, Any]:
        """Counters (requests_sent and cache_hits stay 0)."""
        return self._stats.as_dict()

    def close(self) -> None:
        """Nothing to release."""
