"""Image → style-category matching: which fine categories suit a photo.

Three matchers share one interface, ``scores(image) -> {fine name: score}`` (higher = better):

- ``HeuristicMatcher`` (default): cheap image statistics (skin, sky, foliage, water, snow,
  brightness, colourfulness, warm light, edge density) → scene-type scores → fine-category scores
  through each category's ``scenes`` in the taxonomy.
- ``ClipMatcher``: open_clip zero-shot from a local checkpoint: prompts for the scene types and
  for every fine category, combined the same way.
- ``QwenVLMatcher``: a Qwen2.5-VL prompt listing the categories; the answer's category names (in
  order) become the ranking. Generation sits behind ``generate_fn`` so it is testable, and any
  answer without a known category falls back to the heuristic ranking (counted in ``fallbacks``).

All matchers are deterministic for a given image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from aether_data.develop.color import chroma_and_saturation, hue_degrees, luminance, skin_weight, to_opponent
from aether_data.io.imaging import as_float01, shrink_to, to_pil_rgb
from aether_data.presets.taxonomy import Taxonomy, load_taxonomy

SCENE_WEIGHTS: tuple[float, ...] = (1.0, 0.75, 0.6, 0.5, 0.4)
"""A category's first listed scene type counts most."""


class Matcher(Protocol):
    """Scores every fine category for an image."""

    name: str

    def scores(self, image: np.ndarray) -> dict[str, float]: ...


