"""Tests for aether_data.develop: identity, numpy/torch agreement, gradients, Lightroom-like effects,
monotone curves, HSL/vibrance semantics, LUT baking/application and .cube I/O."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from aether_data import params as P
from aether_data.develop import (
    apply_lut,
    apply_lut_u8,
    bake_lut,
    read_cube,
    render,
    render_fast,
    render_torch,
    write_cube,
)
from aether_data.develop import color as C
from aether_data.develop import engine_np as E
from aether_data.develop.lut import CubeError, identity_lut
from aether_data.develop.render_np import render_exact

skdata = pytest.importorskip("skimage.data")
sktransform = pytest.importorskip("skimage.transform")
skcolor = pytest.importorskip("skimage.color")


# --------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------
def _small(img: np.ndarray, height: int = 96) -> np.ndarray:
    h, w = img.shape[:2]
    out = sktransform.resize(img, (height, round(w * height / h)), anti_aliasing=True, preserve_range=True)
    return np.clip(out / 255.0, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_small(f()) for f in (skdata.astronaut, skdata.coffee, skdata.chelsea)]


def _hue_wheel(height: int = 24, width: int = 72) -> np.ndarray:
    """Every hue across x, saturation 0.25..1 down y, value 0.8: touches all 8 HSL bands."""
    hue = np.linspace(0.0, 1.0, width, endpoint=False)[None, :].repeat(height, 0)
    sat = np.linspace(0.25, 1.0, height)[:, None].repeat(width, 1)
    hsv = np.stack([hue, sat, np.full_like(hue, 0.8)], axis=-1)
    return skcolor.hsv2rgb(hsv).astype(np.float32)


def _patch(h_deg: float, s: float, v: float, size: int = 4) -> np.ndarray:
    hsv = np.array([h_deg / 360.0, s, v], dtype=np.float64)
    return np.tile(skcolor.hsv2rgb(hsv[None, None, :]).astype(np.float32), (size, size, 1))


def _random_params(
    rng: np.random.Generator, sigma: float = 0.3, groups: tuple[str, ...] | None = None
) -> dict:
    """Gaussian draw like the samplers: active groups, a random subset of their params."""
    groups = groups or tuple(g for g in P.GROUPS if rng.random() < 0.7) or ("light",)
    out = {}
    for g in groups:
        names = P.GROUP_PARAMS[g]
        chosen = [n for n in names if rng.random() < 0.6] or [names[rng.integers(len(names))]]
        for n in chosen:
            s = sigma * (0.4 if n == "Exposure2012" else 1.0)
            out[n] = float(np.clip(rng.normal(0.0, s), -1.0, 1.0) * P.SPECS[n].scale)
    return out


def _torch_render(img: np.ndarray, params_list: list[dict]) -> np.ndarray:
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(len(params_list), 1, 1, 1)
    v = torch.from_numpy(np.stack([P.to_vector(p) for p in params_list]))
    with torch.no_grad():
        return render_torch(x, v).permute(0, 2, 3, 1).numpy()


def _linear_luminance(img: np.ndarray) -> np.ndarray:
    return C.luminance(*np.moveaxis(C.srgb_to_linear(img), -1, 0))


def _opponent(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chroma, saturation, hue in degrees) per pixel."""
    r, g, b = np.moveaxis(img, -1, 0)
    _, a, bb = C.to_opponent(r, g, b)
    chroma, sat = C.chroma_and_saturation(r, g, b, a, bb)
    return chroma, sat, C.hue_degrees(a, bb)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else 10.0 * np.log10(1.0 / mse)


# --------------------------------------------------------------------------------------------------
# identity, validation, ranges
# --------------------------------------------------------------------------------------------------
def test_identity_at_zero_params(photos: list[np.ndarray]) -> None:
    for img in photos:
        assert np.abs(render(img, {}) - img).max() < 1e-6
        assert np.abs(render(img, dict.fromkeys(P.PARAM_NAMES, 0.0)) - img).max() < 1e-6
        assert np.abs(render_exact(img, {}) - img).max() < 1e-6
        assert np.abs(_torch_render(img, [{}])[0] - img).max() < 1e-5


