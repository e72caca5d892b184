"""Shard writer/reader: determinism, compatibility with plain tarfile/webdataset, safety, atomicity."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image
from records import jpeg, make_record

from aether_data.dataset.tar import (
    FIXED_MTIME,
    RECORD_SIZE,
    ShardFormatError,
    TarWriter,
    UnsafeMemberError,
    iter_shard,
    read_following_member,
    sanitize_member_name,
)
from aether_data.io.atomic import atomic_write_bytes, atomic_write_text
from aether_data.io.canonical import json_bytes
from aether_data.io.storage import sha256

REPO = Path(__file__).resolve().parents[1]


def sample_members(key: str, seed: int = 0) -> dict[str, bytes]:
    return {"input.jpg": jpeg(1.0), "target.jpg": jpeg(1.1), "json": json_bytes(make_record(key, seed))}


KEYS = [f"param_{i:09d}" for i in range(4)]


def write_shard(path: Path, keys: list[str] = KEYS, reverse_members: bool = False):
    with TarWriter(path) as w:
        infos = {}
        for i, k in enumerate(keys):
            m = sample_members(k, i)
            if reverse_members:
                m = dict(reversed(list(m.items())))
            infos[k] = w.add(k, m)
        return w.commit(), infos


def test_record_helper_is_schema_valid() -> None:
    schema = json.loads((REPO / "manifests" / "sample.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(make_record("param_000000001"))


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    a, _ = write_shard(tmp_path / "a" / "param-000000.tar")
    b, _ = write_shard(tmp_path / "b" / "param-000000.tar", reverse_members=True)
    assert a.path.read_bytes() == b.path.read_bytes()
    data = a.path.read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256(data).hexdigest() == sha256(a.path)
    assert a.size == len(data) and len(data) % RECORD_SIZE == 0
    assert (a.name, a.samples) == ("param-000000", 4)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["param-000000.tar"]


def test_header_fields_and_member_offsets(tmp_path: Path) -> None:
    info, members = write_shard(tmp_path / "param-000000.tar")
    raw = info.path.read_bytes()
    assert raw[257:265] == b"ustar\x0000"  # POSIX USTAR magic + version
    with tarfile.open(info.path) as tf:
        tis = tf.getmembers()
    assert [t.name for t in tis[:3]] == [f"{KEYS[0]}.input.jpg", f"{KEYS[0]}.json", f"{KEYS[0]}.target.jpg"]
    assert len(tis) == 3 * len(KEYS)
    for t in tis:
        assert (t.mtime, t.uid, t.gid, t.uname, t.gname, t.mode) == (FIXED_MTIME, 0, 0, "", "", 0o644)
        assert t.isreg()
        key, ext = t.name.split(".", 1)
        m = members[key][ext]
        assert (m.offset, m.data_offset, m.size) == (t.offset, t.offset_data, t.size)
        chunk = raw[m.data_offset : m.data_offset + m.size]
        assert hashlib.sha256(chunk).hexdigest() == m.sha256
        assert chunk == sample_members(key, KEYS.index(key))[ext]


def test_plain_tarfile_reads_shard(tmp_path: Path) -> None:
    info, _ = write_shard(tmp_path / "param-000000.tar")
    groups: dict[str, dict[str, bytes]] = {}
    with tarfile.open(info.path, "r") as tf:
        for t in tf:
            key, ext = t.name.split(".", 1)
            groups.setdefault(key, {})[ext] = tf.extractfile(t).read()
    assert list(groups) == KEYS
    for i, k in enumerate(KEYS):
        assert set(groups[k]) == {"input.jpg", "target.jpg", "json"}
        rec = json.loads(groups[k]["json"])
        assert (rec["key"], rec["seed"], rec["workflow"]) == (k, i, "param")
        assert Image.open(io.BytesIO(groups[k]["target.jpg"])).size == (64, 64)


def test_plain_webdataset_reads_shard(tmp_path: Path) -> None:
    import webdataset as wds

    info, _ = write_shard(tmp_path / "param-000000.tar")
    raw = list(wds.WebDataset(str(info.path), shardshuffle=False))
    assert [s["__key__"] for s in raw] == KEYS
    assert raw[0]["input.jpg"] == jpeg(1.0)
    assert json.loads(raw[2]["json"])["key"] == KEYS[2]
    decoded = list(wds.WebDataset(str(info.path), shardshuffle=False).decode("pil"))
    assert decoded[1]["target.jpg"].size == (64, 64)
    assert decoded[1]["json"]["seed"] == 1


def test_iter_shard_roundtrip(tmp_path: Path) -> None:
    info, _ = write_shard(tmp_path / "param-000000.tar")
    got = list(iter_shard(info.path))
    assert [k for k, _ in got] == KEYS
    assert got[3][1] == sample_members(KEYS[3], 3)


def test_the_member_after_a_json_is_read_by_offset(tmp_path: Path) -> None:
    """A region sample's masks.png (not indexed) is the member right after its JSON; anything else
    there (another name, the next sample, the archive's end) reads as None."""
    path = tmp_path / "s.tar"
    masks = b"\x89PNG-labels" * 50
    with TarWriter(path) as w:
        first = w.add(KEYS[0], {**sample_members(KEYS[0]), "masks.png": masks})
        plain = w.add(KEYS[1], sample_members(KEYS[1]))
        w.commit()
    with open(path, "rb") as f:
        js = first["json"]
        assert read_following_member(f, js.data_offset, js.size, f"{KEYS[0]}.masks.png") == masks
        assert read_following_member(f, js.data_offset, js.size, f"{KEYS[1]}.masks.png") is None
        assert read_following_member(f, js.data_offset, js.size, f"{KEYS[0]}.masks.png", max_size=10) is None
        js = plain["json"]  # followed by its target, not a label map
        assert read_following_member(f, js.data_offset, js.size, f"{KEYS[1]}.masks.png") is None
        last = plain["target.jpg"]  # followed by the end-of-archive blocks
        assert read_following_member(f, last.data_offset, last.size, f"{KEYS[1]}.masks.png") is None


@pytest.mark.parametrize("key", ["a.b", "a/b", "../x", "", "a b", "a\x00b", "/abs", "ключ"])
def test_writer_rejects_bad_keys(tmp_path: Path, key: str) -> None:
    with TarWriter(tmp_path / "s.tar") as w, pytest.raises(ValueError):
        w.add(key, {"json": b"{}"})


@pytest.mark.parametrize("ext", ["../x", "/abs", "a/b", "", "a\\b", "x\x00", "json."])
def test_writer_rejects_bad_extensions(tmp_path: Path, ext: str) -> None:
    with TarWriter(tmp_path / "s.tar") as w, pytest.raises(UnsafeMemberError):
        w.add("k", {"json": b"{}", ext: b"x"})


def test_writer_duplicate_key_and_rejected_sample_leave_no_trace(tmp_path: Path) -> None:
    clean, _ = write_shard(tmp_path / "a" / "param-000000.tar")
    with TarWriter(tmp_path / "b" / "param-000000.tar") as w:
        for i, k in enumerate(KEYS):
            w.add(k, sample_members(k, i))
            with pytest.raises(ValueError, match="duplicate key"):
                w.add(k, sample_members(k, i))
            with pytest.raises(UnsafeMemberError):  # valid members first, then a bad one
                w.add(f"x{i}", {"input.jpg": b"123", "../evil": b"x"})
        info = w.commit()
    assert info.samples == len(KEYS)
    assert info.path.read_bytes() == clean.path.read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd",
        "../x.json",
        "a/../b.json",
        "a/b.json",
        "C:x.json",
        "a\\b.json",
        "k\x00.json",
        ".json",
        "",
    ],
)
def test_sanitize_member_name_rejects(name: str) -> None:
    with pytest.raises(UnsafeMemberError):
        sanitize_member_name(name)


