"""Content-addressed annotation cache: re-runs and resumed shards never pay for the same request twice.

An entry's address is the sha256 of the canonical JSON of everything that determines the answer
(sample key, request content, image digest, prompt version, backend, model fingerprint, generation
settings); the entry is the finished `Annotation` as JSON, so a hit rebuilds the identical record
without a request. Files are JSON (never pickle: a cache directory may be shared, and loading it
must not execute anything), written atomically (temp file + rename), under two-hex-digit subfolders
so no directory grows past a few thousand entries per million samples. Corrupt or unreadable
entries count as misses.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.io.atomic import atomic_write_bytes

CACHE_FORMAT = 1
"""Bumped when the entry layout or the key recipe changes (old entries then simply miss)."""


def default_cache_dir() -> Path:
    """`$AETHER_CACHE_DIR` if set, else ~/.cache/aether/annotations (shared by runs and resumes)."""
    env = os.environ.get("AETHER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "aether" / "annotations"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable for a cache key: {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for addresses."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def cache_key(parts: Mapping[str, Any]) -> str:
    """sha256 hex address of a mapping of key parts."""
    payload = canonical_json({"cache_format": CACHE_FORMAT, **parts})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def image_digest(image: np.ndarray | bytes | None) -> str | None:
    """sha256 of the image as given: encoded bytes as they are, an array by dtype, shape and memory.

    Hashing the array's memory directly (no 8-bit conversion) keeps this off the critical path of the
    shard builder (a few ms for 512² float32); passing the stored JPEG bytes is cheaper still.
    """
    if image is None:
        return None
    if isinstance(image, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(image)).hexdigest()
    arr = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """HxWx3 float [0, 1] or uint8 → uint8 (gray and alpha are handled)."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    return arr[..., :3]


class AnnotationCache:
    """JSON files `<root>/<hh>/<sha256>.json`; `root=None` uses `default_cache_dir()`."""

    def __init__(self, root: str | Path | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root else default_cache_dir()
        self.enabled = enabled

    def path(self, key: str) -> Path:
        """Where the entry of `key` lives."""
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None (missing, unreadable or not an entry of this format)."""
        if not self.enabled:
            return None
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("cache_format") != CACHE_FORMAT or data.get("key") != key:
            return None
        return data

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Write atomically; concurrent writers of the same key are harmless (same content, rename wins)."""
        if not self.enabled:
            return
        data = canonical_json({**entry, "cache_format": CACHE_FORMAT, "key": key}).encode("utf-8")
        atomic_write_bytes(self.path(key), data)
