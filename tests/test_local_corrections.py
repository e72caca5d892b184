"""Local corrections: parametric masks, the local sliders, and the three XMP forms (+ .lrtemplate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aether_data.develop.color import srgb_to_linear
from aether_data.develop.corrections import (
    LocalCorrection,
    apply_corrections,
    parse_corrections,
    settings_with_corrections,
)
from aether_data.develop.masks import MaskLeaf, combine, gradient_mask, radial_mask
from aether_data.develop.preset_ops import render_preset
from aether_data.develop.settings import PresetSettings
from aether_data.presets.lrtemplate import read_lrtemplate
from aether_data.presets.xmp import parse_xmp_bytes, read_xmp, to_xmp

DATA = Path(__file__).parent / "data" / "local_corrections"


def grey(h: int = 120, w: int = 160, level: int = 128) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def test_radial_plus_one_ev_feather_50_on_grey():
    settings, _ = read_xmp(DATA / "radial_plus1ev.xmp")
    assert settings.unsupported_keys == []  # the radial correction is rendered, not reported
    (corr,) = settings.corrections
    assert corr.sliders == {"Exposure": 1.0} and corr.masks[0].kind == "radial"
    img = grey(200, 200)
    out = render_preset(img, settings, method="direct", dtype=np.uint8)
    lin_in = float(srgb_to_linear(np.float32(128 / 255)))
    lin_out = srgb_to_linear(out.astype(np.float32) / 255)[..., 1]
    # inside the full-effect core (normalised radius < 0.5): ×2 in linear light, ±5 %
    assert abs(lin_out[100, 100] / lin_in - 2.0) < 0.1
    assert np.all(np.abs(lin_out[85:115, 85:115] / lin_in - 2.0) < 0.1)
    # outside the ellipse (radius > 1): unchanged to ±1 level
    outside = np.ones((200, 200), bool)
    outside[45:155, 45:155] = False
    assert np.abs(out[outside].astype(int) - 128).max() <= 1
    # a monotone ramp across the feather, along a ray from the centre
    ray = out[100, 100:200, 1].astype(int)
    assert np.all(np.diff(ray) <= 0) and ray[0] > ray[-1] + 20


def test_radial_not_flipped_acts_outside():
    leaf = MaskLeaf(
        "radial", {"Top": 0.25, "Left": 0.25, "Bottom": 0.75, "Right": 0.75, "Feather": 0, "outside": True}
    )
    m = combine([leaf], np.zeros((100, 100, 3), np.float32))
    assert m[50, 50] == 0 and m[2, 2] == 1


def test_graduated_filter_changes_only_where_its_mask_says():
    rng = np.random.default_rng(0)
    img = rng.integers(30, 220, (120, 100, 3)).astype(np.uint8)
    settings, _ = read_xmp(DATA / "graduated_sky_resource.xmp")  # parseType="Resource" element form
    (corr,) = settings.corrections
    assert corr.sliders == pytest.approx({"Exposure": -1.0, "Temperature": 20.0})
    glob = PresetSettings.from_raw({"Contrast2012": 10})
    base = render_preset(img, glob, method="direct")
    out = render_preset(img, settings, method="direct")
    diff = np.abs(out - base).max(axis=2)
    m = gradient_mask(120, 100, (0.5, 0.5), (0.5, 0.25))
    assert diff[m == 0].max() < 1e-6  # below the zero line: untouched
    assert np.all(diff[m > 0.99] > 0) and (out[m > 0.99].mean() < base[m > 0.99].mean())
    # the upper part is warmer: more red relative to blue than before
    top = (out[:20, ..., 0] - out[:20, ..., 2]).mean() - (base[:20, ..., 0] - base[:20, ..., 2]).mean()
    assert top > 0


def test_luminance_range_changes_only_the_selected_tones():
    img = np.zeros((40, 80, 3), np.float32)
    img[:, :40] = 0.2  # dark half
    img[:, 40:] = 0.8  # bright half
    corr = LocalCorrection(
        sliders={"Exposure": -1.0},
        masks=[MaskLeaf("all"), MaskLeaf("luminance", {"LumRange": (0.5, 0.6, 1.0, 1.0)}, mode="intersect")],
    )
    out = apply_corrections(img, [corr])
    assert np.abs(out[:, :40] - 0.2).max() < 1e-6
    assert np.all(out[:, 40:] < 0.7)


def test_mask_group_add_subtract_intersect():
    img = np.full((100, 100, 3), 0.5, np.float32)
    big = {"Top": 0.1, "Left": 0.1, "Bottom": 0.9, "Right": 0.9, "Feather": 0}
    small = {"Top": 0.3, "Left": 0.3, "Bottom": 0.7, "Right": 0.7, "Feather": 0}
    ring = combine([MaskLeaf("radial", big), MaskLeaf("radial", small, mode="subtract", value=0.0)], img)
    assert ring[50, 50] == 0 and ring[50, 20] == 1 and ring[2, 2] == 0
    # intersect == subtract of the inverted component (Lightroom's rule)
    top = MaskLeaf("gradient", {"ZeroX": 0.5, "ZeroY": 0.6, "FullX": 0.5, "FullY": 0.4})
    a = combine([top, MaskLeaf("radial", big, mode="intersect")], img)
    b = combine([top, MaskLeaf("radial", big, mode="subtract", value=0.0, inverted=True)], img)
    assert np.allclose(a, b)
    assert np.allclose(
        radial_mask(10, 10, 0, 0, 1, 1, 0),
        combine([MaskLeaf("radial", {**big, "Top": 0, "Left": 0, "Bottom": 1, "Right": 1})], img[:10, :10]),
    )


def test_mask_group_preset_renders_its_corrections():
    settings, _meta = read_xmp(DATA / "maskgroup_sky_lum.xmp")
    corrs = settings.corrections
    assert [c.name for c in corrs] == ["Sky", "Ring", "Subject"]
    assert [leaf.mode for leaf in corrs[0].masks] == ["add", "intersect"]
    assert corrs[0].masks[1].params["LumRange"] == pytest.approx((0.5, 0.6, 1.0, 1.0))
    assert [leaf.mode for leaf in corrs[1].masks] == ["add", "subtract"]
    assert not corrs[2].renderable  # AI subject mask: reported, not rendered
    # the container is no longer unsupported; only the AI mask is reported
    assert settings.unsupported_keys == [
        "MaskGroupBasedCorrections[2]: subject mask (Mask/Image) needs a segmentation model"
    ]
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, :50] = 60
    img[:, 50:] = 210
    glob = PresetSettings(dict(settings), meta=settings.meta)
    base = render_preset(img, glob, method="direct")
    out = render_preset(img, settings, method="direct")
    diff = np.abs(out - base).max(axis=2)
    assert diff.max() > 0.02
    # the sky correction: only bright pixels in the top; the ring: not in the centre, not at the corners
    assert diff[:10, 55:60].max() > 0.02 and diff[:10, :5].max() < 1e-6
    assert diff[45:55, 45:48].max() < 1e-6 and diff[95:, 95:].max() < 1e-6


def test_lrtemplate_gradient_renders():
    settings, _meta = read_lrtemplate(DATA / "graduated_bottom.lrtemplate")
    (corr,) = settings.corrections
    assert corr.sliders == pytest.approx({"Exposure": 0.5, "Clarity": 20.0})
    assert settings.unsupported_keys == []
    img = grey(80, 60)
    out = render_preset(img, settings, method="lut", interpolation="u8", dtype=np.uint8)
    assert np.abs(out[:40].astype(int) - 128).max() <= 1
    assert out[-3:].mean() > 140


@pytest.mark.parametrize(
    "name", ["radial_plus1ev.xmp", "graduated_sky_resource.xmp", "maskgroup_sky_lum.xmp"]
)
def test_xmp_written_by_us_reads_back_to_the_same_corrections(name, tmp_path):
    settings, _ = read_xmp(DATA / name)
    text = to_xmp(settings)
    again = PresetSettings.from_raw(parse_xmp_bytes(text.encode()))
    assert again.corrections == settings.corrections
    assert again.unsupported_keys == settings.unsupported_keys


def test_programmatic_corrections_round_trip_through_xmp():
    corr = LocalCorrection(
        sliders={"Exposure": 0.75, "Contrast": -20.0, "Highlights": 15.0, "Dehaze": 10.0},
        masks=[
            MaskLeaf("gradient", {"ZeroX": 0.1, "ZeroY": 0.2, "FullX": 0.3, "FullY": 0.4}),
            MaskLeaf("colour", {"Samples": [(0.2, 0.4, 0.8)], "ColorAmount": 0.5}, mode="intersect"),
            MaskLeaf(
                "luminance", {"LumRange": (0.0, 0.1, 0.5, 0.7)}, mode="subtract", value=0.0, inverted=True
            ),
        ],
        amount=0.5,
        name="Blue sky",
    )
    settings = settings_with_corrections(PresetSettings.from_raw({"Exposure2012": 0.3}), [corr])
    again = PresetSettings.from_raw(parse_xmp_bytes(to_xmp(settings).encode()))
    assert again.corrections == [corr]
    assert parse_corrections(settings.unsupported) == [corr]


def test_neutral_correction_and_empty_mask_change_nothing():
    img = np.random.default_rng(1).random((30, 40, 3)).astype(np.float32)
    none = LocalCorrection(sliders={}, masks=[MaskLeaf("all")])
    empty = LocalCorrection(sliders={"Exposure": 1.0}, masks=[])
    assert np.array_equal(apply_corrections(img, [none, empty]), img)
