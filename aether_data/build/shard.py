"""Build one shard: render its samples, annotate them, write the tar, then its index.

A bad sample is skipped with its reason and never costs the shard; the tar is committed before the
index, and a shard counts as done only once its index records the tar's size and sha256.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aether_data.annotate import AnnotationRequest, make_annotator
from aether_data.build.clock import StageClock
from aether_data.build.faults import FaultPlan
from aether_data.build.record import RecordMaker
from aether_data.build.sample import PendingSample, SampleRenderer
from aether_data.build.tuning import keep_freed_memory
from aether_data.color_difference import warm_up as warm_up_delta_e
from aether_data.config import PipelineSpec
from aether_data.dataset.index import write_index
from aether_data.dataset.tar import TarWriter
from aether_data.develop import warm_up_kernels
from aether_data.io import storage
from aether_data.io.atomic import atomic_write_bytes
from aether_data.io.errors import SourceError
from aether_data.workflows import PlanRow, make_workflow

__all__ = ["ShardContext", "ShardTask", "node_label"]


def node_label() -> str:
    """The Ray node a shard ran on (hostname outside Ray): run.json shows how work spread."""
    ray = sys.modules.get("ray")  # never import Ray just for this (in-process builds, bench)
    try:
        if ray is not None and ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - informational only
        pass
    return socket.gethostname()


@dataclass
class ShardTask:
    """One shard with its rows: what a worker builds (rows computed from a ShardSpan)."""

    name: str
    workflow: str
    rows: list[PlanRow]


class ShardContext:
    """Everything a shard task needs, built once per worker (actor)."""

    def __init__(
        self,
        spec: PipelineSpec,
        out_dir: storage.AnyPath | str,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``timer`` times the stages: wall time for run.json; the bench passes ``time.thread_time``."""
        self.spec = spec
        self.out_dir = storage.as_path(out_dir)
        self.workflows = {w: make_workflow(w, spec) for w in spec.workflows()}
        self.annotator = make_annotator(
            spec.annotator, n_variants=max(spec.param.instruction_variants, spec.style.instruction_variants)
        )
        self.faults = FaultPlan(os.environ.get("AETHER_FAULTS"), self.out_dir)
        self.clock = StageClock(timer)
        self.renderer = SampleRenderer(spec, self.workflows, self.clock, self.faults)
        self.records = RecordMaker(spec)
        self.fingerprint: tuple[str, dict[str, Any]] | None = None  # set by the driver's executor
        warm_up_kernels()  # compiled LUT / pixel kernels loaded before the first sample, not during it
        warm_up_delta_e()  # and the gates' compiled CIEDE2000
        keep_freed_memory()  # reuse freed image buffers instead of page-faulting fresh ones

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
            regions=p.pair.extra.get("regions"),
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
        members, fields = self.records.make(p, ann)
        clock.mark("record")
        return members, fields

    def build_shard(self, task: ShardTask, on_sample: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Build one shard completely and commit it atomically; bad samples are skipped, counted.

        ``on_sample(n)`` (progress only; it must not touch the output) hears after each sample is
        rendered or skipped how many of the shard's samples are done so far.

        Kept whole: the order render → complete → annotate → write tar → commit index is the
        shard's crash-safety argument, easier to check in one place than across helpers."""
        tar_path = self.out_dir / "shards" / f"{task.name}.tar"
        index_path = self.out_dir / "index" / f"{task.name}.parquet"
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        errors: list[str] = []
        clock = self.clock
        clock.reset()
        self.renderer.counts = dict.fromkeys(self.renderer.counts, 0)  # drafts, redraws: this shard's
        self.renderer.replaced = []
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
                pending.append(self.renderer.render(row))
            except Exception as exc:  # one bad sample must never cost the shard
                skip(row, exc)
            if on_sample is not None:
                on_sample(i + 1)
        pending = self.renderer.complete(pending, skip)
        for p in pending:
            self.submit_annotation(p)
        self.annotator.flush()
        with TarWriter(tar_path) as writer:
            for p in pending:
                row = p.row
                try:
                    members, fields = self.finish_sample(p)
                except Exception as exc:
                    skip(row, exc)
                    continue
                clock.start()
                info = writer.add(row.key, members)
                self.faults.mid_tar(task.name, writer.tmp_path, writer.bytes_written)
                rows.append({"key": row.key, "members": info, **fields})
                clock.mark("write")
            clock.start()
            shard = writer.commit()
        fp, fp_doc = self.fingerprint or (None, None)
        write_index(
            index_path,
            shard,
            rows,
            skipped,
            fingerprint=fp,
            fingerprint_doc=fp_doc,
            replaced=self.renderer.replaced,
        )
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
            "node": node_label(),
            "t_start": t_start,  # wall clock: the busy window of a run (bench's scaling measure)
            "t_end": time.time(),
            "pid": os.getpid(),
            "cpu_s": time.thread_time() - cpu_start,  # CPU seconds of this shard (not inflated by load)
            "annotator_stats": json.dumps(self.annotator.stats(), sort_keys=True, default=str),
            "quality": json.dumps(self.renderer.counts, sort_keys=True),  # drafts, redraws, rejections
        }
