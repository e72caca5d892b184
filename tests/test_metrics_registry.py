"""The metric registry: every column of the paper's Tables 1–2, each full-reference metric checked
against an independent computation (scikit-image for PSNR/SSIM, numpy re-derivations for L1, the
histogram intersections, GMSD and TD, piq's own classes for DISTS/LPIPS on tiny random weights), and
the one-line error for missing weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve, gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from aether_data.io.imaging import load_image
from aether_data.io.sources import bundled_photos
from aether_data.scoring import METRICS, MissingWeights, make_scorer
from aether_data.scoring import fullref as F
from aether_data.scoring.registry import TABLE_COLUMNS, full_reference

# the arrows of the paper's Table 1 header and Table 2 (L_1)
PAPER_ARROWS = {
    "psnr": True, "ssim": True, "lpips": False, "hist_l": True, "hist_c": True, "hist_s": True,
    "hist_m": True, "laion": True, "qalign": True, "liqe": True, "dists": False, "gmsd": False,
    "td": False, "l1": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    img = load_image(bundled_photos()[0], max_side=96)
    rng = np.random.default_rng(3)
    edited = np.clip(img * 0.9 + 0.05 + rng.normal(0, 0.02, img.shape), 0, 1).astype(np.float32)
    return img.astype(np.float32), edited


def test_registry_has_every_paper_column_with_its_direction() -> None:
    assert set(PAPER_ARROWS) == set(METRICS)
    for name, up in PAPER_ARROWS.items():
        assert METRICS[name].higher_is_better is up, name
    assert {c for cols in TABLE_COLUMNS.values() for c in cols} == set(METRICS)
    # MonetGPT's FiveK protocol: best over experts for PSNR, SSIM, LPIPS, DISTS
    assert all(METRICS[n].best_of_experts for n in ("psnr", "ssim", "lpips", "dists"))
    assert {METRICS[n].kind for n in ("laion", "qalign", "liqe")} == {"noref"}


def test_l1_psnr_ssim_match_independent_implementations(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert full_reference("l1", b, a) == pytest.approx(np.abs(a64 - b64).sum() / a.size, rel=1e-9)
    assert full_reference("psnr", b, a) == pytest.approx(peak_signal_noise_ratio(a64, b64, data_range=1.0))
    # Wang et al.'s settings, as scikit-image documents them for reproducing the paper's SSIM
    ref = structural_similarity(
        a64,
        b64,
        channel_axis=2,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert full_reference("ssim", b, a) == pytest.approx(ref, abs=1e-9)
    assert full_reference("psnr", a, a) == 100.0 and full_reference("ssim", a, a) == pytest.approx(1.0)
    u8 = np.rint(a * 255).astype(np.uint8)
    assert full_reference("l1", u8, u8.astype(np.float32) / 255) == pytest.approx(0.0, abs=1e-7)


def test_histogram_intersections_on_hand_built_images() -> None:
    black = np.zeros((16, 16, 3), np.float32)
    white = np.ones((16, 16, 3), np.float32)
    half = black.copy()
    half[:, :8] = 1.0
    # luminance: half of `half`'s pixels are in black's bin → 0.5; black vs white share no bin
    assert F.hist_scores(half, black)["hist_l"] == pytest.approx(0.5)
    assert F.hist_scores(white, black)["hist_l"] == 0.0
    # saturation: grey images all have S = 0; a pure red image has S = 1
    red = np.zeros((16, 16, 3), np.float32)
    red[..., 0] = 1.0
    assert F.hist_scores(red, white)["hist_s"] == 0.0 and F.hist_scores(white, black)["hist_s"] == 1.0
    # pooled references: the prediction equals one of two references with disjoint luminance → 0.5
    s = F.hist_scores(black, [black, white])
    assert s["hist_l"] == pytest.approx(0.5)
    assert s["hist_m"] == pytest.approx((s["hist_l"] + s["hist_c"] + s["hist_s"]) / 3)


def test_histograms_match_numpy_recomputation(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    w = np.array([0.299, 0.587, 0.114])

    def norm_hist(x: np.ndarray, rng: tuple[float, float]) -> np.ndarray:
        h = np.histogram(x.ravel(), bins=64, range=rng)[0].astype(np.float64)
        return h / h.sum()

    def sat(x: np.ndarray) -> np.ndarray:
        mx, mn = x.max(2), x.min(2)
        return np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0)

    got = F.hist_scores(b, a)
    exp_l = np.minimum(norm_hist(b @ w, (0, 1)), norm_hist(a @ w, (0, 1))).sum()
    exp_s = np.minimum(norm_hist(sat(b), (0, 1)), norm_hist(sat(a), (0, 1))).sum()
    assert got["hist_l"] == pytest.approx(exp_l, abs=2 / a[..., 0].size)  # ≤ a bin-edge pixel or two
    assert got["hist_s"] == pytest.approx(exp_s, abs=2 / a[..., 0].size)


def _gmsd_numpy(x: np.ndarray, y: np.ndarray) -> float:
    """Xue et al. 2013: Y of YIQ, 2×2 average, Prewitt/3 gradients, c = 170/255², std of the GMS map."""

    def prep(img: np.ndarray) -> np.ndarray:
        lum = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        h, w = lum.shape
        lum = np.pad(lum, ((0, h % 2), (0, w % 2)))
        return lum.reshape(lum.shape[0] // 2, 2, lum.shape[1] // 2, 2).mean((1, 3))

    k = np.array([[-1.0, 0.0, 1.0]] * 3) / 3

    def grad(lum: np.ndarray) -> np.ndarray:
        # cross-correlation with zero padding (conv2d semantics)
        gx = convolve(lum, k[::-1, ::-1], mode="constant")
        gy = convolve(lum, k.T[::-1, ::-1], mode="constant")
        return np.sqrt(gx**2 + gy**2)

    mx, my = grad(prep(x)), grad(prep(y))
    c = 170 / 255**2
    gms = (2 * mx * my + c) / (mx**2 + my**2 + c)
    return float(gms.std())


def test_gmsd_matches_paper_formula(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    assert full_reference("gmsd", b, a) == pytest.approx(_gmsd_numpy(b, a), rel=1e-4, abs=1e-6)
    assert full_reference("gmsd", a, a) == pytest.approx(0.0, abs=1e-6)


def test_td_is_high_frequency_luma_difference(pair: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = pair
    w = np.array([0.299, 0.587, 0.114])

    def hf(x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float64) @ w
        return y - gaussian_filter(y, 2.0, mode="reflect", truncate=4.0)

    exp = 100 * np.abs(hf(b) - hf(a)).mean()
    assert full_reference("td", b, a) == pytest.approx(exp, rel=2e-3)
    # a global brightness offset leaves texture untouched (clip-free range)
    mid = np.clip(a, 0.1, 0.8)
    assert full_reference("td", mid + 0.1, mid) == pytest.approx(0.0, abs=1e-3)
    assert full_reference("td", b, a) > 0.1


def _random_heads(seed: int = 0) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    chans = [3, 64, 128, 256, 512, 512]
    alpha, beta = torch.rand(1, sum(chans), 1, 1, generator=g), torch.rand(1, sum(chans), 1, 1, generator=g)
    total = alpha.sum() + beta.sum()  # DISTS's learned weights sum to 1 (identical images → 0)
    dists_head = {"alpha": alpha / total, "beta": beta / total}
    lpips_head = [torch.rand(1, c, 1, 1, generator=g) for c in (64, 128, 256, 512, 512)]
    return dists_head, lpips_head


@pytest.fixture(scope="module")
def deep_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.manual_seed(0)
    feats = F.vgg16_features()
    d = tmp_path_factory.mktemp("metric_weights")
    dists_head, lpips_head = _random_heads()
    torch.save(feats.state_dict(), d / F.VGG16_FILE)  # features-only state dict
    torch.save(dists_head, d / F.DISTS_FILE)
    torch.save(lpips_head, d / F.LPIPS_FILE)
    return {"dir": str(d), "features": feats.state_dict(), "dists": dists_head, "lpips": lpips_head}


def test_dists_lpips_agree_with_piq_classes(
    deep_weights: dict[str, object], pair: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    import piq
    import piq.perceptual as P
    from torchvision.models import vgg16

    a, b = pair
    got_d = F.dists(b, a, weights_dir=deep_weights["dir"])
    got_l = F.lpips(b, a, weights_dir=deep_weights["dir"])

    # piq's own classes, their downloads replaced by the same random weights
    def fake_vgg16(*_: object, **__: object) -> torch.nn.Module:
        m = vgg16(weights=None)
        m.features.load_state_dict(deep_weights["features"])
        return m

    monkeypatch.setattr(P, "vgg16", fake_vgg16)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **_: deep_weights["dists"])
    ref_dists = piq.DISTS()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **_: deep_weights["lpips"])
    ref_lpips = piq.LPIPS()
    ta = torch.from_numpy(a.transpose(2, 0, 1)).unsqueeze(0)
    tb = torch.from_numpy(b.transpose(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        assert got_d == pytest.approx(float(ref_dists(tb, ta)), rel=1e-5)
        assert got_l == pytest.approx(float(ref_lpips(tb, ta)), rel=1e-5)
    assert F.dists(a, a, weights_dir=deep_weights["dir"]) == pytest.approx(0.0, abs=1e-5)
    assert F.lpips(a, a, weights_dir=deep_weights["dir"]) == pytest.approx(0.0, abs=1e-7)
    assert got_d > 0 and got_l > 0


def test_missing_weights_is_one_line_naming_file_and_place(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, pair: tuple[np.ndarray, np.ndarray]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("AETHER_METRIC_WEIGHTS", raising=False)
    F._deep_metric.cache_clear()
    a, b = pair
    with pytest.raises(MissingWeights) as e:
        F.dists(b, a)
    msg = str(e.value)
    assert "\n" not in msg and F.VGG16_FILE in msg and str(tmp_path) in msg
    for name, opt in (("qalign", "--qalign-model"), ("liqe", "--liqe-model")):
        with pytest.raises(MissingWeights, match=opt) as e:
            make_scorer(name, None)
        assert "\n" not in str(e.value)
        with pytest.raises(MissingWeights, match="not found"):
            make_scorer(name, str(tmp_path) + "/nope")


def test_auto_source_filter_spec_accepts_registry_scorers() -> None:
    from aether_data.config import SpecError, load_spec

    spec = load_spec(workflow="auto", overrides={"auto": {"scorer": "qalign", "scorer_model": "/m"}})
    assert spec.auto.scorer == "qalign"
    with pytest.raises(SpecError, match="scorer_model"):
        load_spec(workflow="auto", overrides={"auto": {"scorer": "liqe", "min_source_score": 3.0}})
