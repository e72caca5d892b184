"""The error every input-side module raises for an input that cannot be used."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SourceError"]


class SourceError(ValueError):
    """An input that cannot be used; `reason` is a short code such as "truncated" or "too-large".

    Builds count these per reason (manifest, skipped.parquet) instead of failing a shard.
    """

    def __init__(self, reason: str, path: str | Path | None = None, detail: str = "") -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.detail = detail
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{reason}" + (f" ({detail})" if detail else ""))
