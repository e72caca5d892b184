"""One shard as a deterministic tar: :class:`TarWriter` writes it, :func:`iter_shard` reads it back.

Why this exists: Ray Data's ``write_webdataset`` names files with random UUIDs and stamps wall-clock
mtimes, so equal inputs would not give equal bytes and a half-written shard could look complete.
Shard tasks therefore write tars themselves, through :class:`TarWriter`. (Not ``TarWriter``:
webdataset's ``TarWriter`` splits one stream into many shards; this writes exactly one.)

Byte-level contract of a shard (equal inputs -> byte-identical tar on any machine/run):

* POSIX USTAR headers (``tarfile.USTAR_FORMAT``), no PAX/GNU extension records, so member names are
  limited to 100 bytes (``{key}.{ext}``; keys are short, e.g. ``param_000000042``).
* every member: regular file, ``mtime = 0`` (:data:`FIXED_MTIME`), ``uid = gid = 0``,
  ``uname = gname = ""``, ``mode = 0o644``.
* members of one key are written consecutively, in ascending byte order of their extension
  (``input.jpg`` < ``json`` < ``target.jpg``), whatever the order of the dict given to ``add``.
* the archive ends with two zero blocks and is zero-padded to a multiple of 10240 bytes (the
  conventional tar record size, as GNU tar and Python's ``tarfile`` do).

The resulting files open with plain ``tarfile``, ``tar``, ``webdataset.WebDataset`` and Hugging Face
``datasets`` (webdataset loader): the webdataset key is everything before the first dot, which is why
keys may not contain dots.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from aether_data.io import storage
from aether_data.io.atomic import AtomicFile

__all__ = [
    "BLOCK_SIZE",
    "FIXED_MTIME",
    "KEY_RE",
    "RECORD_SIZE",
    "MemberInfo",
    "ShardFormatError",
    "ShardInfo",
    "TarWriter",
    "UnsafeMemberError",
    "iter_shard",
    "iter_shard_members",
    "read_following_member",
    "sanitize_member_name",
    "split_member_name",
    "validate_key",
]

#: mtime stamped on every member (the Unix epoch): a constant, so bytes never depend on the clock.
FIXED_MTIME = 0
#: permission bits of every member.
FIXED_MODE = 0o644
BLOCK_SIZE = tarfile.BLOCKSIZE  # 512
RECORD_SIZE = tarfile.RECORDSIZE  # 10240
#: USTAR's ``name`` field holds 100 bytes; we never use the ``prefix`` field (no directories).
MAX_MEMBER_NAME_BYTES = 100
#: keys: webdataset groups members by the text before the first dot, so no dots, no separators.
KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_EXT_RE = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_CHUNK = 1 << 20


class UnsafeMemberError(ValueError):
    """A tar member name or type that could escape a directory or is not a plain file."""


class ShardFormatError(ValueError):
    """A tar that is truncated, corrupt, or breaks the flat ``{key}.{ext}`` layout."""


@dataclass(frozen=True)
class MemberInfo:
    """Where one member lives in its shard, so readers can seek to it without scanning the tar."""

    offset: int  # byte offset of the member's 512-byte header
    data_offset: int  # byte offset of the member's data
    size: int  # data size in bytes
    sha256: str  # hex digest of the data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShardInfo:
    """What a committed shard is: recorded in its index so resume can verify it (docs/design.md §1)."""

    name: str  # file name without ``.tar``, e.g. ``param-000003``
    path: storage.AnyPath  # a local Path, or a RemotePath for URI outputs (s3://...)
    samples: int
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# --------------------------------------------------------------------------------------------------
# names


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid sample key (``^[A-Za-z0-9_\\-]+$``), else raise ValueError."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"invalid sample key {key!r}: must match {KEY_RE.pattern}")
    return key


def sanitize_member_name(name: str) -> str:
    """Return ``name`` unchanged if it is a safe flat member name, else raise UnsafeMemberError.

    Shards are flat (no directories), so anything that could address another place on extraction
    (absolute paths, drive letters, ``..``, any path separator, NUL/control characters) is refused,
    on writing and on reading alike.
    """
    if not isinstance(name, str) or not name:
        raise UnsafeMemberError(f"empty or non-string member name {name!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UnsafeMemberError(f"control character in member name {name!r}")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise UnsafeMemberError(f"absolute member name {name!r}")
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        raise UnsafeMemberError(f"'..' in member name {name!r}")
    if len(parts) > 1:
        raise UnsafeMemberError(f"path separator in member name {name!r} (shards are flat)")
    if name in (".",) or name.startswith("."):
        raise UnsafeMemberError(f"member name {name!r} has no key")
    if len(name.encode("utf-8")) > MAX_MEMBER_NAME_BYTES:
        raise UnsafeMemberError(f"member name {name!r} longer than {MAX_MEMBER_NAME_BYTES} bytes")
    return name


def split_member_name(name: str) -> tuple[str, str]:
    """Split ``{key}.{ext}`` at the first dot, the way webdataset groups members."""
    key, dot, ext = name.partition(".")
    if not dot or not key or not ext:
        raise ShardFormatError(f"member {name!r} is not of the form '{{key}}.{{ext}}'")
    return key, ext


# --------------------------------------------------------------------------------------------------
# small file helpers


# --------------------------------------------------------------------------------------------------
# writer


def _member_header(name: str, size: int) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = FIXED_MTIME
    ti.mode = FIXED_MODE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    buf = ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    if len(buf) != BLOCK_SIZE:  # pragma: no cover - USTAR headers are always one block
        raise ShardFormatError(f"unexpected header length {len(buf)} for {name!r}")
    return buf


class TarWriter:
    """Write one shard to a ``.tmp-`` file and publish it atomically on :meth:`commit`.

    Use as a context manager: leaving the block without ``commit()`` (normally or by an exception)
    deletes the temp file, so a killed or failed task never leaves a partial ``.tar`` behind.
    For a URI destination (``s3://...``) the temp file is a local spool, uploaded on commit to a
    temp key and moved onto the final key (``storage`` module), so the object appears whole or not.
    """

    def __init__(self, final_path: str | os.PathLike[str] | storage.RemotePath) -> None:
        self.final_path: storage.AnyPath = storage.as_path(final_path)
        if self.final_path.suffix != ".tar":
            raise ValueError(f"shard path must end in .tar: {self.final_path}")
        self._out: AtomicFile | None = AtomicFile(self.final_path)
        self.tmp_path = self._out.path
        self._out.file  # noqa: B018 - create the temp file now: a task killed later leaves a .tmp-
        self._hash = hashlib.sha256()
        self._pos = 0
        self._keys: set[str] = set()
        self._samples = 0
        self._info: ShardInfo | None = None

    # context manager --------------------------------------------------------------------------
    def __enter__(self) -> TarWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._info is None:
            self.abort()

    # writing ----------------------------------------------------------------------------------
    def _write(self, data: bytes | memoryview) -> None:
        assert self._out is not None
        self._out.write(data)
        self._hash.update(data)
        self._pos += len(data)

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def bytes_written(self) -> int:
        """Bytes of the archive written so far (into the temp file until commit)."""
        return self._pos

    def add(self, key: str, members: Mapping[str, bytes]) -> dict[str, MemberInfo]:
        """Append one sample: ``members`` maps extension (``"input.jpg"``, ``"json"``) to bytes.

        Members are written in ascending byte order of the extension. Returns, per extension, where
        the member landed (header offset, data offset, size, sha256) for the shard index.
        """
        if self._out is None:
            raise RuntimeError("TarWriter is closed (committed or aborted)")
        validate_key(key)
        if key in self._keys:
            raise ValueError(f"duplicate key {key!r} in shard {self.final_path.name}")
        if not members:
            raise ValueError(f"sample {key!r} has no members")
        prepared: list[tuple[str, str, bytes | bytearray | memoryview]] = []
        for ext in sorted(members, key=lambda e: e.encode("utf-8")):
            data = members[ext]
            if not isinstance(ext, str) or not _EXT_RE.match(ext):
                raise UnsafeMemberError(f"invalid member extension {ext!r} for key {key!r}")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"member {key}.{ext} must be bytes, got {type(data).__name__}")
            prepared.append((ext, sanitize_member_name(f"{key}.{ext}"), data))
        # all validation done before the first byte is written, so a rejected sample leaves no trace
        out: dict[str, MemberInfo] = {}
        for ext, name, data in prepared:
            view = memoryview(data).cast("B")
            size = view.nbytes
            offset = self._pos
            self._write(_member_header(name, size))
            data_offset = self._pos
            self._write(view)
            pad = -size % BLOCK_SIZE
            if pad:
                self._write(b"\0" * pad)
            out[ext] = MemberInfo(offset, data_offset, size, hashlib.sha256(view).hexdigest())
        self._keys.add(key)
        self._samples += 1
        return out

    def commit(self) -> ShardInfo:
        """Finish the archive and publish it atomically (``io.atomic``: fsync, then rename or move)."""
        if self._info is not None:
            return self._info
        if self._out is None:
            raise RuntimeError("TarWriter was aborted")
        try:
            self._write(b"\0" * (2 * BLOCK_SIZE))  # end-of-archive marker
            pad = -self._pos % RECORD_SIZE
            if pad:
                self._write(b"\0" * pad)
        except BaseException:
            self.abort()
            raise
        out, self._out = self._out, None
        out.commit()
        self._info = ShardInfo(
            name=self.final_path.name[: -len(".tar")],
            path=self.final_path,
            samples=self._samples,
            size=self._pos,
            sha256=self._hash.hexdigest(),
        )
        return self._info

    def abort(self) -> None:
        """Delete the temp file (idempotent); the final path is never touched."""
        if self._out is not None:
            out, self._out = self._out, None
            out.abort()


# --------------------------------------------------------------------------------------------------
# reader


def _check_member(ti: tarfile.TarInfo) -> str:
    name = sanitize_member_name(ti.name)
    if ti.issym() or ti.islnk():
        raise UnsafeMemberError(f"link member {ti.name!r} -> {ti.linkname!r} refused")
    if ti.isdev() or ti.isdir() or not ti.isreg() or ti.issparse():
        raise UnsafeMemberError(f"non-regular member {ti.name!r} (type {ti.type!r}) refused")
    return name


def _check_trailer(f: io.BufferedReader, offset: int) -> None:
    """Everything after the last member must be zeros, at least the two end-of-archive blocks.

    ``tarfile`` silently stops at a corrupt header or at a cut exactly on a member boundary; this
    check turns both into errors instead of a silently shorter shard.
    """
    f.seek(offset)
    seen = 0
    while chunk := f.read(_CHUNK):
        if chunk.count(0) != len(chunk):
            raise ShardFormatError(f"corrupt tar: unreadable member header or stray data at offset {offset}")
        seen += len(chunk)
    if seen < 2 * BLOCK_SIZE:
        raise ShardFormatError(f"truncated tar: no end-of-archive marker at offset {offset}")


def iter_shard_members(
    path: str | os.PathLike[str], *, require_end_marker: bool = True
) -> Iterator[tuple[str, dict[str, tuple[MemberInfo, bytes]]]]:
    """Like :func:`iter_shard`, but each member also carries its :class:`MemberInfo`.

    Used by audit to compare the tar with its index while streaming (one sample in memory). A URI
    is downloaded to a local temp file first (tar reading needs random access).
    """
    if storage.is_uri(path):
        with storage.local_file(path) as local:
            yield from iter_shard_members(local, require_end_marker=require_end_marker)
        return
    with open(path, "rb") as f, open(path, "rb") as tail:
        try:
            tf = tarfile.open(fileobj=f, mode="r:")
        except tarfile.ReadError as e:
            raise ShardFormatError(f"unreadable tar {os.fspath(path)}: {e}") from e
        with tf:
            cur_key: str | None = None
            cur: dict[str, tuple[MemberInfo, bytes]] = {}
            try:
                while (ti := tf.next()) is not None:
                    name = _check_member(ti)
                    key, ext = split_member_name(name)
                    if not KEY_RE.match(key):
                        raise ShardFormatError(f"member {name!r} has an invalid key")
                    if key != cur_key:
                        if cur_key is not None:
                            yield cur_key, cur
                        cur_key, cur = key, {}
                    if ext in cur:
                        raise ShardFormatError(f"duplicate member {name!r}")
                    fh = tf.extractfile(ti)
                    assert fh is not None  # regular file checked above
                    data = fh.read()
                    if len(data) != ti.size:
                        raise ShardFormatError(f"truncated tar: member {name!r} is short")
                    info = MemberInfo(ti.offset, ti.offset_data, ti.size, hashlib.sha256(data).hexdigest())
                    cur[ext] = (info, data)
                    # tarfile caches every TarInfo; drop them so memory stays flat on huge shards
                    tf.members.clear()
            except tarfile.TarError as e:
                raise ShardFormatError(f"truncated or corrupt tar {os.fspath(path)}: {e}") from e
            if require_end_marker:
                _check_trailer(tail, tf.offset)
            if cur_key is not None:
                yield cur_key, cur


def read_following_member(
    f: Any, data_offset: int, size: int, name: str, max_size: int = 64 << 20
) -> bytes | None:
    """The bytes of the member that directly follows the one whose data is at ``data_offset``
    (``size`` bytes) in the open tar ``f``, if that member is the regular file ``name``; else None.

    Why: the index records where a sample's input, target and JSON lie, not members that only some
    workflows add (``index.OPTIONAL_MEMBERS``); members are written in byte order of their
    extension, so the region workflow's ``masks.png`` is the one after ``json``, and a reader of a
    few samples (the report) can fetch it by offset instead of walking the whole shard. A header
    that does not parse, another name, a non-regular member, a member over ``max_size`` or a
    short read all give None: the caller shows the sample without it.
    """
    pos = data_offset + size + (-size % BLOCK_SIZE)
    f.seek(pos)
    try:
        ti = tarfile.TarInfo.frombuf(f.read(BLOCK_SIZE), "utf-8", "surrogateescape")
    except tarfile.TarError:
        return None
    if ti.name != name or not ti.isreg() or ti.size > max_size:
        return None
    f.seek(pos + BLOCK_SIZE)
    data = f.read(ti.size)
    return data if len(data) == ti.size else None


def iter_shard(
    path: str | os.PathLike[str], *, require_end_marker: bool = True
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {ext: bytes})`` per sample, grouping consecutive members by key.

    Refuses (UnsafeMemberError) absolute names, ``..``, separators, links, devices and any other
    non-regular member; raises ShardFormatError on truncation or corruption, including a missing
    end-of-archive marker (set ``require_end_marker=False`` for tars written by other tools).
    """
    for key, members in iter_shard_members(path, require_end_marker=require_end_marker):
        yield key, {ext: data for ext, (_, data) in members.items()}
