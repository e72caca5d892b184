"""Where datasets live: local paths or object-store / remote-filesystem URIs, behind one small API.

Why: a million-pair build writes to S3/GCS from many nodes, and the audit must run on the same URI.
Local paths keep using plain ``pathlib`` + ``os`` (their behaviour and bytes are unchanged); URIs
(``s3://bucket/run``, ``gs://...``, ``hdfs://...``, or any fsspec protocol such as ``memory://``) go
through a pyarrow filesystem, wrapped in :class:`RemotePath`, a pathlib-like object with the handful
of methods the writer, index, manifest and audit code use.

Commit rule on object stores (implemented in ``aether_data.io.atomic``; the local rule is temp file
+ ``os.replace``):

* An object store has no atomic rename, but a single PUT (or a completed multipart upload) and a
  server-side copy are atomic for the destination key: readers see no object or the whole object.
* Every file aether commits (shard tar, index, manifest, plan) is therefore uploaded to a temporary
  key ``{dir}/.tmp-{name}.{pid}-{token}`` in the same "directory" and then moved (server-side
  copy + delete) onto its final key. A task killed mid-upload leaves only a ``.tmp-`` key, which
  the next build deletes and ``aether audit`` reports as a warning; it never leaves a partial
  final key.
* Order gives the rest: a shard's tar is committed before its index, and a shard is done only when
  its index exists and records the tar's size and sha256 (``dataset.index.shard_is_done``); the manifest
  is written last. A reader that trusts the manifest (or an index) therefore never sees a partial
  dataset, on any store.

Object-store configuration comes from the standard environment of each node (every Ray worker needs
it too): ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or instance credentials),
``AWS_REGION``, and ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3-compatible servers
(MinIO, Ceph, moto): ``http://host:port``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pyarrow.fs as pafs

__all__ = [
    "TMP_PREFIX",
    "AnyPath",
    "RemotePath",
    "as_path",
    "filesystem_for",
    "is_uri",
    "local_file",
    "open_input",
    "read_bytes",
    "remove_tree",
    "sha256",
]

#: prefix of every temporary file or key; leftovers of killed tasks are recognised by it.
TMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$")
#: schemes that ``pathlib.Path`` may have collapsed to ``scheme:/...`` (a CLI option typed as Path).
_KNOWN_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "memory", "http", "https")
_COLLAPSED_RE = re.compile(rf"^({'|'.join(_KNOWN_SCHEMES)}):/(?!/)(.*)$")


def _restore(text: str) -> str:
    """Undo pathlib's collapsing of ``s3://b/k`` into ``s3:/b/k`` (a Path-typed CLI argument)."""
    m = _COLLAPSED_RE.match(text)
    return f"{m.group(1)}://{m.group(2)}" if m else text


def is_uri(path: str | os.PathLike[str] | RemotePath) -> bool:
    """True for ``scheme://...`` (other than ``file://``): paths that need a remote filesystem."""
    if isinstance(path, RemotePath):
        return True
    m = _URI_RE.match(_restore(os.fspath(path)))
    return bool(m) and m.group(1).lower() != "file"


def _endpoint_from_env() -> tuple[str | None, str | None]:
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        return None, None
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return parts.netloc, parts.scheme


@lru_cache(maxsize=16)
def _s3(endpoint: str | None, scheme: str | None, region: str | None) -> pafs.FileSystem:
    kwargs: dict[str, Any] = {}
    if endpoint:
        # an explicit region avoids a region lookup (a network call) against a custom endpoint
        kwargs.update(endpoint_override=endpoint, scheme=scheme or "https", region=region or "us-east-1")
    elif region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


@lru_cache(maxsize=16)
def _fsspec(protocol: str) -> pafs.FileSystem:
    import fsspec  # optional: only for schemes pyarrow has no native filesystem for

    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(protocol)))


