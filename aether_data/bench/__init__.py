"""`aether bench`: throughput against a transcode floor, 1→2 worker scaling, flat memory, cost model.

Why ratios: absolute times on a shared machine are noise, so every number that matters is a ratio
measured in one run (docs/design.md §7):

* **throughput**: each workflow's samples/s ÷ a transcode baseline on the *same images in the same
  process*, shard by shard interleaved so both see the same machine load. The baseline is the
  I/O + codec floor of a pair: read + decode the source exactly as aether does (same decoder, same
  JPEG draft scale), resize to the output size, two JPEG encodes, tar write (TarWriter).
  Both run in-process on one core (``limit_threads(1)``), with no Ray in between, each workflow
  with its default spec's shard size, at most 32 (what a user's build runs: the auto workflow fits
  a shard's parameters in one batch, so its cost per sample depends on the shard).
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_data.bench.config import CPU_CORES_PER_NODE, BenchConfig
from aether_data.bench.scaling import measure_memory, measure_scaling
from aether_data.bench.throughput import make_corpus, measure_throughput, transcode_shard
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
        redraws = [(wf, r["redraw_rate"]) for wf, r in result["workflows"].items() if "redraw_rate" in r]
        if redraws:  # quality gates: redraws per written sample (each one a draft and its measures)
            lines.append("")
            lines.append(
                "Quality-gate redraws per written sample: " + ", ".join(f"{wf} {v:.2f}" for wf, v in redraws)
            )
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
                "in-process, interleaved with the baseline shard by shard, "
                + (
                    "each workflow's default shard size (at most 32)"
                    if cfg.samples_per_shard is None
                    else f"{cfg.samples_per_shard} samples per shard"
                )
            ),
            "config": {k: v for k, v in vars(cfg).items() if k != "workdir"},
        }
        return result
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def bench_command(
    json_path: str | Path | None = None,
    markdown_path: str | Path | None = None,
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
    gates: bool = True,
) -> int:
    """The `aether bench` command: run, print the markdown table, write JSON/markdown; exit code.

    The markdown goes next to the JSON (same name, ``.md``) unless `markdown_path` says otherwise:
    a run never overwrites another run's table, and nothing is written into the working directory
    that was not asked for.
    """
    if markdown_path is None and json_path:
        markdown_path = Path(json_path).with_suffix(".md")
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
        gates=gates,
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
