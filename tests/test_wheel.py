"""The built wheel works off the repository: package data (pipeline specs, preset library, schemas,
prompts, photos) travels inside it, found through importlib.resources.

The wheel is built from this checkout, installed non-editable into a temporary folder, and the
`aether` CLI runs from an empty folder with that install first on the path (the other dependencies
come from the running environment), so nothing can be read from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _aether(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from aether_data.cli import app; sys.argv = ['aether', *sys.argv[1:]]; app()"
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_wheel_installed_outside_the_repo_builds_audits_and_lists_presets(tmp_path: Path) -> None:
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)], check=True
    )
    (wheel,) = wheels.glob("aether_data-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    where = _aether(site, work, "--version")
    assert where.returncode == 0, where.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import aether_data; print(aether_data.__file__)"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
    )  # fmt: skip
    assert probe.stdout.strip().startswith(str(site)), probe.stdout  # the wheel, not the checkout

    built = _aether(site, work, "build", "--workflow", "auto", "-n", "8", "--samples-per-shard", "4",
                    "--image-size", "128", "-o", "out", "--quiet")  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    audited = _aether(site, work, "audit", "out")
    assert audited.returncode == 0 and "ok" in audited.stdout + audited.stderr, (
        audited.stdout + audited.stderr
    )
    listed = _aether(site, work, "presets", "list")
    assert listed.returncode == 0 and "film" in listed.stdout.lower(), listed.stderr[-2000:]
