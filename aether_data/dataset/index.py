"""The per-shard parquet index: one row per sample, and the metadata that makes a shard "done".

Why: readers find a sample's bytes without scanning the tar (member offsets, sizes, sha256), and
resume trusts a shard only if its index records the tar's exact size and sha256.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aether_data.dataset.schemas import schema_errors
from aether_data.dataset.tar import MemberInfo, ShardInfo
from aether_data.io import storage
from aether_data.io.atomic import atomic_write_bytes

__all__ = [
    "INDEX_SCHEMA",
    "INDEX_VERSION",
    "SKIPPED_SCHEMA",
    "TASK_FIELDS",
    "index_path",
    "index_row",
    "parquet_bytes",
    "read_index",
    "read_index_metadata",
    "shard_is_done",
    "write_index",
]

INDEX_VERSION = "1"
_META_PREFIX = "aether."
NULL_WORKFLOW = "unknown"  # per_workflow bucket for rows without a workflow
NULL_PROTOCOL = "none"  # per_protocol bucket for rows without a protocol (e.g. style)

#: member roles stored in the index, and how a member extension maps to them.
ROLES = ("input", "target", "json")

_STRING_TASK_FIELDS = (
    "workflow",
    "task",
    "protocol",
    "preset_id",
    "expert_ref",
    "annotator",
)
#: caller-supplied per-sample fields (everything but the key and the member columns), in column order.
TASK_FIELDS: tuple[str, ...] = (
    *_STRING_TASK_FIELDS,
    "attempts",
    "fallback_reason",
    "params_origin",
    "score_source",
    "score_input",
    "score_target",
)

#: the index's columns, in their fixed order; offsets are member *data* offsets in the tar.
INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("input_offset", pa.int64(), nullable=False),
        pa.field("input_size", pa.int64(), nullable=False),
        pa.field("target_offset", pa.int64(), nullable=False),
        pa.field("target_size", pa.int64(), nullable=False),
        pa.field("json_offset", pa.int64(), nullable=False),
        pa.field("json_size", pa.int64(), nullable=False),
        pa.field("input_sha256", pa.string(), nullable=False),
        pa.field("target_sha256", pa.string(), nullable=False),
        pa.field("json_sha256", pa.string(), nullable=False),
        pa.field("workflow", pa.string()),
        pa.field("task", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("preset_id", pa.string()),
        pa.field("expert_ref", pa.string()),
        pa.field("annotator", pa.string()),
        pa.field("attempts", pa.int64()),
        pa.field("fallback_reason", pa.string()),
        pa.field("params_origin", pa.string()),
        pa.field("score_source", pa.float64()),
        pa.field("score_input", pa.float64()),
        pa.field("score_target", pa.float64()),
    ]
)
_MEMBER_COLUMNS = tuple(f"{r}_{c}" for r in ROLES for c in ("offset", "size", "sha256"))

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("key", pa.string()),
    ]
)


OPTIONAL_MEMBERS = ("masks.png",)
"""Members some workflows add (the region workflow's label map): allowed, not indexed."""


def role_of(ext: str) -> str:
    if ext == "json":
        return "json"
    if ext in OPTIONAL_MEMBERS:
        return "extra"
    for role in ("input", "target"):
        if ext.startswith(role + "."):
            return role
    raise ValueError(f"member extension {ext!r} is not one of input.*, target.*, json")


def _member_fields(m: MemberInfo | Mapping[str, Any]) -> tuple[int, int, str]:
    if isinstance(m, MemberInfo):
        return m.data_offset, m.size, m.sha256
    return int(m["data_offset"]), int(m["size"]), str(m["sha256"])


def index_row(
    key: str, members: Mapping[str, MemberInfo | Mapping[str, Any]], **fields: Any
) -> dict[str, Any]:
    """Flatten ``TarWriter.add``'s result plus task fields into one index row.

    ``members`` maps extension -> MemberInfo (or its ``to_dict()``); exactly one ``input.*``,
    one ``target.*`` and one ``json`` are required. ``fields`` are any of :data:`TASK_FIELDS`;
    missing ones are stored as null.
    """
    unknown = set(fields) - set(TASK_FIELDS)
    if unknown:
        raise ValueError(f"unknown index fields for {key!r}: {sorted(unknown)}")
    row: dict[str, Any] = {"key": key}
    for ext, m in members.items():
        role = role_of(ext)
        if role == "extra":
            continue
        if f"{role}_offset" in row:
            raise ValueError(f"sample {key!r} has more than one {role} member")
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = _member_fields(m)
    missing = [r for r in ROLES if f"{r}_offset" not in row]
    if missing:
        raise ValueError(f"sample {key!r} lacks members {missing}")
    for name in TASK_FIELDS:
        row[name] = fields.get(name)
    return {name: row[name] for name in INDEX_SCHEMA.names}  # column order


def _normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    if "members" in row:
        rest = {k: v for k, v in row.items() if k not in ("key", "members")}
        return index_row(row["key"], row["members"], **rest)
    unknown = set(row) - set(INDEX_SCHEMA.names)
    if unknown:
        raise ValueError(f"unknown index columns in row {row.get('key')!r}: {sorted(unknown)}")
    missing = [c for c in ("key", *_MEMBER_COLUMNS) if row.get(c) is None]
    if missing:
        raise ValueError(f"index row {row.get('key')!r} lacks {missing}")
    return {name: row.get(name) for name in INDEX_SCHEMA.names}


def normalise_skipped(skipped: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in skipped:
        if not isinstance(s.get("source"), str) or not isinstance(s.get("reason"), str):
            raise ValueError(f"skipped entry needs string 'source' and 'reason': {dict(s)!r}")
        key = s.get("key")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"skipped entry 'key' must be a string or null: {dict(s)!r}")
        out.append({"source": s["source"], "reason": s["reason"], "key": key})
    return out


def parquet_bytes(table: pa.Table) -> bytes:
    # Fixed writer options: same table -> same bytes (the footer's created_by names the pyarrow
    # version, so byte identity holds for one pyarrow version, which is what a run pins).
    sink = io.BytesIO()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=3,
        version="2.6",
        data_page_version="1.0",
        use_dictionary=True,
        write_statistics=True,
        row_group_size=max(1, table.num_rows),
    )
    return sink.getvalue()


