"""OpenAI-compatible chat-completions backend (vLLM, SGLang, TGI, hosted APIs).

Standard library only (urllib + a thread pool): the workers block on sockets, so `spec.concurrency`
threads keep that many requests in flight while the shard builder keeps rendering; with latency L a
worker sustains ≈ concurrency / L annotations per second. Each sample is one job on the pool: send,
validate, retry (5xx, 429, timeouts and connection errors after an exponential backoff with seeded
jitter; invalid answers at once, with a new seed), then template fallback with the last reason.

The API key is read from `AETHER_OPENAI_API_KEY` when the annotator is built and only ever put in
the Authorization header: it is not in the spec, the manifest, the cache, the records or any log
line (error messages carry status codes and exception types, never headers or bodies).
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from aether_data.annotate.base import DEFAULT_VARIANTS, ImageInput
from aether_data.annotate.cache import AnnotationCache, to_uint8
from aether_data.annotate.template import Annotation, AnnotationRequest
from aether_data.annotate.vlm import VlmAnnotatorBase, VlmJob

if TYPE_CHECKING:
    from aether_data.config import AnnotatorSpec

log = logging.getLogger(__name__)

API_KEY_ENV = "AETHER_OPENAI_API_KEY"
MAX_IMAGE_SIDE = 1024
"""Images are downscaled to this long side before encoding (VLMs resize anyway; saves bandwidth)."""
JPEG_QUALITY = 90
MAX_BACKOFF_S = 30.0
MODEL_DISCOVERY_TIMEOUT_S = 10.0


class _Transient(Exception):
    """A failed attempt worth retrying after a backoff; `reason` goes to the index when it is the last."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Permanent(Exception):
    """A failed attempt that a retry would repeat (4xx other than 408/429)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_image_data_url(image: np.ndarray | bytes) -> str:
    """Image → `data:image/…;base64,…`.

    Encoded JPEG/PNG bytes (e.g. the shard's stored input) are sent as they are, with no re-encode;
    arrays are encoded as JPEG, long side ≤ MAX_IMAGE_SIDE.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if data[:3] == b"\xff\xd8\xff":
            mime = "image/jpeg"
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            mime = "image/png"
        else:  # anything else: decode and re-encode as JPEG
            with Image.open(io.BytesIO(data)) as im:
                return encode_image_data_url(np.asarray(im.convert("RGB")))
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    im = Image.fromarray(to_uint8(image), "RGB")
    if max(im.size) > MAX_IMAGE_SIDE:
        scale = MAX_IMAGE_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _message_text(content: Any) -> str:
    """`choices[0].message.content` as text (a string, or a list of {type: text} parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise ValueError("no text content")


class OpenAIAnnotator(VlmAnnotatorBase):
    """Annotator over `POST {base_url}/chat/completions` with bounded concurrency."""

    name = "openai"

    def __init__(
        self,
        spec: AnnotatorSpec,
        *,
        n_variants: int = DEFAULT_VARIANTS,
        cache: AnnotationCache | None = None,
    ) -> None:
        if not spec.base_url:
            raise ValueError("the openai annotator needs spec.base_url")
        super().__init__(spec, spec.model, n_variants=n_variants, cache=cache)
        self.base_url = spec.base_url.rstrip("/")
        self._api_key = os.environ.get(API_KEY_ENV) or None
        # a proxy from the environment must not swallow requests to a local server
        handlers: list[Any] = (
            [urllib.request.ProxyHandler({})] if _is_loopback(urlsplit(self.base_url).hostname) else []
        )
        self._opener = urllib.request.build_opener(*handlers)
        self._pool = ThreadPoolExecutor(max_workers=spec.concurrency, thread_name_prefix="aether-openai")
        self._model_lock = threading.Lock()
        self._model_checked = spec.model is not None

    def __repr__(self) -> str:  # no key, ever
        return f"OpenAIAnnotator(base_url={self.base_url!r}, model={self.model_id!r})"

    # -- model name ---------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        """Without `spec.model`, ask the server once (`GET /models`); vLLM serves one model."""
        if self._model_checked:
            return
        with self._model_lock:
            if self._model_checked:
                return
            try:
                status, body = self._http(
                    "GET", "/models", None, min(self.spec.timeout_s, MODEL_DISCOVERY_TIMEOUT_S)
                )
                data = json.loads(body) if status == 200 else {}
                models = [m.get("id") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
                if models:
                    self.model_id = str(models[0])
            except Exception as exc:  # the chat request is still tried, without a model name
                log.warning("openai annotator: model discovery failed (%s)", type(exc).__name__)
            self._model_checked = True

    def submit(
        self,
        request: AnnotationRequest,
        image: ImageInput = None,
        key: str | None = None,
        target: ImageInput = None,
    ) -> Future[Annotation]:
        """See VlmAnnotatorBase.submit (the model name is resolved first: it is part of cache keys)."""
        self._ensure_model()
        return super().submit(request, image, key, target)

    # -- transport ------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _http(self, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
        """One HTTP exchange → (status, body); transport failures raise _Transient."""
        req = urllib.request.Request(self.base_url + path, data=body, headers=self._headers(), method=method)
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = exc.read()
            except Exception:
                payload = b""
            finally:
                exc.close()
            return int(exc.code), payload
        except TimeoutError as exc:
            raise _Transient("timeout") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Transient("timeout") from exc
            raise _Transient("connection") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Transient("connection") from exc

    def _request_body(
        self, job: VlmJob, image_url: str | None, target_url: str | None = None
    ) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for url in (image_url, target_url):  # input first, then the retouched target
            if url is not None:
                content.append({"type": "image_url", "image_url": {"url": url}})
        content.append({"type": "text", "text": job.user})
        body: dict[str, Any] = {
            "messages": [
                {"role": "system", "content": job.system},
                {"role": "user", "content": content},
            ],
            "max_tokens": self.spec.max_new_tokens,
            "temperature": self.attempt_temperature(job.attempts),
            "seed": (job.seed + job.attempts) & 0x7FFFFFFF,
        }
        if self.model_id:
            body["model"] = self.model_id
        return body

    def _chat(self, payload: bytes) -> str:
        """One chat completion → the answer text; raises _Transient / _Permanent."""
        self._stats.add("requests_sent")
        status, body = self._http("POST", "/chat/completions", payload, self.spec.timeout_s)
        if status >= 500 or status in (408, 429):
            raise _Transient(f"http-{status}")
        if status != 200:
            raise _Permanent(f"http-{status}")
        try:
            data = json.loads(body)
            return _message_text(data["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Transient("bad-response") from exc

    def _backoff(self, job: VlmJob, transient_failures: int) -> None:
        """Exponential backoff with jitter seeded by the sample: reproducible, yet de-synchronised."""
        base = self.spec.retry_backoff_s
        if base <= 0:
            return
        rng = random.Random(job.seed * 1000 + transient_failures)
        time.sleep(min(MAX_BACKOFF_S, base * 2 ** (transient_failures - 1)) * (0.5 + rng.random()))

    # -- the job --------------------------------------------------------------------------------------
    def _dispatch(self, job: VlmJob) -> None:
        self._pool.submit(self._run_guarded, job)

    def _run_guarded(self, job: VlmJob) -> None:
        try:
            self._run(job)
        except Exception as exc:  # never lose a sample, whatever happened
            log.warning("openai annotator: unexpected %s; template used", type(exc).__name__)
            self._fail(job, f"error:{type(exc).__name__}")

    def _run(self, job: VlmJob) -> None:
        image_url = encode_image_data_url(job.image) if job.image is not None else None
        target_url = encode_image_data_url(job.target) if job.target is not None else None
        transient_failures = 0
        while True:
            if job.attempts > 0:
                self._stats.add("retries")
            payload = json.dumps(self._request_body(job, image_url, target_url)).encode("utf-8")
            job.attempts += 1
            try:
                text = self._chat(payload)
            except _Permanent as exc:
                self._fail(job, exc.reason)
                return
            except _Transient as exc:
                job.last_reason = exc.reason
                transient_failures += 1
                if not self._can_retry(job):
                    self._fail(job, exc.reason)
                    return
                self._backoff(job, transient_failures)
                continue
            outcome = self._attempt_outcome(job, text)
            if not isinstance(outcome, str):
                self._succeed(job, outcome)
                return
            job.last_reason = outcome
            if not self._can_retry(job):
                self._fail(job, outcome)
                return

    def close(self) -> None:
        """Wait for requests in flight (their futures complete), then stop the threads."""
        super().close()
        self._pool.shutdown(wait=True)
