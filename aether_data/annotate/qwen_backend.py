"""Qwen-VL backend: transformers Qwen2.5-VL / Qwen3-VL from a local folder, batched generation.

Where it runs: inside the shard builder's Ray Data actor (one model per actor, loaded once when the
actor's ShardContext is built). `spec.num_gpus` is the GPU share each shard actor asks Ray for
(`ActorPoolStrategy` / `num_gpus=` of `map_batches`): 1 = one GPU per actor, 0.5 = two actors
per GPU (each loads its own copy: pick it by memory), 0 = CPU (only sensible for tests and tiny
models). With num_gpus > 0 the model goes to `cuda` in bfloat16 (float16 without bf16 support);
Ray's CUDA_VISIBLE_DEVICES makes that the actor's GPU.

Batching: submitted samples queue up and a single generation thread runs `model.generate` on
`spec.batch_size` of them at a time (left padding) while the caller keeps rendering. Batches are
consecutive runs of the submission order: a partial batch runs only after `flush()` (the shard
builder calls it after submitting a shard's last sample; `Future.result()` on a pending future
calls it too, so forgetting it cannot deadlock). The first attempt is greedy (or seeded sampling at
`spec.temperature`); invalid answers are regenerated together with seeded sampling up to
`spec.max_retries` times, then fall back to the template.

The model class follows the folder's config: `qwen2_5_vl` → Qwen2_5_VLForConditionalGeneration,
`qwen3_vl` / `qwen3_vl_moe` → the Qwen3-VL classes, anything else → AutoModelForImageTextToText.
Images go through `qwen_vl_utils.process_vision_info` with the model's patch size (14 for
Qwen2.5-VL, 16 for Qwen3-VL), exactly as the official recipe does.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aether_data.annotate.base import DEFAULT_VARIANTS, derive_seed
from aether_data.annotate.cache import AnnotationCache, to_uint8
from aether_data.annotate.template import Annotation
from aether_data.annotate.vlm import VlmAnnotatorBase, VlmJob
from aether_data.contract import SPECIAL_TOKENS

if TYPE_CHECKING:
    from aether_data.config import AnnotatorSpec

log = logging.getLogger(__name__)

MODEL_CLASSES: dict[str, str] = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}
"""config.model_type → transformers class (others load through AutoModelForImageTextToText)."""


def weights_fingerprint(path: str | Path) -> str:
    """Short hash of config files and weight file names + sizes: new weights ⇒ new cache addresses.

    Sizes instead of contents keep it instant for 15 GB checkpoints; a retrained model of the same
    shape should also get a new folder name or `spec.model` label.
    """
    root = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja"):
        f = root / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    weights = (
        sorted(p for p in root.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
        if root.is_dir()
        else []
    )
    for f in weights:
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def resolve_device(num_gpus: float) -> tuple[str, Any]:
    """("cuda", bf16/fp16) when the actor was given GPUs, else ("cpu", float32)."""
    import torch

    if num_gpus > 0:
        if not torch.cuda.is_available():
            raise RuntimeError(
                "annotator.num_gpus > 0 but CUDA is not available in this worker "
                "(is the Ray actor scheduled with num_gpus, and is a CUDA build of torch installed?)"
            )
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return "cuda", dtype
    return "cpu", torch.float32


def load_qwen_vl(path: str | Path, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model, processor) from a local folder (no network), model in eval mode on `device`."""
    import transformers
    from transformers import AutoConfig, AutoProcessor

    root = Path(path)
    if not (root / "config.json").is_file():
        raise FileNotFoundError(
            f"no config.json in {root}: annotator.model_path must be a local model folder"
        )
    config = AutoConfig.from_pretrained(root, local_files_only=True)
    cls_name = MODEL_CLASSES.get(config.model_type, "AutoModelForImageTextToText")
    cls = getattr(transformers, cls_name, None) or transformers.AutoModelForImageTextToText
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = cls.from_pretrained(root, **kwargs).to(device).eval()
    processor = AutoProcessor.from_pretrained(root, local_files_only=True)
    processor.tokenizer.padding_side = "left"  # decoder-only batched generation
    return model, processor


class _FlushingFuture(Future):  # type: ignore[type-arg]
    """A future whose result()/exception() first lets a partial batch run (no deadlock)."""

    def __init__(self, owner: QwenVLAnnotator) -> None:
        super().__init__()
        self._owner = owner

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            self._owner.flush()
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done():
            self._owner.flush()
        return super().exception(timeout)


