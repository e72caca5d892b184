"""Which shards a dataset has, and reading them.

A dataset dir's shards are the ones its ``manifest.json`` lists (``shards[].path``, relative to the
dataset dir): a stray or half-written tar in ``shards/`` is never read. Only a dir without a manifest
(a plain dir of tars, or a dataset from before manifests) falls back to globbing
``{workflow}-NNNNNN.tar`` names, with a warning. Tar paths and URLs (``pipe:…``, ``s3://…``) are
passed to webdataset untouched.
"""

from __future__ import annotations

import glob
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aether_data.contract import WORKFLOWS

SHARD_RE = re.compile(r"^(param|style|auto)-\d+\.tar$")
MANIFEST = "manifest.json"


def shard_task(path: str) -> str:
    """Task of a shard from its file name ``{workflow}-{shard:06d}.tar``."""
    name = path.rsplit("/", 1)[-1]
    m = SHARD_RE.match(name)
    if not m:
        raise ValueError(f"{path}: shard names must be '{{workflow}}-NNNNNN.tar' (workflow in {WORKFLOWS})")
    return m.group(1)


def manifest_shards(dataset_dir: Path) -> list[str] | None:
    """Shard paths the dataset's manifest lists (None when the dir has no manifest)."""
    manifest = dataset_dir / MANIFEST
    if not manifest.is_file():
        return None
    entries = json.loads(manifest.read_text(encoding="utf-8")).get("shards")
    if not isinstance(entries, list):
        raise ValueError(f"{manifest}: no 'shards' list")
    paths = []
    for entry in entries:
        rel = entry.get("path") if isinstance(entry, dict) else None
        if not rel:
            raise ValueError(f"{manifest}: a shard entry without 'path': {entry!r}")
        path = dataset_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"{manifest} lists {rel}, which does not exist")
        paths.append(str(path))
    return sorted(paths)


def _dir_shards(p: Path) -> list[str]:
    listed = manifest_shards(p)
    if listed is not None:
        if not listed:
            raise FileNotFoundError(f"{p / MANIFEST}: lists no shards")
        return listed
    base = p / "shards" if (p / "shards").is_dir() else p
    if not base.is_dir():
        raise FileNotFoundError(f"{p}: not a dataset dir (no shards/) nor a dir of shards")
    paths = sorted(str(x) for x in base.glob("*.tar") if SHARD_RE.match(x.name))
    if not paths:
        raise FileNotFoundError(f"{base}: no '{{workflow}}-NNNNNN.tar' shards")
    warnings.warn(f"{p}: no {MANIFEST}; reading every shard name found in {base}", stacklevel=3)
    return paths


def discover_shards(data_dirs: Sequence[str | Path]) -> dict[str, list[str]]:
    """Shards per task: a dataset dir's manifest-listed shards (a dir without a manifest: its
    ``shards/*.tar`` or its own tars, with a warning), tar paths / globs, or URLs (``pipe:…``,
    ``s3://…`` are passed to webdataset untouched). Sorted, so every rank agrees."""
    found: dict[str, list[str]] = {}
    for entry in data_dirs:
        s = str(entry)
        if "://" in s or s.startswith("pipe:") or s.endswith(".tar"):
            paths = [s] if ("://" in s or s.startswith("pipe:")) else sorted(glob.glob(s))
            if not paths:
                raise FileNotFoundError(f"{s}: no such shard")
        else:
            paths = _dir_shards(Path(s))
        for path in paths:
            found.setdefault(shard_task(path), []).append(path)
    return {t: sorted(set(v)) for t, v in sorted(found.items())}


def read_tar_samples(paths: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Raw samples ({"__key__", "input.jpg", "json", "target.jpg", ...} bytes) via webdataset."""
    from webdataset.tariterators import tarfile_samples

    yield from tarfile_samples([{"url": p} for p in paths])


def iter_records(
    data_dirs: Sequence[str | Path], tasks: Sequence[str] | None = None, max_per_task: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Raw samples once, in shard order, task by task (evaluation): (task, raw sample)."""
    for task, paths in discover_shards(data_dirs).items():
        if tasks is not None and task not in tasks:
            continue
        for i, sample in enumerate(read_tar_samples(paths)):
            if max_per_task is not None and i >= max_per_task:
                break
            yield task, sample
