"""Colour-transfer statistics of a pair (the CPU encoder's second input): they must say what moved."""

from __future__ import annotations

import torch

from aether_data.develop import render_torch
from aether_data.params import to_vector
from model_core.encoder import RetouchEncoder
from model_core.er_config import TINY
from model_core.er_data import default_photos, load_image, resize_square
from model_core.pair_stats import HUE_BINS, NUM_FEATURES, QUANTILES, TONE_BINS, pair_statistics

TONE = slice(0, 4 * TONE_BINS)  # [weights, Δluma, Δred–blue, Δgreen–magenta] per tone bin
HUE = slice(4 * TONE_BINS, 4 * TONE_BINS + 6 * HUE_BINS)


def _photo() -> torch.Tensor:
    img = resize_square(load_image(default_photos()[0], 128), 64)
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def _edit(x: torch.Tensor, **params: float) -> torch.Tensor:
    return render_torch(x, torch.from_numpy(to_vector(params))[None]).clamp(0, 1)


def test_identity_pair_has_no_deltas() -> None:
    x = _photo()
    s = pair_statistics(x, x)[0]
    assert s.shape == (NUM_FEATURES,)
    tone = s[TONE].reshape(4, TONE_BINS)
    hue = s[HUE].reshape(6, HUE_BINS)
    assert torch.all(tone[1:] == 0) and torch.all(hue[1:4] == 0) and torch.all(hue[5] == 0)
    assert float(tone[0].sum()) > 0.5  # bin weights cover the image


def test_exposure_warmth_and_hue_edits_move_their_statistics() -> None:
    x = _photo()
    brighter = pair_statistics(x, _edit(x, Exposure2012=1.0))[0]
    assert float(brighter[TONE].reshape(4, TONE_BINS)[1].max()) > 0.05  # luma rises in some tone band
    q = len(QUANTILES)
    quant_delta = brighter[4 * TONE_BINS + 6 * HUE_BINS + q : 4 * TONE_BINS + 6 * HUE_BINS + 2 * q]
    assert float(quant_delta.min()) >= 0.0 and float(quant_delta.max()) > 0.05

    warmer = pair_statistics(x, _edit(x, IncrementalTemperature=60.0))[0]
    red_blue = warmer[TONE].reshape(4, TONE_BINS)[2]
    assert float(red_blue.max()) > 0.01  # red–blue opponent rises

    desat = pair_statistics(x, _edit(x, Saturation=-80.0))[0]
    log_chroma = desat[HUE].reshape(6, HUE_BINS)[5]
    weights = desat[HUE].reshape(6, HUE_BINS)[0]
    populated = weights > 1e-3
    assert bool(populated.any()) and float(log_chroma[populated].max()) < -0.2  # chroma falls everywhere


def test_encoder_with_the_statistics_branch_runs_and_uses_it() -> None:
    cfg = TINY.with_(pair_stats_dim=16)
    torch.manual_seed(0)
    enc = RetouchEncoder(cfg).eval()
    assert enc.head.in_features == 8 * cfg.enc_width + 16
    x = _photo()
    s = cfg.enc_input_size
    a = torch.nn.functional.interpolate(x, size=(s, s), mode="area") * 2 - 1
    b = torch.nn.functional.interpolate(_edit(x, Saturation=-80.0), size=(s, s), mode="area") * 2 - 1
    with torch.no_grad():
        z = enc(a, b)
        assert z.shape == (1, 3 * cfg.latent_dim)
        enc.stats.fc2.weight.zero_()
        enc.stats.fc2.bias.zero_()
        assert not torch.allclose(z, enc(a, b))  # the branch feeds the head
    assert RetouchEncoder(TINY).stats is None  # off by default (paper / released weights)
