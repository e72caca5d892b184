"""Sources at scale: lists in parquet/CSV/TSV (Unsplash Lite layout), images over http(s).

A real HTTP server on 127.0.0.1 serves the bundled photos, a 404, a slow URL that never answers
in time, and a flaky URL that fails once; bad URLs must become counted skip reasons, never a
failed build.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aether_data.build.plan import Planner, iter_shard_spans, resolve_sources
from aether_data.build.shard import ShardContext, ShardTask
from aether_data.config import load_spec
from aether_data.io.errors import SourceError
from aether_data.io.sources import (
    FetchSettings,
    bundled_photos,
    fetch,
    is_list_name,
    list_sources,
    parse_list,
    read_list,
)
from tests.conftest import REPO

PHOTOS = {p.name: p.read_bytes() for p in bundled_photos()}
SLOW_S = 3.0


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter[str] = Counter()
    listing = b""

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "image/jpeg") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        type(self).hits[path] += 1
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/photos/") and name in PHOTOS:
            self._send(200, PHOTOS[name])
        elif path == "/slow.jpg":
            time.sleep(SLOW_S)
            self._send(200, PHOTOS["coffee.jpg"])
        elif path == "/flaky.jpg":
            if type(self).hits[path] == 1:
                self._send(503, b"try again", "text/plain")
            else:
                self._send(200, PHOTOS["rocket.jpg"])
        elif path == "/lists/photos.tsv000":
            self._send(200, type(self).listing, "text/tab-separated-values")
        else:
            self._send(404, b"not found", "text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield base
    srv.shutdown()
    srv.server_close()


FAST = FetchSettings(timeout_s=1.0, retries=1, backoff_s=0.05, max_bytes=10 << 20)


def unsplash_tsv(rows: list[tuple[str, str]]) -> bytes:
    """The Unsplash Lite photos.tsv000 layout (a subset of its columns, same order, unquoted)."""
    header = "photo_id\tphoto_url\tphoto_image_url\tphoto_submitted_at\tphoto_featured\tphoto_width"
    lines = [header] + [
        f"{pid}\thttps://unsplash.com/photos/{pid}\t{url}\t2020-01-01\tt\t640" for pid, url in rows
    ]
    return ("\n".join(lines) + "\n").encode()


# --------------------------------------------------------------------------------------------------
# downloads


def test_fetch_ok_404_slow_flaky_and_cap(server: str) -> None:
    assert fetch(f"{server}/photos/coffee.jpg", FAST) == PHOTOS["coffee.jpg"]

    _Handler.hits.clear()
    with pytest.raises(SourceError) as e404:
        fetch(f"{server}/missing.jpg", FAST)
    assert e404.value.reason == "http-404"
    assert _Handler.hits["/missing.jpg"] == 1  # a 404 is final: no retry

    t0 = time.perf_counter()
    with pytest.raises(SourceError) as slow:
        fetch(f"{server}/slow.jpg", FAST)
    assert slow.value.reason == "timeout"
    assert time.perf_counter() - t0 < SLOW_S + 1.5  # bounded by timeout x attempts, not by the server

    assert fetch(f"{server}/flaky.jpg", FAST) == PHOTOS["rocket.jpg"]  # 503 once, then retried
    assert _Handler.hits["/flaky.jpg"] == 2

    with pytest.raises(SourceError) as big:
        fetch(f"{server}/photos/retina.jpg", FetchSettings(timeout_s=2, retries=0, max_bytes=1000))
    assert big.value.reason == "too-large"


def test_fetch_unreachable_host() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as exc:
        fetch(f"http://127.0.0.1:{port}/x.jpg", FAST)
    assert exc.value.reason == "unreachable"


# --------------------------------------------------------------------------------------------------
# lists


def test_parse_unsplash_lite_tsv_picks_photo_image_url() -> None:
    data = unsplash_tsv(
        [("a1", "https://images.unsplash.com/photo-1"), ("b2", "https://images.unsplash.com/photo-2")]
    )
    assert is_list_name("photos.tsv000") and is_list_name("x.parquet") and not is_list_name("x.jpg")
    assert parse_list(data, "photos.tsv000") == [
        "https://images.unsplash.com/photo-1",
        "https://images.unsplash.com/photo-2",
    ]


def test_parse_csv_parquet_txt(tmp_path: Path) -> None:
    assert parse_list(b"id,url\n1,http://h/a.jpg\n2,http://h/b.jpg\n", "l.csv") == [
        "http://h/a.jpg",
        "http://h/b.jpg",
    ]
    assert parse_list(b"# comment\n/a.jpg\n\n/b.jpg\n", "l.txt") == ["/a.jpg", "/b.jpg"]
    pq.write_table(pa.table({"n": [1, 2], "path": ["x.jpg", "y.jpg"]}), tmp_path / "l.parquet")
    assert parse_list((tmp_path / "l.parquet").read_bytes(), "l.parquet") == ["x.jpg", "y.jpg"]
    with pytest.raises(ValueError):
        parse_list(b"", "notes.md")


def test_read_list_over_http_resolves_relative_entries(server: str) -> None:
    _Handler.listing = unsplash_tsv([("c", "../photos/chelsea.jpg"), ("d", f"{server}/photos/rocket.jpg")])
    assert read_list(f"{server}/lists/photos.tsv000", FAST) == [
        f"{server}/photos/chelsea.jpg",
        f"{server}/photos/rocket.jpg",
    ]
    assert list_sources(f"{server}/lists/photos.tsv000") == read_list(f"{server}/lists/photos.tsv000", FAST)
    with pytest.raises(SourceError):
        read_list(f"{server}/lists/missing.tsv", FAST)


def test_unsplash_folder_of_split_tsvs(tmp_path: Path) -> None:
    (tmp_path / "photos.tsv000").write_bytes(unsplash_tsv([("a", "https://i/1")]))
    (tmp_path / "photos.tsv001").write_bytes(unsplash_tsv([("b", "https://i/2")]))
    (tmp_path / "keywords.tsv000").write_text("photo_id\tkeyword\na\tcat\n")
    assert list_sources(tmp_path) == ["https://i/1", "https://i/2"]
    assert list_sources(tmp_path / "photos.tsv001") == ["https://i/2"]


# --------------------------------------------------------------------------------------------------
# building from URLs


def _url_list(server: str, tmp_path: Path) -> tuple[Path, list[str]]:
    urls = [f"{server}/photos/{n}" for n in ("astronaut.jpg", "chelsea.jpg", "coffee.jpg")]
    urls += [f"{server}/missing.jpg", f"{server}/slow.jpg"]
    path = tmp_path / "photos.tsv000"
    path.write_bytes(unsplash_tsv([(f"id{i}", u) for i, u in enumerate(urls)]))
    return path, urls


def test_shard_from_urls_counts_bad_urls(server: str, tmp_path: Path) -> None:
    """In-process (no Ray): good URLs become samples, the 404 and the slow URL skip reasons."""
    listing, urls = _url_list(server, tmp_path)
    spec = load_spec(
        None,
        "param",
        {
            "num_samples": 10,
            "samples_per_shard": 10,
            "sources": {"path": str(listing)},
            "image": {"size": 64},
        },
    )
    sources = resolve_sources(spec)
    assert sources == urls
    ctx = ShardContext(spec, tmp_path / "out")
    ctx.renderer.sources.fetch = FAST
    span = next(iter_shard_spans(spec))
    rows = Planner(spec, sources).rows(span)
    _Handler.hits.clear()
    res = ctx.build_shard(ShardTask(span.name, "param", rows))
    bad = [r for r in rows if r.source_uri.endswith(("missing.jpg", "slow.jpg"))]
    assert res["ok"] and res["samples"] == len(rows) - len(bad)
    want = Counter("http-404" if r.source_uri.endswith("missing.jpg") else "timeout" for r in bad)
    assert res["reasons"] == dict(want)
    # one download (or one round of retries) per URL per shard, not one per sample
    assert _Handler.hits["/missing.jpg"] <= 1 and _Handler.hits["/slow.jpg"] <= 2
    from aether_data.dataset.tar import iter_shard

    for _, members in iter_shard(tmp_path / "out" / "shards" / f"{span.name}.tar"):
        src = json.loads(members["json"])["source"]
        name = src["uri"].rsplit("/", 1)[-1]
        assert src["uri"].startswith(server) and src["sha256"] == hashlib.sha256(PHOTOS[name]).hexdigest()
        assert src["license"] == ""  # not recorded (type-stable records: "" rather than null)


def test_build_cli_from_http_list(server: str, tmp_path: Path) -> None:
    """`aether build --sources URL-list` end to end (own Ray, so the worker env holds the timeouts)."""
    listing, _ = _url_list(server, tmp_path)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "RAY_ADDRESS": "",
        "AETHER_HTTP_TIMEOUT": "1",
        "AETHER_HTTP_RETRIES": "1",
        "AETHER_HTTP_BACKOFF": "0.05",
    }
    args = [
        sys.executable, "-m", "aether_data.cli", "build", "--workflow", "param", "--sources", str(listing),
        "--num-samples", "10", "--samples-per-shard", "5", "--image-size", "64", "--workers", "1",
        "--out", str(out), "--quiet",
    ]  # fmt: skip
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # N means N (issue 17): samples planned on the 404 and timing-out URLs are built from the
    # plan's next sources instead (remote sources are not fetched by the plan-time precheck)
    assert manifest["samples"] == 10 and manifest["skipped"]["count"] == 0
    from aether_data.dataset.tar import iter_shard

    for tar in sorted((out / "shards").glob("*.tar")):
        for _, members in iter_shard(tar):
            rec = json.loads(members["json"])
            assert not rec["source"]["uri"].endswith(("/missing.jpg", "/slow.jpg"))
    audit = subprocess.run(
        [sys.executable, "-m", "aether_data.cli", "audit", str(out)], capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stderr
