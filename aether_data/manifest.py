"""Per-shard parquet index, ``manifest.json``, ``skipped.parquet`` and the dataset audit.

Why: a shard is only trustworthy together with its index (what is inside, where, with which
checksums) and the manifest (which shards make the dataset). The index records the tar's sha256 and
size, which is the resume rule of DESIGN §1 (:func:`shard_is_done`); the audit re-derives everything
from the bytes on disk and reports every disagreement by shard name.

Everything written here is byte-deterministic for equal inputs: explicit pyarrow schema and column
order, sorted metadata, no wall-clock time anywhere (timings belong in logs, not in the dataset).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq

from aether_data import storage
from aether_data.shards import (
    TMP_PREFIX,
    MemberInfo,
    ShardInfo,
    UnsafeMemberError,
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    iter_shard_members,
)

__all__ = [
    "INDEX_SCHEMA",
    "INDEX_VERSION",
    "MANIFEST_FORMAT_VERSION",
    "SKIPPED_SCHEMA",
    "TASK_FIELDS",
    "AuditReport",
    "Problem",
    "audit",
    "build_manifest",
    "collect_skipped",
    "index_row",
    "load_schema",
    "read_index",
    "read_index_metadata",
    "schema_path",
    "shard_is_done",
    "write_index",
    "write_manifest",
    "write_skipped_parquet",
]

INDEX_VERSION = "1"
MANIFEST_FORMAT_VERSION = 1
_META_PREFIX = "aether."
NULL_WORKFLOW = "unknown"  # per_workflow bucket for rows without a workflow
NULL_PROTOCOL = "none"  # per_protocol bucket for rows without a protocol (e.g. style)

#: member roles stored in the index, and how a member extension maps to them.
_ROLES = ("input", "target", "json")

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
_MEMBER_COLUMNS = tuple(f"{r}_{c}" for r in _ROLES for c in ("offset", "size", "sha256"))

SKIPPED_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("key", pa.string()),
    ]
)

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
_MAX_PROBLEMS_PER_SHARD = 50


# --------------------------------------------------------------------------------------------------
# schemas


def schema_path(name: str) -> Path:
    """Path of a JSON Schema in the repo's ``manifests/`` ("sample" or "sample.schema.json")."""
    fname = name if name.endswith(".json") else f"{name}.schema.json"
    return Path(__file__).resolve().parents[1] / "manifests" / fname


def load_schema(name: str) -> dict[str, Any]:
    """Load a JSON Schema from ``manifests/`` (a fresh dict each call: callers may mutate it)."""
    return json.loads(schema_path(name).read_text(encoding="utf-8"))


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _schema_errors(name: str, instance: Any, limit: int = 3) -> list[str]:
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:limit]:
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        out.append(f"{where}: {e.message}")
    if len(errors) > limit:
        out.append(f"... and {len(errors) - limit} more schema errors")
    return out


# --------------------------------------------------------------------------------------------------
# per-shard index


def _role_of(ext: str) -> str:
    if ext == "json":
        return "json"
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
    """Flatten ``ShardWriter.add``'s result plus task fields into one index row.

    ``members`` maps extension -> MemberInfo (or its ``to_dict()``); exactly one ``input.*``,
    one ``target.*`` and one ``json`` are required. ``fields`` are any of :data:`TASK_FIELDS`;
    missing ones are stored as null.
    """
    unknown = set(fields) - set(TASK_FIELDS)
    if unknown:
        raise ValueError(f"unknown index fields for {key!r}: {sorted(unknown)}")
    row: dict[str, Any] = {"key": key}
    for ext, m in members.items():
        role = _role_of(ext)
        if f"{role}_offset" in row:
            raise ValueError(f"sample {key!r} has more than one {role} member")
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = _member_fields(m)
    missing = [r for r in _ROLES if f"{r}_offset" not in row]
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


