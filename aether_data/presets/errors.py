"""The error of a preset file that cannot be read."""

from __future__ import annotations

__all__ = ["PresetFormatError"]


class PresetFormatError(ValueError):
    """A preset file that cannot be imported at all; ``reason`` says why in one line."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = str(file)
        self.reason = reason
        super().__init__(f"{self.file}: {reason}")
