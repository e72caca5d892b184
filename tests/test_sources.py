"""Image sources: bundled photos, robust decoding, resizing, deterministic encoding, listing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aether_data.io.errors import SourceError
from aether_data.io.imaging import (
    decode_image_u8,
    decode_own_u8,
    encode_jpeg,
    encode_png,
    load_image,
    resize_short_edge,
)
from aether_data.io.sources import PHOTOS_DIR, bundled_license, bundled_photos, list_sources
from aether_data.workflows.base import _immutable


def _gradient(w: int = 64, h: int = 48) -> np.ndarray:
    """A colour image whose top-left corner is red, so orientation changes are detectable."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([1 - xx / w, yy / h, xx / w], axis=2)
    img[: h // 4, : w // 4] = [1.0, 0.0, 0.0]
    return (img * 255).astype(np.uint8)


def test_bundled_photos_are_colour_and_licensed() -> None:
    photos = bundled_photos()
    assert 5 <= len(photos) <= 8
    assert photos == sorted(photos)
    assert sum(p.stat().st_size for p in photos) < 1_500_000
    listed = {e["file"] for e in json.loads((PHOTOS_DIR / "sources.json").read_text())}
    assert listed == {p.name for p in photos}
    for p in photos:
        img = load_image(p)
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert max(img.shape[:2]) <= 1024 and 0.0 <= img.min() and img.max() <= 1.0
        chroma = np.abs(img[..., 0] - img[..., 1]) + np.abs(img[..., 1] - img[..., 2])
        assert float(chroma.mean()) > 0.01, f"{p.name} looks greyscale"
        lic = bundled_license(p)
        assert lic in ("Public Domain", "CC0-1.0")
    assert bundled_license(Path("/tmp/astronaut.jpg")) is None
    assert "astronaut.jpg" in (PHOTOS_DIR / "LICENSES.md").read_text()


def test_max_side_and_draft_mode() -> None:
    big = max(bundled_photos(), key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
    img = load_image(big, max_side=200)
    assert max(img.shape[:2]) == 200
    full = load_image(big)
    ratio_full = full.shape[1] / full.shape[0]
    assert abs(img.shape[1] / img.shape[0] - ratio_full) < 0.02


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    arr = _gradient(64, 48)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # stored landscape, display rotated 90° clockwise
    path = tmp_path / "rotated.jpg"
    im.save(path, quality=95, exif=exif.tobytes())
    img = load_image(path)
    assert img.shape[:2] == (64, 48)
    # the red corner, top-left when stored, is top-right after a clockwise rotation
    top_right = img[2:10, -10:-2].mean(axis=(0, 1))
    assert top_right[0] > 0.8 and top_right[1] < 0.2 and top_right[2] < 0.2


def test_grey_alpha_16bit_palette_load_as_rgb(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(grey)
    img = load_image(grey)
    assert img.shape == (20, 30, 3) and np.allclose(img, 128 / 255)

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :15, 3] = 255  # left half opaque red, right half transparent → white
    alpha = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(alpha)
    img = load_image(alpha)
    assert img.shape == (20, 30, 3)
    assert np.allclose(img[:, :15], [1, 0, 0]) and np.allclose(img[:, 15:], [1, 1, 1])

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 30), 65535 // 2, np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    img = load_image(deep)
    assert img.shape == (20, 30, 3) and abs(float(img.mean()) - 0.5) < 0.01

    pal = tmp_path / "pal.png"
    Image.fromarray(_gradient()).convert("P").save(pal)
    assert load_image(pal).shape == (48, 64, 3)

    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(_gradient()).convert("CMYK").save(cmyk)
    img = load_image(cmyk)
    assert img.shape == (48, 64, 3) and img[2, 2, 0] > 0.8


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("empty.jpg", b"", "empty-file"),
        ("text.jpg", b"this is not an image at all", "not-an-image"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, payload: bytes, reason: str) -> None:
    p = tmp_path / name
    p.write_bytes(payload)
    with pytest.raises(SourceError) as info:
        load_image(p)
    assert info.value.reason == reason


def test_truncated_tiny_large_missing(tmp_path: Path) -> None:
    data = encode_jpeg(np.random.default_rng(0).random((256, 256, 3)), quality=90)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError) as info:
        load_image(trunc)
    assert info.value.reason == "truncated"

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (7, 100)).save(tiny)
    with pytest.raises(SourceError) as info:
        load_image(tiny)
    assert info.value.reason == "too-small"

    ok = tmp_path / "ok.png"
    Image.new("RGB", (100, 100)).save(ok)
    with pytest.raises(SourceError) as info:
        load_image(ok, max_pixels=5000)
    assert info.value.reason == "too-large"

    with pytest.raises(SourceError) as info:
        load_image(tmp_path / "missing.jpg")
    assert info.value.reason == "not-found"


