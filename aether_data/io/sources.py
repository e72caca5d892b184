"""Where inputs come from: the bundled photographs, folders, source lists, URLs and object stores.

Why: a million-pair build starts from a list, not a folder: a parquet/CSV/TSV of local paths, object
store URIs or http(s) URLs, such as the Unsplash Lite dataset's ``photos.tsv000`` (column
``photo_image_url``). Lists may themselves live on http(s) or an object store. Downloads are
bounded (timeout, size cap) and retried with exponential backoff on transient failures (timeouts,
connection errors, HTTP 408/425/429/5xx); a URL that still fails becomes a counted skip reason
(``http-404``, ``timeout``, ``unreachable``, ...) in the manifest, never a failed build.

Settings (environment, read on each worker): ``AETHER_HTTP_TIMEOUT`` (seconds per attempt, the
body included, default 30), ``AETHER_HTTP_RETRIES`` (extra attempts, default 3),
``AETHER_HTTP_BACKOFF`` (first backoff in seconds, doubling, default 0.5),
``AETHER_HTTP_MAX_BYTES`` (default 256 MiB).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

from aether_data.io import storage
from aether_data.io.errors import SourceError
from aether_data.io.imaging import IMAGE_EXTENSIONS
from aether_data.resources import data_path

__all__ = [
    "LIST_COLUMNS",
    "PHOTOS_DIR",
    "FetchSettings",
    "bundled_license",
    "bundled_photos",
    "fetch",
    "is_http",
    "is_list_name",
    "list_sources",
    "parse_list",
    "read_list",
    "read_source_bytes",
]

PHOTOS_DIR = data_path("photos")
"""The embedded default sources (public-domain / CC0 photographs shipped with scikit-image)."""

PATH_COLUMNS: tuple[str, ...] = ("path", "uri", "url", "file", "filename", "image")
"""Column names recognised (in this order) in .csv/.tsv/.parquet source lists."""

# --------------------------------------------------------------------------------------------------
# bundled photographs


def bundled_photos() -> list[Path]:
    """The embedded photographs (sorted), so every command has real inputs without a download."""
    return sorted(p for p in PHOTOS_DIR.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


@lru_cache(maxsize=1)
def _bundled_sources() -> dict[str, dict[str, str]]:
    entries = json.loads((PHOTOS_DIR / "sources.json").read_text(encoding="utf-8"))
    return {e["file"]: e for e in entries}


def bundled_license(path: str | Path) -> str | None:
    """Licence of a bundled photograph as stated by its origin; None for any other file."""
    p = Path(path)
    if p.resolve().parent != PHOTOS_DIR:
        return None
    entry = _bundled_sources().get(p.name)
    return None if entry is None else entry["license"]


#: columns holding the image location, in order of preference (Unsplash Lite's first).
LIST_COLUMNS: tuple[str, ...] = ("photo_image_url", *PATH_COLUMNS)
_LIST_NAME_RE = re.compile(r"\.(txt|csv|tsv|parquet)(\d{3})?$", re.IGNORECASE)
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "aether-data (+https://github.com/; dataset builder)"


def is_http(uri: str) -> bool:
    """True for http:// and https:// URLs."""
    return uri[:8].lower().startswith(("http://", "https://"))


def is_list_name(name: str) -> bool:
    """``.txt/.csv/.tsv/.parquet`` and split files such as Unsplash Lite's ``photos.tsv000``."""
    return bool(_LIST_NAME_RE.search(name))


