"""What every workflow shares: the plan row it receives, the pair it returns, source preparation.

A workflow is a pure function of (prepared source image, sample seed, spec): it never touches the
filesystem or the network, so a shard task can retry it and get the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from aether_data.annotate.content import content_stats
from aether_data.config import PipelineSpec
from aether_data.develop.color import luminance
from aether_data.io.imaging import as_float01, box_shrink


@dataclass(frozen=True)
class PlanRow:
    """One planned sample: what to build and from which source, fixed before any work starts."""

    index: int
    key: str
    workflow: str
    shard: str
    seed: int
    source_index: int
    source_uri: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "key": self.key,
            "workflow": self.workflow,
            "shard": self.shard,
            "seed": self.seed,
            "source_index": self.source_index,
            "source_uri": self.source_uri,
        }


INPUT_STATS = "input_stats"
"""`Pair.extra` key: `image_stats` of the pair's input when the workflow already computed them."""


@dataclass
class Pair:
    """A synthesised (input, target) pair plus what is known about how it was made.

    Images are HxWx3 sRGB, float32 in [0, 1] or uint8 (an 8-bit render goes to the encoder as is).
    """

    input: np.ndarray
    target: np.ndarray
    params: dict[str, float] | None
    params_origin: str | None
    protocol: str | None
    masks: list[int]
    preset: dict[str, Any] | None = None
    expert_ref: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Workflow(Protocol):
    """One sample in, one pair out: every hook the build calls, and nothing it probes for.

    ``image`` is float32 in [0, 1], or the decoded uint8 pixels themselves when ``takes_uint8`` is
    True (a workflow that only runs 8-bit passes saves the float conversion).

    ``previews``: the build may call ``draft`` on the quality gates' thumbnail (short edge 128–255
    px) with a copy of the random stream, and gate that preview before drafting at full size. A
    workflow sets it when its draws do not depend on the image's size (the same parameters come out)
    and its edit at thumbnail size predicts the full-size one (per-pixel edits: a LUT pass).

    A shard calls ``draft`` for each of its samples, then ``complete`` once on all of them: a
    workflow with a step that is cheaper in a batch (the auto workflow's parameter fit) does it
    there. ``synthesize`` is the two in one, for a single sample (tools, tests).
    """

    name: str
    takes_uint8: bool
    previews: bool

    def draft(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair: ...

    def complete(self, pairs: list[Pair]) -> list[Pair]: ...

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair: ...


class OneStepWorkflow:
    """Base of a workflow that finishes a pair in one step: ``draft`` is ``synthesize``, no batch step."""

    name: str
    takes_uint8: bool = False
    previews: bool = False

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        raise NotImplementedError

    def draft(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        return self.synthesize(row, image, rng)

    def complete(self, pairs: list[Pair]) -> list[Pair]:
        return pairs


def augment_box(
    shape: tuple[int, ...], rng: np.random.Generator, spec: PipelineSpec
) -> tuple[int, int, int, int, bool]:
    """Seeded random crop ``(y0, x0, height, width)`` (area in `sources.crop_scale`, source aspect
    kept) and horizontal flip, without pixels.

    Sources are reused across many samples; crops and flips make each use a distinct photo. The
    build crops a view and flips after resizing (no full-resolution copy).
    """
    lo, hi = spec.sources.crop_scale
    h, w = shape[:2]
    area = float(rng.uniform(lo, hi))
    side = float(np.sqrt(area))
    ch, cw = max(8, round(h * side)), max(8, round(w * side))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    flip = bool(spec.sources.flip and rng.random() < 0.5)
    return y0, x0, ch, cw, flip


def _immutable(image: np.ndarray) -> bool:
    """True for an array whose pixels nothing can change: read-only over a bytes object (what
    `io.imaging.decode_image_u8` and `decode_own_u8` return)."""
    base = image
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return isinstance(base, bytes)


class LastImageMemo:
    """Values a workflow computes from its input photo, kept while the build passes the same
    photo again (a sample's redraws hand the draft the same decoded array).

    Only the last photo is kept (bounded), and only one whose pixels nothing can change
    (`_immutable`: read-only over bytes, as decoded), so a value never outlives the pixels it was
    computed from; any other image gets fresh values. The results are the same either way. A
    concurrent caller swaps the whole entry and never mutates another's."""

    def __init__(self) -> None:
        self._entry: tuple[np.ndarray | None, dict[str, Any]] = (None, {})

    def get(self, image: np.ndarray, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per photo and key."""
        owner, values = self._entry  # one read: a concurrent caller swaps the entry
        if owner is not image:
            values = {}
            if _immutable(image):
                self._entry = (image, values)
        if key not in values:
            values[key] = make()
        return values[key]


def image_stats(image: np.ndarray) -> dict[str, float]:
    """Cheap global statistics the template annotator uses to describe a photo.

    Computed on a thumbnail box-averaged to a short edge of 64–127 px (float [0, 1] or uint8
    input): the statistics are global, so the full-resolution pass would only add cost.
    """
    arr = np.asarray(image)
    small = box_shrink(arr, min(arr.shape[:2]) // 64)
    small = as_float01(small)
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    lum = luminance(r, g, b)
    mx = np.maximum(np.maximum(r, g), b)  # = small.max(axis=2), without numpy's slow length-3 reduce
    mn = np.minimum(np.minimum(r, g), b)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    r, g, b = (float(c.mean()) for c in (r, g, b))
    return {
        "mean_luminance": float(lum.mean()),
        "contrast": float(lum.std()),
        "saturation": float(sat.mean()),
        "warmth": r - b,
        "tint": g - (r + b) / 2,
        "clipped_highlights": float((lum > 0.98).mean()),
        "clipped_shadows": float((lum < 0.02).mean()),
        **content_stats(small),  # hues, sky/skin/foliage, zones, subject position (Key elements)
    }
