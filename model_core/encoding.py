"""Encoding a raw shard sample for the VLM: decoding, the official prompt, tokenisation, batching.

Official qwen_2 chat turns: system, user (``<image>`` placeholder expanded to the vision tower's
token count, then the task prompt; the *param* prompt carries no image: the parameters alone
determine the edit), assistant = the tagged completion + ``<|im_end|>``. Labels are -100 everywhere
but the assistant turn.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from aether_data.contract import TASK_TOKENS, build_prompt

TASK_OF_TOKEN: dict[str, str] = {v: k for k, v in TASK_TOKENS.items()}
IMAGE_PLACEHOLDER = "<image>"


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes → float32 HxWx3 RGB in [0, 1]."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        from PIL import Image

        arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1]
    return np.ascontiguousarray(arr[..., ::-1], dtype=np.float32) / 255.0


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Square resize (area filter when shrinking); the renderer is per-pixel, so aspect is free."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def vision_pixels(img: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """FastVLM input: pad to a square with the mean colour (LLaVA "pad" mode), resize, normalise."""
    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.empty((side, side, 3), dtype=np.float32)
    canvas[:] = np.asarray(mean, dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = img
    sq = resize(canvas, size)
    out = (sq - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def official_vision_pixels(
    img: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float], short_edge: int = 512
) -> torch.Tensor:
    """The official VLM input (``resize2_512p`` + ``process_images_``), in 8-bit PIL like the
    original: short edge to `short_edge` with LANCZOS (long edge truncated), centred on a square of
    the mean colour, bicubic resize to `size`, /255, normalised."""
    from PIL import Image

    pil = Image.fromarray((np.clip(img[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    w, h = pil.size
    tw, th = (short_edge, int(h * (short_edge / w))) if w <= h else (int(w * (short_edge / h)), short_edge)
    pil = pil.resize((tw, th), Image.Resampling.LANCZOS)
    side = max(tw, th)
    canvas = Image.new("RGB", (side, side), tuple(int(m * 255) for m in mean))
    canvas.paste(pil, ((side - tw) // 2, (side - th) // 2))
    sq = np.asarray(canvas.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    out = (sq - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def task_prompt(
    record: Mapping[str, Any],
    rng: np.random.Generator,
    style_instruction: str = "random",
    param_instruction: str = "official",
) -> str:
    """The official user prompt (task token + request) for a record."""
    workflow = str(record["workflow"])
    if workflow == "param":
        if param_instruction == "random" and len(record.get("instructions") or []) > 1:
            instructions = list(record["instructions"])
            return build_prompt("param", instruction=instructions[int(rng.integers(len(instructions)))])
        prompt = record.get("prompt")
        if prompt:
            return str(prompt)
        return build_prompt("param", instruction=str(record["instructions"][0]))
    if workflow == "style":
        instructions = list(record["instructions"])
        pick = (
            instructions[int(rng.integers(len(instructions)))]
            if style_instruction == "random"
            else instructions[0]
        )
        return build_prompt("style", instruction=pick)
    return str(record.get("prompt") or build_prompt("auto"))


def task_has_image(workflow: str) -> bool:
    """Param prompts carry no image: the parameters alone define the edit (align learns latents from
    them); auto and style need to see the photo."""
    return workflow != "param"


def chat_text(prompt: str, has_image: bool, system: str) -> str:
    """qwen_2 chat template up to the assistant's turn (generation prompt included)."""
    user = f"{IMAGE_PLACEHOLDER}\n{prompt}" if has_image else prompt
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


