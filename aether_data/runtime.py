"""Plan → shard tasks on Ray Data → atomic shard commit → manifest; resume and progress.

The plan fixes every sample's key, workflow, seed, source and shard before any work starts and is
written to `plan.parquet`, so a run is reproducible and resumable: a shard is rebuilt only when its
tar and index are not both present and consistent (`manifest.shard_is_done`). Shard tasks are
pure functions of (spec, plan rows), so 1 worker or 100 give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import fastjsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from aether_data import __version__, storage
from aether_data import params as P
from aether_data.annotate import Annotation, AnnotationRequest, annotator_manifest, make_annotator
from aether_data.config import PipelineSpec
from aether_data.develop import warm_up_kernels
from aether_data.manifest import (
    build_manifest,
    load_schema,
    shard_is_done,
    write_index,
    write_manifest,
    write_skipped_parquet,
)
from aether_data.remote_sources import FetchSettings, read_source_bytes
from aether_data.sampling import rng_for, sample_seed
from aether_data.scoring import heuristic_score
from aether_data.shards import ShardWriter, atomic_write_bytes, file_sha256, json_bytes
from aether_data.sources import (
    SourceError,
    as_float01,
    bundled_license,
    bundled_photos,
    encode_jpeg,
    encode_png,
    list_sources,
    load_image_bytes,
    resize_short_edge,
)
from aether_data.workflows import TASK_TOKENS, Pair, PlanRow, make_workflow
from aether_data.workflows.base import augment_box, image_stats

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
    """Every sample's plan row, materialised (tests, small tools); builds stream :func:`iter_plan`.

    Global indices are contiguous per workflow (canonical order param, style, auto); shards hold
    `samples_per_shard` consecutive samples of one workflow. Sources are visited in a seeded
    permutation, cycling when there are fewer sources than samples.
    """
    return list(iter_plan(spec, sources))


@dataclass(frozen=True)
class ShardSpan:
    """One shard of the plan by position only: its rows are computed where they are needed.

    This is what the driver holds and ships to workers (a few numbers per shard), so neither
    memory nor task payloads grow with the number of samples.
    """

    name: str
    workflow: str
    start: int  # global index of the shard's first sample
    count: int

    def to_item(self) -> dict[str, Any]:
        return {"name": self.name, "workflow": self.workflow, "start": self.start, "count": self.count}


def iter_shard_spans(spec: PipelineSpec) -> Iterator[ShardSpan]:
    """The plan's shards in order, without materialising any row."""
    index, per = 0, spec.samples_per_shard
    for workflow, count in workflow_counts(spec).items():
        for local in range(0, count, per):
            yield ShardSpan(
                shard_name(workflow, local // per), workflow, index + local, min(per, count - local)
            )
        index += count


def _source_at(sources: Any, i: int) -> str:
    value = sources[i]
    return value if isinstance(value, str) else value.as_py()  # list[str] or a pyarrow string array


class Planner:
    """Plan rows for any shard from (spec, sources) alone: the same rows the driver plans.

    `sources` is a list of URIs or a pyarrow string array (shared through Ray's object store).
    """

    def __init__(self, spec: PipelineSpec, sources: Any) -> None:
        self.spec = spec
        self.sources = sources
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(2**32,)))
        self.perm = rng.permutation(len(sources))

    def rows(self, span: ShardSpan) -> list[PlanRow]:
        seed, n = self.spec.seed, len(self.perm)
        out = []
        for index in range(span.start, span.start + span.count):
            src = int(self.perm[index % n])
            out.append(
                PlanRow(
                    index=index,
                    key=f"{span.workflow}_{index:09d}",
                    workflow=span.workflow,
                    shard=span.name,
                    seed=sample_seed(seed, index),
                    source_index=src,
                    source_uri=_source_at(self.sources, src),
                )
            )
        return out


def iter_plan(spec: PipelineSpec, sources: Sequence[str]) -> Iterator[PlanRow]:
    """Every plan row in index order, one shard at a time (memory does not grow with the plan)."""
    planner = Planner(spec, sources)
    for span in iter_shard_spans(spec):
        yield from planner.rows(span)


PLAN_ROW_GROUP = 1 << 20
"""Rows per plan.parquet row group (part of the file's byte layout: changing it changes the bytes)."""
_PLAN_BATCH = 1 << 16


