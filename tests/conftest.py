"""Shared fixtures: one embedded Ray for the whole session, and small real builds reused by tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray started once (builds call `ray.init` only when none is running)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def run_cli(*args: str) -> tuple[int, str]:
    """Run the `aether` CLI in-process (shares the session's Ray); returns (exit code, output)."""
    from typer.testing import CliRunner

    from aether_data.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def param_build(ray_session, tmp_path_factory) -> Path:
    """The issue's acceptance build: 64 param samples, 16 per shard, seed 7 (2 workers)."""
    out = tmp_path_factory.mktemp("param") / "out"
    code, text = run_cli(
        "build", "--workflow", "param", "--num-samples", "64", "--samples-per-shard", "16",
        "--out", str(out), "--seed", "7", "--workers", "2", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    return out


@pytest.fixture(scope="session")
def all_build(ray_session, tmp_path_factory) -> Path:
    """A 64-sample `--workflow all` build (16 per shard, seed 11): official prompts, export."""
    out = tmp_path_factory.mktemp("all") / "out"
    code, text = run_cli(
        "build", "--workflow", "all", "--num-samples", "64", "--samples-per-shard", "16",
        "--out", str(out), "--seed", "11", "--workers", "2", "--quiet",
    )  # fmt: skip
    assert code == 0, text
    return out
