"""Retouching with a trained VeraRetouch model, and evaluation on our shards.

`retouch` picks the task from what it is given, as the official inference does: parameters → the
param prompt (no image shown to the VLM), a free-text prompt → style, nothing → auto; a prompt that
already starts with a task token is used verbatim. The VLM writes the tagged completion, the three
retouch tokens' predecessors' hidden states become latents (groups whose plan says "No change
needed." are masked off), and the renderer retouches the photo at full resolution through a baked 3D
LUT (a per-pixel model is a colour map). If generation stops without the retouch tokens they are
appended, so an image always comes back; `RetouchResult.valid` says whether the text was well-formed.

Models loaded from the official release folder use the official recipe instead (`ModelConfig.recipe`,
`model_core.official_vlm`): sampling at T 0.2 / top-p 0.8, masks all on for auto/style and from the
parameters for param, the 512 short-edge pre-resize of the VLM image, a direct per-pixel render.
Every one of these can still be overridden per call (temperature, top_p, lut).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from aether_data import params as P
from aether_data.contract import TASK_TOKENS, is_valid_completion
from aether_data.io.atomic import atomic_write_text
from model_core import metrics as M
from model_core.completions import completion_text, force_retouch, masks_from_completion
from model_core.encoding import (
    TokenSpec,
    decode_image,
    official_vision_pixels,
    task_has_image,
    task_prompt,
    vision_pixels,
)
from model_core.model_io import load_model, resolve_model_dir, weights_stamp
from model_core.official_vlm import (
    OFFICIAL_MAX_NEW_TOKENS,
    OFFICIAL_SHORT_EDGE,
    OFFICIAL_TEMPERATURE,
    OFFICIAL_TOP_P,
    official_masks,
)
from model_core.renderer import apply_lut_numpy
from model_core.shards import iter_records
from model_core.vlm import VeraRetouch

LUT_MIN_PIXELS = 1 << 20
"""Images with at least this many pixels are retouched through a baked LUT (else directly)."""

_MODELS: dict[tuple[str, float, str], VeraRetouch] = {}


def get_model(model: str | Path | VeraRetouch, device: str = "cpu") -> VeraRetouch:
    """A loaded model (cached per directory, weights mtime and device)."""
    if isinstance(model, VeraRetouch):
        return model
    d = resolve_model_dir(model)
    key = (str(d.resolve()), weights_stamp(d), device)
    if key not in _MODELS:
        _MODELS[key] = load_model(d, device)
    return _MODELS[key]


def read_image(image: str | Path | np.ndarray) -> np.ndarray:
    """Path or array (uint8 / uint16 / float, HxWx3 or HxWx4) → float32 HxWx3 RGB in [0, 1]."""
    if isinstance(image, (str, Path)):
        arr = cv2.imread(str(image), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
        if arr is None:
            raise FileNotFoundError(f"{image}: cannot read image")
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        arr = arr[..., :3][..., ::-1]
    else:
        arr = np.asarray(image)
    from model_core.retouch import as_float_image

    return np.ascontiguousarray(as_float_image(arr))


def resolve_request(
    prompt: str | None = None, params: Mapping[str, float] | str | Path | None = None
) -> tuple[str, str]:
    """(workflow, user prompt) from the user's inputs (see module docstring)."""
    from aether_data.contract import build_prompt

    if params is not None and prompt is not None:
        raise ValueError("give a prompt or parameters, not both")
    values = _param_values(params)
    if values is not None:
        return "param", build_prompt("param", params=values)
    if prompt is not None and prompt.strip():
        text = " ".join(prompt.split())
        for wf, tok in TASK_TOKENS.items():
            if text.startswith(tok):
                return wf, prompt.strip()  # a full prompt: keep its line breaks (official prompts have them)
        return "style", build_prompt("style", instruction=text)
    return "auto", build_prompt("auto")


def _param_values(params: Mapping[str, float] | str | Path | None) -> dict[str, float] | None:
    """Slider-scale parameters from a mapping or a param.json path (official ±100 scale)."""
    if params is None:
        return None
    return P.read_param_json(params) if isinstance(params, (str, Path)) else P.validate(params)


def is_official_recipe(model: VeraRetouch) -> bool:
    """Whether the model runs with the official inference recipe (see module docstring)."""
    return getattr(model.config, "recipe", "aether") == "official"


@dataclass
class RetouchResult:
    """Everything one retouch produced."""

    image: np.ndarray
    completion: str
    """The generated text, plus the retouch tokens when they had to be appended."""
    workflow: str
    prompt: str
    masks: list[int]
    valid: bool
    """The generated text passed the strict format check."""
    forced: bool
    """The retouch tokens were appended (generation stopped or ran out without them)."""
    seconds: float


