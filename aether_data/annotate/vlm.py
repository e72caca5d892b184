"""The machinery every VLM backend shares: submit → future, retries, validation, cache, fallback.

Every backend has the same non-blocking contract: `submit(request, image, key)` returns a
`concurrent.futures.Future[Annotation]` at once, so the shard builder submits each sample right after
rendering it and collects all futures before writing the shard (requests overlap rendering). A
future never raises for a valid request: VLM output is validated strictly (`validate.parse_answer`),
invalid or failed attempts are retried up to `spec.max_retries` times, and then the deterministic
template annotation is used and counted (`annotator.name == "template-fallback"`, with
`fallback_reason` such as "format:order", "http-500", "timeout"). Finished annotations go to a
content-addressed cache (`cache.py`), so a re-run sends no request for samples already annotated.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aether_data.annotate.base import (
    DEFAULT_VARIANTS,
    VLM_PROMPT_PARTS,
    AnnotatorStats,
    ImageInput,
    derive_seed,
    vlm_prompt_version,
)
from aether_data.annotate.cache import AnnotationCache, cache_key, image_digest
from aether_data.annotate.prompt import build_vlm_prompt
from aether_data.annotate.template import (
    Annotation,
    AnnotationRequest,
    TemplateAnnotator,
)
from aether_data.annotate.validate import ParsedAnswer, parse_answer
from aether_data.contract import (
    CompletionFormatError,
)

if TYPE_CHECKING:
    from aether_data.config import AnnotatorSpec

log = logging.getLogger(__name__)


TRANSIENT_REASONS = ("timeout", "connection", "http-5", "http-429", "bad-response", "error:")
"""Fallback reasons (prefixes) that say nothing about the sample: such fallbacks are not cached, so
a re-run asks again; a valid answer or a format failure after all retries is cached."""


RETRY_TEMPERATURE = 0.7
"""Temperature of retries after an invalid answer when the first attempt was greedy: a greedy retry
of a deterministic model would repeat the same invalid text. Retries stay seeded (reproducible)."""


@dataclass
class VlmJob:
    """One sample in flight: its request, the prompt, the template annotation (fallback) and its future."""

    request: AnnotationRequest
    image: ImageInput
    key: str
    cache_key: str
    template: Annotation
    system: str
    user: str
    prompt_version: str
    seed: int
    future: Future[Annotation]
    attempts: int = 0
    last_reason: str | None = None
    target: ImageInput = None
    """The retouched target, shown after the input (None: input only)."""


def is_transient(reason: str) -> bool:
    """True for failures of the transport, not of the sample (see TRANSIENT_REASONS)."""
    return reason.startswith(TRANSIENT_REASONS)


def _request_content(request: AnnotationRequest) -> dict[str, Any]:
    return dataclasses.asdict(request)


class VlmAnnotatorBase:
    """Prompting, validation, retry bookkeeping, template fallback, caching and counters.

    Subclasses implement `_dispatch(job)`, which must eventually call `_complete(job, text)` per
    attempt outcome or `_fail(job, reason)`; `_resolve` guarantees every future gets an Annotation.
    """

    name = "vlm"

    def __init__(
        self,
        spec: AnnotatorSpec,
        model_id: str | None,
        *,
        n_variants: int = DEFAULT_VARIANTS,
        cache: AnnotationCache | None = None,
    ) -> None:
        self.spec = spec
        self.model_id = model_id
        self.n_variants = int(n_variants)
        self.cache = cache if cache is not None else AnnotationCache(spec.cache_dir)
        self._template = TemplateAnnotator(spec.param_text_share)
        self._stats = AnnotatorStats()
        self._closed = False

    # -- public --------------------------------------------------------------------------------
    @property
    def prompt_versions(self) -> dict[str, str]:
        """VLM prompt version per workflow (fallback text uses the template's, see PROMPT_VERSIONS)."""
        return {wf: vlm_prompt_version(wf) for wf in VLM_PROMPT_PARTS}

    def model_fingerprint(self) -> str | None:
        """What identifies the model's weights in cache keys (the model id unless overridden)."""
        return self.model_id

    def submit(
        self,
        request: AnnotationRequest,
        image: ImageInput = None,
        key: str | None = None,
        target: ImageInput = None,
    ) -> Future[Annotation]:
        """Non-blocking: a cache hit returns a completed future; otherwise the backend starts work."""
        if self._closed:
            raise RuntimeError(f"{self.name} annotator is closed")
        template = self._template.annotate(request)  # invalid requests raise here, like the template
        self._stats.add("annotations")
        fut: Future[Annotation] = self._new_future()
        if request.workflow not in VLM_PROMPT_PARTS:  # the region workflow: no VLM prompt yet
            reason = "unsupported-workflow"
            self._stats.fallback(reason)
            fut.set_result(
                self._fallback_annotation(template, template.annotator["prompt_version"], 0, reason)
            )
            return fut
        try:
            job = self._prepare(request, image, key or "", template, fut, target)
        except Exception as exc:  # never lose a sample: a prompt/image problem falls back at once
            reason = f"error:{type(exc).__name__}"
            log.warning("%s: preparing sample %s failed (%s); template used", self.name, key, reason)
            self._stats.fallback(reason)
            fut.set_result(
                self._fallback_annotation(template, vlm_prompt_version(request.workflow), 0, reason)
            )
            return fut
        ann = self._cached(job.cache_key)
        if ann is not None:
            self._stats.add("cache_hits")
            if ann.annotator.get("fallback_reason"):
                self._stats.fallback(str(ann.annotator["fallback_reason"]))
            fut.set_result(ann)
            return fut
        try:
            self._dispatch(job)
        except Exception as exc:
            self._fail(job, f"error:{type(exc).__name__}")
        return fut

    def annotate(
        self,
        request: AnnotationRequest,
        image: ImageInput = None,
        key: str | None = None,
        target: ImageInput = None,
    ) -> Annotation:
        """Synchronous convenience: submit and wait."""
        fut = self.submit(request, image, key, target)
        self.flush()
        return fut.result()

    def flush(self) -> None:
        """Unbatched backends run everything at once."""

    def stats(self) -> dict[str, Any]:
        """Counters: annotations, requests_sent, cache_hits, retries, fallbacks (+ reasons), variant_fallbacks."""
        return self._stats.as_dict()

    def close(self) -> None:
        """Mark closed (subclasses release their workers)."""
        self._closed = True

    def __enter__(self) -> VlmAnnotatorBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses ---------------------------------------------------------------------------
    def _new_future(self) -> Future[Annotation]:
        return Future()

    def _dispatch(self, job: VlmJob) -> None:
        raise NotImplementedError

    def _generation_settings(self) -> dict[str, Any]:
        return {"temperature": self.spec.temperature, "max_new_tokens": self.spec.max_new_tokens}

    def _prepare(
        self,
        request: AnnotationRequest,
        image: ImageInput,
        key: str,
        template: Annotation,
        fut: Future[Annotation],
        target: ImageInput = None,
    ) -> VlmJob:
        system, user = build_vlm_prompt(request, template, self.n_variants)
        pv = vlm_prompt_version(request.workflow)
        address = cache_key(
            {
                "sample_key": key,
                "request": _request_content(request),
                "image": image_digest(image),
                "target": image_digest(target),
                "prompt_version": pv,
                "backend": self.name,
                "model": self.model_fingerprint(),
                "generation": self._generation_settings(),
                "n_variants": self.n_variants,
            }
        )
        return VlmJob(
            request=request,
            image=image,
            target=target,
            key=key,
            cache_key=address,
            template=template,
            system=system,
            user=user,
            prompt_version=pv,
            seed=derive_seed(address),
            future=fut,
        )

    def _cached(self, address: str) -> Annotation | None:
        """The cached annotation at `address`, or None (missing, stale or malformed: a miss)."""
        entry = self.cache.get(address)
        if entry is None or not self._usable_hit(entry):
            return None
        try:
            return Annotation(**entry["annotation"])
        except TypeError:
            return None

    def _usable_hit(self, entry: Mapping[str, Any]) -> bool:
        """A cached fallback is reused only if it had at least the retries this run would make."""
        ann = entry.get("annotation")
        if not isinstance(ann, dict) or not isinstance(ann.get("annotator"), dict):
            return False
        if ann["annotator"].get("fallback_reason"):
            return int(entry.get("max_retries", -1)) >= self.spec.max_retries
        return True

    def attempt_temperature(self, attempt: int) -> float:
        """Spec temperature first; retries of a greedy run sample at RETRY_TEMPERATURE (seeded)."""
        if attempt == 0 or self.spec.temperature > 0:
            return self.spec.temperature
        return RETRY_TEMPERATURE

    def _attempt_outcome(self, job: VlmJob, text: str) -> ParsedAnswer | str:
        """Validate one answer: the parsed answer, or the failure reason ("format:…")."""
        try:
            return parse_answer(text, job.request, n_variants=self._variants_wanted(job.request))
        except CompletionFormatError as exc:
            return f"format:{exc.reason}"

    def _variants_wanted(self, request: AnnotationRequest) -> int:
        return 0 if request.workflow == "auto" else self.n_variants

    def _can_retry(self, job: VlmJob) -> bool:
        return job.attempts <= self.spec.max_retries

    def _succeed(self, job: VlmJob, parsed: ParsedAnswer) -> None:
        """Build the VLM annotation, cache it, resolve the future."""
        req, tmpl = job.request, job.template
        info: dict[str, Any] = {
            "name": self.name,
            "model": self.model_id,
            "prompt_version": job.prompt_version,
            "attempts": job.attempts,
            "fallback_reason": None,
        }
        if req.workflow == "auto":
            instructions = list(tmpl.instructions)
        elif len(parsed.variants) >= self.n_variants:
            instructions = list(dict.fromkeys([tmpl.instructions[0], *parsed.variants]))
            info["variants"] = "vlm"
        else:  # the reasoning is good; not enough clean variants → the template's (counted)
            instructions = list(tmpl.instructions)
            info["variants"] = "template"
            self._stats.add("variant_fallbacks")
        ann = Annotation(
            instructions=instructions,
            completion=parsed.text,
            reasoning=parsed.completion.reasoning(),
            prompt=tmpl.prompt,
            annotator=info,
        )
        self._store(job, ann)
        self._resolve(job, ann)

    def _fail(self, job: VlmJob, reason: str) -> None:
        """Give up on the VLM for this sample: template fallback, counted, cached unless transient."""
        self._stats.fallback(reason)
        ann = self._fallback_annotation(job.template, job.prompt_version, job.attempts, reason)
        if not is_transient(reason):
            self._store(job, ann)
        self._resolve(job, ann)

    def _fallback_annotation(
        self, template: Annotation, prompt_version: str, attempts: int, reason: str
    ) -> Annotation:
        info = {
            "name": "template-fallback",
            "model": self.model_id,
            "prompt_version": prompt_version,
            "attempts": int(attempts),
            "fallback_reason": reason,
        }
        return dataclasses.replace(template, annotator=info)

    def _store(self, job: VlmJob, ann: Annotation) -> None:
        try:
            self.cache.put(job.cache_key, {"annotation": ann.to_dict(), "max_retries": self.spec.max_retries})
        except OSError as exc:  # a full or read-only cache must not cost the sample
            log.warning("%s: cache write failed (%s)", self.name, type(exc).__name__)

    def _resolve(self, job: VlmJob, ann: Annotation) -> None:
        if not job.future.done():
            job.future.set_result(ann)
