"""The auto workflow's gate preview: a draft's quality gates predicted before it is rendered.

Each auto draft is a colour map of the source (the encoder/renderer's LUT, or the develop engine's
for random operators), and the gates (`aether_data.quality`) measure it on thumbnails. So the
gates can be predicted on the source's scorer-size thumbnail (short edge 256–511 px, the image
`heuristic_score` works on) through the very LUT the full-resolution render would use: measures
and aesthetic scores of the thumbnail pair, thresholds of ``quality.auto``. A draft predicted to
fail is not rendered, measured or redrawn; the workflow draws its next candidate from the same
generator, so the choice stays a function of the sample's seed. The preview only selects: every
written pair is still measured and gated at full resolution by the build (a draft the preview let
through that fails is redrawn there as before).

On the 64-photo bench corpus about 55 % of unscreened auto drafts failed a gate (encoder/renderer
edits that flatten structure or barely move colours; random operators too weak, or scoring higher
than the source); each cost a full-resolution render, measure and scoring.
"""

from __future__ import annotations

import numpy as np

from aether_data.config import GateSpec
from aether_data.degrade import operator_thumbnail
from aether_data.develop import apply_lut_u8
from aether_data.develop.lut import to_u8
from aether_data.quality import PairMeasurer, failed_spec_gate
from aether_data.scoring.heuristic import heuristic_score

SCREEN_TRIES = 8
"""Encoder/renderer candidates (reference rank, latent masks) screened per draft before the
draft falls back to random operators (which screen up to as many draws)."""


class GatePreview:
    """The auto gates of a source's drafts, predicted on its small copy (`operator_thumbnail`)."""

    def __init__(self, image: np.ndarray, gates: GateSpec) -> None:
        self.small_u8 = to_u8(operator_thumbnail(image))
        self.small = np.divide(self.small_u8, np.float32(255.0), dtype=np.float32)
        self.measurer = PairMeasurer(self.small)  # the photo's half, once for all candidates
        self.target_score = heuristic_score(self.small_u8)
        self.gates = gates

    def failed(self, edited: np.ndarray, protocol: str | None = None) -> str | None:
        """The gate predicted to fail by the draft whose small copy is ``edited`` (float32), or None."""
        return failed_spec_gate(
            self.gates,
            self.measurer.measure(edited),
            protocol=protocol,
            scores={"aesthetic_input": heuristic_score(edited), "aesthetic_target": self.target_score},
        )

    def lut_fails(self, lut: np.ndarray) -> str | None:
        """`failed` for the draft rendered by ``lut`` (baked for `small_u8` too)."""
        return self.failed(np.divide(apply_lut_u8(self.small_u8, lut), np.float32(255.0), dtype=np.float32))

    def accepts(self, protocol: str, edited: np.ndarray) -> bool:
        """`degrade.SmallCheck` form of `failed`: True when no gate is predicted to fail."""
        return self.failed(np.clip(edited, 0.0, 1.0), protocol) is None
