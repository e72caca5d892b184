"""Share of written pairs that are visible edits keeping structure (issue 17's acceptance measure).

    python benchmarks/quality_pass.py OUT [OUT ...] [--json FILE]

For every record of each built dataset the pair is decoded from its shard and measured afresh
(`aether_data.quality.measure_pair`, independent of what the record says): a pair passes when its
mean |RGB| difference is above 3 levels and its luma-gradient correlation is ≥ 0.9, texture edits
(style presets with clarity, texture, grain or dehaze) excepted from the second condition. Prints,
per dataset: pairs, passing share, near no-ops, structure losses, texture edits, redraws and
quality rejections (from the manifest).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from aether_data.quality import TEXTURE_KEYS, measure_pair


def _texture_from_library(preset_id: str | None, cache: dict[str, Any]) -> bool:
    """Texture flag of a record written before the gates (no `quality` member): from the library."""
    if preset_id is None:
        return False
    if "lib" not in cache:
        from aether_data.presets.library import load_library

        cache["lib"] = {p.id: p for p in load_library(None)}
    preset = cache["lib"].get(preset_id)
    if preset is None:
        return False
    s = preset.settings
    return any(s.num(k) != 0 for k in TEXTURE_KEYS if k in s)


def iter_pairs(out: Path):
    """(record, input uint8, target uint8) for every sample of a built dataset."""
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["shards"]:
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(out / entry["path"]) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(m).read()
        for key in sorted(members):
            parts = members[key]
            rec = json.loads(parts["json"])
            img = {
                k.split(".")[0]: np.asarray(Image.open(io.BytesIO(v)).convert("RGB"))
                for k, v in parts.items()
                if k.split(".")[0] in ("input", "target")
            }
            yield rec, img["input"], img["target"]


def measure_dataset(out: Path, min_rgb: float = 3.0, min_corr: float = 0.9) -> dict[str, Any]:
    cache: dict[str, Any] = {}
    n = passed = noop = lost = texture = 0
    redraws: Counter[int] = Counter()
    delta_e: list[float] = []
    for rec, inp, tgt in iter_pairs(out):
        auto = rec["workflow"] == "auto"
        m = measure_pair(tgt, inp) if auto else measure_pair(inp, tgt)
        q = rec.get("quality")
        tex = q["texture_edit"] if q else _texture_from_library((rec.get("preset") or {}).get("id"), cache)
        redraws[int(q["redraws"]) if q else 0] += 1
        n += 1
        texture += tex
        is_noop = m["rgb_diff"] <= min_rgb
        is_lost = m["grad_corr"] < min_corr and not tex
        noop += is_noop
        lost += is_lost
        passed += not (is_noop or is_lost)
        delta_e.append(m["delta_e"])
    manifest = json.loads((out / "manifest.json").read_text())
    reasons = {k: v for k, v in manifest["skipped"]["reasons"].items() if k.startswith("quality:")}
    return {
        "dataset": str(out),
        "pairs": n,
        "pass": passed,
        "pass_share": round(passed / max(n, 1), 4),
        "near_noop": noop,
        "structure_lost": lost,
        "texture_edits": texture,
        "redraws": dict(sorted(redraws.items())),
        "quality_rejections": reasons,
        "delta_e_median": round(float(np.median(delta_e)), 3) if delta_e else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outs", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = [measure_dataset(o) for o in args.outs]
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
