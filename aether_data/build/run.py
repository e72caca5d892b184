"""The driver of a build: plan, run the shards that are not done, write run.json and the manifest."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aether_data import __version__
from aether_data.annotate import annotator_manifest
from aether_data.build.clock import STAGES
from aether_data.build.errors import BuildError
from aether_data.build.executor import INTERRUPTED, execute, init_ray, keep_interrupt_handler
from aether_data.build.fingerprint import content_spec, fingerprint_doc, input_fingerprints, shard_fingerprint
from aether_data.build.plan import iter_shard_spans, resolve_sources, write_plan
from aether_data.build.precheck import usable_sources
from aether_data.build.resume import PLAN_DOC_KEY, check_plan, clear_output, lock_output, select_shards
from aether_data.config import PipelineSpec
from aether_data.dataset.manifest import (
    build_manifest,
    collect_skipped,
    write_manifest,
    write_skipped_parquet,
)
from aether_data.io import storage
from aether_data.io.atomic import TMP_PREFIX, atomic_write_bytes

__all__ = ["BuildSummary", "content_spec", "remove_output", "run_build", "stderr_is_tty", "write_run_log"]


@dataclass
class BuildSummary:
    """What a build did; `manifest` is None when some shard failed (re-run to resume)."""

    out_dir: storage.AnyPath
    planned_samples: int
    shards_total: int
    shards_built: int
    shards_reused: int
    samples_written: int
    skipped: int
    reasons: dict[str, int]
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    manifest: dict[str, Any] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> shards built there
    busy_seconds: float = 0.0  # first shard start to last shard end (excludes Ray/actor startup)
    cpu_seconds: float = 0.0  # CPU seconds of the shard tasks (summed over workers)
    annotator_stats: dict[str, Any] = field(default_factory=dict)  # summed over workers


def _clean_temp_files(out_dir: storage.AnyPath) -> int:
    n = 0
    for sub in ("shards", "index"):
        for p in (out_dir / sub).glob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _prepare_output(out: storage.AnyPath) -> None:
    """Create the local output folders and refuse an unwritable one before any work."""
    if isinstance(out, Path):
        for sub in ("shards", "index"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise BuildError(f"output directory {out} is not writable")


def _preflight(spec: PipelineSpec) -> None:
    """Missing weights or expert DB: fail once here, not in every actor."""
    if "auto" in spec.workflows():
        from aether_data.workflows.auto import preflight

        try:
            preflight(spec)
        except (OSError, ValueError) as exc:  # ExpertDBError is a ValueError
            raise BuildError(str(exc)) from None


class _Tally:
    """Adds up the per-shard results as they arrive, into the build's summary."""

    def __init__(self, summary: BuildSummary) -> None:
        self.summary = summary
        self.reasons: Counter[str] = Counter()
        self.stages: Counter[str] = Counter()
        self.nodes: Counter[str] = Counter()
        self.window = [math.inf, -math.inf]
        self.annotator_stats: dict[str, dict[str, Any]] = {}

    def add(self, res: dict[str, Any]) -> None:
        s = self.summary
        if not res["ok"]:
            s.failed.append((res["name"], res["error"]))
            return
        s.shards_built += 1
        s.samples_written += int(res["samples"])
        s.skipped += int(res["skipped"])
        self.reasons.update({k: int(v) for k, v in (res["reasons"] or {}).items() if v is not None})
        self.stages.update(json.loads(res.get("stages") or "{}"))
        self.nodes[str(res.get("node"))] += 1
        self.window = [min(self.window[0], res["t_start"]), max(self.window[1], res["t_end"])]
        s.cpu_seconds += float(res.get("cpu_s") or 0.0)
        # cumulative per worker process: the latest report of each worker is its total
        self.annotator_stats[str(res.get("pid"))] = json.loads(res.get("annotator_stats") or "{}")

    def finish(self, seconds: float) -> BuildSummary:
        s = self.summary
        s.reasons = dict(self.reasons)
        s.stage_seconds = {k: round(self.stages[k], 4) for k in STAGES if k in self.stages}
        s.nodes = dict(sorted(self.nodes.items()))
        s.busy_seconds = max(0.0, self.window[1] - self.window[0])
        s.seconds = seconds
        s.annotator_stats = _sum_stats(self.annotator_stats.values())
        return s


def _write_manifest(
    out: storage.AnyPath,
    spec: PipelineSpec,
    names: list[str],
    planned: int,
    rejected: dict[str, Any] | None,
    fingerprints: dict[str, str],
) -> dict[str, Any]:
    """manifest.json and skipped.parquet, from the indexes of every shard (written last)."""
    manifest = build_manifest(
        out,
        spec=content_spec(spec),
        seed=spec.seed,
        code_version=__version__,
        shards=names,
        extra={
            "annotator": annotator_manifest(spec.annotator),
            "planned_samples": planned,
            **({"sources_rejected": rejected} if rejected is not None else {}),
            "fingerprints": fingerprints,
        },
    )
    write_manifest(out, manifest)
    write_skipped_parquet(out, collect_skipped(out, names))
    return manifest


