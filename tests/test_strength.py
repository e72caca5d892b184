"""Issue 17: `aether stats strength` on a paired folder, and a param build calibrated to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from aether_data.quality import failed_gate, measure_pair
from aether_data.strength import edit_strengths, ks_distance, load_strength_stats, scale_to_delta_e

GATES = dict(min_delta_e=1.5, min_rgb_diff=3.0, min_grad_corr=0.9, max_new_clipped=0.1)
KNOWN_SCALE = 1.8
"""The reference's known edits: the default sampler's draws, every slider ×1.8 (stronger edits)."""


def make_reference_pairs(root: Path, per_photo: int = 8, size: int = 256) -> list[float]:
    """input/ + target/ pairs from the bundled photos with known edits; returns their ΔE.

    Like an expert's, the reference edits are visible and keep the photo's structure: draws that
    the param workflow's default gates would refuse are drawn again.
    """
    from aether_data.develop import render_lut8
    from aether_data.io.imaging import load_image
    from aether_data.io.sources import bundled_photos
    from aether_data.sampling import PROTOCOLS, sample_params, scale_params

    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    rng = np.random.default_rng(2024)
    des = []
    for i, photo in enumerate(bundled_photos()):
        img = load_image(photo, max_side=size * 3 // 2, dtype=np.uint8)
        for j in range(per_photo):
            for _ in range(50):
                _, values = sample_params(rng, PROTOCOLS[(i + j) % len(PROTOCOLS)])
                target = render_lut8(img, scale_params(values, KNOWN_SCALE), dtype=np.uint8)
                if failed_gate(measure_pair(img, target), **GATES) is None:
                    break
            stem = f"p{i}_{j:02d}"
            Image.fromarray(img).save(root / "input" / f"{stem}.png")
            Image.fromarray(target).save(root / "target" / f"{stem}.png")
            des.append(edit_strengths(img, target)["delta_e"])
    return des


def test_edit_strengths_and_ks() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(30, 200, (128, 192, 3), dtype=np.uint8)
    brighter = np.clip(img.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    s = edit_strengths(img, brighter)
    assert s["delta_e"] > 3 and s["d_luma"] == pytest.approx(25 / 255, abs=0.01)
    assert abs(s["d_contrast"]) < 0.01
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_distance([1, 2, 3], [10, 11, 12]) == 1.0


def test_scale_to_delta_e_hits_the_target() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(30, 200, (64, 96, 3), dtype=np.uint8)

    def render(s: float) -> np.ndarray:
        return np.clip(img.astype(np.float32) + 40 * s, 0, 255).astype(np.uint8)

    for target in (2.0, 5.0, 9.0):
        s, measured = scale_to_delta_e(img, render, target)
        got = edit_strengths(img, render(s))["delta_e"]
        assert measured == pytest.approx(got, rel=0.05)
        assert got == pytest.approx(target, rel=0.15)


def test_stats_strength_then_calibrated_build_follows_the_reference(ray_session, tmp_path) -> None:
    """ΔE distribution of a calibrated 48-sample param build within KS 0.15 of the reference."""
    from conftest import run_cli

    ref_des = make_reference_pairs(tmp_path / "pairs")
    stats_file = tmp_path / "strength.yaml"
    code, text = run_cli("stats", "strength", "--pairs", str(tmp_path / "pairs"), "--out", str(stats_file))
    assert code == 0, text
    doc = yaml.safe_load(stats_file.read_text())
    assert doc["pairs"] == len(ref_des)
    assert set(doc["measures"]) == {"delta_e", "d_luma", "d_contrast", "d_saturation"}
    assert len(doc["measures"]["delta_e"]["quantiles"]) == 101
    load_strength_stats(stats_file)
    shares = {}
    for label, extra in (("calibrated", ["--strength-stats", str(stats_file)]), ("default", [])):
        out = tmp_path / label
        code, text = run_cli(
            "build", "--workflow", "param", "--num-samples", "48", "--image-size", "256",
            "--workers", "1", "--out", str(out), "--quiet", *extra,
        )  # fmt: skip
        assert code == 0, text
        built = []
        for tar in sorted((out / "shards").glob("*.tar")):
            import tarfile

            with tarfile.open(tar) as t:
                for m in t.getmembers():
                    if m.name.endswith(".json"):
                        built.append(json.loads(t.extractfile(m).read())["quality"]["delta_e"])
        shares[label] = ks_distance(built, ref_des)
    print(json.dumps({"ks": shares}))
    assert shares["calibrated"] <= 0.15, shares
    assert shares["calibrated"] < shares["default"]


def test_stats_operators_reads_lightroom_exports(tmp_path) -> None:
    """Exported images with embedded XMP develop settings are read like .xmp sidecars."""
    from aether_data.stats_operators import operator_stats, slider_moves

    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Exposure2012="{e}" '
        'crs:Contrast2012="{c}"/></rdf:RDF></x:xmpmeta>'
    )
    folder = tmp_path / "exports"
    folder.mkdir()
    for i, (e, c) in enumerate([("+0.50", "+20"), ("+0.30", "+10"), ("-0.20", "0")]):
        buf = tmp_path / "img.jpg"
        Image.new("RGB", (32, 32), (120, 100, 80)).save(buf)
        data = buf.read_bytes()
        xmp = b"http://ns.adobe.com/xap/1.0/\x00" + packet.format(e=e, c=c).encode()
        app1 = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
        (folder / f"DSC_{i}.jpg").write_bytes(data[:2] + app1 + data[2:])
    moves, n = slider_moves(folder)
    assert n == 3
    assert sorted(moves["Exposure2012"]) == [-0.2, 0.3, 0.5]
    assert sorted(moves["Contrast2012"]) == [10.0, 20.0]
    doc, counts = operator_stats(folder)
    assert counts["pairs"] == 3 and doc["params"]["Exposure2012"]["p_active"] == 1.0


def test_random_operators_are_scaled_to_the_drawn_strength() -> None:
    """auto.strength_stats: the supplementary branch's degradation has the drawn ΔE."""
    from aether_data.degrade import random_operator_degradation
    from aether_data.io.imaging import load_image
    from aether_data.io.sources import bundled_photos
    from aether_data.sampling import load_operator_stats
    from aether_data.strength import StrengthStats

    flat = {"quantiles": [6.0] * 101}
    stats = StrengthStats(
        {"measures": {m: flat for m in ("delta_e", "d_luma", "d_contrast", "d_saturation")}}
    )
    img = load_image(bundled_photos()[1], max_side=384, dtype=np.uint8)
    ops = load_operator_stats()
    got = []
    for seed in range(4):
        _, _, degraded = random_operator_degradation(
            np.random.default_rng(seed), img, ops, dtype=np.uint8, strength=stats
        )
        got.append(measure_pair(img, degraded)["delta_e"])
    assert np.median(got) == pytest.approx(6.0, rel=0.2), got
