"""What an annotator is asked (`AnnotationRequest`) and what it answers (`Annotation`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aether_data import params as P
from aether_data.contract import WORKFLOWS


@dataclass
class AnnotationRequest:
    """What an annotator needs to know about one sample.

    `params` are slider-scale values (missing keys = 0) of the parameters actually applied; for
    auto they are the corrective parameters input→target. `masks` are [light, globalcolor,
    specificcolor]. `preset` = {id, name, primary, fine, and optionally summary/settings};
    `image_stats` = any of mean_luminance/brightness, contrast, saturation/colorfulness,
    color_cast/cast, skin/sky/foliage fractions, subject/scene (unknown keys are ignored).
    """

    workflow: str
    params: dict[str, float]
    masks: list[int]
    seed: int
    preset: dict[str, Any] | None = None
    image_stats: dict[str, Any] | None = None
    category_description: str | None = None
    regions: list[dict[str, Any]] | None = None
    """Region workflow: the edited regions (name, label, params, masks), see annotate/region.py."""

    def __post_init__(self) -> None:
        if self.workflow not in WORKFLOWS:
            raise ValueError(f"unknown workflow {self.workflow!r}; expected one of {WORKFLOWS}")
        self.params = P.validate(self.params)
        if len(self.masks) != 3 or any(m not in (0, 1) for m in self.masks):
            raise ValueError(f"masks must be three 0/1 values, got {self.masks!r}")
        self.masks = [int(m) for m in self.masks]
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def described(self) -> dict[str, dict[str, float]]:
        """Per group, the normalised values that the annotation talks about (mask-filtered)."""
        out: dict[str, dict[str, float]] = {}
        for g, m in zip(P.GROUPS, self.masks, strict=True):
            vals = {n: P.normalise(n, self.params.get(n, 0.0)) for n in P.GROUP_PARAMS[g]} if m else {}
            out[g] = {n: v for n, v in vals.items() if abs(v) >= P.MASK_EPS}
        return out


@dataclass
class Annotation:
    """One sample's text: instructions[0] is the one used in `prompt` (= task token + instruction)."""

    instructions: list[str]
    completion: str
    reasoning: dict[str, Any]
    prompt: str
    annotator: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the record's field names."""
        return asdict(self)
