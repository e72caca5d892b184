"""N means N: broken sources are found at plan time, so they never cost a planned sample.

Every local source is decoded once at JPEG draft scale (1/8 for large JPEGs: the whole entropy
stream is still read, so truncated files fail here) on a thread pool; sources that fail are left
out of the plan and listed in the manifest (``sources_rejected``). The result depends only on the
files, so the plan, and with it every byte of the build, is the same at any worker count and on
resume. Remote sources (URLs, object stores) are not fetched at plan time: one that fails later is
skipped with its reason as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from aether_data.io.errors import SourceError
from aether_data.io.imaging import load_image

__all__ = ["check_source", "usable_sources"]

CHECK_SHORT = 32
"""Short edge the check decodes to (JPEG draft mode picks the smallest scale that covers it)."""

SHOWN = 100
"""Rejected sources listed by name in the manifest (all are counted)."""


def check_source(uri: str, max_pixels: int) -> str | None:
    """None when the source decodes, else the SourceError reason (remote URIs are not checked)."""
    if "://" in uri:
        return None
    try:
        load_image(uri, max_pixels=max_pixels, min_short=CHECK_SHORT, dtype=np.uint8)
    except SourceError as exc:
        return exc.reason
    except Exception as exc:  # an unexpected decoder failure is a broken source too
        return f"error:{type(exc).__name__}"
    return None


def usable_sources(
    sources: Sequence[str], max_pixels: int, threads: int = 8
) -> tuple[list[str], dict[str, Any]]:
    """(the sources that decode, in their order; the manifest's ``sources_rejected`` summary)."""
    if not sources:
        return [], {"checked": 0, "count": 0, "reasons": {}, "sources": []}
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(sources)))) as pool:
        verdicts = list(pool.map(lambda u: check_source(u, max_pixels), sources))
    good = [u for u, v in zip(sources, verdicts) if v is None]
    bad = [(u, v) for u, v in zip(sources, verdicts) if v is not None]
    summary = {
        "checked": len(sources),
        "count": len(bad),
        "reasons": dict(sorted(Counter(v for _, v in bad).items())),
        "sources": [{"source": u, "reason": v} for u, v in bad[:SHOWN]],
    }
    return good, summary