@dataclass(frozen=True)
class FetchSettings:
    """Timeout, retries and size cap for one download (defaults from the environment)."""

    timeout_s: float = field(default_factory=lambda: float(os.environ.get("AETHER_HTTP_TIMEOUT", "30")))
    retries: int = field(default_factory=lambda: int(os.environ.get("AETHER_HTTP_RETRIES", "3")))
    backoff_s: float = field(default_factory=lambda: float(os.environ.get("AETHER_HTTP_BACKOFF", "0.5")))
    max_bytes: int = field(
        default_factory=lambda: int(os.environ.get("AETHER_HTTP_MAX_BYTES", str(256 << 20)))
    )


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: a list or image URL may not lead to ftp:// or file://."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        target = urljoin(req.full_url, newurl)
        if not is_http(target):
            raise SourceError(
                "bad-redirect", req.full_url, f"redirect to {target!r} (only http(s) is followed)"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Watch:
    """The deadline of one download attempt: when it passes, the attempt's socket is shut down, which
    ends any read in progress (connect, status line, headers or body) at once."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.sock: socket.socket | None = None
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        self._shut()

    def _shut(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def attach(self, sock: socket.socket | None) -> None:
        self.sock = sock
        if self.fired:
            self._shut()


_WATCH = threading.local()


def _watched(cls: type) -> type:
    class Watched(cls):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            watch = getattr(_WATCH, "current", None)
            if watch is not None:
                watch.attach(self.sock)

    return Watched


_WatchedHTTPConnection = _watched(http.client.HTTPConnection)
_WatchedHTTPSConnection = _watched(http.client.HTTPSConnection)


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):  # type: ignore[no-untyped-def]
        return self.do_open(_WatchedHTTPConnection, req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):  # type: ignore[no-untyped-def]
        kw = {"context": self._context}
        if getattr(self, "_check_hostname", None) is not None:  # Python < 3.12
            kw["check_hostname"] = self._check_hostname
        return self.do_open(_WatchedHTTPSConnection, req, **kw)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects, _WatchedHTTPHandler, _WatchedHTTPSHandler)


def _read_capped(resp: object, url: str, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    """The body, at most ``max_bytes``, read before ``deadline`` (a server that drips bytes is cut off)."""
    length = getattr(resp, "headers", {}).get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise SourceError("too-large", url, f"{length} bytes > {max_bytes}")
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"download not finished within {timeout_s}s")
        chunk = resp.read1(1 << 16)  # type: ignore[attr-defined]  # what is there, not a full buffer
        if not chunk:
            if time.monotonic() > deadline:  # the deadline's timer shut the socket: not an end of body
                raise TimeoutError(f"download not finished within {timeout_s}s")
            if length is not None and length.isdigit() and total != int(length):
                raise http.client.IncompleteRead(b"", int(length) - total)
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise SourceError("too-large", url, f"more than {max_bytes} bytes")
        chunks.append(chunk)


def fetch(url: str, settings: FetchSettings | None = None) -> bytes:
    """Download ``url`` to bytes: a total deadline per attempt, retries with exponential backoff.

    Each attempt must finish within ``timeout_s`` in total (connect, status, headers and body: a
    timer shuts the socket down at the deadline, so a server that drips a byte at a time is cut off
    too). Redirects are followed to http(s) only and the body is capped at ``max_bytes``.
    Raises SourceError with reason ``http-{status}`` (non-retryable status, or retryable one that
    persisted), ``timeout``, ``unreachable`` (DNS, refused, reset), ``bad-redirect`` or ``too-large``.
    """
    s = settings or FetchSettings()
    if not is_http(url):
        raise SourceError("bad-url", url, "only http(s) URLs are downloaded")
    last: SourceError | None = None
    for attempt in range(s.retries + 1):
        if attempt:
            time.sleep(s.backoff_s * (2 ** (attempt - 1)))
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        deadline = time.monotonic() + s.timeout_s
        watch = _Watch(s.timeout_s)
        _WATCH.current = watch
        watch.timer.start()
        try:
            with _OPENER.open(req, timeout=s.timeout_s) as resp:
                return _read_capped(resp, url, s.max_bytes, deadline, s.timeout_s)
        except urllib.error.HTTPError as exc:
            last = SourceError(f"http-{exc.code}", url, str(exc.reason))
            if exc.code not in _RETRY_STATUS:
                raise last from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            if watch.fired or isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
                last = SourceError("timeout", url, f"not finished within {s.timeout_s}s")
            else:  # DNS, refused, reset mid-body, incomplete read, ...
                last = SourceError("unreachable", url, str(reason))
        finally:
            watch.timer.cancel()
            _WATCH.current = None
    assert last is not None
    raise last


def read_source_bytes(uri: str, settings: FetchSettings | None = None) -> bytes:
    """The raw bytes of one source: local path, http(s) URL or object-store URI.

    Errors are SourceErrors with a reason, so the caller counts them as skipped inputs.
    """
    if is_http(uri):
        return fetch(uri, settings)
    try:
        return storage.read_bytes(uri)
    except FileNotFoundError:
        raise SourceError("not-found", uri) from None
    except IsADirectoryError:
        raise SourceError("decode-error", uri, "is a directory") from None
    except PermissionError as exc:
        raise SourceError("unreadable", uri, str(exc)) from None
    except OSError as exc:
        reason = (
            "not-found"
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower()
            else "unreachable"
        )
        raise SourceError(reason, uri, str(exc)) from None


def _pick_column(header: Sequence[str]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    return next((lowered.index(c) for c in LIST_COLUMNS if c in lowered), None)


def parse_list(data: bytes, name: str) -> list[str]:
    """Entries of a source list given its bytes; the format comes from ``name``'s suffix.

    ``.txt``: one entry per line, ``#`` comments. ``.csv`` / ``.tsv`` / ``.tsvNNN`` / ``.parquet``:
    the first column named one of :data:`LIST_COLUMNS` (``photo_image_url`` first, then ``path``,
    ``uri``, ``url``, ...), else the first column (CSV/TSV without a known header: every row).
    """
    m = _LIST_NAME_RE.search(name)
    if not m:
        raise ValueError(f"{name}: not a source list (.txt, .csv, .tsv, .tsvNNN, .parquet)")
    kind = m.group(1).lower()
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
        idx = _pick_column(table.column_names)
        col = table.column(idx if idx is not None else 0)
        return [str(v) for v in col.to_pylist() if v]
    text = data.decode("utf-8-sig")
    if kind == "txt":
        return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    delimiter = "\t" if kind == "tsv" else ","
    # Unsplash's TSVs are not quoted; a stray quote must not swallow the following rows
    quoting = csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL
    rows = [
        r for r in csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting) if r and r[0].strip()
    ]
    if not rows:
        return []
    idx = _pick_column(rows[0])
    if idx is None:
        return [r[0].strip() for r in rows]
    return [r[idx].strip() for r in rows[1:] if len(r) > idx and r[idx].strip()]


def _resolve(entry: str, base: str) -> str:
    """Relative entries are resolved against the list's own location (folder, URL or prefix).

    A remote list (http(s), object store) may name only remote sources: its entries resolve
    against it (``/a.jpg`` on ``http://host/l.txt`` is ``http://host/a.jpg``), and ``file://`` or
    another scheme that would reach this machine's files is refused.
    """
    if is_http(base):
        resolved = urljoin(base, entry)
        if not is_http(resolved):
            raise SourceError("unsafe-entry", base, f"entry {entry!r} is not an http(s) URL")
        return resolved
    if storage.is_uri(base):
        if "://" in entry:
            if entry.lower().startswith("file:") or not (is_http(entry) or storage.is_uri(entry)):
                raise SourceError("unsafe-entry", base, f"entry {entry!r} names a local file")
            return entry
        return str(storage.as_path(base).parent / entry.lstrip("/"))
    if "://" in entry or entry.startswith("/"):
        return entry
    return str(PurePosixPath(base).parent / entry) if "/" in base else entry


def read_list(location: str, settings: FetchSettings | None = None) -> list[str]:
    """Read a source list from a local path, an http(s) URL or an object-store URI.

    Raises SourceError (``not-found``, ``http-404``, ...) when the list itself cannot be read:
    unlike a bad image, a missing list is fatal to the build and reported as such by the caller.
    """
    name = urlsplit(location).path if is_http(location) else location
    return [_resolve(e, location) for e in parse_list(read_source_bytes(location, settings), name)]


def list_remote(uri: str, settings: FetchSettings | None = None) -> list[str]:
    """Expand a URI ``--sources`` argument: a list file, an object-store prefix, or one image URL.

    A prefix (``s3://bucket/photos``) is listed recursively for image extensions, sorted, hidden
    names skipped, like a local folder.
    """
    name = urlsplit(uri).path if is_http(uri) else uri
    if is_list_name(name):
        return read_list(uri, settings)
    if is_http(uri):
        return [uri]
    root = storage.as_path(uri)
    assert isinstance(root, storage.RemotePath)
    if root.is_file():
        return [uri]
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(root.fs_path, allow_not_found=True, recursive=True)
    found = []
    for info in root.fs.get_file_info(sel):
        rel = PurePosixPath(info.path).relative_to(root.fs_path)
        if (
            info.type == pafs.FileType.File
            and rel.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith(".") for part in rel.parts)
        ):
            found.append(str(root / rel.as_posix()))
    if not found and not root.exists():
        raise SourceError("not-found", uri)
    return sorted(found)


# --------------------------------------------------------------------------------------------------
# listing


def _walk_folder(root: Path, rejected: list[tuple[str, str]] | None) -> list[Path]:
    """Image files under ``root`` (hidden entries skipped). Names that are not valid UTF-8 (they could
    not be stored in the plan) and links that loop, dangle or lead to folders (not followed) are
    left out and reported in ``rejected`` as (name, reason)."""
    found = []
    for f in root.rglob("*"):
        rel = f.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if f.is_symlink() and not f.is_file():
            if rejected is not None:
                reason = "symlinked-folder" if f.is_dir() else "broken-or-looping-symlink"
                rejected.append(
                    (str(f).encode("utf-8", "surrogateescape").decode("utf-8", "replace"), reason)
                )
            continue
        if not (f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS):
            continue
        try:
            str(f).encode("utf-8")
        except UnicodeEncodeError:
            if rejected is not None:
                rejected.append((repr(os.fsencode(f)), "name-not-utf8"))
            continue
        found.append(f)
    return found


def list_sources(path: str | Path, rejected: list[tuple[str, str]] | None = None) -> list[str]:
    """Expand a source argument into image paths/URIs.

    A folder is walked recursively (image extensions, case-insensitive, hidden entries skipped) and
    sorted; a single image is returned as is; a .txt (one per line, '#' comments) / .csv / .tsv /
    .parquet list keeps its own order, with relative entries resolved against the list's folder.
    A folder without images but with Unsplash Lite ``photos.tsv*`` files reads those; URIs (http(s)
    lists or images, object-store lists or prefixes) are expanded by :func:`list_remote`. Folder
    entries that cannot be used (a name that is not UTF-8, a looping link) go to ``rejected``.
    """
    if "://" in str(path):
        return list_remote(str(path))
    p = Path(path)
    if p.is_dir():
        found = _walk_folder(p, rejected)
        if not found:
            lists = sorted(f for f in p.glob("photos.tsv*") if f.is_file())
            return [entry for f in lists for entry in list_sources(f)]
        return sorted(str(f) for f in found)
    if not p.exists():
        raise SourceError("not-found", p)
    suffix = p.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return [str(p)]
    if is_list_name(p.name):  # .txt/.csv/.tsv/.parquet, also split lists such as photos.tsv000
        return read_list(str(p))
    raise SourceError("not-an-image", p, f"unsupported source extension {suffix!r}")
