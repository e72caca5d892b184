"""A real two-node Ray cluster on 127.0.0.1 (`ray start --head` + `ray start --address`, separate
temp dirs, one CPU each) and `aether build --ray-address` into it: both nodes build shards, and the
shards are byte-identical to the same shards built in-process without Ray.

Slow (two raylets and a driver start): run with `pytest -q -m slow`. The cluster is always stopped
in a `finally`. We stop it by process id (every process whose command line names this cluster's
unique temp dir), not with `ray stop`: `ray stop` kills every Ray process on the machine, including
other users' clusters and this test session's own embedded Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from aether_data.build.plan import Planner, iter_shard_spans, resolve_sources
from aether_data.build.shard import ShardContext, ShardTask
from aether_data.config import load_spec
from tests.conftest import REPO

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_pids(marker: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                pids.append(proc.info["pid"])
        except (psutil.Error, TypeError):
            continue
    return [p for p in pids if p != os.getpid()]


def stop_cluster(marker: str, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, every process of this cluster (identified by its temp-dir marker)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _cluster_pids(marker)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace_s
        while time.time() < deadline and _cluster_pids(marker):
            time.sleep(0.2)
        if not _cluster_pids(marker):
            return


def _ray_start(args: list[str], env: dict[str, str]) -> None:
    res = subprocess.run([RAY, "start", *args], env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, f"ray start {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"


def _wait_for_nodes(address: str, n: int, env: dict[str, str], timeout_s: float = 90) -> None:
    code = (
        "import ray, sys, time\n"
        f"ray.init(address={address!r}, logging_level='ERROR')\n"
        f"deadline = time.time() + {timeout_s}\n"
        f"while time.time() < deadline and sum(x['Alive'] for x in ray.nodes()) < {n}:\n"
        "    time.sleep(0.5)\n"
        "print(sum(x['Alive'] for x in ray.nodes()))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout_s + 60
    )
    assert res.stdout.strip().splitlines()[-1:] == [str(n)], res.stdout + res.stderr


SPEC = {"num_samples": 48, "samples_per_shard": 4, "seed": 11, "image": {"size": 160}}


def test_build_on_a_two_node_local_cluster(tmp_path: Path) -> None:
    # short, unique temp dirs: Ray's unix socket paths must stay under ~107 bytes
    base = Path(tempfile.mkdtemp(prefix="aeray", dir="/tmp"))
    marker = str(base)
    head_tmp, worker_tmp = base / "h", base / "w"
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # token auth off explicitly: Ray turns it on for a head node when ~/.ray/auth_token exists,
    # while `ray start --address` and drivers would not send the token (a loopback test cluster)
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("AETHER_FAULTS", None)
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    try:
        _ray_start(
            ["--head", f"--port={port}", f"--temp-dir={head_tmp}", "--include-dashboard=false",
             "--min-worker-port=21000", "--max-worker-port=21999", *common],
            env,
        )  # fmt: skip
        _ray_start(
            [f"--address={address}", f"--temp-dir={worker_tmp}", "--min-worker-port=22000",
             "--max-worker-port=22999", *common],
            env,
        )  # fmt: skip
        _wait_for_nodes(address, 2, env)

        out = tmp_path / "out"
        args = [
            sys.executable, "-m", "aether_data.cli", "build", "--workflow", "param", "--out", str(out),
            "--num-samples", "48", "--samples-per-shard", "4", "--seed", "11", "--image-size", "160",
            "--workers", "2", "--ray-address", address, "--quiet",
        ]  # fmt: skip
        res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400, cwd=REPO)
        assert res.returncode == 0, res.stderr
        run = json.loads((out / "run.json").read_text())
        assert len(run["nodes"]) == 2, f"shards were not built on both nodes: {run['nodes']}"
        assert sum(run["nodes"].values()) == 12
        audit = subprocess.run(
            [sys.executable, "-m", "aether_data.cli", "audit", str(out)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert audit.returncode == 0, audit.stderr
    finally:
        stop_cluster(marker)
        shutil.rmtree(base, ignore_errors=True)
    assert not _cluster_pids(marker), "cluster processes survived the stop"

    # the same shards built in-process, without Ray: byte-identical
    spec = load_spec(None, "param", SPEC)
    local = tmp_path / "local"
    ctx = ShardContext(spec, local)
    planner = Planner(spec, resolve_sources(spec))
    for span in iter_shard_spans(spec):
        ctx.build_shard(ShardTask(span.name, span.workflow, planner.rows(span)))
        for rel in (f"shards/{span.name}.tar", f"index/{span.name}.parquet"):
            assert (local / rel).read_bytes() == (out / rel).read_bytes(), rel
