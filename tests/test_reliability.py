"""Hostile inputs and injected faults: every input is processed or skipped with a reason, every
fault ends in a dataset that audits clean with exactly the expected keys."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aether_data.io.sources import bundled_photos
from tests.conftest import run_cli

CLI = [sys.executable, "-m", "aether_data.cli"]


def _photo(i: int, size: int = 96) -> Image.Image:
    photos = bundled_photos()
    with Image.open(photos[i % len(photos)]) as im:
        im = im.convert("RGB")
        w, h = im.size
        x0 = (i * 37) % max(1, w - size)
        y0 = (i * 53) % max(1, h - size)
        return im.crop((x0, y0, x0 + size, y0 + size))


def _write_good(folder: Path, i: int) -> tuple[str, str]:
    """One correctly processable but unusual input; returns (file name, what it exercises)."""
    img = _photo(i)
    kind = i % 10
    if kind == 0:
        name = f"plain {i}.jpg"
        img.save(folder / name, quality=90)
    elif kind == 1:
        name = f"wrong-extension-{i}.jpg"  # really a PNG
        img.save(folder / name, format="PNG")
    elif kind == 2:
        name = f"cmyk-{i}.jpg"
        img.convert("CMYK").save(folder / name, format="JPEG")
    elif kind == 3:
        name = f"sixteen-{i}.png"
        arr = (np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(arr).save(folder / name)
    elif kind == 4:
        name = f"sixteen-{i}.tif"
        arr = (np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(arr).save(folder / name, format="TIFF")
    elif kind == 5:
        name = f"grey-{i}.png"
        img.convert("L").save(folder / name)
    elif kind == 6:
        name = f"alpha-{i}.png"
        rgba = img.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(folder / name)
    elif kind == 7:
        name = f"exif-rotated-{i}.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° CW on display
        img.resize((96, 64)).save(folder / name, exif=exif.tobytes())
    elif kind == 8:
        name = f"ünïcødé name.with.dots {i}.jpeg"
        img.save(folder / name)
    else:
        name = f"photo-{i}.webp"
        img.save(folder / name, format="WEBP", quality=90)
    return name, f"good-{kind}"


def _write_bad(folder: Path, i: int) -> tuple[str, str]:
    """One input that must be skipped; returns (file name, expected skip reason)."""
    kind = i % 7
    img = _photo(i)
    if kind == 0:
        name = f"truncated-{i}.jpg"
        img.save(folder / name, quality=90)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        return name, "truncated"
    if kind == 1:
        name = f"truncated-{i}.png"
        img.save(folder / name)
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        return name, "truncated"
    if kind == 2:
        name = f"empty-{i}.jpg"
        (folder / name).write_bytes(b"")
        return name, "empty-file"
    if kind == 3:
        name = f"notes-{i}.png"
        (folder / name).write_text("this is not an image\n" * 20)
        return name, "not-an-image"
    if kind == 4:
        name = f"tiny-{i}.png"
        Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / name)
        return name, "too-small"
    if kind == 5:
        name = f"huge-{i}.png"  # 2.2 MP, over the 2 MP limit the test build sets
        Image.new("1", (2200, 1000)).save(folder / name)
        return name, "too-large"
    name = f"garbage-{i}.jpg"
    # seeded bytes: ~0.15% of random tails break the APP0 header itself, which Pillow then reports
    # as not an image at all (a flaky reason count); these 64 bytes always fail in the decoder
    (folder / name).write_bytes(b"\xff\xd8\xff\xe0" + random.Random(i).randbytes(64))
    return name, "decode-error"


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("mixed")
    expected: dict[str, str] = {}
    for i in range(50):
        name, _ = _write_good(folder, i)
        expected[name] = "ok"
        name, reason = _write_bad(folder, i)
        expected[name] = reason
    return folder, expected


def test_mixed_folder_50_good_50_bad(ray_session, mixed_folder, tmp_path: Path) -> None:
    """N means N (issue 17): the 50 bad inputs are found at plan time, each with its reason, and
    cost no sample: 100 samples asked, 100 written from the 50 good ones."""
    folder, expected = mixed_folder
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"workflow: param\nnum_samples: 100\nsamples_per_shard: 25\nseed: 3\n"
        f"sources: {{path: '{folder}', max_pixels: 2000000}}\nimage: {{size: 64}}\n"
    )
    out = tmp_path / "out"
    code, text = run_cli("build", "--config", str(spec), "--out", str(out), "--quiet")
    assert code == 0, text
    assert "50 of 100 source(s) unusable" in text
    manifest = json.loads((out / "manifest.json").read_text())
    # no bad source costs a sample; a sample whose every draft on every replacement source is a
    # near no-op (HSL edits of a grey 96 px crop) is reported as quality:visible, never written
    reasons = manifest["skipped"]["reasons"]
    assert all(r.startswith("quality:") for r in reasons) and manifest["skipped"]["count"] <= 2
    assert manifest["samples"] + manifest["skipped"]["count"] == 100
    want_reasons: dict[str, int] = {}
    for reason in expected.values():
        if reason != "ok":
            want_reasons[reason] = want_reasons.get(reason, 0) + 1
    rejected = manifest["sources_rejected"]
    assert rejected["count"] == 50 and rejected["checked"] == 100
    assert rejected["reasons"] == dict(sorted(want_reasons.items()))
    for row in rejected["sources"]:
        assert expected[Path(row["source"]).name] == row["reason"]
    # every good input became records (each used twice), never a bad one; EXIF orientation honoured
    names = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    rec = json.loads(tf.extractfile(m).read())
                    names.append(Path(rec["source"]["uri"]).name)
                    if "exif-rotated" in rec["source"]["uri"]:
                        assert rec["image"]["height"] > rec["image"]["width"]
    assert set(names) <= {n for n, r in expected.items() if r == "ok"}
    assert len(set(names)) >= 45
    assert run_cli("audit", str(out), "--deep")[0] == 0
    # a strict error budget turns the same build into a failure
    code, text = run_cli(
        "build",
        "--config",
        str(spec),
        "--out",
        str(tmp_path / "strict"),
        "--quiet",
        "--fail-on-error-rate",
        "0.2",
    )
    assert code == 1 and "exceeds --fail-on-error-rate" in text  # 50 of 100 sources unusable


def _keys(out: Path) -> list[str]:
    keys = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            keys += [m.name.split(".", 1)[0] for m in tf.getmembers() if m.name.endswith(".json")]
    return keys


def _build_args(out: Path, n: int = 24, per_shard: int = 6, workers: int = 1, size: int = 96) -> list[str]:
    return [
        *CLI, "build", "--workflow", "param", "--num-samples", str(n), "--samples-per-shard", str(per_shard),
        "--image-size", str(size), "--out", str(out), "--workers", str(workers), "--quiet",
    ]  # fmt: skip


def _audit_ok(out: Path) -> None:
    res = subprocess.run([*CLI, "audit", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_exception_in_one_sample_skips_only_that_sample(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "AETHER_FAULTS": "raise:param_000000007"}
    res = subprocess.run(_build_args(out), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped"] == {"count": 1, "reasons": {"error:RuntimeError": 1}}
    assert sorted(_keys(out)) == [f"param_{i:09d}" for i in range(24) if i != 7]
    assert "injected fault" in (out / "logs" / "param-000001.errors.txt").read_text()
    _audit_ok(out)


def test_worker_killed_mid_shard_is_retried(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "AETHER_FAULTS": "exit:param-000002"}
    res = subprocess.run(_build_args(out, workers=2), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (out / ".faults" / "param-000002").exists(), "the fault never fired"
    assert sorted(_keys(out)) == [f"param_{i:09d}" for i in range(24)]
    _audit_ok(out)


def test_worker_killed_mid_tar_leaves_no_temp_and_resumes(tmp_path: Path) -> None:
    """The worker dies after its TarWriter opened the temp tar and wrote one sample into it."""
    out = tmp_path / "out"
    env = {**os.environ, "AETHER_FAULTS": "exit-mid-tar:param-000002"}
    res = subprocess.run(_build_args(out, workers=2), env=env, capture_output=True, text=True, timeout=300)
    marker = out / ".faults" / "param-000002.mid-tar"
    assert marker.exists(), f"the fault never fired\n{res.stderr[-2000:]}"
    tmp_name, written = marker.read_text().split()
    # it fired mid-tar: a temp tar of the shard, holding one whole sample (headers + 3 members)
    assert tmp_name.startswith(".tmp-param-000002.tar.") and int(written) > 3 * 512, (tmp_name, written)
    assert res.returncode == 0, res.stderr  # the dead worker's shard was retried within the build
    assert sorted(_keys(out)) == [f"param_{i:09d}" for i in range(24)]
    assert not [p.name for p in out.rglob(".tmp-*")], "temp file left behind"
    _audit_ok(out)
    # resume (re-run the same command): everything is reused, nothing changes, still no temp
    before = {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")}
    res = subprocess.run(_build_args(out, workers=2), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "4 reused" in res.stderr.replace("\n", " "), res.stderr
    assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")} == before
    assert sorted(_keys(out)) == [f"param_{i:09d}" for i in range(24)]
    assert not [p.name for p in out.rglob(".tmp-*")]
    _audit_ok(out)


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 1.5 MiB tmpfs: disk-full and read-only faults without mocks. Mounting needs root;
    as non-root the tests are skipped with that reason (CI prints it: `pytest -rs`); as root a
    failed mount is a failure, never a skip."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (disk-full / read-only faults): run the suite as root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.fail(f"root cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_fails_clearly_and_resumes(tiny_fs: Path, tmp_path: Path) -> None:
    out = tiny_fs / "out"
    args = _build_args(out, n=48, per_shard=6, size=256)
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    assert "No space left on device" in res.stderr and "re-run the same command to resume" in res.stderr
    assert not (out / "manifest.json").exists()
    assert not list((out / "shards").glob(".tmp-*")), "partial shard left behind"
    from aether_data.dataset.index import shard_is_done

    done = [
        p.stem
        for p in (out / "shards").glob("*.tar")
        if shard_is_done(p, out / "index" / f"{p.stem}.parquet")
    ]
    # move to a roomy disk and resume: done shards are kept, the rest is built
    roomy = tmp_path / "roomy"
    shutil.copytree(out, roomy)
    res = subprocess.run(_build_args(roomy, n=48, per_shard=6, size=256), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"{len(done)} reused" in res.stderr.replace("\n", " ")
    assert sorted(_keys(roomy)) == [f"param_{i:09d}" for i in range(48)]
    _audit_ok(roomy)


def test_read_only_output_is_a_clear_error(tiny_fs: Path) -> None:
    out = tiny_fs / "out"
    out.mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    res = subprocess.run(_build_args(out), capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "Read-only file system" in res.stderr or "not writable" in res.stderr
    assert "Traceback" not in res.stderr


def test_sigint_stops_gracefully_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _build_args(out, n=60, per_shard=3)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "index").glob("*.parquet"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "re-run the same command to resume" in err
    assert not (out / "manifest.json").exists()
    res = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(_keys(out)) == [f"param_{i:09d}" for i in range(60)]
    _audit_ok(out)


def test_huggingface_datasets_reads_the_shards(param_build: Path) -> None:
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in (param_build / "shards").glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train")
    assert len(ds) == 64
    row = ds[0]
    assert row["input.jpg"].size == row["target.jpg"].size
    assert row["json"]["key"] == row["__key__"] and len(row["json"]["params"]) == 38