def test_output_dtype_shape_and_validation(photos: list[np.ndarray]) -> None:
    out = render(photos[0], {"Exposure2012": 0.5, "Vibrance": 20})
    assert out.dtype == np.float32 and out.shape == photos[0].shape
    with pytest.raises(P.ParamError):
        render(photos[0], {"Clarity2012": 10})
    with pytest.raises(P.ParamError):
        render(photos[0], {"Exposure2012": 6})
    with pytest.raises(ValueError):
        render(photos[0][..., :2], {})


def test_extremes_finite_and_in_range() -> None:
    img = np.concatenate([_hue_wheel(), np.linspace(0, 1, 72, dtype=np.float32)[None, :, None].repeat(3, 2)])
    draws = []
    for n in P.PARAM_NAMES:
        for sign in (-1.0, 1.0):
            draws.append({n: sign * P.SPECS[n].scale})
    rng = np.random.default_rng(7)
    for _ in range(10):
        draws.append({n: float(rng.choice([-1.0, 1.0])) * P.SPECS[n].scale for n in P.PARAM_NAMES})
    outs_t = _torch_render(img, draws)
    for prm, out_t in zip(draws, outs_t, strict=True):
        out = render(img, prm)
        for o in (out, out_t):
            assert np.isfinite(o).all(), prm
            assert o.min() >= 0.0 and o.max() <= 1.0, prm
        assert np.abs(out - out_t).max() <= 1.0 / 255.0, prm


# --------------------------------------------------------------------------------------------------
# numpy / torch agreement and gradients
# --------------------------------------------------------------------------------------------------
def test_numpy_torch_agree_on_photos(photos: list[np.ndarray]) -> None:
    rng = np.random.default_rng(2024)
    protocols = [g for k in range(1, 8) for g in [tuple(P.GROUPS[i] for i in range(3) if k >> i & 1)]]
    worst = 0.0
    n_draws = 0
    for img in photos:
        draws = [_random_params(rng, 0.35, protocols[i % 7]) for i in range(12)]
        draws[0] = {n: float(rng.uniform(-0.8, 0.8) * P.SPECS[n].scale) for n in P.PARAM_NAMES}  # all groups
        outs_t = _torch_render(img, draws)
        for prm, out_t in zip(draws, outs_t, strict=True):
            worst = max(worst, float(np.abs(render(img, prm) - out_t).max()))
            n_draws += 1
    assert n_draws >= 30
    assert worst <= 1.0 / 255.0, worst


def test_tabulated_numpy_matches_closed_form(photos: list[np.ndarray]) -> None:
    rng = np.random.default_rng(5)
    for img in photos:
        for _ in range(4):
            prm = _random_params(rng, 0.5, P.GROUPS)
            assert np.abs(render(img, prm) - render_exact(img, prm)).max() < 5e-4


def test_gradients_flow_to_every_parameter(photos: list[np.ndarray]) -> None:
    wheel = torch.from_numpy(_hue_wheel(32, 96)).permute(2, 0, 1)
    photo = torch.from_numpy(photos[0][:32, :96]).permute(2, 0, 1)
    image = torch.stack([wheel, photo])
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(image.shape, generator=gen)
    for point in ("random", "zero"):
        if point == "random":
            vec = (torch.rand(2, 38, generator=gen) - 0.5) * 0.8
        else:
            vec = torch.zeros(2, 38)
        vec.requires_grad_(True)
        out = render_torch(image, vec)
        (out * weights).sum().backward()
        grad = vec.grad.abs().sum(0)
        assert torch.isfinite(vec.grad).all(), point
        if point == "random":
            dead = [n for n, g in zip(P.PARAM_NAMES, grad.tolist(), strict=True) if not g > 1e-6]
            assert not dead, dead
    img_req = image.clone().requires_grad_(True)
    render_torch(img_req, torch.full((2, 38), 0.3)).sum().backward()
    assert torch.isfinite(img_req.grad).all() and img_req.grad.abs().sum() > 0
    for _ in range(5):  # slider extremes (and zeros) mixed: still finite everywhere
        vec = (torch.randint(0, 3, (2, 38), generator=gen).float() - 1.0).requires_grad_(True)
        img_req = image.clone().requires_grad_(True)
        (render_torch(img_req, vec) * weights).sum().backward()
        assert torch.isfinite(vec.grad).all() and torch.isfinite(img_req.grad).all()


