"""Plan → shard tasks on Ray Data → atomic shard commit → manifest; resume and progress.

The plan fixes every sample's key, workflow, seed, source and shard before any work starts and is
written to `plan.parquet`, so a run is reproducible and resumable: a shard is rebuilt only when its
tar and index are not both present and consistent (`manifest.shard_is_done`). Shard tasks are
pure functions of (spec, plan rows), so 1 worker or 100 give the same bytes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from aether_data import __version__
from aether_data import params as P
from aether_data.annotate import AnnotationRequest, TemplateAnnotator
from aether_data.config import PipelineSpec
from aether_data.manifest import (
    build_manifest,
    load_schema,
    shard_is_done,
    write_index,
    write_manifest,
    write_skipped_parquet,
)
from aether_data.sampling import rng_for, sample_seed
from aether_data.scoring import heuristic_score
from aether_data.shards import ShardWriter, atomic_write_bytes, file_sha256, json_bytes
from aether_data.sources import (
    SourceError,
    bundled_license,
    bundled_photos,
    encode_jpeg,
    encode_png,
    list_sources,
    load_image,
    resize_short_edge,
)
from aether_data.workflows import TASK_TOKENS, Pair, PlanRow, make_workflow
from aether_data.workflows.base import augment, image_stats

log = logging.getLogger("aether")

PLAN_SCHEMA = pa.schema(
    [
        pa.field("index", pa.int64(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("workflow", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("source_index", pa.int64(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
    ]
)


class RecordSchemaError(ValueError):
    """A synthesised record that does not match manifests/sample.schema.json."""


class BuildError(RuntimeError):
    """A build that cannot start or cannot finish; the message says what to do."""


# --------------------------------------------------------------------------------------------------
# plan


def resolve_sources(spec: PipelineSpec) -> list[str]:
    """The ordered list of source URIs (bundled photographs when no path is given)."""
    if spec.sources.path is None:
        return [str(p) for p in bundled_photos()]
    try:
        found = list_sources(spec.sources.path)
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot list sources at {spec.sources.path}: {exc}") from None
    if not found:
        raise BuildError(f"no source images found at {spec.sources.path}")
    return found


def workflow_counts(spec: PipelineSpec) -> dict[str, int]:
    """Samples per workflow: largest-remainder split of num_samples by `mix` shares."""
    names = spec.workflows()
    if len(names) == 1:
        return {names[0]: spec.num_samples}
    shares = np.array([spec.mix[w] for w in names], dtype=np.float64)
    exact = spec.num_samples * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: spec.num_samples - counts.sum()]:
        counts[i] += 1
    return {w: int(c) for w, c in zip(names, counts)}


def shard_name(workflow: str, shard: int) -> str:
    return f"{workflow}-{shard:06d}"


def make_plan(spec: PipelineSpec, sources: Sequence[str]) -> list[PlanRow]:
    """Assign every sample a global index, key, workflow, seed, source and shard.

    Global indices are contiguous per workflow (canonical order param, style, auto); shards hold
    `samples_per_shard` consecutive samples of one workflow. Sources are visited in a seeded
    permutation, cycling when there are fewer sources than samples.
    """
    perm = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2**32,))).permutation(
        len(sources)
    )
    rows: list[PlanRow] = []
    index = 0
    for workflow, count in workflow_counts(spec).items():
        for local in range(count):
            src = int(perm[index % len(sources)])
            rows.append(
                PlanRow(
                    index=index,
                    key=f"{workflow}_{index:09d}",
                    workflow=workflow,
                    shard=shard_name(workflow, local // spec.samples_per_shard),
                    seed=sample_seed(spec.seed, index),
                    source_index=src,
                    source_uri=sources[src],
                )
            )
            index += 1
    return rows


def _plan_bytes(rows: Sequence[PlanRow]) -> bytes:
    cols = {name: [getattr(r, name) for r in rows] for name in PLAN_SCHEMA.names}
    table = pa.Table.from_pydict(cols, schema=PLAN_SCHEMA)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=max(1, min(len(rows), 1 << 20)))
    return sink.getvalue()


def write_plan(out_dir: Path, rows: Sequence[PlanRow]) -> None:
    """Write plan.parquet; refuse to resume into a directory planned with a different spec."""
    path = out_dir / "plan.parquet"
    data = _plan_bytes(rows)
    if path.exists():
        if path.read_bytes() == data:
            return
        raise BuildError(
            f"{out_dir} already holds a different plan (other spec, seed or sources); "
            "choose a new --out directory or remove the old one"
        )
    atomic_write_bytes(path, data)


@dataclass
class ShardTask:
    """One shard: the unit of distribution, retry and resume."""

    name: str
    workflow: str
    rows: list[PlanRow]

    def to_item(self) -> dict[str, Any]:
        return {"name": self.name, "workflow": self.workflow, "rows": [r.to_dict() for r in self.rows]}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ShardTask:
        return cls(item["name"], item["workflow"], [PlanRow(**r) for r in item["rows"]])


def group_shards(rows: Sequence[PlanRow]) -> list[ShardTask]:
    tasks: dict[str, ShardTask] = {}
    for r in rows:
        tasks.setdefault(r.shard, ShardTask(r.shard, r.workflow, [])).rows.append(r)
    return list(tasks.values())


# --------------------------------------------------------------------------------------------------
# one shard


@dataclass
class LoadedSource:
    pixels: np.ndarray
    sha256: str
    width: int
    height: int
    license: str | None


class SourceCache:
    """Decoded sources, a few at a time: neighbouring samples often share a photo."""

    def __init__(self, decode_side: int, max_pixels: int, capacity: int = 8) -> None:
        self.decode_side = decode_side
        self.max_pixels = max_pixels
        self.capacity = capacity
        self._items: OrderedDict[str, LoadedSource] = OrderedDict()

    def get(self, uri: str) -> LoadedSource:
        if uri in self._items:
            self._items.move_to_end(uri)
            return self._items[uri]
        if "://" in uri:
            raise SourceError("unsupported-uri", uri)
        pixels = load_image(uri, max_side=self.decode_side, max_pixels=self.max_pixels)
        with Image.open(uri) as im:
            width, height = im.size
        item = LoadedSource(pixels, file_sha256(uri), width, height, bundled_license(uri))
        self._items[uri] = item
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return item


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Decode stored image bytes exactly as a reader of the shard will."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)


class FaultPlan:
    """Deliberate faults for reliability tests, from `AETHER_FAULTS` (comma-separated).

    `raise:KEY` raises inside that sample; `exit:SHARD` kills the worker process the first time
    it starts that shard (a marker in OUT/.faults makes it once per output directory). Unset in
    production; documented so that anyone can rerun the fault-injection tests against a build.
    """

    def __init__(self, spec_text: str | None, out_dir: Path) -> None:
        self.raise_keys: set[str] = set()
        self.exit_shards: set[str] = set()
        self.marker_dir = out_dir / ".faults"
        for item in filter(None, (spec_text or "").split(",")):
            kind, _, target = item.strip().partition(":")
            if kind == "raise":
                self.raise_keys.add(target)
            elif kind == "exit":
                self.exit_shards.add(target)

    def before_sample(self, key: str) -> None:
        if key in self.raise_keys:
            raise RuntimeError(f"injected fault in sample {key}")

    def before_shard(self, shard: str) -> None:
        if shard not in self.exit_shards:
            return
        marker = self.marker_dir / shard
        if marker.exists():
            return
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os._exit(17)  # a worker dying mid-shard, as an OOM kill would


class ShardContext:
    """Everything a shard task needs, built once per worker (actor)."""

    def __init__(self, spec: PipelineSpec, out_dir: Path) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.workflows = {w: make_workflow(w, spec) for w in spec.workflows()}
        self.annotator = TemplateAnnotator()
        # decode at ~3x the output size: enough for the smallest crop, far below camera resolution
        self.sources = SourceCache(spec.image.size * 3, spec.sources.max_pixels)
        self.faults = FaultPlan(os.environ.get("AETHER_FAULTS"), out_dir)
        self.record_validator = jsonschema.Draft202012Validator(load_schema("sample"))

    def encode(self, img: np.ndarray) -> bytes:
        if self.spec.image.format == "png":
            return encode_png(img)
        return encode_jpeg(img, quality=self.spec.image.quality)

    def check_record(self, record: dict[str, Any]) -> None:
        """Refuse to write a record the schema would reject (a bug, never the input's fault)."""
        error = next(iter(self.record_validator.iter_errors(record)), None)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "<record>"
            raise RecordSchemaError(f"{record.get('key')}: {where}: {error.message}")

    def build_sample(self, row: PlanRow) -> tuple[dict[str, bytes], dict[str, Any]]:
        """One plan row → tar members and index fields. Raises SourceError for bad inputs."""
        spec = self.spec
        self.faults.before_sample(row.key)
        rng = rng_for(row.seed)
        src = self.sources.get(row.source_uri)
        img = resize_short_edge(augment(src.pixels, rng, spec), spec.image.size)
        base = self.encode(img)
        img_q = decode_image_bytes(base)  # what a reader sees: render from it, not from the float
        pair: Pair = self.workflows[row.workflow].synthesize(row, img_q, rng)
        input_bytes = base if pair.input is img_q else self.encode(pair.input)
        target_bytes = base if pair.target is img_q else self.encode(pair.target)
        ann = self.annotator.annotate(
            AnnotationRequest(
                workflow=row.workflow,
                params=pair.params or {},
                masks=pair.masks,
                seed=row.seed,
                preset=pair.preset,
                image_stats=image_stats(pair.input),
            )
        )
        scores = {
            "aesthetic_input": heuristic_score(pair.input),
            "aesthetic_target": heuristic_score(pair.target),
        }
        ext = spec.image.format
        record = {
            "key": row.key,
            "task": TASK_TOKENS[row.workflow],
            "workflow": row.workflow,
            "protocol": pair.protocol,
            "instructions": ann.instructions,
            "prompt": ann.prompt,
            "completion": ann.completion,
            "reasoning": ann.reasoning,
            "params": P.normalised_dict(pair.params, decimals=6) if pair.params is not None else None,
            "params_origin": pair.params_origin,
            "masks": pair.masks,
            "preset": _preset_record(pair.preset),
            "expert_ref": pair.expert_ref,
            "source": {
                "uri": _display_uri(row.source_uri),
                "sha256": src.sha256,
                "width": src.width,
                "height": src.height,
                "license": src.license,
            },
            "image": {"width": int(img.shape[1]), "height": int(img.shape[0]), "format": ext},
            "scores": scores,
            "annotator": ann.annotator,
            "seed": row.seed,
            "generator": {"name": f"aether-{row.workflow}", "version": __version__},
        }
        self.check_record(record)
        members = {f"input.{ext}": input_bytes, f"target.{ext}": target_bytes, "json": json_bytes(record)}
        fields = {
            "workflow": row.workflow,
            "task": record["task"],
            "protocol": pair.protocol,
            "preset_id": (pair.preset or {}).get("id"),
            "expert_ref": (pair.expert_ref or {}).get("id"),
            "annotator": ann.annotator.get("name"),
            "attempts": ann.annotator.get("attempts", 0),
            "fallback_reason": ann.annotator.get("fallback_reason"),
            "params_origin": pair.params_origin,
            "score_input": scores["aesthetic_input"],
            "score_target": scores["aesthetic_target"],
        }
        return members, fields

    def build_shard(self, task: ShardTask) -> dict[str, Any]:
        """Build one shard completely and commit it atomically; bad samples are skipped, counted."""
        tar_path = self.out_dir / "shards" / f"{task.name}.tar"
        index_path = self.out_dir / "index" / f"{task.name}.parquet"
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        errors: list[str] = []
        with ShardWriter(tar_path) as writer:
            for i, row in enumerate(task.rows):
                if i == len(task.rows) // 2:
                    self.faults.before_shard(task.name)
                try:
                    members, fields = self.build_sample(row)
                except SourceError as exc:
                    skipped.append({"source": row.source_uri, "reason": exc.reason, "key": row.key})
                    continue
                except Exception as exc:  # one bad sample must never cost the shard
                    errors.append(f"{row.key} ({row.source_uri}):\n{traceback.format_exc()}")
                    skipped.append(
                        {"source": row.source_uri, "reason": f"error:{type(exc).__name__}", "key": row.key}
                    )
                    continue
                info = writer.add(row.key, members)
                rows.append({"key": row.key, "members": info, **fields})
            shard = writer.commit()
        write_index(index_path, shard, rows, skipped)
        if errors:
            atomic_write_bytes(self.out_dir / "logs" / f"{task.name}.errors.txt", "\n".join(errors).encode())
        return {
            "name": task.name,
            "ok": True,
            "samples": shard.samples,
            "skipped": len(skipped),
            "reasons": dict(Counter(s["reason"] for s in skipped)),
            "error": None,
        }


PRESET_RECORD_FIELDS = ("id", "name", "primary", "fine", "categories", "matcher", "effects", "unsupported")


def _preset_record(preset: dict[str, Any] | None) -> dict[str, Any] | None:
    """The preset as the record stores it (its instructions and plans live in the record already)."""
    if preset is None:
        return None
    return {k: preset[k] for k in PRESET_RECORD_FIELDS if k in preset}


def _display_uri(uri: str) -> str:
    """Bundled photos are recorded relative to the package so manifests do not leak local paths."""
    try:
        rel = Path(uri).resolve().relative_to(Path(__file__).resolve().parent)
        return f"aether://{rel.as_posix()}"
    except ValueError:
        return uri


def limit_threads(n: int = 1) -> None:
    """Keep each worker to its share of the cores (no BLAS/OpenCV/torch oversubscription)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import cv2

    cv2.setNumThreads(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


class ShardBuilder:
    """Ray Data actor: loads workflow resources once, then builds shard after shard."""

    def __init__(self, spec_json: str, out_dir: str) -> None:
        limit_threads(1)
        self.ctx = ShardContext(PipelineSpec.model_validate_json(spec_json), Path(out_dir))

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        task = ShardTask.from_item(item)
        try:
            return self.ctx.build_shard(task)
        except Exception as exc:  # a whole-shard failure (disk full, read-only output) is reported
            return {
                "name": task.name,
                "ok": False,
                "samples": 0,
                "skipped": 0,
                "reasons": {},
                "error": f"{type(exc).__name__}: {exc}",
            }


# --------------------------------------------------------------------------------------------------
# the whole build


@dataclass
class BuildSummary:
    """What a build did; `manifest` is None when some shard failed (re-run to resume)."""

    out_dir: Path
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


def init_ray(address: str | None, workers: int) -> None:
    """Join a cluster (`--ray-address` / RAY_ADDRESS) or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address:
        ray.init(address=address, **common)
    else:
        # The embedded cluster's chatter is noise to a data engineer; sample failures are
        # recorded in the manifest and in OUT/logs/, not on the console.
        # (RAY_BACKEND_LOG_LEVEL=fatal hides a C++ warning Ray Data's restartable actor pools
        # always trigger; set it yourself to see everything.)
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        common.update(log_to_driver=False, logging_level="ERROR")
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), **common)