def test_encoders_are_deterministic() -> None:
    img = load_image(bundled_photos()[0])
    a, b = encode_jpeg(img), encode_jpeg(img.copy())
    assert a == b and a[:2] == b"\xff\xd8"
    assert encode_jpeg(img, quality=80) != a
    assert encode_png(img) == encode_png(img.copy())
    back = np.asarray(Image.open(io.BytesIO(encode_png(img))), dtype=np.float32) / 255
    assert np.abs(back - img).max() < 1 / 255 + 1e-6
    assert encode_jpeg((img * 255).round().astype(np.uint8)) == a


@pytest.mark.parametrize("quality", [95, 75])
def test_own_images_decode_to_the_readers_pixels(quality: int) -> None:
    """A sample renders from `decode_own_u8` (OpenCV): a reader decodes with Pillow. Same pixels, or
    the target would be rendered from an input the model never sees."""
    for photo in bundled_photos():
        img = resize_short_edge(load_image(photo, dtype=np.uint8), 384)
        for data in (encode_jpeg(img, quality=quality), encode_png(img)):
            own, reader = decode_own_u8(data), decode_image_u8(data)
            assert own.dtype == np.uint8 and own.shape == img.shape
            np.testing.assert_array_equal(own, reader)
            assert not own.flags.writeable  # as Pillow's: per-photo caches key on immutability
            assert _immutable(own) and _immutable(reader)


def test_resize_short_edge() -> None:
    img = np.random.default_rng(1).random((300, 451, 3)).astype(np.float32)
    out = resize_short_edge(img, 128)
    assert out.shape[0] == 128 and abs(out.shape[1] - round(451 * 128 / 300)) <= 1
    assert out.dtype == np.float32
    assert resize_short_edge(img, 1000) is img  # never upscales
    tall = resize_short_edge(np.zeros((900, 300, 3), np.float32), 100)
    assert tall.shape[:2] == (300, 100)


def test_list_sources(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("a.JPG", "b/c.png", "b/d.TIFF", "e.webp", "notes.txt", ".hidden/x.jpg", "b/.y.jpg"):
        (tmp_path / rel).write_bytes(b"x")
    found = list_sources(tmp_path)
    assert found == sorted(str(tmp_path / r) for r in ("a.JPG", "b/c.png", "b/d.TIFF", "e.webp"))
    assert list_sources(tmp_path / "a.JPG") == [str(tmp_path / "a.JPG")]

    lst = tmp_path / "list.txt"
    lst.write_text("# comment\nb/c.png\n\n/abs/x.jpg\ns3://bucket/y.jpg\n")
    assert list_sources(lst) == [str(tmp_path / "b/c.png"), "/abs/x.jpg", "s3://bucket/y.jpg"]
    csv_ = tmp_path / "list.csv"
    csv_.write_text("id,path\n1,e.webp\n2,a.JPG\n")
    assert list_sources(csv_) == [str(tmp_path / "e.webp"), str(tmp_path / "a.JPG")]
    tsv = tmp_path / "list.tsv"
    tsv.write_text("e.webp\t1\na.JPG\t2\n")
    assert list_sources(tsv) == [str(tmp_path / "e.webp"), str(tmp_path / "a.JPG")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": [1, 2], "uri": ["a.JPG", "/abs/z.png"]}), tmp_path / "list.parquet")
    assert list_sources(tmp_path / "list.parquet") == [str(tmp_path / "a.JPG"), "/abs/z.png"]
    with pytest.raises(SourceError):
        list_sources(tmp_path / "nope")


def test_quantise_u8_is_the_numpy_rounding_exactly() -> None:
    """The OpenCV fast path gives the bytes of clip(rint(x·255)) in float32: ties to even, negatives
    and values above 1 saturated, any channel count, float64 input rounded as float32."""
    from aether_data.io.imaging import quantise_u8

    rng = np.random.default_rng(0)
    ties = (np.arange(256, dtype=np.float32) + np.float32(0.5)) / np.float32(255.0)
    for shape in [(48, 64, 3), (48, 64), (7, 5, 4), (3, 4, 5, 3)]:
        x = rng.random(shape, dtype=np.float32) * np.float32(1.4) - np.float32(0.2)
        x.flat[:256] = ties[: min(256, x.size)]
        ref = np.clip(np.rint(x * np.float32(255.0)), 0, 255).astype(np.uint8)
        out = quantise_u8(x)
        assert out.dtype == np.uint8 and np.array_equal(out, ref)
    grid = np.arange(256, dtype=np.float32) / np.float32(255.0)
    assert np.array_equal(quantise_u8(grid.reshape(16, 16)).ravel(), np.arange(256))
    x64 = rng.random((9, 9, 3))
    assert np.array_equal(quantise_u8(x64), quantise_u8(x64.astype(np.float32)))
    u8 = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    assert quantise_u8(u8) is u8
