"""LUT-baked Retouch Renderer vs the direct per-pixel MLP: speed-up and PSNR in one run.

For a fixed latent the renderer is a pure RGB → RGB map, so it can be sampled once on an N³
lattice and applied with a trilinear lookup. This script times, on the same machine and in the
same process, (a) the direct MLP over every pixel and (b) bake + lookup (and lookup alone, i.e.
a cached LUT), at 512² and 2048², and reports the PSNR between the two outputs.

Usage::

    PYTHONPATH=. python benchmarks/bench_renderer_lut.py            # shipped checkpoint
    PYTHONPATH=. python benchmarks/bench_renderer_lut.py --model paper   # paper widths (random init)

Prints one markdown table row per (model, size, LUT size) and writes JSON (default
``benchmarks/results/bench_renderer_lut.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from model_core.er_config import PAPER
from model_core.er_data import default_photos, load_image
from model_core.er_io import DEFAULT_CHECKPOINT, load_er_checkpoint
from model_core.renderer import RetouchRenderer, apply_lut_torch
from model_core.retouch import encode_reference


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    """Best-of-`repeats` wall time (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a - b) ** 2))
    return 100.0 if mse <= 1e-12 else 10.0 * float(np.log10(1.0 / mse))


def _test_image(side: int) -> torch.Tensor:
    """A bundled photo resized to side² (a real colour distribution, not noise)."""
    import cv2

    photos = default_photos()
    if photos:
        img = load_image(photos[0])
    else:
        rng = np.random.default_rng(0)
        img = rng.random((256, 256, 3), dtype=np.float32)
    img = cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 1).astype(np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def _model(kind: str) -> tuple[RetouchRenderer, torch.Tensor, str]:
    """Renderer + a realistic latent: the shipped model encodes a real before/after pair."""
    if kind == "shipped" and DEFAULT_CHECKPOINT.exists():
        enc, ren, cfg = load_er_checkpoint()
        before = _test_image(256)[0].permute(1, 2, 0).numpy()
        after = np.clip((before * 1.25) ** 0.85 * np.array([1.05, 1.0, 0.92], dtype=np.float32), 0, 1)
        with torch.no_grad():
            z = encode_reference(enc, before, after)
        return ren, z, f"shipped {cfg.name} ({'/'.join(map(str, cfg.renderer_hidden))})"
    torch.manual_seed(0)
    ren = RetouchRenderer(PAPER).eval()
    return ren, torch.randn(1, PAPER.total_latent) * 0.5, "paper widths 128/256/512 (random init)"


def run(models: list[str], sizes: list[int], lut_sizes: list[int], threads: int) -> list[dict[str, object]]:
    """Benchmark every (model, image size, LUT size); returns one record per combination."""
    torch.set_num_threads(threads)
    rows: list[dict[str, object]] = []
    for kind in models:
        ren, z, label = _model(kind)
        for side in sizes:
            img = _test_image(side)
            with torch.no_grad():
                t_direct, direct = _timed(lambda img=img, ren=ren, z=z: ren(img, z), 1 if side > 1024 else 2)
                for n in lut_sizes:
                    t_bake, lut = _timed(lambda n=n, ren=ren, z=z: ren.bake_lut(z[0], n), 2)
                    t_apply, via_lut = _timed(lambda img=img, lut=lut: apply_lut_torch(img, lut), 3)
                    rows.append(
                        {
                            "model": label,
                            "image": f"{side}x{side}",
                            "lut_size": n,
                            "direct_s": round(t_direct, 4),
                            "bake_s": round(t_bake, 4),
                            "apply_s": round(t_apply, 4),
                            "speedup_bake_apply": round(t_direct / (t_bake + t_apply), 2),
                            "speedup_cached_lut": round(t_direct / t_apply, 2),
                            "psnr_db": round(_psnr(direct, via_lut), 2),
                        }
                    )
                    r = rows[-1]
                    print(
                        f"| {label} | {r['image']} | {n}³ | {r['direct_s']:.3f} s | {r['bake_s']:.3f} + {r['apply_s']:.3f} s "
                        f"| {r['speedup_bake_apply']:.1f}× | {r['speedup_cached_lut']:.1f}× | {r['psnr_db']:.2f} dB |",
                        flush=True,
                    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["shipped", "paper", "both"], default="both")
    ap.add_argument("--sizes", default="512,2048")
    ap.add_argument("--lut-sizes", default="17,25,33")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/bench_renderer_lut.json")
    args = ap.parse_args()
    models = ["shipped", "paper"] if args.model == "both" else [args.model]
    print(
        "| renderer | image | LUT | direct MLP | bake + apply | speed-up (bake+apply) | speed-up (cached LUT) | PSNR LUT vs MLP |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rows = run(
        models,
        [int(s) for s in args.sizes.split(",")],
        [int(s) for s in args.lut_sizes.split(",")],
        args.threads,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
