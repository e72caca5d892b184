"""Matplotlib figures → PNG bytes for the report (the one place a figure is rendered and closed)."""

from __future__ import annotations

import io
from typing import Any


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes (no Software stamp, so the same data gives the same bytes); closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
