"""Issue #20, cases 3, 5, 6, 7 and 9: source lists cannot reach local files, downloads are bounded
in time, odd folder entries are left out with a reason, and `presets apply` / `retouch` check
their options and outputs (one-line errors, no traceback).

A loopback HTTP server serves a list, a photo, a redirect to ftp:// and a URL that drips 1 byte/s.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aether_data.io.errors import SourceError
from aether_data.io.sources import FetchSettings, bundled_photos, fetch, list_sources
from tests.conftest import REPO, run_cli

PHOTO = bundled_photos()[0]


class _Handler(http.server.BaseHTTPRequestHandler):
    listing = b""
    requested: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        type(self).requested.append(path)
        if path == "/list.txt":
            body, code = type(self).listing, 200
        elif path == "/photo.jpg":
            body, code = PHOTO.read_bytes(), 200
        elif path == "/to-ftp.jpg":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/secret.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        elif path == "/drip-headers.jpg":
            try:
                self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                for _ in range(120):  # one header byte a second: each read returns, the line never ends
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    time.sleep(1.0)
            except OSError:
                pass
            return
        elif path == "/drip.jpg":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(120):  # 1 byte/s: every socket read succeeds, the download never ends
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(1.0)
            except OSError:
                pass
            return
        else:
            body, code = b"not found", 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# -- 3. a remote list cannot reach local files --------------------------------------------------------


def test_remote_list_entries_resolve_against_the_list(server: str, tmp_path: Path) -> None:
    private = tmp_path / "private.jpg"
    shutil.copy(PHOTO, private)
    _Handler.listing = f"photo.jpg\n{private}\n".encode()
    assert list_sources(f"{server}/list.txt") == [f"{server}/photo.jpg", f"{server}{private}"]
    _Handler.listing = f"photo.jpg\nfile://{private}\n".encode()
    with pytest.raises(SourceError, match="unsafe-entry"):
        list_sources(f"{server}/list.txt")


def test_build_from_remote_list_never_reads_local_files(ray_session, server: str, tmp_path: Path) -> None:
    private = tmp_path / "private.jpg"
    shutil.copy(PHOTO, private)
    _Handler.listing = f"photo.jpg\n{private}\nto-ftp.jpg\n".encode()
    out = tmp_path / "d"
    code, text = run_cli(
        "build", "-w", "param", "-n", "6", "--samples-per-shard", "6", "--image-size", "64",
        "--sources", f"{server}/list.txt", "--workers", "1", "-q", "-o", str(out),
    )  # fmt: skip
    assert code == 0, text
    uris = pq.read_table(out / "plan.parquet").column("source_uri").to_pylist()
    assert all(u.startswith(server) for u in uris), uris
    manifest = json.loads((out / "manifest.json").read_text())
    # N means N: the two failing entries' samples are built from the list's photo, and each failure
    # is counted with its reason (a failed replacement attempt counts too, so at least 2 of each)
    assert manifest["samples"] == 6 and manifest["skipped"]["count"] == 0, manifest["skipped"]
    reasons = manifest["sources_replaced"]["reasons"]
    assert set(reasons) == {"http-404", "bad-redirect"} and min(reasons.values()) >= 2, reasons
    assert str(private) in _Handler.requested
    _Handler.listing = f"photo.jpg\nfile://{private}\n".encode()
    code, text = run_cli(
        "build", "-w", "param", "-n", "4", "--sources", f"{server}/list.txt", "-q", "-o", str(tmp_path / "e"),
    )  # fmt: skip
    assert code == 2 and "unsafe-entry" in text and "Traceback" not in text, text


def test_redirect_to_ftp_is_not_followed(server: str) -> None:
    with pytest.raises(SourceError) as exc:
        fetch(f"{server}/to-ftp.jpg", FetchSettings(timeout_s=5, retries=0))
    assert exc.value.reason == "bad-redirect"


# -- 5. a total deadline per download attempt ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/drip.jpg", "/drip-headers.jpg"])
def test_dripping_server_times_out_within_the_deadline(server: str, path: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(SourceError) as exc:
        fetch(f"{server}{path}", FetchSettings(timeout_s=2, retries=0))
    assert exc.value.reason == "timeout"
    assert time.monotonic() - t0 < 4


def test_build_with_a_dripping_source_finishes(server: str, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"{server}/photo.jpg\n{server}/drip.jpg\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AETHER_HTTP_TIMEOUT": "3", "AETHER_HTTP_RETRIES": "0"}
    out = tmp_path / "d"
    res = subprocess.run(
        [sys.executable, "-m", "aether_data.cli", "build", "-w", "param", "-n", "2", "--samples-per-shard", "2",
         "--image-size", "64", "--sources", str(lst), "--workers", "1", "-q", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=110,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["samples"] == 2 and manifest["skipped"]["count"] == 0, manifest["skipped"]
    assert manifest["sources_replaced"] == {"count": 1, "reasons": {"timeout": 1}}, manifest


# -- 6 and 9. folder entries that cannot be used -------------------------------------------------------


def test_non_utf8_name_and_link_loop_are_left_out_with_a_reason(ray_session, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(PHOTO, src / "good.jpg")
    with open(os.path.join(os.fsencode(src), b"caf\xe9.jpg"), "wb") as f:
        f.write(PHOTO.read_bytes())
    (src / "loop").symlink_to(src)
    rejected: list[tuple[str, str]] = []
    assert list_sources(src, rejected) == [str(src / "good.jpg")]
    assert sorted(r for _, r in rejected) == ["name-not-utf8", "symlinked-folder"]
    code, text = run_cli(
        "build", "-w", "param", "-n", "2", "--samples-per-shard", "2", "--image-size", "64",
        "--sources", str(src), "--workers", "1", "-q", "-o", str(tmp_path / "d"),
    )  # fmt: skip
    assert code == 0 and "Traceback" not in text, text


# -- 7. presets apply and retouch check their options --------------------------------------------------


@pytest.fixture()
def bad_presets(tmp_path: Path) -> dict[str, Path]:
    deep = "<crs:Look><rdf:Description>" * 3000 + "</rdf:Description></crs:Look>" * 3000
    xmp = tmp_path / "deep.xmp"
    xmp.write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/" crs:Exposure2012="+0.5">'
        f"{deep}</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    lua = tmp_path / "big.lrtemplate"
    lua.write_text(
        's = {\n title = "Big",\n type = "Develop",\n value = { settings = { Exposure2012 = 0x'
        + "f" * 400
        + ', }, uuid = "x" },\n version = 0,\n}\n'
    )
    (tmp_path / "afile").write_text("not a folder")
    return {"deep": xmp, "big": lua, "afile": tmp_path / "afile"}


def test_presets_apply_validates_inputs(bad_presets: dict[str, Path], tmp_path: Path) -> None:
    cases = [
        (
            (str(bad_presets["big"]), str(PHOTO), "-o", str(tmp_path / "o.jpg"), "--lut-size", "2000"),
            "--lut-size",
        ),
        (
            (str(bad_presets["big"]), str(PHOTO), "-o", str(tmp_path / "o.jpg"), "--max-side", "0"),
            "--max-side",
        ),
        ((str(bad_presets["deep"]), str(PHOTO), "-o", str(tmp_path / "o.jpg")), "nested too deeply"),
        ((str(bad_presets["big"]), str(PHOTO), "-o", str(tmp_path / "o.jpg")), "OverflowError"),
        ((str(bad_presets["big"]), str(PHOTO), "-o", str(bad_presets["afile"] / "x.jpg")), "is not a folder"),
    ]
    for args, finding in cases:
        code, text = run_cli("presets", "apply", *args)
        assert code in (1, 2) and finding in text and "Traceback" not in text, (args, text)
        assert not (tmp_path / "o.jpg").exists()


def test_retouch_output_checked(bad_presets: dict[str, Path], tmp_path: Path) -> None:
    code, text = run_cli(
        "retouch", str(PHOTO), "-o", str(bad_presets["afile"] / "x.jpg"), "--ref-after", str(PHOTO)
    )
    assert code == 2 and "is not a folder" in text, text
    out = tmp_path / "x.webp"
    code, text = run_cli("retouch", str(PHOTO), "-o", str(out), "--ref-after", str(PHOTO))
    assert code == 0, text
    assert out.read_bytes()[8:12] == b"WEBP"