def write_index(
    index_path: str | os.PathLike[str],
    shard: ShardInfo,
    rows: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]] = (),
    fingerprint: str | None = None,
    fingerprint_doc: Mapping[str, Any] | None = None,
    replaced: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Write the shard's parquet index atomically; rows in tar order.

    Each row is either ``{"key", "members": TarWriter.add(...) result, **task fields}`` or an
    already flat :func:`index_row`. The metadata records the tar's name, sha256, size and sample
    count, which is what makes a shard "done" for resume; ``fingerprint`` (with the document it
    hashes, ``build.fingerprint``) is what makes it reusable by a build with the same settings.
    """
    norm = [_normalise_row(r) for r in rows]
    if len(norm) != shard.samples:
        raise ValueError(f"shard {shard.name}: {len(norm)} index rows but {shard.samples} samples written")
    keys = [r["key"] for r in norm]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, n in Counter(keys).items() if n > 1)
        raise ValueError(f"shard {shard.name}: duplicate keys in index rows: {dup[:5]}")
    columns = {name: [r[name] for r in norm] for name in INDEX_SCHEMA.names}
    meta = {
        "shard": shard.name,
        "tar_sha256": shard.sha256,
        "tar_size": str(int(shard.size)),
        "samples": str(int(shard.samples)),
        "skipped": json.dumps(normalise_skipped(skipped), sort_keys=True, separators=(",", ":")),
        "index_version": INDEX_VERSION,
    }
    if replaced:  # failed sources whose samples were built from later ones: counted, not lost
        meta["replaced"] = json.dumps(normalise_skipped(replaced), sort_keys=True, separators=(",", ":"))
    if fingerprint is not None:
        meta["fingerprint"] = fingerprint
        meta["fingerprint_doc"] = json.dumps(fingerprint_doc or {}, sort_keys=True, separators=(",", ":"))
    metadata = {f"{_META_PREFIX}{k}".encode(): v.encode("utf-8") for k, v in sorted(meta.items())}
    table = pa.Table.from_pydict(columns, schema=INDEX_SCHEMA.with_metadata(metadata))
    atomic_write_bytes(index_path, parquet_bytes(table))


def parquet_source(path: str | os.PathLike[str] | storage.RemotePath) -> tuple[Any, Any]:
    """(source, filesystem) for pyarrow.parquet: the path itself locally, the object for a URI."""
    p = storage.as_path(path)
    if isinstance(p, storage.RemotePath):
        return p.fs_path, p.fs
    return path, None


def _decode_metadata(raw: Mapping[bytes, bytes] | None, where: str) -> dict[str, Any]:
    raw = raw or {}
    meta: dict[str, Any] = {}
    for k, v in raw.items():
        ks = k.decode("utf-8")
        if ks.startswith(_META_PREFIX):
            meta[ks[len(_META_PREFIX) :]] = v.decode("utf-8")
    try:
        for k in ("tar_size", "samples"):
            if k in meta:
                meta[k] = int(meta[k])
        for k in ("skipped", "replaced", "fingerprint_doc"):
            if k in meta:
                meta[k] = json.loads(meta[k])
    except ValueError as e:
        raise ValueError(f"{where}: undecodable aether metadata: {e}") from e
    errors = schema_errors("shard-index", meta)
    if errors:
        raise ValueError(f"{where}: index metadata invalid: {'; '.join(errors)}")
    return meta


def read_index_metadata(index_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Decoded ``aether.*`` metadata (prefix stripped) without reading any rows."""
    src, fs = parquet_source(index_path)
    return _decode_metadata(pq.read_schema(src, filesystem=fs).metadata, str(index_path))