# --------------------------------------------------------------------------------------------------
# Light
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def midtone(photos: list[np.ndarray]) -> np.ndarray:
    """A real photo re-exposed so its mean linear luminance is 0.18 (mid-grey)."""
    lin = C.srgb_to_linear(photos[2])
    lin = np.clip(lin * (0.18 / _linear_luminance(photos[2]).mean()), 0.0, 1.0)
    return C.linear_to_srgb(lin).astype(np.float32)


def test_exposure_plus_one_doubles_linear_luminance(midtone: np.ndarray) -> None:
    base = _linear_luminance(midtone).mean()
    up = _linear_luminance(render(midtone, {"Exposure2012": 1.0})).mean() / base
    down = _linear_luminance(render(midtone, {"Exposure2012": -1.0})).mean() / base
    assert 1.8 <= up <= 2.2, up
    assert 0.45 <= down <= 0.55, down
    assert up < 2.0  # the shoulder compresses the few highlights instead of clipping them hard


def test_exposure_shoulder_is_soft_and_monotone() -> None:
    ramp = np.linspace(0, 1, 1001, dtype=np.float32)[None, :, None].repeat(3, 2)
    for ev in (0.5, 1.0, 2.0, 5.0):
        out = render(ramp, {"Exposure2012": ev})[0, :, 0]
        assert np.all(np.diff(out) >= -1e-6), ev
        assert out[-1] > 0.99
        # below the knee (≥ 0.5 linear after scaling) linear light is scaled by exactly 2^EV
        lin_in, lin_out = C.srgb_to_linear(ramp[0, 100, 0]), C.srgb_to_linear(out[100])
        assert lin_in * 2.0**ev < 0.5
        assert abs(lin_out / lin_in - 2.0**ev) < 2e-3 * 2.0**ev, ev


def test_contrast_highlights_shadows_whites_blacks(photos: list[np.ndarray]) -> None:
    img = photos[0]
    luma = C.luminance(*np.moveaxis(img, -1, 0))
    dark, shadow, bright = luma < 0.25, (luma > 0.12) & (luma < 0.4), luma > 0.7

    def luma_of(prm: dict) -> np.ndarray:
        return C.luminance(*np.moveaxis(render(img, prm), -1, 0))

    assert luma_of({"Contrast2012": 100}).std() > luma.std() * 1.05
    assert luma_of({"Contrast2012": -100}).std() < luma.std() * 0.95
    hl = luma_of({"Highlights2012": -100}) - luma
    assert hl[bright].mean() < -0.05 and abs(hl[dark].mean()) < 0.02
    sh = luma_of({"Shadows2012": 100}) - luma
    assert sh[shadow].mean() > 0.08 and sh[dark].mean() > 0.03 and abs(sh[bright].mean()) < 0.03
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :, None].repeat(3, 2)
    assert render(ramp, {"Blacks2012": 100})[0, 0, 0] > 0.1  # lifts the black point
    assert render(ramp, {"Blacks2012": -100})[0, 10, 0] == 0.0  # crushes the darkest tones
    assert render(ramp, {"Whites2012": -100})[0, -1, 0] < 0.9
    assert render(ramp, {"Whites2012": 100})[0, -20, 0] == 1.0


def test_parametric_curve_monotone_for_random_sliders_and_splits() -> None:
    rng = np.random.default_rng(11)
    x = np.linspace(0.0, 1.0, 20001, dtype=np.float64)
    cases = [((0.25, 0.5, 0.75), v) for v in ([1, -1, 1, -1], [-1, 1, -1, 1], [1, 1, 1, 1], [-1, -1, -1, -1])]
    for _ in range(40):
        splits = np.sort(rng.uniform(0.03, 0.97, 3))
        if np.min(np.diff(np.r_[0, splits, 1])) < 0.02:
            continue
        cases.append((tuple(splits), list(rng.uniform(-1, 1, 4))))
    for splits, values in cases:
        y, dy = E.parametric_curve(x, values, splits)
        assert np.all(np.diff(y) > 0), (splits, values)
        assert abs(y[0]) < 1e-9 and abs(y[-1] - 1) < 1e-9
        assert np.allclose(dy[1:-1], np.gradient(y, x)[1:-1], atol=2e-2)
    # each region moves its own part of the curve most
    for i, centre in enumerate((0.1875, 0.375, 0.625, 0.8125)):
        values = [0.0] * 4
        values[i] = 1.0
        y, _ = E.parametric_curve(x, values)
        assert abs(x[np.argmax(y - x)] - centre) < 0.01 and (y - x).max() > 0.09
    with pytest.raises(ValueError):
        E.parametric_curve(x, [0, 0, 0, 0], (0.5, 0.4, 0.75))