def _normalise_skipped(skipped: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in skipped:
        if not isinstance(s.get("source"), str) or not isinstance(s.get("reason"), str):
            raise ValueError(f"skipped entry needs string 'source' and 'reason': {dict(s)!r}")
        key = s.get("key")
        if key is not None and not isinstance(key, str):
            raise ValueError(f"skipped entry 'key' must be a string or null: {dict(s)!r}")
        out.append({"source": s["source"], "reason": s["reason"], "key": key})
    return out


def _parquet_bytes(table: pa.Table) -> bytes:
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
) -> None:
    """Write the shard's parquet index atomically; rows in tar order.

    Each row is either ``{"key", "members": ShardWriter.add(...) result, **task fields}`` or an
    already flat :func:`index_row`. The metadata records the tar's name, sha256, size and sample
    count, which is what makes a shard "done" for resume.
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
        "skipped": json.dumps(_normalise_skipped(skipped), sort_keys=True, separators=(",", ":")),
        "index_version": INDEX_VERSION,
    }
    metadata = {f"{_META_PREFIX}{k}".encode(): v.encode("utf-8") for k, v in sorted(meta.items())}
    table = pa.Table.from_pydict(columns, schema=INDEX_SCHEMA.with_metadata(metadata))
    atomic_write_bytes(index_path, _parquet_bytes(table))


def _pq(path: str | os.PathLike[str] | storage.RemotePath) -> tuple[Any, Any]:
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
        if "skipped" in meta:
            meta["skipped"] = json.loads(meta["skipped"])
    except ValueError as e:
        raise ValueError(f"{where}: undecodable aether metadata: {e}") from e
    errors = _schema_errors("shard-index", meta)
    if errors:
        raise ValueError(f"{where}: index metadata invalid: {'; '.join(errors)}")
    return meta


def read_index_metadata(index_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Decoded ``aether.*`` metadata (prefix stripped) without reading any rows."""
    src, fs = _pq(index_path)
    return _decode_metadata(pq.read_schema(src, filesystem=fs).metadata, str(index_path))


def read_index(index_path: str | os.PathLike[str]) -> tuple[pa.Table, dict[str, Any]]:
    """Return the index table and its decoded metadata.

    Metadata keys (``aether.`` prefix stripped): ``shard``, ``tar_sha256``, ``tar_size`` (int),
    ``samples`` (int), ``skipped`` (list of {source, reason, key}), ``index_version``; see
    ``manifests/shard-index.schema.json``.
    """
    src, fs = _pq(index_path)
    table = pq.read_table(src, filesystem=fs)
    return table, _decode_metadata(table.schema.metadata, str(index_path))


def shard_is_done(tar_path: str | os.PathLike[str], index_path: str | os.PathLike[str]) -> bool:
    """Resume rule (DESIGN §1): tar and index exist and the index's recorded size+sha256 match."""
    tar_path, index_path = storage.as_path(tar_path), storage.as_path(index_path)
    if not tar_path.is_file() or not index_path.is_file():
        return False
    try:
        src, fs = _pq(index_path)
        pf = pq.ParquetFile(src, filesystem=fs)
        meta = _decode_metadata(pf.schema_arrow.metadata, str(index_path))
        if meta.get("index_version") != INDEX_VERSION or pf.metadata.num_rows != meta["samples"]:
            return False
        if meta["shard"] + ".tar" != tar_path.name:
            return False
        if tar_path.stat().st_size != meta["tar_size"]:
            return False
        return file_sha256(tar_path) == meta["tar_sha256"]
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return False


# --------------------------------------------------------------------------------------------------
# manifest


def _index_path(out_dir: storage.AnyPath, name: str) -> storage.AnyPath:
    return out_dir / "index" / f"{name}.parquet"


def collect_skipped(out_dir: str | os.PathLike[str], shards: Sequence[str]) -> list[dict[str, Any]]:
    """All skipped-input records of the given shards, sorted (for ``skipped.parquet``)."""
    out_dir = storage.as_path(out_dir)
    rows: list[dict[str, Any]] = []
    for name in sorted(shards):
        rows.extend(read_index_metadata(_index_path(out_dir, name))["skipped"])
    return _sorted_skipped(rows)


