"""The report's quality section: what the gates measured on the written pairs, what they refused.

Per workflow: the mean-CIEDE2000 histogram of the pairs (next to the calibration reference when the
build was calibrated with `param.strength_stats`), the share of pairs that keep structure, texture
edits, redraws and replaced sources, the aesthetic score input → target; then rejections by gate
(`quality:<gate>` skips) and the sources the plan-time precheck left out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.figures import figure_png

__all__ = ["plot_delta_e", "quality_tables", "reference_delta_e"]


def reference_delta_e(manifest: dict[str, Any]) -> np.ndarray | None:
    """The calibration reference's ΔE quantiles, when the build names a readable strength file."""
    path = ((manifest.get("spec") or {}).get("param") or {}).get("strength_stats")
    if not path or not Path(path).is_file():
        return None
    from aether_data.strength import load_strength_stats

    try:
        return load_strength_stats(path).values("delta_e")
    except (OSError, ValueError):
        return None


def plot_delta_e(quality: dict[str, list[dict[str, Any]]], reference: np.ndarray | None) -> bytes:
    """ΔE2000 histogram per workflow (density), the reference's as a line when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    values = [q["delta_e"] for qs in quality.values() for q in qs]
    top = max([*values, *(reference if reference is not None else [])], default=10.0)
    bins = np.linspace(0, max(top, 1.0) * 1.02, 31)
    for wf, qs in sorted(quality.items()):
        ax.hist([q["delta_e"] for q in qs], bins=bins, alpha=0.5, density=True, label=wf)
    if reference is not None:  # quantiles → a density on the same bins
        ref = np.interp(np.random.default_rng(0).random(4000), np.linspace(0, 1, reference.size), reference)
        ax.hist(ref, bins=bins, density=True, histtype="step", color="k", label="reference")
    ax.set_xlabel("mean CIEDE2000 input → target")
    ax.set_ylabel("density")
    ax.legend()
    return figure_png(fig)


def quality_tables(
    manifest: dict[str, Any],
    quality: dict[str, list[dict[str, Any]]],
    scores: dict[str, list[tuple[float, float]]],
    table: Any,
) -> list[tuple[str, str]]:
    """The section's tables as (HTML, markdown) pairs (`table` is the report's table helper)."""
    rows = []
    for wf, qs in sorted(quality.items()):
        n = len(qs)
        de = np.array([q["delta_e"] for q in qs])
        kept = sum(q["grad_corr"] >= 0.9 for q in qs)
        texture = sum(bool(q["texture_edit"]) for q in qs)
        redraws = sum(int(q["redraws"]) for q in qs)
        replaced = sum(int(q.get("replaced", 0)) > 0 for q in qs)
        sc = scores.get(wf) or []
        aes = f"{np.mean([a for a, _ in sc]):.2f} → {np.mean([b for _, b in sc]):.2f}" if sc else "n/a"
        rows.append(
            (
                wf,
                n,
                f"{np.median(de):.2f}",
                f"{np.mean(de >= 1.5):.1%}",
                f"{kept / max(n, 1):.1%}",
                texture,
                f"{redraws} ({redraws / max(n, 1):.2f}/sample)",
                replaced,
                aes,
            )
        )
    out = [
        table(
            rows or [("(no quality measures recorded)", 0, "", "", "", 0, "", 0, "")],
            (
                "workflow",
                "pairs",
                "median ΔE2000",
                "ΔE ≥ 1.5",
                "structure kept (grad. corr. ≥ 0.9)",
                "texture edits (exempt)",
                "redraws",
                "sources replaced",
                "aesthetic input → target",
            ),
        )
    ]
    reasons = Counter(
        {k.split(":", 1)[1]: v for k, v in manifest["skipped"]["reasons"].items() if k.startswith("quality:")}
    )
    out.append(
        table(
            sorted(reasons.items()) or [("(none)", 0)], ("rejected by gate (after every redraw)", "samples")
        )
    )
    rejected = manifest.get("sources_rejected")
    if rejected is not None:
        out.append(
            table(
                sorted(rejected["reasons"].items()) or [("(none)", 0)],
                ("sources left out at plan time", "sources"),
            )
        )
    return out