@dataclass
class TokenSpec:
    """What the encoder needs from the model (picklable for DataLoader workers)."""

    tokenizer: Any
    image_token_id: int
    image_tokens: int
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    render_size: int
    system_prompt: str
    max_length: int
    pad_id: int

    @classmethod
    def from_model(cls, model: Any) -> TokenSpec:
        c = model.config
        return cls(
            tokenizer=model.tokenizer,
            image_token_id=model.image_token_id,
            image_tokens=model.image_tokens,
            image_size=c.image_size,
            image_mean=tuple(c.image_mean),
            image_std=tuple(c.image_std),
            render_size=model.renderer_spec.render_size,
            system_prompt=c.system_prompt,
            max_length=c.max_length,
            pad_id=model.pad_id,
        )

    def prompt_ids(self, prompt: str, has_image: bool) -> list[int]:
        """Token ids of the chat prefix, the image placeholder expanded to `image_tokens` copies."""
        ids = self.tokenizer(chat_text(prompt, has_image, self.system_prompt), add_special_tokens=False)[
            "input_ids"
        ]
        out: list[int] = []
        for t in ids:
            out.extend([t] * self.image_tokens if t == self.image_token_id else [t])
        return out

    def completion_ids(self, completion: str) -> list[int]:
        # the official trainer (train_qwen.preprocess_qwen_2) labels the separator "<|im_end|>\n" too
        return self.tokenizer(completion + "<|im_end|>\n", add_special_tokens=False)["input_ids"]


def encode_sample(
    raw: Mapping[str, Any],
    spec: TokenSpec,
    rng: np.random.Generator,
    style_instruction: str = "random",
    param_instruction: str = "official",
) -> dict[str, Any] | None:
    """Raw shard sample → training features; None when the sequence exceeds `max_length`."""
    record = json.loads(raw["json"])
    workflow = str(record["workflow"])
    prompt = task_prompt(record, rng, style_instruction, param_instruction)
    has_image = task_has_image(workflow)
    p_ids = spec.prompt_ids(prompt, has_image)
    c_ids = spec.completion_ids(str(record["completion"]))
    if len(p_ids) + len(c_ids) > spec.max_length:
        return None
    inp = decode_image(raw["input.jpg"])
    tgt = decode_image(raw["target.jpg"])
    return {
        "key": str(raw.get("__key__", record.get("key"))),
        "task": workflow,
        "prompt": prompt,
        "completion": str(record["completion"]),
        "prompt_ids": p_ids,
        "input_ids": p_ids + c_ids,
        "labels": [-100] * len(p_ids) + c_ids,
        "pixel_values": vision_pixels(inp, spec.image_size, spec.image_mean, spec.image_std)
        if has_image
        else None,
        "render_in": to_chw(resize(inp, spec.render_size)),
        "render_tgt": to_chw(resize(tgt, spec.render_size)),
        "masks": torch.tensor([float(m) for m in record.get("masks", [1, 1, 1])], dtype=torch.float32),
    }


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded batch. `pixel_values` stacks only the rows with an image (`image_rows`), in row
    order, matching the order in which placeholders are filled."""
    width = max(len(f["input_ids"]) for f in features)
    n = len(features)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    att = torch.zeros((n, width), dtype=torch.long)
    for i, f in enumerate(features):
        L = len(f["input_ids"])
        ids[i, :L] = torch.tensor(f["input_ids"])
        labels[i, :L] = torch.tensor(f["labels"])
        att[i, :L] = 1
    rows = [i for i, f in enumerate(features) if f["pixel_values"] is not None]
    return {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": att,
        "pixel_values": torch.stack([features[i]["pixel_values"] for i in rows]) if rows else None,
        "image_rows": rows,
        "render_in": torch.stack([f["render_in"] for f in features]),
        "render_tgt": torch.stack([f["render_tgt"] for f in features]),
        "masks": torch.stack([f["masks"] for f in features]),
        "tasks": [f["task"] for f in features],
        "keys": [f["key"] for f in features],
        "prompts": [f["prompt"] for f in features],
        "completions": [f["completion"] for f in features],
        "prompt_ids": [f["prompt_ids"] for f in features],
    }


class Collate:
    """Picklable collate function bound to a pad id."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate(features, self.pad_id)