def top_categories(scores: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The k best (name, score) pairs; ties broken by name so the order is stable."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: max(1, int(k))]


class SceneWeights:
    """Fine-category score = weighted mean of its scene types' scores (first scene weighted most),
    as one (fine × scene) matrix built once per taxonomy: a matrix-vector product per image instead
    of a Python loop over 193 categories (~1 ms a sample)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.names = [f.name for f in taxonomy.fine]
        self.scenes = sorted({s for f in taxonomy.fine for s in f.scenes})
        column = {s: j for j, s in enumerate(self.scenes)}
        self.matrix = np.zeros((len(self.names), len(self.scenes)), dtype=np.float64)
        for i, f in enumerate(taxonomy.fine):
            w = SCENE_WEIGHTS[: len(f.scenes)] + (SCENE_WEIGHTS[-1],) * max(
                0, len(f.scenes) - len(SCENE_WEIGHTS)
            )
            for wi, s in zip(w, f.scenes):
                self.matrix[i, column[s]] += wi / sum(w)

    def __call__(self, scene: Mapping[str, float]) -> dict[str, float]:
        vec = np.array([float(scene.get(s, 0.0)) for s in self.scenes], dtype=np.float64)
        return dict(zip(self.names, (self.matrix @ vec).tolist()))


def fine_scores_from_scenes(taxonomy: Taxonomy, scene: Mapping[str, float]) -> dict[str, float]:
    """Fine-category score = weighted mean of its scene types' scores (first scene weighted most)."""
    return SceneWeights(taxonomy)(scene)


# ==================================================================================================
# Heuristic
# ==================================================================================================
def _frac(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def image_features(image: np.ndarray) -> dict[str, float]:
    """Global statistics of a photo (on a ≤128 px copy): fractions of skin, sky, foliage, water,
    snow, warm light; brightness, contrast, colourfulness, warmth, edge density, darkness."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    scale = 128.0 / max(h, w)
    if scale < 1.0:  # shrink first (in 8 bits for uint8 input), convert the thumbnail
        img = shrink_to(img, max(8, round(w * scale)), max(8, round(h * scale)))
    img = as_float01(img)
    h, w = img.shape[:2]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    y = luminance(r, g, b)
    _, a, bb = to_opponent(r, g, b)
    _, sat = chroma_and_saturation(r, g, b, a, bb)
    hue = hue_degrees(a, bb)
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), dtype=np.float32)
    top, bottom = rows < 0.45, rows > 0.5
    coloured = sat > 0.15
    skin = skin_weight(hue, sat) > 0.5
    skin &= (y > 0.2) & (y < 0.9)
    blue = (hue > 185) & (hue < 255) & coloured
    sky = (blue & (y > 0.35) & top) | (top & (sat < 0.1) & (y > 0.75))
    foliage = (hue > 70) & (hue < 165) & coloured & (y > 0.08)
    water = blue & bottom
    snow = (y > 0.75) & (sat < 0.1)
    warm_light = (hue < 60) & (sat > 0.35) & (y > 0.35)
    autumn = (hue > 10) & (hue < 55) & (sat > 0.45) & (y > 0.2)
    pink = ((hue > 290) | (hue < 10)) & (sat > 0.3)
    rg = r - g
    yb = 0.5 * (r + g) - b
    colourful = float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
    gray8 = np.clip(y * 255.0, 0, 255).astype(np.uint8)
    edges = _frac(cv2.Canny(gray8, 60, 150) > 0)
    bright_points = _frac(y > 0.6)
    return {
        "brightness": float(y.mean()),
        "contrast": float(y.std()),
        "colourfulness": colourful,
        "warmth": float((r - b).mean()),
        "skin": _frac(skin),
        "sky": _frac(sky),
        "foliage": _frac(foliage),
        "water": _frac(water),
        "snow": _frac(snow),
        "warm_light": _frac(warm_light),
        "autumn": _frac(autumn),
        "pink": _frac(pink),
        "edges": edges,
        "dark": _frac(y < 0.15),
        "bright_points": bright_points,
    }


def scene_scores(f: Mapping[str, float]) -> dict[str, float]:
    """Scene-type likelihoods in [0, 1] from ``image_features`` (hand-set, documented weights)."""

    def c(x: float) -> float:
        return float(min(max(x, 0.0), 1.0))

    people = c(f["skin"] * 5.0)
    nature = c(f["foliage"] * 2.5 + f["sky"] * 1.5)
    built = c(f["edges"] * 6.0) * (1.0 - 0.6 * nature) * (1.0 - 0.5 * people)
    night = c((0.3 - f["brightness"]) * 5.0) * c(f["dark"] * 2.0)
    vivid = c(f["colourfulness"] * 3.0)
    bright = c((f["brightness"] - 0.35) * 3.0)
    return {
        "portrait": c(f["skin"] * 7.0),
        "people": people,
        "wedding": people * (0.4 + 0.6 * bright),
        "fashion": people * (0.5 + 0.5 * c(f["contrast"] * 3.0)),
        "landscape": nature * (1.0 - 0.7 * people),
        "mountains": c(f["sky"] * 2.0) * (1.0 - 0.5 * people) * (0.6 + 0.4 * c(1.0 - f["foliage"] * 3.0)),
        "forest": c(f["foliage"] * 3.5) * (1.0 - 0.5 * people),
        "beach": c(f["sky"] * 1.5 + f["water"] * 2.0) * (0.5 + 0.5 * bright),
        "sea": c(f["water"] * 3.5),
        "sky": c(f["sky"] * 3.0),
        "sunset": c(f["warm_light"] * 4.0) * (0.5 + 0.5 * c(f["sky"] * 3.0 + 0.3)),
        "night": night,
        "city": built * (0.6 + 0.4 * c(f["sky"] * 3.0)),
        "street": built * (0.6 + 0.4 * people + 0.2),
        "architecture": built,
        "interior": c(f["warmth"] * 4.0 + 0.2)
        * (1.0 - c(f["sky"] * 3.0))
        * (1.0 - nature)
        * (0.5 + 0.5 * c(f["edges"] * 5.0)),
        "food": c(f["warm_light"] * 2.0 + f["autumn"] * 2.0) * vivid * (1.0 - nature) * (1.0 - 0.7 * people),
        "product": c(1.0 - f["colourfulness"] * 4.0) * (1.0 - nature) * (1.0 - people) * (0.5 + 0.5 * bright),
        "snow": c(f["snow"] * 3.0),
        "autumn": c(f["autumn"] * 3.0) * (0.4 + 0.6 * nature),
        "spring": c(f["pink"] * 3.0 + f["foliage"] * 1.0) * (0.5 + 0.5 * bright),
        "summer": bright * vivid * (0.5 + 0.5 * nature),
        "flowers": c(f["pink"] * 4.0) * vivid,
        "travel": 0.35 + 0.3 * c(f["sky"] * 3.0) + 0.2 * built,
        "animals": c(f["warmth"] * 3.0) * (1.0 - people) * (1.0 - built) * 0.6,
        "astro": night * c(1.0 - f["colourfulness"] * 3.0) * (0.5 + 0.5 * c(f["bright_points"] * 20.0)),
    }


class HeuristicMatcher:
    """Image statistics → scene types → fine categories (no model, deterministic, ~ms per image)."""

    name = "heuristic"

    def __init__(self, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.to_fine = SceneWeights(self.taxonomy)

    def scene_scores(self, image: np.ndarray) -> dict[str, float]:
        return scene_scores(image_features(image))

    def scores(self, image: np.ndarray) -> dict[str, float]:
        return self.to_fine(self.scene_scores(image))


# ==================================================================================================
# open_clip zero-shot
# ==================================================================================================
def _split_model_spec(spec: str) -> tuple[str, str | None]:
    """ "local-dir:/p" / a directory with open_clip_config.json → ("local-dir:/p", None);
    "ARCH:/path/weights" → ("ARCH", "/path/weights")."""
    p = Path(spec)
    if spec.startswith("local-dir:"):
        return spec, None
    if p.is_dir():
        return f"local-dir:{p}", None
    if ":" in spec:
        arch, path = spec.split(":", 1)
        if len(arch) > 1 and path:  # "C:\..." is a Windows drive, not an architecture
            return arch, path
    raise ValueError(
        f"clip matcher_model {spec!r}: give 'ARCH:/path/to/weights' (an open_clip architecture and a "
        "local checkpoint) or a local directory holding open_clip_config.json and its weights"
    )


class ClipMatcher:
    """open_clip zero-shot: ``create_model_and_transforms(arch, pretrained=<local file>)``.

    Scene prompts give scene-type probabilities (softmax over the 26 scene types) which feed
    ``fine_scores_from_scenes``; direct category prompts add a smaller share (``direct_weight``).
    Text features are computed once at construction.
    """

    name = "clip"

    def __init__(
        self,
        arch: str,
        checkpoint: str | None = None,
        taxonomy: Taxonomy | None = None,
        device: str = "cpu",
        direct_weight: float = 0.3,
    ) -> None:
        import open_clip
        import torch

        self.taxonomy = taxonomy or load_taxonomy()
        self.to_fine = SceneWeights(self.taxonomy)
        self.device = device
        self.direct_weight = float(direct_weight)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"clip checkpoint not found: {checkpoint}")
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=checkpoint, device=device
        )
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.scene_names = list(self.taxonomy.scenes)
        scene_prompts = [f"a photo of {self.taxonomy.scenes[s]}" for s in self.scene_names]
        fine_prompts = [f"a photo suited to a {f.name} edit: {f.description}" for f in self.taxonomy.fine]
        with torch.no_grad():
            self.scene_text = self._encode_text(scene_prompts)
            self.fine_text = self._encode_text(fine_prompts)
            self.logit_scale = (
                float(model.logit_scale.exp().clamp(max=100.0)) if hasattr(model, "logit_scale") else 100.0
            )

    @classmethod
    def from_spec(cls, spec: str, taxonomy: Taxonomy | None = None, device: str = "cpu") -> ClipMatcher:
        """Build from a ``style.matcher_model`` string (see ``_split_model_spec``)."""
        arch, ckpt = _split_model_spec(spec)
        return cls(arch, ckpt, taxonomy, device)

    def _encode_text(self, prompts: Sequence[str]) -> Any:
        tokens = self.tokenizer(list(prompts)).to(self.device)
        feats = self.model.encode_text(tokens).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def image_embedding(self, image: np.ndarray) -> Any:
        """L2-normalised image features for an HxWx3 float image in [0, 1]."""
        import torch

        x = self.preprocess(to_pil_rgb(image)).unsqueeze(0).to(self.device)
        with torch.no_grad():
            feats = self.model.encode_image(x).float()
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-6)

    def scores(self, image: np.ndarray) -> dict[str, float]:
        emb = self.image_embedding(image)
        scene_p = (self.logit_scale * emb @ self.scene_text.T).softmax(dim=-1)[0].cpu().numpy()
        fine_p = (self.logit_scale * emb @ self.fine_text.T).softmax(dim=-1)[0].cpu().numpy()
        scene = {s: float(p) * len(self.scene_names) for s, p in zip(self.scene_names, scene_p)}
        via_scene = self.to_fine(scene)
        n = len(self.taxonomy.fine)
        return {
            f.name: (1 - self.direct_weight) * via_scene[f.name] + self.direct_weight * float(fine_p[i]) * n
            for i, f in enumerate(self.taxonomy.fine)
        }


# ==================================================================================================
# Qwen2.5-VL
# ==================================================================================================
def build_qwen_prompt(taxonomy: Taxonomy, k: int = 3) -> str:
    """The instruction text: every primary family with its fine categories, then the answer format."""
    lines = [
        "You are a photo editor choosing Lightroom preset styles for this photo.",
        f"Pick the {k} style categories that would suit the photo best, from this list:",
    ]
    for p in taxonomy.primary:
        lines.append(f"{p.name}: " + "; ".join(f.name for f in p.fine))
    lines.append(
        f"Answer with exactly {k} category names from the list, one per line, best first, nothing else."
    )
    return "\n".join(lines)


def parse_category_answer(answer: str, taxonomy: Taxonomy) -> list[str]:
    """Known fine-category names in the order the answer mentions them (case-insensitive, each once)."""
    text = answer.lower()
    found: list[tuple[int, int, str]] = []
    for f in taxonomy.fine:
        for m in re.finditer(re.escape(f.name.lower()), text):
            found.append((m.start(), -len(f.name), f.name))
    found.sort()
    out: list[str] = []
    covered_until = -1
    for start, neg_len, name in found:
        if start < covered_until:  # a shorter name inside a longer match
            continue
        covered_until = start - neg_len
        if name not in out:
            out.append(name)
    return out


def qwen_generate(
    model: Any, processor: Any, messages: list[dict[str, Any]], max_new_tokens: int = 64
) -> str:
    """One greedy Qwen2.5-VL generation for chat ``messages`` (the official qwen-vl-utils recipe)."""
    import torch
    from qwen_vl_utils import process_vision_info

    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_inputs, video_inputs = process_vision_info(messages)
    inputs = processor(
        text=[text], images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt"
    )
    inputs = inputs.to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    trimmed = out[:, inputs["input_ids"].shape[1] :]
    return processor.batch_decode(trimmed, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


class QwenVLMatcher:
    """Qwen2.5-VL lists the best categories; their order becomes the score (1, 1/2, 1/3, ...) added to
    a small share of the heuristic scores so every category still has a rank."""

    name = "qwen-vl"

    def __init__(
        self,
        model_path: str | None = None,
        taxonomy: Taxonomy | None = None,
        k: int = 3,
        device: str = "cpu",
        generate_fn: Callable[[list[dict[str, Any]]], str] | None = None,
        image_side: int = 448,
        max_new_tokens: int = 64,
    ) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.k = k
        self.image_side = image_side
        self.prompt = build_qwen_prompt(self.taxonomy, k)
        self.heuristic = HeuristicMatcher(self.taxonomy)
        self.fallbacks = 0
        if generate_fn is None:
            if not model_path:
                raise ValueError("the qwen-vl matcher needs style.matcher_model (a local Qwen2.5-VL folder)")
            from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_path).to(device).eval()
            processor = AutoProcessor.from_pretrained(model_path)

            def generate_fn(messages: list[dict[str, Any]]) -> str:
                return qwen_generate(model, processor, messages, max_new_tokens)

        self.generate_fn = generate_fn

    def messages(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Chat messages with the (downscaled) photo and the category prompt."""

        img = as_float01(image)
        h, w = img.shape[:2]
        s = self.image_side / max(h, w)
        if s < 1:
            img = cv2.resize(
                img, (max(28, round(w * s)), max(28, round(h * s))), interpolation=cv2.INTER_AREA
            )
        pil = to_pil_rgb(img)
        return [
            {
                "role": "user",
                "content": [{"type": "image", "image": pil}, {"type": "text", "text": self.prompt}],
            }
        ]

    def scores(self, image: np.ndarray) -> dict[str, float]:
        base = self.heuristic.scores(image)
        answer = self.generate_fn(self.messages(image))
        picked = parse_category_answer(str(answer), self.taxonomy)
        if not picked:
            self.fallbacks += 1
            return base
        out = {name: 0.1 * v for name, v in base.items()}
        for rank, name in enumerate(picked):
            out[name] += 1.0 / (rank + 1)
        return out


def make_matcher(
    kind: str, model: str | None = None, taxonomy: Taxonomy | None = None, device: str = "cpu"
) -> Matcher:
    """Matcher by name ("heuristic" | "clip" | "qwen-vl"); ``model`` is ``style.matcher_model``."""
    if kind == "heuristic":
        return HeuristicMatcher(taxonomy)
    if kind == "clip":
        if not model:
            raise ValueError(
                "the clip matcher needs style.matcher_model ('ARCH:/path/weights' or a local open_clip folder)"
            )
        return ClipMatcher.from_spec(model, taxonomy, device)
    if kind == "qwen-vl":
        return QwenVLMatcher(model, taxonomy, device=device)
    raise ValueError(f"unknown matcher {kind!r}; use heuristic, clip or qwen-vl")


__all__ = [
    "ClipMatcher",
    "HeuristicMatcher",
    "Matcher",
    "QwenVLMatcher",
    "SceneWeights",
    "build_qwen_prompt",
    "fine_scores_from_scenes",
    "image_features",
    "make_matcher",
    "parse_category_answer",
    "qwen_generate",
    "scene_scores",
    "top_categories",
]