def _generate(
    model: VeraRetouch,
    items: Sequence[tuple[str, str, np.ndarray]],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
) -> list[tuple[list[int], str, list[int], bool]]:
    """Batch generation for same-task items (workflow, prompt, image) → (full ids, text, masks, forced)."""
    spec = TokenSpec.from_model(model)
    has_image = task_has_image(items[0][0])
    prompts = [spec.prompt_ids(p, has_image) for _, p, _ in items]
    pix = _pixels_for(model, [img for _, _, img in items], items[0][0])
    comps = model.generate_ids(
        prompts, pix, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p
    )
    out = []
    for (wf, _, _), prompt_ids, comp in zip(items, prompts, comps):
        text = completion_text(model, comp)
        full, forced = force_retouch(model, comp)
        out.append((prompt_ids + full, text, masks_from_completion(text, wf), forced > 0))
    return out


@torch.no_grad()
def _latents(
    model: VeraRetouch, seqs: Sequence[list[int]], masks: Sequence[list[int]], pixel: torch.Tensor | None
) -> torch.Tensor:
    dev = next(model.parameters()).device
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), model.pad_id, dtype=torch.long)
    att = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
    out = model(
        input_ids=ids.to(dev),
        attention_mask=att.to(dev),
        pixel_values=pixel,
        masks=torch.tensor(masks, dtype=torch.float32, device=dev),
    )
    return out.z


@torch.no_grad()
def render(model: VeraRetouch, image: np.ndarray, z: torch.Tensor, lut: bool | None = None) -> np.ndarray:
    """Apply R(·; z) to a float HxWx3 image: through a baked LUT for large images, else directly."""
    h, w = image.shape[:2]
    use_lut = lut if lut is not None else h * w >= LUT_MIN_PIXELS
    if use_lut:
        table = model.renderer.bake_lut(z.reshape(1, -1).float())
        return apply_lut_numpy(image, table.cpu().numpy())
    dev = next(model.renderer.parameters()).device
    t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).unsqueeze(0).to(dev)
    out = model.renderer(t, z.reshape(1, -1).float().to(dev))
    return out[0].permute(1, 2, 0).cpu().numpy()


def _pixels_for(model: VeraRetouch, images: Sequence[np.ndarray], workflow: str) -> torch.Tensor | None:
    if not task_has_image(workflow):
        return None
    c = model.config
    dev = next(model.parameters()).device
    if is_official_recipe(model):
        pix = [
            official_vision_pixels(i, c.image_size, c.image_mean, c.image_std, OFFICIAL_SHORT_EDGE)
            for i in images
        ]
    else:
        pix = [vision_pixels(img, c.image_size, c.image_mean, c.image_std) for img in images]
    return torch.stack(pix).to(dev)


def retouch_detailed(
    model: str | Path | VeraRetouch,
    image: str | Path | np.ndarray,
    prompt: str | None = None,
    params: Mapping[str, float] | str | Path | None = None,
    *,
    max_new_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int = 0,
    lut: bool | None = None,
    device: str = "cpu",
) -> RetouchResult:
    """Retouch one photo; see `retouch` (this also returns masks, validity and timing)."""
    t0 = time.perf_counter()
    m = get_model(model, device)
    img = read_image(image)
    workflow, text_prompt = resolve_request(prompt, params)
    torch.manual_seed(seed)
    meta_gen = _generation_defaults(m)
    ((seq, text, masks, forced),) = _generate(
        m,
        [(workflow, text_prompt, img)],
        int(max_new_tokens or meta_gen["max_new_tokens"]),
        float(meta_gen["temperature"] if temperature is None else temperature),
        float(meta_gen["top_p"] if top_p is None else top_p),
    )
    if is_official_recipe(m):
        masks = official_masks(workflow, _param_values(params))
        lut = False if lut is None else lut
    z = _latents(m, [seq], [masks], _pixels_for(m, [img], workflow))
    out = np.clip(render(m, img, z[0], lut), 0.0, 1.0)
    tail = "" if not forced else "".join(m.tokenizer.convert_ids_to_tokens(list(m.retouch_ids)))
    return RetouchResult(
        image=out,
        completion=text + tail,
        workflow=workflow,
        prompt=text_prompt,
        masks=masks,
        valid=is_valid_completion(text, workflow),
        forced=forced,
        seconds=time.perf_counter() - t0,
    )


def _generation_defaults(model: VeraRetouch) -> dict[str, Any]:
    """Decoding settings stored with the model (its training config), else GenerationSpec defaults;
    the official script's settings for the official recipe."""
    from model_core.model_io import model_metadata
    from model_core.vlm_config import GenerationSpec

    gen = GenerationSpec().model_dump()
    if is_official_recipe(model):
        return {**gen, "temperature": OFFICIAL_TEMPERATURE, "top_p": OFFICIAL_TOP_P,
                "max_new_tokens": OFFICIAL_MAX_NEW_TOKENS}  # fmt: skip
    src = getattr(model, "source_dir", None)
    if src is not None:
        try:
            cfg = json.loads(model_metadata(src).get("train_config", "{}"))
            gen.update(cfg.get("generation", {}))
        except (OSError, ValueError):
            pass
    return gen