def _clean_temp_files(out_dir: Path) -> int:
    n = 0
    for sub in ("shards", "index"):
        for p in (out_dir / sub).glob(".tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _execute(
    spec: PipelineSpec, out_dir: Path, tasks: Sequence[ShardTask], workers: int
) -> Iterator[dict[str, Any]]:
    """Run shard tasks on Ray Data, yielding each shard's summary as it completes."""
    import ray
    import ray.data

    for name in ("ray.data", "ray.data._internal"):  # our progress replaces Ray Data's chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    items = [t.to_item() for t in tasks]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(
        ShardBuilder,
        fn_constructor_kwargs={"spec_json": spec.model_dump_json(), "out_dir": str(out_dir)},
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
        num_cpus=1,
    )  # Ray Data restarts dead actors and retries their tasks by default (max_restarts=-1)
    yield from ds.iter_rows()


def run_build(spec: PipelineSpec, out_dir: str | Path, progress: Any | None = None) -> BuildSummary:
    """Plan, build the shards that are not done, write the manifest. Safe to re-run (resume)."""
    start = time.perf_counter()
    out = Path(out_dir)
    for sub in ("shards", "index"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise BuildError(f"output directory {out} is not writable")
    sources = resolve_sources(spec)
    rows = make_plan(spec, sources)
    write_plan(out, rows)
    _clean_temp_files(out)
    tasks = group_shards(rows)
    todo = [
        t
        for t in tasks
        if not shard_is_done(out / "shards" / f"{t.name}.tar", out / "index" / f"{t.name}.parquet")
    ]
    summary = BuildSummary(
        out_dir=out,
        planned_samples=len(rows),
        shards_total=len(tasks),
        shards_built=0,
        shards_reused=len(tasks) - len(todo),
        samples_written=0,
        skipped=0,
        reasons={},
    )
    reasons: Counter[str] = Counter()
    if progress is not None:
        progress.start(total_shards=len(tasks), reused=summary.shards_reused, todo=len(todo))
    if todo:
        init_ray(spec.runtime.ray_address, spec.runtime.workers)
        for res in _execute(spec, out, todo, spec.runtime.workers):
            if res["ok"]:
                summary.shards_built += 1
                summary.samples_written += int(res["samples"])
                summary.skipped += int(res["skipped"])
                reasons.update({k: int(v) for k, v in (res["reasons"] or {}).items() if v is not None})
            else:
                summary.failed.append((res["name"], res["error"]))
            if progress is not None:
                progress.update(res)
    summary.reasons = dict(reasons)
    summary.seconds = time.perf_counter() - start
    if progress is not None:
        progress.stop()
    write_run_log(out, spec, summary)
    if summary.failed:
        return summary
    names = [t.name for t in tasks]
    manifest = build_manifest(
        out,
        spec=content_spec(spec),
        seed=spec.seed,
        code_version=__version__,
        shards=names,
        extra={
            "annotator": {
                "backend": spec.annotator.backend,
                "model": None,
                "prompt_versions": _prompt_versions(),
            },
            "planned_samples": len(rows),
        },
    )
    write_manifest(out, manifest)
    from aether_data.manifest import collect_skipped

    write_skipped_parquet(out, collect_skipped(out, names))
    summary.manifest = manifest
    return summary


def content_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as stored in the manifest: everything that determines content.

    `runtime` (workers, cluster address) changes where a build runs, never what it writes, so it
    is left out; otherwise `--workers 1` and `--workers 8` would give different manifests. It is
    recorded in `run.json` with the timings instead.
    """
    return spec.model_dump(mode="json", exclude={"runtime"})


def write_run_log(out: Path, spec: PipelineSpec, summary: BuildSummary) -> None:
    """`run.json`: how this invocation ran (not part of the reproducible dataset)."""

    log_entry = {
        "runtime": spec.runtime.model_dump(mode="json"),
        "seconds": round(summary.seconds, 3),
        "shards_built": summary.shards_built,
        "shards_reused": summary.shards_reused,
        "samples_written": summary.samples_written,
        "failed": [{"shard": n, "error": e} for n, e in summary.failed],
        "code_version": __version__,
    }
    try:
        atomic_write_bytes(out / "run.json", (json.dumps(log_entry, indent=2) + "\n").encode())
    except OSError:
        pass  # a full or read-only disk is reported by the build itself; the log is a courtesy


def _prompt_versions() -> dict[str, str]:
    from aether_data.annotate import PROMPT_VERSIONS

    return dict(PROMPT_VERSIONS)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def remove_output(out_dir: Path) -> None:
    """Delete a previous build (used by `--overwrite`)."""
    shutil.rmtree(out_dir, ignore_errors=True)
