"""The plan: which sample comes from which source with which seed, fixed before any work starts.

Global indices are contiguous per workflow (canonical order param, style, auto); shards hold
`samples_per_shard` consecutive samples of one workflow. Sources are visited in a seeded
permutation, cycling when there are fewer sources than samples. The driver holds only shard spans
(a few numbers each); every worker recomputes its rows from (spec, sources), so neither memory nor
task payloads grow with the number of samples.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aether_data.build.errors import BuildError
from aether_data.config import PipelineSpec
from aether_data.io import storage
from aether_data.io.atomic import AtomicFile
from aether_data.io.sources import bundled_photos, list_sources
from aether_data.sampling import sample_seed
from aether_data.workflows import PlanRow

__all__ = [
    "PLAN_SCHEMA",
    "Planner",
    "ShardSpan",
    "iter_plan",
    "iter_shard_spans",
    "resolve_sources",
    "shard_name",
    "workflow_counts",
    "write_plan",
]


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


def resolve_sources(spec: PipelineSpec) -> list[str]:
    """The ordered list of source URIs (bundled photographs when no path is given)."""
    if spec.sources.path is None:
        return [str(p) for p in bundled_photos()]
    rejected: list[tuple[str, str]] = []
    try:
        found = list_sources(spec.sources.path, rejected)
    except (OSError, ValueError) as exc:
        raise BuildError(f"cannot list sources at {spec.sources.path}: {exc}") from None
    for name, reason in rejected[:5]:  # not in the plan: a file name that is not UTF-8, a link loop
        print(f"warning: source {name} left out ({reason})", file=sys.stderr)
    if len(rejected) > 5:
        print(f"warning: {len(rejected) - 5} more source entries left out", file=sys.stderr)
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
    """``param-000003``: the name of a shard's tar and index."""
    return f"{workflow}-{shard:06d}"


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
        """The span as a Ray Data row."""
        return {"name": self.name, "workflow": self.workflow, "start": self.start, "count": self.count}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ShardSpan:
        return cls(item["name"], item["workflow"], int(item["start"]), int(item["count"]))


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

    def alternate(self, row: PlanRow, attempt: int) -> PlanRow:
        """Row ``row`` built from another source: the one ``attempt`` places further along the
        permutation (the same key, index and seed; a function of the plan alone)."""
        src = int(self.perm[(row.index + attempt) % len(self.perm)])
        return replace(row, source_index=src, source_uri=_source_at(self.sources, src))


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


def _write_plan_file(dest: Path, rows: Iterator[PlanRow], total: int, schema: pa.Schema = PLAN_SCHEMA) -> str:
    """Stream plan rows into a parquet file; returns its sha256.

    Bytes equal a single ``pq.write_table(whole_plan, row_group_size=min(total, PLAN_ROW_GROUP))``:
    each row group is assembled from small batches and combined before it is written, so memory
    is bounded by one row group, not by the plan.
    """
    group = max(1, min(total, PLAN_ROW_GROUP))
    with pq.ParquetWriter(dest, schema, compression="zstd") as writer:
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
    return storage.sha256(dest)


def write_plan(
    out_dir: storage.AnyPath,
    spec: PipelineSpec,
    sources: Sequence[str],
    metadata: dict[bytes, bytes] | None = None,
    replace: bool = False,
) -> int:
    """Write plan.parquet (streamed); refuse to resume into a directory planned differently.

    Returns the number of planned samples. The file is written through ``io.atomic`` (a temp file
    beside it, or a local spool for URIs), so a reader never sees half a plan. Locally it is
    created with compare-and-create semantics (``os.link`` fails if a plan appeared meanwhile, which
    is then compared); ``replace`` (extend, an unreadable old plan) replaces the old one.
    ``metadata`` is stored in the parquet schema (the build's fingerprint document).
    """
    path = out_dir / "plan.parquet"
    out = AtomicFile(path)
    try:
        schema = PLAN_SCHEMA.with_metadata(metadata) if metadata else PLAN_SCHEMA
        sha = _write_plan_file(out.path, iter_plan(spec, sources), spec.num_samples, schema)
        if not replace and isinstance(path, Path):
            with open(out.path, "rb+") as f:
                os.fsync(f.fileno())
            try:
                os.link(out.path, path)  # compare-and-create: fails if a plan exists
            except FileExistsError:
                pass
            else:
                return spec.num_samples
        if not replace and path.exists():
            if storage.sha256(path) == sha:
                return spec.num_samples
            raise BuildError(
                f"{out_dir} already holds a different plan (other spec, seed or sources); "
                "re-run with --overwrite, or choose a new --out directory"
            )
        out.commit()
    finally:
        out.abort()
    return spec.num_samples
