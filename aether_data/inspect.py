"""Looking at a dataset as a person would: the first records and a contact sheet of pairs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from aether_data.dataset.tar import iter_shard
from aether_data.io import storage
from aether_data.io.atomic import atomic_write_bytes

Sample = tuple[str, dict[str, Any], bytes, bytes]
MASKS_FIELD = "_masks_png"
"""In-memory only: a region sample's ``{key}.masks.png`` bytes, drawn as a third column."""


def first_samples(directory: str | Path | storage.RemotePath, n: int) -> list[Sample]:
    """Up to `n` samples (key, record, input bytes, target bytes) in shard-name order."""
    out: list[Sample] = []
    for tar in sorted((storage.as_path(directory) / "shards").glob("*.tar")):
        for key, members in iter_shard(tar):
            inp = next(v for k, v in members.items() if k.startswith("input."))
            tgt = next(v for k, v in members.items() if k.startswith("target."))
            rec = json.loads(members["json"])
            if "masks.png" in members:  # region samples: the label map travels with the record (display only)
                rec[MASKS_FIELD] = members["masks.png"]
            out.append((key, rec, inp, tgt))
            if len(out) >= n:
                return out
    return out


def contact_sheet(
    samples: list[Sample], path: str | Path | storage.RemotePath, cell: int = 256
) -> storage.AnyPath:
    """A PNG grid: one row per sample, input on the left, target on the right, key as caption;
    region samples add a third column, their labels tinted over the input."""
    pad, caption = 6, 16
    cols = 3 if any(MASKS_FIELD in rec for _, rec, _, _ in samples) else 2
    width = cols * cell + (cols + 1) * pad
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
        if MASKS_FIELD in rec:
            from aether_data.regions.preview import mask_overlay

            thumb = mask_overlay(inp, rec[MASKS_FIELD])
            thumb.thumbnail((cell, cell))
            x = pad + 2 * (cell + pad)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + caption + (cell - thumb.height) // 2))
        what = rec.get("protocol") or (rec.get("preset") or {}).get("name") or ""
        if rec.get("regions"):
            what = ", ".join(r["name"] for r in rec["regions"]["items"] if r["label"])
        tail = " | masks" if MASKS_FIELD in rec else ""
        draw.text((pad, y), f"{key}  {what}  input | target{tail}", fill=(230, 230, 230))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
