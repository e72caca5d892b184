"""Preset engine: known effects on the bundled photos, curves, LUT vs direct, unsupported keys."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from aether_data.develop import apply_lut
from aether_data.develop.color import linear_to_srgb, luminance, srgb_to_linear
from aether_data.develop.local_ops import vignette_mask
from aether_data.develop.preset_ops import (
    bake_preset_lut,
    calibration_matrix,
    eval_monotone,
    pointwise_preset,
    render_preset,
)
from aether_data.develop.settings import NAMED_CURVES, PresetSettings
from aether_data.io.imaging import load_image
from aether_data.io.sources import bundled_photos
from aether_data.presets.importer import import_pack
from aether_data.presets.library import load_library
from aether_data.presets.xmp import read_xmp

DATA = Path(__file__).resolve().parent / "data" / "presets"


@lru_cache(maxsize=2)
def photos(side: int = 256) -> tuple[np.ndarray, ...]:
    return tuple(load_image(p, side) for p in bundled_photos())


def lin_luma(img: np.ndarray) -> np.ndarray:
    lin = srgb_to_linear(img)
    return luminance(lin[..., 0], lin[..., 1], lin[..., 2])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


# --------------------------------------------------------------------------------------------------
# known effects


def test_plus_one_ev_doubles_linear_luminance() -> None:
    preset = {"Exposure2012": "+1.00"}
    for img in photos():
        # a realistically under-exposed input (−1 EV) so +1 EV does not run into the shoulder
        dark = linear_to_srgb(srgb_to_linear(img) * 0.5).astype(np.float32)
        out = render_preset(dark, preset)
        ratio = lin_luma(out).mean() / lin_luma(dark).mean()
        assert 1.8 <= ratio <= 2.2, ratio
        # on the untouched photo, every pixel below the shoulder's knee doubles
        out2 = render_preset(img, preset)
        lin = srgb_to_linear(img)
        below = lin.max(axis=-1) < 0.3
        r2 = lin_luma(out2)[below].mean() / lin_luma(img)[below].mean()
        assert 1.8 <= r2 <= 2.2, r2


@pytest.mark.parametrize("method", ["direct", "lut"])
def test_grayscale_output_has_zero_chroma(method: str) -> None:
    s, _ = read_xmp(DATA / "xmp" / "mono_elements.xmp")
    mono = s.replace(SplitToningShadowSaturation=None, SplitToningHighlightSaturation=None)
    for img in photos():
        out = render_preset(img, mono, seed=1, method=method)
        assert np.abs(out[..., 0] - out[..., 1]).max() < 1e-5
        assert np.abs(out[..., 1] - out[..., 2]).max() < 1e-5
    # the gray mixer matters: a red-filter mix darkens blue relative to the plain conversion
    blue = np.zeros((4, 4, 3), np.float32) + np.array([0.2, 0.3, 0.8], np.float32)
    plain = pointwise_preset(blue, {"ConvertToGrayscale": True})
    red_filter = pointwise_preset(blue, {"ConvertToGrayscale": True, "GrayMixerBlue": -60})
    assert red_filter.mean() < plain.mean() - 0.02


def test_warm_split_tone_raises_r_minus_b_in_shadows() -> None:
    preset = {"SplitToningShadowHue": 40, "SplitToningShadowSaturation": 60}
    for img in photos():
        out = render_preset(img, preset)
        y = luminance(img[..., 0], img[..., 1], img[..., 2])
        shadows = (y > 0.04) & (y < 0.3)  # shadows, not pure black (which stays neutral)
        if shadows.mean() < 0.02:
            continue
        before = (img[..., 0] - img[..., 2])[shadows].mean()
        after = (out[..., 0] - out[..., 2])[shadows].mean()
        assert after > before + 0.025, (before, after)
        highlights = y > 0.8
        if highlights.mean() > 0.01:  # the highlights are left (almost) alone
            dh = (out[..., 0] - out[..., 2])[highlights].mean() - (img[..., 0] - img[..., 2])[
                highlights
            ].mean()
            assert dh < after - before


def test_colour_grade_cool_shadows_lower_r_minus_b() -> None:
    img = photos()[0]
    out = render_preset(
        img, {"ColorGradeShadowHue": 210, "ColorGradeShadowSat": 60, "ColorGradeBlending": 50}
    )
    y = luminance(img[..., 0], img[..., 1], img[..., 2])
    m = y < 0.3
    assert (out[..., 0] - out[..., 2])[m].mean() < (img[..., 0] - img[..., 2])[m].mean() - 0.03


@pytest.mark.parametrize("style", [1, 2, 3])
def test_vignette_darkens_corners_more_than_centre(style: int) -> None:
    preset = {"PostCropVignetteAmount": -60, "PostCropVignetteStyle": style, "PostCropVignetteMidpoint": 40}
    grey = np.full((180, 270, 3), 0.5, np.float32)
    for img in (grey, *photos()):
        out = render_preset(img, preset)
        h, w = img.shape[:2]
        ch, cw = h // 8, w // 8
        corners = [
            (slice(0, ch), slice(0, cw)),
            (slice(0, ch), slice(w - cw, w)),
            (slice(h - ch, h), slice(0, cw)),
            (slice(h - ch, h), slice(w - cw, w)),
        ]
        centre = (slice(h // 2 - ch, h // 2 + ch), slice(w // 2 - cw, w // 2 + cw))
        lit = [c for c in corners if img[c].mean() > 0.03]  # a black corner cannot get darker
        if not lit:
            continue
        corner_ratio = np.mean([out[c].mean() / img[c].mean() for c in lit])
        centre_ratio = out[centre].mean() / max(img[centre].mean(), 1e-6)
        assert corner_ratio < centre_ratio - 0.1, (corner_ratio, centre_ratio)
        assert abs(centre_ratio - 1.0) < 0.02


def test_vignette_mask_shape_controls() -> None:
    m = vignette_mask(90, 160, 0.5, 0.5, 0.0)
    assert m[45, 80] == 0.0 and m[0, 0] > 0.9
    soft, hard = vignette_mask(90, 160, 0.5, 1.0, 0.0), vignette_mask(90, 160, 0.5, 0.0, 0.0)
    assert (soft > 0.01).mean() > (hard > 0.01).mean()  # feather widens the transition
    small = vignette_mask(90, 160, 0.9, 0.5, 0.0)
    assert small.mean() < m.mean()  # a larger midpoint keeps more of the centre clear


@pytest.mark.parametrize("roundness", [0, 60, -70])
def test_vignette_pass_matches_the_numpy_formulas(roundness: int) -> None:
    """The compiled vignette (mask and style per pixel) against the numpy reference of every style:
    vignette_mask, sRGB decode / encode in closed form, luma offsets, paint blend."""
    from aether_data.develop.color import smoothstep
    from aether_data.develop.local_ops import VIGNETTE_STOPS, vignette
    from aether_data.develop.settings import coerce_settings

    img = photos()[1]
    h, w = img.shape[:2]
    for style, amount, hc in ((1, -70, 60), (1, 50, 0), (2, -60, 0), (3, -80, 0), (3, 40, 0)):
        s = coerce_settings(
            {
                "PostCropVignetteAmount": amount,
                "PostCropVignetteStyle": style,
                "PostCropVignetteMidpoint": 30,
                "PostCropVignetteFeather": 40,
                "PostCropVignetteRoundness": roundness,
                "PostCropVignetteHighlightContrast": hc,
            }
        )
        m = vignette_mask(h, w, 0.3, 0.4, roundness / 100.0).astype(np.float64)
        x = img.astype(np.float64)
        y = luminance(x[..., 0], x[..., 1], x[..., 2])
        a = amount / 100.0
        if style == 3:
            k = (abs(a) * m)[..., None]
            ref = x * (1.0 - k) + (1.0 if a > 0 else 0.0) * k
        else:
            stops = VIGNETTE_STOPS * a * m
            if style == 1:
                if a < 0:
                    stops = stops * (1.0 - 0.6 * (hc / 100.0) * smoothstep((y - 0.6) / 0.4))
                lin = srgb_to_linear(np.clip(x, 0.0, 1.0)) * np.exp2(stops)[..., None]
                ref = linear_to_srgb(np.clip(lin, 0.0, 1.0))
            else:
                ref = x + (np.clip(y * np.exp2(0.8 * stops), 0.0, 1.0) - y)[..., None]
        out = vignette(img, s)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.abs(out - ref).max() < 1e-4, (style, amount, float(np.abs(out - ref).max()))


def test_named_and_point_curves_are_monotone_where_their_points_are() -> None:
    grid = np.linspace(0, 1, 4097)
    rng = np.random.default_rng(5)
    curves = list(NAMED_CURVES.values())
    for _ in range(200):
        n = int(rng.integers(2, 8))
        xs = np.sort(rng.choice(np.arange(1, 255), n - 2, replace=False)).tolist()
        ys = np.sort(rng.integers(0, 256, n)).tolist()
        curves.append(list(zip([0, *xs, 255], ys)))
    for pts in curves:
        v = eval_monotone(pts, grid)
        assert np.all(np.diff(v) >= -1e-12), pts
        for x, y in pts:  # the spline passes through its points
            assert abs(eval_monotone(pts, np.array([x / 255]))[0] - y / 255) < 1e-9
    # a non-monotone curve stays monotone on each monotone stretch
    zig = [(0, 0), (100, 200), (180, 60), (255, 255)]
    v = eval_monotone(zig, grid)
    seg = grid <= 100 / 255
    assert np.all(np.diff(v[seg]) >= -1e-12)


def test_library_presets_keep_tonal_order_on_a_grey_ramp() -> None:
    lib = load_library()
    ramp = np.repeat(np.linspace(0, 1, 256, dtype=np.float32)[None, :, None], 3, axis=2)
    for p in lib.presets[::41]:
        if "ToneCurvePV2012" not in p.settings:
            continue
        out = pointwise_preset(ramp, p.settings)
        y = luminance(out[0, :, 0], out[0, :, 1], out[0, :, 2])
        assert np.all(np.diff(y) >= -2e-3), p.id


def test_calibration_keeps_white_and_moves_primaries() -> None:
    s = PresetSettings.from_raw({"RedHue": 50, "BlueSaturation": 60, "GreenHue": -30})
    m = calibration_matrix(s)
    assert m is not None
    np.testing.assert_allclose(m @ np.ones(3), np.ones(3), atol=1e-5)
    red = pointwise_preset(np.array([[[0.8, 0.1, 0.1]]], np.float32), s)[0, 0]
    assert red[1] > 0.1  # red primary rotated towards orange


def test_spatial_effects_do_what_they_say() -> None:
    img = photos()[0]
    gray = luminance(img[..., 0], img[..., 1], img[..., 2])
    lap = lambda x: float(np.abs(np.diff(luminance(x[..., 0], x[..., 1], x[..., 2]), axis=1)).mean())  # noqa: E731
    assert lap(render_preset(img, {"Clarity2012": 80})) > lap(img) * 1.05
    assert lap(render_preset(img, {"Clarity2012": -80})) < lap(img)
    assert lap(render_preset(img, {"Sharpness": 120, "SharpenRadius": 1.0})) > lap(img) * 1.05
    hazy = render_preset(img, {"Dehaze": -70})
    assert luminance(hazy[..., 0], hazy[..., 1], hazy[..., 2]).std() < gray.std()
    g1 = render_preset(img, {"GrainAmount": 50}, seed=1)
    g1b = render_preset(img, {"GrainAmount": 50}, seed=1)
    g2 = render_preset(img, {"GrainAmount": 50}, seed=2)
    assert np.array_equal(g1, g1b) and not np.array_equal(g1, g2)
    assert np.abs(g1 - img).mean() > 0.005


def test_neutral_preset_is_identity() -> None:
    img = photos()[1]
    np.testing.assert_array_equal(render_preset(img, {}), img)
    np.testing.assert_array_equal(render_preset(img, {"WhiteBalance": "As Shot"}, method="lut"), img)
    np.testing.assert_allclose(pointwise_preset(img, {"ToneCurveName2012": "Linear"}), img, atol=1e-6)


def test_unsupported_keys_are_reported_per_preset() -> None:
    report = import_pack(DATA / "xmp")
    by_name = {p.name: p.settings.unsupported_keys for p in report.presets}
    assert "Look" in by_name["Warm Film 01"]
    assert "MaskGroupBasedCorrections[0]: no mask" in by_name["Blockbuster Teal Orange"]  # no geometry
    assert {"CropTop", "CropBottom", "CropLeft", "CropRight", "HasCrop"} <= set(by_name["Airy Wedding"])


# --------------------------------------------------------------------------------------------------
# LUT vs direct


def test_lut_matches_direct_at_least_45db_on_bundled_photos() -> None:
    lib = load_library()
    rng = np.random.default_rng(11)
    presets = [lib.presets[int(i)] for i in rng.choice(len(lib), 14, replace=False)]
    presets += [p for p in import_pack(DATA / "xmp").presets + import_pack(DATA / "lrtemplate").presets]
    worst = 99.0
    for p in presets:
        lut = bake_preset_lut(p.settings, 33)
        for img in photos():
            direct = render_preset(img, p.settings, seed=3)
            baked = render_preset(img, p.settings, seed=3, method="lut", lut=lut)
            worst = min(worst, psnr(direct, baked))
    assert worst >= 45.0, worst


def test_tetrahedral_and_trilinear_agree_with_the_pointwise_function() -> None:
    s = load_library().get("teal-and-orange-blockbuster-05").settings
    lut = bake_preset_lut(s, 33)
    img = photos()[2]
    ref = pointwise_preset(img, s)
    for method in ("trilinear", "tetrahedral"):
        assert psnr(ref, np.clip(apply_lut(img, lut, method), 0, 1)) >= 45.0


def test_fast_guided_filter_stays_close_to_the_exact_one() -> None:
    """Large radii run the subsampled (fast) guided filter; on real photos at the build's 512 px it
    must stay close to the full-resolution filter (≥ 40 dB at clarity radii, ≥ 35 dB at the dehaze
    radius), and small radii must be the exact filter."""
    from aether_data.develop.local_ops import FAST_GUIDED_MIN_RADIUS, _guided_coefficients, guided_filter

    for img in photos(512):
        y = luminance(img[..., 0], img[..., 1], img[..., 2]).astype(np.float32)
        for radius, bar in ((FAST_GUIDED_MIN_RADIUS, 40.0), (12, 40.0), (20, 35.0)):
            a, b = _guided_coefficients(y, y, radius, 1e-2)
            exact = a * y + b
            mse = float(np.mean((guided_filter(y, y, radius, 1e-2) - exact) ** 2))
            assert 10 * np.log10(1.0 / max(mse, 1e-12)) >= bar, radius
        a, b = _guided_coefficients(y, y, 3, 1e-2)
        assert np.allclose(guided_filter(y, y, 3, 1e-2), a * y + b, atol=1e-6)