def filesystem_for(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem serving ``uri`` and the path inside it (``bucket/key`` for S3).

    S3 is configured from the environment (see the module docstring); other schemes use pyarrow's
    own filesystems when it has one (gs, hdfs) and fsspec otherwise (memory, abfs, ...).
    """
    m = _URI_RE.match(_restore(uri))
    if not m:
        raise ValueError(f"not a URI: {uri!r}")
    scheme, rest = m.group(1).lower(), m.group(2).rstrip("/")
    if scheme in ("s3", "s3a"):
        endpoint, ep_scheme = _endpoint_from_env()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return _s3(endpoint, ep_scheme, region), rest
    if scheme in ("gs", "gcs", "hdfs", "viewfs"):
        fs, path = pafs.FileSystem.from_uri(f"{scheme}://{rest}")
        return fs, path
    return _fsspec(scheme), rest


@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime_ns: int


class RemotePath:
    """A pathlib-like handle on ``scheme://path``: joins, names, existence, listing, reads, writes.

    Only what aether's writer/index/manifest/audit code needs; writes are atomic (temp key + move).
    """

    __slots__ = ("_fs", "_path", "_scheme")

    def __init__(self, uri: str, *, _fs: pafs.FileSystem | None = None, _path: str | None = None) -> None:
        m = _URI_RE.match(_restore(str(uri)))
        if not m:
            raise ValueError(f"not a URI: {uri!r}")
        self._scheme = m.group(1).lower()
        if _fs is None or _path is None:
            _fs, _path = filesystem_for(f"{self._scheme}://{m.group(2)}")
        self._fs, self._path = _fs, _path.rstrip("/")

    # identity ---------------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self._scheme}://{self._path}"

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: RemotePath) -> bool:
        return str(self) < str(other)

    @property
    def fs(self) -> pafs.FileSystem:
        return self._fs

    @property
    def fs_path(self) -> str:
        """The path inside :attr:`fs` (``bucket/key`` on S3)."""
        return self._path

    # pure path operations ---------------------------------------------------------------------------
    def _child(self, path: str) -> RemotePath:
        return RemotePath(f"{self._scheme}://{path}", _fs=self._fs, _path=path)

    def __truediv__(self, part: str | os.PathLike[str]) -> RemotePath:
        rel = PurePosixPath(os.fspath(part))
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"cannot join {part!r} onto {self}")
        return self._child(f"{self._path}/{rel.as_posix()}" if rel.parts else self._path)

    def joinpath(self, *parts: str) -> RemotePath:
        out = self
        for p in parts:
            out = out / p
        return out

    @property
    def name(self) -> str:
        return PurePosixPath(self._path).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self._path).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self._path).suffix

    @property
    def parent(self) -> RemotePath:
        return self._child(str(PurePosixPath(self._path).parent))

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def relative_to(self, other: RemotePath | str) -> PurePosixPath:
        base = other if isinstance(other, RemotePath) else RemotePath(str(other))
        return PurePosixPath(self._path).relative_to(base._path)

    # queries ----------------------------------------------------------------------------------------
    def _info(self) -> pafs.FileInfo:
        return self._fs.get_file_info(self._path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def stat(self) -> _Stat:
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(str(self))
        mtime = info.mtime_ns if info.mtime_ns is not None else 0
        return _Stat(int(info.size or 0), int(mtime))

    def iterdir(self) -> Iterator[RemotePath]:
        sel = pafs.FileSelector(self._path, allow_not_found=True, recursive=False)
        for info in sorted(self._fs.get_file_info(sel), key=lambda i: i.path):
            yield self._child(info.path.rstrip("/"))

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Direct children whose name matches ``pattern`` (no ``**``, no subdirectories)."""
        if "/" in pattern:
            raise ValueError("RemotePath.glob matches names in one directory only")
        for child in self.iterdir():
            if fnmatch.fnmatchcase(child.name, pattern):
                yield child

    # reading ----------------------------------------------------------------------------------------
    def open(self, mode: str = "rb") -> BinaryIO:
        """A buffered reader. Writing goes through ``aether_data.io.atomic`` (temp key, then move)."""
        if mode == "rb":
            return self._fs.open_input_stream(self._path, buffer_size=_CHUNK)  # type: ignore[return-value]
        raise ValueError(
            f"unsupported mode {mode!r}: RemotePath opens for reading only; write with AtomicFile"
        )

    def read_bytes(self) -> bytes:
        with self._fs.open_input_stream(self._path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    # writing ----------------------------------------------------------------------------------------
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no directories; filesystems (hdfs, memory) get a real one."""
        try:
            self._fs.create_dir(self._path, recursive=parents)
        except OSError:
            if not exist_ok:
                raise

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._fs.delete_file(self._path)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError:
            if not missing_ok or self.exists():
                raise


AnyPath = Path | RemotePath


def as_path(path: str | os.PathLike[str] | RemotePath) -> AnyPath:
    """A local ``Path`` for local paths (and ``file://``), a :class:`RemotePath` for other URIs."""
    if isinstance(path, RemotePath):
        return path
    text = _restore(os.fspath(path))
    m = _URI_RE.match(text)
    if not m:
        return Path(path) if isinstance(path, PurePath) else Path(text)
    if m.group(1).lower() == "file":
        return Path(urlsplit(text).path)
    return RemotePath(text)


def open_input(path: AnyPath | str) -> BinaryIO:
    """A binary reader for a local path or URI (use as a context manager)."""
    p = as_path(path)
    return p.open("rb") if isinstance(p, RemotePath) else open(p, "rb")


def read_bytes(path: AnyPath | str) -> bytes:
    """Whole content of a local file or remote object."""
    return as_path(path).read_bytes()


def sha256(path: AnyPath | str) -> str:
    """Hex sha256 of a file or object, streamed in 1 MiB chunks (memory stays flat)."""
    h = hashlib.sha256()
    with open_input(path) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def local_file(path: AnyPath | str) -> Iterator[Path]:
    """A local path holding ``path``'s bytes: the file itself, or a temporary download of an object.

    Code that needs random access (tar readers, checksum + parse of the same shard) then reads a
    remote shard once, whatever its size, with one sample in memory at a time.
    """
    p = as_path(path)
    if isinstance(p, Path):
        yield p
        return
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=p.suffix)
    try:
        with os.fdopen(fd, "wb") as out, p.open("rb") as src:
            shutil.copyfileobj(src, out, 8 * _CHUNK)
        yield Path(name)
    finally:
        os.unlink(name)


def remove_tree(path: AnyPath | str) -> None:
    """Delete a directory tree or object prefix and everything under it (missing is fine)."""
    p = as_path(path)
    if isinstance(p, Path):
        shutil.rmtree(p, ignore_errors=True)
        return
    try:
        p.fs.delete_dir(p.fs_path)
    except OSError:  # FileNotFoundError included: nothing to delete
        pass
