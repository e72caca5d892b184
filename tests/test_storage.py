"""storage: local paths unchanged, URIs through pyarrow/fsspec with atomic commits.

Unit tests run on fsspec's in-process ``memory://`` filesystem; the S3 tests (test_storage_s3.py)
use a real S3-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aether_data.dataset.index import read_index, shard_is_done, write_index
from aether_data.dataset.tar import TarWriter, iter_shard
from aether_data.io import storage
from aether_data.io.atomic import AtomicFile, atomic_write_bytes, atomic_write_text
from aether_data.io.storage import sha256


@pytest.fixture
def mem_root(request) -> storage.RemotePath:
    root = storage.as_path(f"memory://aether-test/{request.node.name}")
    assert isinstance(root, storage.RemotePath)
    yield root
    storage.remove_tree(root)


def test_local_paths_stay_pathlib(tmp_path: Path) -> None:
    assert storage.as_path(tmp_path) == tmp_path
    assert storage.as_path(str(tmp_path / "x")) == tmp_path / "x"
    assert storage.as_path(f"file://{tmp_path}") == tmp_path
    assert not storage.is_uri(tmp_path) and not storage.is_uri("relative/dir")
    assert storage.is_uri("s3://bucket/run") and storage.is_uri("memory://x")


def test_uri_collapsed_by_pathlib_is_restored() -> None:
    # a CLI option typed as pathlib.Path turns s3://b/k into s3:/b/k; it must still mean S3
    assert str(storage.as_path(Path("memory://bucket/run"))) == "memory://bucket/run"
    assert storage.is_uri(Path("s3://bucket/run"))


def test_remote_path_pure_operations(mem_root: storage.RemotePath) -> None:
    p = mem_root / "shards" / "param-000001.tar"
    assert p.name == "param-000001.tar" and p.stem == "param-000001" and p.suffix == ".tar"
    assert p.parent == mem_root / "shards"
    assert p.with_name("x.parquet").name == "x.parquet"
    assert str(p.relative_to(mem_root)) == "shards/param-000001.tar"
    assert mem_root.joinpath("a", "b") == mem_root / "a/b"
    with pytest.raises(ValueError):
        _ = mem_root / "../escape"


def test_write_read_list_delete(mem_root: storage.RemotePath) -> None:
    f = mem_root / "a" / "b.txt"
    assert not f.exists()
    atomic_write_text(f, "hello")
    assert f.is_file() and not f.is_dir() and f.read_text() == "hello"
    assert (mem_root / "a").is_dir()
    assert f.stat().st_size == 5
    atomic_write_bytes(mem_root / "a" / "c.tar", b"x")
    assert [c.name for c in (mem_root / "a").iterdir()] == ["b.txt", "c.tar"]
    assert [c.name for c in (mem_root / "a").glob("*.tar")] == ["c.tar"]
    assert storage.sha256(f) == hashlib.sha256(b"hello").hexdigest() == sha256(f)
    f.unlink()
    assert not f.exists()
    f.unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        f.unlink()


def test_atomic_write_leaves_no_temp_keys(mem_root: storage.RemotePath) -> None:
    target = mem_root / "index" / "x.parquet"
    atomic_write_bytes(target, b"v1")
    atomic_write_bytes(target, b"v2")
    assert target.read_bytes() == b"v2"
    assert [c.name for c in (mem_root / "index").iterdir()] == ["x.parquet"]


def test_failed_stream_write_publishes_nothing(mem_root: storage.RemotePath) -> None:
    dest = mem_root / "run" / "manifest.json"
    with pytest.raises(RuntimeError), AtomicFile(dest) as f:
        f.write(b'{"partial": ')
        spool = f.path
        raise RuntimeError("killed mid-write")
    assert not dest.exists() and not spool.exists()
    assert list((mem_root / "run").glob("*")) == []
    with AtomicFile(dest) as f:
        f.write(b"{}")
    assert dest.read_bytes() == b"{}"
    with pytest.raises(ValueError, match="reading only"):
        dest.open("wb")


def test_local_atomic_file_replaces_whole_and_cleans_up(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "manifest.json"
    atomic_write_text(dest, "old")
    with pytest.raises(RuntimeError), AtomicFile(dest) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old"
    assert [p.name for p in dest.parent.iterdir()] == ["manifest.json"]  # no temp left
    with AtomicFile(dest) as f:  # a library writing the temp path itself (parquet, safetensors)
        f.path.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and [p.name for p in dest.parent.iterdir()] == ["manifest.json"]


def test_shard_writer_and_index_on_a_uri(mem_root: storage.RemotePath, tmp_path: Path) -> None:
    """A shard written to a URI has the same bytes as the local one, and resume/audit rules hold."""
    members = {"input.jpg": b"\xff\xd8in", "target.jpg": b"\xff\xd8out", "json": b'{"key":"k_1"}'}
    infos = {}
    for where in (tmp_path / "param-000000.tar", mem_root / "shards" / "param-000000.tar"):
        with TarWriter(where) as w:
            info = w.add("k_1", members)
            shard = w.commit()
        infos[str(where)] = (shard, info)
    (local_shard, info), (remote_shard, _) = infos.values()
    assert local_shard.sha256 == remote_shard.sha256 and local_shard.size == remote_shard.size
    remote_tar = mem_root / "shards" / "param-000000.tar"
    assert remote_tar.read_bytes() == (tmp_path / "param-000000.tar").read_bytes()
    assert [c.name for c in (mem_root / "shards").iterdir()] == ["param-000000.tar"]  # no temp key
    assert [k for k, _ in iter_shard(remote_tar)] == ["k_1"]

    index = mem_root / "index" / "param-000000.parquet"
    assert not shard_is_done(remote_tar, index)  # tar without index: not done (index-last rule)
    write_index(index, remote_shard, [{"key": "k_1", "members": info, "workflow": "param"}])
    assert shard_is_done(remote_tar, index)
    table, meta = read_index(index)
    assert table.num_rows == 1 and meta["tar_sha256"] == remote_shard.sha256
    atomic_write_bytes(remote_tar, b"corrupted")
    assert not shard_is_done(remote_tar, index)


def test_writer_abort_on_uri_leaves_nothing(mem_root: storage.RemotePath) -> None:
    final = mem_root / "shards" / "param-000009.tar"
    with pytest.raises(RuntimeError), TarWriter(final) as w:
        w.add("k_1", {"input.jpg": b"a", "target.jpg": b"b", "json": b"{}"})
        assert w.tmp_path.exists()  # the local spool
        raise RuntimeError("task killed")
    assert not w.tmp_path.exists()
    assert not final.exists()


def test_local_file_downloads_once_and_cleans_up(mem_root: storage.RemotePath) -> None:
    obj = mem_root / "big.bin"
    atomic_write_bytes(obj, b"z" * 3_000_000)
    with storage.local_file(obj) as local:
        assert local.read_bytes() == b"z" * 3_000_000
    assert not local.exists()