def _plan_batch(rows: Sequence[PlanRow]) -> pa.RecordBatch:
    cols = {name: [getattr(r, name) for r in rows] for name in PLAN_SCHEMA.names}
    return pa.RecordBatch.from_pydict(cols, schema=PLAN_SCHEMA)


def _write_plan_file(dest: Path, rows: Iterator[PlanRow], total: int) -> str:
    """Stream plan rows into a parquet file; returns its sha256.

    Bytes equal a single ``pq.write_table(whole_plan, row_group_size=min(total, PLAN_ROW_GROUP))``:
    each row group is assembled from small batches and combined before it is written, so memory
    is bounded by one row group, not by the plan.
    """
    group = max(1, min(total, PLAN_ROW_GROUP))
    with pq.ParquetWriter(dest, PLAN_SCHEMA, compression="zstd") as writer:
        batches: list[pa.RecordBatch] = []
        pending = 0
        buf: list[PlanRow] = []
        for row in rows:
            buf.append(row)
            if len(buf) == _PLAN_BATCH or pending + len(buf) == group:
                batches.append(_plan_batch(buf))
                pending += len(buf)
                buf = []
                if pending == group:
                    writer.write_table(pa.Table.from_batches(batches).combine_chunks(), row_group_size=group)
                    batches, pending = [], 0
        if buf:
            batches.append(_plan_batch(buf))
        if batches:
            writer.write_table(pa.Table.from_batches(batches).combine_chunks(), row_group_size=group)
    return file_sha256(dest)


def write_plan(out_dir: storage.AnyPath, spec: PipelineSpec, sources: Sequence[str]) -> int:
    """Write plan.parquet (streamed); refuse to resume into a directory planned differently.

    Returns the number of planned samples. The file is spooled beside its destination (locally)
    or in the temp dir (URIs), then renamed or uploaded, so a reader never sees half a plan.
    """
    path = out_dir / "plan.parquet"
    local = isinstance(path, Path)
    spool_dir = path.parent if local else Path(tempfile.gettempdir())
    tmp = spool_dir / f"{storage.TMP_PREFIX}plan.parquet.{os.getpid()}-{secrets.token_hex(4)}"
    try:
        sha = _write_plan_file(tmp, iter_plan(spec, sources), spec.num_samples)
        if path.exists():
            if file_sha256(path) == sha:
                return spec.num_samples
            raise BuildError(
                f"{out_dir} already holds a different plan (other spec, seed or sources); "
                "choose a new --out directory or remove the old one"
            )
        if local:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            storage.upload_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return spec.num_samples


@dataclass
class ShardTask:
    """One shard with its rows: what a worker builds (rows computed from a ShardSpan)."""

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
    """Decoded sources, a few at a time: neighbouring samples often share a photo.

    Sources are read as bytes (local path, http(s) URL with retries, or object-store URI), hashed
    from those bytes and decoded once, as 8-bit pixels at the smallest JPEG draft scale whose short
    edge still covers `min_short` (crop and resize are cheaper in 8 bits). Failures are cached too,
    so a dead URL costs one round of retries per shard, not one per sample.
    """

    def __init__(
        self, min_short: int, max_pixels: int, capacity: int = 8, fetch: FetchSettings | None = None
    ) -> None:
        self.min_short = min_short
        self.max_pixels = max_pixels
        self.capacity = capacity
        self.fetch = fetch
        self._items: OrderedDict[str, LoadedSource | SourceError] = OrderedDict()

    def _load(self, uri: str) -> LoadedSource:
        data = read_source_bytes(uri, self.fetch)
        pixels = load_image_bytes(
            data, min_short=self.min_short, max_pixels=self.max_pixels, dtype=np.uint8, name=uri
        )
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        remote = "://" in uri
        sha = hashlib.sha256(data).hexdigest()
        return LoadedSource(pixels, sha, width, height, None if remote else bundled_license(uri))

    def get(self, uri: str) -> LoadedSource:
        if uri in self._items:
            self._items.move_to_end(uri)
            item = self._items[uri]
        else:
            try:
                item = self._load(uri)
            except SourceError as exc:
                item = exc
            self._items[uri] = item
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        if isinstance(item, SourceError):
            raise SourceError(item.reason, item.path, item.detail)
        return item