def test_tone_curve_monotone_for_random_tone_sliders() -> None:
    rng = np.random.default_rng(3)
    t = np.linspace(0, 1, 4001, dtype=np.float32)
    for _ in range(60):
        p = {n: np.float32(0.0) for n in P.PARAM_NAMES}
        for n in E.TONE_KEYS:
            p[n] = np.float32(rng.choice([-1.0, 1.0, rng.uniform(-1, 1)]))
        curve, slope = E.tone_curve(t, p)
        assert np.all(np.diff(curve) >= -1e-6)
        assert slope.min() > 0


# --------------------------------------------------------------------------------------------------
# Global colour
# --------------------------------------------------------------------------------------------------
def test_saturation_minus_100_is_grey(photos: list[np.ndarray]) -> None:
    for img in photos:
        out = render(img, {"Saturation": -100})
        assert (out.max(-1) - out.min(-1)).max() <= 1.0 / 255.0
        assert np.abs(out[..., 0] - C.luminance(*np.moveaxis(img, -1, 0))).max() < 1e-5  # keeps luma


def test_saturation_plus_scales_chroma(photos: list[np.ndarray]) -> None:
    chroma0, _, _ = _opponent(photos[1])
    chroma1, _, _ = _opponent(render(photos[1], {"Saturation": 50}))
    assert 1.2 < chroma1.mean() / chroma0.mean() < 1.55


def test_temperature_and_tint_directions(photos: list[np.ndarray]) -> None:
    for img in photos:
        rb = (img[..., 0] - img[..., 2]).mean()
        warm, cool = render(img, {"IncrementalTemperature": 50}), render(img, {"IncrementalTemperature": -50})
        assert (warm[..., 0] - warm[..., 2]).mean() > rb + 0.03
        assert (cool[..., 0] - cool[..., 2]).mean() < rb - 0.03

        def g_excess(x: np.ndarray) -> float:
            return float((x[..., 1] - 0.5 * (x[..., 0] + x[..., 2])).mean())

        assert g_excess(render(img, {"IncrementalTint": 50})) < g_excess(img) - 0.02  # magenta
        assert g_excess(render(img, {"IncrementalTint": -50})) > g_excess(img) + 0.02  # green


def test_white_balance_keeps_grey_luminance() -> None:
    grey = np.full((2, 2, 3), 0.5, np.float32)
    for prm in ({"IncrementalTemperature": 80}, {"IncrementalTint": -60}):
        out = render(grey, prm)
        assert abs(_linear_luminance(out).mean() - _linear_luminance(grey).mean()) < 1e-3


def test_vibrance_prefers_low_saturation_and_protects_skin() -> None:
    def gain(patch: np.ndarray, v: float = 60) -> float:
        c0 = _opponent(patch)[0].mean()
        return float(_opponent(render(patch, {"Vibrance": v}))[0].mean() / c0 - 1.0)

    low, high = _patch(200, 0.15, 0.7), _patch(200, 0.8, 0.7)
    assert gain(low) > 2.0 * gain(high) > 0.0
    skin, other = _patch(28, 0.35, 0.8), _patch(200, 0.35, 0.8)
    assert 0.0 < gain(skin) < 0.5 * gain(other)
    assert gain(low, -60) < -0.2  # negative vibrance desaturates


# --------------------------------------------------------------------------------------------------
# Specific colour (HSL)
# --------------------------------------------------------------------------------------------------
def test_band_weights_partition_of_unity() -> None:
    hue = np.linspace(-180.0, 180.0, 7201)
    total = sum(C.band_weight(hue, k) for k in range(8))
    assert np.abs(total - 1.0).max() < 1e-9
    for k, centre in enumerate(C.HSL_CENTRES):
        signed = (centre + 180.0) % 360.0 - 180.0
        assert abs(C.band_weight(np.array([signed]), k)[0] - 1.0) < 1e-12


def test_uniform_hue_shift_is_a_rotation() -> None:
    wheel = _hue_wheel()
    prm = {f"HueAdjustment{b}": 50 for b in P.HSL_BANDS}
    _, _, h0 = _opponent(wheel)
    _, _, h1 = _opponent(render(wheel, prm))
    shift = (h1 - h0 + 180.0) % 360.0 - 180.0
    assert np.abs(shift[:12] - 15.0).max() < 1.0  # lower-saturation rows never clip


