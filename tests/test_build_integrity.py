"""Issue #20: resume reuses a shard only when its fingerprint matches, audit proves completeness,
one build per output (lock), and `--incremental extend` grows a dataset byte for byte.

Every case runs against real builds (the in-process CLI, or subprocesses for the lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

SMALL = ("-w", "param", "-n", "16", "--samples-per-shard", "8", "--workers", "1", "--quiet")


def _build(out: Path, *extra: str) -> tuple[int, str]:
    return run_cli("build", *SMALL, "--image-size", "128", "-o", str(out), *extra)


@pytest.fixture(scope="module")
def small(ray_session, tmp_path_factory) -> Path:
    """A 16-sample, 2-shard param build at 128 px (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("small") / "d"
    code, text = _build(out)
    assert code == 0, text
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / ".aether.lock").unlink(missing_ok=True)
    return dst


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        # the dataset card (README.md) names the output folder in its loading examples
        if p.is_file() and p.name not in ("run.json", ".aether.lock", "README.md") and "logs" not in p.parts
    }


# -- 1. resume reuses shards whatever the settings ----------------------------------------------------


def test_resume_refuses_other_image_size_and_overwrite_rebuilds(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    before = _hashes(d)
    code, text = run_cli("build", *SMALL, "--image-size", "256", "-o", str(d))
    assert code == 2, text
    assert "image.size 128 → 256" in text and "--overwrite" in text and "Traceback" not in text
    assert _hashes(d) == before  # nothing touched, nothing lost
    (d / "shards" / "param-000001.tar").unlink()  # a missing shard: still no mixed-size dataset
    code, text = run_cli("build", *SMALL, "--image-size", "256", "-o", str(d))
    assert code == 2 and "image.size 128 → 256" in text, text
    code, text = run_cli("build", *SMALL, "--image-size", "256", "-o", str(d), "--overwrite")
    assert code == 0 and "(2 built)" in text, text
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["spec"]["image"]["size"] == 256
    code, text = run_cli("audit", str(d), "--deep")
    assert code == 0, text


def test_resume_refuses_other_protocols_and_seed_without_plan(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    cfg = tmp_path / "light.yaml"
    cfg.write_text("workflow: param\nparam:\n  protocols: [light]\n")
    code, text = run_cli(
        "build", "-c", str(cfg), "-n", "16", "--samples-per-shard", "8", "--image-size", "128",
        "--workers", "1", "-q", "-o", str(d),
    )  # fmt: skip
    assert code == 2 and "param.protocols" in text, text
    (d / "plan.parquet").unlink()  # plan.parquet is never trusted alone
    code, text = _build(d, "--seed", "5")
    assert code == 2 and "seed 0 → 5" in text, text
    assert not (d / "plan.parquet").exists()  # a refused build writes no plan
    code, text = _build(d)  # the same settings: reused, plan written again
    assert code == 0 and "0 built, 2 reused" in text, text
    assert run_cli("audit", str(d))[0] == 0


def test_truncated_plan_is_replaced_not_misreported(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    plan = d / "plan.parquet"
    plan.write_bytes(plan.read_bytes()[:100])
    code, text = _build(d)
    assert code == 0 and "0 built, 2 reused" in text, text
    assert run_cli("audit", str(d))[0] == 0


def test_fewer_samples_refused_with_stray_shards(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    code, text = run_cli("build", *SMALL[:2], "-n", "8", *SMALL[4:], "--image-size", "128", "-o", str(d))
    assert code == 2 and "num_samples 16 → 8" in text, text
    (d / "plan.parquet").unlink()  # without the plan: the shards the smaller plan lacks are found
    code, text = run_cli("build", *SMALL[:2], "-n", "8", *SMALL[4:], "--image-size", "128", "-o", str(d))
    assert code == 2 and "holds shard(s) this plan does not have (param-000001)" in text, text


# -- 2. audit proves completeness ---------------------------------------------------------------------


def _drop_shard(d: Path, name: str) -> None:
    """Delete a shard's tar and index and fix the manifest so its own counts agree."""
    m = json.loads((d / "manifest.json").read_text())
    gone = next(e for e in m["shards"] if e["name"] == name)
    (d / gone["path"]).unlink()
    (d / gone["index"]).unlink()
    m["shards"] = [e for e in m["shards"] if e["name"] != name]
    m["samples"] -= gone["samples"]
    m["per_workflow"] = {"param": m["samples"]}
    from aether_data.dataset.manifest import build_manifest

    fixed = build_manifest(
        d,
        spec=m["spec"],
        seed=m["seed"],
        code_version=m["code_version"],
        shards=[e["name"] for e in m["shards"]],
    )
    m["per_protocol"] = fixed["per_protocol"]
    (d / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def test_audit_finds_a_removed_shard(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    _drop_shard(d, "param-000001")
    code, text = run_cli("audit", str(d), "--deep")
    assert code == 1, text
    assert "8 planned key(s) neither in a shard nor skipped" in text
    assert "planned_samples 16 != 8 samples + 0 skipped" in text
    (d / "plan.parquet").unlink()  # without the plan, planned_samples still tells
    code, text = run_cli("audit", str(d))
    assert code == 1 and "planned_samples 16 != 8 samples" in text, text


@pytest.mark.parametrize(
    ("edit", "finding"),
    [
        (lambda m: m.update(planned_samples=8), "planned_samples 8"),
        (lambda m: m.update(seed=5), "seed 5"),
        (lambda m: (m.update(seed=5), m["spec"].update(seed=5)), "another spec than the manifest"),
        (lambda m: m["spec"]["image"].update(size=256), "another spec than the manifest"),
    ],
)
def test_audit_finds_edited_counts_seed_and_spec(small: Path, tmp_path: Path, edit, finding: str) -> None:
    d = _copy(small, tmp_path / "d")
    m = json.loads((d / "manifest.json").read_text())
    edit(m)
    (d / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    code, text = run_cli("audit", str(d))
    assert code == 1 and finding in text, text


# -- 8. unlisted and symlinked shards -----------------------------------------------------------------


def test_audit_unlisted_and_symlinked_shards_are_problems(small: Path, tmp_path: Path) -> None:
    d = _copy(small, tmp_path / "d")
    shutil.copy(d / "shards" / "param-000000.tar", d / "shards" / "param-000099.tar")
    code, text = run_cli("audit", str(d))
    assert code == 1 and "param-000099.tar is not listed in the manifest" in text, text
    (d / "shards" / "param-000099.tar").unlink()
    tar = d / "shards" / "param-000001.tar"
    elsewhere = tmp_path / "elsewhere.tar"
    shutil.move(tar, elsewhere)
    tar.symlink_to(elsewhere)
    code, text = run_cli("audit", str(d))
    assert code == 1 and "is a symbolic link" in text, text


# -- 4. one build per output --------------------------------------------------------------------------


def test_second_build_on_a_locked_output_fails_at_once(tmp_path: Path) -> None:
    import fcntl

    d = tmp_path / "d"
    d.mkdir()
    (d / "shards").mkdir()
    (d / "shards" / ".tmp-param-000000.tar.1-abcd").write_bytes(b"in flight")
    fd = os.open(d / ".aether.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a first build holds the output
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t0 = time.monotonic()
        res = subprocess.run(
            [sys.executable, "-m", "aether_data.cli", "build", *SMALL, "--image-size", "128", "-o", str(d)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(fd)
    assert res.returncode == 2, res.stderr
    assert "being written by another aether build" in res.stderr and "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 60
    assert (d / "shards" / ".tmp-param-000000.tar.1-abcd").exists()  # the first build's temp file kept


def test_two_builds_with_different_seeds_one_refused(ray_session, tmp_path: Path) -> None:
    d = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "aether_data.cli", "build", *SMALL, "--image-size", "64", "-o", str(d)]
    procs = [
        subprocess.Popen([*args, "--seed", str(s)], env=env, stderr=subprocess.PIPE, text=True)
        for s in (1, 2)
    ]
    outs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(c for c, _ in outs)
    assert codes == [0, 2], outs
    text = next(t for c, t in outs if c == 2)
    assert "another aether build" in text or "seed" in text, text
    assert run_cli("audit", str(d))[0] == 0


# -- 9. option validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "1.5"])
def test_fail_on_error_rate_validated(tmp_path: Path, value: str) -> None:
    code, text = run_cli("build", *SMALL, "-o", str(tmp_path / "o"), "--fail-on-error-rate", value)
    assert code == 2 and "--fail-on-error-rate" in text, text
    assert not (tmp_path / "o").exists()


def test_incremental_mode_validated(tmp_path: Path) -> None:
    code, text = run_cli("build", *SMALL, "-o", str(tmp_path / "o"), "--incremental", "append")
    assert code == 2 and "only 'extend'" in text, text


# -- #19: --incremental extend ------------------------------------------------------------------------


def test_extend_32_to_64_equals_a_fresh_64_build(ray_session, tmp_path: Path) -> None:
    base = ("-w", "param", "--samples-per-shard", "8", "--image-size", "128", "--workers", "2", "-q")
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert run_cli("build", *base, "-n", "20", "-o", str(grown))[0] == 0  # a partial last shard
    code, text = run_cli("build", *base, "-n", "64", "-o", str(grown))
    assert code == 2 and "--incremental extend" in text, text
    code, text = run_cli("build", *base, "-n", "64", "-o", str(grown), "--incremental", "extend")
    assert code == 0 and "6 built, 2 reused" in text, text
    assert run_cli("build", *base, "-n", "64", "-o", str(fresh))[0] == 0
    assert _hashes(grown) == _hashes(fresh)
    code, text = run_cli("build", *base, "-n", "32", "-o", str(grown), "--incremental", "extend")
    assert code == 2 and "cannot shrink" in text, text
    code, text = run_cli(
        "build", *base, "-n", "80", "--seed", "3", "-o", str(grown), "--incremental", "extend"
    )  # fmt: skip
    assert code == 2 and "seed 0 → 3" in text, text
    assert run_cli("audit", str(grown), "--deep")[0] == 0


def test_expert_db_without_pairs_fails_before_any_worker(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from aether_data.expert_db.db import BUNDLED_DB

    db = tmp_path / "db"
    shutil.copytree(BUNDLED_DB, db)
    pq.write_table(pq.read_table(db / "pairs.parquet").slice(0, 0), db / "pairs.parquet")
    cfg = tmp_path / "auto.yaml"
    cfg.write_text(f"workflow: auto\nauto:\n  expert_db: {db}\n")
    code, text = run_cli("build", "-c", str(cfg), "-n", "2", "-q", "-o", str(tmp_path / "o"))
    assert code == 2 and "holds no pairs" in text and "Traceback" not in text, text
