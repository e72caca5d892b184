"""The style workflow renders a preset's local corrections (and reports only what it cannot render)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aether_data.config import PipelineSpec
from aether_data.develop.preset_ops import render_preset
from aether_data.develop.settings import PresetSettings
from aether_data.io.imaging import load_image
from aether_data.io.sources import bundled_photos
from aether_data.presets.library import Library, import_pack
from aether_data.workflows.base import PlanRow
from aether_data.workflows.style import StyleWorkflow

DATA = Path(__file__).parent / "data" / "local_corrections"


def test_style_workflow_renders_local_corrections() -> None:
    report = import_pack(DATA)
    presets = [p for p in report.presets if p.name == "Mask Group Sky and Vignette"]
    assert len(presets) == 1 and len(presets[0].settings.corrections) == 3
    wf = StyleWorkflow(PipelineSpec(workflow="style"), library=Library(presets))
    img = load_image(bundled_photos()[0], 192)
    u8 = (img * 255 + 0.5).astype(np.uint8)
    pair = wf.synthesize(
        PlanRow(0, "style_000000000", "style", "style-000000", 5, 0, "bundled:0"),
        u8,
        np.random.default_rng(5),
    )
    settings = presets[0].settings
    assert pair.preset["unsupported"] == [
        "MaskGroupBasedCorrections[2]: subject mask (Mask/Image) needs a segmentation model"
    ]
    glob = PresetSettings(dict(settings), meta=settings.meta)  # the same preset without its corrections
    without = render_preset(u8, glob, method="lut", interpolation="u8", dtype=np.uint8)
    diff = np.abs(pair.target.astype(int) - without.astype(int)).max(axis=2)
    assert diff.max() > 5  # the local corrections changed the render
    assert (diff > 1).mean() < 0.9  # ... only where their masks are