def test_sanitize_member_name_accepts() -> None:
    assert sanitize_member_name("param_000000001.input.jpg") == "param_000000001.input.jpg"


def _malicious_tar(path: Path, kind: str) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        good = tarfile.TarInfo("ok.json")
        good.size = 2
        tf.addfile(good, io.BytesIO(b"{}"))
        ti = tarfile.TarInfo(
            {"dotdot": "../evil.json", "abs": "/tmp/evil.json", "subdir": "d/k.json"}.get(kind, "k.json")
        )
        if kind == "symlink":
            ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            ti.type, ti.linkname = tarfile.LNKTYPE, "ok.json"
        elif kind == "device":
            ti.type = tarfile.CHRTYPE
        elif kind == "fifo":
            ti.type = tarfile.FIFOTYPE
        elif kind == "dir":
            ti.type = tarfile.DIRTYPE
        if ti.type == tarfile.REGTYPE:
            ti.size = 2
            tf.addfile(ti, io.BytesIO(b"{}"))
        else:
            tf.addfile(ti)


@pytest.mark.parametrize("kind", ["dotdot", "abs", "subdir", "symlink", "hardlink", "device", "fifo", "dir"])
def test_reader_refuses_unsafe_members(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "evil.tar"
    _malicious_tar(path, kind)
    with pytest.raises(UnsafeMemberError):
        list(iter_shard(path))


def test_exception_inside_writer_removes_temp_and_keeps_old_shard(tmp_path: Path) -> None:
    final = tmp_path / "param-000000.tar"
    old, _ = write_shard(final)
    old_bytes = final.read_bytes()
    with pytest.raises(RuntimeError, match="boom"), TarWriter(final) as w:
        w.add(KEYS[0], {"json": b"{}"})
        assert w.tmp_path.exists() and w.tmp_path.name.startswith(".tmp-")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == ["param-000000.tar"]
    assert final.read_bytes() == old_bytes and old.sha256 == sha256(final)
    # leaving the block without commit also discards the temp
    with TarWriter(tmp_path / "other.tar") as w:
        w.add(KEYS[0], {"json": b"{}"})
    assert os.listdir(tmp_path) == ["param-000000.tar"]


def test_truncated_tars_are_errors(tmp_path: Path) -> None:
    info, members = write_shard(tmp_path / "param-000000.tar")
    raw = info.path.read_bytes()
    mid_data = tmp_path / "mid.tar"
    mid_data.write_bytes(raw[: members[KEYS[1]]["target.jpg"].data_offset + 100])
    on_boundary = tmp_path / "boundary.tar"  # cut exactly before a header: tarfile alone would not notice
    on_boundary.write_bytes(raw[: members[KEYS[2]]["input.jpg"].offset])
    for p in (mid_data, on_boundary):
        with pytest.raises(ShardFormatError):
            list(iter_shard(p))
    with tarfile.open(on_boundary) as tf:
        assert len(tf.getmembers()) == 6  # the silent truncation the end-marker check catches


def test_corrupt_header_is_an_error(tmp_path: Path) -> None:
    info, members = write_shard(tmp_path / "param-000000.tar")
    raw = bytearray(info.path.read_bytes())
    raw[members[KEYS[2]]["json"].offset + 3] ^= 0x01  # header checksum now wrong
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ShardFormatError, match="corrupt"):
        list(iter_shard(bad))


def test_atomic_write_helpers(tmp_path: Path) -> None:
    p = atomic_write_bytes(tmp_path / "sub" / "x.bin", b"abc")
    assert p.read_bytes() == b"abc"
    atomic_write_text(p, "héllo")
    assert p.read_text(encoding="utf-8") == "héllo"
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_text(encoding="utf-8") == "héllo"
    assert os.listdir(p.parent) == ["x.bin"]


def test_file_sha256_streams_large_files(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=(5 << 20) // 2 + 7, dtype=np.uint8).tobytes()
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    assert sha256(p) == hashlib.sha256(data).hexdigest()


def test_json_bytes_is_canonical() -> None:
    assert json_bytes({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(ValueError):
        json_bytes({"x": float("nan")})
