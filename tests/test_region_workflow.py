"""Region workflow: segmentation, per-region rendering, the region completion and a real build."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aether_data import params as P
from aether_data.contract import (
    TASK_TOKENS,
    CompletionFormatError,
    build_completion,
    is_valid_completion,
    parse_completion,
)
from aether_data.regions import ClassicalSegmenter, make_segmenter, region_weights, render_regions

PHOTOS = Path(__file__).resolve().parent.parent / "aether_data" / "data" / "photos"


def photo(name: str = "rocket.jpg", short: int = 160) -> np.ndarray:
    im = Image.open(PHOTOS / name).convert("RGB")
    s = short / min(im.size)
    return np.asarray(im.resize((round(im.size[0] * s), round(im.size[1] * s))))


def test_classical_segmenter_labels_names_and_cache():
    seg = ClassicalSegmenter()
    img = photo("astronaut.jpg")
    a = seg.segment(img)
    assert a.labels.shape == img.shape[:2] and a.labels.dtype == np.uint8
    assert int(a.labels.max()) == len(a.names) - 1 and len(set(a.names)) == len(a.names)
    assert abs(sum(a.areas()) - 1.0) < 1e-9
    assert seg.segment(img.copy()) is a  # cached per image content


def test_sky_by_position_and_colour():
    img = np.zeros((120, 160, 3), np.uint8)
    img[:50] = (110, 160, 230)  # blue sky on top
    img[50:] = (70, 110, 40)  # green field below
    seg = make_segmenter().segment(img)
    assert "sky" in seg.names
    sky = seg.labels == seg.names.index("sky")
    assert sky[:45].mean() > 0.95 and sky[60:].mean() < 0.05


def test_weights_partition_and_render_identity():
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 1
    w = region_weights(labels, 2, (3, -5), 4.0)
    assert np.allclose(w.sum(axis=0), 1.0, atol=1e-5)
    img = photo(short=40)[:40, :60]
    assert np.array_equal(render_regions(img, labels, [{}, {}], (3, -5), 4.0), img)
    out = render_regions(img, labels, [{}, {"Exposure2012": 1.0}], (0, 0), 0.0)
    assert np.array_equal(out[:, :30], img[:, :30]) and out[:, 30:].mean() > img[:, 30:].mean() + 10


def test_region_completion_is_an_extension_of_the_plan_layout():
    plans = {"light": "Brighten the sky.", "globalcolor": None, "specificcolor": None}
    text = build_completion(None, None, plans, regions="sky: brighten (exposure +0.40)")
    assert text.startswith("Regions: sky: brighten")
    c = parse_completion(text, "region")
    assert c.regions == "sky: brighten (exposure +0.40)" and c.plans["light"] == "Brighten the sky."
    # the global layouts are untouched: no regions line there, and a region completion needs one
    glob = build_completion(None, None, plans)
    assert not glob.startswith("Regions:") and parse_completion(glob, "param").regions is None
    assert not is_valid_completion(text, "param")
    with pytest.raises(CompletionFormatError, match="missing:regions"):
        parse_completion(glob, "region")
    assert TASK_TOKENS["region"] == "<Region_Retouch_Task>"


def test_transformers_segmenter_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Mask2FormerConfig(
        backbone_config=transformers.SwinConfig(
            image_size=64,
            patch_size=4,
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=4,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        num_attention_heads=2,
        id2label={0: "sky", 1: "person", 2: "tree"},
        label2id={"sky": 0, "person": 1, "tree": 2},
    )
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = transformers.Mask2FormerForUniversalSegmentation(cfg)
    model.save_pretrained(tmp_path)
    proc = transformers.Mask2FormerImageProcessor(size={"height": 64, "width": 64}, do_reduce_labels=False)
    proc.save_pretrained(tmp_path)
    seg = make_segmenter(str(tmp_path))
    out = seg.segment(photo(short=48))
    assert out.labels.shape == (48, photo(short=48).shape[1]) and set(out.names) <= {"sky", "person", "tree"}
    with pytest.raises(ValueError, match="local folder"):
        make_segmenter(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def region_build(ray_session, tmp_path_factory) -> Path:
    from conftest import run_cli

    out = tmp_path_factory.mktemp("region") / "ds"
    code, text = run_cli(
        "build", "--workflow", "region", "--num-samples", "32", "--workers", "1", "--out", str(out), "--quiet"
    )
    assert code == 0, text
    return out


def test_region_build_is_audited_rerenders_and_names_regions(region_build):
    from conftest import run_cli

    code, text = run_cli("audit", str(region_build))
    assert code == 0 and "ok" in text, text
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(next((region_build / "shards").glob("*.tar"))) as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            members.setdefault(key, {})[ext] = tar.extractfile(m).read()
    assert len(members) == 32
    psnrs = []
    for key, d in sorted(members.items()):
        rec = json.loads(d["json"])
        assert rec["workflow"] == "region" and rec["task"] == "<Region_Retouch_Task>"
        inp = np.asarray(Image.open(io.BytesIO(d["input.jpg"])).convert("RGB"))
        tgt = np.asarray(Image.open(io.BytesIO(d["target.jpg"])).convert("RGB"))
        labels = np.asarray(Image.open(io.BytesIO(d["masks.png"])))
        assert labels.shape == inp.shape[:2] and labels.dtype == np.uint8
        reg = rec["regions"]
        items = {r["label"]: r for r in reg["items"]}
        assert set(np.unique(labels)) == set(items)
        stored = [items[k]["params"] if k in items else {} for k in range(max(items) + 1)]  # 0 may be absent
        params = [{n: P.denormalise(n, v) for n, v in p.items()} for p in stored]
        again = render_regions(inp, labels, params, tuple(reg["boundary"]["shift"]), reg["boundary"]["sigma"])
        mse = float(((again.astype(np.float64) - tgt) ** 2).mean())
        psnrs.append(10 * np.log10(255**2 / max(mse, 1e-12)))
        named = [r["name"] for k, r in items.items() if k != 0]
        assert any(name in rec["completion"] and name in rec["prompt"] for name in named), key
        assert parse_completion(rec["completion"], "region").regions
    assert min(psnrs) >= 40.0, psnrs


def test_inspect_contact_sheet_shows_masks(region_build, tmp_path):
    from aether_data.inspect import MASKS_FIELD, contact_sheet, first_samples

    samples = first_samples(region_build, 2)
    assert all(MASKS_FIELD in rec for _, rec, _, _ in samples)
    sheet = Image.open(contact_sheet(samples, tmp_path / "sheet.png", cell=64))
    assert sheet.width == 3 * 64 + 4 * 6  # input | target | masks


def test_report_contact_sheet_shows_masks(region_build, tmp_path):
    """The HTML report's contact sheet draws each region example's label map as a third column,
    read by offset from the member after its JSON, and the map is tinted, not blank."""
    import shutil

    from aether_data.report import write_report

    ds = tmp_path / "ds"
    shutil.copytree(region_build, ds)
    paths = write_report(ds, examples_per_workflow=2)
    sheet = np.asarray(Image.open(paths["contact_sheet.png"]).convert("RGB"))
    cell, pad = 192, 6
    assert sheet.shape[1] == 3 * cell + 4 * pad  # input | target | masks
    third = sheet[:, 2 * cell + 3 * pad : 3 * cell + 3 * pad]
    assert (third.max(axis=2) > 40).mean() > 0.2  # the overlay, not the dark background
    assert "contact_sheet.png" in paths["html"].read_text(encoding="utf-8")