def run_build(
    spec: PipelineSpec,
    out_dir: str | Path | storage.RemotePath,
    progress: Any | None = None,
    *,
    overwrite: bool = False,
    extend: bool = False,
) -> BuildSummary:
    """Plan, build the shards that are not done, write the manifest. Safe to re-run (resume).

    `out_dir` may be a URI (``s3://bucket/run``; see the storage module for the commit rule).
    The driver streams the plan to plan.parquet and holds only shard spans, never per-sample rows.
    A local output is locked for the whole build; shards are reused only when their fingerprint
    matches (``build.resume``). ``overwrite`` clears a previous build first; ``extend`` grows a
    dataset of the same spec and seed to more samples, keeping its shards.
    """
    out = storage.as_path(out_dir)
    _prepare_output(out)
    with lock_output(out):
        return _run_locked(spec, out, progress, overwrite=overwrite, extend=extend)


def _run_locked(
    spec: PipelineSpec, out: storage.AnyPath, progress: Any | None, *, overwrite: bool, extend: bool
) -> BuildSummary:
    start = time.perf_counter()
    if overwrite:
        clear_output(out)
    _preflight(spec)
    sources = resolve_sources(spec)
    rejected = None
    if spec.sources.precheck:  # N means N: broken sources never enter the plan
        sources, rejected = usable_sources(sources, spec.sources.max_pixels)
        if not sources:
            raise BuildError(f"no usable source images ({rejected['reasons']})")
    inputs = input_fingerprints(spec)
    doc = fingerprint_doc(spec, sources, inputs)
    fingerprint = shard_fingerprint(spec, doc=doc)
    plan_doc = {**doc, "num_samples": spec.num_samples}
    replace = check_plan(out, plan_doc, extend)
    _clean_temp_files(out)  # under the lock: no other build's temp files
    spans = list(iter_shard_spans(spec))
    names = [s.name for s in spans]
    todo, reused = select_shards(out, spans, fingerprint, doc, extend=extend)  # before the plan is written
    meta = {PLAN_DOC_KEY: json.dumps(plan_doc, sort_keys=True, separators=(",", ":")).encode()}
    planned = write_plan(out, spec, sources, metadata=meta, replace=replace)
    tally = _Tally(
        BuildSummary(
            out_dir=out,
            planned_samples=planned,
            shards_total=len(names),
            shards_built=0,
            shards_reused=reused,
            samples_written=0,
            skipped=0,
            reasons={},
        )
    )
    if progress is not None:
        progress.start(
            total_shards=len(names),
            reused=reused,
            todo=len(todo),
            todo_samples=sum(span.count for span in todo),
        )
    if todo:
        init_ray(spec.runtime.ray_address, spec.runtime.workers)
        keep_interrupt_handler()
        on_progress = getattr(progress, "running", None)  # per-sample counts while shards run
        for res in execute(
            spec, out, todo, spec.runtime.workers, sources, (fingerprint, doc), on_progress=on_progress
        ):
            if INTERRUPTED.is_set():  # a Ctrl-C that a library swallowed still stops the build
                raise KeyboardInterrupt
            tally.add(res)
            if progress is not None:
                progress.update(res)
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
    # every task is finished: a .tmp- left now is a dead worker's (killed mid-tar, then retried)
    _clean_temp_files(out)
    summary = tally.finish(time.perf_counter() - start)
    if progress is not None:
        progress.stop()
    write_run_log(out, spec, summary)
    if not summary.failed:
        summary.manifest = _write_manifest(
            out, spec, names, planned, rejected, {**inputs, "spec": fingerprint}
        )
    return summary


def _sum_stats(per_worker: Any) -> dict[str, Any]:
    """Add up numeric annotator counters over workers (non-numeric fields are dropped)."""
    total: Counter[str] = Counter()
    for stats in per_worker:
        for k, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] += v
    return dict(sorted(total.items()))


def write_run_log(out: storage.AnyPath, spec: PipelineSpec, summary: BuildSummary) -> None:
    """`run.json`: how this invocation ran (not part of the reproducible dataset)."""

    log_entry = {
        "runtime": spec.runtime.model_dump(mode="json"),
        "seconds": round(summary.seconds, 3),
        "shards_built": summary.shards_built,
        "shards_reused": summary.shards_reused,
        "samples_written": summary.samples_written,
        "failed": [{"shard": n, "error": e} for n, e in summary.failed],
        "code_version": __version__,
        "busy_seconds": round(summary.busy_seconds, 3),
        "cpu_seconds": round(summary.cpu_seconds, 3),
        "stage_seconds": summary.stage_seconds,  # summed over shards built by this invocation
        "nodes": summary.nodes,  # Ray node id -> shards built there
        "annotator": summary.annotator_stats,  # requests sent, cache hits, fallbacks (this run)
    }
    try:
        atomic_write_bytes(out / "run.json", (json.dumps(log_entry, indent=2) + "\n").encode())
    except OSError:
        pass  # a full or read-only disk is reported by the build itself; the log is a courtesy


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def remove_output(out_dir: str | Path | storage.RemotePath) -> None:
    """Delete a previous build (used by `--overwrite`); a URI prefix is deleted on its store."""
    storage.remove_tree(out_dir)