def test_blue_hue_shift_moves_blue_only_and_leaves_greys() -> None:
    blue, red = _patch(240, 0.7, 0.7), _patch(0, 0.7, 0.7)
    ramp = np.linspace(0, 1, 64, dtype=np.float32)[None, :, None].repeat(3, 2)
    h0 = _opponent(blue)[2].mean()
    for v, sign in ((100, 1), (-100, -1)):
        prm = {"HueAdjustmentBlue": v}
        shift = ((_opponent(render(blue, prm))[2].mean() - h0 + 180) % 360) - 180
        assert 25.0 < sign * shift < 32.0, shift
        assert np.abs(render(red, prm) - red).max() < 1e-6
        assert np.abs(render(ramp, prm) - ramp).max() < 1e-6


def test_band_saturation_and_luminance() -> None:
    green, red = _patch(120, 0.6, 0.6), _patch(0, 0.6, 0.6)
    grey = np.full((4, 4, 3), 0.4, np.float32)
    out = render(green, {"SaturationAdjustmentGreen": -100})
    assert (out.max(-1) - out.min(-1)).max() < 1e-5
    assert np.abs(render(red, {"SaturationAdjustmentGreen": -100}) - red).max() < 1e-6
    darker = render(green, {"LuminanceAdjustmentGreen": -100})
    assert (
        C.luminance(*np.moveaxis(darker, -1, 0)).mean() < 0.8 * C.luminance(*np.moveaxis(green, -1, 0)).mean()
    )
    assert np.abs(render(grey, {"LuminanceAdjustmentGreen": -100}) - grey).max() < 1e-6


# --------------------------------------------------------------------------------------------------
# LUT and .cube
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["trilinear", "tetrahedral"])
def test_lut_exact_on_affine_maps(method: str) -> None:
    rng = np.random.default_rng(0)
    pix = rng.random((500, 3), dtype=np.float32)
    assert np.abs(apply_lut(pix, identity_lut(17), method) - pix).max() < 1e-6
    matrix = np.array([[0.8, 0.1, 0.05], [0.05, 0.9, 0.1], [0.1, 0.2, 0.6]], np.float32)
    lut = identity_lut(9) @ matrix.T + 0.02
    assert np.abs(apply_lut(pix, lut, method) - (pix @ matrix.T + 0.02)).max() < 1e-5
    with pytest.raises(ValueError):
        apply_lut(pix, lut, "cubic")


@pytest.mark.parametrize("method", ["trilinear", "tetrahedral"])
def test_baked_lut_matches_direct_render(photos: list[np.ndarray], method: str) -> None:
    rng = np.random.default_rng(99)
    worst = 100.0
    for img in photos:
        for _ in range(4):
            prm = _random_params(rng, 0.3)
            lut = bake_lut(prm, 33)
            worst = min(worst, _psnr(apply_lut(img, lut, method), render(img, prm)))
    assert worst >= 45.0, worst


