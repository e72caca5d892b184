"""Byte-identity guard: a fixed 24-sample build of each workflow must keep its exact bytes.

Why: refactors (module moves, renamed helpers) must not change what a build writes. The sha256 of
every shard, index, plan.parquet and manifest.json of three small builds are recorded in
`tests/data/golden.json` (plan.parquet by its rows, the checkout's path made relative); any change to record content, image encoding, plan layout or manifest
shows up here. When a change is *meant* to alter the bytes (a new record field, new prompts),
regenerate with `python tests/test_golden.py --write` and say why in the commit.

The bytes are a function of the code *and* of the numeric libraries (a new OpenCV, Pillow or numpy
release may round one pixel or one measure differently, and a gate then picks another draw), so the
file also records their versions. In an environment with other versions the comparison cannot tell
a code change from a library change: the test is skipped with the differences named, and the
determinism tests (same bytes on 1 or 2 workers, on resume) still run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "data" / "golden.json"
WORKFLOWS = ("param", "style", "auto")
ARGS = ("--num-samples", "24", "--samples-per-shard", "8", "--image-size", "256", "--seed", "11")
BYTE_LIBRARIES = ("numpy", "pillow", "opencv-python", "numba", "pyarrow", "torch", "scipy")
"""Libraries whose numerics or encoders reach the bytes of a build."""


def environment() -> dict[str, str]:
    """Versions of `BYTE_LIBRARIES` here (absent ones as "none")."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in BYTE_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "none"
    return out


def build_hashes(root: Path, workflow: str, run) -> dict[str, str]:
    """Build one workflow into root/workflow and hash every reproducible file."""
    out = root / workflow
    code, text = run("build", "--workflow", workflow, *ARGS, "--workers", "1", "--out", str(out), "--quiet")
    assert code == 0, text
    files = sorted(
        p
        for p in out.rglob("*")
        if p.is_file()
        and p.name not in ("run.json", ".aether.lock")
        and "logs" not in p.relative_to(out).parts
    )
    return {p.relative_to(out).as_posix(): _digest(p) for p in files}


def _digest(path: Path) -> str:
    """sha256 of the file; plan.parquet's rows instead, with the checkout's own path made relative.

    The plan records where each source lives, and the bundled photos live in the checkout: the same
    build in another clone (CI's) differs there and only there.
    """
    if path.name != "plan.parquet":
        return hashlib.sha256(path.read_bytes()).hexdigest()
    import pyarrow.parquet as pq

    from aether_data.resources import package_root

    root = str(package_root().resolve())
    rows = pq.read_table(path).to_pylist()
    for row in rows:
        row["source_uri"] = row["source_uri"].replace(root, "aether:/")
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_build_bytes_match_golden(workflow, ray_session, tmp_path):
    from conftest import run_cli

    golden = json.loads(GOLDEN.read_text())
    recorded, here = golden.get("environment", {}), environment()
    differs = {k: f"{recorded.get(k)} → {v}" for k, v in here.items() if recorded.get(k) != v}
    if differs:
        pytest.skip(
            f"golden bytes were recorded with other library versions ({differs}): run `python tests/test_golden.py --write`"
        )
    expected = golden[workflow]
    got = build_hashes(tmp_path, workflow, run_cli)
    assert sorted(got) == sorted(expected), "the set of files written changed"
    changed = [name for name in expected if got[name] != expected[name]]
    assert not changed, f"bytes changed for {changed}"


if __name__ == "__main__":  # python tests/test_golden.py --write
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import run_cli

    assert sys.argv[1:] == ["--write"], "usage: python tests/test_golden.py --write"
    with tempfile.TemporaryDirectory() as tmp:
        table: dict[str, dict[str, str]] = {w: build_hashes(Path(tmp), w, run_cli) for w in WORKFLOWS}
    table["environment"] = environment()
    GOLDEN.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