def read_index(index_path: str | os.PathLike[str]) -> tuple[pa.Table, dict[str, Any]]:
    """Return the index table and its decoded metadata.

    Metadata keys (``aether.`` prefix stripped): ``shard``, ``tar_sha256``, ``tar_size`` (int),
    ``samples`` (int), ``skipped`` (list of {source, reason, key}), ``index_version``; see
    ``manifests/shard-index.schema.json``.
    """
    src, fs = parquet_source(index_path)
    table = pq.read_table(src, filesystem=fs)
    return table, _decode_metadata(table.schema.metadata, str(index_path))


def shard_is_done(tar_path: str | os.PathLike[str], index_path: str | os.PathLike[str]) -> bool:
    """Resume rule: tar and index exist and the index's recorded size+sha256 match."""
    tar_path, index_path = storage.as_path(tar_path), storage.as_path(index_path)
    if not tar_path.is_file() or not index_path.is_file():
        return False
    try:
        src, fs = parquet_source(index_path)
        pf = pq.ParquetFile(src, filesystem=fs)
        meta = _decode_metadata(pf.schema_arrow.metadata, str(index_path))
        if meta.get("index_version") != INDEX_VERSION or pf.metadata.num_rows != meta["samples"]:
            return False
        if meta["shard"] + ".tar" != tar_path.name:
            return False
        if tar_path.stat().st_size != meta["tar_size"]:
            return False
        return storage.sha256(tar_path) == meta["tar_sha256"]
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return False


def index_path(out_dir: storage.AnyPath, name: str) -> storage.AnyPath:
    """Where shard ``name``'s index lives under a dataset root."""
    return out_dir / "index" / f"{name}.parquet"
