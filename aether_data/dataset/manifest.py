"""The dataset manifest: what was written (counts, shards and checksums, skips) and how (spec, seed).

Why: a manifest built from the indexes, not from the plan, describes the bytes on disk; it holds no
wall-clock time, so the same config and seed give a byte-identical ``manifest.json``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aether_data.dataset.index import (
    NULL_PROTOCOL,
    NULL_WORKFLOW,
    SKIPPED_SCHEMA,
    index_path,
    normalise_skipped,
    parquet_bytes,
    parquet_source,
    read_index_metadata,
)
from aether_data.dataset.schemas import schema_errors
from aether_data.io import storage
from aether_data.io.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "MANIFEST_FORMAT_VERSION",
    "build_manifest",
    "collect_skipped",
    "write_manifest",
    "write_skipped_parquet",
]

MANIFEST_FORMAT_VERSION = 1
_MANIFEST_RESERVED = (
    "format_version",
    "samples",
    "per_workflow",
    "per_protocol",
    "shards",
    "skipped",
    "spec",
    "seed",
    "code_version",
)


def collect_skipped(out_dir: str | os.PathLike[str], shards: Sequence[str]) -> list[dict[str, Any]]:
    """All skipped-input records of the given shards, sorted (for ``skipped.parquet``)."""
    out_dir = storage.as_path(out_dir)
    rows: list[dict[str, Any]] = []
    for name in sorted(shards):
        rows.extend(read_index_metadata(index_path(out_dir, name))["skipped"])
    return _sorted_skipped(rows)


def _sorted_skipped(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    norm = normalise_skipped(rows)
    return sorted(norm, key=lambda r: (r["source"], r["reason"], r["key"] or ""))


def build_manifest(
    out_dir: str | os.PathLike[str],
    *,
    spec: Mapping[str, Any],
    seed: int,
    code_version: str,
    shards: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the manifest dict from the shard indexes under ``out_dir/index/``.

    Counts come from the indexes (not from the plan) so the manifest describes what was written.
    Contains no wall-clock time: same config + seed gives a byte-identical ``manifest.json``.
    Raises ValueError on a duplicate shard name or sample key, or a tar whose size disagrees with
    its index (cheap checks; :func:`audit` does the full verification).
    Kept whole: one pass over the indexes that both counts and cross-checks them; split, the
    checks would need the same per-shard state threaded through several functions.
    """
    out_dir = storage.as_path(out_dir)
    names = sorted(shards)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate shard names: {sorted(n for n, c in Counter(names).items() if c > 1)}")
    per_workflow: Counter[str] = Counter()
    per_protocol: Counter[str] = Counter()
    key_owner: dict[str, str] = {}
    entries = []
    skipped: list[dict[str, Any]] = []
    replaced: list[dict[str, Any]] = []
    for name in names:
        ipath = index_path(out_dir, name)
        src, fs = parquet_source(ipath)
        table = pq.read_table(src, columns=["key", "workflow", "protocol"], filesystem=fs)
        meta = read_index_metadata(ipath)
        if meta["shard"] != name:
            raise ValueError(f"index {ipath} belongs to shard {meta['shard']!r}, not {name!r}")
        if table.num_rows != meta["samples"]:
            raise ValueError(
                f"shard {name}: index has {table.num_rows} rows, metadata says {meta['samples']}"
            )
        tar = out_dir / "shards" / f"{name}.tar"
        if not tar.is_file() or tar.stat().st_size != meta["tar_size"]:
            raise ValueError(f"shard {name}: {tar} missing or its size differs from the index")
        for key in table.column("key").to_pylist():
            if key in key_owner:
                raise ValueError(f"key {key!r} in both shard {key_owner[key]} and shard {name}")
            key_owner[key] = name
        per_workflow.update(
            w if w is not None else NULL_WORKFLOW for w in table.column("workflow").to_pylist()
        )
        per_protocol.update(p or NULL_PROTOCOL for p in table.column("protocol").to_pylist())
        skipped.extend(meta["skipped"])
        replaced.extend(meta.get("replaced", []))
        entries.append(
            {
                "name": name,
                "path": f"shards/{name}.tar",
                "index": f"index/{name}.parquet",
                "samples": meta["samples"],
                "sha256": meta["tar_sha256"],
                "size": meta["tar_size"],
            }
        )
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "samples": sum(e["samples"] for e in entries),
        "per_workflow": dict(sorted(per_workflow.items())),
        "per_protocol": dict(sorted(per_protocol.items())),
        "shards": entries,
        "skipped": {
            "count": len(skipped),
            "reasons": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        },
        **(
            {
                "sources_replaced": {
                    "count": len(replaced),
                    "reasons": dict(sorted(Counter(s["reason"] for s in replaced).items())),
                }
            }
            if replaced
            else {}
        ),
        "spec": json.loads(json.dumps(dict(spec))),  # plain JSON types, fails early if not serialisable
        "seed": int(seed),
        "code_version": str(code_version),
    }
    for k, v in (extra or {}).items():
        if k in _MANIFEST_RESERVED:
            raise ValueError(f"extra manifest key {k!r} would overwrite a built-in field")
        manifest[k] = v
    return manifest


def write_manifest(out_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Validate against ``manifests/manifest.schema.json`` and write ``manifest.json`` atomically."""
    errors = schema_errors("manifest", manifest, limit=10)
    if errors:
        raise ValueError("manifest does not match manifest.schema.json: " + "; ".join(errors))
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(storage.as_path(out_dir) / "manifest.json", text)


def write_skipped_parquet(out_dir: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``skipped.parquet`` (source, reason, key), sorted, byte-deterministic."""
    norm = _sorted_skipped(rows)
    table = pa.Table.from_pydict(
        {name: [r[name] for r in norm] for name in SKIPPED_SCHEMA.names}, schema=SKIPPED_SCHEMA
    )
    return atomic_write_bytes(storage.as_path(out_dir) / "skipped.parquet", parquet_bytes(table))
