"""End-to-end builds on the bundled photos: layout, schemas, determinism, fidelity, resume, audit."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from aether_data import params as P
from aether_data.develop import render
from aether_data.sampling import PROTOCOLS
from tests.conftest import REPO, run_cli


def _records(out: Path) -> list[tuple[str, dict, np.ndarray, np.ndarray]]:
    """Read every sample with plain tarfile (no aether code in the read path)."""
    recs = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            members = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        keys = sorted({name.split(".", 1)[0] for name in members})
        for k in keys:
            rec = json.loads(members[f"{k}.json"])
            inp = (
                np.asarray(Image.open(io.BytesIO(members[f"{k}.input.jpg"])).convert("RGB"), np.float32) / 255
            )
            tgt = (
                np.asarray(Image.open(io.BytesIO(members[f"{k}.target.jpg"])).convert("RGB"), np.float32)
                / 255
            )
            recs.append((k, rec, inp, tgt))
    return recs


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def test_param_build_layout_and_schemas(param_build: Path) -> None:
    out = param_build
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == [f"param-{i:06d}.tar" for i in range(4)]
    assert sorted(p.name for p in (out / "index").glob("*.parquet")) == [
        f"param-{i:06d}.parquet" for i in range(4)
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    jsonschema.validate(manifest, json.loads((REPO / "manifests/manifest.schema.json").read_text()))
    assert manifest["samples"] == 64 and manifest["per_workflow"] == {"param": 64}
    assert [s["samples"] for s in manifest["shards"]] == [16, 16, 16, 16]
    assert manifest["seed"] == 7 and manifest["spec"]["num_samples"] == 64
    assert manifest["skipped"] == {"count": 0, "reasons": {}}
    schema = json.loads((REPO / "manifests/sample.schema.json").read_text())
    recs = _records(out)
    assert len(recs) == 64 and len({k for k, *_ in recs}) == 64
    for _, rec, _, _ in recs:
        jsonschema.validate(rec, schema)
    plan = pq.read_table(out / "plan.parquet")
    assert plan.num_rows == 64


def test_protocols_masks_and_fidelity(param_build: Path) -> None:
    recs = _records(param_build)
    assert {rec["protocol"] for _, rec, _, _ in recs} == set(PROTOCOLS)
    worst = np.inf
    for _, rec, inp, tgt in recs:
        sliders = {n: P.denormalise(n, v) for n, v in rec["params"].items()}
        active_groups = [
            int(any(abs(rec["params"][n]) >= P.MASK_EPS for n in P.GROUP_PARAMS[g])) for g in P.GROUPS
        ]
        assert rec["masks"] == active_groups
        assert "+".join(g for g, m in zip(P.GROUPS, rec["masks"]) if m) == rec["protocol"]
        worst = min(worst, _psnr(render(inp, sliders), tgt))
    assert worst >= 40.0, f"worst re-render PSNR {worst:.2f} dB"


def test_plans_name_every_active_parameter_with_its_sign(param_build: Path) -> None:
    for _, rec, _, _ in _records(param_build):
        plans = " ".join(v or "" for v in rec["reasoning"]["plans"].values())
        for name, v in rec["params"].items():
            if abs(v) >= P.MASK_EPS:
                assert name in plans
        assert len(set(rec["instructions"])) >= 3


def test_shards_read_with_plain_webdataset(param_build: Path) -> None:
    code = (
        "import sys, json, webdataset as wds\n"
        "n = 0\n"
        "for s in wds.WebDataset(sys.argv[1:], shardshuffle=False):\n"
        "    assert set(s) >= {'__key__', 'input.jpg', 'target.jpg', 'json'}, set(s)\n"
        "    assert json.loads(s['json'])['key'] == s['__key__']\n"
        "    n += 1\n"
        "print(n)\n"
    )
    tars = [str(p) for p in sorted((param_build / "shards").glob("*.tar"))]
    res = subprocess.run([sys.executable, "-c", code, *tars], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "64"


def _digest(out: Path) -> dict[str, bytes]:
    files = [*sorted((out / "shards").glob("*.tar")), *sorted((out / "index").glob("*.parquet"))]
    files += [out / "manifest.json", out / "plan.parquet"]
    return {f.relative_to(out).as_posix(): f.read_bytes() for f in files}


def test_same_seed_same_bytes_on_one_or_two_workers(param_build: Path, tmp_path: Path) -> None:
    out1 = tmp_path / "w1"
    code, text = run_cli(
        "build", "--workflow", "param", "--num-samples", "64", "--samples-per-shard", "16",
        "--out", str(out1), "--seed", "7", "--workers", "1", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    a, b = _digest(param_build), _digest(out1)
    assert a.keys() == b.keys()
    different = [k for k in a if a[k] != b[k]]
    assert not different, f"bytes differ: {different}"


def test_audit_good_and_corrupted(param_build: Path, tmp_path: Path) -> None:
    import shutil

    assert run_cli("audit", str(param_build))[0] == 0
    bad = tmp_path / "bad"
    shutil.copytree(param_build, bad)
    tar = bad / "shards" / "param-000002.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0x01
    tar.write_bytes(bytes(data))
    code, text = run_cli("audit", str(bad))
    assert code == 1 and "param-000002" in text


def test_invalid_spec_fails_before_work(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("workflow: param\nimage: {size: 4}\nruntime: {wrokers: 2}\n")
    code, text = run_cli("build", "--config", str(spec), "--out", str(tmp_path / "o"))
    assert code == 2
    assert "image.size" in text and "runtime.wrokers" in text
    assert not (tmp_path / "o").exists()


def test_auto_build_corrective_params_move_input_to_target(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    code, text = run_cli(
        "build", "--workflow", "auto", "--num-samples", "24", "--samples-per-shard", "12",
        "--out", str(out), "--image-size", "256", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    assert run_cli("audit", str(out))[0] == 0
    recs = _records(out)
    assert len(recs) == 24
    improved = known = 0
    for _, rec, inp, tgt in recs:
        assert rec["task"] == "<Auto_Retouch_Task>" and rec["params_origin"] in ("known-operator", "fitted")
        assert rec["reasoning"]["problems"]["light"] is not None
        if rec["params_origin"] != "known-operator":
            continue
        known += 1
        sliders = {n: P.denormalise(n, v) for n, v in rec["params"].items()}
        improved += _psnr(render(inp, sliders), tgt) > _psnr(inp, tgt)
    assert known >= 3 and improved / known >= 0.9


def _kill_session(sid: int) -> None:
    """SIGKILL every process of a session (the driver and the Ray processes it started), like a crash."""
    for _ in range(3):
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: session id
                try:
                    os.kill(int(stat.parent.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    """Kill the whole build (driver + Ray) mid-run; the re-run keeps finished shards untouched.

    Slow (35 s, randomly timed): the default suite covers the same contract deterministically with
    test_reliability's worker killed mid-tar and SIGINT-then-resume tests."""
    out = tmp_path / "killed"
    args = [
        sys.executable, "-m", "aether_data.cli", "build", "--workflow", "param", "--num-samples", "48",
        "--samples-per-shard", "4", "--image-size", "192", "--out", str(out), "--workers", "1", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    index_dir = out / "index"
    deadline = time.time() + 180
    while time.time() < deadline and len(list(index_dir.glob("*.parquet"))) < 2:
        time.sleep(0.2)
    _kill_session(proc.pid)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("param-*.tar")}
    indexed = {p.stem for p in index_dir.glob("*.parquet")}
    assert 2 <= len(indexed) < 12, "kill landed outside the run"
    time.sleep(2)
    assert {p.stem for p in index_dir.glob("*.parquet")} == indexed, "a worker outlived the kill"
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    assert f"{len(indexed)} reused" in res.stderr.replace("\n", " ")
    for name in indexed:
        assert (out / "shards" / f"{name}.tar").stat().st_mtime_ns == done_before[f"{name}.tar"]
    keys = [k for k, *_ in _records(out)]
    assert len(keys) == 48 and len(set(keys)) == 48
    assert not list((out / "shards").glob(".tmp-*"))
    assert subprocess.run([sys.executable, "-m", "aether_data.cli", "audit", str(out)]).returncode == 0


