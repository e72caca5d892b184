"""Errors of the build layer that the CLI turns into one-line messages."""

from __future__ import annotations

__all__ = ["BuildError"]


class BuildError(RuntimeError):
    """A build that cannot start or cannot finish; the message says what to do."""
