"""Resume and extend: which shards of an existing output may be kept, and the lock on the output.

Why: reusing a shard is safe only if it is byte for byte the shard this build would write. A shard
is kept when its index records the build's fingerprint (``build.fingerprint``: spec, seed, sources,
code and input files), holds exactly the planned keys (written or skipped) and its tar matches the
recorded size and sha256. A shard built with other settings is never reused silently: the build is
refused with the fields that changed, or, with ``--overwrite``, the old output is cleared first.
plan.parquet is a derived file and is never trusted alone; its fingerprint document only lets the
refusal name what changed before any shard is opened.

One build writes an output at a time: a local ``--out`` is locked (``fcntl.flock`` on
``OUT/.aether.lock``, held for the whole build). Object stores have no such lock (see docs/design.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aether_data.build.errors import BuildError
from aether_data.build.fingerprint import describe_changes
from aether_data.build.plan import ShardSpan
from aether_data.dataset.index import index_path, parquet_source, read_index_metadata, shard_is_done
from aether_data.io import storage

__all__ = ["LOCK_NAME", "PLAN_DOC_KEY", "check_plan", "clear_output", "lock_output", "select_shards"]

LOCK_NAME = ".aether.lock"
PLAN_DOC_KEY = b"aether.fingerprint_doc"
"""plan.parquet schema metadata: the fingerprint document plus num_samples (JSON)."""

#: what a build writes in OUT (``--overwrite`` removes these and nothing else).
_OUTPUT_ENTRIES = ("shards", "index", "logs", "plan.parquet", "manifest.json", "skipped.parquet", "run.json")


@contextmanager
def lock_output(out: storage.AnyPath) -> Iterator[None]:
    """Hold an exclusive lock on a local output for the block; refuse at once if another build has it."""
    if not isinstance(out, Path):
        yield  # object stores: no lock (documented in docs/design.md)
        return
    import fcntl

    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(
                f"{out} is being written by another aether build (lock {out / LOCK_NAME} is held); "
                "wait for it to finish or choose another --out"
            ) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def clear_output(out: storage.AnyPath) -> None:
    """``--overwrite``: delete what a previous build wrote (the known layout only, never other files)."""
    if not isinstance(out, Path):
        storage.remove_tree(out)
        return
    import shutil

    for name in _OUTPUT_ENTRIES:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    for sub in ("shards", "index"):
        (out / sub).mkdir(parents=True, exist_ok=True)


def _read_plan_doc(path: storage.AnyPath) -> dict[str, Any] | None:
    """The fingerprint document stored in plan.parquet; raises ValueError when it cannot be read."""
    src, fs = parquet_source(path)
    try:
        pf = pq.ParquetFile(src, filesystem=fs)
        meta = pf.schema_arrow.metadata or {}
        pf.metadata.num_rows  # noqa: B018 - a truncated footer fails here
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(str(exc)) from None
    raw = meta.get(PLAN_DOC_KEY)
    return None if raw is None else json.loads(raw)


def check_plan(out: storage.AnyPath, plan_doc: Mapping[str, Any], extend: bool) -> bool:
    """Compare an existing plan.parquet with this build's; returns True when it is to be replaced.

    Refuses (BuildError) a plan of other settings, naming what changed. A plan that cannot be read
    (truncated) is derived data: it is replaced, and the shards are verified on their own.
    """
    path = out / "plan.parquet"
    if not path.exists():
        return False
    try:
        old = _read_plan_doc(path)
    except ValueError:
        return True
    if old is None:
        return False  # written by an older aether: write_plan compares the bytes
    if old == dict(plan_doc):
        return False
    rest_old = {k: v for k, v in old.items() if k != "num_samples"}
    rest_new = {k: v for k, v in plan_doc.items() if k != "num_samples"}
    n_old, n_new = old.get("num_samples"), plan_doc.get("num_samples")
    if rest_old == rest_new:
        if extend and isinstance(n_old, int) and n_new >= n_old:
            return True
        if extend:
            raise BuildError(
                f"{out}: --incremental extend cannot shrink a dataset (num_samples {n_old} → {n_new})"
            )
        raise BuildError(
            f"{out} was built with other settings (num_samples {n_old} → {n_new}); use --incremental "
            "extend to grow a dataset, --overwrite to rebuild it, or choose a new --out"
        )
    raise BuildError(
        f"{out} was built with other settings ({describe_changes(old, plan_doc)}); "
        "re-run with --overwrite to rebuild it, or choose a new --out"
    )


def _planned_keys(span: ShardSpan) -> list[str]:
    return [f"{span.workflow}_{i:09d}" for i in range(span.start, span.start + span.count)]


def _index_keys(ipath: storage.AnyPath, meta: Mapping[str, Any]) -> set[str]:
    src, fs = parquet_source(ipath)
    keys = set(pq.read_table(src, columns=["key"], filesystem=fs).column("key").to_pylist())
    keys.update(s["key"] for s in meta["skipped"] if s.get("key"))
    return keys


def _shard_state(
    out: storage.AnyPath, span: ShardSpan, fingerprint: str, doc: Mapping[str, Any], extend: bool
) -> str:
    """``todo``, ``reuse``, or the reason the shard is of another build (a refusal)."""
    tar, ipath = out / "shards" / f"{span.name}.tar", index_path(out, span.name)
    if not ipath.exists():
        return "todo"  # never committed (the index is written last)
    try:
        meta = read_index_metadata(ipath)
    except (OSError, ValueError, pa.ArrowException):
        return "todo"  # an unreadable index: the shard is rebuilt, its files replaced
    if meta.get("fingerprint") is None:
        return "it has no fingerprint (written by an older aether)"
    if meta["fingerprint"] != fingerprint:
        return describe_changes(meta.get("fingerprint_doc") or {}, doc)
    try:
        have = _index_keys(ipath, meta)
    except (OSError, pa.ArrowException, KeyError):
        return "todo"
    want = set(_planned_keys(span))
    if have != want:
        if extend and have < want:
            return "todo"  # the smaller build's last, partial shard
        return f"it holds other keys than planned ({len(have)} keys, {len(want)} planned)"
    return "reuse" if shard_is_done(tar, ipath) else "todo"


def _stray_shards(out: storage.AnyPath, names: set[str]) -> list[str]:
    found = set()
    for sub, ext in (("shards", ".tar"), ("index", ".parquet")):
        d = out / sub
        if d.is_dir():
            found |= {p.name[: -len(ext)] for p in d.iterdir() if p.name.endswith(ext)}
    return sorted(n for n in found if n not in names and not n.startswith(".tmp-"))


def select_shards(
    out: storage.AnyPath,
    spans: Sequence[ShardSpan],
    fingerprint: str,
    doc: Mapping[str, Any],
    extend: bool = False,
) -> tuple[list[ShardSpan], int]:
    """The spans to build and the number reused; refuses shards of other settings or not planned."""
    names = {s.name for s in spans}
    stray = _stray_shards(out, names)
    if stray:
        raise BuildError(
            f"{out} holds shard(s) this plan does not have ({', '.join(stray[:3])}"
            f"{' …' if len(stray) > 3 else ''}); re-run with --overwrite to rebuild, or choose a new --out"
        )
    todo: list[ShardSpan] = []
    reused = 0
    for span in spans:
        state = _shard_state(out, span, fingerprint, doc, extend)
        if state == "reuse":
            reused += 1
        elif state == "todo":
            todo.append(span)
        else:
            raise BuildError(
                f"shard {span.name} in {out} was built with other settings ({state}); "
                "re-run with --overwrite to rebuild, or choose a new --out"
            )
    return todo, reused
