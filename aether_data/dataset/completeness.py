"""Audit's completeness pass: the dataset holds every planned sample, and one build wrote it all.

Why: per-shard checks prove that what is listed is intact, not that nothing is missing. Here the
plan (plan.parquet), the skipped records (index metadata and skipped.parquet), the manifest's
counts, seed and spec, and the fingerprint every index records are held against each other: every
planned key is in a tar or skipped with a reason, no tar holds an unplanned key, and every shard
was written by the same build (equal fingerprints, matching the manifest's).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aether_data.dataset.index import normalise_skipped, parquet_source
from aether_data.io import storage
from aether_data.io.canonical import json_bytes

__all__ = ["check_completeness"]

_PLAN_DOC_KEY = b"aether.fingerprint_doc"  # written by build.resume (the build layer sits above)


def _examples(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (" …" if len(keys) > 3 else "")


def _read_plan(path: storage.AnyPath, problem: Callable[[str], None]) -> tuple[list[str], Any] | None:
    src, fs = parquet_source(path)
    try:
        table = pq.read_table(src, columns=["key"], filesystem=fs)
        meta = pq.read_schema(src, filesystem=fs).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        problem(f"plan.parquet is unreadable (truncated?): {exc}")
        return None
    raw = meta.get(_PLAN_DOC_KEY)
    return table.column("key").to_pylist(), (json.loads(raw) if raw else None)


def _spec_without_n(spec: Any) -> Any:
    return {k: v for k, v in spec.items() if k != "num_samples"} if isinstance(spec, dict) else spec


def _check_plan(
    out_dir: storage.AnyPath,
    manifest: Mapping[str, Any],
    found: Mapping[str, str],
    skipped_keys: set[str],
    problem: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    path = out_dir / "plan.parquet"
    if not path.is_file():
        if "planned_samples" in manifest:  # written by `aether build`, which writes a plan
            warn("plan.parquet is missing: completeness is checked against planned_samples only")
        return
    read = _read_plan(path, problem)
    if read is None:
        return
    keys, doc = read
    planned = manifest.get("planned_samples")
    if isinstance(planned, int) and planned != len(keys):
        problem(f"manifest planned_samples {planned} != {len(keys)} rows in plan.parquet")
    plan_set = set(keys)
    missing = [k for k in keys if k not in found and k not in skipped_keys]
    if missing:
        problem(f"{len(missing)} planned key(s) neither in a shard nor skipped, e.g. {_examples(missing)}")
    extra = sorted(k for k in found if k not in plan_set)
    if extra:
        problem(f"{len(extra)} key(s) in the shards are not in plan.parquet, e.g. {_examples(extra)}")
    if doc is not None:
        if doc.get("num_samples") != len(keys):
            problem(f"plan.parquet says num_samples {doc.get('num_samples')} but has {len(keys)} rows")
        if doc.get("spec") != _spec_without_n(manifest.get("spec")):
            problem("the manifest's spec differs from the spec plan.parquet was made with")


def _check_fingerprints(
    manifest: Mapping[str, Any], fps: Mapping[str, Mapping[str, Any]], problem: Callable[[str], None]
) -> None:
    recorded = manifest.get("fingerprints")
    want = recorded.get("spec") if isinstance(recorded, dict) else None
    values = {name: m.get("fingerprint") for name, m in fps.items()}
    if want is None and not any(values.values()):
        return  # a dataset written before fingerprints: nothing to hold the shards to
    without = sorted(n for n, v in values.items() if v is None)
    if without:
        problem(f"shard(s) without a fingerprint: {_examples(without)}")
    distinct = {v for v in values.values() if v is not None}
    if len(distinct) > 1:
        problem(f"shards were written by different builds: {len(distinct)} distinct fingerprints")
    if want is not None and distinct - {want}:
        odd = sorted(n for n, v in values.items() if v is not None and v != want)
        problem(f"fingerprint of shard(s) {_examples(odd)} != manifest fingerprints.spec")
    spec = _spec_without_n(manifest.get("spec"))
    inputs = {k: v for k, v in recorded.items() if k != "spec"} if isinstance(recorded, dict) else None
    for name, meta in sorted(fps.items()):
        doc = meta.get("fingerprint_doc")
        if not isinstance(doc, dict) or meta.get("fingerprint") is None:
            continue
        if hashlib.sha256(json_bytes(doc)).hexdigest() != meta["fingerprint"]:
            problem(f"shard {name}: its fingerprint is not the hash of its fingerprint document")
        elif doc.get("spec") != spec:
            problem(f"shard {name} was built with another spec than the manifest's (spec or seed edited?)")
        elif inputs is not None and doc.get("inputs") != inputs:
            problem(f"shard {name}: its input fingerprints differ from the manifest's")
        else:
            continue
        break  # one shard named is enough: the others say the same


def _check_skipped_file(
    out_dir: storage.AnyPath,
    index_skipped: list[dict[str, Any]],
    problem: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    path = out_dir / "skipped.parquet"
    if not path.is_file():
        warn("skipped.parquet is missing")
        return
    src, fs = parquet_source(path)
    try:
        rows = pq.read_table(src, filesystem=fs).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        problem(f"skipped.parquet is unreadable: {exc}")
        return

    def norm(rs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((r["source"], r["reason"], r["key"] or "") for r in normalise_skipped(rs))

    if norm(rows) != norm(index_skipped):
        problem(f"skipped.parquet ({len(rows)} rows) != the indexes' skipped records ({len(index_skipped)})")


def check_completeness(
    out_dir: storage.AnyPath,
    manifest: Mapping[str, Any],
    found: Mapping[str, str],
    index_skipped: list[dict[str, Any]],
    fps: Mapping[str, Mapping[str, Any]],
    problem: Callable[[str], None],
    warn: Callable[[str], None],
) -> None:
    """Hold plan, skipped records, manifest counts/seed/spec and fingerprints against each other.

    ``found``: key → shard of every sample read from the tars; ``fps``: shard → index metadata.
    """
    skipped_keys = {s["key"] for s in index_skipped if s.get("key")}
    planned = manifest.get("planned_samples")
    samples = manifest.get("samples")
    if isinstance(planned, int) and isinstance(samples, int) and planned != samples + len(index_skipped):
        problem(
            f"planned_samples {planned} != {samples} samples + {len(index_skipped)} skipped: "
            f"{planned - samples - len(index_skipped)} sample(s) unaccounted for"
        )
    spec = manifest.get("spec")
    if isinstance(spec, dict) and "seed" in spec and spec.get("seed") != manifest.get("seed"):
        problem(f"manifest seed {manifest.get('seed')} != spec.seed {spec.get('seed')}")
    _check_plan(out_dir, manifest, found, skipped_keys, problem, warn)
    _check_fingerprints(manifest, fps, problem)
    if "planned_samples" in manifest or (out_dir / "skipped.parquet").is_file():
        _check_skipped_file(out_dir, index_skipped, problem, warn)
