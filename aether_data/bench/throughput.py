"""Single-core throughput of each workflow against a transcode floor, shard by shard interleaved."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_corpus", "measure_throughput", "transcode_shard"]


from aether_data.bench.config import BenchConfig


def make_corpus(out_dir: str | Path, n: int, *, seed: int = 0, megapixels: float = 1.5) -> list[Path]:
    """N distinct JPEGs (~`megapixels` each): seeded random crops of the bundled photos, upscaled.

    Distinct bytes and pixels per file, so no decode is shared between samples; deterministic, so
    two runs bench the same images.
    """
    from PIL import Image

    from aether_data.io.sources import bundled_photos

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(p).convert("RGB") for p in bundled_photos()]
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    paths = []
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        side = math.sqrt(rng.uniform(0.45, 0.9))
        cw, ch = max(16, int(w * side)), max(16, int(h * side))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x0, y0, x0 + cw, y0 + ch))
        k = math.sqrt(megapixels * 1e6 / (cw * ch))
        crop = crop.resize((round(cw * k), round(ch * k)), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = out / f"bench_{i:06d}.jpg"
        crop.save(path, format="JPEG", quality=92)
        paths.append(path)
    for im in photos:
        im.close()
    return paths


def transcode_shard(
    sources: Sequence[str], out_tar: str | Path, *, size: int, min_short: int, quality: int = 95
) -> int:
    """The floor: read + decode (aether's decoder, same draft scale) → resize → 2 JPEG encodes → tar.

    Returns the number of samples written.
    """
    from aether_data.dataset.tar import TarWriter
    from aether_data.io.imaging import encode_jpeg, load_image_bytes, resize_short_edge
    from aether_data.io.sources import read_source_bytes

    with TarWriter(out_tar) as writer:
        for i, uri in enumerate(sources):
            pixels = load_image_bytes(read_source_bytes(uri), min_short=min_short, dtype=np.uint8, name=uri)
            img = resize_short_edge(pixels, size)
            a = encode_jpeg(img, quality=quality)
            b = encode_jpeg(img, quality=quality)
            writer.add(f"t_{i:09d}", {"input.jpg": a, "target.jpg": b})
        writer.commit()
    return len(sources)


INTERLEAVE_MAX = 32
"""Most samples per throughput shard: aether and the baseline alternate at least this often, so a
change in machine load between them stays small (param's default 256 would alternate twice)."""


FALLBACKS: dict[str, tuple[str, dict[str, Any]]] = {
    "auto": ("auto.supplementary_fraction=1.0", {"auto": {"supplementary_fraction": 1.0}}),
}
"""A variant to bench when a workflow's default spec cannot start here (auto's encoder/renderer
branch needs trained weights): the result says which variant was measured and why."""


def _spec(
    workflow: str,
    cfg: BenchConfig,
    sources: str,
    n: int,
    size: int,
    per_shard: int | None,
    extra: dict[str, Any] | None = None,
) -> Any:
    from aether_data.config import load_spec

    if per_shard is None:  # the default spec's, at most INTERLEAVE_MAX: the baseline keeps pace
        per_shard = min(load_spec(None, workflow, {}).samples_per_shard, INTERLEAVE_MAX)
    overrides: dict[str, Any] = {
        "num_samples": n,
        "samples_per_shard": per_shard,
        "seed": cfg.seed,
        "sources": {"path": sources},
        "image": {"size": size},
        **({} if cfg.gates else {"quality": {"enabled": False}}),
        **(extra or {}),
    }
    return load_spec(None, workflow, overrides)


def _context(workflow: str, cfg: BenchConfig, sources: str, out: Path) -> tuple[Any, Any, str | None]:
    """(spec, ShardContext, variant note) for the default spec, else the documented fallback."""
    from aether_data.build.shard import ShardContext

    try:
        spec = _spec(workflow, cfg, sources, cfg.samples, cfg.image_size, cfg.samples_per_shard)
        return spec, ShardContext(spec, out, timer=time.thread_time), None
    except Exception as exc:
        if workflow not in FALLBACKS:
            raise
        label, extra = FALLBACKS[workflow]
        spec = _spec(workflow, cfg, sources, cfg.samples, cfg.image_size, cfg.samples_per_shard, extra)
        return (
            spec,
            ShardContext(spec, out, timer=time.thread_time),
            f"{label} (default spec: {type(exc).__name__}: {exc})",
        )


def measure_throughput(
    workflows: Sequence[str], corpus_list: str, cfg: BenchConfig, workdir: Path
) -> dict[str, dict[str, Any]]:
    """Per workflow: aether and baseline single-core samples/s on the same shards, interleaved.

    Rates are per CPU second of this thread (``time.thread_time``): other jobs on a shared machine
    do not inflate them; the wall-clock ratio is reported too.
    """
    from aether_data.build.clock import STAGES
    from aether_data.build.plan import Planner, iter_shard_spans, resolve_sources
    from aether_data.build.shard import ShardTask
    from aether_data.build.tuning import limit_threads

    limit_threads(1)
    results: dict[str, dict[str, Any]] = {}
    for wf in workflows:
        out = workdir / f"tp-{wf}"
        try:
            spec, ctx, variant = _context(wf, cfg, corpus_list, out)
        except Exception as exc:  # a workflow that cannot start is reported, not fatal
            results[wf] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        planner = Planner(spec, resolve_sources(spec))
        ctx.renderer.alternate = planner.alternate  # as in a build: failing sources are replaced
        min_short = ctx.renderer.sources.min_short
        spans = list(iter_shard_spans(spec))
        # warm-up (imports, first-call costs) on a few samples, not timed
        warm = planner.rows(spans[0])[:2]
        ctx.build_shard(ShardTask("warmup-000000", wf, warm))
        transcode_shard(
            [r.source_uri for r in warm], out / "warm.tar", size=spec.image.size, min_short=min_short
        )
        aether_s = base_s = aether_wall = base_wall = 0.0
        samples = base_samples = 0
        stages = dict.fromkeys(STAGES, 0.0)
        quality: dict[str, int] = {}
        for span in spans:
            rows = planner.rows(span)
            c0, t0 = time.thread_time(), time.perf_counter()
            res = ctx.build_shard(ShardTask(span.name, wf, rows))
            c1, t1 = time.thread_time(), time.perf_counter()
            base_samples += transcode_shard(
                [r.source_uri for r in rows],
                out / f"base-{span.name}.tar",
                size=spec.image.size,
                min_short=min_short,
                quality=spec.image.quality,
            )
            c2, t2 = time.thread_time(), time.perf_counter()
            aether_s += c1 - c0
            base_s += c2 - c1
            aether_wall += t1 - t0
            base_wall += t2 - t1
            samples += int(res["samples"])
            for k, v in json.loads(res["stages"]).items():
                stages[k] += v
            for k, v in json.loads(res.get("quality") or "{}").items():
                quality[k] = quality.get(k, 0) + int(v)
        shutil.rmtree(out, ignore_errors=True)
        aether_rate = samples / aether_s
        base_rate = base_samples / base_s
        results[wf] = {
            "samples": samples,
            "samples_per_s": round(aether_rate, 3),
            "transcode_samples_per_s": round(base_rate, 3),
            "ratio_to_transcode": round(aether_rate / base_rate, 3),
            "ratio_to_transcode_wall": round((samples / aether_wall) / (base_samples / base_wall), 3),
            "cpu_s_per_sample": round(aether_s / samples, 5),
            "transcode_cpu_s_per_sample": round(base_s / base_samples, 5),
            "stage_s_per_sample": {k: round(v / samples, 5) for k, v in stages.items()},
            # quality gates: redraws per written sample, samples rejected, sources replaced
            "redraw_rate": round(quality.get("redraws", 0) / max(samples, 1), 4),
            "quality": quality,
        }
        if variant:
            results[wf]["variant"] = variant
    return results
