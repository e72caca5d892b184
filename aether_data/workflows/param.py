"""Param workflow: Gaussian-sampled Lightroom parameters rendered by the develop engine."""

from __future__ import annotations

import numpy as np

from aether_data import params as P
from aether_data.config import PipelineSpec
from aether_data.develop import render_lut8
from aether_data.io.imaging import box_shrink
from aether_data.quality import THUMB_SHORT
from aether_data.sampling import load_operator_stats, sample_params, scale_params
from aether_data.strength import CALIBRATION_TRIES, load_strength_stats, scale_to_delta_e
from aether_data.workflows.base import OneStepWorkflow, Pair, PlanRow


class ParamWorkflow(OneStepWorkflow):
    """input = source, target = engine(source, params); params drawn per protocol."""

    name = "param"
    takes_uint8 = True  # the target is one 8-bit LUT pass: no float copy of the input needed
    previews = True  # per-pixel edit, draws independent of size: a redraw costs a thumbnail render

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self.stats = load_operator_stats(spec.param.operator_stats)
        self.protocols = list(spec.param.protocols)
        self.strength = load_strength_stats(spec.param.strength_stats) if spec.param.strength_stats else None

    def protocol_for(self, row: PlanRow, rng: np.random.Generator) -> str:
        """Balanced mode cycles through the protocols by global index so every one appears."""
        if self.spec.param.protocol_order == "balanced":
            return self.protocols[row.index % len(self.protocols)]
        return self.protocols[int(rng.integers(len(self.protocols)))]

    def calibrated_params(
        self, image: np.ndarray, protocol: str, rng: np.random.Generator
    ) -> dict[str, float]:
        """Parameters of `protocol` whose pair has a mean CIEDE2000 drawn from the strength stats,
        measured on the thumbnail the quality gates measure (short edge 128–255 px)."""
        assert self.strength is not None
        floor = self.spec.quality.param.delta_e_floor(protocol) if self.spec.quality.enabled else None
        target = self.strength.draw(rng, floor=floor)
        thumb = box_shrink(image, max(1, min(image.shape[:2]) // THUMB_SHORT))
        best: tuple[float, dict[str, float], float] | None = None
        for _ in range(CALIBRATION_TRIES):
            _, values = sample_params(rng, protocol, self.stats)
            scale, got = scale_to_delta_e(
                thumb, lambda s, v=values: render_lut8(thumb, scale_params(v, s), dtype=np.uint8), target
            )
            err = abs(got - target) / target
            if best is None or err < best[0]:
                best = (err, values, scale)
            if err <= 0.1:
                break
        assert best is not None
        return scale_params(best[1], best[2])

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        protocol = self.protocol_for(row, rng)
        if self.strength is not None:  # calibrated: scaled to a reference edit strength
            values = self.calibrated_params(image, protocol, rng)
        else:
            _, values = sample_params(rng, protocol, self.stats)
        # baked 33³ LUT in 8 bits: ≥ 50 dB vs render, ~3× faster; kept in 8 bits for the encoder
        target = render_lut8(image, values, dtype=np.uint8)
        return Pair(
            input=image,
            target=target,
            params=values,
            params_origin="sampled",
            protocol=protocol,
            masks=P.masks(values),
        )