class QwenVLAnnotator(VlmAnnotatorBase):
    """Batched transformers generation with validation, retries, fallback and caching."""

    name = "qwen-vl"

    def __init__(
        self,
        spec: AnnotatorSpec,
        *,
        n_variants: int = DEFAULT_VARIANTS,
        cache: AnnotationCache | None = None,
        model: Any = None,
        processor: Any = None,
    ) -> None:
        if not spec.model_path:
            raise ValueError("the qwen-vl annotator needs spec.model_path (a local model folder)")
        path = Path(spec.model_path).expanduser()
        if model is None and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no config.json in {path}: annotator.model_path must be a local model folder"
            )
        super().__init__(spec, spec.model or path.name, n_variants=n_variants, cache=cache)
        self._fingerprint = f"{self.model_id}@{weights_fingerprint(path)}"
        if model is None or processor is None:
            device, dtype = resolve_device(spec.num_gpus)
            model, processor = load_qwen_vl(path, device, dtype)
        self.model = model
        self.processor = processor
        self.device = next(model.parameters()).device
        vision = getattr(model.config, "vision_config", None)
        self.patch_size = int(getattr(vision, "patch_size", 14) or 14)
        self._setup_decoding()
        self._cond = threading.Condition()
        self._queue: list[tuple[int, VlmJob]] = []
        self._seq = 0
        self._flush_upto = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="aether-qwen-vl", daemon=True)
        self._thread.start()

    def model_fingerprint(self) -> str | None:
        """Model label + weights fingerprint (see weights_fingerprint)."""
        return self._fingerprint

    # -- decoding ------------------------------------------------------------------------------------
    def _setup_decoding(self) -> None:
        """Which generated ids end an answer and which are dropped before decoding.

        Chat specials (<|im_end|>, padding, vision tokens) are dropped; the completion's own tags are
        kept even when a fine-tuned tokenizer registers them as special tokens.
        """
        tok = self.processor.tokenizer
        keep: set[int] = set()
        for t in SPECIAL_TOKENS:
            tid = tok.convert_tokens_to_ids(t)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                keep.add(tid)
        self._drop_ids = {int(i) for i in tok.all_special_ids} - keep
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            eos_ids.add(tok.eos_token_id)
        self._eos_ids = {int(i) for i in eos_ids} - keep
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self._eos_ids), 0)

    def decode(self, ids: Sequence[int]) -> str:
        """Generated ids → answer text (cut at the first end-of-turn, chat specials removed)."""
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i in self._eos_ids:
                break
            if i not in self._drop_ids:
                out.append(i)
        return self.processor.tokenizer.decode(
            out, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    # -- queue ---------------------------------------------------------------------------------------
    def _new_future(self) -> Future[Annotation]:
        return _FlushingFuture(self)

    def _dispatch(self, job: VlmJob) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("annotator is closing")
            self._queue.append((self._seq, job))
            self._seq += 1
            self._cond.notify_all()

    def flush(self) -> None:
        """Let every sample submitted so far run, in partial batches if need be."""
        with self._cond:
            self._flush_upto = self._seq
            self._cond.notify_all()

    def _ready(self) -> bool:
        if not self._queue:
            return self._stopping
        return (
            len(self._queue) >= self.spec.batch_size or self._queue[0][0] < self._flush_upto or self._stopping
        )

    def _take(self) -> list[VlmJob]:
        bs = self.spec.batch_size
        if len(self._queue) >= bs or self._stopping:
            n = min(bs, len(self._queue))
        else:
            n = sum(1 for seq, _ in self._queue[:bs] if seq < self._flush_upto)
        batch, self._queue = self._queue[:n], self._queue[n:]
        return [job for _, job in batch]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    self._cond.wait()
                if not self._queue:  # stopping and drained
                    return
                batch = self._take()
            try:
                self._run_batch(batch)
            except Exception as exc:  # the thread must survive: a dead one would hang every future
                for j in batch:
                    if not j.future.done():
                        self._fail(j, f"error:{type(exc).__name__}")

    # -- generation ----------------------------------------------------------------------------------
    def _run_batch(self, jobs: list[VlmJob]) -> None:
        pending = jobs
        while pending:
            attempt = pending[0].attempts
            for j in pending:
                j.attempts += 1
                if attempt > 0:
                    self._stats.add("retries")
            try:
                texts = self._generate(pending, attempt)
            except Exception as exc:  # OOM, a processor error…: these samples fall back, not the run
                log.warning("qwen-vl annotator: generation failed (%s); template used", type(exc).__name__)
                for j in pending:
                    self._fail(j, f"error:{type(exc).__name__}")
                return
            retry: list[VlmJob] = []
            for j, text in zip(pending, texts):
                try:
                    outcome = self._attempt_outcome(j, text)
                    if not isinstance(outcome, str):
                        self._succeed(j, outcome)
                        continue
                    j.last_reason = outcome
                    if self._can_retry(j):
                        retry.append(j)
                    else:
                        self._fail(j, outcome)
                except Exception as exc:
                    self._fail(j, f"error:{type(exc).__name__}")
            pending = retry

    def _messages(self, job: VlmJob) -> list[dict[str, Any]]:
        from PIL import Image

        content: list[dict[str, Any]] = []
        for image in (job.image, job.target):  # input first, then the retouched target
            if isinstance(image, (bytes, bytearray, memoryview)):
                with Image.open(io.BytesIO(bytes(image))) as im:
                    content.append({"type": "image", "image": im.convert("RGB")})
            elif image is not None:
                content.append({"type": "image", "image": Image.fromarray(to_uint8(image), "RGB")})
        content.append({"type": "text", "text": job.user})
        return [{"role": "system", "content": job.system}, {"role": "user", "content": content}]

    def _generate(self, jobs: list[VlmJob], attempt: int) -> list[str]:
        """One batched generate() → one answer text per job."""
        import torch
        from qwen_vl_utils import process_vision_info

        conversations = [self._messages(j) for j in jobs]
        texts = [
            self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        images, videos = process_vision_info(conversations, image_patch_size=self.patch_size)[:2]
        inputs = self.processor(text=texts, images=images, videos=videos, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        temperature = self.attempt_temperature(attempt)
        kwargs: dict[str, Any] = {"max_new_tokens": self.spec.max_new_tokens, "pad_token_id": self._pad_id}
        if temperature > 0:
            torch.manual_seed(derive_seed(*(j.seed for j in jobs), attempt))
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        self._stats.add("requests_sent", len(jobs))
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        return [self.decode(ids) for ids in new]

    def close(self) -> None:
        """Run what is queued (futures complete), then stop the generation thread."""
        super().close()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
