"""Canonical JSON bytes: one encoding wherever JSON is hashed or stored in a shard."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_bytes"]


def json_bytes(obj: Any) -> bytes:
    """Sorted keys, compact, UTF-8, no NaN: equal objects give equal bytes on every machine."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )
