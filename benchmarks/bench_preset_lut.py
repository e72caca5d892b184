"""LUT-baked preset application vs direct rendering: speed-up and PSNR, at 512 px and 2048 px, one run.

A preset's per-pixel part (calibration, white balance, exposure, tone sliders, curves, HSL, grayscale,
colour grading) is a pure RGB → RGB map, so it can be baked once on an N³ grid and applied with a
tetrahedral lookup; the spatial part (clarity, dehaze, vignette, grain, sharpening) runs directly in
both paths. This script times, in the same process on the same machine:

- ``direct``: ``render_preset(method="direct")`` (per-pixel maths on every pixel + spatial part);
- ``lut``: bake + lookup + spatial part (what one uncached render costs);
- ``lut cached``: lookup + spatial part (the Style workflow caches bakes per preset);
- and the same three for the per-pixel part alone (spatial part excluded),

on a bundled photo resized to a 512 px and a 2048 px short edge, over a few library presets, and
reports the PSNR between direct and LUT outputs (full render, same grain seed).

Usage::

    python benchmarks/bench_preset_lut.py [--lut-size 33] [--repeats 3] [--out benchmarks/results/bench_preset_lut.json]

Prints a markdown table (one row per size) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from aether_data.develop import apply_lut
from aether_data.develop.preset_ops import bake_preset_lut, pointwise_preset, render_preset
from aether_data.io.imaging import load_image
from aether_data.io.sources import bundled_photos
from aether_data.presets.library import load_library

PRESETS = (
    "kodak-portra-warm-01",
    "teal-and-orange-blockbuster-05",
    "ilford-hp5-push-02",
    "dark-and-moody-forest-02",
    "wes-anderson-pastel-04",
    "vivid-landscape-03",
)


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` wall time (s) and the result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse <= 1e-12 else 10.0 * float(np.log10(1.0 / mse))


def resize_short(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    return (
        cv2.resize(
            img, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA
        )
        .clip(0, 1)
        .astype(np.float32)
    )


def run(lut_size: int, repeats: int, sizes: tuple[int, ...]) -> dict:
    lib = load_library()
    presets = [lib.get(pid) for pid in PRESETS]
    base = load_image(bundled_photos()[2], 512)  # coffee.jpg
    rows = []
    for short in sizes:
        img = resize_short(base, short)
        acc: dict[str, float] = {
            k: 0.0 for k in ("direct", "lut", "lut_cached", "pw_direct", "pw_lut", "pw_lut_cached", "bake")
        }
        worst = 100.0
        for p in presets:
            s = p.settings
            t, direct = timed(lambda s=s, img=img: render_preset(img, s, 1, method="direct"), repeats)
            acc["direct"] += t
            t, baked = timed(
                lambda s=s, img=img: render_preset(img, s, 1, method="lut", lut_size=lut_size), repeats
            )
            acc["lut"] += t
            lut = bake_preset_lut(s, lut_size)
            t, _ = timed(
                lambda s=s, lut=lut, img=img: render_preset(img, s, 1, method="lut", lut=lut), repeats
            )
            acc["lut_cached"] += t
            t, _ = timed(lambda s=s, img=img: pointwise_preset(img, s), repeats)
            acc["pw_direct"] += t
            t, _ = timed(
                lambda s=s, img=img: np.clip(
                    apply_lut(img, bake_preset_lut(s, lut_size), "tetrahedral"), 0, 1
                ),
                repeats,
            )
            acc["pw_lut"] += t
            t, _ = timed(lambda lut=lut, img=img: np.clip(apply_lut(img, lut, "tetrahedral"), 0, 1), repeats)
            acc["pw_lut_cached"] += t
            t, _ = timed(lambda s=s: bake_preset_lut(s, lut_size), repeats)
            acc["bake"] += t
            worst = min(worst, psnr(direct, baked))
        n = len(presets)
        row = {
            "short_edge": short,
            "shape": list(img.shape[:2]),
            "lut_size": lut_size,
            "presets": n,
            "ms_direct": 1000 * acc["direct"] / n,
            "ms_lut": 1000 * acc["lut"] / n,
            "ms_lut_cached": 1000 * acc["lut_cached"] / n,
            "ms_pointwise_direct": 1000 * acc["pw_direct"] / n,
            "ms_pointwise_lut": 1000 * acc["pw_lut"] / n,
            "ms_pointwise_lut_cached": 1000 * acc["pw_lut_cached"] / n,
            "ms_bake": 1000 * acc["bake"] / n,
            "speedup_full": acc["direct"] / acc["lut"],
            "speedup_full_cached": acc["direct"] / acc["lut_cached"],
            "speedup_pointwise": acc["pw_direct"] / acc["pw_lut"],
            "speedup_pointwise_cached": acc["pw_direct"] / acc["pw_lut_cached"],
            "psnr_min_db": worst,
        }
        rows.append(row)
    return {
        "benchmark": "bench_preset_lut",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "repeats": repeats,
        "presets": list(PRESETS),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut-size", type=int, default=33)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_preset_lut.json"))
    args = ap.parse_args()
    res = run(args.lut_size, args.repeats, tuple(args.sizes))
    print(
        "| short edge | LUT | direct ms | LUT ms (bake+apply) | LUT ms (cached) | speed-up full / cached | per-pixel part speed-up / cached | min PSNR dB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        print(
            f"| {r['short_edge']} px | {r['lut_size']}³ | {r['ms_direct']:.0f} | {r['ms_lut']:.0f} | {r['ms_lut_cached']:.0f} | "
            f"{r['speedup_full']:.2f}× / {r['speedup_full_cached']:.2f}× | {r['speedup_pointwise']:.2f}× / "
            f"{r['speedup_pointwise_cached']:.2f}× | {r['psnr_min_db']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
