"""`aether render`: the official param.json and presets rendered by the develop engine, no model."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli

OFFICIAL_PARAM_JSON = Path(__file__).parent / "data" / "veraretouch" / "param.json"
XMP_DIR = Path(__file__).parent / "data" / "presets" / "xmp"


def _linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _chart(path: Path) -> np.ndarray:
    """A mid-grey patch (sRGB 118 ≈ 18 % linear) beside muted red, green and blue patches."""
    img = np.zeros((48, 192, 3), np.uint8)
    img[:, :48] = 118
    img[:, 48:96] = (140, 90, 80)
    img[:, 96:144] = (90, 130, 85)
    img[:, 144:] = (80, 95, 140)
    Image.fromarray(img).save(path)
    return img.astype(np.float64) / 255.0


def _saturation(img: np.ndarray) -> float:
    return float(np.mean([colorsys.rgb_to_hsv(*img[24, x])[1] for x in (72, 120, 168)]))


def test_official_param_json_renders_brighter_cooler_more_saturated(tmp_path: Path) -> None:
    src = _chart(tmp_path / "in.png")
    code, text = run_cli("render", str(tmp_path / "in.png"), "--params", str(OFFICIAL_PARAM_JSON), "-o", str(tmp_path / "out.png"))  # fmt: skip
    assert code == 0, text
    assert "Exposure2012 +1.5" in text
    out = np.asarray(Image.open(tmp_path / "out.png"), np.float64) / 255.0
    grey_in, grey_out = _linear(src[:, :48]).reshape(-1, 3), _linear(out[:, :48]).reshape(-1, 3)
    ratio = grey_out.mean() / grey_in.mean()
    assert abs(ratio / 2**1.5 - 1.0) <= 0.05, ratio  # +1.5 EV (official Exposure 30 = 30/20 EV)
    r, _, b = grey_out.mean(axis=0)
    assert b > r * 1.1  # Temperature -40: cooler
    # Saturation +30: more saturated than the input and than the same file without the saturation
    no_sat = json.loads(OFFICIAL_PARAM_JSON.read_text())
    no_sat["Saturation"]["value"] = 0
    (tmp_path / "nosat.json").write_text(json.dumps(no_sat))
    code, text = run_cli("render", str(tmp_path / "in.png"), "--params", str(tmp_path / "nosat.json"), "-o", str(tmp_path / "nosat.png"))  # fmt: skip
    assert code == 0, text
    plain = np.asarray(Image.open(tmp_path / "nosat.png"), np.float64) / 255.0
    assert _saturation(out) > _saturation(src) and _saturation(out) > _saturation(plain) + 0.03


def test_preset_file_renders_with_the_preset_engine(tmp_path: Path) -> None:
    from aether_data.develop.preset_ops import render_preset
    from aether_data.io.imaging import load_image
    from aether_data.presets.importer import read_preset_file

    _chart(tmp_path / "in.png")
    xmp = sorted(XMP_DIR.glob("*.xmp"))[0]
    code, text = run_cli(
        "render", str(tmp_path / "in.png"), "--preset", str(xmp), "-o", str(tmp_path / "out.png")
    )
    assert code == 0, text
    out = np.asarray(Image.open(tmp_path / "out.png"))
    settings, _ = read_preset_file(xmp)
    expected = render_preset(load_image(tmp_path / "in.png"), settings, 0, method="direct")
    assert np.abs(out.astype(int) - np.clip(expected * 255 + 0.5, 0, 255).astype(int)).max() <= 1
    assert np.abs(out.astype(int) - np.asarray(Image.open(tmp_path / "in.png")).astype(int)).max() > 3


def test_render_needs_exactly_one_source_and_a_valid_file(tmp_path: Path) -> None:
    _chart(tmp_path / "in.png")
    code, text = run_cli("render", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"))
    assert code == 2 and "exactly one" in text
    (tmp_path / "bad.json").write_text(json.dumps({"Exposure2012": {"value": 300}}))
    code, text = run_cli("render", str(tmp_path / "in.png"), "--params", str(tmp_path / "bad.json"), "-o", str(tmp_path / "o.png"))  # fmt: skip
    assert code == 2 and "official range" in text
    assert not (tmp_path / "o.png").exists()
    # legacy files written on our slider scale (Exposure in EV) are still readable with --scale slider
    (tmp_path / "ev.json").write_text(json.dumps({"Exposure2012": {"value": 1.5}}))
    code, text = run_cli("render", str(tmp_path / "in.png"), "--params", str(tmp_path / "ev.json"), "--scale", "slider", "-o", str(tmp_path / "o.png"))  # fmt: skip
    assert code == 0 and "Exposure2012 +1.5" in text
