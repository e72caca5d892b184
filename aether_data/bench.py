"""`aether bench`: throughput against a transcode floor, 1→2 worker scaling, flat memory, cost model.

Why ratios: absolute times on a shared machine are noise, so every number that matters is a ratio
measured in one run (docs/design.md §7):

* **throughput**: each workflow's samples/s ÷ a transcode baseline on the *same images in the same
  process*, shard by shard interleaved so both see the same machine load. The baseline is the
  I/O + codec floor of a pair: read + decode the source exactly as aether does (same decoder, same
  JPEG draft scale), resize to the output size, two JPEG encodes, tar write (TarWriter).
  Both run in-process on one core (``limit_threads(1)``), with no Ray in between.
* **bench corpus**: N distinct ~1.5 MP JPEGs made from random crops of the bundled photographs, one
  sample per image, so aether's per-shard decode cache cannot make it look better than the
  baseline.
* **scaling**: the param workflow built through Ray with 1 and then 2 workers; speed-up over the
  busy window (first shard start to last shard end, from run.json), and over the whole wall time.
* **memory**: peak RSS of the whole process tree (driver, raylet, workers) while ``aether build``
  makes 1k and then 10k samples in a fresh process each; also the driver alone.
* **cost model**: measured single-core seconds per sample → CPU-hours for 1M pairs and the number
  of nodes that finish it in a day.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.io.atomic import atomic_write_text

__all__ = [
    "BenchConfig",
    "bench_command",
    "cost_model",
    "make_corpus",
    "measure_memory",
    "measure_scaling",
    "measure_throughput",
    "render_markdown",
    "run_bench",
    "transcode_shard",
]

CPU_CORES_PER_NODE = 32
"""Node size assumed by the cost model (a common 32-vCPU cloud instance)."""


@dataclass
class BenchConfig:
    """What one `aether bench` run measures (defaults: a few minutes on 2 busy cores)."""

    samples: int = 288  # per workflow, throughput (distinct corpus images, one sample each)
    samples_per_shard: int = 16
    image_size: int = 512
    megapixels: float = 1.5  # corpus image size
    workflows: tuple[str, ...] = ("param", "style", "auto")
    scaling_samples: int = 256  # param, 1 vs 2 Ray workers
    scaling_image_size: int = 512  # the throughput size: at 384 px Ray's per-shard dispatch showed
    scaling_repeats: int = 2  # best of N alternating runs
    memory_samples: tuple[int, int] = (1000, 10000)
    memory_image_size: int = 64
    memory_samples_per_shard: int = 100
    seed: int = 0
    scaling: bool = True
    memory: bool = True
    workdir: str | None = None


# --------------------------------------------------------------------------------------------------
# corpus


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


# --------------------------------------------------------------------------------------------------
# the transcode baseline


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


# --------------------------------------------------------------------------------------------------
# throughput


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
    per_shard: int,
    extra: dict[str, Any] | None = None,
) -> Any:
    from aether_data.config import load_spec

    overrides: dict[str, Any] = {
        "num_samples": n,
        "samples_per_shard": per_shard,
        "seed": cfg.seed,
        "sources": {"path": sources},
        "image": {"size": size},
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
        }
        if variant:
            results[wf]["variant"] = variant
    return results


# --------------------------------------------------------------------------------------------------
# process-tree RSS and subprocess builds


class TreeRSS:
    """Peak RSS of a process and all its descendants, sampled in a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak_total = 0
        self.peak_root = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if p.pid == self.root.pid:
                self.peak_root = max(self.peak_root, rss)
        self.peak_total = max(self.peak_total, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _build_args(
    workflow: str, out: Path, n: int, size: int, per_shard: int, workers: int, sources: str | None
) -> list[str]:
    args = [
        sys.executable, "-m", "aether_data.cli", "build", "--workflow", workflow, "--out", str(out),
        "--num-samples", str(n), "--samples-per-shard", str(per_shard), "--image-size", str(size),
        "--workers", str(workers), "--quiet",
    ]  # fmt: skip
    if sources:
        args += ["--sources", sources]
    return args


def run_build_process(args: list[str], timeout_s: float = 1800) -> tuple[float, TreeRSS]:
    """Run one `aether build` in a fresh process (its own embedded Ray); wall seconds and RSS.

    Ray starts workers at niceness 15; on a machine shared with other jobs that measures the
    scheduler, not aether, so bench builds run them at 0 like the in-process throughput phase.
    """
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_worker_niceness": "0"}
    env.pop("AETHER_FAULTS", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeRSS(proc.pid) as rss:
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RuntimeError(f"build timed out after {timeout_s}s: {' '.join(args)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"build failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - t0, rss


def measure_scaling(corpus_list: str, cfg: BenchConfig, workdir: Path) -> dict[str, Any]:
    """Param workflow through Ray: 1 worker, then 2, same plan; speed-up of the busy window.

    Repeated `scaling_repeats` times alternating 1 and 2 workers; the best (shortest) time of each
    is kept, the usual way to read a benchmark on a machine other jobs are using.
    """
    best: dict[int, dict[str, float]] = {
        w: {"wall_s": math.inf, "busy_s": math.inf, "cpu_s": math.inf} for w in (1, 2)
    }
    loads = []
    for _ in range(max(1, cfg.scaling_repeats)):
        for workers in (1, 2):
            dest = workdir / f"scale-w{workers}"
            shutil.rmtree(dest, ignore_errors=True)
            args = _build_args(
                "param",
                dest,
                cfg.scaling_samples,
                cfg.scaling_image_size,
                cfg.samples_per_shard,
                workers,
                corpus_list,
            )
            wall, _ = run_build_process(args)
            loads.append(os.getloadavg()[0])
            run = json.loads((dest / "run.json").read_text())
            busy = float(run.get("busy_seconds") or run["seconds"])
            best[workers]["wall_s"] = min(best[workers]["wall_s"], wall)
            best[workers]["busy_s"] = min(best[workers]["busy_s"], busy)
            best[workers]["cpu_s"] = min(best[workers]["cpu_s"], float(run.get("cpu_seconds") or math.inf))
            shutil.rmtree(dest, ignore_errors=True)
    return {
        "speedup_2_workers": round(best[1]["busy_s"] / best[2]["busy_s"], 3),
        "speedup_2_workers_wall": round(best[1]["wall_s"] / best[2]["wall_s"], 3),
        # what two otherwise idle cores give if the only cost of a second worker is extra CPU per
        # sample (memory bandwidth, Ray): 2 x CPU-per-sample(1 worker) / CPU-per-sample(2 workers)
        "speedup_2_workers_cpu_normalised": round(2 * best[1]["cpu_s"] / best[2]["cpu_s"], 3),
        "load_avg_1min": round(max(loads), 2),
        "samples": cfg.scaling_samples,
        "image_size": cfg.scaling_image_size,
        "repeats": cfg.scaling_repeats,
        "busy_s": {str(k): round(v["busy_s"], 2) for k, v in best.items()},
        "wall_s": {str(k): round(v["wall_s"], 2) for k, v in best.items()},
    }


def measure_memory(cfg: BenchConfig, workdir: Path) -> dict[str, Any]:
    """Peak RSS (process tree and driver) of a small- and a large-sample build of the same spec."""
    peaks: dict[int, tuple[int, int, float]] = {}
    for n in cfg.memory_samples:
        dest = workdir / f"mem-{n}"
        shutil.rmtree(dest, ignore_errors=True)
        args = _build_args("param", dest, n, cfg.memory_image_size, cfg.memory_samples_per_shard, 2, None)
        wall, rss = run_build_process(args)
        peaks[n] = (rss.peak_total, rss.peak_root, wall)
        shutil.rmtree(dest, ignore_errors=True)
    small, large = cfg.memory_samples
    mib = 1 << 20
    return {
        "rss_ratio_10k_1k": round(peaks[large][0] / peaks[small][0], 3),
        "driver_rss_ratio_10k_1k": round(peaks[large][1] / peaks[small][1], 3),
        "peak_rss_mib": {str(n): round(p[0] / mib, 1) for n, p in peaks.items()},
        "driver_peak_rss_mib": {str(n): round(p[1] / mib, 1) for n, p in peaks.items()},
        "wall_s": {str(n): round(p[2], 1) for n, p in peaks.items()},
        "image_size": cfg.memory_image_size,
    }


# --------------------------------------------------------------------------------------------------
# cost model and report


def cost_model(
    throughput: dict[str, dict[str, Any]], efficiency: float, cores: int = CPU_CORES_PER_NODE
) -> dict[str, Any]:
    """CPU-hours for 1M pairs per workflow and nodes (of `cores` vCPUs) that finish it in 24 h.

    `efficiency` is the measured parallel efficiency (2-worker speed-up / 2, at most 1); GPU-hours
    are 0 for the embedded defaults (template annotator, heuristic scorer) and are not measured
    for VLM annotators here.
    """
    eff = min(1.0, max(0.1, efficiency))
    out: dict[str, Any] = {"cores_per_node": cores, "parallel_efficiency": round(eff, 3)}
    for wf, r in throughput.items():
        if "cpu_s_per_sample" not in r:
            continue
        cpu_h = r["cpu_s_per_sample"] * 1e6 / 3600
        out[wf] = {
            "cpu_s_per_sample": r["cpu_s_per_sample"],
            "cpu_hours_1m": round(cpu_h, 1),
            "gpu_hours_1m": 0.0,
            "nodes_for_24h": math.ceil(cpu_h / (24 * cores * eff)),
        }
    return out


def render_markdown(result: dict[str, Any]) -> str:
    """The README performance table, stage breakdown and cost model as markdown."""
    lines = [
        "| workflow | samples/s (1 core) | transcode samples/s | ratio to transcode |",
        "|---|---:|---:|---:|",
    ]
    for wf, r in result["workflows"].items():
        if "error" in r:
            lines.append(f"| {wf} | — | — | not available: {r['error']} |")
            continue
        name = f"{wf} ({r['variant'].split(' (')[0]})" if r.get("variant") else wf
        lines.append(
            f"| {name} | {r['samples_per_s']:.2f} | {r['transcode_samples_per_s']:.2f} | {r['ratio_to_transcode']:.2f} |"
        )
    for wf, r in result["workflows"].items():
        if r.get("variant"):
            lines.append(f"\n{wf}: measured with {r['variant']}")
    sc, mem = result.get("scaling") or {}, result.get("memory") or {}
    if sc or mem:
        lines += ["", "| scaling and memory | value |", "|---|---:|"]
    if sc:
        lines.append(
            f"| param: 2 Ray workers ÷ 1 worker (busy window, best of {sc.get('repeats', 1)}) | {sc['speedup_2_workers']:.2f}× |"
        )
        lines.append(
            f"| param: 2 Ray workers ÷ 1 worker (wall, incl. startup) | {sc['speedup_2_workers_wall']:.2f}× |"
        )
        if "speedup_2_workers_cpu_normalised" in sc:
            lines.append(
                "| param: 2 workers ÷ 1, CPU-normalised (2 × CPU per sample at 1 ÷ at 2) | "
                f"{sc['speedup_2_workers_cpu_normalised']:.2f}× |"
            )
            lines.append(
                f"| 1-min load average during the scaling runs (max; 2 cores) | {sc['load_avg_1min']:.1f} |"
            )
    if mem:
        lines.append(
            f"| peak RSS 10k ÷ 1k samples (driver + Ray + workers) | {mem['rss_ratio_10k_1k']:.3f} |"
        )
        lines.append(f"| peak RSS 10k ÷ 1k samples (driver only) | {mem['driver_rss_ratio_10k_1k']:.3f} |")
    stage_rows = [
        (wf, r["stage_s_per_sample"]) for wf, r in result["workflows"].items() if "stage_s_per_sample" in r
    ]
    if stage_rows:
        names = list(stage_rows[0][1])
        lines += ["", "Per-sample stage time (ms, one core):", "", "| workflow | " + " | ".join(names) + " |"]
        lines.append("|---|" + "---:|" * len(names))
        for wf, st in stage_rows:
            lines.append(f"| {wf} | " + " | ".join(f"{st[n] * 1000:.1f}" for n in names) + " |")
    cost = result.get("cost_model") or {}
    wfs = [wf for wf in result["workflows"] if wf in cost]
    if wfs:
        lines += [
            "",
            f"Cost of 1M pairs (measured single-core cost; nodes of {cost['cores_per_node']} vCPUs at "
            f"{cost['parallel_efficiency']:.0%} parallel efficiency, the CPU-normalised 2-worker speed-up / 2):",
            "",
            "| workflow | CPU s / pair | CPU-hours / 1M | GPU-hours / 1M | nodes to finish in 24 h |",
            "|---|---:|---:|---:|---:|",
        ]
        for wf in wfs:
            c = cost[wf]
            lines.append(
                f"| {wf} | {c['cpu_s_per_sample']:.3f} | {c['cpu_hours_1m']:,.0f} | {c['gpu_hours_1m']:.0f} | {c['nodes_for_24h']} |"
            )
    meta = result.get("meta") or {}
    if meta:
        lines += [
            "",
            f"Measured {meta.get('date', '')} on {meta.get('machine', '')}: {meta.get('notes', '')}",
        ]
    return "\n".join(lines) + "\n"


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Everything `aether bench` measures, as the JSON-able result dict."""
    own_tmp = cfg.workdir is None
    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="aether-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        n_corpus = max(cfg.samples, cfg.scaling_samples)
        log(f"bench: making {n_corpus} distinct ~{cfg.megapixels} MP corpus images in {workdir}")
        paths = make_corpus(workdir / "corpus", n_corpus, seed=cfg.seed, megapixels=cfg.megapixels)
        corpus_list = workdir / "corpus.txt"
        atomic_write_text(corpus_list, "".join(f"{p}\n" for p in paths))
        small_list = workdir / "corpus-small.txt"
        atomic_write_text(small_list, "".join(f"{p}\n" for p in paths[: cfg.samples]))
        log(f"bench: throughput vs transcode, {cfg.samples} samples per workflow: {', '.join(cfg.workflows)}")
        workflows = measure_throughput(cfg.workflows, str(small_list), cfg, workdir)
        for wf, r in workflows.items():
            log(f"  {wf}: {r}")
        result: dict[str, Any] = {"workflows": workflows, "scaling": {}, "memory": {}}
        if cfg.scaling:
            log(f"bench: Ray scaling, param, {cfg.scaling_samples} samples, 1 then 2 workers")
            result["scaling"] = measure_scaling(str(corpus_list), cfg, workdir)
            log(f"  {result['scaling']}")
        if cfg.memory:
            log(f"bench: peak RSS, param, {cfg.memory_samples[0]} then {cfg.memory_samples[1]} samples")
            result["memory"] = measure_memory(cfg, workdir)
            log(f"  {result['memory']}")
        sc = result["scaling"] or {}
        # a dedicated node's efficiency: the CPU-normalised speed-up (the raw one measures the
        # other jobs on a shared machine as much as aether)
        speedup = sc.get("speedup_2_workers_cpu_normalised", sc.get("speedup_2_workers", 2.0))
        result["cost_model"] = cost_model(workflows, speedup / 2)
        import platform

        result["meta"] = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
            "notes": (
                f"corpus {cfg.megapixels} MP JPEGs → {cfg.image_size} px pairs, q95; throughput single-core "
                "in-process, interleaved with the baseline shard by shard"
            ),
            "config": {k: v for k, v in vars(cfg).items() if k != "workdir"},
        }
        return result
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def bench_command(
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = "benchmarks/results.md",
    samples: int = 288,
    image_size: int = 512,
    workflows: str = "param,style,auto",
    scaling_samples: int = 256,
    memory_samples: str = "1000,10000",
    skip_scaling: bool = False,
    skip_memory: bool = False,
    workdir: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> int:
    """The `aether bench` command: run, print the markdown table, write JSON/markdown; exit code."""
    small, large = (int(x) for x in memory_samples.split(","))
    cfg = BenchConfig(
        samples=samples,
        image_size=image_size,
        workflows=tuple(w.strip() for w in workflows.split(",") if w.strip()),
        scaling_samples=scaling_samples,
        memory_samples=(small, large),
        scaling=not skip_scaling,
        memory=not skip_memory,
        workdir=workdir,
        seed=seed,
    )
    result = run_bench(cfg, log=log)
    table = render_markdown(result)
    log(table)
    if json_path:
        atomic_write_text(Path(json_path), json.dumps(result, indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(markdown_path), "# aether benchmark results\n\n" + table)
    return 0
