"""Real-format samples for the shard, index, manifest and audit tests: JPEGs of a real photo and
schema-valid records (one helper, shared, so the tests agree on what a valid record is)."""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from aether_data.contract import TASK_TOKENS


@cache
def photo(size: tuple[int, int]) -> np.ndarray:
    """scikit-image's astronaut (public domain) at ``size`` (width, height)."""
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize(size, Image.Resampling.BILINEAR))


def jpeg(gain: float = 1.0, size: tuple[int, int] = (64, 64)) -> bytes:
    """The photo with its values scaled by ``gain`` (a visible, deterministic edit), as JPEG q95."""
    arr = np.clip(photo(size).astype(np.float32) * gain, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_record(key: str, seed: int | None = None) -> dict[str, Any]:
    """A record that `manifests/sample.schema.json` accepts; param records carry a protocol, style
    records a preset; ``seed`` defaults to the key's index."""
    workflow, index = key.split("_")
    from aether_data.build.record import EXPERT_REF_EMPTY, preset_record
    from aether_data.params import PARAM_NAMES

    return {
        "key": key,
        "task": TASK_TOKENS[workflow],
        "workflow": workflow,
        "protocol": "light+globalcolor" if workflow == "param" else "",
        "instructions": ["Make it warmer and brighter."],
        "prompt": "",
        "completion": "<plan_light_start>+exposure<plan_light_end><retouch_light><retouch_color&temp><retouch_colormixer>",
        "reasoning": {
            "elements": "",
            "problems": {"light": "", "globalcolor": "", "specificcolor": ""},
            "plans": {"light": "+exposure", "globalcolor": "warmer", "specificcolor": ""},
        },
        "params": dict.fromkeys(PARAM_NAMES, 0.0),
        "params_origin": "",
        "masks": [1, 1, 0],
        "preset": preset_record(
            {"id": "p1", "name": "Warm", "primary": "warm", "fine": "warm-soft"}
            if workflow == "style"
            else None
        ),
        "expert_ref": dict(EXPERT_REF_EMPTY),
        "source": {"uri": f"mem://{key}", "sha256": "ab" * 32, "width": 64, "height": 64, "license": ""},
        "image": {"width": 64, "height": 64, "format": "jpg"},
        "scores": {"source": 5.0},
        "annotator": {
            "name": "template",
            "model": "",
            "prompt_version": "",
            "attempts": 0,
            "fallback_reason": "",
            "variants": "",
        },
        "seed": int(index) if seed is None else seed,
        "generator": {"name": "aether-test", "version": "0"},
    }
