"""GIF (first frame), WebP, TIFF, AVIF and HEIC sources are decoded, and a photograph aether cannot
decode is listed in skipped.parquet as `unsupported-format`: never silently left out."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from PIL import Image

from aether_data.io import imaging
from aether_data.io.errors import SourceError
from aether_data.io.imaging import load_image
from aether_data.io.sources import list_sources


def _photo() -> np.ndarray:
    from skimage.data import chelsea

    return chelsea()


@pytest.fixture(scope="module")
def formats_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("formats")
    im = Image.fromarray(_photo())
    im.quantize(64).save(d / "palette.gif")  # a palette (P-mode) GIF
    frames = [im.quantize(32), Image.fromarray(255 - _photo()).quantize(32)]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:])
    im.save(d / "photo.webp", quality=90)
    im.save(d / "photo.tiff")
    im.save(d / "photo.avif", quality=80)
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        im.save(d / "photo.heic")
    except ImportError:
        (d / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (d / "photo.jxl").write_bytes(b"\xff\x0a" + bytes(64))  # JPEG XL: listed, then reported
    (d / "notes.txt").write_text("not a photo")
    return d


def test_every_format_is_listed(formats_dir):
    names = sorted(Path(p).name for p in list_sources(str(formats_dir)))
    assert names == ["animated.gif", "palette.gif", "photo.avif", "photo.heic", "photo.jxl", "photo.tiff",
                     "photo.webp"]  # fmt: skip


@pytest.mark.parametrize("name", ["palette.gif", "animated.gif", "photo.webp", "photo.tiff", "photo.avif"])
def test_decoded(formats_dir, name):
    img = load_image(formats_dir / name, dtype=np.uint8)
    assert img.shape == _photo().shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - _photo()).mean() < 8  # the first frame of the animation


def test_heic_decoded_or_reported(formats_dir, monkeypatch):
    try:
        import pillow_heif  # noqa: F401

        assert load_image(formats_dir / "photo.heic", dtype=np.uint8).shape == _photo().shape
    except ImportError:
        pass
    monkeypatch.setattr(imaging, "_HEIF_STATE", [False])  # as without pillow-heif
    with pytest.raises(SourceError) as info:
        load_image(formats_dir / "photo.heic")
    assert info.value.reason == "unsupported-format" and "pillow-heif" in str(info.value)


def test_undecodable_photo_is_unsupported_format(formats_dir, tmp_path):
    with pytest.raises(SourceError) as info:
        load_image(formats_dir / "photo.jxl")
    assert info.value.reason == "unsupported-format"
    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(b"definitely not a jpeg" * 10)
    with pytest.raises(SourceError) as info:
        load_image(garbage)
    assert info.value.reason == "not-an-image"  # a registered format with bad bytes stays so


def test_build_records_every_format_or_reports_it(ray_session, formats_dir, tmp_path):
    out = tmp_path / "out"
    code, text = run_cli(
        "build", "--workflow", "param", "--sources", str(formats_dir), "-n", "14", "--samples-per-shard", "14",
        "--image-size", "64", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, text
    used = set()
    with tarfile.open(out / "shards" / "param-000000.tar") as t:
        for m in t.getmembers():
            if m.name.endswith(".json"):
                used.add(Path(json.load(t.extractfile(m))["source"]["uri"]).name)
    # a source that cannot be decoded is found at plan time and left out of the plan with its reason
    # (the manifest's sources_rejected: it costs no sample); a sample that still fails is skipped
    skipped = pq.read_table(out / "skipped.parquet").to_pylist()
    rejected = json.loads((out / "manifest.json").read_text())["sources_rejected"]["sources"]
    reported = {Path(r["source"]).name: r["reason"] for r in [*skipped, *rejected]}
    assert {"palette.gif", "animated.gif", "photo.webp", "photo.tiff", "photo.avif"} <= used
    assert reported.get("photo.jxl") == "unsupported-format"
    assert "photo.heic" in used or reported.get("photo.heic") == "unsupported-format"
    assert used | set(reported) == {p.name for p in formats_dir.iterdir() if p.suffix != ".txt"}