def decode_image_u8(data: bytes) -> np.ndarray:
    """Decode stored image bytes exactly as a reader of the shard will (Pillow), HxWx3 uint8."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


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


STAGES = ("decode", "synthesis", "scoring", "annotation", "encode", "record", "write")
"""Stages timed per shard (seconds summed over its samples; `aether bench`, run.json)."""


class StageClock:
    """Per-stage seconds of one shard: one clock read per mark (≤ 1 µs), negligible next to a sample.

    Wall time by default (run.json); `aether bench` passes ``time.thread_time`` to count CPU
    seconds, which a machine shared with other jobs does not inflate.
    """

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._t = timer()

    def start(self) -> None:
        self._t = self.timer()

    def mark(self, stage: str) -> None:
        now = self.timer()
        self.seconds[stage] += now - self._t
        self._t = now

    def reset(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.start()


def _node_label() -> str:
    """The Ray node a shard ran on (hostname outside Ray): run.json shows how work spread."""
    ray = sys.modules.get("ray")  # never import Ray just for this (in-process builds, bench)
    try:
        if ray is not None and ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - informational only
        pass
    return socket.gethostname()


@dataclass
class PendingSample:
    """A rendered sample waiting for its annotation (images are already encoded bytes).

    The pair may still lack fields a shard-level step fills in (the auto workflow's batched
    parameter fit); its annotation is submitted once the pair is complete.
    """

    row: PlanRow
    source: LoadedSource
    pair: Pair
    size: tuple[int, int]
    input_bytes: bytes
    target_bytes: bytes
    scores: dict[str, float]
    image_stats: dict[str, float]
    annotation: Future[Annotation] | None = None


class ShardContext:
    """Everything a shard task needs, built once per worker (actor)."""

    def __init__(self, spec: PipelineSpec, out_dir: storage.AnyPath | str) -> None:
        self.spec = spec
        self.out_dir = storage.as_path(out_dir)
        self.workflows = {w: make_workflow(w, spec) for w in spec.workflows()}
        self.annotator = make_annotator(
            spec.annotator, n_variants=max(spec.param.instruction_variants, spec.style.instruction_variants)
        )
        # decode (JPEG draft) just large enough that the smallest crop still covers the output size
        lo = spec.sources.crop_scale[0]
        min_short = int(np.ceil(spec.image.size / np.sqrt(lo)))
        self.sources = SourceCache(min_short, spec.sources.max_pixels, fetch=FetchSettings())
        self.faults = FaultPlan(os.environ.get("AETHER_FAULTS"), self.out_dir)
        self.clock = StageClock()
        # Compiled once to Python code: ~40× faster than the jsonschema reference validator, which
        # `aether audit` still uses, so every record is checked by both implementations.
        self.record_validator = fastjsonschema.compile(load_schema("sample"))
        warm_up_kernels()  # compiled LUT / pixel kernels loaded before the first sample, not during it
        keep_freed_memory()  # reuse freed image buffers instead of page-faulting fresh ones

    def encode(self, img: np.ndarray) -> bytes:
        if self.spec.image.format == "png":
            return encode_png(img)
        return encode_jpeg(img, quality=self.spec.image.quality)

    def check_record(self, record: dict[str, Any]) -> None:
        """Refuse to write a record the schema would reject (a bug, never the input's fault)."""
        try:
            self.record_validator(record)
        except fastjsonschema.JsonSchemaValueException as error:
            where = ".".join(str(p) for p in error.path[1:]) or "<record>"
            raise RecordSchemaError(f"{record.get('key')}: {where}: {error.message}") from None

    def render_sample(self, row: PlanRow) -> PendingSample:
        """Phase 1 of a sample: source → pair → encoded images → scores.

        Raises SourceError for bad inputs. A workflow with a shard-level step (``draft`` +
        ``complete``) returns a draft pair here; `complete_pending` finishes the shard's drafts in
        one batch before the annotations are submitted.
        """
        spec, clock = self.spec, self.clock
        clock.start()
        self.faults.before_sample(row.key)
        rng = rng_for(row.seed)
        src = self.sources.get(row.source_uri)
        # crop a view, resize in 8 bits, flip the small result: no full-resolution copy
        y0, x0, ch, cw, flip = augment_box(src.pixels.shape, rng, spec)
        img = resize_short_edge(src.pixels[y0 : y0 + ch, x0 : x0 + cw], spec.image.size)
        if flip:
            img = cv2.flip(img, 1)  # same pixels as img[:, ::-1], ~40× faster than copying that view
        clock.mark("decode")
        base = self.encode(img)
        clock.mark("encode")
        img_u8 = decode_image_u8(base)  # what a reader sees: render from it, not from the float
        workflow = self.workflows[row.workflow]
        image = img_u8 if getattr(workflow, "takes_uint8", False) else as_float01(img_u8)
        clock.mark("decode")
        draft = getattr(workflow, "draft", None)
        pair: Pair = draft(row, image, rng) if draft is not None else workflow.synthesize(row, image, rng)
        clock.mark("synthesis")
        input_bytes = base if pair.input is image else self.encode(pair.input)
        target_bytes = base if pair.target is image else self.encode(pair.target)
        clock.mark("encode")
        # the 8-bit copy where it is the same picture: the scorers shrink it in 8 bits (cheaper)
        pair_input = img_u8 if pair.input is image else pair.input
        pair_target = img_u8 if pair.target is image else pair.target
        scores = {
            "aesthetic_input": heuristic_score(pair_input),
            "aesthetic_target": heuristic_score(pair_target),
        }
        stats = image_stats(pair_input)
        clock.mark("scoring")
        return PendingSample(
            row=row,
            source=src,
            pair=pair,
            size=(int(img.shape[1]), int(img.shape[0])),
            input_bytes=input_bytes,
            target_bytes=target_bytes,
            scores=scores,
            image_stats=stats,
        )

    def complete_pending(
        self, pending: list[PendingSample], skip: Callable[[PlanRow, Exception], None]
    ) -> list[PendingSample]:
        """Run each workflow's shard-level step over its drafts (one batch per workflow).

        If a batch fails, its samples are completed one by one, so one bad sample costs only
        itself (skipped with its reason). Returns the samples that are complete.
        """
        self.clock.start()
        done: list[PendingSample] = []
        by_workflow: dict[str, list[PendingSample]] = {}
        for p in pending:
            if hasattr(self.workflows[p.row.workflow], "complete"):
                by_workflow.setdefault(p.row.workflow, []).append(p)
            else:
                done.append(p)
        for name, group in by_workflow.items():
            complete = self.workflows[name].complete
            try:
                for p, pair in zip(group, complete([p.pair for p in group]), strict=True):
                    p.pair = pair
                    done.append(p)
            except Exception:  # isolate the failing sample(s)
                for p in group:
                    try:
                        p.pair = complete([p.pair])[0]
                        done.append(p)
                    except Exception as exc:
                        skip(p.row, exc)
        self.clock.mark("synthesis")
        order = {id(p): i for i, p in enumerate(pending)}
        return sorted(done, key=lambda p: order[id(p)])

    def submit_annotation(self, p: PendingSample) -> None:
        """Send the (complete) sample to the annotator; the future is collected in `finish_sample`."""
        self.clock.start()
        request = AnnotationRequest(
            workflow=p.row.workflow,
            params=p.pair.params or {},
            masks=p.pair.masks,
            seed=p.row.seed,
            preset=p.pair.preset,
            image_stats=p.image_stats,
        )
        p.annotation = self.annotator.submit(request, p.input_bytes, key=p.row.key, target=p.target_bytes)
        self.clock.mark("annotation")

    def finish_sample(self, p: PendingSample) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Phase 2: wait for the annotation, assemble and check the record, return tar members."""
        clock = self.clock
        clock.start()
        assert p.annotation is not None, "submit_annotation() must run before finish_sample()"
        ann = p.annotation.result()  # annotators never raise: failures fall back to the template
        clock.mark("annotation")
        row, ext, pair = p.row, self.spec.image.format, p.pair
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
                "sha256": p.source.sha256,
                "width": p.source.width,
                "height": p.source.height,
                "license": p.source.license,
            },
            "image": {"width": p.size[0], "height": p.size[1], "format": ext},
            "scores": p.scores,
            "annotator": ann.annotator,
            "seed": row.seed,
            "generator": {"name": f"aether-{row.workflow}", "version": __version__},
        }
        self.check_record(record)
        members = {f"input.{ext}": p.input_bytes, f"target.{ext}": p.target_bytes, "json": json_bytes(record)}
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
            "score_input": p.scores["aesthetic_input"],
            "score_target": p.scores["aesthetic_target"],
        }
        clock.mark("record")
        return members, fields

    def build_shard(self, task: ShardTask) -> dict[str, Any]:
        """Build one shard completely and commit it atomically; bad samples are skipped, counted."""
        tar_path = self.out_dir / "shards" / f"{task.name}.tar"
        index_path = self.out_dir / "index" / f"{task.name}.parquet"
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        errors: list[str] = []
        clock = self.clock
        clock.reset()
        t_start, cpu_start = time.time(), time.thread_time()

        def skip(row: PlanRow, exc: Exception) -> None:
            if isinstance(exc, SourceError):
                skipped.append({"source": row.source_uri, "reason": exc.reason, "key": row.key})
                return
            errors.append(f"{row.key} ({row.source_uri}):\n{traceback.format_exc()}")
            skipped.append(
                {"source": row.source_uri, "reason": f"error:{type(exc).__name__}", "key": row.key}
            )

        pending: list[PendingSample] = []
        for i, row in enumerate(task.rows):
            if i == len(task.rows) // 2:
                self.faults.before_shard(task.name)
            try:
                pending.append(self.render_sample(row))
            except Exception as exc:  # one bad sample must never cost the shard
                skip(row, exc)
        pending = self.complete_pending(pending, skip)
        for p in pending:
            self.submit_annotation(p)
        self.annotator.flush()
        with ShardWriter(tar_path) as writer:
            for p in pending:
                row = p.row
                try:
                    members, fields = self.finish_sample(p)
                except Exception as exc:
                    skip(row, exc)
                    continue
                clock.start()
                info = writer.add(row.key, members)
                rows.append({"key": row.key, "members": info, **fields})
                clock.mark("write")
            clock.start()
            shard = writer.commit()
        write_index(index_path, shard, rows, skipped)
        clock.mark("write")
        if errors:
            atomic_write_bytes(self.out_dir / "logs" / f"{task.name}.errors.txt", "\n".join(errors).encode())
        return {
            "name": task.name,
            "ok": True,
            "samples": shard.samples,
            "skipped": len(skipped),
            "reasons": dict(Counter(s["reason"] for s in skipped)),
            "error": None,
            "stages": json.dumps({k: round(v, 6) for k, v in clock.seconds.items()}),
            "node": _node_label(),
            "t_start": t_start,  # wall clock: the busy window of a run (bench's scaling measure)
            "t_end": time.time(),
            "pid": os.getpid(),
            "cpu_s": time.thread_time() - cpu_start,  # CPU seconds of this shard (not inflated by load)
            "annotator_stats": json.dumps(self.annotator.stats(), sort_keys=True, default=str),
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


MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (glibc only).

    Why: a sample allocates many full-resolution image buffers (a 512×768 float32 RGB image is
    4.7 MB). glibc hands out blocks that large with a fresh mmap by default and returns them on
    free, so every buffer costs page faults on first touch: a compiled pass that takes 0.6 ms on a
    reused buffer took 3.3 ms on a fresh one. With the mmap threshold at 32 MiB and a 256 MiB trim
    threshold, freed buffers are reused; peak memory is unchanged (freed blocks are what later
    buffers take). Process-wide, so it is set where a build's samples run (workers, the bench), and
    a no-op where glibc's `mallopt` is not available. Returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    return bool(mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)
    )


class ShardBuilder:
    """Ray Data actor: loads workflow resources once, then builds shard after shard."""

    def __init__(self, spec_json: str, out_dir: str, sources: list[Any] | None = None) -> None:
        limit_threads(1)
        spec = PipelineSpec.model_validate_json(spec_json)
        # A worker that cannot set up (missing model weights, bad preset library) reports that on
        # every shard instead of dying: an actor death in __init__ would abort the whole Ray job.
        self.setup_error: str | None = None
        try:
            self.ctx = ShardContext(spec, out_dir)
        except Exception as exc:
            self.setup_error = f"worker setup failed: {type(exc).__name__}: {exc}"
        self.planner: Planner | None = None
        if sources is not None:  # [ObjectRef of the source list]: rows are computed here, per shard
            import ray

            self.planner = Planner(spec, ray.get(sources[0]))

    def task_for(self, item: dict[str, Any]) -> ShardTask:
        """A ShardSpan item (rows computed from spec + sources) or a legacy item with its rows."""
        if "rows" in item:
            return ShardTask.from_item(item)
        if self.planner is None:
            raise ValueError("ShardBuilder got a shard span but no source list")
        span = ShardSpan(item["name"], item["workflow"], int(item["start"]), int(item["count"]))
        return ShardTask(span.name, span.workflow, self.planner.rows(span))

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        try:
            if self.setup_error is not None:
                raise BuildError(self.setup_error)
            return self.ctx.build_shard(self.task_for(item))
        except Exception as exc:  # a whole-shard failure (disk full, read-only output) is reported
            return {
                "name": item["name"],
                "ok": False,
                "samples": 0,
                "skipped": 0,
                "reasons": {},
                "error": str(exc) if isinstance(exc, BuildError) else f"{type(exc).__name__}: {exc}",
                "stages": "{}",
                "node": _node_label(),
            }


# --------------------------------------------------------------------------------------------------
# the whole build


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


def _clean_temp_files(out_dir: storage.AnyPath) -> int:
    n = 0
    for sub in ("shards", "index"):
        for p in (out_dir / sub).glob(".tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _execute(
    spec: PipelineSpec,
    out_dir: storage.AnyPath,
    spans: Sequence[ShardSpan],
    workers: int,
    sources: Sequence[str],
) -> Iterator[dict[str, Any]]:
    """Run shard tasks on Ray Data, yielding each shard's summary as it completes.

    Items are shard spans (name, workflow, first index, count); each worker computes its rows
    from the spec and the source list, which is put once into Ray's object store (shared memory,
    not copied into every task).
    """
    import ray
    import ray.data

    for name in ("ray.data", "ray.data._internal"):  # our progress replaces Ray Data's chatter
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    items = [t.to_item() for t in spans]
    sources_ref = ray.put(pa.array(list(sources), type=pa.large_string()))
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(
        ShardBuilder,
        fn_constructor_kwargs={
            "spec_json": spec.model_dump_json(),
            "out_dir": str(out_dir),
            "sources": [sources_ref],  # in a list: resolved by the actor, not by Ray Data
        },
        # two shards in flight per actor: the next shard is already queued when one finishes, so
        # an actor never idles while the driver notices and dispatches (with 1 in flight the 2-worker
        # busy-window speed-up on 2 cores was 1.34×, with 2 it is 1.6–1.7×); more would only let the
        # first actor to start hoard shards and make the tail wait on it
        compute=ray.data.ActorPoolStrategy(size=min(workers, len(items)), max_tasks_in_flight_per_actor=2),
        num_cpus=1,
        num_gpus=spec.annotator.num_gpus or None,  # a qwen-vl annotator on the GPU
    )  # Ray Data restarts dead actors and retries their tasks by default (max_restarts=-1)
    yield from ds.iter_rows()


INTERRUPTED = threading.Event()
"""Set by `catch_interrupts`' SIGINT handler. A KeyboardInterrupt raised while Ray Data's iterator
is in its own cleanup can be swallowed there (seen once in CI: a build interrupted after two shards
ran to completion); the build loop checks this flag after every shard, so Ctrl-C always stops it."""


def _interrupt_handler(signum: int, frame: Any) -> None:
    INTERRUPTED.set()
    signal.default_int_handler(signum, frame)  # still raises KeyboardInterrupt


_installed_handler = False


def catch_interrupts() -> None:
    """Install the SIGINT handler behind `INTERRUPTED` (the CLI does; main thread only)."""
    global _installed_handler
    INTERRUPTED.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _interrupt_handler)
        _installed_handler = True


def _keep_interrupt_handler() -> None:
    """Put our handler back if something (Ray's start-up) replaced it; never install it uninvited."""
    if _installed_handler and signal.getsignal(signal.SIGINT) is not _interrupt_handler:
        signal.signal(signal.SIGINT, _interrupt_handler)


def run_build(
    spec: PipelineSpec, out_dir: str | Path | storage.RemotePath, progress: Any | None = None
) -> BuildSummary:
    """Plan, build the shards that are not done, write the manifest. Safe to re-run (resume).

    `out_dir` may be a URI (``s3://bucket/run``; see the storage module for the commit rule).
    The driver streams the plan to plan.parquet and holds only shard spans, never per-sample rows.
    """
    start = time.perf_counter()
    out = storage.as_path(out_dir)
    if isinstance(out, Path):
        for sub in ("shards", "index"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK):
            raise BuildError(f"output directory {out} is not writable")
    if "auto" in spec.workflows():  # missing weights or DB: fail before any work, not in every actor
        from aether_data.workflows.auto import preflight

        try:
            preflight(spec)
        except (OSError, ValueError) as exc:  # ExpertDBError is a ValueError
            raise BuildError(str(exc)) from None
    sources = resolve_sources(spec)
    planned = write_plan(out, spec, sources)
    _clean_temp_files(out)
    names: list[str] = []
    todo: list[ShardSpan] = []
    for span in iter_shard_spans(spec):
        names.append(span.name)
        if not shard_is_done(out / "shards" / f"{span.name}.tar", out / "index" / f"{span.name}.parquet"):
            todo.append(span)
    summary = BuildSummary(
        out_dir=out,
        planned_samples=planned,
        shards_total=len(names),
        shards_built=0,
        shards_reused=len(names) - len(todo),
        samples_written=0,
        skipped=0,
        reasons={},
    )
    reasons: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    window = [math.inf, -math.inf]
    annotator_stats: dict[str, dict[str, Any]] = {}
    if progress is not None:
        progress.start(total_shards=len(names), reused=summary.shards_reused, todo=len(todo))
    if todo:
        init_ray(spec.runtime.ray_address, spec.runtime.workers)
        _keep_interrupt_handler()
        for res in _execute(spec, out, todo, spec.runtime.workers, sources):
            if INTERRUPTED.is_set():  # a Ctrl-C that a library swallowed still stops the build
                raise KeyboardInterrupt
            if res["ok"]:
                summary.shards_built += 1
                summary.samples_written += int(res["samples"])
                summary.skipped += int(res["skipped"])
                reasons.update({k: int(v) for k, v in (res["reasons"] or {}).items() if v is not None})
                stages.update(json.loads(res.get("stages") or "{}"))
                nodes[str(res.get("node"))] += 1
                window = [min(window[0], res["t_start"]), max(window[1], res["t_end"])]
                summary.cpu_seconds += float(res.get("cpu_s") or 0.0)
                # cumulative per worker process: the latest report of each worker is its total
                annotator_stats[str(res.get("pid"))] = json.loads(res.get("annotator_stats") or "{}")
            else:
                summary.failed.append((res["name"], res["error"]))
            if progress is not None:
                progress.update(res)
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
    summary.reasons = dict(reasons)
    summary.stage_seconds = {k: round(stages[k], 4) for k in STAGES if k in stages}
    summary.nodes = dict(sorted(nodes.items()))
    summary.busy_seconds = max(0.0, window[1] - window[0])
    summary.seconds = time.perf_counter() - start
    summary.annotator_stats = _sum_stats(annotator_stats.values())
    if progress is not None:
        progress.stop()
    write_run_log(out, spec, summary)
    if summary.failed:
        return summary
    manifest = build_manifest(
        out,
        spec=content_spec(spec),
        seed=spec.seed,
        code_version=__version__,
        shards=names,
        extra={
            "annotator": annotator_manifest(spec.annotator),
            "planned_samples": planned,
        },
    )
    write_manifest(out, manifest)
    from aether_data.manifest import collect_skipped

    write_skipped_parquet(out, collect_skipped(out, names))
    summary.manifest = manifest
    return summary


def _sum_stats(per_worker: Any) -> dict[str, Any]:
    """Add up numeric annotator counters over workers (non-numeric fields are dropped)."""
    total: Counter[str] = Counter()
    for stats in per_worker:
        for k, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] += v
    return dict(sorted(total.items()))


def content_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as stored in the manifest: everything that determines content.

    `runtime` (workers, cluster address) changes where a build runs, never what it writes, so it
    is left out; otherwise `--workers 1` and `--workers 8` would give different manifests. It is
    recorded in `run.json` with the timings instead.
    """
    return spec.model_dump(
        mode="json",
        exclude={
            "runtime": True,
            "annotator": {"concurrency", "timeout_s", "retry_backoff_s", "cache_dir", "num_gpus"},
        },
    )


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
