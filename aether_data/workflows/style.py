"""Style workflow: match the photo to style categories, draw a preset from them, render it.

input = the source photo, target = the preset applied by the engine (pointwise part through a
baked 3D LUT by default, then the spatial operations), with ≥3 instruction variants and
retouching plans grounded in what the preset's settings do. A pure function of (image, rng,
spec): LUT and description caches only avoid recomputing the same preset.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from aether_data import params as P
from aether_data.config import PipelineSpec
from aether_data.develop.lut import bake_lut_for, to_u8
from aether_data.develop.preset_ops import (
    bake_preset_lut,
    grade_values,
    has_pointwise,
    pointwise_preset,
    render_preset,
)
from aether_data.develop.settings import CALIBRATION_KEYS, KEYS, PresetSettings
from aether_data.presets.describe import effects
from aether_data.presets.grounding import grounded_effects, names_unknown_content
from aether_data.presets.library import Library, Preset, load_library
from aether_data.presets.matching import make_matcher, top_categories
from aether_data.presets.measure import probe_colours
from aether_data.presets.taxonomy import load_taxonomy
from aether_data.presets.wording import style_instructions, style_plans
from aether_data.quality import TEXTURE_KEYS
from aether_data.workflows.base import INPUT_STATS, LastImageMemo, OneStepWorkflow, Pair, PlanRow, image_stats

LUT_CACHE_SIZE = 256

_LIGHT_EXTRA = (
    "ToneCurvePV2012",
    "Clarity2012",
    "Texture",
    "Dehaze",
    "PostCropVignetteAmount",
    "GrainAmount",
    "Sharpness",
    "ColorGradeShadowLum",
    "ColorGradeMidtoneLum",
    "ColorGradeHighlightLum",
    "ColorGradeGlobalLum",
)
_GLOBAL_EXTRA = (
    "ToneCurvePV2012Red",
    "ToneCurvePV2012Green",
    "ToneCurvePV2012Blue",
    *CALIBRATION_KEYS,
)


def _differs(s: PresetSettings, key: str) -> bool:
    if key not in s:
        return False
    spec = KEYS[key]
    if spec.kind == "curve":
        return [tuple(p) for p in s[key]] != [(0, 0), (255, 255)]
    return s[key] != spec.default


def preset_masks(settings: PresetSettings) -> list[int]:
    """[light, globalcolor, specificcolor]: which VeraRetouch groups the preset touches (any key of
    the group away from its neutral default, curves and grading included)."""
    core = P.masks(settings.core_params())
    light = (
        core[0]
        or any(_differs(settings, k) for k in _LIGHT_EXTRA)
        or settings.curve("ToneCurvePV2012") is not None
    )
    glob = (
        core[1]
        or any(_differs(settings, k) for k in _GLOBAL_EXTRA)
        or bool(settings.value("ConvertToGrayscale"))
    )
    glob = glob or any(sat > 0 for _, sat, _ in grade_values(settings).values())
    mono = bool(settings.value("ConvertToGrayscale"))
    spec = any(_differs(settings, f"GrayMixer{b}") for b in P.HSL_BANDS) if mono else bool(core[2])
    return [int(bool(light)), int(bool(glob)), int(bool(spec))]


class StyleWorkflow(OneStepWorkflow):
    """match → seeded preset draw from the top categories → render → instructions and plans."""

    name = "style"
    takes_uint8 = True  # matching, the 8-bit LUT pass and the encoder all take uint8

    def __init__(self, spec: PipelineSpec, library: Library | None = None) -> None:
        st = spec.style
        self.spec = spec
        self.taxonomy = load_taxonomy()
        self.library = library or load_library(st.library, extra=st.extra_presets, taxonomy=self.taxonomy)
        self.matcher = make_matcher(st.matcher, st.matcher_model, self.taxonomy, st.matcher_device)
        self.interpolation = st.lut_interpolation
        self.top_k = int(st.top_categories)
        self.render_mode = st.render
        self.lut_size = int(st.lut_size)
        self.variants = int(st.instruction_variants)
        # by exact name, the first of a name as Taxonomy.get_fine (which scans them all per call)
        self.fine_by_name = {f.name: f for f in reversed(self.taxonomy.fine)}
        self.available = [f.name for f in self.taxonomy.fine if self.library.by_category(f.name)]
        extra = {p.fine for p in self.library if p.fine not in set(self.available)}
        self.available += sorted(extra)
        if not self.available:
            raise ValueError("the preset library is empty")
        self._luts: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._described: dict[str, dict[str, Any]] = {}
        self._probe_out: dict[str, np.ndarray] = {}  # probe results of this sample's LUT call
        self._memo = LastImageMemo()

    def analyse(self, image: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
        """(category scores, `image_stats`) of the input photo, once per decoded photo
        (`LastImageMemo`: a redraw skips it, ~3 ms); the statistics are the caller's copy."""
        scores, stats = self._memo.get(
            image, "analysis", lambda: (self.matcher.scores(image), image_stats(image))
        )
        return scores, dict(stats)

    # caches ----------------------------------------------------------------------------------------
    def lut_for(self, preset: Preset, image: np.ndarray | None = None) -> np.ndarray | None:
        """The preset's baked LUT (None when it has no per-pixel part).

        On the 8-bit path (``lut_interpolation: u8``) with an ``image``: baked only at the lattice
        vertices this image reads (`bake_lut_for`, ~1/3 of a full bake's cost; a library of 5,030
        presets gives few cache hits). The description probe (`probe_colours`) always goes through
        the same call, first, so describing a preset costs no call of its own and the layout of
        that call never depends on what this worker has cached. Otherwise the full LUT, LRU-cached
        by preset id.
        """
        if image is not None and self.interpolation == "u8":
            if not has_pointwise(preset.settings):
                return None
            probe = probe_colours()

            def evaluate(points: np.ndarray) -> np.ndarray:
                out = pointwise_preset(np.concatenate([probe, points])[None], preset.settings)[0]
                self._probe_out[preset.id] = out[: len(probe)]
                return out[len(probe) :]

            return bake_lut_for(to_u8(image), self.lut_size, evaluate)
        key = preset.id
        if key in self._luts:
            self._luts.move_to_end(key)
            return self._luts[key]
        lut = bake_preset_lut(preset.settings, self.lut_size) if has_pointwise(preset.settings) else None
        self._luts[key] = lut
        if len(self._luts) > LUT_CACHE_SIZE:
            self._luts.popitem(last=False)
        return lut

    def described(self, preset: Preset) -> dict[str, Any]:
        """Effects, plans and summary of a preset (cached; they depend on the settings only)."""
        if preset.id not in self._described:
            effs = effects(preset.settings, self._probe_out.pop(preset.id, None))
            self._described[preset.id] = {
                "effects": effs,
                "plans": style_plans(preset.settings, effs),
                "summary": ", ".join(e.phrase for e in effs[:4]),
            }
        self._probe_out.pop(preset.id, None)
        return self._described[preset.id]

    # the sample --------------------------------------------------------------------------------------
    def choose(
        self, image: np.ndarray, rng: np.random.Generator, scores: dict[str, float] | None = None
    ) -> tuple[Preset, list[tuple[str, float]]]:
        """Score categories (or take the matcher's ``scores`` of ``image``), keep the top k (ties
        broken by a seeded jitter), draw one, draw a preset."""
        scores = self.matcher.scores(image) if scores is None else scores
        names = self.available
        jitter = rng.uniform(0.0, 1e-6, size=len(names))
        ranked = top_categories(
            {n: float(scores.get(n, 0.0)) + float(j) for n, j in zip(names, jitter)}, self.top_k
        )
        fine = ranked[int(rng.integers(len(ranked)))][0]
        pool = self.library.by_category(fine)
        return pool[int(rng.integers(len(pool)))], ranked

    def synthesize(self, row: PlanRow, image: np.ndarray, rng: np.random.Generator) -> Pair:
        scores, content = self.analyse(image)
        preset, ranked = self.choose(image, rng, scores)
        settings = preset.settings
        grain_seed = int(rng.integers(0, 2**31 - 1))
        lut = self.lut_for(preset, image) if self.render_mode == "lut" else None
        target = render_preset(
            image,
            settings,
            grain_seed,
            method=self.render_mode,
            lut_size=self.lut_size,
            lut=lut,
            interpolation=self.interpolation,
            dtype=np.uint8,
        )
        info = self.described(preset)
        # name skin / sky / foliage only where the photo is known to show them (presets/grounding.py)
        effs = grounded_effects(info["effects"], content)
        plans = info["plans"] if effs == info["effects"] else style_plans(settings, effs)
        fine_cat = self.fine_by_name.get(preset.fine)
        instructions = style_instructions(
            {
                "name": preset.name,
                "fine": preset.fine,
                "primary": preset.primary,
                "effects": effs,
                "description": fine_cat.description
                if fine_cat and not names_unknown_content(fine_cat.description, content)
                else "",
            },
            rng,
            self.variants,
        )
        preset_info = {
            "id": preset.id,
            "name": preset.name,
            "primary": preset.primary,
            "fine": preset.fine,
            "source": preset.source,
            "categories": [name for name, _ in ranked],
            "matcher": self.matcher.name,
            "instructions": instructions,
            "plans": dict(plans),
            "summary": ", ".join(e.phrase for e in effs[:4]),
            "effects": [e.phrase for e in effs],
            "unsupported": settings.unsupported_keys,
            "render": self.render_mode,
        }
        return Pair(
            input=image,
            target=target,
            params=settings.core_params(),
            params_origin="preset",
            protocol=None,
            masks=preset_masks(settings),
            preset=preset_info,
            extra={
                "grain_seed": grain_seed,
                # clarity, texture, grain, dehaze mean to change local structure (quality gates)
                "texture_edit": any(settings.num(k) != 0 for k in TEXTURE_KEYS if k in settings),
                INPUT_STATS: content,  # the input's statistics: the build reuses them (not recomputed)
            },
        )


__all__ = ["StyleWorkflow", "preset_masks"]
