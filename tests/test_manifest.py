"""Per-shard index, resume rule, manifest and audit, on real shards with real JPEGs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from records import jpeg, make_record

from aether_data.dataset.audit import AuditReport, audit
from aether_data.dataset.index import INDEX_SCHEMA, index_row, read_index, shard_is_done, write_index
from aether_data.dataset.manifest import (
    build_manifest,
    collect_skipped,
    write_manifest,
    write_skipped_parquet,
)
from aether_data.dataset.schemas import load_schema, schema_path
from aether_data.dataset.tar import TarWriter
from aether_data.io.canonical import json_bytes
from aether_data.io.storage import sha256

EXPECTED_COLUMNS = [
    "key",
    "input_offset",
    "input_size",
    "target_offset",
    "target_size",
    "json_offset",
    "json_size",
    "input_sha256",
    "target_sha256",
    "json_sha256",
    "workflow",
    "task",
    "protocol",
    "preset_id",
    "expert_ref",
    "annotator",
    "attempts",
    "fallback_reason",
    "params_origin",
    "score_source",
    "score_input",
    "score_target",
]
SPEC = {"workflows": ["param", "style"], "samples_per_shard": 3, "image": {"short_edge": 64, "format": "jpg"}}


def build_shard(
    out: Path,
    name: str,
    keys: list[str],
    *,
    skipped: list[dict[str, Any]] | None = None,
    record_fn: Any = make_record,
    target_size: tuple[int, int] = (64, 64),
) -> None:
    """Write shards/NAME.tar and index/NAME.parquet the way a shard task does."""
    rows = []
    with TarWriter(out / "shards" / f"{name}.tar") as w:
        for k in keys:
            rec = record_fn(k)
            members = w.add(
                k, {"input.jpg": jpeg(1.0), "target.jpg": jpeg(1.15, target_size), "json": json_bytes(rec)}
            )
            rows.append(
                {
                    "key": k,
                    "members": members,
                    "workflow": rec["workflow"],
                    "task": rec["task"],
                    "protocol": rec["protocol"],
                    "preset_id": rec["preset"]["id"] if rec.get("preset") else None,
                    "annotator": "template",
                    "attempts": 1,
                    "params_origin": "sampled" if rec["workflow"] == "param" else None,
                    "score_source": 5.0,
                    "score_target": 5.5,
                }
            )
        info = w.commit()
    write_index(out / "index" / f"{name}.parquet", info, rows, skipped or [])


PARAM_KEYS = [f"param_{i:09d}" for i in range(3)]
STYLE_KEYS = [f"style_{i:09d}" for i in range(3, 5)]
SKIPPED = [
    {"source": "/in/b.jpg", "reason": "decode-error", "key": "param_000000009"},
    {"source": "/in/a.jpg", "reason": "too-small", "key": None},
]


def build_dataset(out: Path) -> dict[str, Any]:
    build_shard(out, "param-000000", PARAM_KEYS, skipped=SKIPPED)
    build_shard(
        out,
        "style-000000",
        STYLE_KEYS,
        skipped=[{"source": "/in/c.png", "reason": "decode-error", "key": None}],
    )
    names = ["style-000000", "param-000000"]
    manifest = build_manifest(
        out, spec=SPEC, seed=7, code_version="0.1.0+test", shards=names, extra={"annotator": "template"}
    )
    write_manifest(out, manifest)
    write_skipped_parquet(out, collect_skipped(out, names))
    return manifest


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    build_dataset(out)
    return out


def problems_for(report: AuditReport, shard: str | None) -> list[str]:
    return [p.message for p in report.problems if p.shard == shard]


def edit_manifest(out: Path, fn: Any) -> None:
    m = json.loads((out / "manifest.json").read_text())
    fn(m)
    (out / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


# ------------------------------------------------------------------------------------------------ index


def test_index_columns_metadata_and_offsets(dataset: Path) -> None:
    table, meta = read_index(dataset / "index" / "param-000000.parquet")
    assert table.schema.names == EXPECTED_COLUMNS
    assert table.schema.equals(INDEX_SCHEMA, check_metadata=False)
    assert table.schema.field("input_offset").type == pa.int64()
    assert table.schema.field("score_target").type == pa.float64()
    tar = dataset / "shards" / "param-000000.tar"
    assert meta == {
        "shard": "param-000000",
        "tar_sha256": sha256(tar),
        "tar_size": tar.stat().st_size,
        "samples": 3,
        "skipped": SKIPPED,
        "index_version": "1",
    }
    raw_meta = pq.read_schema(dataset / "index" / "param-000000.parquet").metadata
    assert raw_meta[b"aether.samples"] == b"3" and json.loads(raw_meta[b"aether.skipped"]) == SKIPPED
    rows = table.to_pylist()
    assert [r["key"] for r in rows] == PARAM_KEYS
    assert rows[0]["attempts"] == 1 and rows[0]["expert_ref"] is None and rows[0]["score_input"] is None
    raw = tar.read_bytes()
    for r in rows:
        for role in ("input", "target", "json"):
            chunk = raw[r[f"{role}_offset"] : r[f"{role}_offset"] + r[f"{role}_size"]]
            assert hashlib.sha256(chunk).hexdigest() == r[f"{role}_sha256"]
        assert json.loads(raw[r["json_offset"] : r["json_offset"] + r["json_size"]])["key"] == r["key"]


def test_index_schema_documents_the_columns() -> None:
    schema = load_schema("shard-index")
    assert schema_path("shard-index") == schema_path("shard-index.schema.json")
    assert [c["name"] for c in schema["x-aether-columns"]] == EXPECTED_COLUMNS


def test_index_is_byte_deterministic(tmp_path: Path) -> None:
    build_shard(tmp_path / "a", "param-000000", PARAM_KEYS, skipped=SKIPPED)
    build_shard(tmp_path / "b", "param-000000", PARAM_KEYS, skipped=SKIPPED)
    a = (tmp_path / "a" / "index" / "param-000000.parquet").read_bytes()
    assert a == (tmp_path / "b" / "index" / "param-000000.parquet").read_bytes()
    # rewriting over the existing index gives the same bytes again
    table, meta = read_index(tmp_path / "a" / "index" / "param-000000.parquet")
    from aether_data.dataset.tar import ShardInfo

    info = ShardInfo(
        "param-000000",
        tmp_path / "a" / "shards" / "param-000000.tar",
        3,
        meta["tar_size"],
        meta["tar_sha256"],
    )
    write_index(tmp_path / "a" / "index" / "param-000000.parquet", info, table.to_pylist(), meta["skipped"])
    assert (tmp_path / "a" / "index" / "param-000000.parquet").read_bytes() == a


def test_index_row_validation() -> None:
    members = {
        "input.jpg": {"data_offset": 512, "size": 3, "sha256": "a" * 64},
        "target.png": {"data_offset": 1536, "size": 4, "sha256": "b" * 64},
        "json": {"data_offset": 2560, "size": 2, "sha256": "c" * 64},
    }
    row = index_row("param_000000001", members, workflow="param", attempts=2)
    assert list(row) == EXPECTED_COLUMNS
    assert (row["target_offset"], row["target_size"], row["attempts"], row["task"]) == (1536, 4, 2, None)
    with pytest.raises(ValueError, match="unknown"):
        index_row("k", members, wrkflow="param")
    with pytest.raises(ValueError, match="lacks"):
        index_row("k", {k: v for k, v in members.items() if k != "json"})
    with pytest.raises(ValueError):
        index_row("k", {**members, "mask.png": members["json"]})


# ------------------------------------------------------------------------------------------------ resume


def test_shard_is_done_rule(dataset: Path, tmp_path: Path) -> None:
    tar, idx = dataset / "shards" / "param-000000.tar", dataset / "index" / "param-000000.parquet"
    assert shard_is_done(tar, idx)
    raw = tar.read_bytes()

    truncated = tmp_path / "t" / "param-000000.tar"
    truncated.parent.mkdir()
    truncated.write_bytes(raw[:-512])
    assert not shard_is_done(truncated, idx)

    flipped = tmp_path / "f" / "param-000000.tar"
    flipped.parent.mkdir()
    data = bytearray(raw)
    data[len(data) // 3] ^= 0x40
    flipped.write_bytes(bytes(data))
    assert flipped.stat().st_size == tar.stat().st_size
    assert not shard_is_done(flipped, idx)

    assert not shard_is_done(tar, tmp_path / "missing.parquet")
    assert not shard_is_done(tmp_path / "missing.tar", idx)
    assert not shard_is_done(dataset / "shards" / "style-000000.tar", idx)  # index of another shard
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    assert not shard_is_done(tar, tmp_path / "garbage.parquet")


# ------------------------------------------------------------------------------------------------ manifest


def test_manifest_content(dataset: Path) -> None:
    m = json.loads((dataset / "manifest.json").read_text())
    assert m["format_version"] == 1
    assert m["samples"] == 5
    assert m["per_workflow"] == {"param": 3, "style": 2}
    assert m["per_protocol"] == {"light+globalcolor": 3, "none": 2}
    assert [s["name"] for s in m["shards"]] == ["param-000000", "style-000000"]
    s0 = m["shards"][0]
    tar = dataset / "shards" / "param-000000.tar"
    assert s0 == {
        "name": "param-000000",
        "path": "shards/param-000000.tar",
        "index": "index/param-000000.parquet",
        "samples": 3,
        "sha256": sha256(tar),
        "size": tar.stat().st_size,
    }
    assert m["skipped"] == {"count": 3, "reasons": {"decode-error": 2, "too-small": 1}}
    assert (m["spec"], m["seed"], m["code_version"], m["annotator"]) == (SPEC, 7, "0.1.0+test", "template")
    jsonschema.Draft202012Validator(load_schema("manifest")).validate(m)
    text = (dataset / "manifest.json").read_text()
    assert text == json.dumps(m, indent=2, sort_keys=True) + "\n"
    sk = pq.read_table(dataset / "skipped.parquet")
    assert sk.schema.names == ["source", "reason", "key"]
    assert sk.column("source").to_pylist() == ["/in/a.jpg", "/in/b.jpg", "/in/c.png"]


def test_whole_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    build_dataset(tmp_path / "a")
    build_dataset(tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 6
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_manifest_validation_and_reserved_extra(dataset: Path) -> None:
    m = build_manifest(dataset, spec=SPEC, seed=7, code_version="x", shards=["param-000000"])
    bad = {k: v for k, v in m.items() if k != "seed"}
    with pytest.raises(ValueError, match="seed"):
        write_manifest(dataset, bad)
    with pytest.raises(ValueError, match="overwrite"):
        build_manifest(
            dataset, spec=SPEC, seed=7, code_version="x", shards=["param-000000"], extra={"samples": 1}
        )
    with pytest.raises(FileNotFoundError):
        build_manifest(dataset, spec=SPEC, seed=7, code_version="x", shards=["param-000009"])


def test_build_manifest_rejects_duplicate_keys(tmp_path: Path) -> None:
    build_shard(tmp_path, "param-000000", PARAM_KEYS)
    build_shard(tmp_path, "param-000001", [PARAM_KEYS[1], "param_000000007"])
    with pytest.raises(ValueError, match=r"param-000000.*param-000001"):
        build_manifest(tmp_path, spec=SPEC, seed=1, code_version="x", shards=["param-000000", "param-000001"])


# ------------------------------------------------------------------------------------------------ audit


def test_audit_ok(dataset: Path) -> None:
    report = audit(dataset)
    assert report.problems == []
    assert (report.ok, report.shards, report.samples, report.warnings) == (True, 2, 5, [])
    deep = audit(dataset, deep=True)
    assert deep.ok and deep.samples == 5


def test_audit_stray_temp_is_warning_only(dataset: Path) -> None:
    (dataset / "shards" / ".tmp-param-000001.tar.123-abcd").write_bytes(b"partial")
    report = audit(dataset)
    assert report.ok
    assert len(report.warnings) == 1
    assert any(".tmp-param-000001" in w for w in report.warnings)


def test_audit_unlisted_tar_is_a_problem(dataset: Path) -> None:
    # trainers read every shards/*.tar: an unlisted one would be trained on (issue #20, case 8)
    (dataset / "shards" / "param-000099.tar").write_bytes(b"")
    report = audit(dataset)
    assert not report.ok
    assert any("param-000099.tar is not listed" in p.message for p in report.problems)


def _assert_only_shard_fails(report: AuditReport, shard: str, needle: str) -> None:
    assert not report.ok
    msgs = problems_for(report, shard)
    assert msgs, report.problems
    assert all(shard in m for m in msgs)
    assert any(needle in m for m in msgs), msgs
    other = "style-000000" if shard == "param-000000" else "param-000000"
    assert problems_for(report, other) == []


def test_audit_truncated_tar(dataset: Path) -> None:
    tar = dataset / "shards" / "param-000000.tar"
    raw = tar.read_bytes()
    tar.write_bytes(raw[: len(raw) // 2])
    _assert_only_shard_fails(audit(dataset), "param-000000", "truncated")


def test_audit_flipped_byte(dataset: Path) -> None:
    tar = dataset / "shards" / "style-000000.tar"
    row = read_index(dataset / "index" / "style-000000.parquet")[0].to_pylist()[1]
    data = bytearray(tar.read_bytes())
    data[row["target_offset"] + row["target_size"] // 2] ^= 0x01
    tar.write_bytes(bytes(data))
    report = audit(dataset)
    _assert_only_shard_fails(report, "style-000000", "sha256")
    assert any(row["key"] in m for m in problems_for(report, "style-000000"))  # the damaged sample is named


def test_audit_missing_index(dataset: Path) -> None:
    (dataset / "index" / "param-000000.parquet").unlink()
    _assert_only_shard_fails(audit(dataset), "param-000000", "index")


def test_audit_missing_tar_and_manifest(dataset: Path) -> None:
    (dataset / "shards" / "style-000000.tar").unlink()
    _assert_only_shard_fails(audit(dataset), "style-000000", "missing")
    (dataset / "manifest.json").unlink()
    report = audit(dataset)
    assert not report.ok and "manifest.json missing" in report.problems[0].message


def test_audit_duplicate_key_across_shards(tmp_path: Path) -> None:
    build_shard(tmp_path, "param-000000", PARAM_KEYS)
    build_shard(tmp_path, "param-000001", [PARAM_KEYS[1], "param_000000007"])
    m0 = build_manifest(tmp_path, spec=SPEC, seed=1, code_version="x", shards=["param-000000"])
    m1 = build_manifest(tmp_path, spec=SPEC, seed=1, code_version="x", shards=["param-000001"])
    m0["shards"] += m1["shards"]
    m0["samples"] = 5
    m0["per_workflow"] = {"param": 5}
    m0["per_protocol"] = {"light+globalcolor": 5}
    write_manifest(tmp_path, m0)
    report = audit(tmp_path)
    assert not report.ok
    msgs = problems_for(report, "param-000001")
    assert any(PARAM_KEYS[1] in m and "param-000000" in m and "param-000001" in m for m in msgs), (
        report.problems
    )
    assert problems_for(report, "param-000000") == []


def test_audit_json_violating_schema(dataset: Path) -> None:
    def bad_record(key: str) -> dict[str, Any]:
        rec = make_record(key)
        if key == STYLE_KEYS[1]:
            rec["masks"] = [1, 2, 0]
            del rec["generator"]
        return rec

    build_shard(dataset, "style-000000", STYLE_KEYS, record_fn=bad_record)
    write_manifest(
        dataset,
        build_manifest(
            dataset, spec=SPEC, seed=7, code_version="0.1.0+test", shards=["param-000000", "style-000000"]
        ),
    )
    report = audit(dataset)
    _assert_only_shard_fails(report, "style-000000", "sample.schema.json")
    assert any(STYLE_KEYS[1] in m and "generator" in m for m in problems_for(report, "style-000000"))


def test_audit_json_key_mismatch(dataset: Path) -> None:
    def wrong_key(key: str) -> dict[str, Any]:
        return {**make_record(key), "key": "param_000000123"}

    build_shard(dataset, "param-000000", PARAM_KEYS, record_fn=wrong_key)
    write_manifest(
        dataset,
        build_manifest(dataset, spec=SPEC, seed=7, code_version="v", shards=["param-000000", "style-000000"]),
    )
    _assert_only_shard_fails(audit(dataset), "param-000000", "has key 'param_000000123'")


def test_audit_manifest_sample_count_mismatch(dataset: Path) -> None:
    def bump(m: dict[str, Any]) -> None:
        m["shards"][0]["samples"] += 1
        m["samples"] += 1
        m["per_workflow"]["param"] += 1

    edit_manifest(dataset, bump)
    report = audit(dataset)
    _assert_only_shard_fails(report, "param-000000", "manifest says 4 samples")
    # the dataset-level total alone is also checked
    edit_manifest(dataset, lambda m: m["shards"][0].update(samples=3))
    report = audit(dataset)
    assert not report.ok
    assert any("manifest samples 6" in m for m in problems_for(report, None))


def test_audit_index_order_mismatch(dataset: Path) -> None:
    idx = dataset / "index" / "param-000000.parquet"
    table, meta = read_index(idx)
    from aether_data.dataset.tar import ShardInfo

    info = ShardInfo(
        "param-000000", dataset / "shards" / "param-000000.tar", 3, meta["tar_size"], meta["tar_sha256"]
    )
    write_index(idx, info, list(reversed(table.to_pylist())), meta["skipped"])
    _assert_only_shard_fails(audit(dataset), "param-000000", "order")


def test_audit_deep_detects_size_mismatch(dataset: Path) -> None:
    build_shard(dataset, "style-000000", STYLE_KEYS, target_size=(64, 48))
    shards = ["param-000000", "style-000000"]
    write_manifest(dataset, build_manifest(dataset, spec=SPEC, seed=7, code_version="v", shards=shards))
    write_skipped_parquet(dataset, collect_skipped(dataset, shards))  # the rebuilt shard skips nothing
    assert audit(dataset).ok  # shallow audit does not decode images
    _assert_only_shard_fails(
        audit(dataset, deep=True), "style-000000", "input size (64, 64) != target size (64, 48)"
    )


def test_skipped_parquet_is_deterministic(tmp_path: Path) -> None:
    a = write_skipped_parquet(tmp_path / "a", SKIPPED).read_bytes()
    b = write_skipped_parquet(tmp_path / "b", list(reversed(SKIPPED))).read_bytes()
    assert a == b
    assert pq.read_table(tmp_path / "a" / "skipped.parquet").to_pylist()[0] == SKIPPED[1]
    shutil.rmtree(tmp_path / "a")
