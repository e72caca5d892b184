"""Auto workflow: inverse degradation of a good photo into a plausible unretouched input.

The target is the (high-quality) source; the input is the source pushed in the degrading direction
by random operators drawn from the operator statistics (the paper's supplementary branch), so
the corrective parameters are known and ground the reasoning. The encoder/renderer branch over an
expert pair DB (paper Sec. 3.2) plugs in here as a second degradation strategy.
"""

from __future__ import annotations

import numpy as np

from aether_data import params as P
from aether_data.config import PipelineSpec
from aether_data.develop import render
from aether_data.sampling import PROTOCOLS, load_operator_stats, sample_params
from aether_data.workflows.base import Pair, PlanRow


def corrective_params(degradation: dict[str, float]) -> dict[str, float]:
    """First-order inverse of a degradation: every slider moved back by the same amount."""
    return {name: -value + 0.0 for name, value in degradation.items()}


class AutoWorkflow:
    """input = engine(source, degrading operators), target = source."""

    name = "auto"

    def __init__(self, spec: PipelineSpec) -> None:
        if spec.auto.expert_db is not None:
            raise NotImplementedError("auto.expert_db (encoder/renderer degradation) is not available yet")
        self.spec = spec
        self.stats = load_operator_stats(spec.auto.operator_stats)

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        protocol = PROTOCOLS[int(rng.integers(len(PROTOCOLS)))]
        _, degradation = sample_params(rng, protocol, self.stats, degrade=True)
        degraded = render(image, degradation)
        fix = corrective_params(degradation)
        return Pair(
            input=degraded,
            target=image,
            params=fix,
            params_origin="known-operator",
            protocol=protocol,
            masks=P.masks(fix),
            extra={"degradation": P.normalised_dict(degradation, decimals=4)},
        )
