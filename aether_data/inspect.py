"""Looking at a dataset as a person would: the first records and a contact sheet of pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from aether_data.dataset.tar import iter_shard

Sample = tuple[str, dict[str, Any], bytes, bytes]


def first_samples(directory: str | Path, n: int) -> list[Sample]:
    """Up to `n` samples (key, record, input bytes, target bytes) in shard-name order."""
    out: list[Sample] = []
    for tar in sorted((Path(directory) / "shards").glob("*.tar")):
        for key, members in iter_shard(tar):
            inp = next(v for k, v in members.items() if k.startswith("input."))
            tgt = next(v for k, v in members.items() if k.startswith("target."))
            out.append((key, json.loads(members["json"]), inp, tgt))
            if len(out) >= n:
                return out
    return out


def contact_sheet(samples: list[Sample], path: str | Path, cell: int = 256) -> Path:
    """A PNG grid: one row per sample, input on the left, target on the right, key as caption."""
    pad, caption = 6, 16
    width = 2 * cell + 3 * pad
    height = len(samples) * (cell + caption + pad) + pad
    sheet = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (key, rec, inp, tgt) in enumerate(samples):
        y = pad + i * (cell + caption + pad)
        for j, data in enumerate((inp, tgt)):
            with Image.open(io.BytesIO(data)) as im:
                thumb = im.convert("RGB")
                thumb.thumbnail((cell, cell))
            x = pad + j * (cell + pad)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + caption + (cell - thumb.height) // 2))
        what = rec.get("protocol") or (rec.get("preset") or {}).get("name") or ""
        draw.text((pad, y), f"{key}  {what}  input | target", fill=(230, 230, 230))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path
