"""The one way aether publishes a file: write a temp file, fsync it, move it onto its name.

Why: a reader (resume, audit, a trainer streaming shards) must see either the old file or the whole
new one, never a torn write, on a local disk and on an object store alike. Every writer in the
project (shards, indexes, plan, manifest, reports, caches, checkpoints) goes through
:class:`AtomicFile`, so the rule lives in one place:

* local: temp file ``.tmp-{name}.{pid}-{token}`` in the destination's directory (``os.replace``
  must not cross filesystems), fsync, ``os.replace``, fsync the directory;
* URI (``s3://…``): the temp file is a local spool; on commit it is uploaded to a temp key beside
  the destination and moved server-side onto the final key (the ``storage`` module explains why an
  object then appears whole or not at all).

A killed process leaves only ``.tmp-`` names, which the next build deletes and ``aether audit``
reports.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from aether_data.io import storage
from aether_data.io.storage import TMP_PREFIX, AnyPath, RemotePath

__all__ = ["TMP_PREFIX", "AtomicFile", "atomic_write_bytes", "atomic_write_text", "tmp_name"]

_CHUNK = 8 << 20


def tmp_name(final_name: str) -> str:
    """A temp name unique per process and call, recognisable by its prefix."""
    return f"{TMP_PREFIX}{final_name}.{os.getpid()}-{secrets.token_hex(4)}"


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not every platform/filesystem allows opening a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _upload(local: Path, dest: RemotePath) -> None:
    """Upload a finished local file to a temp key, then move it onto ``dest``."""
    tmp = dest.with_name(tmp_name(dest.name))
    try:
        with open(local, "rb") as src, dest.fs.open_output_stream(tmp.fs_path) as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        dest.fs.move(tmp.fs_path, dest.fs_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class AtomicFile:
    """A file that appears at ``dest`` whole on :meth:`commit`, or not at all.

    Write through :meth:`write` (or :attr:`file`), or hand :attr:`path` to a library that writes a
    path itself (parquet, safetensors) and then commit. As a context manager it commits when the
    block ends normally and discards the temp file when it raises.
    """

    def __init__(self, dest: str | os.PathLike[str] | AnyPath) -> None:
        self.dest: AnyPath = storage.as_path(dest)
        if isinstance(self.dest, RemotePath):
            self.path = Path(tempfile.gettempdir()) / tmp_name(self.dest.name)
        else:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.path = self.dest.with_name(tmp_name(self.dest.name))
        self._file: BinaryIO | None = None
        self.done = False

    @property
    def file(self) -> BinaryIO:
        """The temp file, opened for writing on first use."""
        if self._file is None:
            if self.done:
                raise RuntimeError(f"{self.dest} is already committed or aborted")
            self._file = open(self.path, "xb")
        return self._file

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self.file.write(data)

    def commit(self) -> AnyPath:
        """Flush, fsync and move the temp file onto ``dest``; on any error the temp is removed."""
        if self.done:
            raise RuntimeError(f"{self.dest} is already committed or aborted")
        try:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
            else:
                with open(self.path, "rb+") as f:  # written by a library through `path`
                    os.fsync(f.fileno())
            if isinstance(self.dest, RemotePath):
                _upload(self.path, self.dest)
                self.path.unlink(missing_ok=True)
            else:
                os.replace(self.path, self.dest)
                _fsync_dir(self.dest.parent)
        except BaseException:
            self.abort()
            raise
        self.done = True
        return self.dest

    def abort(self) -> None:
        """Close and delete the temp file (idempotent); ``dest`` is never touched."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if not self.done:
            self.done = True
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def atomic_write_bytes(path: str | os.PathLike[str] | AnyPath, data: bytes) -> AnyPath:
    """Write ``data`` so readers see the old file (or object) or the complete new one."""
    with AtomicFile(path) as f:
        f.write(data)
    return f.dest


def atomic_write_text(path: str | os.PathLike[str] | AnyPath, text: str) -> AnyPath:
    """UTF-8 text variant of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))
