"""``aether audit``: re-derive everything from the bytes on disk and report every disagreement.

Why: a dataset is trusted only if an independent pass over tars, indexes, records and manifest
agrees with what the writer claimed; each problem is named by shard so it can be rebuilt.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aether_data.dataset.completeness import check_completeness
from aether_data.dataset.index import (
    INDEX_SCHEMA,
    NULL_PROTOCOL,
    NULL_WORKFLOW,
    ROLES,
    read_index,
    role_of,
)
from aether_data.dataset.schemas import schema_errors
from aether_data.dataset.tar import MemberInfo, UnsafeMemberError, iter_shard_members
from aether_data.io import storage
from aether_data.io.atomic import TMP_PREFIX

__all__ = ["AuditReport", "Problem", "audit"]

_MAX_PROBLEMS_PER_SHARD = 50


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
    for p in (tar, ipath):
        if isinstance(p, Path) and p.is_symlink():  # a link can point anywhere, also at another shard
            report(f"{p.relative_to(out_dir)} is a symbolic link, not a file of this dataset")
    # a remote shard is downloaded once (to a temp file) for both the checksum and the read
    with storage.local_file(tar) as local_tar:
        return _audit_tar(out_dir, entry, report, key_owner, totals, deep, tar, ipath, local_tar)


def _audit_index(
    out_dir: storage.AnyPath,
    name: str,
    entry: Mapping[str, Any],
    ipath: storage.AnyPath,
    report: _Sink,
    totals: dict[str, Any],
    sha: str,
    size: int,
) -> tuple[dict[str, dict[str, Any]], list[str]] | None:
    """Check a shard's index against its tar and the manifest; its rows by key and key order,
    or None when there is no readable index."""
    rows: dict[str, dict[str, Any]] = {}
    index_keys: list[str] = []
    if not ipath.is_file():
        report(f"index {ipath.relative_to(out_dir)} is missing")
        totals["complete"] = False
        return None
    try:
        table, meta = read_index(ipath)
    except Exception as e:  # any unreadable/invalid index is a finding, not a crash
        report(f"index unreadable: {e}")
        totals["complete"] = False
        return None
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
    totals["fingerprints"][name] = meta
    for row in table.to_pylist():
        if row["key"] in rows:
            report(f"key {row['key']} appears twice in the index")
        rows[row["key"]] = row
        index_keys.append(row["key"])
        totals["workflow"][row["workflow"] if row["workflow"] is not None else NULL_WORKFLOW] += 1
        totals["protocol"][row["protocol"] or NULL_PROTOCOL] += 1
    return rows, index_keys


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
    sha = storage.sha256(local_tar)
    if size != entry.get("size"):
        report(f"tar size {size} != manifest size {entry.get('size')}")
    if sha != entry.get("sha256"):
        report(f"tar sha256 {sha[:16]}... != manifest sha256 {str(entry.get('sha256'))[:16]}...")

    indexed = _audit_index(out_dir, name, entry, ipath, report, totals, sha, size)
    rows, index_keys = indexed if indexed is not None else ({}, [])
    have_index = indexed is not None

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
                    # records say "" where the index says None (type-stable records, sample.schema.json)
                    if (record.get(fld) or None) != (row[fld] or None):
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
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    for ext in members:
        try:
            role = role_of(ext)
        except ValueError:
            report(f"key {key}: unexpected member {key}.{ext}")
            continue
        if role != "extra":
            roles[role].append(ext)
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
            errors = schema_errors("sample", record)
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
            role = role_of(ext)
        except ValueError:
            continue
        if role == "extra":
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
    input/target sizes agree. Completeness (``dataset.completeness``): every planned key is in a
    shard or skipped, counts, seed and spec agree with the plan, one fingerprint over all shards.
    Unlisted or symlinked tars are problems (trainers read every ``shards/*.tar``); stray ``.tmp-``
    files are warnings.
    ``out_dir`` may be a URI (``s3://bucket/run``): each shard is then downloaded once to a temp file.

    Kept whole: it is the audit's checklist read top to bottom (manifest, shard list, each shard,
    completeness, totals); every check with any logic is a helper already.
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
    for err in schema_errors("manifest", manifest, limit=10):
        problems.append(Problem(None, f"manifest.json violates manifest.schema.json: {err}"))
    entries = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        return AuditReport(False, problems, 0, 0, warnings)

    key_owner: dict[str, str] = {}
    # index-derived totals; "complete" turns False when a shard's index could not be used (already a
    # shard problem), and the per-workflow/protocol/skipped comparisons are then not repeated.
    totals: dict[str, Any] = {
        "workflow": Counter(),
        "protocol": Counter(),
        "skipped": [],
        "fingerprints": {},
        "complete": True,
    }
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
            if p.stem not in listed:  # trainers read every shards/*.tar: a stray one is trained on
                problems.append(Problem(p.stem, f"shards/{p.name} is not listed in the manifest"))

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
    if isinstance(manifest, dict):
        check_completeness(
            out_dir,
            manifest,
            key_owner,
            totals["skipped"],
            totals["fingerprints"],
            dataset_problem,
            warnings.append,
        )
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