def _sorted_skipped(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    norm = _normalise_skipped(rows)
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
    for name in names:
        ipath = _index_path(out_dir, name)
        src, fs = _pq(ipath)
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
        per_protocol.update(
            p if p is not None else NULL_PROTOCOL for p in table.column("protocol").to_pylist()
        )
        skipped.extend(meta["skipped"])
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
    errors = _schema_errors("manifest", manifest, limit=10)
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
    return atomic_write_bytes(storage.as_path(out_dir) / "skipped.parquet", _parquet_bytes(table))


# --------------------------------------------------------------------------------------------------
# audit


@dataclass(frozen=True)
class Problem:
    """One audit finding; ``shard`` is None only for dataset-level problems."""

    shard: str | None
    message: str

    def __str__(self) -> str:
        return f"[{self.shard or 'dataset'}] {self.message}"


@dataclass
class AuditReport:
    """Audit result: ``ok`` is False iff there are problems; warnings never fail an audit."""

    ok: bool
    problems: list[Problem]
    shards: int
    samples: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


class _Sink:
    """Collects a shard's problems, prefixing the shard name and capping the count."""

    def __init__(self, problems: list[Problem], shard: str) -> None:
        self.problems, self.shard, self.n = problems, shard, 0

    def __call__(self, message: str) -> None:
        self.n += 1
        if self.n <= _MAX_PROBLEMS_PER_SHARD:
            self.problems.append(Problem(self.shard, f"shard {self.shard}: {message}"))
        elif self.n == _MAX_PROBLEMS_PER_SHARD + 1:
            self.problems.append(Problem(self.shard, f"shard {self.shard}: further problems not listed"))


def _safe_relpath(out_dir: storage.AnyPath, rel: Any) -> storage.AnyPath | None:
    if not isinstance(rel, str) or not rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or "\\" in rel:
        return None
    return out_dir.joinpath(*p.parts)


def _image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image  # deep audit only

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def _audit_shard(
    out_dir: storage.AnyPath,
    entry: Mapping[str, Any],
    report: _Sink,
    key_owner: dict[str, str],
    totals: dict[str, Any],
    deep: bool,
) -> int:
    """Check one shard; returns the number of samples read from its tar."""
    name = entry["name"]
    tar = _safe_relpath(out_dir, entry.get("path", f"shards/{name}.tar"))
    ipath = _safe_relpath(out_dir, entry.get("index", f"index/{name}.parquet"))
    if tar is None or ipath is None:
        report("manifest path/index escapes the output directory or is empty")
        totals["complete"] = False
        return 0
    if not tar.is_file():
        report(f"tar {tar.relative_to(out_dir)} is missing")
        totals["complete"] = False
        return 0
    # a remote shard is downloaded once (to a temp file) for both the checksum and the read
    with storage.local_file(tar) as local_tar:
        return _audit_tar(out_dir, entry, report, key_owner, totals, deep, tar, ipath, local_tar)


def _audit_tar(
    out_dir: storage.AnyPath,
    entry: Mapping[str, Any],
    report: _Sink,
    key_owner: dict[str, str],
    totals: dict[str, Any],
    deep: bool,
    tar: storage.AnyPath,
    ipath: storage.AnyPath,
    local_tar: Path,
) -> int:
    """The rest of :func:`_audit_shard` once the tar exists; ``local_tar`` holds its bytes."""
    name = entry["name"]
    size = tar.stat().st_size
    sha = file_sha256(local_tar)
    if size != entry.get("size"):
        report(f"tar size {size} != manifest size {entry.get('size')}")
    if sha != entry.get("sha256"):
        report(f"tar sha256 {sha[:16]}... != manifest sha256 {str(entry.get('sha256'))[:16]}...")

    rows: dict[str, dict[str, Any]] = {}
    index_keys: list[str] = []
    if not ipath.is_file():
        report(f"index {ipath.relative_to(out_dir)} is missing")
        have_index = False
        totals["complete"] = False
    else:
        try:
            table, meta = read_index(ipath)
        except Exception as e:  # any unreadable/invalid index is a finding, not a crash
            report(f"index unreadable: {e}")
            have_index = False
            totals["complete"] = False
        else:
            have_index = True
            if not table.schema.equals(INDEX_SCHEMA, check_metadata=False):
                report("index columns/types differ from INDEX_SCHEMA")
            if meta["shard"] != name:
                report(f"index metadata names shard {meta['shard']!r}")
            if meta["tar_sha256"] != sha:
                report("tar sha256 does not match the index metadata")
            if meta["tar_size"] != size:
                report(f"tar size {size} != index metadata size {meta['tar_size']}")
            if meta["samples"] != table.num_rows:
                report(f"index has {table.num_rows} rows, its metadata says {meta['samples']}")
            if entry.get("samples") != table.num_rows:
                report(f"manifest says {entry.get('samples')} samples, index has {table.num_rows}")
            totals["skipped"].extend(meta["skipped"])
            for row in table.to_pylist():
                if row["key"] in rows:
                    report(f"key {row['key']} appears twice in the index")
                rows[row["key"]] = row
                index_keys.append(row["key"])
                totals["workflow"][row["workflow"] if row["workflow"] is not None else NULL_WORKFLOW] += 1
                totals["protocol"][row["protocol"] if row["protocol"] is not None else NULL_PROTOCOL] += 1

    seen: set[str] = set()
    order_reported = False
    n = 0
    try:
        for pos, (key, members) in enumerate(iter_shard_members(local_tar)):
            n += 1
            if key in seen:
                report(f"key {key} appears twice in the tar")
            elif key in key_owner:
                report(f"key {key} is duplicated: also in shard {key_owner[key]}")
            seen.add(key)
            key_owner.setdefault(key, name)
            record = _audit_sample(key, members, report, deep)
            if not have_index:
                continue
            row = rows.get(key)
            if row is None:
                report(f"key {key} is in the tar but not in the index")
                continue
            if not order_reported and (pos >= len(index_keys) or index_keys[pos] != key):
                report(f"key order differs from the index at position {pos} ({key})")
                order_reported = True
            _compare_row(key, members, row, report)
            if record is not None:
                for fld in ("workflow", "task", "protocol"):
                    if record.get(fld) != row[fld]:
                        report(
                            f"key {key}: {fld} {record.get(fld)!r} in {key}.json != {row[fld]!r} in the index"
                        )
    except (UnsafeMemberError, ValueError, OSError) as e:
        report(f"tar is truncated or corrupt after {n} samples: {e}")
    if have_index:
        missing = [k for k in index_keys if k not in seen]
        if missing:
            report(f"{len(missing)} index keys not found in the tar, e.g. {missing[:3]}")
    if entry.get("samples") != n:
        report(f"manifest says {entry.get('samples')} samples, tar has {n}")
    return n


def _audit_sample(
    key: str, members: Mapping[str, tuple[MemberInfo, bytes]], report: _Sink, deep: bool
) -> dict[str, Any] | None:
    """Check one sample's members and record; returns the parsed record when it is an object."""
    record: Any = None
    roles: dict[str, list[str]] = {r: [] for r in _ROLES}
    for ext in members:
        try:
            roles[_role_of(ext)].append(ext)
        except ValueError:
            report(f"key {key}: unexpected member {key}.{ext}")
    for role, exts in roles.items():
        if len(exts) != 1:
            report(f"key {key}: expected one {role} member, found {len(exts)}")
    if roles["json"]:
        _, data = members["json"]
        try:
            record = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            report(f"key {key}: {key}.json does not parse: {e}")
        else:
            errors = _schema_errors("sample", record)
            if errors:
                report(f"key {key}: {key}.json violates sample.schema.json: {'; '.join(errors)}")
            if not isinstance(record, dict) or record.get("key") != key:
                got = record.get("key") if isinstance(record, dict) else None
                report(f"key {key}: {key}.json has key {got!r}")
    if deep and len(roles["input"]) == 1 and len(roles["target"]) == 1:
        sizes = {}
        for role in ("input", "target"):
            ext = roles[role][0]
            try:
                sizes[role] = _image_size(members[ext][1])
            except Exception as e:  # Pillow raises many types for bad images
                report(f"key {key}: {key}.{ext} does not decode: {e}")
        if len(sizes) == 2 and sizes["input"] != sizes["target"]:
            report(f"key {key}: input size {sizes['input']} != target size {sizes['target']}")
    return record if isinstance(record, dict) else None


def _compare_row(
    key: str, members: Mapping[str, tuple[MemberInfo, bytes]], row: Mapping[str, Any], report: _Sink
) -> None:
    for ext, (info, _) in members.items():
        try:
            role = _role_of(ext)
        except ValueError:
            continue
        got = {"offset": info.data_offset, "size": info.size, "sha256": info.sha256}
        for fld, value in got.items():
            want = row[f"{role}_{fld}"]
            if value != want:
                report(f"key {key}: {key}.{ext} {fld} {value} differs from the index ({want})")


def _stray_temp_files(out_dir: storage.AnyPath) -> list[str]:
    found = []
    for d in (out_dir, out_dir / "shards", out_dir / "index"):
        if d.is_dir():
            found += [
                str(p.relative_to(out_dir)) for p in sorted(d.iterdir()) if p.name.startswith(TMP_PREFIX)
            ]
    return found


def audit(out_dir: str | os.PathLike[str], deep: bool = False) -> AuditReport:
    """Verify a built dataset from its bytes: manifest, every shard tar, index and sample record.

    Streams each tar (one sample in memory at a time). ``deep`` also decodes every image and checks
    input/target sizes agree. Stray ``.tmp-`` files and unlisted tars are warnings, not problems.
    ``out_dir`` may be a URI (``s3://bucket/run``): each shard is then downloaded once to a temp file.
    """
    out_dir = storage.as_path(out_dir)
    problems: list[Problem] = []
    warnings = [f"stray temp file {p} (left by an interrupted task)" for p in _stray_temp_files(out_dir)]
    mpath = out_dir / "manifest.json"
    if not mpath.is_file():
        problems.append(Problem(None, f"manifest.json missing in {out_dir}"))
        return AuditReport(False, problems, 0, 0, warnings)
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        problems.append(Problem(None, f"manifest.json does not parse: {e}"))
        return AuditReport(False, problems, 0, 0, warnings)
    for err in _schema_errors("manifest", manifest, limit=10):
        problems.append(Problem(None, f"manifest.json violates manifest.schema.json: {err}"))
    entries = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        return AuditReport(False, problems, 0, 0, warnings)

    key_owner: dict[str, str] = {}
    # index-derived totals; "complete" turns False when a shard's index could not be used (already a
    # shard problem), and the per-workflow/protocol/skipped comparisons are then not repeated.
    totals: dict[str, Any] = {"workflow": Counter(), "protocol": Counter(), "skipped": [], "complete": True}
    listed: set[str] = set()
    samples = 0
    shard_count = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(Problem(None, f"manifest shard entry without a name: {entry!r}"))
            continue
        name = entry["name"]
        if name in listed:
            problems.append(Problem(name, f"shard {name}: listed twice in the manifest"))
            continue
        listed.add(name)
        shard_count += 1
        samples += _audit_shard(out_dir, entry, _Sink(problems, name), key_owner, totals, deep)

    shard_dir = out_dir / "shards"
    if shard_dir.is_dir():
        for p in sorted(shard_dir.glob("*.tar")):
            if p.stem not in listed:
                warnings.append(f"shards/{p.name} is not listed in the manifest")

    def dataset_problem(msg: str) -> None:
        problems.append(Problem(None, msg))

    m_samples = manifest.get("samples")
    listed_sum = sum(
        e.get("samples", 0) for e in entries if isinstance(e, dict) and isinstance(e.get("samples"), int)
    )
    if m_samples != listed_sum:
        dataset_problem(f"manifest samples {m_samples} != sum over its shards {listed_sum}")
    if m_samples != samples:
        dataset_problem(f"manifest samples {m_samples} != samples found in tars {samples}")
    if not totals["complete"]:
        return AuditReport(not problems, problems, shard_count, samples, warnings)
    if isinstance(manifest.get("per_workflow"), dict) and manifest["per_workflow"] != dict(
        totals["workflow"]
    ):
        dataset_problem(f"per_workflow {manifest['per_workflow']} != index counts {dict(totals['workflow'])}")
    if isinstance(manifest.get("per_protocol"), dict) and manifest["per_protocol"] != dict(
        totals["protocol"]
    ):
        dataset_problem(f"per_protocol {manifest['per_protocol']} != index counts {dict(totals['protocol'])}")
    sk = manifest.get("skipped")
    if isinstance(sk, dict):
        want_reasons = dict(Counter(s.get("reason") for s in totals["skipped"]))
        if sk.get("count") != len(totals["skipped"]) or sk.get("reasons") != want_reasons:
            dataset_problem(
                f"skipped {sk.get('count')}/{sk.get('reasons')} != index records "
                f"{len(totals['skipped'])}/{want_reasons}"
            )
    return AuditReport(not problems, problems, shard_count, samples, warnings)