def retouch(
    model_dir: str | Path | VeraRetouch,
    image: str | Path | np.ndarray,
    prompt: str | None = None,
    params: Mapping[str, float] | str | Path | None = None,
    **kwargs: Any,
) -> tuple[np.ndarray, str]:
    """Retouch a photo → (float32 HxWx3 RGB image in [0, 1], tagged completion).

    `image` is a path or an array; `prompt` a style request (or any text starting with a task
    token); `params` a mapping of Lightroom slider values or a ``param.json`` path (official format).
    Neither = auto retouch. Keyword options: max_new_tokens, temperature (0 = greedy), top_p, seed,
    lut, device.
    """
    res = retouch_detailed(model_dir, image, prompt, params, **kwargs)
    return res.image, res.completion


def save_result(image: np.ndarray, completion: str, out_path: str | Path) -> tuple[Path, Path]:
    """Write the retouched image (8-bit; 16-bit for .tif/.tiff) and the completion next to it (.txt)."""
    p = Path(out_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., ::-1]
    if p.suffix.lower() in (".tif", ".tiff"):
        ok = cv2.imwrite(str(p), (rgb * 65535.0 + 0.5).astype(np.uint16))
    else:
        ok = cv2.imwrite(str(p), (rgb * 255.0 + 0.5).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError(f"{p}: cannot write an image with this extension")
    txt = p.with_suffix(".txt")
    atomic_write_text(txt, completion + "\n")
    return p, txt


def evaluate(
    model_dir: str | Path | VeraRetouch,
    data_dirs: Sequence[str | Path],
    *,
    max_samples: int | None = None,
    tasks: Sequence[str] | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Metrics of the model on every sample of `data_dirs` (shard order, greedy decoding for every
    model, the official recipe's masks for an official model; `max_samples` caps each task).

    Each sample is retouched from its official prompt (style: the first instruction) at the stored
    resolution and compared with its target. Returns {"samples", "tasks": {task: {n, psnr, ssim,
    [lpips,] hist_luminance, hist_contrast, hist_saturation, format_valid}}, "all": {...},
    "lpips_available", "seconds"}.
    """
    t0 = time.perf_counter()
    m = get_model(model_dir, device)
    gen = _generation_defaults(m)
    n_tokens = int(max_new_tokens or gen["max_new_tokens"])
    rng = np.random.default_rng(0)
    rows: dict[str, list[dict[str, float]]] = {}
    pending: dict[str, list[tuple[str, str, np.ndarray, np.ndarray, list[int] | None]]] = {}
    seen: dict[str, int] = {}

    def flush(task: str) -> None:
        items = pending.pop(task, [])
        if not items:
            return
        results = _generate(m, [(wf, p, img) for wf, p, img, _, _ in items], n_tokens, 0.0, 1.0)
        masks = [fixed or r[2] for (*_, fixed), r in zip(items, results)]
        z = _latents(m, [r[0] for r in results], masks, _pixels_for(m, [it[2] for it in items], task))
        for (wf, _, img, tgt, _), (_, text, _, _), zi in zip(items, results, z):
            out = np.clip(render(m, img, zi, lut=False), 0.0, 1.0)
            row = M.image_metrics(out, tgt)
            row["format_valid"] = float(is_valid_completion(text, wf))
            rows.setdefault(wf, []).append(row)

    for task, raw in iter_records(data_dirs, tasks, max_samples):
        record = json.loads(raw["json"])
        prompt = task_prompt(record, rng, "first")
        fixed = None
        if is_official_recipe(m):  # the official masks: the record's parameters decide, not the text
            params = {k: P.denormalise(k, v) for k, v in (record.get("params") or {}).items()}
            fixed = official_masks(task, params)
        pending.setdefault(task, []).append(
            (task, prompt, decode_image(raw["input.jpg"]), decode_image(raw["target.jpg"]), fixed)
        )
        seen[task] = seen.get(task, 0) + 1
        if len(pending[task]) >= batch_size:
            flush(task)
            if log:
                log(f"[eval] {sum(seen.values())} samples")
    for task in list(pending):
        flush(task)
    per_task = {t: {"n": len(r), **M.aggregate(r)} for t, r in sorted(rows.items())}
    everything = [r for rs in rows.values() for r in rs]
    return {
        "model": str(model_dir) if not isinstance(model_dir, VeraRetouch) else "<in-memory>",
        "samples": len(everything),
        "tasks": per_task,
        "all": {"n": len(everything), **M.aggregate(everything)},
        "lpips_available": M.lpips_available(),
        "seconds": time.perf_counter() - t0,
    }
