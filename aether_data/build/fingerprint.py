"""Content fingerprints: everything that decides a shard's bytes, hashed, so resume can prove reuse.

Why: a shard may be reused only if it is the shard this build would write. That is decided by the
resolved spec (minus runtime knobs: workers, cluster address, annotator transport), the seed, the
source list, the code version and the files the workflows read (operator statistics, preset
library and taxonomy, expert DB, encoder/renderer checkpoint, prompt files). Each of those is
hashed here; the shard fingerprint is the sha256 of them together. Every shard index records it
(and the document it was hashed from, so a mismatch can name what changed), and so do plan.parquet
and the manifest (``manifest["fingerprints"]``: the input hashes plus ``"spec"``).

``num_samples`` is left out of the shard fingerprint (a shard's rows depend on the seed and its
global indices, not on how many samples follow), which is what lets ``--incremental extend`` keep
the shards of a smaller build; the plan's fingerprint document adds it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aether_data import __version__
from aether_data.config import PipelineSpec
from aether_data.io.canonical import json_bytes

__all__ = [
    "content_spec",
    "describe_changes",
    "fingerprint_doc",
    "input_fingerprints",
    "shard_fingerprint",
]

#: annotator fields that change how fast a build runs, never what it writes.
_ANNOTATOR_TRANSPORT = {"concurrency", "timeout_s", "retry_backoff_s", "cache_dir", "num_gpus"}


def content_spec(spec: PipelineSpec) -> dict[str, Any]:
    """The spec as stored in the manifest: everything that determines content.

    `runtime` (workers, cluster address) changes where a build runs, never what it writes, so it
    is left out; otherwise `--workers 1` and `--workers 8` would give different manifests. It is
    recorded in `run.json` with the timings instead.
    """
    exclude: dict[str, Any] = {"runtime": True, "annotator": _ANNOTATOR_TRANSPORT}
    if "region" not in spec.workflows():  # the three global workflows keep their manifest bytes
        exclude["region"] = True
    return spec.model_dump(mode="json", exclude=exclude)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_tree(path: Path) -> str:
    """A file's sha256, or a folder's: sha256 over (relative path, file sha256) of every file."""
    if path.is_file():
        return _sha256_file(path)
    if not path.is_dir():
        return "missing"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        h.update(_sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def _hash_paths(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(_sha256_tree(p).encode() + b"\n")
    return h.hexdigest()


def input_fingerprints(spec: PipelineSpec) -> dict[str, str]:
    """sha256 of every input file the spec's workflows read, plus the code version (flat str → str)."""
    from aether_data.contract import PROMPTS_DIR
    from aether_data.sampling import DEFAULT_STATS_PATH

    def stats(path: str | None) -> str:
        return _sha256_tree(Path(path) if path else DEFAULT_STATS_PATH)

    workflows = spec.workflows()
    out: dict[str, str] = {"code_version": __version__}
    out["prompts"] = _sha256_tree(PROMPTS_DIR)
    if "param" in workflows or "region" in workflows:
        out["operator_stats"] = stats(spec.param.operator_stats)
    if "style" in workflows:
        from aether_data.presets.store import DEFAULT_LIBRARY_PATH
        from aether_data.presets.taxonomy import DEFAULT_TAXONOMY_PATH

        st = spec.style
        out["preset_library"] = _sha256_tree(Path(st.library) if st.library else DEFAULT_LIBRARY_PATH)
        if st.extra_presets:
            out["extra_presets"] = _hash_paths(Path(p) for p in st.extra_presets)
        out["preset_taxonomy"] = _sha256_tree(DEFAULT_TAXONOMY_PATH)
    if "auto" in workflows:
        cfg = spec.auto
        out["auto_operator_stats"] = stats(cfg.operator_stats)
        if cfg.supplementary_fraction < 1.0:
            from aether_data.expert_db.db import BUNDLED_DB
            from model_core.er_io import DEFAULT_CHECKPOINT

            out["expert_db"] = _sha256_tree(Path(cfg.expert_db) if cfg.expert_db else BUNDLED_DB)
            out["er_checkpoint"] = _sha256_tree(
                Path(cfg.er_checkpoint) if cfg.er_checkpoint else DEFAULT_CHECKPOINT
            )
    return out


def _sources_digest(spec: PipelineSpec, sources: Sequence[Any]) -> str:
    """sha256 of the ordered source list; the bundled photos by name (checkouts differ in paths)."""
    h = hashlib.sha256()
    for s in sources:
        s = s if isinstance(s, str) else s.as_py()
        if spec.sources.path is None:
            s = Path(s).name
        h.update(s.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


def fingerprint_doc(
    spec: PipelineSpec, sources: Sequence[Any], inputs: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What a shard's fingerprint is the hash of: content spec (no num_samples), inputs, sources."""
    cs = content_spec(spec)
    cs.pop("num_samples", None)
    return {
        "spec": cs,
        "inputs": dict(inputs if inputs is not None else input_fingerprints(spec)),
        "sources": _sources_digest(spec, sources),
    }


def shard_fingerprint(
    spec: PipelineSpec, sources: Sequence[Any] = (), doc: Mapping[str, Any] | None = None
) -> str:
    """sha256 of :func:`fingerprint_doc`: equal for every shard of one build."""
    return hashlib.sha256(json_bytes(doc if doc is not None else fingerprint_doc(spec, sources))).hexdigest()


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, Mapping) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _show(v: Any) -> str:
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "…"
    return "unset" if v is None else str(v)


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """``image.size 128 → 256; seed 0 → 5``: the fields that differ between two fingerprint docs."""
    a, b = _flatten(old), _flatten(new)
    changed = []
    for k in sorted(set(a) | set(b)):
        if a.get(k, None) != b.get(k, None):
            name = k.removeprefix("spec.")
            name = "source list" if name == "sources" else name
            changed.append(f"{name} {_show(a.get(k))} → {_show(b.get(k))}")
    if not changed:
        return "unknown change"
    more = f" (+{len(changed) - limit} more)" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more
