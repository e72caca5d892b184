"""Synthetic, redistributable "expert" pairs for the bundled demo DB.

The real expert DBs (FiveK, PPR10K) cannot be shipped. The demo DB is built from the bundled
public-domain / CC0 photographs instead, with known develop-engine edits:

- target = a seeded crop of a bundled photo with a mild random "look" (sampled sliders × LOOK_SCALE:
  warmer/cooler, brighter, punchier…), standing in for an expert rendition;
- input  = that target degraded by sliders drawn from the operator statistics in the degrading
  direction (flat, dull, off-exposure, colour casts), standing in for the unretouched photo.

So the demo pairs teach the pipeline the *mechanics* of retrieval and inverse degradation, not real
expert taste. Rebuild the shipped DB with::

    python -m aether_data.expert_db.demo /tmp/aether-demo-pairs
    aether expert-db build --pairs /tmp/aether-demo-pairs --out aether_data/data/expert_db --thumbs 96
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from aether_data.develop import render
from aether_data.io.atomic import atomic_write_bytes
from aether_data.io.imaging import encode_png, load_image, resize_short_edge
from aether_data.io.sources import bundled_photos
from aether_data.sampling import PROTOCOLS, load_operator_stats, sample_params

LOOK_SCALE = 0.3
VARIANTS_PER_PHOTO = 16
SHORT_EDGE = 256


def make_demo_pairs(out: str | Path, variants: int = VARIANTS_PER_PHOTO, seed: int = 0) -> int:
    """Write ``out/input/*.png`` and ``out/target/*.png`` (same stems); returns the pair count."""
    out = Path(out)
    (out / "input").mkdir(parents=True, exist_ok=True)
    (out / "target").mkdir(parents=True, exist_ok=True)
    stats = load_operator_stats()
    n = 0
    for pi, photo in enumerate(bundled_photos()):
        img = load_image(photo, min_short=2 * SHORT_EDGE)
        for v in range(variants):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(pi, v)))
            h, w = img.shape[:2]
            side = float(np.sqrt(rng.uniform(0.5, 1.0)))
            ch, cw = round(h * side), round(w * side)
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = resize_short_edge(img[y0 : y0 + ch, x0 : x0 + cw], SHORT_EDGE)
            _, look = sample_params(rng, PROTOCOLS[int(rng.integers(len(PROTOCOLS)))], stats)
            target = render(crop, {k: val * LOOK_SCALE for k, val in look.items()})
            _, deg = sample_params(rng, PROTOCOLS[int(rng.integers(len(PROTOCOLS)))], stats, degrade=True)
            inp = render(target, deg)
            stem = f"{photo.stem}-{v:02d}"
            atomic_write_bytes(out / "target" / f"{stem}.png", encode_png(target))
            atomic_write_bytes(out / "input" / f"{stem}.png", encode_png(inp))
            n += 1
    return n


if __name__ == "__main__":  # pragma: no cover - documented command
    dest = sys.argv[1] if len(sys.argv) > 1 else "aether-demo-pairs"
    print(f"{make_demo_pairs(dest)} pairs written to {dest}")
