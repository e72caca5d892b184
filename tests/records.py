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
    return {
        "key": key,
        "task": TASK_TOKENS[workflow],
        "workflow": workflow,
        "protocol": "light+globalcolor" if workflow == "param" else None,
        "instructions": ["Make it warmer and brighter."],
        "completion": "<plan_light_start>+exposure<plan_light_end><retouch_light><retouch_color&temp><retouch_colormixer>",
        "reasoning": {
            "elements": None,
            "problems": {"light": None, "globalcolor": None, "specificcolor": None},
            "plans": {"light": "+exposure", "globalcolor": "warmer", "specificcolor": None},
        },
        "params": None,
        "masks": [1, 1, 0],
        "preset": {"id": "p1", "name": "Warm", "primary": "warm", "fine": "warm-soft"}
        if workflow == "style"
        else None,
        "expert_ref": None,
        "source": {"uri": f"mem://{key}", "sha256": "ab" * 32, "width": 64, "height": 64},
        "scores": {"source": 5.0},
        "seed": int(index) if seed is None else seed,
        "generator": {"name": "aether-test", "version": "0"},
    }