def test_8bit_kernel_matches_float_tetrahedral_and_pillow(photos: list[np.ndarray]) -> None:
    """The compiled 8-bit kernel is the float tetrahedral path rounded to 8 bits (≤ 1 level), an
    independent implementation (Pillow's trilinear Color3DLUT) agrees to a few levels, identity
    and affine LUTs are exact, and it stays ≥ 50 dB from the exact render."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(5)
    values = np.arange(256, dtype=np.uint8)
    everything = np.stack(np.meshgrid(values, values, values[::17], indexing="ij"), -1).reshape(-1, 1, 3)
    for n in (2, 17, 25, 33):
        assert np.array_equal(apply_lut_u8(everything, identity_lut(n)), everything)
    matrix = np.array([[0.8, 0.1, 0.05], [0.05, 0.9, 0.1], [0.1, 0.2, 0.6]], np.float32)
    affine = identity_lut(9) @ matrix.T + 0.02
    exact = np.clip(np.rint((everything / 255.0) @ matrix.T * 255.0 + 0.02 * 255.0), 0, 255)
    assert np.abs(apply_lut_u8(everything, affine).astype(int) - exact).max() <= 1
    worst = 100.0
    for img in photos:
        u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        prm = _random_params(rng, 0.3)
        lut = bake_lut(prm, 33)
        fast = apply_lut_u8(u8, lut)
        assert fast.dtype == np.uint8 and fast.shape == u8.shape
        ref = np.clip(apply_lut(u8 / np.float32(255.0), lut, "tetrahedral"), 0.0, 1.0) * 255.0
        assert np.abs(fast - ref).max() <= 0.5 + 1e-3
        table = np.ascontiguousarray(lut.transpose(2, 1, 0, 3)).reshape(-1, 3)
        pillow = np.asarray(Image.fromarray(u8).filter(ImageFilter.Color3DLUT(33, table, channels=3)))
        diff = np.abs(fast.astype(int) - pillow)  # trilinear vs tetrahedral: a few levels at kinks
        assert diff.max() <= 4 and diff.mean() < 0.3, (diff.max(), diff.mean())
        worst = min(worst, _psnr(fast / np.float32(255.0), render(u8 / np.float32(255.0), prm)))
    assert worst >= 50.0, worst
    # a view that is not contiguous (a flipped crop) gives the same result as its copy
    view = np.clip(np.rint(photos[0] * 255.0), 0, 255).astype(np.uint8)[::2, ::-1]
    lut = bake_lut({"Exposure2012": 0.5, "HueAdjustmentRed": 30}, 25)
    assert np.array_equal(apply_lut_u8(view, lut), apply_lut_u8(view.copy(), lut))


def test_render_fast_close_to_render(photos: list[np.ndarray]) -> None:
    prm = {"Exposure2012": 0.4, "Contrast2012": 25, "Vibrance": 30, "HueAdjustmentOrange": -20}
    assert _psnr(render_fast(photos[0], prm), render(photos[0], prm)) >= 45.0


def test_cube_roundtrip_and_header(tmp_path: Path) -> None:
    lut = bake_lut({"Exposure2012": 0.3, "SaturationAdjustmentBlue": -40, "IncrementalTemperature": 20}, 17)
    path = tmp_path / "look.cube"
    write_cube(path, lut, 'warm "look"')
    lines = path.read_text().splitlines()
    assert lines[0] == "TITLE \"warm 'look'\""
    assert lines[1] == "LUT_3D_SIZE 17"
    assert lines[2] == "DOMAIN_MIN 0.0 0.0 0.0" and lines[3] == "DOMAIN_MAX 1.0 1.0 1.0"
    rows = lines[4:]
    assert len(rows) == 17**3
    assert np.allclose([float(v) for v in rows[1].split()], lut[1, 0, 0], atol=1e-6)  # red fastest
    assert np.allclose([float(v) for v in rows[17].split()], lut[0, 1, 0], atol=1e-6)
    back = read_cube(path)
    assert back.shape == lut.shape and np.abs(back - lut).max() <= 1e-6


def test_read_cube_handwritten_and_errors(tmp_path: Path) -> None:
    text = '# comment\nTITLE "tiny # one"\nLUT_3D_SIZE 2\n\n'
    rows = [(r, g, b) for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    text += "\n".join(f"{r} {g * 0.5} {b}" for r, g, b in rows) + "\n"
    good = tmp_path / "tiny.cube"
    good.write_text(text)
    lut = read_cube(good)
    assert lut.shape == (2, 2, 2, 3)
    assert np.allclose(lut[1, 1, 0], [1.0, 0.5, 0.0]) and np.allclose(lut[0, 0, 1], [0.0, 0.0, 1.0])
    bad = tmp_path / "bad.cube"
    bad.write_text("LUT_3D_SIZE 2\n0 0 0\n")
    with pytest.raises(CubeError):
        read_cube(bad)
    one_d = tmp_path / "oned.cube"
    one_d.write_text("LUT_1D_SIZE 2\n0 0 0\n1 1 1\n")
    with pytest.raises(CubeError):
        read_cube(one_d)


# --------------------------------------------------------------------------------------------------
# speed (generous bound: a regression guard, not a benchmark)
# --------------------------------------------------------------------------------------------------
def test_render_speed_512x768() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((512, 768, 3), dtype=np.float32)
    prm = {n: float(rng.uniform(-0.5, 0.5) * P.SPECS[n].scale) for n in P.PARAM_NAMES}
    render(img, prm)
    best = min(_timed(lambda: render(img, prm)) for _ in range(3))
    assert best < 0.25, best


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start
