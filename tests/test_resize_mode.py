"""`image.resize_mode` (img2dataset's names) and `--resize-mode`: center_crop and border give one
size×size shape, so a default torch DataLoader collates the shards' images into batches."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import run_cli

from aether_data.io.imaging import resize_image


@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (100, 80), (256, 256), (1000, 300)])
def test_center_crop_and_border_are_square(shape):
    img = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    for mode in ("center_crop", "border"):
        assert resize_image(img, 256, mode).shape == (256, 256, 3), mode


def test_keep_ratio_and_only_if_bigger():
    img = np.zeros((300, 451, 3), np.uint8)
    assert resize_image(img, 128).shape == (128, 192, 3)
    assert resize_image(img, 512).shape == (300, 451, 3)  # keep_ratio never upscales by default
    assert resize_image(img, 512, only_if_bigger=False).shape == (512, 770, 3)
    assert resize_image(img, 512, "center_crop", only_if_bigger=True).shape == (300, 451, 3)
    assert resize_image(img, 512, "border", only_if_bigger=True).shape == (512, 512, 3)  # padded
    bordered = resize_image(np.full((100, 200, 3), 200, np.uint8), 64, "border")
    assert bordered.shape == (64, 64, 3) and bordered[0, 0].sum() == 0 and bordered[32, 32].min() == 200
    with pytest.raises(ValueError, match="keep_ratio, center_crop, border"):
        resize_image(img, 64, "stretch")


def test_center_crop_build_collates_in_torch(ray_session, tmp_path):
    import torch
    import webdataset as wds
    from PIL import Image

    out = tmp_path / "out"
    code, text = run_cli(
        "build", "--workflow", "param", "-n", "16", "--samples-per-shard", "8", "--image-size", "256",
        "--resize-mode", "center_crop", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, text

    def to_tensor(data: bytes) -> torch.Tensor:
        return torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy())

    shards = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    ds = wds.WebDataset(shards, shardshuffle=False, empty_check=False).map(
        lambda s: (to_tensor(s["input.jpg"]), to_tensor(s["target.jpg"]))
    )
    batches = list(torch.utils.data.DataLoader(ds, batch_size=8))
    assert len(batches) == 2
    for inp, tgt in batches:
        assert inp.shape == (8, 256, 256, 3) and tgt.shape == (8, 256, 256, 3)
    code, text = run_cli("build", "--workflow", "param", "--resize-mode", "stretch", "--out", str(out))
    assert code == 2 and "keep_ratio" in text and "center_crop" in text and "border" in text
