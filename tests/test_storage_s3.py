"""Inputs and outputs on a real S3-compatible server (moto in server mode on 127.0.0.1).

The build runs as `aether build` in a fresh process (its own Ray, so every worker inherits the
S3 endpoint and credentials from the environment, as on a real cluster), reads its sources from an
`s3://` prefix, writes `s3://bucket/run`, and `aether audit s3://bucket/run` verifies it. Shards
must be byte-identical to a local build of the same spec.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aether_data.io.sources import bundled_photos
from tests.conftest import REPO

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="bucket")
        for p in bundled_photos():
            client.upload_file(str(p), "bucket", f"photos/{p.name}")
        yield env
    finally:
        server.stop()


def _cli(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "RAY_ADDRESS": ""}
    cmd = [sys.executable, "-m", "aether_data.cli", *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout, cwd=REPO)


BUILD = ["--workflow", "param", "--num-samples", "12", "--samples-per-shard", "4", "--image-size", "96"]
BUILD += ["--seed", "3", "--workers", "2", "--quiet"]


def test_build_and_audit_on_s3(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _cli(s3_env, "build", *BUILD, "--sources", "s3://bucket/photos", "--out", "s3://bucket/run")
    assert res.returncode == 0, res.stderr
    audit = _cli(s3_env, "audit", "s3://bucket/run")
    assert audit.returncode == 0, audit.stderr + audit.stdout

    for k, v in s3_env.items():
        monkeypatch.setenv(k, v)
    from aether_data.dataset.audit import audit as run_audit
    from aether_data.io import storage
    from aether_data.io.atomic import atomic_write_bytes

    run = storage.as_path("s3://bucket/run")
    names = sorted(p.name for p in (run / "shards").iterdir())
    assert names == [f"param-{i:06d}.tar" for i in range(3)]  # and no .tmp- keys left behind
    assert sorted(p.name for p in (run / "index").iterdir()) == [f"param-{i:06d}.parquet" for i in range(3)]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["samples"] == 12
    record_sources = set()
    from aether_data.dataset.tar import iter_shard

    for _, members in iter_shard(run / "shards" / "param-000000.tar"):
        record_sources.add(json.loads(members["json"])["source"]["uri"])
    assert all(u.startswith("s3://bucket/photos/") for u in record_sources)

    # same spec built locally from the same bytes: identical shards, indexes and plan
    res = _cli(s3_env, "build", *BUILD, "--sources", "s3://bucket/photos", "--out", str(tmp_path / "local"))
    assert res.returncode == 0, res.stderr
    for rel in [f"shards/{n}" for n in names] + [
        "plan.parquet",
        "manifest.json",
        "index/param-000001.parquet",
    ]:
        assert (run / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel

    # resume on S3: nothing to rebuild; then corrupt one object: the audit names its shard
    res = _cli(s3_env, "build", *BUILD, "--sources", "s3://bucket/photos", "--out", "s3://bucket/run")
    assert res.returncode == 0 and "3 reused" in res.stderr.replace("\n", " "), res.stderr
    tar = run / "shards" / "param-000001.tar"
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    atomic_write_bytes(tar, bytes(data))
    report = run_audit("s3://bucket/run")
    assert not report.ok and any(p.shard == "param-000001" for p in report.problems)