def test_style_build_names_presets_and_has_three_instructions(ray_session, tmp_path: Path) -> None:
    out = tmp_path / "style"
    code, text = run_cli(
        "build", "--workflow", "style", "--num-samples", "64", "--samples-per-shard", "32",
        "--out", str(out), "--image-size", "128", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    assert run_cli("audit", str(out))[0] == 0
    recs = _records(out)
    assert len(recs) == 64
    presets = set()
    for _, rec, inp, tgt in recs:
        assert rec["task"] == "<Style_Retouch_Task>" and rec["params_origin"] == "preset"
        p = rec["preset"]
        assert (
            p["id"] and p["name"] and p["primary"] and p["fine"] and p["fine"] in p["categories"].split("; ")
        )
        assert len(set(rec["instructions"])) >= 3
        assert any(rec["masks"]) and _psnr(inp, tgt) < 60  # the preset did something
        presets.add(p["id"])
    assert len(presets) > 20


def test_build_time_record_check_agrees_with_the_reference_validator(param_build: Path) -> None:
    """The build checks records with a compiled validator (fastjsonschema); audit uses jsonschema.
    On real records and on broken copies of them, both must give the same verdict."""
    import copy

    import fastjsonschema

    from aether_data.dataset.schemas import load_schema

    schema = load_schema("sample")
    fast = fastjsonschema.compile(schema)
    ref = jsonschema.Draft202012Validator(schema)
    breakers = [
        lambda r: r.pop("key"),
        lambda r: r.__setitem__("seed", "7"),
        lambda r: r.__setitem__("workflow", "nope"),
        lambda r: r.__setitem__("masks", [1, 0]),
        lambda r: r["image"].__setitem__("width", 1.5),
        lambda r: r.__setitem__("instructions", "not a list"),
        lambda r: r["source"].pop("sha256"),
        lambda r: r.__setitem__("unexpected_field", 1),
    ]
    verdicts = []
    for _, rec, _, _ in _records(param_build)[:4]:
        for breaker in [None, *breakers]:
            r = copy.deepcopy(rec)
            if breaker is not None:
                breaker(r)
            ok_ref = ref.is_valid(r)
            try:
                fast(r)
                ok_fast = True
            except fastjsonschema.JsonSchemaValueException:
                ok_fast = False
            assert ok_fast == ok_ref, (breaker, ok_fast, ok_ref)
            verdicts.append(ok_ref)
    assert True in verdicts and verdicts.count(False) >= 4 * 6  # good records pass, most breakers bite
